//! DaemonSets driven with real kubectl: the seed walkthroughs, node eligibility, OnDelete,
//! history and undo, a broken template, the surge path.

#![allow(clippy::unwrap_used)]

use ger_testkit::GerServer;

mod common;

use common::{fixture, placements, rows};

#[test]
fn seed_daemonset_walkthrough_history_and_undo() {
    let Some(g) = common::cluster(&[]) else {
        return;
    };
    g.ok(&["apply", "-f", &fixture("daemonset-demo.yaml")]);
    g.wait_until(&["get", "ds", "daemset-nginx", "--no-headers"], 30, |o| {
        rows(o)
            .first()
            .is_some_and(|r| r[1..6] == ["3", "3", "3", "3", "3"])
    });
    let nodes: Vec<String> = placements(&g, "app=daem-nginx")
        .into_iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(nodes, ["node-0", "node-1", "node-2"], "one pod per node");
    let d = g.ok(&["describe", "ds", "daemset-nginx"]);
    assert!(d.contains("Desired Number of Nodes Scheduled: 3"), "{d}");
    assert!(d.contains("Pods Status:  3 Running"), "{d}");
    g.ok(&[
        "set",
        "image",
        "daemonset/daemset-nginx",
        "nginx-pod=nginx:1.14",
    ]);
    let status = g.ok(&["rollout", "status", "ds/daemset-nginx", "--timeout=60s"]);
    assert!(
        status.ends_with("daemon set \"daemset-nginx\" successfully rolled out\n"),
        "{status}"
    );
    assert!(
        status.contains("out of 3 new pods have been updated..."),
        "{status}"
    );
    g.wait_until(
        &["get", "pods", "-l", "app=daem-nginx", "--no-headers"],
        20,
        |o| rows(o).len() == 3,
    );
    assert!(
        placements(&g, "app=daem-nginx")
            .iter()
            .all(|p| p.1 == "nginx:1.14")
    );
    let d = g.ok(&["describe", "ds", "daemset-nginx"]);
    assert!(
        d.contains("SuccessfulDelete") && d.contains("SuccessfulCreate"),
        "{d}"
    );
    // History and undo.
    let history = g.ok(&["rollout", "history", "ds/daemset-nginx"]);
    let revs: Vec<&str> = history
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revs, ["1", "2"], "{history}");
    let r1 = g.ok(&["rollout", "history", "ds/daemset-nginx", "--revision=1"]);
    assert!(r1.contains("nginx:1.12"), "{r1}");
    assert_eq!(
        g.ok(&["rollout", "undo", "ds/daemset-nginx"]).trim(),
        "daemonset.apps/daemset-nginx rolled back"
    );
    g.wait_until(
        &[
            "get",
            "pods",
            "-l",
            "app=daem-nginx",
            "-o",
            "jsonpath={.items[*].spec.containers[0].image}",
        ],
        30,
        |o| o.split(' ').filter(|i| *i == "nginx:1.12").count() == 3 && o.split(' ').count() == 3,
    );
}

#[test]
fn node_selector_and_fleet_changes() {
    let Some(g) = common::cluster(&[]) else {
        return;
    };
    let text = std::fs::read_to_string(fixture("daemonset-demo.yaml"))
        .unwrap()
        .replace(
            "    spec:\n      containers:",
            "    spec:\n      nodeSelector:\n        disktype: ssd\n      containers:",
        );
    let f = g.path("ssd-ds.yaml");
    std::fs::write(&f, text).unwrap();
    g.ok(&["apply", "-f", f.to_str().unwrap()]);
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert!(
        placements(&g, "app=daem-nginx").is_empty(),
        "no node is labelled yet"
    );
    g.ok(&["label", "node", "node-1", "disktype=ssd"]);
    g.wait_until(
        &[
            "get",
            "pods",
            "-l",
            "app=daem-nginx",
            "-o",
            "jsonpath={.items[*].spec.nodeName}",
        ],
        20,
        |o| o == "node-1",
    );
    g.ok(&["label", "node", "node-1", "disktype-"]);
    g.wait_until(
        &["get", "pods", "-l", "app=daem-nginx", "-o", "name"],
        20,
        |o| o.trim().is_empty(),
    );
    // A node that joins gets a pod; a deleted node loses it.
    g.ok(&["apply", "-f", &fixture("daemonset-demo.yaml")]);
    g.wait_until(
        &["get", "pods", "-l", "app=daem-nginx", "--no-headers"],
        30,
        |o| rows(o).len() == 3,
    );
    let node = g.path("node.yaml");
    std::fs::write(&node, "apiVersion: v1\nkind: Node\nmetadata:\n  name: edge-9\n  annotations:\n    node.ger.io/simulated: \"true\"\n").unwrap();
    g.ok(&["apply", "-f", node.to_str().unwrap()]);
    g.wait_until(
        &[
            "get",
            "pods",
            "-l",
            "app=daem-nginx",
            "-o",
            "jsonpath={.items[*].spec.nodeName}",
        ],
        30,
        |o| o.contains("edge-9"),
    );
    g.ok(&["delete", "node", "edge-9"]);
    g.wait_until(
        &[
            "get",
            "pods",
            "-l",
            "app=daem-nginx",
            "-o",
            "jsonpath={.items[*].spec.nodeName}",
        ],
        30,
        |o| !o.contains("edge-9"),
    );
}

#[test]
fn on_delete_and_broken_templates() {
    let Some(g) = common::cluster(&[]) else {
        return;
    };
    let text = std::fs::read_to_string(fixture("daemonset-demo.yaml"))
        .unwrap()
        .replace(
            "spec:\n  selector:",
            "spec:\n  updateStrategy:\n    type: OnDelete\n  selector:",
        );
    let f = g.path("ondelete.yaml");
    std::fs::write(&f, text).unwrap();
    g.ok(&["apply", "-f", f.to_str().unwrap()]);
    g.wait_until(
        &["get", "pods", "-l", "app=daem-nginx", "--no-headers"],
        30,
        |o| rows(o).len() == 3,
    );
    g.ok(&[
        "set",
        "image",
        "daemonset/daemset-nginx",
        "nginx-pod=nginx:1.14",
    ]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        placements(&g, "app=daem-nginx")
            .iter()
            .all(|p| p.1 == "nginx:1.12"),
        "nothing replaced"
    );
    let err = g.fails(&["rollout", "status", "ds/daemset-nginx"]);
    assert!(
        err.contains("rollout status is only available for RollingUpdate strategy type"),
        "{err}"
    );
    let victim = g.ok(&[
        "get",
        "pods",
        "-l",
        "app=daem-nginx",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    g.ok(&["delete", "pod", &victim]);
    g.wait_until(
        &[
            "get",
            "pods",
            "-l",
            "app=daem-nginx",
            "-o",
            "jsonpath={.items[*].spec.containers[0].image}",
        ],
        30,
        |o| o.split(' ').filter(|i| *i == "nginx:1.14").count() == 1 && o.split(' ').count() == 3,
    );
    // Back to RollingUpdate with a broken image: the rollout stops after maxUnavailable (1).
    g.ok(&["patch", "ds", "daemset-nginx", "--type=merge", "-p", r#"{"spec":{"updateStrategy":{"type":"RollingUpdate","rollingUpdate":{"maxUnavailable":1}}}}"#]);
    g.wait_until(
        &[
            "get",
            "pods",
            "-l",
            "app=daem-nginx",
            "-o",
            "jsonpath={.items[*].spec.containers[0].image}",
        ],
        30,
        |o| o.split(' ').filter(|i| *i == "nginx:1.14").count() == 3,
    );
    g.ok(&[
        "set",
        "image",
        "daemonset/daemset-nginx",
        "nginx-pod=nginx:9.9-missing",
    ]);
    std::thread::sleep(std::time::Duration::from_secs(4));
    let p = placements(&g, "app=daem-nginx");
    assert_eq!(
        p.iter().filter(|x| x.1 == "nginx:9.9-missing").count(),
        1,
        "halted after one node: {p:?}"
    );
    assert_eq!(p.iter().filter(|x| x.1 == "nginx:1.14").count(), 2, "{p:?}");
    g.ok(&[
        "set",
        "image",
        "daemonset/daemset-nginx",
        "nginx-pod=nginx:1.15",
    ]);
    let status = g.ok(&["rollout", "status", "ds/daemset-nginx", "--timeout=60s"]);
    assert!(status.ends_with("successfully rolled out\n"), "{status}");
    g.wait_until(
        &["get", "pods", "-l", "app=daem-nginx", "--no-headers"],
        20,
        |o| rows(o).len() == 3,
    );
    assert!(
        placements(&g, "app=daem-nginx")
            .iter()
            .all(|p| p.1 == "nginx:1.15")
    );
}

#[test]
fn surge_keeps_the_old_pod_until_the_new_one_is_ready() {
    let Some(g) = common::cluster(&[]) else {
        return;
    };
    g.ok(&["apply", "-f", &fixture("daemonset-demo.yaml")]);
    // Every pod Ready first: the samples below hold the rollout to that.
    g.wait_until(
        &["get", "pods", "-l", "app=daem-nginx", "--no-headers"],
        30,
        |o| rows(o).len() == 3 && rows(o).iter().all(|r| r[1] == "1/1"),
    );
    g.ok(&[
        "patch",
        "ds",
        "daemset-nginx",
        "--type=merge",
        "-p",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"maxSurge":1,"maxUnavailable":0}}}}"#,
    ]);
    g.ok(&[
        "set",
        "image",
        "daemonset/daemset-nginx",
        "nginx-pod=nginx:1.14",
    ]);
    // Sample while rolling: every node always has an available pod.
    for _ in 0..15 {
        let out = g.ok(&["get", "pods", "-l", "app=daem-nginx", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        for node in ["node-0", "node-1", "node-2"] {
            let ready = v["items"].as_array().unwrap().iter().any(|p| {
                p["spec"]["nodeName"] == node
                    && p["status"]["conditions"].as_array().is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
            });
            assert!(ready, "{node} had no ready pod");
        }
    }
    g.ok(&["rollout", "status", "ds/daemset-nginx", "--timeout=60s"]);
}

#[test]
fn pause_partition_selector_and_deadline() {
    let Some(g) = common::cluster(&[]) else {
        return;
    };
    g.ok(&["apply", "-f", &fixture("daemonset-demo.yaml")]);
    g.wait_until(
        &["get", "pods", "-l", "app=daem-nginx", "--no-headers"],
        30,
        |o| rows(o).len() == 3,
    );
    let images = |g: &GerServer| -> Vec<String> {
        placements(g, "app=daem-nginx")
            .into_iter()
            .map(|p| p.1)
            .collect()
    };
    // Paused: nothing is replaced.
    g.ok(&[
        "annotate",
        "ds",
        "daemset-nginx",
        "daemonset.ger.io/paused=true",
    ]);
    g.ok(&[
        "set",
        "image",
        "daemonset/daemset-nginx",
        "nginx-pod=nginx:1.14",
    ]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        images(&g).iter().all(|i| i == "nginx:1.12"),
        "{:?}",
        images(&g)
    );
    let out = g.kubectl(&["rollout", "status", "ds/daemset-nginx", "--watch=false"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Waiting for daemon set"));
    // Canary by node label: only node-2 is updated.
    g.ok(&["label", "node", "node-2", "canary=yes"]);
    g.ok(&[
        "annotate",
        "ds",
        "daemset-nginx",
        "daemonset.ger.io/rollout-selector=canary=yes",
    ]);
    g.ok(&[
        "annotate",
        "ds",
        "daemset-nginx",
        "daemonset.ger.io/paused-",
    ]);
    g.wait_until(
        &["get", "pods", "-l", "app=daem-nginx", "-o", "json"],
        30,
        |_| {
            placements(&g, "app=daem-nginx")
                == [
                    ("node-0".to_string(), "nginx:1.12".to_string()),
                    ("node-1".to_string(), "nginx:1.12".to_string()),
                    ("node-2".to_string(), "nginx:1.14".to_string()),
                ]
        },
    );
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(images(&g).iter().filter(|i| *i == "nginx:1.14").count(), 1);
    // Partition 1: all but one node.
    g.ok(&[
        "annotate",
        "ds",
        "daemset-nginx",
        "daemonset.ger.io/rollout-selector-",
        "daemonset.ger.io/partition=1",
    ]);
    g.wait_until(
        &["get", "pods", "-l", "app=daem-nginx", "-o", "json"],
        30,
        |_| {
            let i = images(&g);
            i.len() == 3 && i.iter().filter(|x| *x == "nginx:1.14").count() == 2
        },
    );
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(
        images(&g).iter().filter(|i| *i == "nginx:1.12").count(),
        1,
        "one stays old"
    );
    g.ok(&[
        "annotate",
        "ds",
        "daemset-nginx",
        "daemonset.ger.io/partition-",
    ]);
    g.ok(&["rollout", "status", "ds/daemset-nginx", "--timeout=60s"]);
    // A progress deadline: a broken image times out.
    g.ok(&[
        "annotate",
        "ds",
        "daemset-nginx",
        "daemonset.ger.io/progress-deadline-seconds=3",
    ]);
    g.ok(&[
        "set",
        "image",
        "daemonset/daemset-nginx",
        "nginx-pod=nginx:0-missing",
    ]);
    let reason = g.wait_until(
        &[
            "get",
            "ds",
            "daemset-nginx",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}",
        ],
        30,
        |o| o == "ProgressDeadlineExceeded",
    );
    assert_eq!(reason, "ProgressDeadlineExceeded");
}

/// Nodes (of node-0…2) without a ready pod of the DaemonSet right now.
fn nodes_without_ready_pod(g: &GerServer) -> Option<usize> {
    let out = g.kubectl(&["get", "pods", "-l", "app=daem-nginx", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let items = v["items"].as_array()?;
    Some(
        ["node-0", "node-1", "node-2"]
            .iter()
            .filter(|node| {
                !items.iter().any(|p| {
                    p["spec"]["nodeName"] == **node
                        && p["metadata"]["deletionTimestamp"].is_null()
                        && p["status"]["conditions"].as_array().is_some_and(|c| {
                            c.iter()
                                .any(|c| c["type"] == "Ready" && c["status"] == "True")
                        })
                })
            })
            .count(),
    )
}

#[test]
fn kill_9_mid_rollout_completes_within_max_unavailable() {
    let Some(mut g) = common::cluster(&[]) else {
        return;
    };
    g.ok(&["apply", "-f", &fixture("daemonset-demo.yaml")]);
    g.ok(&["rollout", "status", "ds/daemset-nginx", "--timeout=60s"]);
    g.ok(&[
        "set",
        "image",
        "daemonset/daemset-nginx",
        "nginx-pod=nginx:1.14",
    ]);
    let mut worst = 0;
    for _ in 0..3 {
        worst = worst.max(nodes_without_ready_pod(&g).unwrap_or(0));
    }
    g.kill9();
    g.restart();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Some(n) = nodes_without_ready_pod(&g) {
            worst = worst.max(n);
        }
        let out = g.kubectl(&["rollout", "status", "ds/daemset-nginx", "--watch=false"]);
        if String::from_utf8_lossy(&out.stdout).contains("successfully rolled out") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the rollout did not complete"
        );
    }
    assert!(
        worst <= 1,
        "{worst} nodes were without a ready pod (maxUnavailable 1)"
    );
    g.wait_until(
        &["get", "pods", "-l", "app=daem-nginx", "--no-headers"],
        20,
        |o| rows(o).len() == 3,
    );
    assert!(
        placements(&g, "app=daem-nginx")
            .iter()
            .all(|p| p.1 == "nginx:1.14")
    );
}

#[test]
fn orphaned_pods_are_adopted_again() {
    let Some(g) = common::cluster(&[]) else {
        return;
    };
    g.ok(&["apply", "-f", &fixture("daemonset-demo.yaml")]);
    g.wait_until(
        &["get", "pods", "-l", "app=daem-nginx", "--no-headers"],
        30,
        |o| rows(o).len() == 3,
    );
    // A second revision, so the history has something to keep.
    g.ok(&["set", "image", "ds/daemset-nginx", "nginx-pod=nginx:1.14"]);
    g.wait_until(&["get", "ds", "daemset-nginx", "--no-headers"], 30, |o| {
        rows(o).first().is_some_and(|r| r[4] == "3" && r[5] == "3")
    });
    let before = g.ok(&["get", "pods", "-l", "app=daem-nginx", "-o", "name"]);
    g.ok(&["delete", "ds", "daemset-nginx", "--cascade=orphan"]);
    let revisions = |g: &GerServer| {
        g.ok(&[
            "get",
            "controllerrevisions",
            "-o",
            "jsonpath={range .items[*]}{.revision}:{.metadata.ownerReferences[0].name}{\"\\n\"}{end}",
        ])
    };
    assert_eq!(revisions(&g).lines().count(), 2, "{}", revisions(&g));
    // Back on the second revision's template: its pods and its history are taken back.
    let text = std::fs::read_to_string(fixture("daemonset-demo.yaml"))
        .unwrap()
        .replace("nginx:1.12", "nginx:1.14");
    let f = g.path("v2.yaml");
    std::fs::write(&f, text).unwrap();
    g.ok(&["apply", "-f", f.to_str().unwrap()]);
    g.wait_until(
        &[
            "get",
            "pods",
            "-l",
            "app=daem-nginx",
            "-o",
            "jsonpath={range .items[*]}{.metadata.ownerReferences[0].name}{\"\\n\"}{end}",
        ],
        30,
        |o| o.lines().count() == 3 && o.lines().all(|l| l == "daemset-nginx"),
    );
    assert_eq!(
        g.ok(&["get", "pods", "-l", "app=daem-nginx", "-o", "name"]),
        before,
        "the same pods, adopted"
    );
    let mut got: Vec<String> = revisions(&g).lines().map(String::from).collect();
    got.sort();
    assert_eq!(got, ["1:daemset-nginx", "2:daemset-nginx"]);
    let history = g.ok(&["rollout", "history", "ds/daemset-nginx"]);
    assert!(
        history.contains("\n1 ") && history.contains("\n2 "),
        "{history}"
    );
}

/// `ger rollout-map` draws a DaemonSet one cell per node, a Deployment one per pod.
#[test]
fn rollout_map_and_metrics_show_the_rollout() {
    let Some(g) = common::cluster(&[]) else {
        return;
    };
    let map = |target: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ger"))
            .args(["rollout-map", target, "--color", "never", "--kubeconfig"])
            .arg(&g.kubeconfig)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = std::fs::read_to_string(fixture("daemonset-demo.yaml"))
        .unwrap()
        .replace(
            "spec:\n  selector:",
            "spec:\n  updateStrategy:\n    type: OnDelete\n  selector:",
        );
    let f = g.path("ondelete.yaml");
    std::fs::write(&f, text).unwrap();
    g.ok(&["apply", "-f", f.to_str().unwrap()]);
    g.wait_until(&["get", "ds", "daemset-nginx", "--no-headers"], 30, |o| {
        rows(o).first().is_some_and(|r| r[5] == "3")
    });
    // The same picture from kubectl, with ger on PATH as `kubectl-rollout_map`.
    let bin = g.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_ger"), bin.join("kubectl-rollout_map")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = g.kubectl_with(
        &["rollout-map", "ds/daemset-nginx", "--color", "never"],
        None,
        &[("PATH", path.as_str())],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out, map("ds/daemset-nginx"));
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("daemonset default/daemset-nginx: revision 1 ("),
        "{out}"
    );
    assert!(lines[0].ends_with("3 nodes, 3 desired"), "{out}");
    assert_eq!(
        lines[1..],
        ["###", "# updated 3", "rollout complete"],
        "{out}"
    );
    // OnDelete: a new template leaves every pod old until one is deleted.
    g.ok(&[
        "set",
        "image",
        "daemonset/daemset-nginx",
        "nginx-pod=nginx:1.14",
    ]);
    let on_node_1 = g.wait_until(
        &[
            "get",
            "pods",
            "-l",
            "app=daem-nginx",
            "--field-selector",
            "spec.nodeName=node-1",
            "-o",
            "name",
        ],
        10,
        |o| !o.trim().is_empty(),
    );
    std::thread::sleep(std::time::Duration::from_secs(1));
    let out = map("daemonset/daemset-nginx");
    assert_eq!(out.lines().nth(1), Some("ooo"), "{out}");
    assert!(out.contains("revision 2"), "{out}");
    g.ok(&["delete", on_node_1.trim()]);
    let out = (0..30)
        .map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(500));
            map("ds/daemset-nginx")
        })
        .find(|o| o.lines().nth(1) == Some("o#o"))
        .unwrap_or_default();
    assert_eq!(out.lines().nth(2), Some("# updated 1  o old 2"), "{out}");
    // The same numbers for Prometheus, under kube-state-metrics' names.
    let metrics = g.ok(&["get", "--raw", "/metrics"]);
    for line in [
        "kube_daemonset_status_desired_number_scheduled{namespace=\"default\",daemonset=\"daemset-nginx\"} 3",
        "kube_daemonset_status_updated_number_scheduled{namespace=\"default\",daemonset=\"daemset-nginx\"} 1",
        "kube_daemonset_metadata_generation{namespace=\"default\",daemonset=\"daemset-nginx\"} 2",
        "kube_node_status_condition{node=\"node-1\",condition=\"Ready\",status=\"true\"} 1",
        "kube_node_status_condition{node=\"node-1\",condition=\"Ready\",status=\"false\"} 0",
        "kube_node_spec_unschedulable{node=\"node-2\"} 0",
    ] {
        assert!(metrics.contains(line), "no {line} in\n{metrics}");
    }
    // A Deployment: updated pods first.
    g.ok(&["apply", "-f", &fixture("deploy-demo.yaml")]);
    g.wait_until(&["get", "deploy", "deploy-demo", "--no-headers"], 30, |o| {
        rows(o).first().is_some_and(|r| r[3] == "2")
    });
    let out = map("deploy/deploy-demo");
    assert!(
        out.starts_with("deployment default/deploy-demo: revision 1 ("),
        "{out}"
    );
    assert!(
        out.contains("\n##\n# updated 2\nrollout complete\n"),
        "{out}"
    );
    let metrics = g.ok(&["get", "--raw", "/metrics"]);
    for line in [
        "kube_deployment_spec_replicas{namespace=\"default\",deployment=\"deploy-demo\"} 2",
        "kube_deployment_status_replicas_available{namespace=\"default\",deployment=\"deploy-demo\"} 2",
        "kube_deployment_status_condition{namespace=\"default\",deployment=\"deploy-demo\",condition=\"Available\",status=\"true\"} 1",
    ] {
        assert!(metrics.contains(line), "no {line} in\n{metrics}");
    }
    let err = std::process::Command::new(env!("CARGO_BIN_EXE_ger"))
        .args(["rollout-map", "pods/x", "--kubeconfig"])
        .arg(&g.kubeconfig)
        .output()
        .unwrap();
    assert!(!err.status.success());
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("expected daemonset/NAME or deployment/NAME")
    );
}
