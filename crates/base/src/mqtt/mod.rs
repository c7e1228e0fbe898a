//! mqtt: the node's one connection to the broker, and the only code that publishes.
//!
//! Input: rows of the [`Outbox`] as they are committed (its [`Tap`]; after a reconnect, or
//! when the tap was full, read from the database). Output: each row published at QoS 1, in
//! order, with at most `max_inflight` awaiting their PUBACK; a row leaves the outbox only
//! when its PUBACK arrives (PUBACKs are committed in batches, one transaction each). One
//! tokio task owns the rumqttc event loop; it never touches SQLite itself: reads, batched
//! acknowledgements and inbound handlers run on the blocking pool. On any connection error the client is dropped whole (no hidden in-flight state),
//! and after a capped backoff a new connection re-sends every row still in the outbox, so
//! a broker outage delays messages and never loses them (a PUBACK lost with the connection
//! means that message is delivered twice; alert ids make duplicates recognisable).
//! Availability: a retained `online` on connect, the Last Will `offline` if the node dies,
//! and a retained `offline` on clean shutdown, published before disconnecting.

use crate::Locked;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::tokio_native_tls::native_tls;
use rumqttc::{
    AsyncClient, Event, EventLoop, Incoming, LastWill, MqttOptions, Outgoing, QoS, TlsConfiguration, Transport,
};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::config::{Mqtt, Secret};
use crate::outbox::{Message, Outbox, Row, Tap};

/// How to reach the broker.
#[derive(Clone, Debug)]
pub struct LinkOptions {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub credentials: Option<(String, Option<Secret>)>,
    /// `None`: plain TCP.
    pub tls: Option<TlsFiles>,
    pub keep_alive: Duration,
    pub max_inflight: u16,
    /// `<prefix>/<node>/availability`.
    pub availability_topic: String,
    pub backoff_max: Duration,
    /// Topic filters subscribed (QoS 1) on every connection; messages go to the [`Inbound`] handler.
    pub subscriptions: Vec<String>,
    /// `false`: the broker keeps this client's subscriptions and queues QoS 1 messages while
    /// it is away (the dispatcher uses this so that alerts sent while it was down still reach it).
    pub clean_session: bool,
    /// Larger incoming payloads are refused before any parsing (logged, counted).
    pub max_inbound_bytes: usize,
    /// Acknowledge an inbound QoS 1 message only when the handler returns `true` (it has
    /// committed what the message asked), so a crash means redelivery, not loss.
    pub manual_acks: bool,
}

/// Largest inbound payload handed to a handler by default (commands and updates are small).
pub const MAX_INBOUND_BYTES: usize = 64 * 1024;

impl LinkOptions {
    /// Plain TCP, no credentials, clean session, no subscriptions.
    pub fn new(host: &str, port: u16, client_id: &str, availability_topic: &str) -> Self {
        Self {
            host: host.to_string(),
            port,
            client_id: client_id.to_string(),
            credentials: None,
            tls: None,
            keep_alive: Duration::from_secs(30),
            max_inflight: 100,
            availability_topic: availability_topic.to_string(),
            backoff_max: Duration::from_secs(30),
            subscriptions: Vec::new(),
            clean_session: true,
            max_inbound_bytes: MAX_INBOUND_BYTES,
            manual_acks: false,
        }
    }
}

impl LinkOptions {
    /// Reads the TLS files and checks they make a usable TLS set-up; the error names the field.
    pub fn from_config(m: &Mqtt, node_id: &str) -> Result<Self, String> {
        let read = |field: &str, p: &std::path::PathBuf| {
            std::fs::read(p).map_err(|e| format!("mqtt.{field}: cannot read {}: {e}", p.display()))
        };
        let tls = match &m.tls {
            None => None,
            Some(t) => Some(TlsFiles {
                ca: t.ca_file.as_ref().map(|p| read("ca_file", p)).transpose()?,
                identity: match (&t.client_cert_file, &t.client_key_file) {
                    (Some(c), Some(k)) => Some((read("client_cert_file", c)?, read("client_key_file", k)?)),
                    _ => None,
                },
            }),
        };
        if let Some(t) = &tls {
            t.connector()?;
        }
        Ok(Self {
            host: m.host.clone(),
            port: m.port,
            client_id: m.client_id.clone(),
            credentials: m.username.clone().map(|u| (u, m.password.clone())),
            tls,
            keep_alive: m.keep_alive,
            max_inflight: m.max_inflight,
            availability_topic: crate::contract::Topics::new(&m.topic_prefix).availability(node_id),
            backoff_max: Duration::from_secs(30),
            subscriptions: Vec::new(),
            clean_session: true,
            max_inbound_bytes: MAX_INBOUND_BYTES,
            manual_acks: false,
        })
    }
}

/// TLS material, read once at start (PEM).
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// CA that signed the broker's certificate; `None`: the system roots.
    pub ca: Option<Vec<u8>>,
    /// Client certificate chain and PKCS#8 private key for mutual TLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl TlsFiles {
    /// A TLS connector from these files; the error says which part is unusable.
    pub fn connector(&self) -> Result<native_tls::TlsConnector, String> {
        let mut b = native_tls::TlsConnector::builder();
        if let Some(ca) = &self.ca {
            let cert = native_tls::Certificate::from_pem(ca)
                .map_err(|e| format!("mqtt.ca_file: not a PEM certificate: {e}"))?;
            b.add_root_certificate(cert);
        }
        if let Some((cert, key)) = &self.identity {
            let id = native_tls::Identity::from_pkcs8(cert, key).map_err(|e| {
                format!("mqtt.client_cert_file/client_key_file: not a PEM certificate and PKCS#8 key pair: {e}")
            })?;
            b.identity(id);
        }
        b.build().map_err(|e| format!("mqtt TLS set-up: {e}"))
    }
}

/// Counters for status and tests.
#[derive(Default, Debug)]
pub struct LinkStats {
    pub connected: AtomicBool,
    pub published: AtomicU64,
    pub acked: AtomicU64,
    pub connects: AtomicU64,
    pub received: AtomicU64,
    /// Inbound messages refused by the link itself (too large).
    pub refused: AtomicU64,
}

/// Called for each row the broker confirmed (the demo prints alerts this way).
pub type AckCallback = Arc<dyn Fn(&Message) + Send + Sync>;

/// Called for each message received on a subscribed topic, on the link's task: it must not
/// block for long (validate, commit, or hand work to another thread). Payloads over
/// `max_inbound_bytes` never reach it. Returns whether the message was dealt with: with
/// `manual_acks`, only then is it acknowledged (else the broker redelivers it later).
pub type InboundHandler = Arc<dyn Fn(&str, &[u8]) -> bool + Send + Sync>;

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
        Self::start_with_inbound(opts, outbox, on_ack, Arc::new(|_, _| true))
    }

    /// As [`start`](Self::start), handing messages on `opts.subscriptions` to `inbound`.
    pub fn start_with_inbound(
        opts: LinkOptions,
        outbox: Arc<Mutex<Outbox>>,
        on_ack: AckCallback,
        inbound: InboundHandler,
    ) -> Self {
        let notify = Arc::new(Notify::new());
        let stop = Arc::new(Notify::new());
        let stopping = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(LinkStats::default());
        let ctx = Ctx {
            opts,
            outbox,
            on_ack,
            inbound,
            notify: notify.clone(),
            stop: stop.clone(),
            stopping: stopping.clone(),
            stats: stats.clone(),
        };
        let tap = ctx.outbox.locked().tap(TAP_ROWS);
        let task = tokio::spawn(run(ctx, tap));
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

    /// Delivers the rows committed before the stop (for up to [`STOP_DRAIN`] while
    /// connected), publishes `offline` (retained) and disconnects, within `deadline`.
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

/// rumqttc options for `opts` (TLS, credentials, Last Will, session and ack mode).
pub fn mqtt_options(opts: &LinkOptions) -> MqttOptions {
    let mut o = MqttOptions::new(&opts.client_id, &opts.host, opts.port);
    o.set_keep_alive(opts.keep_alive);
    o.set_clean_session(opts.clean_session);
    o.set_manual_acks(opts.manual_acks);
    o.set_inflight(opts.max_inflight.max(1));
    // Incoming: a packet over this limit ends the connection (rumqttc), so it is generous;
    // the handler's own, smaller limit applies after (`max_inbound_bytes`).
    o.set_max_packet_size(32 << 20, 4 << 20);
    o.set_last_will(LastWill::new(&opts.availability_topic, "offline", QoS::AtLeastOnce, true));
    if let Some((user, pass)) = &opts.credentials {
        o.set_credentials(user, pass.as_ref().map(|p| p.expose().to_string()).unwrap_or_default());
    }
    if let Some(tls) = &opts.tls {
        match tls.connector() {
            Ok(c) => o.set_transport(Transport::tls_with_config(TlsConfiguration::NativeConnector(c))),
            // Checked at start (`LinkOptions::from_config`), so this is not reached in practice.
            Err(e) => {
                warn!("{e}");
                o.set_transport(Transport::tls_with_config(TlsConfiguration::Native))
            }
        };
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
    /// When the broker accepted this connection (CONNACK).
    connected_at: Option<tokio::time::Instant>,
}

/// Everything the link's task owns.
struct Ctx {
    opts: LinkOptions,
    outbox: Arc<Mutex<Outbox>>,
    on_ack: AckCallback,
    inbound: InboundHandler,
    notify: Arc<Notify>,
    stop: Arc<Notify>,
    stopping: Arc<AtomicBool>,
    stats: Arc<LinkStats>,
}

/// Waits between connection attempts: 0.5 s doubling to `backoff_max` with ±20% jitter,
/// back to the base once a connection has lasted [`Reconnect::STABLE`].
#[derive(Debug)]
pub struct Reconnect {
    backoff: crate::backoff::Backoff,
}

impl Reconnect {
    pub const BASE: Duration = Duration::from_millis(500);
    /// A connection that lasted this long was a good one: the next retry starts afresh.
    pub const STABLE: Duration = Duration::from_secs(10);

    pub fn new(max: Duration, seed: u64) -> Self {
        Self { backoff: crate::backoff::Backoff::new(Self::BASE, max, seed) }
    }

    /// The wait before the next attempt, given how long the last connection was up
    /// (`None`: it never connected).
    pub fn next_delay(&mut self, connected_for: Option<Duration>) -> Duration {
        if connected_for.is_some_and(|d| d >= Self::STABLE) {
            self.backoff.reset();
        }
        self.backoff.next_delay()
    }
}

/// Rows in the outbox of the link's task: taken from the outbox's [`Tap`] while caught up,
/// read from the database (on the blocking pool) after a (re)connect or when the tap
/// missed rows. Steady state reads no SQLite.
struct Feed {
    tap: Tap,
    /// Every pending row up to the session's `last_sent` was handed to this connection,
    /// and the tap is taking the rest.
    caught_up: bool,
}

/// At a clean stop, how long a connected link goes on delivering the rows committed
/// before it (within the 3 s the node gives the link): they reach the broker now, not at the
/// next start.
const STOP_DRAIN: Duration = Duration::from_millis(1500);

/// How many committed rows wait in the tap for the link (bounded; beyond, rows are read
/// from the database).
const TAP_ROWS: usize = 256;

impl Feed {
    /// Hands up to `room` rows to the client.
    async fn fill(&mut self, cx: &Ctx, client: &AsyncClient, s: &mut Session, room: usize) {
        if self.caught_up && self.tap.take_missed() {
            self.caught_up = false;
        }
        if !self.caught_up {
            // Everything the tap holds is in the database too.
            self.tap.clear();
            self.tap.listen(true);
            let (outbox, after) = (cx.outbox.clone(), s.last_sent);
            let rows = match tokio::task::spawn_blocking(move || outbox.locked().pending(after, room)).await {
                Ok(Ok(rows)) => rows,
                Ok(Err(e)) => {
                    warn!("outbox: cannot read pending rows: {e}");
                    return;
                }
                Err(_) => return,
            };
            self.caught_up = rows.len() < room;
            for row in rows {
                if !publish(client, s, row) {
                    self.caught_up = false;
                    return;
                }
            }
            return;
        }
        for _ in 0..room {
            let Ok(row) = self.tap.rx.try_recv() else { return };
            // Read from the database already.
            if row.id <= s.last_sent {
                continue;
            }
            if !publish(client, s, row) {
                self.caught_up = false;
                return;
            }
        }
    }

    /// Not connected: the tap stops taking rows (they wait in the database).
    fn pause(&mut self) {
        self.tap.listen(false);
        self.tap.clear();
        self.caught_up = false;
    }
}

/// Hands one row to the client; `false` if its request queue is full.
fn publish(client: &AsyncClient, s: &mut Session, row: Row) -> bool {
    let m = &row.message;
    if client.try_publish(&m.topic, QoS::AtLeastOnce, m.retain, m.payload.clone()).is_err() {
        return false;
    }
    s.last_sent = row.id;
    s.requested.push_back(Some((row.id, row.message)));
    true
}

/// A batch of acknowledgements written, or the ids that could not be removed and why.
type AckBatch = Result<(), (Vec<i64>, crate::outbox::OutboxError)>;

/// Acknowledged rows on their way out of the outbox: written in one transaction per
/// batch on the blocking pool, one batch at a time, while the task goes on.
#[derive(Default)]
struct Acks {
    ids: Vec<i64>,
    writing: Option<tokio::task::JoinHandle<AckBatch>>,
    /// A batch failed (a full disk): the next try waits a second.
    retry_at: Option<tokio::time::Instant>,
}

impl Acks {
    /// Starts writing the acknowledgements gathered so far, unless a batch is being written.
    fn start(&mut self, outbox: &Arc<Mutex<Outbox>>) {
        if self.writing.is_some()
            || self.ids.is_empty()
            || self.retry_at.is_some_and(|t| t > tokio::time::Instant::now())
        {
            return;
        }
        let (ids, outbox) = (std::mem::take(&mut self.ids), outbox.clone());
        self.writing = Some(tokio::task::spawn_blocking(move || outbox.locked().ack_all(&ids).map_err(|e| (ids, e))));
    }

    /// The batch being written is done: a failed one is kept for another try.
    fn written(&mut self, result: Result<AckBatch, tokio::task::JoinError>) {
        self.writing = None;
        self.retry_at = None;
        if let Ok(Err((mut ids, e))) = result {
            warn!(rows = ids.len(), "outbox: cannot remove acknowledged rows (will retry): {e}");
            ids.append(&mut self.ids);
            self.ids = ids;
            self.retry_at = Some(tokio::time::Instant::now() + Duration::from_secs(1));
        }
    }

    /// Waits for the batch being written, if any.
    async fn wait(&mut self) {
        if let Some(w) = self.writing.as_mut() {
            let result = w.await;
            self.written(result);
        }
    }

    /// Writes every acknowledgement gathered (before rows are read again, so that
    /// delivered rows are not sent twice, and at shutdown).
    async fn flush(&mut self, outbox: &Arc<Mutex<Outbox>>) {
        self.wait().await;
        self.retry_at = None;
        self.start(outbox);
        self.wait().await;
    }
}

async fn run(cx: Ctx, tap: Tap) {
    let opts = &cx.opts;
    let seed = opts.client_id.bytes().fold(std::process::id() as u64, |h, b| h.rotate_left(5) ^ b as u64);
    let mut reconnect = Reconnect::new(opts.backoff_max, seed);
    let mut refusals = RefusalLog::default();
    let mut feed = Feed { tap, caught_up: false };
    let mut acks = Acks::default();
    loop {
        if cx.stopping.load(Ordering::SeqCst) {
            acks.flush(&cx.outbox).await;
            return;
        }
        let (client, mut eventloop) = AsyncClient::new(mqtt_options(opts), 1024);
        let mut s = Session { requested: VecDeque::new(), inflight: HashMap::new(), last_sent: 0, connected_at: None };
        let _ = client.try_publish(&opts.availability_topic, QoS::AtLeastOnce, true, "online");
        s.requested.push_back(None);
        let outcome = serve(&cx, &client, &mut eventloop, &mut s, &mut refusals, &mut feed, &mut acks).await;
        cx.stats.connected.store(false, Ordering::SeqCst);
        feed.pause();
        acks.flush(&cx.outbox).await;
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
                let outbox = cx.outbox.clone();
                let pending =
                    tokio::task::spawn_blocking(move || outbox.locked().len().unwrap_or(0)).await.unwrap_or(0);
                let backoff = reconnect.next_delay(s.connected_at.map(|t| t.elapsed()));
                warn!(broker = %format!("{}:{}", opts.host, opts.port), error = %e, pending, retry_ms = backoff.as_millis() as u64, "mqtt connection lost; messages wait in the outbox");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = cx.stop.notified() => return,
                }
            }
        }
    }
}

/// Logs refused inbound messages at most once a second, with how many were not logged,
/// so a flood of garbage cannot flood the log too. Every refusal is counted exactly once:
/// the logged ones plus the `suppressed` counts of the lines equal the messages refused
/// ([`flush`](Self::flush) logs the remainder after a flood ends).
#[derive(Default)]
pub struct RefusalLog {
    last: Option<std::time::Instant>,
    suppressed: u64,
    /// Every refusal since start.
    pub total: u64,
}

impl RefusalLog {
    pub fn refuse(&mut self, topic: &str, reason: &str) {
        if let Some(suppressed) = self.refuse_at(std::time::Instant::now()) {
            warn!(topic, suppressed, "inbound message refused: {reason}");
        }
    }

    /// Counts one refusal at `now`; `Some(suppressed)` when it is to be logged, with the
    /// number of refusals not logged since the previous line.
    pub fn refuse_at(&mut self, now: std::time::Instant) -> Option<u64> {
        self.total += 1;
        if self.last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }

    /// Logs the refusals not logged yet, once a second has passed since the last line
    /// (call it now and then, so the end of a flood is counted without a next refusal).
    pub fn flush(&mut self) {
        if let Some(n) = self.flush_at(std::time::Instant::now()) {
            warn!(suppressed = n, "inbound messages refused and not logged one by one");
        }
    }

    pub fn flush_at(&mut self, now: std::time::Instant) -> Option<u64> {
        let due = self.last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
        if self.suppressed == 0 || !due {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

async fn serve(
    cx: &Ctx,
    client: &AsyncClient,
    eventloop: &mut EventLoop,
    s: &mut Session,
    refusals: &mut RefusalLog,
    feed: &mut Feed,
    acks: &mut Acks,
) -> Result<(), rumqttc::ConnectionError> {
    let opts = &cx.opts;
    let window = opts.max_inflight.max(1) as usize;
    let mut connected = false;
    let mut drain_until = None;
    loop {
        if cx.stopping.load(Ordering::SeqCst) && !connected {
            return Ok(());
        }
        acks.start(&cx.outbox);
        // Fill the window once connected.
        let mut room = 0;
        if connected {
            room = window.saturating_sub(s.requested.len() + s.inflight.len());
            if room > 0 {
                feed.fill(cx, client, s, room).await;
                room = window.saturating_sub(s.requested.len() + s.inflight.len());
            }
        }
        // Stopping while connected: rows committed before the stop (alerts the pool
        // stored while it drained) are delivered first, for at most STOP_DRAIN.
        if cx.stopping.load(Ordering::SeqCst) {
            let until = *drain_until.get_or_insert_with(|| tokio::time::Instant::now() + STOP_DRAIN);
            let delivered = s.requested.is_empty() && s.inflight.is_empty() && feed.caught_up && feed.tap.rx.is_empty();
            if delivered || tokio::time::Instant::now() >= until {
                if !delivered {
                    warn!(
                        in_flight = s.requested.len() + s.inflight.len(),
                        "mqtt link stopping before every pending message was acknowledged; the rest wait in the outbox for the next start"
                    );
                }
                return Ok(());
            }
        }
        let take_tap = connected && feed.caught_up && room > 0;
        tokio::select! {
            event = eventloop.poll() => match event? {
                Event::Incoming(Incoming::ConnAck(_)) => {
                    connected = true;
                    s.connected_at = Some(tokio::time::Instant::now());

                    cx.stats.connected.store(true, Ordering::SeqCst);
                    cx.stats.connects.fetch_add(1, Ordering::SeqCst);
                    for topic in &opts.subscriptions {
                        let _ = client.try_subscribe(topic, QoS::AtLeastOnce);
                    }
                    info!(broker = %format!("{}:{}", opts.host, opts.port), client_id = %opts.client_id, subscriptions = opts.subscriptions.len(), "mqtt connected");
                }
                Event::Outgoing(Outgoing::Publish(pkid)) => {
                    if let Some(Some(row)) = s.requested.pop_front() {
                        cx.stats.published.fetch_add(1, Ordering::Relaxed);
                        s.inflight.insert(pkid, row);
                    }
                }
                Event::Incoming(Incoming::PubAck(ack)) => {
                    if let Some((id, message)) = s.inflight.remove(&ack.pkid) {
                        acks.ids.push(id);
                        cx.stats.acked.fetch_add(1, Ordering::Relaxed);
                        (cx.on_ack)(&message);
                    }
                }
                Event::Incoming(Incoming::Publish(p)) => {
                    cx.stats.received.fetch_add(1, Ordering::Relaxed);
                    let done = if p.payload.len() > opts.max_inbound_bytes {
                        cx.stats.refused.fetch_add(1, Ordering::Relaxed);
                        refusals.refuse(&p.topic, &format!("payload of {} bytes is over the {} byte limit", p.payload.len(), opts.max_inbound_bytes));
                        true
                    } else {
                        // Handlers commit to SQLite: on the blocking pool, one at a time, in order.
                        let (inbound, topic, payload) = (cx.inbound.clone(), p.topic.clone(), p.payload.clone());
                        tokio::task::spawn_blocking(move || inbound(&topic, &payload)).await.unwrap_or(false)
                    };
                    if opts.manual_acks && done {
                        let _ = client.try_ack(&p);
                    }
                }
                Event::Incoming(Incoming::SubAck(ack))
                    if ack.return_codes.iter().any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure)) =>
                {
                    warn!(topics = ?opts.subscriptions, "the broker refused a subscription (check its ACL)");
                }
                _ => {}
            },
            // A row committed: the loop's top hands it on.
            Some(row) = feed.tap.rx.recv(), if take_tap => {
                if row.id > s.last_sent && !publish(client, s, row) {
                    feed.caught_up = false;
                }
            }
            result = async { acks.writing.as_mut().expect("guarded").await }, if acks.writing.is_some() => acks.written(result),
            _ = cx.notify.notified() => {}
            // The loop's top decides: deliver what is pending first, or stop now.
            _ = cx.stop.notified() => {}
            _ = async { tokio::time::sleep_until(drain_until.expect("guarded")).await }, if drain_until.is_some() => {}
        }
    }
}

/// The topics of a node's broker: `mqtt.topic_prefix`, or `gridsight` on the embedded broker.
pub fn topics_of(config: &crate::config::Config) -> crate::contract::Topics {
    crate::contract::Topics::new(config.mqtt.as_ref().map_or("gridsight", |m| m.topic_prefix.as_str()))
}

/// Where the embedded broker listens when the config does not say.
pub fn embedded_default() -> std::net::SocketAddr {
    ([127, 0, 0, 1], 1883).into()
}

/// How a node or dispatcher reaches its broker: `[mqtt]`, or the embedded broker
/// (`embedded_broker`, default [`embedded_default`]). The client id is `mqtt.client_id` or
/// `gridsight-<node>`. The error names the TLS file that cannot be read.
pub fn link_options(config: &crate::config::Config) -> Result<LinkOptions, String> {
    let node = &config.node.id;
    match &config.mqtt {
        Some(m) => LinkOptions::from_config(m, node),
        None => {
            let addr = config.embedded_broker.unwrap_or_else(embedded_default);
            let availability = topics_of(config).availability(node);
            Ok(LinkOptions::new(&addr.ip().to_string(), addr.port(), &format!("gridsight-{node}"), &availability))
        }
    }
}

#[cfg(test)]
mod refusal_tests {
    use super::*;

    /// 500 refusals over 3.5 s (plus a flush): logged lines + suppressed counts = 500.
    #[test]
    fn every_refusal_is_counted_once() {
        let t0 = std::time::Instant::now();
        let mut log = RefusalLog::default();
        let mut lines = 0u64;
        let mut suppressed = 0u64;
        for i in 0..500u64 {
            if let Some(n) = log.refuse_at(t0 + Duration::from_millis(i * 7)) {
                lines += 1;
                suppressed += n;
            }
        }
        assert!(log.flush_at(t0 + Duration::from_millis(3493)).is_none(), "less than 1 s after the last line");
        suppressed += log.flush_at(t0 + Duration::from_secs(10)).unwrap_or(0);
        assert_eq!(lines, 4, "one line per second of the flood");
        assert_eq!(lines + suppressed, 500);
        assert_eq!(log.total, 500);
        assert_eq!(log.flush_at(t0 + Duration::from_secs(20)), None, "nothing left");
    }
}

#[cfg(test)]
mod reconnect_tests {
    use super::*;

    /// After outages the wait grows; a connection that lasted resets it to the base, so a
    /// node that had a good connection reconnects fast after the next outage (it used to
    /// wait the full 30 s forever after a few outages). Paused clock: no real waiting.
    #[tokio::test(start_paused = true)]
    async fn backoff_resets_after_a_connection_that_lasted() {
        let mut r = Reconnect::new(Duration::from_secs(30), 7);
        let waits: Vec<Duration> = (0..8).map(|_| r.next_delay(None)).collect();
        assert!(waits[7] >= Duration::from_secs(24), "grown to the cap: {waits:?}");
        // A short connection (flapping broker) does not reset it.
        assert!(r.next_delay(Some(Duration::from_secs(2))) >= Duration::from_secs(24));
        // One that lasted, measured on the paused clock.
        let connected_at = tokio::time::Instant::now();
        tokio::time::advance(Duration::from_secs(60)).await;
        let next = r.next_delay(Some(connected_at.elapsed()));
        assert!(next <= Reconnect::BASE.mul_f64(1.2), "back to the base delay: {next:?}");
        assert!(r.next_delay(None) <= Duration::from_millis(1200), "then doubling again");
    }
}
