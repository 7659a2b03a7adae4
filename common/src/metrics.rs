//! Prometheus metrics of a Sluice process: `GET /metrics` on an address of
//! its own, in the Prometheus text format (version 0.0.4). Every figure is
//! read when Prometheus scrapes, from state the process keeps anyway, so a
//! subtask that ended or a job that was forgotten leaves no stale series.
//! Sluice's own metrics are named `sluice_...`, in base units (seconds,
//! bytes), counters ending in `_total`; next to them the usual `process_...`
//! metrics of the process (CPU, memory, open files, start time).

mod process;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, EncodeMetric,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// The labels of one series: names and values.
pub type Labels = Vec<(&'static str, String)>;

/// Writes metric families while a scrape runs: each family's help and type
/// once, then its series.
pub struct Exposition<'a> {
    encoder: DescriptorEncoder<'a>,
}

impl Exposition<'_> {
    /// A counter family: `name` without its `_total` suffix, which the
    /// exposition adds (`sluice_subtask_records_in` is exposed as
    /// `sluice_subtask_records_in_total`).
    pub fn counter<L, V>(
        &mut self,
        name: &str,
        help: &str,
        series: impl IntoIterator<Item = (L, V)>,
    ) -> std::fmt::Result
    where
        L: EncodeLabelSet,
        V: EncodeCounterValue,
    {
        let mut family = self
            .encoder
            .encode_descriptor(name, help, None, MetricType::Counter)?;
        for (labels, value) in series {
            ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// A gauge family.
    pub fn gauge<L, V>(
        &mut self,
        name: &str,
        help: &str,
        series: impl IntoIterator<Item = (L, V)>,
    ) -> std::fmt::Result
    where
        L: EncodeLabelSet,
        V: EncodeGaugeValue,
    {
        let mut family = self
            .encoder
            .encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (labels, value) in series {
            ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// What a process exposes, read at each scrape.
pub trait MetricSource: Send + Sync + 'static {
    fn expose(&self, out: &mut Exposition<'_>) -> std::fmt::Result;
}

struct SourceCollector<S>(S);

impl<S> std::fmt::Debug for SourceCollector<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SourceCollector")
    }
}

impl<S: MetricSource> Collector for SourceCollector<S> {
    fn encode(&self, encoder: DescriptorEncoder) -> std::fmt::Result {
        self.0.expose(&mut Exposition { encoder })
    }
}

/// The metrics a process exposes: its own `source` and the process metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
}

impl Metrics {
    pub fn new(source: impl MetricSource) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(process::ProcessCollector));
        registry.register_collector(Box::new(SourceCollector(source)));
        Self {
            registry: Arc::new(registry),
        }
    }

    /// Every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String fails only if a collector fails, and ours
        // do not: an empty answer is what Prometheus would get then.
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::warn!(error = %e, "metrics not rendered");
            out.clear();
        }
        out
    }

    /// Serves `GET /metrics` on `listener` until `shutdown` resolves, over
    /// HTTPS with `tls` (see [`crate::https::serve`]). Each scrape is
    /// rendered on a blocking thread: collectors take locks and read /proc.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        use axum::http::header::CONTENT_TYPE;
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = self.clone();
                async move {
                    let body = tokio::task::spawn_blocking(move || metrics.render())
                        .await
                        .unwrap_or_default();
                    (
                        [(
                            CONTENT_TYPE,
                            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                        )],
                        body,
                    )
                }
            }),
        );
        crate::https::serve(listener, app, tls, shutdown).await
    }
}

/// Binds `address` for the metrics endpoint and serves it in the
/// background, over HTTPS with `tls`; returns the address it listens on
/// (port 0 picks a free one).
pub async fn start(
    address: std::net::SocketAddr,
    metrics: Metrics,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
) -> std::io::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = metrics
            .serve(listener, tls, std::future::pending::<()>())
            .await
        {
            tracing::error!(error = %e, "metrics endpoint stopped");
        }
    });
    Ok(bound)
}

/// Seconds from milliseconds, for metrics in base units.
pub fn seconds_from_ms(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    impl MetricSource for Fixed {
        fn expose(&self, out: &mut Exposition<'_>) -> std::fmt::Result {
            out.counter(
                "sluice_test_records",
                "Records.",
                [(vec![("job", "job-1".to_string())], 7u64)],
            )?;
            out.gauge(
                "sluice_test_age_seconds",
                "Age.",
                [(vec![("job", "job-1".to_string())], 1.5f64)],
            )
        }
    }

    #[test]
    fn renders_counters_gauges_and_process_metrics() {
        let text = Metrics::new(Fixed).render();
        assert!(
            text.contains("# TYPE sluice_test_records_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("sluice_test_records_total{job=\"job-1\"} 7\n"),
            "{text}"
        );
        assert!(
            text.contains("sluice_test_age_seconds{job=\"job-1\"} 1.5\n"),
            "{text}"
        );
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(text.contains(name), "{name} missing from {text}");
        }
    }
}
