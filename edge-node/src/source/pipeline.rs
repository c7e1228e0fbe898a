//! One camera's GStreamer pipeline:
//!
//! ```text
//! rtspsrc ─► rtph26Xdepay ─► h26Xparse ─[gate: key frames only / rate]─► decoder
//!         ─[rate limit, size]─► videoscale ─► videoconvert (I420) ─► appsink (newest only)
//!         ─► BGR in Rust for the frames handed on (`color.rs`)
//! ```
//!
//! The gate drops delta frames before the decoder in `keyframes` mode (a probe after the
//! parser: `avdec_h264`'s skip-frame does nothing in GStreamer 1.22), and in `adaptive` mode
//! while nothing needs them or once the GOP's last look is decoded. In `all` mode the
//! decoder sees everything and frames beyond `detect_fps` are dropped right after it, so
//! scaling and conversion run only for frames that are handed on. Scaling comes before
//! conversion (converting a full frame first costs more than decoding it).

use crate::Locked;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tracing::{info, warn};

use super::gate::{Gates, Unit};
use super::reason::FailReason;
use super::{CameraShared, CameraSpec, FrameCallback, Msg, PipelineEvent};
use crate::config::{HwDecode, Transport};
use crate::drops::Dropped;
use crate::types::Frame;

/// A camera's cadence, shared by the probes of one pipeline.
pub(super) fn gates(spec: &CameraSpec) -> Arc<Mutex<Gates>> {
    Arc::new(Mutex::new(Gates::new(spec.decode, spec.detect_fps, spec.demand.clone())))
}

/// One access unit arrived (after the parser, or from retina): counted, and whether it
/// goes to the decoder (the key-frame gate; surplus key frames dropped before decoding).
pub(super) fn admit_unit(
    s: &CameraShared,
    gates: &Mutex<Gates>,
    pts: Option<u64>,
    keyframe: bool,
    epoch: Instant,
) -> bool {
    let c = &s.counters;
    c.received.fetch_add(1, Ordering::Relaxed);
    if keyframe {
        c.keyframes.fetch_add(1, Ordering::Relaxed);
    }
    s.last_unit_ms.store(epoch.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
    let mut g = gates.locked();
    match g.unit(pts, keyframe) {
        Unit::Decode => {}
        Unit::Delta => {
            s.drops.record(Dropped::DeltaFrame);
            return false;
        }
        Unit::OverRate => {
            s.drops.record(Dropped::OverDetectFps);
            return false;
        }
    }
    s.decoding_all.store(g.decoding_all(), Ordering::Relaxed);
    true
}

pub(super) fn element(factory: &str) -> Result<gst::Element, FailReason> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| FailReason::UnsupportedCodec(format!("GStreamer element {factory} is missing; run `make setup`")))
}

/// Picks the decoder for a codec; hardware when asked for and present, else software.
pub(super) fn decoder(camera: &str, codec: &str, hw: HwDecode) -> Result<gst::Element, FailReason> {
    let hw_names: &[&str] = match (codec, hw) {
        (_, HwDecode::None) => &[],
        ("h264", HwDecode::Vaapi) => &["vah264dec", "vaapih264dec"],
        ("h265", HwDecode::Vaapi) => &["vah265dec", "vaapih265dec"],
        ("h264", HwDecode::Nvdec) => &["nvh264dec"],
        ("h265", HwDecode::Nvdec) => &["nvh265dec"],
        ("h264", HwDecode::Auto) => &["nvh264dec", "vah264dec", "vaapih264dec"],
        ("h265", HwDecode::Auto) => &["nvh265dec", "vah265dec", "vaapih265dec"],
        _ => &[],
    };
    for name in hw_names {
        if let Ok(dec) = gst::ElementFactory::make(name).build() {
            info!(camera, decoder = name, "hardware decoder");
            return Ok(dec);
        }
    }
    if !hw_names.is_empty() {
        warn!(camera, wanted = ?hw, tried = hw_names.join(","), "no hardware decoder available; falling back to software");
    }
    let dec = element(&format!("avdec_{codec}"))?;
    // One thread per decoder: hundreds of cameras share the cores; frame threads would
    // multiply threads and memory per camera for no throughput gain.
    dec.set_property("max-threads", 1i32);
    Ok(dec)
}

/// The largest even size inside `fit` with the source's aspect ratio; never upscales.
pub fn fit_size(src: (u32, u32), fit: (u32, u32)) -> (u32, u32) {
    let scale = (fit.0 as f64 / src.0 as f64).min(fit.1 as f64 / src.1 as f64).min(1.0);
    let w = ((src.0 as f64 * scale).round() as u32 & !1).max(2);
    let h = ((src.1 as f64 * scale).round() as u32 & !1).max(2);
    (w, h)
}

pub fn build(
    spec: &CameraSpec,
    shared: Arc<CameraShared>,
    generation: u64,
    epoch: Instant,
    events: Sender<Msg>,
    on_frame: FrameCallback,
    on_unit: Option<super::UnitCallback>,
) -> Result<gst::Pipeline, FailReason> {
    let pipeline = gst::Pipeline::with_name(&format!("camera-{}", spec.id));
    // A new connection: its timestamps start again (stream time goes on).
    shared.stream_clock.locked().reset();
    let src = element("rtspsrc")?;

    src.set_property("location", &spec.location);
    src.set_property("latency", 200u32);
    src.set_property("tcp-timeout", 5_000_000u64);
    src.set_property("timeout", 5_000_000u64);
    src.set_property("drop-on-latency", true);
    src.set_property("do-retransmission", false);
    src.set_property_from_str("protocols", if spec.transport == Transport::Tcp { "tcp" } else { "udp" });
    if let Some((user, password)) = &spec.credentials {
        src.set_property("user-id", user);
        src.set_property("user-pw", password.expose());
    }
    // Video only: audio tracks are never set up. Whether a video track was offered tells
    // "the server refused the transport" from "there is nothing to set up" below.
    let offered_video = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let offered = offered_video.clone();
    src.connect("select-stream", false, move |args| {
        let caps = args[2].get::<gst::Caps>().ok()?;
        let video = caps.structure(0).and_then(|s| s.get::<&str>("media").ok()) == Some("video");
        if video {
            offered.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        Some(video.to_value())
    });

    pipeline.add(&src).map_err(|e| FailReason::Other(e.to_string()))?;
    let (scale, filter) = tail(&pipeline, &spec.id, shared.clone(), epoch, on_frame)?;
    let gates = gates(spec);

    let transport = spec.transport;
    report_bus(&pipeline, &spec.id, generation, &events, move |reason| {
        let offered = offered_video.load(std::sync::atomic::Ordering::SeqCst);
        reason.nothing_set_up(transport, offered)
    });

    let (pipeline_weak, scale_weak, filter_weak) = (pipeline.downgrade(), scale.downgrade(), filter.downgrade());
    let (camera, hw, fit) = (spec.id.clone(), spec.hw_decode, spec.fit);
    let (shared_pad, gates_pad, tx) = (shared.clone(), gates.clone(), events.clone());
    src.connect_pad_added(move |_, pad| {
        let (Some(pipeline), Some(scale), Some(filter)) =
            (pipeline_weak.upgrade(), scale_weak.upgrade(), filter_weak.upgrade())
        else {
            return;
        };
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let encoding = caps.structure(0).and_then(|s| s.get::<String>("encoding-name").ok()).unwrap_or_default();
        let codec = match encoding.as_str() {
            "H264" => "h264",
            "H265" => "h265",
            other => {
                let reason = FailReason::UnsupportedCodec(format!("{other} (only H.264 and H.265 are supported)"));
                let _ = tx.send(Msg::Pipeline {
                    id: camera.clone(),
                    generation,
                    event: PipelineEvent::Failed(reason, String::new()),
                });
                return;
            }
        };
        let chain = (|| -> Result<(), FailReason> {
            let depay = element(&format!("rtp{codec}depay"))?;
            let parse = element(&format!("{codec}parse"))?;
            // Annex B access units with the parameter sets before each key frame: what the
            // decoder takes, and what event clips record (as from retina).
            parse.set_property("config-interval", -1i32);
            let units = element("capsfilter")?;
            units.set_property(
                "caps",
                gst::Caps::builder(format!("video/x-{codec}"))
                    .field("stream-format", "byte-stream")
                    .field("alignment", "au")
                    .build(),
            );
            let dec = decoder(&camera, codec, hw)?;
            pipeline.add_many([&depay, &parse, &units, &dec]).map_err(|e| FailReason::Other(e.to_string()))?;
            gst::Element::link_many([&depay, &parse, &units, &dec, &scale])
                .map_err(|e| FailReason::Other(e.to_string()))?;
            let tap = on_unit.clone().map(|t| (t, Arc::<str>::from(camera.as_str()), codec));
            add_gate_probes(&units, &dec, &filter, fit, shared_pad.clone(), gates_pad.clone(), epoch, tap);
            for e in [&depay, &parse, &units, &dec] {
                e.sync_state_with_parent().map_err(|e| FailReason::Other(e.to_string()))?;
            }
            pad.link(&depay.static_pad("sink").unwrap()).map_err(|e| FailReason::Other(format!("link: {e:?}")))?;
            Ok(())
        })();
        if let Err(reason) = chain {
            let _ = tx.send(Msg::Pipeline {
                id: camera.clone(),
                generation,
                event: PipelineEvent::Failed(reason, String::new()),
            });
        }
    });

    Ok(pipeline)
}

/// Errors and end of stream go straight to the supervisor; nothing accumulates on the bus.
/// `refine` turns GStreamer's error into the reason reported.
pub(super) fn report_bus(
    pipeline: &gst::Pipeline,
    id: &str,
    generation: u64,
    events: &Sender<Msg>,
    refine: impl Fn(FailReason) -> FailReason + Send + Sync + 'static,
) {
    let bus = pipeline.bus().unwrap();
    let (tx, id) = (events.clone(), id.to_string());
    bus.set_sync_handler(move |_, msg| {
        let event = match msg.view() {
            gst::MessageView::Error(e) => {
                // GStreamer's debug text spans lines; one log line per event.
                let debug = e.debug().map(|d| d.split_whitespace().collect::<Vec<_>>().join(" "));
                let reason = FailReason::from_gst(&e.error(), debug.as_deref());
                Some(PipelineEvent::Failed(refine(reason), debug.unwrap_or_default()))
            }
            gst::MessageView::Eos(_) => Some(PipelineEvent::Ended),
            _ => None,
        };
        if let Some(event) = event {
            let _ = tx.send(Msg::Pipeline { id: id.clone(), generation, event });
        }
        gst::BusSyncReply::Drop
    });
}

/// The part after the decoder, shared by both RTSP clients: `videoscale ! videoconvert !
/// capsfilter (BGR, size set from the decoder's caps) ! appsink (newest only)`, handing
/// frames to `on_frame`. Returns the element the decoder links to, and the caps filter.
pub(super) fn tail(
    pipeline: &gst::Pipeline,
    id: &str,
    shared: Arc<CameraShared>,
    epoch: Instant,
    on_frame: FrameCallback,
) -> Result<(gst::Element, gst::Element), FailReason> {
    let scale = element("videoscale")?;
    let convert = element("videoconvert")?;
    let filter = element("capsfilter")?;
    // I420 out (videoconvert is a pass-through for a software decoder's I420 and converts
    // what hardware decoders give); BGR is made in Rust for the frames handed on (`color`).
    filter.set_property("caps", gst::Caps::builder("video/x-raw").field("format", "I420").build());
    let sink = gst_app::AppSink::builder().max_buffers(1).drop(true).sync(false).build();
    pipeline.add_many([&scale, &convert, &filter, sink.upcast_ref()]).map_err(|e| FailReason::Other(e.to_string()))?;
    gst::Element::link_many([&scale, &convert, &filter, sink.upcast_ref()])
        .map_err(|e| FailReason::Other(e.to_string()))?;
    let camera: Arc<str> = Arc::from(id);
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let cpu = &shared.counters.cpu;
                if let Some(frame) = to_frame(&camera, &sample, &shared, epoch) {
                    cpu.lap(&cpu.convert_ns);
                    shared.counters.handed_on.fetch_add(1, Ordering::Relaxed);
                    on_frame(frame);
                    cpu.lap(&cpu.motion_ns);
                }
                cpu.stop();
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    Ok((scale, filter))
}

#[allow(clippy::too_many_arguments)]
fn add_gate_probes(
    parse: &gst::Element,
    dec: &gst::Element,
    filter: &gst::Element,
    fit: (u32, u32),
    shared: Arc<CameraShared>,
    gates: Arc<Mutex<Gates>>,
    epoch: Instant,
    tap: Option<(super::UnitCallback, Arc<str>, &'static str)>,
) {
    let (s, g) = (shared.clone(), gates.clone());
    parse.static_pad("src").unwrap().add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let Some(buffer) = info.buffer() else { return gst::PadProbeReturn::Ok };
        let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
        // Every unit, before the cadence drops any (event clips).
        if let (Some((tap, camera, codec)), Some(pts)) = (&tap, buffer.pts())
            && let Ok(map) = buffer.map_readable()
        {
            tap(camera, codec, std::time::Duration::from_nanos(pts.nseconds()), keyframe, &map);
        }
        if !admit_unit(&s, &g, buffer.pts().map(|t| t.nseconds()), keyframe, epoch) {
            return gst::PadProbeReturn::Drop;
        }
        s.counters.cpu.start();
        gst::PadProbeReturn::Ok
    });
    add_decoder_probe(dec, filter, fit, shared, gates);
}

/// After the decoder: counted, the rate limit when every frame is decoded, and the output
/// size set from the decoder's caps.
pub(super) fn add_decoder_probe(
    dec: &gst::Element,
    filter: &gst::Element,
    fit: (u32, u32),
    shared: Arc<CameraShared>,
    gates: Arc<Mutex<Gates>>,
) {
    let filter = filter.downgrade();
    dec.static_pad("src").unwrap().add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            if let Some(gst::PadProbeData::Event(event)) = &info.data {
                if let gst::EventView::Caps(caps) = event.view()
                    && let Some(st) = caps.caps().structure(0)
                    && let (Ok(w), Ok(h)) = (st.get::<i32>("width"), st.get::<i32>("height"))
                    && let Some(filter) = filter.upgrade()
                {
                    let (ow, oh) = fit_size((w as u32, h as u32), fit);
                    shared.source_size.store(((w as u64) << 32) | h as u64, Ordering::Relaxed);
                    filter.set_property(
                        "caps",
                        gst::Caps::builder("video/x-raw")
                            .field("format", "I420")
                            .field("width", ow as i32)
                            .field("height", oh as i32)
                            .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
                            .build(),
                    );
                }
                return gst::PadProbeReturn::Ok;
            }
            let Some(buffer) = info.buffer() else { return gst::PadProbeReturn::Ok };
            let c = &shared.counters;
            c.cpu.lap(&c.cpu.decode_ns);
            c.decoded.fetch_add(1, Ordering::Relaxed);
            if !gates.locked().decoded(buffer.pts().map(|t| t.nseconds())) {
                shared.drops.record(Dropped::OverDetectFps);
                c.cpu.stop();
                return gst::PadProbeReturn::Drop;
            }
            gst::PadProbeReturn::Ok
        },
    );
}

fn to_frame(camera: &Arc<str>, sample: &gst::Sample, shared: &CameraShared, epoch: Instant) -> Option<Frame> {
    let pts = sample.buffer()?.pts().map(|t| Duration::from_nanos(t.nseconds()));
    frame_of(camera, sample, shared, epoch, pts)
}

/// The frame handed on for a decoded sample of `camera`, whose stream timestamp is `pts`.
pub(super) fn frame_of(
    camera: &Arc<str>,
    sample: &gst::Sample,
    shared: &CameraShared,
    epoch: Instant,
    pts: Option<Duration>,
) -> Option<Frame> {
    let caps = sample.caps()?;
    let st = caps.structure(0)?;
    let (w, h) = (st.get::<i32>("width").ok()? as usize, st.get::<i32>("height").ok()? as usize);
    let buffer = sample.buffer()?;
    let map = buffer.map_readable().ok()?;
    let data: Arc<[u8]> = Arc::from(super::color::i420_to_bgr(&map, w, h)?);
    let src = shared.source_size.load(Ordering::Relaxed);
    let stream = shared.stream_clock.locked().map(pts, epoch.elapsed());
    Some(Frame {
        camera: camera.clone(),
        seq: shared.counters.handed_on.load(Ordering::Relaxed),
        pts,
        stream,
        wall: SystemTime::now(),
        width: w as u32,
        height: h as u32,
        source_width: (src >> 32) as u32,
        source_height: (src & 0xffff_ffff) as u32,
        keyframe: !shared.decoding_all.load(Ordering::Relaxed),
        roi: None,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::fit_size;

    #[test]
    fn fits_inside_the_detection_size_keeping_aspect() {
        assert_eq!(fit_size((1920, 1080), (640, 384)), (640, 360));
        assert_eq!(fit_size((640, 272), (416, 416)), (416, 176));
        assert_eq!(fit_size((176, 144), (640, 640)), (176, 144), "never upscales");
        assert_eq!(fit_size((720, 405), (640, 640)), (640, 360));
    }
}
