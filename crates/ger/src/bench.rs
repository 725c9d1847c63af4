//! `ger bench`: measure ger and print figures. Benchmarks never assert; they report.
//!
//! `ger bench apiserver` drives the API router in-process (no TLS, no socket) over the SQLite
//! store in a temporary directory: pod creates per second, get latency, a list of every pod,
//! watch delivery latency to many watchers, and the process's resident memory.
//!
//! `ger bench pods` runs the whole cluster in-process (API server over SQLite, controllers,
//! scheduler, simulated nodes with zero stage delays) and times one ReplicaSet of `--pods`
//! replicas over `--nodes` nodes until every pod is Ready.
//!
//! `ger bench deployment` does the same for 100 Deployments × 100 replicas, then changes the
//! image of all of them and times the rollouts until every one is complete.
//!
//! `ger bench daemonset --nodes 5000` places one DaemonSet on every node, then rolls it to a
//! new image with maxUnavailable 10%.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use futures::StreamExt;
use ger_apiserver::{ApiOptions, ApiState, router};
use http::{Method, Request};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tower::ServiceExt;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// What to measure: `apiserver`.
    pub target: String,
    /// Pods to create.
    #[arg(long, default_value_t = 10_000)]
    pub pods: usize,
    /// Concurrent writers.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Watchers for the delivery measurement.
    #[arg(long, default_value_t = 100)]
    pub watchers: usize,
    /// Keep the store in memory instead of SQLite.
    #[arg(long)]
    pub in_memory: bool,
    /// Deployments (`deployment`; each gets `--pods` / this many replicas).
    #[arg(long, default_value_t = 100)]
    pub deployments: usize,
    /// Simulated nodes (`pods`, `deployment`).
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
}

pub async fn run(args: BenchArgs) -> Result<(), String> {
    match args.target.as_str() {
        "apiserver" => apiserver(args).await,
        "pods" => pods(args).await,
        "deployment" => deployment(args).await,
        "daemonset" => daemonset(args).await,
        other => Err(format!(
            "unknown benchmark {other:?} (known: apiserver, pods, deployment, daemonset)"
        )),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

async fn call(
    app: &axum::Router,
    method: Method,
    uri: &str,
    ctype: &str,
    body: Value,
) -> Result<(u16, Value), String> {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", ctype)
        .body(if body.is_null() {
            Body::empty()
        } else {
            Body::from(body.to_string())
        })
        .map_err(|e| e.to_string())?;
    let resp = app.clone().oneshot(req).await.map_err(|e| e.to_string())?;
    let code = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .map_err(|e| e.to_string())?;
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok((code, v))
}

fn pod(i: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("pod-{i}"), "labels": {"app": "bench", "shard": (i % 10).to_string()}},
        "spec": {"containers": [{"name": "c", "image": "registry.example/agent:v1",
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]},
    })
}

/// The store a benchmark runs on: SQLite in `dir`, or memory with `--in-memory`.
fn bench_store(args: &BenchArgs, dir: &std::path::Path) -> Result<ger_store::DynStore, String> {
    Ok(if args.in_memory {
        Arc::new(ger_store::MvccStore::memory(ger_store::DEFAULT_HISTORY))
    } else {
        Arc::new(
            ger_store::open_sqlite(dir, ger_store::DEFAULT_HISTORY).map_err(|e| e.to_string())?,
        )
    })
}

async fn apiserver(args: BenchArgs) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let store = bench_store(&args, dir.path())?;
    let started = Instant::now();
    let state = ApiState::new(store, ApiOptions::default()).await?;
    let app = router(state);
    println!(
        "ger bench apiserver ({} store)",
        if args.in_memory { "memory" } else { "sqlite" }
    );
    println!("  startup: {}", ms(started.elapsed()));

    // Creates.
    let t = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let app = app.clone();
        let next = next.clone();
        let total = args.pods;
        tasks.push(tokio::spawn(async move {
            let mut failures = 0usize;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return failures;
                }
                match call(
                    &app,
                    Method::POST,
                    "/api/v1/namespaces/default/pods",
                    "application/json",
                    pod(i),
                )
                .await
                {
                    Ok((201, _)) => {}
                    _ => failures += 1,
                }
            }
        }));
    }
    let mut failures = 0;
    for t in tasks {
        failures += t.await.map_err(|e| e.to_string())?;
    }
    let el = t.elapsed();
    println!(
        "  create {} pods ({} writers): {:.0} creates/s, {} total, {failures} failed",
        args.pods,
        args.concurrency,
        args.pods as f64 / el.as_secs_f64(),
        ms(el)
    );

    // Gets.
    let mut lat = Vec::new();
    for i in 0..2_000usize {
        let name = format!("pod-{}", (i * 7919) % args.pods.max(1));
        let t = Instant::now();
        call(
            &app,
            Method::GET,
            &format!("/api/v1/namespaces/default/pods/{name}"),
            "application/json",
            Value::Null,
        )
        .await?;
        lat.push(t.elapsed());
    }
    lat.sort();
    println!(
        "  get: p50 {} p99 {}",
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99))
    );

    // Lists.
    for (what, uri) in [
        ("list all pods (json)", "/api/v1/pods".to_string()),
        (
            "list pods by label",
            "/api/v1/namespaces/default/pods?labelSelector=shard%3D3".to_string(),
        ),
    ] {
        let t = Instant::now();
        let (_, v) = call(&app, Method::GET, &uri, "application/json", Value::Null).await?;
        let n = v["items"].as_array().map_or(0, Vec::len);
        println!("  {what}: {n} items in {}", ms(t.elapsed()));
    }

    // Watch delivery.
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let lats: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let updates = 500usize;
    let mut watchers = Vec::new();
    let (_, listed) = call(
        &app,
        Method::GET,
        "/api/v1/pods?limit=1",
        "application/json",
        Value::Null,
    )
    .await?;
    let rv = listed["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    for _ in 0..args.watchers {
        let req = Request::builder()
            .uri(format!(
                "/api/v1/namespaces/default/pods?watch=true&resourceVersion={rv}&timeoutSeconds=60"
            ))
            .body(Body::empty())
            .map_err(|e| e.to_string())?;
        let resp = app.clone().oneshot(req).await.map_err(|e| e.to_string())?;
        let sent = sent.clone();
        let lats = lats.clone();
        watchers.push(tokio::spawn(async move {
            let mut stream = resp.into_body().into_data_stream();
            let mut buf = Vec::new();
            let mut seen = 0;
            while seen < updates {
                let Some(Ok(chunk)) = stream.next().await else {
                    break;
                };
                buf.extend_from_slice(&chunk);
                while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    let now = Instant::now();
                    // Find the tag without decoding the whole event: the figure is the
                    // server's delivery time, not this client's JSON parsing.
                    if let Some(tag) = bench_tag(&line)
                        && let Some(at) = sent.lock().get(tag)
                    {
                        lats.lock().push(now - *at);
                        seen += 1;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    for i in 0..updates {
        let tag = format!("u{i}");
        sent.lock().insert(tag.clone(), Instant::now());
        let patch = json!({"metadata": {"annotations": {"bench": tag}}});
        call(
            &app,
            Method::PATCH,
            &format!(
                "/api/v1/namespaces/default/pods/pod-{}",
                i % args.pods.max(1)
            ),
            "application/merge-patch+json",
            patch,
        )
        .await?;
    }
    let write_el = t.elapsed();
    for w in watchers {
        let _ = tokio::time::timeout(Duration::from_secs(30), w).await;
    }
    let mut l = lats.lock().clone();
    l.sort();
    println!(
        "  watch: {updates} updates ({:.0}/s) to {} watchers, {} deliveries: p50 {} p99 {}",
        updates as f64 / write_el.as_secs_f64(),
        args.watchers,
        l.len(),
        ms(percentile(&l, 0.5)),
        ms(percentile(&l, 0.99))
    );
    match rss_mb() {
        Some(mb) => println!("  RSS: {mb:.0} MB"),
        None => println!("  RSS: unavailable"),
    }
    Ok(())
}

/// The value of the `bench` annotation in a watch event line.
fn bench_tag(line: &[u8]) -> Option<&str> {
    const KEY: &[u8] = b"\"bench\":\"";
    let start = line.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = line[start..].iter().position(|b| *b == b'"')?;
    std::str::from_utf8(&line[start..start + len]).ok()
}

/// An in-process cluster for the benchmarks: API server, controllers, `nodes` simulated
/// nodes with zero stage delays and room for `per_node` pods each.
async fn bench_cluster(
    args: &BenchArgs,
    per_node: u32,
) -> Result<
    (
        tempfile::TempDir,
        kube::Client,
        tokio_util::sync::CancellationToken,
        tokio::task::JoinSet<()>,
    ),
    String,
> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let store = bench_store(args, dir.path())?;
    let state = ApiState::new(
        store,
        ApiOptions {
            token: Some("bench".into()),
            ..ApiOptions::default()
        },
    )
    .await?;
    let app = router(state);
    let client = crate::cluster::in_process_client(app, "bench");
    let fleet = ger_node::FleetOptions {
        nodes: args.nodes,
        max_pods: per_node.max(110),
        create_delay: Duration::ZERO,
        ready_delay: Duration::ZERO,
        max_grace: Duration::ZERO,
        ..ger_node::FleetOptions::default()
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let cluster = crate::cluster::start(
        client.clone(),
        ger_controllers::Options::default(),
        Some(fleet),
        stop.clone(),
    );
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    let t = Instant::now();
    loop {
        let n = nodes
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?;
        if n.items.len() >= args.nodes {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("  {} nodes up in {}", args.nodes, ms(t.elapsed()));
    Ok((dir, client, stop, cluster))
}

async fn stop_cluster(
    stop: tokio_util::sync::CancellationToken,
    mut cluster: tokio::task::JoinSet<()>,
) {
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while cluster.join_next().await.is_some() {}
    })
    .await;
}

async fn pods(args: BenchArgs) -> Result<(), String> {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use kube::api::{Api, PostParams};

    println!(
        "ger bench pods ({} store)",
        if args.in_memory { "memory" } else { "sqlite" }
    );
    let per_node = args.pods.div_ceil(args.nodes.max(1)) as u32 + 10;
    let (_dir, client, stop, cluster) = bench_cluster(&args, per_node).await?;
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "bench", "namespace": "default"},
        "spec": {"replicas": args.pods, "selector": {"matchLabels": {"app": "bench"}},
            "template": {"metadata": {"labels": {"app": "bench"}},
                "spec": {"containers": [{"name": "c", "image": "registry.local/agent:v1"}]}}},
    }))
    .map_err(|e| e.to_string())?;
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let t = Instant::now();
    api.create(&PostParams::default(), &rs)
        .await
        .map_err(|e| e.to_string())?;
    let mut last_print = Instant::now();
    let ready = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let cur = api.get("bench").await.map_err(|e| e.to_string())?;
        let status = cur.status.unwrap_or_default();
        let ready = status.ready_replicas.unwrap_or(0);
        if last_print.elapsed() > Duration::from_secs(2) {
            println!(
                "  … {:.1} s: {} pods, {} ready",
                t.elapsed().as_secs_f64(),
                status.replicas,
                ready
            );
            last_print = Instant::now();
        }
        if ready as usize >= args.pods || t.elapsed() > Duration::from_secs(600) {
            break ready;
        }
    };
    let el = t.elapsed();
    println!(
        "  {} replicas over {} nodes: {} ready in {:.2} s ({:.0} pods/s)",
        args.pods,
        args.nodes,
        ready,
        el.as_secs_f64(),
        f64::from(ready) / el.as_secs_f64()
    );
    match rss_mb() {
        Some(mb) => println!("  RSS: {mb:.0} MB"),
        None => println!("  RSS: unavailable"),
    }
    stop_cluster(stop, cluster).await;
    Ok(())
}

async fn deployment(args: BenchArgs) -> Result<(), String> {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};

    let deployments = args.deployments.max(1);
    let replicas = args.pods / deployments;
    println!(
        "ger bench deployment ({} store)",
        if args.in_memory { "memory" } else { "sqlite" }
    );
    let per_node = (deployments * replicas * 2).div_ceil(args.nodes.max(1)) as u32;
    let (_dir, client, stop, cluster) = bench_cluster(&args, per_node).await?;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let t = Instant::now();
    for i in 0..deployments {
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": format!("app-{i}"), "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": format!("app-{i}")}},
                "template": {"metadata": {"labels": {"app": format!("app-{i}")}},
                    "spec": {"containers": [{"name": "c", "image": "registry.local/agent:v1"}]}}},
        }))
        .map_err(|e| e.to_string())?;
        api.create(&PostParams::default(), &d)
            .await
            .map_err(|e| e.to_string())?;
    }
    let complete = |list: &[Deployment]| {
        list.iter()
            .filter(|d| {
                let s = d.status.clone().unwrap_or_default();
                let want = replicas as i32;
                s.updated_replicas == Some(want)
                    && s.replicas == Some(want)
                    && s.available_replicas == Some(want)
                    && s.observed_generation >= d.metadata.generation
            })
            .count()
    };
    let wait_all = |label: &'static str, t: Instant| {
        let api = api.clone();
        async move {
            let mut last = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let list = api
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| e.to_string())?;
                let done = complete(&list.items);
                if last.elapsed() > Duration::from_secs(2) {
                    println!(
                        "  … {label} {:.1} s: {done}/{deployments} complete",
                        t.elapsed().as_secs_f64()
                    );
                    last = Instant::now();
                }
                if done == deployments || t.elapsed() > Duration::from_secs(600) {
                    return Ok::<usize, String>(done);
                }
                if t.elapsed() > Duration::from_secs(10)
                    && std::env::var_os("GER_BENCH_DEBUG").is_some()
                {
                    if let Some(d) = list
                        .items
                        .iter()
                        .find(|d| complete(std::slice::from_ref(*d)) == 0)
                    {
                        println!(
                            "  stuck: {} gen {:?} {}",
                            d.metadata.name.clone().unwrap_or_default(),
                            d.metadata.generation,
                            serde_json::to_string(&d.status).unwrap_or_default()
                        );
                        let rs: kube::Api<k8s_openapi::api::apps::v1::ReplicaSet> =
                            kube::Api::namespaced(api.clone().into_client(), "default");
                        for r in rs
                            .list(&ListParams::default())
                            .await
                            .map_err(|e| e.to_string())?
                            .items
                        {
                            if r.metadata
                                .name
                                .as_deref()
                                .unwrap_or("")
                                .starts_with(&format!(
                                    "{}-",
                                    d.metadata.name.clone().unwrap_or_default()
                                ))
                            {
                                println!(
                                    "    {} spec {:?} status {}",
                                    r.metadata.name.clone().unwrap_or_default(),
                                    r.spec.as_ref().and_then(|s| s.replicas),
                                    serde_json::to_string(&r.status).unwrap_or_default()
                                );
                            }
                        }
                    }
                    return Ok(done);
                }
            }
        }
    };
    let done = wait_all("create", t).await?;
    println!(
        "  {deployments} deployments × {replicas} replicas over {} nodes: {done} available in {:.2} s",
        args.nodes,
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    for i in 0..deployments {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "registry.local/agent:v2"}]}}}});
        api.patch(
            &format!("app-{i}"),
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await
        .map_err(|e| e.to_string())?;
    }
    let done = wait_all("rollout", t).await?;
    println!(
        "  image change on all: {done} rollouts complete in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    match rss_mb() {
        Some(mb) => println!("  RSS: {mb:.0} MB"),
        None => println!("  RSS: unavailable"),
    }
    stop_cluster(stop, cluster).await;
    Ok(())
}

/// A node joins: how long until it is Ready, and then until the DaemonSet's pod on it is.
async fn new_node_latency(client: &kube::Client) -> Result<(), String> {
    use k8s_openapi::api::core::v1::{Node, Pod};
    use kube::api::{Api, ListParams, PostParams};

    fn node_ready(n: &Node) -> bool {
        let conds = n.status.as_ref().and_then(|s| s.conditions.as_ref());
        conds.is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    }
    fn pod_ready(p: &Pod) -> bool {
        let conds = p.status.as_ref().and_then(|s| s.conditions.as_ref());
        conds.is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": "node-joining", "annotations": {ger_node::SIMULATED: "true"},
            "labels": {"kubernetes.io/hostname": "node-joining"}},
    }))
    .map_err(|e| e.to_string())?;
    let t = Instant::now();
    nodes
        .create(&PostParams::default(), &node)
        .await
        .map_err(|e| e.to_string())?;
    let mut ready_at = None;
    let on_node = ListParams::default().fields("spec.nodeName=node-joining");
    while t.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let Some(at) = ready_at else {
            let n = nodes.get("node-joining").await.map_err(|e| e.to_string())?;
            if node_ready(&n) {
                ready_at = Some(t.elapsed());
            }
            continue;
        };
        let list = pods.list(&on_node).await.map_err(|e| e.to_string())?;
        if list.items.iter().any(pod_ready) {
            println!(
                "  a joining node: Ready in {}, its DaemonSet pod Ready {} after that",
                ms(at),
                ms(t.elapsed() - at)
            );
            return Ok(());
        }
    }
    println!("  a joining node: its DaemonSet pod was not Ready within 60 s");
    Ok(())
}

async fn daemonset(args: BenchArgs) -> Result<(), String> {
    use k8s_openapi::api::apps::v1::DaemonSet;
    use kube::api::{Api, Patch, PatchParams, PostParams};

    println!(
        "ger bench daemonset ({} store)",
        if args.in_memory { "memory" } else { "sqlite" }
    );
    let (_dir, client, stop, cluster) = bench_cluster(&args, 110).await?;
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    let ds: DaemonSet = serde_json::from_value(json!({
        "metadata": {"name": "agent", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
            "template": {"metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "agent", "image": "registry.local/agent:v1"}]}}},
    }))
    .map_err(|e| e.to_string())?;
    let nodes = args.nodes as i32;
    let wait = |label: &'static str, t: Instant| {
        let api = api.clone();
        async move {
            let mut last = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let d = api.get("agent").await.map_err(|e| e.to_string())?;
                let s = d.status.unwrap_or_default();
                let updated = s.updated_number_scheduled.unwrap_or(0);
                let available = s.number_available.unwrap_or(0);
                if last.elapsed() > Duration::from_secs(2) {
                    println!(
                        "  … {label} {:.1} s: {updated} updated, {available} available of {}",
                        t.elapsed().as_secs_f64(),
                        s.desired_number_scheduled
                    );
                    last = Instant::now();
                }
                let done = s.desired_number_scheduled == nodes
                    && updated == nodes
                    && available == nodes
                    && s.observed_generation >= d.metadata.generation;
                if done || t.elapsed() > Duration::from_secs(600) {
                    return Ok::<i32, String>(available);
                }
            }
        }
    };
    let t = Instant::now();
    api.create(&PostParams::default(), &ds)
        .await
        .map_err(|e| e.to_string())?;
    let placed = wait("place", t).await?;
    let el = t.elapsed().as_secs_f64();
    println!("  {placed} of {nodes} nodes running the DaemonSet in {el:.2} s");
    let t = Instant::now();
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "agent", "image": "registry.local/agent:v2"}]}}}});
    api.patch("agent", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .map_err(|e| e.to_string())?;
    let done = wait("rollout", t).await?;
    let el = t.elapsed().as_secs_f64();
    println!(
        "  rollout at maxUnavailable 10%: {done} of {nodes} replaced in {el:.2} s ({:.0} pods/s)",
        f64::from(done) / el
    );
    new_node_latency(&client).await?;
    match rss_mb() {
        Some(mb) => println!("  RSS: {mb:.0} MB"),
        None => println!("  RSS: unavailable"),
    }
    stop_cluster(stop, cluster).await;
    Ok(())
}
