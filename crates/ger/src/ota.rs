//! `ger ota`: for the person at an edge node, the node agent's OTA API from the command line.
//! `ger ota list` shows the node's pods and whether each waits for an upgrade; `ger ota
//! upgrade POD` starts one.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

#[derive(Debug, clap::Args)]
pub struct OtaArgs {
    /// The node agent's local API.
    #[arg(long, global = true, default_value = "127.0.0.1:10267")]
    pub agent: SocketAddr,
    #[command(subcommand)]
    pub command: OtaCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum OtaCommand {
    /// The node's pods, and whether each needs an upgrade.
    List,
    /// Upgrade one pod: it is deleted and its DaemonSet re-creates it from the new template.
    Upgrade {
        pod: String,
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
}

/// One plain HTTP/1.1 request to the agent: (status, body).
async fn call(agent: SocketAddr, method: &str, path: &str) -> Result<(u16, String), String> {
    let unreachable = |e: &dyn std::fmt::Display| format!("the node agent at {agent}: {e}");
    let stream = tokio::net::TcpStream::connect(agent)
        .await
        .map_err(|e| unreachable(&e))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, agent.to_string())
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| unreachable(&e))?;
    let code = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| unreachable(&e))?
        .to_bytes();
    Ok((code, String::from_utf8_lossy(&body).into_owned()))
}

fn condition(pod: &Pod, kind: &str) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| c.status.clone())
}

/// The `ger ota list` table.
pub fn table(pods: &[Pod]) -> String {
    let mut rows = vec![[
        "NAMESPACE".to_string(),
        "NAME".into(),
        "READY".into(),
        "IMAGE".into(),
        "NEEDS UPGRADE".into(),
    ]];
    for p in pods {
        let image = p
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        let need = match condition(p, ger_node::agent::POD_NEED_UPGRADE).as_deref() {
            Some("True") => "yes",
            Some(_) => "no",
            None => "-",
        };
        rows.push([
            p.namespace().unwrap_or_default(),
            p.name_any(),
            condition(p, "Ready").unwrap_or_else(|| "-".into()),
            image,
            need.into(),
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            let line: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            format!("{}\n", line.join("   ").trim_end())
        })
        .collect()
}

pub async fn run(args: OtaArgs) -> Result<(), String> {
    match args.command {
        OtaCommand::List => {
            let (code, body) = call(args.agent, "GET", "/pods").await?;
            if code != 200 {
                return Err(format!("{code}: {body}"));
            }
            let list: serde_json::Value = serde_json::from_str(&body).map_err(|e| {
                format!("the node agent answered something else than a PodList: {e}")
            })?;
            let pods: Vec<Pod> = serde_json::from_value(list["items"].clone())
                .map_err(|e| format!("the node agent's PodList: {e}"))?;
            print!("{}", table(&pods));
            Ok(())
        }
        OtaCommand::Upgrade { pod, namespace } => {
            let path = format!("/openyurt.io/v1/namespaces/{namespace}/pods/{pod}/upgrade");
            let (code, body) = call(args.agent, "POST", &path).await?;
            if code == 200 {
                println!("{body}");
                Ok(())
            } else {
                Err(format!("{code}: {body}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_list_says_which_pods_wait() {
        let pod = |name: &str, need: Option<&str>| -> Pod {
            let mut conds = vec![json!({"type": "Ready", "status": "True"})];
            if let Some(s) = need {
                conds.push(json!({"type": "PodNeedUpgrade", "status": s}));
            }
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.19.4"}]},
                "status": {"conditions": conds},
            }))
            .unwrap()
        };
        let out = table(&[
            pod("a", Some("True")),
            pod("bb", Some("False")),
            pod("c", None),
        ]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "NAMESPACE   NAME   READY   IMAGE          NEEDS UPGRADE"
        );
        assert_eq!(lines[1], "default     a      True    nginx:1.19.4   yes");
        assert_eq!(lines[2], "default     bb     True    nginx:1.19.4   no");
        assert_eq!(lines[3], "default     c      True    nginx:1.19.4   -");
    }
}
