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

fn pinned(req: &Request<'_>, field: &str) -> Option<String> {
    let sel = req.query.get("fieldSelector")?;
    FieldSelector::parse(sel)
        .ok()?
        .pinned(field)
        .map(String::from)
}

/// Whether `user` may make `req`; a 403 Status when not.
pub async fn authorize(st: &ApiState, req: &Request<'_>, user: &User) -> ApiResult<()> {
    let User::Node(node) = user else {
        return Ok(());
    };
    let verb = verb(req);
    let name = req.name.as_deref();
    let sub = req.sub.as_deref();
    let allowed = match (req.res.group, req.res.plural) {
        ("", "nodes") => match verb {
            "get" | "update" | "patch" => name == Some(node.as_str()) && sub != Some("proxy"),
            "create" => body_name(req).as_deref() == Some(node.as_str()),
            "list" | "watch" => pinned(req, "metadata.name").as_deref() == Some(node.as_str()),
            _ => false,
        },
        ("coordination.k8s.io", "leases") => {
            req.namespace.as_deref() == Some(NODE_LEASE_NAMESPACE)
                && match verb {
                    "get" | "update" | "patch" => name == Some(node.as_str()),
                    "create" => body_name(req).as_deref() == Some(node.as_str()),
                    _ => false,
                }
        }
        ("", "pods") => match verb {
            "list" | "watch" => pinned(req, "spec.nodeName").as_deref() == Some(node.as_str()),
            "get" | "delete" | "update" | "patch" => {
                let writes_spec = matches!(verb, "update" | "patch") && sub != Some("status");
                let Some(name) = name.filter(|_| !writes_spec) else {
                    return Err(forbidden(
                        req,
                        user,
                        verb,
                        "a node may only write the status of its pods",
                    ));
                };
                match current(st, req.res, req.namespace.as_deref(), name) {
                    // A pod that is not there gets its 404 from the handler.
                    Err(_) => true,
                    Ok(pod) => pod["spec"]["nodeName"].as_str() == Some(node.as_str()),
                }
            }
            _ => false,
        },
        ("", "events") | ("events.k8s.io", "events") => {
            matches!(verb, "create" | "update" | "patch")
        }
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(forbidden(
            req,
            user,
            verb,
            &format!("node '{node}' has no relationship with this object"),
        ))
    }
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
