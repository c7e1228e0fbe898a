//! `edge-node check-config FILE`: every problem (exit 64), or a one-line summary.

use std::path::PathBuf;

use super::Failure;

#[derive(clap::Args)]
pub struct Args {
    file: PathBuf,
}

pub fn main(args: Args) -> Result<(), Failure> {
    let cfg = super::load(&args.file)?;
    println!("{}: ok: {}", args.file.display(), cfg.summary());
    Ok(())
}
