//! Taint-based eviction (`taint-eviction-controller`), as kube-controller-manager's: a pod
//! bound to a node with `NoExecute` taints it does not tolerate is deleted at once; a pod that
//! tolerates them for `tolerationSeconds` (the least of the tolerations used) is deleted when
//! that long has passed since the controller first saw it exposed; a pod that tolerates them
//! without a time limit stays. A scheduled deletion is cancelled when the taints go away or the
//! pod's tolerations change to cover them for good.
//!
//! This is what moves a Deployment's pods off an edge node that stopped answering: the node
//! lifecycle controller taints it `node.kubernetes.io/unreachable:NoExecute`, admission gave
//! every pod a 300 s toleration of it, and after those five minutes the pods are deleted and
//! their controllers make new ones elsewhere. DaemonSet pods tolerate both lifecycle taints
//! forever and stay.
//!
//! Each deletion first adds the pod condition `DisruptionTarget` (reason
//! `DeletionByTaintManager`) and records a `TaintManagerEviction` event, `Marking for deletion
//! Pod <ns>/<name>`; a cancelled one records `Cancelling deletion of Pod <ns>/<name>`.
//!
//! Invariants: at most one deletion is scheduled per pod; a scheduled deletion fires only if it
//! is still the one scheduled (cancelling removes it, and the timer finds it gone). Like
//! upstream's, the schedule lives in memory: after a restart the toleration time starts again.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use parking_lot::Mutex;
use serde_json::json;
use tokio::time::Instant;

use crate::events::Recorder;
use crate::informer::{Change, Informer};
use crate::pods::{node_name, tolerations};
use crate::replicaset::api_message;
use crate::scheduler::tolerates;

pub const COMPONENT: &str = "taint-eviction-controller";
/// How often a failed deletion is tried again (upstream's `retries`).
const RETRIES: usize = 5;

/// What is to become of a pod on a node with the given `NoExecute` taints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No taints, or all of them tolerated without a time limit.
    Stay,
    /// Some taint is not tolerated, or a toleration's time is zero or less.
    DeleteNow,
    /// Delete after this long.
    DeleteAfter(Duration),
}

/// `GetMatchingTolerations` and `getMinTolerationTime`: each taint is matched by the first
/// toleration that tolerates it; the least `tolerationSeconds` among those decides.
pub fn verdict(tolerations: &[Toleration], taints: &[Taint]) -> Verdict {
    if taints.is_empty() {
        return Verdict::Stay;
    }
    let mut least: Option<i64> = None;
    for taint in taints {
        let Some(t) = tolerations.iter().find(|t| tolerates(t, taint)) else {
            return Verdict::DeleteNow;
        };
        if let Some(s) = t.toleration_seconds {
            if s <= 0 {
                return Verdict::DeleteNow;
            }
            least = Some(least.map_or(s, |l| l.min(s)));
        }
    }
    match least {
        None => Verdict::Stay,
        Some(s) => Verdict::DeleteAfter(Duration::from_secs(s.unsigned_abs())),
    }
}

/// The node's `NoExecute` taints.
pub fn no_execute(node: &Node) -> Vec<Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .map(|ts| {
            ts.iter()
                .filter(|t| t.effect == "NoExecute")
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

struct Scheduled {
    id: u64,
    created: Instant,
}

pub struct TaintEviction {
    client: Client,
    pods: Arc<Informer<Pod>>,
    /// Node → its `NoExecute` taints, for nodes that have any.
    tainted: Mutex<HashMap<String, Vec<Taint>>>,
    /// "namespace/name" → the deletion scheduled for it.
    scheduled: Mutex<HashMap<String, Scheduled>>,
    next_id: AtomicU64,
    recorder: Recorder,
}

impl TaintEviction {
    pub fn new(client: Client, pods: Arc<Informer<Pod>>, nodes: &Informer<Node>) -> Arc<Self> {
        let te = Arc::new(TaintEviction {
            recorder: Recorder::new(client.clone(), COMPONENT, None),
            client,
            pods,
            tainted: Mutex::new(HashMap::new()),
            scheduled: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&te);
        nodes.on_change(move |change| {
            let Some(te) = weak.upgrade() else { return };
            match change {
                Change::Added(n) => te.node_changed(n),
                Change::Updated { old, new } => {
                    if no_execute(old) != no_execute(new) {
                        te.node_changed(new);
                    }
                }
                Change::Deleted(n) => {
                    te.tainted.lock().remove(&n.name_any());
                }
            }
        });
        let weak = Arc::downgrade(&te);
        te.pods.on_change(move |change| {
            let Some(te) = weak.upgrade() else { return };
            match change {
                Change::Added(p) => te.pod_changed(p),
                Change::Updated { old, new } => {
                    if tolerations(old) != tolerations(new) || node_name(old) != node_name(new) {
                        te.pod_changed(new);
                    }
                }
                Change::Deleted(p) => te.cancel(&p.namespace().unwrap_or_default(), &p.name_any()),
            }
        });
        te
    }

    /// Keep the controller alive until `stop`; its work is done by the informers' handlers and
    /// the timers they start.
    pub async fn run(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        stop.cancelled().await;
        self.scheduled.lock().clear();
    }

    fn node_changed(self: &Arc<Self>, node: &Node) {
        let name = node.name_any();
        let taints = no_execute(node);
        {
            let mut tainted = self.tainted.lock();
            if taints.is_empty() {
                tainted.remove(&name);
            } else {
                tainted.insert(name.clone(), taints.clone());
            }
        }
        let now = Instant::now();
        for pod in self.pods.by_index("node", &name) {
            self.process(&pod, &taints, now);
        }
    }

    fn pod_changed(self: &Arc<Self>, pod: &Pod) {
        let node = node_name(pod);
        if node.is_empty() {
            return;
        }
        let Some(taints) = self.tainted.lock().get(node).cloned() else {
            return;
        };
        self.process(pod, &taints, Instant::now());
    }

    fn process(self: &Arc<Self>, pod: &Pod, taints: &[Taint], now: Instant) {
        let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
        match verdict(tolerations(pod), taints) {
            Verdict::Stay => self.cancel(&ns, &name),
            Verdict::DeleteNow => {
                self.cancel(&ns, &name);
                self.schedule(ns, name, now, now);
            }
            Verdict::DeleteAfter(d) => {
                let key = format!("{ns}/{name}");
                let existing = self.scheduled.lock().get(&key).map(|s| s.created);
                let mut start = now;
                if let Some(created) = existing {
                    // A deletion scheduled earlier keeps its time.
                    if created < now {
                        return;
                    }
                    start = created;
                    self.cancel(&ns, &name);
                }
                self.schedule(ns, name, start, now + d);
            }
        }
    }

    fn cancel(&self, ns: &str, name: &str) {
        if self
            .scheduled
            .lock()
            .remove(&format!("{ns}/{name}"))
            .is_some()
        {
            self.recorder.normal(
                pod_ref(ns, name),
                "TaintManagerEviction",
                format!("Cancelling deletion of Pod {ns}/{name}"),
            );
        }
    }

    fn schedule(self: &Arc<Self>, ns: String, name: String, created: Instant, fire: Instant) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let key = format!("{ns}/{name}");
        self.scheduled
            .lock()
            .insert(key.clone(), Scheduled { id, created });
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep_until(fire).await;
            let Some(te) = weak.upgrade() else { return };
            {
                let mut scheduled = te.scheduled.lock();
                if scheduled.get(&key).is_none_or(|s| s.id != id) {
                    return;
                }
                scheduled.remove(&key);
            }
            te.evict(&ns, &name).await;
        });
    }

    async fn evict(&self, ns: &str, name: &str) {
        self.recorder.normal(
            pod_ref(ns, name),
            "TaintManagerEviction",
            format!("Marking for deletion Pod {ns}/{name}"),
        );
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        for attempt in 0..RETRIES {
            match self.mark_and_delete(&api, name).await {
                Ok(()) => return,
                Err(e) if attempt + 1 == RETRIES => {
                    tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "pod not evicted");
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    /// `addConditionAndDeletePod`.
    async fn mark_and_delete(&self, api: &Api<Pod>, name: &str) -> Result<(), String> {
        let pod = match api.get_opt(name).await {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(()),
            Err(e) => return Err(api_message(&e)),
        };
        let marked = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.type_ == "DisruptionTarget"
                        && c.status == "True"
                        && c.reason.as_deref() == Some("DeletionByTaintManager")
                })
            });
        if !marked {
            let patch = json!({"status": {"conditions": [{
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "DeletionByTaintManager",
                "message": "Taint manager: deleting due to NoExecute taint",
                "lastTransitionTime": Time(Utc::now()),
            }]}});
            api.patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
                .map_err(|e| api_message(&e))?;
        }
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(api_message(&e)),
        }
    }
}

fn pod_ref(ns: &str, name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(name.into()),
        namespace: Some(ns.into()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: Option<&str>) -> Taint {
        Taint {
            key: key.into(),
            value: value.map(Into::into),
            effect: "NoExecute".into(),
            time_added: None,
        }
    }

    fn tol(key: &str, operator: &str, value: Option<&str>, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some(operator.into()),
            value: value.map(Into::into),
            effect: Some("NoExecute".into()),
            toleration_seconds: seconds,
        }
    }

    /// The cases of upstream's `TestCreatePod`/`TestUpdateNode` and `TestGetMinTolerationTime`,
    /// reduced to what is decided.
    #[test]
    fn verdicts() {
        let secs = Verdict::DeleteAfter;
        let cases: Vec<(&str, Vec<Toleration>, Vec<Taint>, Verdict)> = vec![
            ("no taints", vec![], vec![], Verdict::Stay),
            (
                "not tolerated",
                vec![],
                vec![taint("k", None)],
                Verdict::DeleteNow,
            ),
            (
                "tolerated forever",
                vec![tol("k", "Exists", None, None)],
                vec![taint("k", None)],
                Verdict::Stay,
            ),
            (
                "tolerated for a while",
                vec![tol("k", "Exists", None, Some(300))],
                vec![taint("k", None)],
                secs(Duration::from_secs(300)),
            ),
            (
                "the least time of the tolerations used",
                vec![
                    tol("a", "Exists", None, Some(300)),
                    tol("b", "Exists", None, Some(60)),
                    tol("c", "Exists", None, Some(5)),
                ],
                vec![taint("a", None), taint("b", None)],
                secs(Duration::from_secs(60)),
            ),
            (
                "forever and a while: the while",
                vec![
                    tol("a", "Exists", None, None),
                    tol("b", "Exists", None, Some(60)),
                ],
                vec![taint("a", None), taint("b", None)],
                secs(Duration::from_secs(60)),
            ),
            (
                "one of two taints not tolerated",
                vec![tol("a", "Exists", None, None)],
                vec![taint("a", None), taint("b", None)],
                Verdict::DeleteNow,
            ),
            (
                "zero seconds",
                vec![tol("k", "Exists", None, Some(0))],
                vec![taint("k", None)],
                Verdict::DeleteNow,
            ),
            (
                "negative seconds",
                vec![tol("k", "Exists", None, Some(-5))],
                vec![taint("k", None)],
                Verdict::DeleteNow,
            ),
            (
                "Equal wants the value",
                vec![tol("k", "Equal", Some("v1"), None)],
                vec![taint("k", Some("v2"))],
                Verdict::DeleteNow,
            ),
            (
                "Equal with the value",
                vec![tol("k", "Equal", Some("v"), Some(10))],
                vec![taint("k", Some("v"))],
                secs(Duration::from_secs(10)),
            ),
            (
                "the first matching toleration is the one used",
                vec![
                    tol("k", "Exists", None, None),
                    tol("k", "Exists", None, Some(1)),
                ],
                vec![taint("k", None)],
                Verdict::Stay,
            ),
            (
                "an empty key with Exists tolerates everything",
                vec![Toleration {
                    operator: Some("Exists".into()),
                    ..Default::default()
                }],
                vec![taint("a", None), taint("b", Some("x"))],
                Verdict::Stay,
            ),
        ];
        for (name, tolerations, taints, want) in cases {
            assert_eq!(verdict(&tolerations, &taints), want, "{name}");
        }
    }
}
