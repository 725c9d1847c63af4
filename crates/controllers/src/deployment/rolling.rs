//! The RollingUpdate strategy (`rolling.go`).

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};

use super::DeploymentController;
use super::util;
use crate::queue::Outcome;

impl DeploymentController {
    pub(super) async fn rollout_rolling(
        &self,
        d: &mut Deployment,
        rss: &mut Vec<ReplicaSet>,
    ) -> Result<Outcome, String> {
        let was_complete = util::deployment_complete(d, &d.status.clone().unwrap_or_default());
        let new = self.get_new_rs(d, rss, true).await?;
        if self.reconcile_new(d, rss, new).await? {
            return self.sync_rollout_status(d, rss, new).await;
        }
        if self.reconcile_old(d, rss, new).await? {
            return self.sync_rollout_status(d, rss, new).await;
        }
        if was_complete {
            self.cleanup(d, rss, new).await?;
        }
        self.sync_rollout_status(d, rss, new).await
    }

    /// `reconcileNewReplicaSet`: whether it scaled.
    async fn reconcile_new(
        &self,
        d: &Deployment,
        rss: &mut [ReplicaSet],
        new: Option<usize>,
    ) -> Result<bool, String> {
        let (Some(n), Some(size)) = (new, plan_new(d, &views(rss), new)) else {
            return Ok(false);
        };
        self.scale_rs(d, rss, n, size, None).await
    }

    /// `reconcileOldReplicaSets`: whether anything was scaled down.
    async fn reconcile_old(
        &self,
        d: &Deployment,
        rss: &mut [ReplicaSet],
        new: Option<usize>,
    ) -> Result<bool, String> {
        let steps = plan_old(d, &views(rss), new);
        for (i, size) in &steps {
            self.scale_rs(d, rss, *i, *size, None).await?;
        }
        Ok(!steps.is_empty())
    }
}

/// What the rolling maths needs of a ReplicaSet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RsView {
    pub spec: i32,
    pub available: i32,
}

fn views(rss: &[ReplicaSet]) -> Vec<RsView> {
    rss.iter()
        .map(|rs| RsView {
            spec: util::rs_replicas(rs),
            available: util::rs_available(rs),
        })
        .collect()
}

/// The new ReplicaSet's next size, if it changes (`reconcileNewReplicaSet`).
pub fn plan_new(d: &Deployment, rss: &[RsView], new: Option<usize>) -> Option<i32> {
    let n = new?;
    let want = util::replicas(d);
    let cur = rss[n].spec;
    if cur == want {
        return None;
    }
    if cur > want {
        return Some(want);
    }
    // NewRSNewReplicas for RollingUpdate.
    let current: i32 = rss.iter().map(|r| r.spec).sum();
    let max_total = want + util::max_surge(d);
    if current >= max_total {
        return None;
    }
    let size = cur + (max_total - current).min(want - cur);
    (size != cur).then_some(size)
}

/// Old ReplicaSets' next sizes (`reconcileOldReplicaSets`: cleanupUnhealthyReplicas, then
/// scaleDownOldReplicaSetsForRollingUpdate); `rss` is in creation order, oldest first.
pub fn plan_old(d: &Deployment, rss: &[RsView], new: Option<usize>) -> Vec<(usize, i32)> {
    let mut rss = rss.to_vec();
    let old: Vec<usize> = (0..rss.len())
        .filter(|i| Some(*i) != new && rss[*i].spec > 0)
        .collect();
    if old.is_empty() {
        return Vec::new();
    }
    let all_pods: i32 = rss.iter().map(|r| r.spec).sum();
    let min_available = util::min_available(d);
    let new_unavailable = new.map_or(0, |n| rss[n].spec - rss[n].available);
    let max_scaled_down = all_pods - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }
    let mut steps: Vec<(usize, i32)> = Vec::new();
    let mut cleaned = 0;
    for i in old.iter().copied() {
        if cleaned >= max_scaled_down {
            break;
        }
        let RsView { spec, available } = rss[i];
        if spec == 0 || spec == available {
            continue;
        }
        let k = (max_scaled_down - cleaned).min(spec - available);
        if k <= 0 {
            continue;
        }
        rss[i].spec = spec - k;
        steps.push((i, spec - k));
        cleaned += k;
    }
    let available: i32 = rss.iter().map(|r| r.available).sum();
    if available > min_available {
        let budget = available - min_available;
        let mut scaled = 0;
        for i in old.iter().copied() {
            if scaled >= budget {
                break;
            }
            let spec = rss[i].spec;
            if spec == 0 {
                continue;
            }
            let k = spec.min(budget - scaled);
            rss[i].spec = spec - k;
            steps.push((i, spec - k));
            scaled += k;
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn deployment(
        replicas: i32,
        surge: serde_json::Value,
        unavailable: serde_json::Value,
    ) -> Deployment {
        serde_json::from_value(json!({"metadata": {"name": "d"}, "spec": {"replicas": replicas,
            "selector": {"matchLabels": {"a": "b"}}, "template": {},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}}}))
        .unwrap()
    }

    #[test]
    fn upstream_rolling_tables() {
        let v = |spec, available| RsView { spec, available };
        // reconcileNewReplicaSet (maxUnavailable 0): (d, surge, old, new) → new size.
        for (dr, surge, old, new, want) in [
            (10, 0, 10, 0, None),
            (10, 2, 10, 0, Some(2)),
            (10, 2, 5, 0, Some(7)),
            (10, 2, 10, 2, None),
            (10, 2, 2, 11, Some(10)),
        ] {
            let d = deployment(dr, json!(surge), json!(0));
            assert_eq!(plan_new(&d, &[v(old, old), v(new, 0)], Some(1)), want);
        }
        // reconcileOldReplicaSets (maxSurge 0, d=10): (mu, old, new, oldAvail, newAvail) → old size.
        for (mu, old, new, old_avail, new_avail, want) in [
            (0, 10, 0, 10, 0, Some(9)),
            (2, 10, 0, 10, 0, Some(8)),
            (2, 10, 0, 8, 0, Some(8)),
            (2, 10, 0, 9, 0, Some(8)),
            (2, 8, 2, 8, 0, None),
        ] {
            let d = deployment(10, json!(0), json!(mu));
            let steps = plan_old(&d, &[v(old, old_avail), v(new, new_avail)], Some(1));
            assert_eq!(
                steps.last().map(|s| s.1),
                want,
                "{mu} {old} {new} {old_avail}"
            );
        }
    }

    fn int_or_percent() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            (0i64..6).prop_map(|i| json!(i)),
            (0u32..101).prop_map(|p| json!(format!("{p}%"))),
        ]
    }

    proptest! {
        /// Over random rollouts: never more than replicas + maxSurge pods, and never fewer
        /// than replicas − maxUnavailable available, while new pods become available at random.
        #[test]
        fn rolling_update_respects_the_budget(
            replicas in 1i32..40,
            surge in int_or_percent(),
            unavailable in int_or_percent(),
            seed in any::<u64>(),
        ) {
            let d = deployment(replicas, surge, unavailable);
            let max_pods = replicas + util::max_surge(&d);
            let min_avail = util::min_available(&d);
            // old RS fully available, new RS empty.
            let mut rss = vec![RsView { spec: replicas, available: replicas }, RsView { spec: 0, available: 0 }];
            let mut rng = seed;
            let mut next = || { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; rng };
            for _step in 0..2000 {
                // One sync: scale up, else scale down (as rolloutRolling does).
                if let Some(size) = plan_new(&d, &rss, Some(1)) {
                    rss[1].spec = size;
                } else {
                    for (i, size) in plan_old(&d, &rss, Some(1)) {
                        rss[i].spec = size;
                        rss[i].available = rss[i].available.min(size);
                    }
                }
                let pods: i32 = rss.iter().map(|r| r.spec).sum();
                prop_assert!(pods <= max_pods.max(replicas), "{pods} pods > {max_pods}");
                let available: i32 = rss.iter().map(|r| r.available).sum();
                prop_assert!(available >= min_avail, "{available} available < {min_avail}");
                // Some new pods become available.
                let pending = rss[1].spec - rss[1].available;
                if pending > 0 && next() % 3 == 0 {
                    rss[1].available += 1 + (next() % pending as u64) as i32 % pending.max(1);
                    rss[1].available = rss[1].available.min(rss[1].spec);
                }
                if rss[1].spec == replicas && rss[1].available == replicas && rss[0].spec == 0 {
                    break;
                }
            }
            prop_assert_eq!(rss[1].spec, replicas, "the rollout completes");
            prop_assert_eq!(rss[0].spec, 0);
        }
    }
}
