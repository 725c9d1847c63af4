//! ControllerRef claiming (`ClaimObjects`, k8s-controllers.md §1.8): a controller adopts
//! orphans its selector matches and releases what it owns but no longer matches.

use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::pods::{self, Selector};
use crate::replicaset::{api_message, is_not_found};

/// The candidates `owner` owns after adopting and releasing.
pub async fn claim<O, K>(
    client: &Client,
    owner: &O,
    selector: &Selector,
    candidates: Vec<Arc<K>>,
) -> Result<Vec<Arc<K>>, String>
where
    O: Resource<DynamicType = ()>,
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug,
{
    let uid = owner.uid().unwrap_or_default();
    let deleting = owner.meta().deletion_timestamp.is_some();
    let api: Api<K> = Api::namespaced(client.clone(), &owner.namespace().unwrap_or_default());
    let mut owned = Vec::new();
    let no_labels = std::collections::BTreeMap::new();
    for obj in candidates {
        let matches = selector.matches(obj.meta().labels.as_ref().unwrap_or(&no_labels));
        let patch = match pods::controller_of(obj.as_ref()) {
            Some(r) if r.uid != uid => continue,
            Some(_) if matches => {
                owned.push(obj);
                continue;
            }
            // Ours but no longer matching: release (not while we are being deleted).
            Some(_) if deleting => continue,
            Some(_) => json!({"metadata": {
                "ownerReferences": [{"$patch": "delete", "uid": uid}], "uid": obj.uid()}}),
            None if deleting || !matches || obj.meta().deletion_timestamp.is_some() => continue,
            None => json!({"metadata": {
                "ownerReferences": [pods::controller_ref(owner)], "uid": obj.uid()}}),
        };
        let adopting = matches;
        match api
            .patch(
                &obj.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
        {
            Ok(updated) if adopting => owned.push(Arc::new(updated)),
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(api_message(&e)),
        }
    }
    Ok(owned)
}
