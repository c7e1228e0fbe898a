//! The node's builder: turns the validated config into the running pieces, in start-up
//! order (signals, the `data_dir` lock and the HTTP port first; the ONNX Runtime and every
//! model; the outbox; the MQTT link with its command gate; the in-process dispatcher; the
//! clips worker; the stage graph and the inference pool; ingest; the HTTP routes). Nothing
//! here loops: [`super::running`] runs what this returns.

use crate::Locked;

use tracing::{info, warn};

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use crate::alert::AlertSink;
use crate::config::Config;
use crate::contract::{self, Topics};
use crate::control;
use crate::dispatch::service::DispatchService;
use crate::graph::{Emitter, Graph};
use crate::inference;
use crate::inference::InferencePool;
use crate::mqtt::{MqttLink, RefusalLog};
use crate::outbox::{DiskGuard, Kind, Message, Outbox};
use crate::rules::IncidentIds;
use crate::source::{CameraSpec, Ingest, IngestOptions};
use crate::telemetry::CameraRegistry;
use crate::telemetry::node::{MetricsSources, Snapshot, node_metrics};

use super::{NodeError, Signals, bind_http, broker_options, own_credentials, runtime_with_signals, topics_of};

/// Valid commands waiting for the main loop; beyond this the sender is answered "busy".
pub(super) const COMMAND_QUEUE: usize = 64;

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
pub(super) fn camera_specs(config: &Config, cameras: &crate::camera::Cameras) -> Vec<CameraSpec> {
    config
        .cameras
        .iter()
        .filter(|c| c.here)
        .map(|c| CameraSpec { demand: cameras.demand(&c.id), ..CameraSpec::from_config(c, config) })
        .collect()
}

/// What the builder made, for the runner: plain values and handles, nothing running a loop
/// of its own that the runner does not stop.
pub(super) struct Pieces {
    pub rt: tokio::runtime::Runtime,
    pub signals: Signals,
    /// Held for the life of the process: one node per `data_dir`.
    pub lock: crate::datadir::DataDirLock,
    pub config: Config,
    /// The config file, re-read on SIGHUP and the `reload` command.
    pub path: PathBuf,
    pub topics: Topics,
    pub outbox: Arc<Mutex<Outbox>>,
    pub disk: DiskGuard,
    pub link: MqttLink,
    /// Command refusals answered on the link's task, logged in batches.
    pub refusals: Arc<Mutex<RefusalLog>>,
    /// Valid commands, in order, for the runner.
    pub commands: tokio::sync::mpsc::Receiver<control::Request>,
    /// Home Assistant's birth message (discovery is published again).
    pub ha_birth: Arc<tokio::sync::Notify>,
    pub registry: Arc<CameraRegistry>,
    /// Wakes the link when the outbox has something new.
    pub notify: Arc<dyn Fn() + Send + Sync>,
    pub dispatch: Option<DispatchService>,
    pub clips: Arc<crate::clips::Clips>,
    pub graph: Graph,
    pub pool: Arc<InferencePool>,
    pub ingest: Ingest,
    /// What the HTTP endpoints show of the outbox, refreshed by the runner.
    pub snapshot: Arc<Mutex<Snapshot>>,
    /// The inspectors' app, when served (a reload gives it the new tokens).
    pub inspector_app: Option<Arc<crate::dispatch::apps::InspectorApp>>,
    /// The HTTP listener's named credentials (a reload replaces them).
    pub users: Arc<std::sync::RwLock<Vec<crate::config::User>>>,
}

/// Builds every piece of the node from `config`, or says why it cannot start.
pub(super) fn build(config: Config, path: PathBuf) -> Result<Pieces, NodeError> {
    // Signals first: a SIGTERM during start-up must still end in a clean shutdown.
    let (rt, signals) = runtime_with_signals("edge-node")?;
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
        let spec = CameraSpec::from_config(cam, &config);
        if cam.decode == crate::config::DecodeMode::Keyframes && !spec.delta_rules.is_empty() {
            warn!(camera = %cam.id, cadence = %spec.cadence(), "decode = \"keyframes\" starves rules that need more than key frames");
        }
        info!(
            camera = %cam.id,
            url = %cam.url,
            enabled = cam.enabled,
            here = cam.here,
            decode = ?cam.decode,
            detect_fps = cam.detect_fps,
            cadence = %spec.cadence(),
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
    let (command_tx, commands) = tokio::sync::mpsc::channel::<control::Request>(COMMAND_QUEUE);
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
            crate::clock::system(),
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
    let pool = Arc::new(InferencePool::start(
        &config.models,
        &config.inference,
        graph.on_detections(),
        registry.drops.clone(),
    )?);
    graph.apply(&config, &pool);
    let on_frame = graph.on_frame(pool.clone());
    let tap = {
        let (clips, video) = (clips.clone(), graph.video.clone());
        crate::source::UnitTap(Arc::new(move |camera: &Arc<str>, codec: &'static str, pts, key, data: &[u8]| {
            clips.unit(camera, codec, pts, key, data);
            video.unit(camera, codec, pts, key, data);
        }))
    };
    let options = IngestOptions { on_unit: Some(tap), drops: registry.drops.clone(), ..IngestOptions::default() };
    let ingest = Ingest::start(camera_specs(&config, &graph.cameras), on_frame, options)
        .map_err(|e| NodeError::Gstreamer(e.to_string()))?;

    // HTTP: metrics, health, status.
    let snapshot: Arc<Mutex<Snapshot>> = Arc::default();
    let users = Arc::new(std::sync::RwLock::new(config.http.users.clone()));
    let inspector_app = {
        let (snap, stats, node_id) = (snapshot.clone(), link.stats.clone(), config.node.id.clone());
        let dispatch_metrics =
            dispatch.as_ref().map(|d| Arc::new(crate::dispatch::stats::collector(d.metrics.clone())));
        let sources = Arc::new(MetricsSources {
            cameras: ingest.status_reader(),
            counters: registry.clone(),
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
            nearby: config.http.nearby_cameras,
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
            users: users.clone(),
            own_credentials: own_credentials(intake.is_some(), app.is_some()),
        };
        // Raw live video, and the audit of every view (to disk and to the district).
        let audit = {
            let (outbox, notify, topic) = (outbox.clone(), notify.clone(), topics.live_audit(&config.node.id));
            Arc::new(crate::video::access::Audit::new(
                &config.node.id,
                &config.storage.data_dir,
                Box::new(move |view: &crate::contract::LiveView| {
                    let message = Message {
                        topic: topic.clone(),
                        payload: serde_json::to_vec(view).unwrap_or_default(),
                        retain: false,
                        kind: Kind::Status,
                    };
                    if let Err(e) = outbox.locked().push_all(&[message]) {
                        warn!("cannot store the live-view audit message: {e}");
                    }
                    notify();
                }),
            ))
        };
        let video_collector = {
            let (video, audit) = (graph.video.clone(), audit.clone());
            Arc::new(crate::telemetry::ScrapeCollector::new(move |m| crate::video::access::metrics(m, &video, &audit)))
        };
        let mut routes = crate::telemetry::probes(stats, Some(sources.disk.clone()))
            .merge(crate::telemetry::metrics_route(move || {
                let mut collectors: Vec<Box<dyn prometheus_client::collector::Collector>> =
                    vec![Box::new(node_collector.clone()), Box::new(video_collector.clone())];
                if let Some(d) = &dispatch_metrics {
                    collectors.push(Box::new(d.clone()));
                }
                collectors
            }))
            .merge(crate::telemetry::node::status_route(node_id, snap, sources.clone(), live.clone()))
            .merge(page.routes())
            .merge(crate::clips::routes(clips.clone()))
            .merge(crate::alert::routes(sources.alerts.clone()))
            .merge(crate::live::routes(live))
            .merge(crate::video::access::routes(graph.video.clone(), audit));
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
        if let Some(app) = &app {
            info!("inspectors' app: /inspector/");
            routes = routes.merge(crate::dispatch::apps::routes(app.clone()));
        }
        let addr = {
            let _entered = rt.enter();
            crate::telemetry::http::serve_on(http, routes, access)
        }
        .map_err(|source| NodeError::Listen { addr: config.http.listen, source })?;
        info!(listen = %addr, lock = %lock.path().display(), "http: /metrics /healthz /readyz /status");
        app
    };
    Ok(Pieces {
        rt,
        signals,
        lock,
        config,
        path,
        topics,
        outbox,
        disk,
        link,
        refusals,
        commands,
        ha_birth,
        registry,
        notify,
        dispatch,
        clips,
        graph,
        pool,
        ingest,
        snapshot,
        inspector_app,
        users,
    })
}
