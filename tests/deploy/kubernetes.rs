//! Every Kubernetes manifest under `examples/kubernetes/` parses and has the
//! fields that matter (image, args, ports, probes, security context, the
//! Probe's /probe URL), and the args the workloads give the binary are
//! accepted by it.
//!
//! The manifests are read into small structs holding only the checked
//! fields; unknown fields are ignored, and an unknown `kind` is an error, so
//! a new kind of document must be added here.

use super::dockerfile::image_tag;
use super::{BINARY, COMMAND_LIMIT, CONFIG_DIR, CONFIG_FILE_ARG, repo_path};
use crate::common;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use synack_exporter::Exporter;

const POD_INDEX_FIELD: &str = "metadata.labels['apps.kubernetes.io/pod-index']";

// ---- The subset of the Kubernetes schema that is checked --------------------

#[derive(Debug, Deserialize)]
#[serde(tag = "kind")]
pub enum Resource {
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
pub struct Metadata {
    #[serde(default)]
    pub name: String,
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    pub api_version: String,
    pub metadata: Metadata,
    pub spec: WorkloadSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSpec {
    pub replicas: Option<u32>,
    pub service_name: Option<String>,
    pub selector: LabelSelector,
    pub template: PodTemplate,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    pub match_labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
pub struct PodTemplate {
    pub metadata: Metadata,
    pub spec: PodSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    pub security_context: Option<SecurityContext>,
    pub containers: Vec<Container>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    pub image: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<EnvVar>,
    #[serde(default)]
    pub ports: Vec<ContainerPort>,
    pub liveness_probe: Option<HttpProbe>,
    pub readiness_probe: Option<HttpProbe>,
    pub security_context: Option<SecurityContext>,
    #[serde(default)]
    pub volume_mounts: Vec<VolumeMount>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    pub name: String,
    pub value_from: Option<EnvVarSource>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVarSource {
    pub field_ref: Option<FieldRef>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldRef {
    pub field_path: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    pub name: Option<String>,
    pub container_port: u16,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpProbe {
    pub http_get: HttpGet,
}

#[derive(Debug, Deserialize)]
pub struct HttpGet {
    pub path: String,
    pub port: IntOrString,
}

/// A Kubernetes port reference: a number or a port name.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum IntOrString {
    Int(u16),
    String(String),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityContext {
    pub run_as_non_root: Option<bool>,
    pub run_as_user: Option<u32>,
    pub read_only_root_filesystem: Option<bool>,
    pub allow_privilege_escalation: Option<bool>,
    pub capabilities: Option<Capabilities>,
}

#[derive(Debug, Deserialize)]
pub struct Capabilities {
    #[serde(default)]
    pub drop: Vec<String>,
    #[serde(default)]
    pub add: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub name: String,
    pub config_map: Option<NameRef>,
}

#[derive(Debug, Deserialize)]
pub struct NameRef {
    pub name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    pub name: String,
    pub mount_path: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub api_version: String,
    pub metadata: Metadata,
    pub spec: ServiceSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    pub selector: BTreeMap<String, String>,
    pub ports: Vec<ServicePort>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    pub name: Option<String>,
    pub port: u16,
    pub target_port: Option<IntOrString>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMap {
    pub api_version: String,
    pub metadata: Metadata,
    #[serde(default)]
    pub data: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeResource {
    pub api_version: String,
    pub metadata: Metadata,
    pub spec: ProbeSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeSpec {
    pub job_name: Option<String>,
    pub module: String,
    pub prober: Prober,
    pub targets: ProbeTargets,
    #[serde(default)]
    pub metric_relabelings: Vec<RelabelRule>,
}

#[derive(Debug, Deserialize)]
pub struct Prober {
    pub url: String,
    pub scheme: Option<String>,
    pub path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeTargets {
    pub static_config: StaticConfig,
}

#[derive(Debug, Deserialize)]
pub struct StaticConfig {
    #[serde(rename = "static")]
    pub targets: Vec<String>,
    #[serde(rename = "relabelingConfigs", default)]
    pub relabelings: Vec<RelabelRule>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitor {
    pub api_version: String,
    pub metadata: Metadata,
    pub spec: ServiceMonitorSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    pub job_label: Option<String>,
    pub selector: LabelSelector,
    pub endpoints: Vec<MetricsEndpoint>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodMonitor {
    pub api_version: String,
    pub metadata: Metadata,
    pub spec: PodMonitorSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodMonitorSpec {
    pub job_label: Option<String>,
    pub selector: LabelSelector,
    pub pod_metrics_endpoints: Vec<MetricsEndpoint>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsEndpoint {
    pub port: String,
    pub path: Option<String>,
    #[serde(default)]
    pub relabelings: Vec<RelabelRule>,
    #[serde(default)]
    pub metric_relabelings: Vec<RelabelRule>,
}

/// A relabeling rule, spelled as in the operator's resources (camelCase)
/// or as in prometheus.yml (snake_case). Only what decides the `job` label.
#[derive(Debug, Deserialize)]
pub struct RelabelRule {
    #[serde(rename = "targetLabel", alias = "target_label")]
    pub target_label: Option<String>,
    pub replacement: Option<String>,
    pub action: Option<String>,
    pub regex: Option<String>,
}

// ---- Loading ------------------------------------------------------------------

/// Every document of every `.yaml`/`.yml` file under examples/kubernetes/,
/// with the file it came from.
pub fn manifests() -> Vec<(String, Resource)> {
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

pub struct Manifests {
    pub all: Vec<(String, Resource)>,
}

impl Manifests {
    pub fn load() -> Self {
        Self { all: manifests() }
    }

    pub fn workloads(&self) -> impl Iterator<Item = (&str, &str, &Workload)> {
        self.all
            .iter()
            .filter_map(|(file, resource)| match resource {
                Resource::Deployment(w) => Some((file.as_str(), "Deployment", w)),
                Resource::StatefulSet(w) => Some((file.as_str(), "StatefulSet", w)),
                _ => None,
            })
    }

    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.all.iter().filter_map(|(_, resource)| match resource {
            Resource::Service(s) => Some(s),
            _ => None,
        })
    }

    pub fn service(&self, name: &str) -> &Service {
        self.services()
            .find(|s| s.metadata.name == name)
            .unwrap_or_else(|| panic!("no Service named {name:?}"))
    }

    pub fn config_map(&self, name: &str) -> &ConfigMap {
        self.all
            .iter()
            .find_map(|(_, resource)| match resource {
                Resource::ConfigMap(c) if c.metadata.name == name => Some(c),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no ConfigMap named {name:?}"))
    }

    pub fn deployment(&self) -> &Workload {
        self.only("deployment.yaml", |r| match r {
            Resource::Deployment(w) => Some(w),
            _ => None,
        })
    }

    pub fn only<'a, T>(
        &'a self,
        file: &str,
        pick: impl Fn(&'a Resource) -> Option<&'a T>,
    ) -> &'a T {
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

pub fn subset(small: &BTreeMap<String, String>, big: &BTreeMap<String, String>) -> bool {
    !small.is_empty() && small.iter().all(|(k, v)| big.get(k) == Some(v))
}

// ---- The checks ---------------------------------------------------------------

/// Runs the real binary's `--config.check` with a container's `args`, the
/// ConfigMap's config in place of the mounted file and `expand` applied to
/// every other argument; returns whether it passed and what it printed.
fn config_check_with(
    manifests: &Manifests,
    args: &[String],
    dir_name: &str,
    expand: impl Fn(&str) -> String,
) -> (bool, String, Vec<String>) {
    let dir = common::TempDir::new(dir_name);
    let config = &manifests.config_map("synack-exporter").data["config.yml"];
    let config_path = dir.write("config.yml", config);
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
    let finished = common::run_within(Command::new(BINARY).args(&args), COMMAND_LIMIT);
    (finished.success(), finished.output(), args)
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
    let image = image_tag();
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

        // The image is this crate's, tagged with its version: pinned.
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
