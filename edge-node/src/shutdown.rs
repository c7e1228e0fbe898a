//! shutdown: how `edge-node run` stops, in order, within one deadline
//! ([`SHUTDOWN_DEADLINE`]; the process exits anyway when it passes).
//!
//! 1. Ingest: every camera pipeline goes to NULL, so no new frame enters.
//! 2. The inference pool finishes the frames it holds, into the camera stage's queue.
//! 3. The camera stage and then the alert stage finish theirs: every alert is stored.
//! 4. The in-process dispatcher (its timers, then its link).
//! 5. The MQTT link: acknowledgements written, a retained `offline`, a clean disconnect.
//!    Rows not yet acknowledged stay in the outbox for the next start.
//! 6. The async runtime.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::dispatch::service::DispatchService;
use crate::graph::Stages;
use crate::inference::InferencePool;
use crate::mqtt::MqttLink;
use crate::source::Ingest;

/// How long shutdown may take before the process exits anyway.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// What a running node stops.
pub struct Running {
    pub rt: tokio::runtime::Runtime,
    pub ingest: Ingest,
    pub pool: Arc<InferencePool>,
    /// The camera and alert stages (`None` when already taken).
    pub stages: Option<Stages>,
    pub dispatch: Option<DispatchService>,
    pub link: MqttLink,
}

impl Running {
    pub fn stop(self) {
        let started = Instant::now();
        let left = || SHUTDOWN_DEADLINE.saturating_sub(started.elapsed());
        if !self.ingest.shutdown(SHUTDOWN_DEADLINE) {
            warn!(deadline_s = SHUTDOWN_DEADLINE.as_secs(), "some camera pipelines did not stop before the deadline");
        }
        // Ingest (gone now) held the last other clone of the pool, in its frame callback.
        match Arc::try_unwrap(self.pool) {
            Ok(pool) => {
                if !pool.shutdown(left()) {
                    warn!("inference workers did not stop before the deadline");
                }
            }
            Err(_) => warn!("inference pool still in use at shutdown; its workers stop with the process"),
        }
        if let Some(stages) = self.stages
            && !stages.finish(left())
        {
            warn!("the camera and alert stages did not finish before the deadline");
        }
        if let Some(d) = self.dispatch {
            self.rt.block_on(d.shutdown(Duration::from_secs(2).min(left())));
        }
        self.rt.block_on(self.link.shutdown(Duration::from_secs(3).min(left())));
        self.rt.shutdown_timeout(left());
        info!(took_ms = started.elapsed().as_millis() as u64, "stopped");
    }
}
