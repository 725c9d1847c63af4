//! The Recreate strategy (`recreate.go`): every old pod gone before a new one starts.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::ResourceExt;

use super::DeploymentController;
use super::util;
use crate::pods;
use crate::queue::Outcome;

impl DeploymentController {
    pub(super) async fn rollout_recreate(
        &self,
        d: &mut Deployment,
        rss: &mut Vec<ReplicaSet>,
    ) -> Result<Outcome, String> {
        let was_complete = util::deployment_complete(d, &d.status.clone().unwrap_or_default());
        let new = self.get_new_rs(d, rss, false).await?;
        let old: Vec<usize> = (0..rss.len()).filter(|i| Some(*i) != new).collect();
        let mut scaled = false;
        for i in old.iter().copied() {
            if util::rs_replicas(&rss[i]) > 0 {
                scaled |= self.scale_rs(d, rss, i, 0, None).await?;
            }
        }
        if scaled {
            return self.sync_rollout_status(d, rss, new).await;
        }
        if self.old_pods_running(rss, &old) {
            return self.sync_rollout_status(d, rss, new).await;
        }
        let new = match new {
            Some(n) => Some(n),
            None => self.get_new_rs(d, rss, true).await?,
        };
        if let Some(n) = new {
            let want = util::replicas(d);
            self.scale_rs(d, rss, n, want, None).await?;
        }
        if was_complete {
            self.cleanup(d, rss, new).await?;
        }
        self.sync_rollout_status(d, rss, new).await
    }

    /// Any old ReplicaSet still reporting pods, or any of their pods not finished.
    fn old_pods_running(&self, rss: &[ReplicaSet], old: &[usize]) -> bool {
        old.iter().any(|i| {
            let rs = &rss[*i];
            if rs.status.as_ref().is_some_and(|s| s.replicas > 0) {
                return true;
            }
            let uid = rs.uid().unwrap_or_default();
            self.pods
                .by_index("controller", &uid)
                .iter()
                .any(|p| !matches!(pods::phase(p), "Succeeded" | "Failed"))
        })
    }
}
