//! `ger agent`: run one edge node (see `ger_node::agent`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use ger_node::FleetOptions;
use ger_node::agent::AgentOptions;

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The kubeconfig of the API server (a node's, from `ger token create`, or the admin's).
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// The node this agent is.
    #[arg(long)]
    pub node_name: String,
    /// Labels the node registers with: `k=v,k2=v2`.
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<String>,
    /// Where the local (OTA) API listens; loopback only.
    #[arg(long, default_value = "127.0.0.1:10267")]
    pub listen: SocketAddr,
    /// Where the local pod cache lives (default `./ger-agent-<node>`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// How often the node's Lease is renewed (Go duration).
    #[arg(long, default_value = "10s", value_parser = crate::rolling_update::parse_duration)]
    pub heartbeat_interval: Duration,
    /// Milliseconds a pod spends in ContainerCreating.
    #[arg(long, default_value_t = 500)]
    pub create_delay_ms: u64,
    /// Milliseconds from Running to Ready (plus the readiness probe's initial delay).
    #[arg(long, default_value_t = 500)]
    pub ready_delay_ms: u64,
    /// Longest a deleted pod takes to terminate, in seconds.
    #[arg(long, default_value_t = 2)]
    pub max_grace_seconds: u64,
}

fn parse_labels(items: &[String]) -> Result<BTreeMap<String, String>, String> {
    items
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|item| {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| format!("invalid label {item:?}: want key=value"))?;
            Ok((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

pub async fn run(args: AgentArgs) -> Result<(), String> {
    let labels = parse_labels(&args.labels)?;
    let client = crate::cluster::client_for(&args.kubeconfig).await?;
    let data_dir = args
        .data_dir
        .unwrap_or_else(|| PathBuf::from(format!("./ger-agent-{}", args.node_name)));
    let opts = AgentOptions {
        node_name: args.node_name,
        labels,
        listen: args.listen,
        data_dir,
        fleet: FleetOptions {
            create_delay: Duration::from_millis(args.create_delay_ms),
            ready_delay: Duration::from_millis(args.ready_delay_ms),
            max_grace: Duration::from_secs(args.max_grace_seconds),
            lease_interval: args.heartbeat_interval.max(Duration::from_millis(100)),
            ..FleetOptions::default()
        },
    };
    let stop = CancellationToken::new();
    let signal = stop.clone();
    tokio::spawn(async move {
        crate::server::wait_for_signal().await;
        signal.cancel();
    });
    ger_node::agent::run(client, opts, stop)
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse() {
        let got = parse_labels(&["zone=edge".into(), " tier = a ".into(), String::new()]).unwrap();
        assert_eq!(got.get("zone").map(String::as_str), Some("edge"));
        assert_eq!(got.get("tier").map(String::as_str), Some("a"));
        assert!(parse_labels(&["novalue".into()]).is_err());
    }
}
