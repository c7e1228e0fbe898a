//! The supervisor's state machine with a fake camera source and a hand-stepped clock:
//! connect, stream, stall, back off, reset the backoff, name reasons, switch transports —
//! in milliseconds, without a network or GStreamer.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use super::*;

/// What the fake source does when opened: start, or fail at once with a reason.
#[derive(Default)]
struct Script {
    outcomes: VecDeque<Result<(), FailReason>>,
    /// (camera, transport) of every open.
    opened: Vec<(String, Transport)>,
}

struct FakeOpener(Arc<Mutex<Script>>);

struct FakeSource;

impl Source for FakeSource {
    fn stop(self: Box<Self>) {}
}

impl Opener for FakeOpener {
    fn open(&self, spec: &CameraSpec, _cx: SourceContext) -> Result<Box<dyn Source>, FailReason> {
        let mut s = self.0.locked();
        s.opened.push((spec.id.clone(), spec.transport));
        s.outcomes.pop_front().unwrap_or(Ok(())).map(|()| Box::new(FakeSource) as Box<dyn Source>)
    }
}

struct Rig {
    sup: Supervisor,
    clock: Arc<ManualClock>,
    script: Arc<Mutex<Script>>,
    cameras: Arc<Mutex<BTreeMap<String, Arc<CameraShared>>>>,
}

fn spec(id: &str) -> CameraSpec {
    CameraSpec {
        id: id.into(),
        location: format!("rtsp://127.0.0.1/{id}"),
        credentials: None,
        transport: Transport::Tcp,
        decode: DecodeMode::Keyframes,
        hw_decode: HwDecode::None,
        rtsp_client: crate::config::RtspClient::Gstreamer,
        detect_fps: 1.0,
        fit: (640, 384),
        stall_timeout: Duration::from_secs(5),
        delta_rules: Vec::new(),
        looks_always: false,
        demand: Default::default(),
        place: None,
        micro_grid: None,
    }
}

impl Rig {
    fn new(ids: &[&str]) -> Self {
        let clock = Arc::new(ManualClock::default());
        let script = Arc::new(Mutex::new(Script::default()));
        let cameras = Arc::new(Mutex::new(BTreeMap::new()));
        let (tx, _rx) = mpsc::channel();
        let options = IngestOptions { status_every: Duration::ZERO, ..IngestOptions::default() };
        let mut sup = Supervisor::new(
            tx,
            Arc::new(|_| {}),
            options,
            cameras.clone(),
            Arc::new(AtomicUsize::new(0)),
            Box::new(FakeOpener(script.clone())),
            clock.clone(),
        );
        sup.apply(ids.iter().map(|id| spec(id)).collect());
        Self { sup, clock, script, cameras }
    }

    /// Advances the clock in supervisor ticks; frames keep arriving on `live` cameras.
    fn run(&mut self, for_: Duration, live: &[&str]) {
        let end = self.clock.now() + for_;
        while self.clock.now() < end {
            self.clock.advance(TICK);
            for id in live {
                let shared = self.cameras.locked()[*id].clone();
                let ms = self.clock.now().duration_since(self.sup.epoch).as_millis() as u64;
                shared.last_unit_ms.store(ms + 1, Ordering::Relaxed);
            }
            self.sup.tick();
        }
    }

    fn state(&self, id: &str) -> CameraState {
        status_of(id, &self.cameras.locked()[id]).state
    }

    fn fail(&mut self, id: &str, reason: FailReason) {
        let generation = self.sup.slots[id].generation;
        self.sup.on_event(id, generation, PipelineEvent::Failed(reason, String::new()));
    }
}

#[test]
fn streams_stalls_and_reconnects_after_the_backoff() {
    let mut r = Rig::new(&["a"]);
    assert_eq!(r.state("a"), CameraState::Connecting);
    r.run(Duration::from_secs(1), &["a"]);
    assert_eq!(r.state("a"), CameraState::Streaming);
    // Frames stop: after stall_timeout (5 s) it is stalled, never before.
    r.run(Duration::from_millis(4800), &[]);
    assert_eq!(r.state("a"), CameraState::Streaming);
    for _ in 0..5 {
        if r.state("a") == CameraState::Streaming {
            r.run(TICK, &[]);
        }
    }
    let CameraState::Stalled { retry_in } = r.state("a") else { panic!("{:?}", r.state("a")) };

    assert!(retry_in >= Duration::from_millis(800) && retry_in <= Duration::from_millis(1200), "{retry_in:?}");
    assert_eq!(r.cameras.locked()["a"].counters.stalls.load(Ordering::Relaxed), 1);
    // The retry comes after the backoff, with a new source.
    r.run(retry_in - Duration::from_millis(200), &[]);
    assert_eq!(r.script.locked().opened.len(), 1, "retried early");
    r.run(Duration::from_millis(300), &["a"]);
    assert_eq!(r.script.locked().opened.len(), 2);
    r.run(Duration::from_millis(300), &["a"]);
    assert_eq!(r.state("a"), CameraState::Streaming);
}

#[test]
fn the_backoff_grows_then_resets_after_stable_streaming() {
    let mut r = Rig::new(&["a"]);
    let mut waits = Vec::new();
    for _ in 0..4 {
        r.fail("a", FailReason::StreamEnded);
        let CameraState::Backoff { retry_in, reason } = r.state("a") else { panic!("{:?}", r.state("a")) };
        assert_eq!(reason, FailReason::StreamEnded);
        waits.push(retry_in.as_secs_f64());
        r.run(retry_in + TICK, &[]);
    }
    for (i, base) in [1.0, 2.0, 4.0, 8.0].iter().enumerate() {
        assert!(waits[i] >= base * 0.8 && waits[i] <= base * 1.2, "attempt {i}: {waits:?}");
    }
    // Streams for longer than stable_after (10 s): the next failure waits the base again.
    r.run(Duration::from_secs(11), &["a"]);
    assert_eq!(r.state("a"), CameraState::Streaming);
    r.fail("a", FailReason::StreamEnded);
    let CameraState::Backoff { retry_in, .. } = r.state("a") else { panic!() };
    assert!(retry_in <= Duration::from_millis(1200), "{retry_in:?}");
}

#[test]
fn refusals_are_named_and_a_refused_transport_is_swapped_once() {
    let mut r = Rig::new(&["auth", "udp-only"]);
    r.fail("auth", FailReason::Unauthorized);
    assert!(matches!(r.state("auth"), CameraState::Failed { reason: FailReason::Unauthorized, .. }));
    // 461 over TCP: the other transport at once (no backoff), then kept while it streams.
    r.fail("udp-only", FailReason::TransportRefused { tried: Transport::Tcp, both: false });
    let opened: Vec<Transport> =
        r.script.locked().opened.iter().filter(|(id, _)| id == "udp-only").map(|(_, t)| *t).collect();
    assert_eq!(opened, [Transport::Tcp, Transport::Udp]);
    r.run(Duration::from_secs(1), &["udp-only"]);
    assert_eq!(r.state("udp-only"), CameraState::Streaming);
    r.fail("udp-only", FailReason::StreamEnded);
    let CameraState::Backoff { retry_in, .. } = r.state("udp-only") else { panic!() };
    r.run(retry_in + TICK, &[]);
    assert_eq!(r.script.locked().opened.last().unwrap().1, Transport::Udp, "the working transport is kept");
    // Both refused: failed, naming both, and back to the configured one after the backoff.
    let mut r = Rig::new(&["neither"]);
    r.script.locked().outcomes.push_back(Err(FailReason::TransportRefused { tried: Transport::Udp, both: false }));
    r.fail("neither", FailReason::TransportRefused { tried: Transport::Tcp, both: false });
    let CameraState::Failed { reason, retry_in } = r.state("neither") else { panic!("{:?}", r.state("neither")) };
    assert_eq!(reason, FailReason::TransportRefused { tried: Transport::Udp, both: true });
    r.run(retry_in + TICK, &[]);
    assert_eq!(r.script.locked().opened.last().unwrap().1, Transport::Tcp);
}

#[test]
fn a_camera_that_never_answers_times_out() {
    let mut r = Rig::new(&["silent"]);
    r.run(Duration::from_millis(9900), &[]);
    assert_eq!(r.state("silent"), CameraState::Connecting);
    r.run(Duration::from_millis(300), &[]);
    assert!(
        matches!(r.state("silent"), CameraState::Backoff { reason: FailReason::Timeout, .. }),
        "{:?}",
        r.state("silent")
    );
}
