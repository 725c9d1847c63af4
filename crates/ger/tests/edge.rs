//! The edge: `ger agent` processes (edge-1..3) against one `ger server --nodes 0`, cut off by
//! killing them and reconnected by starting them again; seed 004's walkthroughs
//! (AdvancedRollingUpdate, OTA) with real kubectl and curl.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{cluster, fixture, live_pods};
use ger_testkit::{GerAgent, GerServer};
use serde_json::Value;

const SERVER: [&str; 6] = [
    "--nodes",
    "0",
    "--node-monitor-grace-period",
    "3s",
    "--node-monitor-period",
    "500ms",
];
const AGENT: [&str; 8] = [
    "--heartbeat-interval",
    "500ms",
    "--create-delay-ms",
    "100",
    "--ready-delay-ms",
    "100",
    "--max-grace-seconds",
    "1",
];

/// A server and three edge agents, all Ready.
fn edge() -> Option<(GerServer, Vec<GerAgent>)> {
    let g = cluster(&SERVER)?;
    let agents: Vec<GerAgent> = (1..=3)
        .map(|i| GerAgent::start(&g, &format!("edge-{i}"), &AGENT))
        .collect();
    g.wait_until(&["get", "nodes", "--no-headers"], 30, |out| {
        out.lines().filter(|l| l.contains(" Ready ")).count() == 3
    });
    Some((g, agents))
}

fn node_ready(g: &GerServer, node: &str) -> String {
    g.ok(&[
        "get",
        "node",
        node,
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
    ])
}

/// node → (pod name, image, PodNeedUpgrade status) of the live nginx pods.
fn pods_by_node(g: &GerServer) -> std::collections::BTreeMap<String, (String, String, String)> {
    live_pods(g, "app=nginx")
        .unwrap_or_default()
        .iter()
        .map(|p| {
            let need = p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "PodNeedUpgrade")
                .map(|c| c["status"].as_str().unwrap_or("").to_string())
                .unwrap_or_default();
            (
                p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
                (
                    p["metadata"]["name"].as_str().unwrap_or("").to_string(),
                    p["spec"]["containers"][0]["image"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    need,
                ),
            )
        })
        .collect()
}

fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn all_running(g: &GerServer, image: &str) {
    g.wait_until(
        &["get", "pods", "-l", "app=nginx", "-o", "json"],
        30,
        |out| {
            let v: Value = serde_json::from_str(out).unwrap_or_default();
            let items = v["items"].as_array().cloned().unwrap_or_default();
            items.len() == 3
                && items.iter().all(|p| {
                    p["spec"]["containers"][0]["image"] == image
                        && p["status"]["conditions"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
        },
    );
}

#[test]
fn silent_nodes_go_unknown_and_come_back() {
    let Some((g, mut agents)) = edge() else {
        return;
    };
    g.ok(&["apply", "-f", &fixture("nginx-daemonset.yaml")]);
    all_running(&g, "nginx:latest");
    // The node's labels and annotation as the agent registered it.
    let labels = g.ok(&["get", "node", "edge-2", "--show-labels", "--no-headers"]);
    assert!(labels.contains("kubernetes.io/hostname=edge-2"), "{labels}");

    agents[1].kill9();
    g.wait_until(&["get", "node", "edge-2", "--no-headers"], 20, |o| {
        o.contains("NotReady")
    });
    assert_eq!(node_ready(&g, "edge-2"), "Unknown");
    let reason = g.ok(&[
        "get",
        "node",
        "edge-2",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].message}",
    ]);
    assert_eq!(reason, "Kubelet stopped posting node status.");
    let taints = g.wait_until(
        &["get", "node", "edge-2", "-o", "jsonpath={.spec.taints}"],
        10,
        |o| o.matches("node.kubernetes.io/unreachable").count() == 2,
    );
    assert!(
        taints.contains("NoSchedule") && taints.contains("NoExecute"),
        "{taints}"
    );
    // Its pod is marked not ready; the others are untouched.
    let pod = pods_by_node(&g)["edge-2"].0.clone();
    g.wait_until(
        &[
            "get",
            "pod",
            &pod,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
        10,
        |o| o == "False",
    );
    assert_eq!(node_ready(&g, "edge-1"), "True");

    // Back: Ready, no taints, the same pod Ready again.
    agents[1].spawn();
    g.wait_until(&["get", "node", "edge-2", "--no-headers"], 20, |o| {
        o.contains(" Ready ")
    });
    g.wait_until(
        &["get", "node", "edge-2", "-o", "jsonpath={.spec.taints}"],
        10,
        |o| !o.contains("node.kubernetes.io/unreachable"),
    );
    g.wait_until(
        &[
            "get",
            "pod",
            &pod,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
        10,
        |o| o == "True",
    );
}

#[test]
fn node_tokens_reach_only_their_own_node() {
    let Some((g, agents)) = edge() else {
        return;
    };
    g.ok(&["apply", "-f", &fixture("nginx-daemonset.yaml")]);
    all_running(&g, "nginx:latest");
    let as_edge1 = |args: &[&str]| {
        let kc = agents[0].kubeconfig.display().to_string();
        g.kubectl_with(args, None, &[("KUBECONFIG", kc.as_str())])
    };
    // Its own node and pods: fine.
    let own = as_edge1(&["label", "node", "edge-1", "zone=edge"]);
    assert!(
        own.status.success(),
        "{}",
        String::from_utf8_lossy(&own.stderr)
    );
    let mine = as_edge1(&[
        "get",
        "pods",
        "--field-selector",
        "spec.nodeName=edge-1",
        "--no-headers",
    ]);
    assert!(
        mine.status.success(),
        "{}",
        String::from_utf8_lossy(&mine.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&mine.stdout).lines().count(), 1);
    // Another node, another node's pod, all pods, other kinds: 403.
    let other_pod = pods_by_node(&g)["edge-2"].0.clone();
    let patch = r#"{"metadata":{"labels":{"owned":"yes"}}}"#;
    for args in [
        vec!["patch", "node", "edge-2", "-p", patch],
        vec!["delete", "pod", other_pod.as_str(), "--wait=false"],
        vec!["get", "pods"],
        vec!["get", "daemonsets"],
        vec!["delete", "node", "edge-1", "--wait=false"],
    ] {
        let out = as_edge1(&args);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "{args:?} should be refused");
        assert!(
            err.contains("Error from server (Forbidden)")
                && err.contains("User \"system:node:edge-1\" cannot"),
            "{args:?}: {err}"
        );
    }
    let patched = as_edge1(&[
        "patch",
        "pod",
        &other_pod,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Failed"}}"#,
    ]);
    assert!(!patched.status.success());
    assert!(String::from_utf8_lossy(&patched.stderr).contains("Forbidden"));
    // Nothing was changed.
    assert!(
        g.ok(&["get", "pod", &other_pod, "--no-headers"])
            .contains("Running")
    );
    let labels = g.ok(&["get", "node", "edge-2", "--show-labels", "--no-headers"]);
    assert!(!labels.contains("owned=yes"), "{labels}");
    // `kubectl auth` tells each caller who it is and what it may do, by the same rules.
    let said = |out: std::process::Output| String::from_utf8_lossy(&out.stdout).into_owned();
    let who = said(as_edge1(&["auth", "whoami"]));
    assert!(
        who.contains("Username    system:node:edge-1")
            && who.contains("Groups      [system:nodes system:authenticated]"),
        "{who}"
    );
    assert!(g.ok(&["auth", "whoami"]).contains("Username    admin"));
    assert_eq!(g.ok(&["auth", "can-i", "delete", "nodes"]), "yes\n");
    let their_pod = format!("pods/{other_pod}");
    for (args, answer) in [
        (vec!["patch", "nodes/edge-1"], "yes"),
        (
            vec!["patch", "nodes/edge-2"],
            "no - node 'edge-1' has no relationship with this object",
        ),
        (
            vec!["create", "leases/edge-1", "-n", "kube-node-lease"],
            "yes",
        ),
        (
            vec!["delete", their_pod.as_str()],
            "no - node 'edge-1' has no relationship with this object",
        ),
        (
            vec!["get", "daemonsets"],
            "no - node 'edge-1' has no relationship with this object",
        ),
        (vec!["get", "/metrics"], "yes"),
    ] {
        let mut argv = vec!["auth", "can-i"];
        argv.extend(args.iter().copied());
        let out = as_edge1(&argv);
        assert_eq!(out.status.success(), answer == "yes", "{argv:?}");
        assert_eq!(said(out).trim(), answer, "{argv:?}");
    }
    let list = said(as_edge1(&[
        "auth",
        "can-i",
        "--list",
        "-n",
        "kube-node-lease",
    ]));
    let rows: Vec<Vec<&str>> = list
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        rows.contains(&vec![
            "nodes", "[]", "[edge-1]", "[get", "create", "update", "patch]"
        ]) && rows.contains(&vec![
            "leases.coordination.k8s.io",
            "[]",
            "[edge-1]",
            "[get",
            "create",
            "update",
            "patch]"
        ]),
        "{list}"
    );
    // A forged token is not even a user.
    let forged = std::fs::read_to_string(&agents[0].kubeconfig)
        .unwrap()
        .replace("node:edge-1:", "node:edge-2:");
    let path = g.path("forged.kubeconfig");
    std::fs::write(&path, forged).unwrap();
    let out = g.kubectl_with(
        &["get", "node", "edge-2"],
        None,
        &[("KUBECONFIG", path.to_str().unwrap())],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unauthorized"));
}

#[test]
fn agents_serve_their_pods_while_the_server_is_down() {
    let Some((mut g, agents)) = edge() else {
        return;
    };
    g.ok(&["apply", "-f", &fixture("nginx-daemonset.yaml")]);
    all_running(&g, "nginx:latest");
    let pod = pods_by_node(&g)["edge-1"].0.clone();
    g.kill9();
    let (code, body) = agents[0].curl("GET", "/pods");
    assert_eq!(code, 200, "{body}");
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["kind"], "PodList");
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [pod.as_str()]);
    let (code, body) = agents[0].curl(
        "POST",
        &format!("/openyurt.io/v1/namespaces/default/pods/{pod}/upgrade"),
    );
    assert_eq!(
        (code, body.as_str()),
        (
            503,
            "OTA upgrade is not allowed when node is disconnected to cloud"
        )
    );
    // The server comes back: nodes stay (or become) Ready without anyone's help.
    g.restart();
    g.wait_until(&["get", "nodes", "--no-headers"], 30, |out| {
        out.lines().filter(|l| l.contains(" Ready ")).count() == 3
    });
    all_running(&g, "nginx:latest");
}

/// Seed 004, AdvancedRollingUpdate: disconnected nodes are skipped and finish on their own
/// when they return.
#[test]
fn seed_004_advanced_rolling_update() {
    let Some((g, mut agents)) = edge() else {
        return;
    };
    g.ok(&[
        "apply",
        "-f",
        &fixture("nginx-daemonset-advancedrollingupdate.yaml"),
    ]);
    all_running(&g, "nginx:1.19.4");
    let before = pods_by_node(&g);
    agents[1].kill9();
    agents[2].kill9();
    g.wait_until(&["get", "nodes", "--no-headers"], 20, |out| {
        out.lines().filter(|l| l.contains("NotReady")).count() == 2
    });
    g.ok(&["set", "image", "ds/nginx-daemonset", "nginx=nginx:1.19.5"]);
    // edge-1's pod is replaced...
    wait_for(30, "edge-1's pod on nginx:1.19.5", || {
        let now = pods_by_node(&g);
        let p = now.get("edge-1")?;
        (p.1 == "nginx:1.19.5" && p.0 != before["edge-1"].0).then_some(())
    });
    // ...and the disconnected nodes' pods are left alone.
    std::thread::sleep(Duration::from_secs(2));
    let now = pods_by_node(&g);
    for node in ["edge-2", "edge-3"] {
        assert_eq!(now[node].0, before[node].0, "{node}");
        assert_eq!(now[node].1, "nginx:1.19.4", "{node}");
    }
    // Reconnected: Ready, and their pods move to 1.19.5 with no further command.
    agents[1].spawn();
    agents[2].spawn();
    g.wait_until(&["get", "nodes", "--no-headers"], 30, |out| {
        out.lines().filter(|l| l.contains(" Ready ")).count() == 3
    });
    all_running(&g, "nginx:1.19.5");
}

/// Seed 004, OTA: pods wait with PodNeedUpgrade until someone at the node upgrades them.
#[test]
fn seed_004_ota() {
    let Some((g, agents)) = edge() else {
        return;
    };
    g.ok(&["apply", "-f", &fixture("nginx-daemonset-ota.yaml")]);
    all_running(&g, "nginx:1.19.4");
    wait_for(20, "PodNeedUpgrade False everywhere", || {
        let p = pods_by_node(&g);
        (p.len() == 3 && p.values().all(|v| v.2 == "False")).then_some(())
    });
    let before = pods_by_node(&g);
    let described = g.ok(&["describe", "pod", &before["edge-2"].0]);
    assert!(
        described
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["PodNeedUpgrade", "False"]),
        "{described}"
    );
    g.ok(&["set", "image", "ds/nginx-daemonset", "nginx=nginx:1.19.5"]);
    wait_for(20, "PodNeedUpgrade True everywhere", || {
        let p = pods_by_node(&g);
        (p.len() == 3 && p.values().all(|v| v.2 == "True")).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    let waiting = pods_by_node(&g);
    for (node, (name, image, _)) in &waiting {
        assert_eq!(
            name, &before[node].0,
            "nothing is replaced by the controller"
        );
        assert_eq!(image, "nginx:1.19.4");
    }
    // `ger ota list` on edge-2 shows its pod waiting.
    let list = std::process::Command::new(env!("CARGO_BIN_EXE_ger"))
        .args(["ota", "list", "--agent"])
        .arg(format!("127.0.0.1:{}", agents[1].port))
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(
        list.lines()
            .any(|l| l.contains(&before["edge-2"].0) && l.ends_with("yes")),
        "{list}"
    );

    // The error cases first, while everything waits.
    let up = |agent: &GerAgent, pod: &str| {
        agent.curl(
            "POST",
            &format!("/openyurt.io/v1/namespaces/default/pods/{pod}/upgrade"),
        )
    };
    let (code, body) = up(&agents[1], &before["edge-1"].0);
    assert_eq!(code, 403, "another node's pod: {body}");
    assert!(body.starts_with("Pre check update pod failed"), "{body}");
    let (code, body) = up(&agents[1], "no-such-pod");
    assert_eq!(code, 500, "{body}");
    assert!(body.starts_with("Get pod failed"), "{body}");
    // `ger ota upgrade` says the same, and fails.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ger"))
        .args(["ota", "upgrade", "no-such-pod", "--agent"])
        .arg(format!("127.0.0.1:{}", agents[1].port))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("500: Get pod failed"), "{err}");

    // A pod with no owner, waiting for an upgrade: 400.
    g.ok(&[
        "run",
        "bare",
        "--image=nginx:1.19.4",
        "--overrides",
        r#"{"spec":{"nodeName":"edge-2"}}"#,
    ]);
    g.wait_until(
        &[
            "get",
            "pod",
            "bare",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
        20,
        |o| o == "True",
    );
    g.ok(&[
        "patch",
        "pod",
        "bare",
        "--subresource=status",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/status/conditions/-","value":{"type":"PodNeedUpgrade","status":"True"}}]"#,
    ]);
    let (code, body) = up(&agents[1], "bare");
    assert_eq!((code, body.as_str()), (400, "Pod has no owner references"));

    // The upgrade itself.
    let pod = before["edge-2"].0.clone();
    let (code, body) = up(&agents[1], &pod);
    assert_eq!(
        (code, body.as_str()),
        (200, format!("Start updating pod default/{pod}").as_str())
    );
    wait_for(30, "edge-2's replacement", || {
        let p = pods_by_node(&g);
        let e2 = p.get("edge-2")?;
        (e2.0 != pod && e2.1 == "nginx:1.19.5" && e2.2 == "False").then_some(())
    });
    let after = pods_by_node(&g);
    for node in ["edge-1", "edge-3"] {
        assert_eq!(after[node].0, before[node].0, "{node} untouched");
        assert_eq!(after[node].2, "True", "{node} still waits");
    }
    // The replacement is up to date: upgrading it again is refused.
    let (code, body) = up(&agents[1], &after["edge-2"].0);
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("update status is False, can not be updated"),
        "{body}"
    );
}
