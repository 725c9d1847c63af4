//! Who a request is, and what it may do.
//!
//! Two kinds of callers: the **administrator** (the server's own bearer token, full rights)
//! and **nodes**. A node token is `node:<name>:<mac>`, where the MAC is an HMAC-SHA256 of the
//! node name keyed by the administrator token, so the server can check it without storing
//! anything and only someone holding the administrator token can issue one
//! (`ger token create --node NAME`).
//!
//! A node is confined the way Kubernetes confines kubelets (the Node authorizer plus the
//! NodeRestriction admission plugin): it reads and writes its own Node and its own Lease in
//! `kube-node-lease`, lists and watches the pods bound to it, reads, deletes and writes the
//! status of those pods, and records events. Everything else is 403 with the API server's
//! wording: `pods "p" is forbidden: User "system:node:edge-1" cannot delete resource "pods" in
//! API group "" in the namespace "default": <why>`.

use axum::http::Method;
use ring::hmac;
use serde_json::Value;

use crate::ApiState;
use crate::errors::{ApiError, ApiResult};
use crate::rest::{Request, current};
use crate::selector::FieldSelector;

/// The namespace of node heartbeats.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum User {
    Admin,
    Node(String),
}

impl User {
    /// The user name Kubernetes gives this caller.
    pub fn name(&self) -> String {
        match self {
            User::Admin => "admin".into(),
            User::Node(n) => format!("system:node:{n}"),
        }
    }
}

fn mac(secret: &str, node: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&key, format!("node:{node}").as_bytes());
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The bearer token of node `node` on a server whose administrator token is `secret`.
pub fn node_token(secret: &str, node: &str) -> String {
    format!("node:{node}:{}", mac(secret, node))
}

/// The caller a bearer token stands for, if it is valid.
pub fn authenticate(secret: &str, token: &str) -> Option<User> {
    let token = token.trim();
    if constant_time_eq(token.as_bytes(), secret.as_bytes()) {
        return Some(User::Admin);
    }
    let rest = token.strip_prefix("node:")?;
    let (node, given) = rest.rsplit_once(':')?;
    if node.is_empty() {
        return None;
    }
    constant_time_eq(given.as_bytes(), mac(secret, node).as_bytes())
        .then(|| User::Node(node.to_string()))
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The Kubernetes verb of a request.
fn verb(req: &Request<'_>) -> &'static str {
    let watch = matches!(
        req.query.get("watch").map(String::as_str),
        Some("true" | "1")
    );
    match (&req.method, req.name.is_some()) {
        (&Method::GET, false) if watch => "watch",
        (&Method::GET, false) => "list",
        (&Method::GET, true) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => "unknown",
    }
}

fn forbidden(req: &Request<'_>, user: &User, verb: &str, why: &str) -> ApiError {
    let res = req.res;
    let what = match &req.name {
        Some(n) => format!("{} \"{n}\"", res.plural),
        None => res.plural.to_string(),
    };
    let resource = match &req.sub {
        Some(s) => format!("{}/{s}", res.plural),
        None => res.plural.to_string(),
    };
    let scope = match &req.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".into(),
    };
    let mut msg = format!(
        "{what} is forbidden: User \"{}\" cannot {verb} resource \"{resource}\" in API group \"{}\" {scope}",
        user.name(),
        res.group
    );
    if !why.is_empty() {
        msg.push_str(": ");
        msg.push_str(why);
    }
    ApiError::forbidden(msg)
}

/// The name in a create request's body.
fn body_name(req: &Request<'_>) -> Option<String> {
    let v: Value = serde_json::from_slice(&req.body).ok()?;
    v["metadata"]["name"].as_str().map(String::from)
}

/// What a request asks to do, as an authorizer sees it (`authorizer.Attributes`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attributes {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// The field selector of a list or watch, raw.
    pub field_selector: String,
}

impl Attributes {
    fn of(req: &Request<'_>) -> Self {
        let verb = verb(req);
        let name = match (verb, &req.name) {
            (_, Some(n)) => n.clone(),
            ("create", None) => body_name(req).unwrap_or_default(),
            _ => String::new(),
        };
        Attributes {
            verb: verb.to_string(),
            group: req.res.group.to_string(),
            resource: req.res.plural.to_string(),
            subresource: req.sub.clone().unwrap_or_default(),
            namespace: req.namespace.clone().unwrap_or_default(),
            name,
            field_selector: req.query.get("fieldSelector").cloned().unwrap_or_default(),
        }
    }

    fn pinned(&self, field: &str) -> Option<String> {
        FieldSelector::parse(&self.field_selector)
            .ok()?
            .pinned(field)
            .map(String::from)
    }
}

/// The node confinement (the Node authorizer and NodeRestriction): `Ok` when `node` may do
/// what `a` asks, else why not.
pub fn node_decision(st: &ApiState, node: &str, a: &Attributes) -> Result<(), String> {
    let no_relation = || {
        Err(format!(
            "node '{node}' has no relationship with this object"
        ))
    };
    let own_name = a.name == node;
    let verb = a.verb.as_str();
    let allowed = match (a.group.as_str(), a.resource.as_str()) {
        ("", "nodes") => match verb {
            "get" | "update" | "patch" | "create" => own_name && a.subresource != "proxy",
            "list" | "watch" => a.pinned("metadata.name").as_deref() == Some(node),
            _ => false,
        },
        ("coordination.k8s.io", "leases") => {
            a.namespace == NODE_LEASE_NAMESPACE
                && matches!(verb, "get" | "update" | "patch" | "create")
                && own_name
        }
        ("", "pods") => match verb {
            "list" | "watch" => a.pinned("spec.nodeName").as_deref() == Some(node),
            "get" | "delete" | "update" | "patch" => {
                let writes_spec = matches!(verb, "update" | "patch") && a.subresource != "status";
                if writes_spec || a.name.is_empty() {
                    return Err("a node may only write the status of its pods".into());
                }
                let Some(res) = crate::resources::find("", "v1", "pods") else {
                    return no_relation();
                };
                let ns = (!a.namespace.is_empty()).then_some(a.namespace.as_str());
                match current(st, res, ns, &a.name) {
                    // A pod that is not there gets its 404 from the handler.
                    Err(_) => true,
                    Ok(pod) => pod["spec"]["nodeName"].as_str() == Some(node),
                }
            }
            _ => false,
        },
        ("", "events") | ("events.k8s.io", "events") => {
            matches!(verb, "create" | "update" | "patch")
        }
        ("authentication.k8s.io", "selfsubjectreviews")
        | ("authorization.k8s.io", "selfsubjectaccessreviews" | "selfsubjectrulesreviews") => {
            verb == "create"
        }
        _ => false,
    };
    if allowed { Ok(()) } else { no_relation() }
}

/// Whether `user` may make `req`; a 403 Status when not.
pub async fn authorize(st: &ApiState, req: &Request<'_>, user: &User) -> ApiResult<()> {
    let User::Node(node) = user else {
        return Ok(());
    };
    let a = Attributes::of(req);
    node_decision(st, node, &a).map_err(|why| forbidden(req, user, &a.verb, &why))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_node_and_only_the_admin_can_make_them() {
        let secret = "s3cret";
        assert_eq!(authenticate(secret, secret), Some(User::Admin));
        let t = node_token(secret, "edge-1");
        assert!(t.starts_with("node:edge-1:"));
        assert_eq!(authenticate(secret, &t), Some(User::Node("edge-1".into())));
        // Another secret, another name, a tampered MAC: all refused.
        assert_eq!(authenticate("other", &t), None);
        let forged = t.replace("edge-1", "edge-2");
        assert_eq!(authenticate(secret, &forged), None);
        let mut tampered = t.clone();
        let last = tampered.pop();
        tampered.push(if last == Some('0') { '1' } else { '0' });
        assert_eq!(authenticate(secret, &tampered), None);
        assert_eq!(authenticate(secret, "node::abc"), None);
        assert_eq!(authenticate(secret, ""), None);
    }
}
