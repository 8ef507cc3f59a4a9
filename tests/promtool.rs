//! The Prometheus examples checked with the real `promtool` (Debian package
//! `prometheus`): `examples/prometheus.yml` is a valid config whose rule
//! file and file_sd targets load, `examples/alerts.yml` holds valid rules,
//! and `examples/alerts_test.yml`, their unit tests, pass. And the
//! Alertmanager example with the real `amtool` (Debian package
//! `prometheus-alertmanager`): `examples/alertmanager.yml` is a valid
//! config that routes each severity to its receiver. Its inhibit rules are
//! checked with a real Alertmanager in tests/e2e_prometheus.rs.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long one promtool or amtool command may run before it is killed.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

const PROMTOOL: Tool = Tool {
    name: "promtool",
    package: "prometheus",
};
const AMTOOL: Tool = Tool {
    name: "amtool",
    package: "prometheus-alertmanager",
};

/// A command-line tool from a Debian package.
struct Tool {
    name: &'static str,
    package: &'static str,
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

impl Tool {
    /// Whether the tool runs; skips (or fails under
    /// `SYNACK_SYSTEM_TESTS=require`) when it is missing.
    fn available(&self) -> bool {
        match Command::new(self.name)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Ok(_) => true,
            Err(_) => {
                common::skip_or_fail(&format!("{} (Debian package {})", self.name, self.package));
                false
            }
        }
    }

    /// Runs the tool with `args` in `examples/` and asserts it succeeds,
    /// showing its output either way; returns its standard output.
    fn run(&self, args: &[&str]) -> String {
        let mut child = Command::new(self.name)
            .args(args)
            .current_dir(examples())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("start {}: {error}", self.name));
        let stdout = read_all(child.stdout.take().expect("stdout piped"));
        let stderr = read_all(child.stderr.take().expect("stderr piped"));
        let status = wait_bounded(&mut child);
        let stdout = stdout.join().unwrap_or_default();
        let output = format!(
            "$ {} {}\n--- stdout\n{stdout}--- stderr\n{}",
            self.name,
            args.join(" "),
            stderr.join().unwrap_or_default()
        );
        println!("{output}");
        let status = status.unwrap_or_else(|| {
            panic!(
                "{} ran longer than {COMMAND_LIMIT:?} and was killed\n{output}",
                self.name
            )
        });
        assert!(
            status.success(),
            "{} failed ({status})\n{output}",
            self.name
        );
        stdout
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
        if let Some(status) = child.try_wait().expect("wait for the tool") {
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

fn example(name: &str) -> String {
    examples()
        .join(name)
        .to_str()
        .expect("UTF-8 path")
        .to_owned()
}

#[test]
fn prometheus_config_passes_promtool_check_config() {
    if !PROMTOOL.available() {
        return;
    }
    PROMTOOL.run(&["check", "config", &example("prometheus.yml")]);
}

#[test]
fn alert_rules_pass_promtool_check_rules() {
    if !PROMTOOL.available() {
        return;
    }
    PROMTOOL.run(&["check", "rules", &example("alerts.yml")]);
}

#[test]
fn alert_rule_unit_tests_pass_promtool_test_rules() {
    if !PROMTOOL.available() {
        return;
    }
    PROMTOOL.run(&["test", "rules", &example("alerts_test.yml")]);
}

#[test]
fn alertmanager_config_passes_amtool_check_config() {
    if !AMTOOL.available() {
        return;
    }
    AMTOOL.run(&["check-config", &example("alertmanager.yml")]);
}

/// Critical alerts page, warnings go to tickets: what README and the
/// comments of examples/alertmanager.yml promise. `--verify.receivers`
/// makes amtool fail when the route leads elsewhere.
#[test]
fn alertmanager_routes_each_severity_to_its_receiver() {
    if !AMTOOL.available() {
        return;
    }
    let config = format!("--config.file={}", example("alertmanager.yml"));
    for (labels, receiver) in [
        (
            ["alertname=SynackTargetDown", "severity=critical"],
            "synack-page",
        ),
        (
            ["alertname=SynackExporterDown", "severity=critical"],
            "synack-page",
        ),
        (
            ["alertname=SynackTargetRefusing", "severity=warning"],
            "synack-ticket",
        ),
    ] {
        let verify = format!("--verify.receivers={receiver}");
        let mut args = vec!["config", "routes", "test", config.as_str(), verify.as_str()];
        args.extend(labels);
        let routed = AMTOOL.run(&args);
        assert_eq!(routed.trim(), receiver, "{labels:?}");
    }
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
    assert!(config.contains("targets: [alertmanager:9093]"));
    assert!(
        examples().join("targets/synack_targets.yml").is_file(),
        "the file_sd example targets file is missing"
    );
}
