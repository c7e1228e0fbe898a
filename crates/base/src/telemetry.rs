//! What the node and the dispatcher both show: structured logs (tracing), `/metrics`
//! families built on each scrape, the disk families, and the `/healthz` and `/readyz`
//! probes.

use crate::http;
use std::str::FromStr;
use std::sync::Arc;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// Logs to stderr, filtered by `GRIDSIGHT_LOG` (or `RUST_LOG`) in the form
/// `info` or `warn,edge_node=debug`. Default: `info,rumqttd=off` (add `rumqttd=warn` to see the embedded broker's own log).
pub fn init_logging() {
    let spec = std::env::var("GRIDSIGHT_LOG").or_else(|_| std::env::var("RUST_LOG")).unwrap_or_default();
    let filter = Targets::from_str(if spec.is_empty() { "info,rumqttd=off" } else { &spec }).unwrap_or_else(|e| {
        eprintln!("ignoring log filter {spec:?} ({e}); using info");
        Targets::new().with_default(tracing::Level::INFO)
    });
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false).with_ansi(false);
    let _ = tracing_subscriber::registry().with(fmt.with_filter(filter)).try_init();
}

/// The disk families of `/metrics` (node and dispatcher): free space, the reserve, its
/// state, and what each kind of optional write skipped or deleted to keep the reserve.
pub fn disk_metrics(m: &mut MetricsText, disk: &crate::outbox::DiskGuard) {
    use crate::outbox::{DiskState, Optional};
    m.family(
        "gridsight_snapshots_skipped_total",
        "Snapshots not stored because the disk was under its reserve (the alert was stored).",
        "counter",
        &[(vec![("reason", "disk_low")], disk.skipped(Optional::Snapshot) as f64)],
    );
    m.family(
        "gridsight_snapshot_files_dropped_total",
        "Snapshot files deleted early to keep the disk reserve.",
        "counter",
        &[(vec![], disk.deleted(Optional::Snapshot) as f64)],
    );
    m.family(
        "gridsight_disk_skipped_total",
        "Optional writes (snapshots, clips, thumbnails, residents' photos and audio) left out because the disk was under its reserve; alerts never are.",
        "counter",
        &Optional::ALL.map(|k| (vec![("kind", k.name())], disk.skipped(k) as f64)),
    );
    m.family(
        "gridsight_disk_deleted_total",
        "Optional files deleted early, oldest first, to keep the disk reserve.",
        "counter",
        &Optional::ALL.map(|k| (vec![("kind", k.name())], disk.deleted(k) as f64)),
    );
    let free = disk.free();
    let state = free.map_or(DiskState::Ok, |f| disk.state_of(f));
    m.family(
        "gridsight_disk_free_bytes",
        "Free bytes on the filesystem of data_dir.",
        "gauge",
        &[(vec![], free.unwrap_or(0) as f64)],
    );
    m.family(
        "gridsight_disk_reserve_bytes",
        "Free bytes kept for alerts (storage.disk_reserve).",
        "gauge",
        &[(vec![], disk.reserve() as f64)],
    );
    m.family(
        "gridsight_disk_state",
        "1 for the disk's state: ok, low (snapshots, clips, thumbnails not stored) or full (alerts at risk).",
        "gauge",
        &[DiskState::Ok, DiskState::Low, DiskState::Full]
            .map(|st| (vec![("state", st.name())], f64::from(u8::from(st == state)))),
    );
}

/// Metric families computed on each scrape (figures live in the stages; nothing is
/// copied into metric objects between scrapes), encoded by `prometheus-client`.
pub struct MetricsText<'a, 'b> {
    encoder: &'a mut prometheus_client::encoding::DescriptorEncoder<'b>,
    result: std::fmt::Result,
}

impl MetricsText<'_, '_> {
    /// One family of `kind` `"counter"` or `"gauge"`; each sample is (labels, value). A
    /// counter's `name` may end in `_total` (the encoder writes the suffix itself).
    pub fn family(&mut self, name: &str, help: &str, kind: &str, samples: &[(Vec<(&str, &str)>, f64)]) {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        use prometheus_client::metrics::{MetricType, TypedMetric};
        if self.result.is_err() {
            return;
        }
        let counter = kind == "counter";
        let (name, metric_type) = if counter {
            (name.strip_suffix("_total").unwrap_or(name), ConstCounter::<f64>::TYPE)
        } else {
            (name, MetricType::Gauge)
        };
        // Whole numbers print as integers (`3`, not `3.0`).
        let encode = |v: f64, m: prometheus_client::encoding::MetricEncoder| -> std::fmt::Result {
            let whole = v.fract() == 0.0 && v.abs() < 9.0e15;
            match (counter, whole) {
                (true, true) => ConstCounter::new(v.max(0.0) as u64).encode(m),
                (true, false) => ConstCounter::new(v).encode(m),
                (false, true) => ConstGauge::new(v as i64).encode(m),
                (false, false) => ConstGauge::new(v).encode(m),
            }
        };
        self.result = (|| {
            let mut family = self.encoder.encode_descriptor(name, help, None, metric_type)?;
            match samples {
                // One sample without labels: `name value`, not `name{} value`.
                [(labels, v)] if labels.is_empty() => encode(*v, family)?,
                _ => {
                    for (labels, v) in samples {
                        encode(*v, family.encode_family(labels)?)?;
                    }
                }
            }
            Ok(())
        })();
    }
}

/// A collector that builds its families when scraped.
pub struct ScrapeCollector(Box<dyn Fn(&mut MetricsText) + Send + Sync>);

impl ScrapeCollector {
    pub fn new(f: impl Fn(&mut MetricsText) + Send + Sync + 'static) -> Self {
        Self(Box::new(f))
    }
}

impl std::fmt::Debug for ScrapeCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScrapeCollector")
    }
}

impl prometheus_client::collector::Collector for ScrapeCollector {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>) -> std::fmt::Result {
        let mut m = MetricsText { encoder: &mut encoder, result: Ok(()) };
        (self.0)(&mut m);
        m.result
    }
}

/// `/metrics` for a scraper: OpenMetrics when its `Accept` asks for it, else the classic
/// text format (what curl and `promtool check metrics` read).
pub fn metrics_response(
    accept: &str,
    collectors: Vec<Box<dyn prometheus_client::collector::Collector>>,
) -> (u16, &'static str, String) {
    let om = render(collectors);
    if http::wants_openmetrics(accept) {
        (200, OPENMETRICS, om)
    } else {
        (200, "text/plain; version=0.0.4; charset=utf-8", http::openmetrics_to_text(&om))
    }
}

/// Content type of [`render`]'s output.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The OpenMetrics text of every collector given (in order).
pub fn render(collectors: Vec<Box<dyn prometheus_client::collector::Collector>>) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    for c in collectors {
        registry.register_collector(c);
    }
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::warn!("cannot encode metrics: {e:?}");
    }
    out
}

/// `GET /healthz` (200 while the process runs) and `/readyz` (200 once connected to the
/// broker and while the disk has room for alerts; 503 with the reason otherwise).
pub fn probes(link: Arc<crate::mqtt::LinkStats>, disk: Option<crate::outbox::DiskGuard>) -> axum::Router {
    use http::{Get, get};
    let answer = move |path: &'static str| {
        let (link, disk) = (link.clone(), disk.clone());
        get(move |_: &Get| health(path, &link, disk.as_ref()).expect("a probe path").into())
    };
    axum::Router::new().route("/healthz", answer("/healthz")).route("/readyz", answer("/readyz"))
}

/// `GET /metrics` of what `collectors` gives on each scrape (OpenMetrics when asked for).
pub fn metrics_route<F>(collectors: F) -> axum::Router
where
    F: Fn() -> Vec<Box<dyn prometheus_client::collector::Collector>> + Clone + Send + Sync + 'static,
{
    axum::Router::new()
        .route("/metrics", http::get(move |g: &http::Get| metrics_response(&g.accept, collectors()).into()))
}

/// `/healthz` and `/readyz`: ready once connected to the broker and while the disk has
/// room for alerts (a low disk is said, still ready: alerts are stored, snapshots are not).
pub fn health(
    path: &str,
    link: &crate::mqtt::LinkStats,
    disk: Option<&crate::outbox::DiskGuard>,
) -> Option<(u16, &'static str, String)> {
    match path {
        "/healthz" => Some((200, "text/plain", "ok\n".into())),
        "/readyz" => {
            let disk = disk.and_then(|d| Some((d.free()?, d.reserve(), d)));
            Some(match disk {
                _ if !link.connected.load(std::sync::atomic::Ordering::SeqCst) => {
                    (503, "text/plain", "not connected to the MQTT broker\n".into())
                }
                Some((free, reserve, d)) if d.state_of(free) == crate::outbox::DiskState::Full => (
                    503,
                    "text/plain",
                    format!("disk full: {free} bytes free, {reserve} reserved for alerts; alerts are at risk\n"),
                ),
                Some((free, reserve, d)) if d.state_of(free) == crate::outbox::DiskState::Low => (
                    200,
                    "text/plain",
                    format!(
                        "ready; disk low: {free} bytes free of the {reserve} reserved for alerts; snapshots, clips and thumbnails are not stored\n"
                    ),
                ),
                _ => (200, "text/plain", "ready\n".into()),
            })
        }
        _ => None,
    }
}
