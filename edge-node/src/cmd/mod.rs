//! One file per subcommand: its `Args` (clap) and its `main`, which returns what went
//! wrong as a [`Failure`]: the exit status and the words for it, said in one place.

use std::path::Path;
use std::process::ExitCode;

use edge_node::{EXIT_BAD_CONFIG, config, telemetry};

pub mod check_config;
pub mod detect;
pub mod dispatch;
pub mod inspector;
pub mod run;
pub mod sim;

/// Why a subcommand ended without success.
pub struct Failure {
    /// The exit status (the table in `--help`).
    pub code: u8,
    /// What to say on stderr (`None`: already said).
    pub message: Option<String>,
    /// Also to the log (a daemon's failure, for the journal).
    pub log: bool,
}

impl Failure {
    pub fn new(code: u8, message: impl std::fmt::Display) -> Self {
        Self { code, message: Some(message.to_string()), log: false }
    }

    /// An exit status with nothing more to say (it was printed already).
    pub fn quiet(code: u8) -> Self {
        Self { code, message: None, log: false }
    }

    /// A running daemon's failure: logged as well as printed.
    pub fn logged(code: u8, message: impl std::fmt::Display) -> Self {
        Self { log: true, ..Self::new(code, message) }
    }

    pub fn report(self) -> ExitCode {
        if let Some(m) = &self.message {
            if self.log {
                tracing::error!("{m}");
            }
            eprintln!("error: {m}");
        }
        ExitCode::from(self.code)
    }
}

/// Reads and checks a config file: exit 64 with every problem, 66 when it cannot be read.
pub fn load(path: &Path) -> Result<config::Config, Failure> {
    config::load(path).map_err(|e| {
        let code = match e {
            config::ConfigError::Invalid { .. } => EXIT_BAD_CONFIG as u8,
            config::ConfigError::Read { .. } => 66,
        };
        Failure::new(code, e)
    })
}

/// Loads the config of a long-running command, applies its time zone, starts logging.
pub fn load_daemon(path: &Path) -> Result<config::Config, Failure> {
    let cfg = load(path)?;
    if let Some(tz) = &cfg.node.time_zone {
        // SAFETY: nothing has started a thread yet (logging, GStreamer, ONNX Runtime and the
        // async runtime all start after this).
        unsafe { edge_node::localtime::apply(tz) };
    }
    telemetry::init_logging();
    for advice in cfg.advice() {
        tracing::warn!("{advice}");
    }
    Ok(cfg)
}
