//! Library probes for the system tests: one or many at once with
//! `synack_exporter::check` (a raw engine's on a `Checker`, see
//! [`Engine::check`]), each bounded in case the prober ever ignored its
//! deadline, and the shared parts of judging and logging their results.

use crate::engines::Engine;
use std::net::SocketAddr;
use std::time::Duration;
use synack_exporter::{Module, Outcome, Prober, TargetError, TcpOptions};

/// Both TCP probers, for tables run with each: how a probe fails must not
/// depend on how far the handshake is meant to go.
pub fn tcp_probers() -> [Prober; 2] {
    [
        Prober::TcpHalfopen(TcpOptions::default()),
        Prober::TcpConnect(TcpOptions::default()),
    ]
}

/// What one probe returned, or, when it overran its deadline, the bound
/// it overran.
pub type Checked = Result<Result<Outcome, TargetError>, Duration>;

/// How far past its module's timeout a probe may run before it counts as
/// having ignored its deadline.
const OVERRUN: Duration = Duration::from_secs(5);

/// Probes `target` with `module`, bounded by the module's timeout plus
/// [`OVERRUN`].
pub async fn check_bounded(target: String, module: Module) -> Checked {
    check_bounded_with(Engine::Socket, target, module).await
}

/// [`check_bounded`] on `engine`'s way ([`Engine::check`]).
pub async fn check_bounded_with(engine: Engine, target: String, module: Module) -> Checked {
    let bound = module.timeout() + OVERRUN;
    tokio::time::timeout(bound, engine.check(&target, &module))
        .await
        .map_err(|_| bound)
}

/// [`check_bounded`] for a target that must be valid and a prober that
/// must keep its deadline: the outcome, or a panic that says which failed.
pub async fn check_valid(target: String, module: Module) -> Outcome {
    check_valid_with(Engine::Socket, target, module).await
}

/// [`check_valid`] on `engine`'s way.
pub async fn check_valid_with(engine: Engine, target: String, module: Module) -> Outcome {
    match check_bounded_with(engine, target, module).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(error)) => panic!("the target was rejected: {error}"),
        Err(bound) => panic!("the probe ignored its deadline ({bound:?})"),
    }
}

/// Starts [`check_bounded`] for every `(target, module)` at once, each in
/// a task of its own on the current runtime, and returns their results in
/// the same order.
pub async fn check_all_at_once(probes: impl IntoIterator<Item = (String, Module)>) -> Vec<Checked> {
    join_spawned(
        probes
            .into_iter()
            .map(|(target, module)| check_bounded(target, module)),
    )
    .await
}

/// [`check_all_at_once`] for the cases of a table, each on its engine's
/// way ([`Case::check`]).
pub async fn check_cases_at_once<E>(cases: &[Case<E>]) -> Vec<Checked> {
    join_spawned(cases.iter().map(|case| {
        let (target, module) = case.probe();
        check_bounded_with(case.engine, target, module)
    }))
    .await
}

/// Runs each probe in a task of its own, all at once, and returns their
/// results in order.
async fn join_spawned(
    probes: impl Iterator<Item = impl std::future::Future<Output = Checked> + Send + 'static>,
) -> Vec<Checked> {
    let handles: Vec<_> = probes.map(tokio::spawn).collect();
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        results.push(handle.await.expect("probe task panicked"));
    }
    results
}

/// The outcome of a probe that was to go to `address`, or what is wrong
/// before its outcome can be judged: it overran its deadline, the target
/// was rejected, or another address was probed.
fn outcome_for(result: &Checked, address: SocketAddr) -> Result<&Outcome, String> {
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

/// One case of a table of probes: what it is, the address probed, with
/// which prober, engine and timeout, and what it must end with (`E`, each
/// test's own). The prober's options carry the engine ([`Engine::halfopen`]).
#[derive(Clone, Debug)]
pub struct Case<E> {
    pub what: &'static str,
    pub address: SocketAddr,
    pub prober: Prober,
    pub engine: Engine,
    pub timeout: Duration,
    pub expect: E,
}

impl<E> Case<E> {
    /// The case's target and module, for [`check_bounded`].
    pub fn probe(&self) -> (String, Module) {
        // "[::1]:7001" for IPv6
        let target = self.address.to_string();
        (
            target,
            Module::new(self.prober.clone()).with_timeout(self.timeout),
        )
    }

    /// Probes the case on its engine's way, bounded ([`check_bounded_with`]).
    pub async fn check(&self) -> Checked {
        let (target, module) = self.probe();
        check_bounded_with(self.engine, target, module).await
    }

    /// One log line: prober, address, what the case is and its timeout,
    /// then what `outcome_line` makes of the outcome, or why there is none.
    pub fn log_line(
        &self,
        result: &Checked,
        outcome_line: impl FnOnce(&Outcome) -> String,
    ) -> String {
        let head = format!(
            "{:<16} {:<20} {:<40} timeout {:.1}s ->",
            crate::engines::label(&self.prober, self.engine),
            self.address.to_string(),
            self.what,
            self.timeout.as_secs_f64()
        );
        describe_checked(&head, result, outcome_line)
    }

    /// What is wrong with `result`, if anything: what [`outcome_for`]
    /// finds, else what `wrong` finds in the outcome.
    pub fn judge(
        &self,
        result: &Checked,
        wrong: impl FnOnce(&Outcome) -> Option<String>,
    ) -> Option<String> {
        outcome_for(result, self.address).map_or_else(Some, wrong)
    }
}

/// What is wrong with how long a probe with `timeout` took, if anything:
/// one that timed out must have waited for its deadline (a failure that
/// merely carries the label does not), from 90 % of it to a second past
/// it; one that was answered must have ended within `answer_within`.
pub fn wrong_duration(
    outcome: &Outcome,
    timed_out: bool,
    timeout: Duration,
    answer_within: Duration,
) -> Option<String> {
    if timed_out {
        let low = timeout.mul_f64(0.9);
        let high = timeout + Duration::from_secs(1);
        (outcome.duration < low || outcome.duration >= high).then(|| {
            format!(
                "a timeout should take [{low:?}, {high:?}), took {:?}",
                outcome.duration
            )
        })
    } else {
        (outcome.duration >= answer_within).then(|| {
            format!("an answered probe should end within {answer_within:?} (timeout {timeout:?})")
        })
    }
}

/// What a test found wrong, case by case: each case's log line is printed
/// as it is checked, and [`Problems::assert_none`] fails the test with
/// every wrong one.
#[derive(Debug, Default)]
pub struct Problems {
    checked: usize,
    wrong: Vec<String>,
}

impl Problems {
    /// Prints `line` and notes `problem`, if there is one.
    pub fn check(&mut self, line: &str, problem: Option<String>) {
        println!("{line}");
        self.checked += 1;
        if let Some(problem) = problem {
            self.wrong.push(format!("{line}\n    => {problem}"));
        }
    }

    /// Fails unless every case checked was right.
    pub fn assert_none(&self) {
        assert!(
            self.wrong.is_empty(),
            "{} of {} cases wrong:\n{}",
            self.wrong.len(),
            self.checked,
            self.wrong.join("\n")
        );
    }
}
