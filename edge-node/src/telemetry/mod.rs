//! telemetry: structured logs (tracing), and the HTTP endpoints (`http`): Prometheus
//! `/metrics`, `/healthz`, `/readyz`, `/status`. MQTT status topics are published by the node.

pub mod http;

use crate::RwLocked;
use std::str::FromStr;

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

/// Counters the node keeps per camera beside ingest's own (`source::Counters`) and the
/// inference pool's: frames the motion gate skipped, alerts stored, refused by the store,
/// and delivered. Monotonic for the life of the process (a reloaded camera keeps them).
#[derive(Debug, Default)]
pub struct CameraCounters {
    /// Intended: frames with no motion and no live track, not sent to inference.
    pub skipped_motion: std::sync::atomic::AtomicU64,
    pub alerts_stored: std::sync::atomic::AtomicU64,
    /// Unintended: the outbox refused the alert (it is lost; the log says why).
    pub alerts_failed: std::sync::atomic::AtomicU64,
    /// Acknowledged by the broker (PUBACK).
    pub alerts_delivered: std::sync::atomic::AtomicU64,
    /// Panics while tracking or evaluating this camera's rules (caught; its core restarted).
    pub panics: std::sync::atomic::AtomicU64,
}

/// Every camera's [`CameraCounters`], by camera id.
#[derive(Debug, Default)]
pub struct CameraRegistry {
    cameras: std::sync::RwLock<std::collections::BTreeMap<String, std::sync::Arc<CameraCounters>>>,
}

impl CameraRegistry {
    /// The camera's counters, created on first use.
    pub fn camera(&self, id: &str) -> std::sync::Arc<CameraCounters> {
        if let Some(c) = self.cameras.read_locked().get(id) {
            return c.clone();
        }
        self.cameras.write_locked().entry(id.to_string()).or_default().clone()
    }

    /// The camera's counters if it has any.
    pub fn get(&self, id: &str) -> Option<std::sync::Arc<CameraCounters>> {
        self.cameras.read_locked().get(id).cloned()
    }
}

/// Writes Prometheus text-format families (`# HELP`, `# TYPE`, samples).
#[derive(Default)]
pub struct MetricsText {
    out: String,
}

impl MetricsText {
    /// One family; each sample is (labels as `k="v"` pairs, value). Label values are escaped.
    pub fn family(&mut self, name: &str, help: &str, kind: &str, samples: &[(Vec<(&str, &str)>, f64)]) {
        use std::fmt::Write;
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect();
            let labels = if labels.is_empty() { String::new() } else { format!("{{{}}}", labels.join(",")) };
            let _ = writeln!(self.out, "{name}{labels} {v}");
        }
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
