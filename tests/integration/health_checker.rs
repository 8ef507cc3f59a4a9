//! `synack_exporter health-checker [FLAGS]`: gruntwork health-checker's
//! command line, served by the group machinery. Its README's examples run
//! as written but for the listener, ports and scripts, which are on
//! loopback and in a temporary directory; the ports are probed half-open,
//! so the listeners behind them never accept a connection.

use crate::common;

use common::exporter_process::BINARY;
use common::http::{blocking_get, blocking_request};
use common::{ExporterProcess, Response, TempDir};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// health-checker's README examples 1 to 3, then the issue's command line,
/// as written there.
const EXAMPLES: [&str; 4] = [
    r#"health-checker --listener "0.0.0.0:6000" --port 5432 --port 3306"#,
    r#"health-checker --listener "0.0.0.0:6000" --port 5432 --script /path/to/script.sh --script-timeout 10"#,
    r#"health-checker --listener "0.0.0.0:6000" --script "/usr/local/bin/exhibitor-health-check.sh --exhibitor-port 8080" --script "/usr/local/bin/zk-health-check.sh --zk-port 2191""#,
    r#"health-checker --listener 0.0.0.0:6000 --port 5432 --port 3306 --script "/usr/local/bin/zk-health-check.sh --zk-port 2191" --script-timeout 10 --singleflight"#,
];

/// The body health-checker answers a failure with, as its first line.
const FAILED: &str = "At least one health check failed";

/// How long one request may take.
const REQUEST_LIMIT: Duration = Duration::from_secs(15);

/// Splits a command line as a shell would here: on spaces, with double
/// quotes around an argument that holds spaces.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let (mut word, mut quoted, mut started) = (String::new(), false, false);
    for c in line.chars() {
        match c {
            '"' => (quoted, started) = (!quoted, true),
            ' ' if !quoted => {
                if started {
                    words.push(std::mem::take(&mut word));
                }
                started = false;
            }
            _ => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}

/// A script that passes while `flag` exists and only with `args`, and
/// says on stderr why it fails.
fn flag_script(dir: &TempDir, name: &str, args: &str, flag: &Path) -> PathBuf {
    dir.script(
        name,
        &format!(
            "[ \"$*\" = \"{args}\" ] || {{ echo \"bad arguments: $*\" >&2; exit 3; }}\n\
             test -f {} || {{ echo '{name} is not ready' >&2; exit 1; }}\n",
            flag.display()
        ),
    )
}

/// A non-blocking loopback listener and its port.
fn listener() -> (TcpListener, u16) {
    let (listener, port) = common::open_port();
    listener.set_nonblocking(true).unwrap();
    (listener, port)
}

/// `synack_exporter health-checker --listener 127.0.0.1:0 flags...`.
fn health_checker(flags: &[&str]) -> ExporterProcess {
    let mut args = vec!["health-checker", "--listener", "127.0.0.1:0"];
    args.extend_from_slice(flags);
    ExporterProcess::start_exactly(&args)
}

fn get(exporter: &ExporterProcess, path: &str) -> Response {
    blocking_get(exporter.address, path, REQUEST_LIMIT)
        .unwrap_or_else(|error| panic!("GET {path}: {error}"))
}

/// The lines of a 504 answer after health-checker's own.
fn failing_lines(response: &Response) -> Vec<String> {
    assert_eq!(response.status, 504, "{}", response.body);
    let mut lines = response.body.lines();
    assert_eq!(lines.next(), Some(FAILED), "{}", response.body);
    lines.map(str::to_owned).collect()
}

/// Every README example, with loopback ports and scripts of a temporary
/// directory: 200 `OK` on any path while every check passes, 504 naming
/// the check that fails otherwise, and the ports' listeners never accept.
#[test]
fn the_readme_examples_run_as_written_on_loopback() {
    for example in EXAMPLES {
        let dir = TempDir::new("health-checker-example");
        let ready = dir.join("ready");
        std::fs::write(&ready, "").unwrap();
        let (postgres, postgres_port) = listener();
        let (mysql, mysql_port) = listener();
        let scripts = [
            (
                "/path/to/script.sh",
                flag_script(&dir, "script.sh", "", &ready),
            ),
            (
                "/usr/local/bin/exhibitor-health-check.sh",
                flag_script(&dir, "exhibitor.sh", "--exhibitor-port 8080", &ready),
            ),
            (
                "/usr/local/bin/zk-health-check.sh",
                flag_script(&dir, "zk.sh", "--zk-port 2191", &ready),
            ),
        ];
        let mut line = example
            .replace("0.0.0.0:6000", "127.0.0.1:0")
            .replace("5432", &postgres_port.to_string())
            .replace("3306", &mysql_port.to_string());
        for (written, ours) in &scripts {
            line = line.replace(written, &ours.display().to_string());
        }
        let words = shell_words(&line);
        assert_eq!(words[0], "health-checker", "{example}");
        let args: Vec<&str> = words.iter().map(String::as_str).collect();
        let exporter = ExporterProcess::start_exactly(&args);

        for path in ["/", "/any/path?x=1", "/metrics", "/health/web"] {
            let response = get(&exporter, path);
            assert_eq!(
                (response.status, response.body.as_str()),
                (200, "OK"),
                "{example}: {path}"
            );
        }
        let posted = blocking_request(
            exporter.address,
            "POST",
            "/-/reload",
            &[],
            "",
            REQUEST_LIMIT,
        )
        .unwrap();
        assert_eq!(
            (posted.status, posted.body.as_str()),
            (200, "OK"),
            "{example}"
        );

        // Break one check: the first script, else the first port.
        let uses_scripts = example.contains("--script");
        let expected = if uses_scripts {
            std::fs::remove_file(&ready).unwrap();
            "check_failed (stderr: \"".to_owned()
        } else {
            drop(postgres);
            format!("port 127.0.0.1:{postgres_port} refused")
        };
        let lines = failing_lines(&get(&exporter, "/lb-check"));
        assert!(
            lines.iter().any(|line| line.contains(&expected)),
            "{example}: want {expected:?} in {lines:?}"
        );
        if uses_scripts {
            assert!(
                lines.iter().all(|line| line.starts_with("script \"")
                    && line.ends_with(" is not ready\")")),
                "{example}: every script fails, saying why: {lines:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(600)); // past any delayed ACK
        assert_eq!(
            common::accept_waiting(&mysql),
            0,
            "{example}: a port check completed a connection"
        );
    }
}

/// The half-open promise in this mode: a listener that counts its
/// accepts stays at 0 while every path reports OK.
#[test]
fn a_checked_port_never_sees_a_connection() {
    let (counted, port) = listener();
    let port_text = port.to_string();
    let exporter = health_checker(&["--port", &port_text]);
    for n in 0..20 {
        let response = get(&exporter, &format!("/any/path/{n}"));
        assert_eq!((response.status, response.body.as_str()), (200, "OK"));
    }
    std::thread::sleep(Duration::from_millis(600)); // past any delayed ACK
    assert_eq!(common::accept_waiting(&counted), 0, "accepts");
}

/// Failing checks are named with their reason in the 504 and in the log:
/// a closed port, a script that fails saying why on stderr, and one that
/// overruns `--script-timeout` and is killed with its process group.
#[test]
fn failing_checks_are_named_with_why_in_the_answer_and_the_log() {
    let dir = TempDir::new("health-checker-failing");
    let closed = common::closed_port();
    let pid_file = dir.join("pid");
    let says_why = dir.script("says-why.sh", "echo 'disk full' >&2\nexit 2\n");
    let hangs = dir.script(
        "hangs.sh",
        &format!("sleep 30 &\necho $! > {}\nwait\n", pid_file.display()),
    );
    let (says_why, hangs) = (says_why.display().to_string(), hangs.display().to_string());
    let port_text = closed.port().to_string();
    let with_args = format!("{says_why} --verbose");
    let exporter = health_checker(&[
        "--port",
        &port_text,
        "--script",
        &with_args,
        "--script",
        &hangs,
        "--script-timeout",
        "1",
    ]);
    let started = Instant::now();
    let lines = failing_lines(&get(&exporter, "/"));
    let took = started.elapsed();
    assert_eq!(
        lines,
        [
            format!("port {closed} refused"),
            format!("script {with_args:?} check_failed (stderr: \"disk full\")"),
            format!("script {hangs:?} timeout"),
        ],
        "every failing check, in command-line order"
    );
    assert!(
        took < Duration::from_secs(3),
        "all at once, the script killed at its 1 s timeout: {took:?}"
    );
    let log = exporter.logs_until("disk full");
    let log = log.join("\n");
    for needle in [
        format!("target={closed} reason=refused"),
        "reason=check_failed".to_owned(),
        "stderr=\"disk full\"".to_owned(),
    ] {
        assert!(log.contains(&needle), "{needle:?} not in {log}");
    }
    // The background child of the killed script went with its group.
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.contains(") Z "))
    {
        assert!(
            Instant::now() < deadline,
            "the script's child {pid} outlived its timeout"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs of a script that logs each run to `runs` and takes half a second.
fn counting_script(dir: &TempDir, runs: &Path) -> String {
    dir.script(
        "count.sh",
        &format!("echo run >> {}\nsleep 0.5\n", runs.display()),
    )
    .display()
    .to_string()
}

fn runs_in(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |text| text.lines().count())
}

/// `n` requests at once; their statuses.
fn concurrent(exporter: &ExporterProcess, n: usize) -> Vec<u16> {
    let address = exporter.address;
    let threads: Vec<_> = (0..n)
        .map(|index| {
            std::thread::spawn(move || {
                blocking_get(address, &format!("/c/{index}"), REQUEST_LIMIT)
                    .map(|response| response.status)
                    .unwrap_or_default()
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|thread| thread.join().unwrap())
        .collect()
}

/// Each request runs a fresh round; with `--singleflight`, concurrent
/// requests share one, and there is no reuse window after it ends.
#[test]
fn every_request_runs_a_round_and_singleflight_shares_concurrent_ones() {
    for (singleflight, concurrent_runs) in [(false, 5), (true, 1)] {
        let dir = TempDir::new("health-checker-rounds");
        let runs = dir.join("runs");
        let count = counting_script(&dir, &runs);
        let mut args = vec![
            "health-checker",
            "--listener",
            "127.0.0.1:0",
            "--script",
            &count,
        ];
        if singleflight {
            args.push("--singleflight");
        }
        let exporter = ExporterProcess::start_exactly(&args);
        assert_eq!(
            concurrent(&exporter, 5),
            [200; 5],
            "singleflight {singleflight}"
        );
        assert_eq!(
            runs_in(&runs),
            concurrent_runs,
            "singleflight {singleflight}"
        );
        for _ in 0..2 {
            assert_eq!(get(&exporter, "/").status, 200);
        }
        assert_eq!(
            runs_in(&runs),
            concurrent_runs + 2,
            "singleflight {singleflight}: requests one after the other each run the checks"
        );
    }
}

/// `--port` takes health-checker's bare port (127.0.0.1), `[::1]:N` for
/// IPv6, and `host:port` as an extension.
#[test]
fn ports_may_be_bare_ipv6_loopback_or_host_and_port() {
    let (v4, v4_port) = listener();
    let Ok(v6) = TcpListener::bind("[::1]:0") else {
        common::skip_or_fail("an IPv6 loopback address (::1)");
        return;
    };
    v6.set_nonblocking(true).unwrap();
    let v6_port = v6.local_addr().unwrap().port();
    let (bare, bracketed, named) = (
        v4_port.to_string(),
        format!("[::1]:{v6_port}"),
        format!("localhost:{v4_port}"),
    );
    let exporter = health_checker(&["--port", &bare, "--port", &bracketed, "--port", &named]);
    assert_eq!(get(&exporter, "/").body, "OK");
    drop(v6);
    assert_eq!(
        failing_lines(&get(&exporter, "/")),
        [format!("port [::1]:{v6_port} refused")]
    );
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(common::accept_waiting(&v4), 0);
}

fn run(args: &[&str]) -> common::Finished {
    common::run_within(Command::new(BINARY).args(args), Duration::from_secs(20))
}

/// `--help` lists health-checker's flags in its words; no flag at all shows
/// it too (exit 0), as health-checker does; flags without a check are an
/// error in its words, and so are the exporter's own flags in this mode.
#[test]
fn help_and_usage_errors_speak_as_health_checker() {
    let help = run(&["health-checker", "--help"]);
    assert!(help.success(), "{}", help.output());
    for wording in [
        "A simple HTTP server that will return 200 OK if the configured checks are all successful.",
        "[One of port/script Required] The port number on which a TCP connection will be attempted. Specify one or more times. Example: 8000",
        "[One of port/script Required] The path to script that will be run. Specify one or more times. Example: \"/usr/local/bin/health-check.sh --http-port 8000\"",
        "[Optional] Timeout, in seconds, to wait for the scripts to complete. Example: 10",
        "[Optional] Enable singleflight mode, which makes concurrent requests share the same check.",
        "[Optional] The IP address and port on which inbound HTTP connections will be accepted.",
        "[Optional] Set the log level to LEVEL. Must be one of: [panic fatal error warning info debug trace]",
        "--listener",
        "--version",
    ] {
        assert!(
            help.stdout.contains(wording),
            "{wording:?} not in\n{}",
            help.stdout
        );
    }
    let bare = run(&["health-checker"]);
    assert!(bare.success(), "{}", bare.output());
    assert_eq!(bare.stdout, help.stdout);

    let version = run(&["health-checker", "--version"]);
    assert!(
        version.success() && version.stdout.contains(env!("CARGO_PKG_VERSION")),
        "{}",
        version.output()
    );

    let no_check = run(&["health-checker", "--listener", "127.0.0.1:0"]);
    assert_eq!(no_check.code(), Some(1), "{}", no_check.output());
    assert!(
        no_check
            .output()
            .contains("Missing required parameter, one of --port / --script required"),
        "{}",
        no_check.output()
    );
    for bad in [
        vec!["health-checker", "--port", "70000"],
        vec!["health-checker", "--port", "5432", "--log-level", "loud"],
        vec![
            "health-checker",
            "--script",
            "/bin/true",
            "--script-timeout",
            "0",
        ],
        vec!["health-checker", "--script", " /bin/true"],
        vec!["--config.file", "x.yml", "health-checker", "--port", "5432"],
        vec!["health-checker", "--port", "5432", "--config.file", "x.yml"],
    ] {
        let finished = run(&bad);
        assert_ne!(finished.code(), Some(0), "{bad:?}: {}", finished.output());
        assert!(!finished.stderr.is_empty(), "{bad:?}");
    }
}

/// health-checker reads its flags with Go's flag package, which takes
/// `-port 5432` and `-port=5432` as it takes `--port 5432`: a command line
/// written that way works here too, and a value that starts with a dash
/// stays a value.
#[test]
fn go_style_single_dash_flags_work_as_in_health_checker() {
    let dir = TempDir::new("health-checker-dash");
    let check = dir.script("check.sh", "[ \"$1\" = -v ] || exit 1\n");
    let (port_listener, port) = listener();
    let (port, script) = (port.to_string(), format!("{} -v", check.display()));
    let exporter = ExporterProcess::start_exactly(&[
        "health-checker",
        "-listener",
        "127.0.0.1:0",
        &format!("-port={port}"),
        "-script",
        &script,
        "-script-timeout",
        "3",
        "-singleflight",
        "-log-level=debug",
    ]);
    assert_eq!(get(&exporter, "/").body, "OK");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(common::accept_waiting(&port_listener), 0);
    for flag in ["-help", "-h"] {
        let help = run(&["health-checker", flag]);
        assert!(
            help.success() && help.stdout.contains("--script-timeout"),
            "{flag}: {}",
            help.output()
        );
    }
}

/// health-checker runs a script with its own environment (Go's
/// `exec.Command` passes it on), and scripts written for it read their
/// settings from there; so do they here, in this mode only.
#[test]
fn scripts_get_the_environment_health_checker_was_started_with() {
    let dir = TempDir::new("health-checker-env");
    let reads_env = dir.script(
        "reads-env.sh",
        "[ \"$HC_TEST_TOKEN\" = ready ] || { echo \"HC_TEST_TOKEN=$HC_TEST_TOKEN\" >&2; exit 1; }\n\
         [ -n \"$HOME\" ] || { echo 'HOME is not set' >&2; exit 1; }\n",
    );
    let mut command = Command::new(BINARY);
    command
        .args(["health-checker", "--listener", "127.0.0.1:0", "--script"])
        .arg(&reads_env)
        .env("HC_TEST_TOKEN", "ready")
        .env("HOME", dir.join("home"));
    let exporter = ExporterProcess::start_command(command);
    let answer = get(&exporter, "/");
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "OK"),
        "{}",
        answer.body
    );
}
