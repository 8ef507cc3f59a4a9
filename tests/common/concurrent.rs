//! Many probes at once with the library's `check`, as the system tests
//! need to load the kernel or to keep one run near one timeout long.

use std::time::Duration;
use synack_exporter::{Module, Outcome, TargetError};

/// What one probe returned, or, when it overran its deadline, the bound
/// it overran.
pub type Checked = Result<Result<Outcome, TargetError>, Duration>;

/// How far past its module's timeout a probe may run before it counts as
/// having ignored its deadline.
const OVERRUN: Duration = Duration::from_secs(5);

/// Starts `synack_exporter::check` for every `(target, module)` at once,
/// each in a task of its own on the current runtime, and returns their
/// results in the same order.
pub async fn check_all_at_once(probes: impl IntoIterator<Item = (String, Module)>) -> Vec<Checked> {
    let handles: Vec<_> = probes
        .into_iter()
        .map(|(target, module)| {
            let bound = module.timeout.0 + OVERRUN;
            tokio::spawn(async move {
                tokio::time::timeout(bound, synack_exporter::check(&target, &module))
                    .await
                    .map_err(|_| bound)
            })
        })
        .collect();
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        results.push(handle.await.expect("probe task panicked"));
    }
    results
}
