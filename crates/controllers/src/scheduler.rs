//! The scheduler (being written).

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use tokio_util::sync::CancellationToken;

use crate::informer::Informer;

pub struct Scheduler {
    _client: Client,
    _pods: Arc<Informer<Pod>>,
    _nodes: Arc<Informer<Node>>,
}

impl Scheduler {
    pub fn new(client: Client, pods: Arc<Informer<Pod>>, nodes: Arc<Informer<Node>>) -> Arc<Self> {
        Arc::new(Scheduler {
            _client: client,
            _pods: pods,
            _nodes: nodes,
        })
    }

    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        stop.cancelled().await;
    }
}
