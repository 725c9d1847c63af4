//! Rollback: the legacy `deprecated.deployment.rollback.to` annotation, and ger's
//! auto-rollback after a missed progress deadline.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};

use super::DeploymentController;
use super::util;
use crate::events::object_ref;

impl DeploymentController {
    /// Legacy server-side rollback (§4.12).
    pub(super) async fn rollback(
        &self,
        d: &mut Deployment,
        rss: &mut Vec<ReplicaSet>,
    ) -> Result<(), String> {
        self.get_new_rs(d, rss, true).await?;
        let mut to: i64 = util::annotation(&d.metadata, util::ROLLBACK_TO)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if to == 0 {
            to = last_revision(rss);
            if to == 0 {
                self.recorder.warning(
                    object_ref(d),
                    "DeploymentRollbackRevisionNotFound",
                    "Unable to find last revision.".into(),
                );
                return self.clear_rollback(d).await;
            }
        }
        let template = d.spec.as_ref().map(|s| s.template.clone());
        match rss.iter().find(|rs| util::revision(rs) == to) {
            Some(rs) => {
                let rs_template = rs.spec.as_ref().and_then(|s| s.template.as_ref());
                if util::equal_ignore_hash(rs_template, template.as_ref()) {
                    self.recorder.warning(
                        object_ref(d),
                        "DeploymentRollbackTemplateUnchanged",
                        format!("The rollback revision contains the same template as current deployment \"{}\"", kube::ResourceExt::name_any(d)),
                    );
                } else {
                    copy_from(d, rs);
                    self.recorder.normal(
                        object_ref(d),
                        "DeploymentRollback",
                        format!(
                            "Rolled back deployment \"{}\" to revision {to}",
                            kube::ResourceExt::name_any(d)
                        ),
                    );
                }
            }
            None => self.recorder.warning(
                object_ref(d),
                "DeploymentRollbackRevisionNotFound",
                "Unable to find the revision to rollback to.".into(),
            ),
        }
        self.clear_rollback(d).await
    }

    async fn clear_rollback(&self, d: &mut Deployment) -> Result<(), String> {
        if let Some(a) = d.metadata.annotations.as_mut() {
            a.remove(util::ROLLBACK_TO);
        }
        *d = self.update_deployment(d).await?;
        Ok(())
    }

    /// Roll back to the newest older revision whose rollout completed, if there is one.
    pub(super) async fn auto_rollback(
        &self,
        d: &mut Deployment,
        rss: &[ReplicaSet],
        new: Option<usize>,
    ) -> Result<(), String> {
        let target = rss
            .iter()
            .enumerate()
            .filter(|(i, rs)| {
                Some(*i) != new && util::annotation(&rs.metadata, util::BECAME_AVAILABLE).is_some()
            })
            .map(|(_, rs)| rs)
            .max_by_key(|rs| util::revision(rs));
        let Some(rs) = target else {
            return Ok(());
        };
        let rev = util::revision(rs);
        let mut next = d.clone();
        copy_from(&mut next, rs);
        *d = self.update_deployment(&next).await?;
        self.recorder.warning(
            object_ref(d),
            "AutoRolledBack",
            format!(
                "Rolled back deployment \"{}\" to revision {rev}: the rollout exceeded its progress deadline",
                kube::ResourceExt::name_any(d)
            ),
        );
        Ok(())
    }
}

/// The second-highest revision (`LastRevision`).
fn last_revision(rss: &[ReplicaSet]) -> i64 {
    let (mut max, mut second) = (0, 0);
    for rs in rss {
        let v = util::revision(rs);
        if v >= max {
            second = max;
            max = v;
        } else if v > second {
            second = v;
        }
    }
    second
}

/// Put `rs`'s template and annotations on `d` as a rollback does: the template without the
/// hash label, the Deployment's own bookkeeping annotations kept.
fn copy_from(d: &mut Deployment, rs: &ReplicaSet) {
    let mut template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(util::HASH_LABEL);
    }
    if let Some(spec) = d.spec.as_mut() {
        spec.template = template;
    }
    let mut ann: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if util::SKIP_ANNOTATIONS.contains(&k.as_str()) || k == util::AUTO_ROLLBACK {
            ann.insert(k.clone(), v.clone());
        }
    }
    for (k, v) in rs.metadata.annotations.iter().flatten() {
        if !util::SKIP_ANNOTATIONS.contains(&k.as_str()) && k != util::BECAME_AVAILABLE {
            ann.insert(k.clone(), v.clone());
        }
    }
    d.metadata.annotations = Some(ann);
}
