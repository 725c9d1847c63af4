//! Server-side apply (`PATCH` with `application/apply-patch+yaml`): the applied configuration
//! is merged into the live object as a strategic merge patch would merge it, and the fields it
//! names are recorded as its manager's in `metadata.managedFields` (FieldsV1). A later apply by
//! the same manager that no longer names a field removes it, unless another manager owns it
//! too; naming a field that another manager applied with a different value is a conflict
//! (409, `Apply failed with N conflict(s): …`) unless `force=true`, which takes it over.
//!
//! ger records ownership for apply only: writes by PUT and the other patch types change the
//! object but are not entered as `Update` managers.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::errors::ApiError;
use crate::patch::{self, ListStrategy, Schema};

/// A FieldsV1 set: `f:<field>`, `k:<key json>`, `v:<value json>` and `.` (the element itself).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSet(pub BTreeMap<String, FieldSet>);

impl FieldSet {
    pub fn to_json(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect(),
        )
    }

    pub fn from_json(v: &Value) -> FieldSet {
        FieldSet(
            v.as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), FieldSet::from_json(v)))
                        .collect()
                })
                .unwrap_or_default(),
        )
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every path to a leaf (a node without children, or an element's `.`).
    fn leaves(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        for (k, child) in &self.0 {
            if k == "." {
                out.push(Vec::new());
                continue;
            }
            if child.is_empty() {
                out.push(vec![k.clone()]);
            } else {
                for mut p in child.leaves() {
                    p.insert(0, k.clone());
                    out.push(p);
                }
            }
        }
        out
    }

    fn contains(&self, path: &[String]) -> bool {
        match path.split_first() {
            None => true,
            Some((k, rest)) => self.0.get(k).is_some_and(|c| {
                if rest.is_empty() {
                    true
                } else {
                    c.contains(rest)
                }
            }),
        }
    }

    fn node(&self, path: &[String]) -> Option<&FieldSet> {
        match path.split_first() {
            None => Some(self),
            Some((k, rest)) => self.0.get(k)?.node(rest),
        }
    }

    fn remove(&mut self, path: &[String]) {
        let Some((k, rest)) = path.split_first() else {
            return;
        };
        if rest.is_empty() {
            self.0.remove(k);
            return;
        }
        if let Some(c) = self.0.get_mut(k) {
            c.remove(rest);
            if c.is_empty() {
                self.0.remove(k);
            }
        }
    }
}

/// The fields an applied configuration names.
pub fn fields_of(applied: &Value, kind: &str) -> FieldSet {
    let mut set = FieldSet::default();
    if let Some(m) = applied.as_object() {
        for (k, v) in m {
            if matches!(k.as_str(), "apiVersion" | "kind") {
                continue;
            }
            let child = Schema::for_kind(kind).child(k);
            let sub = if k == "metadata" {
                meta_fields(v)
            } else {
                value_fields(v, child, None)
            };
            if k != "metadata" || !sub.is_empty() {
                set.0.insert(format!("f:{k}"), sub);
            }
        }
    }
    set
}

/// `metadata` names only what can be owned: not its identity.
fn meta_fields(v: &Value) -> FieldSet {
    let mut set = FieldSet::default();
    for (k, v) in v.as_object().into_iter().flatten() {
        if matches!(
            k.as_str(),
            "name"
                | "namespace"
                | "uid"
                | "resourceVersion"
                | "generation"
                | "managedFields"
                | "creationTimestamp"
                | "generateName"
        ) {
            continue;
        }
        set.0.insert(
            format!("f:{k}"),
            value_fields(v, Schema::Meta.child(k), Some((Schema::Meta, k))),
        );
    }
    set
}

fn value_fields(v: &Value, schema: Schema, list_of: Option<(Schema, &str)>) -> FieldSet {
    match v {
        Value::Object(m) => {
            let mut set = FieldSet::default();
            for (k, v) in m {
                let child = schema.child(k);
                set.0
                    .insert(format!("f:{k}"), value_fields(v, child, Some((schema, k))));
            }
            set
        }
        Value::Array(items) => {
            let Some((parent, field)) = list_of else {
                return FieldSet::default();
            };
            match parent.list(field) {
                ListStrategy::Atomic => FieldSet::default(),
                ListStrategy::Primitive => FieldSet(
                    items
                        .iter()
                        .map(|i| (format!("v:{i}"), FieldSet::default()))
                        .collect(),
                ),
                ListStrategy::Keyed { key, item } => {
                    let mut set = FieldSet::default();
                    for i in items {
                        let Some(id) = i.get(key) else { continue };
                        let mut sub = value_fields(i, item, None);
                        sub.0.insert(".".into(), FieldSet::default());
                        set.0.insert(format!("k:{}", json!({ key: id })), sub);
                    }
                    set
                }
            }
        }
        _ => FieldSet::default(),
    }
}

/// The value at a FieldsV1 path, if there.
fn value_at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    let Some((k, rest)) = path.split_first() else {
        return Some(v);
    };
    let next = if let Some(f) = k.strip_prefix("f:") {
        v.get(f)?
    } else if let Some(key) = k.strip_prefix("k:") {
        let want: Map<String, Value> = serde_json::from_str(key).ok()?;
        v.as_array()?
            .iter()
            .find(|i| want.iter().all(|(k, x)| i.get(k) == Some(x)))?
    } else if let Some(val) = k.strip_prefix("v:") {
        let want: Value = serde_json::from_str(val).ok()?;
        v.as_array()?.iter().find(|i| **i == want)?
    } else {
        return value_at(v, rest);
    };
    value_at(next, rest)
}

/// Remove what a FieldsV1 path names from `v`.
fn remove_at(v: &mut Value, path: &[String]) {
    let Some((k, rest)) = path.split_first() else {
        return;
    };
    let last = rest.is_empty();
    if let Some(f) = k.strip_prefix("f:") {
        if last {
            if let Some(m) = v.as_object_mut() {
                m.remove(f);
            }
        } else if let Some(next) = v.get_mut(f) {
            remove_at(next, rest);
        }
    } else if let Some(key) = k.strip_prefix("k:") {
        let Ok(want) = serde_json::from_str::<Map<String, Value>>(key) else {
            return;
        };
        let Some(list) = v.as_array_mut() else { return };
        let hit = |i: &Value| want.iter().all(|(k, x)| i.get(k) == Some(x));
        if last {
            list.retain(|i| !hit(i));
        } else if let Some(item) = list.iter_mut().find(|i| hit(i)) {
            remove_at(item, rest);
        }
    } else if let Some(val) = k.strip_prefix("v:") {
        let Ok(want) = serde_json::from_str::<Value>(val) else {
            return;
        };
        if let Some(list) = v.as_array_mut() {
            list.retain(|i| *i != want);
        }
    }
}

/// The largest pieces of `prev` that `new` no longer names and no one in `others` owns any
/// part of, each as a path.
fn removals(
    prev: &FieldSet,
    new: Option<&FieldSet>,
    others: &[&Entry],
    path: &mut Vec<String>,
    out: &mut Vec<Vec<String>>,
) {
    for (k, child) in &prev.0 {
        if k == "." {
            continue;
        }
        path.push(k.clone());
        match new.and_then(|n| n.0.get(k)) {
            Some(still) => removals(child, Some(still), others, path, out),
            None if !others.iter().any(|o| o.fields.node(path).is_some()) => {
                out.push(path.clone());
            }
            None => removals(child, None, others, path, out),
        }
        path.pop();
    }
}

/// A FieldsV1 path as upstream prints it in conflicts: `.spec.containers[name="app"].image`.
fn path_string(path: &[String]) -> String {
    let mut out = String::new();
    for k in path {
        if let Some(f) = k.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(key) = k.strip_prefix("k:") {
            let m: Map<String, Value> = serde_json::from_str(key).unwrap_or_default();
            let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = k.strip_prefix("v:") {
            out.push_str(&format!("[={v}]"));
        }
    }
    out
}

/// One `managedFields` entry.
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    fields: FieldSet,
    raw: Value,
}

fn entries(live: &Value) -> Vec<Entry> {
    live["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| Entry {
            manager: e["manager"].as_str().unwrap_or_default().to_string(),
            operation: e["operation"].as_str().unwrap_or_default().to_string(),
            api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
            fields: FieldSet::from_json(&e["fieldsV1"]),
            raw: e.clone(),
        })
        .collect()
}

/// What an apply request asks.
pub struct Apply<'a> {
    pub applied: &'a Value,
    pub manager: &'a str,
    pub force: bool,
    pub kind: &'a str,
    pub api_version: &'a str,
    pub now: String,
}

impl Apply<'_> {
    fn entry(&self, fields: &FieldSet) -> Value {
        json!({"manager": self.manager, "operation": "Apply", "apiVersion": self.api_version,
            "time": self.now, "fieldsType": "FieldsV1", "fieldsV1": fields.to_json()})
    }

    /// The object to create: the applied configuration, owned by its manager.
    pub fn create(&self) -> Value {
        let mut v = self.applied.clone();
        let fields = fields_of(self.applied, self.kind);
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.insert("managedFields".into(), json!([self.entry(&fields)]));
        }
        v
    }

    /// The live object `live` after this apply, or the conflicts.
    pub fn merge(&self, live: &Value) -> Result<Value, ApiError> {
        let new_set = fields_of(self.applied, self.kind);
        let all = entries(live);
        let mine = |e: &Entry| e.manager == self.manager && e.operation == "Apply";
        let prev = all
            .iter()
            .find(|e| mine(e))
            .map(|e| e.fields.clone())
            .unwrap_or_default();
        let others: Vec<&Entry> = all.iter().filter(|e| !mine(e)).collect();
        // Conflicts: a field another manager owns, applied with another value.
        let mut conflicts: Vec<(String, String, String)> = Vec::new();
        let mut taken: Vec<(usize, Vec<String>)> = Vec::new();
        for path in new_set.leaves() {
            // An element itself is not a value to compare; its fields are.
            if path.last().is_some_and(|k| k.starts_with("k:")) {
                continue;
            }
            for (i, o) in others.iter().enumerate() {
                if !o.fields.contains(&path) {
                    continue;
                }
                let differs = value_at(live, &path) != value_at(self.applied, &path);
                if differs {
                    conflicts.push((o.manager.clone(), o.api_version.clone(), path_string(&path)));
                    taken.push((i, path.clone()));
                }
            }
        }
        if !conflicts.is_empty() && !self.force {
            return Err(conflict_error(&conflicts));
        }
        // Fields this manager applied before and no longer does go, unless someone else has them.
        let mut out = live.clone();
        let mut gone = Vec::new();
        removals(&prev, Some(&new_set), &others, &mut Vec::new(), &mut gone);
        for path in gone {
            remove_at(&mut out, &path);
        }
        let mut applied = self.applied.clone();
        if let Some(m) = applied.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("managedFields");
        }
        let mut out = patch::strategic_merge_patch(&out, &applied, self.kind)
            .map_err(|e| ApiError::bad_request(format!("{e:?}")))?;
        // Managers: this one's entry replaced; forced fields leave their old owners.
        let mut managed: Vec<Value> = Vec::new();
        for (i, o) in others.iter().enumerate() {
            let mut fields = o.fields.clone();
            for (j, p) in &taken {
                if *j == i {
                    fields.remove(p);
                }
            }
            if fields.is_empty() {
                continue;
            }
            let mut raw = o.raw.clone();
            raw["fieldsV1"] = fields.to_json();
            managed.push(raw);
        }
        managed.push(self.entry(&new_set));
        if let Some(m) = out.get_mut("metadata").and_then(Value::as_object_mut) {
            m.insert("managedFields".into(), Value::Array(managed));
        }
        Ok(out)
    }
}

fn conflict_error(conflicts: &[(String, String, String)]) -> ApiError {
    let n = conflicts.len();
    let lines: Vec<String> = conflicts
        .iter()
        .map(|(m, v, p)| format!("conflict with \"{m}\" using {v}: {p}"))
        .collect();
    let message = if n == 1 {
        format!("Apply failed with 1 conflict: {}", lines[0])
    } else {
        format!("Apply failed with {n} conflicts: {}", lines.join("\n"))
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(m, v, p)| {
            json!({"reason": "FieldManagerConflict",
                "message": format!("conflict with \"{m}\" using {v}"), "field": p})
        })
        .collect();
    ApiError {
        code: 409,
        reason: "Conflict",
        message,
        details: Some(json!({"causes": causes})),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn apply<'a>(applied: &'a Value, manager: &'a str, force: bool) -> Apply<'a> {
        Apply {
            applied,
            manager,
            force,
            kind: "Deployment",
            api_version: "apps/v1",
            now: "2026-12-02T00:00:00Z".into(),
        }
    }

    fn deploy(replicas: i64, env: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [
                {"name": "app", "image": "nginx:1.25", "env": env}]}}}})
    }

    #[test]
    fn fields_are_recorded_as_upstream_names_them() {
        let set = fields_of(
            &deploy(2, json!([{"name": "A", "value": "1"}])),
            "Deployment",
        );
        let v = set.to_json();
        assert_eq!(v["f:metadata"], json!({"f:labels": {"f:app": {}}}));
        assert_eq!(v["f:spec"]["f:replicas"], json!({}));
        let c = &v["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"];
        assert_eq!(c["."], json!({}));
        assert_eq!(c["f:image"], json!({}));
        assert_eq!(c["f:env"]["k:{\"name\":\"A\"}"]["f:value"], json!({}));
    }

    #[test]
    fn a_field_left_out_is_removed_unless_shared() {
        let first = deploy(
            2,
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]),
        );
        let live = apply(&first, "ci", false).create();
        let second = deploy(2, json!([{"name": "A", "value": "1"}]));
        let out = apply(&second, "ci", false).merge(&live).unwrap();
        let env = &out["spec"]["template"]["spec"]["containers"][0]["env"];
        assert_eq!(env, &json!([{"name": "A", "value": "1"}]));
        // Dropping replicas from the config removes it.
        let mut third = second.clone();
        third["spec"].as_object_mut().unwrap().remove("replicas");
        let out = apply(&third, "ci", false).merge(&out).unwrap();
        assert!(out["spec"].get("replicas").is_none(), "{out}");
        assert_eq!(
            out["metadata"]["managedFields"].as_array().unwrap().len(),
            1
        );
    }

    #[test]
    fn other_managers_conflict_unless_forced() {
        let live = apply(&deploy(2, json!([])), "ci", false).create();
        let scaler = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"}, "spec": {"replicas": 5}});
        let e = apply(&scaler, "autoscaler", false)
            .merge(&live)
            .unwrap_err();
        assert_eq!(e.code, 409);
        assert_eq!(
            e.message,
            "Apply failed with 1 conflict: conflict with \"ci\" using apps/v1: .spec.replicas"
        );
        // The same value is no conflict: both own it.
        let same = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"}, "spec": {"replicas": 2}});
        let shared = apply(&same, "autoscaler", false).merge(&live).unwrap();
        assert_eq!(
            shared["metadata"]["managedFields"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        // Forced: the field changes hands.
        let out = apply(&scaler, "autoscaler", true).merge(&live).unwrap();
        assert_eq!(out["spec"]["replicas"], 5);
        let managed = out["metadata"]["managedFields"].as_array().unwrap();
        let ci = managed.iter().find(|m| m["manager"] == "ci").unwrap();
        assert!(ci["fieldsV1"]["f:spec"].get("f:replicas").is_none(), "{ci}");
        // And ci leaving replicas out now keeps the autoscaler's value.
        let mut ci_again = deploy(2, json!([]));
        ci_again["spec"].as_object_mut().unwrap().remove("replicas");
        let out = apply(&ci_again, "ci", false).merge(&out).unwrap();
        assert_eq!(out["spec"]["replicas"], 5);
    }
}
