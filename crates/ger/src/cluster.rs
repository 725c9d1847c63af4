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

/// Flags of the controllers.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllerArgs {
    /// How long a node may go without a heartbeat before it is marked Unknown
    /// (Go duration: `40s`, `1m`).
    #[arg(long, default_value = "40s", value_parser = crate::rolling_update::parse_duration)]
    pub node_monitor_grace_period: Duration,
    /// How often the node lifecycle controller looks at every node.
    #[arg(long, default_value = "5s", value_parser = crate::rolling_update::parse_duration)]
    pub node_monitor_period: Duration,
}

impl ControllerArgs {
    pub fn options(&self) -> ger_controllers::Options {
        ger_controllers::Options {
            node_lifecycle: ger_controllers::nodelifecycle::NodeLifecycleOptions {
                monitor_period: self.node_monitor_period.max(Duration::from_millis(100)),
                grace_period: self.node_monitor_grace_period,
            },
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
    controllers: ger_controllers::Options,
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
    let mut set = ger_controllers::start(client, &informers, controllers, stop.clone());
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
    pub controllers: ControllerArgs,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

/// The client configuration a kubeconfig file gives, or, without one, what `KUBECONFIG`,
/// `~/.kube/config` or the in-cluster environment give (kubectl's order).
pub async fn config_for(path: Option<&std::path::Path>) -> Result<kube::Config, String> {
    let Some(path) = path else {
        return kube::Config::infer().await.map_err(|e| e.to_string());
    };
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A client for the API server a kubeconfig file names.
pub async fn client_for(path: &std::path::Path) -> Result<kube::Client, String> {
    let config = config_for(Some(path)).await?;
    kube::Client::try_from(config).map_err(|e| e.to_string())
}

/// `ger controllers`: the same controllers (and fleet) against any API server.
pub async fn run_controllers(args: ControllersArgs) -> Result<(), String> {
    let client = client_for(&args.kubeconfig).await?;
    let stop = CancellationToken::new();
    let mut set = start(
        client,
        args.controllers.options(),
        Some(args.fleet.options()),
        stop.clone(),
    );
    crate::server::wait_for_signal().await;
    stop.cancel();
    while set.join_next().await.is_some() {}
    Ok(())
}
