//! Endpoints (`endpoint-controller`): for every Service with a selector, an Endpoints object of
//! the same name lists the matching pods that have an IP: ready ones under `addresses`, the
//! others under `notReadyAddresses`, each port resolved from the Service's `targetPort` (a
//! number, or the name of a container port). Pods whose ports resolve alike share a subset;
//! subsets and addresses are sorted, so an unchanged set of pods is never rewritten.
//!
//! The same pods are also published as EndpointSlices (`endpointslice-controller`), which is
//! what `kubectl describe service` reads: one slice per set of resolved ports, labelled
//! `kubernetes.io/service-name` and owned by the Service.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::informer::{Change, Informer, key_of};
use crate::queue::{Outcome, Queue};
use crate::replicaset::api_message;

pub struct EndpointsController {
    client: Client,
    services: Arc<Informer<Service>>,
    pods: Arc<Informer<Pod>>,
    endpoints: Arc<Informer<Endpoints>>,
    slices: Arc<Informer<EndpointSlice>>,
    queue: Arc<Queue>,
}

/// The label that ties a slice to its Service.
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const CONTROLLER: &str = "endpointslice-controller.k8s.io";

/// Index function: `namespace/service` of a slice.
pub fn service_index(slice: &EndpointSlice) -> Vec<String> {
    slice
        .labels()
        .get(SERVICE_NAME)
        .map(|s| vec![format!("{}/{s}", slice.namespace().unwrap_or_default())])
        .unwrap_or_default()
}

fn selects(svc: &Service, pod: &Pod) -> bool {
    let Some(sel) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    !sel.is_empty() && sel.iter().all(|(k, v)| pod.labels().get(k) == Some(v))
}

impl EndpointsController {
    pub fn new(
        client: Client,
        services: Arc<Informer<Service>>,
        pods: Arc<Informer<Pod>>,
        endpoints: Arc<Informer<Endpoints>>,
        slices: Arc<Informer<EndpointSlice>>,
    ) -> Arc<Self> {
        let c = Arc::new(EndpointsController {
            client,
            services,
            pods,
            endpoints,
            slices,
            queue: Queue::new(),
        });
        let weak = Arc::downgrade(&c);
        c.services.on_change(move |change| {
            if let Some(c) = weak.upgrade() {
                let (Change::Added(s) | Change::Updated { new: s, .. } | Change::Deleted(s)) =
                    change;
                c.queue.add(key_of(s.as_ref()));
            }
        });
        let weak = Arc::downgrade(&c);
        c.pods.on_change(move |change| {
            let Some(c) = weak.upgrade() else { return };
            let pods: Vec<&Pod> = match change {
                Change::Added(p) | Change::Deleted(p) => vec![p.as_ref()],
                Change::Updated { old, new } => vec![old.as_ref(), new.as_ref()],
            };
            let ns = pods[0].namespace().unwrap_or_default();
            for svc in c.services.by_index("namespace", &ns) {
                if pods.iter().any(|p| selects(&svc, p)) {
                    c.queue.add(key_of(svc.as_ref()));
                }
            }
        });
        let weak = Arc::downgrade(&c);
        c.endpoints.on_change(move |change| {
            // Someone else changed or removed what the controller keeps: put it back.
            // Endpoints without a Service of their name are someone else's.
            if let (Some(c), Change::Updated { new: e, .. } | Change::Deleted(e)) =
                (weak.upgrade(), change)
            {
                let key = key_of(e.as_ref());
                if c.services.get(&key).is_some() {
                    c.queue.add(key);
                }
            }
        });
        let weak = Arc::downgrade(&c);
        c.slices.on_change(move |change| {
            if let (Some(c), Change::Updated { new: e, .. } | Change::Deleted(e)) =
                (weak.upgrade(), change)
            {
                for key in service_index(e) {
                    if c.services.get(&key).is_some() {
                        c.queue.add(key);
                    }
                }
            }
        });
        c
    }

    pub async fn run(self: Arc<Self>, workers: usize, stop: CancellationToken) {
        self.services.wait_synced().await;
        self.pods.wait_synced().await;
        self.endpoints.wait_synced().await;
        self.slices.wait_synced().await;
        let keys = self.services.keys();
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

    async fn sync(&self, key: &str) -> Result<Outcome, String> {
        let (ns, name) = key.split_once('/').unwrap_or(("default", key));
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), ns);
        let current = self.endpoints.get(key);
        let Some(svc) = self.services.get(key) else {
            self.sync_slices(key, None, &[]).await?;
            if current.is_some() {
                match api.delete(name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(api_message(&e)),
                }
            }
            return Ok(Outcome::Done);
        };
        // No selector: the Endpoints are the user's (or the API server's, for `kubernetes`).
        if svc
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .is_none_or(|s| s.is_empty())
        {
            return Ok(Outcome::Done);
        }
        let pods: Vec<Arc<Pod>> = self
            .pods
            .by_index("namespace", ns)
            .into_iter()
            .filter(|p| selects(&svc, p))
            .collect();
        self.sync_slices(key, Some(&svc), &pods).await?;
        let subsets = subsets(&svc, &pods);
        let labels = svc.metadata.labels.clone().filter(|l| !l.is_empty());
        if let Some(cur) = &current
            && cur.subsets.clone().unwrap_or_default() == subsets
            && cur.metadata.labels.clone().filter(|l| !l.is_empty()) == labels
        {
            return Ok(Outcome::Done);
        }
        let mut want = Endpoints::default();
        want.metadata.name = Some(name.to_string());
        want.metadata.namespace = Some(ns.to_string());
        want.metadata.labels = labels;
        want.subsets = (!subsets.is_empty()).then_some(subsets);
        let written = match &current {
            Some(cur) => {
                want.metadata.resource_version = cur.metadata.resource_version.clone();
                api.replace(name, &PostParams::default(), &want).await
            }
            None => api.create(&PostParams::default(), &want).await,
        };
        match written {
            Ok(_) => Ok(Outcome::Done),
            // Raced with another write: the informer brings the news and a new sync.
            Err(kube::Error::Api(e)) if matches!(e.code, 409 | 404) => Ok(Outcome::Done),
            Err(e) => Err(api_message(&e)),
        }
    }
}

impl EndpointsController {
    /// Make the slices of the Service at `key` say what `subsets` says (`svc` is `None` when
    /// the Service is gone: its slices go too).
    async fn sync_slices(
        &self,
        key: &str,
        svc: Option<&Service>,
        pods: &[Arc<Pod>],
    ) -> Result<(), String> {
        let (ns, name) = key.split_once('/').unwrap_or(("default", key));
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), ns);
        let mut have: Vec<Arc<EndpointSlice>> = self
            .slices
            .by_index("service", key)
            .into_iter()
            .filter(|s| s.labels().get(MANAGED_BY).map(String::as_str) == Some(CONTROLLER))
            .collect();
        have.sort_by_key(|s| s.name_any());
        let want: Vec<EndpointSlice> = match svc {
            Some(svc) => slices(svc, pods),
            None => Vec::new(),
        };
        let mut have = have.into_iter();
        for mut slice in want {
            let result = match have.next() {
                Some(cur) if cur.endpoints == slice.endpoints && cur.ports == slice.ports => {
                    continue;
                }
                Some(cur) => {
                    slice.metadata.name = cur.metadata.name.clone();
                    slice.metadata.resource_version = cur.metadata.resource_version.clone();
                    api.replace(&cur.name_any(), &PostParams::default(), &slice)
                        .await
                }
                None => {
                    slice.metadata.generate_name = Some(format!("{name}-"));
                    api.create(&PostParams::default(), &slice).await
                }
            };
            match result {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if matches!(e.code, 409 | 404) => {}
                Err(e) => return Err(api_message(&e)),
            }
        }
        for extra in have {
            match api
                .delete(&extra.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(api_message(&e)),
            }
        }
        Ok(())
    }
}

/// The EndpointSlices of `svc` over `pods`: one per subset, ready and not-ready endpoints
/// together, with their conditions.
pub fn slices(svc: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSlice> {
    let name = svc.name_any();
    let mut labels = svc.labels().clone();
    labels.insert(SERVICE_NAME.into(), name.clone());
    labels.insert(MANAGED_BY.into(), CONTROLLER.into());
    let owner = k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name,
        uid: svc.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    subsets(svc, pods)
        .into_iter()
        .flat_map(|subset| {
            let endpoint = |a: EndpointAddress, ready: bool| discovery::Endpoint {
                addresses: vec![a.ip],
                conditions: Some(discovery::EndpointConditions {
                    ready: Some(ready),
                    serving: Some(ready),
                    terminating: Some(false),
                }),
                node_name: a.node_name,
                target_ref: a.target_ref,
                ..discovery::Endpoint::default()
            };
            let mut endpoints: Vec<discovery::Endpoint> = subset
                .addresses
                .into_iter()
                .flatten()
                .map(|a| endpoint(a, true))
                .chain(
                    subset
                        .not_ready_addresses
                        .into_iter()
                        .flatten()
                        .map(|a| endpoint(a, false)),
                )
                .collect();
            endpoints.sort_by(|a, b| a.addresses.cmp(&b.addresses));
            let ports = subset.ports.map(|ports| {
                ports
                    .into_iter()
                    .map(|p| discovery::EndpointPort {
                        // Always set, if empty: clients dereference it.
                        name: Some(p.name.unwrap_or_default()),
                        port: Some(p.port),
                        protocol: p.protocol,
                        app_protocol: None,
                    })
                    .collect()
            });
            let chunks: Vec<Vec<discovery::Endpoint>> = if endpoints.is_empty() {
                vec![Vec::new()]
            } else {
                endpoints
                    .chunks(MAX_ENDPOINTS_PER_SLICE)
                    .map(<[_]>::to_vec)
                    .collect()
            };
            let (labels, owner, ns) = (labels.clone(), owner.clone(), svc.namespace());
            chunks.into_iter().map(move |endpoints| {
                let mut slice = EndpointSlice {
                    address_type: "IPv4".into(),
                    endpoints,
                    ports: ports.clone(),
                    ..EndpointSlice::default()
                };
                slice.metadata.namespace = ns.clone();
                slice.metadata.labels = Some(labels.clone());
                slice.metadata.owner_references = Some(vec![owner.clone()]);
                slice
            })
        })
        .collect()
}

/// Endpoints per slice at most (the controller's `--max-endpoints-per-slice` default).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// The port a Service port reaches on `pod`, if the pod has it.
fn target_port(pod: &Pod, target: Option<&IntOrString>, port: i32) -> Option<i32> {
    match target {
        None => Some(port),
        Some(IntOrString::Int(n)) if *n == 0 => Some(port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port),
    }
}

/// The subsets `svc` has over `pods` (`RepackSubsets`' order: by ports, addresses by IP).
pub fn subsets(svc: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    type Addresses = (Vec<EndpointAddress>, Vec<EndpointAddress>);
    let mut groups: BTreeMap<Vec<(String, i32, String)>, Addresses> = BTreeMap::new();
    for pod in pods {
        let status = pod.status.as_ref();
        let Some(ip) = status
            .and_then(|s| s.pod_ip.clone())
            .filter(|ip| !ip.is_empty())
        else {
            continue;
        };
        let phase = crate::pods::phase(pod);
        if pod.metadata.deletion_timestamp.is_some() || matches!(phase, "Succeeded" | "Failed") {
            continue;
        }
        let resolved: Vec<(String, i32, String)> = ports
            .iter()
            .filter_map(|p| {
                let n = target_port(pod, p.target_port.as_ref(), p.port)?;
                Some((
                    p.name.clone().unwrap_or_default(),
                    n,
                    p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                ))
            })
            .collect();
        if resolved.is_empty() && !ports.is_empty() {
            continue;
        }
        let address = EndpointAddress {
            ip,
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                namespace: pod.metadata.namespace.clone(),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
                ..ObjectReference::default()
            }),
            ..EndpointAddress::default()
        };
        let group = groups.entry(resolved).or_default();
        if crate::pods::is_ready(pod) {
            group.0.push(address);
        } else {
            group.1.push(address);
        }
    }
    groups
        .into_iter()
        .map(|(ports, (mut ready, mut not_ready))| {
            ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            not_ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            let ports: Vec<EndpointPort> = ports
                .into_iter()
                .map(|(name, port, protocol)| EndpointPort {
                    name: (!name.is_empty()).then_some(name),
                    port,
                    protocol: Some(protocol),
                    ..EndpointPort::default()
                })
                .collect();
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ip: &str, ready: bool, port_name: Option<&str>) -> Arc<Pod> {
        let ports = match port_name {
            Some(n) => json!([{"name": n, "containerPort": 9000}]),
            None => json!([]),
        };
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                    "labels": {"app": "web"}},
                "spec": {"nodeName": "node-1", "containers": [{"name": "c", "ports": ports}]},
                "status": {"phase": "Running", "podIP": ip,
                    "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
            }))
            .unwrap(),
        )
    }

    fn svc(ports: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"}, "ports": ports},
        }))
        .unwrap()
    }

    fn ips(a: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
        a.iter().flatten().map(|a| a.ip.as_str()).collect()
    }

    #[test]
    fn ready_pods_are_addresses_and_the_rest_wait() {
        let s = svc(json!([{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]));
        let pods = vec![
            pod("b", "10.244.2.9", true, None),
            pod("a", "10.244.1.3", true, None),
            pod("c", "10.244.3.1", false, None),
            pod("d", "", true, None),
        ];
        let got = subsets(&s, &pods);
        assert_eq!(got.len(), 1);
        assert_eq!(ips(&got[0].addresses), ["10.244.1.3", "10.244.2.9"]);
        assert_eq!(ips(&got[0].not_ready_addresses), ["10.244.3.1"]);
        let port = &got[0].ports.as_ref().unwrap()[0];
        assert_eq!((port.name.as_deref(), port.port), (Some("http"), 8080));
        let target = got[0].addresses.as_ref().unwrap()[0]
            .target_ref
            .as_ref()
            .unwrap();
        assert_eq!(target.name.as_deref(), Some("a"));
        assert_eq!(target.uid.as_deref(), Some("uid-a"));
    }

    #[test]
    fn slices_hold_at_most_a_hundred_endpoints() {
        let s = svc(json!([{"port": 80, "protocol": "TCP"}]));
        let pods: Vec<Arc<Pod>> = (0..250)
            .map(|i| {
                pod(
                    &format!("p{i}"),
                    &format!("10.244.{}.{}", i / 200, i % 200),
                    true,
                    None,
                )
            })
            .collect();
        let got = slices(&s, &pods);
        let sizes: Vec<usize> = got.iter().map(|s| s.endpoints.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
        assert!(
            got.iter()
                .all(|s| s.ports.as_ref().is_some_and(|p| p[0].port == Some(80)))
        );
        assert!(
            got.iter()
                .all(|s| s.labels().get(SERVICE_NAME).map(String::as_str) == Some("web"))
        );
        // No pods, no slice (upstream keeps an empty placeholder; `describe` shows <none> either way).
        assert_eq!(slices(&s, &[]).len(), 0);
    }

    #[test]
    fn named_target_ports_resolve_per_pod() {
        let s = svc(json!([{"port": 80, "targetPort": "metrics", "protocol": "TCP"}]));
        let pods = vec![
            pod("a", "10.244.1.3", true, Some("metrics")),
            pod("b", "10.244.1.4", true, None),
        ];
        let got = subsets(&s, &pods);
        assert_eq!(got.len(), 1);
        assert_eq!(ips(&got[0].addresses), ["10.244.1.3"]);
        assert_eq!(got[0].ports.as_ref().unwrap()[0].port, 9000);
        assert!(subsets(&s, &[]).is_empty());
    }
}
