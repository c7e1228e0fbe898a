//! The `edge-node` command: `run` the daemon, `dispatch` alone, `inspector` (an inspector's
//! app in miniature), `sim` cameras, `detect` on files, `check-config` a file,
//! `config-reference`. Each subcommand is a file of `cmd/` (this binary's, not the
//! library's): its arguments and what it does.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

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
    Run(cmd::run::Args),
    /// Serve simulated RTSP cameras from the test clips (or patterns) until SIGINT/SIGTERM.
    Sim(cmd::sim::Args),
    /// Detect faces and objects in images or clips with a config's models, as the node would.
    Detect(cmd::detect::Args),
    /// Run only the dispatcher, for the alerts of every node on the broker (a district).
    Dispatch(cmd::dispatch::Args),
    /// Act as an inspector's app: send one order update and print the reply (exit 0 when
    /// accepted, 1 when refused, 2 without a reply), or `watch` what the dispatcher sends.
    Inspector(cmd::inspector::Args),
    /// Check a config file: print every problem and exit 64, or a one-line summary and exit 0.
    CheckConfig(cmd::check_config::Args),
    /// Print the config reference (every field, its type and what it does) as Markdown.
    ConfigReference,
}

fn main() -> ExitCode {
    edge_node::tune_allocator();
    let result = match Cli::parse().command {
        Command::Run(args) => cmd::run::main(args),
        Command::Sim(args) => cmd::sim::main(args),
        Command::Detect(args) => cmd::detect::main(args),
        Command::Dispatch(args) => cmd::dispatch::main(args),
        Command::Inspector(args) => cmd::inspector::main(args),
        Command::CheckConfig(args) => cmd::check_config::main(args),
        Command::ConfigReference => {
            print!("{}", edge_node::config::reference::generate().0);
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}
