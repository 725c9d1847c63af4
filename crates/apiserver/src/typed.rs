//! Decoding checks against the `k8s-openapi` types: a request body must decode as its kind
//! (wrong JSON types are a 400, as upstream's decoder answers), and fields the type does not
//! know are reported (`fieldValidation=Strict|Warn`) and dropped, as upstream prunes them.

use k8s_openapi::api::{apps::v1 as apps, coordination::v1 as coordination, core::v1 as core};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn round_trip<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(typed).map_err(|e| e.to_string())
}

/// The typed round trip of `v` as `kind`, or the decoding error. `None` if the kind is not typed here.
fn typed(kind: &str, v: &Value) -> Option<Result<Value, String>> {
    Some(match kind {
        "Pod" => round_trip::<core::Pod>(v),
        "Node" => round_trip::<core::Node>(v),
        "Namespace" => round_trip::<core::Namespace>(v),
        "Event" => round_trip::<core::Event>(v),
        "ConfigMap" => round_trip::<core::ConfigMap>(v),
        "Secret" => round_trip::<core::Secret>(v),
        "Service" => round_trip::<core::Service>(v),
        "Endpoints" => round_trip::<core::Endpoints>(v),
        "EndpointSlice" => round_trip::<k8s_openapi::api::discovery::v1::EndpointSlice>(v),
        "ServiceAccount" => round_trip::<core::ServiceAccount>(v),
        "ReplicationController" => round_trip::<core::ReplicationController>(v),
        "Binding" => round_trip::<core::Binding>(v),
        "Deployment" => round_trip::<apps::Deployment>(v),
        "ReplicaSet" => round_trip::<apps::ReplicaSet>(v),
        "DaemonSet" => round_trip::<apps::DaemonSet>(v),
        "ControllerRevision" => round_trip::<apps::ControllerRevision>(v),
        "Lease" => round_trip::<coordination::Lease>(v),
        "Scale" => round_trip::<k8s_openapi::api::autoscaling::v1::Scale>(v),
        "Eviction" => round_trip::<k8s_openapi::api::policy::v1::Eviction>(v),
        "DeleteOptions" => round_trip::<meta::DeleteOptions>(v),
        _ => return None,
    })
}

/// Check `v` decodes as `kind`; remove and return the paths of fields the type doesn't have
/// (`spec.template.spec.containers[0].foo`).
pub fn decode_and_prune(kind: &str, v: &mut Value) -> Result<Vec<String>, String> {
    let Some(result) = typed(kind, v) else {
        return Ok(Vec::new());
    };
    let known = result?;
    let mut unknown = Vec::new();
    prune(v, &known, String::new(), &mut unknown);
    Ok(unknown)
}

fn prune(v: &mut Value, known: &Value, path: String, unknown: &mut Vec<String>) {
    match (v, known) {
        (Value::Object(map), Value::Object(k)) => {
            let mut drop = Vec::new();
            for (key, val) in map.iter_mut() {
                let p = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match k.get(key) {
                    Some(kv) => prune(val, kv, p, unknown),
                    // A null decodes to an absent optional field; an empty object or list may
                    // be dropped by the typed encoder: neither is unknown.
                    None if val.is_null() => {}
                    None if is_empty_container(val) => {}
                    None => {
                        unknown.push(p);
                        drop.push(key.clone());
                    }
                }
            }
            for key in drop {
                map.remove(&key);
            }
        }
        (Value::Array(items), Value::Array(k)) => {
            for (i, (item, ki)) in items.iter_mut().zip(k.iter()).enumerate() {
                prune(item, ki, format!("{path}[{i}]"), unknown);
            }
        }
        _ => {}
    }
}

fn is_empty_container(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_found_and_dropped() {
        let mut d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "creationTimestamp": null},
            "spec": {"foo": 1, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx", "bar": "x", "resources": {}}]}}}
        });
        let unknown = decode_and_prune("Deployment", &mut d).expect("decodes");
        assert_eq!(
            unknown,
            ["spec.foo", "spec.template.spec.containers[0].bar"]
        );
        assert!(d["spec"].get("foo").is_none());
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["resources"],
            json!({})
        );
    }

    #[test]
    fn wrong_types_do_not_decode() {
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
            "spec": {"replicas": "three"}});
        assert!(decode_and_prune("Deployment", &mut d).is_err());
    }
}
