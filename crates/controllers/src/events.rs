//! The event recorder every controller shares (client-go's `record` package): events are
//! written in the background, identical events are counted on one object (count,
//! firstTimestamp, lastTimestamp), more than 10 similar events within 10 minutes are combined,
//! and each source+object pair gets a burst of 25 events then one per 5 minutes.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::Utc;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::mpsc;

const SPAM_BURST: f64 = 25.0;
const SPAM_REFILL_PER_SEC: f64 = 1.0 / 300.0;
const SIMILAR_MAX: usize = 10;
const SIMILAR_WINDOW: Duration = Duration::from_secs(600);
const COMBINED_PREFIX: &str = "(combined from similar events): ";
/// Past this many entries, the bookkeeping maps drop what no longer matters.
const PRUNE_AT: usize = 4096;

/// A reference to `obj` for an event's involvedObject.
pub fn object_ref<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).to_string()),
        kind: Some(K::kind(&()).to_string()),
        name: Some(obj.name_any()),
        namespace: obj.namespace(),
        uid: obj.uid(),
        resource_version: obj.resource_version(),
        field_path: None,
    }
}

struct Record {
    object: ObjectReference,
    type_: &'static str,
    reason: String,
    message: String,
}

/// Sends events for one component (`replicaset-controller`, `default-scheduler`, …).
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<Record>,
}

impl Recorder {
    pub fn new(client: Client, component: &str, host: Option<String>) -> Recorder {
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = Writer {
            client,
            source: EventSource {
                component: Some(component.to_string()),
                host,
            },
            counted: HashMap::new(),
            similar: HashMap::new(),
            spam: HashMap::new(),
        };
        tokio::spawn(writer.run(rx));
        Recorder { tx }
    }

    pub fn normal(&self, object: ObjectReference, reason: &str, message: String) {
        self.send(object, "Normal", reason, message);
    }

    pub fn warning(&self, object: ObjectReference, reason: &str, message: String) {
        self.send(object, "Warning", reason, message);
    }

    fn send(&self, object: ObjectReference, type_: &'static str, reason: &str, message: String) {
        let _ = self.tx.send(Record {
            object,
            type_,
            reason: reason.to_string(),
            message,
        });
    }
}

struct Counted {
    name: String,
    namespace: String,
    count: i32,
}

type Similar = HashMap<String, (HashSet<String>, Instant)>;
type Spam = HashMap<String, (f64, Instant)>;

/// Forget objects whose spam bucket has refilled and similar-event windows that have closed:
/// both would start the same afresh, so the maps stay bounded by recent activity.
fn prune(spam: &mut Spam, similar: &mut Similar, now: Instant) {
    if spam.len() > PRUNE_AT {
        spam.retain(|_, (tokens, at)| {
            *tokens + now.duration_since(*at).as_secs_f64() * SPAM_REFILL_PER_SEC < SPAM_BURST
        });
    }
    if similar.len() > PRUNE_AT {
        similar.retain(|_, (_, since)| now.duration_since(*since) <= SIMILAR_WINDOW);
    }
}

struct Writer {
    client: Client,
    source: EventSource,
    /// Identical events → the object that counts them.
    counted: HashMap<String, Counted>,
    /// Similar events (same object, type, reason) → messages seen and since when.
    similar: Similar,
    /// Per object: tokens left and when they were last refilled.
    spam: Spam,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Record>) {
        while let Some(r) = rx.recv().await {
            self.write(r).await;
        }
    }

    fn allowed(&mut self, object_key: &str) -> bool {
        let now = Instant::now();
        prune(&mut self.spam, &mut self.similar, now);
        let (tokens, at) = self
            .spam
            .entry(object_key.to_string())
            .or_insert((SPAM_BURST, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * SPAM_REFILL_PER_SEC).min(SPAM_BURST);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    async fn write(&mut self, r: Record) {
        let o = &r.object;
        let object_key = format!(
            "{}/{}/{}/{}",
            o.kind.as_deref().unwrap_or(""),
            o.namespace.as_deref().unwrap_or(""),
            o.name.as_deref().unwrap_or(""),
            o.uid.as_deref().unwrap_or("")
        );
        if !self.allowed(&object_key) {
            return;
        }
        let similar_key = format!("{object_key}/{}/{}", r.type_, r.reason);
        let now = Instant::now();
        let entry = self
            .similar
            .entry(similar_key.clone())
            .or_insert_with(|| (HashSet::new(), now));
        if now.duration_since(entry.1) > SIMILAR_WINDOW {
            *entry = (HashSet::new(), now);
        }
        entry.0.insert(r.message.clone());
        let message = if entry.0.len() > SIMILAR_MAX {
            format!("{COMBINED_PREFIX}{}", r.message)
        } else {
            r.message.clone()
        };
        let key = if entry.0.len() > SIMILAR_MAX {
            format!("{similar_key}/combined")
        } else {
            format!("{similar_key}/{message}")
        };
        let ts = Time(Utc::now());
        if let Some(c) = self.counted.get_mut(&key) {
            let api: Api<Event> = Api::namespaced(self.client.clone(), &c.namespace);
            let patch = json!({"count": c.count + 1, "lastTimestamp": ts, "message": message});
            match api
                .patch(&c.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    c.count += 1;
                    return;
                }
                Err(e) => tracing::debug!(error = %e, "event patch failed; creating anew"),
            }
        }
        let namespace = o
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".to_string());
        let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let name = format!("{}.{:x}", o.name.as_deref().unwrap_or("event"), nanos);
        let ev = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: r.object.clone(),
            reason: Some(r.reason.clone()),
            message: Some(message),
            type_: Some(r.type_.to_string()),
            source: Some(self.source.clone()),
            reporting_component: self.source.component.clone(),
            reporting_instance: self.source.host.clone(),
            first_timestamp: Some(ts.clone()),
            last_timestamp: Some(ts),
            count: Some(1),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        match api.create(&PostParams::default(), &ev).await {
            Ok(_) => {
                self.counted.insert(
                    key,
                    Counted {
                        name,
                        namespace,
                        count: 1,
                    },
                );
                if self.counted.len() > 4096 {
                    self.counted.clear();
                }
            }
            Err(e) => tracing::debug!(error = %e, "event not recorded"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookkeeping_forgets_what_would_start_afresh() {
        let now = Instant::now();
        let long_ago = now - Duration::from_secs(3600);
        let mut spam: Spam = HashMap::new();
        let mut similar: Similar = HashMap::new();
        for i in 0..PRUNE_AT {
            // Idle for an hour: the bucket is full again.
            spam.insert(format!("idle-{i}"), (SPAM_BURST - 1.0, long_ago));
            similar.insert(format!("old-{i}"), (HashSet::new(), long_ago));
        }
        spam.insert("busy".into(), (0.0, now));
        similar.insert("recent".into(), (HashSet::new(), now));
        prune(&mut spam, &mut similar, now);
        assert_eq!(spam.keys().collect::<Vec<_>>(), ["busy"]);
        assert_eq!(similar.keys().collect::<Vec<_>>(), ["recent"]);
        // Small maps are left alone.
        let mut few: Spam = HashMap::from([("idle".to_string(), (SPAM_BURST, long_ago))]);
        prune(&mut few, &mut similar, now);
        assert_eq!(few.len(), 1);
    }
}
