//! The node's runner: answers commands, signals and the timers with the pieces the builder
//! made (`reload` and SIGHUP re-read the config and apply it; every 10 s the detection log,
//! the outbox figures and the watchdog; every 30 s the retained status, thumbnails and
//! retention), then stops everything in order within one deadline.

use crate::{Locked, RwLocked};

use tracing::{info, warn};

use std::sync::{Arc, Mutex};

use crate::config::{self, Config};
use crate::contract::{self, Topics};
use crate::control;
use crate::graph::Graph;
use crate::inference::InferencePool;
use crate::outbox::{DiskState, Kind, Message, Optional, Outbox};
use crate::source::Ingest;
use crate::telemetry::CameraRegistry;
use crate::telemetry::node::{Snapshot, camera_status_json, disk_status, log_disk_change};

use super::NodeError;
use super::builder::{COMMAND_QUEUE, Pieces, camera_specs};

/// Runs the pieces until SIGTERM or SIGINT, then stops them.
pub(super) fn run(pieces: Pieces) -> Result<(), NodeError> {
    let Pieces {
        rt,
        mut signals,
        lock: _lock,
        config,
        path,
        topics,
        outbox,
        disk,
        link,
        refusals,
        mut commands,
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
    } = pieces;
    let mut runner = Runner {
        ha_topics: publish_discovery(&config, &[], &outbox),
        shard_now: config.shard.clone(),
        latest: None,
        config,
        path,
        topics,
        outbox,
        disk,
        refusals,
        registry,
        notify,
        clips,
        graph,
        pool,
        ingest,
        snapshot,
        inspector_app,
        users,
        ticks: 0,
        thumbnails_busy: Arc::default(),
        last_disk: DiskState::Ok,
    };
    runner.refresh();
    runner.last_disk = log_disk_change(&runner.disk, DiskState::Ok);
    if let Some(s) = &runner.shard_now {
        info!(index = s.index, count = s.nodes.len(), node = %runner.config.node.id, "shard: running this node's share of the camera list");
    }
    let here = runner.config.cameras.iter().filter(|c| c.here).count();
    info!(cameras = here, "running");
    crate::systemd::notify(&format!("READY=1\nSTATUS=running {here} cameras"));
    (runner.notify)();
    rt.block_on(async {
        let mut report = tokio::time::interval(std::time::Duration::from_secs(10));
        report.tick().await;
        loop {
            tokio::select! {
                Some(first) = commands.recv() => {
                    // Everything queued is answered in one transaction (one disk sync).
                    let mut batch = vec![first];
                    while batch.len() < COMMAND_QUEUE && let Ok(req) = commands.try_recv() {
                        batch.push(req);
                    }
                    runner.answer(batch);
                }
                _ = report.tick() => runner.tick(),
                _ = signals.term.recv() => return runner.stopping("SIGTERM"),
                _ = signals.int.recv() => return runner.stopping("SIGINT"),
                _ = signals.hup.recv() => {
                    let _ = runner.reload("SIGHUP");
                }
                _ = ha_birth.notified() => {
                    info!("home assistant is online: discovery published again");
                    runner.ha_topics =
                        publish_discovery(runner.latest.as_ref().unwrap_or(&runner.config), &runner.ha_topics, &runner.outbox);
                    (runner.notify)();
                }
            }
        }
    })?;
    let Runner { graph, ingest, pool, .. } = runner;
    let stages = graph.stages();
    drop(graph);
    crate::shutdown::Running { rt, ingest, pool, stages, dispatch, link }.stop();
    Ok(())
}

/// The running node: the pieces the main loop works with, and what it keeps between turns.
struct Runner {
    config: Config,
    path: std::path::PathBuf,
    topics: Topics,
    outbox: Arc<Mutex<Outbox>>,
    disk: crate::outbox::DiskGuard,
    refusals: Arc<Mutex<crate::mqtt::RefusalLog>>,
    registry: Arc<CameraRegistry>,
    notify: Arc<dyn Fn() + Send + Sync>,
    clips: Arc<crate::clips::Clips>,
    graph: Graph,
    pool: Arc<InferencePool>,
    ingest: Ingest,
    snapshot: Arc<Mutex<Snapshot>>,
    inspector_app: Option<Arc<crate::dispatch::apps::InspectorApp>>,
    /// The HTTP listener's named credentials.
    users: Arc<std::sync::RwLock<Vec<config::User>>>,
    /// The shard as last loaded (a reload may change it).
    shard_now: Option<config::Shard>,
    /// The Home Assistant discovery topics published.
    ha_topics: Vec<String>,
    /// The config as last reloaded (discovery and thumbnails follow it).
    latest: Option<Config>,
    /// 10 s reports so far.
    ticks: u64,
    /// A round of thumbnails is being made (on a thread of its own).
    thumbnails_busy: Arc<std::sync::atomic::AtomicBool>,
    last_disk: DiskState,
}

impl Runner {
    fn node(&self) -> &str {
        &self.config.node.id
    }

    /// The outbox figures the HTTP endpoints show.
    fn refresh(&self) {
        let (outbox_pending, outbox_dropped_snapshots) = {
            let mut out = self.outbox.locked();
            out.maintain();
            (out.len().unwrap_or(0), out.dropped_snapshots)
        };
        *self.snapshot.locked() =
            Snapshot { outbox_pending, outbox_dropped_snapshots, at: crate::contract::time::now() };
    }

    fn stopping(&self, signal: &str) -> Result<(), NodeError> {
        info!(signal, "shutting down");
        crate::systemd::notify("STOPPING=1");
        Ok(())
    }

    /// Re-reads the config ([`reload`]) and follows it: the shard, discovery, thumbnails.
    fn reload(&mut self, cause: &str) -> Result<String, String> {
        let (summary, new) = reload(&self.config, &self.path, &self.graph, &self.pool, &self.ingest, cause)?;
        self.shard_now = new.shard.clone();
        self.ha_topics = publish_discovery(&new, &self.ha_topics, &self.outbox);
        // A credential taken out of http.users_file ends at once (its open views go on
        // until they close; new requests are refused).
        *self.users.write_locked() = new.http.users.clone();
        match &self.inspector_app {
            Some(app) => app.set_tokens(new.apps.inspector_tokens.clone()),
            None if !new.apps.inspector_tokens.is_empty() => {
                warn!("apps.inspector_tokens is new: the inspectors' app starts with the next restart")
            }
            None => {}
        }
        self.latest = Some(new);
        (self.notify)();
        Ok(summary)
    }

    /// Answers a batch of valid commands, every reply in one outbox transaction.
    fn answer(&mut self, batch: Vec<control::Request>) {
        let node = self.node().to_string();
        let reply_topic = self.topics.command_replies(&node);
        let mut out = Vec::with_capacity(batch.len());
        for req in batch {
            let result = match req.command {
                control::Command::Ping => Ok("pong".to_string()),
                control::Command::Status => {
                    publish_status(
                        &self.config,
                        self.shard_now.as_ref(),
                        &self.topics,
                        &self.ingest,
                        &self.outbox,
                        &self.registry,
                    );
                    Ok("status published".to_string())
                }
                control::Command::Reload => self.reload("command"),
                control::Command::Snapshot => {
                    let camera = req.camera.as_deref().unwrap_or_default();
                    match self.graph.live.snapshot(camera, crate::alert::SNAPSHOT_MAX_WIDTH) {
                        Ok(s) if !self.disk.admit(Optional::Snapshot, s.jpeg.len() as u64 * 3) => {
                            Err("the disk is under the reserve kept for alerts: no snapshot is stored now".to_string())
                        }
                        Ok(s) => {
                            let topic = self.topics.camera_snapshot(&node, camera);
                            let detail =
                                format!("published to {topic}: frame of {}", crate::contract::time::rfc3339(s.wall));
                            out.push(Message { topic, payload: s.jpeg, retain: false, kind: Kind::Snapshot });
                            Ok(detail)
                        }
                        Err(e) => Err(format!("camera {camera}: {e}")),
                    }
                }
            };
            info!(command = req.command.name(), id = req.id.as_deref().unwrap_or("-"), ok = result.is_ok(), "command");
            let v =
                control::reply(&node, req.id.as_deref(), Some(req.command), result.as_deref().map_err(String::as_str));
            out.push(Message {
                topic: reply_topic.clone(),
                payload: serde_json::to_vec(&v).unwrap_or_default(),
                retain: false,
                kind: Kind::Status,
            });
        }
        if let Err(e) = self.outbox.locked().push_all(&out) {
            warn!(replies = out.len(), "cannot store command replies: {e}");
        }
        (self.notify)();
    }

    /// Every 10 s: the watchdog, the detection log, the outbox figures, the disk; every
    /// 30 s also retention, the retained status and a round of thumbnails.
    fn tick(&mut self) {
        // The loop is alive (systemd's WatchdogSec= restarts a node that hangs).
        crate::systemd::notify("WATCHDOG=1");
        self.refusals.locked().flush();
        log_detections(&self.graph, &self.registry, &self.pool);
        self.refresh();
        self.last_disk = log_disk_change(&self.disk, self.last_disk);
        self.ticks += 1;
        self.clips.tick();
        if self.ticks % 3 != 1 {
            return;
        }
        let c = &self.config.clips;
        match crate::clips::prune(&c.dir, c.max_age, c.max_bytes) {
            Ok((removed, _)) if removed > 0 => info!(removed, "old clips deleted"),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                warn!(dir = %c.dir.display(), "cannot prune clips: {e}")
            }
            _ => {}
        }
        publish_status(&self.config, self.shard_now.as_ref(), &self.topics, &self.ingest, &self.outbox, &self.registry);
        // The face search of each thumbnail takes a while: on a thread of its own, one
        // round at a time, never in this loop.
        if !self.thumbnails_busy.swap(true, std::sync::atomic::Ordering::AcqRel) {
            let cfg = self.latest.clone().unwrap_or_else(|| self.config.clone());
            let (topics, live, outbox) = (self.topics.clone(), self.graph.live.clone(), self.outbox.clone());
            let (busy, notify) = (self.thumbnails_busy.clone(), self.notify.clone());
            let _ = std::thread::Builder::new().name("thumbnails".into()).spawn(move || {
                publish_thumbnails(&cfg, &topics, &live, &outbox);
                busy.store(false, std::sync::atomic::Ordering::Release);
                notify();
            });
        }
        (self.notify)();
        let s = &self.config.storage;
        match crate::alert::prune_snapshots(
            &s.snapshot_dir,
            s.snapshot_max_age,
            s.snapshot_max_bytes,
            std::time::SystemTime::now(),
        ) {
            Ok((removed, _)) if removed > 0 => info!(removed, "old snapshots deleted"),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                warn!(dir = %s.snapshot_dir.display(), "cannot prune snapshots: {e}")
            }
            _ => {}
        }
    }
}

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

/// Retained status per camera and for the node, through the outbox (a newer status
/// replaces an unsent older one).
fn publish_status(
    config: &Config,
    shard: Option<&config::Shard>,
    topics: &Topics,
    ingest: &Ingest,
    outbox: &Mutex<Outbox>,
    registry: &CameraRegistry,
) {
    let node = &config.node.id;
    let at = crate::contract::time::now();
    let cams = ingest.status();
    let mut out = outbox.locked();
    for c in &cams {
        let v = camera_status_json(node, c, &at, registry);
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
    let streaming = cams.iter().filter(|c| c.state == crate::source::CameraState::Streaming).count();
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
        http: config.http.public_url.clone(),
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
        info!(
            camera = %id,
            frames,
            objects = if objects.is_empty() { "-" } else { objects.as_str() },
            faces = f.map_or(0, |f| f.faces),
            infer_ms = format!("{infer_ms:.1}"),
            skipped_motion = registry.drops.count(&id, crate::drops::Dropped::NoMotion),
            dropped_busy = stats.dropped_busy,
            "detections"
        );
    }
}
