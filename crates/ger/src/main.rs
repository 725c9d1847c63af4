//! `ger`: a Kubernetes-compatible control plane for rolling out workloads to fleets of nodes.

mod agent;
mod bench;
mod cluster;
mod ota;
mod rolling_update;
mod rollout_map;
mod server;
mod tls;
mod token;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ger",
    version,
    about = "A Kubernetes-compatible rollout control plane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The command line of the kubectl plugin.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl rolling-update",
    about = "Rolling update of a ReplicationController"
)]
struct PluginCli {
    #[command(flatten)]
    args: rolling_update::RollingUpdateArgs,
}

/// The command line of the `kubectl rollout-map` plugin.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl rollout-map",
    about = "Draw a DaemonSet's or Deployment's rollout, one cell per node or pod"
)]
struct MapPluginCli {
    #[command(flatten)]
    args: rollout_map::MapArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API server over the embedded store.
    Server(server::ServerArgs),
    /// Run the controllers (and simulated nodes) against any API server.
    Controllers(cluster::ControllersArgs),
    /// Rolling update of a ReplicationController (kubectl 1.17's `rolling-update`).
    RollingUpdate(rolling_update::RollingUpdateArgs),
    /// Draw a DaemonSet's or Deployment's rollout, one cell per node or pod.
    RolloutMap(rollout_map::MapArgs),
    /// Measure ger and print figures.
    Bench(bench::BenchArgs),
    /// Credentials for edge nodes.
    Token(token::TokenArgs),
    /// Run one edge node: heartbeat, pods, local cache and the OTA API.
    Agent(agent::AgentArgs),
    /// Talk to the local node agent's OTA API: list pods, upgrade one.
    Ota(ota::OtaArgs),
}

/// mimalloc: the controllers and the API server allocate many small, short-lived objects.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    // Installed as `kubectl-rolling_update` or `kubectl-rollout_map`, ger is that kubectl plugin.
    let argv0 = std::env::args().next().unwrap_or_default();
    let plugin = std::path::Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let rest = || std::env::args().skip(1);
    let cli = if plugin.starts_with("kubectl-rolling_update") {
        let parsed = PluginCli::parse_from(
            std::iter::once("kubectl rolling-update".to_string()).chain(rest()),
        );
        Cli {
            command: Command::RollingUpdate(parsed.args),
        }
    } else if plugin.starts_with("kubectl-rollout_map") {
        let parsed = MapPluginCli::parse_from(
            std::iter::once("kubectl rollout-map".to_string()).chain(rest()),
        );
        Cli {
            command: Command::RolloutMap(parsed.args),
        }
    } else {
        Cli::parse()
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Server(args) => server::run(args).await.map_err(|e| e.to_string()),
            Command::Controllers(args) => cluster::run_controllers(args).await,
            Command::RollingUpdate(args) => rolling_update::run(args).await,
            Command::RolloutMap(args) => rollout_map::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Token(args) => token::run(args),
            Command::Agent(args) => agent::run(args).await,
            Command::Ota(args) => ota::run(args).await,
        }
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
