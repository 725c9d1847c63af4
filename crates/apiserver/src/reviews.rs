//! Who am I, and what may I do: `SelfSubjectReview` (`kubectl auth whoami`),
//! `SelfSubjectAccessReview` (`kubectl auth can-i`) and `SelfSubjectRulesReview`
//! (`kubectl auth can-i --list`). Nothing is stored; each answer is computed from the caller's
//! token with the same decisions that guard every request.

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::ApiState;
use crate::auth::{Attributes, NODE_LEASE_NAMESPACE, User, node_decision};
use crate::errors::{ApiError, ApiResult};
use crate::resources::Resource;

/// The groups of the review kinds.
pub const GROUPS: &[&str] = &["authentication.k8s.io", "authorization.k8s.io"];

const fn review(group: &'static str, kind: &'static str, plural: &'static str) -> Resource {
    Resource {
        group,
        version: "v1",
        kind,
        plural,
        singular: "",
        namespaced: false,
        short_names: &[],
        all_category: false,
        subresources: &[],
        has_generation: false,
        has_status: false,
    }
}

/// The review kinds, create-only.
pub static KINDS: &[Resource] = &[
    review(
        "authentication.k8s.io",
        "SelfSubjectReview",
        "selfsubjectreviews",
    ),
    review(
        "authorization.k8s.io",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
    ),
    review(
        "authorization.k8s.io",
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
    ),
];

/// The review resource at `group/version/rest`, if `rest` names one.
pub fn find(group: &str, version: &str, rest: &str) -> Option<&'static Resource> {
    let plural = rest.trim_matches('/');
    KINDS
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The legacy `APIResourceList` entries of `group`.
pub fn api_resources(group: &str) -> Vec<Value> {
    KINDS
        .iter()
        .filter(|r| r.group == group)
        .map(|r| {
            json!({"name": r.plural, "singularName": r.kind.to_lowercase(), "namespaced": false,
                "kind": r.kind, "verbs": ["create"]})
        })
        .collect()
}

fn groups_of(user: &User) -> Vec<&'static str> {
    match user {
        User::Admin => vec!["system:masters", "system:authenticated"],
        User::Node(_) => vec!["system:nodes", "system:authenticated"],
    }
}

/// `POST` of a review: the review with its status filled in.
pub async fn handle(
    st: &ApiState,
    user: &User,
    res: &'static Resource,
    method: &Method,
    body: &[u8],
) -> ApiResult<Response> {
    if method != Method::POST {
        let verb = if method == Method::GET {
            "list"
        } else {
            method.as_str()
        };
        return Err(ApiError::method_not_allowed(verb, res));
    }
    let mut review: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body of the request could not be decoded as {}: {e}",
            res.kind
        ))
    })?;
    if !review.is_object() {
        return Err(ApiError::bad_request(format!(
            "the body of the request is not a {} object",
            res.kind
        )));
    }
    let status = match res.kind {
        "SelfSubjectReview" => {
            json!({"userInfo": {"username": user.name(), "groups": groups_of(user)}})
        }
        "SelfSubjectAccessReview" => access(st, user, &review["spec"])?,
        _ => rules(user, review["spec"]["namespace"].as_str().unwrap_or("")),
    };
    review["apiVersion"] = json!(format!("{}/{}", res.group, res.version));
    review["kind"] = json!(res.kind);
    if !review["metadata"].is_object() {
        review["metadata"] = json!({});
    }
    review["metadata"]["creationTimestamp"] = Value::Null;
    review["status"] = status;
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        review.to_string(),
    )
        .into_response())
}

fn text(v: &Value, field: &str) -> String {
    v[field].as_str().unwrap_or_default().to_string()
}

/// The status of an access review of `spec`.
fn access(st: &ApiState, user: &User, spec: &Value) -> ApiResult<Value> {
    let resource = &spec["resourceAttributes"];
    let non_resource = &spec["nonResourceAttributes"];
    if resource.is_object() == non_resource.is_object() {
        return Err(ApiError::invalid(
            &KINDS[1],
            "",
            &[crate::admission::FieldError::required(
                "spec.resourceAttributes",
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            )],
        ));
    }
    let decision = match user {
        User::Admin => Ok(()),
        // Every signed-in caller reads discovery, health and metrics.
        User::Node(_) if non_resource.is_object() => Ok(()),
        User::Node(node) => {
            let a = Attributes {
                verb: text(resource, "verb"),
                group: text(resource, "group"),
                resource: text(resource, "resource"),
                subresource: text(resource, "subresource"),
                namespace: text(resource, "namespace"),
                name: text(resource, "name"),
                field_selector: text(&resource["fieldSelector"], "rawSelector"),
            };
            node_decision(st, node, &a)
        }
    };
    Ok(match decision {
        Ok(()) => json!({"allowed": true}),
        Err(why) => json!({"allowed": false, "reason": why}),
    })
}

/// The rules `user` has in `namespace`, as `kubectl auth can-i --list` prints them.
fn rules(user: &User, namespace: &str) -> Value {
    let rule = |verbs: &[&str], group: &str, resources: &[&str], names: &[&str]| {
        let mut r = json!({"verbs": verbs, "apiGroups": [group], "resources": resources});
        if !names.is_empty() {
            r["resourceNames"] = json!(names);
        }
        r
    };
    let node = match user {
        User::Admin => {
            return json!({
                "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                "incomplete": false,
            });
        }
        User::Node(n) => n.as_str(),
    };
    let mut resource_rules = vec![
        rule(
            &["create"],
            "authentication.k8s.io",
            &["selfsubjectreviews"],
            &[],
        ),
        rule(
            &["create"],
            "authorization.k8s.io",
            &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
            &[],
        ),
        rule(
            &["get", "create", "update", "patch"],
            "",
            &["nodes"],
            &[node],
        ),
        rule(&["get", "update", "patch"], "", &["nodes/status"], &[node]),
        rule(&["create", "update", "patch"], "", &["events"], &[]),
        rule(
            &["create", "update", "patch"],
            "events.k8s.io",
            &["events"],
            &[],
        ),
    ];
    if namespace == NODE_LEASE_NAMESPACE {
        resource_rules.push(rule(
            &["get", "create", "update", "patch"],
            "coordination.k8s.io",
            &["leases"],
            &[node],
        ));
    }
    json!({
        "resourceRules": resource_rules,
        "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["*"]}],
        // Pods are the node's own only: that is decided per pod, not by a rule.
        "incomplete": true,
        "evaluationError": format!(
            "pods are allowed to node {node} only where spec.nodeName is {node}; lists and watches need that field selector"
        ),
    })
}
