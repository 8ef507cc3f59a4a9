//! The Prometheus examples checked with the real `promtool` (Debian package
//! `prometheus`): `examples/prometheus.yml` is a valid config whose rule
//! file and file_sd targets load, `examples/alerts.yml` holds valid rules,
//! and `examples/alerts_test.yml`, their unit tests, pass.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long one promtool command may run before it is killed.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// Whether `promtool` runs; skips (or fails under
/// `SYNACK_SYSTEM_TESTS=require`) when it is missing.
fn promtool_available() -> bool {
    match Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => true,
        Err(_) => {
            common::skip_or_fail("promtool (Debian package prometheus)");
            false
        }
    }
}

fn read_all(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits for `child` at most [`COMMAND_LIMIT`], killing it after that.
fn wait_bounded(child: &mut Child) -> Option<ExitStatus> {
    let deadline = Instant::now() + COMMAND_LIMIT;
    loop {
        if let Some(status) = child.try_wait().expect("wait for promtool") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `promtool args...` in `examples/` and asserts it succeeds, showing
/// its output either way.
fn promtool(args: &[&str]) {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(examples())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    let stdout = read_all(child.stdout.take().expect("stdout piped"));
    let stderr = read_all(child.stderr.take().expect("stderr piped"));
    let status = wait_bounded(&mut child);
    let output = format!(
        "$ promtool {}\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        stdout.join().unwrap_or_default(),
        stderr.join().unwrap_or_default()
    );
    println!("{output}");
    let status = status.unwrap_or_else(|| {
        panic!("promtool ran longer than {COMMAND_LIMIT:?} and was killed\n{output}")
    });
    assert!(status.success(), "promtool failed ({status})\n{output}");
}

fn example(name: &str) -> String {
    examples()
        .join(name)
        .to_str()
        .expect("UTF-8 path")
        .to_owned()
}

#[test]
fn prometheus_config_passes_promtool_check_config() {
    if !promtool_available() {
        return;
    }
    promtool(&["check", "config", &example("prometheus.yml")]);
}

#[test]
fn alert_rules_pass_promtool_check_rules() {
    if !promtool_available() {
        return;
    }
    promtool(&["check", "rules", &example("alerts.yml")]);
}

#[test]
fn alert_rule_unit_tests_pass_promtool_test_rules() {
    if !promtool_available() {
        return;
    }
    promtool(&["test", "rules", &example("alerts_test.yml")]);
}

/// Other tests and the README rely on these names; promtool would accept
/// a config without them.
#[test]
fn prometheus_config_has_the_jobs_and_address_others_rely_on() {
    let config = std::fs::read_to_string(examples().join("prometheus.yml")).expect("read config");
    for job in ["synack_probe", "synack_probe_file_sd", "synack_exporter"] {
        assert!(
            config.contains(&format!("- job_name: {job}\n")),
            "examples/prometheus.yml lacks job {job}"
        );
    }
    assert!(config.contains("synack-exporter:9215"));
    assert!(config.contains("__param_target"));
    assert!(config.contains("action: hashmod"));
    assert!(config.contains("- alerts.yml"));
    assert!(
        examples().join("targets/synack_targets.yml").is_file(),
        "the file_sd example targets file is missing"
    );
}
