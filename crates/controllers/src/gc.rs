//! The garbage collector: an ownerReferences graph over every kind that owns or is owned,
//! built from the shared informers. It deletes dependents whose owners are all gone, strips
//! references to owners that are gone, and carries out the `orphan` and `foregroundDeletion`
//! finalizers (kubectl-compat.md §6.1).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PropagationPolicy,
};
use kube::{Client, Resource};
use parking_lot::RwLock;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::informer::{Change, Informer};
use crate::queue::{Outcome, Queue};
use crate::replicaset::{api_message, is_not_found};

const ORPHAN: &str = "orphan";
const FOREGROUND: &str = "foregroundDeletion";

#[derive(Debug, Clone)]
struct Node {
    kind: String,
    namespace: Option<String>,
    name: String,
    owners: Vec<OwnerReference>,
    deleting: bool,
    finalizers: Vec<String>,
}

#[derive(Default)]
struct Graph {
    nodes: HashMap<String, Node>,
    /// owner uid → dependent uids.
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    fn upsert(&mut self, uid: &str, node: Node) {
        if let Some(old) = self.nodes.get(uid) {
            for r in &old.owners {
                if let Some(d) = self.dependents.get_mut(&r.uid) {
                    d.remove(uid);
                }
            }
        }
        for r in &node.owners {
            self.dependents
                .entry(r.uid.clone())
                .or_default()
                .insert(uid.to_string());
        }
        self.nodes.insert(uid.to_string(), node);
    }

    fn remove(&mut self, uid: &str) -> Option<Node> {
        let old = self.nodes.remove(uid)?;
        for r in &old.owners {
            if let Some(d) = self.dependents.get_mut(&r.uid) {
                d.remove(uid);
                if d.is_empty() {
                    self.dependents.remove(&r.uid);
                }
            }
        }
        Some(old)
    }

    fn dependents_of(&self, uid: &str) -> Vec<(String, Node)> {
        self.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| self.nodes.get(d).map(|n| (d.clone(), n.clone())))
            .collect()
    }
}

/// A merge patch setting an object's ownerReferences (dropping the field when none are left,
/// as the API encodes an empty list).
fn owner_refs_patch(keep: &[&OwnerReference]) -> serde_json::Value {
    if keep.is_empty() {
        json!({"metadata": {"ownerReferences": null}})
    } else {
        json!({"metadata": {"ownerReferences": keep}})
    }
}

pub struct GarbageCollector {
    client: Client,
    graph: RwLock<Graph>,
    queue: Arc<Queue>,
    /// kind → how to reach it through the API.
    resources: RwLock<HashMap<String, ApiResource>>,
    synced: RwLock<Vec<Box<dyn Fn() -> bool + Send + Sync>>>,
}

fn node_of(meta: &ObjectMeta, kind: &str) -> Node {
    Node {
        kind: kind.to_string(),
        namespace: meta.namespace.clone(),
        name: meta.name.clone().unwrap_or_default(),
        owners: meta.owner_references.clone().unwrap_or_default(),
        deleting: meta.deletion_timestamp.is_some(),
        finalizers: meta.finalizers.clone().unwrap_or_default(),
    }
}

impl GarbageCollector {
    pub fn new(client: Client) -> Arc<Self> {
        Arc::new(GarbageCollector {
            client,
            graph: RwLock::new(Graph::default()),
            queue: Queue::new(),
            resources: RwLock::new(HashMap::new()),
            synced: RwLock::new(Vec::new()),
        })
    }

    /// Follow one kind's informer.
    pub fn watch<K>(self: &Arc<Self>, informer: &Arc<Informer<K>>)
    where
        K: Resource<DynamicType = ()>
            + crate::informer::Compact
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
    {
        let kind = K::kind(&()).to_string();
        self.resources
            .write()
            .insert(kind.clone(), ApiResource::erase::<K>(&()));
        let inf = Arc::downgrade(informer);
        self.synced.write().push(Box::new(move || {
            inf.upgrade().is_some_and(|i| i.is_synced())
        }));
        let weak = Arc::downgrade(self);
        informer.on_change(move |change| {
            let Some(gc) = weak.upgrade() else { return };
            match change {
                Change::Added(o) | Change::Updated { new: o, .. } => {
                    let meta = o.meta();
                    let Some(uid) = meta.uid.clone() else { return };
                    let node = node_of(meta, &kind);
                    let interesting = node.deleting
                        || gc.needs_attention(&node)
                        || node
                            .finalizers
                            .iter()
                            .any(|f| f == ORPHAN || f == FOREGROUND);
                    gc.graph.write().upsert(&uid, node);
                    if interesting {
                        gc.queue.add(uid);
                    }
                }
                Change::Deleted(o) => {
                    let Some(uid) = o.meta().uid.clone() else {
                        return;
                    };
                    let removed = gc.graph.write().remove(&uid);
                    let deps = gc.graph.read().dependents_of(&uid);
                    for (d, _) in deps {
                        gc.queue.add(d);
                    }
                    // Owners waiting in the foreground for their dependents.
                    for r in removed.map(|n| n.owners).unwrap_or_default() {
                        gc.queue.add(r.uid);
                    }
                }
            }
        });
    }

    /// A dependent needs a look when one of its owners is not known or is being deleted.
    fn needs_attention(&self, node: &Node) -> bool {
        let g = self.graph.read();
        node.owners
            .iter()
            .any(|r| g.nodes.get(&r.uid).is_none_or(|o| o.deleting))
    }

    pub async fn run(self: Arc<Self>, workers: usize, stop: CancellationToken) {
        // Act only on a complete graph.
        loop {
            let all = self.synced.read().iter().all(|f| f());
            if all {
                break;
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        let uids: Vec<String> = {
            let g = self.graph.read();
            g.nodes
                .iter()
                .filter(|(_, n)| !n.owners.is_empty() || n.deleting)
                .map(|(u, _)| u.clone())
                .collect()
        };
        for u in uids {
            self.queue.add(u);
        }
        let me = self.clone();
        self.queue
            .clone()
            .run(workers, stop, move |uid| {
                let me = me.clone();
                async move { me.process(&uid).await }
            })
            .await;
    }

    fn api(&self, kind: &str, namespace: Option<&str>) -> Option<Api<DynamicObject>> {
        let ar = self.resources.read().get(kind).cloned()?;
        Some(match namespace {
            Some(ns) if !ns.is_empty() => Api::namespaced_with(self.client.clone(), ns, &ar),
            _ => Api::all_with(self.client.clone(), &ar),
        })
    }

    /// Whether the owner a reference points to still exists (same uid), asking the API
    /// server when the graph does not know it.
    async fn owner_exists(
        &self,
        r: &OwnerReference,
        namespace: Option<&str>,
    ) -> Result<bool, String> {
        if self.graph.read().nodes.contains_key(&r.uid) {
            return Ok(true);
        }
        let Some(api) = self.api(&r.kind, namespace) else {
            // A kind we do not follow: never collect on its account.
            return Ok(true);
        };
        match api.get_opt(&r.name).await {
            Ok(Some(o)) => Ok(o.metadata.uid.as_deref() == Some(r.uid.as_str())),
            Ok(None) => Ok(false),
            Err(e) => Err(api_message(&e)),
        }
    }

    async fn delete(&self, node: &Node, policy: PropagationPolicy) -> Result<(), String> {
        let Some(api) = self.api(&node.kind, node.namespace.as_deref()) else {
            return Ok(());
        };
        let dp = DeleteParams {
            propagation_policy: Some(policy),
            ..Default::default()
        };
        match api.delete(&node.name, &dp).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(api_message(&e)),
        }
    }

    async fn patch(&self, node: &Node, patch: serde_json::Value) -> Result<(), String> {
        let Some(api) = self.api(&node.kind, node.namespace.as_deref()) else {
            return Ok(());
        };
        match api
            .patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(api_message(&e)),
        }
    }

    async fn remove_finalizer(&self, node: &Node, finalizer: &str) -> Result<(), String> {
        let rest: Vec<&String> = node.finalizers.iter().filter(|f| *f != finalizer).collect();
        let rest = if rest.is_empty() {
            json!(null)
        } else {
            json!(rest)
        };
        self.patch(node, json!({"metadata": {"finalizers": rest}}))
            .await
    }

    async fn process(&self, uid: &str) -> Result<Outcome, String> {
        let Some(node) = self.graph.read().nodes.get(uid).cloned() else {
            return Ok(Outcome::Done);
        };
        if node.deleting && node.finalizers.iter().any(|f| f == ORPHAN) {
            let deps = self.graph.read().dependents_of(uid);
            for (_, dep) in deps {
                let keep: Vec<&OwnerReference> =
                    dep.owners.iter().filter(|r| r.uid != uid).collect();
                self.patch(&dep, owner_refs_patch(&keep)).await?;
            }
            self.remove_finalizer(&node, ORPHAN).await?;
            return Ok(Outcome::Done);
        }
        if node.deleting && node.finalizers.iter().any(|f| f == FOREGROUND) {
            let deps = self.graph.read().dependents_of(uid);
            let mut blocking = 0;
            for (_, dep) in &deps {
                let blocks = dep
                    .owners
                    .iter()
                    .any(|r| r.uid == uid && r.block_owner_deletion == Some(true));
                if blocks {
                    blocking += 1;
                }
                if !dep.deleting {
                    self.delete(dep, PropagationPolicy::Foreground).await?;
                }
            }
            if blocking == 0 {
                self.remove_finalizer(&node, FOREGROUND).await?;
                return Ok(Outcome::Done);
            }
            // Dependents' deletions enqueue this owner again; look again in a while anyway.
            return Ok(Outcome::RequeueAfter(Duration::from_secs(5)));
        }
        if node.owners.is_empty() || node.deleting {
            return Ok(Outcome::Done);
        }
        let mut dangling = Vec::new();
        let mut waiting_foreground = false;
        for r in &node.owners {
            if self.owner_exists(r, node.namespace.as_deref()).await? {
                let foreground =
                    self.graph.read().nodes.get(&r.uid).is_some_and(|o| {
                        o.deleting && o.finalizers.iter().any(|f| f == FOREGROUND)
                    });
                if foreground && r.block_owner_deletion == Some(true) {
                    waiting_foreground = true;
                }
            } else {
                dangling.push(r.uid.clone());
            }
        }
        if dangling.len() == node.owners.len() {
            self.delete(&node, PropagationPolicy::Background).await?;
        } else if !dangling.is_empty() {
            let keep: Vec<&OwnerReference> = node
                .owners
                .iter()
                .filter(|r| !dangling.contains(&r.uid))
                .collect();
            self.patch(&node, owner_refs_patch(&keep)).await?;
        } else if waiting_foreground {
            self.delete(&node, PropagationPolicy::Foreground).await?;
        }
        Ok(Outcome::Done)
    }
}
