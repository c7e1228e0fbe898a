//! The `edge-node` command: `run` the daemon, `check-config` a file.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use edge_node::{EXIT_BAD_CONFIG, config, node, telemetry};

#[derive(Parser)]
#[command(name = "edge-node", version, about = "gridsight edge node: cameras in, alerts and dispatch orders out")]
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
    /// Check a config file: print every problem and exit 64, or a one-line summary and exit 0.
    CheckConfig { file: PathBuf },
}

fn load(path: &PathBuf) -> Result<config::Config, ExitCode> {
    config::load(path).map_err(|e| {
        eprintln!("error: {e}");
        match e {
            config::ConfigError::Invalid { .. } => ExitCode::from(EXIT_BAD_CONFIG as u8),
            config::ConfigError::Read { .. } => ExitCode::from(66),
        }
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => match load(&file) {
            Ok(cfg) => {
                println!("{}: ok: {}", file.display(), cfg.summary());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Run { config } => {
            let cfg = match load(&config) {
                Ok(cfg) => cfg,
                Err(code) => return code,
            };
            telemetry::init_logging();
            match node::run(cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
