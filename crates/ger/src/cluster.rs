//! The cluster around the API server: controllers and simulated nodes, talking to the API
//! in-process (no socket, no client-side rate limit) or to any API server by kubeconfig.

use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use http::HeaderValue;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use ger_controllers::Informers;
use ger_node::{Fleet, FleetOptions};

/// Flags for the simulated fleet.
#[derive(Debug, Clone, clap::Args)]
pub struct FleetArgs {
    /// Simulated nodes created at start (`node-0…`).
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// CPU capacity of each simulated node.
    #[arg(long, default_value = "4")]
    pub node_cpu: String,
    /// Memory capacity of each simulated node.
    #[arg(long, default_value = "16Gi")]
    pub node_memory: String,
    /// Pod capacity of each simulated node.
    #[arg(long, default_value_t = 110)]
    pub node_pods: u32,
    /// Milliseconds a pod spends in ContainerCreating.
    #[arg(long, default_value_t = 500)]
    pub create_delay_ms: u64,
    /// Milliseconds from Running to Ready (plus the readiness probe's initial delay).
    #[arg(long, default_value_t = 500)]
    pub ready_delay_ms: u64,
    /// Longest a deleted pod takes to terminate, in seconds (its grace period, capped).
    #[arg(long, default_value_t = 2)]
    pub max_grace_seconds: u64,
    /// Image patterns the simulated registry lacks (suffix if it starts with '-', else
    /// substring); comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "-missing,doesnotexist")]
    pub missing_images: Vec<String>,
}

impl FleetArgs {
    pub fn options(&self) -> FleetOptions {
        FleetOptions {
            nodes: self.nodes,
            cpu: self.node_cpu.clone(),
            memory: self.node_memory.clone(),
            max_pods: self.node_pods,
            create_delay: Duration::from_millis(self.create_delay_ms),
            ready_delay: Duration::from_millis(self.ready_delay_ms),
            max_grace: Duration::from_secs(self.max_grace_seconds),
            missing_images: self.missing_images.clone(),
            ..FleetOptions::default()
        }
    }
}

/// A `kube::Client` whose requests go straight into `app`.
pub fn in_process_client(app: Router, token: &str) -> kube::Client {
    let auth = HeaderValue::from_str(&format!("Bearer {token}")).ok();
    let svc = tower::ServiceBuilder::new()
        .map_request(move |mut req: http::Request<kube::client::Body>| {
            if let Some(auth) = &auth {
                req.headers_mut()
                    .insert(http::header::AUTHORIZATION, auth.clone());
            }
            req
        })
        .service(app);
    kube::Client::new(svc, "default")
}

/// Start the controllers, and the fleet when `fleet` is given.
pub fn start(
    client: kube::Client,
    fleet: Option<FleetOptions>,
    stop: CancellationToken,
) -> JoinSet<()> {
    let informers = Informers::new();
    let fleet = fleet.map(|opts| {
        Fleet::new(
            client.clone(),
            opts,
            informers.nodes.clone(),
            informers.pods.clone(),
        )
    });
    let mut set = ger_controllers::start(client, &informers, stop.clone());
    if let Some(f) = fleet {
        set.spawn(f.run(stop));
    }
    set
}

#[derive(Debug, clap::Args)]
pub struct ControllersArgs {
    /// The kubeconfig of the API server to run against.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

/// `ger controllers`: the same controllers (and fleet) against any API server.
pub async fn run_controllers(args: ControllersArgs) -> Result<(), String> {
    let kubeconfig = kube::config::Kubeconfig::read_from(&args.kubeconfig)
        .map_err(|e| format!("reading {}: {e}", args.kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|e| e.to_string())?;
    let client = kube::Client::try_from(config).map_err(|e| e.to_string())?;
    let stop = CancellationToken::new();
    let mut set = start(client, Some(args.fleet.options()), stop.clone());
    crate::server::wait_for_signal().await;
    stop.cancel();
    while set.join_next().await.is_some() {}
    Ok(())
}
