//! Scraping a `/metrics` endpoint the way Prometheus reads it: the text is
//! fetched and parsed by the reference Python client's parser
//! (`prometheus_client` from PyPI, in a virtual environment of the cache,
//! see [`crate::pytools`]), so a test sees what a Prometheus server would,
//! and an exposition it would refuse fails the test.

use anyhow::Context;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The parser's package, pinned.
const REQUIREMENTS: &[&str] = &["prometheus-client==0.26.0"];

/// Fetches the page (over https when given a CA file, verifying the
/// server's certificate against the name given after it, the host by
/// default), checks its status and content type and parses it; prints each
/// family as a JSON line.
const SCRAPE: &str = r#"
import http.client, json, socket, ssl, sys
from prometheus_client.parser import text_string_to_metric_families
host, port = sys.argv[1].rsplit(":", 1)
if len(sys.argv) > 2:
    context = ssl.create_default_context(cafile=sys.argv[2])
    name = sys.argv[3] if len(sys.argv) > 3 else host
    class Verified(http.client.HTTPSConnection):
        def connect(self):
            sock = socket.create_connection((self.host, self.port), self.timeout)
            self.sock = context.wrap_socket(sock, server_hostname=name)
    connection = Verified(host, int(port), timeout=10, context=context)
else:
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
connection.request("GET", "/metrics")
r = connection.getresponse()
if r.status != 200:
    sys.exit("unexpected status " + str(r.status))
kind = r.headers.get("Content-Type", "")
text = r.read().decode("utf-8")
if not kind.startswith("text/plain"):
    sys.exit("unexpected content type " + kind)
for f in text_string_to_metric_families(text):
    print(json.dumps({"name": f.name, "type": f.type, "help": f.documentation,
        "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]}))
"#;

/// One metric family: its name (a counter's without `_total`), type, help
/// and samples.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Family {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub help: String,
    pub samples: Vec<Sample>,
}

/// One series' value: the full sample name (a counter's with `_total`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Everything one scrape gave.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub families: Vec<Family>,
}

impl Scrape {
    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.name == name)
    }

    /// Samples named `name` whose labels include every one of `labels`.
    pub fn samples<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.families
            .iter()
            .flat_map(|f| &f.samples)
            .filter(move |s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).is_some_and(|l| l == v))
            })
    }

    /// The sum of [`Scrape::samples`]; 0 when there are none.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples(name, labels).map(|s| s.value).sum()
    }
}

/// The interpreter of the virtual environment with the parser, installed
/// once per process (tests running at once wait for the one installing).
fn python() -> anyhow::Result<PathBuf> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            crate::pytools::venv("prometheus", REQUIREMENTS)
                .map(|bin| bin.join("python"))
                .map_err(|e| format!("{e:#}"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// Scrapes `http://<address>/metrics`.
pub async fn scrape(address: &str) -> anyhow::Result<Scrape> {
    run(vec![address.into()]).await
}

/// Scrapes `https://<address>/metrics` as a Prometheus server with
/// `tls_config` does: the server's certificate verified with the CA
/// certificate file `ca` (`ca_file`) against `server_name` (`server_name`;
/// the address's host when `None`).
pub async fn scrape_tls(
    address: &str,
    ca: &Path,
    server_name: Option<&str>,
) -> anyhow::Result<Scrape> {
    let mut args = vec![address.into(), ca.as_os_str().to_owned()];
    args.extend(server_name.map(Into::into));
    run(args).await
}

/// Runs [`SCRAPE`] with `args`.
async fn run(args: Vec<std::ffi::OsString>) -> anyhow::Result<Scrape> {
    let out = tokio::task::spawn_blocking(move || {
        let python = python()?;
        std::process::Command::new(&python)
            .arg("-c")
            .arg(SCRAPE)
            .args(args)
            .output()
            .with_context(|| format!("cannot run {}", python.display()))
    })
    .await??;
    anyhow::ensure!(
        out.status.success(),
        "scraping failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let families = String::from_utf8(out.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<Vec<Family>, _>>()?;
    Ok(Scrape { families })
}
