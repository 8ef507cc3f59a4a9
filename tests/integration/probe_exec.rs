//! The `exec` prober through `/probe` and the scheduler, with real
//! commands: shell scripts written into a temporary directory.
//!
//! Every target is on loopback or a name that is never resolved (the exec
//! prober does no DNS); every wait is bounded.

use crate::common;

use common::{TempDir, TestExporter, request, sample};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};
use synack_exporter::{Exporter, ExporterBuilder};

/// A config with one exec module `m` running `command` (a YAML flow list).
fn exec_config(command: &str, timeout: &str, env: &str) -> String {
    format!(
        "modules:\n  m:\n    prober: exec\n    timeout: {timeout}\n    exec:\n      command: {command}\n{env}"
    )
}

/// A YAML flow list of the program at `path` and `args`.
fn command_of(path: &Path, args: &[&str]) -> String {
    let mut items = vec![format!("{:?}", path.display().to_string())];
    items.extend(args.iter().map(|arg| format!("{arg:?}")));
    format!("[{}]", items.join(", "))
}

async fn exporter_running(path: &Path, args: &[&str], timeout: &str) -> TestExporter {
    TestExporter::with_config(
        &exec_config(&command_of(path, args), timeout, ""),
        Exporter::builder(),
    )
    .await
}

/// The body of a 200 answer to `/probe` of module `m`, with `extra` query.
async fn probe_with(exporter: &TestExporter, target: &str, extra: &str) -> String {
    let response = exporter
        .get(&format!("/probe?module=m&target={target}{extra}"))
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    response.body
}

async fn probe(exporter: &TestExporter, target: &str) -> String {
    probe_with(exporter, target, "").await
}

async fn debug_probe(exporter: &TestExporter, target: &str) -> String {
    probe_with(exporter, target, "&debug=true").await
}

fn reason(body: &str, reason: &str) -> Option<f64> {
    sample(
        body,
        &format!("probe_failure_reason{{reason=\"{reason}\"}}"),
    )
}

/// The lines of one output block (`stdout` or `stderr`) of a debug log,
/// without their `  | ` indent.
fn output_lines<'a>(debug: &'a str, stream: &str) -> Vec<&'a str> {
    let mut lines = debug.lines();
    let heading = format!("s {stream},");
    lines
        .by_ref()
        .find(|line| line.contains(&heading))
        .unwrap_or_else(|| panic!("no {stream} in\n{debug}"));
    lines.map_while(|line| line.strip_prefix("  | ")).collect()
}

/// `probe_success`, `probe_exec_exit_code` and the `check_failed` series
/// of one probe of a module running a script of `body`.
async fn outcome_of_script(body: &str) -> [Option<f64>; 3] {
    let dir = TempDir::new("exec-script");
    let path = dir.script("check.sh", body);
    let exporter = exporter_running(&path, &[], "5s").await;
    let metrics = probe(&exporter, "127.0.0.1:2181").await;
    [
        sample(&metrics, "probe_success"),
        sample(&metrics, "probe_exec_exit_code"),
        reason(&metrics, "check_failed"),
    ]
}

#[tokio::test]
async fn exit_0_is_success_with_exit_code_0() {
    let [success, exit_code, check_failed] = outcome_of_script("exit 0\n").await;
    assert_eq!(success, Some(1.0));
    assert_eq!(exit_code, Some(0.0));
    assert_eq!(check_failed, Some(0.0));
}

#[tokio::test]
async fn a_non_zero_exit_or_a_signal_fails_as_check_failed() {
    let [success, exit_code, check_failed] = outcome_of_script("exit 1\n").await;
    assert_eq!(success, Some(0.0));
    assert_eq!(exit_code, Some(1.0));
    assert_eq!(check_failed, Some(1.0));
    let dir = TempDir::new("exec-fail");
    let exits_1 = dir.script("one.sh", "exit 1\n");
    let exporter = exporter_running(&exits_1, &[], "5s").await;
    let debug = debug_probe(&exporter, "127.0.0.1:2181").await;
    assert!(debug.contains("one.sh exited with code 1"), "{debug}");

    let killed = dir.script("killed.sh", "kill -TERM $$\nsleep 5\n");
    let exporter = exporter_running(&killed, &[], "5s").await;
    let debug = debug_probe(&exporter, "127.0.0.1:2181").await;
    assert!(
        debug.contains("probe_failure_reason{reason=\"check_failed\"} 1"),
        "{debug}"
    );
    assert!(debug.contains("probe_exec_exit_code -1"), "{debug}");
    assert!(debug.contains("SIGTERM"), "{debug}");
}

/// Whether process `pid` is still running: it exists and is not a zombie.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command name in parentheses.
        let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
        state != Some(Some('Z'))
    })
}

/// Waits up to 5 s for `check` to hold.
fn eventually(what: &str, check: impl Fn() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < Duration::from_secs(5), "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_pid(path: &Path) -> u32 {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    text.trim().parse().unwrap()
}

#[tokio::test]
async fn a_command_past_its_deadline_is_killed_with_every_child_and_reaped() {
    let dir = TempDir::new("exec-timeout");
    let d = dir.path().display();
    // The script (our child) starts a background sleep and waits on a
    // foreground one: three processes, each writing its pid.
    let slow = dir.script(
        "slow.sh",
        &format!(
            "echo $$ > {d}/main.pid\n\
             sleep 60 &\n\
             echo $! > {d}/background.pid\n\
             sh -c 'echo $$ > {d}/foreground.pid; exec sleep 60'\n"
        ),
    );
    let exporter = exporter_running(&slow, &[], "1s").await;
    let started = Instant::now();
    let body = debug_probe(&exporter, "127.0.0.1:2181").await;
    let took = started.elapsed();
    assert!(
        body.contains("probe_failure_reason{reason=\"timeout\"} 1"),
        "{body}"
    );
    assert!(body.contains("probe_exec_exit_code -1"), "{body}");
    assert!(body.contains("killed process group"), "{body}");
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_millis(2500),
        "answered after {took:?}, not about 1 s"
    );
    // Not one of them is left, not even as a zombie: the command is
    // reaped by the exporter, and the children it left behind, killed
    // with its group, by init, which inherits them (as on any host with
    // an init that reaps; see docs/configuration.md for containers).
    for name in ["main", "background", "foreground"] {
        let pid = read_pid(&dir.join(format!("{name}.pid")));
        eventually(&format!("{name} process {pid} outlived the probe"), || {
            !running(pid)
        });
        eventually(&format!("{name} process {pid} was never reaped"), || {
            !Path::new(&format!("/proc/{pid}")).exists()
        });
    }
}

#[tokio::test]
async fn a_background_child_dies_when_the_command_exits() {
    let dir = TempDir::new("exec-background");
    let d = dir.path().display();
    let leaves = dir.script(
        "leaves.sh",
        &format!("sleep 60 &\necho $! > {d}/background.pid\nexit 0\n"),
    );
    let exporter = exporter_running(&leaves, &[], "5s").await;
    let started = Instant::now();
    let body = probe(&exporter, "127.0.0.1:2181").await;
    assert_eq!(sample(&body, "probe_success"), Some(1.0), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a background child holding the pipes kept the probe waiting"
    );
    let pid = read_pid(&dir.join("background.pid"));
    eventually(
        &format!("background process {pid} outlived the probe"),
        || !running(pid),
    );
    eventually(
        &format!("background process {pid} was never reaped"),
        || !Path::new(&format!("/proc/{pid}")).exists(),
    );
}

/// A program that is missing or not executable is refused when the config
/// loads (see `a_program_that_cannot_run_fails_every_load`); one that goes
/// away or loses its execute bit afterwards fails its probes as `local`,
/// saying why, as does a script that the kernel cannot run.
#[tokio::test]
async fn commands_that_cannot_start_fail_as_local_saying_why() {
    let dir = TempDir::new("exec-cannot-start");
    let removed = dir.script(
        "removed.sh",
        "exit 0
",
    );
    let not_executable = dir.script(
        "plain.sh", "exit 0
",
    );
    let no_shebang = dir.write("no-shebang.sh", "exit 0\n");
    std::fs::set_permissions(&no_shebang, std::fs::Permissions::from_mode(0o755)).unwrap();
    type Break = fn(&Path);
    let remove: Break = |path| std::fs::remove_file(path).unwrap();
    let chmod_644: Break = |path| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    };
    let leave: Break = |_| {};
    for (path, after_load, why) in [
        (removed, remove, "not found"),
        (
            not_executable,
            chmod_644,
            "not executable: permission denied",
        ),
        (no_shebang, leave, "exec format error"),
    ] {
        let exporter = exporter_running(&path, &[], "5s").await;
        after_load(&path);
        let body = debug_probe(&exporter, "127.0.0.1:2181").await;
        assert!(
            body.contains("probe_failure_reason{reason=\"local\"} 1"),
            "{body}"
        );
        assert!(body.contains("probe_exec_exit_code -1"), "{body}");
        let detail = format!(
            "probe failed: local: cannot start {}: {why}",
            path.display()
        );
        assert!(body.contains(&detail), "want {detail:?} in\n{body}");
    }
}

/// A program that is not there, or not executable, would fail every probe
/// of its module: `--config.check`, start-up and reloads refuse it alike,
/// at `command[0]`, and a failed reload keeps the config in force.
#[tokio::test]
async fn a_program_that_cannot_run_fails_every_load() {
    let dir = TempDir::new("exec-load-check");
    let good = dir.script("good.sh", "exit 0\n");
    let missing = dir.join("missing.sh");
    let plain = dir.write("plain.sh", "#!/bin/sh\nexit 0\n");
    for (program, needle) in [
        (missing.display().to_string(), "does not exist"),
        (
            plain.display().to_string(),
            "is not executable (mode 0644): chmod +x it",
        ),
        ("synack-no-such-program".to_owned(), "is not in PATH ("),
    ] {
        let yaml = exec_config(&format!("[{program:?}, \"{{host}}\"]"), "5s", "");
        let error = Exporter::builder()
            .config_text("zk.yml", &yaml)
            .check_config()
            .expect_err(&program);
        let text = error.to_string();
        let at = "zk.yml:6:17: field `modules.m.exec.command[0]`: program ";
        assert!(text.starts_with(at), "{text}");
        assert!(text.contains(needle), "{text}");
    }
    let exporter = exporter_running(&good, &[], "5s").await;
    let response = exporter
        .reload_with(&exec_config(&command_of(&missing, &[]), "5s", ""))
        .await;
    assert_eq!(response.status, 500, "{}", response.body);
    assert!(
        response.body.contains("does not exist"),
        "{}",
        response.body
    );
    let body = probe(&exporter, "127.0.0.1:2181").await;
    assert_eq!(
        sample(&body, "probe_success"),
        Some(1.0),
        "the old config: {body}"
    );
}

#[tokio::test]
async fn shell_syntax_never_reaches_the_command_and_host_is_one_argument() {
    let dir = TempDir::new("exec-args");
    let args_file = dir.join("args");
    let record = dir.script(
        "record.sh",
        &format!("printf '%s\\n' \"$#\" \"$@\" > {}\n", args_file.display()),
    );
    let exporter = exporter_running(
        &record,
        &["{host}", "--port={port}", "{target}", "{{host}}"],
        "5s",
    )
    .await;
    for (target, host) in [
        ("db.example.org:5432", "db.example.org"),
        ("[::1]:5432", "::1"),
    ] {
        let _ = std::fs::remove_file(&args_file);
        let body = probe(&exporter, target).await;
        assert_eq!(sample(&body, "probe_success"), Some(1.0), "{body}");
        let args = std::fs::read_to_string(&args_file).unwrap();
        let want = format!("4\n{host}\n--port=5432\n{target}\n{{host}}\n");
        assert_eq!(args, want, "{target}");
    }
    // URL-encoded: ; $( ) ` | & > space ' " and a leading '-'.
    for target in [
        "a%3Brm%20-rf%20x:80",
        "%24(id):80",
        "%60id%60:80",
        "a%7Cb:80",
        "a%26b:80",
        "a%3Eb:80",
        "a%27b:80",
        "a%22b:80",
        "-rf:80",
        "--help:80",
    ] {
        let _ = std::fs::remove_file(&args_file);
        let response = exporter
            .get(&format!("/probe?module=m&target={target}"))
            .await;
        assert_eq!(response.status, 400, "{target}: {}", response.body);
        assert!(!args_file.exists(), "{target} ran the command");
    }
}

#[tokio::test]
async fn the_environment_holds_only_path_the_target_and_the_module_env() {
    let yaml = exec_config(
        "[\"/usr/bin/env\"]",
        "5s",
        "      env: {ZK_MODE: follower, EMPTY: \"\"}\n",
    );
    let exporter = TestExporter::with_config(&yaml, Exporter::builder()).await;
    let debug = debug_probe(&exporter, "[::1]:2181").await;
    assert!(debug.contains("probe_success 1"), "{debug}");
    let env: BTreeMap<&str, &str> = output_lines(&debug, "stdout")
        .into_iter()
        .map(|line| line.split_once('=').unwrap())
        .collect();
    let path = std::env::var("PATH").unwrap_or_default();
    let want = BTreeMap::from([
        ("EMPTY", ""),
        ("PATH", path.as_str()),
        ("SYNACK_TARGET", "[::1]:2181"),
        ("SYNACK_TARGET_HOST", "::1"),
        ("SYNACK_TARGET_PORT", "2181"),
        ("ZK_MODE", "follower"),
    ]);
    assert_eq!(env, want, "{debug}");
    // The exporter's own environment is larger, so the test can fail.
    assert!(
        std::env::vars().any(|(name, _)| !want.contains_key(name.as_str())),
        "the test process has no variable of its own"
    );
}

#[tokio::test]
async fn stdout_and_stderr_are_in_the_debug_log_cut_at_4_kib() {
    let dir = TempDir::new("exec-output");
    let talk = dir.script(
        "talk.sh",
        "echo hello-out\nhead -c 10000 /dev/zero | tr '\\0' x\necho hello-err >&2\nexit 3\n",
    );
    let exporter = exporter_running(&talk, &[], "5s").await;
    let debug = debug_probe(&exporter, "127.0.0.1:2181").await;
    assert!(
        debug.contains("stdout, the first 4096 of 10010 bytes:"),
        "{debug}"
    );
    let stdout = output_lines(&debug, "stdout");
    assert_eq!(stdout[0], "hello-out", "{debug}");
    assert_eq!(stdout[1], "x".repeat(4096 - "hello-out\n".len()));
    assert!(debug.contains("stderr, 10 bytes:"), "{debug}");
    assert_eq!(output_lines(&debug, "stderr"), ["hello-err"], "{debug}");
    // Never in a label.
    let metrics = probe(&exporter, "127.0.0.1:2181").await;
    assert!(!metrics.contains("hello"), "{metrics}");
    // /logs shows the same log; the debug probe was the first, id 1.
    let logs = exporter.get("/logs?id=1").await.body;
    assert!(logs.contains("  | hello-err"), "{logs}");

    // Output far beyond what a pipe holds does not block the command.
    let chatty = dir.script("chatty.sh", "head -c 4000000 /dev/zero\nexit 0\n");
    let exporter = exporter_running(&chatty, &[], "10s").await;
    let body = debug_probe(&exporter, "127.0.0.1:2181").await;
    assert!(body.contains("probe_success 1"), "{body}");
    assert!(
        body.contains("stdout, the first 4096 of 4000000 bytes:"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_commands_run_at_once_than_exec_max_concurrent() {
    const PROBES: usize = 200;
    const LIMIT: usize = 4;
    let dir = TempDir::new("exec-limit");
    let running = TempDir::new("exec-limit-running");
    let counts = dir.join("counts");
    // Each command marks itself running, counts the marks, and unmarks
    // itself before it exits: a count never exceeds the commands alive.
    let count = dir.script(
        "count.sh",
        &format!(
            "touch {r}/$$\n\
             ls {r} | wc -l >> {counts}\n\
             sleep 0.05\n\
             rm {r}/$$\n",
            r = running.path().display(),
            counts = counts.display()
        ),
    );
    let builder: ExporterBuilder = Exporter::builder().max_exec(LIMIT);
    let exporter =
        TestExporter::with_config(&exec_config(&command_of(&count, &[]), "60s", ""), builder).await;
    let address = exporter.address;
    let probes: Vec<_> = (0..PROBES)
        .map(|_| {
            tokio::spawn(async move {
                request(address, "GET", "/probe?module=m&target=127.0.0.1:2181", &[]).await
            })
        })
        .collect();
    let mut succeeded = 0;
    for probe in probes {
        let response = tokio::time::timeout(Duration::from_secs(90), probe)
            .await
            .expect("a probe answered within 90 s")
            .unwrap();
        if sample(&response.body, "probe_success") == Some(1.0) {
            succeeded += 1;
        }
    }
    assert_eq!(succeeded, PROBES, "every probe waited for its turn");
    let counts = std::fs::read_to_string(&counts).unwrap();
    let counts: Vec<usize> = counts.lines().map(|n| n.trim().parse().unwrap()).collect();
    assert_eq!(counts.len(), PROBES);
    let most = counts.iter().copied().max().unwrap();
    assert!(most <= LIMIT, "{most} commands ran at once");
    assert_eq!(most, LIMIT, "the limit was never reached: {counts:?}");
}

#[tokio::test]
async fn a_scheduled_exec_target_keeps_its_exit_code_on_metrics() {
    let dir = TempDir::new("exec-scheduled");
    let three = dir.script("three.sh", "exit 3\n");
    let yaml = format!(
        "{}targets:\n  - module: m\n    interval: 1s\n    targets: [\"127.0.0.1:2181\"]\n",
        exec_config(&command_of(&three, &[]), "2s", "")
    );
    let exporter = TestExporter::with_config(&yaml, Exporter::builder()).await;
    common::scheduled::wait_for_scheduled(
        &exporter,
        "127.0.0.1:2181",
        Duration::from_secs(10),
        |state| state.count("check_failed") >= 1,
    )
    .await;
    let metrics = exporter.get("/metrics").await.body;
    assert_eq!(
        sample(
            &metrics,
            "probe_exec_exit_code{module=\"m\",target=\"127.0.0.1:2181\"}"
        ),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "synack_exporter_probes_total{module=\"m\",result=\"check_failed\"}"
        )
        .map(|count| count >= 1.0),
        Some(true),
        "{metrics}"
    );
}

#[test]
fn a_misspelt_placeholder_is_a_located_config_error() {
    let yaml = exec_config("[\"/bin/check\", \"--host={hots}\"]", "5s", "");
    let error = Exporter::builder()
        .config_text("zk.yml", &yaml)
        .check_config()
        .expect_err("{hots} is not a placeholder");
    assert_eq!(
        error.field.as_deref(),
        Some("modules.m.exec.command[1]"),
        "{error}"
    );
    assert_eq!(error.position.map(|(line, _)| line), Some(6), "{error}");
    assert!(
        error.message.contains("unknown placeholder {hots}"),
        "{error}"
    );
}

/// An exec module whose command holds no placeholder runs without a
/// target: from `/probe?module=` and from a group member `{module}`. Given
/// a target anyway, it runs as before (existing URLs keep working). A
/// module whose command uses the target still needs one: `/probe`
/// without it is a 400 saying so.
#[tokio::test]
async fn an_exec_check_without_placeholders_needs_no_target() {
    let dir = TempDir::new("exec-no-target");
    let healthy = dir.join("healthy");
    // Passes while the flag file exists, and only without arguments.
    let check = dir.script(
        "check.sh",
        &format!(
            "[ $# -eq 0 ] || exit 3
test -f {}
",
            healthy.display()
        ),
    );
    let closed = common::closed_port();
    let config = format!(
        "modules:\n  plain:\n    prober: exec\n    exec: {{command: [{check:?}]}}\n  \
         uses:\n    prober: exec\n    exec: {{command: [{check:?}, \"{{host}}\"]}}\n\
         groups:\n  solo:\n    members:\n      - {{module: plain}}\n  \
         mixed:\n    members:\n      - {{module: plain}}\n      - {{module: tcp_halfopen, target: \"{closed}\"}}\n"
    );
    let exporter = TestExporter::with_config(&config, Exporter::builder()).await;
    std::fs::write(&healthy, "").unwrap();
    for path in [
        "/probe?module=plain",
        "/probe?module=plain&target=127.0.0.1:1",
    ] {
        let response = exporter.get(path).await;
        assert_eq!(response.status, 200, "{path}: {}", response.body);
        assert_eq!(sample(&response.body, "probe_success"), Some(1.0), "{path}");
    }
    let response = exporter.get("/probe?module=plain&debug=true").await;
    assert!(
        response.body.contains("without a target"),
        "{}",
        response.body
    );
    let response = exporter.get("/probe?module=uses").await;
    assert_eq!(response.status, 400, "{}", response.body);
    assert_eq!(response.body.lines().count(), 1, "{}", response.body);
    assert!(
        response.body.contains("{host}") && response.body.contains("target="),
        "{}",
        response.body
    );
    let response = exporter.get("/probe?module=tcp_halfopen").await;
    assert_eq!(response.status, 400, "{}", response.body);

    let response = exporter.get("/health/solo").await;
    assert_eq!((response.status, response.body.as_str()), (200, "OK\n"));
    std::fs::remove_file(&healthy).unwrap();
    let response = exporter.get("/health/mixed").await;
    assert_eq!(
        (response.status, response.body),
        (
            503,
            format!("plain check_failed\ntcp_halfopen {closed} refused\n")
        ),
        "a member without a target is named by its module"
    );
}

/// A failing script says why: the 503 line of its group member carries
/// the first line of its stderr (the first that is not blank), escaped and
/// cut at 200 bytes, and the exporter's log at the default level names the
/// group, the member and that line.
#[test]
fn a_failing_script_says_why_in_the_503_and_in_the_log() {
    let dir = TempDir::new("exec-why");
    let why = dir.script(
        "why.sh",
        "printf '\\n  ZooKeeper is not serving requests\\033[2J\\nsecond line\\n' >&2\nexit 1\n",
    );
    let long = dir.script("long.sh", "printf '%0300d\\n' 0 >&2\nexit 2\n");
    let quiet = dir.script("quiet.sh", "exit 3\n");
    let config = dir.write(
        "synack.yml",
        &format!(
            "modules:\n  why: {{prober: exec, exec: {{command: [{why:?}]}}}}\n  \
             long: {{prober: exec, exec: {{command: [{long:?}]}}}}\n  \
             quiet: {{prober: exec, exec: {{command: [{quiet:?}]}}}}\n\
             groups:\n  zk:\n    members:\n      - {{module: why, target: \"127.0.0.1:2181\"}}\n      \
             - {{module: long}}\n      - {{module: quiet}}\n"
        ),
    );
    let exporter =
        common::ExporterProcess::start(&["--config.file", &config.display().to_string()]);
    let response =
        common::http::blocking_get(exporter.address, "/health/zk", Duration::from_secs(10))
            .expect("an answer");
    let zeros = "0".repeat(200);
    assert_eq!(
        (response.status, response.body),
        (
            503,
            format!(
                "why 127.0.0.1:2181 check_failed (stderr: \"ZooKeeper is not serving requests\\u{{1b}}[2J\")\n\
                 long check_failed (stderr: \"{zeros}…\")\nquiet check_failed\n"
            )
        )
    );
    let logged = exporter.logs_until("ZooKeeper is not serving requests");
    let line = logged.last().unwrap();
    for needle in [
        "level=warn",
        "group=zk",
        "module=why",
        "target=127.0.0.1:2181",
        "reason=check_failed",
        "why.sh exited with code 1",
    ] {
        assert!(line.contains(needle), "{needle:?} not in {line}");
    }
}

#[tokio::test]
async fn a_bare_program_name_is_looked_up_in_the_commands_path() {
    let dir = TempDir::new("exec-path");
    dir.script("my-check", "exit 0\n");
    let with_path = exec_config(
        "[\"my-check\"]",
        "5s",
        &format!(
            "      env: {{PATH: {:?}}}\n",
            dir.path().display().to_string()
        ),
    );
    let exporter = TestExporter::with_config(&with_path, Exporter::builder()).await;
    let body = probe(&exporter, "127.0.0.1:2181").await;
    assert_eq!(sample(&body, "probe_success"), Some(1.0), "{body}");

    // Not in the exporter's PATH: the config is refused, naming the PATH.
    let without = exec_config("[\"my-check\"]", "5s", "");
    let error = Exporter::builder()
        .config_text("zk.yml", &without)
        .check_config()
        .expect_err("my-check is not in the exporter's PATH");
    let path = std::env::var("PATH").unwrap_or_default();
    let detail = format!("program \"my-check\" is not in PATH ({path})");
    assert!(
        error.message.contains(&detail),
        "want {detail:?} in {error}"
    );
    // Gone from PATH after the load: the probe's detail names the PATH.
    std::fs::remove_file(dir.join("my-check")).unwrap();
    let body = debug_probe(&exporter, "127.0.0.1:2181").await;
    let detail = format!(
        "cannot start my-check: not found in PATH ({})",
        dir.path().display()
    );
    assert!(body.contains(&detail), "want {detail:?} in\n{body}");

    // Found by name, a script without #! is still refused, not run by
    // /bin/sh (as glibc's execvp would run it), nor is a file without an
    // execute bit run.
    dir.write("no-shebang", "echo ran-under-sh\n");
    std::fs::set_permissions(
        dir.join("no-shebang"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    // Executable when the config loads, and no longer when it runs.
    dir.script("plain", "exit 0\n");
    for (program, why) in [
        ("no-shebang", "exec format error"),
        ("plain", "not executable: permission denied"),
    ] {
        let config = exec_config(
            &format!("[\"{program}\"]"),
            "5s",
            &format!(
                "      env: {{PATH: {:?}}}\n",
                dir.path().display().to_string()
            ),
        );
        let exporter = TestExporter::with_config(&config, Exporter::builder()).await;
        if program == "plain" {
            let mode = std::fs::Permissions::from_mode(0o644);
            std::fs::set_permissions(dir.join(program), mode).unwrap();
        }
        let body = debug_probe(&exporter, "127.0.0.1:2181").await;
        assert_eq!(reason(&body, "local"), Some(1.0), "{program}: {body}");
        assert!(body.contains(why), "{program}: want {why:?} in\n{body}");
        assert!(!body.contains("ran-under-sh"), "{body}");
    }
}

/// The ZooKeeper group of docs/configuration.md, as written there but for
/// the script's path and the port: 200 only while both the half-open check
/// of the port and the exec check pass, else 503 naming the member that
/// failed.
#[tokio::test]
async fn the_documented_zookeeper_group_needs_its_port_and_its_script() {
    let docs = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"),
    )
    .unwrap();
    let start = docs
        .find("modules:\n  zk_ruok:                      # the exec module")
        .expect("the ZooKeeper group of docs/configuration.md");
    let example = &docs[start..start + docs[start..].find("```").unwrap()];
    let dir = TempDir::new("exec-zookeeper");
    let healthy = dir.join("healthy");
    // Passes while the flag file exists, and only for the host and port
    // the placeholders give it.
    let check = dir.script(
        "zk-health-check.sh",
        &format!(
            "[ \"$1 $2 $3\" = \"--host 127.0.0.1 --port\" ] || exit 3\n\
             [ \"$4\" = \"$SYNACK_TARGET_PORT\" ] || exit 4\n\
             test -f {}\n",
            healthy.display()
        ),
    );
    let (listener, port) = common::open_port();
    listener.set_nonblocking(true).unwrap();
    let config = example
        .replace(
            "/usr/local/bin/zk-health-check.sh",
            &check.display().to_string(),
        )
        .replace("127.0.0.1:2181", &format!("127.0.0.1:{port}"));
    assert_ne!(config, example, "the test put its own script and port in");
    let exporter = TestExporter::with_config(&config, Exporter::builder()).await;
    // Past the group's min_interval (1 s by default), a request gets a new round.
    let next_round = || tokio::time::sleep(Duration::from_millis(1100));

    std::fs::write(&healthy, "").unwrap();
    let response = exporter.get("/health/zookeeper").await;
    assert_eq!((response.status, response.body.as_str()), (200, "OK\n"));

    std::fs::remove_file(&healthy).unwrap();
    next_round().await;
    let response = exporter.get("/health/zookeeper").await;
    assert_eq!(
        (response.status, response.body),
        (503, format!("zk_ruok 127.0.0.1:{port} check_failed\n")),
        "the port is open but the script says no"
    );

    assert_eq!(
        listener.accept().map_err(|error| error.kind()).err(),
        Some(std::io::ErrorKind::WouldBlock),
        "the half-open member never completed a connection"
    );
    std::fs::write(&healthy, "").unwrap();
    drop(listener);
    next_round().await;
    let response = exporter.get("/health/zookeeper").await;
    assert_eq!(
        (response.status, response.body),
        (503, format!("tcp_halfopen 127.0.0.1:{port} refused\n")),
        "the script passes but nothing listens on the port"
    );
}
