//! The default scheduler (kube-scheduler's default profile, reduced): pods without a node are
//! queued, filtered against every node (NodeUnschedulable, readiness, TaintToleration,
//! NodeAffinity, NodePorts, NodeResourcesFit), scored by least allocated, assumed into an
//! in-memory cache and bound. Unschedulable pods get `PodScheduled=False` and a
//! `FailedScheduling` event, and are retried when the cluster changes and periodically.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use k8s_openapi::api::core::v1::{
    Binding, Container, Node, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference, Pod,
    Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use parking_lot::Mutex;
use rand::Rng;
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::events::{Recorder, object_ref};
use crate::informer::{Change, Informer, key_of};
use crate::pods::{self, node_name, tolerations};
use crate::queue::{Outcome, Queue};
use crate::replicaset::{api_message, is_not_found};

pub const SCHEDULER_NAME: &str = "default-scheduler";

/// Scheduling workers; decisions are serialised on the cache lock, bindings run in parallel.
const WORKERS: usize = 16;
/// Retry delays for unschedulable pods: 1 s doubling to at most this.
const MAX_RETRY: Duration = Duration::from_secs(10);
/// Do not rewrite the same PodScheduled condition within this (informer lag).
const CONDITION_REWRITE_GUARD: Duration = Duration::from_secs(5);
/// Repeat an unchanged FailedScheduling event at most this often.
const EVENT_REPEAT: Duration = Duration::from_secs(60);

/// Requests for a pod without cpu/memory requests when scoring (`schedutil.DefaultMilliCPURequest`).
const DEFAULT_MILLI_CPU: i64 = 100;
const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";

pub const REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
pub const REASON_NOT_READY: &str = "node(s) were not ready";
pub const REASON_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
pub const REASON_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
pub const REASON_TOO_MANY_PODS: &str = "Too many pods";
pub const NO_NODES: &str = "no nodes available to schedule pods";

// ---------------------------------------------------------------------------------------------
// Quantities and resources.

/// A quantity (`100m`, `1.5`, `64Mi`, `1e3`, `2G`) in thousandths of its unit, rounded up
/// (`Quantity.MilliValue`); `None` when malformed.
pub fn parse_quantity_milli(s: &str) -> Option<i128> {
    let s = s.trim();
    let (neg, rest) = if let Some(r) = s.strip_prefix('-') {
        (true, r)
    } else if let Some(r) = s.strip_prefix('+') {
        (false, r)
    } else {
        (false, s)
    };
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (num, suffix) = rest.split_at(end);
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
        return None;
    }
    let mut mantissa: i128 = 0;
    for c in int_part.chars().chain(frac_part.chars()) {
        let d = i128::from(c.to_digit(10)?);
        mantissa = mantissa.checked_mul(10)?.checked_add(d)?;
    }
    let mut exp10: i64 = 3 - i64::try_from(frac_part.len()).ok()?;
    let mut binary: u32 = 0;
    match suffix {
        "" => {}
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        "Ki" => binary = 10,
        "Mi" => binary = 20,
        "Gi" => binary = 30,
        "Ti" => binary = 40,
        "Pi" => binary = 50,
        "Ei" => binary = 60,
        other => {
            let e = other
                .strip_prefix('e')
                .or_else(|| other.strip_prefix('E'))?;
            exp10 += e.parse::<i64>().ok()?;
        }
    }
    let mut v = mantissa.saturating_mul(1i128 << binary);
    if exp10 >= 0 {
        let m = u32::try_from(exp10)
            .ok()
            .and_then(|e| 10i128.checked_pow(e))
            .unwrap_or(i128::MAX);
        v = if v == 0 { 0 } else { v.saturating_mul(m) };
    } else {
        v = match u32::try_from(-exp10)
            .ok()
            .and_then(|e| 10i128.checked_pow(e))
        {
            Some(d) => (v + d - 1) / d,
            None => i128::from(v > 0),
        };
    }
    Some(if neg { -v } else { v })
}

fn clamp_i64(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v > 0 { i64::MAX } else { i64::MIN })
}

/// Millicores of a cpu quantity (0 when malformed).
pub fn milli_value(q: &Quantity) -> i64 {
    clamp_i64(parse_quantity_milli(&q.0).unwrap_or(0))
}

/// The integer value of a quantity rounded up (bytes for memory; 0 when malformed).
pub fn value(q: &Quantity) -> i64 {
    let m = parse_quantity_milli(&q.0).unwrap_or(0);
    clamp_i64(if m >= 0 { (m + 999) / 1000 } else { m / 1000 })
}

/// Resource amounts: cpu in millicores, memory in bytes, pods as a count, the rest as values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    pub cpu: i64,
    pub memory: i64,
    pub pods: i64,
    pub other: BTreeMap<String, i64>,
}

impl Resources {
    pub fn from_map<'a>(map: impl IntoIterator<Item = (&'a String, &'a Quantity)>) -> Resources {
        let mut r = Resources::default();
        for (name, q) in map {
            match name.as_str() {
                "cpu" => r.cpu = milli_value(q),
                "memory" => r.memory = value(q),
                "pods" => r.pods = value(q),
                other => {
                    r.other.insert(other.to_string(), value(q));
                }
            }
        }
        r
    }

    fn add(&mut self, o: &Resources) {
        self.cpu = self.cpu.saturating_add(o.cpu);
        self.memory = self.memory.saturating_add(o.memory);
        self.pods = self.pods.saturating_add(o.pods);
        for (k, v) in &o.other {
            let e = self.other.entry(k.clone()).or_insert(0);
            *e = e.saturating_add(*v);
        }
    }

    fn sub(&mut self, o: &Resources) {
        self.cpu = self.cpu.saturating_sub(o.cpu);
        self.memory = self.memory.saturating_sub(o.memory);
        self.pods = self.pods.saturating_sub(o.pods);
        for (k, v) in &o.other {
            let e = self.other.entry(k.clone()).or_insert(0);
            *e = e.saturating_sub(*v);
        }
    }

    fn max_with(&mut self, o: &Resources) {
        self.cpu = self.cpu.max(o.cpu);
        self.memory = self.memory.max(o.memory);
        self.pods = self.pods.max(o.pods);
        for (k, v) in &o.other {
            let e = self.other.entry(k.clone()).or_insert(0);
            *e = (*e).max(*v);
        }
    }
}

/// A container's requests; a resource with a limit but no request requests its limit (API
/// defaulting). With `nonzero`, missing cpu/memory requests count as 100m/200Mi.
fn container_resources(c: &Container, nonzero: bool) -> Resources {
    let mut map: BTreeMap<&String, &Quantity> = BTreeMap::new();
    if let Some(r) = &c.resources {
        map.extend(r.limits.iter().flatten());
        map.extend(r.requests.iter().flatten());
    }
    let mut res = Resources::from_map(map.iter().map(|(k, v)| (*k, *v)));
    res.pods = 0;
    if nonzero {
        let has = |name: &str| map.keys().any(|k| k.as_str() == name);
        if !has("cpu") {
            res.cpu = DEFAULT_MILLI_CPU;
        }
        if !has("memory") {
            res.memory = DEFAULT_MEMORY;
        }
    }
    res
}

/// `resourcehelper.PodRequests`: max(sum of containers + sidecars, max of init containers
/// with the sidecars started before them) plus overhead.
pub fn pod_resources(pod: &Pod, nonzero: bool) -> Resources {
    let mut reqs = Resources::default();
    let Some(spec) = &pod.spec else {
        return reqs;
    };
    for c in &spec.containers {
        reqs.add(&container_resources(c, nonzero));
    }
    let mut sidecars = Resources::default();
    let mut init_max = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container_resources(c, nonzero);
        let current = if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&r);
            sidecars.clone()
        } else {
            let mut t = r;
            t.add(&sidecars);
            t
        };
        init_max.max_with(&current);
    }
    reqs.add(&sidecars);
    reqs.max_with(&init_max);
    if let Some(overhead) = &spec.overhead {
        let mut o = Resources::from_map(overhead);
        o.pods = 0;
        reqs.add(&o);
    }
    reqs
}

/// A host port a pod uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    fn conflicts(&self, o: &HostPort) -> bool {
        let wildcard = |ip: &str| ip.is_empty() || ip == "0.0.0.0" || ip == "::";
        self.port == o.port
            && self.protocol == o.protocol
            && (self.ip == o.ip || wildcard(&self.ip) || wildcard(&o.ip))
    }
}

/// The host ports of a pod's containers (and sidecars).
pub fn host_ports(pod: &Pod) -> Vec<HostPort> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|p| *p > 0)?;
            Some(HostPort {
                ip: p.host_ip.clone().unwrap_or_default(),
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_string()),
                port,
            })
        })
        .collect()
}

/// What a pod asks of a node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodRequest {
    pub res: Resources,
    /// cpu/memory with the scoring defaults for missing requests.
    pub nonzero_cpu: i64,
    pub nonzero_memory: i64,
    pub ports: Vec<HostPort>,
}

impl PodRequest {
    pub fn of(pod: &Pod) -> PodRequest {
        let nz = pod_resources(pod, true);
        PodRequest {
            res: pod_resources(pod, false),
            nonzero_cpu: nz.cpu,
            nonzero_memory: nz.memory,
            ports: host_ports(pod),
        }
    }
}

/// What the pods on a node (bound or assumed) use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    /// `pods` counts the pods.
    pub requested: Resources,
    pub nonzero_cpu: i64,
    pub nonzero_memory: i64,
    pub ports: Vec<HostPort>,
}

impl Usage {
    pub fn add(&mut self, r: &PodRequest) {
        self.requested.add(&r.res);
        self.requested.pods += 1;
        self.nonzero_cpu = self.nonzero_cpu.saturating_add(r.nonzero_cpu);
        self.nonzero_memory = self.nonzero_memory.saturating_add(r.nonzero_memory);
        self.ports.extend(r.ports.iter().cloned());
    }

    pub fn remove(&mut self, r: &PodRequest) {
        self.requested.sub(&r.res);
        self.requested.pods -= 1;
        self.nonzero_cpu = self.nonzero_cpu.saturating_sub(r.nonzero_cpu);
        self.nonzero_memory = self.nonzero_memory.saturating_sub(r.nonzero_memory);
        for p in &r.ports {
            if let Some(i) = self.ports.iter().position(|q| q == p) {
                self.ports.swap_remove(i);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.requested.pods <= 0 && self.ports.is_empty()
    }
}

/// A node's allocatable resources (capacity when it reports no allocatable).
pub fn allocatable(node: &Node) -> Resources {
    let status = node.status.as_ref();
    let map = status
        .and_then(|s| s.allocatable.as_ref())
        .filter(|m| !m.is_empty())
        .or_else(|| status.and_then(|s| s.capacity.as_ref()));
    map.map(Resources::from_map).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Filters.

/// `v1helper.ToleratesTaint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = t.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    if let Some(key) = t.key.as_deref().filter(|k| !k.is_empty())
        && key != taint.key
    {
        return false;
    }
    match t.operator.as_deref().unwrap_or("") {
        "Exists" => true,
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let as_int = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), [bound]) = (value.and_then(as_int), values) else {
                return false;
            };
            let Some(bound) = as_int(bound) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// One node selector term: its expressions and fields ANDed; an empty term matches nothing.
pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.metadata.labels.as_ref();
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.and_then(|l| l.get(&r.key)).map(String::as_str)))
        && fields.iter().all(|r| {
            r.key == "metadata.name"
                && matches!(r.operator.as_str(), "In" | "NotIn")
                && r.values.as_ref().is_some_and(|v| v.len() == 1)
                && requirement_matches(r, node.metadata.name.as_deref())
        })
}

/// `spec.nodeSelector` and required node affinity (terms ORed).
pub fn matches_node_affinity(pod: &Pod, node: &Node) -> bool {
    let Some(spec) = &pod.spec else { return true };
    if let Some(sel) = &spec.node_selector {
        let labels = node.metadata.labels.as_ref();
        if !sel
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        None => true,
        Some(ns) => ns.node_selector_terms.iter().any(|t| term_matches(t, node)),
    }
}

fn is_unschedulable(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
}

fn taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
}

/// The status of the node's Ready condition, if it reports one.
fn ready_status(node: &Node) -> Option<&str> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str())
}

/// A node reporting Ready other than True. Nodes marked with the not-ready/unreachable taints
/// are left to the taint filter (as upstream, so tolerating pods still land there); nodes
/// without a Ready condition (created through the API) count as ready, as upstream.
fn not_ready(node: &Node) -> bool {
    ready_status(node).is_some_and(|s| s != "True")
        && !taints(node)
            .iter()
            .any(|t| t.key == TAINT_NOT_READY || t.key == TAINT_UNREACHABLE)
}

/// The filters in upstream's order; the reasons of the first that fails (none: feasible).
pub fn filter(
    pod: &Pod,
    req: &PodRequest,
    node: &Node,
    alloc: &Resources,
    usage: &Usage,
) -> Vec<String> {
    let tols = tolerations(pod);
    // NodeUnschedulable.
    if is_unschedulable(node) {
        let taint = Taint {
            key: TAINT_UNSCHEDULABLE.to_string(),
            effect: "NoSchedule".to_string(),
            ..Default::default()
        };
        if !tols.iter().any(|t| tolerates(t, &taint)) {
            return vec![REASON_UNSCHEDULABLE.to_string()];
        }
    }
    if not_ready(node) {
        return vec![REASON_NOT_READY.to_string()];
    }
    // TaintToleration.
    if let Some(t) = taints(node).iter().find(|t| {
        (t.effect == "NoSchedule" || t.effect == "NoExecute")
            && !tols.iter().any(|tol| tolerates(tol, t))
    }) {
        return vec![format!(
            "node(s) had untolerated taint {{{}: {}}}",
            t.key,
            t.value.as_deref().unwrap_or("")
        )];
    }
    // NodeAffinity.
    if !matches_node_affinity(pod, node) {
        return vec![REASON_AFFINITY.to_string()];
    }
    // NodePorts.
    if req
        .ports
        .iter()
        .any(|p| usage.ports.iter().any(|u| p.conflicts(u)))
    {
        return vec![REASON_PORTS.to_string()];
    }
    // NodeResourcesFit.
    fits(req, alloc, usage)
}

/// `noderesources.fitsRequest`.
pub fn fits(req: &PodRequest, alloc: &Resources, usage: &Usage) -> Vec<String> {
    let used = &usage.requested;
    let mut reasons = Vec::new();
    if used.pods.saturating_add(1) > alloc.pods {
        reasons.push(REASON_TOO_MANY_PODS.to_string());
    }
    if req.res.cpu > 0 && req.res.cpu > alloc.cpu.saturating_sub(used.cpu) {
        reasons.push("Insufficient cpu".to_string());
    }
    if req.res.memory > 0 && req.res.memory > alloc.memory.saturating_sub(used.memory) {
        reasons.push("Insufficient memory".to_string());
    }
    for (name, q) in &req.res.other {
        let have = alloc.other.get(name).copied().unwrap_or(0);
        let used = used.other.get(name).copied().unwrap_or(0);
        if *q > 0 && *q > have.saturating_sub(used) {
            reasons.push(format!("Insufficient {name}"));
        }
    }
    reasons
}

// ---------------------------------------------------------------------------------------------
// Scoring and the decision.

/// `NodeResourcesFit` with the LeastAllocated strategy: the mean over cpu and memory of
/// `(allocatable - requested) * 100 / allocatable`, counting this pod, default requests.
pub fn least_allocated_score(req: &PodRequest, alloc: &Resources, usage: &Usage) -> i64 {
    let score = |requested: i64, capacity: i64| {
        if capacity <= 0 || requested > capacity {
            0
        } else {
            (capacity - requested).saturating_mul(100) / capacity
        }
    };
    let cpu = score(usage.nonzero_cpu.saturating_add(req.nonzero_cpu), alloc.cpu);
    let mem = score(
        usage.nonzero_memory.saturating_add(req.nonzero_memory),
        alloc.memory,
    );
    (cpu + mem) / 2
}

/// `FitError.Error()` with the preemption post-filter's message.
pub fn failure_message(total: usize, reasons: &BTreeMap<String, usize>) -> String {
    if total == 0 {
        return NO_NODES.to_string();
    }
    let mut parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    format!(
        "0/{total} nodes are available: {}. preemption: 0/{total} nodes are available: \
         {total} Preemption is not helpful for scheduling.",
        parts.join(", ")
    )
}

/// A node as the scheduler sees it.
pub struct NodeView<'a> {
    pub name: &'a str,
    pub node: &'a Node,
    pub alloc: &'a Resources,
    pub usage: &'a Usage,
}

/// Filter and score `nodes`; the best node (ties broken by `pick(count)`, an index below
/// `count`), or the failure message.
pub fn decide<'a>(
    pod: &Pod,
    req: &PodRequest,
    nodes: impl IntoIterator<Item = NodeView<'a>>,
    pick: impl FnOnce(usize) -> usize,
) -> Result<String, String> {
    let mut total = 0;
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut best: Vec<&str> = Vec::new();
    let mut best_score = i64::MIN;
    for n in nodes {
        total += 1;
        let failed = filter(pod, req, n.node, n.alloc, n.usage);
        if !failed.is_empty() {
            for r in failed {
                *reasons.entry(r).or_default() += 1;
            }
            continue;
        }
        let score = least_allocated_score(req, n.alloc, n.usage);
        if score > best_score {
            best_score = score;
            best.clear();
        }
        if score == best_score {
            best.push(n.name);
        }
    }
    if best.is_empty() {
        return Err(failure_message(total, &reasons));
    }
    let i = pick(best.len()).min(best.len() - 1);
    Ok(best[i].to_string())
}

// ---------------------------------------------------------------------------------------------
// The cache.

struct NodeEntry {
    node: Arc<Node>,
    alloc: Resources,
}

/// A pod counted on a node.
struct Placed {
    uid: String,
    node: String,
    req: PodRequest,
    /// Counted by the scheduler before the informer shows the binding.
    assumed: bool,
}

#[derive(Default)]
struct Cache {
    nodes: BTreeMap<String, NodeEntry>,
    usage: HashMap<String, Usage>,
    pods: HashMap<String, Placed>,
}

impl Cache {
    fn place(&mut self, key: &str, placed: Placed) {
        self.unplace(key);
        self.usage
            .entry(placed.node.clone())
            .or_default()
            .add(&placed.req);
        self.pods.insert(key.to_string(), placed);
    }

    /// Stop counting `key`; whether it was counted.
    fn unplace(&mut self, key: &str) -> bool {
        let Some(old) = self.pods.remove(key) else {
            return false;
        };
        if let Some(u) = self.usage.get_mut(&old.node) {
            u.remove(&old.req);
            if u.is_empty() && !self.nodes.contains_key(&old.node) {
                self.usage.remove(&old.node);
            }
        }
        true
    }

    /// Count `pod` as its informer state says; whether resources were freed.
    fn observe_pod(&mut self, pod: &Pod) -> bool {
        let key = key_of(pod);
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let node = node_name(pod);
        let terminal = matches!(pods::phase(pod), "Succeeded" | "Failed");
        if node.is_empty() || terminal {
            // Keep an assumption for a pod whose binding the informer has not shown yet.
            let keep = !terminal
                && self
                    .pods
                    .get(&key)
                    .is_some_and(|p| p.assumed && p.uid == uid);
            return !keep && self.unplace(&key);
        }
        if let Some(p) = self.pods.get_mut(&key)
            && p.uid == uid
            && p.node == node
        {
            p.assumed = false;
            return false;
        }
        let freed = self.pods.get(&key).is_some_and(|p| p.node != node);
        self.place(
            &key,
            Placed {
                uid,
                node: node.to_string(),
                req: PodRequest::of(pod),
                assumed: false,
            },
        );
        freed
    }

    fn observe_node(&mut self, node: &Arc<Node>) {
        self.nodes.insert(
            node.name_any(),
            NodeEntry {
                node: node.clone(),
                alloc: allocatable(node),
            },
        );
    }

    fn decide(&self, pod: &Pod, req: &PodRequest) -> Result<String, String> {
        let empty = Usage::default();
        // A pod pinned to one node (a DaemonSet pod) is checked against that node alone;
        // only when it does not fit are all nodes evaluated, for the message.
        if let Some(name) = pinned_node(pod)
            && let Some((name, e)) = self.nodes.get_key_value(name)
        {
            let view = NodeView {
                name,
                node: &e.node,
                alloc: &e.alloc,
                usage: self.usage.get(name).unwrap_or(&empty),
            };
            if let Ok(n) = decide(pod, req, [view], |_| 0) {
                return Ok(n);
            }
        }
        let views = self.nodes.iter().map(|(name, e)| NodeView {
            name,
            node: &e.node,
            alloc: &e.alloc,
            usage: self.usage.get(name).unwrap_or(&empty),
        });
        decide(pod, req, views, |n| rand::rng().random_range(0..n))
    }
}

/// The node a pod's required affinity names alone (`metadata.name In [x]` as its only term).
fn pinned_node(pod: &Pod) -> Option<&str> {
    let terms = &pod
        .spec
        .as_ref()?
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    let [term] = terms.as_slice() else {
        return None;
    };
    let [field] = term.match_fields.as_deref()? else {
        return None;
    };
    if field.key != "metadata.name" || field.operator != "In" {
        return None;
    }
    match field.values.as_deref()? {
        [one] => Some(one.as_str()),
        _ => None,
    }
}

/// Whether a node change may make pending pods schedulable.
fn node_changed(old: &Node, new: &Node) -> bool {
    old.metadata.labels != new.metadata.labels
        || old.spec != new.spec
        || ready_status(old) != ready_status(new)
        || allocatable(old) != allocatable(new)
}

/// Pods this scheduler should place.
pub fn needs_scheduling(pod: &Pod) -> bool {
    let Some(spec) = &pod.spec else { return false };
    spec.node_name.as_deref().unwrap_or("").is_empty()
        && matches!(
            spec.scheduler_name.as_deref(),
            None | Some("") | Some(SCHEDULER_NAME)
        )
        && pods::is_active(pod)
}

fn scheduling_gated(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduling_gates.as_ref())
        .is_some_and(|g| !g.is_empty())
}

// ---------------------------------------------------------------------------------------------
// The scheduler.

#[derive(Default)]
struct Pending {
    /// Pods that failed to fit, retried when the cluster changes.
    unschedulable: HashSet<String>,
    attempts: HashMap<String, u32>,
    /// The last PodScheduled=False message written per pod and when.
    written: HashMap<String, (String, Instant)>,
    /// The last FailedScheduling message recorded per pod and when.
    evented: HashMap<String, (String, Instant)>,
}

impl Pending {
    fn forget(&mut self, key: &str) {
        self.unschedulable.remove(key);
        self.attempts.remove(key);
        self.written.remove(key);
        self.evented.remove(key);
    }
}

pub struct Scheduler {
    client: Client,
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
    queue: Arc<Queue>,
    recorder: Recorder,
    cache: Mutex<Cache>,
    pending: Mutex<Pending>,
    /// Bumped on every change that may make unschedulable pods fit.
    moves: AtomicU64,
    flush: Notify,
}

impl Scheduler {
    pub fn new(client: Client, pods: Arc<Informer<Pod>>, nodes: Arc<Informer<Node>>) -> Arc<Self> {
        let recorder = Recorder::new(client.clone(), SCHEDULER_NAME, None);
        let s = Arc::new(Scheduler {
            client,
            pods,
            nodes,
            queue: Queue::new(),
            recorder,
            cache: Mutex::new(Cache::default()),
            pending: Mutex::new(Pending::default()),
            moves: AtomicU64::new(0),
            flush: Notify::new(),
        });
        let weak = Arc::downgrade(&s);
        s.pods.on_change(move |change| {
            if let Some(s) = weak.upgrade() {
                s.pod_changed(change);
            }
        });
        let weak = Arc::downgrade(&s);
        s.nodes.on_change(move |change| {
            if let Some(s) = weak.upgrade() {
                s.node_changed(change);
            }
        });
        // Whatever the informers already hold (normally nothing yet). Under the cache lock so
        // that a handler's later change cannot be overwritten by this older snapshot.
        {
            let mut cache = s.cache.lock();
            for n in s.nodes.list() {
                cache.observe_node(&n);
            }
            for p in s.pods.list() {
                cache.observe_pod(&p);
            }
        }
        for p in s.pods.list() {
            if needs_scheduling(&p) {
                s.queue.add(key_of(p.as_ref()));
            }
        }
        s
    }

    fn moved(&self) {
        self.moves.fetch_add(1, Ordering::SeqCst);
        self.flush.notify_one();
    }

    fn pod_changed(&self, change: &Change<'_, Pod>) {
        match change {
            Change::Added(pod) => {
                let freed = self.cache.lock().observe_pod(pod);
                if needs_scheduling(pod) {
                    self.queue.add(key_of(pod.as_ref()));
                }
                if freed {
                    self.moved();
                }
            }
            Change::Updated { old, new } => {
                let freed = self.cache.lock().observe_pod(new);
                if needs_scheduling(new)
                    && (!needs_scheduling(old)
                        || old.spec != new.spec
                        || old.metadata.labels != new.metadata.labels)
                {
                    self.queue.add(key_of(new.as_ref()));
                }
                if freed {
                    self.moved();
                }
            }
            Change::Deleted(pod) => {
                let key = key_of(pod.as_ref());
                let freed = self.cache.lock().unplace(&key);
                self.pending.lock().forget(&key);
                if freed {
                    self.moved();
                }
            }
        }
    }

    fn node_changed(&self, change: &Change<'_, Node>) {
        match change {
            Change::Added(node) => {
                self.cache.lock().observe_node(node);
                self.moved();
            }
            Change::Updated { old, new } => {
                self.cache.lock().observe_node(new);
                if node_changed(old, new) {
                    self.moved();
                }
            }
            Change::Deleted(node) => {
                let mut cache = self.cache.lock();
                let name = node.name_any();
                cache.nodes.remove(&name);
                if cache.usage.get(&name).is_some_and(Usage::is_empty) {
                    cache.usage.remove(&name);
                }
            }
        }
    }

    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = async { self.pods.wait_synced().await; self.nodes.wait_synced().await } => {}
        }
        for p in self.pods.list() {
            if needs_scheduling(&p) {
                self.queue.add(key_of(p.as_ref()));
            }
        }
        let me = self.clone();
        let flush_stop = stop.clone();
        let flusher = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = flush_stop.cancelled() => return,
                    _ = me.flush.notified() => {}
                }
                let keys = std::mem::take(&mut me.pending.lock().unschedulable);
                for k in keys {
                    me.queue.add(k);
                }
            }
        });
        let me = self.clone();
        self.queue
            .clone()
            .run(WORKERS, stop, move |key| {
                let me = me.clone();
                async move { me.sync(&key).await }
            })
            .await;
        let _ = flusher.await;
    }

    async fn sync(&self, key: &str) -> Result<Outcome, String> {
        let Some(pod) = self.pods.get(key) else {
            self.pending.lock().forget(key);
            return Ok(Outcome::Done);
        };
        if !needs_scheduling(&pod) {
            self.pending.lock().forget(key);
            return Ok(Outcome::Done);
        }
        if scheduling_gated(&pod) {
            self.set_condition(
                &pod,
                "SchedulingGated",
                "Scheduling is blocked due to non-empty scheduling gates",
            )
            .await;
            return Ok(Outcome::Done);
        }
        let seq = self.moves.load(Ordering::SeqCst);
        let req = PodRequest::of(&pod);
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let decision = {
            let mut cache = self.cache.lock();
            if cache
                .pods
                .get(key)
                .is_some_and(|p| p.assumed && p.uid == uid)
            {
                // Being bound (or bound and not yet seen).
                return Ok(Outcome::Done);
            }
            let d = cache.decide(&pod, &req);
            if let Ok(node) = &d {
                cache.place(
                    key,
                    Placed {
                        uid: uid.clone(),
                        node: node.clone(),
                        req,
                        assumed: true,
                    },
                );
            }
            d
        };
        match decision {
            Ok(node) => self.bind(&pod, key, &uid, &node).await,
            Err(msg) => Ok(self.unschedulable(&pod, key, msg, seq).await),
        }
    }

    async fn bind(&self, pod: &Pod, key: &str, uid: &str, node: &str) -> Result<Outcome, String> {
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            },
            target: ObjectReference {
                api_version: Some("v1".to_string()),
                kind: Some("Node".to_string()),
                name: Some(node.to_string()),
                ..Default::default()
            },
        };
        let body = serde_json::to_vec(&binding).map_err(|e| e.to_string())?;
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let res = api
            .create_subresource::<serde_json::Value>("binding", &name, &PostParams::default(), body)
            .await;
        match res {
            Ok(_) => {
                self.pending.lock().forget(key);
                self.recorder.normal(
                    object_ref(pod),
                    "Scheduled",
                    format!("Successfully assigned {ns}/{name} to {node}"),
                );
                Ok(Outcome::Done)
            }
            Err(e) => {
                {
                    let mut cache = self.cache.lock();
                    if cache
                        .pods
                        .get(key)
                        .is_some_and(|p| p.assumed && p.uid == uid)
                    {
                        cache.unplace(key);
                    }
                }
                if is_not_found(&e) || matches!(&e, kube::Error::Api(s) if s.code == 409) {
                    // Gone, or already bound: the informer will tell.
                    return Ok(Outcome::Done);
                }
                self.recorder.warning(
                    object_ref(pod),
                    "FailedScheduling",
                    format!("Binding rejected: {}", api_message(&e)),
                );
                Err(format!("binding {key} to {node}: {}", api_message(&e)))
            }
        }
    }

    async fn unschedulable(&self, pod: &Pod, key: &str, msg: String, seq: u64) -> Outcome {
        let (attempts, event) = {
            let mut p = self.pending.lock();
            let n = p.attempts.entry(key.to_string()).or_insert(0);
            *n = n.saturating_add(1);
            let n = *n;
            let now = Instant::now();
            let event = match p.evented.get(key) {
                Some((m, at)) => *m != msg || now.duration_since(*at) >= EVENT_REPEAT,
                None => true,
            };
            if event {
                p.evented.insert(key.to_string(), (msg.clone(), now));
            }
            p.unschedulable.insert(key.to_string());
            (n, event)
        };
        if event {
            self.recorder
                .warning(object_ref(pod), "FailedScheduling", msg.clone());
        }
        self.set_condition(pod, "Unschedulable", &msg).await;
        if self.moves.load(Ordering::SeqCst) != seq {
            // The cluster changed while this pod was considered: try again at once.
            self.pending.lock().unschedulable.remove(key);
            return Outcome::RequeueAfter(Duration::ZERO);
        }
        let delay = Duration::from_secs(1u64 << attempts.saturating_sub(1).min(4)).min(MAX_RETRY);
        Outcome::RequeueAfter(delay)
    }

    /// Write `PodScheduled=False` with `reason`/`message` unless the pod already says so.
    async fn set_condition(&self, pod: &Pod, reason: &str, message: &str) {
        let key = key_of(pod);
        let current = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
        if current.is_some_and(|c| {
            c.status == "False"
                && c.reason.as_deref() == Some(reason)
                && c.message.as_deref() == Some(message)
        }) {
            return;
        }
        {
            let mut p = self.pending.lock();
            let now = Instant::now();
            if p.written.get(&key).is_some_and(|(m, at)| {
                m == message && now.duration_since(*at) < CONDITION_REWRITE_GUARD
            }) {
                return;
            }
            p.written.insert(key.clone(), (message.to_string(), now));
        }
        let transition = match current {
            Some(c) if c.status == "False" => c
                .last_transition_time
                .clone()
                .map(|t| t.0)
                .unwrap_or_else(Utc::now),
            _ => Utc::now(),
        };
        let patch = json!({"status": {"conditions": [{
            "type": "PodScheduled",
            "status": "False",
            "reason": reason,
            "message": message,
            "lastProbeTime": null,
            "lastTransitionTime": transition.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }]}});
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        if let Err(e) = api
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
        {
            self.pending.lock().written.remove(&key);
            if !is_not_found(&e) {
                tracing::debug!(%key, error = %api_message(&e), "pod condition not written");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn pod(v: Value) -> Pod {
        let mut base = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
        });
        merge(&mut base, v);
        serde_json::from_value(base).unwrap()
    }

    fn node(name: &str, v: Value) -> Node {
        let mut base = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name},
            "status": {
                "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        });
        merge(&mut base, v);
        serde_json::from_value(base).unwrap()
    }

    fn merge(a: &mut Value, b: Value) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn requests(cpu: &str, mem: &str) -> Value {
        json!({"spec": {"containers": [{"name": "c", "image": "i",
            "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}})
    }

    #[test]
    fn quantities_parse() {
        let cases: &[(&str, Option<i128>)] = &[
            ("100m", Some(100)),
            ("1", Some(1000)),
            ("0.5", Some(500)),
            ("1.5", Some(1500)),
            (".5", Some(500)),
            ("0", Some(0)),
            ("1Ki", Some(1_024_000)),
            ("64Mi", Some(64 * 1024 * 1024 * 1000)),
            ("2Gi", Some(2 * 1024 * 1024 * 1024 * 1000)),
            ("1Ti", Some((1i128 << 40) * 1000)),
            ("1k", Some(1_000_000)),
            ("1M", Some(1_000_000_000)),
            ("1G", Some(1_000_000_000_000)),
            ("1T", Some(1_000_000_000_000_000)),
            ("1e3", Some(1_000_000)),
            ("1E3", Some(1_000_000)),
            ("1n", Some(1)),
            ("1u", Some(1)),
            ("0.0001", Some(1)),
            ("-1", Some(-1000)),
            ("", None),
            ("abc", None),
            ("1.2.3", None),
            ("1Xi", None),
            ("m", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_quantity_milli(s), *want, "{s}");
        }
        assert_eq!(value(&Quantity("128974848".into())), 128974848);
        assert_eq!(value(&Quantity("129e6".into())), 129_000_000);
        assert_eq!(value(&Quantity("1.5Ki".into())), 1536);
        assert_eq!(milli_value(&Quantity("250m".into())), 250);
        assert_eq!(milli_value(&Quantity("bad".into())), 0);
    }

    #[test]
    fn pod_requests_follow_upstream() {
        let p = pod(json!({"spec": {
            "containers": [
                {"name": "a", "image": "i", "resources": {"requests": {"cpu": "100m", "memory": "1Gi"}}},
                {"name": "b", "image": "i", "resources": {"limits": {"cpu": "200m"}}},
            ],
            "initContainers": [
                {"name": "i1", "image": "i", "resources": {"requests": {"cpu": "1", "memory": "100Mi"}}},
                {"name": "s", "image": "i", "restartPolicy": "Always",
                 "resources": {"requests": {"cpu": "50m"}}},
            ],
            "overhead": {"cpu": "10m"},
        }}));
        let r = PodRequest::of(&p);
        // containers 300m + sidecar 50m = 350m < init 1000m; + overhead.
        assert_eq!(r.res.cpu, 1010);
        assert_eq!(r.res.memory, 1 << 30);
        // Non-zero: container b gets 200Mi memory, the sidecar 200Mi too.
        assert_eq!(r.nonzero_memory, (1 << 30) + 2 * DEFAULT_MEMORY);
        let empty = PodRequest::of(&pod(json!({})));
        assert_eq!((empty.res.cpu, empty.res.memory), (0, 0));
        assert_eq!(
            (empty.nonzero_cpu, empty.nonzero_memory),
            (DEFAULT_MILLI_CPU, DEFAULT_MEMORY)
        );
    }

    #[test]
    fn tolerations_match() {
        let taint = |k: &str, v: &str, e: &str| Taint {
            key: k.into(),
            value: Some(v.into()),
            effect: e.into(),
            time_added: None,
        };
        let tol =
            |k: Option<&str>, op: Option<&str>, v: Option<&str>, e: Option<&str>| Toleration {
                key: k.map(Into::into),
                operator: op.map(Into::into),
                value: v.map(Into::into),
                effect: e.map(Into::into),
                toleration_seconds: None,
            };
        let t = taint("dedicated", "gpu", "NoSchedule");
        let cases = [
            (tol(Some("dedicated"), None, Some("gpu"), None), true),
            (
                tol(
                    Some("dedicated"),
                    Some("Equal"),
                    Some("gpu"),
                    Some("NoSchedule"),
                ),
                true,
            ),
            (
                tol(Some("dedicated"), Some("Equal"), Some("cpu"), None),
                false,
            ),
            (tol(Some("dedicated"), Some("Exists"), None, None), true),
            (
                tol(Some("dedicated"), Some("Exists"), None, Some("NoExecute")),
                false,
            ),
            (tol(Some("other"), Some("Exists"), None, None), false),
            (tol(None, Some("Exists"), None, None), true),
            (
                tol(Some(""), Some("Exists"), None, Some("NoSchedule")),
                true,
            ),
            (
                tol(Some("dedicated"), Some("Bogus"), Some("gpu"), None),
                false,
            ),
        ];
        for (i, (tol, want)) in cases.iter().enumerate() {
            assert_eq!(tolerates(tol, &t), *want, "case {i}: {tol:?}");
        }
        let empty_value = taint("k", "", "NoExecute");
        assert!(tolerates(&tol(Some("k"), None, None, None), &empty_value));
    }

    #[test]
    fn node_affinity_matches() {
        let n = node(
            "n1",
            json!({"metadata": {"labels": {"zone": "a", "gen": "5", "disk": "ssd"}}}),
        );
        let with_terms = |terms: Value| {
            pod(json!({"spec": {"affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}}))
        };
        let expr =
            |k: &str, op: &str, vals: &[&str]| json!({"key": k, "operator": op, "values": vals});
        let cases = [
            (
                json!([{"matchExpressions": [expr("zone", "In", &["a", "b"])]}]),
                true,
            ),
            (
                json!([{"matchExpressions": [expr("zone", "In", &["b"])]}]),
                false,
            ),
            (
                json!([{"matchExpressions": [expr("zone", "NotIn", &["b"])]}]),
                true,
            ),
            (
                json!([{"matchExpressions": [expr("missing", "NotIn", &["b"])]}]),
                true,
            ),
            (
                json!([{"matchExpressions": [expr("zone", "Exists", &[])]}]),
                true,
            ),
            (
                json!([{"matchExpressions": [expr("zone", "DoesNotExist", &[])]}]),
                false,
            ),
            (
                json!([{"matchExpressions": [expr("gen", "Gt", &["4"])]}]),
                true,
            ),
            (
                json!([{"matchExpressions": [expr("gen", "Gt", &["5"])]}]),
                false,
            ),
            (
                json!([{"matchExpressions": [expr("gen", "Lt", &["6"])]}]),
                true,
            ),
            (
                json!([{"matchExpressions": [expr("zone", "Lt", &["6"])]}]),
                false,
            ),
            // ANDed within a term.
            (
                json!([{"matchExpressions": [expr("zone", "In", &["a"]), expr("disk", "In", &["hdd"])]}]),
                false,
            ),
            // ORed across terms.
            (
                json!([{"matchExpressions": [expr("zone", "In", &["x"])]},
                    {"matchExpressions": [expr("disk", "In", &["ssd"])]}]),
                true,
            ),
            (
                json!([{"matchFields": [expr("metadata.name", "In", &["n1"])]}]),
                true,
            ),
            (
                json!([{"matchFields": [expr("metadata.name", "NotIn", &["n1"])]}]),
                false,
            ),
            (
                json!([{"matchFields": [expr("metadata.name", "In", &["n2"])]}]),
                false,
            ),
            (json!([{}]), false),
            (json!([]), false),
        ];
        for (i, (terms, want)) in cases.into_iter().enumerate() {
            let p = with_terms(terms.clone());
            assert_eq!(matches_node_affinity(&p, &n), want, "case {i}: {terms}");
        }
        let sel = |s: Value| pod(json!({"spec": {"nodeSelector": s}}));
        assert!(matches_node_affinity(&sel(json!({"zone": "a"})), &n));
        assert!(!matches_node_affinity(&sel(json!({"zone": "b"})), &n));
        assert!(!matches_node_affinity(&sel(json!({"nope": "a"})), &n));
        assert!(matches_node_affinity(&pod(json!({})), &n));
    }

    fn run_decide(p: &Pod, nodes: &[(Node, Usage)]) -> Result<String, String> {
        let allocs: Vec<Resources> = nodes.iter().map(|(n, _)| allocatable(n)).collect();
        let views = nodes.iter().zip(&allocs).map(|((n, u), a)| NodeView {
            name: n.metadata.name.as_deref().unwrap_or(""),
            node: n,
            alloc: a,
            usage: u,
        });
        decide(p, &PodRequest::of(p), views, |_| 0)
    }

    fn used(cpu: &str, mem: &str, pods: i64) -> Usage {
        let mut u = Usage::default();
        let r = PodRequest::of(&pod(requests(cpu, mem)));
        u.add(&r);
        u.requested.pods = pods;
        u
    }

    #[test]
    fn failure_messages_have_upstream_shape() {
        let p = pod(json!({"spec": {
            "nodeSelector": {"zone": "a"},
            "containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "2"}}}],
        }}));
        let labeled = json!({"metadata": {"labels": {"zone": "a"}}});
        let nodes = vec![
            (node("n1", json!({})), Usage::default()),
            (node("n2", labeled.clone()), used("3", "0", 1)),
            (node("n3", labeled), used("3500m", "0", 1)),
        ];
        assert_eq!(
            run_decide(&p, &nodes).unwrap_err(),
            "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
             2 Insufficient cpu. preemption: 0/3 nodes are available: 3 Preemption is not \
             helpful for scheduling."
        );
        assert_eq!(run_decide(&p, &[]).unwrap_err(), NO_NODES);

        // A node may give several reasons; reasons sort by their full text.
        let big = pod(requests("8", "16Gi"));
        let nodes = vec![
            (node("a", json!({})), Usage::default()),
            (
                node("b", json!({"spec": {"unschedulable": true}})),
                Usage::default(),
            ),
            (
                node(
                    "c",
                    json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}),
                ),
                Usage::default(),
            ),
            (
                node(
                    "d",
                    json!({"spec": {"taints": [{"key": "soft", "effect": "PreferNoSchedule"}]},
                    "status": {"allocatable": {"pods": "1"}}}),
                ),
                used("0", "0", 1),
            ),
        ];
        assert_eq!(
            run_decide(&big, &nodes).unwrap_err(),
            "0/4 nodes are available: 1 Too many pods, 1 node(s) had untolerated taint \
             {dedicated: gpu}, 1 node(s) were unschedulable, 2 Insufficient cpu, \
             2 Insufficient memory. preemption: 0/4 nodes are available: 4 Preemption is \
             not helpful for scheduling."
        );

        let mut reasons = BTreeMap::new();
        reasons.insert("node(s) were not ready".to_string(), 10);
        reasons.insert("Insufficient cpu".to_string(), 2);
        assert_eq!(
            failure_message(12, &reasons),
            "0/12 nodes are available: 10 node(s) were not ready, 2 Insufficient cpu. \
             preemption: 0/12 nodes are available: 12 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn filters_cover_taints_readiness_and_ports() {
        let p = pod(json!({}));
        let tolerating = pod(json!({"spec": {"tolerations": [
            {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "dedicated", "operator": "Equal", "value": "gpu"},
        ]}}));
        let alloc = allocatable(&node("x", json!({})));
        let check = |p: &Pod, n: &Node, u: &Usage| filter(p, &PodRequest::of(p), n, &alloc, u);
        let empty = Usage::default();
        let cordoned = node("n", json!({"spec": {"unschedulable": true}}));
        assert_eq!(check(&p, &cordoned, &empty), vec![REASON_UNSCHEDULABLE]);
        assert!(check(&tolerating, &cordoned, &empty).is_empty());
        let tainted = node(
            "n",
            json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoExecute"}]}}),
        );
        assert_eq!(
            check(&p, &tainted, &empty),
            vec!["node(s) had untolerated taint {dedicated: gpu}"]
        );
        assert!(check(&tolerating, &tainted, &empty).is_empty());
        let not_ready = node(
            "n",
            json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
        );
        assert_eq!(check(&p, &not_ready, &empty), vec![REASON_NOT_READY]);
        let no_conditions: Node = serde_json::from_value(json!({
            "metadata": {"name": "n"},
            "status": {"capacity": {"cpu": "1", "memory": "1Gi", "pods": "10"}},
        }))
        .unwrap();
        assert!(check(&p, &no_conditions, &empty).is_empty());
        assert_eq!(allocatable(&no_conditions).pods, 10);

        let with_port = |ip: &str| {
            pod(json!({"spec": {"containers": [{"name": "c", "image": "i",
                "ports": [{"containerPort": 80, "hostPort": 8080, "hostIP": ip}]}]}}))
        };
        let mut u = Usage::default();
        u.add(&PodRequest::of(&with_port("10.0.0.1")));
        let n = node("n", json!({}));
        assert_eq!(check(&with_port(""), &n, &u), vec![REASON_PORTS]);
        assert_eq!(check(&with_port("10.0.0.1"), &n, &u), vec![REASON_PORTS]);
        assert!(check(&with_port("10.0.0.2"), &n, &u).is_empty());
        let udp = pod(json!({"spec": {"containers": [{"name": "c", "image": "i",
            "ports": [{"containerPort": 80, "hostPort": 8080, "protocol": "UDP"}]}]}}));
        assert!(check(&udp, &n, &u).is_empty());
        u.remove(&PodRequest::of(&with_port("10.0.0.1")));
        assert!(check(&with_port(""), &n, &u).is_empty());

        // Zero requests always fit on cpu/memory, even on an overcommitted node.
        assert!(check(&p, &n, &used("5", "9Gi", 3)).is_empty());
        let gpu = pod(json!({"spec": {"containers": [{"name": "c", "image": "i",
            "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}));
        assert_eq!(check(&gpu, &n, &empty), vec!["Insufficient nvidia.com/gpu"]);
    }

    #[test]
    fn least_allocated_wins() {
        let p = pod(requests("1", "1Gi"));
        let nodes = vec![
            (node("busy", json!({})), used("3", "1Gi", 3)),
            (node("idle", json!({})), used("500m", "512Mi", 1)),
            (node("mid", json!({})), used("2", "2Gi", 2)),
            (node("full", json!({})), used("3500m", "0", 1)),
        ];
        assert_eq!(run_decide(&p, &nodes).unwrap(), "idle");

        let cases = [
            // (requested cpu, requested memory on a 4 cpu / 8Gi node) → score.
            (("0", "0"), (75 + 87) / 2), // the pod's 1 cpu/1Gi: (3/4, 7/8)
            (("3", "7Gi"), 0),           // exactly full
            (("1", "3Gi"), (50 + 50) / 2),
        ];
        for ((cpu, mem), want) in cases {
            let n = node("n", json!({}));
            let u = used(cpu, mem, 1);
            assert_eq!(
                least_allocated_score(&PodRequest::of(&p), &allocatable(&n), &u),
                want,
                "{cpu}/{mem}"
            );
        }
        // Pods without requests score with 100m/200Mi.
        let none = PodRequest::of(&pod(json!({})));
        let n = node(
            "n",
            json!({"status": {"allocatable": {"cpu": "1", "memory": "400Mi"}}}),
        );
        assert_eq!(
            least_allocated_score(&none, &allocatable(&n), &Usage::default()),
            (90 + 50) / 2
        );

        // Ties are broken by `pick`.
        let equal = vec![
            (node("a", json!({})), Usage::default()),
            (node("b", json!({})), Usage::default()),
        ];
        let views = |nodes: &'static [(Node, Usage)]| {
            nodes.iter().map(|(n, u)| NodeView {
                name: n.metadata.name.as_deref().unwrap_or(""),
                node: n,
                alloc: Box::leak(Box::new(allocatable(n))),
                usage: u,
            })
        };
        let equal: &'static [(Node, Usage)] = Box::leak(equal.into_boxed_slice());
        let req = PodRequest::of(&p);
        assert_eq!(decide(&p, &req, views(equal), |n| n - 1).unwrap(), "b");
        assert_eq!(decide(&p, &req, views(equal), |_| 0).unwrap(), "a");
    }

    #[test]
    fn cache_counts_assumed_and_bound_pods() {
        let mut cache = Cache::default();
        let n = Arc::new(node(
            "n1",
            json!({"status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "2"}}}),
        ));
        cache.observe_node(&n);
        let p = pod(requests("600m", "100Mi"));
        let req = PodRequest::of(&p);
        assert_eq!(cache.decide(&p, &req).unwrap(), "n1");
        cache.place(
            "default/p",
            Placed {
                uid: "u1".into(),
                node: "n1".into(),
                req: req.clone(),
                assumed: true,
            },
        );
        // A second 600m pod no longer fits.
        let mut q = pod(requests("600m", "100Mi"));
        q.metadata.name = Some("q".into());
        assert!(
            cache
                .decide(&q, &req)
                .unwrap_err()
                .contains("1 Insufficient cpu")
        );
        // An informer update of the still-pending pod keeps the assumption.
        assert!(!cache.observe_pod(&p));
        assert_eq!(cache.usage["n1"].requested.cpu, 600);
        // The binding shows up: still counted once.
        let mut bound = p.clone();
        bound.spec.as_mut().unwrap().node_name = Some("n1".into());
        assert!(!cache.observe_pod(&bound));
        assert_eq!(cache.usage["n1"].requested.cpu, 600);
        assert_eq!(cache.usage["n1"].requested.pods, 1);
        // It finishes: resources are freed.
        let mut done = bound.clone();
        done.status = Some(serde_json::from_value(json!({"phase": "Succeeded"})).unwrap());
        assert!(cache.observe_pod(&done));
        assert_eq!(cache.usage["n1"].requested.cpu, 0);
        assert_eq!(cache.decide(&q, &req).unwrap(), "n1");
        assert!(!cache.unplace("default/p"));
    }

    #[test]
    fn only_our_pending_pods_are_scheduled() {
        assert!(needs_scheduling(&pod(json!({}))));
        assert!(needs_scheduling(&pod(
            json!({"spec": {"schedulerName": "default-scheduler"}})
        )));
        assert!(!needs_scheduling(&pod(
            json!({"spec": {"schedulerName": "other"}})
        )));
        assert!(!needs_scheduling(&pod(json!({"spec": {"nodeName": "n"}}))));
        assert!(!needs_scheduling(&pod(
            json!({"status": {"phase": "Failed"}})
        )));
        assert!(!needs_scheduling(&pod(
            json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}})
        )));
    }
}
