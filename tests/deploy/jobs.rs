//! Job names: what the alert rules of `examples/alerts.yml` select, and
//! what the scrape jobs of `examples/prometheus.yml` and of the Kubernetes
//! manifests produce.
//!
//! The rules select jobs by name (`up{job="..."}`). A setup whose scrape
//! jobs are named otherwise loads the rules without error and never fires
//! them, so the names each setup produces are computed here and held
//! against every `job` matcher of every rule.

use super::kubernetes::{
    Manifests, Metadata, MetricsEndpoint, PodMonitor, ProbeResource, RelabelRule, Resource,
    ServiceMonitor, subset,
};
use super::promql::{LabelMatcher, anchored_regex, label_matchers};
use super::read;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

// ---- The subset of prometheus.yml and of the rule files that is checked -----

#[derive(Debug, Deserialize)]
pub struct PrometheusConfig {
    pub scrape_configs: Vec<ScrapeConfig>,
}

#[derive(Debug, Deserialize)]
pub struct ScrapeConfig {
    pub job_name: String,
    #[serde(default)]
    pub relabel_configs: Vec<RelabelRule>,
    #[serde(default)]
    pub metric_relabel_configs: Vec<RelabelRule>,
}

#[derive(Debug, Deserialize)]
pub struct RuleFile {
    pub groups: Vec<RuleGroup>,
}

#[derive(Debug, Deserialize)]
pub struct RuleGroup {
    pub rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
pub struct Rule {
    pub alert: Option<String>,
    pub record: Option<String>,
    pub expr: String,
}

impl Rule {
    pub fn name(&self) -> &str {
        self.alert
            .as_deref()
            .or(self.record.as_deref())
            .unwrap_or("?")
    }
}

// ---- The jobs each setup produces ------------------------------------------

/// The jobs one way of running Prometheus produces.
struct Setup {
    name: &'static str,
    jobs: BTreeSet<String>,
}

impl RelabelRule {
    fn action(&self) -> String {
        self.action
            .as_deref()
            .unwrap_or("replace")
            .to_ascii_lowercase()
    }

    /// Whether the rule may set, rename or drop the `job` label.
    fn touches_job(&self) -> bool {
        let regex_matches_job =
            || anchored_regex(self.regex.as_deref().unwrap_or("(.*)")).is_match("job");
        match self.action().as_str() {
            "labeldrop" => regex_matches_job(),
            "labelkeep" => !regex_matches_job(),
            // Its replacement may name any label, `job` included.
            "labelmap" => true,
            _ => self.target_label.as_deref() == Some("job"),
        }
    }

    /// The value a `replace` rule writes whatever the target's labels: its
    /// regex matches anything and its replacement refers to no group.
    fn fixed_replacement(&self) -> Option<&str> {
        let matches_anything = matches!(self.regex.as_deref(), None | Some("(.*)"));
        let replacement = self.replacement.as_deref()?;
        let fixed = !replacement.is_empty() && !replacement.contains('$');
        (self.action() == "replace" && matches_anything && fixed).then_some(replacement)
    }
}

/// The `job` label of a scrape job's series: `initial` after the target
/// relabelings. Refuses what cannot be known without service discovery,
/// and a metric relabeling of `job`: Prometheus does not apply metric
/// relabeling to `up`, so `up` and the scraped series would disagree.
fn scrape_job(
    initial: &str,
    relabelings: &[RelabelRule],
    metric_relabelings: &[RelabelRule],
    what: &str,
) -> String {
    if let Some(rule) = metric_relabelings.iter().find(|rule| rule.touches_job()) {
        panic!(
            "{what}: metric relabeling {rule:?} changes `job` but not `up`'s: relabel targets instead"
        );
    }
    let mut job = initial.to_owned();
    for rule in relabelings.iter().filter(|rule| rule.touches_job()) {
        job = rule
            .fixed_replacement()
            .unwrap_or_else(|| {
                panic!("{what}: relabeling {rule:?} sets `job` to a value this test cannot know")
            })
            .to_owned();
    }
    job
}

/// The jobs of examples/prometheus.yml: each `job_name`, relabeled.
fn plain_prometheus_jobs() -> BTreeSet<String> {
    let config: PrometheusConfig = serde_saphyr::from_str(&read("examples/prometheus.yml"))
        .unwrap_or_else(|e| panic!("examples/prometheus.yml: {e}"));
    config
        .scrape_configs
        .iter()
        .map(|scrape| {
            let what = format!("examples/prometheus.yml: job_name {}", scrape.job_name);
            scrape_job(
                &scrape.job_name,
                &scrape.relabel_configs,
                &scrape.metric_relabel_configs,
                &what,
            )
        })
        .collect()
}

/// The jobs the Prometheus Operator makes of the manifests' Probe,
/// ServiceMonitor and PodMonitor resources, by its rules (pkg/prometheus/
/// promcfg.go): the operator's own `job` relabeling comes first, the
/// resource's relabelings after it.
fn kubernetes_jobs(manifests: &Manifests) -> BTreeSet<String> {
    let mut jobs = BTreeSet::new();
    for (file, resource) in &manifests.all {
        match resource {
            Resource::Probe(probe) => {
                jobs.insert(probe_job(file, probe));
            }
            Resource::ServiceMonitor(monitor) => {
                jobs.extend(service_monitor_jobs(manifests, file, monitor));
            }
            Resource::PodMonitor(monitor) => {
                jobs.extend(pod_monitor_jobs(manifests, file, monitor));
            }
            _ => {}
        }
    }
    jobs
}

fn namespace_of(metadata: &Metadata) -> &str {
    metadata
        .namespace
        .as_deref()
        .unwrap_or_else(|| panic!("{}: no namespace", metadata.name))
}

/// `spec.jobName`, else `probe/<namespace>/<name>`.
fn probe_job(file: &str, probe: &ProbeResource) -> String {
    let metadata = &probe.metadata;
    let initial = probe
        .spec
        .job_name
        .clone()
        .unwrap_or_else(|| format!("probe/{}/{}", namespace_of(metadata), metadata.name));
    scrape_job(
        &initial,
        &probe.spec.targets.static_config.relabelings,
        &probe.spec.metric_relabelings,
        &format!("{file}: Probe {}", metadata.name),
    )
}

/// The jobs of a ServiceMonitor: for each Service it selects, the value of
/// the Service's label named by `spec.jobLabel`, else the Service's name.
fn service_monitor_jobs(
    manifests: &Manifests,
    file: &str,
    monitor: &ServiceMonitor,
) -> Vec<String> {
    let namespace = namespace_of(&monitor.metadata);
    let selected: Vec<(&BTreeMap<String, String>, String)> = manifests
        .services()
        .filter(|service| namespace_of(&service.metadata) == namespace)
        .filter(|service| {
            subset(
                &monitor.spec.selector.match_labels,
                &service.metadata.labels,
            )
        })
        .map(|service| (&service.metadata.labels, service.metadata.name.clone()))
        .collect();
    monitor_jobs(
        &format!("{file}: ServiceMonitor {}", monitor.metadata.name),
        monitor.spec.job_label.as_deref(),
        &selected,
        &monitor.spec.endpoints,
    )
}

/// The jobs of a PodMonitor: for each pod template it selects, the value of
/// the pod's label named by `spec.jobLabel`, else `<namespace>/<name>` of
/// the PodMonitor.
fn pod_monitor_jobs(manifests: &Manifests, file: &str, monitor: &PodMonitor) -> Vec<String> {
    let namespace = namespace_of(&monitor.metadata);
    let default_job = format!("{namespace}/{}", monitor.metadata.name);
    let selected: Vec<(&BTreeMap<String, String>, String)> = manifests
        .workloads()
        .filter(|(_, _, workload)| namespace_of(&workload.metadata) == namespace)
        .map(|(_, _, workload)| &workload.spec.template.metadata.labels)
        .filter(|labels| subset(&monitor.spec.selector.match_labels, labels))
        .map(|labels| (labels, default_job.clone()))
        .collect();
    monitor_jobs(
        &format!("{file}: PodMonitor {}", monitor.metadata.name),
        monitor.spec.job_label.as_deref(),
        &selected,
        &monitor.spec.pod_metrics_endpoints,
    )
}

/// The jobs of a ServiceMonitor or PodMonitor: for each endpoint and each
/// selected object (its labels, and its job when it lacks the `job_label`
/// label), that label's value or the default, relabeled by the endpoint.
fn monitor_jobs(
    what: &str,
    job_label: Option<&str>,
    selected: &[(&BTreeMap<String, String>, String)],
    endpoints: &[MetricsEndpoint],
) -> Vec<String> {
    assert!(
        !selected.is_empty(),
        "{what} selects nothing in examples/kubernetes/"
    );
    let mut jobs = Vec::new();
    for endpoint in endpoints {
        for (labels, default_job) in selected {
            let initial = job_label
                .and_then(|name| labels.get(name))
                .filter(|value| !value.is_empty())
                .unwrap_or(default_job);
            jobs.push(scrape_job(
                initial,
                &endpoint.relabelings,
                &endpoint.metric_relabelings,
                what,
            ));
        }
    }
    jobs
}

// ---- The check --------------------------------------------------------------

/// Every `job` matcher of every rule, with the rule's name.
fn job_matchers(rules: &[Rule]) -> Vec<(&str, LabelMatcher)> {
    rules
        .iter()
        .flat_map(|rule| {
            label_matchers(&rule.expr)
                .unwrap_or_else(|e| panic!("rule {}: {e}", rule.name()))
                .into_iter()
                .filter(|matcher| matcher.label == "job")
                .map(move |matcher| (rule.name(), matcher))
        })
        .collect()
}

/// One message per positive `job` matcher and setup with no job it
/// matches: a rule that cannot fire there.
fn unmatched_job_selectors(rules: &[Rule], setups: &[Setup]) -> Vec<String> {
    let all_jobs = setups
        .iter()
        .map(|setup| format!("{}: {:?}", setup.name, setup.jobs))
        .collect::<Vec<_>>()
        .join("; ");
    let mut problems = Vec::new();
    for (rule, matcher) in job_matchers(rules) {
        if !matcher.is_positive() {
            continue;
        }
        for setup in setups {
            if !setup.jobs.iter().any(|job| matcher.matches(job)) {
                problems.push(format!(
                    "rule {rule}: {matcher} matches no job of the {} setup (jobs {all_jobs})",
                    setup.name
                ));
            }
        }
    }
    problems
}

/// One message per job of a setup that no positive `job` matcher selects:
/// its scrapes could fail without an alert. This catches a job misnamed in
/// one alternative (the StatefulSet's PodMonitor) while another alternative
/// (the Deployment's ServiceMonitor) already has the name the rules select.
fn unselected_jobs(rules: &[Rule], setups: &[Setup]) -> Vec<String> {
    let selecting: Vec<LabelMatcher> = job_matchers(rules)
        .into_iter()
        .map(|(_, matcher)| matcher)
        .filter(LabelMatcher::is_positive)
        .collect();
    let matchers = selecting
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let mut problems = Vec::new();
    for setup in setups {
        for job in &setup.jobs {
            if !selecting.iter().any(|matcher| matcher.matches(job)) {
                problems.push(format!(
                    "job {job:?} of the {} setup is selected by no rule (job matchers: {matchers})",
                    setup.name
                ));
            }
        }
    }
    problems
}

fn alert_rules() -> Vec<Rule> {
    let file: RuleFile = serde_saphyr::from_str(&read("examples/alerts.yml"))
        .unwrap_or_else(|e| panic!("examples/alerts.yml: {e}"));
    file.groups
        .into_iter()
        .flat_map(|group| group.rules)
        .collect()
}

#[test]
fn every_job_the_alert_rules_select_exists_in_both_setups() {
    let rules = alert_rules();
    assert!(
        !job_matchers(&rules).is_empty(),
        "examples/alerts.yml has no job matcher: this test checks nothing"
    );
    let setups = [
        Setup {
            name: "plain Prometheus (examples/prometheus.yml)",
            jobs: plain_prometheus_jobs(),
        },
        Setup {
            name: "Kubernetes (examples/kubernetes/)",
            jobs: kubernetes_jobs(&Manifests::load()),
        },
    ];
    let mut problems = unmatched_job_selectors(&rules, &setups);
    problems.extend(unselected_jobs(&rules, &setups));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The manifests as they were before the jobs were named after
/// examples/prometheus.yml.
const OLD_KUBERNETES_MANIFESTS: &str = r#"
kind: Service
apiVersion: v1
metadata: {name: synack-exporter, namespace: monitoring, labels: {app: synack}}
spec: {selector: {app: synack}, ports: [{port: 9215}]}
---
kind: StatefulSet
apiVersion: apps/v1
metadata: {name: synack-exporter-sharded, namespace: monitoring}
spec:
  selector: {matchLabels: {app: sharded}}
  template:
    metadata: {labels: {app: sharded}}
    spec: {containers: [{name: synack-exporter, image: synack_exporter:0.1.0}]}
---
kind: Probe
apiVersion: monitoring.coreos.com/v1
metadata: {name: synack-exporter, namespace: monitoring}
spec:
  jobName: synack
  module: tcp_halfopen
  prober: {url: "synack-exporter.monitoring.svc:9215"}
  targets: {staticConfig: {static: ["db1.example.org:5432"]}}
---
kind: ServiceMonitor
apiVersion: monitoring.coreos.com/v1
metadata: {name: synack-exporter, namespace: monitoring}
spec:
  selector: {matchLabels: {app: synack}}
  endpoints: [{port: http}]
---
kind: PodMonitor
apiVersion: monitoring.coreos.com/v1
metadata: {name: synack-exporter-sharded, namespace: monitoring}
spec:
  selector: {matchLabels: {app: sharded}}
  podMetricsEndpoints: [{port: http}]
"#;

fn jobs(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|name| name.to_string()).collect()
}

fn alert(name: &str, expr: &str) -> Rule {
    Rule {
        alert: Some(name.to_owned()),
        record: None,
        expr: expr.to_owned(),
    }
}

/// The two `up` rules of examples/alerts.yml, and two that show a regex is
/// anchored and a negative matcher is not held to any job.
fn job_rules() -> [Rule; 4] {
    [
        alert("ExporterDown", r#"up{job="synack_exporter"} == 0"#),
        alert("ProbeScrapeFailing", r#"up{job=~"synack_probe.*"} == 0"#),
        alert("Unanchored", r#"up{job=~"synack"} == 0"#),
        alert("Excluding", r#"up{job!="synack_exporter"} == 0"#),
    ]
}

#[test]
fn the_job_check_flags_rules_that_select_no_job_of_a_setup() {
    let resources: Vec<Resource> = serde_saphyr::from_multiple(OLD_KUBERNETES_MANIFESTS).unwrap();
    let old = Manifests {
        all: resources
            .into_iter()
            .map(|resource| ("old.yaml".to_owned(), resource))
            .collect(),
    };
    let old_kubernetes = Setup {
        name: "old Kubernetes",
        jobs: kubernetes_jobs(&old),
    };
    assert_eq!(
        old_kubernetes.jobs,
        jobs(&[
            "monitoring/synack-exporter-sharded",
            "synack",
            "synack-exporter"
        ])
    );
    let plain = Setup {
        name: "plain",
        jobs: jobs(&["synack_exporter", "synack_probe"]),
    };

    let problems = unmatched_job_selectors(&job_rules(), &[plain, old_kubernetes]);
    let expected = [
        ("ExporterDown", "old Kubernetes"),
        ("ProbeScrapeFailing", "old Kubernetes"),
        ("Unanchored", "plain"),
    ];
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    for (problem, (rule, setup)) in problems.iter().zip(expected) {
        assert!(
            problem.starts_with(&format!("rule {rule}:"))
                && problem.contains(&format!("of the {setup} setup")),
            "expected rule {rule} flagged for the {setup} setup: {problem}"
        );
    }
    assert!(
        problems[0].contains(r#"job="synack_exporter""#) && problems[0].contains("synack-exporter"),
        "a problem names the matcher and the jobs: {}",
        problems[0]
    );
}

#[test]
fn the_job_check_flags_jobs_that_no_rule_selects() {
    let rules = &job_rules()[..2];
    // Renamed everywhere but in the StatefulSet's PodMonitor: every rule
    // still matches a job, but that job is selected by no rule.
    let half_renamed = Setup {
        name: "half-renamed Kubernetes",
        jobs: jobs(&[
            "monitoring/synack-exporter-sharded",
            "synack_exporter",
            "synack_probe",
        ]),
    };
    assert!(unmatched_job_selectors(rules, std::slice::from_ref(&half_renamed)).is_empty());
    let unselected = unselected_jobs(rules, &[half_renamed]);
    assert_eq!(unselected.len(), 1, "{unselected:#?}");
    assert!(
        unselected[0]
            .starts_with(r#"job "monitoring/synack-exporter-sharded" of the half-renamed"#),
        "{}",
        unselected[0]
    );

    let renamed = [Setup {
        name: "renamed Kubernetes",
        jobs: jobs(&["synack_exporter", "synack_probe"]),
    }];
    assert!(unmatched_job_selectors(rules, &renamed).is_empty());
    assert!(unselected_jobs(rules, &renamed).is_empty());
}
