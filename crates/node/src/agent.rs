//! `ger agent`: one edge node in its own process, the kubelet and YurtHub of a node in one.
//!
//! It registers its Node, renews its Lease, runs the pods bound to it with the simulated
//! runtime of the fleet (the same stages), and reports their status. Every pod of the node is
//! mirrored to disk (`<data-dir>/pods/<namespace>_<name>.json`), so the agent keeps serving
//! them while the API server is out of reach, even across its own restart. Watches reconnect
//! with backoff and re-list, and pod status is recomputed from the pods as listed, so nothing
//! written while disconnected is lost or replayed stale.
//!
//! Its local HTTP API, bound to loopback only, is YurtHub 1.7's OTA API:
//! - `GET /pods`: a v1 PodList of this node's pods, from the local mirror (works offline);
//! - `POST /openyurt.io/v1/namespaces/{ns}/pods/{podname}/upgrade`: checks, in YurtHub's order,
//!   that the API server is reachable (503), the pod can be read (500), it is not terminating,
//!   runs on this node and has `PodNeedUpgrade` True, and its image is ready when
//!   `PodImageReady` is present (403), it has an owner (400) that is a DaemonSet (400); then
//!   deletes it (500 when that fails) so its DaemonSet re-creates it from the new template,
//!   and answers 200 `Start updating pod {ns}/{podname}`.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use parking_lot::RwLock;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use ger_controllers::informer::{Change, Informer, key_of};
use ger_controllers::pods::node_index;
use ger_controllers::replicaset::api_message;

use crate::{Fleet, FleetOptions, node_object};

/// The annotation that marks a node run by `ger agent`.
pub const AGENT: &str = "node.ger.io/agent";
/// YurtHub's OTA condition and message prefix.
pub const POD_NEED_UPGRADE: &str = "PodNeedUpgrade";
pub const POD_IMAGE_READY: &str = "PodImageReady";
pub const VERSION_PREFIX: &str = "controllerrevision: ";

#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub node_name: String,
    /// Labels the node registers with (besides the usual hostname/os/arch).
    pub labels: BTreeMap<String, String>,
    /// Where the local API listens; must be a loopback address.
    pub listen: SocketAddr,
    /// Where the pod mirror lives.
    pub data_dir: PathBuf,
    /// The pod runtime's timings; `lease_interval` is the heartbeat.
    pub fleet: FleetOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the local API must listen on a loopback address, not {0}")]
    NotLoopback(SocketAddr),
    #[error("listening on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    #[error("preparing {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
}

/// This node's pods, in memory and on disk.
pub struct PodMirror {
    dir: PathBuf,
    pods: RwLock<BTreeMap<String, Pod>>,
}

fn file_name(key: &str) -> String {
    format!("{}.json", key.replace('/', "_"))
}

impl PodMirror {
    /// Open the mirror in `dir`, loading what an earlier run left there.
    pub fn open(dir: &Path) -> Result<PodMirror, AgentError> {
        std::fs::create_dir_all(dir).map_err(|e| AgentError::DataDir(dir.to_path_buf(), e))?;
        let mut pods = BTreeMap::new();
        let entries =
            std::fs::read_dir(dir).map_err(|e| AgentError::DataDir(dir.to_path_buf(), e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            // A torn or foreign file is skipped, not fatal: the API server has the truth.
            match std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Pod>(&b).ok())
            {
                Some(pod) => {
                    pods.insert(key_of(&pod), pod);
                }
                None => tracing::warn!(file = %path.display(), "unreadable pod file skipped"),
            }
        }
        Ok(PodMirror {
            dir: dir.to_path_buf(),
            pods: RwLock::new(pods),
        })
    }

    pub fn put(&self, pod: &Pod) {
        let key = key_of(pod);
        let path = self.dir.join(file_name(&key));
        let tmp = path.with_extension("json.tmp");
        let written = serde_json::to_vec(pod)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!(file = %path.display(), error = %e, "pod not mirrored to disk");
        }
        self.pods.write().insert(key, pod.clone());
    }

    pub fn remove(&self, key: &str) {
        let _ = std::fs::remove_file(self.dir.join(file_name(key)));
        self.pods.write().remove(key);
    }

    /// Drop every pod but those in `keep` (after a fresh list from the API server).
    pub fn retain(&self, keep: &HashSet<String>) {
        let gone: Vec<String> = self
            .pods
            .read()
            .keys()
            .filter(|k| !keep.contains(*k))
            .cloned()
            .collect();
        for k in gone {
            self.remove(&k);
        }
    }

    pub fn list(&self) -> Vec<Pod> {
        self.pods.read().values().cloned().collect()
    }
}

struct Agent {
    client: Client,
    node: String,
    mirror: Arc<PodMirror>,
}

/// Run the agent until `stop`.
pub async fn run(
    client: Client,
    opts: AgentOptions,
    stop: CancellationToken,
) -> Result<(), AgentError> {
    if !opts.listen.ip().is_loopback() {
        return Err(AgentError::NotLoopback(opts.listen));
    }
    let mirror = Arc::new(PodMirror::open(&opts.data_dir.join("pods"))?);
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| AgentError::Listen(opts.listen, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| AgentError::Listen(opts.listen, e))?;
    println!(
        "ger agent for node {} serving its local API on http://{addr}",
        opts.node_name
    );

    let nodes: Arc<Informer<Node>> = Informer::new(Vec::new());
    let pods: Arc<Informer<Pod>> = Informer::new(vec![("node", node_index)]);
    let m = mirror.clone();
    pods.on_change(move |change| match change {
        Change::Added(p) | Change::Updated { new: p, .. } => m.put(p),
        Change::Deleted(p) => m.remove(&key_of(p.as_ref())),
    });
    let fleet_opts = FleetOptions {
        nodes: 0,
        only_node: Some(opts.node_name.clone()),
        ..opts.fleet.clone()
    };
    let fleet = Fleet::new(client.clone(), fleet_opts, nodes.clone(), pods.clone());
    let agent = Arc::new(Agent {
        client: client.clone(),
        node: opts.node_name.clone(),
        mirror: mirror.clone(),
    });

    let mut tasks = tokio::task::JoinSet::new();
    let by_name = format!("metadata.name={}", opts.node_name);
    let by_node = format!("spec.nodeName={}", opts.node_name);
    {
        let (nodes, pods, stop) = (nodes.clone(), pods.clone(), stop.clone());
        let (client, by_name, by_node) = (client.clone(), by_name.clone(), by_node.clone());
        tasks.spawn(async move {
            let api: Api<Node> = Api::all(client.clone());
            tokio::join!(
                nodes.run_selected(api, Some(&by_name), stop.clone()),
                pods.run_selected(Api::all(client), Some(&by_node), stop),
            );
        });
    }
    {
        // After the first list, pods deleted while we were away leave the mirror too.
        let (pods, mirror) = (pods.clone(), mirror.clone());
        tasks.spawn(async move {
            pods.wait_synced().await;
            let keep: HashSet<String> = pods.list().iter().map(|p| key_of(p.as_ref())).collect();
            mirror.retain(&keep);
        });
    }
    tasks.spawn(register(client.clone(), opts.clone(), stop.clone()));
    tasks.spawn(fleet.run(stop.clone()));

    let app = router(agent);
    let shutdown = stop.clone();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = served {
        tracing::warn!(error = %e, "local API stopped");
    }
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

/// Create this node (or bring its labels up to date), retrying until the API server answers.
async fn register(client: Client, opts: AgentOptions, stop: CancellationToken) {
    let api: Api<Node> = Api::all(client);
    let mut node = node_object(&opts.node_name, 0, &opts.fleet);
    node.status = None;
    let meta = &mut node.metadata;
    meta.annotations = Some(BTreeMap::from([(AGENT.to_string(), "true".to_string())]));
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .extend(opts.labels.clone());
    node.spec = None;
    let mut backoff = Duration::from_millis(200);
    loop {
        let done = match api.create(&PostParams::default(), &node).await {
            Ok(_) => true,
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let patch = json!({"metadata": {"labels": node.metadata.labels, "annotations": node.metadata.annotations}});
                match api
                    .patch(
                        &opts.node_name,
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                {
                    Ok(_) => true,
                    Err(e) => {
                        tracing::warn!(error = %api_message(&e), "node not updated");
                        false
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %api_message(&e), "node not registered; retrying");
                false
            }
        };
        if done {
            return;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/pods", get(list_pods))
        .route(
            "/openyurt.io/v1/namespaces/{ns}/pods/{name}/upgrade",
            post(upgrade_pod),
        )
        .route("/v1/healthz", get(|| async { "OK" }))
        .with_state(agent)
}

fn text(code: StatusCode, msg: String) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg,
    )
        .into_response()
}

async fn list_pods(State(agent): State<Arc<Agent>>) -> Response {
    let list = json!({
        "apiVersion": "v1",
        "kind": "PodList",
        "metadata": {},
        "items": agent.mirror.list(),
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        list.to_string(),
    )
        .into_response()
}

/// Whether the API server answers now.
async fn connected(client: &Client) -> bool {
    let Ok(req) = http::Request::get("/readyz").body(Vec::new()) else {
        return false;
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), client.request_text(req)).await,
        Ok(Ok(_))
    )
}

fn condition<'p>(pod: &'p Pod, kind: &str) -> Option<&'p k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
}

/// YurtHub's pre-check: the detail of why `pod` may not be upgraded on `node`.
pub fn pre_check(pod: &Pod, node: &str) -> Result<(), String> {
    let id = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
    let status_err = |why: String| format!("Failed to check pod {id} status, error: {why}");
    if pod.metadata.deletion_timestamp.is_some() {
        return Err(status_err(format!(
            "Pod {id} is deleting, can not be updated"
        )));
    }
    let on = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();
    if on != node {
        return Err(status_err(format!(
            "Pod: {id} is running on {on}, can not be updated"
        )));
    }
    let need = condition(pod, POD_NEED_UPGRADE);
    if need.is_none_or(|c| c.status != "True") {
        return Err(status_err(format!(
            "Pod: {id} update status is False, can not be updated"
        )));
    }
    if let Some(img) = condition(pod, POD_IMAGE_READY) {
        let want = need
            .and_then(|c| c.message.as_deref())
            .map(|m| m.trim_start_matches(VERSION_PREFIX))
            .unwrap_or("");
        let have = img
            .message
            .as_deref()
            .map(|m| m.trim_start_matches(VERSION_PREFIX))
            .unwrap_or("");
        if img.status != "True" || have != want {
            return Err(format!(
                "Failed to check pod {id} image ready, error: Pod: {id} image is not ready, reason: {}, message: {}",
                img.reason.clone().unwrap_or_default(),
                img.message.clone().unwrap_or_default()
            ));
        }
    }
    Ok(())
}

async fn upgrade_pod(
    State(agent): State<Arc<Agent>>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
) -> Response {
    if !connected(&agent.client).await {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "OTA upgrade is not allowed when node is disconnected to cloud".into(),
        );
    }
    let api: Api<Pod> = Api::namespaced(agent.client.clone(), &ns);
    let pod = match api.get(&name).await {
        Ok(p) => p,
        // A node may not read another node's pod: that is the pre-check's "wrong node".
        Err(kube::Error::Api(s)) if s.code == 403 => {
            return text(
                StatusCode::FORBIDDEN,
                format!(
                    "Pre check update pod failed, Failed to check pod {ns}/{name} status, error: Pod: {ns}/{name} is not running on {}, can not be updated",
                    agent.node
                ),
            );
        }
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Get pod failed, {}", api_message(&e)),
            );
        }
    };
    if let Err(why) = pre_check(&pod, &agent.node) {
        return text(
            StatusCode::FORBIDDEN,
            format!("Pre check update pod failed, {why}"),
        );
    }
    let Some(owner) = pod.owner_references().first() else {
        return text(
            StatusCode::BAD_REQUEST,
            "Pod has no owner references".into(),
        );
    };
    if owner.kind != "DaemonSet" {
        return text(
            StatusCode::BAD_REQUEST,
            format!("Not support ota upgrade pod type {}", owner.kind),
        );
    }
    if let Err(e) = api.delete(&name, &DeleteParams::default()).await {
        tracing::warn!(pod = %name, error = %api_message(&e), "upgrade failed");
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Apply update failed".into(),
        );
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        format!("Start updating pod {ns}/{name}"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(node: &str, need: Option<&str>, image: Option<(&str, &str)>, deleting: bool) -> Pod {
        let mut conditions = vec![json!({"type": "Ready", "status": "True"})];
        if let Some(s) = need {
            conditions.push(json!({"type": POD_NEED_UPGRADE, "status": s, "message": "controllerrevision: abc"}));
        }
        if let Some((s, m)) = image {
            conditions.push(json!({"type": POD_IMAGE_READY, "status": s, "reason": "ImagePullBackOff", "message": m}));
        }
        let mut meta = json!({"name": "nginx", "namespace": "default"});
        if deleting {
            meta["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        serde_json::from_value(json!({
            "metadata": meta,
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}]},
            "status": {"conditions": conditions},
        }))
        .unwrap()
    }

    #[test]
    fn pre_check_as_yurthub() {
        let ok = pod("node1", Some("True"), None, false);
        assert_eq!(pre_check(&ok, "node1"), Ok(()));
        let cases = [
            (
                pod("node1", Some("True"), None, false),
                "node2",
                "Failed to check pod default/nginx status, error: Pod: default/nginx is running on node1, can not be updated",
            ),
            (
                pod("node1", Some("True"), None, true),
                "node1",
                "Failed to check pod default/nginx status, error: Pod default/nginx is deleting, can not be updated",
            ),
            (
                pod("node1", Some("False"), None, false),
                "node1",
                "Failed to check pod default/nginx status, error: Pod: default/nginx update status is False, can not be updated",
            ),
            (
                pod("node1", None, None, false),
                "node1",
                "Failed to check pod default/nginx status, error: Pod: default/nginx update status is False, can not be updated",
            ),
            (
                pod("node1", Some("True"), Some(("False", "")), false),
                "node1",
                "Failed to check pod default/nginx image ready, error: Pod: default/nginx image is not ready, reason: ImagePullBackOff, message: ",
            ),
            (
                pod(
                    "node1",
                    Some("True"),
                    Some(("True", "controllerrevision: wrong-version")),
                    false,
                ),
                "node1",
                "Failed to check pod default/nginx image ready, error: Pod: default/nginx image is not ready, reason: ImagePullBackOff, message: controllerrevision: wrong-version",
            ),
        ];
        for (p, node, want) in cases {
            assert_eq!(pre_check(&p, node), Err(want.to_string()));
        }
        // Image pulled for the revision asked for: fine.
        let pulled = pod(
            "node1",
            Some("True"),
            Some(("True", "controllerrevision: abc")),
            false,
        );
        assert_eq!(pre_check(&pulled, "node1"), Ok(()));
    }

    #[test]
    fn the_mirror_survives_a_restart_and_forgets_deleted_pods() {
        let dir = tempfile::tempdir().unwrap();
        let m = PodMirror::open(dir.path()).unwrap();
        let a = pod("n", None, None, false);
        let mut b = a.clone();
        b.metadata.name = Some("other".into());
        m.put(&a);
        m.put(&b);
        std::fs::write(dir.path().join("junk.json"), b"{not json").unwrap();
        let again = PodMirror::open(dir.path()).unwrap();
        assert_eq!(again.list().len(), 2);
        again.retain(&HashSet::from(["default/nginx".to_string()]));
        let third = PodMirror::open(dir.path()).unwrap();
        let names: Vec<String> = third.list().iter().map(|p| p.name_any()).collect();
        assert_eq!(names, ["nginx"]);
    }
}
