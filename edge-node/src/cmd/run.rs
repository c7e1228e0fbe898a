//! `edge-node run --config FILE`: the node, until SIGINT or SIGTERM.

use std::path::PathBuf;

use super::Failure;

#[derive(clap::Args)]
pub struct Args {
    /// The node's config file (TOML, version = 1).
    #[arg(long, short)]
    config: PathBuf,
}

pub fn main(args: Args) -> Result<(), Failure> {
    let cfg = super::load_daemon(&args.config)?;
    edge_node::node::run(cfg, args.config).map_err(|e| Failure::logged(e.exit_code(), e))
}
