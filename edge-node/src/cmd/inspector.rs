//! `edge-node inspector --config FILE --id ID ACTION [ORDER]`: an inspector's app in
//! miniature: one order update and its reply, or `watch` what the dispatcher sends.

use std::path::PathBuf;
use std::time::Duration;

use edge_node::dispatch::inspector;

use super::Failure;

#[derive(clap::Args)]
pub struct Args {
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
}

/// Exit 0 accepted, 1 refused, 2 no reply (or no order id).
pub fn main(args: Args) -> Result<(), Failure> {
    let cfg = super::load(&args.config)?;
    if args.action == "watch" {
        return inspector::watch(&cfg, &args.id).map_err(|e| Failure::new(2, e));
    }
    let Some(order) = &args.order else {
        return Err(Failure::new(2, format!("{} needs an order id", args.action)));
    };
    let req = inspector::Request {
        action: &args.action,
        order,
        reason: args.reason.as_deref(),
        note: args.note.as_deref(),
        to: args.to.as_deref(),
    };
    let reply =
        inspector::send(&cfg, &args.id, &req, Duration::from_secs(args.timeout)).map_err(|e| Failure::new(2, e))?;
    println!("{reply}");
    if reply["ok"] == true { Ok(()) } else { Err(Failure::quiet(1)) }
}
