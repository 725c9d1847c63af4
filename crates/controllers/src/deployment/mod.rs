//! The Deployment controller (k8s-controllers.md §4): ReplicaSets named
//! `<deployment>-<pod-template-hash>`, rolling and recreate rollouts, proportional scaling,
//! pause, rollback, revision history and progress conditions.
//!
//! Reconcile order as upstream: delete > pause > rollback > scale > rollout.

mod progress;
mod recreate;
mod rollback;
mod rolling;
mod sync;
pub mod util;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::events::{Recorder, object_ref};
use crate::informer::{Change, Informer, key_of};
use crate::pods::{self, Selector};
use crate::queue::{Outcome, Queue};
use crate::replicaset::api_message;

pub struct DeploymentController {
    client: Client,
    deployments: Arc<Informer<Deployment>>,
    replicasets: Arc<Informer<ReplicaSet>>,
    pods: Arc<Informer<Pod>>,
    queue: Arc<Queue>,
    recorder: Recorder,
}

fn selector_of(d: &Deployment) -> Selector {
    Selector::from_label_selector(d.spec.as_ref().map(|s| &s.selector))
}

impl DeploymentController {
    pub fn new(
        client: Client,
        deployments: Arc<Informer<Deployment>>,
        replicasets: Arc<Informer<ReplicaSet>>,
        pods: Arc<Informer<Pod>>,
    ) -> Arc<Self> {
        let c = Arc::new(DeploymentController {
            recorder: Recorder::new(client.clone(), "deployment-controller", None),
            client,
            deployments,
            replicasets,
            pods,
            queue: Queue::new(),
        });
        let weak = Arc::downgrade(&c);
        c.deployments.on_change(move |change| {
            let Some(c) = weak.upgrade() else { return };
            let (Change::Added(d) | Change::Updated { new: d, .. } | Change::Deleted(d)) = change;
            c.queue.add(key_of(d.as_ref()));
        });
        let weak = Arc::downgrade(&c);
        c.replicasets.on_change(move |change| {
            let Some(c) = weak.upgrade() else { return };
            match change {
                Change::Updated { old, new } => {
                    c.enqueue_owner_of(old);
                    c.enqueue_owner_of(new);
                }
                Change::Added(rs) | Change::Deleted(rs) => c.enqueue_owner_of(rs),
            }
        });
        let weak = Arc::downgrade(&c);
        c.pods.on_change(move |change| {
            // Recreate waits for old pods to be gone.
            let Some(c) = weak.upgrade() else { return };
            if let Change::Deleted(p) = change
                && let Some(r) = pods::controller_of(p.as_ref())
                && r.kind == "ReplicaSet"
            {
                let key = format!("{}/{}", p.namespace().unwrap_or_default(), r.name);
                if let Some(rs) = c.replicasets.get(&key) {
                    c.enqueue_owner_of(&rs);
                }
            }
        });
        c
    }

    fn enqueue_owner_of(&self, rs: &ReplicaSet) {
        let ns = rs.namespace().unwrap_or_default();
        match pods::controller_of(rs) {
            Some(r) if r.kind == "Deployment" => self.queue.add(format!("{ns}/{}", r.name)),
            Some(_) => {}
            None => {
                let labels = rs.metadata.labels.clone().unwrap_or_default();
                for d in self.deployments.by_index("namespace", &ns) {
                    if selector_of(&d).matches(&labels) {
                        self.queue.add(key_of(d.as_ref()));
                    }
                }
            }
        }
    }

    pub async fn run(self: Arc<Self>, workers: usize, stop: CancellationToken) {
        self.deployments.wait_synced().await;
        self.replicasets.wait_synced().await;
        self.pods.wait_synced().await;
        let keys = self.deployments.keys();
        self.queue
            .clone()
            .serve(
                keys,
                self.clone(),
                |c, key| async move { c.sync(&key).await },
                workers,
                stop,
            )
            .await;
    }

    fn rs_api(&self, ns: &str) -> Api<ReplicaSet> {
        Api::namespaced(self.client.clone(), ns)
    }

    fn d_api(&self, ns: &str) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// The ReplicaSets this Deployment owns, adopting and releasing as §1.8 says, in
    /// creation order.
    async fn claim_replicasets(&self, d: &Deployment) -> Result<Vec<ReplicaSet>, String> {
        let ns = d.namespace().unwrap_or_default();
        let candidates = self.replicasets.by_index("namespace", &ns);
        let owned = crate::claim::claim(&self.client, d, &selector_of(d), candidates).await?;
        let mut owned: Vec<ReplicaSet> = owned.iter().map(|rs| rs.as_ref().clone()).collect();
        owned.sort_by(|a, b| {
            (
                a.metadata.creation_timestamp.as_ref().map(|t| t.0),
                a.name_any(),
            )
                .cmp(&(
                    b.metadata.creation_timestamp.as_ref().map(|t| t.0),
                    b.name_any(),
                ))
        });
        Ok(owned)
    }

    async fn sync(&self, key: &str) -> Result<Outcome, String> {
        let Some(d) = self.deployments.get(key) else {
            return Ok(Outcome::Done);
        };
        let mut d = d.as_ref().clone();
        if selector_of(&d).is_empty() {
            self.recorder.warning(
                object_ref(&d),
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.".into(),
            );
            let generation = d.metadata.generation;
            let mut status = d.status.clone().unwrap_or_default();
            if status.observed_generation < generation {
                status.observed_generation = generation;
                self.write_status(&d, status).await?;
            }
            return Ok(Outcome::Done);
        }
        let mut rss = self.claim_replicasets(&d).await?;
        if d.metadata.deletion_timestamp.is_some() {
            self.sync_status_only(&mut d, &mut rss).await?;
            return Ok(Outcome::Done);
        }
        self.check_paused_conditions(&mut d).await?;
        let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        if paused {
            self.sync_scale(&mut d, &mut rss).await?;
            return Ok(Outcome::Done);
        }
        if util::annotation(&d.metadata, util::ROLLBACK_TO).is_some() {
            self.rollback(&mut d, &mut rss).await?;
            return Ok(Outcome::Done);
        }
        if self.is_scaling_event(&d, &rss) {
            self.sync_scale(&mut d, &mut rss).await?;
            return Ok(Outcome::Done);
        }
        if util::is_rolling(&d) {
            self.rollout_rolling(&mut d, &mut rss).await
        } else {
            self.rollout_recreate(&mut d, &mut rss).await
        }
    }

    /// Any active RS whose desired-replicas annotation differs from the Deployment's replicas.
    fn is_scaling_event(&self, d: &Deployment, rss: &[ReplicaSet]) -> bool {
        let want = util::replicas(d);
        rss.iter()
            .filter(|rs| util::rs_replicas(rs) > 0)
            .any(|rs| util::int_annotation(rs, util::DESIRED_REPLICAS).is_some_and(|v| v != want))
    }

    async fn write_status(
        &self,
        d: &Deployment,
        status: k8s_openapi::api::apps::v1::DeploymentStatus,
    ) -> Result<Deployment, String> {
        let mut next = d.clone();
        next.status = Some(status);
        let body = serde_json::to_vec(&next).map_err(|e| e.to_string())?;
        self.d_api(&d.namespace().unwrap_or_default())
            .replace_status(&d.name_any(), &PostParams::default(), body)
            .await
            .map_err(|e| api_message(&e))
    }
}
