//! The ReplicaSet and ReplicationController controllers: one logic (`syncReplicaSet`), two
//! adapters (k8s-controllers.md §3).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::future::join_all;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::events::{Recorder, object_ref};
use crate::expectations::Expectations;
use crate::informer::{Change, Informer, key_of};
use crate::pods::{self, Selector};
use crate::queue::{Outcome, Queue};
use crate::ranking;

/// Creations or deletions per sync at most (`BurstReplicas`).
pub const BURST_REPLICAS: usize = 500;

/// What the shared logic needs of a ReplicaSet or a ReplicationController.
pub trait ReplicaOwner:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + crate::informer::Compact
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
    const COMPONENT: &'static str;
    fn replicas(&self) -> i32;
    fn min_ready_seconds(&self) -> i32;
    fn selector(&self) -> Selector;
    fn template(&self) -> Option<&PodTemplateSpec>;
    fn status_value(&self) -> Value;
}

impl ReplicaOwner for ReplicaSet {
    const COMPONENT: &'static str = "replicaset-controller";
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn selector(&self) -> Selector {
        Selector::from_label_selector(self.spec.as_ref().map(|s| &s.selector))
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().and_then(|s| s.template.as_ref())
    }
    fn status_value(&self) -> Value {
        serde_json::to_value(&self.status).unwrap_or(Value::Null)
    }
}

impl ReplicaOwner for ReplicationController {
    const COMPONENT: &'static str = "replication-controller";
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn selector(&self) -> Selector {
        let sel = self.spec.as_ref().and_then(|s| s.selector.as_ref());
        if sel.is_none_or(BTreeMap::is_empty) {
            // An RC without a selector matches nothing.
            return Selector::from_label_selector(None);
        }
        Selector::from_map(sel)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().and_then(|s| s.template.as_ref())
    }
    fn status_value(&self) -> Value {
        serde_json::to_value(&self.status).unwrap_or(Value::Null)
    }
}

pub struct ReplicaController<O: ReplicaOwner> {
    client: Client,
    owners: Arc<Informer<O>>,
    pods: Arc<Informer<Pod>>,
    queue: Arc<Queue>,
    expectations: Expectations,
    recorder: Recorder,
}

fn labels_of(pod: &Pod) -> BTreeMap<String, String> {
    pod.metadata.labels.clone().unwrap_or_default()
}

impl<O: ReplicaOwner> ReplicaController<O> {
    pub fn new(client: Client, owners: Arc<Informer<O>>, pods: Arc<Informer<Pod>>) -> Arc<Self> {
        let recorder = Recorder::new(client.clone(), O::COMPONENT, None);
        let c = Arc::new(ReplicaController {
            client,
            owners,
            pods,
            queue: Queue::new(),
            expectations: Expectations::default(),
            recorder,
        });
        let weak = Arc::downgrade(&c);
        c.owners.on_change(move |change| {
            let Some(c) = weak.upgrade() else { return };
            match change {
                Change::Added(o) | Change::Updated { new: o, .. } => {
                    c.queue.add(key_of(o.as_ref()))
                }
                Change::Deleted(o) => {
                    let key = key_of(o.as_ref());
                    c.expectations.delete(&key);
                    c.queue.add(key);
                }
            }
        });
        let weak = Arc::downgrade(&c);
        c.pods.on_change(move |change| {
            if let Some(c) = weak.upgrade() {
                c.pod_changed(change);
            }
        });
        c
    }

    /// The key of the owner this controller manages for `pod`'s controllerRef, if any.
    fn owner_key(&self, pod: &Pod) -> Option<String> {
        let r = pods::controller_of(pod)?;
        if r.kind != O::kind(&()) {
            return None;
        }
        let key = format!("{}/{}", pod.namespace().unwrap_or_default(), r.name);
        let owner = self.owners.get(&key)?;
        (owner.uid().as_deref() == Some(r.uid.as_str())).then_some(key)
    }

    /// Owners in the pod's namespace whose selector matches it (for orphans).
    fn matching_owners(&self, pod: &Pod) -> Vec<String> {
        let ns = pod.namespace().unwrap_or_default();
        let labels = labels_of(pod);
        self.owners
            .by_index("namespace", &ns)
            .into_iter()
            .filter(|o| o.selector().matches(&labels))
            .map(|o| key_of(o.as_ref()))
            .collect()
    }

    fn pod_changed(&self, change: &Change<'_, Pod>) {
        match change {
            Change::Added(pod) => {
                if pod.metadata.deletion_timestamp.is_some() {
                    if let Some(key) = self.owner_key(pod) {
                        self.expectations
                            .deletion_observed(&key, Some(&key_of(pod.as_ref())));
                        self.queue.add(key);
                    }
                    return;
                }
                if let Some(key) = self.owner_key(pod) {
                    self.expectations.creation_observed(&key);
                    self.queue.add(key);
                } else if pods::controller_of(pod.as_ref()).is_none() {
                    for key in self.matching_owners(pod) {
                        self.queue.add(key);
                    }
                }
            }
            Change::Updated { old, new } => {
                let old_owner = self.owner_key(old);
                let new_owner = self.owner_key(new);
                if new.metadata.deletion_timestamp.is_some()
                    && old.metadata.deletion_timestamp.is_none()
                {
                    // Marked for deletion: counts as deleted now.
                    for key in [&old_owner, &new_owner].into_iter().flatten() {
                        self.expectations
                            .deletion_observed(key, Some(&key_of(new.as_ref())));
                    }
                }
                let labels_changed = old.metadata.labels != new.metadata.labels;
                if old_owner != new_owner
                    && let Some(key) = old_owner
                {
                    self.queue.add(key);
                }
                match new_owner {
                    Some(key) => self.queue.add(key),
                    None => {
                        if pods::controller_of(new.as_ref()).is_none()
                            && (labels_changed || pods::controller_of(old.as_ref()).is_some())
                        {
                            for key in self.matching_owners(new) {
                                self.queue.add(key);
                            }
                        }
                    }
                }
            }
            Change::Deleted(pod) => {
                if let Some(r) = pods::controller_of(pod.as_ref())
                    && r.kind == O::kind(&())
                {
                    let key = format!("{}/{}", pod.namespace().unwrap_or_default(), r.name);
                    self.expectations
                        .deletion_observed(&key, Some(&key_of(pod.as_ref())));
                    self.queue.add(key);
                }
            }
        }
    }

    pub async fn run(self: Arc<Self>, workers: usize, stop: CancellationToken) {
        self.owners.wait_synced().await;
        self.pods.wait_synced().await;
        let keys = self.owners.keys();
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
        let Some(owner) = self.owners.get(key) else {
            self.expectations.delete(key);
            return Ok(Outcome::Done);
        };
        let needs_sync = self.expectations.satisfied(key);
        let ns = owner.namespace().unwrap_or_default();
        let candidates: Vec<Arc<Pod>> = self
            .pods
            .by_index("namespace", &ns)
            .into_iter()
            .filter(|p| pods::is_active(p))
            .collect();
        let active =
            crate::claim::claim(&self.client, owner.as_ref(), &owner.selector(), candidates)
                .await?;
        tracing::trace!(
            %key,
            generation = ?owner.meta().generation,
            want = owner.replicas(),
            active = active.len(),
            needs_sync,
            "sync"
        );
        let manage = if needs_sync && owner.meta().deletion_timestamp.is_none() {
            self.manage(key, &owner, &active).await
        } else {
            Ok(())
        };
        self.update_status(&owner, &active, manage.as_ref().err())
            .await?;
        manage?;
        let min_ready = owner.min_ready_seconds();
        if min_ready > 0 {
            let now = Utc::now();
            let ready = active.iter().filter(|p| pods::is_ready(p)).count();
            let available = active
                .iter()
                .filter(|p| pods::is_available(p, min_ready, now))
                .count();
            if ready != available {
                return Ok(Outcome::RequeueAfter(Duration::from_secs(
                    u64::try_from(min_ready).unwrap_or(1),
                )));
            }
        }
        Ok(Outcome::Done)
    }

    fn pod_from_template(&self, owner: &O) -> Result<Pod, String> {
        let template = owner
            .template()
            .ok_or_else(|| "no pod template".to_string())?;
        let labels = template.metadata.as_ref().and_then(|m| m.labels.clone());
        if labels.as_ref().is_none_or(BTreeMap::is_empty) {
            return Err("unable to create pods, no labels".to_string());
        }
        let name = owner.name_any();
        let prefix = format!("{name}-");
        Ok(Pod {
            metadata: ObjectMeta {
                generate_name: Some(prefix),
                namespace: owner.namespace(),
                labels,
                annotations: template
                    .metadata
                    .as_ref()
                    .and_then(|m| m.annotations.clone()),
                finalizers: template
                    .metadata
                    .as_ref()
                    .and_then(|m| m.finalizers.clone()),
                owner_references: Some(vec![pods::controller_ref(owner)]),
                ..Default::default()
            },
            spec: template.spec.clone(),
            status: None,
        })
    }

    async fn manage(&self, key: &str, owner: &O, active: &[Arc<Pod>]) -> Result<(), String> {
        let want = usize::try_from(owner.replicas().max(0)).unwrap_or(0);
        let ns = owner.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        if active.len() < want {
            let n = (want - active.len()).min(BURST_REPLICAS);
            self.expectations.expect_creations(key, n as i64);
            let template = self.pod_from_template(owner)?;
            let (ok, err) = slow_start(n, |_| {
                let api = api.clone();
                let pod = template.clone();
                let recorder = self.recorder.clone();
                let oref = object_ref(owner);
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
                        Err(e) if namespace_terminating(&e) => Ok(()),
                        Err(e) => {
                            let msg = api_message(&e);
                            recorder.warning(
                                oref,
                                "FailedCreate",
                                format!("Error creating: {msg}"),
                            );
                            Err(msg)
                        }
                    }
                }
            })
            .await;
            // Creations that failed or never started will not be observed.
            self.expectations.lower(key, (n - ok) as i64, 0);
            return err.map_or(Ok(()), Err);
        }
        if active.len() > want {
            let n = (active.len() - want).min(BURST_REPLICAS);
            let related = self.related_pods(owner);
            let mut per_node: HashMap<String, usize> = HashMap::new();
            for p in &related {
                *per_node.entry(node_of(p)).or_default() += 1;
            }
            let refs: Vec<&Pod> = active.iter().map(|p| p.as_ref()).collect();
            let victims = ranking::pods_to_delete(
                &refs,
                |p| per_node.get(&node_of(p)).copied().unwrap_or(0),
                n,
                Utc::now(),
            );
            self.expectations
                .expect_deletion_of(key, victims.iter().map(|p| key_of(*p)));
            let results = join_all(victims.iter().map(|p| {
                let api = api.clone();
                let name = p.name_any();
                let pod_key = key_of(*p);
                async move {
                    match api.delete(&name, &DeleteParams::default()).await {
                        Ok(_) => {
                            self.recorder.normal(
                                object_ref(owner),
                                "SuccessfulDelete",
                                format!("Deleted pod: {name}"),
                            );
                            Ok(())
                        }
                        Err(e) => {
                            self.expectations.deletion_observed(key, Some(&pod_key));
                            if is_not_found(&e) {
                                return Ok(());
                            }
                            let msg = api_message(&e);
                            self.recorder.warning(
                                object_ref(owner),
                                "FailedDelete",
                                format!("Error deleting: {msg}"),
                            );
                            Err(msg)
                        }
                    }
                }
            }))
            .await;
            return results
                .into_iter()
                .collect::<Result<Vec<()>, String>>()
                .map(|_| ());
        }
        Ok(())
    }

    /// Active pods of every owner that shares this owner's controller (siblings under one
    /// Deployment); none when the owner has no controller.
    fn related_pods(&self, owner: &O) -> Vec<Arc<Pod>> {
        let Some(ctrl) = pods::controller_of(owner) else {
            return Vec::new();
        };
        let siblings = self.owners.by_index("controller", &ctrl.uid);
        let ns = owner.namespace().unwrap_or_default();
        self.pods
            .by_index("namespace", &ns)
            .into_iter()
            .filter(|p| pods::is_active(p))
            .filter(|p| {
                let labels = labels_of(p);
                siblings.iter().any(|s| s.selector().matches(&labels))
            })
            .collect()
    }

    async fn update_status(
        &self,
        owner: &O,
        active: &[Arc<Pod>],
        error: Option<&String>,
    ) -> Result<(), String> {
        let now = Utc::now();
        let min_ready = owner.min_ready_seconds();
        let template_labels = owner
            .template()
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let replicas = active.len();
        let fully_labeled = active
            .iter()
            .filter(|p| {
                let labels = labels_of(p);
                template_labels
                    .iter()
                    .all(|(k, v)| labels.get(k) == Some(v))
            })
            .count();
        let ready = active.iter().filter(|p| pods::is_ready(p)).count();
        let available = active
            .iter()
            .filter(|p| pods::is_available(p, min_ready, now))
            .count();
        let cur = owner.status_value();
        let mut conditions: Vec<Value> = cur
            .get("conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let has_failure = conditions.iter().any(|c| c["type"] == "ReplicaFailure");
        match error {
            Some(msg) if !has_failure => {
                let want = usize::try_from(owner.replicas().max(0)).unwrap_or(0);
                let reason = if active.len() < want {
                    "FailedCreate"
                } else {
                    "FailedDelete"
                };
                conditions.push(json!({"type": "ReplicaFailure", "status": "True",
                    "lastTransitionTime": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "reason": reason, "message": msg}));
            }
            None if has_failure => conditions.retain(|c| c["type"] != "ReplicaFailure"),
            _ => {}
        }
        let generation = owner.meta().generation.unwrap_or(0);
        let count = |n: usize| if n == 0 { Value::Null } else { json!(n) };
        let mut status = json!({
            "replicas": replicas,
            "fullyLabeledReplicas": count(fully_labeled),
            "readyReplicas": count(ready),
            "availableReplicas": count(available),
            "observedGeneration": generation,
        });
        status["conditions"] = if conditions.is_empty() {
            Value::Null
        } else {
            json!(conditions)
        };
        let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_i64).unwrap_or(0);
        let unchanged = [
            "replicas",
            "fullyLabeledReplicas",
            "readyReplicas",
            "availableReplicas",
            "observedGeneration",
        ]
        .iter()
        .all(|k| num(&cur, k) == num(&status, k))
            && cur.get("conditions").filter(|c| !c.is_null())
                == status.get("conditions").filter(|c| !c.is_null());
        if unchanged {
            return Ok(());
        }
        let api: Api<O> =
            Api::namespaced(self.client.clone(), &owner.namespace().unwrap_or_default());
        api.patch_status(
            &owner.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await
        .map(|_| ())
        .or_else(|e| {
            if is_not_found(&e) {
                Ok(())
            } else {
                Err(api_message(&e))
            }
        })
    }
}

fn node_of(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default()
}

/// Run `n` calls in batches of 1, 2, 4, …, stopping after a batch with an error; returns the
/// successes and the first error.
pub async fn slow_start<F, Fut>(n: usize, call: F) -> (usize, Option<String>)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut done = 0;
    let mut ok = 0;
    let mut batch = 1usize;
    while done < n {
        let size = batch.min(n - done);
        let results = join_all((done..done + size).map(&call)).await;
        done += size;
        let mut first_err = None;
        for r in results {
            match r {
                Ok(()) => ok += 1,
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if first_err.is_some() {
            return (ok, first_err);
        }
        batch *= 2;
    }
    (ok, None)
}

pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

fn namespace_terminating(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403 && s.message.contains("being terminated"))
}

pub fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn slow_start_doubles_and_stops_on_error() {
        let calls = AtomicUsize::new(0);
        let (ok, err) = slow_start(10, |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }
        })
        .await;
        assert_eq!((ok, err), (10, None));
        assert_eq!(calls.load(Ordering::SeqCst), 10);
        // Batches 1, 2, 4: the call with index 4 fails, in the third batch; nothing after.
        let calls = AtomicUsize::new(0);
        let (ok, err) = slow_start(20, |i| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if i == 4 {
                    Err("boom".to_string())
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 7);
        assert_eq!(ok, 6);
        assert_eq!(err.as_deref(), Some("boom"));
    }
}
