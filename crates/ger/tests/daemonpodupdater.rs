//! OpenYurt's DaemonSet upgrade models driven with real kubectl: AdvancedRollingUpdate
//! within its max-unavailable budget, OTA's PodNeedUpgrade condition, and an unknown
//! strategy reported on the DaemonSet.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ger_testkit::GerServer;
use serde_json::Value;

mod common;

use common::{fixture, live_pods};

const SELECTOR: &str = "app=edge-agent";
const NODES: [&str; 3] = ["node-0", "node-1", "node-2"];

/// Apply the fixture with its update-strategy annotation set to `strategy`.
fn apply(g: &GerServer, strategy: &str) {
    let text = std::fs::read_to_string(fixture("edge-daemonset.yaml"))
        .unwrap()
        .replace(
            "update-strategy: AdvancedRollingUpdate",
            &format!("update-strategy: {strategy}"),
        );
    let f = g.path("edge-daemonset.yaml");
    std::fs::write(&f, text).unwrap();
    g.ok(&["apply", "-f", f.to_str().unwrap()]);
}

fn is_ready(p: &Value) -> bool {
    p["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn image(p: &Value) -> &str {
    p["spec"]["containers"][0]["image"].as_str().unwrap_or("")
}

fn name(p: &Value) -> String {
    p["metadata"]["name"].as_str().unwrap_or("").to_string()
}

/// The pod's PodNeedUpgrade (status, message), if it has one.
fn need_upgrade(p: &Value) -> Option<(String, String)> {
    let c = p["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "PodNeedUpgrade")?;
    Some((
        c["status"].as_str().unwrap_or("").to_string(),
        c["message"].as_str().unwrap_or("").to_string(),
    ))
}

/// Nodes without a Ready pod that is not being deleted.
fn nodes_without_ready_pod(pods: &[Value]) -> usize {
    NODES
        .iter()
        .filter(|node| {
            !pods
                .iter()
                .any(|p| p["spec"]["nodeName"] == **node && is_ready(p))
        })
        .count()
}

/// Poll the live pods until `done` holds (panics after `secs`); returns them.
fn wait_pods(g: &GerServer, secs: u64, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(pods) = live_pods(g, SELECTOR)
            && done(&pods)
        {
            return pods;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:#?}\n{}",
            live_pods(g, SELECTOR),
            g.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn all_running(pods: &[Value], img: &str) -> bool {
    pods.len() == 3 && nodes_without_ready_pod(pods) == 0 && pods.iter().all(|p| image(p) == img)
}

/// The DaemonSet's events as (type, reason, message, source component).
fn events(g: &GerServer) -> Vec<(String, String, String, String)> {
    let out = g.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=edge-agent",
        "-o",
        "json",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |x: &Value| x.as_str().unwrap_or("").to_string();
            (
                s(&e["type"]),
                s(&e["reason"]),
                s(&e["message"]),
                s(&e["source"]["component"]),
            )
        })
        .collect()
}

#[test]
fn advanced_rolling_update_stays_within_max_unavailable() {
    let Some(g) = common::cluster(&[]) else {
        return;
    };
    apply(&g, "AdvancedRollingUpdate");
    let before = wait_pods(&g, 30, "three running pods", |p| {
        all_running(p, "nginx:1.12")
    });
    g.ok(&["set", "image", "daemonset/edge-agent", "agent=nginx:1.14"]);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut worst = 0;
    let mut samples = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "the rollout did not complete: {:#?}",
            live_pods(&g, SELECTOR)
        );
        let Some(pods) = live_pods(&g, SELECTOR) else {
            continue;
        };
        samples += 1;
        worst = worst.max(nodes_without_ready_pod(&pods));
        if all_running(&pods, "nginx:1.14") {
            break;
        }
    }
    eprintln!("{samples} samples, at most {worst} nodes without a ready pod");
    assert!(
        worst <= 1,
        "{worst} nodes were without a ready pod (max-unavailable 1) in {samples} samples"
    );
    let after = live_pods(&g, SELECTOR).unwrap();
    for p in &before {
        assert!(
            !after.iter().any(|q| name(q) == name(p)),
            "{} was not replaced",
            name(p)
        );
    }
    let deletes: Vec<_> = events(&g)
        .into_iter()
        .filter(|e| e.1 == "SuccessfulDelete")
        .collect();
    assert_eq!(deletes.len(), 3, "{deletes:?}");
    for (ty, _, message, source) in &deletes {
        assert_eq!(ty, "Normal");
        assert!(message.starts_with("Deleted pod: edge-agent-"), "{message}");
        assert_eq!(source, "daemon-pod-updater-controller");
    }
}

#[test]
fn ota_marks_pods_and_replaces_nothing() {
    let Some(g) = common::cluster(&[]) else {
        return;
    };
    apply(&g, "OTA");
    let marked = |want: &'static str| {
        move |pods: &[Value]| {
            pods.len() == 3
                && pods.iter().all(|p| {
                    let hash = p["metadata"]["labels"]["controller-revision-hash"]
                        .as_str()
                        .unwrap_or("?");
                    need_upgrade(p).is_some_and(|(status, message)| {
                        status == want
                            && (want == "True" || message == format!("controllerrevision: {hash}"))
                    })
                })
        }
    };
    wait_pods(&g, 30, "running pods", |p| all_running(p, "nginx:1.12"));
    let before = wait_pods(&g, 30, "PodNeedUpgrade False everywhere", marked("False"));
    g.ok(&["set", "image", "daemonset/edge-agent", "agent=nginx:1.14"]);
    let stale = wait_pods(&g, 30, "PodNeedUpgrade True everywhere", marked("True"));
    // The message names the new revision, which no pod runs yet.
    let messages: BTreeMap<String, String> = stale
        .iter()
        .map(|p| (name(p), need_upgrade(p).unwrap().1))
        .collect();
    assert!(
        stale.iter().all(|p| {
            let old_hash = p["metadata"]["labels"]["controller-revision-hash"]
                .as_str()
                .unwrap();
            messages[&name(p)].starts_with("controllerrevision: ")
                && !messages[&name(p)].ends_with(old_hash)
        }),
        "{messages:?}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let now = live_pods(&g, SELECTOR).unwrap();
    let names = |pods: &[Value]| {
        let mut v: Vec<String> = pods.iter().map(name).collect();
        v.sort();
        v
    };
    assert_eq!(names(&now), names(&before), "OTA deletes nothing");
    assert!(now.iter().all(|p| image(p) == "nginx:1.12"));
    // Upgrading one pod by hand: its replacement runs the new revision.
    let victim = name(&now[0]);
    g.ok(&["delete", "pod", &victim]);
    let after = wait_pods(&g, 30, "a replacement marked False", |pods| {
        pods.len() == 3
            && !pods.iter().any(|p| name(p) == victim)
            && pods
                .iter()
                .filter(|p| image(p) == "nginx:1.14")
                .all(|p| is_ready(p) && need_upgrade(p).is_some_and(|c| c.0 == "False"))
            && pods.iter().filter(|p| image(p) == "nginx:1.14").count() == 1
    });
    for p in after.iter().filter(|p| image(p) == "nginx:1.12") {
        assert_eq!(need_upgrade(p).unwrap().0, "True", "{}", name(p));
    }
    // The condition survives the kubelet's later status writes.
    std::thread::sleep(Duration::from_secs(1));
    let later = live_pods(&g, SELECTOR).unwrap();
    assert!(
        later.iter().all(|p| need_upgrade(p).is_some()),
        "{later:#?}"
    );
}

#[test]
fn unknown_strategy_is_reported_and_ignored() {
    let Some(g) = common::cluster(&[]) else {
        return;
    };
    apply(&g, "Bogus");
    let before = wait_pods(&g, 30, "three running pods", |p| {
        all_running(p, "nginx:1.12")
    });
    g.ok(&["set", "image", "daemonset/edge-agent", "agent=nginx:1.14"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let warning = loop {
        let found = events(&g)
            .into_iter()
            .find(|e| e.1 == "UnknownUpdateStrategy");
        if let Some(w) = found {
            break w;
        }
        assert!(Instant::now() < deadline, "no warning: {:?}", events(&g));
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(warning.0, "Warning");
    assert!(
        warning.2.starts_with("unknown update type Bogus"),
        "{warning:?}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let now = live_pods(&g, SELECTOR).unwrap();
    assert_eq!(
        now.iter().map(name).collect::<Vec<_>>(),
        before.iter().map(name).collect::<Vec<_>>()
    );
    assert!(
        now.iter()
            .all(|p| image(p) == "nginx:1.12" && need_upgrade(p).is_none())
    );
    let d = g.ok(&["describe", "ds", "edge-agent"]);
    assert!(d.contains("unknown update type Bogus"), "{d}");
    assert_eq!(
        events(&g)
            .iter()
            .filter(|e| e.1 == "UnknownUpdateStrategy")
            .count(),
        1,
        "reported once"
    );
}
