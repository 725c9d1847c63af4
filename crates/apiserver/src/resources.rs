//! The resources ger serves, and the discovery and OpenAPI documents kubectl reads about them.

use serde_json::{Value, json};

/// One served resource (a REST collection).
#[derive(Debug)]
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub all_category: bool,
    /// Served subresources: "status", "scale", "binding", "eviction", "log".
    pub subresources: &'static [&'static str],
    /// Generation is set to 1 on create and bumped on spec changes.
    pub has_generation: bool,
    /// Spec/status split: writes to the main resource keep the stored status.
    pub has_status: bool,
}

const ALL_VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps`, or `pods` for the core group: how upstream names a resource in errors.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The store key prefix of this resource (`/registry/<group>/<plural>/`).
    pub fn prefix(&self) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            self.group
        };
        format!("/registry/{group}/{}/", self.plural)
    }

    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/{name}", self.prefix()),
            _ => format!("{}{name}", self.prefix()),
        }
    }

    fn verbs(&self) -> Vec<&'static str> {
        if self.plural == "namespaces" {
            ALL_VERBS
                .iter()
                .copied()
                .filter(|v| *v != "deletecollection")
                .collect()
        } else {
            ALL_VERBS.to_vec()
        }
    }

    pub fn has_subresource(&self, sub: &str) -> bool {
        self.subresources.contains(&sub)
    }
}

const fn res(
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
) -> Resource {
    Resource {
        group,
        version: "v1",
        kind,
        plural,
        singular,
        namespaced,
        short_names,
        all_category: false,
        subresources: &[],
        has_generation: false,
        has_status: false,
    }
}

/// Every served resource, in discovery order.
pub static RESOURCES: &[Resource] = &[
    Resource {
        subresources: &["status"],
        has_status: true,
        ..res("", "Namespace", "namespaces", "namespace", false, &["ns"])
    },
    Resource {
        subresources: &["status"],
        has_status: true,
        ..res("", "Node", "nodes", "node", false, &["no"])
    },
    Resource {
        subresources: &["binding", "eviction", "log", "status"],
        has_status: true,
        all_category: true,
        ..res("", "Pod", "pods", "pod", true, &["po"])
    },
    res("", "Event", "events", "event", true, &["ev"]),
    res("", "ConfigMap", "configmaps", "configmap", true, &["cm"]),
    Resource {
        subresources: &["status"],
        has_status: true,
        all_category: true,
        ..res("", "Service", "services", "service", true, &["svc"])
    },
    res("", "Endpoints", "endpoints", "endpoints", true, &["ep"]),
    res("", "Secret", "secrets", "secret", true, &[]),
    res(
        "",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        true,
        &["sa"],
    ),
    Resource {
        subresources: &["scale", "status"],
        has_status: true,
        has_generation: true,
        all_category: true,
        ..res(
            "",
            "ReplicationController",
            "replicationcontrollers",
            "replicationcontroller",
            true,
            &["rc"],
        )
    },
    res(
        "apps",
        "ControllerRevision",
        "controllerrevisions",
        "controllerrevision",
        true,
        &[],
    ),
    Resource {
        subresources: &["status"],
        has_status: true,
        has_generation: true,
        all_category: true,
        ..res(
            "apps",
            "DaemonSet",
            "daemonsets",
            "daemonset",
            true,
            &["ds"],
        )
    },
    Resource {
        subresources: &["scale", "status"],
        has_status: true,
        has_generation: true,
        all_category: true,
        ..res(
            "apps",
            "Deployment",
            "deployments",
            "deployment",
            true,
            &["deploy"],
        )
    },
    Resource {
        subresources: &["scale", "status"],
        has_status: true,
        has_generation: true,
        all_category: true,
        ..res(
            "apps",
            "ReplicaSet",
            "replicasets",
            "replicaset",
            true,
            &["rs"],
        )
    },
    res("coordination.k8s.io", "Lease", "leases", "lease", true, &[]),
    res(
        "discovery.k8s.io",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        true,
        &[],
    ),
];

/// The API groups (besides core) and their single version.
pub const GROUPS: &[&str] = &["apps", "coordination.k8s.io", "discovery.k8s.io"];

pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

pub fn by_kind(kind: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.kind == kind)
}

fn sub_kind(res: &Resource, sub: &str) -> (&'static str, &'static str, &'static str) {
    match sub {
        "scale" => ("autoscaling", "v1", "Scale"),
        "eviction" => ("policy", "v1", "Eviction"),
        "binding" => ("", "v1", "Binding"),
        _ => (res.group, res.version, res.kind),
    }
}

fn sub_verbs(sub: &str) -> Vec<&'static str> {
    match sub {
        "binding" | "eviction" => vec!["create"],
        "log" => vec!["get"],
        _ => vec!["get", "patch", "update"],
    }
}

/// `GET /version`: minor 32, so kubectl's dispatcher runs kubectl 1.32.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": concat!("v1.32.0-ger.", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.23.0",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub fn api_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}],
    })
}

pub fn api_group_list() -> Value {
    let mut names: Vec<&str> = GROUPS.to_vec();
    names.splice(1..1, crate::reviews::GROUPS.iter().copied());
    let groups: Vec<Value> = names.iter().map(|g| api_group(g)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn api_group(group: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/v1"), "version": "v1"});
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": [gv.clone()],
        "preferredVersion": gv,
    })
}

/// The legacy `APIResourceList` of one group version, or `None` if not served.
pub fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    if version == "v1" && crate::reviews::GROUPS.contains(&group) {
        return Some(json!({"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": format!("{group}/v1"), "resources": crate::reviews::api_resources(group)}));
    }
    if version != "v1" || !(group.is_empty() || GROUPS.contains(&group)) {
        return None;
    }
    let mut resources = Vec::new();
    for r in RESOURCES.iter().filter(|r| r.group == group) {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs(),
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if r.all_category {
            entry["categories"] = json!(["all"]);
        }
        resources.push(entry);
        for sub in r.subresources {
            let (g, v, k) = sub_kind(r, sub);
            let mut entry = json!({
                "name": format!("{}/{sub}", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": k,
                "verbs": sub_verbs(sub),
            });
            if g != r.group || v != r.version {
                entry["group"] = json!(g);
                entry["version"] = json!(v);
            }
            resources.push(entry);
        }
    }
    let gv = if group.is_empty() {
        "v1".to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}
