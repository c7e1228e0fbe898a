//! The dispatcher on the broker: in-process with `edge-node run` (this node's alerts) or
//! alone as `edge-node dispatch` (every node's alerts).
//!
//! Its MQTT session is persistent (clean session off) and QoS 1 with manual acks: the broker
//! keeps alerts published while the dispatcher is down, and an alert is acknowledged only
//! after the transaction that handled it has committed, so a crash means redelivery (and
//! the alert id makes that harmless), never loss. Order events go out through the outbox
//! in the dispatcher's own database (`<data_dir>/dispatch.db`).

use crate::Locked;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use tokio::sync::Notify;
use tracing::{info, warn};

use super::{AlertOutcome, Dispatcher, stats};
use crate::config::Config;
use crate::mqtt::{LinkOptions, MqttLink, RefusalLog};
use crate::outbox::{DiskGuard, Kind, Message, Outbox};

pub struct DispatchService {
    pub dispatcher: Arc<Dispatcher>,
    link: MqttLink,
    stop: Arc<Notify>,
    stopping: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    /// Latest statistics, for `/metrics`.
    pub metrics: Arc<Mutex<Vec<super::stats::Group>>>,
    /// The district's nodes and cameras, when started for a district (`edge-node dispatch`).
    pub fleet: Option<Arc<super::fleet::Fleet>>,
    /// Residents' reports (`[reports]`), over HTTP and from apps' gateways on MQTT.
    pub intake: Option<Arc<super::intake::Intake>>,
}

impl DispatchService {
    /// Starts on the current tokio runtime. `base` says how to reach the broker (its client
    /// id gets `-dispatch` appended); `alerts` is the topic filter of the alerts to handle.
    /// With `fleet`, it also follows every node's status topics (the district page).
    /// `disk` guards the reserve on `data_dir` (shared with the node's outbox when both run
    /// in one process): residents' photos and audio are stored only above it. `faces`
    /// pixelates residents' photos; reports are off without it. `clock` is what time it is
    /// for deadlines, escalations, statistics and pruning ([`crate::clock::system`] but in tests).
    pub fn start(
        config: &Config,
        base: &LinkOptions,
        alerts: &str,
        fleet: bool,
        disk: DiskGuard,
        faces: Option<Arc<dyn super::intake::FaceFilter>>,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> Result<Self, super::DispatchError> {
        let prefix = config.mqtt.as_ref().map_or("gridsight", |m| m.topic_prefix.as_str()).to_string();
        let path = config.storage.data_dir.join("dispatch.db");
        let store = Arc::new(Mutex::new(Outbox::open(&path, config.storage.outbox_max_bytes)?.with_disk(disk)));
        let calendar: super::Calendar =
            Arc::new(|ms: i64| crate::localtime::local_time(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)));
        let dispatcher = Arc::new(
            Dispatcher::new(store.clone(), config.grid.clone(), config.dispatch.clone(), &prefix, calendar)?
                .with_clock(clock),
        );
        let open = dispatcher.orders()?.iter().filter(|o| !o.state.is_closed()).count();
        info!(path = %path.display(), open_orders = open, alerts, routes = config.dispatch.routes.len(), "dispatcher starting");

        let fleet = fleet.then(|| Arc::new(super::fleet::Fleet::new(&prefix)));
        let intake = super::intake::Intake::new(config, dispatcher.clone(), faces).map(Arc::new);
        let mut subscriptions = vec![alerts.to_string(), dispatcher.updates_filter()];
        subscriptions.extend(fleet.iter().flat_map(|f| f.filters()));
        if intake.is_some() {
            subscriptions.push(dispatcher.topics().reports_in_filter());
        }
        let opts = LinkOptions {
            client_id: format!("{}-dispatch", base.client_id),
            availability_topic: crate::contract::Topics::new(&prefix).dispatcher_availability(&config.node.id),
            clean_session: false,
            manual_acks: true,
            subscriptions,
            ..base.clone()
        };
        let d = dispatcher.clone();
        let seen = fleet.clone();
        let reports_in = intake.clone();
        let refusals = Mutex::new(RefusalLog::default());
        let link = MqttLink::start_with_inbound(
            opts,
            store.clone(),
            Arc::new(|_| {}),
            Arc::new(move |topic: &str, payload: &[u8]| {
                let now = d.now_ms();
                if let Some(f) = &seen
                    && f.take(topic, payload)
                {
                    return true;
                }
                if let Some(gateway) = d.topics().gateway_of(topic) {
                    let Some(i) = &reports_in else { return true };
                    return match i.mqtt(gateway, payload, now) {
                        Ok(()) => true,
                        Err(e) => {
                            warn!(topic, "report not stored, the broker will redeliver it: {e}");
                            false
                        }
                    };
                }
                if let Some(sender) = d.sender_of(topic) {
                    return match d.handle_update(sender, payload, now) {
                        Ok(reply) => {
                            if !reply.ok {
                                refusals.locked().refuse(topic, &reply.detail);
                            }
                            let m = Message {
                                topic: d.reply_topic(sender),
                                payload: serde_json::to_vec(&reply.to_json(now)).unwrap_or_default(),
                                retain: false,
                                kind: Kind::Order,
                            };
                            if let Err(e) = d.store().locked().push(&m) {
                                warn!("cannot store the reply to an update: {e}");
                            }
                            true
                        }
                        Err(e) => {
                            warn!(topic, "update not handled, the broker will redeliver it: {e}");
                            false
                        }
                    };
                }
                match d.handle_alert(payload, now) {
                    Ok(AlertOutcome::Refused(reason)) => {
                        refusals.locked().refuse(topic, &format!("alert not usable for dispatch: {reason}"));
                        true
                    }
                    Ok(_) => {
                        if let Some(f) = &seen {
                            f.alert(payload);
                        }
                        true
                    }
                    Err(e) => {
                        warn!(topic, "alert not handled, the broker will redeliver it: {e}");
                        false
                    }
                }
            }),
        );

        let metrics = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(Notify::new());
        let stopping = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(timers(
            dispatcher.clone(),
            link.notifier(),
            stop.clone(),
            stopping.clone(),
            metrics.clone(),
            config.dispatch.stats_interval,
            config.dispatch.retention,
        ));
        Ok(Self { dispatcher, link, stop, stopping, task, metrics, fleet, intake })
    }

    pub fn connected(&self) -> bool {
        self.link.stats.connected.load(Ordering::SeqCst)
    }

    pub fn link_stats(&self) -> Arc<crate::mqtt::LinkStats> {
        self.link.stats.clone()
    }

    pub async fn shutdown(self, deadline: Duration) {
        self.stopping.store(true, Ordering::SeqCst);
        self.stop.notify_one();
        let _ = tokio::time::timeout(deadline, self.task).await;
        self.link.shutdown(deadline).await;
    }
}

/// Stored deadlines every second (at once on start, so deadlines that passed while the
/// dispatcher was down fire now), statistics every `stats_every`, pruning hourly.
async fn timers(
    d: Arc<Dispatcher>,
    notify: Arc<Notify>,
    stop: Arc<Notify>,
    stopping: Arc<AtomicBool>,
    metrics: Arc<Mutex<Vec<super::stats::Group>>>,
    stats_every: Duration,
    retention: Duration,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut stats_tick = tokio::time::interval(stats_every);
    let mut prune_tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        tokio::select! {
            _ = tick.tick() => match blocking(&d, |d| d.tick(d.now_ms())).await {
                Some(Ok(0)) | None => {}
                Some(Ok(_)) => notify.notify_one(),
                Some(Err(e)) => warn!("dispatch timers: {e}"),
            },
            _ = stats_tick.tick() => {
                let now = d.now_ms();
                let since = now - retention.as_millis() as i64;
                let groups = blocking(&d, move |d| stats::compute(d.store().locked().connection(), since)).await;
                let Some(groups) = groups else { continue };
                match groups {
                    Ok(groups) => {
                        *metrics.locked() = groups.clone();
                        let v = stats::to_json(&groups, retention.as_secs(), &crate::contract::time::rfc3339_ms(now));
                        let m = Message {
                            topic: d.topics().stats(),
                            payload: serde_json::to_vec(&v).unwrap_or_default(),
                            retain: true,
                            kind: Kind::Status,
                        };
                        if let Some(Err(e)) = blocking(&d, move |d| d.store().locked().push_latest(&m)).await {
                            warn!("cannot store dispatch statistics: {e}");
                        }
                        notify.notify_one();
                    }
                    Err(e) => warn!("dispatch statistics: {e}"),
                }
            }
            _ = prune_tick.tick() => match blocking(&d, |d| d.prune(d.now_ms())).await {
                Some(Ok(n)) if n > 0 => info!(deleted = n, "closed orders past retention deleted"),
                Some(Err(e)) => warn!("dispatch pruning: {e}"),
                _ => {}
            },
            _ = stop.notified() => return,
        }
    }
}

/// Runs `f` (SQLite work) on the blocking pool, so the timers never block the runtime.
/// `None` if it panicked.
async fn blocking<T: Send + 'static>(
    d: &Arc<Dispatcher>,
    f: impl FnOnce(&Dispatcher) -> T + Send + 'static,
) -> Option<T> {
    let d = d.clone();
    tokio::task::spawn_blocking(move || f(&d)).await.ok()
}
