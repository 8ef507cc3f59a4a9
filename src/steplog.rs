//! The step log behind `/probe?debug=true`, `/logs` and the landing page's
//! history.
//!
//! A probe records what it does as [`Step`]s: a small enum with the time
//! since the probe started. This file words the steps every prober may
//! take (probing, resolving, how it ended); a prober's own steps, such as
//! a TCP connect that failed with an errno, are [`Step::Prober`], a type
//! its file in `src/prober/` defines and words ([`Wording`]). Text is
//! made only when somebody reads the log ([`Steps::render`]), not on the
//! hot path: the history keeps the steps of every `/probe` by default, and
//! formatting them for each request cost more than the probe itself.
//!
//! For scheduled probes and group checks the step log is disabled: `log`
//! takes a closure and does not call it, so the step is never built.

#![forbid(unsafe_code)]

use crate::target::Target;
use std::fmt::{self, Display, Write};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One thing a probe did: a step every prober may take, or one of a
/// prober's own, `P`, whose wording its file in `src/prober/` owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step<P> {
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
    /// A step of the prober's own.
    Prober(P),
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

/// What the log needs of a prober's own steps ([`Step::Prober`]): their
/// sentence and the memory they hold. Implemented one layer up, where
/// each prober's file defines its steps.
pub(crate) trait Wording: Clone + fmt::Debug + PartialEq + Eq {
    /// Writes the step as the log's sentence, without the time. What a
    /// command line holds is config text: it is shown only if
    /// `show_commands` (`--web.hide-config-and-logs` hides it).
    fn write(&self, f: &mut fmt::Formatter<'_>, show_commands: bool) -> fmt::Result;

    /// The heap bytes the step owns, as [`allocated`] counts them.
    fn heap_bytes(&self) -> usize {
        0
    }

    /// Moves what the step owns into blocks of its exact size, for a log
    /// that is kept (see [`Steps::cut`]).
    fn compact(&mut self) {}

    /// Cuts what the step holds to what a log in flight may keep, and
    /// returns the step that says so, logged right after it; `None` when
    /// nothing was cut (see [`StepLog::log`]).
    fn bound(&mut self) -> Option<Self> {
        None
    }
}

/// A step and when it happened, counted from the start of the probe.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Timed<P> {
    at: Duration,
    step: Step<P>,
}

/// A probe's log of its steps, or nothing when disabled.
#[derive(Debug)]
pub(crate) struct StepLog<P> {
    started: Instant,
    steps: Option<Vec<Timed<P>>>,
}

/// Most probes take this many steps: probing, connecting, the answer and
/// the end; a name to resolve adds three.
const USUAL_STEPS: usize = 6;

impl<P: Wording> StepLog<P> {
    /// A step log that records nothing.
    pub(crate) fn disabled() -> Self {
        Self {
            started: Instant::now(),
            steps: None,
        }
    }

    /// A step log that records every step with its time since creation.
    pub(crate) fn enabled() -> Self {
        Self {
            started: Instant::now(),
            steps: Some(Vec::with_capacity(USUAL_STEPS)),
        }
    }

    /// Records the step `make` builds; when disabled, `make` is not called.
    ///
    /// A prober's step is first bounded ([`Wording::bound`]), and the
    /// step saying what was cut follows it at the same time: a command
    /// line may be about 1 MB, and each probe in flight would hold it to
    /// the end.
    pub(crate) fn log<S: Into<Step<P>>>(&mut self, make: impl FnOnce() -> S) {
        if let Some(steps) = &mut self.steps {
            let at = self.started.elapsed();
            let mut step = make().into();
            let note = match &mut step {
                Step::Prober(own) => own.bound(),
                _ => None,
            };
            steps.push(Timed { at, step });
            if let Some(note) = note {
                steps.push(Timed {
                    at,
                    step: Step::Prober(note),
                });
            }
        }
    }

    /// A step log for steps taken in another task, with the same start, so
    /// that [`join`](Self::join) can add them in place. Disabled if this
    /// one is.
    pub(crate) fn fork(&self) -> Self {
        Self {
            started: self.started,
            steps: self.steps.as_ref().map(|_| Vec::new()),
        }
    }

    /// Adds the steps of a step log made with [`fork`](Self::fork).
    pub(crate) fn join(&mut self, forked: Self) {
        if let (Some(steps), Some(more)) = (&mut self.steps, forked.steps) {
            steps.extend(more);
        }
    }

    /// The steps recorded; none when disabled.
    pub(crate) fn into_steps(self) -> Steps<P> {
        Steps(self.steps.unwrap_or_default())
    }
}

/// The steps of one finished probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Steps<P>(Vec<Timed<P>>);

impl<P> Default for Steps<P> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

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

impl<P: Wording> Step<P> {
    /// The heap bytes this step owns, beside its slot in the list. The
    /// name servers of [`Step::Asking`] are shared with the resolver.
    fn heap_bytes(&self) -> usize {
        match self {
            Self::InHostsFile(addresses) | Self::Answer { addresses, .. } => {
                allocated(addresses.capacity() * size_of::<IpAddr>())
            }
            Self::Prober(own) => own.heap_bytes(),
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
            Self::Prober(own) => own.compact(),
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

/// Cuts `text` to at most `max_bytes`, on a character boundary, ending
/// it with `…` when cut.
pub(crate) fn cut_text(text: &mut String, max_bytes: usize) {
    const MARK: &str = "…";
    if text.len() <= max_bytes {
        return;
    }
    text.truncate(floor_char_boundary(
        text,
        max_bytes.saturating_sub(MARK.len()),
    ));
    text.push_str(MARK);
}

impl<P: Wording> Steps<P> {
    /// What these steps take in memory: the list's slots and what each
    /// step owns, as [`allocated`] counts heap blocks.
    pub(crate) fn bytes(&self) -> usize {
        allocated(self.0.capacity() * size_of::<Timed<P>>())
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
        let slot = size_of::<Timed<P>>();
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
            let dropped: Vec<Timed<P>> = std::iter::once(first).chain(rest).collect();
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
struct Line<'a, P> {
    step: &'a Step<P>,
    target: Option<&'a Target>,
    failure: Option<&'a dyn Display>,
    show_commands: bool,
}

impl<P: Wording> Display for Line<'_, P> {
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
            Step::Prober(own) => own.write(f, self.show_commands),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A prober's own steps, as a prober's file defines them.
    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Note {
        Said(&'static str),
        /// Config text: shown only with the commands.
        Secret(String),
        /// The bytes a `Secret` had before it was cut.
        Cut(usize),
    }

    impl Wording for Note {
        fn write(&self, f: &mut fmt::Formatter<'_>, show_commands: bool) -> fmt::Result {
            match self {
                Self::Said(text) => f.write_str(text),
                Self::Secret(text) if show_commands => write!(f, "secret {text}"),
                Self::Secret(_) => f.write_str("secret hidden"),
                Self::Cut(total) => write!(f, "cut from {total} bytes"),
            }
        }

        fn heap_bytes(&self) -> usize {
            match self {
                Self::Secret(text) => allocated(text.capacity()),
                _ => 0,
            }
        }

        fn bound(&mut self) -> Option<Self> {
            match self {
                Self::Secret(text) if text.len() > 4 => {
                    let total = text.len();
                    text.truncate(4);
                    Some(Self::Cut(total))
                }
                _ => None,
            }
        }
    }

    #[test]
    fn a_disabled_trace_builds_no_step() {
        let mut steplog = StepLog::<Note>::disabled();
        steplog
            .log(|| -> Step<Note> { unreachable!("a disabled steplog must not build its steps") });
        assert_eq!(steplog.into_steps(), Steps::default());
    }

    #[test]
    fn steps_render_as_one_line_each_with_the_failure() {
        let mut steplog = StepLog::enabled();
        steplog.log(|| Step::Resolving);
        steplog.log(|| Step::Prober(Note::Said("knocked")));
        steplog.log(|| Step::Failed);
        let target = Target::parse("localhost:1").unwrap();
        let text = steplog
            .into_steps()
            .render(Some(&target), Some(&"refused: RST"), true);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].ends_with("s resolving localhost"), "{text}");
        assert!(lines[1].ends_with("s knocked"), "{text}");
        assert!(lines[2].ends_with("s probe failed: refused: RST"), "{text}");
    }

    #[test]
    fn a_probers_step_is_bounded_and_followed_by_the_step_saying_so() {
        let mut steplog = StepLog::enabled();
        steplog.log(|| Step::Prober(Note::Secret("abcdefgh".to_owned())));
        let steps = steplog.into_steps();
        assert_eq!(steps.0.len(), 2);
        assert_eq!(steps.0[0].at, steps.0[1].at, "logged at the same time");
        let shown = steps.render(None, None, true);
        assert!(shown.contains("s secret abcd\n"), "{shown}");
        assert!(shown.ends_with("s cut from 8 bytes\n"), "{shown}");
        let hidden = steps.render(None, None, false);
        assert!(hidden.contains("s secret hidden\n"), "{hidden}");
    }

    #[test]
    fn kept_steps_take_over_a_spare_block_of_about_their_size() {
        let steps = |count: u32| {
            let mut steplog = StepLog::enabled();
            for _ in 1..=count {
                steplog.log(|| Step::Prober(Note::Said("attempt")));
            }
            steplog.into_steps()
        };
        let old = steps(100).cut(usize::MAX, None);
        assert_eq!(old.0.capacity(), 100, "no spare capacity");
        let block = old.0.as_ptr();
        let new = steps(90).cut(usize::MAX, Some(old));
        assert_eq!(new.0.as_ptr(), block, "the spare block is used");
        assert_eq!((new.0.len(), new.0.capacity()), (90, 100));
        // A block far too large for them is not.
        let new = steps(10).cut(usize::MAX, Some(new));
        assert_eq!(new.0.capacity(), 10);
    }
}
