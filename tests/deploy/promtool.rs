//! The Prometheus examples checked with the real `promtool` (Debian package
//! `prometheus`): `examples/prometheus.yml` is a valid config whose rule
//! file and file_sd targets load, `examples/alerts.yml` holds valid rules,
//! and `examples/alerts_test.yml`, their unit tests, pass. And the
//! Alertmanager example with the real `amtool` (Debian package
//! `prometheus-alertmanager`): `examples/alertmanager.yml` is a valid
//! config that routes each severity to its receiver. Its inhibit rules are
//! checked with a real Alertmanager in tests/e2e/main.rs.

use super::{COMMAND_LIMIT, repo_path};
use crate::common;
use std::path::{Path, PathBuf};
use std::process::Command;

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
    repo_path("examples")
}

impl Tool {
    /// Whether the tool runs; skips (or fails under
    /// `SYNACK_SYSTEM_TESTS=require`) when it is missing.
    fn available(&self) -> bool {
        match common::run_bounded(
            Command::new(self.name).arg("--version"),
            None,
            COMMAND_LIMIT,
        ) {
            Ok(_) => true,
            Err(_) => {
                common::skip_or_fail(&format!("{} (Debian package {})", self.name, self.package));
                false
            }
        }
    }

    /// [`Tool::run`], when the tool is [`Tool::available`].
    fn check(&self, args: &[&str]) {
        if self.available() {
            self.run(args);
        }
    }

    /// Runs the tool with `args` in `examples/` and asserts it succeeds,
    /// showing its output either way; returns its standard output.
    fn run(&self, args: &[&str]) -> String {
        self.run_in(&examples(), args)
    }

    /// [`Tool::run`] in `dir`.
    fn run_in(&self, dir: &Path, args: &[&str]) -> String {
        let shown = format!("$ {} {}", self.name, args.join(" "));
        let finished = common::run_bounded(
            Command::new(self.name).args(args).current_dir(dir),
            None,
            COMMAND_LIMIT,
        )
        .unwrap_or_else(|error| panic!("{shown}: {error}"));
        let output = format!(
            "{shown}\n--- stdout\n{}--- stderr\n{}",
            finished.stdout, finished.stderr
        );
        println!("{output}");
        assert!(
            finished.success(),
            "{} failed ({})\n{output}",
            self.name,
            finished.status
        );
        finished.stdout
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
    PROMTOOL.check(&["check", "config", &example("prometheus.yml")]);
}

#[test]
fn alert_rules_pass_promtool_check_rules() {
    PROMTOOL.check(&["check", "rules", &example("alerts.yml")]);
}

#[test]
fn alert_rule_unit_tests_pass_promtool_test_rules() {
    PROMTOOL.check(&["test", "rules", &example("alerts_test.yml")]);
}

#[test]
fn alertmanager_config_passes_amtool_check_config() {
    AMTOOL.check(&["check-config", &example("alertmanager.yml")]);
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
        (
            ["alertname=SynackCertificateInvalid", "severity=critical"],
            "synack-page",
        ),
        (
            ["alertname=SynackPortOpen", "severity=critical"],
            "synack-page",
        ),
        (
            [
                "alertname=SynackCertificateExpiringSoon",
                "severity=warning",
            ],
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
    let text = std::fs::read_to_string(examples().join("prometheus.yml")).expect("read config");
    // Only the config's content counts, not what a comment mentions.
    let config: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .map(|line| format!("{line}\n"))
        .collect();
    for job in ["synack_probe", "synack_probe_file_sd", "synack_exporter"] {
        assert!(
            config.contains(&format!("- job_name: {job}\n")),
            "examples/prometheus.yml lacks job {job}"
        );
    }
    assert!(config.contains("synack-exporter:9215"));
    assert!(config.contains("__param_target"));
    assert!(config.contains("- alerts.yml"));
    assert!(config.contains("targets: [alertmanager:9093]"));
    assert!(
        examples().join("targets/synack_targets.yml").is_file(),
        "the file_sd example targets file is missing"
    );
}

/// examples/prometheus.yml offers a job that shards /probe targets with
/// hashmod as a comment to uncomment. Uncommented and added to the
/// scrape configs, it is a job with a hashmod relabeling, and promtool
/// accepts the config.
#[test]
fn the_commented_out_sharding_job_passes_promtool_check_config() {
    if !PROMTOOL.available() {
        return;
    }
    let text = std::fs::read_to_string(examples().join("prometheus.yml")).expect("read config");
    let first = "  # - job_name: synack_probe_sharded";
    let start = text
        .lines()
        .position(|line| line == first)
        .unwrap_or_else(|| panic!("examples/prometheus.yml has no line {first:?}"));
    let job: Vec<String> = text
        .lines()
        .skip(start)
        .take_while(|line| line.starts_with("  # "))
        .map(|line| line.replacen("# ", "", 1))
        .collect();
    // scrape_configs is the file's last section: the job lands in it.
    let config = format!("{text}\n{}\n", job.join("\n"));
    let parsed: serde_json::Value = serde_saphyr::from_str(&config)
        .unwrap_or_else(|error| panic!("the uncommented job is not YAML: {error}\n{config}"));
    let sharded = parsed["scrape_configs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|scrape| scrape["job_name"] == "synack_probe_sharded")
        .unwrap_or_else(|| panic!("the uncommented job is no scrape config:\n{config}"));
    assert!(
        sharded["relabel_configs"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|rule| rule["action"] == "hashmod"),
        "the sharding job has no hashmod relabeling: {sharded}"
    );

    // Beside the files it names, as in examples/.
    let dir = common::TempDir::new("sharded-prometheus");
    dir.write("prometheus.yml", &config);
    for file in ["alerts.yml", "targets/synack_targets.yml"] {
        let to = dir.join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(examples().join(file), &to)
            .unwrap_or_else(|error| panic!("copy examples/{file}: {error}"));
    }
    PROMTOOL.run_in(dir.path(), &["check", "config", "prometheus.yml"]);
}
