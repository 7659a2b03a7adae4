//! With TLS (and authentication) on, a job runs end to end as without them, its records crossing the
//! workers' exchange between workers whose certificates name no address
//! (`--tls-peer-name`); the HTTP API and the metrics endpoints answer over
//! HTTPS only; a renewed certificate is served without a restart; clients without TLS, and processes without a
//! certificate the cluster's CA signed, cannot call the coordinator's member
//! services, register as a worker, or push records into an exchange. A
//! member's renewed certificate is what its new client connections show.

use sluice_harness::admin;
use sluice_harness::cluster::{ClusterOptions, SluiceCluster, binary};
use sluice_harness::datagen::producer;
use sluice_harness::process::ManagedChild;
use sluice_harness::prometheus;
use sluice_harness::testing::{count_numbers, infra, jobctl, submit, test_dir, unique, wait_for};
use sluice_harness::tls::{
    TestCa, TlsFiles, certificate_der, client_certificates, make_ca, served_certificate,
};
use sluice_proto::cluster_service_client::ClusterServiceClient;
use sluice_proto::exchange_frame::Kind;
use sluice_proto::exchange_service_client::ExchangeServiceClient;
use sluice_proto::tls::{Tls, endpoint, endpoint_named};
use sluice_proto::{
    ExchangeFrame, ExchangeHeader, GetJobRequest, JobState, ListWorkersRequest,
    RegisterWorkerRequest, WorkerState,
};
use std::time::Duration;

/// The operator token of the cluster, which has authentication on too.
const TOKEN: &str = "op-5e0c2b9d41a7f386";

/// The name in the workers' certificates, which name no address.
const WORKER_NAME: &str = "sluice-worker";

/// Pushes one header frame to the exchange at `address` as a client with
/// `tls`; the error, if the exchange refused it.
async fn push(address: &str, tls: Option<&Tls>) -> Option<tonic::Status> {
    let channel = match endpoint_named(address, tls, Some(WORKER_NAME)) {
        Ok(e) => match e.connect().await {
            Ok(c) => c,
            Err(e) => return Some(tonic::Status::unavailable(e.to_string())),
        },
        Err(e) => return Some(tonic::Status::invalid_argument(e.to_string())),
    };
    let frame = ExchangeFrame {
        kind: Some(Kind::Header(ExchangeHeader {
            job_id: "job-intruder".into(),
            ..Default::default()
        })),
    };
    ExchangeServiceClient::new(channel)
        .push(tokio_stream::iter(vec![frame]))
        .await
        .err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tls_a_job_runs_and_only_cluster_members_get_in() -> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("tls");
    let test_ca = TestCa::new(&dir.join("tls"), "Sluice test CA")?;
    let tls = test_ca.member("member", &["localhost", "127.0.0.1"])?;
    // Workers' certificates name no address, as in Kubernetes, where they
    // advertise pod IPs: they verify each other by name.
    let worker_tls = test_ca.member("worker", &[WORKER_NAME])?;
    let other = make_ca(&dir.join("other-tls"), "Another CA")?;
    let options = ClusterOptions {
        tls: Some(tls.clone()),
        worker_tls: Some(worker_tls.clone()),
        worker_args: vec!["--tls-peer-name".into(), WORKER_NAME.into()],
        // One slot each: the job's two subtasks of each stage run on
        // different workers, so keyed records cross between them.
        slots: 1,
        // Authentication on too, as a production cluster would run.
        auth_tokens: Some(format!("operator {TOKEN}\n")),
        token: Some(TOKEN.into()),
        metrics: true,
        ..Default::default()
    };
    let mut cluster = SluiceCluster::start(&dir, 2, options).await?;
    let coordinator = cluster.coordinator_address.clone();
    let ca = tls.ca.to_string_lossy().into_owned();

    // A job whose records cross the exchange between the two workers.
    let (input, output) = (unique("tls-in"), unique("tls-out"));
    admin::create_topic(&infra.kafka, &input, 2).await?;
    admin::create_topic(&infra.kafka, &output, 2).await?;
    let job = submit(
        &coordinator,
        &dir,
        &format!(
            "name: over-tls\nparallelism: 2\nsource: {{ kafka: {{ brokers: \"{k}\", topic: {input} }} }}\ntransforms:\n  - key_by: [k]\nsink: {{ kafka: {{ brokers: \"{k}\", topic: {output} }} }}\n",
            k = infra.kafka
        ),
        &[("SLUICE_TLS_CA", &ca), ("SLUICE_TOKEN", TOKEN)],
    )?;
    let mut client = cluster.client().await?;
    wait_for("job running", Duration::from_secs(60), || {
        let (mut c, job_id) = (client.clone(), job.clone());
        let request = cluster.client_request(GetJobRequest { job_id });
        async move {
            let status = c.get_job(request).await?.into_inner();
            Ok((status.state == JobState::Running as i32).then_some(()))
        }
    })
    .await?;
    let records = 2_000u64;
    let payloads = (0..records).map(|n| serde_json::json!({"n": n, "k": n % 17}).to_string());
    producer::produce(&infra.kafka, &input, payloads, None, 0).await?;
    let (seen, lost, duplicated) =
        count_numbers(&infra.kafka, &output, records, "read_uncommitted").await?;
    assert_eq!(
        (lost, duplicated, seen.len() as u64),
        (0, 0, records),
        "every record once over TLS"
    );

    // jobctl with the CA reads; without it, it cannot reach the coordinator.
    let token = [("SLUICE_TOKEN", TOKEN)];
    let listed = jobctl(&coordinator, &["--tls-ca", &ca, "list"], &token)?;
    assert!(listed.success, "{}", listed.stderr);
    assert!(listed.stdout.contains(&job), "{}", listed.stdout);
    let plaintext = jobctl(&coordinator, &["list"], &token)?;
    assert!(!plaintext.success, "a plaintext jobctl was served");
    assert!(
        plaintext.stderr.contains("coordinator unreachable"),
        "{}",
        plaintext.stderr
    );
    let plain_endpoint = endpoint(&coordinator, None)?;
    if let Ok(channel) = plain_endpoint.connect().await {
        let answer = sluice_proto::job_service_client::JobServiceClient::new(channel)
            .list_workers(cluster.client_request(ListWorkersRequest {}))
            .await;
        assert!(answer.is_err(), "a plaintext client was answered");
    }

    // The HTTP API answers over HTTPS, verified with the cluster's CA; a
    // plaintext HTTP client gets no answer.
    let url = cluster.http_url_of(0);
    assert!(url.starts_with("https://"), "{url}");
    let web = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&tls.ca)?)?)
        .build()?;
    let jobs = web
        .get(format!("{url}/api/jobs"))
        .bearer_auth(TOKEN)
        .send()
        .await?;
    assert_eq!(jobs.status(), reqwest::StatusCode::OK);
    let body = jobs.text().await?;
    assert!(body.contains(&job), "{body}");
    let plain_url = url.replacen("https://", "http://", 1);
    let plain = reqwest::Client::new()
        .get(format!("{plain_url}/api/jobs"))
        .bearer_auth(TOKEN)
        .send()
        .await;
    assert!(
        plain.is_err(),
        "a plaintext HTTP client was answered: {:?}",
        plain.map(|r| r.status())
    );

    // So do the metrics endpoints of coordinator and worker, scraped as a
    // Prometheus server with the CA as its `ca_file` would.
    // The workers' certificates name no address: the scrape checks the
    // name, as Prometheus's `tls_config.server_name` would.
    for (address, server_name) in [
        (cluster.coordinator_metrics_address(0), None),
        (cluster.worker_metrics_address(0), Some(WORKER_NAME)),
    ] {
        let address = address.expect("metrics are on");
        let scrape = prometheus::scrape_tls(&address, &tls.ca, server_name).await?;
        assert!(
            scrape.family("process_start_time_seconds").is_some(),
            "{address}: {:?}",
            scrape.families
        );
        assert!(
            prometheus::scrape(&address).await.is_err(),
            "{address}: a plaintext scrape was answered"
        );
    }

    // A client that verifies the coordinator but shows no certificate gets
    // JobService only: registering as a worker is refused, naming the call.
    let channel = endpoint(&coordinator, Some(&tls.load_ca()?))?
        .connect()
        .await?;
    let refused = ClusterServiceClient::new(channel)
        .register_worker(RegisterWorkerRequest {
            data_address: "127.0.0.1:1".into(),
            slots: 4,
            ..Default::default()
        })
        .await
        .expect_err("registered without a certificate");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert!(
        refused
            .message()
            .starts_with("RegisterWorker refused: only cluster members"),
        "{}",
        refused.message()
    );

    // A worker that trusts the cluster's CA but shows a certificate another
    // CA signed never registers.
    let intruder = TlsFiles {
        ca: tls.ca.clone(),
        cert: other.cert.clone(),
        key: other.key.clone(),
    };
    let index = cluster.add_worker_with_tls(Some(&intruder))?;
    let log = cluster.worker_log(index).unwrap_or_default();
    wait_for("intruder refused", Duration::from_secs(30), || {
        let log = log.clone();
        async move {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            Ok(text
                .contains("cannot register with coordinator")
                .then_some(()))
        }
    })
    .await?;
    let workers = client
        .list_workers(cluster.client_request(ListWorkersRequest {}))
        .await?
        .into_inner()
        .workers;
    assert_eq!(workers.len(), 2, "only the members registered: {workers:?}");
    assert!(workers.iter().all(|w| w.state == WorkerState::Alive as i32));

    // The exchange takes no records from a client without a member's
    // certificate: none shown, or one another CA signed.
    let exchange = workers[0].data_address.clone();
    for (who, client_tls) in [
        ("no certificate", Some(tls.load_ca()?)),
        ("another CA's certificate", Some(intruder.load()?)),
        ("plaintext", None),
    ] {
        let refusal = push(&exchange, client_tls.as_ref()).await;
        let Some(status) = refusal else {
            panic!("{who}: the exchange took a push");
        };
        println!("{who}: {status}");
        assert!(
            matches!(
                status.code(),
                tonic::Code::Unavailable
                    | tonic::Code::Unknown
                    | tonic::Code::Internal
                    | tonic::Code::Cancelled
            ),
            "{who}: refused by the connection, not by the exchange: {status}"
        );
        assert!(
            std::error::Error::source(&status).is_some_and(|e| e.is::<tonic::transport::Error>()),
            "{who}: the connection failed, not the call: {status}"
        );
    }

    // A renewed certificate (same CA, new key and serial) written over the
    // files is what the coordinator's gRPC port, HTTP API and metrics
    // endpoint show new connections within seconds, without a restart.
    let http_address = url.trim_start_matches("https://").to_string();
    let metrics_address = cluster
        .coordinator_metrics_address(0)
        .expect("metrics are on");
    let before = certificate_der(&tls.cert)?;
    for address in [&coordinator, &http_address, &metrics_address] {
        assert_eq!(
            served_certificate(address, &tls.ca, "127.0.0.1").await?,
            before,
            "{address} shows the certificate of its files"
        );
    }
    let renewed = test_ca.member("member", &["localhost", "127.0.0.1"])?;
    let after = certificate_der(&renewed.cert)?;
    assert_ne!(before, after, "the renewed certificate is another");
    for address in [&coordinator, &http_address, &metrics_address] {
        wait_for(
            "renewed certificate served",
            Duration::from_secs(20),
            || {
                let (address, ca, after) = (address.clone(), tls.ca.clone(), after.clone());
                async move {
                    let served = served_certificate(&address, &ca, "127.0.0.1").await?;
                    Ok((served == after).then_some(()))
                }
            },
        )
        .await?;
    }
    Ok(())
}

/// A worker whose certificate is renewed (same CA, new key and serial,
/// written over its files) shows the new one on its next connections to
/// the coordinator, without a restart: as it would need to once the old
/// one expires. The "coordinator" here is a TLS server that records the
/// certificate each connection shows and drops it, so the worker keeps
/// reconnecting to register.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_client_certificate_is_shown_on_new_connections() -> anyhow::Result<()> {
    let dir = test_dir("tls-client-renewal");
    let test_ca = TestCa::new(&dir.join("tls"), "Sluice test CA")?;
    let server = test_ca.member("coordinator", &["localhost", "127.0.0.1"])?;
    let worker = test_ca.member("worker", &[WORKER_NAME])?;
    let (coordinator, mut shown) = client_certificates(&server).await?;
    let mut cmd = std::process::Command::new(binary("worker")?);
    cmd.args(["--coordinator", &coordinator, "--slots", "1"])
        .arg("--checkpoint-store")
        .arg(dir.join("checkpoints"))
        .args(worker.args());
    let _worker = ManagedChild::spawn("worker", cmd, &dir.join("worker.log"))?;

    let mut wait_shown =
        async |what: &str, expected: &rustls::pki_types::CertificateDer<'static>| {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                match tokio::time::timeout_at(deadline, shown.recv()).await {
                    Ok(Some(cert)) if &cert == expected => return Ok(()),
                    Ok(Some(_)) => continue,
                    Ok(None) => anyhow::bail!("the server stopped"),
                    Err(_) => anyhow::bail!("the worker never showed {what}"),
                }
            }
        };
    let before = certificate_der(&worker.cert)?;
    wait_shown("its certificate", &before).await?;

    let renewed = test_ca.member("worker", &[WORKER_NAME])?;
    let after = certificate_der(&renewed.cert)?;
    assert_ne!(before, after, "the renewed certificate is another");
    wait_shown("the renewed certificate", &after).await?;
    Ok(())
}
