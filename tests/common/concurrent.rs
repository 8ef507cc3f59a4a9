//! Library probes for the system tests: one or many at once with
//! `synack_exporter::check`, each bounded in case the prober ever ignored
//! its deadline, and the shared parts of judging and logging their results.

use std::net::SocketAddr;
use std::time::Duration;
use synack_exporter::{Module, Outcome, TargetError};

/// What one probe returned, or, when it overran its deadline, the bound
/// it overran.
pub type Checked = Result<Result<Outcome, TargetError>, Duration>;

/// How far past its module's timeout a probe may run before it counts as
/// having ignored its deadline.
const OVERRUN: Duration = Duration::from_secs(5);

/// Probes `target` with `module`, bounded by the module's timeout plus
/// [`OVERRUN`].
pub async fn check_bounded(target: String, module: Module) -> Checked {
    let bound = module.timeout() + OVERRUN;
    tokio::time::timeout(bound, synack_exporter::check(&target, &module))
        .await
        .map_err(|_| bound)
}

/// Starts [`check_bounded`] for every `(target, module)` at once, each in
/// a task of its own on the current runtime, and returns their results in
/// the same order.
pub async fn check_all_at_once(probes: impl IntoIterator<Item = (String, Module)>) -> Vec<Checked> {
    let handles: Vec<_> = probes
        .into_iter()
        .map(|(target, module)| tokio::spawn(check_bounded(target, module)))
        .collect();
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        results.push(handle.await.expect("probe task panicked"));
    }
    results
}

/// The outcome of a probe that was to go to `address`, or what is wrong
/// before its outcome can be judged: it overran its deadline, the target
/// was rejected, or another address was probed.
pub fn outcome_for(result: &Checked, address: SocketAddr) -> Result<&Outcome, String> {
    let outcome = match result {
        Err(bound) => return Err(format!("the probe ignored its deadline ({bound:?})")),
        Ok(Err(error)) => return Err(format!("the target was rejected: {error}")),
        Ok(Ok(outcome)) => outcome,
    };
    if outcome.address != Some(address) {
        return Err(format!("probed {:?} instead of {address}", outcome.address));
    }
    Ok(outcome)
}

/// `success`, or the failure's reason and detail: `refused [connect to ...]`.
pub fn verdict(outcome: &Outcome) -> String {
    outcome.failure.as_ref().map_or_else(
        || "success".to_owned(),
        |failure| format!("{} [{}]", failure.reason, failure.detail),
    )
}

/// One log line: `head`, then what `outcome_line` makes of the outcome,
/// or why there is none.
pub fn describe_checked(
    head: &str,
    result: &Checked,
    outcome_line: impl FnOnce(&Outcome) -> String,
) -> String {
    match result {
        Err(bound) => format!("{head} no outcome within {:.0}s", bound.as_secs_f64()),
        Ok(Err(error)) => format!("{head} target rejected: {error}"),
        Ok(Ok(outcome)) => format!("{head} {}", outcome_line(outcome)),
    }
}
