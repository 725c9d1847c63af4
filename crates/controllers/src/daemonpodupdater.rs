//! OpenYurt's `daemonpodupdater` (Yurt-Manager): two upgrade models for DaemonSets whose
//! nodes may be offline for long stretches, where the native RollingUpdate would stall on
//! every NotReady node.
//!
//! It reconciles DaemonSets annotated `apps.openyurt.io/update-strategy` (any letter case)
//! whose `spec.updateStrategy.type` is `OnDelete`; the native DaemonSet controller keeps
//! creating the missing pods from the current template, this one only decides which old pods
//! go and when:
//! - `AdvancedRollingUpdate`: on Ready nodes, old pods are deleted within the budget of
//!   `apps.openyurt.io/max-unavailable` (int or percentage rounded up over the nodes that
//!   have a pod of the DaemonSet; default `10%`, also for `0`/`0%`); pods on NotReady nodes
//!   are left alone and not counted until their node is Ready again;
//! - `OTA`: every owned pod bound to a node carries the condition `PodNeedUpgrade` (`True`
//!   when it does not run the current revision, message `controllerrevision: <hash>`); pods
//!   are deleted by whoever upgrades the node (YurtHub's OTA API, or the user), never here.
//!
//! Assumptions:
//! - the current revision's hash is `compute_hash(template, status.collisionCount)`, the value
//!   the DaemonSet controller names its ControllerRevisions with and labels pods with
//!   (`controller-revision-hash`); a pod is "latest" when that label matches, or when its
//!   `pod-template-generation` label equals the DaemonSet's
//!   `deprecated.daemonset.template.generation` annotation (`IsDaemonsetPodLatest`);
//! - a pod belongs to the DaemonSet that is its controller owner (by UID); its node is its
//!   `nodeName`, else its single `metadata.name In [node]` required node affinity.
//!
//! Invariants:
//! - a pod on a node that is not Ready is never deleted, and at most 250 pods are deleted per
//!   pass; old pods that are not available are always replaced, available ones only while
//!   fewer than maxUnavailable Ready nodes are without an available new pod;
//! - after a pass asked for n deletions nothing more is deleted until n deletions (or failed
//!   deletes) have been observed, or five minutes passed (upstream's expectations);
//! - OTA never deletes, and writes a pod's status only when the condition changes (with the
//!   cached resourceVersion: a conflict retries the DaemonSet), keeping lastTransitionTime
//!   while the status stays the same.
//!
//! Where this differs from upstream (deliberately):
//! - nodes are visited in name order, so which candidates go first is deterministic;
//! - a Ready node the DaemonSet should run on but that has no pod of it yet counts as
//!   unavailable (not in the percentage's total): between a deletion being observed and the
//!   native controller's replacement showing up, upstream would see one node fewer and could
//!   delete past the budget;
//! - besides DaemonSet events it reacts to a node turning Ready (so pods on reconnected nodes
//!   get updated without anyone touching the DaemonSet), to owned pods appearing, changing
//!   readiness, being deleted or losing their `PodNeedUpgrade` condition, and resyncs every
//!   annotated DaemonSet every 30 s;
//! - OTA leaves a pod alone until it is bound to a node (upstream marks it at once): a status
//!   write landing between the scheduler's read and write of the binding can fail the
//!   binding, and the pod would wait for its condition only a moment anyway;
//! - an unknown strategy or a malformed max-unavailable is a Warning event on the DaemonSet
//!   (once per distinct message) rather than an endlessly retried error; `OnDelete` is checked
//!   again at reconcile time.
//!
//! Upstream: <https://github.com/openyurtio/openyurt/tree/master/pkg/yurtmanager/controller/daemonsetupgradestrategy/daemonpodupdater>

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::join_all;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::daemonset::{HASH_LABEL, daemon_tolerations, node_should_run};
use crate::deployment::util::compute_hash;
use crate::events::{Recorder, object_ref};
use crate::expectations::Expectations;
use crate::informer::{Change, Informer, key_of};
use crate::pods;
use crate::queue::{Outcome, Queue};
use crate::replicaset::{api_message, is_not_found};

/// DaemonSet annotation choosing the upgrade model.
pub const UPDATE_ANNOTATION: &str = "apps.openyurt.io/update-strategy";
/// DaemonSet annotation: AdvancedRollingUpdate's budget (int or percentage).
pub const MAX_UNAVAILABLE_ANNOTATION: &str = "apps.openyurt.io/max-unavailable";
pub const OTA: &str = "OTA";
pub const ADVANCED_ROLLING_UPDATE: &str = "AdvancedRollingUpdate";
pub const DEFAULT_MAX_UNAVAILABLE: &str = "10%";
/// Pod condition written in OTA mode.
pub const POD_NEED_UPGRADE: &str = "PodNeedUpgrade";
/// Prefix of the condition's message; the current revision's hash follows.
pub const VERSION_PREFIX: &str = "controllerrevision: ";
/// Deletions per pass at most.
pub const BURST_REPLICAS: usize = 250;
/// Every annotated DaemonSet is looked at again this often.
pub const RESYNC: Duration = Duration::from_secs(30);
/// Workers (upstream's `--concurrent-daemonpod-updater-workers` default).
pub const WORKERS: usize = 3;
pub const COMPONENT: &str = "daemon-pod-updater-controller";
/// Warning reason: the update-strategy annotation has an unknown value.
pub const REASON_UNKNOWN_STRATEGY: &str = "UnknownUpdateStrategy";
/// Warning reason: the max-unavailable annotation cannot be parsed.
pub const REASON_INVALID_MAX_UNAVAILABLE: &str = "InvalidMaxUnavailable";

const TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";
const GENERATION_LABEL: &str = "pod-template-generation";

/// The upgrade model a DaemonSet asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    Ota,
    AdvancedRollingUpdate,
    Unknown(String),
}

/// The DaemonSet's update-strategy annotation, if it has one (values compared ignoring case).
pub fn strategy(ds: &DaemonSet) -> Option<Strategy> {
    let v = ds.annotations().get(UPDATE_ANNOTATION)?;
    Some(if v.eq_ignore_ascii_case(OTA) {
        Strategy::Ota
    } else if v.eq_ignore_ascii_case(ADVANCED_ROLLING_UPDATE) {
        Strategy::AdvancedRollingUpdate
    } else {
        Strategy::Unknown(v.clone())
    })
}

fn on_delete(ds: &DaemonSet) -> bool {
    ds.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("OnDelete")
}

/// Upstream's `checkPrerequisites`: a known strategy and `OnDelete`.
pub fn check_prerequisites(ds: &DaemonSet) -> bool {
    matches!(
        strategy(ds),
        Some(Strategy::Ota | Strategy::AdvancedRollingUpdate)
    ) && on_delete(ds)
}

/// The DaemonSets this controller looks at: annotated (any value, so that an unknown one is
/// reported) and `OnDelete`.
fn watched(ds: &DaemonSet) -> bool {
    strategy(ds).is_some() && on_delete(ds)
}

fn min_ready(ds: &DaemonSet) -> i32 {
    ds.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

/// What "latest" means for one DaemonSet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// The current revision's `controller-revision-hash`.
    pub hash: String,
    /// `deprecated.daemonset.template.generation`, when present and an integer.
    pub generation: Option<i64>,
}

impl Revision {
    pub fn of(ds: &DaemonSet) -> Revision {
        Revision {
            hash: compute_hash(
                ds.spec.as_ref().map(|s| &s.template),
                ds.status.as_ref().and_then(|s| s.collision_count),
            ),
            generation: ds
                .annotations()
                .get(TEMPLATE_GENERATION)
                .and_then(|g| g.parse().ok()),
        }
    }

    /// `IsDaemonsetPodLatest`: the hash label matches, or the template generation does.
    pub fn is_latest(&self, pod: &Pod) -> bool {
        let labels = pod.labels();
        let hash = !self.hash.is_empty() && labels.get(HASH_LABEL) == Some(&self.hash);
        let generation = self
            .generation
            .is_some_and(|g| labels.get(GENERATION_LABEL) == Some(&g.to_string()));
        hash || generation
    }
}

/// `GetTargetNodeName`: the pod's nodeName, else the single value of the first required
/// `metadata.name In` node-affinity field; `None` when neither says.
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    let field = terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|f| f.key == "metadata.name" && f.operator == "In")?;
    match field.values.as_deref() {
        Some([only]) => Some(only.clone()),
        _ => None,
    }
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// Go's `strconv.Atoi` error text for `s`.
fn atoi(s: &str) -> Result<i64, String> {
    s.parse::<i64>().map_err(|e| {
        let why = match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                "value out of range"
            }
            _ => "invalid syntax",
        };
        format!("strconv.Atoi: parsing {s:?}: {why}")
    })
}

/// `maxUnavailableCounts`: the annotation's value scaled over `total` (the nodes that have a
/// pod of the DaemonSet), percentages rounded up. Absent, `"0"` and `"0%"` mean 10%;
/// negative and larger-than-total integers are taken as they are.
pub fn max_unavailable(annotation: Option<&str>, total: usize) -> Result<i32, String> {
    let v = match annotation {
        None | Some("0") | Some("0%") => DEFAULT_MAX_UNAVAILABLE,
        Some(v) => v,
    };
    let scaled = || -> Result<i32, String> {
        if let Ok(i) = atoi(v) {
            return i32::try_from(i)
                .map_err(|_| format!("invalid value {v:?}: value out of range"));
        }
        let Some(p) = v.strip_suffix('%') else {
            return Err(format!("invalid type: string {v:?} is not a percentage"));
        };
        let p = atoi(p).map_err(|e| format!("invalid value {v:?}: {e}"))?;
        let value = (p as f64 * total as f64 / 100.0).ceil();
        Ok(value.clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32)
    };
    scaled().map_err(|e| {
        format!("invalid value for MaxUnavailable: invalid value for IntOrString: {e}")
    })
}

/// One node as the rolling update sees it.
#[derive(Debug, Clone, Default)]
pub struct NodeState {
    /// Whether the node's Ready condition is True; `None` when the node is not known.
    pub ready: Option<bool>,
    /// The DaemonSet's pods meant for this node (terminating ones included).
    pub pods: Vec<Arc<Pod>>,
}

/// `findUpdatedPodsOnNode`: the new and the old pod among the pods not being deleted, or
/// `None` when there is more than one of either.
pub fn split_pods<'a>(
    rev: &Revision,
    pods: &'a [Arc<Pod>],
) -> Option<(Option<&'a Pod>, Option<&'a Pod>)> {
    let (mut new, mut old) = (None, None);
    for p in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let slot = if rev.is_latest(p) { &mut new } else { &mut old };
        if slot.is_some() {
            return None;
        }
        *slot = Some(p.as_ref());
    }
    Some((new, old))
}

/// The AdvancedRollingUpdate decision (`advancedRollingUpdate`): the pods to delete, old
/// unavailable ones first, then available old ones while the budget allows. Nodes that are
/// not Ready are skipped; an unknown node fails the whole pass.
pub fn plan_deletions(
    rev: &Revision,
    nodes: &BTreeMap<String, NodeState>,
    max_unavailable: i32,
    min_ready_seconds: i32,
    now: DateTime<Utc>,
) -> Result<Vec<String>, String> {
    let max = i64::from(max_unavailable);
    let mut unavailable: i64 = 0;
    let mut allowed = Vec::new();
    let mut candidates = Vec::new();
    for (name, node) in nodes {
        let ready = node.ready.ok_or_else(|| {
            format!("couldn't check node {name:?} ready status, nodes {name:?} not found")
        })?;
        if !ready {
            continue;
        }
        let Some((new, old)) = split_pods(rev, &node.pods) else {
            // Excess pods: the DaemonSet controller cleans them up.
            unavailable += 1;
            continue;
        };
        match (new, old) {
            (None, None) | (Some(_), Some(_)) => unavailable += 1,
            (Some(new), None) => {
                if !pods::is_available(new, min_ready_seconds, now) {
                    unavailable += 1;
                }
            }
            (None, Some(old)) => {
                if !pods::is_available(old, min_ready_seconds, now) {
                    allowed.push(old.name_any());
                } else if unavailable < max {
                    candidates.push(old.name_any());
                }
            }
        }
    }
    let room = (max - unavailable).clamp(0, candidates.len() as i64);
    allowed.extend(candidates.into_iter().take(room as usize));
    Ok(allowed)
}

/// The pod's status with `PodNeedUpgrade` as OTA wants it, or `None` when it already is
/// (`SetPodUpgradeCondition` + `UpdatePodCondition`).
pub fn upgrade_status(rev: &Revision, pod: &Pod, now: DateTime<Utc>) -> Option<PodStatus> {
    let mut want = PodCondition {
        type_: POD_NEED_UPGRADE.into(),
        status: if rev.is_latest(pod) { "False" } else { "True" }.into(),
        message: Some(format!("{VERSION_PREFIX}{}", rev.hash)),
        last_transition_time: Some(Time(now)),
        ..Default::default()
    };
    let mut status = pod.status.clone().unwrap_or_default();
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    match conditions.iter_mut().find(|c| c.type_ == POD_NEED_UPGRADE) {
        None => conditions.push(want),
        Some(cur) => {
            if cur.status == want.status {
                want.last_transition_time = cur.last_transition_time.clone();
            }
            let text = |s: &Option<String>| s.clone().unwrap_or_default();
            let same = cur.status == want.status
                && text(&cur.reason) == text(&want.reason)
                && text(&cur.message) == text(&want.message)
                && cur.last_probe_time == want.last_probe_time
                && cur.last_transition_time == want.last_transition_time;
            if same {
                return None;
            }
            *cur = want;
        }
    }
    Some(status)
}

/// A pod of the template with the daemon tolerations, for node eligibility.
fn template_pod(ds: &DaemonSet) -> Pod {
    let t = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut pod = Pod {
        metadata: t.metadata.unwrap_or_default(),
        spec: t.spec,
        status: None,
    };
    if let Some(spec) = pod.spec.as_mut() {
        let host_network = spec.host_network == Some(true);
        spec.tolerations
            .get_or_insert_with(Vec::new)
            .extend(daemon_tolerations(host_network));
    }
    pod
}

/// The rolling update's view of the nodes, and the percentage's total (nodes with a pod).
/// Pods whose node cannot be told are left out; a Ready node the DaemonSet should run on
/// without any pod is included with none (it counts as unavailable).
pub fn node_states(
    ds: &DaemonSet,
    pods: &[Arc<Pod>],
    nodes: &BTreeMap<String, Arc<Node>>,
) -> (BTreeMap<String, NodeState>, usize) {
    let mut map: BTreeMap<String, NodeState> = BTreeMap::new();
    for p in pods {
        match target_node(p) {
            Some(n) => map.entry(n).or_default().pods.push(p.clone()),
            None => tracing::debug!(pod = %p.name_any(), "no target node; skipped"),
        }
    }
    let total = map.len();
    for (name, state) in map.iter_mut() {
        state.ready = nodes.get(name).map(|n| node_ready(n));
    }
    let template = template_pod(ds);
    for (name, node) in nodes {
        if !map.contains_key(name) && node_ready(node) && node_should_run(&template, node).0 {
            map.insert(
                name.clone(),
                NodeState {
                    ready: Some(true),
                    pods: Vec::new(),
                },
            );
        }
    }
    (map, total)
}

/// How an API call failed, as far as this controller cares.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ApiError {
    NotFound,
    Other(String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::NotFound => f.write_str("not found"),
            ApiError::Other(m) => f.write_str(m),
        }
    }
}

/// What a pass does to the world: the API server and the DaemonSet's events.
trait Effects: Sync {
    fn delete_pod(&self, ns: &str, name: &str)
    -> impl Future<Output = Result<(), ApiError>> + Send;
    /// Replace the pod's status (the pod carries the resourceVersion it was read at).
    fn write_pod_status(&self, pod: &Pod) -> impl Future<Output = Result<(), ApiError>> + Send;
    fn event(&self, ds: &DaemonSet, warning: bool, reason: &str, message: String);
}

/// What the controller remembers between passes.
#[derive(Default)]
struct State {
    expectations: Expectations,
    /// DaemonSet key → the last warning emitted for it (not repeated while unchanged).
    warned: Mutex<HashMap<String, String>>,
}

impl State {
    fn forget(&self, key: &str) {
        self.expectations.delete(key);
        self.warned.lock().remove(key);
    }

    fn warn<E: Effects>(&self, fx: &E, key: &str, ds: &DaemonSet, reason: &str, message: String) {
        {
            let mut warned = self.warned.lock();
            if warned.get(key) == Some(&message) {
                return;
            }
            warned.insert(key.to_string(), message.clone());
        }
        fx.event(ds, true, reason, message);
    }
}

/// One pass for the DaemonSet `key` (upstream's `Reconcile`). `pods`: the pods it controls;
/// `nodes`: every node, by name (only the rolling update reads them).
async fn reconcile<E: Effects>(
    st: &State,
    fx: &E,
    key: &str,
    ds: Option<&DaemonSet>,
    pods: &[Arc<Pod>],
    nodes: &BTreeMap<String, Arc<Node>>,
    now: DateTime<Utc>,
) -> Result<(), String> {
    let Some(ds) = ds else {
        st.forget(key);
        return Ok(());
    };
    if ds.metadata.deletion_timestamp.is_some() || !on_delete(ds) {
        return Ok(());
    }
    if !st.expectations.satisfied(key) {
        return Ok(());
    }
    match strategy(ds) {
        None => {
            st.warned.lock().remove(key);
            Ok(())
        }
        Some(Strategy::Unknown(v)) => {
            st.warn(
                fx,
                key,
                ds,
                REASON_UNKNOWN_STRATEGY,
                format!(
                    "unknown update type {v} ({UPDATE_ANNOTATION} must be {OTA} or {ADVANCED_ROLLING_UPDATE})"
                ),
            );
            Ok(())
        }
        Some(Strategy::Ota) => {
            st.warned.lock().remove(key);
            ota(fx, ds, pods, now).await
        }
        Some(Strategy::AdvancedRollingUpdate) => {
            let (states, total) = node_states(ds, pods, nodes);
            let annotation = ds.annotations().get(MAX_UNAVAILABLE_ANNOTATION);
            let max = match max_unavailable(annotation.map(String::as_str), total) {
                Ok(m) => m,
                Err(e) => {
                    let message = format!(
                        "couldn't get maxUnavailable number for daemon set {:?}: {e}",
                        ds.name_any()
                    );
                    st.warn(fx, key, ds, REASON_INVALID_MAX_UNAVAILABLE, message);
                    return Ok(());
                }
            };
            st.warned.lock().remove(key);
            let delete = plan_deletions(&Revision::of(ds), &states, max, min_ready(ds), now)?;
            delete_pods(st, fx, key, ds, delete).await
        }
    }
}

/// `otaUpdate`: bring every owned pod's `PodNeedUpgrade` up to date; the first failure
/// stops the pass (and retries it).
async fn ota<E: Effects>(
    fx: &E,
    ds: &DaemonSet,
    pods: &[Arc<Pod>],
    now: DateTime<Utc>,
) -> Result<(), String> {
    let rev = Revision::of(ds);
    let mut pods: Vec<&Arc<Pod>> = pods.iter().collect();
    pods.sort_by_key(|p| p.name_any());
    for p in pods {
        if p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or("")
            .is_empty()
        {
            // Not bound yet: marked once the binding is seen (a status write racing the
            // binding could fail it).
            continue;
        }
        let Some(status) = upgrade_status(&rev, p, now) else {
            continue;
        };
        let mut next = p.as_ref().clone();
        next.status = Some(status);
        match fx.write_pod_status(&next).await {
            Ok(()) | Err(ApiError::NotFound) => {}
            Err(ApiError::Other(e)) => {
                return Err(format!("could not update pod {}: {e}", p.name_any()));
            }
        }
    }
    Ok(())
}

/// `syncPodsOnNodes`: expect the deletions (always, even none), then delete at most 250;
/// every failed delete lowers the expectation again.
async fn delete_pods<E: Effects>(
    st: &State,
    fx: &E,
    key: &str,
    ds: &DaemonSet,
    mut names: Vec<String>,
) -> Result<(), String> {
    names.truncate(BURST_REPLICAS);
    st.expectations.set(key, 0, names.len() as i64);
    let ns = ds.namespace().unwrap_or_default();
    let results = join_all(names.iter().map(|name| {
        let ns = &ns;
        async move {
            match fx.delete_pod(ns, name).await {
                Ok(()) => {
                    fx.event(
                        ds,
                        false,
                        "SuccessfulDelete",
                        format!("Deleted pod: {name}"),
                    );
                    Ok(())
                }
                Err(ApiError::NotFound) => {
                    st.expectations.deletion_observed(key, None);
                    Ok(())
                }
                Err(e) => {
                    st.expectations.deletion_observed(key, None);
                    fx.event(ds, true, "FailedDelete", format!("Error deleting: {e}"));
                    Err(e.to_string())
                }
            }
        }
    }))
    .await;
    let errors: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("unable to delete pods: {}", errors.join(", ")))
    }
}

fn need_upgrade(pod: &Pod) -> Option<&PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == POD_NEED_UPGRADE)
}

/// Queue `keys()` every `period` until `stop`.
async fn resync(
    queue: &Queue,
    period: Duration,
    keys: impl Fn() -> Vec<String>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        for key in keys() {
            queue.add(key);
        }
    }
}

/// Whether a change of an owned pod asks for a pass: readiness changed (the budget moved),
/// its deletion started, it was bound to a node, or its `PodNeedUpgrade` changed (someone
/// else's status write may have dropped it).
fn pod_change_matters(old: &Pod, new: &Pod) -> bool {
    let deleting = |p: &Pod| p.metadata.deletion_timestamp.is_some();
    let bound = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.clone());
    pods::is_ready(old) != pods::is_ready(new)
        || deleting(old) != deleting(new)
        || bound(old) != bound(new)
        || need_upgrade(old) != need_upgrade(new)
}

/// Whether a node just turned Ready (or appeared Ready): its DaemonSets' old pods may be
/// replaced now.
fn turned_ready(old: Option<&Node>, new: &Node) -> bool {
    node_ready(new) && !old.is_some_and(node_ready)
}

/// The watched DaemonSet controlling `pod`, with its key (`resolveControllerRef`: by name,
/// then the UID must match).
fn owner(
    pod: &Pod,
    get: impl Fn(&str) -> Option<Arc<DaemonSet>>,
) -> Option<(String, Arc<DaemonSet>)> {
    let r = pods::controller_of(pod).filter(|r| r.kind == "DaemonSet")?;
    let key = format!("{}/{}", pod.namespace().unwrap_or_default(), r.name);
    let ds = get(&key)?;
    (ds.uid().as_deref() == Some(r.uid.as_str()) && watched(&ds)).then_some((key, ds))
}

pub struct DaemonPodUpdater {
    client: Client,
    daemonsets: Arc<Informer<DaemonSet>>,
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
    queue: Arc<Queue>,
    state: State,
    recorder: Recorder,
}

impl Effects for DaemonPodUpdater {
    async fn delete_pod(&self, ns: &str, name: &str) -> Result<(), ApiError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Err(ApiError::NotFound),
            Err(e) => Err(ApiError::Other(api_message(&e))),
        }
    }

    async fn write_pod_status(&self, pod: &Pod) -> Result<(), ApiError> {
        let ns = pod.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let body = serde_json::to_vec(pod).map_err(|e| ApiError::Other(e.to_string()))?;
        match api
            .replace_status(&pod.name_any(), &PostParams::default(), body)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Err(ApiError::NotFound),
            Err(e) => Err(ApiError::Other(api_message(&e))),
        }
    }

    fn event(&self, ds: &DaemonSet, warning: bool, reason: &str, message: String) {
        if warning {
            self.recorder.warning(object_ref(ds), reason, message);
        } else {
            self.recorder.normal(object_ref(ds), reason, message);
        }
    }
}

impl DaemonPodUpdater {
    pub fn new(
        client: Client,
        daemonsets: Arc<Informer<DaemonSet>>,
        pods: Arc<Informer<Pod>>,
        nodes: Arc<Informer<Node>>,
    ) -> Arc<Self> {
        let c = Arc::new(DaemonPodUpdater {
            recorder: Recorder::new(client.clone(), COMPONENT, None),
            client,
            daemonsets,
            pods,
            nodes,
            queue: Queue::new(),
            state: State::default(),
        });
        let weak = Arc::downgrade(&c);
        c.daemonsets.on_change(move |change| {
            let Some(c) = weak.upgrade() else { return };
            match change {
                Change::Added(d) | Change::Updated { new: d, .. } => {
                    if watched(d) {
                        c.queue.add(key_of(d.as_ref()));
                    } else {
                        c.state.warned.lock().remove(&key_of(d.as_ref()));
                    }
                }
                Change::Deleted(d) => c.state.forget(&key_of(d.as_ref())),
            }
        });
        let weak = Arc::downgrade(&c);
        c.pods.on_change(move |change| {
            let Some(c) = weak.upgrade() else { return };
            match change {
                Change::Added(p) => {
                    if let Some((key, _)) = c.owner(p) {
                        c.queue.add(key);
                    }
                }
                Change::Updated { old, new } => {
                    let Some((key, ds)) = c.owner(new) else {
                        return;
                    };
                    let became_ready = !pods::is_ready(old) && pods::is_ready(new);
                    if became_ready && min_ready(&ds) > 0 {
                        let wait = u64::try_from(min_ready(&ds)).unwrap_or(0) + 1;
                        c.queue.add_after(key.clone(), Duration::from_secs(wait));
                    }
                    if pod_change_matters(old, new) {
                        c.queue.add(key);
                    }
                }
                Change::Deleted(p) => {
                    if let Some((key, _)) = c.owner(p) {
                        c.state.expectations.deletion_observed(&key, None);
                        c.queue.add(key);
                    }
                }
            }
        });
        let weak = Arc::downgrade(&c);
        c.nodes.on_change(move |change| {
            let Some(c) = weak.upgrade() else { return };
            let (old, node) = match change {
                Change::Added(n) => (None, n),
                Change::Updated { old, new } => (Some(old.as_ref()), new),
                Change::Deleted(_) => return,
            };
            if !turned_ready(old, node) {
                return;
            }
            for p in c.pods.by_index("node", &node.name_any()) {
                if let Some((key, _)) = c.owner(&p) {
                    c.queue.add(key);
                }
            }
        });
        c
    }

    fn owner(&self, pod: &Pod) -> Option<(String, Arc<DaemonSet>)> {
        owner(pod, |key| self.daemonsets.get(key))
    }

    fn watched_keys(&self) -> Vec<String> {
        self.daemonsets
            .list()
            .iter()
            .filter(|d| watched(d))
            .map(|d| key_of(d.as_ref()))
            .collect()
    }

    pub async fn run(self: Arc<Self>, workers: usize, stop: CancellationToken) {
        self.daemonsets.wait_synced().await;
        self.pods.wait_synced().await;
        self.nodes.wait_synced().await;
        let c = self.clone();
        let resync = resync(&self.queue, RESYNC, move || c.watched_keys(), stop.clone());
        let keys = self.watched_keys();
        let serve = self.queue.clone().serve(
            keys,
            self.clone(),
            |c, key| async move { c.sync(&key).await },
            workers,
            stop,
        );
        tokio::join!(serve, resync);
    }

    async fn sync(&self, key: &str) -> Result<Outcome, String> {
        let ds = self.daemonsets.get(key);
        let mut owned: Vec<Arc<Pod>> = Vec::new();
        let mut nodes: BTreeMap<String, Arc<Node>> = BTreeMap::new();
        if let Some(ds) = &ds {
            let ns = ds.namespace();
            owned = self
                .pods
                .by_index("controller", &ds.uid().unwrap_or_default())
                .into_iter()
                .filter(|p| p.namespace() == ns)
                .collect();
            if strategy(ds) == Some(Strategy::AdvancedRollingUpdate) {
                nodes = self
                    .nodes
                    .list()
                    .into_iter()
                    .map(|n| (n.name_any(), n))
                    .collect();
            }
        }
        reconcile(
            &self.state,
            self,
            key,
            ds.as_deref(),
            &owned,
            &nodes,
            Utc::now(),
        )
        .await?;
        Ok(Outcome::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const KEY: &str = "default/test-ds";

    fn now() -> DateTime<Utc> {
        "2025-01-01T12:00:00Z".parse().unwrap()
    }

    fn ago(secs: i64) -> DateTime<Utc> {
        now() - chrono::Duration::seconds(secs)
    }

    /// `default/test-ds`, image v2, template generation 2, OnDelete.
    fn ds(strategy: Option<&str>, max: Option<&str>) -> DaemonSet {
        let mut ann = json!({TEMPLATE_GENERATION: "2"});
        if let Some(s) = strategy {
            ann[UPDATE_ANNOTATION] = json!(s);
        }
        if let Some(m) = max {
            ann[MAX_UNAVAILABLE_ANNOTATION] = json!(m);
        }
        serde_json::from_value(json!({
            "metadata": {"name": "test-ds", "namespace": "default", "uid": "ds-uid", "annotations": ann},
            "spec": {
                "selector": {"matchLabels": {"foo": "bar"}},
                "updateStrategy": {"type": "OnDelete"},
                "template": {"metadata": {"labels": {"foo": "bar"}},
                    "spec": {"containers": [{"name": "c", "image": "foo/bar:v2"}]}}}
        }))
        .unwrap()
    }

    fn aru(max: Option<&str>) -> DaemonSet {
        ds(Some(ADVANCED_ROLLING_UPDATE), max)
    }

    /// A pod of `d` (latest or old), on `node` (`None`: unscheduled), Ready since `ready`
    /// (`None`: not Ready).
    fn pod_full(
        d: &DaemonSet,
        name: &str,
        node: Option<&str>,
        latest: bool,
        ready: Option<DateTime<Utc>>,
        terminating: bool,
    ) -> Arc<Pod> {
        let rev = Revision::of(d);
        let (hash, generation) = if latest {
            (rev.hash.clone(), "2")
        } else {
            ("old-hash".to_string(), "1")
        };
        let ready_cond = match ready {
            Some(t) => json!({"type": "Ready", "status": "True", "lastTransitionTime": Time(t)}),
            None => {
                json!({"type": "Ready", "status": "False", "lastTransitionTime": Time(ago(3600))})
            }
        };
        let mut v = json!({
            "metadata": {"name": name, "namespace": "default", "resourceVersion": "7",
                "labels": {"foo": "bar", HASH_LABEL: hash, GENERATION_LABEL: generation},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "test-ds",
                    "uid": d.uid().unwrap(), "controller": true}]},
            "spec": {"containers": [{"name": "c", "image": "foo/bar"}]},
            "status": {"phase": "Running", "conditions": [ready_cond]}
        });
        if let Some(n) = node {
            v["spec"]["nodeName"] = json!(n);
        }
        if terminating {
            v["metadata"]["deletionTimestamp"] = json!(Time(ago(1)));
        }
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn old(d: &DaemonSet, name: &str, node: &str) -> Arc<Pod> {
        pod_full(d, name, Some(node), false, Some(ago(3600)), false)
    }

    fn old_unready(d: &DaemonSet, name: &str, node: &str) -> Arc<Pod> {
        pod_full(d, name, Some(node), false, None, false)
    }

    fn new(d: &DaemonSet, name: &str, node: &str, ready: bool) -> Arc<Pod> {
        pod_full(d, name, Some(node), true, ready.then(|| ago(3600)), false)
    }

    fn node_obj(name: &str, ready: bool, labels: Value) -> Arc<Node> {
        let status = if ready { "True" } else { "False" };
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "labels": labels},
                "status": {"conditions": [{"type": "Ready", "status": status}]}
            }))
            .unwrap(),
        )
    }

    fn nodes(list: &[(&str, bool)]) -> BTreeMap<String, Arc<Node>> {
        list.iter()
            .map(|(n, r)| (n.to_string(), node_obj(n, *r, json!({}))))
            .collect()
    }

    #[derive(Default)]
    struct Fake {
        delete_errors: HashMap<String, ApiError>,
        write_error: Option<ApiError>,
        deleted: Mutex<Vec<String>>,
        written: Mutex<Vec<Pod>>,
        events: Mutex<Vec<(bool, String, String)>>,
    }

    impl Effects for Fake {
        async fn delete_pod(&self, ns: &str, name: &str) -> Result<(), ApiError> {
            assert_eq!(ns, "default");
            if let Some(e) = self.delete_errors.get(name) {
                return Err(e.clone());
            }
            self.deleted.lock().push(name.to_string());
            Ok(())
        }

        async fn write_pod_status(&self, pod: &Pod) -> Result<(), ApiError> {
            if let Some(e) = &self.write_error {
                return Err(e.clone());
            }
            self.written.lock().push(pod.clone());
            Ok(())
        }

        fn event(&self, _ds: &DaemonSet, warning: bool, reason: &str, message: String) {
            self.events
                .lock()
                .push((warning, reason.to_string(), message));
        }
    }

    impl Fake {
        fn deleted(&self) -> Vec<String> {
            self.deleted.lock().clone()
        }

        fn warnings(&self) -> Vec<(String, String)> {
            self.events
                .lock()
                .iter()
                .filter(|e| e.0)
                .map(|e| (e.1.clone(), e.2.clone()))
                .collect()
        }
    }

    async fn pass(
        st: &State,
        fx: &Fake,
        d: &DaemonSet,
        pods: &[Arc<Pod>],
        nodes: &BTreeMap<String, Arc<Node>>,
    ) -> Result<(), String> {
        reconcile(st, fx, KEY, Some(d), pods, nodes, now()).await
    }

    // ---- §4.2 maxUnavailableCounts ----

    #[test]
    fn max_unavailable_counts() {
        let ok = [
            // upstream's table (total 10)
            (Some("0"), 10, 1),
            (Some("0%"), 10, 1),
            (Some("10%"), 10, 1),
            (Some("20%"), 10, 2),
            (Some("90%"), 10, 9),
            (Some("95%"), 10, 10),
            (Some("100%"), 10, 10),
            // derived
            (None, 1, 1),
            (None, 10, 1),
            (None, 11, 2),
            (None, 20, 2),
            (None, 21, 3),
            (None, 0, 0),
            (Some("50%"), 3, 2),
            (Some("-1"), 3, -1),
            (Some("5"), 3, 5),
            (Some("+2"), 3, 2),
            (Some("00"), 3, 0),
            (Some("-10%"), 10, -1),
        ];
        for (ann, total, want) in ok {
            assert_eq!(max_unavailable(ann, total), Ok(want), "{ann:?} of {total}");
        }
        let bad = [
            (
                "abc",
                "invalid value for MaxUnavailable: invalid value for IntOrString: invalid type: string \"abc\" is not a percentage",
            ),
            (
                "10.5%",
                "invalid value for MaxUnavailable: invalid value for IntOrString: invalid value \"10.5%\": strconv.Atoi: parsing \"10.5\": invalid syntax",
            ),
            (" 5%", "invalid value \" 5%\""),
            ("0.0%", "invalid value \"0.0%\""),
            ("", "string \"\" is not a percentage"),
            (
                "99999999999",
                "invalid value \"99999999999\": value out of range",
            ),
        ];
        for (ann, want) in bad {
            let err = max_unavailable(Some(ann), 10).unwrap_err();
            assert!(err.contains(want), "{ann:?}: {err}");
        }
    }

    // ---- §4.4 util tests ----

    #[test]
    fn prerequisites() {
        let with = |strategy: Option<&str>, on_delete: bool| {
            let mut d = ds(strategy, None);
            if !on_delete {
                d.spec.as_mut().unwrap().update_strategy = None;
            }
            d
        };
        let cases = [
            ("satisfied-ota", with(Some("OTA"), true), true),
            (
                "satisfied-aru",
                with(Some("AdvancedRollingUpdate"), true),
                true,
            ),
            ("any case: ota", with(Some("ota"), true), true),
            (
                "any case: advancedrollingupdate",
                with(Some("advancedrollingupdate"), true),
                true,
            ),
            ("unsatisfied-other", with(Some("other"), true), false),
            ("Auto was removed in v1.7", with(Some("Auto"), true), false),
            ("unsatisfied-without-ann", with(None, true), false),
            (
                "unsatisfied-without-updateStrategy",
                with(Some("other"), false),
                false,
            ),
            ("OTA without OnDelete", with(Some("OTA"), false), false),
            ("unsatisfied-without-both", with(None, false), false),
        ];
        for (name, d, want) in cases {
            assert_eq!(check_prerequisites(&d), want, "{name}");
        }
        assert!(
            watched(&with(Some("Bogus"), true)),
            "unknown values are reported"
        );
        assert!(!watched(&with(Some("Bogus"), false)));
        assert!(!watched(&with(None, true)));
    }

    #[test]
    fn target_node_name() {
        let pod = |spec: Value| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
        };
        let fields = |values: Value| {
            json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                {"nodeSelectorTerms": [{"matchExpressions": [{"key": "x", "operator": "Exists"}]},
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": values}]}]}}}})
        };
        let cases = [
            ("no nodeName, no affinity", json!({"containers": []}), None),
            (
                "nodeName",
                json!({"containers": [], "nodeName": "node"}),
                Some("node"),
            ),
            ("affinity", fields(json!(["affinity"])), Some("affinity")),
            (
                "nodeName wins",
                {
                    let mut s = fields(json!(["affinity"]));
                    s["nodeName"] = json!("node");
                    s
                },
                Some("node"),
            ),
            ("two values", fields(json!(["a", "b"])), None),
            ("no values", fields(json!([])), None),
            (
                "affinity nil",
                json!({"containers": [], "affinity": {}}),
                None,
            ),
            (
                "nodeAffinity without required",
                json!({"containers": [], "affinity": {"nodeAffinity": {}}}),
                None,
            ),
            (
                "empty terms",
                json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}}),
                None,
            ),
            (
                "NotIn is not a pin",
                json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                    {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n"]}]}]}}}}),
                None,
            ),
        ];
        for (name, spec, want) in cases {
            assert_eq!(target_node(&pod(spec)).as_deref(), want, "{name}");
        }
    }

    #[test]
    fn latest_by_hash_or_generation() {
        let d = aru(None);
        let rev = Revision::of(&d);
        assert_eq!(rev.generation, Some(2));
        let labelled = |hash: &str, generation: Option<&str>| -> Pod {
            let mut labels = json!({HASH_LABEL: hash});
            if let Some(g) = generation {
                labels[GENERATION_LABEL] = json!(g);
            }
            serde_json::from_value(json!({"metadata": {"name": "p", "labels": labels}})).unwrap()
        };
        let h = rev.hash.as_str();
        let cases = [
            ("hash matches", rev.clone(), labelled(h, Some("1")), true),
            (
                "generation matches",
                rev.clone(),
                labelled("other", Some("2")),
                true,
            ),
            ("neither", rev.clone(), labelled("other", Some("1")), false),
            (
                "no generation label",
                rev.clone(),
                labelled("other", None),
                false,
            ),
            (
                "empty hash never matches",
                Revision {
                    hash: String::new(),
                    generation: None,
                },
                labelled("", None),
                false,
            ),
            (
                "generation compared as a number's decimal",
                rev.clone(),
                labelled("other", Some("02")),
                false,
            ),
        ];
        for (name, rev, pod, want) in cases {
            assert_eq!(rev.is_latest(&pod), want, "{name}");
        }
        // The annotation missing or not a number: only the hash counts.
        let mut d2 = d.clone();
        d2.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(TEMPLATE_GENERATION.into(), "invalid".into());
        assert_eq!(Revision::of(&d2).generation, None);
        d2.metadata
            .annotations
            .as_mut()
            .unwrap()
            .remove(TEMPLATE_GENERATION);
        assert_eq!(Revision::of(&d2).generation, None);
        // The hash is the DaemonSet controller's: template plus collision count.
        let mut d3 = d.clone();
        d3.status = Some(k8s_openapi::api::apps::v1::DaemonSetStatus {
            collision_count: Some(1),
            ..Default::default()
        });
        assert_ne!(Revision::of(&d3).hash, rev.hash);
        assert_eq!(
            Revision::of(&d3).hash,
            compute_hash(d3.spec.as_ref().map(|s| &s.template), Some(1))
        );
    }

    #[test]
    fn find_updated_pods_on_node() {
        let d = aru(None);
        let rev = Revision::of(&d);
        let other = Revision {
            hash: "new-hash".into(),
            generation: None,
        };
        let a = new(&d, "a", "n", true);
        let b = old(&d, "b", "n");
        let a2 = new(&d, "a2", "n", true);
        let gone = pod_full(&d, "gone", Some("n"), false, None, true);
        let names = |r: Option<(Option<&Pod>, Option<&Pod>)>| {
            r.map(|(n, o)| (n.map(|p| p.name_any()), o.map(|p| p.name_any())))
        };
        let s = |x: &str| Some(x.to_string());
        let cases = [
            (
                "one new, one old (both old for new-hash)",
                &other,
                vec![a.clone(), b.clone()],
                None,
            ),
            (
                "multiple new (both old for new-hash)",
                &other,
                vec![a.clone(), a2.clone()],
                None,
            ),
            ("no pods", &rev, vec![], Some((None, None))),
            (
                "one new, one old",
                &rev,
                vec![a.clone(), b.clone()],
                Some((s("a"), s("b"))),
            ),
            ("two new", &rev, vec![a.clone(), a2.clone()], None),
            (
                "terminating pods are ignored",
                &rev,
                vec![gone.clone(), b.clone()],
                Some((None, s("b"))),
            ),
            (
                "only terminating",
                &rev,
                vec![gone.clone()],
                Some((None, None)),
            ),
        ];
        for (name, rev, pods, want) in cases {
            assert_eq!(names(split_pods(rev, &pods)), want, "{name}");
        }
    }

    // ---- §4.1(a) TestDaemonsetPodUpdater, multi-round ----

    /// Upstream's harness: each round plans from the pods left (deleted pods are removed and
    /// not re-created), until a round deletes nothing; deletions per round.
    fn rounds(
        d: &DaemonSet,
        pods: &mut BTreeMap<String, Vec<Arc<Pod>>>,
        ready: &BTreeMap<String, bool>,
    ) -> Vec<usize> {
        let rev = Revision::of(d);
        let ann = d.annotations().get(MAX_UNAVAILABLE_ANNOTATION).cloned();
        let mut trace = Vec::new();
        for _ in 0..10 {
            let states: BTreeMap<String, NodeState> = pods
                .iter()
                .filter(|(_, p)| !p.is_empty())
                .map(|(n, p)| {
                    (
                        n.clone(),
                        NodeState {
                            ready: ready.get(n).copied(),
                            pods: p.clone(),
                        },
                    )
                })
                .collect();
            let max = max_unavailable(ann.as_deref(), states.len()).unwrap();
            let delete = plan_deletions(&rev, &states, max, 0, now()).unwrap();
            if delete.is_empty() {
                break;
            }
            for list in pods.values_mut() {
                list.retain(|p| !delete.contains(&p.name_any()));
            }
            trace.push(delete.len());
        }
        trace
    }

    #[test]
    fn daemonset_pod_updater_rounds() {
        // (max, ready of 3, phase 1 per round, phase 2 per round after turning all Ready)
        let cases: [(&str, usize, &[usize], &[usize]); 9] = [
            ("1", 3, &[1, 1, 1], &[]),
            ("2", 3, &[2, 1], &[]),
            ("50%", 3, &[2, 1], &[]),
            ("1", 2, &[1, 1], &[1]),
            ("1", 1, &[1], &[1, 1]),
            ("2", 1, &[1], &[2]),
            ("50%", 1, &[1], &[1, 1]),
            ("2", 2, &[2], &[1]),
            ("50%", 2, &[2], &[1]),
        ];
        for (max, ready_n, phase1, phase2) in cases {
            let d = aru(Some(max));
            let mut pods = BTreeMap::new();
            let mut ready = BTreeMap::new();
            for i in 0..3 {
                let (name, r) = if i < ready_n {
                    (format!("node-ready-{i}"), true)
                } else {
                    (format!("node-not-ready-{i}"), false)
                };
                pods.insert(name.clone(), vec![old(&d, &format!("pod-{i}"), &name)]);
                ready.insert(name, r);
            }
            let got1 = rounds(&d, &mut pods, &ready);
            assert_eq!(got1, phase1, "{max} with {ready_n} ready: phase 1");
            assert_eq!(got1.iter().sum::<usize>(), ready_n);
            let left: Vec<&String> = pods
                .iter()
                .filter(|(_, p)| !p.is_empty())
                .map(|(n, _)| n)
                .collect();
            assert!(
                left.iter().all(|n| n.starts_with("node-not-ready")),
                "{left:?}"
            );
            for r in ready.values_mut() {
                *r = true;
            }
            let got2 = rounds(&d, &mut pods, &ready);
            assert_eq!(got2, phase2, "{max} with {ready_n} ready: phase 2");
            assert_eq!(got2.iter().sum::<usize>(), 3 - ready_n);
        }
    }

    // ---- §4.8 D1–D16 ----

    struct Row {
        id: &'static str,
        ds: DaemonSet,
        pods: Vec<Arc<Pod>>,
        nodes: BTreeMap<String, Arc<Node>>,
        want: usize,
        must: Vec<&'static str>,
        never: Vec<&'static str>,
        err: Option<&'static str>,
        warning: Option<&'static str>,
    }

    fn row(
        id: &'static str,
        d: DaemonSet,
        pods: Vec<Arc<Pod>>,
        nodes: BTreeMap<String, Arc<Node>>,
        want: usize,
    ) -> Row {
        Row {
            id,
            ds: d,
            pods,
            nodes,
            want,
            must: vec![],
            never: vec![],
            err: None,
            warning: None,
        }
    }

    /// Nodes a, b, c Ready; b and c run old available pods; `a` gives a's pods.
    fn abc(d: &DaemonSet, a: Vec<Arc<Pod>>) -> (Vec<Arc<Pod>>, BTreeMap<String, Arc<Node>>) {
        let mut pods = a;
        pods.push(old(d, "b-old", "b"));
        pods.push(old(d, "c-old", "c"));
        (pods, nodes(&[("a", true), ("b", true), ("c", true)]))
    }

    fn many(
        d: &DaemonSet,
        n: usize,
        ready: impl Fn(usize) -> bool,
        pod: impl Fn(&DaemonSet, &str, &str) -> Arc<Pod>,
    ) -> (Vec<Arc<Pod>>, BTreeMap<String, Arc<Node>>) {
        let mut pods = Vec::new();
        let mut ns = BTreeMap::new();
        for i in 0..n {
            let name = format!("n{i:03}");
            pods.push(pod(d, &format!("p{i:03}"), &name));
            ns.insert(name.clone(), node_obj(&name, ready(i), json!({})));
        }
        (pods, ns)
    }

    fn min_ready_ds(max: &str, secs: i32) -> DaemonSet {
        let mut d = aru(Some(max));
        d.spec.as_mut().unwrap().min_ready_seconds = Some(secs);
        d
    }

    fn d_rows() -> Vec<Row> {
        let mut rows = Vec::new();
        let d = aru(None);
        let (p, n) = many(&d, 10, |_| true, old);
        rows.push(row("D1 10 Ready, default 10%", d, p, n, 1));

        let d = aru(Some("50%"));
        let (p, n) = many(&d, 10, |i| i < 5, old);
        let mut r = row("D2 5 of 10 Ready, 50% of all 10", d, p, n, 5);
        r.must = vec!["p000", "p001", "p002", "p003", "p004"];
        rows.push(r);

        let d = aru(Some("1"));
        let (p, n) = abc(&d, vec![new(&d, "a-new", "a", false)]);
        rows.push(row("D3 an unready new pod takes the budget", d, p, n, 0));

        let d = aru(Some("1"));
        let (p, n) = abc(&d, vec![old_unready(&d, "a-old", "a")]);
        let mut r = row(
            "D4 an unready old pod is replaced beyond the budget",
            d,
            p,
            n,
            2,
        );
        r.must = vec!["a-old"];
        rows.push(r);

        for (max, want) in [("1", 0), ("2", 1)] {
            let d = aru(Some(max));
            let (p, n) = abc(&d, vec![old(&d, "a-old", "a"), new(&d, "a-new", "a", true)]);
            let mut r = row(
                "D5 old and new on one node count as unavailable",
                d,
                p,
                n,
                want,
            );
            r.never = vec!["a-old", "a-new"];
            rows.push(r);
        }

        let d = aru(Some("2"));
        let (p, n) = abc(&d, vec![old(&d, "a-old1", "a"), old(&d, "a-old2", "a")]);
        let mut r = row("D6 two old pods: unavailable, untouched", d, p, n, 1);
        r.never = vec!["a-old1", "a-old2"];
        rows.push(r);

        for (max, want) in [("1", 0), ("2", 1)] {
            let d = aru(Some(max));
            let gone = pod_full(&d, "a-gone", Some("a"), false, Some(ago(3600)), true);
            let (p, n) = abc(&d, vec![gone]);
            let mut r = row(
                "D7 a terminating pod leaves its node unavailable",
                d,
                p,
                n,
                want,
            );
            r.never = vec!["a-gone"];
            rows.push(r);
        }

        for (since, want) in [(5, 0), (100, 1)] {
            let d = min_ready_ds("1", 30);
            let a = pod_full(&d, "a-new", Some("a"), true, Some(ago(since)), false);
            let (p, n) = abc(&d, vec![a]);
            rows.push(row("D8 minReadySeconds 30", d, p, n, want));
        }

        for (max, shown) in [("abc", "\"abc\""), ("10.5%", "\"10.5%\"")] {
            let d = aru(Some(max));
            let (p, n) = abc(&d, vec![old(&d, "a-old", "a")]);
            let mut r = row("D9 malformed max-unavailable", d, p, n, 0);
            r.warning = Some(shown);
            rows.push(r);
        }

        let d = aru(Some("-1"));
        let (p, n) = abc(&d, vec![old_unready(&d, "a-old", "a")]);
        let mut r = row("D10 negative budget: only unavailable old pods", d, p, n, 1);
        r.must = vec!["a-old"];
        rows.push(r);

        let d = aru(Some("5"));
        let (p, n) = abc(&d, vec![old(&d, "a-old", "a")]);
        rows.push(row("D11 budget above the node count", d, p, n, 3));

        let d = aru(Some("1"));
        let (mut p, n) = abc(&d, vec![old_unready(&d, "a-old", "a")]);
        p.push(old(&d, "ghost-old", "ghost"));
        let mut r = row("D12 a pod on an unknown node fails the pass", d, p, n, 0);
        r.err = Some("couldn't check node \"ghost\" ready status");
        rows.push(r);

        let d = aru(Some("100%"));
        let mut p = vec![pod_full(&d, "nowhere", None, false, Some(ago(3600)), false)];
        p.push(old(&d, "b-old", "b"));
        let n = nodes(&[("b", true)]);
        let mut r = row("D14 a pod without a node is ignored", d, p, n, 1);
        r.never = vec!["nowhere"];
        rows.push(r);

        let d = aru(Some("50%"));
        let mut p = vec![pod_full(&d, "nowhere", None, false, Some(ago(3600)), false)];
        p.push(old(&d, "b-old", "b"));
        p.push(old(&d, "c-old", "c"));
        let n = nodes(&[("b", true), ("c", true)]);
        rows.push(row("D14 … and not in the total (50% of 2)", d, p, n, 1));

        let d = aru(Some("1"));
        let (p, n) = many(&d, 300, |_| true, old_unready);
        rows.push(row("D15 at most 250 per pass", d, p, n, 250));

        let d = aru(Some("100%"));
        let (p, n) = many(&d, 5, |_| false, old);
        rows.push(row("D16 all nodes NotReady", d, p, n, 0));
        rows
    }

    #[tokio::test]
    async fn advanced_rolling_update_rows() {
        for r in d_rows() {
            let st = State::default();
            let fx = Fake::default();
            let res = pass(&st, &fx, &r.ds, &r.pods, &r.nodes).await;
            let deleted = fx.deleted();
            match r.err {
                Some(e) => assert!(
                    res.as_ref().is_err_and(|m| m.contains(e)),
                    "{}: {res:?}",
                    r.id
                ),
                None => assert_eq!(res, Ok(()), "{}", r.id),
            }
            assert_eq!(deleted.len(), r.want, "{}: {deleted:?}", r.id);
            for m in &r.must {
                assert!(
                    deleted.iter().any(|d| d == m),
                    "{}: {m} not in {deleted:?}",
                    r.id
                );
            }
            for m in &r.never {
                assert!(
                    !deleted.iter().any(|d| d == m),
                    "{}: {m} in {deleted:?}",
                    r.id
                );
            }
            match r.warning {
                Some(w) => {
                    let warnings = fx.warnings();
                    assert_eq!(warnings.len(), 1, "{}", r.id);
                    assert_eq!(warnings[0].0, REASON_INVALID_MAX_UNAVAILABLE);
                    assert!(
                        warnings[0].1.starts_with(
                            "couldn't get maxUnavailable number for daemon set \"test-ds\": invalid value for MaxUnavailable: "
                        ) && warnings[0].1.contains(w),
                        "{}: {warnings:?}",
                        r.id
                    );
                }
                None => {
                    assert!(fx.warnings().is_empty(), "{}", r.id);
                    let events = fx.events.lock().clone();
                    let want: Vec<(bool, String, String)> = deleted
                        .iter()
                        .map(|p| {
                            (
                                false,
                                "SuccessfulDelete".to_string(),
                                format!("Deleted pod: {p}"),
                            )
                        })
                        .collect();
                    assert_eq!(events, want, "{}", r.id);
                }
            }
            // Expectations: one per deletion asked for (none: satisfied at once).
            assert_eq!(st.expectations.satisfied(KEY), r.want == 0, "{}", r.id);
        }
    }

    #[tokio::test]
    async fn unsatisfied_expectations_do_nothing() {
        // D13 and upstream's "expectations not satisfied" row.
        for strategy in [OTA, ADVANCED_ROLLING_UPDATE] {
            let d = ds(Some(strategy), Some("100%"));
            let (p, n) = abc(&d, vec![old(&d, "a-old", "a")]);
            let st = State::default();
            st.expectations.set(KEY, 0, 1);
            let fx = Fake::default();
            assert_eq!(pass(&st, &fx, &d, &p, &n).await, Ok(()));
            assert!(
                fx.deleted().is_empty() && fx.written.lock().is_empty(),
                "{strategy}"
            );
        }
    }

    #[tokio::test]
    async fn expectations_follow_upstream() {
        let d = aru(Some("1"));
        let (p, n) = abc(&d, vec![old_unready(&d, "a-old", "a")]);
        let st = State::default();
        let fx = Fake::default();
        // A pass sets del = n: a-old (unavailable) and one candidate.
        pass(&st, &fx, &d, &p, &n).await.unwrap();
        assert_eq!(fx.deleted(), ["a-old", "b-old"]);
        assert!(!st.expectations.satisfied(KEY));
        // Until both deletions are observed, passes do nothing.
        pass(&st, &fx, &d, &p, &n).await.unwrap();
        st.expectations.deletion_observed(KEY, None);
        pass(&st, &fx, &d, &p, &n).await.unwrap();
        assert_eq!(fx.deleted().len(), 2);
        st.expectations.deletion_observed(KEY, None);
        assert!(st.expectations.satisfied(KEY));
        // A pass with nothing to delete still sets (zero) expectations: satisfied.
        let done = vec![
            new(&d, "a-new", "a", true),
            new(&d, "b-new", "b", true),
            new(&d, "c-new", "c", true),
        ];
        pass(&st, &fx, &d, &done, &n).await.unwrap();
        assert!(st.expectations.satisfied(KEY));
        assert_eq!(fx.deleted().len(), 2);
        // A deleted DaemonSet drops its expectations.
        st.expectations.set(KEY, 0, 3);
        reconcile(&st, &fx, KEY, None, &[], &n, now())
            .await
            .unwrap();
        assert!(st.expectations.satisfied(KEY));
    }

    #[tokio::test]
    async fn failed_deletes_lower_expectations() {
        let d = aru(Some("1"));
        let mut p = vec![old_unready(&d, "a-old", "a"), old_unready(&d, "b-old", "b")];
        p.push(old_unready(&d, "c-old", "c"));
        let n = nodes(&[("a", true), ("b", true), ("c", true)]);
        let st = State::default();
        let fx = Fake {
            delete_errors: [
                ("b-old".to_string(), ApiError::Other("boom".into())),
                ("c-old".to_string(), ApiError::NotFound),
            ]
            .into(),
            ..Default::default()
        };
        let res = pass(&st, &fx, &d, &p, &n).await;
        assert_eq!(res, Err("unable to delete pods: boom".to_string()));
        assert_eq!(fx.deleted(), ["a-old"]);
        let events = fx.events.lock().clone();
        assert!(events.contains(&(
            false,
            "SuccessfulDelete".into(),
            "Deleted pod: a-old".into()
        )));
        assert!(events.contains(&(true, "FailedDelete".into(), "Error deleting: boom".into())));
        assert_eq!(
            events.len(),
            2,
            "no event for a pod already gone: {events:?}"
        );
        // del was 3; the failure and the NotFound lowered it to 1: a-old's.
        assert!(!st.expectations.satisfied(KEY));
        st.expectations.deletion_observed(KEY, None);
        assert!(st.expectations.satisfied(KEY));
    }

    // ---- §4.3 Reconcile ----

    #[tokio::test]
    async fn reconcile_rows() {
        let n = nodes(&[("a", true), ("b", true), ("c", true)]);
        // (name, ds, deletions, status writes, warning)
        let mut deleting = aru(Some("100%"));
        deleting.metadata.deletion_timestamp = Some(Time(ago(1)));
        deleting.metadata.finalizers = Some(vec!["x".into()]);
        let mut rolling = aru(Some("100%"));
        rolling.spec.as_mut().unwrap().update_strategy = None;
        let cases = [
            ("with deletion timestamp", deleting, 0, 0, None),
            (
                "without update annotation",
                ds(None, Some("100%")),
                0,
                0,
                None,
            ),
            ("not OnDelete (any more)", rolling, 0, 0, None),
            ("OTA", ds(Some("OTA"), Some("100%")), 0, 3, None),
            ("AdvancedRollingUpdate", aru(Some("100%")), 3, 0, None),
            (
                "advancedrollingupdate",
                ds(Some("advancedrollingupdate"), Some("100%")),
                3,
                0,
                None,
            ),
            (
                "unknown update strategy",
                ds(Some("UnknownStrategy"), Some("100%")),
                0,
                0,
                Some("unknown update type UnknownStrategy"),
            ),
            (
                "Auto is unknown",
                ds(Some("Auto"), Some("100%")),
                0,
                0,
                Some("unknown update type Auto"),
            ),
        ];
        for (name, d, deletes, writes, warning) in cases {
            let (p, _) = abc(&d, vec![old(&d, "a-old", "a")]);
            let st = State::default();
            let fx = Fake::default();
            assert_eq!(pass(&st, &fx, &d, &p, &n).await, Ok(()), "{name}");
            assert_eq!(fx.deleted().len(), deletes, "{name}");
            assert_eq!(fx.written.lock().len(), writes, "{name}");
            let warnings = fx.warnings();
            match warning {
                Some(w) => {
                    assert_eq!(warnings.len(), 1, "{name}");
                    assert_eq!(warnings[0].0, REASON_UNKNOWN_STRATEGY);
                    assert!(warnings[0].1.starts_with(w), "{name}: {warnings:?}");
                }
                None => assert!(warnings.is_empty(), "{name}: {warnings:?}"),
            }
        }
        // Not found: no error.
        let st = State::default();
        let fx = Fake::default();
        assert_eq!(reconcile(&st, &fx, KEY, None, &[], &n, now()).await, Ok(()));
    }

    #[tokio::test]
    async fn warnings_are_not_repeated() {
        let n = nodes(&[("a", true)]);
        let st = State::default();
        let fx = Fake::default();
        let bogus = ds(Some("Bogus"), None);
        for _ in 0..3 {
            pass(&st, &fx, &bogus, &[], &n).await.unwrap();
        }
        assert_eq!(fx.warnings().len(), 1);
        pass(&st, &fx, &ds(Some("Other"), None), &[], &n)
            .await
            .unwrap();
        assert_eq!(fx.warnings().len(), 2, "a new value is reported");
        let bad = aru(Some("abc"));
        pass(&st, &fx, &bad, &[], &n).await.unwrap();
        pass(&st, &fx, &bad, &[], &n).await.unwrap();
        assert_eq!(fx.warnings().len(), 3);
        // Fixed, then broken the same way again: reported again.
        pass(&st, &fx, &aru(Some("1")), &[], &n).await.unwrap();
        pass(&st, &fx, &bad, &[], &n).await.unwrap();
        assert_eq!(fx.warnings().len(), 4);
    }

    // ---- nodes the rolling update sees ----

    #[tokio::test]
    async fn ready_nodes_without_a_pod_use_the_budget() {
        let d = aru(Some("1"));
        let pods = vec![old(&d, "b-old", "b"), old(&d, "c-old", "c")];
        // a is Ready and the DaemonSet should run there: its pod is being replaced.
        let n = nodes(&[("a", true), ("b", true), ("c", true)]);
        let (states, total) = node_states(&d, &pods, &n);
        assert_eq!(total, 2, "only nodes with pods are in the total");
        assert!(states["a"].pods.is_empty());
        let fx = Fake::default();
        pass(&State::default(), &fx, &d, &pods, &n).await.unwrap();
        assert!(fx.deleted().is_empty());
        // NotReady: not counted.
        let n = nodes(&[("a", false), ("b", true), ("c", true)]);
        let fx = Fake::default();
        pass(&State::default(), &fx, &d, &pods, &n).await.unwrap();
        assert_eq!(fx.deleted(), ["b-old"]);
        // Not selected by the template's nodeSelector: not counted.
        let mut sel = aru(Some("1"));
        sel.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .node_selector = Some([("zone".to_string(), "edge".to_string())].into());
        let pods = vec![old(&sel, "b-old", "b"), old(&sel, "c-old", "c")];
        let mut n = BTreeMap::new();
        n.insert("a".to_string(), node_obj("a", true, json!({})));
        for name in ["b", "c"] {
            n.insert(
                name.to_string(),
                node_obj(name, true, json!({"zone": "edge"})),
            );
        }
        let fx = Fake::default();
        pass(&State::default(), &fx, &sel, &pods, &n).await.unwrap();
        assert_eq!(fx.deleted(), ["b-old"]);
    }

    /// A live cluster in miniature: deleted pods vanish once the deletion is observed, the
    /// DaemonSet controller re-creates them (not Ready), then they turn Ready; the updater
    /// runs between every step. Returns the most nodes ever without an available pod.
    async fn live(
        d: &DaemonSet,
        ready: &mut BTreeMap<String, bool>,
        st: &State,
        fx: &Fake,
        slots: &mut BTreeMap<String, Option<Arc<Pod>>>,
    ) -> usize {
        let mut worst = 0;
        let mut serial = 0;
        for _ in 0..30 {
            for step in 0..4 {
                let pods: Vec<Arc<Pod>> = slots.values().flatten().cloned().collect();
                let n: BTreeMap<String, Arc<Node>> = ready
                    .iter()
                    .map(|(k, r)| (k.clone(), node_obj(k, *r, json!({}))))
                    .collect();
                let before = fx.deleted().len();
                let _ = reconcile(st, fx, KEY, Some(d), &pods, &n, now()).await;
                for name in fx.deleted()[before..].to_vec() {
                    for (node, slot) in slots.iter_mut() {
                        if slot.as_ref().is_some_and(|p| p.name_any() == name) {
                            assert!(ready[node], "deleted {name} on NotReady {node}");
                            *slot = None;
                            st.expectations.deletion_observed(KEY, None);
                        }
                    }
                }
                match step {
                    2 => {
                        for (node, slot) in slots.iter_mut() {
                            if slot.is_none() {
                                serial += 1;
                                *slot = Some(new(d, &format!("new-{serial}"), node, false));
                            }
                        }
                    }
                    3 => {
                        for (node, slot) in slots.iter_mut() {
                            if let Some(p) = slot.clone().filter(|p| !pods::is_ready(p)) {
                                *slot = Some(new(d, &p.name_any(), node, true));
                            }
                        }
                    }
                    _ => {}
                }
                let down = slots
                    .iter()
                    .filter(|(node, _)| ready[*node])
                    .filter(|(_, s)| !s.as_ref().is_some_and(|p| pods::is_ready(p)))
                    .count();
                worst = worst.max(down);
            }
        }
        worst
    }

    #[tokio::test]
    async fn live_rollout_keeps_the_budget_and_resumes_on_ready() {
        for (max, limit) in [("1", 1), ("2", 2)] {
            let d = aru(Some(max));
            let mut slots: BTreeMap<String, Option<Arc<Pod>>> = BTreeMap::new();
            let mut ready = BTreeMap::new();
            for i in 0..4 {
                let node = format!("node-{i}");
                slots.insert(node.clone(), Some(old(&d, &format!("old-{i}"), &node)));
                ready.insert(node, i != 3);
            }
            let st = State::default();
            let fx = Fake::default();
            let worst = live(&d, &mut ready, &st, &fx, &mut slots).await;
            assert!(
                worst <= limit,
                "{max}: {worst} Ready nodes without an available pod"
            );
            let rev = Revision::of(&d);
            for (node, slot) in &slots {
                let latest = slot.as_ref().is_some_and(|p| rev.is_latest(p));
                assert_eq!(latest, node != "node-3", "{max}: {node}");
            }
            assert_eq!(fx.deleted().len(), 3);
            // The node comes back: its pod is replaced too.
            ready.insert("node-3".into(), true);
            let worst = live(&d, &mut ready, &st, &fx, &mut slots).await;
            assert!(worst <= limit);
            assert!(slots.values().all(|s| {
                s.as_ref()
                    .is_some_and(|p| rev.is_latest(p) && pods::is_ready(p))
            }));
            assert_eq!(fx.deleted().len(), 4);
        }
    }

    // ---- OTA: §4.8 O1–O6 ----

    fn condition(status: &PodStatus) -> PodCondition {
        status
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == POD_NEED_UPGRADE)
            .unwrap()
            .clone()
    }

    fn with_condition(p: &Pod, status: &str, message: &str, since: DateTime<Utc>) -> Arc<Pod> {
        let mut p = p.clone();
        p.status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()
            .push(PodCondition {
                type_: POD_NEED_UPGRADE.into(),
                status: status.into(),
                message: Some(message.into()),
                last_transition_time: Some(Time(since)),
                ..Default::default()
            });
        Arc::new(p)
    }

    #[test]
    fn ota_condition_rows() {
        let d = ds(Some(OTA), None);
        let rev = Revision::of(&d);
        let msg = format!("controllerrevision: {}", rev.hash);
        let latest = new(&d, "p", "n", true);
        let mut by_generation = (*old(&d, "p", "n")).clone();
        by_generation
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(GENERATION_LABEL.into(), "2".into());
        let stale = old(&d, "p", "n");
        // O1–O3
        for (name, pod, want) in [
            ("O1 hash matches", latest.clone(), "False"),
            ("O2 generation matches", Arc::new(by_generation), "False"),
            ("O3 neither", stale.clone(), "True"),
        ] {
            let c = condition(&upgrade_status(&rev, &pod, now()).unwrap());
            assert_eq!(c.status, want, "{name}");
            assert_eq!(c.message.as_deref(), Some(msg.as_str()), "{name}");
            assert_eq!(c.reason, None, "{name}");
            assert_eq!(c.last_transition_time, Some(Time(now())), "{name}");
            let others = upgrade_status(&rev, &pod, now())
                .unwrap()
                .conditions
                .unwrap();
            assert!(
                others.iter().any(|c| c.type_ == "Ready"),
                "{name}: other conditions kept"
            );
        }
        // O4: already so: nothing to write.
        let done = with_condition(&stale, "True", &msg, ago(50));
        assert_eq!(upgrade_status(&rev, &done, now()), None);
        // O5: still True under a newer revision: message updated, transition time kept.
        let before = with_condition(&stale, "True", "controllerrevision: older", ago(50));
        let c = condition(&upgrade_status(&rev, &before, now()).unwrap());
        assert_eq!(
            (c.status.as_str(), c.message.as_deref()),
            ("True", Some(msg.as_str()))
        );
        assert_eq!(c.last_transition_time, Some(Time(ago(50))));
        // True → False: a transition now.
        let upgraded = with_condition(&latest, "True", "controllerrevision: older", ago(50));
        let c = condition(&upgrade_status(&rev, &upgraded, now()).unwrap());
        assert_eq!(c.status, "False");
        assert_eq!(c.last_transition_time, Some(Time(now())));
        // A reason or probe time set by someone else is a change.
        let mut odd = (*done).clone();
        let conds = odd.status.as_mut().unwrap().conditions.as_mut().unwrap();
        conds.last_mut().unwrap().reason = Some("Manual".into());
        assert!(upgrade_status(&rev, &odd, now()).is_some());
        let mut empty = (*done).clone();
        let conds = empty.status.as_mut().unwrap().conditions.as_mut().unwrap();
        conds.last_mut().unwrap().reason = Some(String::new());
        assert_eq!(
            upgrade_status(&rev, &empty, now()),
            None,
            "empty reason is no reason"
        );
    }

    #[tokio::test]
    async fn ota_marks_every_owned_pod_and_never_deletes() {
        let d = ds(Some("ota"), None);
        let rev = Revision::of(&d);
        let msg = format!("controllerrevision: {}", rev.hash);
        let pods = vec![
            new(&d, "a-new", "a", true),
            old(&d, "b-old", "b"),
            // O6: a NotReady node, an unknown node, a terminating pod.
            old(&d, "c-old", "c"),
            old(&d, "d-old", "ghost"),
            pod_full(&d, "e-gone", Some("a"), false, None, true),
            // O4: already right.
            with_condition(&old(&d, "f-old", "a"), "True", &msg, ago(10)),
            // Not bound yet: marked once it is.
            pod_full(&d, "g-pending", None, false, None, false),
        ];
        let n = nodes(&[("a", true), ("b", true), ("c", false)]);
        let st = State::default();
        let fx = Fake::default();
        assert_eq!(pass(&st, &fx, &d, &pods, &n).await, Ok(()));
        assert!(fx.deleted().is_empty());
        assert!(fx.events.lock().is_empty());
        let written = fx.written.lock().clone();
        let got: Vec<(String, String)> = written
            .iter()
            .map(|p| (p.name_any(), condition(p.status.as_ref().unwrap()).status))
            .collect();
        let want = [
            ("a-new", "False"),
            ("b-old", "True"),
            ("c-old", "True"),
            ("d-old", "True"),
            ("e-gone", "True"),
        ];
        assert_eq!(got, want.map(|(a, b)| (a.to_string(), b.to_string())));
        // Written with the resourceVersion read.
        assert!(
            written
                .iter()
                .all(|p| p.resource_version().as_deref() == Some("7"))
        );
        assert!(st.expectations.satisfied(KEY), "OTA sets no expectations");
    }

    #[tokio::test]
    async fn ota_write_failures_retry() {
        let d = ds(Some(OTA), None);
        let pods = vec![old(&d, "a-old", "a"), old(&d, "b-old", "b")];
        let n = nodes(&[]);
        let fx = Fake {
            write_error: Some(ApiError::Other(
                "Operation cannot be fulfilled: the object has been modified".into(),
            )),
            ..Default::default()
        };
        let res = pass(&State::default(), &fx, &d, &pods, &n).await;
        assert!(
            res.as_ref()
                .is_err_and(|e| e.contains("a-old") && e.contains("modified")),
            "{res:?}"
        );
        // A pod deleted meanwhile is skipped.
        let fx = Fake {
            write_error: Some(ApiError::NotFound),
            ..Default::default()
        };
        assert_eq!(pass(&State::default(), &fx, &d, &pods, &n).await, Ok(()));
    }

    #[test]
    fn what_wakes_a_daemonset() {
        let d = ds(Some(OTA), None);
        let base = old(&d, "p", "a");
        let edit = |f: &dyn Fn(&mut Pod)| {
            let mut p = (*base).clone();
            f(&mut p);
            p
        };
        let unready = edit(&|p| {
            p.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "False".into();
        });
        let deleting = edit(&|p| p.metadata.deletion_timestamp = Some(Time(now())));
        let unbound = edit(&|p| p.spec.as_mut().unwrap().node_name = None);
        let marked = (*with_condition(&base, "True", "controllerrevision: x", now())).clone();
        let relabelled = edit(&|p| {
            p.metadata
                .labels
                .as_mut()
                .unwrap()
                .insert("x".into(), "y".into());
        });
        let cases = [
            ("readiness lost", &*base, &unready, true),
            ("readiness gained", &unready, &*base, true),
            ("deletion started", &*base, &deleting, true),
            ("bound to its node", &unbound, &*base, true),
            ("condition dropped by another writer", &marked, &*base, true),
            ("condition written", &*base, &marked, true),
            ("labels only", &*base, &relabelled, false),
            ("nothing", &*base, &*base, false),
        ];
        for (name, a, b, want) in cases {
            assert_eq!(pod_change_matters(a, b), want, "{name}");
        }
        let (up, down) = (
            node_obj("a", true, json!({})),
            node_obj("a", false, json!({})),
        );
        assert!(turned_ready(Some(&down), &up));
        assert!(turned_ready(None, &up), "a node that appears Ready");
        assert!(!turned_ready(Some(&up), &up));
        assert!(!turned_ready(Some(&up), &down));
        assert!(!turned_ready(None, &down));
    }

    #[test]
    fn resolve_controller_ref() {
        let d = Arc::new(aru(None));
        let get = |key: &str| (key == KEY).then(|| d.clone());
        let p = old(&d, "p", "a");
        assert_eq!(owner(&p, get).map(|o| o.0).as_deref(), Some(KEY));
        let with_ref = |kind: &str, uid: &str, controller: bool| {
            let mut p = (*p).clone();
            let r = &mut p.metadata.owner_references.as_mut().unwrap()[0];
            r.kind = kind.into();
            r.uid = uid.into();
            r.controller = Some(controller);
            p
        };
        assert!(
            owner(&with_ref("Deployment", "ds-uid", true), get).is_none(),
            "other kinds"
        );
        assert!(
            owner(&with_ref("DaemonSet", "other-uid", true), get).is_none(),
            "UID mismatch"
        );
        assert!(
            owner(&with_ref("DaemonSet", "ds-uid", false), get).is_none(),
            "not the controller"
        );
        let plain = Arc::new(ds(None, None));
        assert!(
            owner(&p, |_| Some(plain.clone())).is_none(),
            "not annotated"
        );
        assert!(owner(&p, |_| None).is_none(), "DaemonSet gone");
    }

    #[tokio::test]
    async fn resyncs_periodically() {
        let q = Queue::new();
        let stop = CancellationToken::new();
        let task = {
            let (q, stop) = (q.clone(), stop.clone());
            tokio::spawn(async move {
                resync(
                    &q,
                    Duration::from_millis(30),
                    || vec![KEY.to_string()],
                    stop,
                )
                .await
            })
        };
        assert!(q.is_empty());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(q.len(), 1, "queued (once: keys are deduplicated)");
        stop.cancel();
        task.await.unwrap();
    }

    #[test]
    fn template_pod_gets_daemon_tolerations() {
        let d = aru(None);
        let tolerated: Node = serde_json::from_value(json!({"metadata": {"name": "n"},
            "spec": {"taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]}}))
        .unwrap();
        assert!(node_should_run(&template_pod(&d), &tolerated).0);
    }
}
