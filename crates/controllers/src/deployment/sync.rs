//! Finding or creating the new ReplicaSet, scaling (proportional while paused or resized),
//! history cleanup and status (`sync.go`).

use std::collections::BTreeMap;

use chrono::Utc;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::ResourceExt;
use kube::api::{DeleteParams, PostParams};

use super::DeploymentController;
use super::util::{self, HASH_LABEL};
use crate::events::object_ref;
use crate::pods;
use crate::replicaset::{api_message, is_not_found};

/// Which way a scaling goes, for the event text.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
}

impl DeploymentController {
    /// Split into (new RS index, old RS indexes): the new one is the oldest whose template
    /// equals the Deployment's.
    pub(super) fn split(d: &Deployment, rss: &[ReplicaSet]) -> (Option<usize>, Vec<usize>) {
        let template = d.spec.as_ref().map(|s| &s.template);
        let new = rss.iter().position(|rs| {
            util::equal_ignore_hash(rs.spec.as_ref().and_then(|s| s.template.as_ref()), template)
        });
        let old = (0..rss.len()).filter(|i| Some(*i) != new).collect();
        (new, old)
    }

    /// `getNewReplicaSet`: the index of the new RS in `rss` (created when `create`).
    pub(super) async fn get_new_rs(
        &self,
        d: &mut Deployment,
        rss: &mut Vec<ReplicaSet>,
        create: bool,
    ) -> Result<Option<usize>, String> {
        let (new, old) = Self::split(d, rss);
        let max_old_revision = old
            .iter()
            .map(|i| util::revision(&rss[*i]))
            .max()
            .unwrap_or(0);
        let new_revision = max_old_revision + 1;
        let ns = d.namespace().unwrap_or_default();
        if let Some(i) = new {
            let mut rs = rss[i].clone();
            let changed = util::set_new_rs_annotations(d, &mut rs, new_revision, true);
            let min_ready = d.spec.as_ref().and_then(|s| s.min_ready_seconds);
            let min_ready_changed = rs.spec.as_ref().and_then(|s| s.min_ready_seconds) != min_ready;
            if changed || min_ready_changed {
                if let Some(s) = rs.spec.as_mut() {
                    s.min_ready_seconds = min_ready;
                }
                rss[i] = self.update_rs(&rs).await?;
                return Ok(Some(i));
            }
            let rev = util::annotation(&rs.metadata, util::REVISION).map(String::from);
            let mut changed_d = false;
            if let Some(rev) = rev
                && util::annotation(&d.metadata, util::REVISION) != Some(rev.as_str())
            {
                d.metadata
                    .annotations
                    .get_or_insert_with(BTreeMap::new)
                    .insert(util::REVISION.into(), rev);
                changed_d = true;
            }
            if changed_d {
                *d = self.update_deployment(d).await?;
            }
            let mut status = d.status.clone().unwrap_or_default();
            if util::progress_deadline(d).is_some()
                && util::condition(&status, "Progressing").is_none()
            {
                util::set_condition(
                    &mut status,
                    util::new_condition(
                        "Progressing",
                        "True",
                        "FoundNewReplicaSet",
                        format!("Found new replica set \"{}\"", rs.name_any()),
                        Utc::now(),
                    ),
                );
                *d = self.write_status(d, status).await?;
            }
            return Ok(Some(i));
        }
        if !create {
            return Ok(None);
        }
        let collision = d.status.as_ref().and_then(|s| s.collision_count);
        let spec = d.spec.clone().unwrap_or_default();
        let mut template = spec.template.clone();
        let hash = util::compute_hash(Some(&spec.template), collision);
        template
            .metadata
            .get_or_insert_with(ObjectMeta::default)
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(HASH_LABEL.into(), hash.clone());
        let mut selector: LabelSelector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(HASH_LABEL.into(), hash.clone());
        let name = format!("{}-{hash}", d.name_any());
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                owner_references: Some(vec![pods::controller_ref(d)]),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let all: Vec<&ReplicaSet> = rss.iter().chain(std::iter::once(&rs)).collect();
        let want = util::new_rs_new_replicas(d, &all, &rs);
        if let Some(s) = rs.spec.as_mut() {
            s.replicas = Some(want);
        }
        util::set_new_rs_annotations(d, &mut rs, new_revision, false);
        let created = match self.rs_api(&ns).create(&PostParams::default(), &rs).await {
            Ok(c) => c,
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Ours already (a sync that raced), or a hash collision.
                let existing = self.replicasets.get(&format!("{ns}/{name}"));
                let ours = existing.as_ref().is_some_and(|e| {
                    pods::controller_of(e.as_ref())
                        .is_some_and(|r| Some(&r.uid) == d.uid().as_ref())
                        && util::equal_ignore_hash(
                            e.spec.as_ref().and_then(|s| s.template.as_ref()),
                            Some(&spec.template),
                        )
                });
                if let (true, Some(e)) = (ours, existing) {
                    rss.push(e.as_ref().clone());
                    return Ok(Some(rss.len() - 1));
                }
                let mut status = d.status.clone().unwrap_or_default();
                status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                *d = self.write_status(d, status).await?;
                return Err(format!("hash collision creating replica set {name}"));
            }
            Err(e) => {
                let msg = format!(
                    "Failed to create new replica set \"{name}\": {}",
                    api_message(&e)
                );
                if util::progress_deadline(d).is_some() {
                    let mut status = d.status.clone().unwrap_or_default();
                    util::set_condition(
                        &mut status,
                        util::new_condition(
                            "Progressing",
                            "False",
                            "ReplicaSetCreateError",
                            msg.clone(),
                            Utc::now(),
                        ),
                    );
                    let _ = self.write_status(d, status).await;
                }
                self.recorder
                    .warning(object_ref(d), "ReplicaSetCreateError", msg.clone());
                return Err(msg);
            }
        };
        if want > 0 {
            self.recorder.normal(
                object_ref(d),
                "ScalingReplicaSet",
                format!("Scaled up replica set {name} to {want}"),
            );
        }
        d.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(util::REVISION.into(), new_revision.to_string());
        *d = self.update_deployment(d).await?;
        if util::progress_deadline(d).is_some() {
            let mut status = d.status.clone().unwrap_or_default();
            util::set_condition(
                &mut status,
                util::new_condition(
                    "Progressing",
                    "True",
                    "NewReplicaSetCreated",
                    format!("Created new replica set \"{name}\""),
                    Utc::now(),
                ),
            );
            *d = self.write_status(d, status).await?;
        }
        rss.push(created);
        Ok(Some(rss.len() - 1))
    }

    pub(super) async fn update_rs(&self, rs: &ReplicaSet) -> Result<ReplicaSet, String> {
        self.rs_api(&rs.namespace().unwrap_or_default())
            .replace(&rs.name_any(), &PostParams::default(), rs)
            .await
            .map_err(|e| api_message(&e))
    }

    pub(super) async fn update_deployment(&self, d: &Deployment) -> Result<Deployment, String> {
        let mut body = d.clone();
        body.status = None;
        self.d_api(&d.namespace().unwrap_or_default())
            .replace(&d.name_any(), &PostParams::default(), &body)
            .await
            .map_err(|e| api_message(&e))
    }

    /// `scaleReplicaSet`: resize `rss[i]` (and refresh its replica annotations); whether the
    /// size changed.
    pub(super) async fn scale_rs(
        &self,
        d: &Deployment,
        rss: &mut [ReplicaSet],
        i: usize,
        size: i32,
        direction: Option<Direction>,
    ) -> Result<bool, String> {
        let cur = util::rs_replicas(&rss[i]);
        let desired = util::replicas(d);
        let max = desired + util::max_surge(d);
        let stale = util::replicas_annotations_need_update(&rss[i], desired, max);
        if cur == size && !stale {
            return Ok(false);
        }
        let mut rs = rss[i].clone();
        if let Some(s) = rs.spec.as_mut() {
            s.replicas = Some(size);
        }
        let ann = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
        ann.insert(util::DESIRED_REPLICAS.into(), desired.to_string());
        ann.insert(util::MAX_REPLICAS.into(), max.to_string());
        rss[i] = self.update_rs(&rs).await?;
        if cur != size {
            let up = match direction {
                Some(Direction::Up) => true,
                Some(Direction::Down) => false,
                None => cur < size,
            };
            self.recorder.normal(
                object_ref(d),
                "ScalingReplicaSet",
                format!(
                    "Scaled {} replica set {} to {size} from {cur}",
                    if up { "up" } else { "down" },
                    rss[i].name_any()
                ),
            );
        }
        Ok(cur != size)
    }

    /// `sync`: scale (proportionally) without rolling out; used while paused and on resizes.
    pub(super) async fn sync_scale(
        &self,
        d: &mut Deployment,
        rss: &mut Vec<ReplicaSet>,
    ) -> Result<(), String> {
        let new = self.get_new_rs(d, rss, false).await?;
        self.scale(d, rss, new).await?;
        let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        if paused && util::annotation(&d.metadata, util::ROLLBACK_TO).is_none() {
            self.cleanup(d, rss, new).await?;
        }
        self.sync_deployment_status(d, rss, new).await
    }

    /// `scale`: proportional scaling (§4.10).
    async fn scale(
        &self,
        d: &Deployment,
        rss: &mut [ReplicaSet],
        new: Option<usize>,
    ) -> Result<(), String> {
        let want = util::replicas(d);
        let mut old: Vec<usize> = (0..rss.len()).filter(|i| Some(*i) != new).collect();
        // Newest first.
        old.sort_by(|a, b| created(&rss[*b]).cmp(&created(&rss[*a])));
        let active: Vec<usize> = new
            .into_iter()
            .chain(old.iter().copied())
            .filter(|i| util::rs_replicas(&rss[*i]) > 0)
            .collect();
        let single = match active.len() {
            0 => new.or_else(|| old.first().copied()),
            1 => Some(active[0]),
            _ => None,
        };
        if let Some(i) = single {
            if util::rs_replicas(&rss[i]) != want {
                self.scale_rs(d, rss, i, want, None).await?;
            }
            return Ok(());
        }
        if let Some(n) = new {
            let rs = &rss[n];
            let saturated = util::rs_replicas(rs) == want
                && util::int_annotation(rs, util::DESIRED_REPLICAS) == Some(want)
                && util::rs_available(rs) == want;
            if saturated {
                let active_old: Vec<usize> = old
                    .iter()
                    .copied()
                    .filter(|i| util::rs_replicas(&rss[*i]) > 0)
                    .collect();
                for i in active_old {
                    self.scale_rs(d, rss, i, 0, None).await?;
                }
                return Ok(());
            }
        }
        if !util::is_rolling(d) {
            return Ok(());
        }
        let total: i32 = active.iter().map(|i| util::rs_replicas(&rss[*i])).sum();
        let allowed = if want > 0 {
            want + util::max_surge(d)
        } else {
            0
        };
        let to_add = allowed - total;
        let mut order = active.clone();
        if to_add > 0 {
            // Bigger first; ties: newer first.
            order.sort_by(|a, b| {
                util::rs_replicas(&rss[*b])
                    .cmp(&util::rs_replicas(&rss[*a]))
                    .then(created(&rss[*b]).cmp(&created(&rss[*a])))
            });
        } else {
            // Bigger first; ties: older first.
            order.sort_by(|a, b| {
                util::rs_replicas(&rss[*b])
                    .cmp(&util::rs_replicas(&rss[*a]))
                    .then(created(&rss[*a]).cmp(&created(&rss[*b])))
            });
        }
        let status_replicas = d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let mut added = 0;
        let mut sizes: Vec<(usize, i32)> = Vec::new();
        for i in &order {
            let spec = util::rs_replicas(&rss[*i]);
            let p = if to_add != 0 {
                proportion(&rss[*i], d, to_add, added, status_replicas)
            } else {
                0
            };
            added += p;
            sizes.push((*i, spec + p));
        }
        if let Some(first) = sizes.first_mut() {
            let leftover = to_add - added;
            first.1 = (first.1 + leftover).max(0);
        }
        let direction = if to_add > 0 {
            Direction::Up
        } else {
            Direction::Down
        };
        for (i, size) in sizes {
            self.scale_rs(d, rss, i, size, Some(direction)).await?;
        }
        Ok(())
    }

    /// `cleanupDeployment`: delete old, empty ReplicaSets beyond revisionHistoryLimit.
    pub(super) async fn cleanup(
        &self,
        d: &Deployment,
        rss: &[ReplicaSet],
        new: Option<usize>,
    ) -> Result<(), String> {
        let Some(limit) = d
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .filter(|l| *l != i32::MAX)
        else {
            return Ok(());
        };
        let mut candidates: Vec<&ReplicaSet> = rss
            .iter()
            .enumerate()
            .filter(|(i, rs)| Some(*i) != new && rs.metadata.deletion_timestamp.is_none())
            .map(|(_, rs)| rs)
            .collect();
        let diff = candidates.len() as i64 - i64::from(limit);
        if diff <= 0 {
            return Ok(());
        }
        candidates.sort_by(|a, b| {
            let (ra, rb) = (util::revision(a), util::revision(b));
            if ra != rb && ra != 0 && rb != 0 {
                ra.cmp(&rb)
            } else {
                created(a).cmp(&created(b))
            }
        });
        let api = self.rs_api(&d.namespace().unwrap_or_default());
        for rs in candidates
            .into_iter()
            .take(usize::try_from(diff).unwrap_or(0))
        {
            let status = rs.status.clone().unwrap_or_default();
            let empty = status.replicas == 0
                && util::rs_replicas(rs) == 0
                && rs.metadata.generation.unwrap_or(0) <= status.observed_generation.unwrap_or(0);
            if !empty {
                continue;
            }
            match api.delete(&rs.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(api_message(&e)),
            }
        }
        Ok(())
    }

    /// `calculateStatus`.
    pub(super) fn calculate_status(
        d: &Deployment,
        rss: &[ReplicaSet],
        new: Option<usize>,
    ) -> DeploymentStatus {
        let sum = |f: &dyn Fn(&ReplicaSet) -> i32| rss.iter().map(f).sum::<i32>();
        let replicas = sum(&|rs| rs.status.as_ref().map_or(0, |s| s.replicas));
        let ready = sum(&|rs| {
            rs.status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
        });
        let available = sum(&util::rs_available);
        let spec_total = sum(&util::rs_replicas);
        let updated = new
            .map(|i| rss[i].status.as_ref().map_or(0, |s| s.replicas))
            .unwrap_or(0);
        let mut status = d.status.clone().unwrap_or_default();
        let nz = |v: i32| (v != 0).then_some(v);
        status.observed_generation = d.metadata.generation;
        status.replicas = nz(replicas);
        status.updated_replicas = nz(updated);
        status.ready_replicas = nz(ready);
        status.available_replicas = nz(available);
        status.unavailable_replicas = nz((spec_total - available).max(0));
        let now = Utc::now();
        let cond = if available >= util::replicas(d) - util::max_unavailable(d) {
            util::new_condition(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
                now,
            )
        } else {
            util::new_condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
                now,
            )
        };
        util::set_condition(&mut status, cond);
        status
    }

    /// `syncDeploymentStatus`: write the calculated status when it changed.
    pub(super) async fn sync_deployment_status(
        &self,
        d: &mut Deployment,
        rss: &[ReplicaSet],
        new: Option<usize>,
    ) -> Result<(), String> {
        let status = Self::calculate_status(d, rss, new);
        if d.status.as_ref() != Some(&status) {
            *d = self.write_status(d, status).await?;
        }
        Ok(())
    }

    pub(super) async fn sync_status_only(
        &self,
        d: &mut Deployment,
        rss: &mut Vec<ReplicaSet>,
    ) -> Result<(), String> {
        let new = self.get_new_rs(d, rss, false).await?;
        self.sync_deployment_status(d, rss, new).await
    }

    /// `checkPausedConditions`.
    pub(super) async fn check_paused_conditions(&self, d: &mut Deployment) -> Result<(), String> {
        if util::progress_deadline(d).is_none() {
            return Ok(());
        }
        let mut status = d.status.clone().unwrap_or_default();
        let cond = util::condition(&status, "Progressing");
        if cond.and_then(|c| c.reason.as_deref()) == Some("ProgressDeadlineExceeded") {
            return Ok(());
        }
        let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        let says_paused = cond.and_then(|c| c.reason.as_deref()) == Some("DeploymentPaused");
        let now = Utc::now();
        if paused && !says_paused {
            util::set_condition(
                &mut status,
                util::new_condition(
                    "Progressing",
                    "Unknown",
                    "DeploymentPaused",
                    "Deployment is paused".into(),
                    now,
                ),
            );
        } else if !paused && says_paused {
            util::set_condition(
                &mut status,
                util::new_condition(
                    "Progressing",
                    "Unknown",
                    "DeploymentResumed",
                    "Deployment is resumed".into(),
                    now,
                ),
            );
        } else {
            return Ok(());
        }
        *d = self.write_status(d, status).await?;
        Ok(())
    }
}

fn created(rs: &ReplicaSet) -> (Option<chrono::DateTime<Utc>>, String) {
    (
        rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
        rs.name_any(),
    )
}

/// `GetProportion`.
fn proportion(
    rs: &ReplicaSet,
    d: &Deployment,
    to_add: i32,
    added: i32,
    status_replicas: i32,
) -> i32 {
    if util::rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let f = fraction(rs, d, status_replicas);
    let allowed = to_add - added;
    if to_add > 0 {
        f.min(allowed)
    } else {
        f.max(allowed)
    }
}

/// `getReplicaSetFraction`.
pub fn fraction(rs: &ReplicaSet, d: &Deployment, status_replicas: i32) -> i32 {
    let spec = util::rs_replicas(rs);
    if util::replicas(d) == 0 {
        return -spec;
    }
    let target = util::replicas(d) + util::max_surge(d);
    let base = match util::int_annotation(rs, util::MAX_REPLICAS).filter(|b| *b != 0) {
        Some(b) => b,
        None => status_replicas,
    };
    if base == 0 {
        return 0;
    }
    let x = f64::from(spec) * f64::from(target) / f64::from(base);
    let rounded = if x >= 0.0 {
        (x + 0.5).floor()
    } else {
        (x - 0.5).ceil()
    };
    rounded as i32 - spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fractions_table() {
        // (d.replicas, d.status.replicas, maxSurge, rs.replicas, max-replicas, fraction)
        type Case<'a> = (i32, i32, i32, i32, Option<&'a str>, i32);
        let cases: [Case; 9] = [
            (0, 0, 0, 10, None, -10),
            (10, 0, 0, 5, None, 0),
            (10, 0, 0, 5, Some("0"), 0),
            (120, 100, 0, 50, None, 10),
            (120, 100, 0, 50, Some("0"), 10),
            (120, 0, 0, 50, Some("100"), 10),
            (120, 0, 10, 50, Some("110"), 9),
            (10, 0, 0, 6, Some("12"), -1),
            (100, 0, 10, 50, Some("130"), -8),
        ];
        for (dr, sr, surge, rr, ann, want) in cases {
            let d: Deployment =
                serde_json::from_value(json!({"metadata": {"name": "d"}, "spec": {"replicas": dr,
                "selector": {}, "template": {}, "strategy": {"type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": surge, "maxUnavailable": 1}}}}))
                .unwrap();
            let mut rs: ReplicaSet = serde_json::from_value(
                json!({"metadata": {"name": "r"}, "spec": {"replicas": rr, "selector": {}}}),
            )
            .unwrap();
            if let Some(a) = ann {
                rs.metadata.annotations =
                    Some([(util::MAX_REPLICAS.to_string(), a.to_string())].into());
            }
            assert_eq!(
                fraction(&rs, &d, sr),
                want,
                "{dr} {sr} {surge} {rr} {ann:?}"
            );
        }
    }
}
