//! video: raw live video of a camera, repackaged from the access units the node already
//! receives, never decoded or encoded again.
//!
//! ```text
//! ingest tap (every access unit, before the cadence drops any)
//!   ─► Feed per camera: the units since the newest key frame (so a new viewer starts at
//!      once, from a key frame) and, while anyone watches, each unit as an fMP4 fragment
//!      once (when the next unit gives its duration) ─► broadcast (capacity BACKLOG)
//!   ─► each viewer: the init segment, the fragments since the key frame, then the live ones;
//!      a viewer that falls BACKLOG fragments behind skips to the newest key frame
//!        GET /cameras/<id>/live.mp4   one long chunked response (ffplay, VLC, <video>)
//!        GET /cameras/<id>/live.ws    WebSocket: a JSON text message (codec, size), then
//!                                     binary messages (init, fragments) for Media Source
//!                                     Extensions; a JSON text message at every key frame
//!                                     maps the stream's time to the wall clock
//! ```
//!
//! The cost per viewer is copying bytes to its socket; muxing happens once per unit and only
//! while someone watches. Who may watch and the audit of each view are in [`access`].

pub mod access;
pub mod fmp4;

use crate::Locked;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use tokio::sync::broadcast;

/// Fragments a viewer may fall behind before it skips to the newest key frame (about 5 s
/// at 25 fps).
pub const BACKLOG: usize = 128;

/// The most a camera keeps of its current group of pictures for new viewers. A long GOP at a
/// high bitrate (10 s at 4 Mbit/s is 5 MB) would otherwise cost that much per camera: beyond
/// this, the group is let go and a new viewer waits for the next key frame instead.
pub const GOP_MAX_BYTES: usize = 2 << 20;

/// One fragment, as every viewer of the camera gets it.
#[derive(Clone)]
pub struct Piece {
    pub bytes: Bytes,
    /// A key frame: a viewer may start (or resume) here.
    pub key: bool,
    /// The init segment this fragment needs (the same `Bytes` until the stream changes).
    pub init: Bytes,
    /// Its decode time, in seconds of the stream as the viewer's player counts it.
    pub time: f64,
    /// When the node received the unit.
    pub wall: SystemTime,
}

/// What a new viewer gets: the stream's description, the fragments since the newest key
/// frame, and the live ones.
pub struct Watch {
    pub codec: String,
    pub width: u32,
    pub height: u32,
    pub init: Bytes,
    pub backlog: Vec<Piece>,
    /// The group in hand was let go ([`GOP_MAX_BYTES`]): the viewer starts at the next key frame.
    pub from_next_key: bool,
    pub live: broadcast::Receiver<Piece>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum WatchError {
    /// Not a camera of this node.
    Unknown,
    /// The camera forbids raw live video (`privacy.live = "off"`).
    Forbidden,
    /// No key frame received yet (connecting, offline).
    NoVideo,
    /// The camera's stream cannot be repackaged (its codec, its parameter sets).
    Unsupported(String),
}

impl std::fmt::Display for WatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WatchError::Unknown => f.write_str("not a camera of this node"),
            WatchError::Forbidden => f.write_str("its raw live video is off (privacy.live = \"off\")"),
            WatchError::NoVideo => f.write_str("no video yet (the camera is connecting or offline)"),
            WatchError::Unsupported(why) => write!(f, "its stream cannot be shown live: {why}"),
        }
    }
}

struct Unit {
    pts: Duration,
    key: bool,
    data: Vec<u8>,
    wall: SystemTime,
}

#[derive(Default)]
struct Feed {
    /// `privacy.live = "off"`: nobody watches (nothing is kept either).
    forbidden: bool,
    /// The current track and its init segment, or why there is none.
    track: Option<(fmp4::Track, Bytes)>,
    unsupported: Option<String>,
    codec: &'static str,
    /// The units since the newest key frame (or, when `partial`, the newest of them).
    gop: Vec<Unit>,
    /// Bytes held in `gop`.
    gop_bytes: usize,
    /// The group outgrew [`GOP_MAX_BYTES`]: `gop` no longer starts at a key frame, and a new
    /// viewer starts at the next one.
    partial: bool,
    /// Fragments of `gop[..muxed.len()]`, made while someone watched.
    muxed: Vec<Piece>,
    /// The stream's first unit, and where its decode times start (continuing across a
    /// reconnect, so a viewer's timeline never goes back).
    origin: Option<(Duration, u64)>,
    /// The end of the newest fragment made, in ticks.
    end: u64,
    sequence: u32,
    tx: Option<broadcast::Sender<Piece>>,
}

impl Feed {
    fn sender(&mut self) -> &broadcast::Sender<Piece> {
        self.tx.get_or_insert_with(|| broadcast::channel(BACKLOG).0)
    }

    fn watched(&self) -> bool {
        self.tx.as_ref().is_some_and(|t| t.receiver_count() > 0)
    }

    fn ticks(d: Duration) -> u64 {
        (d.as_nanos() * u128::from(fmp4::TIMESCALE) / 1_000_000_000) as u64
    }

    /// Makes the fragments of the units whose successor has come (all but the newest).
    fn mux(&mut self, made: &AtomicU64) -> Vec<Piece> {
        let Some((track, init)) = &self.track else { return Vec::new() };
        let (kind, init) = (track.kind, init.clone());
        let mut out = Vec::new();
        while self.muxed.len() + 1 < self.gop.len() {
            let (u, next) = (&self.gop[self.muxed.len()], &self.gop[self.muxed.len() + 1]);
            let (first_pts, base) = *self.origin.get_or_insert((u.pts, self.end));
            let start = (base + Self::ticks(u.pts.saturating_sub(first_pts))).max(self.end);
            let end = (base + Self::ticks(next.pts.saturating_sub(first_pts))).max(start + 1);
            self.sequence = self.sequence.wrapping_add(1);
            let bytes = Bytes::from(fmp4::fragment(kind, self.sequence, start, (end - start) as u32, u.key, &u.data));
            made.fetch_add(1, Ordering::Relaxed);
            self.end = end;
            let piece = Piece {
                bytes,
                key: u.key,
                init: init.clone(),
                time: start as f64 / f64::from(fmp4::TIMESCALE),
                wall: u.wall,
            };
            self.muxed.push(piece.clone());
            out.push(piece);
        }
        out
    }
}

/// The live video of this node's cameras.
#[derive(Default)]
pub struct LiveVideo {
    feeds: Mutex<HashMap<Arc<str>, Feed>>,
    /// Fragments made (once each, whoever watches).
    pub fragments: AtomicU64,
}

impl LiveVideo {
    /// The cameras of `config`.
    pub fn configure(&self, config: &crate::config::Config) {
        self.set_cameras(config.cameras.iter().map(|c| (c.id.clone(), c.live == crate::config::LivePolicy::On)));
    }

    /// The cameras this node runs, and whether each allows raw live video; feeds of others
    /// are dropped, and a camera that forbids it now ends its viewers' streams.
    pub fn set_cameras(&self, cameras: impl IntoIterator<Item = (String, bool)>) {
        let keep: Vec<(String, bool)> = cameras.into_iter().collect();
        let mut feeds = self.feeds.locked();
        feeds.retain(|k, _| keep.iter().any(|(c, _)| c == k.as_ref()));
        for (c, allowed) in keep {
            let feed = feeds.entry(Arc::from(c.as_str())).or_default();
            if !allowed && !feed.forbidden {
                *feed = Feed { forbidden: true, ..Feed::default() };
            }
            feed.forbidden = !allowed;
        }
    }

    /// An access unit of `camera` (Annex B; parameter sets before key frames), as received.
    pub fn unit(&self, camera: &Arc<str>, codec: &'static str, pts: Duration, key: bool, data: &[u8]) {
        let mut feeds = self.feeds.locked();
        let Some(feed) = feeds.get_mut(camera).filter(|f| !f.forbidden) else { return };
        // A new session (timestamps start again) or another codec: a new timeline segment.
        let restart = feed.gop.last().is_some_and(|u| pts + Duration::from_secs(1) < u.pts) || feed.codec != codec;
        if restart {
            feed.gop.clear();
            feed.muxed.clear();
            feed.gop_bytes = 0;
            feed.partial = false;
            feed.origin = None;
            feed.codec = codec;
        }
        if key {
            let track = match codec {
                "h264" => Some(fmp4::h264_track(data)),
                "h265" => Some(fmp4::h265_track(data)),
                _ => None,
            };
            if let Some(track) = track {
                match track {
                    Ok(track) => {
                        if feed.track.as_ref().is_none_or(|(t, _)| *t != track) {
                            let init = Bytes::from(fmp4::init_segment(&track));
                            feed.track = Some((track, init));
                        }
                        feed.unsupported = None;
                    }
                    Err(e) => {
                        feed.track = None;
                        feed.unsupported = Some(e);
                    }
                }
            } else {
                feed.track = None;
                feed.unsupported =
                    Some(format!("live video is repackaged from H.264 and H.265; this camera sends {codec}"));
            }
        }
        if feed.gop.is_empty() && !key {
            return;
        }
        feed.gop.push(Unit { pts, key, data: data.to_vec(), wall: SystemTime::now() });
        feed.gop_bytes += data.len();
        let watched = feed.watched();
        if watched {
            let pieces = feed.mux(&self.fragments);
            let tx = feed.sender();
            for p in pieces {
                let _ = tx.send(p);
            }
        }
        // A new group of pictures: what came before is no use to a new viewer. A group over
        // the cap is let go too (the newest unit stays: its fragment is not made yet).
        let over = feed.gop_bytes > GOP_MAX_BYTES;
        if (key || over) && feed.gop.len() > 1 {
            let newest = feed.gop.pop().expect("pushed above");
            feed.gop.clear();
            feed.muxed.clear();
            feed.gop_bytes = newest.data.len();
            feed.gop.push(newest);
        }
        if key {
            feed.partial = false;
        } else if over {
            feed.partial = true;
        }
    }

    /// Bytes each camera keeps for new viewers (`gridsight_live_buffer_bytes`).
    pub fn buffered(&self) -> Vec<(String, usize)> {
        self.feeds.locked().iter().map(|(c, f)| (c.to_string(), f.gop_bytes)).collect()
    }

    /// Starts watching `camera`.
    pub fn watch(&self, camera: &str) -> Result<Watch, WatchError> {
        let mut feeds = self.feeds.locked();
        let feed = feeds.get_mut(camera).ok_or(WatchError::Unknown)?;
        if feed.forbidden {
            return Err(WatchError::Forbidden);
        }
        if let Some(why) = &feed.unsupported {
            return Err(WatchError::Unsupported(why.clone()));
        }
        let Some((track, init)) = feed.track.clone() else { return Err(WatchError::NoVideo) };
        if feed.gop.is_empty() {
            return Err(WatchError::NoVideo);
        }
        let live = feed.sender().subscribe();
        // Fragments of the group so far, made now if nobody watched before.
        feed.mux(&self.fragments);
        Ok(Watch {
            codec: track.codec.clone(),
            width: track.width,
            height: track.height,
            init,
            backlog: if feed.partial { Vec::new() } else { feed.muxed.clone() },
            from_next_key: feed.partial,
            live,
        })
    }

    /// Whether each camera can be watched raw now: `None` if so, else why not in words.
    pub fn availability(&self) -> Vec<(String, Option<String>)> {
        self.feeds
            .locked()
            .iter()
            .map(|(c, f)| {
                let why = if f.forbidden {
                    Some(WatchError::Forbidden.to_string())
                } else if let Some(u) = &f.unsupported {
                    Some(u.clone())
                } else if f.track.is_none() || f.gop.is_empty() {
                    Some(WatchError::NoVideo.to_string())
                } else {
                    None
                };
                (c.to_string(), why)
            })
            .collect()
    }

    /// Viewers per camera now.
    pub fn viewers(&self) -> Vec<(String, usize)> {
        self.feeds
            .locked()
            .iter()
            .map(|(c, f)| (c.to_string(), f.tx.as_ref().map_or(0, |t| t.receiver_count())))
            .collect()
    }
}

/// A viewer's way through the pieces: skips to the newest key frame when it falls behind,
/// and hands the init segment again when the stream changed.
pub struct Viewer {
    live: broadcast::Receiver<Piece>,
    init: Bytes,
    skipping: bool,
    /// What ended the last batch: it starts the next.
    held: Option<Next>,
    /// Fragments skipped because the viewer fell behind.
    pub skipped: u64,
}

/// Fragments a viewer sends at once.
pub struct Batch {
    /// A new init segment to send first (the stream changed).
    pub init: Option<Bytes>,
    pub pieces: Vec<Piece>,
}

impl Batch {
    /// The fragments as one buffer.
    pub fn bytes(&self) -> Bytes {
        match &self.pieces[..] {
            [one] => one.bytes.clone(),
            many => Bytes::from(many.iter().flat_map(|p| p.bytes.iter().copied()).collect::<Vec<u8>>()),
        }
    }
}

/// What a viewer sends next.
pub enum Next {
    /// A new init segment (the stream changed), then the piece.
    Init(Bytes, Piece),
    Piece(Piece),
    /// The camera is gone from this node.
    End,
}

impl Viewer {
    /// The viewer, and what it sends first: the init segment and the fragments since the
    /// newest key frame.
    pub fn new(watch: Watch) -> (Self, Vec<Piece>) {
        let skipping = watch.from_next_key;
        (Viewer { live: watch.live, init: watch.init, skipping, held: None, skipped: 0 }, watch.backlog)
    }

    /// The fragments that come within `linger` of the first, sent with one write: a write
    /// per frame per viewer was most of a viewer's cost. A key frame, a new init segment or
    /// the end starts the next batch, so every batch a player appends begins where it may
    /// start. `None`: the camera is gone.
    pub async fn batch(&mut self, linger: std::time::Duration) -> Option<Batch> {
        let first = match self.held.take() {
            Some(n) => n,
            None => self.next().await,
        };
        let (init, first) = match first {
            Next::End => return None,
            Next::Init(init, p) => (Some(init), p),
            Next::Piece(p) => (None, p),
        };
        let mut pieces = vec![first];
        // One wake for the whole batch: sleep, then take what came (waking for each piece
        // with a timer each was most of the cost left).
        tokio::time::sleep(linger).await;
        while let Some(next) = self.next_now() {
            match next {
                Next::Piece(p) if !p.key => pieces.push(p),
                other => {
                    self.held = Some(other);
                    break;
                }
            }
        }
        Some(Batch { init, pieces })
    }

    pub async fn next(&mut self) -> Next {
        loop {
            let got = match self.live.recv().await {
                Ok(p) => Ok(p),
                Err(broadcast::error::RecvError::Lagged(n)) => Err(Some(n)),
                Err(broadcast::error::RecvError::Closed) => Err(None),
            };
            if let Some(next) = self.take(got) {
                return next;
            }
        }
    }

    /// What has come already, without waiting; `None`: nothing yet.
    fn next_now(&mut self) -> Option<Next> {
        loop {
            let got = match self.live.try_recv() {
                Ok(p) => Ok(p),
                Err(broadcast::error::TryRecvError::Lagged(n)) => Err(Some(n)),
                Err(broadcast::error::TryRecvError::Closed) => Err(None),
                Err(broadcast::error::TryRecvError::Empty) => return None,
            };
            if let Some(next) = self.take(got) {
                return Some(next);
            }
        }
    }

    /// A received piece (or `Err(Some(n))`: `n` lost to lagging, `Err(None)`: closed) as
    /// what to send; `None`: skipped on the way to a key frame.
    fn take(&mut self, got: Result<Piece, Option<u64>>) -> Option<Next> {
        match got {
            Ok(p) if self.skipping && !p.key => {
                self.skipped += 1;
                None
            }
            Ok(p) => {
                self.skipping = false;
                if p.init != self.init {
                    self.init = p.init.clone();
                    return Some(Next::Init(p.init.clone(), p));
                }
                Some(Next::Piece(p))
            }
            Err(Some(n)) => {
                self.skipped += n;
                self.skipping = true;
                None
            }
            Err(None) => Some(Next::End),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: [u8; 30] = [
        0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x16, 0xa0, 0xc0, 0xc0, 0xd4, 0xa0, 0x00,
        0x00, 0x03, 0x00, 0x20, 0x00, 0x00, 0x07, 0x91, 0xe2, 0xc5, 0xb2, 0xc0,
    ];

    fn unit(key: bool, n: u8) -> Vec<u8> {
        let mut v = Vec::new();
        if key {
            v.extend_from_slice(&[0, 0, 0, 1]);
            v.extend_from_slice(&SPS);
            v.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xeb]);
            v.extend_from_slice(&[0, 0, 0, 1, 0x65, n]);
        } else {
            v.extend_from_slice(&[0, 0, 0, 1, 0x41, n]);
        }
        v
    }

    fn feed(video: &LiveVideo, cam: &Arc<str>, from: u64, to: u64) {
        for i in from..to {
            video.unit(cam, "h264", Duration::from_millis(40 * i), i % 10 == 0, &unit(i % 10 == 0, i as u8));
        }
    }

    #[tokio::test]
    async fn a_viewer_starts_at_the_newest_key_frame_and_follows() {
        let video = LiveVideo::default();
        video.set_cameras([("a".to_string(), true)]);
        let cam: Arc<str> = Arc::from("a");
        assert_eq!(video.watch("b").err(), Some(WatchError::Unknown));
        assert_eq!(video.watch("a").err(), Some(WatchError::NoVideo));
        // Units before any key frame are of no use.
        video.unit(&cam, "h264", Duration::ZERO, false, &unit(false, 0));
        assert_eq!(video.watch("a").err(), Some(WatchError::NoVideo));
        feed(&video, &cam, 0, 14);
        // Nobody watched: nothing was muxed.
        assert_eq!(video.fragments.load(Ordering::Relaxed), 0);
        let w = video.watch("a").unwrap();
        assert_eq!((w.codec.as_str(), w.width, w.height), ("avc1.64001e", 640, 360));
        // From the key frame of unit 10: units 10..12 have a successor, 13 waits for its own.
        assert_eq!(w.backlog.len(), 3);
        assert!(w.backlog[0].key && !w.backlog[1].key);
        // The timeline starts where the first fragment was made; steps follow the stream's.
        assert_eq!(w.backlog[0].time, 0.0);
        assert!((w.backlog[2].time - 0.08).abs() < 1e-9, "{}", w.backlog[2].time);
        assert_eq!(&w.init[4..8], b"ftyp");
        let (mut viewer, first) = Viewer::new(w);
        assert_eq!(first.len(), 3);
        feed(&video, &cam, 14, 16);
        let Next::Piece(p) = viewer.next().await else { panic!("a piece") };
        assert!((p.time - 3.0 * 0.04).abs() < 1e-9, "{}", p.time);
        assert_eq!(video.viewers(), vec![("a".to_string(), 1)]);
        drop(viewer);
        assert_eq!(video.viewers(), vec![("a".to_string(), 0)]);
    }

    #[tokio::test]
    async fn fragments_are_sent_in_batches_that_start_at_key_frames() {
        let video = LiveVideo::default();
        video.set_cameras([("a".to_string(), true)]);
        let cam: Arc<str> = Arc::from("a");
        feed(&video, &cam, 0, 5);
        let (mut viewer, backlog) = Viewer::new(video.watch("a").unwrap());
        assert_eq!(backlog.len(), 4);
        feed(&video, &cam, 5, 16);
        // Units 4..9 have their successors and come in one batch; 10 is a key frame.
        let b = viewer.batch(Duration::from_millis(20)).await.unwrap();
        assert!(b.init.is_none());
        assert_eq!(b.pieces.len(), 6);
        assert_eq!(b.bytes().len(), b.pieces.iter().map(|p| p.bytes.len()).sum::<usize>());
        let b = viewer.batch(Duration::from_millis(20)).await.unwrap();
        assert!(b.pieces[0].key);
        assert_eq!(b.pieces.len(), 5, "10..14; 15 waits for its successor");
        video.set_cameras([]);
        assert!(viewer.batch(Duration::from_millis(20)).await.is_none());
    }

    #[tokio::test]
    async fn a_group_over_the_cap_is_let_go_and_a_new_viewer_waits_for_a_key_frame() {
        let video = LiveVideo::default();
        video.set_cameras([("a".to_string(), true)]);
        let cam: Arc<str> = Arc::from("a");
        let big = |key: bool, n: u8| {
            let mut u = unit(key, n);
            u.extend(std::iter::repeat_n(0x55u8, 300_000));
            u
        };
        for i in 0..10u64 {
            video.unit(&cam, "h264", Duration::from_millis(40 * i), i == 0, &big(i == 0, i as u8));
        }
        let held: usize = video.buffered().iter().map(|(_, b)| b).sum();
        assert!(held <= GOP_MAX_BYTES + 310_000, "{held} bytes held");
        let w = video.watch("a").unwrap();
        assert!(w.backlog.is_empty() && w.from_next_key);
        let (mut viewer, _) = Viewer::new(w);
        for i in 10..12u64 {
            video.unit(&cam, "h264", Duration::from_millis(40 * i), false, &unit(false, i as u8));
        }
        video.unit(&cam, "h264", Duration::from_millis(480), true, &unit(true, 12));
        video.unit(&cam, "h264", Duration::from_millis(520), false, &unit(false, 13));
        let Next::Piece(p) = viewer.next().await else { panic!("a piece") };
        assert!(p.key, "the first fragment a late viewer gets is a key frame");
        // A key frame gives new viewers a whole group again.
        assert!(!video.watch("a").unwrap().from_next_key);
    }

    #[tokio::test]
    async fn a_slow_viewer_skips_to_a_key_frame_and_time_never_goes_back() {
        let video = LiveVideo::default();
        video.set_cameras([("a".to_string(), true)]);
        let cam: Arc<str> = Arc::from("a");
        feed(&video, &cam, 0, 5);
        let w = video.watch("a").unwrap();
        let (mut viewer, _) = Viewer::new(w);
        feed(&video, &cam, 5, 5 + BACKLOG as u64 + 30);
        let Next::Piece(p) = viewer.next().await else { panic!("a piece") };
        assert!(p.key, "resumes at a key frame");
        assert!(viewer.skipped > 0);
        // The camera reconnects: its timestamps start again, the viewer's do not.
        let before = p.time;
        let mut last = before;
        while let Ok(p) = viewer.live.try_recv() {
            last = p.time;
        }
        video.unit(&cam, "h264", Duration::ZERO, true, &unit(true, 1));
        video.unit(&cam, "h264", Duration::from_millis(40), false, &unit(false, 2));
        let Next::Piece(p) = viewer.next().await else { panic!("a piece") };
        assert!(p.time > last, "{} after {last}", p.time);
        // A key frame without its parameter sets cannot start a stream: said, not served.
        video.unit(&cam, "h265", Duration::ZERO, true, &[0, 0, 0, 1, 0x26, 1, 0xaf]);
        assert!(
            matches!(video.watch("a"), Err(WatchError::Unsupported(why)) if why.contains("video parameter set")),
            "{:?}",
            video.watch("a").err()
        );
        // privacy.live = "off": the viewer's stream ends, nothing more is kept or shown.
        video.set_cameras([("a".to_string(), false)]);
        assert!(matches!(viewer.next().await, Next::End));
        video.unit(&cam, "h264", Duration::from_secs(9), true, &unit(true, 1));
        assert_eq!(video.watch("a").err(), Some(WatchError::Forbidden));
    }
}
