//! Encoded clips for the simulator: H.264 access units held in memory, read once from a
//! clip file (passed through when it is H.264 with usable key frames) or encoded once
//! from a clip or a test pattern. Serving then costs no decoding or encoding.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::SimError;

/// Where a stream's pictures come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Picture {
    /// A media file (any container GStreamer reads).
    Clip(PathBuf),
    /// A `videotestsrc` pattern (`ball`, `smpte`, `snow`, ...) of the given length.
    Pattern { pattern: String, seconds: u32 },
    /// A photo (JPEG or PNG) held still for the given length.
    Still { path: PathBuf, seconds: u32 },
    /// A continuous scene with a short event: `background` (a photo, or a clip's first
    /// frame) held still for `seconds`, and `sprite` (a photo, scaled to half the
    /// height) crossing it left to right in the lower half, from out of view to out of view,
    /// in `cross`, from `at` into each loop. The loop starts on a key frame, so the phase
    /// of the crossing against the GOP is the same in every loop: `at` and `cross` can put
    /// it wholly between two key frames.
    Crossing { sprite: PathBuf, background: PathBuf, seconds: u32, at: Duration, cross: Duration },
}

/// Video codec of a served stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Codec {
    #[default]
    H264,
    H265,
}

impl Codec {
    /// The GStreamer name stem: `h264` or `h265`.
    pub fn stem(self) -> &'static str {
        match self {
            Self::H264 => "h264",
            Self::H265 => "h265",
        }
    }
}

/// How a stream is encoded. All defaults: pass the clip through untouched when possible.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Encoding {
    pub codec: Codec,
    pub size: Option<(u32, u32)>,
    pub fps: Option<u32>,
    pub keyframe_interval: Option<Duration>,
    pub bitrate_kbps: Option<u32>,
    /// Plays the clip this many times as fast (frames dropped to keep `fps`): short events.
    pub speed: Option<u32>,
}

/// A clip passes through only if no two key frames (across the loop) are further apart.
pub const MAX_PASSTHROUGH_GOP: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct Unit {
    pub buffer: gst::Buffer,
    pub pts: gst::ClockTime,
    pub dts: gst::ClockTime,
    pub duration: gst::ClockTime,
    pub keyframe: bool,
}

#[derive(Debug, Clone)]
pub struct EncodedClip {
    pub caps: gst::Caps,
    pub units: Vec<Unit>,
    /// Length of one loop.
    pub period: gst::ClockTime,
    pub width: u32,
    pub height: u32,
    /// Whether the clip was re-encoded (false: passed through).
    pub encoded: bool,
    pub codec: Codec,
}

impl EncodedClip {
    pub fn keyframes(&self) -> usize {
        self.units.iter().filter(|u| u.keyframe).count()
    }

    /// Longest distance between key frames, counting the wrap at the loop.
    pub fn max_gop(&self) -> Duration {
        let kf: Vec<u64> = self.units.iter().filter(|u| u.keyframe).map(|u| u.dts.nseconds()).collect();
        let Some(first) = kf.first() else { return Duration::MAX };
        let mut gaps: Vec<u64> = kf.windows(2).map(|w| w[1] - w[0]).collect();
        gaps.push(self.period.nseconds() - kf.last().unwrap() + first);
        Duration::from_nanos(gaps.into_iter().max().unwrap_or(0))
    }
}

fn au_caps(codec: Codec) -> String {
    format!("video/x-{},stream-format=byte-stream,alignment=au", codec.stem())
}

/// Reads or encodes the stream's access units.
pub fn load(picture: &Picture, encoding: &Encoding) -> Result<EncodedClip, SimError> {
    let paths: Vec<&PathBuf> = match picture {
        Picture::Clip(path) | Picture::Still { path, .. } => vec![path],
        Picture::Crossing { sprite, background, .. } => vec![sprite, background],
        Picture::Pattern { .. } => vec![],
    };
    if let Some(path) = paths.into_iter().find(|p| !p.is_file()) {
        return Err(SimError::Media(format!("{} does not exist (run `make setup`)", path.display())));
    }
    if let Picture::Clip(path) = picture {
        if !path.is_file() {
            return Err(SimError::Media(format!("{} does not exist (run `make setup`)", path.display())));
        }
        // Only containers that commonly carry H.264 are tried as they are.
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
        let may_be_h264 = matches!(ext.as_str(), "mp4" | "m4v" | "mov" | "mkv" | "h264" | "264" | "ts");
        if *encoding == Encoding::default() && may_be_h264 {
            let launch = format!(
                "filesrc location=\"{}\" ! parsebin ! h264parse config-interval=-1 ! {} ! appsink name=sink sync=false",
                escape(path),
                au_caps(Codec::H264)
            );
            // Not H.264 (or not parseable): fall through to encoding.
            if let Ok(clip) = collect(&launch, false, Codec::H264)
                && clip.max_gop() <= MAX_PASSTHROUGH_GOP
            {
                return Ok(clip);
            }
        }
    }
    let (w, h, fps) = match (picture, encoding.size, encoding.fps) {
        (_, Some((w, h)), Some(f)) => (w, h, f),
        (Picture::Pattern { .. } | Picture::Crossing { .. }, size, fps) => {
            let (w, h) = size.unwrap_or((640, 360));
            (w, h, fps.unwrap_or(25))
        }
        (Picture::Clip(path) | Picture::Still { path, .. }, size, fps) => {
            let (nw, nh, nfps) = probe(path)?;
            let (w, h) = size.unwrap_or((nw & !1, nh & !1));
            (w, h, fps.unwrap_or(nfps.round().max(1.0) as u32))
        }
    };
    let gop = encoding.keyframe_interval.unwrap_or(Duration::from_secs(2));
    let key_int = ((gop.as_secs_f64() * fps as f64).round() as u32).max(1);
    let bitrate = encoding.bitrate_kbps.unwrap_or(1000);
    let raw = format!("video/x-raw,format=I420,width={w},height={h},framerate={fps}/1,pixel-aspect-ratio=1/1");
    // I420 forced before x264enc: Debian's x264 otherwise picks 10-bit 4:4:4.
    // scenecut=0 keeps the GOP fixed; no B-frames keeps the stream cheap to decode.
    let au = au_caps(encoding.codec);
    let encode = match encoding.codec {
        Codec::H264 => format!(
            "x264enc bitrate={bitrate} key-int-max={key_int} speed-preset=superfast bframes=0 \
             option-string=scenecut=0:min-keyint={key_int} ! video/x-h264,profile=high ! h264parse config-interval=-1 ! {au} ! appsink name=sink sync=false"
        ),
        Codec::H265 => format!(
            "x265enc bitrate={bitrate} key-int-max={key_int} speed-preset=superfast \
             option-string=\"scenecut=0:bframes=0:min-keyint={key_int}\" ! h265parse config-interval=-1 ! {au} ! appsink name=sink sync=false"
        ),
    };
    let launch = match picture {
        Picture::Clip(path) => format!(
            "filesrc location=\"{}\" ! decodebin ! videoconvert ! videoscale ! videorate rate={} ! {raw} ! {encode}",
            escape(path),
            encoding.speed.unwrap_or(1)
        ),
        Picture::Pattern { pattern, seconds } => {
            let frames = seconds * fps;
            format!("videotestsrc pattern={pattern} num-buffers={frames} ! {raw} ! {encode}")
        }
        Picture::Still { path, seconds } => {
            let frames = seconds * fps;
            format!(
                "filesrc location=\"{}\" ! decodebin ! videoconvert ! videoscale ! imagefreeze num-buffers={frames} ! {raw} ! {encode}",
                escape(path)
            )
        }
        Picture::Crossing { sprite, background, seconds, at, cross } => {
            let scene = Crossing::new(sprite, background, (w, h), fps, *at, *cross)?;
            let launch = format!(
                "appsrc name=src format=time block=true caps=video/x-raw,format=RGBx,width={w},height={h},framerate={fps}/1 \
                 ! videoconvert ! {raw} ! {encode}"
            );
            return collect_fed(&launch, encoding.codec, fps, *seconds as u64 * fps as u64, scene);
        }
    };
    collect(&launch, true, encoding.codec)
}

/// The pictures of a [`Picture::Crossing`], RGBx, made one at a time (a loop of 640x360 would
/// hold about 23 MB a second).
struct Crossing {
    back: Vec<u8>,
    front: Vec<u8>,
    /// Picture and sprite size, and the sprite's top row.
    size: (i64, i64),
    sprite: (i64, i64),
    top: i64,
    fps: u32,
    at: Duration,
    cross: Duration,
}

impl Crossing {
    fn new(
        sprite: &Path,
        background: &Path,
        (w, h): (u32, u32),
        fps: u32,
        at: Duration,
        cross: Duration,
    ) -> Result<Self, SimError> {
        let back = picture_rgbx(background, (w, h))?;
        let (nw, nh, _) = probe(sprite)?;
        let sh = (h / 2) & !1;
        let sw = ((nw as f64 * sh as f64 / nh.max(1) as f64).round() as u32 & !1).max(2);
        let front = picture_rgbx(sprite, (sw, sh))?;
        let (w, h, sw, sh) = (w as i64, h as i64, sw as i64, sh as i64);
        let top = (h * 55 / 100 - sh / 2).clamp(0, h - sh);
        Ok(Self { back, front, size: (w, h), sprite: (sw, sh), top, fps, at, cross })
    }

    /// Picture `i` of the loop.
    fn picture(&self, i: u64) -> Vec<u8> {
        let ((w, _), (sw, sh), top) = (self.size, self.sprite, self.top);
        let mut pic = self.back.clone();
        let t = Duration::from_nanos(i * 1_000_000_000 / self.fps as u64);
        if t >= self.at && t < self.at + self.cross {
            // From wholly left of the picture to wholly right of it.
            let done = (t - self.at).as_secs_f64() / self.cross.as_secs_f64();
            let left = -sw + ((w + sw) as f64 * done).round() as i64;
            let (from, to) = (left.max(0), (left + sw).min(w));
            for y in 0..sh {
                if from >= to {
                    break;
                }
                let dst = (((top + y) * w + from) * 4) as usize;
                let src = ((y * sw + from - left) * 4) as usize;
                let n = ((to - from) * 4) as usize;
                pic[dst..dst + n].copy_from_slice(&self.front[src..src + n]);
            }
        }
        pic
    }
}

/// A photo (or a clip's first frame) scaled to `size`, RGBx.
fn picture_rgbx(path: &Path, (w, h): (u32, u32)) -> Result<Vec<u8>, SimError> {
    let launch = format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! videoscale \
         ! video/x-raw,format=RGBx,width={w},height={h},pixel-aspect-ratio=1/1 ! appsink name=sink sync=false",
        escape(path)
    );
    let buffer = first_sample(&launch, path)?
        .and_then(|s| s.buffer_owned())
        .ok_or_else(|| SimError::Media(format!("{}: no picture found", path.display())))?;
    let map = buffer.map_readable().map_err(|e| SimError::Media(e.to_string()))?;
    if map.len() < (w * h * 4) as usize {
        return Err(SimError::Media(format!("{}: short picture", path.display())));
    }
    Ok(map[..(w * h * 4) as usize].to_vec())
}

/// [`collect`] on a pipeline that starts with `appsrc name=src`, fed the scene's first `n`
/// pictures at `fps`.
fn collect_fed(launch: &str, codec: Codec, fps: u32, n: u64, scene: Crossing) -> Result<EncodedClip, SimError> {
    let feed = move |src: gst_app::AppSrc| {
        for i in 0..n {
            let mut buffer = gst::Buffer::from_mut_slice(scene.picture(i));
            {
                let b = buffer.get_mut().expect("a new buffer is writable");
                b.set_pts(gst::ClockTime::from_nseconds(i * 1_000_000_000 / fps as u64));
                b.set_duration(gst::ClockTime::from_nseconds(1_000_000_000 / fps as u64));
            }
            if src.push_buffer(buffer).is_err() {
                return;
            }
        }
        let _ = src.end_of_stream();
    };
    collect_with(launch, true, codec, Some(Box::new(feed)))
}

fn escape(path: &Path) -> String {
    path.display().to_string().replace('\\', "\\\\").replace('"', "\\\"")
}

/// The first picture of a pipeline ending in `appsink name=sink` that reads `path` (its
/// preroll), if one came within 10 s.
fn first_sample(launch: &str, path: &Path) -> Result<Option<gst::Sample>, SimError> {
    let pipeline =
        gst::parse::launch(launch).map_err(|e| SimError::Media(e.to_string()))?.downcast::<gst::Pipeline>().unwrap();
    let sink = pipeline.by_name("sink").unwrap().downcast::<gst_app::AppSink>().unwrap();
    pipeline.set_state(gst::State::Paused).map_err(|e| SimError::Media(format!("{}: {e}", path.display())))?;
    let sample = sink.try_pull_preroll(gst::ClockTime::from_seconds(10));
    let _ = pipeline.set_state(gst::State::Null);
    Ok(sample)
}

/// Native width, height and frame rate of a clip's video.
fn probe(path: &Path) -> Result<(u32, u32, f64), SimError> {
    let launch =
        format!("filesrc location=\"{}\" ! decodebin ! videoconvert ! appsink name=sink sync=false", escape(path));
    let caps = first_sample(&launch, path)?
        .and_then(|s| s.caps_owned())
        .ok_or_else(|| SimError::Media(format!("{}: no video found", path.display())))?;
    let s = caps.structure(0).unwrap();
    let w = s.get::<i32>("width").unwrap_or(640) as u32;
    let h = s.get::<i32>("height").unwrap_or(360) as u32;
    let fps = s.get::<gst::Fraction>("framerate").map(|f| f.numer() as f64 / f.denom().max(1) as f64).unwrap_or(25.0);
    Ok((w, h, if fps > 0.0 { fps } else { 25.0 }))
}

/// Runs a pipeline ending in `appsink name=sink` to EOS and keeps every access unit.
fn collect(launch: &str, encoded: bool, codec: Codec) -> Result<EncodedClip, SimError> {
    collect_with(launch, encoded, codec, None)
}

/// What pushes a pipeline's pictures into its `appsrc name=src` (on a thread of its own).
type Feed = Box<dyn FnOnce(gst_app::AppSrc) + Send>;

fn collect_with(launch: &str, encoded: bool, codec: Codec, feed: Option<Feed>) -> Result<EncodedClip, SimError> {
    let pipeline =
        gst::parse::launch(launch).map_err(|e| SimError::Media(e.to_string()))?.downcast::<gst::Pipeline>().unwrap();
    let sink = pipeline.by_name("sink").unwrap().downcast::<gst_app::AppSink>().unwrap();
    pipeline.set_state(gst::State::Playing).map_err(|e| SimError::Media(format!("cannot start: {e}")))?;
    let feeder = feed.map(|feed| {
        let src = pipeline.by_name("src").unwrap().downcast::<gst_app::AppSrc>().unwrap();
        std::thread::spawn(move || feed(src))
    });
    let bus = pipeline.bus().unwrap();
    let mut samples = Vec::new();
    // A failing pipeline may never reach EOS nor post an error (a demuxer pad nobody can
    // link just waits): watch the bus while pulling, and give up when nothing comes.
    let mut last_progress = std::time::Instant::now();
    let error = loop {
        if let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(50)) {
            samples.push(sample);
            last_progress = std::time::Instant::now();
        } else if sink.is_eos() {
            break None;
        } else if last_progress.elapsed() > std::time::Duration::from_secs(20) {
            break Some("no frames for 20 s (unsupported or broken input)".to_string());
        }
        if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error])
            && let gst::MessageView::Error(e) = msg.view()
        {
            break Some(format!("{} ({})", e.error(), e.debug().unwrap_or_default()));
        }
    };
    let _ = pipeline.set_state(gst::State::Null);
    if let Some(feeder) = feeder {
        let _ = feeder.join();
    }
    if let Some(e) = error {
        return Err(SimError::Media(e));
    }
    let caps = samples.first().and_then(|s| s.caps_owned()).ok_or_else(|| SimError::Media("no video frames".into()))?;
    let s = caps.structure(0).unwrap();
    let (width, height) = (s.get::<i32>("width").unwrap_or(0) as u32, s.get::<i32>("height").unwrap_or(0) as u32);
    let default_duration = s
        .get::<gst::Fraction>("framerate")
        .ok()
        .filter(|f| f.numer() > 0)
        .map(|f| gst::ClockTime::from_nseconds(1_000_000_000 * f.denom() as u64 / f.numer() as u64))
        .unwrap_or(gst::ClockTime::from_mseconds(40));

    let mut units = Vec::with_capacity(samples.len());
    let mut next = gst::ClockTime::ZERO;
    for sample in &samples {
        let Some(buffer) = sample.buffer_owned() else { continue };
        let duration = buffer.duration().filter(|d| !d.is_zero()).unwrap_or(default_duration);
        let pts = buffer.pts().unwrap_or(next);
        let dts = buffer.dts().unwrap_or(pts);
        let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
        units.push(Unit { buffer, pts, dts, duration, keyframe });
        next = dts + duration;
    }
    // The loop starts at the first key frame, on a zero time base.
    let first_key = units.iter().position(|u| u.keyframe).ok_or_else(|| SimError::Media("no key frame".into()))?;
    units.drain(..first_key);
    let base = units.iter().map(|u| u.dts.min(u.pts)).min().unwrap_or(gst::ClockTime::ZERO);
    for u in &mut units {
        u.pts -= base;
        u.dts -= base;
    }
    let period = units.iter().map(|u| u.dts + u.duration).max().unwrap_or(gst::ClockTime::ZERO).max(
        // Presentation may run past the last decode time with B-frames.
        units.iter().map(|u| u.pts).max().unwrap_or(gst::ClockTime::ZERO) + default_duration,
    );
    Ok(EncodedClip { caps, units, period, width, height, encoded, codec })
}
