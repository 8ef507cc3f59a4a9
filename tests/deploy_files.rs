//! The deployment files users copy: every Kubernetes manifest under
//! `examples/kubernetes/` parses and has the fields that matter (image,
//! args, ports, probes, security context, the Probe's /probe URL), the
//! scrape jobs of the manifests and of `examples/prometheus.yml` have the
//! names the rules of `examples/alerts.yml` select, the Dockerfile has what
//! the issue asks for (with a dependency layer) and `.dockerignore` agrees
//! with it, and the systemd unit has its hardening and passes
//! `systemd-analyze verify`.
//!
//! The manifests are read into small structs holding only the checked
//! fields; unknown fields are ignored, and an unknown `kind` is an error, so
//! a new kind of document must be added here.

mod common;

use regex::Regex;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use synack_exporter::Exporter;

const BINARY: &str = env!("CARGO_BIN_EXE_synack_exporter");
const CONFIG_DIR: &str = "/etc/synack_exporter";
const CONFIG_FILE_ARG: &str = "--config.file=/etc/synack_exporter/config.yml";
const POD_INDEX_FIELD: &str = "metadata.labels['apps.kubernetes.io/pod-index']";

// ---- The subset of the Kubernetes schema that is checked --------------------

#[derive(Debug, Deserialize)]
#[serde(tag = "kind")]
enum Resource {
    Deployment(Workload),
    StatefulSet(Workload),
    Service(Service),
    ConfigMap(ConfigMap),
    Probe(ProbeResource),
    ServiceMonitor(ServiceMonitor),
    PodMonitor(PodMonitor),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    #[serde(default)]
    name: String,
    namespace: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Workload {
    api_version: String,
    metadata: Metadata,
    spec: WorkloadSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WorkloadSpec {
    replicas: Option<u32>,
    service_name: Option<String>,
    selector: LabelSelector,
    template: PodTemplate,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LabelSelector {
    match_labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct PodTemplate {
    metadata: Metadata,
    spec: PodSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    security_context: Option<SecurityContext>,
    containers: Vec<Container>,
    #[serde(default)]
    volumes: Vec<Volume>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    name: String,
    image: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<EnvVar>,
    #[serde(default)]
    ports: Vec<ContainerPort>,
    liveness_probe: Option<HttpProbe>,
    readiness_probe: Option<HttpProbe>,
    security_context: Option<SecurityContext>,
    #[serde(default)]
    volume_mounts: Vec<VolumeMount>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvVar {
    name: String,
    value_from: Option<EnvVarSource>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvVarSource {
    field_ref: Option<FieldRef>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FieldRef {
    field_path: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerPort {
    name: Option<String>,
    container_port: u16,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HttpProbe {
    http_get: HttpGet,
}

#[derive(Debug, Deserialize)]
struct HttpGet {
    path: String,
    port: IntOrString,
}

/// A Kubernetes port reference: a number or a port name.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(untagged)]
enum IntOrString {
    Int(u16),
    String(String),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecurityContext {
    run_as_non_root: Option<bool>,
    run_as_user: Option<u32>,
    read_only_root_filesystem: Option<bool>,
    allow_privilege_escalation: Option<bool>,
    capabilities: Option<Capabilities>,
}

#[derive(Debug, Deserialize)]
struct Capabilities {
    #[serde(default)]
    drop: Vec<String>,
    #[serde(default)]
    add: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Volume {
    name: String,
    config_map: Option<NameRef>,
}

#[derive(Debug, Deserialize)]
struct NameRef {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VolumeMount {
    name: String,
    mount_path: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Service {
    api_version: String,
    metadata: Metadata,
    spec: ServiceSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceSpec {
    #[serde(rename = "clusterIP")]
    cluster_ip: Option<String>,
    selector: BTreeMap<String, String>,
    ports: Vec<ServicePort>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServicePort {
    name: Option<String>,
    port: u16,
    target_port: Option<IntOrString>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigMap {
    api_version: String,
    metadata: Metadata,
    #[serde(default)]
    data: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProbeResource {
    api_version: String,
    metadata: Metadata,
    spec: ProbeSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProbeSpec {
    job_name: Option<String>,
    module: String,
    prober: Prober,
    targets: ProbeTargets,
    #[serde(default)]
    metric_relabelings: Vec<RelabelRule>,
}

#[derive(Debug, Deserialize)]
struct Prober {
    url: String,
    scheme: Option<String>,
    path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProbeTargets {
    static_config: StaticConfig,
}

#[derive(Debug, Deserialize)]
struct StaticConfig {
    #[serde(rename = "static")]
    targets: Vec<String>,
    #[serde(rename = "relabelingConfigs", default)]
    relabelings: Vec<RelabelRule>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceMonitor {
    api_version: String,
    metadata: Metadata,
    spec: ServiceMonitorSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceMonitorSpec {
    job_label: Option<String>,
    selector: LabelSelector,
    endpoints: Vec<MetricsEndpoint>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodMonitor {
    api_version: String,
    metadata: Metadata,
    spec: PodMonitorSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodMonitorSpec {
    job_label: Option<String>,
    selector: LabelSelector,
    pod_metrics_endpoints: Vec<MetricsEndpoint>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetricsEndpoint {
    port: String,
    path: Option<String>,
    #[serde(default)]
    relabelings: Vec<RelabelRule>,
    #[serde(default)]
    metric_relabelings: Vec<RelabelRule>,
}

/// A relabeling rule, spelled as in the operator's resources (camelCase)
/// or as in prometheus.yml (snake_case). Only what decides the `job` label.
#[derive(Debug, Deserialize)]
struct RelabelRule {
    #[serde(rename = "targetLabel", alias = "target_label")]
    target_label: Option<String>,
    replacement: Option<String>,
    action: Option<String>,
    regex: Option<String>,
}

// ---- The subset of prometheus.yml and of the rule files that is checked -----

#[derive(Debug, Deserialize)]
struct PrometheusConfig {
    scrape_configs: Vec<ScrapeConfig>,
}

#[derive(Debug, Deserialize)]
struct ScrapeConfig {
    job_name: String,
    #[serde(default)]
    relabel_configs: Vec<RelabelRule>,
    #[serde(default)]
    metric_relabel_configs: Vec<RelabelRule>,
}

#[derive(Debug, Deserialize)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Debug, Deserialize)]
struct RuleGroup {
    rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
struct Rule {
    alert: Option<String>,
    record: Option<String>,
    expr: String,
}

impl Rule {
    fn name(&self) -> &str {
        self.alert
            .as_deref()
            .or(self.record.as_deref())
            .unwrap_or("?")
    }
}

// ---- Loading ------------------------------------------------------------------

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    let path = repo_path(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every document of every `.yaml`/`.yml` file under examples/kubernetes/,
/// with the file it came from.
fn manifests() -> Vec<(String, Resource)> {
    let dir = repo_path("examples/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    files.sort();
    let mut resources = Vec::new();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let documents: Vec<Resource> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("examples/kubernetes/{name}: {e}"));
        assert!(!documents.is_empty(), "{name}: no YAML documents");
        resources.extend(documents.into_iter().map(|doc| (name.clone(), doc)));
    }
    resources
}

struct Manifests {
    all: Vec<(String, Resource)>,
}

impl Manifests {
    fn load() -> Self {
        Self { all: manifests() }
    }

    fn workloads(&self) -> impl Iterator<Item = (&str, &str, &Workload)> {
        self.all
            .iter()
            .filter_map(|(file, resource)| match resource {
                Resource::Deployment(w) => Some((file.as_str(), "Deployment", w)),
                Resource::StatefulSet(w) => Some((file.as_str(), "StatefulSet", w)),
                _ => None,
            })
    }

    fn services(&self) -> impl Iterator<Item = &Service> {
        self.all.iter().filter_map(|(_, resource)| match resource {
            Resource::Service(s) => Some(s),
            _ => None,
        })
    }

    fn service(&self, name: &str) -> &Service {
        self.services()
            .find(|s| s.metadata.name == name)
            .unwrap_or_else(|| panic!("no Service named {name:?}"))
    }

    fn config_map(&self, name: &str) -> &ConfigMap {
        self.all
            .iter()
            .find_map(|(_, resource)| match resource {
                Resource::ConfigMap(c) if c.metadata.name == name => Some(c),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no ConfigMap named {name:?}"))
    }

    fn deployment(&self) -> &Workload {
        self.only("deployment.yaml", |r| match r {
            Resource::Deployment(w) => Some(w),
            _ => None,
        })
    }

    fn only<'a, T>(&'a self, file: &str, pick: impl Fn(&'a Resource) -> Option<&'a T>) -> &'a T {
        let found: Vec<&T> = self
            .all
            .iter()
            .filter(|(f, _)| f == file)
            .filter_map(|(_, r)| pick(r))
            .collect();
        assert_eq!(found.len(), 1, "{file}: expected exactly one such resource");
        found[0]
    }
}

fn subset(small: &BTreeMap<String, String>, big: &BTreeMap<String, String>) -> bool {
    !small.is_empty() && small.iter().all(|(k, v)| big.get(k) == Some(v))
}

/// The non-comment lines of a Dockerfile or systemd unit, with backslash
/// continuations joined: `comment_markers` start a comment line.
fn logical_lines(text: &str, comment_markers: &[char]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if current.is_empty() && line.starts_with(comment_markers) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(start) => {
                current.push_str(start.trim_end());
                current.push(' ');
            }
            None => {
                current.push_str(line);
                if !current.is_empty() {
                    lines.push(std::mem::take(&mut current));
                }
            }
        }
    }
    lines
}

/// The tag of `docker build -t IMAGE .` in the Dockerfile's header comment.
fn dockerfile_build_tag() -> String {
    let dockerfile = read("Dockerfile");
    let line = dockerfile
        .lines()
        .take_while(|line| line.starts_with('#') || line.trim().is_empty())
        .find(|line| line.contains("docker build -t "))
        .expect("the Dockerfile's header comment gives its `docker build -t IMAGE .` command");
    let after = line.split("docker build -t ").nth(1).unwrap();
    after.split_whitespace().next().unwrap().to_owned()
}

// ---- Kubernetes -------------------------------------------------------------

/// Runs the real binary's `--config.check` with a container's `args`, the
/// ConfigMap's config in place of the mounted file and `expand` applied to
/// every other argument; returns whether it passed and what it printed.
fn config_check_with(
    manifests: &Manifests,
    args: &[String],
    dir_name: &str,
    expand: impl Fn(&str) -> String,
) -> (bool, String, Vec<String>) {
    let config_path = common::temp_dir(dir_name).join("config.yml");
    let config = &manifests.config_map("synack-exporter").data["config.yml"];
    std::fs::write(&config_path, config).unwrap();
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            if a == CONFIG_FILE_ARG {
                format!("--config.file={}", config_path.display())
            } else {
                expand(a)
            }
        })
        .chain(["--config.check".to_owned()])
        .collect();
    let output = Command::new(BINARY).args(&args).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text, args)
}

#[test]
fn every_manifest_parses_and_the_expected_kinds_exist() {
    let manifests = Manifests::load();
    let kinds_in = |file: &str| -> Vec<&'static str> {
        manifests
            .all
            .iter()
            .filter(|(f, _)| f == file)
            .map(|(_, r)| match r {
                Resource::Deployment(_) => "Deployment",
                Resource::StatefulSet(_) => "StatefulSet",
                Resource::Service(_) => "Service",
                Resource::ConfigMap(_) => "ConfigMap",
                Resource::Probe(_) => "Probe",
                Resource::ServiceMonitor(_) => "ServiceMonitor",
                Resource::PodMonitor(_) => "PodMonitor",
            })
            .collect()
    };
    for (file, kind) in [
        ("deployment.yaml", "Deployment"),
        ("service.yaml", "Service"),
        ("configmap.yaml", "ConfigMap"),
        ("probe.yaml", "Probe"),
        ("statefulset.yaml", "StatefulSet"),
    ] {
        assert!(
            kinds_in(file).contains(&kind),
            "examples/kubernetes/{file} has no {kind}: {:?}",
            kinds_in(file)
        );
    }

    // One namespace for everything, since the Probe's URL names it.
    for (file, resource) in &manifests.all {
        let (api_version, metadata) = match resource {
            Resource::Deployment(w) | Resource::StatefulSet(w) => (&w.api_version, &w.metadata),
            Resource::Service(s) => (&s.api_version, &s.metadata),
            Resource::ConfigMap(c) => (&c.api_version, &c.metadata),
            Resource::Probe(p) => (&p.api_version, &p.metadata),
            Resource::ServiceMonitor(m) => (&m.api_version, &m.metadata),
            Resource::PodMonitor(m) => (&m.api_version, &m.metadata),
        };
        let expected_api = match resource {
            Resource::Deployment(_) | Resource::StatefulSet(_) => "apps/v1",
            Resource::Service(_) | Resource::ConfigMap(_) => "v1",
            _ => "monitoring.coreos.com/v1",
        };
        assert_eq!(api_version, expected_api, "{file}: {}", metadata.name);
        assert_eq!(
            metadata.namespace.as_deref(),
            Some("monitoring"),
            "{file}: {} namespace",
            metadata.name
        );
        assert_eq!(
            metadata
                .labels
                .get("app.kubernetes.io/name")
                .map(String::as_str),
            Some("synack-exporter"),
            "{file}: {} label app.kubernetes.io/name",
            metadata.name
        );
    }
}

#[test]
fn workloads_run_the_image_with_the_config_ports_probes_and_a_locked_down_context() {
    let manifests = Manifests::load();
    let image = dockerfile_build_tag();
    let mut seen = 0;
    for (file, kind, workload) in manifests.workloads() {
        seen += 1;
        let what = format!("{file}: {kind} {}", workload.metadata.name);
        let spec = &workload.spec;
        assert!(
            subset(&spec.selector.match_labels, &spec.template.metadata.labels),
            "{what}: the selector must match the pod template's labels"
        );
        let pod = &spec.template.spec;
        assert_eq!(pod.containers.len(), 1, "{what}: one container");
        let container = &pod.containers[0];
        let what = format!("{what}, container {}", container.name);

        // The image is the one the Dockerfile's documented command builds,
        // with a pinned tag.
        assert_eq!(container.image, image, "{what}: image");
        let tag = image.rsplit_once(':').map(|(_, tag)| tag);
        assert!(
            tag.is_some_and(|tag| tag != "latest" && !tag.contains('/')),
            "{what}: pin the image tag"
        );

        // Args: the mounted ConfigMap as --config.file.
        assert!(
            container.args.iter().any(|a| a == CONFIG_FILE_ARG),
            "{what}: args {:?} lack {CONFIG_FILE_ARG}",
            container.args
        );
        let volume = pod
            .volumes
            .iter()
            .find(|v| v.config_map.is_some())
            .unwrap_or_else(|| panic!("{what}: no ConfigMap volume"));
        let mount = container
            .volume_mounts
            .iter()
            .find(|m| m.name == volume.name)
            .unwrap_or_else(|| panic!("{what}: the ConfigMap volume is not mounted"));
        assert_eq!(mount.mount_path, CONFIG_DIR, "{what}: mount path");
        let config_map = manifests.config_map(&volume.config_map.as_ref().unwrap().name);
        assert!(
            config_map.data.contains_key("config.yml"),
            "{what}: the ConfigMap has no config.yml key"
        );

        // Port 9215, named http, and the probes on it.
        let port = container
            .ports
            .iter()
            .find(|p| p.container_port == 9215)
            .unwrap_or_else(|| panic!("{what}: no containerPort 9215"));
        assert_eq!(port.name.as_deref(), Some("http"), "{what}: port name");
        for (kind, probe, path) in [
            ("livenessProbe", &container.liveness_probe, "/-/healthy"),
            ("readinessProbe", &container.readiness_probe, "/-/ready"),
        ] {
            let probe = probe
                .as_ref()
                .unwrap_or_else(|| panic!("{what}: no {kind}"));
            assert_eq!(probe.http_get.path, path, "{what}: {kind} path");
            assert!(
                [IntOrString::Int(9215), IntOrString::String("http".into())]
                    .contains(&probe.http_get.port),
                "{what}: {kind} port {:?}",
                probe.http_get.port
            );
        }

        // Non-root, read-only, no privilege escalation, no capabilities.
        let context = container
            .security_context
            .as_ref()
            .unwrap_or_else(|| panic!("{what}: no securityContext"));
        let pod_context = pod.security_context.as_ref();
        assert!(
            context.run_as_non_root == Some(true)
                || pod_context.is_some_and(|c| c.run_as_non_root == Some(true)),
            "{what}: runAsNonRoot"
        );
        if let Some(uid) = context
            .run_as_user
            .or(pod_context.and_then(|c| c.run_as_user))
        {
            assert_ne!(uid, 0, "{what}: runAsUser");
        }
        assert_eq!(
            context.read_only_root_filesystem,
            Some(true),
            "{what}: readOnlyRootFilesystem"
        );
        assert_eq!(
            context.allow_privilege_escalation,
            Some(false),
            "{what}: allowPrivilegeEscalation"
        );
        let capabilities = context
            .capabilities
            .as_ref()
            .unwrap_or_else(|| panic!("{what}: no capabilities"));
        assert_eq!(capabilities.drop, ["ALL"], "{what}: capabilities.drop");
        assert!(
            capabilities.add.is_empty(),
            "{what}: half-open probes need no capability"
        );
    }
    assert_eq!(seen, 2, "one Deployment and one StatefulSet");
}

#[test]
fn the_statefulset_shards_scheduled_targets_by_pod_ordinal() {
    let manifests = Manifests::load();
    let workload = manifests.only("statefulset.yaml", |r| match r {
        Resource::StatefulSet(w) => Some(w),
        _ => None,
    });
    let replicas = workload.spec.replicas.expect("replicas is set");
    assert!(replicas > 1, "a sharding example needs several replicas");
    let container = &workload.spec.template.spec.containers[0];

    // --targets.shard=$(VAR)/n, n = replicas, VAR from the pod-index label.
    let shard = container
        .args
        .iter()
        .find_map(|a| a.strip_prefix("--targets.shard="))
        .unwrap_or_else(|| panic!("no --targets.shard in {:?}", container.args));
    let (index, count) = shard.split_once('/').expect("--targets.shard=i/n");
    assert_eq!(
        count,
        replicas.to_string(),
        "n in --targets.shard must equal replicas"
    );
    let variable = index
        .strip_prefix("$(")
        .and_then(|v| v.strip_suffix(')'))
        .unwrap_or_else(|| panic!("shard index {index:?} is not a $(VAR) reference"));
    let env = container
        .env
        .iter()
        .find(|e| e.name == variable)
        .unwrap_or_else(|| panic!("no env {variable}"));
    let field = env
        .value_from
        .as_ref()
        .and_then(|v| v.field_ref.as_ref())
        .map(|f| f.field_path.as_str());
    assert_eq!(field, Some(POD_INDEX_FIELD), "env {variable}");

    // The governing Service exists and is headless.
    let service_name = workload.spec.service_name.as_deref().expect("serviceName");
    let service = manifests.service(service_name);
    assert_eq!(service.spec.cluster_ip.as_deref(), Some("None"));
    assert!(subset(
        &service.spec.selector,
        &workload.spec.template.metadata.labels
    ));

    // The args, with the kubelet's $(VAR) expansion done for each ordinal,
    // are accepted by the real binary. Ordinal n would be refused.
    let reference = format!("$({variable})");
    for ordinal in 0..=replicas {
        let (success, text, args) =
            config_check_with(&manifests, &container.args, "statefulset", |a| {
                a.replace(&reference, &ordinal.to_string())
            });
        if ordinal < replicas {
            assert!(success, "ordinal {ordinal}: {args:?}: {text}");
            assert_eq!(text, "ok\n", "ordinal {ordinal}");
        } else {
            assert!(!success, "ordinal {ordinal} must be refused");
        }
    }
}

#[test]
fn the_deployment_args_are_accepted_by_the_binary() {
    let manifests = Manifests::load();
    let workload = manifests.deployment();
    let container = &workload.spec.template.spec.containers[0];
    let (success, text, args) =
        config_check_with(&manifests, &container.args, "deployment", str::to_owned);
    assert!(success, "{args:?}: {text}");
}

#[test]
fn the_config_map_holds_a_valid_config_with_the_probed_module() {
    let manifests = Manifests::load();
    let text = &manifests.config_map("synack-exporter").data["config.yml"];
    if let Err(error) = Exporter::builder()
        .config_text("configmap.yaml:config.yml", text)
        .check_config()
    {
        panic!("{error}");
    }
    let config: serde_json::Value = serde_saphyr::from_str(text).expect("YAML");
    assert!(
        config["targets"]
            .as_array()
            .is_some_and(|targets| !targets.is_empty()),
        "the sharding example needs scheduled targets"
    );
}

#[test]
fn the_service_exposes_port_9215_of_the_deployment() {
    let manifests = Manifests::load();
    let service = manifests.only("service.yaml", |r| match r {
        Resource::Service(s) => Some(s),
        _ => None,
    });
    let deployment = manifests.deployment();
    assert!(
        subset(
            &service.spec.selector,
            &deployment.spec.template.metadata.labels
        ),
        "the Service must select the Deployment's pods"
    );
    for service in manifests.services() {
        let port = service
            .spec
            .ports
            .iter()
            .find(|p| p.port == 9215)
            .unwrap_or_else(|| panic!("Service {}: no port 9215", service.metadata.name));
        assert_eq!(port.name.as_deref(), Some("http"));
        assert!(
            matches!(&port.target_port, None | Some(IntOrString::Int(9215)))
                || port.target_port == Some(IntOrString::String("http".into())),
            "Service {}: targetPort {:?}",
            service.metadata.name,
            port.target_port
        );
    }
}

#[test]
fn the_probe_resource_points_at_probe_with_tcp_halfopen() {
    let manifests = Manifests::load();
    let probe = manifests.only("probe.yaml", |r| match r {
        Resource::Probe(p) => Some(p),
        _ => None,
    });
    let spec = &probe.spec;
    assert_eq!(spec.module, "tcp_halfopen");
    assert_eq!(spec.prober.path.as_deref(), Some("/probe"));
    assert!(matches!(spec.prober.scheme.as_deref(), None | Some("http")));

    // The URL is host:port of a Service defined here, in its namespace.
    let service = manifests.service("synack-exporter");
    let namespace = service.metadata.namespace.as_deref().unwrap();
    assert_eq!(
        spec.prober.url,
        format!("{}.{namespace}.svc:9215", service.metadata.name),
        "prober url"
    );

    let targets = &spec.targets.static_config.targets;
    assert!(!targets.is_empty(), "static targets");
    for target in targets {
        assert!(
            synack_exporter::Target::parse(target).is_ok(),
            "static target {target:?} is not host:port"
        );
    }

    // The monitors scrape /metrics on the named port.
    for (file, resource) in &manifests.all {
        let (selector, endpoints) = match resource {
            Resource::ServiceMonitor(m) => (&m.spec.selector, &m.spec.endpoints),
            Resource::PodMonitor(m) => (&m.spec.selector, &m.spec.pod_metrics_endpoints),
            _ => continue,
        };
        assert!(!selector.match_labels.is_empty(), "{file}: selector");
        assert!(!endpoints.is_empty(), "{file}: endpoints");
        for endpoint in endpoints {
            assert_eq!(endpoint.port, "http", "{file}");
            assert_eq!(endpoint.path.as_deref(), Some("/metrics"), "{file}");
        }
    }
}

// ---- Job names: what the alert rules select, what the setups produce --------
//
// The rules in examples/alerts.yml select jobs by name (`up{job="..."}`). A
// setup whose scrape jobs are named otherwise loads the rules without error
// and never fires them, so the names each setup produces are computed here
// and held against every `job` matcher of every rule.

/// The jobs one way of running Prometheus produces.
struct Setup {
    name: &'static str,
    jobs: BTreeSet<String>,
}

/// A `{...}` regex as Prometheus applies it: fully anchored.
fn anchored_regex(pattern: &str) -> Regex {
    Regex::new(&format!("^(?:{pattern})$"))
        .unwrap_or_else(|e| panic!("regex {pattern:?} does not compile: {e}"))
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

// -- PromQL label matchers --

#[derive(Debug, Clone, Copy, PartialEq)]
enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

#[derive(Debug, PartialEq)]
struct LabelMatcher {
    label: String,
    op: MatchOp,
    value: String,
}

impl LabelMatcher {
    fn new(label: &str, op: MatchOp, value: &str) -> Self {
        Self {
            label: label.to_owned(),
            op,
            value: value.to_owned(),
        }
    }

    /// `=` and `=~` select series; `!=` and `!~` only exclude some.
    fn is_positive(&self) -> bool {
        matches!(self.op, MatchOp::Equal | MatchOp::Regex)
    }

    fn matches(&self, label_value: &str) -> bool {
        match self.op {
            MatchOp::Equal => label_value == self.value,
            MatchOp::NotEqual => label_value != self.value,
            MatchOp::Regex => anchored_regex(&self.value).is_match(label_value),
            MatchOp::NotRegex => !anchored_regex(&self.value).is_match(label_value),
        }
    }
}

impl std::fmt::Display for LabelMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match self.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        };
        write!(f, "{}{op}{:?}", self.label, self.value)
    }
}

/// The label matchers of every vector selector (`{...}`) in a PromQL
/// expression. Strings and comments are skipped, so that a `{` inside them
/// is not taken for a selector; anything this scanner does not understand
/// is an error rather than a matcher silently missed.
fn label_matchers(expr: &str) -> Result<Vec<LabelMatcher>, String> {
    let mut scanner = PromqlScanner {
        chars: expr.chars().collect(),
        at: 0,
    };
    let mut matchers = Vec::new();
    while let Some(c) = scanner.peek() {
        match c {
            '"' | '\'' | '`' => {
                scanner.string()?;
            }
            '#' => scanner.skip_comment(),
            '{' => {
                scanner.at += 1;
                matchers.extend(scanner.selector_matchers()?);
            }
            _ => scanner.at += 1,
        }
    }
    Ok(matchers)
}

struct PromqlScanner {
    chars: Vec<char>,
    at: usize,
}

impl PromqlScanner {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn next(&mut self) -> Result<char, String> {
        let c = self.peek().ok_or_else(|| self.error("unexpected end"))?;
        self.at += 1;
        Ok(c)
    }

    fn error(&self, message: &str) -> String {
        let text: String = self.chars.iter().collect();
        format!("{message} at character {} of {text:?}", self.at)
    }

    fn skip_comment(&mut self) {
        while self.peek().is_some_and(|c| c != '\n') {
            self.at += 1;
        }
    }

    fn skip_blanks(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                '#' => self.skip_comment(),
                c if c.is_whitespace() => self.at += 1,
                _ => return,
            }
        }
    }

    /// The matchers after a `{`, through the closing `}`.
    fn selector_matchers(&mut self) -> Result<Vec<LabelMatcher>, String> {
        let mut matchers = Vec::new();
        loop {
            self.skip_blanks();
            match self.peek() {
                Some('}') => {
                    self.at += 1;
                    return Ok(matchers);
                }
                None => return Err(self.error("unclosed `{`")),
                Some(_) => {}
            }
            let quoted = matches!(self.peek(), Some('"' | '\'' | '`'));
            let label = if quoted {
                self.string()?
            } else {
                self.identifier()?
            };
            self.skip_blanks();
            // `{"metric.name", ...}` names the metric: no matcher.
            let metric_name = quoted && matches!(self.peek(), Some(',' | '}'));
            if !metric_name {
                let op = self.operator()?;
                self.skip_blanks();
                let value = self.string()?;
                matchers.push(LabelMatcher { label, op, value });
                self.skip_blanks();
            }
            match self.peek() {
                Some(',') => self.at += 1,
                Some('}') => {}
                _ => return Err(self.error("expected `,` or `}`")),
            }
        }
    }

    fn identifier(&mut self) -> Result<String, String> {
        let start = self.at;
        while self
            .peek()
            .is_some_and(|c| c == '_' || c.is_ascii_alphanumeric())
        {
            self.at += 1;
        }
        let name: String = self.chars[start..self.at].iter().collect();
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(self.error("expected a label name"));
        }
        Ok(name)
    }

    fn operator(&mut self) -> Result<MatchOp, String> {
        let (op, length) = match (self.peek(), self.chars.get(self.at + 1)) {
            (Some('='), Some('~')) => (MatchOp::Regex, 2),
            (Some('!'), Some('~')) => (MatchOp::NotRegex, 2),
            (Some('!'), Some('=')) => (MatchOp::NotEqual, 2),
            (Some('='), _) => (MatchOp::Equal, 1),
            _ => return Err(self.error("expected =, !=, =~ or !~")),
        };
        self.at += length;
        Ok(op)
    }

    /// A string literal, unescaped: "..." and '...' with Go escapes, `...` raw.
    fn string(&mut self) -> Result<String, String> {
        let quote = self.next()?;
        let mut value = String::new();
        loop {
            match self.next().map_err(|_| self.error("unterminated string"))? {
                c if c == quote => return Ok(value),
                '\\' if quote != '`' => value.push(self.escape()?),
                '\n' if quote != '`' => return Err(self.error("newline in a string")),
                c => value.push(c),
            }
        }
    }

    fn escape(&mut self) -> Result<char, String> {
        Ok(match self.next()? {
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            'a' => '\x07',
            'b' => '\x08',
            'f' => '\x0c',
            'v' => '\x0b',
            c @ ('\\' | '"' | '\'') => c,
            _ => return Err(self.error("an escape this scanner does not decode")),
        })
    }
}

// -- The check --

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

#[test]
fn label_matchers_are_read_from_promql_past_strings_and_comments() {
    let expr = r#"up{job="a", instance!="b"} # {job="in a comment"}
        or label_replace(x{job=~'sy.*\\.x', job!~`raw\d`}[5m], "job", "{job=\"s\"}", "", "")
        or {"metric.name", job = "c",}"#;
    let matchers = label_matchers(expr).unwrap();
    assert_eq!(
        matchers,
        [
            LabelMatcher::new("job", MatchOp::Equal, "a"),
            LabelMatcher::new("instance", MatchOp::NotEqual, "b"),
            LabelMatcher::new("job", MatchOp::Regex, r"sy.*\.x"),
            LabelMatcher::new("job", MatchOp::NotRegex, r"raw\d"),
            LabelMatcher::new("job", MatchOp::Equal, "c"),
        ]
    );
    for broken in [
        r#"up{job="a"#,
        r#"up{job="a" x="b"}"#,
        r#"up{job="\x41"}"#,
        "up{job}",
    ] {
        assert!(
            label_matchers(broken).is_err(),
            "{broken:?} must be an error"
        );
    }
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

// ---- Dockerfile -------------------------------------------------------------

/// The Dockerfile's instructions, continuation lines joined.
fn dockerfile_instructions() -> Vec<String> {
    logical_lines(&read("Dockerfile"), &['#'])
}

fn is_instruction(instruction: &str, keyword: &str) -> bool {
    instruction
        .split_whitespace()
        .next()
        .is_some_and(|first| first.eq_ignore_ascii_case(keyword))
}

/// The build-context paths a COPY instruction copies (none for
/// `COPY --from=stage`); the last argument is the destination.
fn copied_context_paths(instruction: &str) -> Vec<&str> {
    if !is_instruction(instruction, "COPY") {
        return Vec::new();
    }
    let arguments: Vec<&str> = instruction.split_whitespace().skip(1).collect();
    if arguments.iter().any(|a| a.starts_with("--from")) {
        return Vec::new();
    }
    let paths = arguments.iter().filter(|a| !a.starts_with("--")).copied();
    let mut paths: Vec<&str> = paths.collect();
    paths.pop();
    paths
}

/// The `&&`-separated commands of a RUN instruction.
fn shell_commands(instruction: &str) -> Vec<&str> {
    let (_, script) = instruction.split_once(' ').unwrap_or_default();
    script.split("&&").map(str::trim).collect()
}

#[derive(Debug, Deserialize)]
struct CargoMetadata {
    packages: Vec<CargoPackage>,
}

#[derive(Debug, Deserialize)]
struct CargoPackage {
    targets: Vec<CargoTarget>,
}

#[derive(Debug, Deserialize)]
struct CargoTarget {
    kind: Vec<String>,
    src_path: String,
}

/// The root source files, relative to the repository, of what `cargo
/// build` builds: the library, the binaries and any build script, not the
/// examples, tests and benches. From `cargo metadata`, so Cargo.toml is the
/// only list of them.
fn built_target_sources() -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let manifest = repo_path("Cargo.toml");
    let output = Command::new(&cargo)
        .args([
            "metadata",
            "--no-deps",
            "--offline",
            "--format-version",
            "1",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .output()
        .unwrap_or_else(|e| panic!("{cargo} metadata: {e}"));
    assert!(
        output.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // JSON is YAML, so the YAML parser the other files use reads it too.
    let metadata: CargoMetadata =
        serde_saphyr::from_str(&String::from_utf8_lossy(&output.stdout)).unwrap();
    let root = format!("{}/", env!("CARGO_MANIFEST_DIR"));
    metadata
        .packages
        .iter()
        .flat_map(|package| &package.targets)
        .filter(|target| {
            !target
                .kind
                .iter()
                .any(|kind| ["example", "test", "bench"].contains(&kind.as_str()))
        })
        .map(|target| {
            let path = target.src_path.strip_prefix(&root);
            path.unwrap_or_else(|| panic!("{} is outside the crate", target.src_path))
                .to_owned()
        })
        .collect()
}

#[test]
fn the_dockerfile_builds_the_dependencies_in_a_layer_before_the_sources() {
    let instructions = dockerfile_instructions();
    let find = |what: &str, found: &dyn Fn(&str) -> bool| -> Vec<usize> {
        let positions: Vec<usize> = (0..instructions.len())
            .filter(|&i| found(&instructions[i]))
            .collect();
        assert!(!positions.is_empty(), "the Dockerfile has no {what}");
        positions
    };
    let copies_manifests = find("COPY Cargo.toml Cargo.lock", &|i| {
        let paths = copied_context_paths(i);
        paths.contains(&"Cargo.toml") && paths.contains(&"Cargo.lock")
    })[0];
    let copies_sources = find("COPY src", &|i| copied_context_paths(i).contains(&"src"))[0];
    let builds = find("RUN cargo build --release --locked", &|i| {
        is_instruction(i, "RUN") && i.contains("cargo build --release --locked")
    });
    assert_eq!(builds.len(), 2, "a dependency build and a crate build");
    let (dependency_build, crate_build) = (builds[0], builds[1]);
    assert!(
        copies_manifests < dependency_build
            && dependency_build < copies_sources
            && copies_sources < crate_build,
        "the order must be: COPY Cargo.toml Cargo.lock, build, COPY src, build"
    );

    // Stand-ins for every target cargo builds, and those targets rebuilt
    // once the real sources are in: touched, since COPY keeps mtimes older
    // than the stand-ins' build.
    let dependency_build = &instructions[dependency_build];
    let crate_build = &instructions[crate_build];
    let commands = shell_commands(crate_build);
    let position = |start: &str| commands.iter().position(|c| c.starts_with(start));
    let touch = position("touch ")
        .unwrap_or_else(|| panic!("the crate build touches no source: {crate_build}"));
    assert!(
        Some(touch) < position("cargo build"),
        "touch before cargo build: {crate_build}"
    );
    let touch = commands[touch];
    let sources = built_target_sources();
    assert!(!sources.is_empty(), "cargo metadata lists no target");
    for source in &sources {
        assert!(
            dependency_build.contains(source.as_str()),
            "the dependency build makes no stand-in {source}: {dependency_build}"
        );
        assert!(
            touch.split_whitespace().any(|word| word == source),
            "{touch:?} must touch {source}"
        );
        assert!(
            source.starts_with("src/"),
            "{source} is not under src/, which is all the image gets"
        );
    }

    // Only the crate build's binary goes to the runtime stage.
    let binary = "target/release/synack_exporter";
    assert!(!dependency_build.contains(binary), "{dependency_build}");
    assert!(crate_build.contains(binary), "{crate_build}");
}

#[test]
fn the_dockerignore_admits_exactly_what_the_dockerfile_copies() {
    let text = read(".dockerignore");
    let patterns: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    assert_eq!(
        patterns.first(),
        Some(&"*"),
        "exclude everything first, then admit what the image needs"
    );
    let admitted: BTreeSet<&str> = patterns[1..]
        .iter()
        .map(|pattern| {
            let path = pattern
                .strip_prefix('!')
                .unwrap_or_else(|| panic!("after `*`, only `!PATH` lines: {pattern}"));
            path.trim_end_matches('/')
        })
        .collect();
    let instructions = dockerfile_instructions();
    let copied: BTreeSet<&str> = instructions
        .iter()
        .flat_map(|instruction| copied_context_paths(instruction))
        .map(|path| path.trim_end_matches('/'))
        .collect();
    assert_eq!(
        admitted, copied,
        ".dockerignore against the Dockerfile's COPY"
    );
    for path in admitted {
        assert!(
            repo_path(path).exists(),
            ".dockerignore admits {path}, which does not exist"
        );
    }
}

#[test]
fn the_dockerfile_is_multi_stage_non_root_and_runs_with_no_arguments() {
    let text = read("Dockerfile");
    let instructions = dockerfile_instructions();
    let with = |keyword: &str| -> Vec<&str> {
        instructions
            .iter()
            .filter(|instruction| is_instruction(instruction, keyword))
            .map(String::as_str)
            .collect()
    };

    let froms = with("FROM");
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    assert!(
        froms[0].starts_with("FROM rust:") && froms[0].contains(" AS "),
        "build stage from the official Rust image: {}",
        froms[0]
    );
    let runtime = froms.last().unwrap();
    assert!(
        runtime.starts_with("FROM gcr.io/distroless/cc-debian12:")
            || runtime.starts_with("FROM debian:bookworm-slim"),
        "minimal runtime: {runtime}"
    );
    for from in &froms {
        let image = from.split_whitespace().nth(1).unwrap();
        assert!(
            image.contains(':') && !image.ends_with(":latest"),
            "pin {image}"
        );
    }
    assert!(with("EXPOSE").contains(&"EXPOSE 9215"), "EXPOSE 9215");

    let users = with("USER");
    let user = users.last().expect("a USER instruction");
    let name = user.split_whitespace().nth(1).unwrap();
    let uid = name.split(':').next().unwrap();
    assert!(uid != "root" && uid != "0", "non-root USER: {user}");

    // Exec form, no CMD that would need arguments: `docker run IMAGE` works.
    let entrypoint = with("ENTRYPOINT");
    assert_eq!(entrypoint.len(), 1, "one ENTRYPOINT");
    assert!(
        entrypoint[0].contains(r#"["/usr/local/bin/synack_exporter"]"#),
        "exec-form ENTRYPOINT with no arguments: {}",
        entrypoint[0]
    );
    assert!(
        with("CMD").is_empty(),
        "no CMD: the embedded config needs none"
    );

    assert!(
        !with("HEALTHCHECK").is_empty()
            || (text.contains("No HEALTHCHECK") && text.contains("/-/healthy")),
        "a HEALTHCHECK, or a comment saying why not and what to use"
    );
    assert!(
        repo_path("ci/lint_dockerfile.sh").exists(),
        "ci/lint_dockerfile.sh lints it"
    );
}

// ---- systemd ----------------------------------------------------------------

#[test]
fn the_systemd_unit_is_hardened() {
    let text = read("examples/synack_exporter.service");
    let directives = logical_lines(&text, &['#', ';']);
    for required in [
        "[Service]",
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
    ] {
        assert!(
            directives.iter().any(|d| d == required),
            "the unit lacks the line {required:?}"
        );
    }
    assert!(
        directives.iter().any(|d| d.starts_with("LimitNOFILE=")),
        "LimitNOFILE"
    );
    // No capability, and the comment says why.
    assert!(
        !directives
            .iter()
            .any(|d| d.starts_with("CapabilityBoundingSet=") && d != "CapabilityBoundingSet="),
        "CapabilityBoundingSet must stay empty"
    );
    assert!(text.contains("need no capability") || text.contains("needs no capability"));
    let exec_start = directives
        .iter()
        .find(|d| d.starts_with("ExecStart="))
        .expect("ExecStart");
    assert!(
        exec_start.contains(CONFIG_FILE_ARG),
        "ExecStart uses {CONFIG_FILE_ARG}: {exec_start}"
    );
}

/// The unit's install steps copy examples/synack.yml to the file its
/// ExecStart reads, and the binary accepts ExecStart's arguments with it.
#[test]
fn the_systemd_unit_runs_the_example_config() {
    let text = read("examples/synack_exporter.service");
    assert!(
        text.contains("install -D -m 0644 examples/synack.yml /etc/synack_exporter/config.yml"),
        "the unit's install steps copy examples/synack.yml"
    );
    let directives = logical_lines(&text, &['#', ';']);
    let exec_start = directives
        .iter()
        .find_map(|d| d.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let example = repo_path("examples/synack.yml");
    let args: Vec<String> = exec_start
        .split_whitespace()
        .skip(1)
        .map(|arg| {
            if arg == CONFIG_FILE_ARG {
                format!("--config.file={}", example.display())
            } else {
                arg.to_owned()
            }
        })
        .chain(["--config.check".to_owned()])
        .collect();
    let output = Command::new(BINARY).args(&args).output().unwrap();
    assert_eq!(
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).as_ref()
        ),
        (Some(0), "ok\n"),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        common::skip_or_fail("systemd-analyze");
        return;
    }
    // verify insists that ExecStart's binary exists: point it at this build.
    let text =
        read("examples/synack_exporter.service").replace("/usr/local/bin/synack_exporter", BINARY);
    let path = common::temp_dir("systemd").join("synack_exporter.service");
    std::fs::write(&path, text).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && !stderr.contains("synack_exporter.service"),
        "systemd-analyze verify: {stderr}"
    );
}
