//! `edge-node check-config FILE`: every problem (exit 64), or a one-line summary and what is
//! valid but probably unwanted (warnings, exit 0).

use std::path::PathBuf;

use super::Failure;

#[derive(clap::Args)]
pub struct Args {
    file: PathBuf,
}

pub fn main(args: Args) -> Result<(), Failure> {
    let cfg = super::load(&args.file)?;
    println!("{}: ok: {}", args.file.display(), cfg.summary());
    for advice in cfg.advice() {
        eprintln!("{}: warning: {advice}", args.file.display());
    }
    Ok(())
}
