//! ger's controllers: each is a `kube::Client` user built on shared informers and work
//! queues, so the same code runs in-process in `ger server` and against any API server
//! (`ger controllers --kubeconfig F`).

pub mod backoff;
pub mod claim;
pub mod daemonpodupdater;
pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod events;
pub mod expectations;
pub mod gc;
pub mod informer;
pub mod nodelifecycle;
pub mod podgc;
pub mod pods;
pub mod queue;
pub mod ranking;
pub mod replicaset;
pub mod scheduler;
pub mod serviceaccounts;
pub mod tainteviction;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    Endpoints, Namespace, Node, Pod, ReplicationController, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::api::Api;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::informer::Informer;
use crate::pods::{controller_uid_index, namespace_index, node_index};
use crate::replicaset::ReplicaController;

/// The informers the controllers share (one list+watch per kind).
pub struct Informers {
    pub pods: Arc<Informer<Pod>>,
    pub replicasets: Arc<Informer<ReplicaSet>>,
    pub rcs: Arc<Informer<ReplicationController>>,
    pub nodes: Arc<Informer<Node>>,
    pub deployments: Arc<Informer<Deployment>>,
    pub daemonsets: Arc<Informer<DaemonSet>>,
    pub revisions: Arc<Informer<ControllerRevision>>,
    /// Node heartbeats (`kube-node-lease` only).
    pub leases: Arc<Informer<Lease>>,
    pub namespaces: Arc<Informer<Namespace>>,
    pub serviceaccounts: Arc<Informer<ServiceAccount>>,
    pub services: Arc<Informer<Service>>,
    pub endpoints: Arc<Informer<Endpoints>>,
    pub endpointslices: Arc<Informer<EndpointSlice>>,
}

impl Informers {
    pub fn new() -> Informers {
        Informers {
            pods: Informer::new(vec![
                ("namespace", namespace_index::<Pod>),
                ("controller", controller_uid_index::<Pod>),
                ("node", node_index),
            ]),
            replicasets: Informer::new(vec![
                ("namespace", namespace_index::<ReplicaSet>),
                ("controller", controller_uid_index::<ReplicaSet>),
            ]),
            rcs: Informer::new(vec![(
                "namespace",
                namespace_index::<ReplicationController>,
            )]),
            nodes: Informer::new(Vec::new()),
            deployments: Informer::new(vec![("namespace", namespace_index::<Deployment>)]),
            daemonsets: Informer::new(vec![("namespace", namespace_index::<DaemonSet>)]),
            revisions: Informer::new(vec![
                ("namespace", namespace_index::<ControllerRevision>),
                ("controller", controller_uid_index::<ControllerRevision>),
            ]),
            leases: Informer::new(Vec::new()),
            namespaces: Informer::new(Vec::new()),
            serviceaccounts: Informer::new(Vec::new()),
            services: Informer::new(vec![("namespace", namespace_index::<Service>)]),
            endpoints: Informer::new(Vec::new()),
            endpointslices: Informer::new(vec![("service", endpoints::service_index)]),
        }
    }
}

impl Default for Informers {
    fn default() -> Self {
        Self::new()
    }
}

/// Workers per controller.
const WORKERS: usize = 8;

/// Settings of the controllers that have any.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub node_lifecycle: nodelifecycle::NodeLifecycleOptions,
}

/// Start every controller on `client`; they stop when `stop` fires.
pub fn start(
    client: Client,
    inf: &Informers,
    opts: Options,
    stop: CancellationToken,
) -> JoinSet<()> {
    let rs = ReplicaController::new(client.clone(), inf.replicasets.clone(), inf.pods.clone());
    let rc = ReplicaController::new(client.clone(), inf.rcs.clone(), inf.pods.clone());
    let scheduler = scheduler::Scheduler::new(client.clone(), inf.pods.clone(), inf.nodes.clone());
    let gc = gc::GarbageCollector::new(client.clone());
    gc.watch(&inf.pods);
    gc.watch(&inf.replicasets);
    gc.watch(&inf.rcs);
    gc.watch(&inf.deployments);
    gc.watch(&inf.daemonsets);
    gc.watch(&inf.revisions);
    let deployments = deployment::DeploymentController::new(
        client.clone(),
        inf.deployments.clone(),
        inf.replicasets.clone(),
        inf.pods.clone(),
    );
    let daemonsets = daemonset::DaemonSetController::new(
        client.clone(),
        inf.daemonsets.clone(),
        inf.pods.clone(),
        inf.nodes.clone(),
        inf.revisions.clone(),
    );
    let podupdater = daemonpodupdater::DaemonPodUpdater::new(
        client.clone(),
        inf.daemonsets.clone(),
        inf.pods.clone(),
        inf.nodes.clone(),
    );
    let podgc = podgc::PodGc::new(client.clone(), inf.pods.clone(), inf.nodes.clone());
    let lifecycle = nodelifecycle::NodeLifecycleController::new(
        client.clone(),
        opts.node_lifecycle,
        inf.nodes.clone(),
        inf.leases.clone(),
        inf.pods.clone(),
    );
    let taints = tainteviction::TaintEviction::new(client.clone(), inf.pods.clone(), &inf.nodes);
    let accounts = serviceaccounts::ServiceAccounts::new(
        client.clone(),
        &inf.namespaces,
        &inf.serviceaccounts,
    );
    let endpoints = endpoints::EndpointsController::new(
        client.clone(),
        inf.services.clone(),
        inf.pods.clone(),
        inf.endpoints.clone(),
        inf.endpointslices.clone(),
    );
    let mut set = JoinSet::new();
    set.spawn(endpoints.run(WORKERS, stop.clone()));
    set.spawn(lifecycle.run(stop.clone()));
    set.spawn(accounts.run(stop.clone()));
    set.spawn(taints.run(stop.clone()));
    set.spawn(podgc.run(stop.clone()));
    set.spawn(daemonsets.run(WORKERS, stop.clone()));
    set.spawn(podupdater.run(daemonpodupdater::WORKERS, stop.clone()));
    set.spawn(deployments.run(WORKERS, stop.clone()));
    set.spawn(rs.run(WORKERS, stop.clone()));
    set.spawn(rc.run(WORKERS, stop.clone()));
    set.spawn(scheduler.run(stop.clone()));
    set.spawn(gc.run(WORKERS, stop.clone()));
    let c = &client;
    set.spawn(inf.pods.clone().run(Api::all(c.clone()), stop.clone()));
    set.spawn(
        inf.replicasets
            .clone()
            .run(Api::all(c.clone()), stop.clone()),
    );
    set.spawn(inf.rcs.clone().run(Api::all(c.clone()), stop.clone()));
    set.spawn(inf.nodes.clone().run(Api::all(c.clone()), stop.clone()));
    set.spawn(
        inf.deployments
            .clone()
            .run(Api::all(c.clone()), stop.clone()),
    );
    set.spawn(
        inf.daemonsets
            .clone()
            .run(Api::all(c.clone()), stop.clone()),
    );
    set.spawn(inf.revisions.clone().run(Api::all(c.clone()), stop.clone()));
    set.spawn(
        inf.namespaces
            .clone()
            .run(Api::all(c.clone()), stop.clone()),
    );
    set.spawn(
        inf.serviceaccounts
            .clone()
            .run(Api::all(c.clone()), stop.clone()),
    );
    set.spawn(inf.services.clone().run(Api::all(c.clone()), stop.clone()));
    set.spawn(inf.endpoints.clone().run(Api::all(c.clone()), stop.clone()));
    set.spawn(
        inf.endpointslices
            .clone()
            .run(Api::all(c.clone()), stop.clone()),
    );
    set.spawn(inf.leases.clone().run(
        Api::namespaced(c.clone(), nodelifecycle::LEASE_NAMESPACE),
        stop,
    ));
    set
}
