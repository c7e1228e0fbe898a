//! A small shared pool of decoders for cameras that decode key frames only.
//!
//! A key frame decodes alone (retina puts the parameter sets in front of each), so cameras
//! in key-frame cadence need no decoder of their own: their key frames go to one of a few
//! shared pipelines, `appsrc ! avdec_h26X ! videoscale ! videoconvert (I420) ! appsink`,
//! one set per codec, picture size and output size. That takes a decoder's context,
//! reference pictures and streaming thread off every such camera.
//!
//! Routing: each key frame pushed gets a PTS token unique to its decoder (increasing, 1 ms
//! apart); the token maps to the camera's ticket (its counters, stream time, callback).
//! Output is matched by token, never by order, so a decoder that holds a picture back or
//! drops one cannot hand a frame to the wrong camera; tickets not answered within
//! [`TICKET_TTL`] are dropped and counted. A full decoder queue drops the key frame
//! (counted as unintended, `decoder_busy`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tracing::{info, warn};

use super::pipeline::{element, fit_size, frame_of};
use super::reason::FailReason;
use super::{CameraShared, FrameCallback};
use crate::Locked;
use crate::drops::Dropped;

/// Decoders per key: enough for the key frames of hundreds of cameras (one key frame
/// of 640x360 decodes in ≈ 2 ms), and more than one so a slow picture does not hold up all.
const DECODERS_PER_KEY: usize = 2;

/// Key frames waiting in one decoder's queue; beyond, new ones are dropped and counted.
/// Cameras' key frames can arrive all at once (cameras started together, or served by one
/// encoder), so the queue holds a burst from hundreds (a 360p key frame is ≈ 20–60 KB).
const QUEUE: u64 = 256;

/// A ticket not answered by its decoder in this time is given up.
const TICKET_TTL: Duration = Duration::from_secs(5);

/// What a pooled decoder decodes: codec, picture size, output size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub codec: &'static str,
    pub size: (u32, u32),
    pub fit: (u32, u32),
}

/// Whose key frame a token stands for.
struct Ticket {
    camera: Arc<str>,
    shared: Arc<CameraShared>,
    on_frame: FrameCallback,
    epoch: Instant,
    pts: Duration,
    at: Instant,
}

struct Decoder {
    appsrc: gst_app::AppSrc,
    _pipeline: gst::Pipeline,
    tickets: Arc<Mutex<BTreeMap<u64, Ticket>>>,
    next_token: AtomicU64,
}

/// Every pooled decoder, by key.
#[derive(Default)]
pub struct Pool {
    decoders: Mutex<HashMap<Key, Arc<Vec<Decoder>>>>,
}

/// The process's pool.
pub fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(Pool::default)
}

/// Decoder pipelines running in the pool.
pub fn decoders_running() -> usize {
    pool().decoders.locked().values().map(|d| d.len()).sum()
}

impl Pool {
    fn decoders(&self, key: Key) -> Result<Arc<Vec<Decoder>>, FailReason> {
        let mut all = self.decoders.locked();
        if let Some(d) = all.get(&key) {
            return Ok(d.clone());
        }
        let set: Vec<Decoder> = (0..DECODERS_PER_KEY).map(|i| Decoder::start(key, i)).collect::<Result<_, _>>()?;
        info!(
            codec = key.codec,
            size = format!("{}x{}", key.size.0, key.size.1),
            decoders = set.len(),
            "shared key-frame decoders started"
        );
        let set = Arc::new(set);
        all.insert(key, set.clone());
        Ok(set)
    }

    /// Decodes one key frame of `camera` (Annex B with its parameter sets, stream time
    /// `pts`); the picture reaches `on_frame` from the decoder's thread.
    #[allow(clippy::too_many_arguments)]
    pub fn decode(
        &self,
        key: Key,
        camera: &Arc<str>,
        shared: &Arc<CameraShared>,
        on_frame: &FrameCallback,
        epoch: Instant,
        pts: Duration,
        data: Vec<u8>,
    ) -> Result<(), FailReason> {
        let set = self.decoders(key)?;
        // The decoder with the shortest queue.
        let Some(dec) = set.iter().min_by_key(|d| d.appsrc.current_level_buffers()) else { return Ok(()) };
        if dec.appsrc.current_level_buffers() >= QUEUE {
            shared.drops.record(Dropped::DecoderQueueFull);
            return Ok(());
        }
        let token = dec.next_token.fetch_add(1, Ordering::Relaxed) * 1_000_000;
        {
            let mut tickets = dec.tickets.locked();
            let now = Instant::now();
            // Tickets a decoder never answered (a corrupt picture) are given up; tokens grow
            // with time, so the expired ones are the first.
            while let Some(entry) = tickets.first_entry()
                && now.duration_since(entry.get().at) >= TICKET_TTL
            {
                entry.remove().shared.drops.record(Dropped::DecoderNoPicture);
            }
            tickets.insert(
                token,
                Ticket {
                    camera: camera.clone(),
                    shared: shared.clone(),
                    on_frame: on_frame.clone(),
                    epoch,
                    pts,
                    at: now,
                },
            );
        }
        let mut buffer = gst::Buffer::from_mut_slice(data);
        buffer.get_mut().expect("a new buffer is writable").set_pts(gst::ClockTime::from_nseconds(token));
        if dec.appsrc.push_buffer(buffer).is_err() {
            dec.tickets.locked().remove(&token);
            // A stopped decoder is replaced at the next key frame.
            self.decoders.locked().remove(&key);
            return Err(FailReason::Other("shared decoder stopped".into()));
        }
        Ok(())
    }
}

impl Decoder {
    fn start(key: Key, index: usize) -> Result<Self, FailReason> {
        let other = |e: String| FailReason::Other(format!("shared decoder: {e}"));
        let name = format!("keyframes-{}-{}x{}-{index}", key.codec, key.size.0, key.size.1);
        let pipeline = gst::Pipeline::with_name(&name);
        let caps = gst::Caps::builder(format!("video/x-{}", key.codec))
            .field("stream-format", "byte-stream")
            .field("alignment", "au")
            .build();
        let appsrc = gst_app::AppSrc::builder()
            .caps(&caps)
            .format(gst::Format::Time)
            .is_live(true)
            .max_buffers(QUEUE + 8)
            .build();
        let dec = element(&format!("avdec_{}", key.codec))?;
        dec.set_property("max-threads", 1i32);
        // A corrupt picture of one camera must not stop the decoder for all of them.
        dec.set_property("max-errors", -1i32);
        let scale = element("videoscale")?;
        let convert = element("videoconvert")?;
        let filter = element("capsfilter")?;
        let (ow, oh) = fit_size(key.size, key.fit);
        filter.set_property(
            "caps",
            gst::Caps::builder("video/x-raw")
                .field("format", "I420")
                .field("width", ow as i32)
                .field("height", oh as i32)
                .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
                .build(),
        );
        // The callback takes each picture at once (it runs on the decoder's thread).
        let sink = gst_app::AppSink::builder().max_buffers(2).drop(false).sync(false).build();
        pipeline
            .add_many([appsrc.upcast_ref(), &dec, &scale, &convert, &filter, sink.upcast_ref()])
            .map_err(|e| other(e.to_string()))?;
        gst::Element::link_many([appsrc.upcast_ref(), &dec, &scale, &convert, &filter, sink.upcast_ref()])
            .map_err(|e| other(e.to_string()))?;
        let tickets: Arc<Mutex<BTreeMap<u64, Ticket>>> = Arc::default();
        // CPU clocks of the camera whose picture this thread is on (one at a time).
        let t = tickets.clone();
        appsrc.static_pad("src").unwrap().add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(token) = info.buffer().and_then(|b| b.pts()).map(|p| p.nseconds())
                && let Some(ticket) = t.locked().get(&token)
            {
                ticket.shared.counters.cpu.start();
            }
            gst::PadProbeReturn::Ok
        });
        let t = tickets.clone();
        dec.static_pad("src").unwrap().add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(token) = info.buffer().and_then(|b| b.pts()).map(|p| p.nseconds())
                && let Some(ticket) = t.locked().get(&token)
            {
                let c = &ticket.shared.counters;
                c.cpu.lap(&c.cpu.decode_ns);
                c.decoded.fetch_add(1, Ordering::Relaxed);
            }
            gst::PadProbeReturn::Ok
        });
        let t = tickets.clone();
        let size = ((key.size.0 as u64) << 32) | key.size.1 as u64;
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let token = sample.buffer().and_then(|b| b.pts()).map(|p| p.nseconds());
                    let Some(ticket) = token.and_then(|token| t.locked().remove(&token)) else {
                        return Ok(gst::FlowSuccess::Ok);
                    };
                    let shared = &ticket.shared;
                    shared.source_size.store(size, Ordering::Relaxed);
                    let cpu = &shared.counters.cpu;
                    if let Some(frame) = frame_of(&ticket.camera, &sample, shared, ticket.epoch, Some(ticket.pts)) {
                        cpu.lap(&cpu.convert_ns);
                        shared.counters.handed_on.fetch_add(1, Ordering::Relaxed);
                        (ticket.on_frame)(frame);
                        cpu.lap(&cpu.motion_ns);
                    }
                    cpu.stop();
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        let bus = pipeline.bus().unwrap();
        let pipeline_name = name.clone();
        bus.set_sync_handler(move |_, msg| {
            if let gst::MessageView::Error(e) = msg.view() {
                warn!(decoder = %pipeline_name, error = %e.error(), "shared key-frame decoder error");
            }
            gst::BusSyncReply::Drop
        });
        pipeline.set_state(gst::State::Playing).map_err(|_| other("refused to start".into()))?;
        Ok(Self { appsrc, _pipeline: pipeline, tickets, next_token: AtomicU64::new(1) })
    }
}
