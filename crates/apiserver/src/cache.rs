//! The watch cache: every served object, parsed, in memory; lists, gets and watches are
//! answered from here.
//!
//! One store watch over `/registry/` feeds it, in revision order, so after it has applied the
//! event at revision `R` it reflects the whole store at `R` (`processed`). A request that needs
//! the latest state waits until `processed` reaches the store's revision (kube-apiserver's
//! consistent reads from cache).
//!
//! Invariants: a watcher sees each event after its start revision once, in order; a watcher
//! that falls more than `BROADCAST` events behind is dropped (its stream ends and the client
//! re-lists), so a slow watcher never blocks writers or other watchers.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use std::time::Duration;

use ger_store::{DynStore, EventKind, KeyValue, Revision};
use parking_lot::RwLock;
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use crate::resources::{RESOURCES, Resource};
use crate::{object, selector};

/// Events kept per resource for watches that resume from a recent resourceVersion.
pub const DEFAULT_RING: usize = 1_000;
/// How far a watcher may fall behind before it is dropped.
const BROADCAST: usize = 16_384;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchKind {
    Added,
    Modified,
    Deleted,
}

/// One object as the cache keeps it: its JSON encoding as the store holds it, shared with the
/// store, and the few values selectors look at. The store's encoding has no
/// `resourceVersion`; it is written in, right after `"metadata":{`, as the object is sent. A
/// parsed `serde_json::Value` costs about eight times the encoding; it is made only when a
/// caller needs the whole object.
#[derive(Debug)]
pub struct Cached {
    raw: ger_store::Bytes,
    /// Where `resourceVersion` goes in `raw`: just inside `metadata`, and whether a comma
    /// follows it. `None` when `raw` already carries it (see [`Cached::from_kv`]).
    split: Option<(usize, bool)>,
    rv: Revision,
    labels: Option<Value>,
    /// `metadata.name`, `metadata.namespace` and the resource's selectable fields, rendered.
    fields: Vec<(&'static str, String)>,
    deleting: bool,
}

const METADATA: &[u8] = b"\"metadata\":{";

impl Cached {
    /// The object a store key-value holds, `None` when it is not a JSON object.
    pub fn from_kv(plural: &str, kv: &KeyValue) -> Option<Cached> {
        let v: Value = serde_json::from_slice(&kv.value).ok()?;
        let meta = object::meta(&v);
        let labels = meta
            .and_then(|m| m.get("labels"))
            .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
            .cloned();
        // The store writes objects with sorted keys and no resourceVersion, so `metadata`
        // opens after `apiVersion` and `kind`, outside any nested object. Anything else
        // (a value some other writer left) is encoded afresh, resourceVersion included.
        let split = kv
            .value
            .windows(METADATA.len())
            .position(|w| w == METADATA)
            .filter(|&at| {
                kv.value.first() == Some(&b'{')
                    && !kv.value[1..at].iter().any(|b| matches!(b, b'{' | b'['))
                    && meta.is_some_and(|m| m.get("resourceVersion").is_none())
            })
            .map(|at| {
                let at = at + METADATA.len();
                (at, kv.value.get(at) != Some(&b'}'))
            });
        let raw = match split {
            Some(_) => kv.value.clone(),
            None => {
                let mut v = v.clone();
                if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.insert("resourceVersion".into(), kv.mod_revision.to_string().into());
                }
                serde_json::to_vec(&v).ok()?.into()
            }
        };
        Some(Cached {
            raw,
            split,
            rv: kv.mod_revision,
            labels,
            fields: selector::field_values(plural, &v),
            deleting: object::is_deleting(&v),
        })
    }

    /// The length of the object's JSON.
    pub fn len(&self) -> usize {
        self.raw.len() + self.split.map_or(0, |_| 44)
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Append the object's JSON, `resourceVersion` included.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self.split {
            Some((at, comma)) => {
                out.extend_from_slice(&self.raw[..at]);
                out.extend_from_slice(b"\"resourceVersion\":\"");
                out.extend_from_slice(self.rv.to_string().as_bytes());
                out.extend_from_slice(if comma { b"\"," } else { b"\"" });
                out.extend_from_slice(&self.raw[at..]);
            }
            None => out.extend_from_slice(&self.raw),
        }
    }

    /// The object's JSON, `resourceVersion` included.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        self.write_to(&mut out);
        out
    }

    /// The whole object, parsed.
    pub fn value(&self) -> Value {
        let mut v: Value = serde_json::from_slice(&self.raw).unwrap_or(Value::Null);
        if self.split.is_some()
            && let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut)
        {
            m.insert("resourceVersion".into(), self.rv.to_string().into());
        }
        v
    }

    /// The object as a typed value (without its resourceVersion), if it decodes as one.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_slice(&self.raw).ok()
    }

    pub fn labels(&self) -> Option<&Value> {
        self.labels.as_ref()
    }

    pub fn fields(&self) -> &[(&'static str, String)] {
        &self.fields
    }

    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(f, _)| *f == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn name(&self) -> &str {
        self.field("metadata.name").unwrap_or("")
    }

    pub fn namespace(&self) -> Option<&str> {
        self.field("metadata.namespace").filter(|n| !n.is_empty())
    }

    pub fn is_deleting(&self) -> bool {
        self.deleting
    }
}

#[derive(Debug)]
pub struct CacheEvent {
    pub kind: WatchKind,
    pub obj: Arc<Cached>,
    pub prev: Option<Arc<Cached>>,
    pub rev: Revision,
}

impl CacheEvent {
    pub fn new(
        kind: WatchKind,
        obj: Arc<Cached>,
        prev: Option<Arc<Cached>>,
        rev: Revision,
    ) -> Self {
        CacheEvent {
            kind,
            obj,
            prev,
            rev,
        }
    }
}

pub struct ResourceCache {
    /// Store key → object, with `metadata.resourceVersion` filled in.
    pub objects: BTreeMap<String, Arc<Cached>>,
    /// The resource's plural name (its selectable fields depend on it).
    pub plural: &'static str,
    ring: VecDeque<Arc<CacheEvent>>,
    /// Every event after this revision is in `ring`.
    ring_start: Revision,
    ring_cap: usize,
    tx: broadcast::Sender<Arc<CacheEvent>>,
}

/// What a new watch starts from.
pub enum WatchStart {
    /// The events to replay, then the live stream.
    Resume(Vec<Arc<CacheEvent>>, broadcast::Receiver<Arc<CacheEvent>>),
    /// The cache's history does not reach back far enough.
    TooOld,
}

impl ResourceCache {
    fn new(ring_cap: usize, plural: &'static str) -> Self {
        ResourceCache {
            objects: BTreeMap::new(),
            plural,
            ring: VecDeque::new(),
            ring_start: 0,
            ring_cap: ring_cap.max(1),
            tx: broadcast::channel(BROADCAST).0,
        }
    }

    /// Replay everything after `rev`, then the live stream.
    pub fn watch_from(&self, rev: Revision) -> WatchStart {
        if rev < self.ring_start {
            return WatchStart::TooOld;
        }
        let replay = self.ring.iter().filter(|e| e.rev > rev).cloned().collect();
        WatchStart::Resume(replay, self.tx.subscribe())
    }

    /// The current objects and the live stream after them.
    pub fn snapshot(&self) -> (Vec<Arc<Cached>>, broadcast::Receiver<Arc<CacheEvent>>) {
        (
            self.objects.values().cloned().collect(),
            self.tx.subscribe(),
        )
    }

    fn apply(&mut self, key: &str, ev: CacheEvent) {
        match ev.kind {
            WatchKind::Deleted => {
                self.objects.remove(key);
            }
            _ => {
                self.objects.insert(key.to_string(), ev.obj.clone());
            }
        }
        let ev = Arc::new(ev);
        self.ring.push_back(ev.clone());
        while self.ring.len() > self.ring_cap {
            if let Some(old) = self.ring.pop_front() {
                self.ring_start = old.rev;
            }
        }
        let _ = self.tx.send(ev);
    }
}

pub struct Cache {
    by_prefix: HashMap<String, Arc<RwLock<ResourceCache>>>,
    processed: watch::Sender<Revision>,
    store: DynStore,
}

/// The plural name of the resource a store key belongs to ("" when none).
pub fn resource_plural(key: &str) -> &'static str {
    resource_prefix(key)
        .and_then(|p| RESOURCES.iter().find(|r| r.prefix() == p))
        .map_or("", |r| r.plural)
}

fn resource_prefix(key: &str) -> Option<&str> {
    // "/registry/<group>/<plural>/..." → "/registry/<group>/<plural>/"
    let mut slashes = key.match_indices('/').map(|(i, _)| i);
    let end = slashes.nth(3)?;
    key.get(..=end)
}

impl Cache {
    /// Load the store and start following it.
    /// `ring` events per resource are kept for watches that resume.
    pub async fn start(store: DynStore, ring: usize) -> Result<Arc<Cache>, ger_store::StoreError> {
        let by_prefix: HashMap<String, Arc<RwLock<ResourceCache>>> = RESOURCES
            .iter()
            .map(|r| {
                let rc = ResourceCache::new(ring, r.plural);
                (r.prefix(), Arc::new(RwLock::new(rc)))
            })
            .collect();
        let (items, rev) = store.list("/registry/", None).await?;
        for kv in &items {
            let Some(prefix) = resource_prefix(&kv.key) else {
                continue;
            };
            let Some(rc) = by_prefix.get(prefix) else {
                continue;
            };
            let mut rc = rc.write();
            let Some(cached) = Cached::from_kv(rc.plural, kv) else {
                continue;
            };
            rc.objects.insert(kv.key.to_string(), Arc::new(cached));
        }
        for rc in by_prefix.values() {
            rc.write().ring_start = rev;
        }
        let mut rx = store.watch("/registry/", rev)?;
        let cache = Arc::new(Cache {
            by_prefix,
            processed: watch::channel(rev).0,
            store,
        });
        let feeder = Arc::downgrade(&cache);
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                let Some(cache) = feeder.upgrade() else { break };
                cache.ingest(ev);
            }
        });
        Ok(cache)
    }

    fn ingest(&self, ev: ger_store::Event) {
        let rev = ev.kv.mod_revision;
        if let Some(rc) = resource_prefix(&ev.kv.key).and_then(|p| self.by_prefix.get(p))
            && let Some(cached) = Cached::from_kv(resource_plural(&ev.kv.key), &ev.kv)
        {
            let mut rc = rc.write();
            let prev = rc.objects.get(&*ev.kv.key).cloned();
            let kind = match (ev.kind, &prev) {
                (EventKind::Delete, _) => WatchKind::Deleted,
                (EventKind::Put, None) => WatchKind::Added,
                (EventKind::Put, Some(_)) => WatchKind::Modified,
            };
            let cached = Arc::new(cached);
            rc.apply(&ev.kv.key, CacheEvent::new(kind, cached, prev, rev));
        }
        self.processed.send_replace(rev);
    }

    pub fn resource(&self, res: &Resource) -> Arc<RwLock<ResourceCache>> {
        match self.by_prefix.get(&res.prefix()) {
            Some(rc) => rc.clone(),
            // Every served resource has a cache; this is unreachable by construction.
            None => Arc::new(RwLock::new(ResourceCache::new(1, res.plural))),
        }
    }

    pub fn processed(&self) -> Revision {
        *self.processed.borrow()
    }

    /// Wait (bounded) until the cache reflects revision `rev`.
    pub async fn wait_for(&self, rev: Revision) {
        let mut rx = self.processed.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|p| *p >= rev)).await;
    }

    /// Wait until the cache reflects every write the store has accepted so far.
    pub async fn sync(&self) {
        self.wait_for(self.store.current_revision()).await;
    }

    pub fn store(&self) -> &DynStore {
        &self.store
    }

    /// The oldest revision a watch can resume from.
    pub fn oldest(&self, res: &Resource) -> Revision {
        self.resource(res).read().ring_start
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn kv(value: &str, rev: Revision) -> KeyValue {
        KeyValue {
            key: "/registry/core/pods/default/p".into(),
            value: value.as_bytes().into(),
            create_revision: 1,
            mod_revision: rev,
        }
    }

    #[test]
    fn the_store_bytes_are_shared_and_sent_with_their_resource_version() {
        let cases = [
            // The store's own form: sorted keys, no resourceVersion.
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"a": "b"}, "name": "p", "namespace": "default"}, "spec": {"nodeName": "n"}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": {}}),
        ];
        for want in cases {
            let k = kv(&want.to_string(), 42);
            let c = Cached::from_kv("pods", &k).unwrap();
            assert!(Arc::ptr_eq(&c.raw, &k.value), "shares the store's bytes");
            let mut want = want;
            want["metadata"]["resourceVersion"] = json!("42");
            let sent: Value = serde_json::from_slice(&c.to_vec()).unwrap();
            assert_eq!(sent, want);
            assert_eq!(c.value(), want);
            assert!(c.len() >= c.to_vec().len());
        }
        let c = Cached::from_kv("pods", &kv(&cases_labels(), 7)).unwrap();
        assert_eq!(c.labels(), Some(&json!({"a": "b"})));
        assert_eq!(c.name(), "p");
        assert_eq!(c.namespace(), Some("default"));
    }

    fn cases_labels() -> String {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"a": "b"}, "name": "p", "namespace": "default"}})
            .to_string()
    }

    #[test]
    fn other_forms_are_encoded_afresh() {
        for text in [
            // A resourceVersion already stored.
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","resourceVersion":"3"}}"#,
            // "metadata" first met inside another object.
            r#"{"a":{"metadata":{"x":1}},"kind":"Pod","metadata":{"name":"p"}}"#,
            // Unsorted, with spaces.
            r#"{ "metadata": {"name": "p"}, "kind": "Pod" }"#,
        ] {
            let c = Cached::from_kv("pods", &kv(text, 9)).unwrap();
            let sent: Value = serde_json::from_slice(&c.to_vec()).unwrap();
            let mut want: Value = serde_json::from_str(text).unwrap();
            want["metadata"]["resourceVersion"] = json!("9");
            assert_eq!(sent, want, "{text}");
            assert_eq!(c.value(), want);
        }
        assert!(Cached::from_kv("pods", &kv("not json", 1)).is_none());
    }
}
