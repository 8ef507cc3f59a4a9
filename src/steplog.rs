//! The step log behind `/probe?debug=true`, `/logs` and the landing page's
//! history.
//!
//! A probe records what it does as [`Step`]s: a small enum with the time
//! since the probe started and, for a failed connect, the errno. Text is
//! made only when somebody reads the log ([`Steps::render`]), not on the
//! hot path: the history keeps the steps of every `/probe` by default, and
//! formatting them for each request cost more than the probe itself.
//!
//! For scheduled probes and group checks the trace is disabled: `log`
//! takes a closure and does not call it, so the step is never built.

#![forbid(unsafe_code)]

use crate::target::Target;
use std::fmt::{self, Display, Write};
use std::net::{IpAddr, SocketAddr};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One thing a probe did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// The probe started.
    Probing {
        prober: &'static str,
        timeout: Duration,
        left: Duration,
    },
    /// The host is a name to resolve.
    Resolving,
    /// `/etc/hosts` lists the host.
    InHostsFile(Vec<IpAddr>),
    /// A query went to the name servers.
    Asking {
        servers: Arc<str>,
        record: &'static str,
    },
    /// The name servers answered.
    Answer {
        record: &'static str,
        addresses: Vec<IpAddr>,
    },
    /// The address to probe was chosen.
    Chose(IpAddr),
    /// The SYN is about to go out.
    Connecting {
        address: SocketAddr,
        half_open: bool,
    },
    /// The port answered with SYN-ACK, and the socket closed with RST.
    SynAck {
        address: SocketAddr,
        /// From `connect()` to the wake-up at the SYN-ACK.
        handshake: Duration,
        /// The kernel's RTT sample of the exchange, if it took one.
        rtt: Option<Duration>,
        /// SYNs sent again before the SYN-ACK came.
        syn_retransmits: u32,
        /// Half-open only: from the SYN-ACK to the close's return.
        close_delay: Option<Duration>,
    },
    /// The connect failed with this errno.
    ConnectFailed { address: SocketAddr, errno: i32 },
    /// No answer came before the deadline.
    NoAnswer(SocketAddr),
    /// The socket's error queue held this ICMP error.
    Icmp(IcmpStep),
    /// One of several attempts ended with `result` (`success` or the
    /// failure reason), `latency` after its connect.
    Attempt {
        number: u32,
        of: u32,
        result: &'static str,
        latency: Duration,
    },
    /// Attempts `from` to `of` were not started: they could not have
    /// ended before the deadline.
    AttemptsCut { from: u32, of: u32 },
    /// An `exec` command started as process `pid`, with these arguments.
    ExecStarted { pid: u32, argv: Vec<String> },
    /// The command ended, by itself or by a signal from elsewhere.
    ExecExited(ExitStatus),
    /// The deadline passed: the command's process group was killed.
    ExecKilled { pid: u32 },
    /// The first bytes the command wrote to `stream` (stdout or stderr),
    /// and how many it wrote in all.
    ExecOutput {
        stream: &'static str,
        head: Vec<u8>,
        total: u64,
    },
    /// Only the first `kept` of the `total` bytes of the command line
    /// before this step are kept (see [`StepLog::log`]).
    ArgvCut { kept: usize, total: usize },
    /// `steps` steps taking `bytes` were not kept here (see [`Steps::cut`]).
    StepsCut {
        steps: usize,
        bytes: usize,
        max_bytes: usize,
    },
    /// The probe succeeded after this long.
    Succeeded(Duration),
    /// The probe failed; the failure itself is given to [`Steps::render`].
    Failed,
}

/// An ICMP error as the log shows it, named by the prober: the trace
/// knows no ICMP numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IcmpStep {
    /// `ICMP` or `ICMPv6`.
    pub(crate) protocol: &'static str,
    /// The type in words, such as `destination unreachable`, or `None`
    /// for a type without a name here (then the number is shown).
    pub(crate) message: Option<&'static str>,
    /// The ICMP type.
    pub(crate) icmp_type: u8,
    /// The ICMP code.
    pub(crate) code: u8,
    /// The code in words, when known.
    pub(crate) meaning: Option<&'static str>,
    /// Who sent it.
    pub(crate) offender: Option<IpAddr>,
}

/// Writes `icmp` as `ICMP destination unreachable, code 13 (communication
/// administratively prohibited), from 192.0.2.1`.
pub(crate) fn write_icmp(f: &mut impl Write, icmp: &IcmpStep) -> fmt::Result {
    f.write_str(icmp.protocol)?;
    match icmp.message {
        Some(message) => write!(f, " {message}")?,
        None => write!(f, " type {}", icmp.icmp_type)?,
    }
    write!(f, ", code {}", icmp.code)?;
    if let Some(meaning) = icmp.meaning {
        write!(f, " ({meaning})")?;
    }
    if let Some(offender) = icmp.offender {
        write!(f, ", from {offender}")?;
    }
    Ok(())
}

/// A step and when it happened, counted from the start of the probe.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Timed {
    at: Duration,
    step: Step,
}

/// A probe's log of its steps, or nothing when disabled.
#[derive(Debug)]
pub(crate) struct StepLog {
    started: Instant,
    steps: Option<Vec<Timed>>,
}

/// Most probes take this many steps: probing, connecting, the answer and
/// the end; a name to resolve adds three.
const USUAL_STEPS: usize = 6;

impl StepLog {
    /// A trace that records nothing.
    pub(crate) fn disabled() -> Self {
        Self {
            started: Instant::now(),
            steps: None,
        }
    }

    /// A trace that records every step with its time since creation.
    pub(crate) fn enabled() -> Self {
        Self {
            started: Instant::now(),
            steps: Some(Vec::with_capacity(USUAL_STEPS)),
        }
    }

    /// Records the step `make` builds; when disabled, `make` is not called.
    ///
    /// A command line is kept only up to [`ARGV_LOG_BYTES`], followed by a
    /// [`Step::ArgvCut`] saying so: one may be about 1 MB, and each probe
    /// in flight would hold it to the end.
    pub(crate) fn log(&mut self, make: impl FnOnce() -> Step) {
        if let Some(steps) = &mut self.steps {
            let at = self.started.elapsed();
            let mut step = make();
            let argv_total = match &mut step {
                Step::ExecStarted { argv, .. } => cut_argv(argv, ARGV_LOG_BYTES),
                _ => None,
            };
            steps.push(Timed { at, step });
            if let Some(total) = argv_total {
                steps.push(Timed {
                    at,
                    step: Step::ArgvCut {
                        kept: ARGV_LOG_BYTES,
                        total,
                    },
                });
            }
        }
    }

    /// A trace for steps taken in another task, with the same start, so
    /// that [`join`](Self::join) can add them in place. Disabled if this
    /// one is.
    pub(crate) fn fork(&self) -> Self {
        Self {
            started: self.started,
            steps: self.steps.as_ref().map(|_| Vec::new()),
        }
    }

    /// Adds the steps of a trace made with [`fork`](Self::fork).
    pub(crate) fn join(&mut self, forked: Self) {
        if let (Some(steps), Some(more)) = (&mut self.steps, forked.steps) {
            steps.extend(more);
        }
    }

    /// The steps recorded; none when disabled.
    pub(crate) fn into_steps(self) -> Steps {
        Steps(self.steps.unwrap_or_default())
    }
}

/// The steps of one finished probe.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Steps(Vec<Timed>);

/// How much of a command line the step log keeps ([`StepLog::log`]): 4 KiB,
/// enough for any usual command line and for one argument of the longest
/// allowed, where a whole command may have about 1 MB.
pub(crate) const ARGV_LOG_BYTES: usize = 4096;

/// The heap bytes behind an allocation of `bytes`, as glibc's malloc
/// gives them: the request and an 8-byte header, rounded up to 16, at
/// least 32; nothing for nothing (an empty `Vec` or `String` allocates
/// nothing). The history counts its memory with it.
pub(crate) const fn allocated(bytes: usize) -> usize {
    if bytes == 0 {
        0
    } else {
        let chunk = (bytes + 8).next_multiple_of(16);
        if chunk < 32 { 32 } else { chunk }
    }
}

impl Step {
    /// The heap bytes this step owns, beside its slot in the list. The
    /// name servers of [`Step::Asking`] are shared with the resolver.
    fn heap_bytes(&self) -> usize {
        match self {
            Self::InHostsFile(addresses) | Self::Answer { addresses, .. } => {
                allocated(addresses.capacity() * size_of::<IpAddr>())
            }
            Self::ExecStarted { argv, .. } => {
                allocated(argv.capacity() * size_of::<String>())
                    + argv
                        .iter()
                        .map(|argument| allocated(argument.capacity()))
                        .sum::<usize>()
            }
            Self::ExecOutput { head, .. } => allocated(head.capacity()),
            _ => 0,
        }
    }

    /// Moves what the step owns into blocks of its exact size (see
    /// [`into_block`]).
    fn compact(&mut self) {
        match self {
            Self::InHostsFile(addresses) | Self::Answer { addresses, .. } => {
                *addresses = addresses.as_slice().to_vec();
            }
            Self::ExecStarted { argv, .. } => {
                *argv = argv
                    .iter()
                    .map(|argument| argument.as_str().to_owned())
                    .collect();
            }
            Self::ExecOutput { head, .. } => *head = head.as_slice().to_vec(),
            _ => {}
        }
    }
}

/// `items` moved into a block of their size: `spare` (emptied), the
/// block of a record that goes, when it holds them with at most a quarter
/// to spare, else a new block of their exact size. Not `shrink_to_fit`,
/// which shrinks in place: a record kept for minutes would stay where its
/// list grew, by doubling, among the short-lived blocks of the probes in
/// flight, and the pieces cut off and the holes that evicted records leave
/// would then fit neither. bench/history_memory.sh's probes of 100
/// attempts grew the process by 36 MiB for 16 MiB counted with
/// `shrink_to_fit`, by 22 MiB with new blocks of the exact size (holes of
/// one thread's heap are not filled by another's); a record that takes over
/// the block of the one it replaces leaves no hole at all.
fn into_block<T>(items: Vec<T>, spare: Option<Vec<T>>) -> Vec<T> {
    let len = items.len();
    let mut block = match spare {
        Some(mut spare) if (len..=len + len / 4 + 4).contains(&spare.capacity()) => {
            spare.clear();
            spare
        }
        _ => Vec::with_capacity(len),
    };
    block.extend(items);
    block
}

/// The largest character boundary of `text` at or below `index`, to cut
/// text at a byte limit (the step log's command lines, the history's
/// details, a command's stderr line). `str::floor_char_boundary` once the
/// crate's minimum Rust reaches 1.91.
pub(crate) fn floor_char_boundary(text: &str, index: usize) -> usize {
    if index >= text.len() {
        return text.len();
    }
    let mut end = index;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// Keeps the first `max_bytes` of the command line `argv` (whole
/// arguments, the last cut on a character boundary); the bytes it had
/// in all, if any were cut.
fn cut_argv(argv: &mut Vec<String>, max_bytes: usize) -> Option<usize> {
    let total: usize = argv.iter().map(String::len).sum();
    if total <= max_bytes {
        return None;
    }
    let mut room = max_bytes;
    let mut keep = 0;
    for argument in argv.iter_mut() {
        if room == 0 {
            break;
        }
        if argument.len() > room {
            argument.truncate(floor_char_boundary(argument, room));
        }
        room -= argument.len();
        keep += 1;
    }
    argv.truncate(keep);
    Some(total)
}

impl Steps {
    /// What these steps take in memory: the list's slots and what each
    /// step owns, as [`allocated`] counts heap blocks.
    pub(crate) fn bytes(&self) -> usize {
        allocated(self.0.capacity() * size_of::<Timed>())
            + self
                .0
                .iter()
                .map(|timed| timed.step.heap_bytes())
                .sum::<usize>()
    }

    /// These steps within `max_bytes` as [`bytes`](Self::bytes) counts
    /// them, with no spare capacity, for a record that is kept: the steps
    /// that do not fit are replaced by one [`Step::StepsCut`], and the
    /// last step, how the probe ended, is kept. The result is within
    /// `max_bytes` whenever that holds three slots and the last step.
    /// They go into the block of `spare` if it fits (see [`into_block`]).
    pub(crate) fn cut(self, max_bytes: usize, spare: Option<Self>) -> Self {
        let spare = spare.map(|spare| spare.0);
        let mut steps = self.0;
        for timed in &mut steps {
            timed.step.compact();
        }
        let slot = size_of::<Timed>();
        let fits = |slots: usize, heap: usize| allocated(slots * slot) + heap <= max_bytes;
        let heap: usize = steps.iter().map(|timed| timed.step.heap_bytes()).sum();
        if fits(steps.len(), heap) {
            return Self(into_block(steps, spare));
        }
        let Some(last) = steps.pop() else {
            return Self::default();
        };
        let mut used = last.step.heap_bytes();
        let mut kept = Vec::new();
        let mut rest = steps.into_iter();
        let mut first_cut = None;
        for timed in rest.by_ref() {
            let more = timed.step.heap_bytes();
            // Room for this step, the marker and the last one.
            if !fits(kept.len() + 3, used + more) {
                first_cut = Some(timed);
                break;
            }
            used += more;
            kept.push(timed);
        }
        if let Some(first) = first_cut {
            let at = first.at;
            let dropped: Vec<Timed> = std::iter::once(first).chain(rest).collect();
            let bytes = dropped
                .iter()
                .map(|timed| slot + timed.step.heap_bytes())
                .sum();
            kept.push(Timed {
                at,
                step: Step::StepsCut {
                    steps: dropped.len(),
                    bytes,
                    max_bytes,
                },
            });
        }
        kept.push(last);
        Self(into_block(kept, spare))
    }

    /// The log as text, a line per step: what `debug=true` and `/logs`
    /// show. `target` is what was probed (`None` for an `exec` command run
    /// without one), `failure` how it ended; commands' arguments are left
    /// out unless `show_commands` (they are config text, which
    /// `--web.hide-config-and-logs` keeps hidden).
    pub(crate) fn render(
        &self,
        target: Option<&Target>,
        failure: Option<&dyn Display>,
        show_commands: bool,
    ) -> String {
        let mut text = String::with_capacity(80 * self.0.len());
        for Timed { at, step } in &self.0 {
            // Writing to a String cannot fail.
            let _ = write!(text, "{:.6}s ", at.as_secs_f64());
            let _ = writeln!(
                text,
                "{}",
                Line {
                    step,
                    target,
                    failure,
                    show_commands,
                }
            );
        }
        text
    }
}

/// One step as the sentence the log shows.
struct Line<'a> {
    step: &'a Step,
    target: Option<&'a Target>,
    failure: Option<&'a dyn Display>,
    show_commands: bool,
}

impl Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only steps of a probe with a target name its host.
        let host = self
            .target
            .map_or_else(String::new, |target| target.host.to_string());
        match self.step {
            Step::Probing {
                prober,
                timeout,
                left,
            } => {
                match self.target {
                    Some(target) => write!(f, "probing {target}")?,
                    None => f.write_str("probing without a target")?,
                }
                write!(
                    f,
                    " with prober {prober} (timeout {:.3}s, {:.3}s left)",
                    timeout.as_secs_f64(),
                    left.as_secs_f64()
                )
            }
            Step::Resolving => write!(f, "resolving {host}"),
            Step::InHostsFile(addresses) => {
                write!(f, "{host} is in /etc/hosts: {addresses:?}")
            }
            Step::Asking { servers, record } => {
                write!(f, "asking {servers} for {record} {host}")
            }
            Step::Answer { record, addresses } => {
                write!(f, "{record} {host}: {addresses:?}")
            }
            Step::Chose(ip) => write!(f, "chose address {ip}"),
            Step::Connecting { address, half_open } => write!(
                f,
                "connecting to {address} ({})",
                if *half_open {
                    "half-open: TCP_QUICKACK=0, SO_LINGER {on, 0}"
                } else {
                    "full handshake, SO_LINGER {on, 0}"
                }
            ),
            Step::SynAck {
                address,
                handshake,
                rtt,
                syn_retransmits,
                close_delay,
            } => {
                write!(
                    f,
                    "{address} answered with SYN-ACK after {:.6}s (kernel RTT ",
                    handshake.as_secs_f64()
                )?;
                match rtt {
                    Some(rtt) => write!(f, "{:.6}s", rtt.as_secs_f64())?,
                    None => f.write_str("not sampled")?,
                }
                write!(f, ", {syn_retransmits} SYN retransmits); closed with RST")?;
                match close_delay {
                    Some(delay) => write!(f, " {:.6}s after it", delay.as_secs_f64()),
                    None => Ok(()),
                }
            }
            Step::ConnectFailed { address, errno } => write!(
                f,
                "connect to {address} failed: {}",
                std::io::Error::from_raw_os_error(*errno)
            ),
            Step::NoAnswer(address) => write!(f, "no answer from {address} before the deadline"),
            Step::Icmp(icmp) => write_icmp(f, icmp),
            Step::Attempt {
                number,
                of,
                result,
                latency,
            } => write!(
                f,
                "attempt {number}/{of}: {result} after {:.6}s",
                latency.as_secs_f64()
            ),
            Step::AttemptsCut { from, of } => write!(
                f,
                "attempts {from} to {of} not started: they could not end before the deadline"
            ),
            Step::ExecStarted { pid, argv } if self.show_commands => {
                write!(f, "started process {pid}: {argv:?}")
            }
            Step::ExecStarted { pid, .. } => write!(
                f,
                "started process {pid} (its command line is hidden by --web.hide-config-and-logs)"
            ),
            Step::ExecExited(status) => write!(f, "the command ended: {status}"),
            Step::ExecKilled { pid } => write!(
                f,
                "the command did not exit before the deadline: killed process group {pid} (SIGKILL)"
            ),
            Step::ExecOutput {
                stream,
                head,
                total,
            } => write_output(f, stream, head, *total),
            Step::ArgvCut { kept, total } => write!(
                f,
                "the command line is cut: the log keeps the first {kept} of its {total} bytes"
            ),
            Step::StepsCut {
                steps,
                bytes,
                max_bytes,
            } => write!(
                f,
                "the log is cut here: {steps} more steps ({bytes} bytes) are not kept, \
                 as a record of the history keeps at most {max_bytes} bytes"
            ),
            Step::Succeeded(duration) => {
                write!(f, "probe succeeded in {:.6}s", duration.as_secs_f64())
            }
            Step::Failed => match self.failure {
                Some(failure) => write!(f, "probe failed: {failure}"),
                None => f.write_str("probe failed"),
            },
        }
    }
}

/// A command's output as the log shows it: a heading, then each line
/// indented by `  | `, with control characters other than tab escaped
/// (`\u{1b}`), so that output can neither forge a log line nor drive the
/// reader's terminal.
fn write_output(f: &mut fmt::Formatter<'_>, stream: &str, head: &[u8], total: u64) -> fmt::Result {
    if total == 0 {
        return write!(f, "{stream}: empty");
    }
    if head.len() as u64 == total {
        write!(f, "{stream}, {total} bytes:")?;
    } else {
        write!(f, "{stream}, the first {} of {total} bytes:", head.len())?;
    }
    let text = String::from_utf8_lossy(head);
    for line in text.strip_suffix('\n').unwrap_or(&text).split('\n') {
        f.write_str("\n  | ")?;
        for c in line.chars() {
            if c.is_control() && c != '\t' {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_char(c)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disabled_trace_builds_no_step() {
        let mut trace = StepLog::disabled();
        trace.log(|| unreachable!("a disabled trace must not build its steps"));
        assert_eq!(trace.into_steps(), Steps::default());
    }

    #[test]
    fn steps_render_as_one_line_each_with_the_failure() {
        let address: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut trace = StepLog::enabled();
        trace.log(|| Step::Connecting {
            address,
            half_open: true,
        });
        trace.log(|| Step::ConnectFailed {
            address,
            errno: libc::ECONNREFUSED,
        });
        trace.log(|| Step::Failed);
        let target = Target::parse("127.0.0.1:1").unwrap();
        let text = trace
            .into_steps()
            .render(Some(&target), Some(&"refused: RST"), true);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].ends_with(
            "s connecting to 127.0.0.1:1 (half-open: TCP_QUICKACK=0, SO_LINGER {on, 0})"
        ));
        assert!(lines[1].contains("Connection refused"), "{text}");
        assert!(lines[2].ends_with("s probe failed: refused: RST"), "{text}");
    }

    #[test]
    fn command_output_is_indented_escaped_and_says_when_it_was_cut() {
        let mut trace = StepLog::enabled();
        trace.log(|| Step::ExecOutput {
            stream: "stdout",
            head: b"ok\n\x1b[2Jfake 0.1s line\r\n".to_vec(),
            total: 9000,
        });
        trace.log(|| Step::ExecOutput {
            stream: "stderr",
            head: Vec::new(),
            total: 0,
        });
        let target = Target::parse("127.0.0.1:1").unwrap();
        let text = trace.into_steps().render(Some(&target), None, true);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].ends_with("s stdout, the first 23 of 9000 bytes:"),
            "{text}"
        );
        assert_eq!(lines[1], "  | ok");
        assert_eq!(lines[2], "  | \\u{1b}[2Jfake 0.1s line\\r");
        assert!(lines[3].ends_with("s stderr: empty"), "{text}");
    }

    #[test]
    fn kept_steps_take_over_a_spare_block_of_about_their_size() {
        let attempts = |count: u32| {
            let mut trace = StepLog::enabled();
            for number in 1..=count {
                trace.log(|| Step::AttemptsCut {
                    from: number,
                    of: count,
                });
            }
            trace.into_steps()
        };
        let old = attempts(100).cut(usize::MAX, None);
        assert_eq!(old.0.capacity(), 100, "no spare capacity");
        let block = old.0.as_ptr();
        let new = attempts(90).cut(usize::MAX, Some(old));
        assert_eq!(new.0.as_ptr(), block, "the spare block is used");
        assert_eq!((new.0.len(), new.0.capacity()), (90, 100));
        // A block far too large for them is not.
        let new = attempts(10).cut(usize::MAX, Some(new));
        assert_eq!(new.0.capacity(), 10);
    }

    #[test]
    fn a_command_line_is_shown_only_when_commands_are() {
        let mut trace = StepLog::enabled();
        trace.log(|| Step::ExecStarted {
            pid: 7,
            argv: vec!["/bin/true".to_owned(), "--password=x".to_owned()],
        });
        let steps = trace.into_steps();
        let target = Target::parse("127.0.0.1:1").unwrap();
        let shown = steps.render(Some(&target), None, true);
        assert!(
            shown.ends_with("s started process 7: [\"/bin/true\", \"--password=x\"]\n"),
            "{shown}"
        );
        let hidden = steps.render(Some(&target), None, false);
        assert!(
            hidden.ends_with(
                "s started process 7 (its command line is hidden by --web.hide-config-and-logs)\n"
            ),
            "{hidden}"
        );
    }
}
