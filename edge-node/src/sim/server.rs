//! The RTSP server side of the simulator.

use crate::Locked;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;

use super::SimError;
use super::clip::{Codec, EncodedClip, Encoding, Picture, load};

/// One served stream.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// Mount path without the leading slash: `bikes` ⇒ `rtsp://host:port/bikes`.
    pub mount: String,
    pub picture: Picture,
    pub encoding: Encoding,
    /// Lower transports the mount accepts (a UDP-only camera answers a TCP `SETUP` with
    /// `461 Unsupported Transport`).
    pub transport: ServedTransport,
}

/// Which RTP transports a simulated camera offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServedTransport {
    #[default]
    Any,
    Udp,
    Tcp,
}

impl StreamSpec {
    /// Parses `MOUNT=SOURCE[,size=WxH][,fps=N][,keyint=DURATION][,bitrate=KBPS][,speed=N][,codec=h265][,transport=udp|tcp]` where SOURCE
    /// is a file (relative to `media_dir`), `still:IMAGE[:SECONDS]` (a photo held still, a
    /// clip of that length), `pattern:NAME[:SECONDS]`, or `crossing:SPRITE:BACKGROUND[:SECONDS]`
    /// (a photo crossing a still background once a loop, see [`Picture::Crossing`]; options
    /// `at=DURATION` into the loop, default `4500ms`, and `cross=DURATION`, default `1200ms`).
    pub fn parse(spec: &str, media_dir: &std::path::Path) -> Result<Self, SimError> {
        let bad = |reason: &str| SimError::Spec { spec: spec.to_string(), reason: reason.to_string() };
        let (mount, rest) = spec.split_once('=').ok_or_else(|| bad("expected MOUNT=SOURCE[,option=value...]"))?;
        let mut parts = rest.split(',');
        let source = parts.next().unwrap_or("");
        let picture = if let Some(p) = source.strip_prefix("pattern:") {
            let (pattern, seconds) = p.split_once(':').unwrap_or((p, "10"));
            Picture::Pattern {
                pattern: pattern.to_string(),
                seconds: seconds.parse().map_err(|_| bad("pattern length must be whole seconds"))?,
            }
        } else if let Some(p) = source.strip_prefix("still:") {
            let (file, seconds) = p.split_once(':').unwrap_or((p, "10"));
            Picture::Still {
                path: media_dir.join(file),
                seconds: seconds.parse().map_err(|_| bad("still length must be whole seconds"))?,
            }
        } else if let Some(p) = source.strip_prefix("crossing:") {
            let mut it = p.split(':');
            let (Some(sprite), Some(background)) = (it.next(), it.next()) else {
                return Err(bad("crossing is crossing:SPRITE:BACKGROUND[:SECONDS]"));
            };
            Picture::Crossing {
                sprite: media_dir.join(sprite),
                background: media_dir.join(background),
                seconds: it.next().unwrap_or("10").parse().map_err(|_| bad("crossing length must be whole seconds"))?,
                at: Duration::from_millis(4500),
                cross: Duration::from_millis(1200),
            }
        } else {
            Picture::Clip(media_dir.join(source))
        };
        let mut picture = picture;
        let mut encoding = Encoding::default();
        let mut transport = ServedTransport::Any;
        for opt in parts {
            let (k, v) = opt.split_once('=').ok_or_else(|| bad("options are key=value"))?;
            match k {
                "size" => {
                    let (w, h) = v.split_once('x').ok_or_else(|| bad("size is WIDTHxHEIGHT"))?;
                    encoding.size =
                        Some((w.parse().map_err(|_| bad("bad width"))?, h.parse().map_err(|_| bad("bad height"))?));
                }
                "fps" => encoding.fps = Some(v.parse().map_err(|_| bad("fps is a whole number"))?),
                "keyint" => encoding.keyframe_interval = Some(crate::config::parse_duration(v).map_err(|e| bad(&e))?),
                "bitrate" => encoding.bitrate_kbps = Some(v.parse().map_err(|_| bad("bitrate is kbit/s"))?),
                "speed" => {
                    encoding.speed = Some(
                        v.parse().ok().filter(|s| *s >= 1).ok_or_else(|| bad("speed is a whole factor, 1 or more"))?,
                    )
                }
                "at" | "cross" => {
                    let Picture::Crossing { at, cross, .. } = &mut picture else {
                        return Err(bad("at and cross are options of a crossing:SPRITE:BACKGROUND source"));
                    };
                    let d = crate::config::parse_duration(v).map_err(|e| bad(&e))?;
                    *(if k == "at" { at } else { cross }) = d;
                }
                "codec" => {
                    encoding.codec = match v {
                        "h264" => Codec::H264,
                        "h265" => Codec::H265,
                        _ => return Err(bad("codec is h264 or h265")),
                    }
                }
                "transport" => {
                    transport = match v {
                        "udp" => ServedTransport::Udp,
                        "tcp" => ServedTransport::Tcp,
                        "any" => ServedTransport::Any,
                        _ => return Err(bad("transport is udp, tcp or any")),
                    }
                }
                _ => {
                    return Err(bad(
                        "unknown option; use size, fps, keyint, bitrate, speed, codec, transport, at or cross",
                    ));
                }
            }
        }
        if mount.is_empty() || mount.contains(['/', ' ']) {
            return Err(bad("mount must be a single path segment"));
        }
        Ok(Self { mount: mount.to_string(), picture, encoding, transport })
    }
}

/// Who may connect.
#[derive(Debug, Clone)]
pub enum Auth {
    None,
    Basic { user: String, password: String },
    Digest { user: String, password: String },
}

/// Per-mount switches the feeders watch.
#[derive(Default)]
struct MountControl {
    stalled: AtomicBool,
}

struct Mount {
    clip: Arc<EncodedClip>,
    control: Arc<MountControl>,
    factory: rtsp::RTSPMediaFactory,
}

/// A running simulator. Dropping it stops the server and closes every connection.
pub struct Simulator {
    port: u16,
    server: rtsp::RTSPServer,
    main_loop: glib::MainLoop,
    thread: Option<JoinHandle<()>>,
    context: glib::MainContext,
    source: Option<glib::SourceId>,
    mounts: HashMap<String, Mount>,
    feeders: Arc<Mutex<Vec<JoinHandle<()>>>>,
    stop: Arc<AtomicBool>,
}

impl Simulator {
    /// Encodes every stream, then serves them on `bind:port` (port 0: any free port).
    pub fn start(bind: &str, port: u16, streams: &[StreamSpec], auth: Auth) -> Result<Self, SimError> {
        crate::init_gstreamer().map_err(|e| SimError::Server(e.to_string()))?;
        let context = glib::MainContext::new();
        let server = rtsp::RTSPServer::new();
        // Clients are served on the simulator's own thread (the pool's default is a thread of
        // its own that outlives the server): closing them there, and stopping that thread,
        // leaves nothing behind that could still poll a closed connection.
        if let Some(pool) = server.thread_pool() {
            pool.set_max_threads(0);
        }
        server.set_address(bind);
        server.set_service(&port.to_string());
        let mount_points = server.mount_points().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let feeders = Arc::new(Mutex::new(Vec::new()));

        let role = "camera-viewer";
        match &auth {
            Auth::None => {}
            Auth::Basic { user, password } | Auth::Digest { user, password } => {
                let a = rtsp::RTSPAuth::new();
                let token = rtsp::RTSPToken::builder().field(rtsp::RTSP_TOKEN_MEDIA_FACTORY_ROLE, role).build();
                if let Auth::Basic { .. } = auth {
                    a.add_basic(&rtsp::RTSPAuth::make_basic(user, password), &token);
                    a.set_supported_methods(rtsp::gst_rtsp::RTSPAuthMethod::Basic);
                } else {
                    a.add_digest(user, password, &token);
                    a.set_supported_methods(rtsp::gst_rtsp::RTSPAuthMethod::Digest);
                }
                server.set_auth(Some(&a));
            }
        }

        let mut mounts = HashMap::new();
        for spec in streams {
            let clip = Arc::new(load(&spec.picture, &spec.encoding)?);
            let control = Arc::new(MountControl::default());
            let factory = rtsp::RTSPMediaFactory::new();
            let codec = clip.codec.stem();
            factory.set_launch(&format!(
                "( appsrc name=src is-live=true format=time do-timestamp=false max-bytes=2000000 block=true \
                 ! {codec}parse ! rtp{codec}pay name=pay0 pt=96 config-interval=-1 )"
            ));
            factory.set_shared(true);
            match spec.transport {
                ServedTransport::Any => {}
                ServedTransport::Udp => factory.set_protocols(rtsp::gst_rtsp::RTSPLowerTrans::UDP),
                ServedTransport::Tcp => factory.set_protocols(rtsp::gst_rtsp::RTSPLowerTrans::TCP),
            }
            if !matches!(auth, Auth::None) {
                factory.add_role_from_structure(
                    &gst::Structure::builder(role)
                        .field(rtsp::RTSP_PERM_MEDIA_FACTORY_ACCESS, true)
                        .field(rtsp::RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, true)
                        .build(),
                );
            }
            let (clip2, control2, stop2, feeders2) = (clip.clone(), control.clone(), stop.clone(), feeders.clone());
            let mount_name = spec.mount.clone();
            factory.connect_media_configure(move |_, media| {
                let bin = media.element().downcast::<gst::Bin>().unwrap();
                let Some(src) = bin.by_name_recurse_up("src").and_then(|e| e.downcast::<gst_app::AppSrc>().ok()) else {
                    return;
                };
                src.set_caps(Some(&clip2.caps));
                let media_done = Arc::new(AtomicBool::new(false));
                let done = media_done.clone();
                media.connect_unprepared(move |_| done.store(true, Ordering::SeqCst));
                let (clip, control, stop) = (clip2.clone(), control2.clone(), stop2.clone());
                let name = format!("sim-{mount_name}");
                let handle = std::thread::Builder::new()
                    .name(name)
                    .spawn(move || feed(&src, &clip, &control, &stop, &media_done))
                    .expect("spawn feeder");
                feeders2.locked().push(handle);
            });
            mount_points.add_factory(&format!("/{}", spec.mount), factory.clone());
            mounts.insert(spec.mount.clone(), Mount { clip, control, factory });
        }

        let source = server
            .attach(Some(&context))
            .map_err(|e| SimError::Server(format!("cannot listen on {bind}:{port}: {e}")))?;
        let bound = server.bound_port();
        if bound <= 0 {
            return Err(SimError::Server(format!("cannot listen on {bind}:{port}")));
        }
        let main_loop = glib::MainLoop::new(Some(&context), false);
        let context = context.clone();
        let ml = main_loop.clone();
        let thread = std::thread::Builder::new()
            .name("sim-rtsp".into())
            .spawn(move || {
                let ctx = ml.context();
                ctx.with_thread_default(|| ml.run()).expect("sim main context");
            })
            .map_err(|e| SimError::Server(e.to_string()))?;
        Ok(Self {
            port: bound as u16,
            server,
            main_loop,
            thread: Some(thread),
            context,
            source: Some(source),
            mounts,
            feeders,
            stop,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `rtsp://127.0.0.1:PORT/<mount>`.
    pub fn url(&self, mount: &str) -> String {
        format!("rtsp://127.0.0.1:{}/{mount}", self.port)
    }

    pub fn clip(&self, mount: &str) -> Option<&EncodedClip> {
        self.mounts.get(mount).map(|m| m.clip.as_ref())
    }

    /// Stops sending on a mount; connections stay open (a camera that hangs).
    pub fn stall(&self, mount: &str) {
        if let Some(m) = self.mounts.get(mount) {
            m.control.stalled.store(true, Ordering::SeqCst);
        }
    }

    /// Sends again after [`Simulator::stall`].
    pub fn resume(&self, mount: &str) {
        if let Some(m) = self.mounts.get(mount) {
            m.control.stalled.store(false, Ordering::SeqCst);
        }
    }

    /// Closes the connections of every client watching `mount` (a camera that reboots).
    pub fn disconnect(&self, mount: &str) {
        let path = format!("/{mount}");
        self.on_loop(move |server| {
            Self::close_watching(server, &path);
        });
    }

    /// Runs `f` on the thread that serves the clients and waits for it (up to 5 s): a
    /// connection closed while its watch was being dispatched on another thread kept polling
    /// it, each poll a GLib critical, as long as that thread ran.
    fn on_loop(&self, f: impl FnOnce(&rtsp::RTSPServer) + Send + 'static) {
        let server = self.server.clone();
        let (done, finished) = std::sync::mpsc::channel();
        self.context.invoke(move || {
            f(&server);
            let _ = done.send(());
        });
        let _ = finished.recv_timeout(Duration::from_secs(5));
    }

    fn close_watching(server: &rtsp::RTSPServer, path: &str) {
        server.client_filter(Some(&mut |_server: &rtsp::RTSPServer, client: &rtsp::RTSPClient| {
            let mut watching = false;
            client.session_filter(Some(&mut |_c: &rtsp::RTSPClient, session: &rtsp::RTSPSession| {
                session.filter(Some(&mut |_s: &rtsp::RTSPSession, media: &rtsp::RTSPSessionMedia| {
                    if media.matches(path).is_some() {
                        watching = true;
                    }
                    rtsp::RTSPFilterResult::Keep
                }));
                rtsp::RTSPFilterResult::Keep
            }));
            if watching { rtsp::RTSPFilterResult::Remove } else { rtsp::RTSPFilterResult::Keep }
        }));
    }

    /// `false`: the mount answers "404 Not Found" and its clients are disconnected;
    /// `true`: it serves again.
    pub fn set_available(&self, mount: &str, available: bool) {
        let Some(m) = self.mounts.get(mount) else { return };
        let points = self.server.mount_points().unwrap();
        let path = format!("/{mount}");
        if available {
            points.add_factory(&path, m.factory.clone());
        } else {
            points.remove_factory(&path);
            self.disconnect(mount);
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.on_loop(|server| {
            server
                .client_filter(Some(&mut |_: &rtsp::RTSPServer, _: &rtsp::RTSPClient| rtsp::RTSPFilterResult::Remove));
        });
        // The server's source lives in our own context, not the default one.
        if let Some(source) = self.source.take().and_then(|id| self.context.find_source_by_id(&id)) {
            source.destroy();
        }
        self.main_loop.quit();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for f in self.feeders.locked().drain(..) {
            let _ = f.join();
        }
    }
}

/// Pushes the clip's access units into a media's appsrc, looped, paced by the pipeline
/// clock. While stalled it pushes nothing and, on resume, continues from "now".
fn feed(src: &gst_app::AppSrc, clip: &EncodedClip, control: &MountControl, stop: &AtomicBool, media_done: &AtomicBool) {
    let running_time = || -> Option<gst::ClockTime> {
        let clock = src.clock()?;
        Some(clock.time().saturating_sub(src.base_time()?))
    };
    // Wait for PLAYING, when the element has a clock and base time.
    let mut offset = loop {
        if stop.load(Ordering::SeqCst) || media_done.load(Ordering::SeqCst) {
            return;
        }
        if src.current_state() == gst::State::Playing
            && let Some(now) = running_time()
        {
            break now;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    const LEAD: gst::ClockTime = gst::ClockTime::from_mseconds(40);
    let mut cycle = 0u64;
    loop {
        for unit in &clip.units {
            let base = offset + clip.period * cycle;
            loop {
                if stop.load(Ordering::SeqCst) || media_done.load(Ordering::SeqCst) {
                    return;
                }
                let Some(now) = running_time() else { return };
                if control.stalled.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                let due = base + unit.dts;
                if now + LEAD >= due {
                    // After a stall the timeline jumps to "now", keeping timestamps increasing.
                    if now > due + gst::ClockTime::from_mseconds(500) {
                        offset += now - due;
                        continue;
                    }
                    break;
                }
                std::thread::sleep(
                    Duration::from_nanos((due - now - LEAD / 2).nseconds()).min(Duration::from_millis(20)),
                );
            }
            let base = offset + clip.period * cycle;
            let mut buffer = unit.buffer.copy();
            {
                let b = buffer.get_mut().unwrap();
                b.set_pts(base + unit.pts);
                b.set_dts(base + unit.dts);
                b.set_duration(unit.duration);
            }
            if src.push_buffer(buffer).is_err() {
                return;
            }
        }
        cycle += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crossing_names_its_sprite_background_and_timing() {
        let media = std::path::Path::new("/media");
        let s = StreamSpec::parse("dash=crossing:a.png:b.mpg:8,keyint=2s,at=4500ms,cross=1200ms", media).unwrap();
        assert_eq!(
            s.picture,
            Picture::Crossing {
                sprite: media.join("a.png"),
                background: media.join("b.mpg"),
                seconds: 8,
                at: Duration::from_millis(4500),
                cross: Duration::from_millis(1200),
            }
        );
        assert_eq!(s.encoding.keyframe_interval, Some(Duration::from_secs(2)));
        let reason = |spec: &str| match StreamSpec::parse(spec, media) {
            Err(SimError::Spec { reason, .. }) => reason,
            other => panic!("{spec}: {other:?}"),
        };
        assert!(reason("x=crossing:a.png").contains("crossing:SPRITE:BACKGROUND"));
        assert!(reason("x=bikes.mp4,at=1s").contains("options of a crossing"));
        assert!(reason("x=crossing:a.png:b.png,cross=soon").contains("duration"));
    }
}
