//! End to end with a real Prometheus (Debian's `prometheus` package): the
//! exporter binary probes an open and a closed loopback port, both through
//! `/probe` and as scheduled targets; Prometheus scrapes it with a config
//! derived from `examples/prometheus.yml` and loads `examples/alerts.yml`.
//! Through Prometheus' HTTP API the test checks the scrapes, the probe
//! results, every PromQL expression of `dashboards/synack_exporter.json` and
//! the alert rules.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_synack_exporter");
const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// The address examples/prometheus.yml uses for the exporter.
const EXAMPLE_EXPORTER: &str = "synack-exporter:9215";
/// The jobs of examples/prometheus.yml.
const JOB_PROBE_STATIC: &str = "synack_probe";
const JOB_PROBE_FILE_SD: &str = "synack_probe_file_sd";
const JOB_EXPORTER: &str = "synack_exporter";

/// How long Prometheus gets to scrape, evaluate and answer everything.
const POLL_DEADLINE: Duration = Duration::from_secs(60);

fn repo_path(relative: &str) -> PathBuf {
    Path::new(MANIFEST_DIR).join(relative)
}

#[test]
fn prometheus_scrapes_the_exporter_and_runs_the_dashboard_and_the_alerts() {
    let Some(prometheus) = find_prometheus() else {
        common::skip_or_fail("prometheus (Debian package prometheus)");
        return;
    };
    let examples = repo_path("examples");
    let example_config = read(&examples.join("prometheus.yml"));
    let dashboard = parse_json(&read(&repo_path("dashboards/synack_exporter.json")))
        .unwrap_or_else(|error| panic!("dashboards/synack_exporter.json: {error}"));

    let dir = common::temp_dir("e2e-prometheus");

    // An open port (accepted and dropped, for tcp_connect) and a closed one.
    let open = OpenPort::start();
    let closed = closed_port();
    let (open, closed) = (open.address.to_string(), closed.to_string());

    let exporter_config = dir.join("synack.yml");
    std::fs::write(
        &exporter_config,
        format!(
            "modules:\n  tcp_halfopen:\n    prober: tcp_halfopen\n    timeout: 2s\n  \
             tcp_connect:\n    prober: tcp_connect\n    timeout: 2s\n\
             targets:\n  - module: tcp_halfopen\n    interval: 1s\n    \
             targets: [\"{open}\", \"{closed}\"]\n    labels: {{service: e2e}}\n  \
             - module: tcp_connect\n    interval: 1s\n    \
             targets: [\"{open}\", \"{closed}\"]\n    labels: {{service: e2e}}\n"
        ),
    )
    .unwrap();
    let exporter = Exporter::start(&exporter_config);
    let exporter_address = exporter.address.to_string();

    // Prometheus' config, derived from the example.
    let derived = derive_prometheus_config(
        &example_config,
        &exporter_address,
        &[open.clone(), closed.clone()],
    )
    .unwrap_or_else(|error| panic!("deriving from examples/prometheus.yml: {error}"));
    let prometheus_dir = dir.join("prometheus");
    std::fs::create_dir_all(&prometheus_dir).unwrap();
    let config_path = prometheus_dir.join("prometheus.yml");
    std::fs::write(&config_path, &derived.config).unwrap();
    for glob in &derived.file_sd_globs {
        let file = prometheus_dir.join(file_sd_path_for(glob));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, format!("- targets: [\"{open}\", \"{closed}\"]\n")).unwrap();
    }
    std::fs::write(
        prometheus_dir.join("alerts.yml"),
        one_second_rule_groups(&read(&examples.join("alerts.yml"))),
    )
    .unwrap();
    eprintln!("derived Prometheus config:\n{}", derived.config);

    let mut prometheus = Prometheus::start(&prometheus, &config_path, &dir);
    let api = prometheus.address;

    let dashboard_exprs = dashboard_expressions(&dashboard);
    assert!(!dashboard_exprs.is_empty(), "the dashboard has no queries");
    let variable_queries = dashboard_variable_queries(&dashboard);
    let all_values = substitutions(&[
        ("job", ".*"),
        ("instance", ".*"),
        ("target", ".*"),
        ("module", ".*"),
        ("exporter", ".*"),
    ]);
    let concrete_values = substitutions(&[
        ("job", JOB_EXPORTER),
        ("instance", &exporter_address),
        ("target", &closed),
        ("module", "tcp_halfopen"),
        ("exporter", &exporter_address),
    ]);

    let started = Instant::now();
    let mut last_failures = Vec::new();
    let mut rounds = 0;
    while started.elapsed() < POLL_DEADLINE {
        rounds += 1;
        if let Some(status) = prometheus.exited() {
            panic!(
                "prometheus exited ({status}); its log:\n{}",
                prometheus.log()
            );
        }
        let mut failures = Vec::new();
        check_targets(api, &mut failures);
        check_probe_results(api, &open, &closed, &mut failures);
        // The queries need a few scrapes (rates), so run them once those pass.
        let scraped = failures.is_empty();
        check_rules(api, &open, &closed, &mut failures);
        if scraped {
            for (where_, expr) in &dashboard_exprs {
                check_expression(api, where_, expr, &all_values, true, &mut failures);
                check_expression(api, where_, expr, &concrete_values, false, &mut failures);
            }
            for (name, definition) in &variable_queries {
                check_variable_query(api, name, definition, &all_values, &mut failures);
            }
        }
        if failures.is_empty() {
            eprintln!(
                "all checks passed after {:.1} s ({rounds} rounds, {} dashboard queries, \
                 {} variable queries)",
                started.elapsed().as_secs_f64(),
                dashboard_exprs.len(),
                variable_queries.len()
            );
            drop(prometheus);
            drop(exporter);
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
        last_failures = failures;
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!(
        "after {POLL_DEADLINE:?} ({rounds} rounds) still failing:\n  {}\n\n\
         prometheus log (tail):\n{}\n\nexporter log (tail):\n{}\n\nfiles kept in {}",
        last_failures.join("\n  "),
        tail(&prometheus.log(), 40),
        tail(&exporter.log(), 40),
        dir.display()
    );
}

/// The dashboard is importable: current schema, a datasource variable used
/// by every panel and query, the variables and panel types the issue asks for.
#[test]
fn dashboard_is_importable_and_uses_the_datasource_variable() {
    let text = read(&repo_path("dashboards/synack_exporter.json"));
    let dashboard = parse_json(&text).unwrap_or_else(|error| panic!("not JSON: {error}"));
    let schema = dashboard.get("schemaVersion").and_then(Json::num);
    assert!(
        schema.is_some_and(|version| version >= 39.0),
        "schemaVersion {schema:?} < 39"
    );
    assert!(
        dashboard.get("uid").and_then(Json::str).is_some(),
        "the dashboard has a uid"
    );
    let variables = dashboard
        .get("templating")
        .and_then(|templating| templating.get("list"))
        .map(Json::items)
        .unwrap_or_default();
    let datasource = variables
        .iter()
        .find(|variable| variable.get("name").and_then(Json::str) == Some("datasource"))
        .expect("a `datasource` variable");
    assert_eq!(
        datasource.get("type").and_then(Json::str),
        Some("datasource")
    );
    assert_eq!(
        datasource.get("query").and_then(Json::str),
        Some("prometheus")
    );
    for name in ["job", "instance", "target", "module"] {
        let variable = variables
            .iter()
            .find(|variable| variable.get("name").and_then(Json::str) == Some(name))
            .unwrap_or_else(|| panic!("a `{name}` variable"));
        assert_eq!(variable.get("type").and_then(Json::str), Some("query"));
        assert_uses_datasource_variable(variable, &format!("variable {name}"));
    }

    let panels = all_panels(&dashboard);
    let mut types = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for panel in &panels {
        let kind = panel.get("type").and_then(Json::str).unwrap_or("");
        let title = panel.get("title").and_then(Json::str).unwrap_or("");
        let id = panel
            .get("id")
            .and_then(Json::num)
            .expect("every panel has an id");
        assert!(ids.insert(id as i64), "panel id {id} is used twice");
        assert!(panel.get("gridPos").is_some(), "{title}: no gridPos");
        types.insert(kind.to_owned());
        if kind == "row" {
            continue;
        }
        assert_uses_datasource_variable(panel, title);
        let targets = panel.get("targets").map(Json::items).unwrap_or_default();
        assert!(!targets.is_empty(), "{title}: no queries");
        for target in targets {
            assert_uses_datasource_variable(target, title);
            assert!(
                target.get("expr").and_then(Json::str).is_some(),
                "{title}: a target without expr"
            );
        }
    }
    for kind in ["stat", "table", "timeseries", "heatmap", "state-timeline"] {
        assert!(types.contains(kind), "no {kind} panel: {types:?}");
    }

    let exprs: Vec<String> = dashboard_expressions(&dashboard)
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
        "result=\"local\"",
    ] {
        assert!(
            exprs.iter().any(|expr| expr.contains(needle)),
            "no dashboard query uses {needle}"
        );
    }
}

fn assert_uses_datasource_variable(object: &Json, what: &str) {
    let datasource = object
        .get("datasource")
        .unwrap_or_else(|| panic!("{what}: no datasource"));
    assert_eq!(
        datasource.get("uid").and_then(Json::str),
        Some("${datasource}"),
        "{what}: datasource"
    );
    assert_eq!(
        datasource.get("type").and_then(Json::str),
        Some("prometheus"),
        "{what}: datasource type"
    );
}

/// The config derivation on a config shaped like the example.
#[test]
fn derivation_rewrites_intervals_targets_and_the_exporter_address() {
    let example = "\
# comment
global:
  scrape_interval: 15s   # every 15 s
  evaluation_interval: 15s
  external_labels:
    site: a

rule_files: [alerts.yml]

scrape_configs:
  - job_name: synack_probe
    metrics_path: /probe
    scrape_interval: 30s
    scrape_timeout: 10s
    params:
      module: [tcp_halfopen]
    static_configs:
    - targets:
        - db1.example.org:5432
        - \"[2001:db8::10]:443\"
      labels: {env: prod}
    - targets: [db2:5432]
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - target_label: __address__
        replacement: synack-exporter:9215
  - job_name: 'synack_probe_file_sd'
    metrics_path: \"/probe\"
    file_sd_configs:
      - files:
          - targets/*.yml
          - \"more/*.yaml\"
    relabel_configs:
      - target_label: __address__
        replacement: synack-exporter:9215
  - job_name: synack_exporter
    static_configs:
      - targets: [\"synack-exporter:9215\"]
";
    let derived = derive_prometheus_config(
        example,
        "127.0.0.1:4000",
        &["127.0.0.1:1".to_owned(), "127.0.0.1:2".to_owned()],
    )
    .unwrap();
    let config = &derived.config;
    assert!(config.starts_with(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
    ));
    assert_eq!(config.matches("global:").count(), 1, "{config}");
    assert!(!config.contains("15s") && !config.contains("30s") && !config.contains("10s"));
    assert!(
        !config.contains("example.org") && !config.contains("db2"),
        "{config}"
    );
    assert!(!config.contains("synack-exporter"), "{config}");
    assert!(config.contains("    static_configs:\n      - targets: [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n    relabel_configs:\n"), "{config}");
    assert!(config.contains("replacement: 127.0.0.1:4000"));
    assert!(config.contains("- targets: [\"127.0.0.1:4000\"]"));
    assert_eq!(derived.file_sd_globs, ["more/*.yaml", "targets/*.yml"]);
    assert_eq!(
        file_sd_path_for("targets/*.yml"),
        PathBuf::from("targets/e2e.yml")
    );

    let rules = "groups:\n  - name: a\n    interval: 30s\n    rules: []\n";
    assert_eq!(
        one_second_rule_groups(rules),
        "groups:\n  - name: a\n    interval: 1s\n    rules: []\n"
    );
}

// ---------------------------------------------------------------------------
// Checks against Prometheus' HTTP API. Each pushes what is not yet right.

fn check_targets(api: SocketAddr, failures: &mut Vec<String>) {
    let data = match api_get(api, "/api/v1/targets?state=active") {
        Ok(data) => data,
        Err(error) => return failures.push(format!("targets: {error}")),
    };
    let targets = data
        .get("activeTargets")
        .map(Json::items)
        .unwrap_or_default();
    let mut jobs = BTreeSet::new();
    for target in targets {
        let labels = target.get("labels");
        let job = labels
            .and_then(|labels| labels.get("job"))
            .and_then(Json::str)
            .unwrap_or("?");
        let instance = labels
            .and_then(|labels| labels.get("instance"))
            .and_then(Json::str)
            .unwrap_or("?");
        jobs.insert(job.to_owned());
        let health = target.get("health").and_then(Json::str).unwrap_or("");
        let last_error = target.get("lastError").and_then(Json::str).unwrap_or("");
        if health != "up" || !last_error.is_empty() {
            failures.push(format!(
                "target {job}/{instance}: health {health:?}, lastError {last_error:?}"
            ));
        }
    }
    for job in [JOB_PROBE_STATIC, JOB_PROBE_FILE_SD, JOB_EXPORTER] {
        if !jobs.contains(job) {
            failures.push(format!("no active target of job {job} (jobs: {jobs:?})"));
        }
    }
}

fn check_probe_results(api: SocketAddr, open: &str, closed: &str, failures: &mut Vec<String>) {
    let cases = [
        ("probe_success", open, "1"),
        ("probe_success", closed, "0"),
        ("probe_failure_reason{reason=\"refused\"}", closed, "1"),
        ("probe_failure_reason{reason=\"refused\"}", open, "0"),
    ];
    for (query, address, want) in cases {
        let result = match instant_query(api, query) {
            Ok(result) => result,
            Err(error) => {
                failures.push(format!("{query}: {error}"));
                continue;
            }
        };
        for job in [JOB_PROBE_STATIC, JOB_PROBE_FILE_SD, JOB_EXPORTER] {
            // /probe series name the port in `instance`, scheduled ones in `target`.
            let series: Vec<&Json> = result
                .items()
                .iter()
                .filter(|series| {
                    series_label(series, "job") == Some(job)
                        && series_has_label_value(series, address)
                })
                .collect();
            let values: Vec<&str> = series.iter().filter_map(|s| sample_value(s)).collect();
            let expected_series = if job == JOB_EXPORTER { 2 } else { 1 }; // 2 modules
            if values.len() != expected_series || values.iter().any(|value| *value != want) {
                failures.push(format!(
                    "{query} of {address} in job {job}: want {expected_series} series of {want}, \
                     got {values:?}"
                ));
            }
        }
    }
    // The rise/fall state of the scheduled targets.
    for (address, want) in [(open, "1"), (closed, "0")] {
        let query = format!("probe_healthy{{job=\"{JOB_EXPORTER}\",target=\"{address}\"}}");
        match instant_query(api, &query) {
            Ok(result) => {
                let values: Vec<&str> = result.items().iter().filter_map(sample_value).collect();
                if values.len() != 2 || values.iter().any(|value| *value != want) {
                    failures.push(format!(
                        "{query}: want two series of {want}, got {values:?}"
                    ));
                }
            }
            Err(error) => failures.push(format!("{query}: {error}")),
        }
    }
}

fn check_rules(api: SocketAddr, open: &str, closed: &str, failures: &mut Vec<String>) {
    let data = match api_get(api, "/api/v1/rules") {
        Ok(data) => data,
        Err(error) => return failures.push(format!("rules: {error}")),
    };
    let mut alerting = 0;
    for group in data.get("groups").map(Json::items).unwrap_or_default() {
        let group_name = group.get("name").and_then(Json::str).unwrap_or("?");
        for rule in group.get("rules").map(Json::items).unwrap_or_default() {
            let name = rule.get("name").and_then(Json::str).unwrap_or("?");
            if rule.get("type").and_then(Json::str) == Some("alerting") {
                alerting += 1;
            }
            let health = rule.get("health").and_then(Json::str).unwrap_or("");
            let last_error = rule.get("lastError").and_then(Json::str).unwrap_or("");
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

    // The closed port raises an alert (pending while its `for:` runs); the open one none.
    let data = match api_get(api, "/api/v1/alerts") {
        Ok(data) => data,
        Err(error) => return failures.push(format!("alerts: {error}")),
    };
    let alerts = data.get("alerts").map(Json::items).unwrap_or_default();
    let about = |address: &str| -> Vec<String> {
        alerts
            .iter()
            .filter(|alert| {
                alert.get("labels").is_some_and(|labels| {
                    labels
                        .entries()
                        .iter()
                        .any(|(_, value)| value.str() == Some(address))
                })
            })
            .map(|alert| {
                alert
                    .get("labels")
                    .and_then(|labels| labels.get("alertname"))
                    .and_then(Json::str)
                    .unwrap_or("?")
                    .to_owned()
            })
            .collect()
    };
    if about(closed).is_empty() {
        failures.push(format!(
            "no alert (pending or firing) for the closed port {closed}"
        ));
    }
    let for_open = about(open);
    if !for_open.is_empty() {
        failures.push(format!("alerts for the open port {open}: {for_open:?}"));
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
    let query = match substitute(expr, values) {
        Ok(query) => query,
        Err(error) => return failures.push(format!("dashboard {where_}: {error} in {expr}")),
    };
    match api_get(api, &format!("/api/v1/query?query={}", url_encode(&query))) {
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
    let query = format!("count by ({}) ({})", label.trim(), selector.trim());
    let query = match substitute(&query, values) {
        Ok(query) => query,
        Err(error) => return failures.push(format!("variable {name}: {error}")),
    };
    match instant_query(api, &query) {
        Ok(result) => {
            let with_label = result
                .items()
                .iter()
                .filter(|series| series_label(series, label.trim()).is_some())
                .count();
            if with_label == 0 {
                failures.push(format!("variable {name}: no values from {query}"));
            }
        }
        Err(error) => failures.push(format!("variable {name}: {error} for {query}")),
    }
}

fn has_data(data: &Json) -> bool {
    match data.get("resultType").and_then(Json::str) {
        Some("vector") | Some("matrix") => data
            .get("result")
            .is_some_and(|result| !result.items().is_empty()),
        _ => data.get("result").is_some(),
    }
}

fn series_label<'a>(series: &'a Json, name: &str) -> Option<&'a str> {
    series.get("metric")?.get(name)?.str()
}

fn series_has_label_value(series: &Json, value: &str) -> bool {
    series.get("metric").is_some_and(|metric| {
        metric
            .entries()
            .iter()
            .any(|(_, label)| label.str() == Some(value))
    })
}

fn sample_value(series: &Json) -> Option<&str> {
    series.get("value")?.items().get(1)?.str()
}

/// The `data` of a successful API answer, or why there is none.
fn api_get(api: SocketAddr, path: &str) -> Result<Json, String> {
    let (status, body) = http_get(api, path)?;
    let json = parse_json(&body).map_err(|error| format!("HTTP {status}, {error}: {body}"))?;
    if json.get("status").and_then(Json::str) != Some("success") {
        return Err(format!("HTTP {status}: {body}"));
    }
    json.get("data")
        .cloned()
        .ok_or_else(|| format!("no data: {body}"))
}

/// The result array of an instant vector query.
fn instant_query(api: SocketAddr, query: &str) -> Result<Json, String> {
    let data = api_get(api, &format!("/api/v1/query?query={}", url_encode(query)))?;
    data.get("result")
        .cloned()
        .ok_or_else(|| "no result".to_owned())
}

// ---------------------------------------------------------------------------
// The dashboard's queries and variables.

/// Every `expr` of the dashboard, with the title of its panel.
fn dashboard_expressions(dashboard: &Json) -> Vec<(String, String)> {
    fn walk(json: &Json, title: &str, out: &mut Vec<(String, String)>) {
        match json {
            Json::Obj(entries) => {
                let title = json.get("title").and_then(Json::str).unwrap_or(title);
                for (key, value) in entries {
                    match (key.as_str(), value) {
                        ("expr", Json::Str(expr)) => {
                            let ref_id = json.get("refId").and_then(Json::str).unwrap_or("?");
                            out.push((format!("panel {title:?} query {ref_id}"), expr.clone()));
                        }
                        _ => walk(value, title, out),
                    }
                }
            }
            Json::Arr(items) => items.iter().for_each(|item| walk(item, title, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, "", &mut out);
    out
}

/// Query variables: `(name, definition)`.
fn dashboard_variable_queries(dashboard: &Json) -> Vec<(String, String)> {
    let variables = dashboard
        .get("templating")
        .and_then(|templating| templating.get("list"))
        .map(Json::items)
        .unwrap_or_default();
    variables
        .iter()
        .filter(|variable| variable.get("type").and_then(Json::str) == Some("query"))
        .map(|variable| {
            let name = variable.get("name").and_then(Json::str).unwrap_or("?");
            let definition = variable
                .get("definition")
                .and_then(Json::str)
                .or_else(|| variable.get("query").and_then(Json::str))
                .or_else(|| {
                    variable
                        .get("query")
                        .and_then(|query| query.get("query"))
                        .and_then(Json::str)
                })
                .unwrap_or("");
            (name.to_owned(), definition.to_owned())
        })
        .collect()
}

fn all_panels(dashboard: &Json) -> Vec<&Json> {
    let mut out = Vec::new();
    for panel in dashboard.get("panels").map(Json::items).unwrap_or_default() {
        out.push(panel);
        out.extend(panel.get("panels").map(Json::items).unwrap_or_default());
    }
    out
}

/// The dashboard's own variables plus Grafana's built-in ones.
fn substitutions(values: &[(&str, &str)]) -> Vec<(String, String)> {
    let builtin = [
        ("datasource", ""),
        ("__rate_interval", "1m"),
        ("__interval", "15s"),
        ("__interval_ms", "15000"),
        ("__range", "5m"),
        ("__range_s", "300"),
        ("__range_ms", "300000"),
    ];
    builtin
        .iter()
        .chain(values)
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

/// Replaces `$name`, `${name}` and `${name:format}`; `$1` (label_replace)
/// stays. An unknown variable is an error.
fn substitute(expr: &str, values: &[(String, String)]) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        let (name, after) = if let Some(braced) = rest.strip_prefix('{') {
            let end = braced.find('}').ok_or("unclosed ${")?;
            let name = braced[..end].split(':').next().unwrap_or("");
            (name, &braced[end + 1..])
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        if name.is_empty() || name.chars().all(|c| c.is_ascii_digit()) {
            out.push('$');
            continue;
        }
        let value = values
            .iter()
            .find(|(known, _)| known == name)
            .map(|(_, value)| value)
            .ok_or_else(|| format!("unknown variable ${name}"))?;
        out.push_str(value);
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

// ---------------------------------------------------------------------------
// Deriving Prometheus' config from examples/prometheus.yml, line by line
// (no YAML library among the dependencies), so the test follows the example
// as it changes: its jobs, relabeling and rule files are kept; the intervals,
// the exporter's address and the probed targets are ours.

struct DerivedConfig {
    config: String,
    /// `files:` patterns of the `file_sd_configs`, relative to the config.
    file_sd_globs: Vec<String>,
}

fn derive_prometheus_config(
    example: &str,
    exporter: &str,
    targets: &[String],
) -> Result<DerivedConfig, String> {
    let text = example.replace(EXAMPLE_EXPORTER, exporter);
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();

    // Our own global block: 1 s scrapes and evaluations.
    if let Some(start) = lines.iter().position(|line| line.starts_with("global:")) {
        let end = block_end(&lines, start, 0);
        lines.drain(start..end);
    }
    let mut config = String::from(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n",
    );
    // Per-job intervals and timeouts would override the global ones.
    for line in &mut lines {
        let indent = indent_of(line);
        let key = line.trim_start();
        if let Some(name) = ["scrape_interval:", "scrape_timeout:"]
            .into_iter()
            .find(|name| key.starts_with(name))
        {
            *line = format!("{}{name} 1s", " ".repeat(indent));
        }
    }

    let jobs = job_blocks(&lines);
    for job in [JOB_PROBE_STATIC, JOB_PROBE_FILE_SD, JOB_EXPORTER] {
        if !jobs.iter().any(|(name, _, _)| name == job) {
            let names: Vec<&String> = jobs.iter().map(|(name, _, _)| name).collect();
            return Err(format!("no job {job:?} (jobs: {names:?})"));
        }
    }
    let target_list = targets
        .iter()
        .map(|target| format!("\"{target}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut file_sd_globs = Vec::new();
    // From the last job up, so that the earlier line numbers stay valid.
    for (_, start, end) in jobs.iter().rev() {
        let block = &lines[*start..*end];
        let probes = block.iter().any(|line| {
            let key = line.trim_start();
            key.starts_with("metrics_path:") && key.contains("/probe")
        });
        if !probes {
            continue;
        }
        if let Some(files) = block.iter().position(|line| {
            line.trim_start().starts_with("- files:") || line.trim_start().starts_with("files:")
        }) {
            file_sd_globs.extend(list_values(block, files, "files:"));
        }
        if let Some(offset) = block
            .iter()
            .position(|line| line.trim_start().starts_with("static_configs:"))
        {
            let at = start + offset;
            let indent = indent_of(&lines[at]);
            let end = block_end(&lines, at, indent);
            let replacement = vec![
                format!("{}static_configs:", " ".repeat(indent)),
                format!("{}  - targets: [{target_list}]", " ".repeat(indent)),
            ];
            lines.splice(at..end, replacement);
        }
    }
    file_sd_globs.sort();
    file_sd_globs.dedup();
    for glob in &file_sd_globs {
        if Path::new(glob).is_absolute() {
            return Err(format!("file_sd pattern {glob} is absolute"));
        }
    }
    if file_sd_globs.is_empty() {
        return Err("no file_sd_configs files in a /probe job".to_owned());
    }
    for line in lines {
        config.push_str(&line);
        config.push('\n');
    }
    Ok(DerivedConfig {
        config,
        file_sd_globs,
    })
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_content(line: &str) -> bool {
    let trimmed = line.trim();
    !trimmed.is_empty() && !trimmed.starts_with('#')
}

/// The end (exclusive) of the block that starts with the key at `start`
/// indented by `indent`: the next content line indented less, or as much
/// unless it is a list item of the key (`key:\n- item` is valid YAML).
fn block_end(lines: &[String], start: usize, indent: usize) -> usize {
    let key_has_value = lines[start]
        .split_once(':')
        .is_some_and(|(_, value)| is_content(value));
    let mut end = start + 1;
    let mut last_content = start + 1;
    while end < lines.len() {
        let line = &lines[end];
        if is_content(line) {
            let this = indent_of(line);
            let item = line.trim_start().starts_with("- ") || line.trim() == "-";
            if this < indent || (this == indent && (key_has_value || !item)) {
                break;
            }
            last_content = end + 1;
        }
        end += 1;
    }
    // Comments and blank lines before the next key belong to that key.
    last_content.min(end)
}

/// `(job name, first line, end line)` of every `- job_name:` item.
fn job_blocks(lines: &[String]) -> Vec<(String, usize, usize)> {
    let mut jobs = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let Some(value) = line.trim_start().strip_prefix("- job_name:") else {
            continue;
        };
        let dash = indent_of(line);
        let mut end = index + 1;
        while end < lines.len() && !(is_content(&lines[end]) && indent_of(&lines[end]) <= dash) {
            end += 1;
        }
        jobs.push((yaml_scalar(value), index, end));
    }
    jobs
}

/// The items of `key: [a, b]` or of `key:` followed by `- a` lines.
fn list_values(block: &[String], at: usize, key: &str) -> Vec<String> {
    let line = &block[at];
    let after = &line[line.find(key).unwrap() + key.len()..];
    let after = strip_comment(after).trim();
    if let Some(flow) = after.strip_prefix('[') {
        return flow
            .trim_end_matches(']')
            .split(',')
            .map(yaml_scalar)
            .filter(|value| !value.is_empty())
            .collect();
    }
    if !after.is_empty() {
        return vec![yaml_scalar(after)];
    }
    block[at + 1..]
        .iter()
        .filter(|line| is_content(line))
        .map_while(|line| line.trim_start().strip_prefix("- ").map(yaml_scalar))
        .collect()
}

fn strip_comment(value: &str) -> &str {
    match value.find(" #") {
        Some(at) => &value[..at],
        None if value.trim_start().starts_with('#') => "",
        None => value,
    }
}

fn yaml_scalar(value: &str) -> String {
    strip_comment(value)
        .trim()
        .trim_matches(|c| c == '"' || c == '\'')
        .to_owned()
}

/// The file the test writes for a `file_sd_configs` pattern.
fn file_sd_path_for(glob: &str) -> PathBuf {
    PathBuf::from(glob.replace('*', "e2e").replace('?', "x"))
}

/// Rule groups evaluated every second, like the global evaluation interval.
fn one_second_rule_groups(rules: &str) -> String {
    let mut out = String::new();
    for line in rules.lines() {
        match line.trim_start().strip_prefix("interval:") {
            Some(_) => {
                out.push_str(&" ".repeat(indent_of(line)));
                out.push_str("interval: 1s");
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------------------
// Processes and ports.

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn find_prometheus() -> Option<PathBuf> {
    let standard = PathBuf::from("/usr/bin/prometheus");
    if standard.is_file() {
        return Some(standard);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("prometheus"))
        .find(|path| path.is_file())
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A listening loopback port; a thread accepts and drops connections so
/// `tcp_connect` probes never fill the backlog.
struct OpenPort {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
    _listener: TcpListener,
}

impl OpenPort {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let accepting = listener.try_clone().unwrap();
        accepting.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let acceptor = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match accepting.accept() {
                    Ok((connection, _)) => drop(connection),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Self {
            address,
            stop,
            acceptor: Some(acceptor),
            _listener: listener,
        }
    }
}

impl Drop for OpenPort {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// A loopback port nothing listens on: bound, then released.
fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// The exporter binary on 127.0.0.1:0; killed on drop.
struct Exporter {
    child: Child,
    address: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Exporter {
    fn start(config: &Path) -> Self {
        let mut child = Command::new(BINARY)
            .args(["--web.listen-address", "127.0.0.1:0", "--config.file"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (found, address) = mpsc::channel();
        let pipe = BufReader::new(child.stderr.take().unwrap());
        let lines = Arc::clone(&log);
        // Keeps draining stderr for the exporter's whole life.
        std::thread::spawn(move || {
            for line in pipe.lines().map_while(Result::ok) {
                if let Some(address) = common::listen_address(&line) {
                    let _ = found.send(address);
                }
                let mut lines = lines.lock().unwrap();
                if lines.len() < 10_000 {
                    lines.push(line);
                }
            }
        });
        let mut exporter = Self {
            child,
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
        };
        let address = address
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no 'listening on' line; stderr: {}", exporter.log()));
        exporter.address = address;
        exporter
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Prometheus on 127.0.0.1 with its TSDB in the test's directory; killed on drop.
struct Prometheus {
    child: Child,
    address: SocketAddr,
    log_path: PathBuf,
}

impl Prometheus {
    fn start(binary: &Path, config: &Path, dir: &Path) -> Self {
        let address = {
            let probe = TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap()
        };
        let log_path = dir.join("prometheus.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("{}: {error}", binary.display()));
        let mut prometheus = Self {
            child,
            address,
            log_path,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = prometheus.exited() {
                panic!("prometheus exited ({status}):\n{}", prometheus.log());
            }
            if matches!(http_get(address, "/-/ready"), Ok((200, _))) {
                return prometheus;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready within 30 s:\n{}",
                prometheus.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// A minimal HTTP/1.1 client.

/// `GET path` with `Connection: close`: the status and the (de-chunked) body.
fn http_get(address: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))
        .map_err(|error| format!("connect {address}: {error}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .and_then(|()| stream.set_write_timeout(Some(Duration::from_secs(15))))
        .map_err(|error| error.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nAccept: application/json\r\n\
         Connection: close\r\n\r\n"
    )
    .map_err(|error| format!("send: {error}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|error| format!("read: {error}"))?;
    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or("no end of the HTTP header")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let status = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("bad status line: {head}"))?;
    let chunked = head.lines().skip(1).any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.to_ascii_lowercase().contains("chunked")
        })
    });
    if chunked {
        body = dechunk(&body)?;
    }
    String::from_utf8(body)
        .map(|body| (status, body))
        .map_err(|error| error.to_string())
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|window| window == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size + 2 {
            return Err("truncated chunk".to_owned());
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

fn url_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// A minimal JSON parser, enough for the dashboard and Prometheus' answers.

#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(entries) => entries
                .iter()
                .find(|(name, _)| name == key)
                .map(|(_, value)| value),
            _ => None,
        }
    }

    fn str(&self) -> Option<&str> {
        match self {
            Json::Str(text) => Some(text),
            _ => None,
        }
    }

    fn num(&self) -> Option<f64> {
        match self {
            Json::Num(number) => Some(*number),
            _ => None,
        }
    }

    /// The items of an array; none for anything else.
    fn items(&self) -> &[Json] {
        match self {
            Json::Arr(items) => items,
            _ => &[],
        }
    }

    /// The entries of an object; none for anything else.
    fn entries(&self) -> &[(String, Json)] {
        match self {
            Json::Obj(entries) => entries,
            _ => &[],
        }
    }
}

fn parse_json(text: &str) -> Result<Json, String> {
    let mut parser = JsonParser {
        bytes: text.as_bytes(),
        at: 0,
    };
    let value = parser.value(0)?;
    parser.skip_space();
    if parser.at != parser.bytes.len() {
        return Err(parser.error("trailing characters"));
    }
    Ok(value)
}

struct JsonParser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl JsonParser<'_> {
    fn error(&self, what: &str) -> String {
        format!("JSON: {what} at byte {}", self.at)
    }

    fn skip_space(&mut self) {
        while self
            .bytes
            .get(self.at)
            .is_some_and(|byte| byte.is_ascii_whitespace())
        {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        self.skip_space();
        if self.bytes.get(self.at) == Some(&byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected {:?}", byte as char)))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, String> {
        if depth > 128 {
            return Err(self.error("nested too deeply"));
        }
        self.skip_space();
        match self.bytes.get(self.at) {
            Some(b'{') => {
                self.at += 1;
                let mut entries = Vec::new();
                self.skip_space();
                if self.bytes.get(self.at) == Some(&b'}') {
                    self.at += 1;
                    return Ok(Json::Obj(entries));
                }
                loop {
                    self.skip_space();
                    let key = self.string()?;
                    self.expect(b':')?;
                    entries.push((key, self.value(depth + 1)?));
                    self.skip_space();
                    match self.bytes.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b'}') => {
                            self.at += 1;
                            return Ok(Json::Obj(entries));
                        }
                        _ => return Err(self.error("expected ',' or '}'")),
                    }
                }
            }
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                self.skip_space();
                if self.bytes.get(self.at) == Some(&b']') {
                    self.at += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.skip_space();
                    match self.bytes.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b']') => {
                            self.at += 1;
                            return Ok(Json::Arr(items));
                        }
                        _ => return Err(self.error("expected ',' or ']'")),
                    }
                }
            }
            Some(b'"') => self.string().map(Json::Str),
            Some(b't') => self.word("true", Json::Bool(true)),
            Some(b'f') => self.word("false", Json::Bool(false)),
            Some(b'n') => self.word("null", Json::Null),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.at;
                while self
                    .bytes
                    .get(self.at)
                    .is_some_and(|byte| b"+-.eE0123456789".contains(byte))
                {
                    self.at += 1;
                }
                let text = std::str::from_utf8(&self.bytes[start..self.at]).unwrap();
                text.parse()
                    .map(Json::Num)
                    .map_err(|_| self.error("bad number"))
            }
            _ => Err(self.error("expected a value")),
        }
    }

    fn word(&mut self, word: &str, value: Json) -> Result<Json, String> {
        if self.bytes[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(value)
        } else {
            Err(self.error("bad literal"))
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .bytes
            .get(self.at..self.at + 4)
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u32::from_str_radix(digits, 16).ok())
            .ok_or_else(|| self.error("bad \\u escape"))?;
        self.at += 4;
        Ok(digits)
    }

    fn string(&mut self) -> Result<String, String> {
        if self.bytes.get(self.at) != Some(&b'"') {
            return Err(self.error("expected a string"));
        }
        self.at += 1;
        let mut out = Vec::new();
        loop {
            let byte = *self
                .bytes
                .get(self.at)
                .ok_or_else(|| self.error("unterminated string"))?;
            self.at += 1;
            match byte {
                b'"' => return String::from_utf8(out).map_err(|_| self.error("bad UTF-8")),
                b'\\' => {
                    let escape = *self
                        .bytes
                        .get(self.at)
                        .ok_or_else(|| self.error("unterminated escape"))?;
                    self.at += 1;
                    let decoded = match escape {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let mut code = self.hex4()?;
                            if (0xD800..0xDC00).contains(&code)
                                && self.bytes[self.at..].starts_with(b"\\u")
                            {
                                self.at += 2;
                                let low = self.hex4()?;
                                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                            }
                            char::from_u32(code).ok_or_else(|| self.error("bad code point"))?
                        }
                        _ => return Err(self.error("bad escape")),
                    };
                    let mut buffer = [0; 4];
                    out.extend_from_slice(decoded.encode_utf8(&mut buffer).as_bytes());
                }
                byte if byte < 0x20 => return Err(self.error("control character in string")),
                byte => out.push(byte),
            }
        }
    }
}

#[test]
fn json_parser_and_substitution() {
    let json = parse_json(r#"{"a": [1, -2.5e1, true, null, "x\"\u00e9\ud83d\ude00\n"], "b": {}}"#)
        .unwrap();
    assert_eq!(
        json.get("a").unwrap().items(),
        [
            Json::Num(1.0),
            Json::Num(-25.0),
            Json::Bool(true),
            Json::Null,
            Json::Str("x\"é😀\n".to_owned())
        ]
    );
    assert!(parse_json("{\"a\": 1,}").is_err());
    assert!(parse_json("[1] 2").is_err());

    let values = substitutions(&[("job", ".*")]);
    assert_eq!(
        substitute(
            "rate(x{job=~\"$job\",j=~\"${job:regex}\"}[$__rate_interval]) and label_replace(y, \"a\", \"$1\", \"b\", \"(.*)\")",
            &values
        )
        .unwrap(),
        "rate(x{job=~\".*\",j=~\".*\"}[1m]) and label_replace(y, \"a\", \"$1\", \"b\", \"(.*)\")"
    );
    assert!(substitute("x{a=\"$nope\"}", &values).is_err());
    assert_eq!(url_encode("a b{c=\"d\"}"), "a%20b%7Bc%3D%22d%22%7D");
    assert_eq!(
        dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").unwrap(),
        b"abcde"
    );
}
