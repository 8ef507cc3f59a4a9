//! `prober: tcp` with a session: a full connect that the exporter keeps
//! and talks on, with TLS (`tls: true`, `starttls`) or a dialogue
//! (`query_response`).

#![forbid(unsafe_code)]

pub(super) mod series;

pub(crate) use series::{SessionKept, write_series};

use super::{Budget, Context, Detail, Failure, Outcome, Reason, StepLog, TcpDetail, TlsFacts};
use crate::config::{TargetPolicy, TcpProbe};
use crate::steplog::Wording;
use crate::target::Target;
use std::fmt;

/// What a session reports beside the shared part of the outcome.
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionDetail {
    /// The connection's handshake.
    pub tcp: TcpDetail,
    /// The TLS handshake, when one succeeded.
    pub tls: Option<TlsFacts>,
    /// Whether an `expect` read to the end of the connection without a match.
    pub failed_due_to_regex: bool,
    /// Whether an `expect_bytes` read other bytes.
    pub failed_due_to_bytes: bool,
    /// The labels of the step that has them, expanded, once it matched.
    pub expect_labels: Vec<(Box<str>, String)>,
    /// The `query_response` step that failed, counted from 1.
    pub failed_step: Option<u16>,
}

/// A session's own steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SessionStep {}

impl Wording for SessionStep {
    fn write(&self, _f: &mut fmt::Formatter<'_>, _show_commands: bool) -> fmt::Result {
        match *self {}
    }
}

/// Probes `target` with a session of `probe`.
pub(super) async fn probe(
    probe: &TcpProbe,
    policy: Option<&TargetPolicy>,
    target: &Target,
    context: &Context,
    budget: Budget,
    steplog: &mut StepLog,
) -> Outcome {
    let _ = (probe, policy, target, context, budget, steplog);
    Outcome::new(
        Some(Failure::new(Reason::Local, "sessions are not built yet")),
        Detail::Session(Box::default()),
    )
}
