//! telemetry: structured logs (tracing), and the HTTP endpoints (`http`): Prometheus
//! `/metrics`, `/healthz`, `/readyz`, `/status`. MQTT status topics are published by the node.

pub mod http;

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
