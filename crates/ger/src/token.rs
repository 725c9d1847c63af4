//! `ger token create --node NAME`: credentials for one edge node, made on the server's machine
//! from the server's data directory. The token lets `ger agent` act for that node only.

use std::path::PathBuf;

use crate::tls;

#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Make a node's token (printed), or its kubeconfig with `--kubeconfig-out`.
    Create(CreateArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The node the token is for.
    #[arg(long)]
    pub node: String,
    /// The server's data directory.
    #[arg(long, default_value = "./ger-data")]
    pub data_dir: PathBuf,
    /// Write a kubeconfig for the node here instead of printing the token.
    #[arg(long)]
    pub kubeconfig_out: Option<PathBuf>,
}

fn read(path: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| {
        format!(
            "reading {}: {e} (is this the data directory of a `ger server`?)",
            path.display()
        )
    })
}

pub fn run(args: TokenArgs) -> Result<(), String> {
    let TokenCommand::Create(args) = args.command;
    let errors = ger_apiserver::admission::dns_subdomain_errors(&args.node);
    if !errors.is_empty() {
        return Err(format!(
            "invalid node name {:?}: {}",
            args.node,
            errors.join("; ")
        ));
    }
    let secret = read(&args.data_dir.join("pki").join("token"))?;
    let token = ger_apiserver::auth::node_token(secret.trim(), &args.node);
    let Some(out) = args.kubeconfig_out else {
        println!("{token}");
        return Ok(());
    };
    let admin = args.data_dir.join("kubeconfig");
    let config = kube::config::Kubeconfig::read_from(&admin)
        .map_err(|e| format!("reading {}: {e}", admin.display()))?;
    let server = config
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.server.clone())
        .ok_or_else(|| format!("{} names no server", admin.display()))?;
    let ca = read(&args.data_dir.join("pki").join("ca.crt"))?;
    let user = format!("system:node:{}", args.node);
    std::fs::write(&out, tls::kubeconfig_for(&server, &ca, &user, &token))
        .map_err(|e| format!("writing {}: {e}", out.display()))?;
    println!(
        "kubeconfig for node {} written to {}",
        args.node,
        out.display()
    );
    Ok(())
}
