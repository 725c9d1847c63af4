//! `kubectl rolling-update` through ger's kubectl plugin, against `ger server` (seed 003).

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};

use ger_testkit::GerServer;

mod common;

use common::{fixture, rows};

/// A directory with the plugin (`kubectl-rolling_update` → ger) to put on PATH.
fn plugin_path(g: &GerServer) -> String {
    let dir = g.path("bin");
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("kubectl-rolling_update");
    if !link.exists() {
        std::os::unix::fs::symlink(Path::new(env!("CARGO_BIN_EXE_ger")), &link).unwrap();
    }
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn rolling_update(g: &GerServer, args: &[&str]) -> Command {
    let mut cmd = Command::new("kubectl");
    cmd.arg("rolling-update")
        .args(args)
        .env("HOME", &g.home)
        .env("KUBECONFIG", &g.kubeconfig)
        .env("PATH", plugin_path(g));
    cmd
}

fn wait_running(g: &GerServer, n: usize) {
    g.wait_until(
        &["get", "pods", "-l", "app=nginx", "--no-headers"],
        30,
        |o| {
            let r = rows(o);
            r.len() == n && r.iter().all(|x| x[2] == "Running" && x[1] == "1/1")
        },
    );
}

#[test]
fn seed_003_rolling_update_with_image() {
    let Some(g) = common::cluster(&[]) else {
        return;
    };
    g.ok(&["apply", "-f", &fixture("my-nginx-rc.yaml")]);
    wait_running(&g, 5);
    // A dry run names both controllers and changes nothing.
    let out = rolling_update(&g, &["my-nginx", "--image=nginx:1.9.1", "--dry-run"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.starts_with("Rolling from:\nmy-nginx\nTo:\nmy-nginx-"),
        "{text}"
    );
    assert_eq!(
        g.ok(&["get", "rc", "-o", "name"]).trim(),
        "replicationcontroller/my-nginx"
    );
    // Run it, watching that at least 5 pods are available all along.
    let child = rolling_update(
        &g,
        &["my-nginx", "--image=nginx:1.9.1", "--update-period=1s"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut fewest = usize::MAX;
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(6) {
        if let Some(pods) = common::live_pods(&g, "app=nginx") {
            let ready = pods
                .iter()
                .filter(|p| {
                    p["status"]["conditions"].as_array().is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
                })
                .count();
            fewest = fewest.min(ready);
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        fewest >= 5,
        "only {fewest} pods were available at one point"
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    let new = lines[0].strip_prefix("Created ").unwrap();
    let hash = new.strip_prefix("my-nginx-").unwrap();
    assert_eq!(hash.len(), 32, "{new}");
    let mut want = vec![
        format!("Created {new}"),
        format!(
            "Scaling up {new} from 0 to 5, scaling down my-nginx from 5 to 0 (keep 5 pods available, don't exceed 6 pods)"
        ),
    ];
    for i in 1..=5 {
        want.push(format!("Scaling {new} up to {i}"));
        want.push(format!("Scaling my-nginx down to {}", 5 - i));
    }
    want.push("Update succeeded. Deleting old controller: my-nginx".into());
    want.push(format!("Renaming {new} to my-nginx"));
    want.push("replicationcontroller \"my-nginx\" rolling updated".into());
    assert_eq!(lines, want);
    wait_running(&g, 5);
    let labels = g.ok(&[
        "get",
        "pods",
        "-l",
        "app=nginx",
        "-L",
        "deployment",
        "--no-headers",
    ]);
    assert!(
        rows(&labels)
            .iter()
            .all(|r| r.last().map(String::as_str) == Some(hash)),
        "{labels}"
    );
    let images = g.ok(&[
        "get",
        "pods",
        "-l",
        "app=nginx",
        "-o",
        "jsonpath={.items[*].spec.containers[0].image}",
    ]);
    assert!(images.split(' ').all(|i| i == "nginx:1.9.1"), "{images}");
    assert_eq!(
        g.ok(&["get", "rc", "-o", "name"]).trim(),
        "replicationcontroller/my-nginx"
    );
    let marks = g.ok(&[
        "get",
        "rc",
        "my-nginx",
        "-o",
        "jsonpath={.metadata.annotations}",
    ]);
    assert!(!marks.contains("update-source-id"), "{marks}");
    assert!(!marks.contains("desired-replicas"), "{marks}");
    g.wait_until(
        &[
            "get",
            "pods",
            "-l",
            "app=nginx",
            "-o",
            "jsonpath={range .items[*]}{.metadata.ownerReferences[0].name}{\"\\n\"}{end}",
        ],
        20,
        |o| o.lines().count() == 5 && o.lines().all(|l| l == "my-nginx"),
    );
}

#[test]
fn interrupted_update_resumes_or_rolls_back() {
    let Some(g) = common::cluster(&[]) else {
        return;
    };
    g.ok(&["apply", "-f", &fixture("my-nginx-rc.yaml")]);
    wait_running(&g, 5);
    // Start, and interrupt half way.
    let mut child = rolling_update(
        &g,
        &["my-nginx", "--image=nginx:1.9.1", "--update-period=2s"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(4));
    let _ = child.kill();
    let _ = child.wait();
    // Roll back: the old controller returns to its replica count, the new one goes.
    let out = rolling_update(&g, &["my-nginx", "--rollback", "--update-period=1s"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // As seed 003 shows: a rolling update back to the old controller.
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "Setting \"my-nginx\" replicas to 5", "{text}");
    assert_eq!(
        lines[1], "Continuing update with existing controller my-nginx.",
        "{text}"
    );
    assert!(lines[2].starts_with("Scaling up my-nginx from "), "{text}");
    assert!(lines[2].contains(" to 5, scaling down my-nginx-"), "{text}");
    assert!(
        lines[lines.len() - 2].starts_with("Update succeeded. Deleting my-nginx-"),
        "{text}"
    );
    assert_eq!(
        lines[lines.len() - 1],
        "replicationcontroller \"my-nginx\" rolling updated"
    );
    assert_eq!(
        g.ok(&["get", "rc", "-o", "name"]).trim(),
        "replicationcontroller/my-nginx"
    );
    wait_running(&g, 5);
    // Start again, interrupt, and run the same command: it finishes the job.
    let mut child = rolling_update(
        &g,
        &["my-nginx", "--image=nginx:1.9.1", "--update-period=2s"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(4));
    let _ = child.kill();
    let _ = child.wait();
    let out = rolling_update(
        &g,
        &["my-nginx", "--image=nginx:1.9.1", "--update-period=1s"],
    )
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with("Found existing update in progress"),
        "{text}"
    );
    assert!(
        text.contains("Continuing update with existing controller"),
        "{text}"
    );
    assert!(
        text.ends_with("replicationcontroller \"my-nginx\" rolling updated\n"),
        "{text}"
    );
    wait_running(&g, 5);
    let images = g.ok(&[
        "get",
        "pods",
        "-l",
        "app=nginx",
        "-o",
        "jsonpath={.items[*].spec.containers[0].image}",
    ]);
    assert!(images.split(' ').all(|i| i == "nginx:1.9.1"), "{images}");
}

#[test]
fn rolling_update_from_a_file() {
    let Some(g) = common::cluster(&[]) else {
        return;
    };
    g.ok(&["apply", "-f", &fixture("my-nginx-rc.yaml")]);
    wait_running(&g, 5);
    // A fresh controller's selector has no `deployment` key to differ on: upstream refuses.
    let out = rolling_update(&g, &["my-nginx", "-f", &fixture("nginx-rc-v4.yaml")])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("must specify a matching key with non-equal value in Selector for my-nginx")
    );
    // As in the seed: an image update first, then the file.
    let out = rolling_update(
        &g,
        &["my-nginx", "--image=nginx:1.9.1", "--update-period=1s"],
    )
    .output()
    .unwrap();
    assert!(out.status.success());
    wait_running(&g, 5);
    let out = rolling_update(
        &g,
        &[
            "my-nginx",
            "-f",
            &fixture("nginx-rc-v4.yaml"),
            "--update-period=1s",
        ],
    )
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "Created my-nginx-v4");
    assert_eq!(
        lines[lines.len() - 2],
        "Update succeeded. Deleting old controller: my-nginx"
    );
    assert_eq!(
        lines[lines.len() - 1],
        "replicationcontroller \"my-nginx-v4\" rolling updated"
    );
    g.wait_until(&["get", "rc", "-o", "name"], 20, |o| {
        o.trim() == "replicationcontroller/my-nginx-v4"
    });
    g.wait_until(
        &[
            "get",
            "pods",
            "-l",
            "app=nginx",
            "-o",
            "jsonpath={.items[*].spec.containers[0].image}",
        ],
        30,
        |o| o.split(' ').count() == 5 && o.split(' ').all(|i| i == "nginx:1.9.2"),
    );
    // The file must not reuse the old name.
    let same = g.path("same.yaml");
    std::fs::write(
        &same,
        std::fs::read_to_string(fixture("nginx-rc-v4.yaml")).unwrap(),
    )
    .unwrap();
    let out = rolling_update(&g, &["my-nginx-v4", "-f", same.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "cannot have the same name as the existing ReplicationController my-nginx-v4"
        )
    );
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// A ReplicationController `name` of `replicas` nginx pods labelled `app=web` plus `extra`.
fn web_rc(name: &str, replicas: u32, labels: &str, annotations: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: ReplicationController
metadata:
  name: {name}
  annotations: {{{annotations}}}
spec:
  replicas: {replicas}
  selector: {{app: web{labels}}}
  template:
    metadata:
      labels: {{app: web{labels}}}
    spec:
      containers:
      - name: nginx
        image: nginx:1.7.9
"#
    )
}

fn web_pods(g: &GerServer, n: usize) -> Vec<String> {
    let out = g.wait_until(&["get", "pods", "-l", "app=web", "--no-headers"], 30, |o| {
        let r = rows(o);
        r.len() == n && r.iter().all(|x| x[2] == "Running" && x[1] == "1/1")
    });
    let mut names: Vec<String> = rows(&out).into_iter().map(|r| r[0].clone()).collect();
    names.sort();
    names
}

#[test]
fn an_interrupted_rename_is_finished() {
    let Some(g) = common::cluster(&[]) else {
        return;
    };
    // Nothing to take the name over from.
    let out = rolling_update(&g, &["web", "--image=nginx:1.9.1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out),
        "error: couldn't find a replication controller with source id == default/web\n"
    );
    // What an update stopped after deleting the old controller `web` leaves behind: the new
    // controller under its temporary name, still marked as started from `web`.
    let manifest = web_rc(
        "web-5d41402abc4b2a76b9719d911017c592",
        2,
        ", deployment: 5d41402abc4b2a76b9719d911017c592",
        "kubectl.kubernetes.io/update-source-id: \"web:4a5c7e1e-0000-4000-8000-000000000001\", \
         kubectl.kubernetes.io/desired-replicas: \"2\"",
    );
    let applied = g.kubectl_with(&["create", "-f", "-"], Some(&manifest), &[]);
    assert!(applied.status.success(), "{}", stderr(&applied));
    let pods = web_pods(&g, 2);
    // The same command again finishes the rename, as kubectl 1.17 did, without a word.
    let out = rolling_update(&g, &["web", "--image=nginx:1.9.1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    assert_eq!(
        g.ok(&["get", "rc", "-o", "name"]).trim(),
        "replicationcontroller/web"
    );
    // No longer in progress.
    let marks = g.ok(&["get", "rc", "web", "-o", "jsonpath={.metadata.annotations}"]);
    assert!(!marks.contains("update-source-id"), "{marks}");
    assert!(!marks.contains("desired-replicas"), "{marks}");
    // The pods stay, and belong to `web` now.
    g.wait_until(
        &[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={range .items[*]}{.metadata.ownerReferences[0].name}{\"\\n\"}{end}",
        ],
        20,
        |o| o.lines().count() == 2 && o.lines().all(|l| l == "web"),
    );
    assert_eq!(web_pods(&g, 2), pods);
    // With a second name the old controller must exist.
    let out = rolling_update(&g, &["gone", "gone-2", "--image=nginx:1.9.1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out),
        "error: Error from server (NotFound): replicationcontrollers \"gone\" not found\n"
    );
}

#[test]
fn output_formats_and_usage_errors() {
    let Some(g) = common::cluster(&[]) else {
        return;
    };
    let see = "See 'kubectl rolling-update -h' for help and examples";
    // Usage errors, one or several, as kubectl 1.17 reported them.
    let out = rolling_update(&g, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "Must specify --filename or --image for new controller\n{see}\nMust specify the controller to update\n{see}\n"
        )
    );
    let out = rolling_update(&g, &["web", "-f", "a.yaml,b.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!("error: May only specify a single filename for new controller\n{see}\n")
    );
    let applied = g.kubectl_with(&["create", "-f", "-"], Some(&web_rc("web", 1, "", "")), &[]);
    assert!(applied.status.success(), "{}", stderr(&applied));
    web_pods(&g, 1);
    let out = rolling_update(&g, &["web", "--image=nginx:1.9.1", "-o", "wide"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).starts_with(
            "error: unable to match a printer suitable for the output format \"wide\""
        ),
        "{}",
        stderr(&out)
    );
    // A dry run prints both controllers the same way.
    let out = rolling_update(
        &g,
        &["web", "--image=nginx:1.9.1", "--dry-run", "-o", "name"],
    )
    .output()
    .unwrap();
    let text = stdout(&out);
    assert!(
        text.starts_with(
            "Rolling from:\nreplicationcontroller/web\n\nTo:\nreplicationcontroller/web-"
        ),
        "{text}"
    );
    assert!(text.ends_with("\n\n"), "{text}");
    // `-o name`: the progress, then the controller's kind and name.
    let out = rolling_update(
        &g,
        &[
            "web",
            "--image=nginx:1.9.1",
            "--update-period=200ms",
            "-o",
            "name",
        ],
    )
    .output()
    .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("Created web-"), "{text}");
    assert_eq!(
        lines[lines.len() - 2],
        format!("Renaming {} to web", &lines[0][8..])
    );
    assert_eq!(lines[lines.len() - 1], "replicationcontroller/web");
    web_pods(&g, 1);
    // `-o json`: the controller as it is at the end, with its new name `web-2`.
    let out = rolling_update(
        &g,
        &[
            "web",
            "web-2",
            "--image=nginx:1.9.2",
            "--update-period=200ms",
            "-o",
            "json",
        ],
    )
    .output()
    .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.contains("\nUpdate succeeded. Deleting web\n{\n    \"apiVersion\": \"v1\",\n"),
        "{text}"
    );
    let json = &text[text.find("\n{\n").unwrap() + 1..];
    let rc: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(rc["kind"], "ReplicationController");
    assert_eq!(rc["metadata"]["name"], "web-2");
    assert_eq!(
        rc["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.9.2"
    );
    assert!(
        rc["metadata"]["annotations"]
            .get("kubectl.kubernetes.io/update-source-id")
            .is_none()
    );
    // `-o yaml` after a rollback.
    web_pods(&g, 1);
    let mut child = rolling_update(
        &g,
        &[
            "web-2",
            "web-3",
            "--image=nginx:1.9.3",
            "--update-period=10s",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    g.wait_until(&["get", "rc", "web-3", "-o", "name"], 20, |o| !o.is_empty());
    std::thread::sleep(std::time::Duration::from_secs(1));
    let _ = child.kill();
    let _ = child.wait();
    let out = rolling_update(
        &g,
        &["web-2", "--rollback", "--update-period=200ms", "-o", "yaml"],
    )
    .output()
    .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    let yaml = &text[text.find("\napiVersion: v1\n").unwrap() + 1..];
    let rc: serde_json::Value = serde_yaml::from_str(yaml).unwrap();
    assert_eq!(rc["metadata"]["name"], "web-2");
    assert_eq!(rc["spec"]["replicas"], 1);
    assert_eq!(
        g.ok(&["get", "rc", "-o", "name"]).trim(),
        "replicationcontroller/web-2"
    );
}
