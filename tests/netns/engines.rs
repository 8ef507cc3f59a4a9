//! The two engines of the half-open prober (`tcp.engine`, issue 22): the
//! kernel's sockets (`socket`, the default) and the raw-SYN engine
//! (`raw`), for the tables that must hold with both, and the shared parts
//! of comparing what `/probe?debug=true` says of each.
//!
//! The raw engine's option is set as a user writes it, `engine: raw` in
//! YAML, so that these tests name no Rust item of it. A raw probe runs on
//! a [`Checker`] (the exporter's probe thread, where the engine runs);
//! a socket probe in the calling task with [`synack_exporter::check`], as
//! these tables always did.

use std::sync::OnceLock;
use synack_exporter::{Checker, Module, Outcome, Prober, TargetError, TcpOptions};

/// What is wrong with the engine a successful half-open probe ran on, if
/// anything: a socket probe closes its socket after the SYN-ACK and says
/// how long that took (`close_delay`); a raw probe closes nothing (the
/// kernel sends the RST), so it has none. Without this check a table would
/// pass with `engine: raw` ignored and every probe on a socket.
pub fn wrong_engine(engine: Engine, prober: &Prober, outcome: &Outcome) -> Option<String> {
    if !outcome.is_success() || !matches!(prober, Prober::TcpHalfopen(_)) {
        return None;
    }
    let close_delay = outcome.tcp().and_then(|tcp| tcp.close_delay);
    match (engine, close_delay) {
        (Engine::Socket, None) => {
            Some("a socket's half-open success without the close's delay".to_owned())
        }
        (Engine::Raw, Some(delay)) => Some(format!(
            "a raw probe closed a socket after {delay:?}: did it run on the raw engine?"
        )),
        _ => None,
    }
}

/// How a half-open probe sends its SYN and reads the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// A kernel TCP socket per probe: `connect()`, then a close with RST.
    Socket,
    /// A raw SYN from the shared engine; the kernel RSTs the SYN-ACK.
    Raw,
}

impl Engine {
    /// The option's value, as `tcp.engine` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Socket => "socket",
            Engine::Raw => "raw",
        }
    }

    /// The `tcp:` fields of a YAML module of this engine, without braces
    /// (`engine: raw`), empty for the default.
    pub fn yaml(self) -> &'static str {
        match self {
            Engine::Socket => "",
            Engine::Raw => "engine: raw",
        }
    }

    /// The default `tcp:` options with this engine, read from YAML as a
    /// user's module is.
    pub fn tcp_options(self) -> TcpOptions {
        serde_saphyr::from_str(&format!("{{{}}}", self.yaml())).unwrap_or_else(|error| {
            panic!(
                "`tcp: {{{}}}` is not a valid tcp block: {error}",
                self.yaml()
            )
        })
    }

    /// The half-open prober with this engine.
    pub fn halfopen(self) -> Prober {
        Prober::TcpHalfopen(self.tcp_options())
    }

    /// Probes `target` with `module` (whose options carry this engine):
    /// a socket probe in the calling task, a raw one on the shared
    /// [`Checker`].
    pub async fn check(self, target: &str, module: &Module) -> Result<Outcome, TargetError> {
        match self {
            Engine::Socket => synack_exporter::check(target, module).await,
            Engine::Raw => raw_checker().check(target, module).await,
        }
    }
}

/// The probers of the reason matrix: both socket probers, and the
/// half-open one with the raw engine. A row must end the same with each.
pub fn matrix_probers() -> [(Prober, Engine); 3] {
    let [halfopen, connect] = crate::concurrent::tcp_probers();
    [
        (halfopen, Engine::Socket),
        (connect, Engine::Socket),
        (Engine::Raw.halfopen(), Engine::Raw),
    ]
}

/// The name of a prober and its engine for a log line:
/// `tcp_halfopen`, `tcp_connect`, `tcp_halfopen/raw`.
pub fn label(prober: &Prober, engine: Engine) -> String {
    match engine {
        Engine::Socket => prober.name().to_owned(),
        Engine::Raw => format!("{}/raw", prober.name()),
    }
}

/// The one [`Checker`] of this process's raw probes, built on first use
/// and kept for the process's life (a child test's).
pub fn raw_checker() -> &'static Checker {
    static CHECKER: OnceLock<Checker> = OnceLock::new();
    CHECKER.get_or_init(|| Checker::new().expect("start a Checker's threads"))
}

/// The step log of a `/probe?debug=true` answer, each line without its
/// time and with every number written as `#`, so that two probes of the
/// same case read the same: the lines before `Metrics that would have
/// been returned:` that start with a time (`0.000123s `).
pub fn steps(debug_body: &str) -> Vec<String> {
    debug_body
        .lines()
        .take_while(|line| !line.starts_with("Metrics that would have been returned"))
        .filter_map(|line| {
            let (time, step) = line.split_once("s ")?;
            time.parse::<f64>().ok()?;
            Some(without_numbers(step))
        })
        .collect()
}

/// `text` with each run of digits (and the dots between them) as `#`.
fn without_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_number = false;
    for c in text.chars() {
        let digit = c.is_ascii_digit() || (in_number && c == '.');
        if digit && !in_number {
            out.push('#');
        } else if !digit {
            out.push(c);
        }
        in_number = digit;
    }
    out
}

/// What differs between the step logs of a socket probe and a raw probe
/// of the same case, if anything. The issue asks for the same step log
/// except what only a kernel socket can know:
///
/// - the line that names how the SYN goes out (`connecting to ADDRESS
///   (...)`, where the raw engine names itself);
/// - after a SYN-ACK, what follows `answered with SYN-ACK after #s` (the
///   kernel's RTT sample and the close, which a raw probe has not);
/// - the socket's `connect to ADDRESS failed: <errno>` right before an
///   ICMP error's line: the errno the kernel made of that ICMP error for
///   `connect()`, which a raw probe never calls (the ICMP line after it,
///   and the failure's detail, must read the same).
///
/// Every other line must read the same, in the same order; and the raw
/// probe's `connecting to` line must name the raw engine, the socket's
/// not, or the raw probe did not run on it.
pub fn step_difference(socket: &[String], raw: &[String]) -> Option<String> {
    if !socket.iter().any(|line| line.starts_with("probe ")) {
        return Some(format!(
            "the socket probe's answer has no step log ending in `probe succeeded` or `probe failed`: {socket:?}"
        ));
    }
    let names_raw = |log: &[String]| {
        log.iter()
            .any(|line| line.starts_with("connecting to ") && line.contains("raw"))
    };
    if names_raw(socket) || !names_raw(raw) {
        return Some(format!(
            "only the raw probe's `connecting to` line must name the raw engine:\n  socket: {socket:?}\n  raw:    {raw:?}"
        ));
    }
    let comparable = |line: &String| -> String {
        if let Some(at) = line.find("connecting to ") {
            let rest = &line[at..];
            return rest
                .split_once(" (")
                .map_or_else(|| rest.to_owned(), |(head, _)| format!("{head} (...)"));
        }
        if let Some(at) = line.find(" answered with SYN-ACK after #s") {
            return line[..at + " answered with SYN-ACK after #s".len()].to_owned();
        }
        line.clone()
    };
    let kernel_errno_of_icmp = |at: usize| {
        socket[at].starts_with("connect to ")
            && socket[at].contains(" failed: ")
            && socket
                .get(at + 1)
                .is_some_and(|next| next.starts_with("ICMP"))
    };
    let socket: Vec<String> = (0..socket.len())
        .filter(|&at| !kernel_errno_of_icmp(at))
        .map(|at| comparable(&socket[at]))
        .collect();
    let raw: Vec<String> = raw.iter().map(comparable).collect();
    (socket != raw).then(|| {
        format!(
            "the step logs differ:\n  socket: {}\n  raw:    {}",
            socket.join("\n          "),
            raw.join("\n          ")
        )
    })
}

#[test]
fn numbers_and_times_leave_the_steps_comparable() {
    let body = "0.000012s probing 10.0.0.1:80 with prober tcp_halfopen (timeout 0.500s, 0.499s left)\n\
                0.000140s connecting to 10.0.0.1:80 (half-open: TCP_QUICKACK=0, SO_LINGER {on, 0})\n\
                0.000301s 10.0.0.1:80 answered with SYN-ACK after 0.000161s (kernel RTT 0.000050s, 0 SYN retransmits); closed with RST 0.000010s after it\n\
                0.000302s probe succeeded in 0.000302s\n\
                \n\
                Metrics that would have been returned:\n\
                0.5s not a step\n";
    let socket = steps(body);
    assert!(
        step_difference(&socket, &socket).is_some(),
        "no raw engine named"
    );
    assert_eq!(
        socket,
        [
            "probing #:# with prober tcp_halfopen (timeout #s, #s left)",
            "connecting to #:# (half-open: TCP_QUICKACK=#, SO_LINGER {on, #})",
            "#:# answered with SYN-ACK after #s (kernel RTT #s, # SYN retransmits); closed with RST #s after it",
            "probe succeeded in #s",
        ]
    );
    let raw = steps(
        "0.000010s probing 10.0.0.1:80 with prober tcp_halfopen (timeout 0.500s, 0.499s left)\n\
         0.000100s connecting to 10.0.0.1:80 (half-open, raw SYN from port 61000)\n\
         0.000200s 10.0.0.1:80 answered with SYN-ACK after 0.000100s (the kernel answered it with RST)\n\
         0.000201s probe succeeded in 0.000201s\n",
    );
    assert_eq!(step_difference(&socket, &raw), None);
    let refused = steps("0.000200s connect to 10.0.0.1:80 failed: ECONNREFUSED\n");
    assert!(step_difference(&socket, &refused).is_some());
    assert!(step_difference(&[], &[]).is_some(), "no log is no match");

    let socket = steps(
        "0.000010s connecting to 10.0.0.1:80 (half-open: TCP_QUICKACK=0, SO_LINGER {on, 0})\n\
         0.000100s connect to 10.0.0.1:80 failed: No route to host (os error 113)\n\
         0.000100s ICMP destination unreachable, code 1 (host unreachable), from 10.0.0.254\n\
         0.000101s probe failed: unreachable: connect to 10.0.0.1:80: ICMP destination unreachable, code 1 (host unreachable), from 10.0.0.254\n",
    );
    let raw = steps(
        "0.000010s connecting to 10.0.0.1:80 (half-open, raw engine)\n\
         0.000100s ICMP destination unreachable, code 1 (host unreachable), from 10.0.0.254\n\
         0.000101s probe failed: unreachable: connect to 10.0.0.1:80: ICMP destination unreachable, code 1 (host unreachable), from 10.0.0.254\n",
    );
    assert_eq!(step_difference(&socket, &raw), None);
    let without_icmp = [raw[0].clone(), raw[2].clone()];
    assert!(
        step_difference(&socket, &without_icmp).is_some(),
        "the ICMP line itself must be there"
    );
}
