//! `edge-node dispatch --config FILE`: only the dispatcher, for every node on the broker.

use std::path::PathBuf;

use super::Failure;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, short)]
    config: PathBuf,
}

pub fn main(args: Args) -> Result<(), Failure> {
    let cfg = super::load_daemon(&args.config)?;
    edge_node::node::run_dispatch(cfg, args.config).map_err(|e| Failure::logged(e.exit_code(), e))
}
