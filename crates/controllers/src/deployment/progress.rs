//! Rollout progress (`progress.go`): the Progressing condition, the progress deadline and
//! ger's auto-rollback when it passes.

use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::DeploymentController;
use super::util;
use crate::queue::Outcome;

impl DeploymentController {
    /// `syncRolloutStatus`.
    pub(super) async fn sync_rollout_status(
        &self,
        d: &mut Deployment,
        rss: &mut [ReplicaSet],
        new: Option<usize>,
    ) -> Result<Outcome, String> {
        let old_status = d.status.clone().unwrap_or_default();
        let mut status = Self::calculate_status(d, rss, new);
        let now = Utc::now();
        let deadline = util::progress_deadline(d);
        if deadline.is_none() {
            util::remove_condition(&mut status, "Progressing");
        }
        let cur_reason = util::condition(&status, "Progressing").and_then(|c| c.reason.clone());
        let is_complete = status.replicas == status.updated_replicas
            && cur_reason.as_deref() == Some("NewReplicaSetAvailable");
        let subject = match new {
            Some(n) => format!("ReplicaSet \"{}\"", rss[n].name_any()),
            None => format!("Deployment \"{}\"", d.name_any()),
        };
        let mut timed_out_now = false;
        if deadline.is_some() && !is_complete {
            if util::deployment_complete(d, &status) {
                util::set_condition(
                    &mut status,
                    util::new_condition(
                        "Progressing",
                        "True",
                        "NewReplicaSetAvailable",
                        format!("{subject} has successfully progressed."),
                        now,
                    ),
                );
                if let Some(n) = new {
                    self.mark_available(&mut rss[n]).await;
                }
            } else if util::deployment_progressing(&old_status, &status) {
                // Always replaced, so lastUpdateTime moves.
                let mut c = util::new_condition(
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    format!("{subject} is progressing."),
                    now,
                );
                if let Some(cur) =
                    util::condition(&status, "Progressing").filter(|c| c.status == "True")
                {
                    c.last_transition_time = cur.last_transition_time.clone();
                }
                util::remove_condition(&mut status, "Progressing");
                status.conditions.get_or_insert_with(Vec::new).push(c);
            } else if util::deployment_timed_out(d, &status, now) {
                timed_out_now = cur_reason.as_deref() != Some("ProgressDeadlineExceeded");
                util::set_condition(
                    &mut status,
                    util::new_condition(
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                        format!("{subject} has timed out progressing."),
                        now,
                    ),
                );
            }
        }
        // ReplicaFailure: the new RS's, else any RS's.
        let failures = |rs: &ReplicaSet| -> Vec<DeploymentCondition> {
            rs.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .filter(|c| c.type_ == "ReplicaFailure")
                .map(|c| DeploymentCondition {
                    type_: c.type_.clone(),
                    status: c.status.clone(),
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                    last_update_time: c.last_transition_time.clone(),
                    last_transition_time: c.last_transition_time.clone(),
                })
                .collect()
        };
        let mut failure = new.map(|n| failures(&rss[n])).unwrap_or_default();
        if failure.is_empty() {
            failure = rss.iter().flat_map(failures).take(1).collect();
        }
        match failure.into_iter().next() {
            Some(c) => util::set_condition(&mut status, c),
            None => util::remove_condition(&mut status, "ReplicaFailure"),
        }
        if d.status.as_ref() == Some(&status) {
            return Ok(self.requeue_stuck(d, now));
        }
        *d = self.write_status(d, status).await?;
        if timed_out_now && util::annotation(&d.metadata, util::AUTO_ROLLBACK) == Some("true") {
            self.auto_rollback(d, rss, new).await?;
        }
        Ok(self.requeue_stuck(d, now))
    }

    /// `requeueStuckDeployment`: look again when the deadline would pass.
    fn requeue_stuck(&self, d: &Deployment, now: chrono::DateTime<Utc>) -> Outcome {
        let Some(deadline) = util::progress_deadline(d) else {
            return Outcome::Done;
        };
        let status = d.status.clone().unwrap_or_default();
        let Some(c) = util::condition(&status, "Progressing") else {
            return Outcome::Done;
        };
        let complete = status.replicas == status.updated_replicas
            && c.reason.as_deref() == Some("NewReplicaSetAvailable");
        if complete || util::deployment_timed_out(d, &status, now) {
            return Outcome::Done;
        }
        let Some(Time(updated)) = c.last_update_time.clone() else {
            return Outcome::Done;
        };
        let due = updated + chrono::Duration::seconds(i64::from(deadline));
        let after = (due - now).to_std().unwrap_or(Duration::ZERO);
        Outcome::RequeueAfter(if after < Duration::from_secs(1) {
            Duration::from_millis(100)
        } else {
            after + Duration::from_secs(1)
        })
    }

    /// Remember that this ReplicaSet's rollout completed (an auto-rollback target).
    async fn mark_available(&self, rs: &mut ReplicaSet) {
        if util::annotation(&rs.metadata, util::BECAME_AVAILABLE).is_some() {
            return;
        }
        let mut next = rs.clone();
        next.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(util::BECAME_AVAILABLE.into(), "true".into());
        if let Ok(updated) = self.update_rs(&next).await {
            *rs = updated;
        }
    }
}
