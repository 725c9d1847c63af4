//! The DaemonSet rolling update (`rollingUpdate`, k8s-controllers.md §2.10): delete-then-create
//! within maxUnavailable, or create-then-delete within maxSurge.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;

use kube::ResourceExt;

use super::{DaemonSetController, is_deleting, is_updated, min_ready};
use crate::pods::Selector;

/// ger: no pod is replaced while this is "true".
pub const PAUSED: &str = "daemonset.ger.io/paused";
/// ger: this many pods stay on the old revision.
pub const PARTITION: &str = "daemonset.ger.io/partition";
/// ger: only nodes matching this label selector are updated.
pub const ROLLOUT_SELECTOR: &str = "daemonset.ger.io/rollout-selector";
use crate::deployment::util::scaled_value;
use crate::pods;

fn rolling(ds: &DaemonSet) -> Option<&k8s_openapi::api::apps::v1::RollingUpdateDaemonSet> {
    ds.spec
        .as_ref()?
        .update_strategy
        .as_ref()?
        .rolling_update
        .as_ref()
}

/// maxSurge of `desired` nodes, rounded up.
pub fn max_surge(ds: &DaemonSet, desired: i32) -> i32 {
    scaled_value(
        rolling(ds).and_then(|r| r.max_surge.as_ref()),
        desired,
        true,
    )
    .unwrap_or(0)
}

/// (maxSurge, maxUnavailable) for `desired` nodes; both 0 becomes unavailable 1.
pub fn budgets(ds: &DaemonSet, desired: i32) -> (i32, i32) {
    let surge = max_surge(ds, desired);
    let unavailable = scaled_value(
        rolling(ds).and_then(|r| r.max_unavailable.as_ref()),
        desired,
        true,
    )
    .unwrap_or(0);
    if desired > 0 && surge == 0 && unavailable == 0 {
        return (0, 1);
    }
    (surge, unavailable)
}

/// What the rolling update decides: pods to delete and nodes to create on.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub delete: Vec<String>,
    pub create_on: Vec<String>,
}

/// One node as the rolling update sees it.
#[derive(Debug, Clone)]
pub struct NodeView {
    pub node: String,
    pub should_run: bool,
    /// (pod name, available) of the one updated pod, if exactly one.
    pub new: Option<(String, bool)>,
    /// (pod name, available, ready) of the one old pod, if exactly one.
    pub old: Option<(String, bool)>,
    /// More than one pod of a kind: manage will prune it.
    pub excess: bool,
}

/// The rolling-update decision over `nodes` (pure, for the property tests).
pub fn plan(nodes: &[NodeView], max_surge: i32, max_unavailable: i32, desired: i32) -> Plan {
    let mut out = Plan::default();
    if max_surge == 0 {
        let mut unavailable = 0;
        let mut candidates = Vec::new();
        for n in nodes.iter().filter(|n| n.should_run) {
            if n.excess {
                unavailable += 1;
                continue;
            }
            match (&n.new, &n.old) {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some((_, avail)), None) => {
                    if !avail {
                        unavailable += 1;
                    }
                }
                (None, Some((name, avail))) => {
                    if !avail {
                        out.delete.push(name.clone());
                        unavailable += 1;
                    } else if unavailable < max_unavailable {
                        candidates.push(name.clone());
                    }
                }
            }
        }
        let remaining = (max_unavailable - unavailable).clamp(0, candidates.len() as i32) as usize;
        out.delete.extend(candidates.into_iter().take(remaining));
        return out;
    }
    let mut surge = 0;
    let mut available = 0;
    let mut should_not_run = Vec::new();
    let mut candidates = Vec::new();
    for n in nodes {
        if n.excess {
            surge += 1;
            continue;
        }
        match (&n.new, &n.old) {
            (_, None) => {
                if let Some((_, a)) = &n.new {
                    available += i32::from(*a);
                }
            }
            (None, Some((name, avail))) => {
                available += i32::from(*avail);
                if !avail {
                    if !n.should_run {
                        out.delete.push(name.clone());
                    } else {
                        out.create_on.push(n.node.clone());
                    }
                } else if !n.should_run {
                    should_not_run.push(name.clone());
                } else if surge < max_surge {
                    candidates.push(n.node.clone());
                }
            }
            (Some((_, new_avail)), Some((old, old_avail))) => {
                available += i32::from(*old_avail);
                if !new_avail {
                    surge += 1;
                } else {
                    out.delete.push(old.clone());
                }
            }
        }
    }
    let deletable = available - desired;
    if deletable > 0 {
        out.delete
            .extend(should_not_run.into_iter().take(deletable as usize));
    }
    let remaining = (max_surge - surge).clamp(0, candidates.len() as i32) as usize;
    out.create_on.extend(candidates.into_iter().take(remaining));
    out
}

impl DaemonSetController {
    pub(super) async fn rolling_update(
        &self,
        key: &str,
        ds: &DaemonSet,
        eligibility: &std::collections::BTreeMap<String, (bool, bool)>,
        node_pods: &HashMap<String, Vec<Arc<Pod>>>,
        hash: &str,
    ) -> Result<(), String> {
        let ann = ds.annotations();
        if ann.get(PAUSED).map(String::as_str) == Some("true") {
            return Ok(());
        }
        let partition: usize = ann
            .get(PARTITION)
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0);
        let rollout_selector = match ann.get(ROLLOUT_SELECTOR) {
            Some(s) => Some(Selector::parse(s)?),
            None => None,
        };
        let now = Utc::now();
        let min_ready = min_ready(ds);
        let desired = eligibility.values().filter(|(run, _)| *run).count() as i32;
        let (surge, unavailable) = budgets(ds, desired);
        // Nodes left on the old revision: the last `partition` (by name) of those still on
        // it, and those the rollout selector does not match.
        let eligible: Vec<&String> = eligibility
            .iter()
            .filter(|(_, (run, _))| *run)
            .map(|(n, _)| n)
            .collect();
        let on_old_revision = |n: &String| {
            node_pods.get(n).is_some_and(|pods| {
                pods.iter()
                    .any(|p| !is_deleting(p) && !is_updated(p, hash, ds))
            })
        };
        let held: std::collections::HashSet<&String> = eligible
            .iter()
            .filter(|n| on_old_revision(n))
            .rev()
            .take(partition)
            .copied()
            .chain(eligible.iter().copied().filter(|n| {
                rollout_selector.as_ref().is_some_and(|sel| {
                    let labels = self
                        .nodes
                        .get(n)
                        .and_then(|node| node.metadata.labels.clone())
                        .unwrap_or_default();
                    !sel.matches(&labels)
                })
            }))
            .collect();
        let mut by_name: HashMap<String, Arc<Pod>> = HashMap::new();
        let mut views = Vec::new();
        for (node, (should_run, _)) in eligibility {
            let pods: Vec<&Arc<Pod>> = node_pods
                .get(node)
                .map(|v| v.iter().filter(|p| !is_deleting(p)).collect())
                .unwrap_or_default();
            if (!should_run && pods.is_empty()) || held.contains(node) {
                continue;
            }
            let (new, old): (Vec<&Arc<Pod>>, Vec<&Arc<Pod>>) =
                pods.iter().partition(|p| is_updated(p, hash, ds));
            for p in &pods {
                by_name.insert(p.metadata.name.clone().unwrap_or_default(), (*p).clone());
            }
            let view = |p: &&Arc<Pod>| {
                (
                    p.metadata.name.clone().unwrap_or_default(),
                    pods::is_available(p, min_ready, now),
                )
            };
            views.push(NodeView {
                node: node.clone(),
                should_run: *should_run,
                excess: new.len() > 1 || old.len() > 1,
                new: (new.len() == 1).then(|| view(&new[0])),
                old: (old.len() == 1).then(|| view(&old[0])),
            });
        }
        let plan = plan(&views, surge, unavailable, desired);
        let delete: Vec<Arc<Pod>> = plan
            .delete
            .iter()
            .filter_map(|n| by_name.get(n).cloned())
            .collect();
        self.sync_nodes(key, ds, delete, plan.create_on, hash)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node(i: usize, new: Option<bool>, old: Option<bool>) -> NodeView {
        NodeView {
            node: format!("n{i}"),
            should_run: true,
            new: new.map(|a| (format!("new{i}"), a)),
            old: old.map(|a| (format!("old{i}"), a)),
            excess: false,
        }
    }

    #[test]
    fn delete_then_create_within_max_unavailable() {
        // 5 nodes all old and available, maxUnavailable 2: two go first.
        let nodes: Vec<NodeView> = (0..5).map(|i| node(i, None, Some(true))).collect();
        assert_eq!(plan(&nodes, 0, 2, 5).delete.len(), 2);
        // Two replaced but not yet available: nothing more goes.
        let mut nodes = nodes;
        nodes[0] = node(0, Some(false), None);
        nodes[1] = node(1, Some(false), None);
        assert!(plan(&nodes, 0, 2, 5).delete.is_empty());
        // Unavailable old pods are replaced first, whatever the budget.
        let nodes: Vec<NodeView> = (0..5).map(|i| node(i, None, Some(false))).collect();
        assert_eq!(plan(&nodes, 0, 3, 5).delete.len(), 5);
    }

    #[test]
    fn create_then_delete_within_max_surge() {
        let nodes: Vec<NodeView> = (0..5).map(|i| node(i, None, Some(true))).collect();
        let p = plan(&nodes, 2, 0, 5);
        assert_eq!((p.create_on.len(), p.delete.len()), (2, 0));
        let mut nodes = nodes;
        nodes[0] = node(0, Some(true), Some(true));
        nodes[1] = node(1, Some(false), Some(true));
        let p = plan(&nodes, 2, 0, 5);
        assert_eq!(p.delete, vec!["old0".to_string()]);
        assert_eq!(p.create_on.len(), 1, "one surge slot left");
    }

    proptest! {
        /// Delete-then-create never leaves more than maxUnavailable desired nodes without an
        /// available pod, and finishes.
        #[test]
        fn rolling_update_keeps_the_budget(n in 1usize..40, max_unavailable in 1i32..10, seed in any::<u64>()) {
            // Per node: Some(available) of the new pod, or the old pod (available).
            let mut new_pod: Vec<Option<bool>> = vec![None; n];
            let mut old_pod: Vec<bool> = vec![true; n];
            let mut rng = seed | 1;
            let mut next = || { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; rng };
            for _ in 0..10_000 {
                let views: Vec<NodeView> = (0..n)
                    .map(|i| node(i, new_pod[i], old_pod[i].then_some(true)))
                    .collect();
                let p = plan(&views, 0, max_unavailable, n as i32);
                for name in p.delete {
                    let i: usize = name.trim_start_matches("old").parse().unwrap();
                    old_pod[i] = false;
                }
                // manage creates the new pods on emptied nodes; some become available.
                for i in 0..n {
                    if !old_pod[i] && new_pod[i].is_none() {
                        new_pod[i] = Some(false);
                    }
                    if new_pod[i] == Some(false) && next() % 3 == 0 {
                        new_pod[i] = Some(true);
                    }
                }
                let without = (0..n).filter(|i| !old_pod[*i] && new_pod[*i] != Some(true)).count();
                prop_assert!(without as i32 <= max_unavailable.max(1), "{without} nodes down");
                if new_pod.iter().all(|p| *p == Some(true)) {
                    return Ok(());
                }
            }
            prop_assert!(false, "the rollout did not finish");
        }
    }
}
