//! The three patch formats kube-apiserver accepts: JSON patch (RFC 6902), JSON merge
//! patch (RFC 7386) and strategic merge patch, whose list semantics come from the
//! `patchStrategy`/`patchMergeKey` tags of the Kubernetes types (see [`Schema`]).

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchError {
    /// The patch itself is malformed (400).
    BadRequest(String),
    /// The patch is well formed but cannot be applied to this object (422).
    Unprocessable(String),
}

type PResult<T> = Result<T, PatchError>;

fn bad(msg: impl Into<String>) -> PatchError {
    PatchError::BadRequest(msg.into())
}

fn unprocessable(msg: impl Into<String>) -> PatchError {
    PatchError::Unprocessable(msg.into())
}

// ---------------------------------------------------------------------------------------
// JSON patch

/// Applies an RFC 6902 patch document (an array of operations).
pub fn json_patch(doc: &Value, patch: &Value) -> PResult<Value> {
    let ops = patch.as_array().ok_or_else(|| {
        bad("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    })?;
    let mut doc = doc.clone();
    for op in ops {
        let name = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| unprocessable("Unexpected kind: missing op"))?;
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| unprocessable(format!("operation {name} is missing path")))?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| unprocessable(format!("{name} operation missing value")))
        };
        let from = || {
            op.get("from")
                .and_then(Value::as_str)
                .ok_or_else(|| unprocessable(format!("{name} operation missing from")))
        };
        match name {
            "add" => pointer_add(&mut doc, path, value()?)?,
            "remove" => {
                pointer_remove(&mut doc, path)?;
            }
            "replace" => {
                pointer_remove(&mut doc, path).map_err(|_| {
                    unprocessable(format!(
                        "replace operation does not apply: doc is missing key: {path}"
                    ))
                })?;
                pointer_add(&mut doc, path, value()?)?;
            }
            "move" => {
                let v = pointer_remove(&mut doc, from()?)?;
                pointer_add(&mut doc, path, v)?;
            }
            "copy" => {
                let v = doc.pointer(from()?).cloned().ok_or_else(|| {
                    unprocessable(format!(
                        "copy operation does not apply: doc is missing from path: {}",
                        from().unwrap_or_default()
                    ))
                })?;
                pointer_add(&mut doc, path, v)?;
            }
            "test" => {
                let want = value()?;
                if doc.pointer(path) != Some(&want) {
                    return Err(unprocessable(format!(
                        "testing value {path} failed: test failed"
                    )));
                }
            }
            other => return Err(unprocessable(format!("Unexpected kind: {other}"))),
        }
    }
    Ok(doc)
}

fn split_pointer(path: &str) -> PResult<(String, String)> {
    if path.is_empty() {
        return Err(unprocessable(
            "add operation does not apply: doc is missing path: \"\"",
        ));
    }
    if !path.starts_with('/') {
        return Err(unprocessable(format!(
            "JSON pointer must start with '/': {path}"
        )));
    }
    let idx = path.rfind('/').unwrap_or(0);
    let last = path[idx + 1..].replace("~1", "/").replace("~0", "~");
    Ok((path[..idx].to_string(), last))
}

fn missing(path: &str) -> PatchError {
    unprocessable(format!("doc is missing path: \"{path}\": missing value"))
}

fn pointer_add(doc: &mut Value, path: &str, value: Value) -> PResult<()> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    let target = doc.pointer_mut(&parent).ok_or_else(|| missing(path))?;
    match target {
        Value::Object(m) => {
            m.insert(last, value);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
                return Ok(());
            }
            let i: usize = last.parse().map_err(|_| {
                unprocessable(format!(
                    "add operation does not apply: invalid index {last:?}"
                ))
            })?;
            if i > a.len() {
                return Err(unprocessable(format!(
                    "add operation does not apply: index out of bounds: {i}"
                )));
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err(missing(path)),
    }
}

fn pointer_remove(doc: &mut Value, path: &str) -> PResult<Value> {
    let (parent, last) = split_pointer(path)?;
    let target = doc.pointer_mut(&parent).ok_or_else(|| missing(path))?;
    match target {
        Value::Object(m) => m.remove(&last).ok_or_else(|| missing(path)),
        Value::Array(a) => {
            let i: usize = last.parse().map_err(|_| missing(path))?;
            if i >= a.len() {
                return Err(missing(path));
            }
            Ok(a.remove(i))
        }
        _ => Err(missing(path)),
    }
}

// ---------------------------------------------------------------------------------------
// JSON merge patch

/// Applies an RFC 7386 merge patch: `null` deletes, objects merge, everything else replaces.
pub fn merge_patch(doc: &Value, patch: &Value) -> PResult<Value> {
    if !patch.is_object() {
        return Err(bad(
            "json: cannot unmarshal into Go value of type map[string]interface {}",
        ));
    }
    Ok(merge_value(Some(doc), patch))
}

fn merge_value(doc: Option<&Value>, patch: &Value) -> Value {
    let Value::Object(p) = patch else {
        return patch.clone();
    };
    let mut out = match doc {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    for (k, v) in p {
        if v.is_null() {
            out.remove(k);
        } else {
            let merged = merge_value(out.get(k), v);
            out.insert(k.clone(), merged);
        }
    }
    Value::Object(out)
}

// ---------------------------------------------------------------------------------------
// Strategic merge patch

/// Where a value sits in a Kubernetes object, enough to know each list's patch strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Schema {
    Object(&'static str),
    Meta,
    WorkloadSpec,
    Template,
    PodSpec,
    Container,
    Status(&'static str),
    NodeSpec,
    ServiceSpec,
    /// A map whose lists are all atomic.
    Plain,
}

/// How a list field merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListStrategy {
    Atomic,
    /// A set of primitives (`finalizers`).
    Primitive,
    /// A list of maps identified by `key`.
    Keyed {
        key: &'static str,
        item: Schema,
    },
}

impl Schema {
    pub(crate) fn for_kind(kind: &str) -> Schema {
        const KINDS: [&str; 14] = [
            "Service",
            "ServiceAccount",
            "Pod",
            "Node",
            "Namespace",
            "Event",
            "ReplicationController",
            "Deployment",
            "ReplicaSet",
            "DaemonSet",
            "StatefulSet",
            "ControllerRevision",
            "Lease",
            "Scale",
        ];
        KINDS
            .iter()
            .find(|k| **k == kind)
            .map_or(Schema::Object("Unknown"), |k| Schema::Object(k))
    }

    pub(crate) fn child(self, field: &str) -> Schema {
        match (self, field) {
            (Schema::Object(_), "metadata") | (Schema::Template, "metadata") => Schema::Meta,
            (Schema::Object("Pod"), "spec") | (Schema::Template, "spec") => Schema::PodSpec,
            (Schema::Object("Node"), "spec") => Schema::NodeSpec,
            (Schema::Object("Service"), "spec") => Schema::ServiceSpec,
            (
                Schema::Object(
                    "Deployment"
                    | "ReplicaSet"
                    | "DaemonSet"
                    | "StatefulSet"
                    | "ReplicationController",
                ),
                "spec",
            ) => Schema::WorkloadSpec,
            (Schema::Object(kind), "status") => Schema::Status(kind),
            (Schema::WorkloadSpec, "template") => Schema::Template,
            _ => Schema::Plain,
        }
    }

    pub(crate) fn list(self, field: &str) -> ListStrategy {
        let keyed = |key, item| ListStrategy::Keyed { key, item };
        match (self, field) {
            (Schema::Meta, "finalizers") => ListStrategy::Primitive,
            (Schema::Meta, "ownerReferences") => keyed("uid", Schema::Plain),
            (Schema::PodSpec, "containers" | "initContainers" | "ephemeralContainers") => {
                keyed("name", Schema::Container)
            }
            (
                Schema::PodSpec,
                "volumes" | "resourceClaims" | "imagePullSecrets" | "schedulingGates",
            ) => keyed("name", Schema::Plain),
            (Schema::PodSpec, "hostAliases") => keyed("ip", Schema::Plain),
            (Schema::PodSpec, "topologySpreadConstraints") => keyed("topologyKey", Schema::Plain),
            (Schema::Container, "ports") => keyed("containerPort", Schema::Plain),
            (Schema::Container, "env") => keyed("name", Schema::Plain),
            (Schema::Container, "volumeMounts") => keyed("mountPath", Schema::Plain),
            (Schema::Container, "volumeDevices") => keyed("devicePath", Schema::Plain),
            (Schema::Status(_), "conditions") => keyed("type", Schema::Plain),
            (Schema::Status("Pod"), "podIPs" | "hostIPs") => keyed("ip", Schema::Plain),
            (Schema::Status("Node"), "addresses") => keyed("type", Schema::Plain),
            (Schema::NodeSpec, "podCIDRs") => ListStrategy::Primitive,
            (Schema::ServiceSpec, "ports") => keyed("port", Schema::Plain),
            (Schema::Object("ServiceAccount"), "secrets") => keyed("name", Schema::Plain),
            _ => ListStrategy::Atomic,
        }
    }
}

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_FROM: &str = "$deleteFromPrimitiveList/";

/// Applies a strategic merge patch to `doc`, an object of the given kind.
pub fn strategic_merge_patch(doc: &Value, patch: &Value, kind: &str) -> PResult<Value> {
    let Value::Object(p) = patch else {
        return Err(bad(
            "json: cannot unmarshal array into Go value of type map[string]interface {}",
        ));
    };
    let Value::Object(d) = doc else {
        return Err(bad("invalid JSON document"));
    };
    let merged = merge_map(d.clone(), p, Schema::for_kind(kind))?;
    Ok(Value::Object(merged.unwrap_or_default()))
}

/// Merges `patch` into `original`; `None` means the map was deleted by `$patch: delete`.
fn merge_map(
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
    schema: Schema,
) -> PResult<Option<Map<String, Value>>> {
    match patch.get(DIRECTIVE) {
        None => {}
        Some(Value::String(d)) if d == "replace" => {
            let mut out = patch.clone();
            out.remove(DIRECTIVE);
            return Ok(Some(strip_nulls(out)));
        }
        Some(Value::String(d)) if d == "delete" => return Ok(None),
        Some(Value::String(d)) if d == "merge" => {}
        Some(other) => {
            return Err(bad(format!(
                "Unknown patch type: {}, for map: {}",
                other,
                Value::Object(patch.clone())
            )));
        }
    }
    if let Some(keys) = patch.get(RETAIN_KEYS) {
        let keys = keys
            .as_array()
            .ok_or_else(|| bad("invalid patch format: $retainKeys must be a list of strings"))?;
        let keep: Vec<&str> = keys.iter().filter_map(Value::as_str).collect();
        if keys.len() != keep.len() {
            return Err(bad(
                "invalid patch format: $retainKeys must be a list of strings",
            ));
        }
        for (k, v) in patch {
            if !k.starts_with('$') && !v.is_null() && !keep.contains(&k.as_str()) {
                return Err(unprocessable(
                    "The $retainKeys list must contain every key in the patch",
                ));
            }
        }
        original.retain(|k, _| keep.contains(&k.as_str()));
    }
    // Deletions from primitive lists come first, as upstream does.
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix(DELETE_FROM) {
            let remove = v.as_array().ok_or_else(|| {
                bad("invalid patch format: $deleteFromPrimitiveList must be a list")
            })?;
            if let Some(Value::Array(list)) = original.get_mut(field) {
                list.retain(|item| !remove.contains(item));
            }
        }
    }
    for (k, v) in patch {
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            original.remove(k);
            continue;
        }
        let merged = match (original.remove(k), v) {
            (Some(Value::Object(o)), Value::Object(pm)) => {
                merge_map(o, pm, schema.child(k))?.map(Value::Object)
            }
            (None, Value::Object(pm)) => {
                merge_map(Map::new(), pm, schema.child(k))?.map(Value::Object)
            }
            (Some(Value::Array(o)), Value::Array(pl)) => {
                Some(Value::Array(merge_list(o, pl, schema.list(k), k)?))
            }
            (None, Value::Array(pl)) => {
                Some(Value::Array(merge_list(Vec::new(), pl, schema.list(k), k)?))
            }
            (_, other) => Some(other.clone()),
        };
        if let Some(m) = merged {
            original.insert(k.clone(), m);
        }
    }
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix(SET_ORDER) {
            let order = v
                .as_array()
                .ok_or_else(|| bad("invalid patch format: $setElementOrder must be a list"))?;
            if let Some(Value::Array(list)) = original.get_mut(field) {
                let key = match schema.list(field) {
                    ListStrategy::Keyed { key, .. } => Some(key),
                    _ => None,
                };
                let taken = std::mem::take(list);
                *list = reorder(taken, order, key);
            }
        }
    }
    Ok(Some(original))
}

fn strip_nulls(mut m: Map<String, Value>) -> Map<String, Value> {
    m.retain(|_, v| !v.is_null());
    m
}

fn merge_key_of<'a>(item: &'a Value, key: &str) -> Option<&'a Value> {
    item.as_object().and_then(|m| m.get(key))
}

fn merge_list(
    original: Vec<Value>,
    patch: &[Value],
    strategy: ListStrategy,
    field: &str,
) -> PResult<Vec<Value>> {
    match strategy {
        ListStrategy::Atomic => Ok(patch.to_vec()),
        ListStrategy::Primitive => {
            if patch.iter().any(Value::is_object) {
                return Err(bad(format!(
                    "invalid patch format: merging a list of primitives, {field} has a map"
                )));
            }
            let mut out = original;
            for v in patch {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
            Ok(out)
        }
        ListStrategy::Keyed { key, item } => {
            let is_directive =
                |v: &Value, d: &str| v.get(DIRECTIVE).and_then(Value::as_str) == Some(d);
            if patch.iter().any(|v| is_directive(v, "replace")) {
                return Ok(patch
                    .iter()
                    .filter(|v| !is_directive(v, "replace"))
                    .cloned()
                    .collect());
            }
            let mut out = original;
            for p in patch {
                let Value::Object(pm) = p else {
                    return Err(bad(format!(
                        "invalid patch format: list {field} must contain maps"
                    )));
                };
                let id = pm.get(key).ok_or_else(|| {
                    bad(format!(
                        "map: {p} does not contain declared merge key: {key}"
                    ))
                })?;
                let pos = out.iter().position(|o| merge_key_of(o, key) == Some(id));
                if is_directive(p, "delete") {
                    out.retain(|o| merge_key_of(o, key) != Some(id));
                    continue;
                }
                match pos {
                    Some(i) => {
                        let base = match std::mem::take(&mut out[i]) {
                            Value::Object(m) => m,
                            _ => Map::new(),
                        };
                        match merge_map(base, pm, item)? {
                            Some(m) => out[i] = Value::Object(m),
                            None => {
                                out.remove(i);
                            }
                        }
                    }
                    None => {
                        if let Some(m) = merge_map(Map::new(), pm, item)? {
                            out.push(Value::Object(m));
                        }
                    }
                }
            }
            Ok(out)
        }
    }
}

/// Orders `list` as `$setElementOrder` asks: the items it names in its order, the others
/// keeping their relative place (upstream's `normalizeElementOrder`).
fn reorder(list: Vec<Value>, order: &[Value], key: Option<&str>) -> Vec<Value> {
    let id_of = |v: &Value| -> Value {
        match key {
            Some(k) => merge_key_of(v, k).cloned().unwrap_or(Value::Null),
            None => v.clone(),
        }
    };
    let wanted: Vec<Value> = order.iter().map(&id_of).collect();
    let rank = |v: &Value| wanted.iter().position(|w| *w == id_of(v));
    let mut named: Vec<(usize, usize, Value)> = Vec::new();
    let mut others: Vec<(usize, Value)> = Vec::new();
    for (i, v) in list.into_iter().enumerate() {
        match rank(&v) {
            Some(r) => named.push((r, i, v)),
            None => others.push((i, v)),
        }
    }
    named.sort_by_key(|(r, _, _)| *r);
    let mut out = Vec::with_capacity(named.len() + others.len());
    let mut named = named.into_iter().peekable();
    let mut others = others.into_iter().peekable();
    loop {
        match (named.peek(), others.peek()) {
            (Some((_, ni, _)), Some((oi, _))) => {
                if ni < oi {
                    out.extend(named.next().map(|t| t.2));
                } else {
                    out.extend(others.next().map(|t| t.1));
                }
            }
            (Some(_), None) => out.extend(named.next().map(|t| t.2)),
            (None, Some(_)) => out.extend(others.next().map(|t| t.1)),
            (None, None) => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy() -> Value {
        json!({
            "kind": "Deployment",
            "metadata": {"name": "d", "finalizers": ["a", "b"], "labels": {"app": "x", "tier": "web"}},
            "spec": {
                "replicas": 1,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "template": {"spec": {
                    "containers": [
                        {"name": "a", "image": "a:1", "args": ["x", "y"], "env": [{"name": "E1", "value": "1"}]},
                        {"name": "b", "image": "b:1"}
                    ],
                    "tolerations": [{"key": "k1"}],
                    "volumes": [{"name": "v", "emptyDir": {}}]
                }}
            }
        })
    }

    #[test]
    fn smp_table() {
        let cases: Vec<(&str, Value, Value)> = vec![
            (
                "set image merges containers by name",
                json!({"spec":{"template":{"spec":{"containers":[{"name":"b","image":"b:2"}]}}}}),
                json!({"name":"b","image":"b:2"}),
            ),
            (
                "new container is appended",
                json!({"spec":{"template":{"spec":{"containers":[{"name":"c","image":"c:1"}]}}}}),
                json!({"name":"c","image":"c:1"}),
            ),
        ];
        for (name, patch, want_last) in cases {
            let out = strategic_merge_patch(&deploy(), &patch, "Deployment").unwrap();
            let cs = out
                .pointer("/spec/template/spec/containers")
                .unwrap()
                .as_array()
                .unwrap();
            assert_eq!(cs.last().unwrap(), &want_last, "{name}");
            assert_eq!(cs[0]["image"], "a:1", "{name}: container a untouched");
        }
    }

    #[test]
    fn service_ports_merge_by_port() {
        let svc = json!({"spec": {"ports": [
            {"name": "metrics", "port": 9100, "targetPort": 9100},
            {"name": "http", "port": 80, "targetPort": 8080}]}});
        // What `kubectl apply` sends when one port's targetPort changes.
        let patch = json!({"spec": {"$setElementOrder/ports": [{"port": 9100}, {"port": 80}],
            "ports": [{"port": 80, "targetPort": 8081}]}});
        let out = strategic_merge_patch(&svc, &patch, "Service").unwrap();
        assert_eq!(
            out["spec"]["ports"],
            json!([{"name": "metrics", "port": 9100, "targetPort": 9100},
                {"name": "http", "port": 80, "targetPort": 8081}])
        );
    }

    #[test]
    fn smp_directives() {
        let d = deploy();
        // null deletes a key
        let out = strategic_merge_patch(
            &d,
            &json!({"metadata":{"labels":{"tier":null}}}),
            "Deployment",
        )
        .unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"app":"x"}));
        // atomic lists are replaced
        let out = strategic_merge_patch(
            &d,
            &json!({"spec":{"template":{"spec":{"tolerations":[{"key":"k2"}]}}}}),
            "Deployment",
        )
        .unwrap();
        assert_eq!(
            out.pointer("/spec/template/spec/tolerations").unwrap(),
            &json!([{"key":"k2"}])
        );
        // args inside a container are atomic too, env merges by name
        let out = strategic_merge_patch(&d, &json!({"spec":{"template":{"spec":{"containers":[{"name":"a","args":["z"],"env":[{"name":"E2","value":"2"}]}]}}}}), "Deployment").unwrap();
        let a = out.pointer("/spec/template/spec/containers/0").unwrap();
        assert_eq!(a["args"], json!(["z"]));
        assert_eq!(
            a["env"],
            json!([{"name":"E1","value":"1"},{"name":"E2","value":"2"}])
        );
        // finalizers: union, and $deleteFromPrimitiveList
        let out = strategic_merge_patch(
            &d,
            &json!({"metadata":{"finalizers":["c","a"]}}),
            "Deployment",
        )
        .unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
        let out = strategic_merge_patch(
            &d,
            &json!({"metadata":{"$deleteFromPrimitiveList/finalizers":["a"]}}),
            "Deployment",
        )
        .unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
        // $patch: delete on a list item
        let out = strategic_merge_patch(
            &d,
            &json!({"spec":{"template":{"spec":{"containers":[{"name":"a","$patch":"delete"}]}}}}),
            "Deployment",
        )
        .unwrap();
        assert_eq!(
            out.pointer("/spec/template/spec/containers")
                .unwrap()
                .as_array()
                .unwrap()
                .len(),
            1
        );
        // $patch: replace on a list
        let out = strategic_merge_patch(&d, &json!({"spec":{"template":{"spec":{"containers":[{"name":"z","image":"z"},{"$patch":"replace"}]}}}}), "Deployment").unwrap();
        assert_eq!(
            out.pointer("/spec/template/spec/containers").unwrap(),
            &json!([{"name":"z","image":"z"}])
        );
        // $patch: replace on a map
        let out = strategic_merge_patch(
            &d,
            &json!({"metadata":{"labels":{"only":"me","$patch":"replace"}}}),
            "Deployment",
        )
        .unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"only":"me"}));
        // $retainKeys on strategy (what kubectl apply sends when switching to Recreate)
        let out = strategic_merge_patch(&d, &json!({"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate","rollingUpdate":null}}}), "Deployment").unwrap();
        assert_eq!(out["spec"]["strategy"], json!({"type":"Recreate"}));
        // $setElementOrder puts listed items in order
        let out = strategic_merge_patch(&d, &json!({"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"b"},{"name":"a"}],"containers":[{"name":"b","image":"b:3"}]}}}}), "Deployment").unwrap();
        let names: Vec<_> = out
            .pointer("/spec/template/spec/containers")
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].clone())
            .collect();
        assert_eq!(names, vec![json!("b"), json!("a")]);
        // missing merge key is a bad request
        let err = strategic_merge_patch(
            &d,
            &json!({"spec":{"template":{"spec":{"containers":[{"image":"x"}]}}}}),
            "Deployment",
        )
        .unwrap_err();
        assert!(
            matches!(err, PatchError::BadRequest(m) if m.contains("does not contain declared merge key: name"))
        );
        // conditions merge by type in status
        let pod = json!({"status":{"conditions":[{"type":"Ready","status":"False"},{"type":"PodScheduled","status":"True"}]}});
        let out = strategic_merge_patch(
            &pod,
            &json!({"status":{"conditions":[{"type":"Ready","status":"True"}]}}),
            "Pod",
        )
        .unwrap();
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type":"Ready","status":"True"},{"type":"PodScheduled","status":"True"}])
        );
    }

    #[test]
    fn merge_and_json_patch() {
        let d = json!({"a": {"b": 1, "c": [1, 2]}, "d": "x"});
        assert_eq!(
            merge_patch(&d, &json!({"a": {"b": null, "c": [3]}, "e": 1})).unwrap(),
            json!({"a": {"c": [3]}, "d": "x", "e": 1})
        );
        let ops = json!([
            {"op": "test", "path": "/d", "value": "x"},
            {"op": "add", "path": "/a/c/-", "value": 9},
            {"op": "replace", "path": "/a/b", "value": 2},
            {"op": "copy", "from": "/d", "path": "/f"},
            {"op": "move", "from": "/f", "path": "/g"},
            {"op": "remove", "path": "/a/c/0"},
            {"op": "add", "path": "/h~1i", "value": true}
        ]);
        assert_eq!(
            json_patch(&d, &ops).unwrap(),
            json!({"a": {"b": 2, "c": [2, 9]}, "d": "x", "g": "x", "h/i": true})
        );
        assert!(matches!(
            json_patch(&d, &json!([{"op": "test", "path": "/d", "value": "y"}])),
            Err(PatchError::Unprocessable(_))
        ));
        assert!(matches!(
            json_patch(&d, &json!({})),
            Err(PatchError::BadRequest(_))
        ));
        assert!(matches!(
            json_patch(&d, &json!([{"op": "remove", "path": "/nope"}])),
            Err(PatchError::Unprocessable(_))
        ));
    }
}
