//! mqtt: the node's one connection to the broker, and the only code that publishes.
//!
//! Input: rows of the [`Outbox`], woken by [`MqttLink::notify`]. Output: each row
//! published at QoS 1, in order, with at most `max_inflight` awaiting their PUBACK; a row
//! leaves the outbox only when its PUBACK arrives. One tokio task owns the rumqttc event
//! loop. On any connection error the client is dropped whole (no hidden in-flight state),
//! and after a capped backoff a new connection re-sends every row still in the outbox, so
//! a broker outage delays messages and never loses them (a PUBACK lost with the connection
//! means that message is delivered twice; alert ids make duplicates recognisable).
//! Availability: a retained `online` on connect, the Last Will `offline` if the node dies,
//! and a retained `offline` on clean shutdown, published before disconnecting.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, EventLoop, Incoming, LastWill, MqttOptions, Outgoing, QoS, TlsConfiguration, Transport,
};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::config::{Mqtt, Secret};
use crate::outbox::{Message, Outbox};

/// How to reach the broker.
#[derive(Clone, Debug)]
pub struct LinkOptions {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub credentials: Option<(String, Option<Secret>)>,
    /// `None`: plain TCP. `Some(None)`: TLS with the system roots. `Some(Some(pem))`: TLS with this CA.
    pub tls: Option<Option<Vec<u8>>>,
    pub keep_alive: Duration,
    pub max_inflight: u16,
    /// `<prefix>/<node>/availability`.
    pub availability_topic: String,
    pub backoff_max: Duration,
}

impl LinkOptions {
    pub fn from_config(m: &Mqtt, node_id: &str) -> std::io::Result<Self> {
        let tls = match &m.tls {
            None => None,
            Some(t) => Some(t.ca_file.as_ref().map(std::fs::read).transpose()?),
        };
        Ok(Self {
            host: m.host.clone(),
            port: m.port,
            client_id: m.client_id.clone(),
            credentials: m.username.clone().map(|u| (u, m.password.clone())),
            tls,
            keep_alive: m.keep_alive,
            max_inflight: m.max_inflight,
            availability_topic: format!("{}/{node_id}/availability", m.topic_prefix),
            backoff_max: Duration::from_secs(30),
        })
    }
}

/// Counters for status and tests.
#[derive(Default, Debug)]
pub struct LinkStats {
    pub connected: AtomicBool,
    pub published: AtomicU64,
    pub acked: AtomicU64,
    pub connects: AtomicU64,
}

/// Called for each row the broker confirmed (the demo prints alerts this way).
pub type AckCallback = Arc<dyn Fn(&Message) + Send + Sync>;

pub struct MqttLink {
    notify: Arc<Notify>,
    stop: Arc<Notify>,
    stopping: Arc<AtomicBool>,
    pub stats: Arc<LinkStats>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl MqttLink {
    /// Starts the link on the current tokio runtime.
    pub fn start(opts: LinkOptions, outbox: Arc<Mutex<Outbox>>, on_ack: AckCallback) -> Self {
        let notify = Arc::new(Notify::new());
        let stop = Arc::new(Notify::new());
        let stopping = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(LinkStats::default());
        let task =
            tokio::spawn(run(opts, outbox, on_ack, notify.clone(), stop.clone(), stopping.clone(), stats.clone()));
        Self { notify, stop, stopping, stats, task: Some(task) }
    }

    /// New rows are in the outbox.
    pub fn notify(&self) {
        self.notify.notify_one();
    }

    /// A handle other threads can use to say new rows are in the outbox.
    pub fn notifier(&self) -> Arc<Notify> {
        self.notify.clone()
    }

    /// Publishes `offline` (retained) and disconnects, within `deadline`.
    pub async fn shutdown(mut self, deadline: Duration) {
        self.stopping.store(true, Ordering::SeqCst);
        self.stop.notify_one();
        if let Some(task) = self.task.take()
            && tokio::time::timeout(deadline, task).await.is_err()
        {
            warn!("mqtt link did not stop before the deadline");
        }
    }
}

fn mqtt_options(opts: &LinkOptions) -> MqttOptions {
    let mut o = MqttOptions::new(&opts.client_id, &opts.host, opts.port);
    o.set_keep_alive(opts.keep_alive);
    o.set_clean_session(true);
    o.set_inflight(opts.max_inflight.max(1));
    o.set_max_packet_size(4 << 20, 4 << 20);
    o.set_last_will(LastWill::new(&opts.availability_topic, "offline", QoS::AtLeastOnce, true));
    if let Some((user, pass)) = &opts.credentials {
        o.set_credentials(user, pass.as_ref().map(|p| p.expose().to_string()).unwrap_or_default());
    }
    match &opts.tls {
        None => {}
        Some(None) => {
            o.set_transport(Transport::tls_with_config(TlsConfiguration::Native));
        }
        Some(Some(ca)) => {
            o.set_transport(Transport::tls_with_config(TlsConfiguration::SimpleNative {
                ca: ca.clone(),
                client_auth: None,
            }));
        }
    }
    o
}

/// What the task tracks for one connection.
struct Session {
    /// Row ids handed to the client, waiting to be given a packet id (FIFO: rumqttc sends
    /// requests in order). `None` for publishes that are not outbox rows.
    requested: VecDeque<Option<(i64, Message)>>,
    /// Packet id → the row it carries.
    inflight: HashMap<u16, (i64, Message)>,
    /// Highest row id handed to this connection.
    last_sent: i64,
}

async fn run(
    opts: LinkOptions,
    outbox: Arc<Mutex<Outbox>>,
    on_ack: AckCallback,
    notify: Arc<Notify>,
    stop: Arc<Notify>,
    stopping: Arc<AtomicBool>,
    stats: Arc<LinkStats>,
) {
    let mut backoff = Duration::from_millis(500);
    loop {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let (client, mut eventloop) = AsyncClient::new(mqtt_options(&opts), 1024);
        let mut s = Session { requested: VecDeque::new(), inflight: HashMap::new(), last_sent: 0 };
        let _ = client.try_publish(&opts.availability_topic, QoS::AtLeastOnce, true, "online");
        s.requested.push_back(None);
        let outcome =
            serve(&opts, &client, &mut eventloop, &mut s, &outbox, &on_ack, &notify, &stop, &stopping, &stats).await;
        stats.connected.store(false, Ordering::SeqCst);
        match outcome {
            Ok(()) => {
                // Clean shutdown: availability offline, then disconnect.
                let _ = client.try_publish(&opts.availability_topic, QoS::AtLeastOnce, true, "offline");
                let _ = client.try_disconnect();
                let flush = async {
                    loop {
                        match eventloop.poll().await {
                            Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                            _ => {}
                        }
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(2), flush).await;
                info!("mqtt link stopped");
                return;
            }
            Err(e) => {
                let pending = outbox.lock().unwrap().len().unwrap_or(0);
                warn!(broker = %format!("{}:{}", opts.host, opts.port), error = %e, pending, retry_ms = backoff.as_millis() as u64, "mqtt connection lost; messages wait in the outbox");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.notified() => return,
        }
        backoff = (backoff * 2).min(opts.backoff_max);
        if stats.connects.load(Ordering::SeqCst) > 0 && stats.connected.load(Ordering::SeqCst) {
            backoff = Duration::from_millis(500);
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    opts: &LinkOptions,
    client: &AsyncClient,
    eventloop: &mut EventLoop,
    s: &mut Session,
    outbox: &Arc<Mutex<Outbox>>,
    on_ack: &AckCallback,
    notify: &Notify,
    stop: &Notify,
    stopping: &AtomicBool,
    stats: &LinkStats,
) -> Result<(), rumqttc::ConnectionError> {
    let window = opts.max_inflight.max(1) as usize;
    let mut connected = false;
    loop {
        if stopping.load(Ordering::SeqCst) {
            return Ok(());
        }
        // Fill the window from the outbox once connected.
        if connected {
            let room = window.saturating_sub(s.requested.len() + s.inflight.len());
            if room > 0 {
                let rows = outbox.lock().unwrap().pending(s.last_sent, room).unwrap_or_default();
                for row in rows {
                    let m = &row.message;
                    if client.try_publish(&m.topic, QoS::AtLeastOnce, m.retain, m.payload.clone()).is_err() {
                        break;
                    }
                    s.last_sent = row.id;
                    s.requested.push_back(Some((row.id, row.message)));
                }
            }
        }
        tokio::select! {
            event = eventloop.poll() => match event? {
                Event::Incoming(Incoming::ConnAck(_)) => {
                    connected = true;
                    stats.connected.store(true, Ordering::SeqCst);
                    stats.connects.fetch_add(1, Ordering::SeqCst);
                    info!(broker = %format!("{}:{}", opts.host, opts.port), client_id = %opts.client_id, "mqtt connected");
                }
                Event::Outgoing(Outgoing::Publish(pkid)) => {
                    if let Some(Some(row)) = s.requested.pop_front() {
                        stats.published.fetch_add(1, Ordering::Relaxed);
                        s.inflight.insert(pkid, row);
                    }
                }
                Event::Incoming(Incoming::PubAck(ack)) => {
                    if let Some((id, message)) = s.inflight.remove(&ack.pkid) {
                        if let Err(e) = outbox.lock().unwrap().ack(id) {
                            warn!("outbox: cannot remove acknowledged row {id}: {e}");
                        }
                        stats.acked.fetch_add(1, Ordering::Relaxed);
                        on_ack(&message);
                    }
                }
                _ => {}
            },
            _ = notify.notified() => {}
            _ = stop.notified() => return Ok(()),
        }
    }
}
