//! node: the `edge-node run` daemon. Builds each stage from the validated config, runs
//! until SIGINT or SIGTERM, then stops everything within a deadline.
//!
//! Flow: ingest (`source`) → motion gate (`motion`) → the shared inference pool
//! (`inference::pool`) → per camera the tracker and rule engine → alerts and snapshots
//! into the outbox → the MQTT link (to `[mqtt]`, or the embedded broker started here) →
//! the in-process dispatcher when `[dispatch] enabled`. Every model loads at start, so a
//! broken install is reported at once. Every 10 s: per-camera detection counts in the log
//! and a fresh snapshot for the HTTP endpoints; every 30 s: retained camera and node
//! status. SIGHUP or the `reload` command re-read the config: a valid file is applied (only
//! changed cameras restart), an invalid one is reported and the running config stays.

use crate::Locked;
use std::time::Duration;

use tracing::{info, warn};

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use crate::alert::AlertSink;
use crate::config::{self, Config};
use crate::contract::{self, Topics};
use crate::control;

use crate::dispatch::service::DispatchService;
use crate::graph::{Emitter, Graph};
use crate::inference;
use crate::inference::InferencePool;
use crate::mqtt::{LinkOptions, MqttLink, RefusalLog};
use crate::outbox::{DiskGuard, DiskState, Kind, Message, Optional, Outbox, OutboxError};
use crate::rules::IncidentIds;
use crate::source::{CameraSpec, Ingest, IngestOptions};
use crate::telemetry::CameraRegistry;
use crate::telemetry::node::{
    MetricsSources, Snapshot, camera_status_json, disk_status, log_disk_change, node_metrics,
};

/// Valid commands waiting for the main loop; beyond this the sender is answered "busy".
const COMMAND_QUEUE: usize = 64;

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

/// Retained status per camera and for the node, through the outbox (a newer status
/// replaces an unsent older one).
/// Every camera's newest picture as a small retained JPEG (faces pixelated), for the
/// district page; a newer one replaces one not yet sent.
fn publish_thumbnails(config: &Config, topics: &Topics, live: &crate::live::LiveFrames, outbox: &Mutex<Outbox>) {
    let node = &config.node.id;
    let shots: Vec<Message> = config
        .cameras
        .iter()
        .filter(|c| c.here && c.enabled)
        .filter_map(|c| {
            let s = live.snapshot(&c.id, THUMBNAIL_WIDTH).ok()?;
            Some(Message {
                topic: topics.camera_thumbnail(node, &c.id),
                payload: s.jpeg,
                retain: true,
                kind: Kind::Snapshot,
            })
        })
        .collect();
    let mut out = outbox.locked();
    for m in &shots {
        // Optional: written only when the disk reserve kept for alerts stays free.
        if out.disk().is_some_and(|d| !d.admit(Optional::Thumbnail, m.payload.len() as u64 * 3)) {
            continue;
        }
        if let Err(e) = out.push_latest(m) {
            warn!(topic = %m.topic, "cannot store a thumbnail: {e}");
        }
    }
}

/// Width of the thumbnails published for the district page.
const THUMBNAIL_WIDTH: u32 = 160;

fn publish_status(
    config: &Config,
    shard: Option<&config::Shard>,
    topics: &Topics,
    ingest: &Ingest,
    outbox: &Mutex<Outbox>,
) {
    let node = &config.node.id;
    let at = crate::contract::time::now();
    let cams = ingest.status();
    let mut out = outbox.locked();
    for c in &cams {
        let v = camera_status_json(node, c, &at);
        let m = Message {
            topic: topics.camera_status(node, &c.id),
            payload: serde_json::to_vec(&v).unwrap_or_default(),
            retain: true,
            kind: Kind::Status,
        };
        if let Err(e) = out.push_latest(&m) {
            warn!(camera = %c.id, "cannot store camera status: {e}");
        }
    }
    let streaming = cams.iter().filter(|c| c.state.name() == "streaming").count();
    let v = contract::NodeStatus {
        schema: contract::Schema::new(),
        version: contract::Version1,
        node: node.to_string(),
        name: config.node.name.clone(),
        cameras: cams.len(),
        streaming,
        outbox_pending: out.len().unwrap_or(0),
        outbox_dropped_snapshots: out.dropped_snapshots,
        disk: out.disk().map(disk_status),
        shard: shard.map(|s| shard_status(s, &cams)),
        at: at.clone(),
    };
    let m = Message {
        topic: topics.node_status(node),
        payload: serde_json::to_vec(&v).unwrap_or_default(),
        retain: true,
        kind: Kind::Status,
    };
    if let Err(e) = out.push_latest(&m) {
        warn!("cannot store node status: {e}");
    }
}

/// The shard and the cameras this node runs (every camera ingest has is one it owns).
fn shard_status(s: &config::Shard, cams: &[crate::source::CameraStatus]) -> contract::ShardStatus {
    contract::ShardStatus {
        index: s.index,
        count: s.nodes.len(),
        nodes: s.nodes.clone(),
        cameras: cams.iter().map(|c| c.id.clone()).collect(),
    }
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
pub fn run_dispatch(config: Config) -> Result<(), NodeError> {
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
        DispatchService::start(&config, &base, &topics.all_alerts(), true, disk.clone(), faces.clone())?
    };
    let stats = Arc::new(crate::dispatch::stats::collector(service.metrics.clone()));
    let disk_metrics =
        Arc::new(crate::telemetry::ScrapeCollector::new(move |m| crate::telemetry::disk_metrics(m, &disk)));
    // The inspectors' app, without the node's pictures (they stay on the nodes).
    let app = crate::dispatch::apps::InspectorApp::new(&config, service.dispatcher.clone(), None, faces).map(Arc::new);
    let access = crate::telemetry::http::Access {
        token: config.http.token.clone(),
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
    if let Some(app) = app {
        routes = routes.merge(crate::dispatch::apps::routes(app));
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
    let signal = rt.block_on(signals.shutdown());
    info!(signal, "shutting down");
    crate::systemd::notify("STOPPING=1");
    rt.block_on(service.shutdown(Duration::from_secs(3)));
    rt.shutdown_timeout(Duration::from_secs(3));
    info!("stopped");
    Ok(())
}

/// The broker confirmed a message: alerts are logged (the demo shows them this way) and
/// counted per camera.
fn log_delivered(m: &Message, registry: &CameraRegistry) {
    if m.kind != Kind::Alert {
        return;
    }
    // Our own alert, read back with the type it was written with.
    let Ok(a) = serde_json::from_slice::<contract::Alert>(&m.payload) else { return };
    registry.camera(&a.camera).alerts_delivered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    info!(alert = %a.id, r#type = a.kind.name(), camera = %a.camera, category = %a.category, label = %a.label, zone = %or_dash(&a.zone), grid = %or_dash(&a.grid), "alert delivered (PUBACK)");
}

/// Ingest's view of the enabled cameras, each with the demand its core sets (`adaptive`).
fn camera_specs(config: &Config, cameras: &crate::camera::Cameras) -> Vec<CameraSpec> {
    config
        .cameras
        .iter()
        .filter(|c| c.here)
        .map(|c| CameraSpec { demand: cameras.demand(&c.id), ..CameraSpec::from_config(c, config) })
        .collect()
}

/// Runs the node until a shutdown signal arrives. `path` is re-read on SIGHUP.
pub fn run(config: Config, path: PathBuf) -> Result<(), NodeError> {
    // Signals first: a SIGTERM during start-up must still end in a clean shutdown.
    let (rt, mut signals) = runtime_with_signals("edge-node")?;
    // What this node must own alone, before anything starts.
    let lock = crate::datadir::DataDirLock::acquire(&config.storage.data_dir)?;
    let http = bind_http(config.http.listen)?;
    let tz = std::env::var("TZ").unwrap_or_else(|_| "system".into());
    info!(summary = %config.summary(), time_zone = %tz.trim_start_matches(':'), "starting");
    let (lib, _) = inference::init_runtime()?;
    info!(library = %lib.display(), "onnx runtime loaded");
    for (name, spec) in &config.models {
        info!(
            model = %name,
            family = %spec.family,
            file = %spec.path.file_name().unwrap_or_default().to_string_lossy(),
            input = format!("{}x{}{}", spec.input_size.0, spec.input_size.1, if spec.dynamic { " (dynamic)" } else { "" }),
            workers = config.inference.workers,
            "model ready"
        );
    }
    for cam in &config.cameras {
        info!(
            camera = %cam.id,
            url = %cam.url,
            enabled = cam.enabled,
            here = cam.here,
            decode = ?cam.decode,
            detect_fps = cam.detect_fps,
            cadence = %CameraSpec::from_config(cam, &config).cadence(),
            zones = cam.zones.len(),
            rules = cam.rules.len(),
            grid = config.grid_of(cam).unwrap_or("-"),
            "camera configured"
        );
    }

    // Alerts: written to the outbox first, published by the MQTT link.
    let outbox_path = config.storage.data_dir.join("outbox.db");
    let disk = DiskGuard::new(&config.storage.data_dir, config.storage.disk_reserve);
    let outbox =
        Arc::new(Mutex::new(Outbox::open(&outbox_path, config.storage.outbox_max_bytes)?.with_disk(disk.clone())));
    let pending = outbox.locked().len().unwrap_or(0);
    info!(path = %outbox_path.display(), pending, "outbox open");
    let topics = topics_of(&config);
    // Every picture that leaves the node is searched for faces on the whole frame first.
    let privacy = Arc::new(crate::privacy::Privacy::from_config(&config));
    let alerts = Arc::new(
        AlertSink::new(&config.node.id, topics.prefix(), Some(config.storage.snapshot_dir.clone()))
            .with_privacy(privacy.clone()),
    );
    let node = &config.node.id;
    let base = broker_options(&config, true)?;
    let mut link_opts = base.clone();
    let commands_topic = topics.commands(node);
    link_opts.subscriptions.push(commands_topic.clone());
    // Home Assistant's birth message makes the node publish its discovery configs again.
    let ha_birth = Arc::new(tokio::sync::Notify::new());
    let birth_topic = config.home_assistant.as_ref().map(|h| h.birth_topic.clone());
    if let Some(t) = &birth_topic {
        link_opts.subscriptions.push(t.clone());
    }
    let registry = Arc::new(CameraRegistry::default());
    // Commands: validated on the link's task; valid ones queue here (64; when full the
    // sender is answered "busy"), refusals are answered there within a budget.
    let (command_tx, mut command_rx) = tokio::sync::mpsc::channel::<control::Request>(COMMAND_QUEUE);
    let refusals = Arc::new(Mutex::new(RefusalLog::default()));
    let link = {
        let _entered = rt.enter();
        let gate = control::CommandGate::new(node, command_tx, refusals.clone());
        let (replies_out, reply_topic) = (outbox.clone(), topics.command_replies(node));
        MqttLink::start_with_inbound(
            link_opts,
            outbox.clone(),
            {
                let registry = registry.clone();
                Arc::new(move |m: &Message| log_delivered(m, &registry))
            },
            Arc::new({
                let birth = ha_birth.clone();
                move |topic: &str, payload: &[u8]| {
                    if birth_topic.as_deref() == Some(topic) {
                        if payload == b"online" {
                            birth.notify_one();
                        }
                        return true;
                    }
                    if let control::Admitted::Reply(v) = gate.admit(topic, payload) {
                        let m = Message {
                            topic: reply_topic.clone(),
                            payload: serde_json::to_vec(&v).unwrap_or_default(),
                            retain: false,
                            kind: Kind::Status,
                        };
                        if let Err(e) = replies_out.locked().push(&m) {
                            warn!("cannot store command reply: {e}");
                        }
                    }
                    true
                }
            }),
        )
    };
    let notify: Arc<dyn Fn() + Send + Sync> = {
        let n = link.notifier();
        Arc::new(move || n.notify_one())
    };
    let dispatch = if config.dispatch.enabled {
        let _entered = rt.enter();
        Some(DispatchService::start(
            &config,
            &base,
            &topics.alerts(node),
            false,
            disk.clone(),
            crate::privacy::face_filter(&privacy),
        )?)
    } else {
        info!("dispatch runs elsewhere ([dispatch] enabled = false)");
        None
    };

    // The per-camera stages, wired in one place (`graph`).
    let now_secs = std::time::SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let run = outbox.locked().next_incident_run(now_secs)?;
    // Event clips: every camera's recent stream, an MP4 around each alert.
    let clips = {
        let (outbox, notify, topics, node) = (outbox.clone(), notify.clone(), topics.clone(), node.to_string());
        crate::clips::Clips::start(
            &config,
            Some(disk.clone()),
            Arc::new(move |done: crate::clips::ClipDone| {
                // One message per alert the clip shows.
                let messages: Vec<Message> = done
                    .alerts
                    .iter()
                    .map(|alert| Message {
                        topic: topics.clip(&node, alert),
                        payload: serde_json::to_vec(&done.ready(&node, alert)).unwrap_or_default(),
                        retain: false,
                        kind: Kind::Status,
                    })
                    .collect();
                if let Err(e) = outbox.locked().push_all(&messages) {
                    warn!(alert = %done.alert, "cannot store the clip message: {e}");
                }
                notify();
            }),
        )
    };
    let graph = Graph::new(
        Arc::new(IncidentIds::new(run)),
        Emitter {
            node: config.node.id.clone(),
            alerts: alerts.clone(),
            outbox: outbox.clone(),
            registry: registry.clone(),
            notify: notify.clone(),
            clips: Some(clips.clone()),
            home_assistant: config.home_assistant.is_some().then(|| topics.clone()),
        },
    );
    let pool = Arc::new(InferencePool::start(&config.models, &config.inference, graph.on_detections())?);
    graph.apply(&config, &pool);
    let on_frame = graph.on_frame(pool.clone());
    let tap = {
        let clips = clips.clone();
        crate::source::UnitTap(Arc::new(move |camera: &Arc<str>, codec: &'static str, pts, key, data: &[u8]| {
            clips.unit(camera, codec, pts, key, data)
        }))
    };
    let options = IngestOptions { on_unit: Some(tap), ..IngestOptions::default() };
    let ingest = Ingest::start(camera_specs(&config, &graph.cameras), on_frame, options)
        .map_err(|e| NodeError::Gstreamer(e.to_string()))?;

    // HTTP: metrics, health, status.
    let snapshot: Arc<Mutex<Snapshot>> = Arc::default();
    {
        let (snap, stats, node_id) = (snapshot.clone(), link.stats.clone(), config.node.id.clone());
        let dispatch_metrics =
            dispatch.as_ref().map(|d| Arc::new(crate::dispatch::stats::collector(d.metrics.clone())));
        let sources = Arc::new(MetricsSources {
            cameras: ingest.status_reader(),
            counters: registry.clone(),
            graph: graph.cameras.clone(),
            pool: Arc::downgrade(&pool),
            link: link.stats.clone(),
            disk: disk.clone(),
            alerts: alerts.clone(),
            clips: Some(clips.clone()),
        });
        let node_collector = {
            let (snap, sources) = (snap.clone(), sources.clone());
            Arc::new(crate::telemetry::ScrapeCollector::new(move |m| node_metrics(m, &snap.locked(), &sources)))
        };
        let live = graph.live.clone();
        let page = crate::telemetry::page::NodePage {
            clips: clips.clone(),
            node: config.node.id.clone(),
            title: config.node.name.clone(),
            sources: sources.clone(),
            snapshot: snap.clone(),
            live: live.clone(),
            dispatch: dispatch
                .as_ref()
                .map(|d| (d.dispatcher.clone(), d.metrics.clone(), config.dispatch.retention.as_secs())),
        };
        let intake = dispatch.as_ref().and_then(|d| d.intake.clone());
        let media: Arc<dyn crate::dispatch::apps::Media> = Arc::new(crate::media::NodeMedia {
            node: config.node.id.clone(),
            alerts: sources.alerts.clone(),
            clips: clips.clone(),
            live: live.clone(),
        });
        let app = dispatch.as_ref().and_then(|d| {
            let faces = crate::privacy::face_filter(&privacy);
            crate::dispatch::apps::InspectorApp::new(&config, d.dispatcher.clone(), Some(media), faces).map(Arc::new)
        });
        let access = crate::telemetry::http::Access {
            token: config.http.token.clone(),
            own_credentials: own_credentials(intake.is_some(), app.is_some()),
        };
        let mut routes = crate::telemetry::probes(stats, Some(sources.disk.clone()))
            .merge(crate::telemetry::metrics_route(move || {
                let mut collectors: Vec<Box<dyn prometheus_client::collector::Collector>> =
                    vec![Box::new(node_collector.clone())];
                if let Some(d) = &dispatch_metrics {
                    collectors.push(Box::new(d.clone()));
                }
                collectors
            }))
            .merge(crate::telemetry::node::status_route(node_id, snap, sources.clone(), live.clone()))
            .merge(page.routes())
            .merge(crate::clips::routes(clips.clone()))
            .merge(crate::alert::routes(sources.alerts.clone()))
            .merge(crate::live::routes(live));
        if let Some(intake) = intake {
            routes = routes.merge(crate::dispatch::intake::routes(intake));
            let residents = dispatch
                .as_ref()
                .and_then(|d| crate::dispatch::apps::resident::ResidentApp::new(&config, d.dispatcher.clone()));
            if let Some(residents) = residents {
                info!("residents' app: /report/");
                routes = routes.merge(crate::dispatch::apps::resident::routes(Arc::new(residents)));
            }
        }
        if let Some(app) = app {
            info!("inspectors' app: /inspector/");
            routes = routes.merge(crate::dispatch::apps::routes(app));
        }
        let addr = {
            let _entered = rt.enter();
            crate::telemetry::http::serve_on(http, routes, access)
        }
        .map_err(|source| NodeError::Listen { addr: config.http.listen, source })?;
        info!(listen = %addr, lock = %lock.path().display(), "http: /metrics /healthz /readyz /status");
    }
    let refresh = |snapshot: &Mutex<Snapshot>| {
        let (outbox_pending, outbox_dropped_snapshots) = {
            let mut out = outbox.locked();
            out.maintain();
            (out.len().unwrap_or(0), out.dropped_snapshots)
        };
        *snapshot.locked() = Snapshot { outbox_pending, outbox_dropped_snapshots, at: crate::contract::time::now() };
    };
    refresh(&snapshot);
    // The shard as last loaded (a reload may change it).
    let mut shard_now = config.shard.clone();
    if let Some(s) = &shard_now {
        info!(index = s.index, count = s.nodes.len(), node = %config.node.id, "shard: running this node's share of the camera list");
    }
    let here = config.cameras.iter().filter(|c| c.here).count();
    info!(cameras = here, "running");
    crate::systemd::notify(&format!("READY=1\nSTATUS=running {here} cameras"));
    let mut ha_topics = publish_discovery(&config, &[], &outbox);
    // The config as last reloaded (discovery is published again from it).
    let mut latest: Option<Config> = None;
    notify();
    rt.block_on(async {
        let mut report = tokio::time::interval(std::time::Duration::from_secs(10));
        report.tick().await;
        let mut ticks = 0u64;
        let thumbnails_busy = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut last_disk = log_disk_change(&disk, DiskState::Ok);
        loop {
            tokio::select! {
                Some(first) = command_rx.recv() => {
                    // Everything queued is answered in one transaction (one disk sync).
                    let mut batch = vec![first];
                    while batch.len() < COMMAND_QUEUE && let Ok(req) = command_rx.try_recv() {
                        batch.push(req);
                    }
                    let reply_topic = topics.command_replies(node);
                    let mut out = Vec::with_capacity(batch.len());
                    for req in batch {
                        let result = match req.command {
                            control::Command::Ping => Ok("pong".to_string()),
                            control::Command::Status => {
                                publish_status(&config, shard_now.as_ref(), &topics, &ingest, &outbox);
                                Ok("status published".to_string())
                            }
                            control::Command::Reload => reload(&config, &path, &graph, &pool, &ingest, "command").map(|(summary, new)| {
                                shard_now = new.shard.clone();
                                ha_topics = publish_discovery(&new, &ha_topics, &outbox);
                                latest = Some(new);
                                summary
                            }),
                            control::Command::Snapshot => {
                                let camera = req.camera.as_deref().unwrap_or_default();
                                match graph.live.snapshot(camera, crate::alert::SNAPSHOT_MAX_WIDTH) {
                                    Ok(s) if !disk.admit(Optional::Snapshot, s.jpeg.len() as u64 * 3) => {
                                        Err("the disk is under the reserve kept for alerts: no snapshot is stored now".to_string())
                                    }
                                    Ok(s) => {
                                        let topic = topics.camera_snapshot(node, camera);
                                        let detail = format!("published to {topic}: frame of {}", crate::contract::time::rfc3339(s.wall));
                                        out.push(Message { topic, payload: s.jpeg, retain: false, kind: Kind::Snapshot });
                                        Ok(detail)
                                    }
                                    Err(e) => Err(format!("camera {camera}: {e}")),
                                }
                            }
                        };
                        info!(command = req.command.name(), id = req.id.as_deref().unwrap_or("-"), ok = result.is_ok(), "command");
                        let v = control::reply(node, req.id.as_deref(), Some(req.command), result.as_deref().map_err(String::as_str));
                        out.push(Message { topic: reply_topic.clone(), payload: serde_json::to_vec(&v).unwrap_or_default(), retain: false, kind: Kind::Status });
                    }
                    if let Err(e) = outbox.locked().push_all(&out) {
                        warn!(replies = out.len(), "cannot store command replies: {e}");
                    }
                    notify();
                }
                _ = report.tick() => {
                    // The loop is alive (systemd's WatchdogSec= restarts a node that hangs).
                    crate::systemd::notify("WATCHDOG=1");
                    refusals.locked().flush();
                    log_detections(&graph, &registry, &pool);
                    refresh(&snapshot);
                    last_disk = log_disk_change(&disk, last_disk);
                    ticks += 1;
                    clips.tick();
                    if ticks % 3 == 1 {
                        let c = &config.clips;
                        match crate::clips::prune(&c.dir, c.max_age, c.max_bytes) {
                            Ok((removed, _)) if removed > 0 => info!(removed, "old clips deleted"),
                            Err(e) if e.kind() != std::io::ErrorKind::NotFound => warn!(dir = %c.dir.display(), "cannot prune clips: {e}"),
                            _ => {}
                        }
                        publish_status(&config, shard_now.as_ref(), &topics, &ingest, &outbox);
                        // The face search of each thumbnail takes a while: on a thread of
                        // its own, one round at a time, never in this loop.
                        if !thumbnails_busy.swap(true, std::sync::atomic::Ordering::AcqRel) {
                            let (cfg, topics, live, outbox) =
                                (latest.clone().unwrap_or_else(|| config.clone()), topics.clone(), graph.live.clone(), outbox.clone());
                            let (busy, notify) = (thumbnails_busy.clone(), notify.clone());
                            let _ = std::thread::Builder::new().name("thumbnails".into()).spawn(move || {
                                publish_thumbnails(&cfg, &topics, &live, &outbox);
                                busy.store(false, std::sync::atomic::Ordering::Release);
                                notify();
                            });
                        }
                        notify();
                        let s = &config.storage;
                        match crate::alert::prune_snapshots(&s.snapshot_dir, s.snapshot_max_age, s.snapshot_max_bytes, std::time::SystemTime::now()) {
                            Ok((removed, _)) if removed > 0 => info!(removed, "old snapshots deleted"),
                            Err(e) if e.kind() != std::io::ErrorKind::NotFound => warn!(dir = %s.snapshot_dir.display(), "cannot prune snapshots: {e}"),
                            _ => {}
                        }
                    }
                }
                _ = signals.term.recv() => {
                    info!(signal = "SIGTERM", "shutting down");
                    crate::systemd::notify("STOPPING=1");
                    return Ok::<_, NodeError>(());
                }
                _ = signals.int.recv() => {
                    info!(signal = "SIGINT", "shutting down");
                    crate::systemd::notify("STOPPING=1");
                    return Ok(());
                }
                _ = signals.hup.recv() => {
                    if let Ok((_, new)) = reload(&config, &path, &graph, &pool, &ingest, "SIGHUP") {
                        shard_now = new.shard.clone();
                        ha_topics = publish_discovery(&new, &ha_topics, &outbox);
                        latest = Some(new);
                        notify();
                    }
                }
                _ = ha_birth.notified() => {
                    info!("home assistant is online: discovery published again");
                    ha_topics = publish_discovery(latest.as_ref().unwrap_or(&config), &ha_topics, &outbox);
                    notify();
                }
            }
        }
    })?;
    let stages = graph.stages();
    drop(graph);
    crate::shutdown::Running { rt, ingest, pool, stages, dispatch, link }.stop();
    Ok(())
}

/// Stores the Home Assistant discovery configs of `config` (and deletes those of `before`
/// it no longer has); returns the topics published.
fn publish_discovery(config: &Config, before: &[String], outbox: &Mutex<Outbox>) -> Vec<String> {
    let (messages, now) = match &config.home_assistant {
        Some(h) => (crate::ha::messages(config, h, before), crate::ha::config_topics(config, h)),
        None => (
            before
                .iter()
                .map(|t| Message { topic: t.clone(), payload: Vec::new(), retain: true, kind: Kind::Status })
                .collect(),
            Vec::new(),
        ),
    };
    let mut out = outbox.locked();
    for m in &messages {
        if let Err(e) = out.push_latest(m) {
            warn!(topic = %m.topic, "cannot store a discovery config: {e}");
        }
    }
    if !messages.is_empty() {
        info!(
            configs = now.len(),
            deleted = before.iter().filter(|t| !now.contains(t)).count(),
            "home assistant discovery stored"
        );
    }
    now
}

/// Re-reads the config file: a valid one is applied (only changed cameras restart), an
/// invalid one is reported and the running config stays.
fn reload(
    running: &Config,
    path: &std::path::Path,
    graph: &Graph,
    pool: &InferencePool,
    ingest: &Ingest,
    cause: &str,
) -> Result<(String, Config), String> {
    crate::systemd::reloading();
    let result = match config::load(path) {
        Ok(new) => {
            info!(summary = %new.summary(), cause, "config reloaded");
            if new.node.time_zone != running.node.time_zone {
                warn!("node.time_zone changed: it applies after a restart");
            }
            if new.node.id != running.node.id {
                warn!(running = %running.node.id, new = %new.node.id, "the node id changed (shard index or node list): topics keep the running id until a restart; the new share of cameras applies now");
            }
            graph.apply(&new, pool);
            ingest.apply(camera_specs(&new, &graph.cameras));
            Ok((new.summary(), new))
        }
        Err(e) => {
            warn!(cause, "config reload refused, keeping the running config: {e}");
            Err(format!("reload refused, running config kept: {e}"))
        }
    };
    crate::systemd::notify("READY=1");
    result
}

/// One line per camera: what detection found since the last report.
fn log_detections(graph: &Graph, registry: &CameraRegistry, pool: &InferencePool) {
    let found = std::mem::take(&mut *graph.found.locked());
    let mut ids = graph.cameras.ids();
    ids.sort();
    for id in ids {
        let f = found.get(&id);
        let objects = f
            .map(|f| f.objects.iter().map(|(l, n)| format!("{l}:{n}")).collect::<Vec<_>>().join(","))
            .unwrap_or_default();
        let frames = f.map_or(0, |f| f.frames);
        let infer_ms = f.filter(|f| f.frames > 0).map_or(0.0, |f| f.infer.as_secs_f64() * 1000.0 / f.frames as f64);
        let stats = pool.stats(&id).unwrap_or_default();
        let counters = registry.camera(&id);
        info!(
            camera = %id,
            frames,
            objects = if objects.is_empty() { "-" } else { objects.as_str() },
            faces = f.map_or(0, |f| f.faces),
            infer_ms = format!("{infer_ms:.1}"),
            skipped_motion = counters.skipped_motion.load(std::sync::atomic::Ordering::Relaxed),
            dropped_busy = stats.dropped_busy,
            "detections"
        );
    }
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
