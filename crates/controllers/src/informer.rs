//! Shared informers: one list+watch per kind, an in-memory cache with indexes, and handlers
//! told of every change with the old and the new object (client-go's SharedIndexInformer).

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
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

pub struct Informer<K> {
    state: RwLock<Indexed<K>>,
    indexers: Vec<(&'static str, IndexFn<K>)>,
    handlers: RwLock<Vec<Handler<K>>>,
    synced: watch::Sender<bool>,
}

impl<K> Informer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
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

    fn apply(&self, obj: K) {
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
