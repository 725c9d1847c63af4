//! The API server in-process (`oneshot`), request by request, as kube-apiserver answers.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use futures::StreamExt;
use ger_apiserver::{ApiOptions, ApiState, router};
use http::{Method, Request};
use serde_json::{Value, json};
use tower::ServiceExt;

struct Api {
    app: axum::Router,
}

impl Api {
    async fn new() -> Self {
        Self::with_token(None).await
    }

    async fn with_token(token: Option<&str>) -> Self {
        let store = Arc::new(ger_store::MvccStore::memory(64));
        let opts = ApiOptions {
            token: token.map(String::from),
            watch_cache_events: 32,
        };
        let st = ApiState::new(store, opts).await.unwrap();
        Api { app: router(st) }
    }

    async fn send(&self, method: Method, uri: &str, ctype: &str, body: Vec<u8>) -> (u16, Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", ctype)
            .body(Body::from(body))
            .unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let code = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn req(&self, method: Method, uri: &str, body: Value) -> (u16, Value) {
        let b = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        self.send(method, uri, "application/json", b).await
    }

    async fn get(&self, uri: &str) -> (u16, Value) {
        self.req(Method::GET, uri, Value::Null).await
    }

    async fn post(&self, uri: &str, body: Value) -> (u16, Value) {
        self.req(Method::POST, uri, body).await
    }

    /// Open a watch and collect what arrives within `wait`.
    async fn watch(&self, uri: &str, wait: Duration) -> Vec<Value> {
        let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let mut stream = resp.into_body().into_data_stream();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(wait, async {
            while let Some(Ok(chunk)) = stream.next().await {
                buf.extend_from_slice(&chunk);
            }
        })
        .await;
        buf.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }
}

fn rs(name: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]}}},
    })
}

const RS: &str = "/apis/apps/v1/namespaces/default/replicasets";

#[tokio::test]
async fn create_get_conflict_and_not_found() {
    let api = Api::new().await;
    let (code, created) = api.post(RS, rs("web", 2)).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["metadata"]["generation"], 1);
    assert!(
        created["metadata"]["uid"]
            .as_str()
            .is_some_and(|u| u.len() == 36)
    );
    assert_eq!(created["status"], json!({"replicas": 0}));
    let (code, again) = api.post(RS, rs("web", 2)).await;
    assert_eq!(code, 409);
    assert_eq!(again["reason"], "AlreadyExists");
    assert_eq!(again["message"], "replicasets.apps \"web\" already exists");
    let (code, missing) = api.get(&format!("{RS}/nope")).await;
    assert_eq!(code, 404);
    assert_eq!(missing["message"], "replicasets.apps \"nope\" not found");
    assert_eq!(
        missing["details"],
        json!({"name": "nope", "group": "apps", "kind": "replicasets"})
    );
    // A PUT with a stale resourceVersion conflicts.
    let mut stale = created.clone();
    stale["spec"]["replicas"] = json!(3);
    let (code, _) = api
        .req(Method::PUT, &format!("{RS}/web"), stale.clone())
        .await;
    assert_eq!(code, 200);
    let (code, conflict) = api.req(Method::PUT, &format!("{RS}/web"), stale).await;
    assert_eq!(code, 409);
    assert_eq!(
        conflict["message"],
        "Operation cannot be fulfilled on replicasets.apps \"web\": the object has been modified; please apply your changes to the latest version and try again"
    );
    // Missing namespace.
    let (code, ns) = api
        .post("/apis/apps/v1/namespaces/nowhere/replicasets", rs("x", 1))
        .await;
    assert_eq!(code, 404);
    assert_eq!(ns["message"], "namespaces \"nowhere\" not found");
}

#[tokio::test]
async fn status_and_spec_are_kept_apart() {
    let api = Api::new().await;
    let (_, created) = api.post(RS, rs("web", 2)).await;
    let mut body = created.clone();
    body["status"] = json!({"replicas": 5});
    let (_, updated) = api.req(Method::PUT, &format!("{RS}/web"), body).await;
    assert_eq!(
        updated["status"]["replicas"], 0,
        "status ignored on the main resource"
    );
    assert_eq!(
        updated["metadata"]["resourceVersion"], created["metadata"]["resourceVersion"],
        "no-op update writes nothing"
    );
    let mut body = updated.clone();
    body["status"] = json!({"replicas": 2, "readyReplicas": 1, "availableReplicas": 1, "fullyLabeledReplicas": 2});
    body["spec"]["replicas"] = json!(9);
    let (code, st) = api
        .req(Method::PUT, &format!("{RS}/web/status"), body)
        .await;
    assert_eq!(code, 200, "{st}");
    assert_eq!(st["status"]["replicas"], 2);
    assert_eq!(st["spec"]["replicas"], 2, "spec ignored on /status");
    assert_eq!(
        st["metadata"]["generation"], 1,
        "a status write does not bump generation"
    );
}

#[tokio::test]
async fn generate_name_dry_run_and_body_limits() {
    let api = Api::new().await;
    let mut gen_name = rs("", 1);
    gen_name["metadata"] = json!({"generateName": "web-", "labels": {"app": ""}});
    gen_name["spec"]["selector"] = json!({"matchLabels": {"app": "g"}});
    gen_name["spec"]["template"]["metadata"]["labels"] = json!({"app": "g"});
    let (code, v) = api.post(RS, gen_name).await;
    assert_eq!(code, 201, "{v}");
    let name = v["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("web-") && name.len() == 9, "{name}");
    assert!(
        name[4..]
            .bytes()
            .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b))
    );
    let (code, dry) = api.post(&format!("{RS}?dryRun=All"), rs("dry", 1)).await;
    assert_eq!(code, 201);
    assert_eq!(dry["metadata"]["name"], "dry");
    assert_eq!(
        api.get(&format!("{RS}/dry")).await.0,
        404,
        "dry run stores nothing"
    );
    let big = vec![b' '; 4 * 1024 * 1024];
    let (code, too_big) = api.send(Method::POST, RS, "application/json", big).await;
    assert_eq!(code, 413);
    assert_eq!(too_big["kind"], "Status");
    let (code, bad) = api
        .send(Method::POST, RS, "application/json", b"{\"kind\":".to_vec())
        .await;
    assert_eq!(code, 400);
    assert_eq!(bad["reason"], "BadRequest");
}

#[tokio::test]
async fn tokens_are_required() {
    let api = Api::with_token(Some("sekret")).await;
    let (code, v) = api.get("/api/v1/namespaces").await;
    assert_eq!(code, 401);
    assert_eq!(v["reason"], "Unauthorized");
    let req = Request::builder()
        .uri("/api/v1/namespaces")
        .header("authorization", "Bearer sekret")
        .body(Body::empty())
        .unwrap();
    assert_eq!(api.app.clone().oneshot(req).await.unwrap().status(), 200);
}

#[tokio::test]
async fn list_limit_continue_and_selectors() {
    let api = Api::new().await;
    for i in 0..5 {
        api.post(RS, rs(&format!("rs-{i}"), 1)).await;
    }
    let (_, page1) = api.get(&format!("{RS}?limit=2")).await;
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&page1), ["rs-0", "rs-1"]);
    assert_eq!(page1["metadata"]["remainingItemCount"], 3);
    let cont = page1["metadata"]["continue"].as_str().unwrap();
    let (_, page2) = api.get(&format!("{RS}?limit=2&continue={cont}")).await;
    assert_eq!(names(&page2), ["rs-2", "rs-3"]);
    let (_, sel) = api
        .get(&format!("{RS}?labelSelector=app%20in%20(rs-1,rs-4)"))
        .await;
    assert_eq!(names(&sel), ["rs-1", "rs-4"]);
    let (_, field) = api
        .get("/apis/apps/v1/replicasets?fieldSelector=metadata.name%3Drs-3")
        .await;
    assert_eq!(names(&field), ["rs-3"]);
    let (code, bad) = api.get(&format!("{RS}?fieldSelector=spec.nope%3D1")).await;
    assert_eq!(code, 400);
    assert_eq!(bad["message"], "field label not supported: spec.nope");
}

#[tokio::test]
async fn watch_semantics() {
    let api = Api::new().await;
    let (_, a) = api.post(RS, rs("a", 1)).await;
    let rv_a = a["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    api.post(RS, rs("b", 1)).await;
    // No resourceVersion: ADDED for existing objects.
    let evs = api
        .watch(
            &format!("{RS}?watch=true&timeoutSeconds=1"),
            Duration::from_secs(3),
        )
        .await;
    let kinds: Vec<(&str, &str)> = evs
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["object"]["metadata"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(kinds, [("ADDED", "a"), ("ADDED", "b")]);
    // From a resourceVersion: only what came later.
    let evs = api
        .watch(
            &format!("{RS}?watch=true&resourceVersion={rv_a}&timeoutSeconds=1"),
            Duration::from_secs(3),
        )
        .await;
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0]["object"]["metadata"]["name"], "b");
    assert_eq!(evs[0]["object"]["kind"], "ReplicaSet");
    // Too old: one ERROR event with a 410 Status.
    for i in 0..80 {
        api.post(RS, rs(&format!("x{i}"), 1)).await;
    }
    let evs = api
        .watch(
            &format!("{RS}?watch=true&resourceVersion=1&timeoutSeconds=1"),
            Duration::from_secs(3),
        )
        .await;
    assert_eq!(evs.len(), 1, "expected one ERROR event, got {}", evs.len());
    assert_eq!(evs[0]["type"], "ERROR");
    assert_eq!(evs[0]["object"]["code"], 410);
    assert_eq!(evs[0]["object"]["reason"], "Expired");
    assert!(
        evs[0]["object"]["message"]
            .as_str()
            .unwrap()
            .starts_with("too old resource version: 1 (")
    );
}

#[tokio::test]
async fn deletion_with_finalizers_waits_for_them() {
    let api = Api::new().await;
    let mut v = rs("fin", 1);
    v["metadata"]["finalizers"] = json!(["example.com/hold"]);
    api.post(RS, v).await;
    let (code, del) = api
        .req(Method::DELETE, &format!("{RS}/fin"), Value::Null)
        .await;
    assert_eq!(code, 200);
    assert!(del["metadata"]["deletionTimestamp"].is_string(), "{del}");
    assert_eq!(
        api.get(&format!("{RS}/fin")).await.0,
        200,
        "still there while finalizers remain"
    );
    let (code, _) = api
        .send(
            Method::PATCH,
            &format!("{RS}/fin"),
            "application/merge-patch+json",
            br#"{"metadata":{"finalizers":null}}"#.to_vec(),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        api.get(&format!("{RS}/fin")).await.0,
        404,
        "gone once the last finalizer is removed"
    );
    // Foreground adds its finalizer; a plain delete returns a Success Status with the uid.
    api.post(RS, rs("plain", 1)).await;
    let (code, st) = api
        .req(
            Method::DELETE,
            &format!("{RS}/plain"),
            json!({"propagationPolicy": "Background"}),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(st["status"], "Success");
    assert_eq!(st["details"]["kind"], "replicasets");
    api.post(RS, rs("fg", 1)).await;
    let (_, fg) = api
        .req(
            Method::DELETE,
            &format!("{RS}/fg"),
            json!({"propagationPolicy": "Foreground"}),
        )
        .await;
    assert_eq!(fg["metadata"]["finalizers"], json!(["foregroundDeletion"]));
}

#[tokio::test]
async fn scale_subresource() {
    let api = Api::new().await;
    api.post(RS, rs("web", 2)).await;
    let (code, scale) = api.get(&format!("{RS}/web/scale")).await;
    assert_eq!(code, 200);
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"]["replicas"], 2);
    assert_eq!(scale["status"]["selector"], "app=web");
    let (code, s) = api
        .send(
            Method::PATCH,
            &format!("{RS}/web/scale"),
            "application/merge-patch+json",
            br#"{"spec":{"replicas":4}}"#.to_vec(),
        )
        .await;
    assert_eq!(code, 200, "{s}");
    let (_, web) = api.get(&format!("{RS}/web")).await;
    assert_eq!(web["spec"]["replicas"], 4);
    assert_eq!(web["metadata"]["generation"], 2);
    let mut stale = scale.clone();
    stale["spec"]["replicas"] = json!(1);
    let (code, _) = api
        .req(Method::PUT, &format!("{RS}/web/scale"), stale)
        .await;
    assert_eq!(code, 409, "a PUT of /scale checks the resourceVersion");
}

#[tokio::test]
async fn discovery_documents() {
    let api = Api::new().await;
    let (_, v) = api.get("/version").await;
    assert_eq!(
        (v["major"].as_str(), v["minor"].as_str()),
        (Some("1"), Some("32"))
    );
    let (_, core) = api.get("/api/v1").await;
    let pods_eviction = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pods/eviction")
        .unwrap();
    assert_eq!(pods_eviction["group"], "policy");
    assert_eq!(pods_eviction["kind"], "Eviction");
    let (_, apps) = api.get("/apis/apps/v1").await;
    let scale = apps["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "deployments/scale")
        .unwrap();
    assert_eq!(
        (scale["group"].as_str(), scale["kind"].as_str()),
        (Some("autoscaling"), Some("Scale"))
    );
    let (code, v2) = api.get("/openapi/v2").await;
    assert_eq!((code, &v2["swagger"]), (200, &json!("2.0")));
    assert_eq!(v2["definitions"], json!({}));
    let (_, root) = api.get("/openapi/v3").await;
    let url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, doc) = api.get(&url).await;
    let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}"]["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"]["kind"],
        "DaemonSet"
    );
}

#[tokio::test]
async fn metrics_count_requests() {
    let api = Api::new().await;
    api.post(RS, rs("m", 1)).await;
    api.get(&format!("{RS}/m")).await;
    api.get(&format!("{RS}/missing")).await;
    let req = Request::builder()
        .uri("/metrics")
        .body(Body::empty())
        .unwrap();
    let resp = api.app.clone().oneshot(req).await.unwrap();
    let text = String::from_utf8(
        axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    for line in [
        "apiserver_request_total{verb=\"POST\",group=\"apps\",resource=\"replicasets\",code=\"201\"} 1",
        "apiserver_request_total{verb=\"GET\",group=\"apps\",resource=\"replicasets\",code=\"200\"} 1",
        "apiserver_request_total{verb=\"GET\",group=\"apps\",resource=\"replicasets\",code=\"404\"} 1",
        "apiserver_storage_objects{resource=\"replicasets\"} 1",
        "apiserver_request_duration_seconds_count{verb=\"GET\",group=\"apps\",resource=\"replicasets\"} 2",
        "apiserver_request_duration_seconds_bucket{verb=\"POST\",group=\"apps\",resource=\"replicasets\",le=\"+Inf\"} 1",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

/// Writes that name no resourceVersion are retried over concurrent writes (as upstream's
/// GuaranteedUpdate); only a pinned resourceVersion turns a race into a 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unpinned_patches_never_conflict() {
    let api = Arc::new(Api::new().await);
    assert_eq!(api.post(RS, rs("web", 1)).await.0, 201);
    let uri = format!("{RS}/web");
    let mut tasks = Vec::new();
    for i in 0..40 {
        let api = api.clone();
        let uri = uri.clone();
        tasks.push(tokio::spawn(async move {
            let patch = json!({"metadata": {"annotations": {format!("k{i}"): "v"}}});
            api.send(
                Method::PATCH,
                &uri,
                "application/merge-patch+json",
                patch.to_string().into_bytes(),
            )
            .await
            .0
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let (_, got) = api.get(&uri).await;
    assert_eq!(
        got["metadata"]["annotations"].as_object().unwrap().len(),
        40
    );
    // A stale pinned resourceVersion is still a conflict.
    let stale = json!({"metadata": {"resourceVersion": "1", "labels": {"x": "y"}}});
    let (code, _) = api
        .send(
            Method::PATCH,
            &uri,
            "application/merge-patch+json",
            stale.to_string().into_bytes(),
        )
        .await;
    assert_eq!(code, 409);
}

/// The review kinds answer a POST and nothing else, and check what they are sent.
#[tokio::test]
async fn access_reviews_are_create_only_and_checked() {
    let api = Api::new().await;
    let uri = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
    let (code, v) = api
        .post(
            uri,
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": {"verb": "delete", "resource": "nodes"}}}),
        )
        .await;
    assert_eq!(
        (code, &v["status"]),
        (201, &json!({"allowed": true})),
        "{v}"
    );
    assert_eq!(v["spec"]["resourceAttributes"]["verb"], "delete");
    let (code, v) = api.post(uri, json!({"spec": {}})).await;
    assert_eq!(code, 422, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains(
            "exactly one of nonResourceAttributes or resourceAttributes must be specified"
        ),
        "{v}"
    );
    let (code, v) = api
        .send(Method::POST, uri, "application/json", b"{not json".to_vec())
        .await;
    assert_eq!(code, 400, "{v}");
    let (code, v) = api.get(uri).await;
    assert_eq!(code, 405, "{v}");
    let (code, v) = api.get("/apis/authorization.k8s.io/v1").await;
    assert_eq!(code, 200);
    assert_eq!(v["resources"][0]["name"], "selfsubjectaccessreviews");
    assert_eq!(v["resources"][0]["verbs"], json!(["create"]));
}
