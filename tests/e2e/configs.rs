//! The configs the end-to-end test runs with. Prometheus', its rules and
//! file_sd targets, and Alertmanager's are derived from the examples, so
//! the test follows them as they change: their jobs, relabeling, target
//! groups, rules, routes and inhibit rules are kept; the intervals, the
//! addresses and the probed targets are the test's. Prometheus and
//! Alertmanager read JSON, a subset of YAML, so the derived files are JSON.
//!
//! Time runs faster, by one mechanical rule: the example's global scrape
//! and evaluation interval (15 s) becomes [`TEST_INTERVAL`] (1 s), and every
//! alert's `for:` shrinks by the same factor (2m becomes 8 s), so each
//! alert waits as many scrapes and evaluations as it does with the shipped
//! files, and the order in which alerts fire is theirs. Alertmanager's
//! group_wait and group_interval become [`TEST_INTERVAL`] rather than
//! scaled (2 s and 20 s): a group notifies at its next tick, and the real
//! tick can fall at any moment, so the test takes the earliest, where any
//! notification the shipped timing could let out does go out. The range
//! windows inside expressions (`[10m]`) are kept: with scrapes fifteen
//! times as frequent they only hold more samples.

use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The exporter's address in examples/prometheus.yml.
pub const EXAMPLE_EXPORTER: &str = "synack-exporter:9215";
/// The module a `/probe` target gets when its group sets no `__param_module`.
pub const DEFAULT_MODULE: &str = "tcp_halfopen";
/// The modules of the test's exporter that probe every scheduled target
/// but the TLS one.
pub const EXPORTER_MODULES: [&str; 2] = ["tcp_halfopen", "tcp_connect"];
/// The module of the test's exporter, blackbox's `tls_connect`, that
/// probes the TLS target alone, so that the certificate series have data.
pub const TLS_MODULE: &str = "tls_connect";
/// Scrape and rule evaluation interval, Alertmanager's group wait and interval.
const TEST_INTERVAL: &str = "1s";

/// Parses YAML (or JSON) into a JSON value.
pub fn parse_yaml(text: &str) -> Result<Value, String> {
    serde_saphyr::from_str(text).map_err(|error| error.to_string())
}

/// Reads and parses a YAML file; panics naming it on error.
pub fn read_yaml(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    parse_yaml(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Writes `value` as JSON, creating the directories on the way.
pub fn write_json(path: &Path, value: &Value) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create config directory");
    }
    let text = serde_json::to_string_pretty(value).expect("serialize JSON");
    std::fs::write(path, text).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
}

/// The exporter's config: every target probed each second with each of
/// [`EXPORTER_MODULES`], and `tls.address` with [`TLS_MODULE`], trusting
/// `tls.ca_file`. `tcp_connect` makes two attempts, so that its `/probe`
/// and scheduled series include the attempts that the loss panel and
/// SynackPacketLoss read.
pub fn exporter_config(targets: &[String], tls: &TlsTarget) -> Value {
    let mut modules: Map<String, Value> = EXPORTER_MODULES
        .iter()
        .map(|module| {
            let mut config = json!({"prober": module, "timeout": "2s"});
            if *module == "tcp_connect" {
                config["tcp"] = json!({"attempts": 2, "attempt_interval": "100ms"});
            }
            ((*module).to_owned(), config)
        })
        .collect();
    modules.insert(
        TLS_MODULE.to_owned(),
        json!({
            "prober": "tcp",
            "timeout": "2s",
            "tcp": {
                "preferred_ip_protocol": "ip4",
                "tls": true,
                "tls_config": {"ca_file": tls.ca_file},
            },
        }),
    );
    let block = |module: &str, targets: &[String]| {
        json!({
            "module": module,
            "interval": TEST_INTERVAL,
            "targets": targets,
            "labels": {"service": "e2e"},
        })
    };
    let mut blocks: Vec<Value> = EXPORTER_MODULES
        .iter()
        .map(|module| block(module, targets))
        .collect();
    blocks.push(block(TLS_MODULE, std::slice::from_ref(&tls.address)));
    json!({"modules": modules, "targets": blocks})
}

/// The scheduled TLS target: a server's address, and the PEM file of the
/// certificate that [`TLS_MODULE`] trusts.
pub struct TlsTarget {
    pub address: String,
    pub ca_file: PathBuf,
}

/// Where Prometheus, Alertmanager and the exporter listen, and what the
/// `/probe` jobs probe.
pub struct TestAddresses<'a> {
    pub exporter: SocketAddr,
    pub alertmanager: SocketAddr,
    pub targets: &'a [String],
}

/// A `/probe` target as the derived config has Prometheus scrape it.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeTarget {
    pub job: String,
    /// The target group's labels, but those starting with `__`.
    pub labels: BTreeMap<String, String>,
    pub address: String,
    /// The module its scrape URL must ask for.
    pub module: String,
}

pub struct DerivedPrometheus {
    pub config: Value,
    /// How many times faster than the example's the test's clock runs:
    /// its scrape interval over [`TEST_INTERVAL`]. Pass it to
    /// [`derive_alert_rules`].
    pub time_scale: u64,
    /// The targets of the `/probe` jobs' `static_configs`.
    pub static_targets: Vec<ProbeTarget>,
    /// `(job, files pattern)` of the `/probe` jobs' `file_sd_configs`,
    /// patterns relative to the config.
    pub file_sd: Vec<(String, String)>,
}

/// Prometheus' config from examples/prometheus.yml: one-second scrapes and
/// evaluations, the test's exporter, Alertmanager and targets.
pub fn derive_prometheus_config(
    example: &Value,
    addresses: &TestAddresses,
) -> Result<DerivedPrometheus, String> {
    let mut config = example.clone();
    replace_strings(
        &mut config,
        EXAMPLE_EXPORTER,
        &addresses.exporter.to_string(),
    );
    let time_scale = set_global_intervals(&mut config)?;
    point_at_alertmanager(&mut config, addresses.alertmanager)?;
    let mut derived = DerivedPrometheus {
        config: Value::Null,
        time_scale,
        static_targets: Vec::new(),
        file_sd: Vec::new(),
    };
    let jobs = config["scrape_configs"]
        .as_array_mut()
        .ok_or("no scrape_configs list")?;
    for job in jobs.iter_mut() {
        let job = job.as_object_mut().ok_or("a scrape config is not a map")?;
        // Per-job intervals would override the global ones.
        job.remove("scrape_interval");
        job.remove("scrape_timeout");
        if job.get("metrics_path").and_then(Value::as_str) == Some("/probe") {
            derive_probe_job(job, addresses.targets, &mut derived)?;
        }
    }
    derived.config = config;
    Ok(derived)
}

/// Sets the global intervals to [`TEST_INTERVAL`]; returns the time scale,
/// the example's interval over the test's. Both of the example's intervals
/// must be given and equal, so that one factor scales them.
fn set_global_intervals(config: &mut Value) -> Result<u64, String> {
    let root = config.as_object_mut().ok_or("the config is not a map")?;
    let global = root.entry("global").or_insert_with(|| json!({}));
    let global = global.as_object_mut().ok_or("global is not a map")?;
    let interval = |key: &str| {
        global
            .get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("global.{key} is not set"))
            .and_then(duration_ms)
    };
    let (scrape, evaluation) = (
        interval("scrape_interval")?,
        interval("evaluation_interval")?,
    );
    if scrape != evaluation {
        return Err(format!(
            "global scrape_interval ({scrape} ms) and evaluation_interval ({evaluation} ms) \
             differ: the test scales time by one factor"
        ));
    }
    let test = duration_ms(TEST_INTERVAL)?;
    if scrape % test != 0 || scrape < test {
        return Err(format!(
            "global scrape_interval ({scrape} ms) is no multiple of {TEST_INTERVAL}"
        ));
    }
    for key in ["scrape_interval", "scrape_timeout", "evaluation_interval"] {
        global.insert(key.to_owned(), json!(TEST_INTERVAL));
    }
    Ok(scrape / test)
}

/// Milliseconds of a Prometheus duration: `15s`, `2m`, `1h30m`, `500ms`.
pub fn duration_ms(text: &str) -> Result<u64, String> {
    const UNITS: [(&str, u64); 7] = [
        ("ms", 1),
        ("s", 1_000),
        ("m", 60_000),
        ("h", 3_600_000),
        ("d", 86_400_000),
        ("w", 604_800_000),
        ("y", 31_536_000_000),
    ];
    let invalid = || format!("{text:?} is not a Prometheus duration");
    if text.is_empty() {
        return Err(invalid());
    }
    let mut rest = text;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(invalid)?;
        let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        // "ms" comes before "m" in UNITS, so it wins.
        let (unit, factor) = UNITS
            .iter()
            .find(|(unit, _)| rest.starts_with(unit))
            .ok_or_else(invalid)?;
        total = number
            .checked_mul(*factor)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(invalid)?;
        rest = &rest[unit.len()..];
    }
    Ok(total)
}

fn point_at_alertmanager(config: &mut Value, alertmanager: SocketAddr) -> Result<(), String> {
    let alertmanagers = config["alerting"]["alertmanagers"]
        .as_array_mut()
        .filter(|list| !list.is_empty())
        .ok_or("no alerting.alertmanagers")?;
    for alertmanager_config in alertmanagers {
        alertmanager_config["static_configs"] = json!([{"targets": [alertmanager.to_string()]}]);
    }
    Ok(())
}

/// Probes `targets` in every static target group, and notes the file_sd
/// patterns the test has to write files for.
fn derive_probe_job(
    job: &mut Map<String, Value>,
    targets: &[String],
    derived: &mut DerivedPrometheus,
) -> Result<(), String> {
    let name = job
        .get("job_name")
        .and_then(Value::as_str)
        .ok_or("a job without job_name")?
        .to_owned();
    if let Some(groups) = job.get_mut("static_configs") {
        let (replaced, probed) = derive_target_groups(&name, groups, targets)?;
        *groups = replaced;
        derived.static_targets.extend(probed);
    }
    for file_sd in job
        .get("file_sd_configs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for pattern in file_sd["files"]
            .as_array()
            .ok_or("file_sd_configs without files")?
        {
            let pattern = pattern.as_str().ok_or("a files pattern is not a string")?;
            derived.file_sd.push((name.clone(), pattern.to_owned()));
        }
    }
    Ok(())
}

/// Target groups (the `static_configs` and file_sd format) with each
/// group's targets replaced by `targets`, its labels kept; and the
/// `/probe` targets that makes for `job`.
pub fn derive_target_groups(
    job: &str,
    groups: &Value,
    targets: &[String],
) -> Result<(Value, Vec<ProbeTarget>), String> {
    let mut replaced = groups.clone();
    let mut probed = Vec::new();
    let list = replaced
        .as_array_mut()
        .ok_or_else(|| format!("job {job}: the target groups are not a list"))?;
    for group in list {
        group["targets"] = json!(targets);
        let labels = group.get("labels").and_then(Value::as_object);
        let label = |name: &str| labels.and_then(|labels| labels.get(name)?.as_str());
        let module = label("__param_module").unwrap_or(DEFAULT_MODULE);
        let visible: BTreeMap<String, String> = labels
            .into_iter()
            .flatten()
            .filter(|(name, _)| !name.starts_with("__"))
            .map(|(name, value)| (name.clone(), value.as_str().unwrap_or("").to_owned()))
            .collect();
        probed.extend(targets.iter().map(|address| ProbeTarget {
            job: job.to_owned(),
            labels: visible.clone(),
            address: address.clone(),
            module: module.to_owned(),
        }));
    }
    Ok((replaced, probed))
}

/// The files under `dir` that a file_sd pattern such as `targets/*.yml`
/// matches, relative to `dir`. Knows one `*` in the file name.
pub fn matching_files(dir: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let pattern = Path::new(pattern);
    if pattern.is_absolute() {
        return Err(format!("file_sd pattern {} is absolute", pattern.display()));
    }
    let parent = pattern.parent().unwrap_or(Path::new(""));
    let name = pattern
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| format!("file_sd pattern {} has no file name", pattern.display()))?;
    if parent.to_string_lossy().contains(['*', '?', '[']) || name.contains(['?', '[']) {
        return Err(format!(
            "file_sd pattern {}: only one * in the file name is supported",
            pattern.display()
        ));
    }
    let (prefix, suffix) = name.split_once('*').unwrap_or((name, ""));
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(parent))
        .map_err(|error| format!("{}: {error}", dir.join(parent).display()))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|file| {
            if name.contains('*') {
                file.len() >= prefix.len() + suffix.len()
                    && file.starts_with(prefix)
                    && file.ends_with(suffix)
            } else {
                file == name
            }
        })
        .map(|file| parent.join(file))
        .collect();
    files.sort();
    Ok(files)
}

/// The rules of examples/alerts.yml, evaluated every [`TEST_INTERVAL`],
/// each `for:` divided by `time_scale` (see the module's documentation).
pub fn derive_alert_rules(example: &Value, time_scale: u64) -> Result<Value, String> {
    let mut rules = example.clone();
    let groups = rules["groups"].as_array_mut().ok_or("no groups list")?;
    for group in groups {
        group["interval"] = json!(TEST_INTERVAL);
        let group_rules = group["rules"]
            .as_array_mut()
            .ok_or("a group without rules")?;
        for rule in group_rules
            .iter_mut()
            .filter(|rule| rule.get("for").is_some())
        {
            let for_ = rule["for"].as_str().ok_or("a `for:` is not a duration")?;
            let scaled = duration_ms(for_)? / time_scale;
            rule["for"] = json!(format!("{scaled}ms"));
        }
    }
    Ok(rules)
}

/// Alertmanager's config from examples/alertmanager.yml: every receiver
/// that notifies anyone posts to `webhook` instead, at path
/// `/<receiver name>`; every route groups and waits for one second.
pub fn derive_alertmanager_config(example: &Value, webhook: SocketAddr) -> Result<Value, String> {
    let mut config = example.clone();
    shorten_group_timing(&mut config["route"])?;
    let receivers = config["receivers"]
        .as_array_mut()
        .ok_or("no receivers list")?;
    let mut redirected = 0;
    for receiver in receivers {
        let receiver = receiver.as_object_mut().ok_or("a receiver is not a map")?;
        let name = receiver
            .get("name")
            .and_then(Value::as_str)
            .ok_or("a receiver without name")?
            .to_owned();
        let notifiers: Vec<String> = receiver
            .keys()
            .filter(|key| key.ends_with("_configs"))
            .cloned()
            .collect();
        if notifiers.is_empty() {
            continue; // notifies nobody: nothing to redirect
        }
        for notifier in notifiers {
            receiver.remove(&notifier);
        }
        receiver.insert(
            "webhook_configs".to_owned(),
            json!([{"url": format!("http://{webhook}/{name}"), "send_resolved": true}]),
        );
        redirected += 1;
    }
    if redirected == 0 {
        return Err("no receiver notifies anyone".to_owned());
    }
    Ok(config)
}

fn shorten_group_timing(route: &mut Value) -> Result<(), String> {
    let map = route.as_object_mut().ok_or("a route is not a map")?;
    for key in ["group_wait", "group_interval"] {
        map.insert(key.to_owned(), json!(TEST_INTERVAL));
    }
    for child in map
        .get_mut("routes")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        shorten_group_timing(child)?;
    }
    Ok(())
}

/// Replaces `from` by `to` in every string of `value`.
fn replace_strings(value: &mut Value, from: &str, to: &str) {
    match value {
        Value::String(text) => *text = text.replace(from, to),
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| replace_strings(item, from, to)),
        Value::Object(entries) => entries
            .values_mut()
            .for_each(|item| replace_strings(item, from, to)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "\
# comment
global:
  scrape_interval: 15s   # every 15 s
  evaluation_interval: 15s
  external_labels:
    site: a
rule_files: [alerts.yml]
alerting:
  alertmanagers:
    - static_configs:
        - targets: [alertmanager:9093]
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
      - target_label: __address__
        replacement: synack-exporter:9215
  - job_name: 'synack_probe_file_sd'
    metrics_path: \"/probe\"
    file_sd_configs:
      - files:
          - targets/*.yml
          - \"more/*.yaml\"
  - job_name: synack_exporter
    static_configs:
      - targets: [\"synack-exporter:9215\"]
";

    fn addresses(targets: &[String]) -> TestAddresses<'_> {
        TestAddresses {
            exporter: "127.0.0.1:4000".parse().unwrap(),
            alertmanager: "127.0.0.1:4001".parse().unwrap(),
            targets,
        }
    }

    #[test]
    fn prometheus_derivation_rewrites_intervals_addresses_and_targets() {
        let targets = ["127.0.0.1:1".to_owned(), "127.0.0.1:2".to_owned()];
        let example = parse_yaml(EXAMPLE).unwrap();
        let derived = derive_prometheus_config(&example, &addresses(&targets)).unwrap();
        let config = &derived.config;
        assert_eq!(derived.time_scale, 15, "15s became 1s");
        assert_eq!(
            config["global"],
            json!({"scrape_interval": "1s", "scrape_timeout": "1s",
                   "evaluation_interval": "1s", "external_labels": {"site": "a"}})
        );
        let text = config.to_string();
        for gone in [
            "15s",
            "30s",
            "10s",
            "example.org",
            "db2",
            "synack-exporter",
            "9093",
        ] {
            assert!(!text.contains(gone), "{gone} in {text}");
        }
        let probe = &config["scrape_configs"][0];
        assert_eq!(
            probe["static_configs"],
            json!([{"targets": targets, "labels": {"env": "prod"}}, {"targets": targets}])
        );
        assert_eq!(probe["relabel_configs"][0]["replacement"], "127.0.0.1:4000");
        assert_eq!(
            config["scrape_configs"][2]["static_configs"][0]["targets"],
            json!(["127.0.0.1:4000"])
        );
        assert_eq!(
            config["alerting"]["alertmanagers"][0]["static_configs"],
            json!([{"targets": ["127.0.0.1:4001"]}])
        );
        assert_eq!(config["rule_files"], json!(["alerts.yml"]));
        assert_eq!(
            derived.file_sd,
            [
                (
                    "synack_probe_file_sd".to_owned(),
                    "targets/*.yml".to_owned()
                ),
                ("synack_probe_file_sd".to_owned(), "more/*.yaml".to_owned()),
            ]
        );
        let static_targets: Vec<(&str, &str, usize)> = derived
            .static_targets
            .iter()
            .map(|target| {
                (
                    target.address.as_str(),
                    target.module.as_str(),
                    target.labels.len(),
                )
            })
            .collect();
        assert_eq!(
            static_targets,
            [
                ("127.0.0.1:1", "tcp_halfopen", 1),
                ("127.0.0.1:2", "tcp_halfopen", 1),
                ("127.0.0.1:1", "tcp_halfopen", 0),
                ("127.0.0.1:2", "tcp_halfopen", 0),
            ]
        );
        let no_alerting = parse_yaml(
            "global: {scrape_interval: 15s, evaluation_interval: 15s}\nscrape_configs: []\n",
        )
        .unwrap();
        assert!(derive_prometheus_config(&no_alerting, &addresses(&targets)).is_err());
        // One factor must scale both intervals.
        let uneven = EXAMPLE.replace("evaluation_interval: 15s", "evaluation_interval: 30s");
        assert!(
            derive_prometheus_config(&parse_yaml(&uneven).unwrap(), &addresses(&targets)).is_err()
        );
    }

    #[test]
    fn target_groups_keep_labels_and_name_their_module() {
        let groups = parse_yaml(
            "- targets: [a:1, b:2]\n  labels: {service: db}\n\
             - targets: [c:3]\n  labels: {service: lb, __param_module: tcp_connect}\n",
        )
        .unwrap();
        let (replaced, probed) = derive_target_groups("j", &groups, &["t:9".to_owned()]).unwrap();
        assert_eq!(
            replaced,
            json!([
                {"targets": ["t:9"], "labels": {"service": "db"}},
                {"targets": ["t:9"], "labels": {"service": "lb", "__param_module": "tcp_connect"}},
            ])
        );
        let modules: Vec<(&str, &str)> = probed
            .iter()
            .map(|target| (target.labels["service"].as_str(), target.module.as_str()))
            .collect();
        assert_eq!(modules, [("db", "tcp_halfopen"), ("lb", "tcp_connect")]);
        assert!(
            probed
                .iter()
                .all(|target| !target.labels.contains_key("__param_module"))
        );
    }

    #[test]
    fn file_sd_patterns_match_the_example_files() {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        assert_eq!(
            matching_files(&examples, "targets/*.yml").unwrap(),
            [PathBuf::from("targets/synack_targets.yml")]
        );
        assert_eq!(
            matching_files(&examples, "targets/synack_*s.yml").unwrap(),
            [PathBuf::from("targets/synack_targets.yml")]
        );
        assert!(
            matching_files(&examples, "targets/*.json")
                .unwrap()
                .is_empty()
        );
        assert!(matching_files(&examples, "/etc/*.yml").is_err());
        assert!(matching_files(&examples, "*/x.yml").is_err());
    }

    #[test]
    fn alert_rules_wait_as_many_evaluations_as_the_examples() {
        let rules = parse_yaml(
            "groups:\n  - name: a\n    interval: 30s\n    rules:\n      \
             - alert: A\n        expr: up == 0\n        for: 5m\n      \
             - alert: B\n        expr: up == 0\n        for: 1m30s\n      \
             - record: r\n        expr: up\n",
        )
        .unwrap();
        assert_eq!(
            derive_alert_rules(&rules, 15).unwrap(),
            json!({"groups": [{"name": "a", "interval": "1s", "rules": [
                {"alert": "A", "expr": "up == 0", "for": "20000ms"},
                {"alert": "B", "expr": "up == 0", "for": "6000ms"},
                {"record": "r", "expr": "up"},
            ]}]})
        );
    }

    #[test]
    fn durations_read_as_prometheus_writes_them() {
        for (text, ms) in [
            ("15s", 15_000),
            ("2m", 120_000),
            ("1h30m", 5_400_000),
            ("500ms", 500),
            ("1m500ms", 60_500),
            ("1d", 86_400_000),
        ] {
            assert_eq!(duration_ms(text), Ok(ms), "{text}");
        }
        for bad in ["", "15", "s", "1.5s", "2x", "-1s"] {
            assert!(duration_ms(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn alertmanager_receivers_post_to_the_webhook() {
        let example = parse_yaml(
            "route:\n  receiver: page\n  group_wait: 30s\n  routes:\n    \
             - matchers: [severity=\"warning\"]\n      receiver: mail\n      group_interval: 5m\n\
             receivers:\n  - name: page\n    webhook_configs: [{url: \"http://x.example/p\"}]\n  \
             - name: mail\n    email_configs: [{to: a@example.org}]\n  - name: silent\n",
        )
        .unwrap();
        let config = derive_alertmanager_config(&example, "127.0.0.1:5".parse().unwrap()).unwrap();
        assert_eq!(config["route"]["group_wait"], "1s");
        assert_eq!(config["route"]["group_interval"], "1s");
        assert_eq!(config["route"]["routes"][0]["group_interval"], "1s");
        assert_eq!(
            config["receivers"],
            json!([
                {"name": "page", "webhook_configs": [{"url": "http://127.0.0.1:5/page", "send_resolved": true}]},
                {"name": "mail", "webhook_configs": [{"url": "http://127.0.0.1:5/mail", "send_resolved": true}]},
                {"name": "silent"},
            ])
        );
    }

    #[test]
    fn exporter_config_probes_the_targets_with_every_module_and_the_tls_target_with_tls() {
        let tls = TlsTarget {
            address: "127.0.0.1:2".to_owned(),
            ca_file: PathBuf::from("/tmp/e2e/ca.pem"),
        };
        let config = exporter_config(&["127.0.0.1:1".to_owned()], &tls);
        let modules = config["modules"].as_object().unwrap();
        assert_eq!(modules.len(), EXPORTER_MODULES.len() + 1);
        assert_eq!(
            modules[TLS_MODULE],
            json!({"prober": "tcp", "timeout": "2s", "tcp": {
                "preferred_ip_protocol": "ip4", "tls": true,
                "tls_config": {"ca_file": "/tmp/e2e/ca.pem"},
            }})
        );
        let blocks = config["targets"].as_array().unwrap();
        let probed: Vec<(&str, &Value)> = blocks
            .iter()
            .map(|block| (block["module"].as_str().unwrap(), &block["targets"]))
            .collect();
        assert_eq!(
            probed,
            [
                (EXPORTER_MODULES[0], &json!(["127.0.0.1:1"])),
                (EXPORTER_MODULES[1], &json!(["127.0.0.1:1"])),
                (TLS_MODULE, &json!(["127.0.0.1:2"])),
            ]
        );
        // The same interval and labels for every block.
        assert!(blocks.iter().all(|block| block["interval"] == TEST_INTERVAL
            && block["labels"] == json!({"service": "e2e"})));
    }
}
