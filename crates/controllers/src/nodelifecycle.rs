//! Node lifecycle (`nodelifecycle`): notices nodes whose kubelet (or `ger agent`) stopped
//! heartbeating, as kube-controller-manager's node lifecycle controller does.
//!
//! Every `monitor_period` it looks at each node. A node is *heard from* when its Lease in
//! `kube-node-lease` is renewed or its Ready condition's heartbeat moves; the time is taken from
//! this controller's own clock when it sees the change, never from the object, so clock skew
//! between nodes and server does not matter. A node not heard from for `grace_period`:
//! - gets Ready, MemoryPressure, DiskPressure and PIDPressure `Unknown`, reason
//!   `NodeStatusUnknown`, message `Kubelet stopped posting node status.` (`NodeStatusNeverUpdated`
//!   / `Kubelet never posted node status.` when it never had a Ready condition);
//! - has its pods' Ready condition set to `False` (`MarkPodsNotReady`).
//!
//! Taints follow the Ready condition, whoever set it: `Unknown` → `node.kubernetes.io/unreachable`,
//! `False` → `node.kubernetes.io/not-ready`, each as NoSchedule and NoExecute (with `timeAdded`);
//! `True` → neither. Other taints are left alone. Evicting the pods of a tainted node is
//! [`crate::tainteviction`]'s business (DaemonSet pods tolerate both NoExecute taints).
//!
//! Invariants: a node's Ready condition is only ever moved to Unknown by this controller, never
//! back (that is the kubelet's job); the controller's writes carry the resourceVersion they
//! were computed from, so a concurrent kubelet write wins and the next pass recomputes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use parking_lot::Mutex;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::events::{Recorder, object_ref};
use crate::informer::Informer;
use crate::replicaset::api_message;

pub const LEASE_NAMESPACE: &str = "kube-node-lease";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The conditions a kubelet owns, in the order it reports them.
const KUBELET_CONDITIONS: [&str; 4] = ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"];

/// How the controller judges nodes.
#[derive(Debug, Clone, Copy)]
pub struct NodeLifecycleOptions {
    /// How often every node is looked at (`--node-monitor-period`).
    pub monitor_period: Duration,
    /// How long a node may stay silent before it is Unknown (`--node-monitor-grace-period`).
    pub grace_period: Duration,
}

impl Default for NodeLifecycleOptions {
    fn default() -> Self {
        NodeLifecycleOptions {
            monitor_period: Duration::from_secs(5),
            grace_period: Duration::from_secs(40),
        }
    }
}

/// The node's Ready condition status: `True`, `False`, `Unknown`, or `None` when absent.
pub fn ready_status(node: &Node) -> Option<&str> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str())
}

/// The conditions to write when the node has been silent too long; `None` when they already
/// say Unknown.
pub fn unknown_conditions(node: &Node, now: DateTime<Utc>) -> Option<Vec<NodeCondition>> {
    let current: Vec<NodeCondition> = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let never = !current.iter().any(|c| c.type_ == "Ready");
    let (reason, message) = if never {
        (
            "NodeStatusNeverUpdated",
            "Kubelet never posted node status.",
        )
    } else {
        ("NodeStatusUnknown", "Kubelet stopped posting node status.")
    };
    let mut changed = false;
    let mut out = current.clone();
    for kind in KUBELET_CONDITIONS {
        match out.iter_mut().find(|c| c.type_ == kind) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some(reason.into());
                c.message = Some(message.into());
                c.last_transition_time = Some(Time(now));
                changed = true;
            }
            None => {
                out.push(NodeCondition {
                    type_: kind.into(),
                    status: "Unknown".into(),
                    reason: Some(reason.into()),
                    message: Some(message.into()),
                    last_heartbeat_time: Some(Time(now)),
                    last_transition_time: Some(Time(now)),
                });
                changed = true;
            }
        }
    }
    changed.then_some(out)
}

/// The node's taints as its Ready condition wants them; `None` when they already are.
pub fn desired_taints(node: &Node, now: DateTime<Utc>) -> Option<Vec<Taint>> {
    let current: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let want_key = match ready_status(node) {
        Some("True") => None,
        Some("False") => Some(TAINT_NOT_READY),
        Some(_) => Some(TAINT_UNREACHABLE),
        // A node that never reported is left to its kubelet.
        None => return None,
    };
    let ours = |t: &Taint| {
        (t.key == TAINT_UNREACHABLE || t.key == TAINT_NOT_READY)
            && (t.effect == "NoSchedule" || t.effect == "NoExecute")
    };
    let mut out: Vec<Taint> = current.iter().filter(|t| !ours(t)).cloned().collect();
    if let Some(key) = want_key {
        for effect in ["NoSchedule", "NoExecute"] {
            let kept = current
                .iter()
                .find(|t| t.key == key && t.effect == effect)
                .cloned();
            out.push(kept.unwrap_or_else(|| Taint {
                key: key.into(),
                effect: effect.into(),
                time_added: (effect == "NoExecute").then_some(Time(now)),
                value: None,
            }));
        }
    }
    let same = out.len() == current.len() && out.iter().all(|t| current.contains(t));
    (!same).then_some(out)
}

/// The pod's conditions with Ready set to False, when it was not already.
pub fn pod_not_ready(pod: &Pod, now: DateTime<Utc>) -> Option<Vec<serde_json::Value>> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let ready = conditions.iter().find(|c| c.type_ == "Ready")?;
    if ready.status == "False" {
        return None;
    }
    let out = conditions
        .iter()
        .map(|c| {
            let mut v = serde_json::to_value(c).unwrap_or_default();
            if c.type_ == "Ready" {
                v["status"] = json!("False");
                v["lastTransitionTime"] = json!(Time(now));
            }
            v
        })
        .collect();
    Some(out)
}

/// What the controller last heard from a node, and when (by its own clock).
#[derive(Debug, Clone, PartialEq)]
struct Probe {
    heartbeat: (Option<String>, Option<String>),
    at: Instant,
}

pub struct NodeLifecycleController {
    client: Client,
    opts: NodeLifecycleOptions,
    nodes: Arc<Informer<Node>>,
    leases: Arc<Informer<Lease>>,
    pods: Arc<Informer<Pod>>,
    probes: Mutex<HashMap<String, Probe>>,
    recorder: Recorder,
}

impl NodeLifecycleController {
    pub fn new(
        client: Client,
        opts: NodeLifecycleOptions,
        nodes: Arc<Informer<Node>>,
        leases: Arc<Informer<Lease>>,
        pods: Arc<Informer<Pod>>,
    ) -> Arc<Self> {
        Arc::new(NodeLifecycleController {
            recorder: Recorder::new(client.clone(), "node-controller", None),
            client,
            opts,
            nodes,
            leases,
            pods,
            probes: Mutex::new(HashMap::new()),
        })
    }

    /// The node's heartbeat as last seen: its Lease's renewTime and its Ready heartbeat.
    fn heartbeat(&self, node: &Node) -> (Option<String>, Option<String>) {
        let lease = self
            .leases
            .get(&format!("{LEASE_NAMESPACE}/{}", node.name_any()))
            .and_then(|l| {
                l.spec
                    .as_ref()?
                    .renew_time
                    .as_ref()
                    .map(|t| t.0.to_rfc3339())
            });
        let status = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .and_then(|c| c.last_heartbeat_time.as_ref().map(|t| t.0.to_rfc3339()));
        (lease, status)
    }

    /// Whether the node has been silent for longer than the grace period.
    fn silent(&self, node: &Node, now: Instant) -> bool {
        let hb = self.heartbeat(node);
        let mut probes = self.probes.lock();
        let probe = probes.entry(node.name_any()).or_insert_with(|| Probe {
            heartbeat: hb.clone(),
            at: now,
        });
        if probe.heartbeat != hb {
            probe.heartbeat = hb;
            probe.at = now;
        }
        now.duration_since(probe.at) > self.opts.grace_period
    }

    async fn monitor(&self) {
        let now = Instant::now();
        let names: std::collections::HashSet<String> =
            self.nodes.list().iter().map(|n| n.name_any()).collect();
        self.probes.lock().retain(|n, _| names.contains(n));
        for node in self.nodes.list() {
            if self.silent(&node, now) {
                self.mark_unknown(&node).await;
            }
            let node = self
                .nodes
                .get(&node.name_any())
                .unwrap_or_else(|| node.clone());
            self.sync_taints(&node).await;
            if ready_status(&node).is_some_and(|s| s != "True") {
                self.mark_pods_not_ready(&node).await;
            }
        }
    }

    async fn mark_unknown(&self, node: &Node) {
        let Some(conditions) = unknown_conditions(node, Utc::now()) else {
            return;
        };
        let name = node.name_any();
        let api: Api<Node> = Api::all(self.client.clone());
        let patch = json!({
            "metadata": {"resourceVersion": node.resource_version()},
            "status": {"conditions": conditions},
        });
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(updated) => {
                tracing::info!(node = %name, "node stopped posting status");
                self.recorder.normal(
                    object_ref(node),
                    "NodeNotReady",
                    format!("Node {name} status is now: NodeNotReady"),
                );
                self.mark_pods_not_ready(&updated).await;
            }
            Err(e) => tracing::debug!(node = %name, error = %api_message(&e), "node not marked"),
        }
    }

    async fn sync_taints(&self, node: &Node) {
        let Some(taints) = desired_taints(node, Utc::now()) else {
            return;
        };
        let name = node.name_any();
        let api: Api<Node> = Api::all(self.client.clone());
        let patch = json!({
            "metadata": {"resourceVersion": node.resource_version()},
            "spec": {"taints": taints},
        });
        if let Err(e) = api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::debug!(node = %name, error = %api_message(&e), "taints not written");
        }
    }

    async fn mark_pods_not_ready(&self, node: &Node) {
        let now = Utc::now();
        for pod in self.pods.by_index("node", &node.name_any()) {
            let Some(conditions) = pod_not_ready(&pod, now) else {
                continue;
            };
            let api: Api<Pod> =
                Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
            let patch = json!({
                "metadata": {"resourceVersion": pod.resource_version()},
                "status": {"conditions": conditions},
            });
            match api
                .patch_status(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => self.recorder.warning(
                    object_ref(pod.as_ref()),
                    "NodeNotReady",
                    "Node is not ready".into(),
                ),
                Err(e) => tracing::debug!(error = %api_message(&e), "pod not marked not ready"),
            }
        }
    }

    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        self.nodes.wait_synced().await;
        self.leases.wait_synced().await;
        self.pods.wait_synced().await;
        let mut tick = tokio::time::interval(self.opts.monitor_period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => self.monitor().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn node(ready: Option<&str>, taints: Value) -> Node {
        let conditions: Vec<Value> = ready
            .map(|s| {
                vec![
                    json!({"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"}),
                    json!({"type": "Ready", "status": s, "reason": "KubeletReady", "message": "kubelet is posting ready status"}),
                ]
            })
            .unwrap_or_default();
        serde_json::from_value(json!({
            "metadata": {"name": "edge-1"},
            "spec": {"taints": taints},
            "status": {"conditions": conditions},
        }))
        .unwrap()
    }

    fn keys(taints: &[Taint]) -> Vec<String> {
        let mut k: Vec<String> = taints
            .iter()
            .map(|t| format!("{}:{}", t.key, t.effect))
            .collect();
        k.sort();
        k
    }

    #[test]
    fn silent_nodes_get_every_kubelet_condition_unknown() {
        let now = Utc::now();
        let conds = unknown_conditions(&node(Some("True"), json!([])), now).unwrap();
        let types: Vec<&str> = conds.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            types,
            ["MemoryPressure", "Ready", "DiskPressure", "PIDPressure"]
        );
        for c in &conds {
            assert_eq!(c.status, "Unknown");
            assert_eq!(c.reason.as_deref(), Some("NodeStatusUnknown"));
            assert_eq!(
                c.message.as_deref(),
                Some("Kubelet stopped posting node status.")
            );
        }
        let never = unknown_conditions(&node(None, json!([])), now).unwrap();
        assert!(
            never
                .iter()
                .all(|c| c.reason.as_deref() == Some("NodeStatusNeverUpdated")
                    && c.message.as_deref() == Some("Kubelet never posted node status."))
        );
        // Already Unknown: nothing to write.
        let mut n = node(Some("Unknown"), json!([]));
        n.status.as_mut().unwrap().conditions = Some(conds);
        assert_eq!(unknown_conditions(&n, now), None);
    }

    #[test]
    fn taints_follow_the_ready_condition() {
        let now = Utc::now();
        let other = json!([{"key": "dedicated", "value": "edge", "effect": "NoSchedule"}]);
        type Case<'a> = (Option<&'a str>, Value, Option<Vec<&'a str>>);
        let cases: Vec<Case> = vec![
            (Some("True"), json!([]), None),
            (Some("True"), other.clone(), None),
            (
                Some("Unknown"),
                other.clone(),
                Some(vec![
                    "dedicated:NoSchedule",
                    "node.kubernetes.io/unreachable:NoExecute",
                    "node.kubernetes.io/unreachable:NoSchedule",
                ]),
            ),
            (
                Some("False"),
                json!([]),
                Some(vec![
                    "node.kubernetes.io/not-ready:NoExecute",
                    "node.kubernetes.io/not-ready:NoSchedule",
                ]),
            ),
            // Back to Ready: ours go, the user's stay.
            (
                Some("True"),
                json!([
                    {"key": "dedicated", "value": "edge", "effect": "NoSchedule"},
                    {"key": TAINT_UNREACHABLE, "effect": "NoSchedule"},
                    {"key": TAINT_UNREACHABLE, "effect": "NoExecute", "timeAdded": "2026-01-01T00:00:00Z"},
                ]),
                Some(vec!["dedicated:NoSchedule"]),
            ),
            // Unreachable to not-ready.
            (
                Some("False"),
                json!([
                    {"key": TAINT_UNREACHABLE, "effect": "NoSchedule"},
                    {"key": TAINT_UNREACHABLE, "effect": "NoExecute", "timeAdded": "2026-01-01T00:00:00Z"},
                ]),
                Some(vec![
                    "node.kubernetes.io/not-ready:NoExecute",
                    "node.kubernetes.io/not-ready:NoSchedule",
                ]),
            ),
            (None, json!([]), None),
        ];
        for (ready, taints, want) in cases {
            let got = desired_taints(&node(ready, taints.clone()), now);
            assert_eq!(
                got.as_deref().map(keys),
                want.map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
                "{ready:?} {taints}"
            );
        }
        // Taints already right (with their timeAdded) are stable.
        let tainted = desired_taints(&node(Some("Unknown"), json!([])), now).unwrap();
        let mut n = node(Some("Unknown"), json!([]));
        n.spec.as_mut().unwrap().taints = Some(tainted.clone());
        assert_eq!(desired_taints(&n, now), None);
        let no_exec = tainted.iter().find(|t| t.effect == "NoExecute").unwrap();
        assert!(no_exec.time_added.is_some());
    }

    #[test]
    fn pods_lose_ready_once() {
        let now = Utc::now();
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "status": {"conditions": [
                {"type": "Initialized", "status": "True"},
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "PodNeedUpgrade", "status": "True", "message": "controllerrevision: abc"},
            ]},
        }))
        .unwrap();
        let conds = pod_not_ready(&pod, now).unwrap();
        assert_eq!(conds.len(), 3);
        assert_eq!(conds[1]["status"], "False");
        assert_ne!(conds[1]["lastTransitionTime"], "2026-01-01T00:00:00Z");
        assert_eq!(conds[2]["message"], "controllerrevision: abc");
        let mut marked = pod.clone();
        marked.status.as_mut().unwrap().conditions =
            Some(serde_json::from_value(Value::Array(conds)).unwrap());
        assert_eq!(pod_not_ready(&marked, now), None);
    }
}
