//! Prometheus metrics at `/metrics` (text format 0.0.4), named as kube-apiserver names them
//! where it has a name for the same thing, and the rollout state of the workloads and nodes
//! under kube-state-metrics' names, so dashboards and alerts written for those work unchanged.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::Node;
use parking_lot::Mutex;

/// (verb, group, resource, code) of a request.
type RequestKey = (String, &'static str, &'static str, u16);
/// (verb, group, resource) of a request.
type LatencyKey = (String, &'static str, &'static str);

/// Upper bounds of `apiserver_request_duration_seconds`, as kube-apiserver buckets it.
const BUCKETS: [f64; 23] = [
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

/// One histogram: per-bucket counts (not cumulative), the sum and the count.
#[derive(Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            self.buckets[i] += 1;
        }
        self.sum += seconds;
        self.count += 1;
    }
}

/// Request counts and latencies, kept together: one lock per request.
#[derive(Default)]
struct Requests {
    counts: BTreeMap<RequestKey, u64>,
    latency: BTreeMap<LatencyKey, Histogram>,
}

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<Requests>,
    /// Open watch streams.
    pub watchers: AtomicI64,
}

/// The cluster objects whose state `/metrics` reports.
#[derive(Default)]
pub struct ClusterState {
    pub daemonsets: Vec<DaemonSet>,
    pub deployments: Vec<Deployment>,
    pub nodes: Vec<Node>,
}

impl Metrics {
    /// A request answered with `code` after `took`. Watches are left out of the latencies:
    /// they last as long as the client keeps them open.
    pub fn record(
        &self,
        verb: &str,
        group: &'static str,
        resource: &'static str,
        code: u16,
        took: Duration,
    ) {
        let mut r = self.requests.lock();
        *r.counts
            .entry((verb.to_string(), group, resource, code))
            .or_default() += 1;
        if verb != "WATCH" {
            r.latency
                .entry((verb.to_string(), group, resource))
                .or_default()
                .observe(took.as_secs_f64());
        }
    }

    /// The exposition text; `revision` is the store's current revision.
    pub fn render(&self, revision: i64, objects: &[(&'static str, usize)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP apiserver_request_total Counter of apiserver requests broken out by verb, group, resource and HTTP response code.\n");
        out.push_str("# TYPE apiserver_request_total counter\n");
        let requests = self.requests.lock();
        for ((verb, group, resource, code), n) in &requests.counts {
            let _ = writeln!(
                out,
                "apiserver_request_total{{verb=\"{verb}\",group=\"{group}\",resource=\"{resource}\",code=\"{code}\"}} {n}"
            );
        }
        out.push_str("# HELP apiserver_request_duration_seconds Response latency distribution in seconds for each verb, group and resource.\n");
        out.push_str("# TYPE apiserver_request_duration_seconds histogram\n");
        for ((verb, group, resource), h) in &requests.latency {
            let labels = format!("verb=\"{verb}\",group=\"{group}\",resource=\"{resource}\"");
            let mut cumulative = 0;
            for (le, n) in BUCKETS.iter().zip(h.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "apiserver_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "apiserver_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "apiserver_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "apiserver_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        out.push_str("# HELP apiserver_longrunning_requests Number of open watch streams.\n");
        out.push_str("# TYPE apiserver_longrunning_requests gauge\n");
        let _ = writeln!(
            out,
            "apiserver_longrunning_requests{{verb=\"WATCH\"}} {}",
            self.watchers.load(Ordering::Relaxed)
        );
        out.push_str("# HELP apiserver_storage_objects Number of stored objects at the time of last check split by kind.\n");
        out.push_str("# TYPE apiserver_storage_objects gauge\n");
        for (resource, n) in objects {
            let _ = writeln!(
                out,
                "apiserver_storage_objects{{resource=\"{resource}\"}} {n}"
            );
        }
        out.push_str("# HELP ger_store_revision The store's current revision.\n");
        out.push_str("# TYPE ger_store_revision gauge\n");
        let _ = writeln!(out, "ger_store_revision {revision}");
        out
    }
}

/// A label value in the exposition format: backslash, quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes one gauge family: `name{labels} value` for every row.
fn gauges(out: &mut String, name: &str, help: &str, rows: &[(String, f64)]) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    for (labels, v) in rows {
        let _ = writeln!(out, "{name}{{{labels}}} {v}");
    }
}

/// The rollout state of DaemonSets, Deployments and nodes, under kube-state-metrics' names.
pub fn render_cluster(state: &ClusterState) -> String {
    let mut out = String::new();
    type Field<T> = (&'static str, &'static str, fn(&T) -> f64);
    let ds_fields: [Field<DaemonSet>; 9] = [
        (
            "kube_daemonset_status_desired_number_scheduled",
            "The number of nodes that should be running the daemon pod.",
            |d| st_ds(d, |s| f64::from(s.desired_number_scheduled)),
        ),
        (
            "kube_daemonset_status_current_number_scheduled",
            "The number of nodes running at least one daemon pod and are supposed to.",
            |d| st_ds(d, |s| f64::from(s.current_number_scheduled)),
        ),
        (
            "kube_daemonset_status_number_misscheduled",
            "The number of nodes running a daemon pod but are not supposed to.",
            |d| st_ds(d, |s| f64::from(s.number_misscheduled)),
        ),
        (
            "kube_daemonset_status_number_ready",
            "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
            |d| st_ds(d, |s| f64::from(s.number_ready)),
        ),
        (
            "kube_daemonset_status_number_available",
            "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available.",
            |d| st_ds(d, |s| f64::from(s.number_available.unwrap_or(0))),
        ),
        (
            "kube_daemonset_status_number_unavailable",
            "The number of nodes that should be running the daemon pod and have none of the daemon pod running and available.",
            |d| st_ds(d, |s| f64::from(s.number_unavailable.unwrap_or(0))),
        ),
        (
            "kube_daemonset_status_updated_number_scheduled",
            "The total number of nodes that are running updated daemon pod.",
            |d| st_ds(d, |s| f64::from(s.updated_number_scheduled.unwrap_or(0))),
        ),
        (
            "kube_daemonset_status_observed_generation",
            "The most recent generation observed by the daemon set controller.",
            |d| st_ds(d, |s| s.observed_generation.unwrap_or(0) as f64),
        ),
        (
            "kube_daemonset_metadata_generation",
            "Sequence number representing a specific generation of the desired state.",
            |d| d.metadata.generation.unwrap_or(0) as f64,
        ),
    ];
    for (name, help, get) in ds_fields {
        let rows: Vec<(String, f64)> = state
            .daemonsets
            .iter()
            .map(|d| {
                let labels = format!(
                    "namespace=\"{}\",daemonset=\"{}\"",
                    escape(d.metadata.namespace.as_deref().unwrap_or_default()),
                    escape(d.metadata.name.as_deref().unwrap_or_default())
                );
                (labels, get(d))
            })
            .collect();
        gauges(&mut out, name, help, &rows);
    }
    let deploy_fields: [Field<Deployment>; 9] = [
        (
            "kube_deployment_spec_replicas",
            "Number of desired pods for a deployment.",
            |d| f64::from(d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)),
        ),
        (
            "kube_deployment_spec_paused",
            "Whether the deployment is paused and will not be processed by the deployment controller.",
            |d| {
                if d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false) {
                    1.0
                } else {
                    0.0
                }
            },
        ),
        (
            "kube_deployment_status_replicas",
            "The number of replicas per deployment.",
            |d| st_deploy(d, |s| s.replicas),
        ),
        (
            "kube_deployment_status_replicas_ready",
            "The number of ready replicas per deployment.",
            |d| st_deploy(d, |s| s.ready_replicas),
        ),
        (
            "kube_deployment_status_replicas_available",
            "The number of available replicas per deployment.",
            |d| st_deploy(d, |s| s.available_replicas),
        ),
        (
            "kube_deployment_status_replicas_unavailable",
            "The number of unavailable replicas per deployment.",
            |d| st_deploy(d, |s| s.unavailable_replicas),
        ),
        (
            "kube_deployment_status_replicas_updated",
            "The number of updated replicas per deployment.",
            |d| st_deploy(d, |s| s.updated_replicas),
        ),
        (
            "kube_deployment_status_observed_generation",
            "The generation observed by the deployment controller.",
            |d| {
                d.status
                    .as_ref()
                    .and_then(|s| s.observed_generation)
                    .unwrap_or(0) as f64
            },
        ),
        (
            "kube_deployment_metadata_generation",
            "Sequence number representing a specific generation of the desired state.",
            |d| d.metadata.generation.unwrap_or(0) as f64,
        ),
    ];
    let deploy_labels = |d: &Deployment| {
        format!(
            "namespace=\"{}\",deployment=\"{}\"",
            escape(d.metadata.namespace.as_deref().unwrap_or_default()),
            escape(d.metadata.name.as_deref().unwrap_or_default())
        )
    };
    for (name, help, get) in deploy_fields {
        let rows: Vec<(String, f64)> = state
            .deployments
            .iter()
            .map(|d| (deploy_labels(d), get(d)))
            .collect();
        gauges(&mut out, name, help, &rows);
    }
    let mut rows = Vec::new();
    for d in &state.deployments {
        for c in d.status.iter().flat_map(|s| s.conditions.iter().flatten()) {
            condition_rows(&mut rows, &deploy_labels(d), &c.type_, &c.status);
        }
    }
    gauges(
        &mut out,
        "kube_deployment_status_condition",
        "The current status conditions of a deployment.",
        &rows,
    );
    node_state(&mut out, &state.nodes);
    out
}

/// A condition as kube-state-metrics shows it: one row per possible status, 1 for the one held.
fn condition_rows(rows: &mut Vec<(String, f64)>, labels: &str, kind: &str, status: &str) {
    for s in ["true", "false", "unknown"] {
        let on = status.eq_ignore_ascii_case(s);
        rows.push((
            format!("{labels},condition=\"{}\",status=\"{s}\"", escape(kind)),
            if on { 1.0 } else { 0.0 },
        ));
    }
}

fn st_ds(d: &DaemonSet, f: impl Fn(&k8s_openapi::api::apps::v1::DaemonSetStatus) -> f64) -> f64 {
    d.status.as_ref().map_or(0.0, f)
}

fn st_deploy(
    d: &Deployment,
    f: impl Fn(&k8s_openapi::api::apps::v1::DeploymentStatus) -> Option<i32>,
) -> f64 {
    f64::from(d.status.as_ref().and_then(f).unwrap_or(0))
}

fn node_state(out: &mut String, nodes: &[Node]) {
    let label = |n: &Node| {
        format!(
            "node=\"{}\"",
            escape(n.metadata.name.as_deref().unwrap_or_default())
        )
    };
    let mut conditions = Vec::new();
    let mut unschedulable = Vec::new();
    let mut taints = Vec::new();
    for n in nodes {
        for c in n.status.iter().flat_map(|s| s.conditions.iter().flatten()) {
            condition_rows(&mut conditions, &label(n), &c.type_, &c.status);
        }
        let spec = n.spec.as_ref();
        let cordoned = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        unschedulable.push((label(n), if cordoned { 1.0 } else { 0.0 }));
        for t in spec.iter().flat_map(|s| s.taints.iter().flatten()) {
            taints.push((
                format!(
                    "{},key=\"{}\",value=\"{}\",effect=\"{}\"",
                    label(n),
                    escape(&t.key),
                    escape(t.value.as_deref().unwrap_or_default()),
                    escape(&t.effect)
                ),
                1.0,
            ));
        }
    }
    gauges(
        out,
        "kube_node_status_condition",
        "The condition of a cluster node.",
        &conditions,
    );
    gauges(
        out,
        "kube_node_spec_unschedulable",
        "Whether a node can schedule new pods.",
        &unschedulable,
    );
    gauges(
        out,
        "kube_node_spec_taint",
        "The taint of a cluster node.",
        &taints,
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn lines(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn latency_buckets_are_cumulative_and_watches_are_left_out() {
        let m = Metrics::default();
        for ms in [1, 3, 30, 700, 70_000] {
            m.record("GET", "", "pods", 200, Duration::from_millis(ms));
        }
        m.record("WATCH", "", "pods", 200, Duration::from_secs(300));
        let text = m.render(7, &[]);
        let get = |le: &str| {
            let want = format!(
                "apiserver_request_duration_seconds_bucket{{verb=\"GET\",group=\"\",resource=\"pods\",le=\"{le}\"}} "
            );
            text.lines()
                .find_map(|l| l.strip_prefix(want.as_str()))
                .unwrap()
                .to_string()
        };
        assert_eq!(get("0.005"), "2");
        assert_eq!(get("0.05"), "3");
        assert_eq!(get("0.8"), "4");
        assert_eq!(get("60"), "4");
        assert_eq!(get("+Inf"), "5");
        assert!(text.contains(
            "apiserver_request_duration_seconds_count{verb=\"GET\",group=\"\",resource=\"pods\"} 5"
        ));
        assert!(
            !text.contains("apiserver_request_duration_seconds_count{verb=\"WATCH\""),
            "{text}"
        );
        assert!(text.contains(
            "apiserver_request_total{verb=\"WATCH\",group=\"\",resource=\"pods\",code=\"200\"} 1"
        ));
    }

    #[test]
    fn workloads_and_nodes_use_kube_state_metrics_names() {
        let state = ClusterState {
            daemonsets: vec![
                serde_json::from_value(json!({
                    "metadata": {"name": "agent", "namespace": "edge", "generation": 3},
                    "status": {"desiredNumberScheduled": 5, "currentNumberScheduled": 5,
                        "numberMisscheduled": 0, "numberReady": 4, "numberAvailable": 4,
                        "numberUnavailable": 1, "updatedNumberScheduled": 2, "observedGeneration": 3},
                }))
                .unwrap(),
            ],
            deployments: vec![
                serde_json::from_value(json!({
                    "metadata": {"name": "web", "namespace": "default", "generation": 1},
                    "spec": {"selector": {}, "template": {}, "paused": true},
                    "status": {"replicas": 2, "availableReplicas": 2,
                        "conditions": [{"type": "Available", "status": "True"}]},
                }))
                .unwrap(),
            ],
            nodes: vec![
                serde_json::from_value(json!({
                    "metadata": {"name": "edge-\"1\""},
                    "spec": {"unschedulable": true, "taints": [
                        {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]},
                    "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]},
                }))
                .unwrap(),
            ],
        };
        let text = render_cluster(&state);
        let got = lines(&text);
        for want in [
            "kube_daemonset_status_desired_number_scheduled{namespace=\"edge\",daemonset=\"agent\"} 5",
            "kube_daemonset_status_number_ready{namespace=\"edge\",daemonset=\"agent\"} 4",
            "kube_daemonset_status_number_unavailable{namespace=\"edge\",daemonset=\"agent\"} 1",
            "kube_daemonset_status_updated_number_scheduled{namespace=\"edge\",daemonset=\"agent\"} 2",
            "kube_daemonset_metadata_generation{namespace=\"edge\",daemonset=\"agent\"} 3",
            "kube_deployment_spec_replicas{namespace=\"default\",deployment=\"web\"} 1",
            "kube_deployment_spec_paused{namespace=\"default\",deployment=\"web\"} 1",
            "kube_deployment_status_replicas_available{namespace=\"default\",deployment=\"web\"} 2",
            "kube_deployment_status_replicas_unavailable{namespace=\"default\",deployment=\"web\"} 0",
            "kube_deployment_status_condition{namespace=\"default\",deployment=\"web\",condition=\"Available\",status=\"true\"} 1",
            "kube_deployment_status_condition{namespace=\"default\",deployment=\"web\",condition=\"Available\",status=\"false\"} 0",
            "kube_node_status_condition{node=\"edge-\\\"1\\\"\",condition=\"Ready\",status=\"unknown\"} 1",
            "kube_node_status_condition{node=\"edge-\\\"1\\\"\",condition=\"Ready\",status=\"true\"} 0",
            "kube_node_spec_unschedulable{node=\"edge-\\\"1\\\"\"} 1",
            "kube_node_spec_taint{node=\"edge-\\\"1\\\"\",key=\"node.kubernetes.io/unreachable\",value=\"\",effect=\"NoExecute\"} 1",
        ] {
            assert!(got.contains(&want), "no {want} in\n{text}");
        }
        assert!(text.contains("# TYPE kube_node_spec_taint gauge\n"));
        // No objects, no families.
        assert_eq!(render_cluster(&ClusterState::default()), "");
    }
}
