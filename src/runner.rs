//! Runs probes under the exporter's shared rules: the in-flight limit, the
//! deadline, and the counters of `/metrics`.
//!
//! Every probe, whether from `/probe` or (later) the scheduler, goes
//! through [`ProbeRunner::run`], so the limit is shared and every probe is
//! counted once.

use crate::config::Module;
use crate::metrics::exporter::ExporterMetrics;
use crate::prober::{self, Failure, Outcome, Reason};
use crate::target::Target;
use crate::trace::Trace;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Runs probes within the in-flight limit and counts them.
#[derive(Debug)]
pub struct ProbeRunner {
    slots: Semaphore,
    max_in_flight: usize,
    metrics: Arc<ExporterMetrics>,
}

impl ProbeRunner {
    /// A runner allowing at most `max_in_flight` probes at once.
    #[must_use]
    pub fn new(max_in_flight: usize, metrics: Arc<ExporterMetrics>) -> Self {
        Self {
            slots: Semaphore::new(max_in_flight),
            max_in_flight,
            metrics,
        }
    }

    /// The metrics this runner counts into.
    #[must_use]
    pub fn metrics(&self) -> &Arc<ExporterMetrics> {
        &self.metrics
    }

    /// Probes `target` with the module called `module_name`, within `timeout`.
    ///
    /// When the in-flight limit is reached the probe waits for a slot; if
    /// none frees up before the deadline it fails as `local`, because the
    /// limit is the exporter's, not the target's.
    pub async fn run(
        &self,
        module_name: &str,
        module: &Module,
        target: &Target,
        timeout: Duration,
        trace: &mut Trace,
    ) -> Outcome {
        let started = Instant::now();
        let deadline = started + timeout;
        let outcome = match tokio::time::timeout_at(deadline, self.slots.acquire()).await {
            Ok(Ok(_slot)) => {
                let _in_flight = self.metrics.probe_in_flight();
                prober::run(module, target, deadline, trace).await
            }
            // The semaphore is never closed, so only the timeout lands here.
            Err(_) | Ok(Err(_)) => {
                let failure = Failure::new(
                    Reason::Local,
                    format!(
                        "all {} probe slots stayed busy until the deadline; raise --probe.max-in-flight",
                        self.max_in_flight
                    ),
                );
                trace.log(format_args!("{}", failure.detail));
                Outcome::not_started(failure, started.elapsed())
            }
        };
        self.metrics.record_probe(module_name, &outcome);
        outcome
    }
}
