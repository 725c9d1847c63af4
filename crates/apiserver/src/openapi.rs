//! `/openapi/v3`: one document per group version, with the schemas of the kinds served (what
//! `kubectl explain` reads) and one PATCH operation per kind (what `kubectl --validate=strict`
//! looks for before it trusts the server to validate fields).
//!
//! The schemas are `k8s-openapi`'s, named as upstream names them
//! (`io.k8s.api.apps.v1.DaemonSet`), with `$ref` beside a description written as upstream
//! writes it (`allOf: [{$ref}]`), and each kind marked with `x-kubernetes-group-version-kind`.
//!
//! The PATCH operations do not offer `application/strategic-merge-patch+json`: these schemas
//! carry no `x-kubernetes-patch-merge-key`, and a kubectl that found strategic merge announced
//! would compute `kubectl apply`'s patches from them (lists replaced, not merged). Without it
//! kubectl computes them from its own built-in types, exactly as upstream's schemas would have
//! it; the server still accepts strategic merge patches.
//!
//! Documents are built on first use and kept; the root lists them with a hash of their bytes so
//! kubectl's disk cache never serves a stale one.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use bytes::Bytes;
use k8s_openapi::api::{apps::v1 as apps, coordination::v1 as coordination, core::v1 as core};
use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

use crate::resources::{GROUPS, RESOURCES};

/// The URL path of a group's document (`api/v1`, `apis/apps/v1`).
fn doc_path(group: &str) -> String {
    if group.is_empty() {
        "api/v1".to_string()
    } else {
        format!("apis/{group}/v1")
    }
}

/// The schema of every served kind, registered in `generator`, by kind name.
fn register(generator: &mut SchemaGenerator, group: &str) -> Vec<(&'static str, String)> {
    fn add<T: JsonSchema>(g: &mut SchemaGenerator, kind: &'static str) -> (&'static str, String) {
        g.subschema_for::<T>();
        (kind, T::schema_name().into_owned())
    }
    let g = generator;
    match group {
        "" => vec![
            add::<core::Namespace>(g, "Namespace"),
            add::<core::Node>(g, "Node"),
            add::<core::Pod>(g, "Pod"),
            add::<core::Event>(g, "Event"),
            add::<core::ConfigMap>(g, "ConfigMap"),
            add::<core::Service>(g, "Service"),
            add::<core::Endpoints>(g, "Endpoints"),
            add::<core::Secret>(g, "Secret"),
            add::<core::ServiceAccount>(g, "ServiceAccount"),
            add::<core::ReplicationController>(g, "ReplicationController"),
        ],
        "apps" => vec![
            add::<apps::ControllerRevision>(g, "ControllerRevision"),
            add::<apps::DaemonSet>(g, "DaemonSet"),
            add::<apps::Deployment>(g, "Deployment"),
            add::<apps::ReplicaSet>(g, "ReplicaSet"),
        ],
        "coordination.k8s.io" => vec![add::<coordination::Lease>(g, "Lease")],
        "discovery.k8s.io" => vec![add::<k8s_openapi::api::discovery::v1::EndpointSlice>(
            g,
            "EndpointSlice",
        )],
        _ => Vec::new(),
    }
}

fn build_doc(group: &str) -> Value {
    let path = doc_path(group);
    let mut generator = SchemaSettings::openapi3().into_generator();
    let kinds = register(&mut generator, group);
    let mut schemas = generator.take_definitions(true);
    for (kind, name) in &kinds {
        if let Some(Value::Object(s)) = schemas.get_mut(name) {
            s.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": group, "kind": kind, "version": "v1"}]),
            );
            // Rust makes an object's metadata a plain field; upstream does not require it.
            if let Some(Value::Array(req)) = s.get_mut("required") {
                req.retain(|f| f != "metadata");
                if req.is_empty() {
                    s.remove("required");
                }
            }
        }
    }
    let mut paths = Map::new();
    for r in RESOURCES.iter().filter(|r| r.group == group) {
        let item = if r.namespaced {
            format!("/{path}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("/{path}/{}/{{name}}", r.plural)
        };
        paths.insert(
            item,
            json!({"patch": {
                "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
                "x-kubernetes-action": "patch",
                "parameters": [
                    {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                    {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
                ],
                "requestBody": {"content": {
                    "application/json-patch+json": {},
                    "application/merge-patch+json": {},
                }},
                "responses": {},
            }}),
        );
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

struct Docs {
    /// Path → (hash, bytes).
    docs: BTreeMap<String, (String, Bytes)>,
}

fn docs() -> &'static Docs {
    static DOCS: OnceLock<Docs> = OnceLock::new();
    DOCS.get_or_init(|| {
        let docs = std::iter::once("")
            .chain(GROUPS.iter().copied())
            .map(|group| {
                let bytes = build_doc(group).to_string().into_bytes();
                let hash = ring::digest::digest(&ring::digest::SHA256, &bytes);
                let hash: String = hash.as_ref()[..16]
                    .iter()
                    .map(|b| format!("{b:02X}"))
                    .collect();
                (doc_path(group), (hash, Bytes::from(bytes)))
            })
            .collect();
        Docs { docs }
    })
}

/// `GET /openapi/v3`: where each group version's document is.
pub fn root() -> Value {
    let paths: Map<String, Value> = docs()
        .docs
        .iter()
        .map(|(path, (hash, _))| {
            (
                path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}),
            )
        })
        .collect();
    json!({"paths": paths})
}

/// `GET /openapi/v3/<path>`: the document, encoded.
pub fn doc(path: &str) -> Option<Bytes> {
    docs().docs.get(path).map(|(_, b)| b.clone())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parsed(path: &str) -> Value {
        serde_json::from_slice(&doc(path).unwrap()).unwrap()
    }

    #[test]
    fn every_served_kind_has_its_schema() {
        for r in RESOURCES {
            let d = parsed(&doc_path(r.group));
            let schemas = d["components"]["schemas"].as_object().unwrap();
            let found = schemas.values().any(|s| {
                s["x-kubernetes-group-version-kind"]
                    == json!([{"group": r.group, "kind": r.kind, "version": "v1"}])
            });
            assert!(found, "{}", r.kind);
        }
        assert!(doc("apis/nope/v1").is_none());
    }

    #[test]
    fn schemas_read_as_upstream_writes_them() {
        let d = parsed("apis/apps/v1");
        let s = &d["components"]["schemas"];
        let ds = &s["io.k8s.api.apps.v1.DaemonSet"];
        assert!(ds.get("required").is_none(), "{ds}");
        let spec = &ds["properties"]["spec"];
        assert_eq!(
            spec["allOf"],
            json!([{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DaemonSetSpec"}])
        );
        assert!(spec["description"].as_str().unwrap().contains("daemon set"));
        let ru = &s["io.k8s.api.apps.v1.RollingUpdateDaemonSet"]["properties"]["maxSurge"];
        assert_eq!(
            ru["allOf"],
            json!([{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.util.intstr.IntOrString"}])
        );
        let spec = &s["io.k8s.api.apps.v1.DeploymentSpec"];
        assert_eq!(spec["required"], json!(["selector", "template"]));
        // Strategic merge is not offered: kubectl computes apply patches from its own types.
        let paths = d["paths"].as_object().unwrap();
        assert!(paths.values().all(|p| {
            p["patch"]["requestBody"]["content"]
                .get("application/strategic-merge-patch+json")
                .is_none()
        }));
    }

    #[test]
    fn the_root_names_each_document_by_its_hash() {
        let r = root();
        let url = r["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="), "{url}");
        assert_eq!(url.len(), "/openapi/v3/apis/apps/v1?hash=".len() + 32);
        assert!(r["paths"]["api/v1"].is_object());
        assert!(r["paths"]["apis/coordination.k8s.io/v1"].is_object());
    }
}
