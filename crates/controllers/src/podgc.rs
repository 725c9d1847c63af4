//! Pod garbage collection (`podgc`): pods bound to a node that no longer exists are deleted at
//! once (no kubelet is left to end their grace period).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::informer::{Change, Informer};

pub struct PodGc {
    client: Client,
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
}

impl PodGc {
    pub fn new(client: Client, pods: Arc<Informer<Pod>>, nodes: Arc<Informer<Node>>) -> Arc<Self> {
        let gc = Arc::new(PodGc {
            client,
            pods,
            nodes,
        });
        let weak = Arc::downgrade(&gc);
        gc.nodes.on_change(move |change| {
            if let (Some(gc), Change::Deleted(node)) = (weak.upgrade(), change) {
                let name = node.name_any();
                tokio::spawn(async move {
                    // Let the informer catch up with pods bound just before.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    gc.collect_node(&name).await;
                });
            }
        });
        gc
    }

    async fn collect_node(&self, node: &str) {
        if self.nodes.get(node).is_some() {
            return;
        }
        for pod in self.pods.by_index("node", node) {
            let api: Api<Pod> =
                Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            };
            if let Err(e) = api.delete(&pod.name_any(), &dp).await {
                tracing::debug!(error = %e, "orphaned pod not deleted");
            }
        }
    }

    /// Collect pods of nodes that disappeared while nobody watched, then follow deletions.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        self.pods.wait_synced().await;
        self.nodes.wait_synced().await;
        let orphaned: Vec<String> = self
            .pods
            .list()
            .iter()
            .filter_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()))
            .filter(|n| !n.is_empty() && self.nodes.get(n).is_none())
            .collect();
        for node in orphaned {
            self.collect_node(&node).await;
        }
        stop.cancelled().await;
    }
}
