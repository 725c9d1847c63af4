//! The REST handlers: one request on one resource (collection, object or subresource).
//!
//! Reads come from the watch cache after it has caught up with the store; writes go to the
//! store with the object's revision as precondition, and the response waits until the cache
//! has seen the write, so a client always reads its own writes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use ger_store::StoreError;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::admission;
use crate::cache::{CacheEvent, Cached, WatchKind, WatchStart, resource_plural};
use crate::errors::{ApiError, ApiResult};
use crate::object::{self, Write, meta_mut};
use crate::patch;
use crate::resources::{self, Resource};
use crate::selector::{FieldSelector, LabelSelector};
use crate::table;
use crate::{ApiState, typed};

/// One parsed API request.
pub struct Request<'a> {
    pub method: Method,
    pub res: &'static Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub sub: Option<String>,
    pub query: &'a HashMap<String, String>,
    pub headers: &'a HeaderMap,
    pub body: Bytes,
    pub user: crate::auth::User,
}

impl Request<'_> {
    pub(crate) fn q(&self, k: &str) -> Option<&str> {
        self.query
            .get(k)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
    fn dry_run(&self) -> bool {
        self.q("dryRun") == Some("All")
    }
    fn wants_table(&self) -> bool {
        self.headers
            .get(header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("as=Table"))
    }
}

pub async fn handle(st: &ApiState, req: Request<'_>) -> Response {
    if let Err(e) = crate::auth::authorize(st, &req, &req.user).await {
        return e.into_response();
    }
    match route(st, &req).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn route(st: &ApiState, req: &Request<'_>) -> ApiResult<Response> {
    let sub = req.sub.as_deref();
    if let Some(s) = sub
        && !req.res.has_subresource(s)
    {
        return Err(ApiError::no_route());
    }
    match (&req.method, req.name.as_deref(), sub) {
        (&Method::GET, None, _) if req.q("watch").is_some_and(|w| w == "true" || w == "1") => {
            watch(st, req).await
        }
        (&Method::GET, None, _) => list(st, req).await,
        (&Method::GET, Some(name), Some("scale")) => {
            let obj = get_current(st, req, name).await?;
            Ok(json_response(
                StatusCode::OK,
                &scale_of(req.res, &obj),
                Vec::new(),
            ))
        }
        (&Method::GET, Some(name), Some("log")) => crate::logs::pod_log(st, req, name).await,
        (&Method::GET, Some(name), None | Some("status")) => {
            let obj = get_current(st, req, name).await?;
            object_response(req, StatusCode::OK, &obj, Vec::new())
        }
        (&Method::POST, None, None) => create(st, req).await,
        (&Method::POST, Some(name), Some("binding")) => bind(st, req, name).await,
        (&Method::POST, Some(name), Some("eviction")) => evict(st, req, name).await,
        (&Method::PUT, Some(name), s) => update(st, req, name, s).await,
        (&Method::PATCH, Some(name), s) => patch_object(st, req, name, s).await,
        (&Method::DELETE, Some(name), None) => {
            let opts = delete_options(req)?;
            let (code, v) = delete(
                st,
                req.res,
                req.namespace.as_deref(),
                name,
                &opts,
                req.dry_run(),
            )
            .await?;
            object_response(req, code, &v, Vec::new())
        }
        (&Method::DELETE, None, None) => delete_collection(st, req).await,
        (m, _, _) => Err(ApiError::method_not_allowed(m.as_str(), req.res)),
    }
}

// ---------------------------------------------------------------------------------------------
// Responses

fn json_response(code: StatusCode, v: &Value, warnings: Vec<String>) -> Response {
    let mut resp = (code, v.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(h) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            resp.headers_mut().append(header::WARNING, h);
        }
    }
    resp
}

fn object_response(
    req: &Request<'_>,
    code: StatusCode,
    v: &Value,
    warnings: Vec<String>,
) -> ApiResult<Response> {
    if req.wants_table() && v.get("kind").and_then(Value::as_str) == Some(req.res.kind) {
        let t = to_table(req, &[v], object::resource_version(v), None, true)?;
        return Ok(json_response(code, &t, warnings));
    }
    Ok(json_response(code, v, warnings))
}

fn to_table(
    req: &Request<'_>,
    objs: &[&Value],
    rv: &str,
    cont: Option<(&str, Option<usize>)>,
    headers: bool,
) -> ApiResult<Value> {
    let include = req.q("includeObject").unwrap_or("Metadata");
    if !matches!(include, "Metadata" | "Object" | "None") {
        return Err(ApiError::bad_request(format!(
            "includeObject: Unsupported value: \"{include}\": supported values: \"Metadata\", \"None\", \"Object\""
        )));
    }
    let now = chrono::Utc::now();
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let object = match include {
                "Object" => (*o).clone(),
                "None" => Value::Null,
                _ => json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": o.get("metadata").cloned().unwrap_or_else(|| json!({})),
                }),
            };
            let mut row =
                json!({"cells": table::row_cells(req.res.plural, o, now), "object": object});
            if let Some(c) = table::row_conditions(req.res.plural, o) {
                row["conditions"] = c;
            }
            row
        })
        .collect();
    let mut meta = json!({"resourceVersion": rv});
    if let Some((c, remaining)) = cont {
        meta["continue"] = json!(c);
        if let Some(n) = remaining {
            meta["remainingItemCount"] = json!(n);
        }
    }
    let columns = if headers {
        table::column_definitions(req.res.plural)
    } else {
        Vec::new()
    };
    Ok(json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": columns,
        "rows": rows,
    }))
}

// ---------------------------------------------------------------------------------------------
// Reads

async fn get_current(st: &ApiState, req: &Request<'_>, name: &str) -> ApiResult<Value> {
    if req.q("resourceVersion") != Some("0") {
        st.cache.sync().await;
    }
    current(st, req.res, req.namespace.as_deref(), name)
}

pub(crate) fn current(
    st: &ApiState,
    res: &'static Resource,
    ns: Option<&str>,
    name: &str,
) -> ApiResult<Value> {
    let key = res.key(ns, name);
    st.cache
        .resource(res)
        .read()
        .objects
        .get(&key)
        .map(|c| c.value())
        .ok_or_else(|| ApiError::not_found(res, name))
}

struct Filter {
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn new(req: &Request<'_>) -> ApiResult<Self> {
        let labels = LabelSelector::parse(req.q("labelSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
        let fields = FieldSelector::parse(req.q("fieldSelector").unwrap_or(""))
            .map_err(ApiError::bad_request)?;
        fields
            .check_supported(req.res.plural)
            .map_err(ApiError::bad_request)?;
        Ok(Filter {
            namespace: req.namespace.clone(),
            labels,
            fields,
        })
    }

    fn matches(&self, c: &Cached) -> bool {
        if let Some(ns) = &self.namespace
            && c.namespace() != Some(ns.as_str())
        {
            return false;
        }
        self.labels.matches(c.labels()) && self.fields.matches_fields(c.fields())
    }
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect();
    String::from_utf8(bytes?).ok()
}

async fn list(st: &ApiState, req: &Request<'_>) -> ApiResult<Response> {
    let filter = Filter::new(req)?;
    let limit = match req.q("limit") {
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit: {l}")))?,
        None => 0,
    };
    // As the watch cache upstream: resourceVersion=0 is served whole, limit ignored, so that
    // an informer's list is one consistent snapshot (our continue tokens are not).
    let limit = if req.q("resourceVersion") == Some("0") && req.q("continue").is_none() {
        0
    } else {
        limit
    };
    let start_after = match req.q("continue") {
        Some(c) => Some(unhex(c).ok_or_else(|| {
            ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
        })?),
        None => None,
    };
    if req.q("resourceVersion") != Some("0") {
        st.cache.sync().await;
    }
    let rc = st.cache.resource(req.res);
    let (items, rv, cont, remaining) = {
        let rc = rc.read();
        let rv = st.cache.processed();
        let prefix = match &req.namespace {
            Some(ns) => format!("{}{ns}/", req.res.prefix()),
            None => req.res.prefix(),
        };
        let lower = start_after.clone().unwrap_or_else(|| prefix.clone());
        let mut items: Vec<Arc<Cached>> = Vec::new();
        let mut last_key = None;
        let mut more = 0usize;
        for (k, v) in rc.objects.range::<String, _>((
            std::ops::Bound::Included(&lower),
            std::ops::Bound::Unbounded,
        )) {
            if !k.starts_with(&prefix) {
                break;
            }
            if start_after.as_deref() == Some(k.as_str()) || !filter.matches(v) {
                continue;
            }
            if limit > 0 && items.len() == limit {
                more += 1;
                continue;
            }
            items.push(v.clone());
            last_key = Some(k.clone());
        }
        let cont = if more > 0 {
            last_key.map(|k| hex(&k))
        } else {
            None
        };
        (items, rv, cont, (more > 0).then_some(more))
    };
    let rv = rv.to_string();
    if req.wants_table() {
        let values: Vec<Value> = items.iter().map(|c| c.value()).collect();
        let objs: Vec<&Value> = values.iter().collect();
        let t = to_table(
            req,
            &objs,
            &rv,
            cont.as_deref().map(|c| (c, remaining)),
            true,
        )?;
        return Ok(json_response(StatusCode::OK, &t, Vec::new()));
    }
    let mut meta = json!({"resourceVersion": rv});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
        meta["remainingItemCount"] = json!(remaining);
    }
    // The items are sent as the cache holds them, encoded.
    let head = json!({
        "kind": format!("{}List", req.res.kind),
        "apiVersion": req.res.api_version(),
        "metadata": meta,
    })
    .to_string();
    let size: usize = items.iter().map(|c| c.len() + 1).sum();
    let mut body = Vec::with_capacity(head.len() + size + 16);
    body.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
    body.extend_from_slice(b",\"items\":[");
    for (i, c) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        c.write_to(&mut body);
    }
    body.extend_from_slice(b"]}");
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

// ---------------------------------------------------------------------------------------------
// Watch

/// A watch stream's source: the cache, or (for a resourceVersion from before the cache started)
/// the store's own history.
enum Source {
    Cache(tokio::sync::broadcast::Receiver<Arc<CacheEvent>>),
    Store(ger_store::WatchReceiver),
}

async fn watch(st: &ApiState, req: &Request<'_>) -> ApiResult<Response> {
    let filter = Filter::new(req)?;
    let rv = req.q("resourceVersion");
    let timeout = match req.q("timeoutSeconds") {
        Some(t) => Duration::from_secs(
            t.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds: {t}")))?,
        ),
        None => Duration::from_secs(rand::random_range(1800..3600)),
    };
    let bookmarks = req.q("allowWatchBookmarks") == Some("true");
    let rc = st.cache.resource(req.res);
    let mut initial: Vec<Arc<CacheEvent>> = Vec::new();
    let mut too_old: Option<String> = None;
    let source = match rv {
        None | Some("0") => {
            if rv.is_none() {
                st.cache.sync().await;
            }
            let rc = rc.read();
            let (objs, rx) = rc.snapshot();
            let rev = st.cache.processed();
            initial = objs
                .into_iter()
                .filter(|o| filter.matches(o))
                .map(|obj| Arc::new(CacheEvent::new(WatchKind::Added, obj, None, rev)))
                .collect();
            Source::Cache(rx)
        }
        Some(s) => {
            let rev: i64 = s
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {s}")))?;
            let start = rc.read().watch_from(rev);
            match start {
                WatchStart::Resume(replay, rx) => {
                    initial = replay;
                    Source::Cache(rx)
                }
                WatchStart::TooOld => match st.cache.store().watch(&req.res.prefix(), rev) {
                    Ok(rx) => Source::Store(rx),
                    Err(StoreError::Compacted { oldest, .. }) => {
                        too_old = Some(format!("too old resource version: {rev} ({})", oldest - 1));
                        Source::Store(tokio::sync::mpsc::unbounded_channel().1)
                    }
                    Err(e) => return Err(ApiError::internal(e.to_string())),
                },
            }
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(256);
    let table = req.wants_table();
    let table_req = TableCtx {
        res: req.res,
        include: req.q("includeObject").unwrap_or("Metadata").to_string(),
    };
    let start_rev = rv.and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
    let metrics = st.metrics.clone();
    metrics
        .watchers
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tokio::spawn(async move {
        let _open = WatchGuard(metrics);
        let send = |v: Value| {
            let mut line = v.to_string().into_bytes();
            line.push(b'\n');
            Bytes::from(line)
        };
        if let Some(msg) = too_old {
            let status = ApiError::gone(msg).status();
            let _ = tx
                .send(Ok(send(json!({"type": "ERROR", "object": status}))))
                .await;
            return;
        }
        let mut first = true;
        let mut last_rev = start_rev;
        let emit = |ev: &CacheEvent, first: &mut bool| -> Option<Bytes> {
            let kind = event_type(ev, &filter)?;
            if table {
                let t = table_req.row(&ev.obj.value(), *first);
                *first = false;
                return Some(send(json!({"type": kind, "object": t})));
            }
            // The object is the store's bytes, shared by every watcher of this event.
            let obj = &ev.obj;
            let mut line = Vec::with_capacity(obj.len() + 32);
            line.extend_from_slice(b"{\"type\":\"");
            line.extend_from_slice(kind.as_bytes());
            line.extend_from_slice(b"\",\"object\":");
            obj.write_to(&mut line);
            line.extend_from_slice(b"}\n");
            Some(Bytes::from(line))
        };
        for ev in &initial {
            last_rev = last_rev.max(ev.rev);
            if let Some(b) = emit(ev, &mut first)
                && tx.send(Ok(b)).await.is_err()
            {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut bookmark = tokio::time::interval(Duration::from_secs(30));
        bookmark.tick().await;
        let mut source = source;
        loop {
            let ev: Arc<CacheEvent> = tokio::select! {
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                _ = bookmark.tick(), if bookmarks => {
                    let b = send(json!({"type": "BOOKMARK", "object": {
                        "kind": table_req.res.kind, "apiVersion": table_req.res.api_version(),
                        "metadata": {"resourceVersion": last_rev.to_string()}}}));
                    if tx.send(Ok(b)).await.is_err() { return; }
                    continue;
                }
                ev = next_event(&mut source) => match ev {
                    Some(ev) => ev,
                    None => return,
                },
            };
            if ev.rev <= last_rev {
                continue;
            }
            last_rev = ev.rev;
            if let Some(b) = emit(&ev, &mut first)
                && tx.send(Ok(b)).await.is_err()
            {
                return;
            }
        }
    });
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (b, rx))
    }));
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// Counts an open watch stream for as long as it lives.
struct WatchGuard(Arc<crate::metrics::Metrics>);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0
            .watchers
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

async fn next_event(source: &mut Source) -> Option<Arc<CacheEvent>> {
    match source {
        Source::Cache(rx) => match rx.recv().await {
            Ok(ev) => Some(ev),
            // Lagged: this watcher fell too far behind; end its stream so it re-lists.
            Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => None,
        },
        Source::Store(rx) => {
            let ev = rx.recv().await?;
            let plural = resource_plural(&ev.kv.key);
            let cached = |kv: &ger_store::KeyValue| Cached::from_kv(plural, kv).map(Arc::new);
            let obj = cached(&ev.kv)?;
            let prev = ev.prev.as_ref().and_then(cached);
            let kind = match (ev.kind, &prev) {
                (ger_store::EventKind::Delete, _) => WatchKind::Deleted,
                (_, None) => WatchKind::Added,
                _ => WatchKind::Modified,
            };
            Some(Arc::new(CacheEvent::new(
                kind,
                obj,
                prev,
                ev.kv.mod_revision,
            )))
        }
    }
}

/// The watch event type a filtered watcher sees, as the watch cache decides it: an object that
/// starts matching is ADDED, one that stops matching is DELETED.
fn event_type(ev: &CacheEvent, filter: &Filter) -> Option<&'static str> {
    let now = filter.matches(&ev.obj);
    let before = ev.prev.as_ref().is_some_and(|p| filter.matches(p));
    match ev.kind {
        WatchKind::Added => now.then_some("ADDED"),
        WatchKind::Deleted => now.then_some("DELETED"),
        WatchKind::Modified => match (before, now) {
            (true, true) => Some("MODIFIED"),
            (false, true) => Some("ADDED"),
            (true, false) => Some("DELETED"),
            (false, false) => None,
        },
    }
}

struct TableCtx {
    res: &'static Resource,
    include: String,
}

impl TableCtx {
    fn row(&self, obj: &Value, headers: bool) -> Value {
        let object = match self.include.as_str() {
            "Object" => obj.clone(),
            "None" => Value::Null,
            _ => json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({}))}),
        };
        let cols = if headers {
            table::column_definitions(self.res.plural)
        } else {
            Vec::new()
        };
        json!({
            "kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": object::resource_version(obj)},
            "columnDefinitions": cols,
            "rows": [{"cells": table::row_cells(self.res.plural, obj, chrono::Utc::now()), "object": object}],
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// Decode a request body as `kind` (`apiVersion` `api_version`), apply `fieldValidation`, and
/// return the object with unknown fields dropped, plus warnings.
pub fn decode_body(
    body: &[u8],
    kind: &str,
    api_version: &str,
    validation: Option<&str>,
) -> ApiResult<(Value, Vec<String>)> {
    let mut v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf: {e}"
        ))
    })?;
    let Some(obj) = v.as_object() else {
        return Err(ApiError::bad_request(format!(
            "{kind} in version \"{}\" cannot be handled as a {kind}: the request body is not a JSON object",
            api_version.rsplit('/').next().unwrap_or(api_version)
        )));
    };
    let version = api_version.rsplit('/').next().unwrap_or(api_version);
    if let Some(k) = obj.get("kind").and_then(Value::as_str)
        && !k.is_empty()
        && k != kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the request body ({k}) does not match the kind of the resource ({kind})"
        )));
    }
    if let Some(av) = obj.get("apiVersion").and_then(Value::as_str)
        && !av.is_empty()
        && av != api_version
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({api_version})"
        )));
    }
    let unknown = typed::decode_and_prune(kind, &mut v).map_err(|e| {
        ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {e}"
        ))
    })?;
    v["kind"] = json!(kind);
    v["apiVersion"] = json!(api_version);
    let messages: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    match validation.unwrap_or("Warn") {
        "Strict" if !messages.is_empty() => Err(ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
            messages.join(", ")
        ))),
        "Strict" | "Warn" => Ok((v, messages)),
        "Ignore" => Ok((v, Vec::new())),
        other => Err(ApiError::bad_request(format!(
            "fieldValidation: Unsupported value: \"{other}\": supported values: \"Ignore\", \"Strict\", \"Warn\""
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Writes

fn namespace_exists(st: &ApiState, ns: &str) -> ApiResult<Value> {
    let nsres =
        resources::by_kind("Namespace").ok_or_else(|| ApiError::internal("no namespaces"))?;
    current(st, nsres, None, ns).map_err(|_| ApiError::namespace_not_found(ns))
}

fn invalid(res: &Resource, name: &str, errs: Vec<admission::FieldError>) -> ApiResult<()> {
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(res, name, &errs))
    }
}

fn store_bytes(v: &Value) -> ger_store::Bytes {
    let mut v = v.clone();
    object::strip_resource_version(&mut v);
    Arc::from(v.to_string().into_bytes())
}

fn store_error(res: &Resource, name: &str, e: StoreError) -> ApiError {
    match e {
        StoreError::AlreadyExists(_) => ApiError::already_exists(res, name),
        StoreError::NotFound(_) => ApiError::not_found(res, name),
        StoreError::Conflict { .. } => ApiError::conflict(res, name),
        other => ApiError::internal(other.to_string()),
    }
}

async fn create(st: &ApiState, req: &Request<'_>) -> ApiResult<Response> {
    let res = req.res;
    let (mut v, warnings) = decode_body(
        &req.body,
        res.kind,
        &res.api_version(),
        req.q("fieldValidation"),
    )?;
    let created = create_object(st, res, req.namespace.as_deref(), &mut v, req.dry_run()).await?;
    object_response(req, StatusCode::CREATED, &created, warnings)
}

/// Create a decoded object in `namespace` (as the POST of a collection does).
pub async fn create_object(
    st: &ApiState,
    res: &'static Resource,
    namespace: Option<&str>,
    v: &mut Value,
    dry_run: bool,
) -> ApiResult<Value> {
    let m = meta_mut(v);
    if res.namespaced {
        let ns = namespace.unwrap_or("default");
        match m.get("namespace").and_then(Value::as_str) {
            Some(n) if !n.is_empty() && n != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {
                m.insert("namespace".into(), json!(ns));
            }
        }
    } else {
        m.remove("namespace");
    }
    let name_empty = m
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    if name_empty
        && let Some(gen_name) = m.get("generateName").and_then(Value::as_str)
        && !gen_name.is_empty()
    {
        // upstream keeps at most 58 characters of the prefix (63 minus the suffix).
        let base = match gen_name.char_indices().nth(58) {
            Some((i, _)) => &gen_name[..i],
            None => gen_name,
        };
        let name = format!("{base}{}", object::random_suffix(5));
        m.insert("name".into(), json!(name));
    }
    let name = object::name(v).to_string();
    admission::apply_defaults(res.kind, v);
    // Held until the Service is in the cache, so the next one sees its address taken.
    let _allocating = if res.kind == "Service" {
        let guard = crate::services::LOCK.lock().await;
        st.cache.sync().await;
        crate::services::allocate(st, v, None)?;
        Some(guard)
    } else {
        None
    };
    object::prepare_create(res, v);
    invalid(res, &name, admission::validate(res.kind, v, None))?;
    if res.namespaced {
        let ns = object::meta_str(v, "namespace")
            .unwrap_or("default")
            .to_string();
        let nsobj = namespace_exists(st, &ns)?;
        if object::is_deleting(&nsobj) {
            return Err(ApiError::forbidden(format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                res.plural
            )));
        }
    }
    let key = res.key(object::meta_str(v, "namespace"), &name);
    if dry_run {
        if st.cache.resource(res).read().objects.contains_key(&key) {
            return Err(ApiError::already_exists(res, &name));
        }
        return Ok(v.clone());
    }
    let kv = st
        .cache
        .store()
        .create(&key, store_bytes(v))
        .await
        .map_err(|e| store_error(res, &name, e))?;
    st.cache.wait_for(kv.mod_revision).await;
    object::set_resource_version(v, kv.mod_revision);
    Ok(v.clone())
}

/// What a guaranteed update computes from the current object.
type Mutation<'m> = dyn Fn(&Value) -> ApiResult<Value> + Send + Sync + 'm;

/// Read the current object, compute the new one, write it with the current revision as
/// precondition, and retry on a conflict unless the caller pinned a resourceVersion.
pub async fn guaranteed_update(
    st: &ApiState,
    res: &'static Resource,
    ns: Option<&str>,
    name: &str,
    write: Write,
    dry_run: bool,
    mutate: &Mutation<'_>,
) -> ApiResult<Value> {
    let service_spec = res.kind == "Service" && matches!(write, Write::Main);
    let _allocating = if service_spec {
        Some(crate::services::LOCK.lock().await)
    } else {
        None
    };
    for _attempt in 0..16 {
        st.cache.sync().await;
        let mut cur = current(st, res, ns, name)?;
        let cur_rv = object::resource_version(&cur).to_string();
        // The mutation sees the object without its resourceVersion, so that the result carries
        // one only when the caller asked for it (a PUT body's, a patch's): only then is the
        // write pinned; otherwise a concurrent write is retried over, as upstream does.
        if let Some(meta) = cur.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        let mut new = mutate(&cur)?;
        object::set_resource_version(&mut cur, cur_rv.parse().unwrap_or(0));
        if !new.is_object() {
            return Err(ApiError::bad_request("the object must be a JSON object"));
        }
        let pinned = object::resource_version(&new).to_string();
        if !pinned.is_empty() && pinned != cur_rv {
            return Err(ApiError::conflict(res, name));
        }
        if object::name(&new) != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                object::name(&new)
            )));
        }
        if res.namespaced {
            let want = ns.unwrap_or("default");
            match object::meta_str(&new, "namespace") {
                Some(n) if !n.is_empty() && n != want => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    meta_mut(&mut new).insert("namespace".into(), json!(want));
                }
            }
        }
        let status_write = write == Write::Status;
        if !status_write {
            admission::apply_defaults(res.kind, &mut new);
        }
        if service_spec {
            crate::services::allocate(st, &mut new, Some(&cur))?;
        }
        object::prepare_update(res, &cur, &mut new, write);
        let errs = match write {
            Write::Status => admission::validate_status(res.kind, &new, &cur),
            // The binding is the one way to set a pod's node: no update rules apply.
            Write::Binding => admission::validate(res.kind, &new, None),
            Write::Main | Write::Deletion => admission::validate(res.kind, &new, Some(&cur)),
        };
        invalid(res, name, errs)?;
        object::set_resource_version(&mut new, cur_rv.parse().unwrap_or(0));
        if new == cur {
            return Ok(cur);
        }
        if dry_run {
            return Ok(new);
        }
        let expected = cur_rv.parse::<i64>().ok();
        let key = res.key(ns, name);
        let store = st.cache.store();
        // Gone once nothing holds it: no finalizers and no grace period still running (a
        // pod on a node waits for its kubelet).
        let grace_left = new["metadata"]["deletionGracePeriodSeconds"]
            .as_i64()
            .is_some_and(|g| g > 0);
        // A namespace is also held by its spec.finalizers until it is empty.
        let ns_held = res.kind == "Namespace"
            && new["spec"]["finalizers"]
                .as_array()
                .is_some_and(|f| !f.is_empty());
        let gone = object::is_deleting(&new)
            && object::finalizers(&new).is_empty()
            && !grace_left
            && !ns_held;
        let written = if gone {
            store.delete(&key, expected).await
        } else {
            store.update(&key, store_bytes(&new), expected).await
        };
        match written {
            Ok(kv) => {
                st.cache.wait_for(kv.mod_revision).await;
                object::set_resource_version(&mut new, kv.mod_revision);
                return Ok(new);
            }
            Err(StoreError::Conflict { .. }) if pinned.is_empty() => continue,
            Err(e) => return Err(store_error(res, name, e)),
        }
    }
    Err(ApiError::conflict(res, name))
}

async fn update(
    st: &ApiState,
    req: &Request<'_>,
    name: &str,
    sub: Option<&str>,
) -> ApiResult<Response> {
    let res = req.res;
    if sub == Some("scale") {
        let (scale, _) = decode_body(
            &req.body,
            "Scale",
            "autoscaling/v1",
            req.q("fieldValidation"),
        )?;
        let v = write_scale(st, req, name, scale).await?;
        return Ok(json_response(StatusCode::OK, &v, Vec::new()));
    }
    let (body, warnings) = decode_body(
        &req.body,
        res.kind,
        &res.api_version(),
        req.q("fieldValidation"),
    )?;
    let write = if sub == Some("status") {
        Write::Status
    } else {
        Write::Main
    };
    let v = guaranteed_update(
        st,
        res,
        req.namespace.as_deref(),
        name,
        write,
        req.dry_run(),
        &|_cur| Ok(body.clone()),
    )
    .await?;
    object_response(req, StatusCode::OK, &v, warnings)
}

fn content_type(req: &Request<'_>) -> String {
    req.headers
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

const PATCH_TYPES: &str = "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json";

fn apply_patch(kind: &str, ctype: &str, cur: &Value, patch_doc: &Value) -> ApiResult<Value> {
    let result = match ctype {
        "application/json-patch+json" => patch::json_patch(cur, patch_doc),
        "application/merge-patch+json" => patch::merge_patch(cur, patch_doc),
        "application/strategic-merge-patch+json" => {
            patch::strategic_merge_patch(cur, patch_doc, kind)
        }
        "application/apply-patch+yaml" => {
            return Err(ApiError::unsupported_media_type(format!(
                "server-side apply is served for the main resource only. {PATCH_TYPES}"
            )));
        }
        _ => return Err(ApiError::unsupported_media_type(PATCH_TYPES)),
    };
    result.map_err(|e| match e {
        patch::PatchError::BadRequest(m) => ApiError::bad_request(m),
        patch::PatchError::Unprocessable(m) => ApiError {
            code: 422,
            reason: "Invalid",
            message: m,
            details: None,
        },
    })
}

async fn patch_object(
    st: &ApiState,
    req: &Request<'_>,
    name: &str,
    sub: Option<&str>,
) -> ApiResult<Response> {
    let res = req.res;
    let ctype = content_type(req);
    if ctype == "application/apply-patch+yaml" && sub.is_none() {
        return server_side_apply(st, req, name).await;
    }
    let patch_doc: Value = serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    if sub == Some("scale") {
        let cur = get_current(st, req, name).await?;
        let patched = apply_patch("Scale", &ctype, &scale_of(res, &cur), &patch_doc)?;
        let v = write_scale(st, req, name, patched).await?;
        return Ok(json_response(StatusCode::OK, &v, Vec::new()));
    }
    let write = if sub == Some("status") {
        Write::Status
    } else {
        Write::Main
    };
    let validation = req.q("fieldValidation").map(String::from);
    let warnings = parking_lot::Mutex::new(Vec::new());
    let v = guaranteed_update(
        st,
        res,
        req.namespace.as_deref(),
        name,
        write,
        req.dry_run(),
        &|cur| {
            let patched = apply_patch(res.kind, &ctype, cur, &patch_doc)?;
            let (v, w) = decode_value(res, &patched, validation.as_deref())?;
            *warnings.lock() = w;
            Ok(v)
        },
    )
    .await?;
    let warnings = warnings.into_inner();
    object_response(req, StatusCode::OK, &v, warnings)
}

/// A patched or applied object checked as a request body of `res` is.
fn decode_value(
    res: &Resource,
    v: &Value,
    validation: Option<&str>,
) -> ApiResult<(Value, Vec<String>)> {
    let bytes = serde_json::to_vec(v).map_err(|e| ApiError::internal(e.to_string()))?;
    decode_body(&bytes, res.kind, &res.api_version(), validation)
}

/// `PATCH` with `application/apply-patch+yaml` (see `apply`): creates the object when it is
/// not there.
async fn server_side_apply(st: &ApiState, req: &Request<'_>, name: &str) -> ApiResult<Response> {
    let res = req.res;
    let applied: Value = serde_yaml::from_slice(&req.body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if !applied.is_object() {
        return Err(ApiError::bad_request(
            "the applied configuration must be an object",
        ));
    }
    let Some(manager) = req.q("fieldManager").filter(|m| !m.is_empty()) else {
        return Err(ApiError::bad_request(
            "PATCH /apply requests must set a fieldManager",
        ));
    };
    let force = match req.q("force") {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "invalid value for force: {v:?}: must be true or false"
            )));
        }
    };
    let api_version = res.api_version();
    for (field, want) in [("apiVersion", api_version.as_str()), ("kind", res.kind)] {
        match applied[field].as_str() {
            Some(v) if v == want => {}
            Some(v) => {
                return Err(ApiError::bad_request(format!(
                    "the {field} of the applied configuration ({v}) does not match the request ({want})"
                )));
            }
            None => {
                return Err(ApiError::bad_request(format!(
                    "{field} must be set in the applied configuration"
                )));
            }
        }
    }
    if object::name(&applied) != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            object::name(&applied)
        )));
    }
    let apply = crate::apply::Apply {
        applied: &applied,
        manager,
        force,
        kind: res.kind,
        api_version: &api_version,
        now: object::now_rfc3339(),
    };
    let validation = req.q("fieldValidation").map(String::from);
    st.cache.sync().await;
    if current(st, res, req.namespace.as_deref(), name).is_err() {
        let (mut v, warnings) = decode_value(res, &apply.create(), validation.as_deref())?;
        let created =
            create_object(st, res, req.namespace.as_deref(), &mut v, req.dry_run()).await?;
        return object_response(req, StatusCode::CREATED, &created, warnings);
    }
    let warnings = parking_lot::Mutex::new(Vec::new());
    let v = guaranteed_update(
        st,
        res,
        req.namespace.as_deref(),
        name,
        Write::Main,
        req.dry_run(),
        &|cur| {
            let (v, w) = decode_value(res, &apply.merge(cur)?, validation.as_deref())?;
            *warnings.lock() = w;
            Ok(v)
        },
    )
    .await?;
    object_response(req, StatusCode::OK, &v, warnings.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Scale

fn selector_string(res: &Resource, obj: &Value) -> String {
    let sel = obj.get("spec").and_then(|s| s.get("selector"));
    if res.kind == "ReplicationController" {
        LabelSelector::from_map(sel).to_string()
    } else {
        crate::selector::label_selector_string(sel).unwrap_or_default()
    }
}

fn scale_of(res: &Resource, obj: &Value) -> Value {
    let m = object::meta(obj);
    let pick = |k: &str| m.and_then(|m| m.get(k)).cloned().unwrap_or(Value::Null);
    let mut meta = json!({
        "name": pick("name"),
        "uid": pick("uid"),
        "resourceVersion": pick("resourceVersion"),
        "creationTimestamp": pick("creationTimestamp"),
    });
    if res.namespaced {
        meta["namespace"] = pick("namespace");
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": meta,
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {
            "replicas": obj["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": selector_string(res, obj),
        },
    })
}

async fn write_scale(
    st: &ApiState,
    req: &Request<'_>,
    name: &str,
    scale: Value,
) -> ApiResult<Value> {
    let res = req.res;
    let replicas = match scale.get("spec").and_then(|s| s.get("replicas")) {
        None | Some(Value::Null) => 0,
        Some(r) => r
            .as_i64()
            .ok_or_else(|| ApiError::bad_request("spec.replicas must be an integer"))?,
    };
    if replicas < 0 {
        let errs = vec![admission::FieldError::invalid(
            "spec.replicas",
            &json!(replicas),
            "must be greater than or equal to 0",
        )];
        return Err(ApiError {
            details: Some(
                json!({"name": name, "group": "autoscaling", "kind": "Scale",
                "causes": [{"reason": "FieldValueInvalid", "message": errs[0].cause_message(), "field": "spec.replicas"}]}),
            ),
            ..ApiError::invalid(res, name, &errs)
        });
    }
    let pinned = object::resource_version(&scale).to_string();
    let v = guaranteed_update(
        st,
        res,
        req.namespace.as_deref(),
        name,
        Write::Main,
        req.dry_run(),
        &|cur| {
            let mut new = cur.clone();
            if !pinned.is_empty() {
                meta_mut(&mut new).insert("resourceVersion".into(), json!(pinned));
            }
            new["spec"]["replicas"] = json!(replicas);
            Ok(new)
        },
    )
    .await?;
    Ok(scale_of(res, &v))
}

// ---------------------------------------------------------------------------------------------
// Pod subresources

async fn bind(st: &ApiState, req: &Request<'_>, name: &str) -> ApiResult<Response> {
    let (binding, _) = decode_body(&req.body, "Binding", "v1", None)?;
    let node = binding["target"]["name"].as_str().unwrap_or("").to_string();
    if node.is_empty() {
        return Err(ApiError::bad_request("target.name: Required value"));
    }
    let res = req.res;
    guaranteed_update(
        st,
        res,
        req.namespace.as_deref(),
        name,
        Write::Binding,
        req.dry_run(),
        &|cur| {
            if let Some(existing) = cur["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                return Err(ApiError::conflict_because(
                    res,
                    name,
                    &format!("pod {name} is already assigned to node \"{existing}\""),
                ));
            }
            if object::is_deleting(cur) {
                return Err(ApiError::conflict_because(
                    res,
                    name,
                    "pod is being deleted, cannot be assigned to a host",
                ));
            }
            let mut new = cur.clone();
            new["spec"]["nodeName"] = json!(node);
            // The PodScheduled condition, as the binding registry sets it with the node.
            let cond = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
                "lastTransitionTime": object::now_rfc3339()});
            let mut conds: Vec<Value> = new["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|c| c["type"] != "PodScheduled")
                .collect();
            conds.push(cond);
            new["status"]["conditions"] = json!(conds);
            Ok(new)
        },
    )
    .await?;
    let ok = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
    Ok(json_response(StatusCode::CREATED, &ok, Vec::new()))
}

async fn evict(st: &ApiState, req: &Request<'_>, name: &str) -> ApiResult<Response> {
    let (eviction, _) = decode_body(&req.body, "Eviction", "policy/v1", None)?;
    let opts: DeleteOptions =
        serde_json::from_value(eviction.get("deleteOptions").cloned().unwrap_or(json!({})))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    delete(
        st,
        req.res,
        req.namespace.as_deref(),
        name,
        &opts,
        req.dry_run(),
    )
    .await?;
    let ok = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
    Ok(json_response(StatusCode::CREATED, &ok, Vec::new()))
}

// ---------------------------------------------------------------------------------------------
// Delete

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub orphan_dependents: Option<bool>,
    pub preconditions: Option<Preconditions>,
    #[serde(default)]
    pub dry_run: Vec<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

fn delete_options(req: &Request<'_>) -> ApiResult<DeleteOptions> {
    let mut opts = if req.body.iter().all(u8::is_ascii_whitespace) {
        DeleteOptions::default()
    } else {
        let (v, _) = decode_body(&req.body, "DeleteOptions", "v1", None).or_else(|_| {
            // kubectl sends DeleteOptions with apiVersion meta.k8s.io/v1 sometimes.
            decode_body(&req.body, "DeleteOptions", "meta.k8s.io/v1", None)
        })?;
        serde_json::from_value(v).map_err(|e| ApiError::bad_request(e.to_string()))?
    };
    if opts.propagation_policy.is_none() {
        opts.propagation_policy = req.q("propagationPolicy").map(String::from);
    }
    if opts.grace_period_seconds.is_none()
        && let Some(g) = req.q("gracePeriodSeconds")
    {
        opts.grace_period_seconds = Some(
            g.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds: {g}")))?,
        );
    }
    if let Some(p) = &opts.propagation_policy
        && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
    {
        return Err(ApiError::bad_request(format!(
            "propagationPolicy: Unsupported value: \"{p}\": supported values: \"Background\", \"Foreground\", \"Orphan\""
        )));
    }
    Ok(opts)
}

/// Delete one object as kube-apiserver's generic registry does: finalizers and graceful pod
/// termination defer the removal; otherwise the object goes now.
pub async fn delete(
    st: &ApiState,
    res: &'static Resource,
    ns: Option<&str>,
    name: &str,
    opts: &DeleteOptions,
    dry_run: bool,
) -> ApiResult<(StatusCode, Value)> {
    let dry_run = dry_run || opts.dry_run.iter().any(|d| d == "All");
    st.cache.sync().await;
    let cur = current(st, res, ns, name)?;
    if let Some(p) = &opts.preconditions {
        let uid = object::meta_str(&cur, "uid").unwrap_or("");
        if let Some(want) = p.uid.as_deref().filter(|u| !u.is_empty())
            && want != uid
        {
            return Err(ApiError::conflict_because(
                res,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"
                ),
            ));
        }
        let rv = object::resource_version(&cur);
        if let Some(want) = p.resource_version.as_deref().filter(|r| !r.is_empty())
            && want != rv
        {
            return Err(ApiError::conflict_because(
                res,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rv}"
                ),
            ));
        }
    }
    // Finalizers the propagation policy asks for.
    let policy = opts
        .propagation_policy
        .as_deref()
        .or(match opts.orphan_dependents {
            Some(true) => Some("Orphan"),
            Some(false) => Some("Background"),
            None => None,
        });
    let mut add: Vec<&str> = Vec::new();
    match policy {
        Some("Foreground") => add.push("foregroundDeletion"),
        Some("Orphan") => add.push("orphan"),
        None if res.kind == "ReplicationController" && object::finalizers(&cur).is_empty() => {
            add.push("orphan")
        }
        _ => {}
    }
    let is_ns = res.kind == "Namespace";
    let graceful_pod = res.kind == "Pod"
        && cur["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty())
        && !matches!(
            cur["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        );
    let grace = opts
        .grace_period_seconds
        .or_else(|| cur["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(30)
        .max(0);
    let mut finalizers = object::finalizers(&cur);
    for f in &add {
        if !finalizers.iter().any(|x| x == f) {
            finalizers.push((*f).to_string());
        }
    }
    let defer = !finalizers.is_empty() || is_ns || (graceful_pod && grace > 0);
    if defer {
        if object::is_deleting(&cur) && add.is_empty() && !graceful_pod {
            return Ok((StatusCode::OK, cur));
        }
        let mut v = guaranteed_update(st, res, ns, name, Write::Deletion, dry_run, &|c| {
            let mut new = c.clone();
            let m = meta_mut(&mut new);
            if !finalizers.is_empty() {
                m.insert("finalizers".into(), json!(finalizers));
            }
            let (when, g) = if graceful_pod && grace > 0 {
                (chrono::Utc::now() + chrono::Duration::seconds(grace), grace)
            } else {
                (chrono::Utc::now(), 0)
            };
            let already = m.get("deletionTimestamp").is_some_and(|t| !t.is_null());
            if !already || graceful_pod {
                m.insert(
                    "deletionTimestamp".into(),
                    json!(when.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                );
                m.insert("deletionGracePeriodSeconds".into(), json!(g));
            }
            Ok(new)
        })
        .await?;
        if is_ns && !dry_run {
            start_namespace_finalizer(st.clone(), name.to_string());
            if v["status"]["phase"] != "Terminating" {
                v = guaranteed_update(st, res, ns, name, Write::Status, false, &|c| {
                    let mut new = c.clone();
                    new["status"]["phase"] = json!("Terminating");
                    Ok(new)
                })
                .await
                .unwrap_or(v);
            }
        }
        return Ok((StatusCode::OK, v));
    }
    if dry_run {
        return Ok((StatusCode::OK, deleted_response(res, &cur)));
    }
    let expected = object::resource_version(&cur).parse::<i64>().ok();
    match st.cache.store().delete(&res.key(ns, name), expected).await {
        Ok(kv) => {
            st.cache.wait_for(kv.mod_revision).await;
            let mut gone = cur;
            object::set_resource_version(&mut gone, kv.mod_revision);
            Ok((StatusCode::OK, deleted_response(res, &gone)))
        }
        Err(StoreError::Conflict { .. }) => {
            Box::pin(delete(st, res, ns, name, opts, dry_run)).await
        }
        Err(e) => Err(store_error(res, name, e)),
    }
}

/// Pods answer a delete with the deleted object; other kinds with a Success Status.
fn deleted_response(res: &Resource, gone: &Value) -> Value {
    if res.kind == "Pod" {
        return gone.clone();
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": object::name(gone),
            "group": res.group,
            "kind": res.plural,
            "uid": object::meta_str(gone, "uid").unwrap_or(""),
        },
    })
}

/// The namespace controller's work: delete everything in a terminating namespace, then the
/// namespace itself (by removing its `kubernetes` finalizer).
/// Empty a namespace being deleted, as the namespace controller does: delete everything in
/// it (pods get their grace period), and remove the namespace once nothing is left.
pub fn start_namespace_finalizer(st: ApiState, ns: String) {
    tokio::spawn(async move {
        for round in 0u64.. {
            let mut left = 0;
            for res in resources::RESOURCES.iter().filter(|r| r.namespaced) {
                let (keys, deleting) = {
                    let rc = st.cache.resource(res);
                    let rc = rc.read();
                    let prefix = format!("{}{ns}/", res.prefix());
                    let objs: Vec<&Arc<Cached>> = rc
                        .objects
                        .range::<String, _>(prefix.clone()..)
                        .take_while(|(k, _)| k.starts_with(&prefix))
                        .map(|(_, v)| v)
                        .collect();
                    let keys: Vec<String> = objs
                        .iter()
                        .filter(|c| !c.is_deleting())
                        .map(|c| c.name().to_string())
                        .collect();
                    (keys, objs.len())
                };
                left += deleting;
                for name in keys {
                    let opts = DeleteOptions {
                        propagation_policy: Some("Background".into()),
                        ..Default::default()
                    };
                    let _ = delete(&st, res, Some(&ns), &name, &opts, false).await;
                }
            }
            if left == 0 {
                let Some(nsres) = resources::by_kind("Namespace") else {
                    return;
                };
                let _ = guaranteed_update(&st, nsres, None, &ns, Write::Main, false, &|c| {
                    let mut new = c.clone();
                    if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                        spec.remove("finalizers");
                    }
                    Ok(new)
                })
                .await;
                let key = nsres.key(None, &ns);
                if let Ok(Some(kv)) = st.cache.store().get(&key).await {
                    let _ = st.cache.store().delete(&key, Some(kv.mod_revision)).await;
                }
                return;
            }
            // Quick rounds first; then pods may be waiting for a kubelet that is away.
            let pause = if round < 100 { 100 } else { 2000 };
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    });
}

async fn delete_collection(st: &ApiState, req: &Request<'_>) -> ApiResult<Response> {
    let filter = Filter::new(req)?;
    let opts = delete_options(req)?;
    st.cache.sync().await;
    let targets: Vec<(Option<String>, String)> = {
        let rc = st.cache.resource(req.res);
        let rc = rc.read();
        rc.objects
            .values()
            .filter(|c| filter.matches(c))
            .map(|c| (c.namespace().map(String::from), c.name().to_string()))
            .collect()
    };
    let mut items = Vec::new();
    for (ns, name) in targets {
        match delete(st, req.res, ns.as_deref(), &name, &opts, req.dry_run()).await {
            Ok((_, v)) => items.push(v),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let body = json!({
        "kind": format!("{}List", req.res.kind),
        "apiVersion": req.res.api_version(),
        "metadata": {"resourceVersion": st.cache.processed().to_string()},
        "items": items,
    });
    Ok(json_response(StatusCode::OK, &body, Vec::new()))
}
