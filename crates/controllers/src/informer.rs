//! Shared informers: one list+watch per kind, an in-memory cache with indexes, and handlers
//! told of every change with the old and the new object (client-go's SharedIndexInformer).

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    Container, Endpoints, Namespace, Node, Pod, ReplicationController, Service, ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Resource, ResourceExt};
use parking_lot::RwLock;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// One change seen by an informer.
pub enum Change<'a, K> {
    Added(&'a Arc<K>),
    Updated { old: &'a Arc<K>, new: &'a Arc<K> },
    Deleted(&'a Arc<K>),
}

type Handler<K> = Arc<dyn Fn(&Change<'_, K>) + Send + Sync>;
type IndexFn<K> = fn(&K) -> Vec<String>;

/// `namespace/name`, or `name` for cluster-scoped objects.
pub fn key_of<K: Resource>(obj: &K) -> String {
    let meta = obj.meta();
    let name = meta.name.as_deref().unwrap_or_default();
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_string(),
    }
}

struct Indexed<K> {
    objects: HashMap<String, Arc<K>>,
    /// (index, value) → object keys.
    indexes: HashMap<(&'static str, String), HashSet<String>>,
}

/// Objects as an informer keeps them: decoded lists carry the spare capacity they grew with
/// (a `Vec` of one `ContainerStatus` holds four), which at ten thousand pods is tens of
/// megabytes; `compact` gives it back.
pub trait Compact {
    fn compact(&mut self) {}
}

fn shrink<T>(v: &mut Option<Vec<T>>) {
    if let Some(v) = v {
        v.shrink_to_fit();
    }
}

fn shrink_meta(m: &mut ObjectMeta) {
    shrink(&mut m.owner_references);
    shrink(&mut m.finalizers);
    shrink(&mut m.managed_fields);
}

fn shrink_containers(cs: &mut Vec<Container>) {
    cs.shrink_to_fit();
    for c in cs {
        shrink(&mut c.ports);
        shrink(&mut c.env);
        shrink(&mut c.volume_mounts);
        shrink(&mut c.command);
        shrink(&mut c.args);
    }
}

impl Compact for Pod {
    fn compact(&mut self) {
        shrink_meta(&mut self.metadata);
        if let Some(s) = self.spec.as_mut() {
            shrink_containers(&mut s.containers);
            if let Some(cs) = s.init_containers.as_mut() {
                shrink_containers(cs);
            }
            shrink(&mut s.tolerations);
            shrink(&mut s.volumes);
        }
        if let Some(s) = self.status.as_mut() {
            shrink(&mut s.conditions);
            shrink(&mut s.container_statuses);
            shrink(&mut s.init_container_statuses);
            shrink(&mut s.pod_ips);
            shrink(&mut s.host_ips);
        }
    }
}

impl Compact for Node {
    fn compact(&mut self) {
        shrink_meta(&mut self.metadata);
        if let Some(s) = self.spec.as_mut() {
            shrink(&mut s.taints);
            shrink(&mut s.pod_cidrs);
        }
        if let Some(s) = self.status.as_mut() {
            shrink(&mut s.conditions);
            shrink(&mut s.addresses);
            shrink(&mut s.images);
        }
    }
}

impl Compact for ReplicaSet {}
impl Compact for ReplicationController {}
impl Compact for Deployment {}
impl Compact for DaemonSet {}
impl Compact for ControllerRevision {}
impl Compact for Lease {}
impl Compact for Namespace {}
impl Compact for ServiceAccount {}
impl Compact for Service {}
impl Compact for Endpoints {}
impl Compact for k8s_openapi::api::discovery::v1::EndpointSlice {}

pub struct Informer<K> {
    state: RwLock<Indexed<K>>,
    indexers: Vec<(&'static str, IndexFn<K>)>,
    handlers: RwLock<Vec<Handler<K>>>,
    synced: watch::Sender<bool>,
}

impl<K> Informer<K>
where
    K: Resource + Compact + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    pub fn new(indexers: Vec<(&'static str, IndexFn<K>)>) -> Arc<Self> {
        Arc::new(Informer {
            state: RwLock::new(Indexed {
                objects: HashMap::new(),
                indexes: HashMap::new(),
            }),
            indexers,
            handlers: RwLock::new(Vec::new()),
            synced: watch::channel(false).0,
        })
    }

    /// Register a handler; it sees every change from now on (register before `run`).
    pub fn on_change(&self, f: impl Fn(&Change<'_, K>) + Send + Sync + 'static) {
        self.handlers.write().push(Arc::new(f));
    }

    pub fn get(&self, key: &str) -> Option<Arc<K>> {
        self.state.read().objects.get(key).cloned()
    }

    pub fn list(&self) -> Vec<Arc<K>> {
        self.state.read().objects.values().cloned().collect()
    }

    /// The key of every object held: what a controller queues when it starts.
    pub fn keys(&self) -> Vec<String> {
        self.state.read().objects.keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.state.read().objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The objects whose `index` function returned `value`.
    pub fn by_index(&self, index: &'static str, value: &str) -> Vec<Arc<K>> {
        let s = self.state.read();
        s.indexes
            .get(&(index, value.to_string()))
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| s.objects.get(k).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Wait until the first list has been loaded.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    fn index_values(&self, obj: &K) -> Vec<(&'static str, String)> {
        self.indexers
            .iter()
            .flat_map(|(name, f)| f(obj).into_iter().map(move |v| (*name, v)))
            .collect()
    }

    /// Store `obj`; returns the object it replaced.
    fn upsert(&self, obj: Arc<K>) -> Option<Arc<K>> {
        let key = key_of(obj.as_ref());
        let add = self.index_values(&obj);
        let mut s = self.state.write();
        let old = s.objects.insert(key.clone(), obj);
        if let Some(old) = &old {
            for iv in self.index_values(old) {
                if let Some(set) = s.indexes.get_mut(&iv) {
                    set.remove(&key);
                    if set.is_empty() {
                        s.indexes.remove(&iv);
                    }
                }
            }
        }
        for iv in add {
            s.indexes.entry(iv).or_default().insert(key.clone());
        }
        old
    }

    fn remove(&self, key: &str) -> Option<Arc<K>> {
        let mut s = self.state.write();
        let old = s.objects.remove(key)?;
        for iv in self.index_values(&old) {
            if let Some(set) = s.indexes.get_mut(&iv) {
                set.remove(key);
                if set.is_empty() {
                    s.indexes.remove(&iv);
                }
            }
        }
        Some(old)
    }

    fn emit(&self, change: Change<'_, K>) {
        let handlers = self.handlers.read().clone();
        for h in handlers {
            h(&change);
        }
    }

    fn apply(&self, mut obj: K) {
        obj.compact();
        let obj = Arc::new(obj);
        match self.upsert(obj.clone()) {
            None => self.emit(Change::Added(&obj)),
            Some(old) => {
                if old.resource_version() != obj.resource_version() {
                    self.emit(Change::Updated {
                        old: &old,
                        new: &obj,
                    });
                }
            }
        }
    }

    /// List and watch `api` until `stop`, re-listing (and emitting the differences) whenever
    /// the watch has to restart.
    pub async fn run(self: Arc<Self>, api: Api<K>, stop: CancellationToken) {
        self.run_selected(api, None, stop).await;
    }

    /// [`Informer::run`] over the objects a field selector (`spec.nodeName=n`) picks.
    pub async fn run_selected(
        self: Arc<Self>,
        api: Api<K>,
        fields: Option<&str>,
        stop: CancellationToken,
    ) {
        let mut config = watcher::Config::default().any_semantic();
        if let Some(f) = fields {
            config = config.fields(f);
        }
        let stream = watcher::watcher(api, config).default_backoff();
        futures::pin_mut!(stream);
        let mut relist: Option<HashSet<String>> = None;
        loop {
            let ev = tokio::select! {
                _ = stop.cancelled() => return,
                ev = stream.next() => ev,
            };
            let Some(ev) = ev else { return };
            match ev {
                Ok(Event::Init) => relist = Some(HashSet::new()),
                Ok(Event::InitApply(obj)) => {
                    if let Some(seen) = relist.as_mut() {
                        seen.insert(key_of(&obj));
                    }
                    self.apply(obj);
                }
                Ok(Event::InitDone) => {
                    if let Some(seen) = relist.take() {
                        let gone: Vec<String> = self
                            .state
                            .read()
                            .objects
                            .keys()
                            .filter(|k| !seen.contains(*k))
                            .cloned()
                            .collect();
                        for k in gone {
                            if let Some(old) = self.remove(&k) {
                                self.emit(Change::Deleted(&old));
                            }
                        }
                    }
                    self.synced.send_replace(true);
                }
                Ok(Event::Apply(obj)) => self.apply(obj),
                Ok(Event::Delete(obj)) => {
                    self.remove(&key_of(&obj));
                    self.emit(Change::Deleted(&Arc::new(obj)));
                }
                Err(e) => tracing::debug!(error = %e, "watch failed; retrying"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn compacted_pods_hold_no_spare_capacity() {
        let text = r#"{"metadata":{"name":"p","ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"r","uid":"u"}]},
            "spec":{"containers":[{"name":"c","image":"i","ports":[{"containerPort":80}]}],
                "tolerations":[{"key":"a","operator":"Exists"},{"key":"b","operator":"Exists"}]},
            "status":{"conditions":[{"type":"A","status":"True"},{"type":"B","status":"True"},
                {"type":"C","status":"True"},{"type":"D","status":"True"},{"type":"E","status":"True"}],
                "containerStatuses":[{"name":"c","image":"i","imageID":"","ready":true,"restartCount":0}],
                "podIPs":[{"ip":"10.0.0.1"}]}}"#;
        let mut pod: Pod = serde_json::from_str(text).unwrap();
        let statuses = |p: &Pod| {
            let s = p.status.as_ref().unwrap();
            (
                s.container_statuses.as_ref().unwrap().capacity(),
                s.conditions.as_ref().unwrap().capacity(),
            )
        };
        assert!(statuses(&pod).0 > 1, "decoding over-allocates");
        pod.compact();
        assert_eq!(statuses(&pod), (1, 5));
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.tolerations.as_ref().unwrap().capacity(), 2);
        assert_eq!(spec.containers[0].ports.as_ref().unwrap().capacity(), 1);
        assert_eq!(
            pod.metadata.owner_references.as_ref().unwrap().capacity(),
            1
        );
        // Nothing but capacity changes.
        assert_eq!(pod, serde_json::from_str::<Pod>(text).unwrap());
    }
}
