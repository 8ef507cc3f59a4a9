//! End to end with a real Prometheus and Alertmanager (Debian's packages
//! `prometheus` and `prometheus-alertmanager`): the exporter binary probes
//! an open and a closed loopback port, both through `/probe` and as
//! scheduled targets, and a loopback TLS server as a scheduled target of
//! a `prober: tcp` module with `tls: true`. Prometheus scrapes it with a
//! config derived from `examples/prometheus.yml` and `examples/targets/`,
//! and evaluates `examples/alerts.yml`; Alertmanager, configured from
//! `examples/alertmanager.yml`, notifies a webhook receiver the test runs.
//! Through their HTTP APIs and the webhook the test checks the scrapes and
//! their URLs, the probe results, every PromQL expression of
//! `dashboards/synack_exporter.json`, the alerts, their routes and the
//! inhibit rules, and then an outage of the exporter: killed while its
//! targets are down and paged, it must page once (SynackExporterDown) and
//! send no resolved notification for the targets that are still down, nor
//! when it comes back on the same address.

//!
//! Its support, one module each: the configs it derives from the examples,
//! the processes and loopback ports it runs, the dashboard's queries, and a
//! minimal HTTP client.

#[path = "../common/mod.rs"]
mod common;

pub mod blackbox;
pub mod configs;
pub mod dashboard;
pub mod http;
pub mod processes;

use common::TempDir;

use configs::{ProbeTarget, TestAddresses, TlsTarget};
use dashboard::items;
use processes::{Delivery, Exporter, OpenPort, Server, TlsServer, Webhook, find_binary};
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The jobs of examples/prometheus.yml.
const JOB_PROBE_STATIC: &str = "synack_probe";
const JOB_PROBE_FILE_SD: &str = "synack_probe_file_sd";
const JOB_EXPORTER: &str = "synack_exporter";
const PROBE_JOBS: [&str; 2] = [JOB_PROBE_STATIC, JOB_PROBE_FILE_SD];
const ALL_JOBS: [&str; 3] = [JOB_PROBE_STATIC, JOB_PROBE_FILE_SD, JOB_EXPORTER];
/// The receiver examples/alertmanager.yml routes `severity="critical"` to.
const PAGING_RECEIVER: &str = "synack-page";

/// How long all the polling may take together: Prometheus scraping and
/// evaluating, Alertmanager notifying, then the same after the exporter
/// died and again after it came back. The alerts' `for:` are the examples'
/// divided by 15 (see tests/e2e/configs.rs): 8 s for 2m, 20 s for 5m.
const POLL_DEADLINE: Duration = Duration::from_secs(150);
/// How long the outage is watched once SynackExporterDown has paged, and
/// how long after it resolved: longer than SynackTargetDown's `for:` (8 s
/// here), so that a target alert that resolved when the series went away
/// and fired again would have been seen doing both. With the rules before
/// issue 18, the resolved notifications came 2 to 3 s after the kill.
const OUTAGE_WATCH: Duration = Duration::from_secs(12);
// The TLS server accepts a bounded number of connections, and the exporter
// makes one a second to it: enough for the longest run that can pass.
const _: () = assert!(
    POLL_DEADLINE.as_secs() + 2 * OUTAGE_WATCH.as_secs() + 10
        < common::ports::SERVE_CONNECTIONS as u64
);

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read_dashboard() -> Value {
    let path = repo_path("dashboards/synack_exporter.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

#[test]
fn exporter_prometheus_alertmanager_and_webhook_work_as_a_chain() {
    let Some(binaries) = Binaries::find() else {
        return;
    };
    let mut chain = Chain::start(&binaries);
    let deadline = Instant::now() + POLL_DEADLINE;
    chain.poll_until(
        deadline,
        "scrapes, dashboard, alerts and notifications",
        Chain::steady_state_failures,
    );
    chain.assert_open_port_never_notified();
    chain.poll_until(
        deadline,
        "every SynackTargetDown that fires has paged",
        Chain::unpaged_target_alerts,
    );

    // The outage: the exporter dies while its targets are down and paged.
    let before_outage = chain.webhook.deliveries().len();
    chain.exporter.stop();
    chain.poll_until(
        deadline,
        "SynackExporterDown pages",
        Chain::exporter_paged_failures,
    );
    chain.watch(OUTAGE_WATCH);
    chain.assert_outage_notifications(before_outage, &[("SynackExporterDown", "firing")]);
    chain.poll_until(
        deadline,
        "SynackExporterDown mutes the alerts of what it probes",
        Chain::exporter_down_failures,
    );

    // It comes back on the same address, and the targets are still down.
    chain.restart_exporter();
    chain.poll_until(
        deadline,
        "SynackExporterDown resolves when the exporter is back, which probes the TLS target",
        Chain::exporter_back_failures,
    );
    chain.watch(OUTAGE_WATCH);
    chain.assert_outage_notifications(
        before_outage,
        &[
            ("SynackExporterDown", "firing"),
            ("SynackExporterDown", "resolved"),
        ],
    );
    chain.assert_open_port_never_notified();
    chain.finish();
}

/// The dashboard is importable: current schema, a datasource variable used
/// by every panel and query, the variables and panel types the issue asks for.
#[test]
fn dashboard_is_importable_and_uses_the_datasource_variable() {
    let dashboard = read_dashboard();
    let schema = dashboard["schemaVersion"].as_f64();
    assert!(
        schema.is_some_and(|version| version >= 39.0),
        "schemaVersion {schema:?} < 39"
    );
    assert!(dashboard["uid"].is_string(), "the dashboard has no uid");
    let variables = dashboard::variables(&dashboard);
    let variable = |name: &str| variables.iter().find(|variable| variable["name"] == name);
    let datasource = variable("datasource").expect("a `datasource` variable");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    for name in ["job", "instance", "target", "module"] {
        let variable = variable(name).unwrap_or_else(|| panic!("a `{name}` variable"));
        assert_eq!(variable["type"], "query");
        assert_uses_datasource_variable(variable, &format!("variable {name}"));
    }

    let mut types = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for panel in dashboard::all_panels(&dashboard) {
        let kind = panel["type"].as_str().unwrap_or("");
        let title = panel["title"].as_str().unwrap_or("");
        let id = panel["id"].as_i64().expect("every panel has an id");
        assert!(ids.insert(id), "panel id {id} is used twice");
        assert!(panel.get("gridPos").is_some(), "{title}: no gridPos");
        types.insert(kind.to_owned());
        if kind == "row" {
            continue;
        }
        assert_uses_datasource_variable(panel, title);
        let targets = items(&panel["targets"]);
        assert!(!targets.is_empty(), "{title}: no queries");
        for target in targets {
            assert_uses_datasource_variable(target, title);
            assert!(target["expr"].is_string(), "{title}: a target without expr");
        }
    }
    for kind in ["stat", "table", "timeseries", "heatmap", "state-timeline"] {
        assert!(types.contains(kind), "no {kind} panel: {types:?}");
    }

    let exprs: Vec<String> = dashboard::expressions(&dashboard)
        .into_iter()
        .map(|(_, expr)| expr)
        .collect();
    for needle in [
        "histogram_quantile(",
        "probe_tcp_handshake_latency_seconds_bucket",
        "probe_healthy",
        "probe_failure_reason",
        "probe_success",
        "synack_exporter_probes_total",
        "synack_exporter_probes_in_flight",
        "synack_exporter_config_last_reload_successful",
        "synack_exporter_schedule_lag_seconds",
        "synack_exporter_halfopen_close_delay_seconds_bucket",
        "synack_exporter_halfopen_late_closes_total",
        "probe_tcp_rtt_seconds",
        "probe_tcp_syn_retransmits_total",
        "result=\"local\"",
        "probe_attempts_failed_total",
        "sum_over_time(probe_attempts_failed{",
        "probe_ssl_earliest_cert_expiry",
    ] {
        assert!(
            exprs.iter().any(|expr| expr.contains(needle)),
            "no dashboard query uses {needle}"
        );
    }
}

/// The stat panels count what the alerts count: a scheduled target that
/// has not been probed yet (`probe_last_probe_timestamp_seconds` 0, with
/// `probe_success` and `probe_healthy` 0 until then) is neither down nor
/// unhealthy. Run by the real PromQL engine: `promtool test rules`, with
/// every variable at "All".
#[test]
fn dashboard_counts_only_probed_targets_as_down() {
    let Some(promtool) = find_binary("promtool") else {
        common::skip_or_fail("promtool (Debian package prometheus)");
        return;
    };
    let dashboard = read_dashboard();
    let all_values = dashboard::all_selected();
    let query = |title: &str| {
        let expr = dashboard::panel_query(&dashboard, title)
            .unwrap_or_else(|| panic!("no panel {title:?} with one query"));
        dashboard::substitute(expr, &all_values).unwrap_or_else(|error| panic!("{title}: {error}"))
    };
    let exporter = r#"job="synack_exporter",instance="synack-exporter:9215",module="tcp_halfopen""#;
    let mut series = vec![
        // /probe: one failing, one succeeding.
        (
            r#"probe_success{job="synack_probe",instance="db1:5432"}"#.to_owned(),
            "0x3",
        ),
        (
            r#"probe_success{job="synack_probe",instance="db2:5432"}"#.to_owned(),
            "1x3",
        ),
    ];
    // Scheduled: probed and failing, not probed yet, probed and healthy.
    for (target, success, healthy, probed_at) in [
        ("db3:5432", "0x3", "0x3", "60+60x3"),
        ("db4:5432", "0x3", "0x3", "0x3"),
        ("web1:443", "1x3", "1x3", "60+60x3"),
    ] {
        let labels = format!(r#"{exporter},target="{target}""#);
        series.push((format!("probe_success{{{labels}}}"), success));
        series.push((format!("probe_healthy{{{labels}}}"), healthy));
        series.push((
            format!("probe_last_probe_timestamp_seconds{{{labels}}}"),
            probed_at,
        ));
    }
    let input_series: Vec<Value> = series
        .iter()
        .map(|(series, values)| serde_json::json!({"series": series, "values": values}))
        .collect();
    let count = |title: &str, want: u32| {
        serde_json::json!({
            "expr": query(title),
            "eval_time": "2m",
            "exp_samples": [{"labels": "{}", "value": want}],
        })
    };
    run_promql_tests(
        &promtool,
        &input_series,
        &[
            count("Targets down", 2),
            count("Scheduled targets unhealthy", 1),
            count("Targets up", 2),
        ],
    );
}

/// "Days to certificate expiry" shows, per target of `/probe` and
/// scheduled alike, the days left before its earliest certificate
/// expires, soonest first and negative once expired. Run by the real
/// PromQL engine, with every variable at "All".
#[test]
fn dashboard_shows_days_to_certificate_expiry_per_target() {
    let Some(promtool) = find_binary("promtool") else {
        common::skip_or_fail("promtool (Debian package prometheus)");
        return;
    };
    let dashboard = read_dashboard();
    let title = "Days to certificate expiry";
    let expr = dashboard::panel_query(&dashboard, title)
        .unwrap_or_else(|| panic!("no panel {title:?} with one query"));
    let expr = dashboard::substitute(expr, &dashboard::all_selected())
        .unwrap_or_else(|error| panic!("{title}: {error}"));
    let probe = r#"job="synack_probe_tls",instance="mail.example.org:465""#;
    let scheduled = r#"job="synack_exporter",instance="synack-exporter:9215",module="tls_connect",target="ldap.example.org:636""#;
    // At the evaluation time, 2m, time() is 120: these expire 10 days
    // later, and 1.5 days earlier.
    let input_series = [
        serde_json::json!({
            "series": format!("probe_ssl_earliest_cert_expiry{{{probe}}}"),
            "values": "864120x3",
        }),
        serde_json::json!({
            "series": format!("probe_ssl_earliest_cert_expiry{{{scheduled}}}"),
            "values": "-129480x3",
        }),
    ];
    run_promql_tests(
        &promtool,
        &input_series,
        &[serde_json::json!({
            "expr": expr,
            "eval_time": "2m",
            "exp_samples": [
                {"labels": format!("{{{scheduled}}}"), "value": -1.5},
                {"labels": format!("{{{probe}}}"), "value": 10},
            ],
        })],
    );
}

/// Runs `promql_expr_test` cases over `input_series` (one a minute) with
/// `promtool test rules`, and asserts they pass.
fn run_promql_tests(promtool: &Path, input_series: &[Value], cases: &[Value]) {
    let tests = serde_json::json!({
        "rule_files": ["no_rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": input_series,
            "promql_expr_test": cases,
        }],
    });
    let dir = TempDir::new("dashboard-promql");
    dir.write("no_rules.yml", "groups: []\n");
    configs::write_json(&dir.join("dashboard_test.yml"), &tests);
    let finished = common::run_within(
        std::process::Command::new(promtool)
            .args(["test", "rules", "dashboard_test.yml"])
            .current_dir(dir.path()),
        Duration::from_secs(60),
    );
    assert!(
        finished.success(),
        "promtool test rules ({}):\n{}{}\nthe test file:\n{tests:#}",
        finished.status,
        finished.stdout,
        finished.stderr
    );
}

fn assert_uses_datasource_variable(object: &Value, what: &str) {
    let datasource = object
        .get("datasource")
        .unwrap_or_else(|| panic!("{what}: no datasource"));
    assert_eq!(datasource["uid"], "${datasource}", "{what}: datasource");
    assert_eq!(datasource["type"], "prometheus", "{what}: datasource type");
}

// ---------------------------------------------------------------------------
// Starting the chain.

struct Binaries {
    prometheus: PathBuf,
    alertmanager: PathBuf,
}

impl Binaries {
    /// Both servers, or `None` after skipping (or failing under
    /// `SYNACK_SYSTEM_TESTS=require`) for the one that is missing.
    fn find() -> Option<Self> {
        let Some(prometheus) = find_binary("prometheus") else {
            common::skip_or_fail("prometheus (Debian package prometheus)");
            return None;
        };
        let Some(alertmanager) =
            find_binary("prometheus-alertmanager").or_else(|| find_binary("alertmanager"))
        else {
            common::skip_or_fail(
                "prometheus-alertmanager (Debian package prometheus-alertmanager)",
            );
            return None;
        };
        Some(Self {
            prometheus,
            alertmanager,
        })
    }
}

/// Everything the test runs, the `/probe` targets it expects, and the
/// dashboard whose queries it runs.
struct Chain {
    open: String,
    closed: String,
    /// The scheduled TLS target, whose certificate the dashboard shows.
    tls: TlsTarget,
    probe_targets: Vec<ProbeTarget>,
    dashboard: Value,
    prometheus: Server,
    alertmanager: Server,
    webhook: Webhook,
    exporter: Exporter,
    /// Where Prometheus scrapes the exporter, also after a restart.
    exporter_address: SocketAddr,
    _open_port: OpenPort,
    _tls_server: TlsServer,
    /// Configs and logs; removed on drop, after the processes (fields drop
    /// in order), also when the test fails.
    dir: TempDir,
}

impl Chain {
    fn start(binaries: &Binaries) -> Self {
        let dir = TempDir::new("e2e-prometheus");
        let open_port = OpenPort::start();
        let (open, closed) = (
            open_port.address.to_string(),
            common::closed_port().to_string(),
        );
        let targets = [open.clone(), closed.clone()];
        let tls_server = TlsServer::start();
        let tls = TlsTarget {
            address: tls_server.address.to_string(),
            ca_file: dir.write("ca.pem", &tls_server.pem),
        };
        let exporter = start_exporter(dir.path(), &targets, &tls, None);
        let webhook = Webhook::start();
        let alertmanager = start_alertmanager(&binaries.alertmanager, dir.path(), webhook.address);
        let addresses = TestAddresses {
            exporter: exporter.address,
            alertmanager: alertmanager.address,
            targets: &targets,
        };
        let prometheus_dir = dir.join("prometheus");
        let probe_targets = write_prometheus_files(&prometheus_dir, &addresses);
        let prometheus = start_prometheus(&binaries.prometheus, dir.path(), &prometheus_dir);
        Self {
            open,
            closed,
            tls,
            probe_targets,
            dashboard: read_dashboard(),
            prometheus,
            alertmanager,
            webhook,
            exporter_address: exporter.address,
            exporter,
            _open_port: open_port,
            _tls_server: tls_server,
            dir,
        }
    }

    /// Runs `failures_now` once a second until it finds nothing wrong;
    /// panics with what it found and the servers' logs at `deadline`.
    fn poll_until(
        &mut self,
        deadline: Instant,
        goal: &str,
        failures_now: fn(&Self) -> Vec<String>,
    ) {
        let started = Instant::now();
        for round in 1.. {
            self.assert_servers_running();
            let failures = failures_now(self);
            if failures.is_empty() {
                eprintln!(
                    "{goal}: passed after {:.1} s ({round} rounds)",
                    started.elapsed().as_secs_f64()
                );
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{goal}: still failing at the deadline ({round} rounds):\n  {}\n\n{}",
                    failures.join("\n  "),
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    fn assert_servers_running(&mut self) {
        for (name, server) in [
            ("prometheus", &mut self.prometheus),
            ("alertmanager", &mut self.alertmanager),
        ] {
            if let Some(status) = server.exited() {
                panic!("{name} exited ({status}); its log:\n{}", server.log());
            }
        }
    }

    fn diagnostics(&self) -> String {
        let notifications: Vec<String> = self
            .webhook
            .deliveries()
            .iter()
            .map(|delivery| format!("{}: {}", delivery.receiver, tail(&delivery.body, 5)))
            .collect();
        format!(
            "prometheus log (tail):\n{}\n\nalertmanager log (tail):\n{}\n\n\
             exporter log (tail):\n{}\n\nwebhook notifications:\n{}\n\n\
             (the files in {} are removed when the test ends)",
            tail(&self.prometheus.log(), 40),
            tail(&self.alertmanager.log(), 40),
            tail(&self.exporter.log(), 40),
            notifications.join("\n"),
            self.dir.path().display()
        )
    }

    /// Stops everything and removes the test's files.
    fn finish(self) {
        drop(self);
    }

    /// While the exporter runs: everything scraped and evaluated, the
    /// closed port paged and its reason-specific warning inhibited.
    fn steady_state_failures(&self) -> Vec<String> {
        let api = self.prometheus.address;
        let mut failures = Vec::new();
        check_targets(api, &mut failures);
        check_scrape_urls(
            api,
            &self.probe_targets,
            self.exporter_address,
            &mut failures,
        );
        self.check_probe_results(&mut failures);
        // The queries need a few scrapes (rates), so run them once those pass.
        let scraped = failures.is_empty();
        check_rules(
            api,
            &[&self.open, &self.tls.address],
            &self.closed,
            &mut failures,
        );
        if scraped {
            self.check_dashboard(&mut failures);
        }
        // After the dashboard: a failing TLS probe must also show there,
        // as a certificate query without data.
        self.check_tls_results(&mut failures);
        let closed = self.closed.as_str();
        check_notified(
            &self.webhook.deliveries(),
            &format!("SynackTargetDown for {closed} with reason refused"),
            &ALL_JOBS,
            |alert| {
                let description = alert["annotations"]["description"].as_str().unwrap_or("");
                alert_name(alert) == "SynackTargetDown"
                    && names(alert, closed)
                    && description.contains(closed)
                    && description.contains("reason is refused.")
            },
            &mut failures,
        );
        check_inhibited(
            self.alertmanager.address,
            "SynackTargetRefusing",
            "SynackTargetDown",
            &ALL_JOBS,
            |alert| names(alert, closed),
            &mut failures,
        );
        // Every attempt to the closed port fails: lost, and muted as down.
        // /probe reports attempts for the module with several (tcp_connect).
        check_inhibited(
            self.alertmanager.address,
            "SynackPacketLoss",
            "SynackTargetDown",
            &[JOB_PROBE_FILE_SD, JOB_EXPORTER],
            |alert| names(alert, closed),
            &mut failures,
        );
        failures
    }

    /// After the exporter died: it is paged.
    fn exporter_paged_failures(&self) -> Vec<String> {
        let exporter = self.exporter_address.to_string();
        let mut failures = Vec::new();
        check_notified(
            &self.webhook.deliveries(),
            &format!("SynackExporterDown with exporter={exporter}"),
            &[JOB_EXPORTER],
            |alert| {
                alert_name(alert) == "SynackExporterDown"
                    && alert["labels"]["exporter"] == exporter.as_str()
            },
            &mut failures,
        );
        failures
    }

    /// While the exporter is down: the closed port's SynackTargetDown
    /// alerts still fire (the targets did not recover), muted by
    /// SynackExporterDown, the scheduled ones by job and instance, the
    /// /probe ones by the `exporter` label; and the failing /probe scrapes
    /// through it raise no SynackProbeScrapeFailing of their own.
    fn exporter_down_failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        check_inhibited(
            self.alertmanager.address,
            "SynackTargetDown",
            "SynackExporterDown",
            &ALL_JOBS,
            |alert| names(alert, &self.closed),
            &mut failures,
        );
        match prometheus_api(self.prometheus.address, "/api/v1/alerts") {
            Ok(data) => {
                let scrape_failing = items(&data["alerts"])
                    .iter()
                    .filter(|alert| alert_name(alert) == "SynackProbeScrapeFailing")
                    .count();
                if scrape_failing > 0 {
                    failures.push(format!(
                        "{scrape_failing} SynackProbeScrapeFailing (pending or firing) \
                         while the exporter itself is down"
                    ));
                }
            }
            Err(error) => failures.push(format!("alerts: {error}")),
        }
        failures
    }

    /// Before the outage: every SynackTargetDown of the closed port (one per
    /// series: each job, target group and module) fires and has paged, so
    /// what Alertmanager sends next is the outage's doing.
    fn unpaged_target_alerts(&self) -> Vec<String> {
        let firing = match firing_alerts(self.prometheus.address, "SynackTargetDown") {
            Ok(firing) => firing,
            Err(error) => return vec![error],
        };
        let notified = match notified_alerts(&self.webhook.deliveries()) {
            Ok(notified) => notified,
            Err(error) => return vec![error],
        };
        let mut failures = Vec::new();
        let expected: usize = ALL_JOBS
            .iter()
            .map(|job| self.expected_series(job, &self.closed))
            .sum();
        let closed = firing
            .iter()
            .filter(|alert| names(alert, &self.closed))
            .count();
        if closed != expected {
            failures.push(format!(
                "{closed} SynackTargetDown firing for the closed port {}, want {expected}",
                self.closed
            ));
        }
        for alert in &firing {
            let paged = notified.iter().any(|(receiver, notified)| {
                receiver == PAGING_RECEIVER
                    && notified["status"] == "firing"
                    && notified["labels"] == alert["labels"]
            });
            if !paged {
                failures.push(format!("not paged yet: {}", alert["labels"]));
            }
        }
        failures
    }

    /// After the outage: the exporter is scraped again, its page resolved,
    /// and the TLS target probed again.
    fn exporter_back_failures(&self) -> Vec<String> {
        let notified = match notified_alerts(&self.webhook.deliveries()) {
            Ok(notified) => notified,
            Err(error) => return vec![error],
        };
        let resolved = notified.iter().any(|(receiver, alert)| {
            receiver == PAGING_RECEIVER
                && alert_name(alert) == "SynackExporterDown"
                && alert["status"] == "resolved"
        });
        let mut failures = Vec::new();
        if !resolved {
            failures.push("no resolved notification of SynackExporterDown".to_owned());
        }
        // The restarted exporter probes the TLS target again.
        self.check_tls_results(&mut failures);
        failures
    }

    /// Lets `duration` pass, checking that the servers keep running.
    fn watch(&mut self, duration: Duration) {
        let end = Instant::now() + duration;
        while Instant::now() < end {
            self.assert_servers_running();
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// The notifications since delivery number `since` are exactly
    /// `expected`, `(alertname, status)` in order, all pages: one outage of
    /// the exporter pages once, and the targets that are still down get no
    /// resolved notification (nor a second page).
    fn assert_outage_notifications(&self, since: usize, expected: &[(&str, &str)]) {
        let deliveries = self.webhook.deliveries();
        let notified = notified_alerts(&deliveries[since..]).expect("notifications parse");
        let got: Vec<(&str, &str, &str)> = notified
            .iter()
            .map(|(receiver, alert)| {
                (
                    receiver.as_str(),
                    alert_name(alert),
                    alert["status"].as_str().unwrap_or("?"),
                )
            })
            .collect();
        let want: Vec<(&str, &str, &str)> = expected
            .iter()
            .map(|(name, status)| (PAGING_RECEIVER, *name, *status))
            .collect();
        if got != want {
            let listed: Vec<String> = notified
                .iter()
                .map(|(receiver, alert)| {
                    format!("{receiver}: {} {}", alert["status"], alert["labels"])
                })
                .collect();
            panic!(
                "an outage of the exporter must page once, with SynackExporterDown, and send \
                 no resolved notification for a target that is still down; since the kill, \
                 want (receiver, alert, status) {want:?}, got {} notified alerts:\n  {}\n\n\
                 Prometheus' alerts now: {}\n\n{}",
                listed.len(),
                listed.join("\n  "),
                prometheus_api(self.prometheus.address, "/api/v1/alerts")
                    .map_or_else(|error| error, |data| data.to_string()),
                self.diagnostics()
            );
        }
    }

    /// Starts the exporter again where Prometheus scrapes it, with the
    /// same config: the closed port is still closed, the TLS target kept.
    fn restart_exporter(&mut self) {
        let targets = [self.open.clone(), self.closed.clone()];
        self.exporter = start_exporter(
            self.dir.path(),
            &targets,
            &self.tls,
            Some(self.exporter_address),
        );
    }

    /// The open port and the TLS server never fail, and the certificate
    /// is valid for years, so no notification may name them.
    fn assert_open_port_never_notified(&self) {
        let notified = notified_alerts(&self.webhook.deliveries()).expect("notifications parse");
        for up in [&self.open, &self.tls.address] {
            let about_up: Vec<&str> = notified
                .iter()
                .filter(|(_, alert)| names(alert, up))
                .map(|(_, alert)| alert_name(alert))
                .collect();
            assert!(
                about_up.is_empty(),
                "notifications about {up}, which is up: {about_up:?}\n\n{}",
                self.diagnostics()
            );
        }
    }

    /// The series a job has for one probed address: a `/probe` target per
    /// target group listing it, a scheduled target per module probing it.
    fn expected_series(&self, job: &str, address: &str) -> usize {
        if job == JOB_EXPORTER {
            return if address == self.tls.address {
                1
            } else {
                configs::EXPORTER_MODULES.len()
            };
        }
        self.probe_targets
            .iter()
            .filter(|target| target.job == job && target.address == address)
            .count()
    }

    fn check_probe_results(&self, failures: &mut Vec<String>) {
        let (open, closed) = (self.open.as_str(), self.closed.as_str());
        self.check_results(
            &[
                ("probe_success", open, "1"),
                ("probe_success", closed, "0"),
                ("probe_failure_reason{reason=\"refused\"}", closed, "1"),
                ("probe_failure_reason{reason=\"refused\"}", open, "0"),
            ],
            &[(open, "1"), (closed, "0")],
            failures,
        );
    }

    /// The TLS target, scheduled only: its handshake succeeds.
    fn check_tls_results(&self, failures: &mut Vec<String>) {
        let tls = self.tls.address.as_str();
        self.check_results(
            &[
                ("probe_success", tls, "1"),
                ("probe_failure_reason{reason=\"tls\"}", tls, "0"),
            ],
            &[(tls, "1")],
            failures,
        );
    }

    /// Each `(query, address, value)` of `cases` has, in every job, the
    /// series [`Self::expected_series`] counts, all at `value`; and each
    /// `(address, value)` of `healthy` its scheduled `probe_healthy`.
    fn check_results(
        &self,
        cases: &[(&str, &str, &str)],
        healthy: &[(&str, &str)],
        failures: &mut Vec<String>,
    ) {
        let api = self.prometheus.address;
        for &(query, address, want) in cases {
            let result = match instant_query(api, query) {
                Ok(result) => result,
                Err(error) => {
                    failures.push(format!("{query}: {error}"));
                    continue;
                }
            };
            for job in ALL_JOBS {
                // /probe series name the port in `instance`, scheduled ones in `target`.
                let values: Vec<&str> = items(&result)
                    .iter()
                    .filter(|series| series["metric"]["job"] == job && names(series, address))
                    .filter_map(sample_value)
                    .collect();
                let expected = self.expected_series(job, address);
                if values.len() != expected || values.iter().any(|value| *value != want) {
                    failures.push(format!(
                        "{query} of {address} in job {job}: want {expected} series of {want}, \
                         got {values:?}"
                    ));
                }
            }
        }
        // The rise/fall state of the scheduled targets.
        for &(address, want) in healthy {
            let query = format!("probe_healthy{{job=\"{JOB_EXPORTER}\",target=\"{address}\"}}");
            match instant_query(api, &query) {
                Ok(result) => {
                    let values: Vec<&str> =
                        items(&result).iter().filter_map(sample_value).collect();
                    let expected = self.expected_series(JOB_EXPORTER, address);
                    if values.len() != expected || values.iter().any(|value| *value != want) {
                        failures.push(format!(
                            "{query}: want {expected} series of {want}, got {values:?}"
                        ));
                    }
                }
                Err(error) => failures.push(format!("{query}: {error}")),
            }
        }
    }

    /// Every query of the dashboard has data with all values selected, and
    /// runs with one of each; every variable query finds values.
    fn check_dashboard(&self, failures: &mut Vec<String>) {
        let api = self.prometheus.address;
        let exprs = dashboard::expressions(&self.dashboard);
        if exprs.is_empty() {
            failures.push("the dashboard has no queries".to_owned());
        }
        let exporter = self.exporter_address.to_string();
        let all_values = dashboard::all_selected();
        let concrete_values = dashboard::substitutions(&[
            ("job", JOB_EXPORTER),
            ("instance", &exporter),
            ("target", &self.closed),
            ("module", configs::DEFAULT_MODULE),
            ("exporter", &exporter),
        ]);
        for (where_, expr) in &exprs {
            check_expression(api, where_, expr, &all_values, true, failures);
            check_expression(api, where_, expr, &concrete_values, false, failures);
        }
        for (name, definition) in dashboard::variable_queries(&self.dashboard) {
            check_variable_query(api, &name, &definition, &all_values, failures);
        }
    }
}

/// The exporter with the test's config in `dir`; `at` adds a listen address
/// to its ephemeral one, so that a restart serves where Prometheus scrapes.
fn start_exporter(
    dir: &Path,
    targets: &[String],
    tls: &TlsTarget,
    at: Option<SocketAddr>,
) -> Exporter {
    let config = dir.join("synack.yml");
    configs::write_json(&config, &configs::exporter_config(targets, tls));
    let config = config.to_str().expect("UTF-8 path");
    match at {
        None => Exporter::start(&["--config.file", config]),
        Some(address) => Exporter::start(&[
            "--config.file",
            config,
            "--web.listen-address",
            &address.to_string(),
        ]),
    }
}

fn start_alertmanager(binary: &Path, dir: &Path, webhook: SocketAddr) -> Server {
    let example = configs::read_yaml(&repo_path("examples/alertmanager.yml"));
    let config = configs::derive_alertmanager_config(&example, webhook)
        .unwrap_or_else(|error| panic!("deriving from examples/alertmanager.yml: {error}"));
    let alertmanager_dir = dir.join("alertmanager");
    let config_path = alertmanager_dir.join("alertmanager.yml");
    configs::write_json(&config_path, &config);
    let args = [
        format!("--config.file={}", config_path.display()),
        format!("--storage.path={}", alertmanager_dir.join("data").display()),
        // Empty: no clustering, so nothing listens beyond loopback.
        "--cluster.listen-address=".to_owned(),
    ];
    Server::start("alertmanager", binary, &args, dir)
}

fn start_prometheus(binary: &Path, dir: &Path, prometheus_dir: &Path) -> Server {
    let args = [
        format!(
            "--config.file={}",
            prometheus_dir.join("prometheus.yml").display()
        ),
        format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
    ];
    Server::start("prometheus", binary, &args, dir)
}

/// Writes Prometheus' config, its rule files and its file_sd target files,
/// all derived from the examples, into `prometheus_dir`; returns the
/// `/probe` targets Prometheus should then scrape.
fn write_prometheus_files(prometheus_dir: &Path, addresses: &TestAddresses) -> Vec<ProbeTarget> {
    let examples = repo_path("examples");
    let example = configs::read_yaml(&examples.join("prometheus.yml"));
    let derived = configs::derive_prometheus_config(&example, addresses)
        .unwrap_or_else(|error| panic!("deriving from examples/prometheus.yml: {error}"));
    configs::write_json(&prometheus_dir.join("prometheus.yml"), &derived.config);
    for rule_file in items(&derived.config["rule_files"]) {
        let rule_file = rule_file.as_str().expect("rule_files holds paths");
        let example_rules = configs::read_yaml(&examples.join(rule_file));
        let rules = configs::derive_alert_rules(&example_rules, derived.time_scale)
            .unwrap_or_else(|error| panic!("deriving from examples/{rule_file}: {error}"));
        configs::write_json(&prometheus_dir.join(rule_file), &rules);
    }
    let mut probe_targets = derived.static_targets;
    for (job, pattern) in &derived.file_sd {
        probe_targets.extend(write_file_sd_targets(
            &examples,
            prometheus_dir,
            job,
            pattern,
            addresses.targets,
        ));
    }
    for job in PROBE_JOBS {
        assert!(
            probe_targets.iter().any(|target| target.job == job),
            "examples/prometheus.yml has no /probe targets in job {job}"
        );
    }
    assert!(
        probe_targets
            .iter()
            .any(|target| target.job == JOB_PROBE_FILE_SD
                && target.module != configs::DEFAULT_MODULE),
        "no file_sd target group of the examples sets __param_module, so the test \
         would not see that a group's module wins"
    );
    probe_targets
}

/// Derives the file_sd files of `job` from the example files that `pattern`
/// matches: same groups and labels, the test's targets.
fn write_file_sd_targets(
    examples: &Path,
    prometheus_dir: &Path,
    job: &str,
    pattern: &str,
    targets: &[String],
) -> Vec<ProbeTarget> {
    let files = configs::matching_files(examples, pattern)
        .unwrap_or_else(|error| panic!("job {job}: {error}"));
    assert!(
        !files.is_empty(),
        "job {job}: no example file matches {pattern}"
    );
    let mut probe_targets = Vec::new();
    for file in files {
        let example = configs::read_yaml(&examples.join(&file));
        let (groups, probed) = configs::derive_target_groups(job, &example, targets)
            .unwrap_or_else(|error| panic!("examples/{}: {error}", file.display()));
        configs::write_json(&prometheus_dir.join(&file), &groups);
        probe_targets.extend(probed);
    }
    probe_targets
}

// ---------------------------------------------------------------------------
// Checks against Prometheus' HTTP API. Each pushes what is not yet right.

fn check_targets(api: SocketAddr, failures: &mut Vec<String>) {
    let data = match prometheus_api(api, "/api/v1/targets?state=active") {
        Ok(data) => data,
        Err(error) => return failures.push(format!("targets: {error}")),
    };
    let mut jobs = BTreeSet::new();
    for target in items(&data["activeTargets"]) {
        let job = target["labels"]["job"].as_str().unwrap_or("?");
        let instance = target["labels"]["instance"].as_str().unwrap_or("?");
        jobs.insert(job.to_owned());
        let health = target["health"].as_str().unwrap_or("");
        let last_error = target["lastError"].as_str().unwrap_or("");
        if health != "up" || !last_error.is_empty() {
            failures.push(format!(
                "target {job}/{instance}: health {health:?}, lastError {last_error:?}"
            ));
        }
    }
    for job in ALL_JOBS {
        if !jobs.contains(job) {
            failures.push(format!("no active target of job {job} (jobs: {jobs:?})"));
        }
    }
}

/// Each `/probe` target is scraped with its own target and the module its
/// group asks for, and is labelled with the exporter that probes it.
fn check_scrape_urls(
    api: SocketAddr,
    expected: &[ProbeTarget],
    exporter: SocketAddr,
    failures: &mut Vec<String>,
) {
    let data = match prometheus_api(api, "/api/v1/targets?state=active") {
        Ok(data) => data,
        Err(error) => return failures.push(format!("targets: {error}")),
    };
    let active = items(&data["activeTargets"]);
    let exporter = exporter.to_string();
    for probe in expected {
        let what = format!(
            "job {} target {} of the group labelled {:?}",
            probe.job, probe.address, probe.labels
        );
        let scrapes: Vec<&Value> = active
            .iter()
            .filter(|target| is_scrape_of(target, probe))
            .collect();
        let [target] = scrapes.as_slice() else {
            failures.push(format!("{what}: {} active targets, want 1", scrapes.len()));
            continue;
        };
        let url = target["scrapeUrl"].as_str().unwrap_or("");
        let params = http::query_params(url);
        let param = |name: &str| {
            params
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        if param("module") != Some(probe.module.as_str()) || param("target") != Some(&probe.address)
        {
            failures.push(format!(
                "{what}: scrapeUrl {url}, want module={} and target={}",
                probe.module, probe.address
            ));
        }
        if target["labels"]["exporter"] != exporter.as_str() {
            failures.push(format!(
                "{what}: label exporter={}, want {exporter}: alertmanager.yml's inhibit \
                 rules match /probe targets to SynackExporterDown by it",
                target["labels"]["exporter"]
            ));
        }
    }
}

/// Whether an active target of Prometheus is `probe`: same job, instance
/// and group labels.
fn is_scrape_of(target: &Value, probe: &ProbeTarget) -> bool {
    let labels = &target["labels"];
    labels["job"] == probe.job.as_str()
        && labels["instance"] == probe.address.as_str()
        && probe
            .labels
            .iter()
            .all(|(name, value)| labels[name] == value.as_str())
}

/// `up` are the addresses that are never down, about which no alert may be.
fn check_rules(api: SocketAddr, up: &[&str], closed: &str, failures: &mut Vec<String>) {
    let data = match prometheus_api(api, "/api/v1/rules") {
        Ok(data) => data,
        Err(error) => return failures.push(format!("rules: {error}")),
    };
    let mut alerting = 0;
    for group in items(&data["groups"]) {
        let group_name = group["name"].as_str().unwrap_or("?");
        for rule in items(&group["rules"]) {
            let name = rule["name"].as_str().unwrap_or("?");
            if rule["type"] == "alerting" {
                alerting += 1;
            }
            let health = rule["health"].as_str().unwrap_or("");
            let last_error = rule["lastError"].as_str().unwrap_or("");
            if health != "ok" || !last_error.is_empty() {
                failures.push(format!(
                    "rule {group_name}/{name}: health {health:?}, lastError {last_error:?}"
                ));
            }
        }
    }
    if alerting == 0 {
        failures.push("no alerting rule loaded from alerts.yml".to_owned());
    }

    // The closed port raises an alert (pending or firing); the open port
    // and the TLS server none (SynackCertificateExpiringSoon included).
    let data = match prometheus_api(api, "/api/v1/alerts") {
        Ok(data) => data,
        Err(error) => return failures.push(format!("alerts: {error}")),
    };
    let about = |address: &str| -> Vec<&str> {
        items(&data["alerts"])
            .iter()
            .filter(|alert| names(alert, address))
            .map(alert_name)
            .collect()
    };
    if about(closed).is_empty() {
        failures.push(format!(
            "no alert (pending or firing) for the closed port {closed}"
        ));
    }
    for address in up {
        let for_up = about(address);
        if !for_up.is_empty() {
            failures.push(format!("alerts for {address}, which is up: {for_up:?}"));
        }
    }
}

fn check_expression(
    api: SocketAddr,
    where_: &str,
    expr: &str,
    values: &[(String, String)],
    want_data: bool,
    failures: &mut Vec<String>,
) {
    let query = match dashboard::substitute(expr, values) {
        Ok(query) => query,
        Err(error) => return failures.push(format!("dashboard {where_}: {error} in {expr}")),
    };
    match prometheus_api(
        api,
        &format!("/api/v1/query?query={}", http::url_encode(&query)),
    ) {
        Ok(data) if want_data && !has_data(&data) => {
            failures.push(format!("dashboard {where_}: no data for {query}"));
        }
        Ok(_) => {}
        Err(error) => failures.push(format!("dashboard {where_}: {error} for {query}")),
    }
}

/// `label_values(selector, label)` runs as `count by (label) (selector)`.
fn check_variable_query(
    api: SocketAddr,
    name: &str,
    definition: &str,
    values: &[(String, String)],
    failures: &mut Vec<String>,
) {
    let Some((selector, label)) = definition
        .strip_prefix("label_values(")
        .and_then(|rest| rest.strip_suffix(')'))
        .and_then(|inner| inner.rsplit_once(','))
    else {
        return failures.push(format!(
            "variable {name}: expected label_values(selector, label), got {definition}"
        ));
    };
    let label = label.trim();
    let query = format!("count by ({label}) ({})", selector.trim());
    let query = match dashboard::substitute(&query, values) {
        Ok(query) => query,
        Err(error) => return failures.push(format!("variable {name}: {error}")),
    };
    match instant_query(api, &query) {
        Ok(result) => {
            let with_label = items(&result)
                .iter()
                .filter(|series| series["metric"][label].is_string())
                .count();
            if with_label == 0 {
                failures.push(format!("variable {name}: no values from {query}"));
            }
        }
        Err(error) => failures.push(format!("variable {name}: {error} for {query}")),
    }
}

fn has_data(data: &Value) -> bool {
    match data["resultType"].as_str() {
        Some("vector") | Some("matrix") => !items(&data["result"]).is_empty(),
        _ => data.get("result").is_some(),
    }
}

fn sample_value(series: &Value) -> Option<&str> {
    series["value"][1].as_str()
}

/// The `data` of a successful Prometheus API answer, or why there is none.
fn prometheus_api(api: SocketAddr, path: &str) -> Result<Value, String> {
    let (status, body) = http::get(api, path)?;
    let json: Value =
        serde_json::from_str(&body).map_err(|error| format!("HTTP {status}, {error}: {body}"))?;
    if json["status"] != "success" {
        return Err(format!("HTTP {status}: {body}"));
    }
    json.get("data")
        .cloned()
        .ok_or_else(|| format!("no data: {body}"))
}

/// The alerts named `name` that Prometheus has firing (not pending).
fn firing_alerts(api: SocketAddr, name: &str) -> Result<Vec<Value>, String> {
    let data = prometheus_api(api, "/api/v1/alerts")?;
    Ok(items(&data["alerts"])
        .iter()
        .filter(|alert| alert_name(alert) == name && alert["state"] == "firing")
        .cloned()
        .collect())
}

/// The result array of an instant vector query.
fn instant_query(api: SocketAddr, query: &str) -> Result<Value, String> {
    let data = prometheus_api(
        api,
        &format!("/api/v1/query?query={}", http::url_encode(query)),
    )?;
    data.get("result")
        .cloned()
        .ok_or_else(|| "no result".to_owned())
}

// ---------------------------------------------------------------------------
// Checks of Alertmanager: its notifications and its API.

/// The alerts of the webhook's notifications, each with its receiver.
fn notified_alerts(deliveries: &[Delivery]) -> Result<Vec<(String, Value)>, String> {
    let mut alerts = Vec::new();
    for delivery in deliveries {
        let payload: Value = serde_json::from_str(&delivery.body).map_err(|error| {
            format!(
                "notification to {}: {error}: {}",
                delivery.receiver, delivery.body
            )
        })?;
        alerts.extend(
            items(&payload["alerts"])
                .iter()
                .map(|alert| (delivery.receiver.clone(), alert.clone())),
        );
    }
    Ok(alerts)
}

/// For every job in `jobs`, a firing alert that is `wanted` reached
/// [`PAGING_RECEIVER`].
fn check_notified(
    deliveries: &[Delivery],
    what: &str,
    jobs: &[&str],
    wanted: impl Fn(&Value) -> bool,
    failures: &mut Vec<String>,
) {
    let notified = match notified_alerts(deliveries) {
        Ok(notified) => notified,
        Err(error) => return failures.push(error),
    };
    for job in jobs {
        let paged = notified.iter().any(|(receiver, alert)| {
            receiver == PAGING_RECEIVER
                && alert["status"] == "firing"
                && alert["labels"]["job"] == *job
                && wanted(alert)
        });
        if !paged {
            failures.push(format!(
                "no notification of {what} from job {job} to {PAGING_RECEIVER}"
            ));
        }
    }
}

/// For every job in `jobs`, Alertmanager holds alerts named `target_name`
/// that are `about` what the test means, and every one is suppressed by an
/// inhibit rule whose source is an alert named `source_name`.
fn check_inhibited(
    alertmanager: SocketAddr,
    target_name: &str,
    source_name: &str,
    jobs: &[&str],
    about: impl Fn(&Value) -> bool,
    failures: &mut Vec<String>,
) {
    let alerts = match http::get_json(alertmanager, "/api/v2/alerts") {
        Ok(Value::Array(alerts)) => alerts,
        Ok(other) => return failures.push(format!("Alertmanager alerts: not a list: {other}")),
        Err(error) => return failures.push(format!("Alertmanager alerts: {error}")),
    };
    let sources: BTreeSet<&str> = alerts
        .iter()
        .filter(|alert| alert_name(alert) == source_name)
        .filter_map(|alert| alert["fingerprint"].as_str())
        .collect();
    for job in jobs {
        let targets: Vec<&Value> = alerts
            .iter()
            .filter(|alert| {
                alert_name(alert) == target_name && alert["labels"]["job"] == *job && about(alert)
            })
            .collect();
        if targets.is_empty() {
            failures.push(format!("Alertmanager has no {target_name} from job {job}"));
        }
        for alert in targets {
            let status = &alert["status"];
            let inhibited_by: Vec<&str> = items(&status["inhibitedBy"])
                .iter()
                .filter_map(Value::as_str)
                .collect();
            if status["state"] != "suppressed"
                || !inhibited_by.iter().any(|source| sources.contains(source))
            {
                failures.push(format!(
                    "{target_name} {} is {}, inhibited by {inhibited_by:?}, not by {source_name} {sources:?}",
                    alert["labels"], status["state"]
                ));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Reading alerts and series.

fn alert_name(alert: &Value) -> &str {
    alert["labels"]["alertname"].as_str().unwrap_or("?")
}

/// Whether an alert (its `labels`) or a series (its `metric`) has a label
/// whose value is `address`: `instance` for /probe, `target` for scheduled.
fn names(alert_or_series: &Value, address: &str) -> bool {
    ["labels", "metric"].iter().any(|key| {
        alert_or_series[key]
            .as_object()
            .is_some_and(|labels| labels.values().any(|value| value == address))
    })
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
