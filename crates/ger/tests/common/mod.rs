//! Helpers shared by the kubectl suites.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use ger_testkit::{GerServer, kubectl_available};

/// A manifest under `tests/fixtures`.
pub fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// Rows of `kubectl get … --no-headers`, split into cells.
pub fn rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

/// `ger server` with three simulated nodes and short stage delays (flags in `extra` win);
/// `None` when kubectl is missing outside CI.
pub fn cluster(extra: &[&str]) -> Option<GerServer> {
    if !kubectl_available() {
        return None;
    }
    let defaults = [
        ("--nodes", "3"),
        ("--create-delay-ms", "100"),
        ("--ready-delay-ms", "100"),
        ("--max-grace-seconds", "1"),
    ];
    let mut args: Vec<&str> = extra.to_vec();
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    Some(GerServer::start_with(
        Path::new(env!("CARGO_BIN_EXE_ger")),
        &args,
    ))
}

/// The pods matching `selector` that are not being deleted, as JSON.
pub fn live_pods(g: &GerServer, selector: &str) -> Option<Vec<serde_json::Value>> {
    let out = g.kubectl(&["get", "pods", "-l", selector, "-o", "json"]);
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(
        v["items"]
            .as_array()?
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .cloned()
            .collect(),
    )
}

/// (node, image) of the live pods matching `selector`, sorted.
pub fn placements(g: &GerServer, selector: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = live_pods(g, selector)
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
                p["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    out.sort();
    out
}
