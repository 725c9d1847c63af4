//! ger-apiserver: a kube-apiserver for the resources ger serves, as an `axum::Router`.
//!
//! `router(state)` answers discovery (`/version`, `/api`, `/apis`, per-group resource lists,
//! `/openapi/v3` with the served kinds' schemas), and the REST API of every resource in [`resources::RESOURCES`]:
//! get, list, watch, create, update, patch (JSON, merge, strategic), delete and
//! deletecollection, with the status, scale, binding and eviction subresources. Objects are
//! JSON values in their wire form; [`admission`] defaults and validates them, [`table`] prints
//! them for `kubectl get`, [`cache`] serves reads and watches from memory.
//!
//! Authentication is a bearer token checked on every request but `/healthz`, `/livez` and
//! `/readyz`: the administrator's, or a node's ([`auth`]), which confines the caller to its
//! own node's objects. TLS is the binary's business.

pub mod admission;
pub mod apply;
pub mod auth;
pub mod cache;
pub mod errors;
pub mod logs;
pub mod metrics;
pub mod object;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod resources;
pub mod rest;
pub mod reviews;
pub mod selector;
pub mod services;
pub mod table;
pub mod typed;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use ger_store::DynStore;
use serde_json::{Value, json};

use crate::cache::Cache;
use crate::errors::ApiError;

/// The largest request body accepted (kube-apiserver's 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Everything a request needs. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    pub cache: Arc<Cache>,
    pub metrics: Arc<metrics::Metrics>,
    /// The bearer token every request must carry; `None` disables authentication.
    pub token: Option<Arc<str>>,
}

/// How to run the API server.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// The bearer token every request must carry; `None` disables authentication (tests).
    pub token: Option<String>,
    /// Events per resource the watch cache keeps for watches that resume.
    pub watch_cache_events: usize,
}

impl Default for ApiOptions {
    fn default() -> Self {
        ApiOptions {
            token: None,
            watch_cache_events: cache::DEFAULT_RING,
        }
    }
}

impl ApiState {
    /// Load the store into the watch cache and make sure the built-in namespaces exist.
    pub async fn new(store: DynStore, opts: ApiOptions) -> Result<Self, String> {
        let cache = Cache::start(store, opts.watch_cache_events)
            .await
            .map_err(|e| e.to_string())?;
        let st = ApiState {
            cache,
            metrics: Arc::default(),
            token: opts.token.map(Arc::from),
        };
        st.ensure_namespaces().await?;
        // Namespaces being deleted when the server stopped go on being emptied.
        let res = resources::by_kind("Namespace").ok_or("namespaces are not served")?;
        let terminating: Vec<String> = st
            .cache
            .resource(res)
            .read()
            .objects
            .values()
            .filter(|c| c.is_deleting())
            .map(|c| c.name().to_string())
            .collect();
        for ns in terminating {
            rest::start_namespace_finalizer(st.clone(), ns);
        }
        Ok(st)
    }

    /// The `kubernetes` Service in `default` and its Endpoints: the API server at `addr`.
    pub async fn ensure_kubernetes_service(
        &self,
        addr: std::net::SocketAddr,
    ) -> Result<(), String> {
        self.ensure_kubernetes_endpoints(addr).await?;
        let want = services::kubernetes_service(addr.port());
        self.upsert("Service", want, &["/spec/ports"]).await
    }

    async fn ensure_kubernetes_endpoints(&self, addr: std::net::SocketAddr) -> Result<(), String> {
        let ip = match addr.ip() {
            ip if ip.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
            ip => ip,
        };
        let port = addr.port();
        let endpoints = json!({"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "kubernetes", "namespace": "default",
                "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": ip.to_string()}],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]});
        self.upsert("Endpoints", endpoints, &["/subsets"]).await?;
        let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes", "namespace": "default",
                "labels": {"kubernetes.io/service-name": "kubernetes"}},
            "addressType": if ip.is_ipv4() { "IPv4" } else { "IPv6" },
            "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}]});
        self.upsert(
            "EndpointSlice",
            slice,
            &["addressType", "endpoints", "ports"],
        )
        .await
    }

    /// Create `want` in `default`, or make what it holds at the JSON pointers `fields` what
    /// `want` says.
    async fn upsert(&self, kind: &str, want: Value, fields: &[&str]) -> Result<(), String> {
        let res = resources::by_kind(kind).ok_or_else(|| format!("{kind} is not served"))?;
        let name = object::name(&want).to_string();
        let Ok(cur) = rest::current(self, res, Some("default"), &name) else {
            let mut v = want;
            return match rest::create_object(self, res, Some("default"), &mut v, false).await {
                Ok(_) => Ok(()),
                Err(e) if e.code == 409 => Ok(()),
                Err(e) => Err(e.message),
            };
        };
        if fields.iter().all(|f| cur.pointer(f) == want.pointer(f)) {
            return Ok(());
        }
        rest::guaranteed_update(
            self,
            res,
            Some("default"),
            &name,
            object::Write::Main,
            false,
            &|cur| {
                let mut next = cur.clone();
                for f in fields {
                    let (parent, key) = f.rsplit_once('/').unwrap_or(("", f));
                    if let (Some(m), Some(v)) = (
                        next.pointer_mut(parent).and_then(Value::as_object_mut),
                        want.pointer(f),
                    ) {
                        m.insert(key.to_string(), v.clone());
                    }
                }
                Ok(next)
            },
        )
        .await
        .map(|_| ())
        .map_err(|e| e.message)
    }

    async fn ensure_namespaces(&self) -> Result<(), String> {
        let res = resources::by_kind("Namespace").ok_or("namespaces are not served")?;
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            if self
                .cache
                .resource(res)
                .read()
                .objects
                .contains_key(&res.key(None, ns))
            {
                continue;
            }
            let mut v = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            match rest::create_object(self, res, None, &mut v, false).await {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e.message),
            }
        }
        Ok(())
    }
}

fn json_ok(v: Value) -> Response {
    let mut resp = (StatusCode::OK, v.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    resp
}

/// The API server's router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/version", get(|| async { json_ok(resources::version()) }))
        .route("/api", get(|| async { json_ok(resources::api_versions()) }))
        .route(
            "/apis",
            get(|| async { json_ok(resources::api_group_list()) }),
        )
        .route("/openapi/v2", get(openapi_v2))
        .route("/openapi/v3", get(|| async { json_ok(openapi::root()) }))
        .route("/openapi/v3/{*path}", get(openapi_v3))
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/metrics", get(metrics_text))
        .route("/api/v1", get(|| async { legacy_list("", "v1") }))
        .route("/api/v1/{*rest}", any(core_api))
        .route("/apis/{group}", get(group_doc))
        .route("/apis/{group}/{version}", get(group_version_doc))
        .route("/apis/{group}/{version}/{*rest}", any(group_api))
        .fallback(|| async { ApiError::no_route() })
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

/// Delete events older than `ttl`, as kube-apiserver's `--event-ttl` does (events are
/// history, not state: without this they pile up for as long as the server runs).
pub fn start_event_ttl(st: ApiState, ttl: std::time::Duration) {
    let every = (ttl / 10).clamp(
        std::time::Duration::from_millis(200),
        std::time::Duration::from_secs(60),
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let Some(res) = resources::by_kind("Event") else {
                return;
            };
            let now = chrono::Utc::now();
            let expired: Vec<(String, i64)> = {
                let rc = st.cache.resource(res);
                let rc = rc.read();
                rc.objects
                    .iter()
                    .filter_map(|(key, c)| {
                        let v = c.value();
                        let at = ["lastTimestamp", "eventTime"]
                            .iter()
                            .filter_map(|f| v[*f].as_str())
                            .chain(object::meta_str(&v, "creationTimestamp"))
                            .find_map(|t| chrono::DateTime::parse_from_rfc3339(t).ok())?;
                        let age = now.signed_duration_since(at).to_std().ok()?;
                        let rev = object::resource_version(&v).parse().ok()?;
                        (age > ttl).then(|| (key.clone(), rev))
                    })
                    .collect()
            };
            for (key, rev) in expired {
                // A precondition: an event updated meanwhile (count + 1) lives on.
                let _ = st.cache.store().delete(&key, Some(rev)).await;
            }
        }
    });
}

async fn authenticate(State(st): State<ApiState>, mut req: Request, next: Next) -> Response {
    let open = matches!(req.uri().path(), "/healthz" | "/livez" | "/readyz");
    let user = match &st.token {
        None => Some(auth::User::Admin),
        Some(secret) => req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .and_then(|t| auth::authenticate(secret, t)),
    };
    match user {
        Some(user) => {
            req.extensions_mut().insert(user);
        }
        None if open => {}
        None => return ApiError::unauthorized().into_response(),
    }
    next.run(req).await
}

fn legacy_list(group: &str, version: &str) -> Response {
    match resources::api_resource_list(group, version) {
        Some(v) => json_ok(v),
        None => ApiError::no_route().into_response(),
    }
}

async fn metrics_text(State(st): State<ApiState>) -> Response {
    let objects: Vec<(&'static str, usize)> = resources::RESOURCES
        .iter()
        .map(|r| (r.plural, st.cache.resource(r).read().objects.len()))
        .collect();
    let mut text = st
        .metrics
        .render(st.cache.store().current_revision(), &objects);
    text.push_str(&metrics::render_cluster(&cluster_state(&st)));
    let mut resp = (StatusCode::OK, text).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}

/// The DaemonSets, Deployments and Nodes in the watch cache, decoded.
fn cluster_state(st: &ApiState) -> metrics::ClusterState {
    fn all<T: serde::de::DeserializeOwned>(st: &ApiState, group: &str, plural: &str) -> Vec<T> {
        let Some(res) = resources::find(group, "v1", plural) else {
            return Vec::new();
        };
        let cache = st.cache.resource(res);
        let objects: Vec<_> = cache.read().objects.values().cloned().collect();
        objects.iter().filter_map(|c| c.decode()).collect()
    }
    metrics::ClusterState {
        daemonsets: all(st, "apps", "daemonsets"),
        deployments: all(st, "apps", "deployments"),
        nodes: all(st, "", "nodes"),
    }
}

async fn group_doc(Path(group): Path<String>) -> Response {
    if resources::GROUPS.contains(&group.as_str()) || reviews::GROUPS.contains(&group.as_str()) {
        json_ok(resources::api_group(&group))
    } else {
        ApiError::no_route().into_response()
    }
}

async fn group_version_doc(Path((group, version)): Path<(String, String)>) -> Response {
    legacy_list(&group, &version)
}

/// `GET /openapi/v2`: a Swagger 2.0 document without definitions. ger describes its kinds in
/// OpenAPI v3 (`kubectl explain`, and the server validates fields itself); clients that look
/// for a v2 schema, as kubectl does for a `kind: List` file, find none and leave the checking
/// to the server. kubectl asks for protobuf: `Document { swagger: "2.0" }`.
async fn openapi_v2(headers: HeaderMap) -> Response {
    let protobuf = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("protobuf"));
    if protobuf {
        let mut resp = (StatusCode::OK, b"\x0a\x032.0".to_vec()).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/com.github.proto-openapi.spec.v2.v1.0+protobuf"),
        );
        return resp;
    }
    json_ok(
        json!({"swagger": "2.0", "info": {"title": "ger", "version": "v1.32.0"},
        "paths": {}, "definitions": {}}),
    )
}

async fn openapi_v3(Path(path): Path<String>) -> Response {
    match openapi::doc(&path) {
        Some(b) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            b,
        )
            .into_response(),
        None => ApiError::no_route().into_response(),
    }
}

async fn core_api(
    State(st): State<ApiState>,
    Extension(user): Extension<auth::User>,
    method: Method,
    Path(rest): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    serve(st, user, "", "v1", &rest, method, query, headers, body).await
}

async fn group_api(
    State(st): State<ApiState>,
    Extension(user): Extension<auth::User>,
    method: Method,
    Path((group, version, rest)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    serve(
        st, user, &group, &version, &rest, method, query, headers, body,
    )
    .await
}

/// A request body, read up to the size limit; a protobuf body (not a patch) as JSON.
async fn json_body(
    method: &Method,
    headers: &HeaderMap,
    body: Body,
) -> Result<axum::body::Bytes, ApiError> {
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| ApiError::too_large())?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if method == Method::PATCH || body.is_empty() || !protobuf::is_protobuf(content_type) {
        return Ok(body);
    }
    match protobuf::to_json(&body) {
        Ok(v) => Ok(v.to_string().into()),
        Err(e) => Err(ApiError::bad_request(format!(
            "the body of the request could not be decoded as application/vnd.kubernetes.protobuf: {e}"
        ))),
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    st: ApiState,
    user: auth::User,
    group: &str,
    version: &str,
    rest: &str,
    method: Method,
    query: HashMap<String, String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(res) = reviews::find(group, version, rest) {
        let started = std::time::Instant::now();
        let resp = match json_body(&method, &headers, body).await {
            Ok(b) => match reviews::handle(&st, &user, res, &method, &b).await {
                Ok(r) => r,
                Err(e) => e.into_response(),
            },
            Err(e) => e.into_response(),
        };
        let code = resp.status().as_u16();
        st.metrics.record(
            method.as_str(),
            res.group,
            res.plural,
            code,
            started.elapsed(),
        );
        return resp;
    }
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let namespaced = segs.len() >= 3
        && segs[0] == "namespaces"
        && resources::find(group, version, segs[2]).is_some_and(|r| r.namespaced);
    let (namespace, plural, name, sub, extra) = if namespaced {
        (
            Some(segs[1]),
            segs[2],
            segs.get(3),
            segs.get(4),
            segs.len() > 5,
        )
    } else {
        (None, segs[0], segs.get(1), segs.get(2), segs.len() > 3)
    };
    let Some(res) = resources::find(group, version, plural).filter(|_| !extra) else {
        return ApiError::no_route().into_response();
    };
    if res.namespaced && namespace.is_none() && name.is_some() {
        return ApiError::no_route().into_response();
    }
    let body = match json_body(&method, &headers, body).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let verb = match (&method, name.is_some()) {
        (&Method::GET, false) if query.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            "WATCH"
        }
        (&Method::GET, false) => "LIST",
        (&Method::DELETE, false) => "DELETECOLLECTION",
        (m, _) => m.as_str(),
    }
    .to_string();
    let req = rest::Request {
        method,
        res,
        namespace: namespace.map(|s| (*s).to_string()),
        name: name.map(|s| (*s).to_string()),
        sub: sub.map(|s| (*s).to_string()),
        query: &query,
        headers: &headers,
        body,
        user,
    };
    let started = std::time::Instant::now();
    let resp = rest::handle(&st, req).await;
    let code = resp.status().as_u16();
    st.metrics
        .record(&verb, res.group, res.plural, code, started.elapsed());
    resp
}
