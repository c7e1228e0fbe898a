//! The lean receive path: RTSP and RTP in Rust with the `retina` crate (TCP interleaved,
//! basic and digest auth), access units with their key-frame flag handed straight to the
//! decoder through `appsrc`:
//!
//! ```text
//! retina session (one shared runtime thread "retina" for every such camera)
//!   ─[key-frame gate / rate, in Rust: dropped units never enter GStreamer]─► appsrc
//!   ─► avdec_h26X ─[rate limit, size]─► videoscale ─► videoconvert (BGR) ─► appsink
//! ```
//!
//! Units arrive in Annex B with the parameter sets in front of every key frame, so any key
//! frame decodes alone. What retina does not do goes through GStreamer's `rtspsrc`
//! (`rtsp_client = "gstreamer"`): `rtsps://`, UDP transport, and a camera whose stream
//! retina cannot parse (it falls back by itself, with the reason logged). The supervisor's
//! states, reasons, stall detection and backoff are the same for both clients: this source
//! reports through the same counters and events.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use retina::client::{Credentials, PlayOptions, Session, SessionOptions, SetupOptions, TcpTransportOptions, Transport};
use retina::codec::{CodecItem, FrameFormat};
use tracing::{info, warn};

use super::decoders;
use super::gate::Gates;
use super::pipeline::{add_decoder_probe, admit_unit, decoder, gates, report_bus, tail};
use super::reason::FailReason;
use super::{CameraSpec, Msg, PipelineEvent, Source, SourceContext};
use crate::Locked;

/// How long DESCRIBE, SETUP and PLAY may take together.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The one runtime every retina camera's session runs on (a current-thread runtime on its
/// own thread: receiving RTP over TCP is little work per packet).
fn runtime() -> &'static tokio::runtime::Handle {
    static RT: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    RT.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("retina runtime");
        let handle = rt.handle().clone();
        std::thread::Builder::new()
            .name("retina".into())
            .spawn(move || rt.block_on(std::future::pending::<()>()))
            .expect("retina thread");
        handle
    })
}

/// Why a camera cannot use retina before anything is tried, if it cannot.
pub fn unsupported(spec: &CameraSpec) -> Option<&'static str> {
    if spec.location.starts_with("rtsps:") {
        return Some("rtsps (TLS) is not supported by retina");
    }
    if spec.transport == crate::config::Transport::Udp {
        return Some("UDP transport is served by the gstreamer client");
    }
    None
}

/// Whether a camera decodes key frames only, for good (its cadence never needs a delta
/// frame), in software: then the shared decoders serve it.
pub fn pooled(spec: &CameraSpec) -> bool {
    use crate::config::{DecodeMode, HwDecode};
    let keyframes = match spec.decode {
        DecodeMode::Keyframes => true,
        DecodeMode::Adaptive => spec.delta_rules.is_empty(),
        DecodeMode::All | DecodeMode::Auto => false,
    };
    keyframes && spec.hw_decode == HwDecode::None
}

/// Cameras whose streams retina could not parse: they use GStreamer from then on.
#[derive(Default)]
pub struct Fallbacks(Mutex<HashSet<String>>);

impl Fallbacks {
    pub fn contains(&self, id: &str) -> bool {
        self.0.locked().contains(id)
    }
}

pub(super) struct RetinaSource {
    task: tokio::task::JoinHandle<()>,
    pipeline: gst::Pipeline,
}

impl Source for RetinaSource {
    fn stop(self: Box<Self>) {
        self.task.abort();
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Builds the decode pipeline (`appsrc ! decoder ! tail`) and starts the session.
pub(super) fn open(
    spec: &CameraSpec,
    cx: SourceContext,
    fallbacks: Arc<Fallbacks>,
) -> Result<RetinaSource, FailReason> {
    let pipeline = gst::Pipeline::with_name(&format!("camera-{}", spec.id));
    cx.shared.stream_clock.locked().reset();
    let gates = gates(spec);
    report_bus(&pipeline, &spec.id, cx.generation, &cx.events, |reason| reason);
    let url = url::Url::parse(&spec.location).map_err(|e| FailReason::Other(format!("url: {e}")))?;
    let creds =
        spec.credentials.as_ref().map(|(u, p)| Credentials { username: u.clone(), password: p.expose().to_string() });
    let (id, generation, events) = (spec.id.clone(), cx.generation, cx.events.clone());
    let fail = move |reason: FailReason, detail: String| {
        let _ = events.send(Msg::Pipeline { id: id.clone(), generation, event: PipelineEvent::Failed(reason, detail) });
    };
    let run = Run {
        pooled: pooled(spec),
        camera: spec.id.clone(),
        hw: spec.hw_decode,
        pipeline: pipeline.clone(),
        fit: spec.fit,
        cx,
        gates,
        fallbacks,
    };
    let task = runtime().spawn(async move {
        let outcome = run.session(url, creds).await;
        match outcome {
            Ok(()) => fail(FailReason::StreamEnded, "the camera ended the stream".into()),
            Err((reason, detail)) => fail(reason, detail),
        }
    });
    Ok(RetinaSource { task, pipeline })
}

struct Run {
    /// Key frames only: decoded by the shared pool (`decoders`), no pipeline of its own.
    pooled: bool,
    camera: String,
    hw: crate::config::HwDecode,
    pipeline: gst::Pipeline,
    fit: (u32, u32),
    cx: SourceContext,
    gates: Arc<Mutex<Gates>>,
    fallbacks: Arc<Fallbacks>,
}

type Failure = (FailReason, String);

/// Retina's error as the supervisor's reason.
fn reason_of(e: &retina::Error) -> FailReason {
    reason_of_text(&e.to_string())
}

/// [`reason_of`] on retina's message. A status is read where retina writes it (`404 response
/// to DESCRIBE …`), never anywhere in the text: the message also holds the camera's URL, and
/// a port such as 40145 is not a 401.
fn reason_of_text(text: &str) -> FailReason {
    let status = |code: &str| text.contains(&format!("{code} response"));
    if status("401") {
        FailReason::Unauthorized
    } else if status("404") {
        FailReason::NoSuchStream
    } else if text.contains("Connection refused") || text.contains("No route") || text.contains("lookup") {
        FailReason::HostUnreachable
    } else if status("461") {
        FailReason::TransportRefused { tried: crate::config::Transport::Tcp, both: false }
    } else if text.contains("EOF") || text.contains("reset") || text.contains("closed") {
        FailReason::StreamEnded
    } else if text.contains("Out-of-order") || text.contains("wrong ssrc") {
        // A server glitch (a packet sent twice over TCP, a new source after a restart): a
        // new session cures it, so it is not a reason to give up on retina for the camera.
        FailReason::StreamEnded
    } else {
        FailReason::Other(format!("retina: {text}"))
    }
}

impl Run {
    /// DESCRIBE → SETUP (the first video stream, TCP) → PLAY → access units until the
    /// stream ends or fails.
    async fn session(self, url: url::Url, creds: Option<Credentials>) -> Result<(), Failure> {
        let net = |e: retina::Error| (reason_of(&e), e.to_string());
        let connect = async {
            let options = SessionOptions::default().creds(creds).user_agent("gridsight".into());
            let mut session = Session::describe(url, options).await.map_err(net)?;
            let Some(i) = session.streams().iter().position(|s| s.media() == "video") else {
                return Err((FailReason::NoSuchStream, "the camera offers no video track".into()));
            };
            let codec = match session.streams()[i].encoding_name() {
                "h264" => "h264",
                "h265" => "h265",
                other => {
                    return Err((
                        FailReason::UnsupportedCodec(format!("{other} (only H.264 and H.265 are supported)")),
                        String::new(),
                    ));
                }
            };
            let setup = SetupOptions::default()
                .transport(Transport::Tcp(TcpTransportOptions::default()))
                .frame_format(FrameFormat::SIMPLE);
            session.setup(i, setup).await.map_err(net)?;
            let playing = session.play(PlayOptions::default()).await.map_err(net)?;
            Ok((playing.demuxed().map_err(net)?, codec))
        };
        let (mut demuxed, codec) = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(r) => r?,
            Err(_) => return Err((FailReason::Timeout, "no answer to DESCRIBE/SETUP/PLAY within 5 s".into())),
        };
        let appsrc = if self.pooled { None } else { Some(self.start_decoder(codec)?) };
        if self.pooled {
            info!(camera = %self.camera, codec, "receiving with retina; key frames decoded by the shared decoders");
        }
        let shared = self.cx.shared.clone();
        let epoch = self.cx.epoch;
        let camera: Arc<str> = Arc::from(self.camera.as_str());
        let stream_i = demuxed.streams().iter().position(|s| s.media() == "video").unwrap_or(0);
        let mut key: Option<decoders::Key> = None;
        while let Some(item) = demuxed.next().await {
            let item = match item {
                Ok(item) => item,
                Err(e) => {
                    let reason = reason_of(&e);
                    if matches!(reason, FailReason::Other(_)) {
                        // Not a network problem: the stream is one retina cannot follow.
                        self.fallbacks.0.locked().insert(self.camera.clone());
                        warn!(camera = %self.camera, error = %e, "retina cannot parse this camera's stream; using the gstreamer client from now on");
                    }
                    return Err((reason, e.to_string()));
                }
            };
            let CodecItem::VideoFrame(frame) = item else { continue };
            let ts = frame.timestamp();
            let pts_ns = (ts.elapsed().max(0) as u128 * 1_000_000_000 / ts.clock_rate().get() as u128) as u64;
            let keyframe = frame.is_random_access_point();
            if let Some(tap) = &self.cx.on_unit {
                tap(&camera, codec, Duration::from_nanos(pts_ns), keyframe, frame.data());
            }
            if !admit_unit(&shared, &self.gates, Some(pts_ns), keyframe, epoch) {
                continue;
            }
            let Some(appsrc) = &appsrc else {
                if key.is_none() || frame.has_new_parameters() {
                    let size = match demuxed.streams()[stream_i].parameters() {
                        Some(retina::codec::ParametersRef::Video(v)) => v.pixel_dimensions(),
                        _ => continue,
                    };
                    key = Some(decoders::Key { codec, size, fit: self.fit });
                }
                let Some(k) = key else { continue };
                let pts = Duration::from_nanos(pts_ns);
                decoders::pool()
                    .decode(k, &camera, &shared, &self.cx.on_frame, epoch, pts, frame.into_data())
                    .map_err(|r| (r, String::new()))?;
                continue;
            };
            let mut buffer = gst::Buffer::from_mut_slice(frame.into_data());
            {
                let b = buffer.get_mut().expect("a new buffer is writable");
                b.set_pts(gst::ClockTime::from_nseconds(pts_ns));
                if !keyframe {
                    b.set_flags(gst::BufferFlags::DELTA_UNIT);
                }
            }
            if appsrc.push_buffer(buffer).is_err() {
                // The pipeline is stopping (or failed: its error is on the bus).
                return Ok(());
            }
        }
        Ok(())
    }

    /// `appsrc ! decoder ! tail`, playing.
    fn start_decoder(&self, codec: &str) -> Result<gst_app::AppSrc, Failure> {
        let other = |e: String| (FailReason::Other(e), String::new());
        let caps = gst::Caps::builder(format!("video/x-{codec}"))
            .field("stream-format", "byte-stream")
            .field("alignment", "au")
            .build();
        let appsrc = gst_app::AppSrc::builder()
            .caps(&caps)
            .format(gst::Format::Time)
            .is_live(true)
            .do_timestamp(false)
            .max_buffers(8)
            .leaky_type(gst_app::AppLeakyType::Downstream)
            .build();
        let cx = &self.cx;
        let (scale, filter) = tail(&self.pipeline, &self.camera, cx.shared.clone(), cx.epoch, cx.on_frame.clone())
            .map_err(|r| (r, String::new()))?;
        let dec = decoder(&self.camera, codec, self.hw).map_err(|r| (r, String::new()))?;
        self.pipeline.add_many([appsrc.upcast_ref(), &dec]).map_err(|e| other(e.to_string()))?;
        gst::Element::link_many([appsrc.upcast_ref(), &dec, &scale]).map_err(|e| other(e.to_string()))?;
        // The decoder runs on appsrc's streaming thread: its CPU clock starts here.
        let shared = self.cx.shared.clone();
        appsrc.static_pad("src").unwrap().add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            shared.counters.cpu.start();
            gst::PadProbeReturn::Ok
        });
        add_decoder_probe(&dec, &filter, self.fit, self.cx.shared.clone(), self.gates.clone());
        self.pipeline.set_state(gst::State::Playing).map_err(|_| other("decoder pipeline refused to start".into()))?;
        info!(camera = %self.camera, codec, "receiving with retina");
        Ok(appsrc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The status is read where retina writes it, not from a port that happens to hold it.
    #[test]
    fn statuses_are_read_from_the_response_not_the_url() {
        let at = "\n\nconn: 127.0.0.1:40145(me)->127.0.0.1:40145@2026-12-05T15:12:58";
        let text = |s: &str| format!("{s} response to DESCRIBE CSeq=1: Unexpected RTSP response status{at}");
        assert_eq!(reason_of_text(&text("404")), FailReason::NoSuchStream);
        assert_eq!(reason_of_text(&text("401")), FailReason::Unauthorized);
        assert!(matches!(reason_of_text(&text("461")), FailReason::TransportRefused { .. }));
        assert!(matches!(reason_of_text(&format!("something else{at}")), FailReason::Other(_)));
    }
}
