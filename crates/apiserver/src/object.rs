//! Housekeeping on objects as kube-apiserver's registry strategies do it: what the server sets
//! on create (uid, timestamps, generation, initial status), what it keeps on update (identity,
//! status or spec depending on the endpoint), and when generation moves.

use chrono::{SecondsFormat, Utc};
use rand::Rng;
use serde_json::{Map, Value, json};

use crate::resources::Resource;

/// upstream's `utilrand.String` alphabet (no vowels, no confusable digits).
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

pub fn random_suffix(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| SUFFIX_ALPHABET[rng.random_range(0..SUFFIX_ALPHABET.len())] as char)
        .collect()
}

pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn meta(v: &Value) -> Option<&Map<String, Value>> {
    v.get("metadata").and_then(Value::as_object)
}

pub fn meta_mut(v: &mut Value) -> &mut Map<String, Value> {
    if !v.get("metadata").is_some_and(Value::is_object) {
        v["metadata"] = json!({});
    }
    match v.get_mut("metadata").and_then(Value::as_object_mut) {
        Some(m) => m,
        None => unreachable!("metadata was just made an object"),
    }
}

pub fn meta_str<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    meta(v)?.get(field)?.as_str()
}

pub fn name(v: &Value) -> &str {
    meta_str(v, "name").unwrap_or("")
}

pub fn resource_version(v: &Value) -> &str {
    meta_str(v, "resourceVersion").unwrap_or("")
}

pub fn is_object(v: &Value) -> bool {
    v.is_object()
}

/// Generation upstream gives a new object (and whether the kind has one at all).
fn bump_generation(v: &mut Value, cur: i64) {
    meta_mut(v).insert("generation".into(), json!(cur + 1));
}

fn generation(v: &Value) -> i64 {
    meta(v)
        .and_then(|m| m.get("generation"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

const DS_TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";

/// Initial status of a new object, as the registry strategies' PrepareForCreate leave it.
fn initial_status(res: &Resource, v: &Value) -> Option<Value> {
    Some(match res.kind {
        "Deployment" => json!({}),
        "ReplicaSet" | "ReplicationController" => json!({"replicas": 0}),
        "DaemonSet" => json!({
            "currentNumberScheduled": 0,
            "numberMisscheduled": 0,
            "desiredNumberScheduled": 0,
            "numberReady": 0,
        }),
        "Pod" => json!({"phase": "Pending", "qosClass": qos_class(v)}),
        _ => return None,
    })
}

/// The pod's QoS class (`GetPodQOS`): Guaranteed, Burstable or BestEffort.
pub fn qos_class(pod: &Value) -> &'static str {
    let spec = &pod["spec"];
    let containers = ["initContainers", "containers"]
        .iter()
        .filter_map(|k| spec.get(*k).and_then(Value::as_array))
        .flatten();
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        let req = c["resources"]["requests"].as_object();
        let lim = c["resources"]["limits"].as_object();
        let nonzero = |m: Option<&Map<String, Value>>, k: &str| {
            m.and_then(|m| m.get(k))
                .and_then(Value::as_str)
                .is_some_and(|q| q.trim_start_matches(['0', '.']).chars().next().is_some())
        };
        for r in ["cpu", "memory"] {
            if nonzero(req, r) || nonzero(lim, r) {
                any = true;
            }
            if !nonzero(lim, r) {
                guaranteed = false;
            }
            let (rq, lq) = (req.and_then(|m| m.get(r)), lim.and_then(|m| m.get(r)));
            if rq.is_some() && rq != lq {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

fn is_empty_list(v: &Value) -> bool {
    v.is_null() || v.as_array().is_some_and(Vec::is_empty)
}

/// Set what the server owns on a new object.
pub fn prepare_create(res: &Resource, v: &mut Value) {
    let status = initial_status(res, v);
    let m = meta_mut(v);
    m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    m.insert("creationTimestamp".into(), json!(now_rfc3339()));
    for k in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        m.remove(k);
    }
    // managedFields a client sends are kept (server-side apply sets them); none is none.
    if m.get("managedFields").is_some_and(is_empty_list) {
        m.remove("managedFields");
    }
    if res.has_generation {
        m.insert("generation".into(), json!(1));
    } else {
        m.remove("generation");
    }
    if res.kind == "DaemonSet" {
        let ann = m.entry("annotations").or_insert_with(|| json!({}));
        if let Some(ann) = ann.as_object_mut() {
            ann.insert(DS_TEMPLATE_GENERATION.into(), json!("1"));
        }
    }
    if let Some(status) = status {
        v["status"] = status;
    }
}

/// Carry the server-owned metadata of `cur` into `new` (an update of the main resource or a
/// subresource), and keep the half of the object this endpoint may not change.
/// Which kind of write an update is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// A client's write of the main resource.
    Main,
    /// A write of the /status subresource.
    Status,
    /// The server marking an object deleted: it may set `deletionTimestamp`.
    Deletion,
    /// A pod's binding: sets `spec.nodeName` and the PodScheduled condition in one write.
    Binding,
}

pub fn prepare_update(res: &Resource, cur: &Value, new: &mut Value, write: Write) {
    if write == Write::Status {
        // Only status changes: everything else is the stored object.
        let status = new.get("status").cloned();
        let mut merged = cur.clone();
        match status {
            Some(s) => merged["status"] = s,
            None => {
                if let Some(o) = merged.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        *new = merged;
        return;
    }
    let cur_meta = meta(cur).cloned().unwrap_or_default();
    let m = meta_mut(new);
    let server_owned: &[&str] = if write == Write::Deletion {
        &["uid", "creationTimestamp", "generation"]
    } else {
        &[
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ]
    };
    for k in server_owned {
        match cur_meta.get(*k) {
            Some(v) => m.insert((*k).into(), v.clone()),
            None => m.remove(*k),
        };
    }
    let newly_deleted =
        write == Write::Deletion && cur_meta.get("deletionTimestamp").is_none_or(Value::is_null);
    // managedFields left out of a write are kept; an empty list clears them (as upstream).
    match m.get("managedFields") {
        None => {
            if let Some(f) = cur_meta.get("managedFields") {
                m.insert("managedFields".into(), f.clone());
            }
        }
        Some(f) if is_empty_list(f) => {
            m.remove("managedFields");
        }
        Some(_) => {}
    }
    m.remove("selfLink");
    if res.has_status && write != Write::Binding {
        match cur.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
    if res.has_generation {
        let spec_changed = cur.get("spec") != new.get("spec");
        let annotations_changed = res.kind == "Deployment"
            && cur_meta.get("annotations").filter(|a| !is_empty(a))
                != meta(new)
                    .and_then(|m| m.get("annotations"))
                    .filter(|a| !is_empty(a));
        if spec_changed || annotations_changed || newly_deleted {
            bump_generation(new, generation(cur));
        }
    }
    if res.kind == "DaemonSet" {
        let prev = meta(cur)
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(DS_TEMPLATE_GENERATION))
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(1);
        let next = if cur["spec"]["template"] != new["spec"]["template"] {
            prev + 1
        } else {
            prev
        };
        let m = meta_mut(new);
        let ann = m.entry("annotations").or_insert_with(|| json!({}));
        if !ann.is_object() {
            *ann = json!({});
        }
        if let Some(ann) = ann.as_object_mut() {
            ann.insert(DS_TEMPLATE_GENERATION.into(), json!(next.to_string()));
        }
    }
}

fn is_empty(v: &Value) -> bool {
    v.is_null() || v.as_object().is_some_and(Map::is_empty)
}

/// The object as stored: the resourceVersion lives in the store, not in the bytes.
pub fn strip_resource_version(v: &mut Value) {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
}

pub fn set_resource_version(v: &mut Value, rev: i64) {
    meta_mut(v).insert("resourceVersion".into(), json!(rev.to_string()));
}

/// `metadata.finalizers` as strings.
pub fn finalizers(v: &Value) -> Vec<String> {
    meta(v)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

pub fn is_deleting(v: &Value) -> bool {
    meta(v).is_some_and(|m| m.get("deletionTimestamp").is_some_and(|t| !t.is_null()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::by_kind;

    #[test]
    fn generate_name_alphabet() {
        let s = random_suffix(5);
        assert_eq!(s.len(), 5);
        assert!(s.bytes().all(|b| SUFFIX_ALPHABET.contains(&b)));
    }

    #[test]
    fn qos_classes() {
        let best = json!({"spec": {"containers": [{"name": "a"}]}});
        let guaranteed = json!({"spec": {"containers": [{"name": "a", "resources": {
            "limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}}]}});
        let burst = json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}]}});
        assert_eq!(qos_class(&best), "BestEffort");
        assert_eq!(qos_class(&guaranteed), "Guaranteed");
        assert_eq!(qos_class(&burst), "Burstable");
    }

    #[test]
    fn generation_moves_on_spec_only() -> Result<(), String> {
        let rs = by_kind("ReplicaSet").ok_or("rs")?;
        let cur = json!({"metadata": {"name": "a", "generation": 3, "labels": {"x": "1"}},
            "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let mut labels_only = json!({"metadata": {"name": "a", "labels": {"x": "2"}},
            "spec": {"replicas": 1}, "status": {"replicas": 9}});
        prepare_update(rs, &cur, &mut labels_only, Write::Main);
        assert_eq!(labels_only["metadata"]["generation"], 3);
        assert_eq!(
            labels_only["status"]["replicas"], 1,
            "status is ignored on the main resource"
        );
        let mut scaled = json!({"metadata": {"name": "a"}, "spec": {"replicas": 2}});
        prepare_update(rs, &cur, &mut scaled, Write::Main);
        assert_eq!(scaled["metadata"]["generation"], 4);
        let mut status =
            json!({"metadata": {"name": "a"}, "spec": {"replicas": 7}, "status": {"replicas": 2}});
        prepare_update(rs, &cur, &mut status, Write::Status);
        assert_eq!(
            (
                status["spec"]["replicas"].as_i64(),
                status["status"]["replicas"].as_i64()
            ),
            (Some(1), Some(2))
        );
        Ok(())
    }

    #[test]
    fn daemonset_template_generation() -> Result<(), String> {
        let ds = by_kind("DaemonSet").ok_or("ds")?;
        let mut v = json!({"metadata": {"name": "d"}, "spec": {"template": {"spec": {}}}});
        prepare_create(ds, &mut v);
        assert_eq!(v["metadata"]["annotations"][DS_TEMPLATE_GENERATION], "1");
        assert_eq!(v["metadata"]["generation"], 1);
        let mut changed = v.clone();
        changed["spec"]["template"]["spec"]["x"] = json!(1);
        prepare_update(ds, &v, &mut changed, Write::Main);
        assert_eq!(
            changed["metadata"]["annotations"][DS_TEMPLATE_GENERATION],
            "2"
        );
        assert_eq!(changed["metadata"]["generation"], 2);
        Ok(())
    }
}
