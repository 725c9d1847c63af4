//! `ger server`: the API server over the embedded store, on HTTPS, until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ger_apiserver::{ApiOptions, ApiState, router};
use ger_store::DynStore;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio_util::sync::CancellationToken;

use crate::tls;

#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Where the store, credentials and kubeconfig live.
    #[arg(long, default_value = "./ger-data")]
    pub data_dir: PathBuf,
    /// Address the API listens on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Keep the store in memory only (nothing survives a restart).
    #[arg(long)]
    pub in_memory: bool,
    /// Events of store history kept for watches that resume.
    #[arg(long, default_value_t = ger_store::DEFAULT_HISTORY)]
    pub history: usize,
    /// How long events are kept (Go duration), as kube-apiserver's `--event-ttl`.
    #[arg(long, default_value = "1h", value_parser = crate::rolling_update::parse_duration)]
    pub event_ttl: Duration,
    /// Run no controllers and no simulated nodes: the API server alone.
    #[arg(long)]
    pub api_only: bool,
    #[command(flatten)]
    pub controllers: crate::cluster::ControllerArgs,
    #[command(flatten)]
    pub fleet: crate::cluster::FleetArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("opening the store in {0}: {1}")]
    Store(PathBuf, ger_store::StoreError),
    #[error("starting the API: {0}")]
    Api(String),
    #[error(transparent)]
    Credentials(#[from] tls::CredentialsError),
    #[error("listening on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    #[error("writing {0}: {1}")]
    Kubeconfig(PathBuf, std::io::Error),
}

pub async fn run(args: ServerArgs) -> Result<(), ServerError> {
    let started = std::time::Instant::now();
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| ServerError::Kubeconfig(args.data_dir.clone(), e))?;
    let data_dir = std::fs::canonicalize(&args.data_dir).unwrap_or(args.data_dir.clone());
    let store: DynStore = if args.in_memory {
        Arc::new(ger_store::MvccStore::memory(args.history))
    } else {
        Arc::new(
            ger_store::open_sqlite(&data_dir.join("store"), args.history)
                .map_err(|e| ServerError::Store(data_dir.clone(), e))?,
        )
    };
    let creds = tls::load_or_create(&data_dir, &[args.listen.ip().to_string()])?;
    let state = ApiState::new(
        store,
        ApiOptions {
            token: Some(creds.token.clone()),
            ..ApiOptions::default()
        },
    )
    .await
    .map_err(ServerError::Api)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| ServerError::Listen(args.listen, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServerError::Listen(args.listen, e))?;
    state
        .ensure_kubernetes_service(addr)
        .await
        .map_err(ServerError::Api)?;
    let kubeconfig = data_dir.join("kubeconfig");
    let server_url = format!("https://{addr}");
    let tmp = data_dir.join("kubeconfig.tmp");
    std::fs::write(
        &tmp,
        tls::kubeconfig(&server_url, &creds.ca_pem, &creds.token),
    )
    .and_then(|()| std::fs::rename(&tmp, &kubeconfig))
    .map_err(|e| ServerError::Kubeconfig(kubeconfig.clone(), e))?;
    tracing::info!(%addr, elapsed_ms = started.elapsed().as_millis() as u64, "ger server ready");
    println!(
        "ger server is serving on {server_url} (ready in {} ms). To use it: export KUBECONFIG={}",
        started.elapsed().as_millis(),
        kubeconfig.display()
    );
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        signal.cancel();
    });
    ger_apiserver::start_event_ttl(state.clone(), args.event_ttl);
    let app = router(state);
    let mut cluster = if args.api_only {
        tokio::task::JoinSet::new()
    } else {
        let client = crate::cluster::in_process_client(app.clone(), &creds.token);
        crate::cluster::start(
            client,
            args.controllers.options(),
            Some(args.fleet.options()),
            shutdown.clone(),
        )
    };
    serve(listener, creds.tls, app, shutdown).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while cluster.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Accept TLS connections and serve `app` on them until `shutdown`; then give open requests a
/// moment to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: axum::Router,
    shutdown: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let conns = tokio_util::task::TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let shutdown = shutdown.clone();
        conns.spawn(async move {
            let Ok(tls) = acceptor.accept(stream).await else {
                tracing::debug!(%peer, "TLS handshake failed");
                return;
            };
            let service = TowerToHyperService::new(app);
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
                }
            }
        });
    }
    conns.close();
    let _ = tokio::time::timeout(Duration::from_secs(3), conns.wait()).await;
}
