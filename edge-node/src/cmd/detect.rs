//! `edge-node detect --config FILE FILES…`: faces and objects in images or clips, as the
//! node would find them.

use std::path::PathBuf;

use edge_node::detect::{self, DetectOptions};

use super::Failure;

#[derive(clap::Args)]
pub struct Args {
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
}

pub fn main(args: Args) -> Result<(), Failure> {
    edge_node::telemetry::init_logging();
    let cfg = super::load(&args.config)?;
    let opts = DetectOptions { camera: args.camera, fps: args.fps, annotate: args.annotate };
    let results = detect::run(&cfg, &args.files, &opts).map_err(|e| Failure::new(1, e))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&detect::to_json(&results)).unwrap_or_default());
    } else {
        print!("{}", detect::to_text(&results));
    }
    Ok(())
}
