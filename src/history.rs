//! The last probes made through `/probe`, with their step logs, for the
//! landing page and `/logs?id=N` (blackbox_exporter keeps the same).
//!
//! A record keeps the probe's steps as [`Steps`], not as text: the text
//! is made only when `/logs` asks for it, so remembering a probe costs the
//! request no formatting. Readers take one page of records, shared, rather
//! than a copy of all of them.
//!
//! **Memory is bounded in bytes.** Any client that can reach `/probe` can
//! fill the history, with probes of its choosing: a `tcp.attempts: 100`
//! probe logs some 300 steps, an exec command line may be about 1 MB.
//! So, besides the number of records (`--history.limit`, at most
//! [`MAX_LIMIT`]), each record is cut to [`MAX_RECORD_BYTES`] (its step
//! log ends with a line saying what was cut) and all of them together,
//! with the list that holds them, to [`MAX_BYTES`]: the oldest go first
//! to make room. The bytes are counted as glibc's malloc gives them
//! ([`crate::steplog::allocated`]); what the process holds for them is more
//! (the allocator's slack, and the step logs of the probes in flight), so
//! the count is held well below the [`MAX_MEMORY`] promised.

#![forbid(unsafe_code)]

use crate::prober::Steps;
use crate::prober::{Failure, Outcome, Reason};
use crate::steplog::{allocated, cut_text};
use crate::target::Target;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

/// One remembered `/probe` request.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ProbeRecord {
    /// Increasing id, for `/logs?id=N`.
    pub(crate) id: u64,
    /// Unix time when it finished, seconds.
    pub(crate) finished_unix: f64,
    /// The module name.
    pub(crate) module: Arc<str>,
    /// The target, as parsed from the request; `None` for an `exec`
    /// command run without one.
    pub(crate) target: Option<Target>,
    /// `None` on success.
    pub(crate) failure: Option<Failure>,
    /// Duration of the probe, seconds.
    pub(crate) duration: f64,
    /// What the probe did.
    pub(crate) steps: Steps,
}

impl ProbeRecord {
    /// `None` on success.
    pub(crate) fn reason(&self) -> Option<Reason> {
        self.failure.as_ref().map(|failure| failure.reason)
    }

    /// The step log, as `debug=true` shows it. Commands are shown: with
    /// `--web.hide-config-and-logs`, no record is kept.
    pub(crate) fn log(&self) -> String {
        let failure = self.failure.as_ref().map(|failure| failure as _);
        self.steps.render(self.target.as_ref(), failure, true)
    }
}

/// The most records `--history.limit` may keep. That covers minutes of
/// `/probe` traffic from a typical Prometheus, enough to look up a recent
/// failure's log.
pub(crate) const MAX_LIMIT: u32 = 10_000;

/// The most memory the history makes the process hold, the allocator's
/// slack included: 16 MiB, whatever the probes were.
pub(crate) const MAX_MEMORY: usize = 16 << 20;

/// The most bytes all the records may take as counted, with the list that
/// holds them: 6 MiB of the [`MAX_MEMORY`]. The rest is for the
/// allocator's slack and for the step logs of the probes in flight, which
/// an exporter with a history keeps and one without does not: with 200
/// clients making probes of 100 attempts and 8 MiB counted,
/// bench/history_memory.sh measured the process 13.8 and 16.9 MiB larger
/// than with the history off, in two runs (issue 18). [`MAX_LIMIT`] usual
/// records (see [`USUAL_RECORD_BYTES`]) still fit; fewer are kept when
/// their logs are long.
pub(crate) const MAX_BYTES: usize = 6 << 20;

/// The most memory one record may take: 64 KiB. The step log of a probe
/// of 100 attempts fits whole; a longer one is cut.
pub(crate) const MAX_RECORD_BYTES: usize = 64 << 10;

/// What a record of a usual probe takes: a half-open probe of an IP
/// literal that succeeds (checked by a test).
pub(crate) const USUAL_RECORD_BYTES: usize = 608;

/// The most bytes of a failure's detail a record keeps. Details are
/// sentences; this only bounds one that quotes a long input.
const MAX_DETAIL_BYTES: usize = 4096;

/// A bounded, newest-last list of probe records.
#[derive(Debug)]
pub(crate) struct History {
    limit: usize,
    kept: Mutex<Kept>,
}

/// The records, each with the bytes it takes, and their sum.
#[derive(Debug)]
struct Kept {
    next_id: u64,
    /// The bytes of every record, and of the list itself.
    bytes: usize,
    records: VecDeque<(Arc<ProbeRecord>, usize)>,
}

impl History {
    /// Keeps the last `limit` probes, at most [`MAX_LIMIT`], within
    /// [`MAX_BYTES`]; 0 keeps none.
    pub(crate) fn new(limit: usize) -> Self {
        let limit = limit.min(MAX_LIMIT as usize);
        // The whole list at once: its size is then known, and counted.
        let mut records = VecDeque::new();
        records.reserve_exact(limit);
        let bytes = allocated(records.capacity() * size_of::<(Arc<ProbeRecord>, usize)>());
        Self {
            limit,
            kept: Mutex::new(Kept {
                next_id: 0,
                bytes,
                records,
            }),
        }
    }

    /// The bytes the records and their list take, as counted.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.kept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .bytes
    }

    /// Whether records are kept at all, so callers can skip the step log.
    pub(crate) fn is_enabled(&self) -> bool {
        self.limit > 0
    }

    /// Remembers one finished probe of `target` with module `module`.
    pub(crate) fn record(
        &self,
        module: &Arc<str>,
        target: Option<Target>,
        outcome: Outcome,
        steps: Steps,
    ) {
        if self.limit == 0 {
            return;
        }
        let finished_unix = crate::clock::unix_seconds();
        let mut failure = outcome.failure;
        if let Some(failure) = &mut failure {
            cut_text(&mut failure.detail, MAX_DETAIL_BYTES);
            // In a block of its own exact size, as the steps are.
            failure.detail = failure.detail.as_str().to_owned();
        }
        let mut record = ProbeRecord {
            id: 0,
            finished_unix,
            module: Arc::clone(module),
            target,
            failure,
            duration: outcome.duration.as_secs_f64(),
            steps: Steps::default(),
        };
        // The record without its steps, then the steps in what is left.
        let fixed = record_bytes(&record);
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        // When the new record may not fit beside the oldest, the oldest
        // goes first, and the new steps may take over its block.
        let mut spare = None;
        if (kept.records.len() == self.limit || kept.bytes + MAX_RECORD_BYTES > MAX_BYTES)
            && let Some((oldest, freed)) = kept.records.pop_front()
        {
            kept.bytes -= freed;
            spare = Arc::try_unwrap(oldest).ok().map(|oldest| oldest.steps);
        }
        record.steps = steps.cut(MAX_RECORD_BYTES.saturating_sub(fixed), spare);
        let bytes = fixed + record.steps.bytes();
        kept.next_id += 1;
        record.id = kept.next_id;
        while kept.records.len() == self.limit
            || (kept.bytes + bytes > MAX_BYTES && !kept.records.is_empty())
        {
            if let Some((_, freed)) = kept.records.pop_front() {
                kept.bytes -= freed;
            }
        }
        kept.bytes += bytes;
        kept.records.push_back((Arc::new(record), bytes));
    }

    /// Up to `take` records, newest first, after skipping the `skip`
    /// newest; and how many are kept in all.
    pub(crate) fn newest(&self, skip: usize, take: usize) -> (Vec<Arc<ProbeRecord>>, usize) {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let page = kept
            .records
            .iter()
            .rev()
            .skip(skip)
            .take(take)
            .map(|(record, _)| Arc::clone(record))
            .collect();
        (page, kept.records.len())
    }

    /// The record with `id`, if still kept.
    pub(crate) fn get(&self, id: u64) -> Option<Arc<ProbeRecord>> {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        // Ids are consecutive, so the oldest kept one gives the position.
        let oldest = kept.records.front()?.0.id;
        let index = usize::try_from(id.checked_sub(oldest)?).ok()?;
        kept.records
            .get(index)
            .map(|(record, _)| Arc::clone(record))
    }
}

/// The bytes `record` takes besides its steps' own: its shared block
/// (the reference counts and the record), the host name and the failure's
/// detail. The module name is shared with the module.
fn record_bytes(record: &ProbeRecord) -> usize {
    let host = match record.target.as_ref().map(|target| &target.host) {
        Some(crate::target::Host::Name(name)) => allocated(name.capacity()),
        Some(crate::target::Host::Ip(_)) | None => 0,
    };
    let failure = record.failure.as_ref().map_or(0, |failure| {
        allocated(failure.detail.capacity())
            + failure
                .stderr
                .as_ref()
                .map_or(0, |stderr| allocated(stderr.len()))
    });
    allocated(2 * size_of::<usize>() + size_of::<ProbeRecord>()) + host + failure
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prober::{ExecStep, Step, StepLog, TcpStep};
    use std::time::Duration;

    #[test]
    fn keeps_the_newest_up_to_the_limit() {
        let history = History::new(2);
        let outcome = Outcome::not_started(Failure::new(Reason::Local, "x"), Duration::ZERO);
        let module: Arc<str> = Arc::from("m");
        for n in 1..=3 {
            let target = Target::parse(&format!("127.0.0.{n}:1")).unwrap();
            history.record(&module, Some(target), outcome.clone(), Steps::default());
        }
        let ids = |(records, _): (Vec<Arc<ProbeRecord>>, usize)| -> Vec<u64> {
            records.iter().map(|record| record.id).collect()
        };
        assert_eq!(ids(history.newest(0, 10)), [3, 2]);
        assert_eq!(ids(history.newest(1, 10)), [2]);
        assert_eq!(history.newest(2, 10), (Vec::new(), 2));
        assert!(history.get(1).is_none() && history.get(4).is_none());
        assert_eq!(
            history.get(3).unwrap().target.as_ref().unwrap().to_string(),
            "127.0.0.3:1"
        );
        assert_eq!(history.get(2).unwrap().id, 2);
    }

    #[test]
    fn the_limit_is_capped() {
        let history = History::new(usize::MAX);
        assert_eq!(history.limit, MAX_LIMIT as usize);
    }

    /// The steps of a probe of 100 attempts, each connecting, failing
    /// with an ICMP error and ending.
    fn hundred_attempts() -> Steps {
        let address: std::net::SocketAddr = "192.0.2.1:443".parse().unwrap();
        let mut steplog = StepLog::enabled();
        for number in 1..=100 {
            steplog.log(|| TcpStep::Connecting {
                address,
                half_open: true,
                raw_source_port: None,
            });
            steplog.log(|| TcpStep::ConnectFailed {
                address,
                errno: libc::EHOSTUNREACH,
            });
            steplog.log(|| TcpStep::Attempt {
                number,
                of: 100,
                result: "unreachable",
                latency: Duration::from_millis(3),
            });
        }
        steplog.log(|| Step::Failed);
        steplog.into_steps()
    }

    /// The steps of an exec probe of the longest command line the config
    /// allows, with the most output the prober keeps.
    fn megabyte_command() -> Steps {
        let mut steplog = StepLog::enabled();
        steplog.log(|| ExecStep::Started {
            pid: 1,
            argv: vec!["x".repeat(4096); 256],
        });
        for stream in ["stdout", "stderr"] {
            steplog.log(|| ExecStep::Output {
                stream,
                head: vec![b'y'; 4096],
                total: 1 << 30,
            });
        }
        steplog.log(|| Step::Failed);
        steplog.into_steps()
    }

    /// A target with the longest host name accepted.
    fn long_target() -> Target {
        let host = format!("{}.example", "a".repeat(crate::target::MAX_TARGET_LEN - 20));
        Target::parse(&format!("{host}:443")).unwrap()
    }

    #[test]
    fn worst_case_records_stay_within_the_byte_budget() {
        let history = History::new(MAX_LIMIT as usize);
        let module: Arc<str> = Arc::from("m");
        let long_detail = Failure::new(Reason::CheckFailed, "é".repeat(100_000));
        let outcome = Outcome::not_started(long_detail, Duration::ZERO);
        let mut most = 0;
        for n in 0..MAX_LIMIT {
            let steps = if n % 2 == 0 {
                hundred_attempts()
            } else {
                megabyte_command()
            };
            history.record(&module, Some(long_target()), outcome.clone(), steps);
            most = most.max(history.bytes());
        }
        assert!(most <= MAX_BYTES, "{most} bytes");
        let (records, kept) = history.newest(0, usize::MAX);
        // Nothing is evicted for nothing: the budget is nearly full.
        assert!(
            history.bytes() > MAX_BYTES - MAX_RECORD_BYTES,
            "{}",
            history.bytes()
        );
        assert!(kept >= MAX_BYTES / MAX_RECORD_BYTES, "{kept} records kept");
        // The count is the sum of what each record takes, recounted here.
        let list = allocated(MAX_LIMIT as usize * size_of::<(Arc<ProbeRecord>, usize)>());
        let recounted: usize = records
            .iter()
            .map(|record| record_bytes(record) + record.steps.bytes())
            .sum();
        assert_eq!(list + recounted, history.bytes());
        for record in &records {
            let bytes = record_bytes(record) + record.steps.bytes();
            assert!(bytes <= MAX_RECORD_BYTES, "a record of {bytes} bytes");
            let detail = &record.failure.as_ref().unwrap().detail;
            assert!(detail.len() <= MAX_DETAIL_BYTES && detail.ends_with('…'));
        }
        // Each kind of record says what it lost.
        let (attempts, command) = (records[1].log(), records[0].log());
        assert!(
            command.contains(
                "the command line is cut: the log keeps the first 4096 of its 1048576 bytes"
            ),
            "{command}"
        );
        assert!(command.contains("stderr, the first 4096"), "{command}");
        assert!(attempts.contains("attempt 100/100"), "{attempts}");
        assert!(
            attempts.lines().last().unwrap().contains("probe failed"),
            "{attempts}"
        );
    }

    #[test]
    fn a_log_too_long_for_a_record_is_cut_with_a_marker_and_keeps_its_end() {
        let mut steplog = StepLog::enabled();
        for number in 1..=2000 {
            steplog.log(|| TcpStep::Attempt {
                number,
                of: 2000,
                result: "success",
                latency: Duration::from_millis(1),
            });
        }
        steplog.log(|| Step::Succeeded(Duration::from_secs(1)));
        let steps = steplog.into_steps();
        assert!(steps.bytes() > MAX_RECORD_BYTES);
        let cut = steps.cut(MAX_RECORD_BYTES, None);
        assert!(cut.bytes() <= MAX_RECORD_BYTES, "{}", cut.bytes());
        let target = Target::parse("127.0.0.1:1").unwrap();
        let log = cut.render(Some(&target), None, true);
        let lines: Vec<&str> = log.lines().collect();
        assert!(
            lines[0].ends_with("attempt 1/2000: success after 0.001000s"),
            "{log}"
        );
        let marker = lines[lines.len() - 2];
        assert!(
            marker.contains("the log is cut here: ")
                && marker.contains(&format!(
                    "as a record of the history keeps at most {MAX_RECORD_BYTES} bytes"
                )),
            "{marker}"
        );
        assert!(
            lines[lines.len() - 1].contains("probe succeeded in 1.000000s"),
            "{log}"
        );
    }

    #[test]
    fn a_usual_record_takes_what_the_docs_say() {
        let history = History::new(1);
        let empty = history.bytes();
        let address: std::net::SocketAddr = "127.0.0.1:443".parse().unwrap();
        let mut steplog = StepLog::enabled();
        steplog.log(|| Step::Probing {
            prober: "tcp_halfopen",
            timeout: Duration::from_secs(5),
            left: Duration::from_secs(5),
        });
        steplog.log(|| TcpStep::Connecting {
            address,
            half_open: true,
            raw_source_port: None,
        });
        steplog.log(|| TcpStep::SynAck {
            address,
            handshake: Duration::from_micros(50),
            rtt: None,
            syn_retransmits: 0,
            close_delay: None,
            kept: false,
            raw: false,
        });
        steplog.log(|| Step::Succeeded(Duration::from_micros(80)));
        let outcome = Outcome::not_started(Failure::new(Reason::Local, "x"), Duration::ZERO);
        let mut success = outcome;
        success.failure = None;
        history.record(
            &Arc::from("tcp_halfopen"),
            Some(Target::parse("127.0.0.1:443").unwrap()),
            success,
            steplog.into_steps(),
        );
        assert_eq!(history.bytes() - empty, USUAL_RECORD_BYTES);
        let list = allocated(MAX_LIMIT as usize * size_of::<(Arc<ProbeRecord>, usize)>());
        assert!(list + MAX_LIMIT as usize * USUAL_RECORD_BYTES <= MAX_BYTES);
    }
}
