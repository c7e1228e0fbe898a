//! node: the `edge-node run` daemon, built then run. `builder.rs` builds each stage from the
//! validated config (plain pieces, nothing looping), `running.rs` runs them until SIGINT or
//! SIGTERM, then stops everything within a deadline. `edge-node dispatch` (the dispatcher
//! alone) is here too.
//!
//! Flow: ingest (`source`) → motion gate (`motion`) → the shared inference pool
//! (`inference::pool`) → per camera the tracker and rule engine → alerts and snapshots
//! into the outbox → the MQTT link (to `[mqtt]`, or the embedded broker started here) →
//! the in-process dispatcher when `[dispatch] enabled`. Every model loads at start, so a
//! broken install is reported at once. Every 10 s: per-camera detection counts in the log
//! and a fresh snapshot for the HTTP endpoints; every 30 s: retained camera and node
//! status. SIGHUP or the `reload` command re-read the config: a valid file is applied (only
//! changed cameras restart), an invalid one is reported and the running config stays.

use std::time::Duration;

use tracing::{info, warn};

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Config;
use crate::dispatch::service::DispatchService;
use crate::inference;
use crate::mqtt::LinkOptions;
use crate::outbox::{DiskGuard, OutboxError};

mod builder;
mod running;

pub use crate::shutdown::SHUTDOWN_DEADLINE;
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Inference(#[from] inference::OrtError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot listen for shutdown signals: {0}")]
    Signals(std::io::Error),
    #[error("cannot start GStreamer: {0}")]
    Gstreamer(String),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("{0}")]
    Tls(String),
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerError),
    #[error(transparent)]
    Dispatch(#[from] crate::dispatch::DispatchError),
    #[error(transparent)]
    DataDir(#[from] crate::datadir::LockError),
    #[error("http.listen {addr}: cannot listen: {source}; another process holds the port, or choose another address")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
}

/// Exit status when the node cannot have what it must own alone: its `data_dir` (another
/// instance holds it) or a listening port (`EX_CANTCREAT`).
pub const EXIT_IN_USE: u8 = 73;

impl NodeError {
    /// The process exit status for this error (see `edge-node --help`).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::DataDir(crate::datadir::LockError::InUse { .. }) | Self::Listen { .. } => EXIT_IN_USE,
            _ => 1,
        }
    }
}

/// Binds the HTTP listener at start: health checks depend on it, so a port that cannot be
/// bound stops the node with the reason instead of leaving it running without them.
fn bind_http(addr: std::net::SocketAddr) -> Result<std::net::TcpListener, NodeError> {
    std::net::TcpListener::bind(addr).map_err(|source| NodeError::Listen { addr, source })
}

pub use gridsight_base::mqtt::topics_of;

/// The path prefixes whose parts check credentials of their own: residents' reports and
/// their app, the inspectors' app and its order media.
fn own_credentials(reports: bool, app: bool) -> Vec<&'static str> {
    let mut own = Vec::new();
    if reports {
        own.extend([crate::dispatch::intake::PATH, crate::dispatch::apps::resident::PREFIX]);
    }
    if app {
        own.extend([crate::dispatch::apps::PREFIX, crate::dispatch::apps::ORDERS]);
    }
    own
}

/// How this node reaches its broker ([`gridsight_base::mqtt::link_options`]), starting the
/// embedded broker first when there is no `[mqtt]` and `start_embedded`.
pub fn broker_options(config: &Config, start_embedded: bool) -> Result<LinkOptions, NodeError> {
    if start_embedded && config.mqtt.is_none() {
        crate::broker::start(config.embedded_broker.unwrap_or_else(gridsight_base::mqtt::embedded_default))?;
    }
    gridsight_base::mqtt::link_options(config).map_err(NodeError::Tls)
}

/// The async runtime (2 workers) with the shutdown and reload signals installed in it.
fn runtime_with_signals(name: &str) -> Result<(tokio::runtime::Runtime, Signals), NodeError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name(name)
        .build()
        .map_err(NodeError::Runtime)?;
    let signals = {
        let _entered = rt.enter();
        Signals::install().map_err(NodeError::Signals)?
    };
    Ok((rt, signals))
}

/// `edge-node dispatch`: the dispatcher alone, for every node's alerts, until SIGINT/SIGTERM.
pub fn run_dispatch(config: Config, path: PathBuf) -> Result<(), NodeError> {
    let (rt, mut signals) = runtime_with_signals("dispatch")?;
    let lock = crate::datadir::DataDirLock::acquire(&config.storage.data_dir)?;
    let http = bind_http(config.http.listen)?;
    let topics = topics_of(&config);
    let base = broker_options(&config, true)?;
    let disk = DiskGuard::new(&config.storage.data_dir, config.storage.disk_reserve);
    // Residents' and inspectors' photos are searched for faces with the node's face model.
    let faces = crate::privacy::face_filter(&Arc::new(crate::privacy::Privacy::from_config(&config)));
    let service = {
        let _entered = rt.enter();
        DispatchService::start(
            &config,
            &base,
            &topics.all_alerts(),
            true,
            disk.clone(),
            faces.clone(),
            crate::clock::system(),
        )?
    };
    let stats = Arc::new(crate::dispatch::stats::collector(service.metrics.clone()));
    let disk_metrics =
        Arc::new(crate::telemetry::ScrapeCollector::new(move |m| crate::telemetry::disk_metrics(m, &disk)));
    // The inspectors' app, without the node's pictures (they stay on the nodes).
    let app = crate::dispatch::apps::InspectorApp::new(&config, service.dispatcher.clone(), None, faces).map(Arc::new);
    let users = Arc::new(std::sync::RwLock::new(config.http.users.clone()));
    let access = crate::telemetry::http::Access {
        token: config.http.token.clone(),
        users: users.clone(),
        own_credentials: own_credentials(service.intake.is_some(), app.is_some()),
    };
    if config.reports.is_some() {
        info!("residents' reports: POST /api/v1/reports, and MQTT <prefix>/dispatch/reports/in/<gateway>");
    }
    let mut routes = crate::telemetry::probes(service.link_stats(), None)
        .merge(crate::telemetry::metrics_route(move || {
            vec![
                Box::new(stats.clone()) as Box<dyn prometheus_client::collector::Collector>,
                Box::new(disk_metrics.clone()),
            ]
        }))
        .merge(crate::dispatch::reports::routes(service.dispatcher.clone()));
    if let Some(intake) = &service.intake {
        routes = routes.merge(crate::dispatch::intake::routes(intake.clone()));
        if let Some(residents) = crate::dispatch::apps::resident::ResidentApp::new(&config, service.dispatcher.clone())
        {
            routes = routes.merge(crate::dispatch::apps::resident::routes(Arc::new(residents)));
        }
    }
    if let Some(app) = &app {
        routes = routes.merge(crate::dispatch::apps::routes(app.clone()));
    }
    if let Some(fleet) = &service.fleet {
        routes =
            routes.merge(crate::dispatch::fleet::routes(fleet.clone())).merge(crate::dispatch::page::district_routes(
                config.node.name.clone(),
                service.link_stats(),
                service.dispatcher.clone(),
                service.metrics.clone(),
                fleet.clone(),
                config.dispatch.retention.as_secs(),
                config.http.nearby_cameras,
            ));
    }
    let addr = {
        let _entered = rt.enter();
        crate::telemetry::http::serve_on(http, routes, access)
    }
    .map_err(|source| NodeError::Listen { addr: config.http.listen, source })?;
    info!(listen = %addr, lock = %lock.path().display(), "http: /metrics /healthz /readyz");
    info!(node = %config.node.id, inspectors = config.grid.inspectors.len(), grids = config.grid.grids.len(), "dispatcher running");
    crate::systemd::notify("READY=1\nSTATUS=dispatching");
    // SIGHUP: the inspectors' tokens are read again (a lost phone's access ends at once);
    // other changes need a restart of the dispatcher (http.users_file is re-read too).
    let signal = rt.block_on(async {
        loop {
            tokio::select! {
                _ = signals.term.recv() => return "SIGTERM",
                _ = signals.int.recv() => return "SIGINT",
                _ = signals.hup.recv() => {
                    crate::systemd::reloading();
                    match (crate::config::load(&path), &app) {
                        (Ok(new), app) => {
                            use crate::RwLocked;
                            *users.write_locked() = new.http.users;
                            match app {
                                Some(app) => app.set_tokens(new.apps.inspector_tokens),
                                None => info!("SIGHUP: the dispatcher re-read http.users_file; it serves no inspectors' app"),
                            }
                        }
                        (Err(e), _) => warn!("config reload refused, keeping the running tokens: {e}"),
                    }
                    crate::systemd::notify("READY=1");
                }
            }
        }
    });
    info!(signal, "shutting down");
    crate::systemd::notify("STOPPING=1");
    rt.block_on(service.shutdown(Duration::from_secs(3)));
    rt.shutdown_timeout(Duration::from_secs(3));
    info!("stopped");
    Ok(())
}

/// Runs the node until a shutdown signal arrives: the builder turns the config into the
/// running pieces ([`builder::build`]), the runner answers commands, signals and timers
/// with them, then stops them in order ([`running::run`]). `path` is re-read on SIGHUP.
pub fn run(config: Config, path: PathBuf) -> Result<(), NodeError> {
    running::run(builder::build(config, path)?)
}

/// The signals the node answers: TERM and INT stop it, HUP reloads the config.
/// Install them (inside a tokio runtime) before any slow start-up work.
pub struct Signals {
    pub term: tokio::signal::unix::Signal,
    pub int: tokio::signal::unix::Signal,
    pub hup: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Resolves on SIGTERM or SIGINT, naming which.
    pub async fn shutdown(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
