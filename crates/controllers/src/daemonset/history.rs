//! ControllerRevision history (`constructHistory`, `cleanupHistory`): one revision per
//! distinct template, named `<ds>-<hash>`, whose `data` is the patch `kubectl rollout undo`
//! applies, encoded as upstream encodes it (compact, keys sorted, `"$patch":"replace"`).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};

use super::DaemonSetController;
use crate::deployment::util::compute_hash;
use crate::pods::{self, Selector};
use crate::replicaset::{api_message, is_not_found};

pub const HASH_LABEL: &str = "controller-revision-hash";

/// `getPatch(ds)`: `{"spec":{"template":{"$patch":"replace",…}}}` with sorted keys.
pub fn patch_bytes(ds: &DaemonSet) -> String {
    let mut template =
        serde_json::to_value(ds.spec.as_ref().map(|s| &s.template)).unwrap_or(Value::Null);
    if let Some(t) = template.as_object_mut() {
        let meta = t.entry("metadata").or_insert_with(|| json!({}));
        if let Some(m) = meta.as_object_mut() {
            m.entry("creationTimestamp").or_insert(Value::Null);
        }
        t.insert("$patch".into(), json!("replace"));
    }
    // serde_json's map is ordered by key, as Go's re-marshalled map is.
    json!({"spec": {"template": template}}).to_string()
}

fn data_of(rev: &ControllerRevision) -> String {
    rev.data
        .as_ref()
        .map(|d| d.0.to_string())
        .unwrap_or_default()
}

impl DaemonSetController {
    /// The current revision (created if needed) and the old ones.
    pub(super) async fn construct_history(
        &self,
        ds: &DaemonSet,
    ) -> Result<(ControllerRevision, Vec<ControllerRevision>), String> {
        let ns = ds.namespace().unwrap_or_default();
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), &ns);
        let want = patch_bytes(ds);
        let mut current: Vec<ControllerRevision> = Vec::new();
        let mut old: Vec<ControllerRevision> = Vec::new();
        // Its revisions, orphans its selector matches adopted (a DaemonSet deleted with
        // --cascade=orphan and made again keeps its history).
        let selector = Selector::from_label_selector(ds.spec.as_ref().map(|s| &s.selector));
        let candidates = self.revisions.by_index("namespace", &ns);
        let owned = crate::claim::claim(&self.client, ds, &selector, candidates).await?;
        for rev in owned {
            let rev = rev.as_ref().clone();
            if data_of(&rev) == want {
                current.push(rev);
            } else {
                old.push(rev);
            }
        }
        let next_revision = old.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
        current.sort_by_key(|r| r.revision);
        let cur = match current.pop() {
            Some(mut keep) => {
                for dup in current {
                    let _ = api.delete(&dup.name_any(), &DeleteParams::default()).await;
                }
                if keep.revision < next_revision {
                    keep.revision = next_revision;
                    keep = api
                        .replace(&keep.name_any(), &PostParams::default(), &keep)
                        .await
                        .map_err(|e| api_message(&e))?;
                }
                keep
            }
            None => self.snapshot(ds, &api, &want, next_revision).await?,
        };
        Ok((cur, old))
    }

    async fn snapshot(
        &self,
        ds: &DaemonSet,
        api: &Api<ControllerRevision>,
        data: &str,
        revision: i64,
    ) -> Result<ControllerRevision, String> {
        let collision = ds.status.as_ref().and_then(|s| s.collision_count);
        let template = ds.spec.as_ref().map(|s| &s.template);
        let hash = compute_hash(template, collision);
        let mut labels: BTreeMap<String, String> = template
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert(HASH_LABEL.into(), hash.clone());
        let raw: Value = serde_json::from_str(data).map_err(|e| e.to_string())?;
        let rev = ControllerRevision {
            metadata: ObjectMeta {
                name: Some(format!("{}-{hash}", ds.name_any())),
                namespace: ds.namespace(),
                labels: Some(labels),
                annotations: ds.metadata.annotations.clone(),
                owner_references: Some(vec![pods::controller_ref(ds)]),
                ..Default::default()
            },
            data: Some(RawExtension(raw)),
            revision,
        };
        match api.create(&PostParams::default(), &rev).await {
            Ok(r) => Ok(r),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let existing = api
                    .get(&rev.name_any())
                    .await
                    .map_err(|e| api_message(&e))?;
                if data_of(&existing) == data {
                    return Ok(existing);
                }
                // A hash collision: count it and try again with another hash.
                let mut status = ds.status.clone().unwrap_or_default();
                status.collision_count = Some(collision.unwrap_or(0) + 1);
                self.write_status(ds, status).await?;
                Err(format!(
                    "hash collision for controller revision {}",
                    rev.name_any()
                ))
            }
            Err(e) => Err(api_message(&e)),
        }
    }

    /// Delete the oldest revisions beyond revisionHistoryLimit, keeping any a pod still uses.
    pub(super) async fn cleanup_history(
        &self,
        ds: &DaemonSet,
        mut old: Vec<ControllerRevision>,
        live_hashes: &[String],
    ) -> Result<(), String> {
        let limit = ds
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10);
        let to_kill = old.len() as i64 - i64::from(limit);
        if to_kill <= 0 {
            return Ok(());
        }
        old.sort_by_key(|r| r.revision);
        let api: Api<ControllerRevision> =
            Api::namespaced(self.client.clone(), &ds.namespace().unwrap_or_default());
        let mut killed = 0;
        for rev in old {
            if killed >= to_kill {
                break;
            }
            let hash = rev.labels().get(HASH_LABEL).cloned().unwrap_or_default();
            if live_hashes.contains(&hash) {
                continue;
            }
            match api.delete(&rev.name_any(), &DeleteParams::default()).await {
                Ok(_) => killed += 1,
                Err(e) if is_not_found(&e) => killed += 1,
                Err(e) => return Err(api_message(&e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_bytes_are_sorted_compact_and_replace() {
        let ds: DaemonSet = serde_json::from_value(json!({"metadata": {"name": "d"}, "spec": {
            "selector": {"matchLabels": {"app": "x"}},
            "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "nginx:1.14"}]}}}}))
        .unwrap();
        assert_eq!(
            patch_bytes(&ds),
            r#"{"spec":{"template":{"$patch":"replace","metadata":{"creationTimestamp":null,"labels":{"app":"x"}},"spec":{"containers":[{"image":"nginx:1.14","name":"c"}]}}}}"#
        );
    }
}
