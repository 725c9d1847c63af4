//! Simulated nodes (kwok-style): many nodes in one process, each with a heartbeat Lease and
//! a pod lifecycle played as timed stages — bound → Pending/ContainerCreating → Running →
//! Ready, with image pull failures, crash loops and graceful deletion.

pub mod agent;
mod lifecycle;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use parking_lot::RwLock;
use serde_json::json;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use ger_controllers::events::Recorder;
use ger_controllers::informer::{Change, Informer, key_of};
use ger_controllers::queue::{Outcome, Queue};
use ger_controllers::replicaset::{api_message, is_not_found};
use k8s_openapi::api::core::v1::ObjectReference;

pub use lifecycle::{Plan, Stage};

/// The annotation that makes a Node simulated.
pub const SIMULATED: &str = "node.ger.io/simulated";
pub const KUBELET_VERSION: &str = "v1.32.0";

/// How the fleet behaves.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Nodes `node-0…` created at start.
    pub nodes: usize,
    pub cpu: String,
    pub memory: String,
    pub max_pods: u32,
    /// Time a pod spends in ContainerCreating.
    pub create_delay: Duration,
    /// Time from Running to Ready (added to the readiness probe's initialDelaySeconds).
    pub ready_delay: Duration,
    /// Longest a deleted pod takes to go (its terminationGracePeriodSeconds, capped).
    pub max_grace: Duration,
    /// Images the simulated registry does not have: a pattern matches when the image
    /// reference ends with it (`-missing`) or contains it (`doesnotexist`).
    pub missing_images: Vec<String>,
    pub lease_interval: Duration,
    /// Run this one node, whatever its annotations, and no other (the edge agent).
    pub only_node: Option<String>,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            nodes: 3,
            cpu: "4".into(),
            memory: "16Gi".into(),
            max_pods: 110,
            create_delay: Duration::from_millis(500),
            ready_delay: Duration::from_millis(500),
            max_grace: Duration::from_secs(2),
            missing_images: vec!["-missing".into(), "doesnotexist".into()],
            lease_interval: Duration::from_secs(10),
            only_node: None,
        }
    }
}

async fn post_node_status(
    client: Client,
    name: &str,
    status: k8s_openapi::api::core::v1::NodeStatus,
) {
    let api: Api<Node> = Api::all(client);
    let patch = json!({"status": status});
    if let Err(e) = api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::debug!(error = %api_message(&e), "node status not written");
    }
}

/// Per simulated node: its pod address block and addresses handed out.
#[derive(Debug, Clone)]
struct NodeInfo {
    index: usize,
    ip: String,
    next_pod_ip: u32,
}

pub struct Fleet {
    client: Client,
    opts: FleetOptions,
    nodes: Arc<Informer<Node>>,
    pods: Arc<Informer<Pod>>,
    simulated: RwLock<HashMap<String, NodeInfo>>,
    queue: Arc<Queue>,
    recorder: Recorder,
    /// Pods waiting out a stage: not to be stepped again before this instant, whatever
    /// update wakes them (their own status writes do).
    not_before: parking_lot::Mutex<HashMap<String, std::time::Instant>>,
}

fn is_simulated(node: &Node) -> bool {
    node.annotations().get(SIMULATED).map(String::as_str) == Some("true")
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A node object as the fleet creates it.
pub fn node_object(name: &str, index: usize, opts: &FleetOptions) -> Node {
    let labels: BTreeMap<String, String> = [
        ("kubernetes.io/hostname", name),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", "amd64"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels, "annotations": {SIMULATED: "true"}},
        "spec": {"podCIDR": format!("{}.0/24", pod_subnet(index)), "podCIDRs": [format!("{}.0/24", pod_subnet(index))]},
    }))
    .unwrap_or_default();
    node.status = Some(lifecycle::node_status(&node_ip(index), opts));
    node
}

/// The first three octets of node `index`'s pod addresses: `10.244.i` for the first 256
/// nodes, then `100.(64 + i/256).(i%256)`.
fn pod_subnet(index: usize) -> String {
    if index < 256 {
        format!("10.244.{index}")
    } else {
        format!("100.{}.{}", 64 + (index / 256) % 192, index % 256)
    }
}

/// A node's index from its name, for a node that is alone in its fleet (an agent): agents of
/// one cluster then rarely share addresses.
fn index_of(name: &str) -> usize {
    let h = name.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    (h % 250) as usize
}

fn node_ip(index: usize) -> String {
    format!("10.0.{}.{}", index / 250, index % 250 + 2)
}

impl Fleet {
    pub fn new(
        client: Client,
        opts: FleetOptions,
        nodes: Arc<Informer<Node>>,
        pods: Arc<Informer<Pod>>,
    ) -> Arc<Fleet> {
        let fleet = Arc::new(Fleet {
            opts,
            nodes,
            pods,
            simulated: RwLock::new(HashMap::new()),
            queue: Queue::new(),
            recorder: Recorder::new(client.clone(), "kubelet", None),
            not_before: parking_lot::Mutex::new(HashMap::new()),
            client,
        });
        let weak = Arc::downgrade(&fleet);
        fleet.nodes.on_change(move |change| {
            let Some(f) = weak.upgrade() else { return };
            match change {
                Change::Added(n) | Change::Updated { new: n, .. } => {
                    if f.owns(n) {
                        f.adopt_node(n);
                    } else {
                        f.simulated.write().remove(&n.name_any());
                    }
                }
                Change::Deleted(n) => {
                    f.simulated.write().remove(&n.name_any());
                }
            }
        });
        let weak = Arc::downgrade(&fleet);
        fleet.pods.on_change(move |change| {
            let Some(f) = weak.upgrade() else { return };
            if let Change::Added(p) | Change::Updated { new: p, .. } = change
                && f.runs(p)
            {
                f.queue.add(key_of(p.as_ref()));
            }
        });
        fleet
    }

    /// Whether this fleet runs `node`.
    fn owns(&self, node: &Node) -> bool {
        match &self.opts.only_node {
            Some(only) => node.name_any() == *only,
            None => is_simulated(node),
        }
    }

    fn adopt_node(&self, node: &Node) {
        let name = node.name_any();
        let mut sim = self.simulated.write();
        if sim.contains_key(&name) {
            return;
        }
        let index = if self.opts.only_node.is_some() {
            index_of(&name)
        } else {
            sim.len()
        };
        let ip = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
            .map(|a| a.address.clone())
            .unwrap_or_else(|| node_ip(index));
        sim.insert(
            name.clone(),
            NodeInfo {
                index,
                ip: ip.clone(),
                next_pod_ip: 2,
            },
        );
        drop(sim);
        for pod in self.pods.by_index("node", &name) {
            self.queue.add(key_of(pod.as_ref()));
        }
        // A user-added node gets a kubelet's status: capacity, addresses, Ready.
        if !is_ready(node) {
            self.started_events(&name);
            let client = self.client.clone();
            let status = lifecycle::node_status(&ip, &self.opts);
            tokio::spawn(async move { post_node_status(client, &name, status).await });
        }
    }

    /// What a kubelet reports when it starts and its node becomes ready.
    fn started_events(&self, node: &str) {
        // The kubelet names its node by name, uid included.
        let oref = ObjectReference {
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            uid: Some(node.to_string()),
            ..Default::default()
        };
        self.recorder
            .normal(oref.clone(), "Starting", "Starting kubelet.".into());
        for reason in [
            "NodeHasSufficientMemory",
            "NodeHasNoDiskPressure",
            "NodeHasSufficientPID",
            "NodeReady",
        ] {
            self.recorder.normal(
                oref.clone(),
                reason,
                format!("Node {node} status is now: {reason}"),
            );
        }
    }

    /// Whether a pod runs on one of our nodes.
    fn runs(&self, pod: &Pod) -> bool {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        node.is_some_and(|n| self.simulated.read().contains_key(n))
    }

    /// Create the configured nodes (those missing) and start the fleet.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let api: Api<Node> = Api::all(self.client.clone());
        for i in 0..self.opts.nodes {
            let node = node_object(&format!("node-{i}"), i, &self.opts);
            match api.create(&PostParams::default(), &node).await {
                Ok(n) => self.started_events(&n.name_any()),
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => tracing::warn!(error = %api_message(&e), "node not created"),
            }
        }
        self.nodes.wait_synced().await;
        self.pods.wait_synced().await;
        // Pods listed before their node was known (after a restart, say) take up where they
        // were: a terminating pod still has to go.
        for pod in self.pods.list() {
            if self.runs(&pod) {
                self.queue.add(key_of(pod.as_ref()));
            }
        }
        let mut set = JoinSet::new();
        let me = self.clone();
        set.spawn(self.clone().heartbeats(stop.clone()));
        set.spawn(self.queue.clone().run(16, stop.clone(), move |key| {
            let me = me.clone();
            async move { me.step(&key).await }
        }));
        while set.join_next().await.is_some() {}
    }

    /// Renew every simulated node's Lease each `lease_interval`.
    async fn heartbeats(self: Arc<Self>, stop: CancellationToken) {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), "kube-node-lease");
        let mut tick = tokio::time::interval(self.opts.lease_interval);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let names: Vec<String> = self.simulated.read().keys().cloned().collect();
            let now = MicroTime(Utc::now());
            let renew = names.into_iter().map(|name| {
                let api = api.clone();
                let now = now.clone();
                let nodes = self.nodes.clone();
                async move {
                    let patch = json!({"spec": {"renewTime": now}});
                    match api
                        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                    {
                        Ok(_) => {}
                        Err(e) if is_not_found(&e) => {
                            let owner = nodes
                                .get(&name)
                                .map(|n| ger_controllers::pods::controller_ref(n.as_ref()));
                            let lease = Lease {
                                metadata: ObjectMeta {
                                    name: Some(name.clone()),
                                    namespace: Some("kube-node-lease".into()),
                                    owner_references: owner.map(|mut o| {
                                        o.controller = None;
                                        o.block_owner_deletion = None;
                                        vec![o]
                                    }),
                                    ..Default::default()
                                },
                                spec: Some(LeaseSpec {
                                    holder_identity: Some(name.clone()),
                                    lease_duration_seconds: Some(40),
                                    renew_time: Some(now),
                                    ..Default::default()
                                }),
                            };
                            let _ = api.create(&PostParams::default(), &lease).await;
                        }
                        Err(e) => tracing::debug!(error = %api_message(&e), "lease not renewed"),
                    }
                }
            });
            futures::future::join_all(renew).await;
            self.repost_ready().await;
        }
    }

    /// Report Ready again for our nodes that the node lifecycle controller (or anyone) marked
    /// otherwise: the kubelet is up, so the node is.
    async fn repost_ready(&self) {
        let stale: Vec<(String, String)> = self
            .simulated
            .read()
            .iter()
            .filter(|(name, _)| self.nodes.get(name).is_some_and(|n| !is_ready(&n)))
            .map(|(name, info)| (name.clone(), info.ip.clone()))
            .collect();
        for (name, ip) in stale {
            let status = lifecycle::node_status(&ip, &self.opts);
            post_node_status(self.client.clone(), &name, status).await;
            self.recorder.normal(
                ObjectReference {
                    kind: Some("Node".into()),
                    name: Some(name.clone()),
                    uid: Some(name.clone()),
                    ..Default::default()
                },
                "NodeReady",
                format!("Node {name} status is now: NodeReady"),
            );
        }
    }

    fn pod_ip(&self, node: &str) -> Option<(String, String)> {
        let mut sim = self.simulated.write();
        let info = sim.get_mut(node)?;
        let n = info.next_pod_ip;
        info.next_pod_ip = if n >= 254 { 2 } else { n + 1 };
        Some((format!("{}.{n}", pod_subnet(info.index)), info.ip.clone()))
    }

    /// Take a pod one stage further; schedule the next.
    async fn step(&self, key: &str) -> Result<Outcome, String> {
        let Some(pod) = self.pods.get(key) else {
            self.not_before.lock().remove(key);
            return Ok(Outcome::Done);
        };
        if !self.runs(&pod) {
            self.not_before.lock().remove(key);
            return Ok(Outcome::Done);
        }
        if pod.metadata.deletion_timestamp.is_none() {
            let wait = self
                .not_before
                .lock()
                .get(key)
                .map(|t| t.saturating_duration_since(std::time::Instant::now()));
            if let Some(w) = wait.filter(|w| !w.is_zero()) {
                return Ok(Outcome::RequeueAfter(w));
            }
        }
        let ns = pod.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        if let Some(deleted_at) = pod.metadata.deletion_timestamp.as_ref() {
            self.not_before.lock().remove(key);
            let grace = pod
                .metadata
                .deletion_grace_period_seconds
                .map_or(Duration::ZERO, |g| {
                    Duration::from_secs(u64::try_from(g).unwrap_or(0))
                })
                .min(self.opts.max_grace);
            // deletionTimestamp is when the grace period ends; we end it at our cap.
            let full = pod
                .metadata
                .deletion_grace_period_seconds
                .map_or(0, |g| g.max(0));
            let started = deleted_at.0 - chrono::Duration::seconds(full);
            let due = started + chrono::Duration::from_std(grace).unwrap_or_default();
            let wait = (due - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            if !wait.is_zero() {
                return Ok(Outcome::RequeueAfter(wait));
            }
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            };
            return match api.delete(&pod.name_any(), &dp).await {
                Ok(_) => Ok(Outcome::Done),
                Err(e) if is_not_found(&e) => Ok(Outcome::Done),
                Err(e) => Err(api_message(&e)),
            };
        }
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let plan = lifecycle::plan(&pod, &self.opts, Utc::now());
        let Some(status) = plan.status else {
            return Ok(plan.next.map_or(Outcome::Done, Outcome::RequeueAfter));
        };
        let mut status = status;
        if plan.needs_ip
            && let Some((pod_ip, host_ip)) = self.pod_ip(&node)
        {
            status["podIP"] = json!(pod_ip);
            status["podIPs"] = json!([{"ip": pod_ip}]);
            status["hostIP"] = json!(host_ip);
            status["hostIPs"] = json!([{"ip": host_ip}]);
        }
        match api
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": status})),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(Outcome::Done),
            Err(e) => return Err(api_message(&e)),
        }
        match plan.next {
            Some(d) => {
                self.not_before
                    .lock()
                    .insert(key.to_string(), std::time::Instant::now() + d);
                Ok(Outcome::RequeueAfter(d))
            }
            None => {
                self.not_before.lock().remove(key);
                Ok(Outcome::Done)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_subnets_stay_valid_addresses() {
        assert_eq!(pod_subnet(0), "10.244.0");
        assert_eq!(pod_subnet(255), "10.244.255");
        assert_eq!(pod_subnet(256), "100.65.0");
        assert_eq!(pod_subnet(4999), "100.83.135");
        for i in [0, 300, 5000, 20_000] {
            let addr = format!("{}.2", pod_subnet(i));
            assert!(addr.parse::<std::net::Ipv4Addr>().is_ok(), "{addr}");
        }
        assert_ne!(index_of("edge-1"), index_of("edge-2"));
        assert!(index_of("edge-1") < 250);
    }
}
