//! Deployments driven with real kubectl: the seed 002 walkthroughs, history and undo,
//! progress deadlines, Recreate, and a crash of ger in the middle of a rollout.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use ger_testkit::GerServer;

mod common;

use common::{cluster, fixture, rows};

fn live_pods(g: &GerServer, selector: &str) -> Option<usize> {
    common::live_pods(g, selector).map(|p| p.len())
}

fn images(g: &GerServer) -> String {
    g.ok(&[
        "get",
        "deploy",
        "deploy-demo",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ])
}

/// Images of the pods not being deleted.
fn live_images(g: &GerServer, selector: &str) -> Vec<String> {
    common::placements(g, selector)
        .into_iter()
        .map(|(_, image)| image)
        .collect()
}

#[test]
fn seed_walkthrough_rollout_canary_history_undo() {
    let Some(g) = cluster(&[]) else { return };
    g.ok(&["apply", "-f", &fixture("deploy-demo.yaml")]);
    g.wait_until(&["get", "deploy", "deploy-demo", "--no-headers"], 30, |o| {
        rows(o)
            .first()
            .is_some_and(|r| r[1..4] == ["2/2", "2", "2"])
    });
    let rs = g.ok(&[
        "get",
        "rs",
        "-l",
        "app=deploy-app",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    let hash = rs
        .strip_prefix("deploy-demo-")
        .expect("rs named after the deployment");
    assert!(
        hash.bytes()
            .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)),
        "{rs}"
    );
    let pods = g.ok(&["get", "pods", "-l", "app=deploy-app", "-o", "name"]);
    for p in pods.lines() {
        let name = p.trim_start_matches("pod/");
        assert!(
            name.starts_with(&format!("{rs}-")) && name.len() == rs.len() + 6,
            "{p}"
        );
    }
    let labels = g.ok(&[
        "get",
        "pods",
        "-l",
        "app=deploy-app",
        "-o",
        "jsonpath={.items[*].metadata.labels.pod-template-hash}",
    ]);
    assert!(labels.split(' ').all(|h| h == hash), "{labels}");

    // Rolling update, watching that at most 3 pods (2 + surge 1) are ever live.
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (stop, peak) = (stop.clone(), peak.clone());
        let kubeconfig = g.kubeconfig.clone();
        let home = g.home.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let out = std::process::Command::new("kubectl")
                    .args(["get", "pods", "-l", "app=deploy-app", "-o", "json"])
                    .env("HOME", &home)
                    .env("KUBECONFIG", &kubeconfig)
                    .output();
                if let Ok(out) = out
                    && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout)
                {
                    let n = v["items"].as_array().map_or(0, |a| {
                        a.iter()
                            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                            .count()
                    });
                    peak.fetch_max(n, Ordering::SeqCst);
                }
            }
        })
    };
    g.ok(&[
        "set",
        "image",
        "deployment/deploy-demo",
        "myapp=ikubernetes/myapp:v2",
    ]);
    let status = g.ok(&[
        "rollout",
        "status",
        "deployment/deploy-demo",
        "--timeout=60s",
    ]);
    stop.store(true, Ordering::SeqCst);
    watcher.join().unwrap();
    assert!(
        status.starts_with("Waiting for deployment \"deploy-demo\" rollout to finish"),
        "{status}"
    );
    assert!(
        status.ends_with("deployment \"deploy-demo\" successfully rolled out\n"),
        "{status}"
    );
    assert!(
        peak.load(Ordering::SeqCst) <= 3,
        "peak {} pods",
        peak.load(Ordering::SeqCst)
    );
    let rs_rows = rows(&g.ok(&[
        "get",
        "rs",
        "--no-headers",
        "--sort-by=.metadata.creationTimestamp",
    ]));
    assert_eq!(rs_rows.len(), 2);
    assert_eq!(rs_rows[0][1..4], ["0", "0", "0"], "old rs at 0");
    assert_eq!(rs_rows[1][1..4], ["2", "2", "2"], "new rs at 2");
    g.ok(&["scale", "deployment", "deploy-demo", "--replicas=3"]);
    g.ok(&[
        "patch",
        "deployment",
        "deploy-demo",
        "-p",
        r#"{"spec":{"replicas":5}}"#,
    ]);
    g.wait_until(&["get", "deploy", "deploy-demo", "--no-headers"], 30, |o| {
        rows(o)
            .first()
            .is_some_and(|r| r[1..4] == ["5/5", "5", "5"])
    });

    // Canary: surge 1, unavailable 0, pause right after the image change.
    g.ok(&[
        "patch",
        "deployment",
        "deploy-demo",
        "-p",
        r#"{"spec":{"strategy":{"rollingUpdate":{"maxSurge":1,"maxUnavailable":0}}}}"#,
    ]);
    g.ok(&[
        "set",
        "image",
        "deployment/deploy-demo",
        "myapp=ikubernetes/myapp:v3",
    ]);
    g.ok(&["rollout", "pause", "deployment/deploy-demo"]);
    let paused = g.wait_until(&["get", "deploy", "deploy-demo", "--no-headers"], 30, |o| {
        rows(o)
            .first()
            .is_some_and(|r| r[1] == "6/5" && r[2] == "1")
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        g.ok(&["get", "deploy", "deploy-demo", "--no-headers"])
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>(),
        paused.split_whitespace().take(3).collect::<Vec<_>>(),
        "stays while paused"
    );
    let err = g.fails(&["rollout", "undo", "deployment/deploy-demo"]);
    assert!(err.contains("you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume' and try again"), "{err}");
    g.ok(&["rollout", "resume", "deployment/deploy-demo"]);
    let status = g.ok(&[
        "rollout",
        "status",
        "deployment/deploy-demo",
        "--timeout=60s",
    ]);
    assert!(
        status.ends_with("deployment \"deploy-demo\" successfully rolled out\n"),
        "{status}"
    );
    assert_eq!(live_pods(&g, "app=deploy-app"), Some(5));
    g.wait_until(
        &["get", "pods", "-l", "app=deploy-app", "--no-headers"],
        20,
        |o| rows(o).len() == 5,
    );
    let imgs = live_images(&g, "app=deploy-app");
    assert!(imgs.iter().all(|i| i == "ikubernetes/myapp:v3"), "{imgs:?}");

    // History and undo.
    let history = g.ok(&["rollout", "history", "deployment/deploy-demo"]);
    let revs: Vec<&str> = history
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revs, ["1", "2", "3"], "{history}");
    let rs_before = g.ok(&["get", "rs", "-o", "name"]).lines().count();
    assert_eq!(
        g.ok(&[
            "rollout",
            "undo",
            "deployment/deploy-demo",
            "--to-revision=2"
        ])
        .trim(),
        "deployment.apps/deploy-demo rolled back"
    );
    g.ok(&[
        "rollout",
        "status",
        "deployment/deploy-demo",
        "--timeout=60s",
    ]);
    assert_eq!(images(&g), "ikubernetes/myapp:v2");
    assert_eq!(
        g.ok(&["get", "rs", "-o", "name"]).lines().count(),
        rs_before,
        "the old rs is reused"
    );
    g.ok(&["rollout", "undo", "deployment/deploy-demo"]);
    g.ok(&[
        "rollout",
        "status",
        "deployment/deploy-demo",
        "--timeout=60s",
    ]);
    assert_eq!(images(&g), "ikubernetes/myapp:v3");
    let out = g.ok(&[
        "rollout",
        "undo",
        "deployment/deploy-demo",
        "--to-revision=5",
    ]);
    assert_eq!(
        out.trim(),
        "deployment.apps/deploy-demo skipped rollback (current template already matches revision 5)"
    );
    let err = g.fails(&[
        "rollout",
        "undo",
        "deployment/deploy-demo",
        "--to-revision=2",
    ]);
    assert!(
        err.contains("unable to find specified revision 2 in history"),
        "{err}"
    );
}

#[test]
fn progress_deadline_and_auto_rollback() {
    let Some(g) = cluster(&[]) else { return };
    g.ok(&["apply", "-f", &fixture("deploy-demo.yaml")]);
    g.ok(&[
        "rollout",
        "status",
        "deployment/deploy-demo",
        "--timeout=60s",
    ]);
    g.ok(&[
        "patch",
        "deployment",
        "deploy-demo",
        "-p",
        r#"{"spec":{"progressDeadlineSeconds":10}}"#,
    ]);
    g.ok(&[
        "set",
        "image",
        "deployment/deploy-demo",
        "myapp=ikubernetes/myapp:v2-missing",
    ]);
    let out = g.kubectl(&[
        "rollout",
        "status",
        "deployment/deploy-demo",
        "--timeout=60s",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error: deployment \"deploy-demo\" exceeded its progress deadline"),
        "{err}"
    );
    let reason = g.ok(&[
        "get",
        "deploy",
        "deploy-demo",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}",
    ]);
    assert_eq!(reason, "ProgressDeadlineExceeded");
    // Back to a good image, then let ger roll back by itself.
    g.ok(&[
        "set",
        "image",
        "deployment/deploy-demo",
        "myapp=ikubernetes/myapp:v1",
    ]);
    g.ok(&[
        "rollout",
        "status",
        "deployment/deploy-demo",
        "--timeout=60s",
    ]);
    g.ok(&[
        "annotate",
        "deployment",
        "deploy-demo",
        "deployment.ger.io/auto-rollback=true",
    ]);
    g.ok(&[
        "set",
        "image",
        "deployment/deploy-demo",
        "myapp=ikubernetes/myapp:v3-missing",
    ]);
    g.wait_until(
        &[
            "get",
            "deploy",
            "deploy-demo",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ],
        60,
        |o| o == "ikubernetes/myapp:v1",
    );
    let ev = g.wait_until(
        &[
            "get",
            "events",
            "--field-selector",
            "reason=AutoRolledBack",
            "-o",
            "jsonpath={.items[*].message}",
        ],
        20,
        |o| !o.is_empty(),
    );
    assert!(
        ev.contains("Rolled back deployment \"deploy-demo\" to revision"),
        "{ev}"
    );
    g.ok(&[
        "rollout",
        "status",
        "deployment/deploy-demo",
        "--timeout=60s",
    ]);
    assert_eq!(live_pods(&g, "app=deploy-app"), Some(2));
}

#[test]
fn recreate_removes_old_pods_before_new_ones_start() {
    let Some(g) = cluster(&[]) else { return };
    let text = std::fs::read_to_string(fixture("deploy-demo.yaml"))
        .unwrap()
        .replace(
            "  replicas: 2\n",
            "  replicas: 3\n  strategy:\n    type: Recreate\n",
        );
    let f = g.path("recreate.yaml");
    std::fs::write(&f, &text).unwrap();
    g.ok(&["apply", "-f", f.to_str().unwrap()]);
    g.ok(&[
        "rollout",
        "status",
        "deployment/deploy-demo",
        "--timeout=60s",
    ]);
    let old_hash = g.ok(&[
        "get",
        "pods",
        "-l",
        "app=deploy-app",
        "-o",
        "jsonpath={.items[0].metadata.labels.pod-template-hash}",
    ]);
    let mut watch = std::process::Command::new("kubectl")
        .args(["get", "pods", "-l", "app=deploy-app", "-w", "--output-watch-events", "-o",
            "jsonpath={.type} {.object.metadata.name} {.object.metadata.labels.pod-template-hash}{\"\\n\"}"])
        .env("HOME", &g.home)
        .env("KUBECONFIG", &g.kubeconfig)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    g.ok(&[
        "set",
        "image",
        "deployment/deploy-demo",
        "myapp=ikubernetes/myapp:v2",
    ]);
    g.ok(&[
        "rollout",
        "status",
        "deployment/deploy-demo",
        "--timeout=60s",
    ]);
    std::thread::sleep(Duration::from_millis(500));
    let _ = watch.kill();
    let out = watch.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut old_alive: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut saw_new = false;
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [ty, name, hash] = parts[..] else {
            continue;
        };
        if hash == old_hash {
            match ty {
                "DELETED" => {
                    old_alive.remove(name);
                }
                _ => {
                    old_alive.insert(name.to_string());
                }
            }
        } else if ty == "ADDED" && !saw_new {
            saw_new = true;
            assert!(
                old_alive.is_empty(),
                "new pod {name} started while {old_alive:?} were still there:\n{text}"
            );
        }
    }
    assert!(saw_new, "{text}");
}

#[test]
fn kill_9_mid_rollout_completes_within_surge() {
    let Some(mut g) = cluster(&["--create-delay-ms", "300", "--ready-delay-ms", "300"]) else {
        return;
    };
    let text = std::fs::read_to_string(fixture("deploy-demo.yaml"))
        .unwrap()
        .replace("  replicas: 2\n", "  replicas: 50\n");
    let f = g.path("fifty.yaml");
    std::fs::write(&f, &text).unwrap();
    g.ok(&["apply", "-f", f.to_str().unwrap()]);
    g.ok(&[
        "rollout",
        "status",
        "deployment/deploy-demo",
        "--timeout=120s",
    ]);
    // 25% of 50: surge 13, so at most 63 pods.
    g.ok(&[
        "set",
        "image",
        "deployment/deploy-demo",
        "myapp=ikubernetes/myapp:v2",
    ]);
    let mut peak = 0;
    for _ in 0..5 {
        if let Some(n) = live_pods(&g, "app=deploy-app") {
            peak = peak.max(n);
        }
    }
    g.kill9();
    g.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(n) = live_pods(&g, "app=deploy-app") {
            peak = peak.max(n);
        }
        let out = g.kubectl(&[
            "rollout",
            "status",
            "deployment/deploy-demo",
            "--watch=false",
        ]);
        if String::from_utf8_lossy(&out.stdout).contains("successfully rolled out") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rollout did not complete after the restart"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(peak <= 63, "peak {peak} pods");
    let imgs = g.ok(&[
        "get",
        "pods",
        "-l",
        "app=deploy-app",
        "-o",
        "jsonpath={.items[*].spec.containers[0].image}",
    ]);
    assert_eq!(
        imgs.split(' ')
            .filter(|i| *i == "ikubernetes/myapp:v2")
            .count(),
        50
    );
}
