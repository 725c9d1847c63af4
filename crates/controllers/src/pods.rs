//! Pod predicates, label selectors and controller references shared by the controllers
//! (`pkg/controller/controller_utils.go`, `podutil`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Pod, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use kube::ResourceExt;

/// The node a pod is bound to ("" when none).
pub fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

/// The pod's tolerations.
pub fn tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default()
}

/// A label selector ready to match (`metav1.LabelSelectorAsSelector`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector {
    /// (key, operator, values); operator is In, NotIn, Exists or DoesNotExist.
    reqs: Vec<(String, String, Vec<String>)>,
    /// A selector that matches nothing (nil selector).
    nothing: bool,
}

impl Selector {
    pub fn from_label_selector(sel: Option<&LabelSelector>) -> Selector {
        let Some(sel) = sel else {
            return Selector {
                reqs: Vec::new(),
                nothing: true,
            };
        };
        let mut reqs = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            reqs.push((k.clone(), "In".to_string(), vec![v.clone()]));
        }
        for e in sel.match_expressions.iter().flatten() {
            reqs.push((
                e.key.clone(),
                e.operator.clone(),
                e.values.clone().unwrap_or_default(),
            ));
        }
        Selector {
            reqs,
            nothing: false,
        }
    }

    /// A map selector (ReplicationController, DaemonSet node selectors); empty matches all.
    pub fn from_map(map: Option<&BTreeMap<String, String>>) -> Selector {
        Selector {
            reqs: map
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), "In".to_string(), vec![v.clone()]))
                .collect(),
            nothing: false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// Parse the string form (`a=b,c!=d,e in (f,g),h notin (i),j,!k`).
    pub fn parse(s: &str) -> Result<Selector, String> {
        let mut reqs = Vec::new();
        let mut rest = s.trim();
        while !rest.is_empty() {
            // One requirement ends at a comma outside parentheses.
            let mut depth = 0;
            let end = rest
                .char_indices()
                .find(|(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    *c == ',' && depth == 0
                })
                .map_or(rest.len(), |(i, _)| i);
            let part = rest[..end].trim();
            rest = rest[end..].trim_start_matches(',').trim();
            let set = |op: &str,
                       key: &str,
                       vals: &str|
             -> Result<(String, String, Vec<String>), String> {
                let vals = vals
                    .trim()
                    .strip_prefix('(')
                    .and_then(|v| v.strip_suffix(')'))
                    .ok_or_else(|| format!("invalid selector {part:?}"))?;
                Ok((
                    key.trim().to_string(),
                    op.to_string(),
                    vals.split(',')
                        .map(|v| v.trim().to_string())
                        .filter(|v| !v.is_empty())
                        .collect(),
                ))
            };
            let req = if let Some((k, v)) = part.split_once(" notin ") {
                set("NotIn", k, v)?
            } else if let Some((k, v)) = part.split_once(" in ") {
                set("In", k, v)?
            } else if let Some((k, v)) = part.split_once("!=") {
                (
                    k.trim().to_string(),
                    "NotIn".to_string(),
                    vec![v.trim().to_string()],
                )
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (
                    k.trim().to_string(),
                    "In".to_string(),
                    vec![v.trim().to_string()],
                )
            } else if let Some(k) = part.strip_prefix('!') {
                (k.trim().to_string(), "DoesNotExist".to_string(), Vec::new())
            } else if !part.is_empty() {
                (part.to_string(), "Exists".to_string(), Vec::new())
            } else {
                continue;
            };
            if req.0.is_empty() {
                return Err(format!("invalid selector {s:?}"));
            }
            reqs.push(req);
        }
        Ok(Selector {
            reqs,
            nothing: false,
        })
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        if self.nothing {
            return false;
        }
        self.reqs.iter().all(|(k, op, vals)| {
            let v = labels.get(k);
            match op.as_str() {
                "In" => v.is_some_and(|v| vals.contains(v)),
                "NotIn" => v.is_none_or(|v| !vals.contains(v)),
                "Exists" => v.is_some(),
                "DoesNotExist" => v.is_none(),
                _ => false,
            }
        })
    }
}

pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// `IsPodActive`: not terminal and not being deleted.
pub fn is_active(pod: &Pod) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && pod.metadata.deletion_timestamp.is_none()
}

/// The time the pod's Ready condition became True, if it is True.
pub fn ready_since(pod: &Pod) -> Option<Option<DateTime<Utc>>> {
    let c = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    (c.status == "True").then(|| c.last_transition_time.as_ref().map(|t| t.0))
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// `IsPodAvailable`: ready for longer than `min_ready_seconds` (strictly).
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: DateTime<Utc>) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(Some(t)) => t + chrono::Duration::seconds(i64::from(min_ready_seconds)) < now,
        Some(None) => false,
    }
}

/// The controller ownerReference of an object, if any.
pub fn controller_of<K: kube::Resource>(obj: &K) -> Option<&OwnerReference> {
    obj.meta()
        .owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// A controller ownerReference to `owner` as controllers set it.
pub fn controller_ref<K>(owner: &K) -> OwnerReference
where
    K: kube::Resource<DynamicType = ()>,
{
    OwnerReference {
        api_version: K::api_version(&()).to_string(),
        kind: K::kind(&()).to_string(),
        name: owner.name_any(),
        uid: owner.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Index function: the uid of an object's controller.
pub fn controller_uid_index<K: kube::Resource>(obj: &K) -> Vec<String> {
    controller_of(obj)
        .map(|r| r.uid.clone())
        .into_iter()
        .collect()
}

/// Index function: the namespace of an object.
pub fn namespace_index<K: kube::Resource>(obj: &K) -> Vec<String> {
    vec![obj.meta().namespace.clone().unwrap_or_default()]
}

/// Index function: a pod's node (`""` when unscheduled).
pub fn node_index(pod: &Pod) -> Vec<String> {
    vec![
        pod.spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    #[test]
    fn selectors_match_as_upstream() {
        let labels: BTreeMap<String, String> = [
            ("app".to_string(), "web".to_string()),
            ("tier".to_string(), "fe".to_string()),
        ]
        .into();
        let sel = |ml: &[(&str, &str)], ex: &[(&str, &str, &[&str])]| {
            Selector::from_label_selector(Some(&LabelSelector {
                match_labels: Some(
                    ml.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                match_expressions: Some(
                    ex.iter()
                        .map(|(k, op, vs)| LabelSelectorRequirement {
                            key: k.to_string(),
                            operator: op.to_string(),
                            values: Some(vs.iter().map(|v| v.to_string()).collect()),
                        })
                        .collect(),
                ),
            }))
        };
        assert!(sel(&[("app", "web")], &[]).matches(&labels));
        assert!(!sel(&[("app", "db")], &[]).matches(&labels));
        assert!(sel(&[], &[("tier", "In", &["fe", "be"])]).matches(&labels));
        assert!(!sel(&[], &[("tier", "NotIn", &["fe"])]).matches(&labels));
        assert!(sel(&[], &[("x", "DoesNotExist", &[])]).matches(&labels));
        assert!(!sel(&[], &[("x", "Exists", &[])]).matches(&labels));
        assert!(
            sel(&[], &[]).matches(&labels),
            "empty selector matches everything"
        );
        assert!(
            !Selector::from_label_selector(None).matches(&labels),
            "nil matches nothing"
        );
    }
}
