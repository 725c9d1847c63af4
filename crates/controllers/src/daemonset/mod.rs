//! The DaemonSet controller (k8s-controllers.md §2): one pod on every eligible node.
//!
//! Assumptions and invariants:
//! - a node is eligible when the template's node name, node selector, required node affinity
//!   and the NoSchedule/NoExecute taints (against the template's tolerations plus the ones
//!   every DaemonSet pod gets) allow it; resources, readiness and cordons do not count;
//! - pods are pinned to their node by a required node affinity on `metadata.name` and bound by
//!   the scheduler, as upstream 1.32 does;
//! - expectations gate every sync: until the creations and deletions asked for are observed,
//!   only status is written; the rolling update runs only in a sync whose `manage` did nothing;
//! - a rolling update never leaves more than maxUnavailable desired nodes without an
//!   available pod (surge path: never more than maxSurge extra pods).

mod history;
mod update;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::future::join_all;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::events::{Recorder, object_ref};
use crate::expectations::Expectations;
use crate::informer::{Change, Informer, key_of};
use crate::pods::{self, Selector};
use crate::queue::{Outcome, Queue};
use crate::replicaset::{api_message, is_not_found};
use crate::scheduler;

pub use history::{HASH_LABEL, patch_bytes};

/// Creations and deletions per sync at most.
pub const BURST_REPLICAS: usize = 250;
const TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";
const GENERATION_LABEL: &str = "pod-template-generation";

pub struct DaemonSetController {
    client: Client,
    daemonsets: Arc<Informer<DaemonSet>>,
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
    revisions: Arc<Informer<ControllerRevision>>,
    queue: Arc<Queue>,
    expectations: Expectations,
    recorder: Recorder,
    /// Per DaemonSet and node: how long before killing another failed pod there.
    failed_pods: crate::backoff::Backoff,
}

/// The tolerations every DaemonSet pod gets (`AddOrUpdateDaemonPodTolerations`).
pub fn daemon_tolerations(host_network: bool) -> Vec<Toleration> {
    let t = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    };
    let mut out = vec![
        t("node.kubernetes.io/not-ready", "NoExecute"),
        t("node.kubernetes.io/unreachable", "NoExecute"),
        t("node.kubernetes.io/disk-pressure", "NoSchedule"),
        t("node.kubernetes.io/memory-pressure", "NoSchedule"),
        t("node.kubernetes.io/pid-pressure", "NoSchedule"),
        t("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        out.push(t("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    out
}

fn add_tolerations(pod: &mut Pod) {
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    let mut list = spec.tolerations.take().unwrap_or_default();
    for t in daemon_tolerations(spec.host_network == Some(true)) {
        let same = |x: &Toleration| {
            x.key == t.key && x.operator == t.operator && x.value == t.value && x.effect == t.effect
        };
        match list.iter_mut().find(|x| same(x)) {
            Some(x) => *x = t,
            None => list.push(t),
        }
    }
    spec.tolerations = Some(list);
}

/// A pod of the template, with the daemon tolerations, as the eligibility check sees it.
fn hypothetical_pod(ds: &DaemonSet) -> Pod {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut pod = Pod {
        metadata: template.metadata.unwrap_or_default(),
        spec: template.spec,
        status: None,
    };
    add_tolerations(&mut pod);
    pod
}

/// `NodeShouldRunDaemonPod`: (shouldRun, shouldContinueRunning).
pub fn node_should_run(pod: &Pod, node: &Node) -> (bool, bool) {
    let name = node.name_any();
    if let Some(n) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref())
        && !n.is_empty()
        && n != name
    {
        return (false, false);
    }
    if !scheduler::matches_node_affinity(pod, node) {
        return (false, false);
    }
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let untolerated = |taint: &Taint| !tolerations.iter().any(|t| scheduler::tolerates(t, taint));
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let blocks_schedule = taints
        .iter()
        .any(|t| matches!(t.effect.as_str(), "NoSchedule" | "NoExecute") && untolerated(t));
    if blocks_schedule {
        let evicts = taints
            .iter()
            .any(|t| t.effect == "NoExecute" && untolerated(t));
        return (false, !evicts);
    }
    (true, true)
}

/// The node a DaemonSet pod is meant for: its nodeName, else its `metadata.name` affinity.
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.clone().filter(|n| !n.is_empty()) {
        return Some(n);
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.as_ref()?.iter().find_map(|f| {
            (f.key == "metadata.name" && f.operator == "In")
                .then(|| f.values.as_ref().and_then(|v| v.first().cloned()))
                .flatten()
        })
    })
}

fn is_deleting(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some()
}

fn is_terminal(p: &Pod) -> bool {
    matches!(pods::phase(p), "Succeeded" | "Failed")
}

fn created(p: &Pod) -> (bool, Option<chrono::DateTime<Utc>>, String) {
    (
        p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none(),
        p.metadata.creation_timestamp.as_ref().map(|t| t.0),
        p.name_any(),
    )
}

/// Whether a pod runs the current revision (`IsPodUpdated`).
fn is_updated(pod: &Pod, hash: &str, ds: &DaemonSet) -> bool {
    let labels = pod.labels();
    if !hash.is_empty() && labels.get(HASH_LABEL).map(String::as_str) == Some(hash) {
        return true;
    }
    let generation = ds.annotations().get(TEMPLATE_GENERATION);
    generation.is_some() && labels.get(GENERATION_LABEL) == generation
}

fn min_ready(ds: &DaemonSet) -> i32 {
    ds.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

impl DaemonSetController {
    pub fn new(
        client: Client,
        daemonsets: Arc<Informer<DaemonSet>>,
        pods: Arc<Informer<Pod>>,
        nodes: Arc<Informer<Node>>,
        revisions: Arc<Informer<ControllerRevision>>,
    ) -> Arc<Self> {
        let c = Arc::new(DaemonSetController {
            recorder: Recorder::new(client.clone(), "daemonset-controller", None),
            client,
            daemonsets,
            pods,
            nodes,
            revisions,
            queue: Queue::new(),
            expectations: Expectations::default(),
            failed_pods: crate::backoff::Backoff::new(
                Duration::from_secs(1),
                Duration::from_secs(15 * 60),
            ),
        });
        let weak = Arc::downgrade(&c);
        c.daemonsets.on_change(move |change| {
            let Some(c) = weak.upgrade() else { return };
            match change {
                Change::Added(d) | Change::Updated { new: d, .. } => {
                    c.queue.add(key_of(d.as_ref()))
                }
                Change::Deleted(d) => {
                    let key = key_of(d.as_ref());
                    c.expectations.delete(&key);
                    c.queue.add(key);
                }
            }
        });
        let weak = Arc::downgrade(&c);
        c.pods.on_change(move |change| {
            let Some(c) = weak.upgrade() else { return };
            let owner = |p: &Pod| {
                pods::controller_of(p)
                    .filter(|r| r.kind == "DaemonSet")
                    .map(|r| format!("{}/{}", p.namespace().unwrap_or_default(), r.name))
            };
            match change {
                Change::Added(p) => {
                    if let Some(key) = owner(p) {
                        if is_deleting(p) {
                            c.expectations.deletion_observed(&key, None);
                        } else {
                            c.expectations.creation_observed(&key);
                        }
                        c.queue.add(key);
                    }
                }
                Change::Updated { old, new } => {
                    if let Some(key) = owner(new) {
                        if is_deleting(new) && !is_deleting(old) {
                            c.expectations.deletion_observed(&key, None);
                        }
                        let became_ready = !pods::is_ready(old) && pods::is_ready(new);
                        if became_ready
                            && let Some(ds) = c.daemonsets.get(&key)
                            && min_ready(&ds) > 0
                        {
                            let wait = u64::try_from(min_ready(&ds)).unwrap_or(0) + 1;
                            c.queue.add_after(key.clone(), Duration::from_secs(wait));
                        }
                        c.queue.add(key);
                    }
                }
                Change::Deleted(p) => {
                    if let Some(key) = owner(p) {
                        if !is_deleting(p) {
                            c.expectations.deletion_observed(&key, None);
                        }
                        c.queue.add(key);
                    }
                }
            }
        });
        let weak = Arc::downgrade(&c);
        c.nodes.on_change(move |change| {
            let Some(c) = weak.upgrade() else { return };
            if let Change::Updated { old, new } = change
                && old.labels() == new.labels()
                && old.spec.as_ref().and_then(|s| s.taints.clone())
                    == new.spec.as_ref().and_then(|s| s.taints.clone())
            {
                return;
            }
            for ds in c.daemonsets.list() {
                c.queue.add(key_of(ds.as_ref()));
            }
        });
        c
    }

    pub async fn run(self: Arc<Self>, workers: usize, stop: CancellationToken) {
        self.daemonsets.wait_synced().await;
        self.pods.wait_synced().await;
        self.nodes.wait_synced().await;
        self.revisions.wait_synced().await;
        let keys = self.daemonsets.keys();
        self.queue
            .clone()
            .serve(
                keys,
                self.clone(),
                |c, key| async move { c.sync(&key).await },
                workers,
                stop,
            )
            .await;
    }

    async fn sync(&self, key: &str) -> Result<Outcome, String> {
        let Some(ds) = self.daemonsets.get(key) else {
            self.expectations.delete(key);
            return Ok(Outcome::Done);
        };
        let ds = ds.as_ref().clone();
        if Selector::from_label_selector(ds.spec.as_ref().map(|s| &s.selector)).is_empty() {
            self.recorder.warning(
                object_ref(&ds),
                "SelectingAll",
                "This daemon set is selecting all pods. A non-empty selector is required.".into(),
            );
            return Ok(Outcome::Done);
        }
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(Outcome::Done);
        }
        // Adopt matching orphans (pods left by a DaemonSet deleted with --cascade=orphan).
        let candidates: Vec<Arc<Pod>> = self
            .pods
            .by_index("namespace", &ds.namespace().unwrap_or_default())
            .into_iter()
            .filter(|p| pods::controller_of(p.as_ref()).is_none() && !is_deleting(p))
            .collect();
        let selector = Selector::from_label_selector(ds.spec.as_ref().map(|s| &s.selector));
        let adopted = crate::claim::claim(&self.client, &ds, &selector, candidates).await?;
        let (cur, old) = self.construct_history(&ds).await?;
        let hash = cur.labels().get(HASH_LABEL).cloned().unwrap_or_default();
        let node_pods = self.node_pods(&ds, adopted);
        if !self.expectations.satisfied(key) {
            let eligibility = self.eligibility(&ds);
            return self
                .update_status(&ds, &eligibility, &node_pods, &hash, false)
                .await;
        }
        // Node eligibility, computed once per sync.
        let eligibility = self.eligibility(&ds);
        let acted = self
            .manage(key, &ds, &eligibility, &node_pods, &hash)
            .await?;
        if !acted && self.expectations.satisfied(key) && self.is_rolling(&ds) {
            self.rolling_update(key, &ds, &eligibility, &node_pods, &hash)
                .await?;
        }
        let live: Vec<String> = node_pods
            .values()
            .flatten()
            .filter_map(|p| p.labels().get(HASH_LABEL).cloned())
            .collect();
        self.cleanup_history(&ds, old, &live).await?;
        self.update_status(&ds, &eligibility, &node_pods, &hash, true)
            .await
    }

    fn is_rolling(&self, ds: &DaemonSet) -> bool {
        ds.spec
            .as_ref()
            .and_then(|s| s.update_strategy.as_ref())
            .and_then(|s| s.type_.as_deref())
            .unwrap_or("RollingUpdate")
            == "RollingUpdate"
    }

    /// Owned pods by target node, without the terminal pods already being deleted.
    /// `adopted`: pods this sync just adopted, which the informer may not show as ours yet.
    fn node_pods(&self, ds: &DaemonSet, adopted: Vec<Arc<Pod>>) -> HashMap<String, Vec<Arc<Pod>>> {
        let mut map: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
        let owned = self
            .pods
            .by_index("controller", &ds.uid().unwrap_or_default());
        // Usually none; when some, skip those the informer already shows as ours.
        let adopted: Vec<Arc<Pod>> = if adopted.is_empty() {
            adopted
        } else {
            let known: std::collections::HashSet<String> =
                owned.iter().map(|p| key_of(p.as_ref())).collect();
            adopted
                .into_iter()
                .filter(|p| !known.contains(&key_of(p.as_ref())))
                .collect()
        };
        for p in owned.into_iter().chain(adopted) {
            if is_terminal(&p) && is_deleting(&p) {
                continue;
            }
            if let Some(node) = target_node(&p) {
                map.entry(node).or_default().push(p);
            }
        }
        for pods in map.values_mut() {
            pods.sort_by_key(|p| created(p));
        }
        map
    }

    /// Eligibility of every node: name → (shouldRun, shouldContinueRunning).
    fn eligibility(&self, ds: &DaemonSet) -> BTreeMap<String, (bool, bool)> {
        let pod = hypothetical_pod(ds);
        self.nodes
            .list()
            .iter()
            .map(|n| (n.name_any(), node_should_run(&pod, n)))
            .collect()
    }

    /// `manage`: create missing pods, delete misplaced and surplus ones; whether it acted.
    async fn manage(
        &self,
        key: &str,
        ds: &DaemonSet,
        eligibility: &BTreeMap<String, (bool, bool)>,
        node_pods: &HashMap<String, Vec<Arc<Pod>>>,
        hash: &str,
    ) -> Result<bool, String> {
        let surge = self.is_rolling(ds) && update::max_surge(ds, 1) > 0;
        let mut create_on: Vec<String> = Vec::new();
        let mut delete: Vec<Arc<Pod>> = Vec::new();
        for (node, (should_run, should_continue)) in eligibility {
            let pods: Vec<&Arc<Pod>> = node_pods
                .get(node)
                .map(|v| v.iter().collect())
                .unwrap_or_default();
            if *should_run && pods.is_empty() {
                create_on.push(node.clone());
                continue;
            }
            if !*should_continue {
                delete.extend(
                    pods.iter()
                        .filter(|p| !is_deleting(p))
                        .map(|p| (*p).clone()),
                );
                continue;
            }
            let mut running: Vec<&Arc<Pod>> = Vec::new();
            for p in pods.iter().copied().filter(|p| !is_deleting(p)) {
                match pods::phase(p) {
                    "Failed" => {
                        // A node that keeps failing the pod: wait before the next kill.
                        let backoff = format!("{key}/{node}");
                        let now = std::time::Instant::now();
                        if self.failed_pods.in_backoff_since_update(&backoff, now) {
                            self.queue
                                .add_after(key.to_string(), self.failed_pods.get(&backoff));
                            continue;
                        }
                        self.failed_pods.next(&backoff, now);
                        self.recorder.warning(
                            object_ref(ds),
                            "FailedDaemonPod",
                            format!(
                                "Found failed daemon pod {}/{} on node {node}, will try to kill it",
                                p.namespace().unwrap_or_default(),
                                p.name_any()
                            ),
                        );
                        delete.push(p.clone());
                    }
                    "Succeeded" => {
                        self.recorder.normal(
                            object_ref(ds),
                            "SucceededDaemonPod",
                            format!("Found succeeded daemon pod {}/{} on node {node}, will try to delete it", p.namespace().unwrap_or_default(), p.name_any()),
                        );
                        delete.push(p.clone());
                    }
                    _ => running.push(p),
                }
            }
            if !surge {
                // Keep the oldest; a node whose only pod is going waits for it.
                delete.extend(running.iter().skip(1).map(|p| (*p).clone()));
            } else if running.is_empty() {
                if *should_run {
                    create_on.push(node.clone());
                }
            } else if running.len() >= 2 {
                let new = running.iter().find(|p| is_updated(p, hash, ds));
                let old = running.iter().find(|p| !is_updated(p, hash, ds));
                for p in &running {
                    let keep = Some(p) == new || Some(p) == old;
                    if !keep {
                        delete.push((*p).clone());
                    }
                }
                if let (Some(new), Some(old)) = (new, old) {
                    let now = Utc::now();
                    if !pods::is_ready(old) || pods::is_available(new, min_ready(ds), now) {
                        delete.push((*old).clone());
                    }
                }
            }
        }
        // Pods for nodes that are gone.
        for (node, pods) in node_pods {
            if !eligibility.contains_key(node) {
                delete.extend(pods.iter().filter(|p| !is_deleting(p)).cloned());
            }
        }
        self.sync_nodes(key, ds, delete, create_on, hash).await
    }

    /// Create pods on `create_on` and delete `delete` (at most 250 each, creations in slow
    /// start); whether anything was asked for.
    pub(super) async fn sync_nodes(
        &self,
        key: &str,
        ds: &DaemonSet,
        mut delete: Vec<Arc<Pod>>,
        mut create_on: Vec<String>,
        hash: &str,
    ) -> Result<bool, String> {
        create_on.truncate(BURST_REPLICAS);
        delete.truncate(BURST_REPLICAS);
        if create_on.is_empty() && delete.is_empty() {
            return Ok(false);
        }
        self.expectations
            .set(key, create_on.len() as i64, delete.len() as i64);
        let ns = ds.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let template = self.pod_template(ds, hash);
        let (ok, create_err) = crate::replicaset::slow_start(create_on.len(), |i| {
            let api = api.clone();
            let mut pod = template.clone();
            pin_to_node(&mut pod, &create_on[i]);
            let oref = object_ref(ds);
            let recorder = self.recorder.clone();
            async move {
                match api.create(&PostParams::default(), &pod).await {
                    Ok(p) => {
                        recorder.normal(
                            oref,
                            "SuccessfulCreate",
                            format!("Created pod: {}", p.name_any()),
                        );
                        Ok(())
                    }
                    Err(e) => {
                        let msg = api_message(&e);
                        recorder.warning(oref, "FailedCreate", format!("Error creating: {msg}"));
                        Err(msg)
                    }
                }
            }
        })
        .await;
        self.expectations
            .lower(key, (create_on.len() - ok) as i64, 0);
        let results = join_all(delete.iter().map(|p| {
            let api = api.clone();
            let name = p.name_any();
            async move {
                match api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => {
                        self.recorder.normal(
                            object_ref(ds),
                            "SuccessfulDelete",
                            format!("Deleted pod: {name}"),
                        );
                        Ok(())
                    }
                    Err(e) if is_not_found(&e) => {
                        self.expectations.deletion_observed(key, None);
                        Ok(())
                    }
                    Err(e) => {
                        self.expectations.deletion_observed(key, None);
                        let msg = api_message(&e);
                        self.recorder.warning(
                            object_ref(ds),
                            "FailedDelete",
                            format!("Error deleting: {msg}"),
                        );
                        Err(msg)
                    }
                }
            }
        }))
        .await;
        if let Some(e) = create_err {
            return Err(e);
        }
        results.into_iter().collect::<Result<Vec<()>, String>>()?;
        Ok(true)
    }

    fn pod_template(&self, ds: &DaemonSet, hash: &str) -> Pod {
        let mut pod = hypothetical_pod(ds);
        let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
        labels.insert(HASH_LABEL.into(), hash.to_string());
        if let Some(generation) = ds.annotations().get(TEMPLATE_GENERATION) {
            labels.insert(GENERATION_LABEL.into(), generation.clone());
        }
        pod.metadata = ObjectMeta {
            generate_name: Some(format!("{}-", ds.name_any())),
            namespace: ds.namespace(),
            labels: pod.metadata.labels.take(),
            annotations: pod.metadata.annotations.take(),
            finalizers: pod.metadata.finalizers.take(),
            owner_references: Some(vec![pods::controller_ref(ds)]),
            ..Default::default()
        };
        pod
    }

    /// `updateDaemonSetStatus`.
    async fn update_status(
        &self,
        ds: &DaemonSet,
        eligibility: &BTreeMap<String, (bool, bool)>,
        node_pods: &HashMap<String, Vec<Arc<Pod>>>,
        hash: &str,
        observed: bool,
    ) -> Result<Outcome, String> {
        let now = Utc::now();
        let min_ready = min_ready(ds);
        let (mut desired, mut current, mut misscheduled) = (0, 0, 0);
        let (mut ready, mut available, mut updated) = (0, 0, 0);
        for (node, (should_run, _)) in eligibility {
            let first = node_pods.get(node).and_then(|v| v.first());
            if *should_run {
                desired += 1;
                if let Some(p) = first {
                    current += 1;
                    if pods::is_ready(p) {
                        ready += 1;
                        if pods::is_available(p, min_ready, now) {
                            available += 1;
                        }
                    }
                    if is_updated(p, hash, ds) {
                        updated += 1;
                    }
                }
            } else if first.is_some() {
                misscheduled += 1;
            }
        }
        let mut status: DaemonSetStatus = ds.status.clone().unwrap_or_default();
        let before = status.clone();
        status.desired_number_scheduled = desired;
        status.current_number_scheduled = current;
        status.number_misscheduled = misscheduled;
        status.number_ready = ready;
        status.number_available = (available != 0).then_some(available);
        status.updated_number_scheduled = (updated != 0).then_some(updated);
        status.number_unavailable = (desired - available != 0).then_some(desired - available);
        if observed {
            status.observed_generation = ds.metadata.generation;
        }
        let requeue = progress(ds, &mut status, now);
        if status != before {
            self.write_status(ds, status).await?;
        }
        if let Some(after) = requeue {
            return Ok(Outcome::RequeueAfter(after));
        }
        if min_ready > 0 && ready != available {
            return Ok(Outcome::RequeueAfter(Duration::from_secs(
                u64::try_from(min_ready).unwrap_or(1),
            )));
        }
        Ok(Outcome::Done)
    }

    async fn write_status(&self, ds: &DaemonSet, status: DaemonSetStatus) -> Result<(), String> {
        let mut next = ds.clone();
        next.status = Some(status);
        let body = serde_json::to_vec(&next).map_err(|e| e.to_string())?;
        let api: Api<DaemonSet> =
            Api::namespaced(self.client.clone(), &ds.namespace().unwrap_or_default());
        api.replace_status(&ds.name_any(), &PostParams::default(), body)
            .await
            .map(|_| ())
            .map_err(|e| api_message(&e))
    }
}

/// ger: a progress deadline for DaemonSet rollouts, in seconds.
pub const PROGRESS_DEADLINE: &str = "daemonset.ger.io/progress-deadline-seconds";

/// The Progressing condition when the DaemonSet has a progress deadline: refreshed whenever
/// the rollout moves, `ProgressDeadlineExceeded` once it has not moved for the deadline;
/// when to look again.
fn progress(
    ds: &DaemonSet,
    status: &mut DaemonSetStatus,
    now: chrono::DateTime<Utc>,
) -> Option<Duration> {
    use k8s_openapi::api::apps::v1::DaemonSetCondition;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    let deadline: i64 = ds
        .annotations()
        .get(PROGRESS_DEADLINE)?
        .trim()
        .parse()
        .ok()?;
    let name = ds.name_any();
    let desired = status.desired_number_scheduled;
    let updated = status.updated_number_scheduled.unwrap_or(0);
    let available = status.number_available.unwrap_or(0);
    let complete = updated == desired && available == desired;
    let conds = status.conditions.get_or_insert_with(Vec::new);
    let cur = conds.iter().find(|c| c.type_ == "Progressing").cloned();
    let cond = |st: &str, reason: &str, message: String| DaemonSetCondition {
        type_: "Progressing".into(),
        status: st.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: Some(Time(now)),
    };
    let counts = format!("{updated} of {desired} pods updated, {available} available.");
    let progress_msg = format!("DaemonSet \"{name}\" is progressing: {counts}");
    let exceeded_msg = format!("DaemonSet \"{name}\" has timed out progressing: {counts}");
    let next = if complete {
        cond(
            "True",
            "RolloutComplete",
            format!("DaemonSet \"{name}\" has successfully progressed."),
        )
    } else {
        match &cur {
            // Timed out, and still nothing moved.
            Some(c) if c.message.as_deref() == Some(exceeded_msg.as_str()) => return None,
            Some(c) if c.message.as_deref() == Some(progress_msg.as_str()) => {
                let since = c.last_transition_time.as_ref().map_or(now, |t| t.0);
                if now - since > chrono::Duration::seconds(deadline) {
                    cond("False", "ProgressDeadlineExceeded", exceeded_msg)
                } else {
                    let left = (since + chrono::Duration::seconds(deadline) - now)
                        .to_std()
                        .unwrap_or_default();
                    return Some(left + Duration::from_secs(1));
                }
            }
            _ => cond("True", "DaemonSetProgressing", progress_msg),
        }
    };
    let unchanged = cur.as_ref().is_some_and(|c| {
        c.status == next.status && c.reason == next.reason && c.message == next.message
    });
    if !unchanged {
        conds.retain(|c| c.type_ != "Progressing");
        conds.push(next.clone());
    }
    (next.reason.as_deref() == Some("DaemonSetProgressing"))
        .then(|| Duration::from_secs(u64::try_from(deadline).unwrap_or(0) + 1))
}

/// Replace the pod's required node affinity with `metadata.name In [node]`.
fn pin_to_node(pod: &mut Pod, node: &str) {
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let na = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.to_string()]),
            }]),
            match_expressions: None,
        }],
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(
            json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}}),
        )
        .unwrap()
    }

    fn ds(spec: serde_json::Value) -> DaemonSet {
        serde_json::from_value(
            json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": spec}}}),
        )
        .unwrap()
    }

    #[test]
    fn eligibility_follows_upstream() {
        let base = json!({"containers": [{"name": "c", "image": "i"}]});
        let cases = [
            (
                "plain",
                base.clone(),
                node("n", json!({}), json!([])),
                (true, true),
            ),
            (
                "unschedulable taint is tolerated",
                base.clone(),
                node(
                    "n",
                    json!({}),
                    json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
                ),
                (true, true),
            ),
            (
                "not-ready NoSchedule is not tolerated; NoExecute is",
                base.clone(),
                node(
                    "n",
                    json!({}),
                    json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}, {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]),
                ),
                (false, true),
            ),
            (
                "an untolerated NoExecute taint evicts",
                base.clone(),
                node(
                    "n",
                    json!({}),
                    json!([{"key": "dedicated", "value": "gpu", "effect": "NoExecute"}]),
                ),
                (false, false),
            ),
            (
                "node selector",
                json!({"nodeSelector": {"disktype": "ssd"}, "containers": [{"name": "c", "image": "i"}]}),
                node("n", json!({"disktype": "hdd"}), json!([])),
                (false, false),
            ),
            (
                "template nodeName elsewhere",
                json!({"nodeName": "other", "containers": [{"name": "c", "image": "i"}]}),
                node("n", json!({}), json!([])),
                (false, false),
            ),
        ];
        for (name, spec, n, want) in cases {
            assert_eq!(
                node_should_run(&hypothetical_pod(&ds(spec)), &n),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn pods_are_pinned_by_affinity() {
        let mut pod = hypothetical_pod(&ds(json!({"containers": [{"name": "c", "image": "i"}]})));
        pin_to_node(&mut pod, "node-1");
        assert_eq!(target_node(&pod).as_deref(), Some("node-1"));
        let tolerations = pod.spec.unwrap().tolerations.unwrap();
        assert_eq!(tolerations.len(), 6);
    }
}
