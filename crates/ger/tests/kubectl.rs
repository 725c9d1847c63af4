//! The real kubectl against `ger server`: the acceptance walkthroughs of the foundation.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};

use ger_testkit::{GerServer, kubectl_available};

fn ger() -> Option<GerServer> {
    if !kubectl_available() {
        return None;
    }
    Some(GerServer::start_with(
        Path::new(env!("CARGO_BIN_EXE_ger")),
        &["--api-only"],
    ))
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

fn header(out: &str) -> Vec<String> {
    out.lines()
        .next()
        .unwrap_or("")
        .split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn api_resources_lists_every_served_resource() {
    let Some(g) = ger() else { return };
    let out = g.ok(&["api-resources", "--no-headers"]);
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let expect: &[&[&str]] = &[
        &["namespaces", "ns", "v1", "false", "Namespace"],
        &["nodes", "no", "v1", "false", "Node"],
        &["pods", "po", "v1", "true", "Pod"],
        &["events", "ev", "v1", "true", "Event"],
        &["configmaps", "cm", "v1", "true", "ConfigMap"],
        &["secrets", "v1", "true", "Secret"],
        &["serviceaccounts", "sa", "v1", "true", "ServiceAccount"],
        &[
            "replicationcontrollers",
            "rc",
            "v1",
            "true",
            "ReplicationController",
        ],
        &[
            "controllerrevisions",
            "apps/v1",
            "true",
            "ControllerRevision",
        ],
        &["daemonsets", "ds", "apps/v1", "true", "DaemonSet"],
        &["deployments", "deploy", "apps/v1", "true", "Deployment"],
        &["replicasets", "rs", "apps/v1", "true", "ReplicaSet"],
        &["leases", "coordination.k8s.io/v1", "true", "Lease"],
    ];
    for e in expect {
        assert!(rows.iter().any(|r| r == e), "missing {e:?} in\n{out}");
    }
    let wide = g.ok(&["api-resources", "-o", "wide", "--api-group=apps"]);
    assert!(
        wide.lines().any(|l| l.starts_with("deployments")
            && l.contains("create,delete,deletecollection,get,list,patch,update,watch")
            && l.contains("all")),
        "{wide}"
    );
    // The `all` category and short names resolve.
    g.ok(&["get", "all"]);
    g.ok(&["get", "deploy,rs,ds,po,rc,no,ns,ev"]);
}

#[test]
fn seeds_apply_configure_and_stay_unchanged() {
    let Some(g) = ger() else { return };
    for (f, kind) in [
        ("rs-demo.yaml", "replicaset.apps/myapp"),
        ("deploy-demo.yaml", "deployment.apps/deploy-demo"),
        ("daemonset-demo.yaml", "daemonset.apps/daemset-nginx"),
        ("nginx-daemonset.yaml", "daemonset.apps/nginx-daemonset"),
    ] {
        let out = g.ok(&["apply", "-f", &fixture(f)]);
        assert_eq!(out.trim(), format!("{kind} created"));
        let again = g.ok(&["apply", "-f", &fixture(f)]);
        assert_eq!(again.trim(), format!("{kind} unchanged"), "{f}");
    }
    // A changed manifest is `configured` and bumps the generation.
    let text = std::fs::read_to_string(fixture("deploy-demo.yaml")).unwrap();
    let changed = g.path("deploy-v2.yaml");
    std::fs::write(
        &changed,
        text.replace("ikubernetes/myapp:v1", "ikubernetes/myapp:v2"),
    )
    .unwrap();
    let out = g.ok(&["apply", "-f", changed.to_str().unwrap()]);
    assert_eq!(out.trim(), "deployment.apps/deploy-demo configured");
    let gen_image = g.ok(&[
        "get",
        "deploy",
        "deploy-demo",
        "-o",
        "jsonpath={.metadata.generation} {.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(gen_image, "2 ikubernetes/myapp:v2");
    let out = g.ok(&["apply", "-f", changed.to_str().unwrap()]);
    assert_eq!(out.trim(), "deployment.apps/deploy-demo unchanged");
    // Defaults as kube-apiserver sets them.
    let d = g.ok(&[
        "get",
        "deploy",
        "deploy-demo",
        "-o",
        "jsonpath={.spec.strategy.type} {.spec.strategy.rollingUpdate.maxSurge} {.spec.strategy.rollingUpdate.maxUnavailable} {.spec.revisionHistoryLimit} {.spec.progressDeadlineSeconds} {.spec.template.spec.containers[0].imagePullPolicy} {.spec.template.spec.containers[0].ports[0].protocol}",
    ]);
    assert_eq!(d, "RollingUpdate 25% 25% 10 600 IfNotPresent TCP");
    let ds = g.ok(&[
        "get",
        "ds",
        "daemset-nginx",
        "-o",
        "jsonpath={.spec.updateStrategy.type} {.spec.updateStrategy.rollingUpdate.maxUnavailable} {.spec.updateStrategy.rollingUpdate.maxSurge} {.spec.revisionHistoryLimit} {.metadata.annotations.deprecated\\.daemonset\\.template\\.generation}",
    ]);
    assert_eq!(ds, "RollingUpdate 1 0 10 1");
}

#[test]
fn dry_run_server_defaults_and_stores_nothing() {
    let Some(g) = ger() else { return };
    let out = g.ok(&[
        "create",
        "-f",
        &fixture("ds.yaml"),
        "--dry-run=server",
        "-o",
        "go-template={{.spec.updateStrategy.type}}{{\"\\n\"}}",
    ]);
    assert_eq!(out, "RollingUpdate\n");
    let err = g.fails(&["get", "ds", "fluentd-elasticsearch", "-n", "kube-system"]);
    assert!(err.contains("NotFound"), "{err}");
    let out = g.ok(&["create", "-f", &fixture("ds.yaml"), "--dry-run=server"]);
    assert_eq!(
        out.trim(),
        "daemonset.apps/fluentd-elasticsearch created (server dry run)"
    );
    g.fails(&["get", "ds", "fluentd-elasticsearch", "-n", "kube-system"]);
}

#[test]
fn get_prints_upstream_tables() {
    let Some(g) = ger() else { return };
    for f in ["rs-demo.yaml", "deploy-demo.yaml", "daemonset-demo.yaml"] {
        g.ok(&["apply", "-f", &fixture(f)]);
    }
    let cases: &[(&str, &[&str])] = &[
        (
            "deploy",
            &["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        ),
        ("rs", &["NAME", "DESIRED", "CURRENT", "READY", "AGE"]),
        (
            "ds",
            &[
                "NAME",
                "DESIRED",
                "CURRENT",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE",
                "NODE SELECTOR",
                "AGE",
            ],
        ),
        ("ns", &["NAME", "STATUS", "AGE"]),
    ];
    for (kind, want) in cases {
        let out = g.ok(&["get", kind]);
        assert_eq!(header(&out), *want, "{kind}:\n{out}");
    }
    let wide = g.ok(&["get", "deploy", "-o", "wide"]);
    assert_eq!(
        header(&wide),
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    assert!(wide.contains("deploy-demo   0/2"), "{wide}");
    assert!(wide.contains("app=deploy-app,release=canary"), "{wide}");
    let rs = g.ok(&["get", "rs", "myapp", "-o", "wide", "--no-headers"]);
    let cells: Vec<&str> = rs.split_whitespace().collect();
    assert_eq!(cells[0..4], ["myapp", "2", "0", "0"]);
    assert_eq!(
        cells[5..],
        [
            "myapp-containers",
            "ikubernetes/myapp:v1",
            "app=myapp,release=canary"
        ]
    );
    // Label and field selectors, all namespaces, custom columns.
    let by_label = g.ok(&[
        "get",
        "rs,deploy,ds",
        "-l",
        "app in (daem-nginx)",
        "-o",
        "name",
    ]);
    assert_eq!(by_label.trim(), "daemonset.apps/daemset-nginx");
    let by_field = g.ok(&[
        "get",
        "deploy",
        "--field-selector",
        "metadata.name!=deploy-demo",
        "-o",
        "name",
    ]);
    assert_eq!(by_field.trim(), "");
    let all = g.ok(&[
        "get",
        "ns",
        "-A",
        "-o",
        "custom-columns=N:.metadata.name,P:.status.phase",
        "--no-headers",
    ]);
    assert!(
        all.lines()
            .any(|l| l.split_whitespace().eq(["kube-system", "Active"])),
        "{all}"
    );
    let json = g.ok(&["get", "rs", "myapp", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        v["spec"]["template"]["metadata"]["creationTimestamp"],
        serde_json::Value::Null
    );
    assert!(
        v["spec"]["template"]["metadata"]
            .as_object()
            .unwrap()
            .contains_key("creationTimestamp")
    );
    assert_eq!(
        v["spec"]["template"]["spec"]["containers"][0]["resources"],
        serde_json::json!({})
    );
    let err = g.fails(&["get", "pods", "--field-selector", "spec.bogus=1"]);
    assert!(
        err.contains("field label not supported: spec.bogus"),
        "{err}"
    );
}

#[test]
fn every_kind_prints_its_table_and_describes() {
    let Some(g) = ger() else { return };
    g.ok(&["apply", "-f", &fixture("kinds.yaml")]);
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["get", "po"],
            &["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        ),
        (
            &["get", "po", "-o", "wide"],
            &[
                "NAME",
                "READY",
                "STATUS",
                "RESTARTS",
                "AGE",
                "IP",
                "NODE",
                "NOMINATED NODE",
                "READINESS GATES",
            ],
        ),
        (
            &["get", "no"],
            &["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
        ),
        (
            &["get", "rc"],
            &["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
        ),
        (
            &["get", "ev"],
            &["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        ),
        (
            &["get", "controllerrevisions"],
            &["NAME", "CONTROLLER", "REVISION", "AGE"],
        ),
        (
            &["get", "leases", "-n", "kube-node-lease"],
            &["NAME", "HOLDER", "AGE"],
        ),
    ];
    for (args, want) in cases {
        let out = g.ok(args);
        assert_eq!(header(&out), *want, "{args:?}:\n{out}");
    }
    let cells = |args: &[&str]| -> Vec<String> {
        g.ok(args).split_whitespace().map(String::from).collect()
    };
    assert_eq!(
        cells(&["get", "po", "web", "--no-headers"])[..4],
        ["web", "0/1", "Pending", "0"]
    );
    assert_eq!(
        cells(&["get", "no", "node-1", "--no-headers"])[..3],
        ["node-1", "Ready", "edge"]
    );
    assert_eq!(
        cells(&["get", "rc", "rc-demo", "-o", "wide", "--no-headers"])[5..],
        ["c", "nginx:1.25", "app=rc-demo"]
    );
    for (kind, name, ns) in [
        ("pod", "web", "default"),
        ("node", "node-1", "default"),
        ("rc", "rc-demo", "default"),
        ("event", "web.1", "default"),
        ("controllerrevision", "agent-1", "default"),
        ("lease", "node-1", "kube-node-lease"),
    ] {
        let d = g.ok(&["describe", kind, name, "-n", ns]);
        assert!(d.starts_with("Name:") && d.contains(name), "{kind}: {d}");
    }
    let pod = g.ok(&["describe", "pod", "web"]);
    assert!(
        pod.contains("node.kubernetes.io/not-ready:NoExecute op=Exists for 300s"),
        "{pod}"
    );
    for (kind, name) in [("pod", "web"), ("rc", "rc-demo")] {
        g.ok(&["delete", kind, name]);
        g.fails(&["get", kind, name]);
    }
}

#[test]
fn edit_patch_label_annotate_set_image_scale_describe_delete() {
    let Some(g) = ger() else { return };
    g.ok(&["apply", "-f", &fixture("rs-demo.yaml")]);
    g.ok(&["apply", "-f", &fixture("deploy-demo.yaml")]);
    g.ok(&["apply", "-f", &fixture("daemonset-demo.yaml")]);
    // edit with a scripted editor: replicas 2 -> 4.
    let editor = g.path("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i 's/replicas: 2/replicas: 4/' \"$1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = g.kubectl_with(
        &["edit", "rs", "myapp"],
        None,
        &[("KUBE_EDITOR", editor.to_str().unwrap())],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "replicaset.apps/myapp edited"
    );
    assert_eq!(
        g.ok(&[
            "get",
            "rs",
            "myapp",
            "-o",
            "jsonpath={.spec.replicas} {.metadata.generation}"
        ]),
        "4 2"
    );
    // patch: strategic, merge, json.
    g.ok(&["patch", "deploy", "deploy-demo", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"myapp","env":[{"name":"A","value":"1"}]}]}}}}"#]);
    assert_eq!(
        g.ok(&["get", "deploy", "deploy-demo", "-o", "jsonpath={.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].env[0].value}"]),
        "ikubernetes/myapp:v1 1"
    );
    g.ok(&[
        "patch",
        "deploy",
        "deploy-demo",
        "--type=merge",
        "-p",
        r#"{"spec":{"minReadySeconds":5}}"#,
    ]);
    g.ok(&[
        "patch",
        "deploy",
        "deploy-demo",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/revisionHistoryLimit","value":3}]"#,
    ]);
    assert_eq!(
        g.ok(&[
            "get",
            "deploy",
            "deploy-demo",
            "-o",
            "jsonpath={.spec.minReadySeconds} {.spec.revisionHistoryLimit}"
        ]),
        "5 3"
    );
    let rv = g.ok(&[
        "get",
        "deploy",
        "deploy-demo",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);
    let out = g.ok(&[
        "patch",
        "deploy",
        "deploy-demo",
        "--type=merge",
        "-p",
        r#"{"spec":{"minReadySeconds":5}}"#,
    ]);
    assert_eq!(
        out.trim(),
        "deployment.apps/deploy-demo patched (no change)"
    );
    assert_eq!(
        g.ok(&[
            "get",
            "deploy",
            "deploy-demo",
            "-o",
            "jsonpath={.metadata.resourceVersion}"
        ]),
        rv
    );
    // label, annotate.
    g.ok(&["label", "deploy", "deploy-demo", "tier=web"]);
    g.ok(&["annotate", "deploy", "deploy-demo", "note=hello"]);
    assert_eq!(
        g.ok(&[
            "get",
            "deploy",
            "-l",
            "tier=web",
            "-o",
            "jsonpath={.items[0].metadata.annotations.note}"
        ]),
        "hello"
    );
    g.ok(&["label", "deploy", "deploy-demo", "tier-"]);
    assert_eq!(
        g.ok(&["get", "deploy", "-l", "tier=web", "-o", "name"])
            .trim(),
        ""
    );
    // set image changes only that container.
    let out = g.ok(&[
        "set",
        "image",
        "deployment/deploy-demo",
        "myapp=ikubernetes/myapp:v2",
    ]);
    assert_eq!(out.trim(), "deployment.apps/deploy-demo image updated");
    assert_eq!(
        g.ok(&["get", "deploy", "deploy-demo", "-o", "jsonpath={.spec.template.spec.containers[*].image} {.spec.template.spec.containers[0].env[0].name} {.spec.template.spec.containers[0].ports[0].containerPort}"]),
        "ikubernetes/myapp:v2 A 80"
    );
    // scale goes through /scale.
    assert_eq!(
        g.ok(&["scale", "deploy", "deploy-demo", "--replicas=5"])
            .trim(),
        "deployment.apps/deploy-demo scaled"
    );
    assert_eq!(
        g.ok(&["scale", "rs", "myapp", "--replicas=1"]).trim(),
        "replicaset.apps/myapp scaled"
    );
    assert_eq!(
        g.ok(&[
            "get",
            "deploy",
            "deploy-demo",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "5"
    );
    assert_eq!(
        g.ok(&["get", "rs", "myapp", "-o", "jsonpath={.spec.replicas}"]),
        "1"
    );
    // describe each kind.
    let d = g.ok(&["describe", "deploy", "deploy-demo"]);
    assert!(d.contains("StrategyType:           RollingUpdate"), "{d}");
    assert!(
        d.contains("RollingUpdateStrategy:  25% max unavailable, 25% max surge"),
        "{d}"
    );
    assert!(d.contains("80/TCP"), "{d}");
    for (kind, name) in [("rs", "myapp"), ("ds", "daemset-nginx"), ("ns", "default")] {
        let d = g.ok(&["describe", kind, name]);
        assert!(d.contains("Name:") && d.contains(name), "{d}");
    }
    // delete.
    assert_eq!(
        g.ok(&["delete", "ds", "daemset-nginx"]).trim(),
        "daemonset.apps \"daemset-nginx\" deleted"
    );
    let err = g.fails(&["get", "ds", "daemset-nginx"]);
    assert!(
        err.contains("daemonsets.apps \"daemset-nginx\" not found"),
        "{err}"
    );
}

#[test]
fn bad_input_gets_upstream_errors_and_changes_nothing() {
    let Some(g) = ger() else { return };
    g.ok(&["apply", "-f", &fixture("deploy-demo.yaml")]);
    let before = g.ok(&["get", "deploy", "deploy-demo", "-o", "json"]);
    let write = |name: &str, text: &str| {
        let p = g.path(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let base = std::fs::read_to_string(fixture("deploy-demo.yaml")).unwrap();
    // Selector not matching the template labels.
    let f = write(
        "bad-selector.yaml",
        &base.replace(
            "      labels:\n        app: deploy-app",
            "      labels:\n        app: other",
        ),
    );
    let err = g.fails(&["apply", "-f", &f]);
    assert!(
        err.contains("The Deployment \"deploy-demo\" is invalid"),
        "{err}"
    );
    assert!(
        err.contains("`selector` does not match template `labels`"),
        "{err}"
    );
    // maxSurge=0 and maxUnavailable=0.
    let err = g.fails(&[
        "patch",
        "deploy",
        "deploy-demo",
        "-p",
        r#"{"spec":{"strategy":{"rollingUpdate":{"maxSurge":0,"maxUnavailable":0}}}}"#,
    ]);
    assert!(err.contains("may not be 0 when `maxSurge` is 0"), "{err}");
    // Missing image.
    let err = g.fails(&[
        "patch",
        "deploy",
        "deploy-demo",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/template/spec/containers/0/image"}]"#,
    ]);
    assert!(
        err.contains("spec.template.spec.containers[0].image: Required value"),
        "{err}"
    );
    // Upper-case name.
    let f = write(
        "upper.yaml",
        &base.replace("name: deploy-demo", "name: Deploy-Demo"),
    );
    let err = g.fails(&["create", "-f", &f]);
    assert!(err.contains("a lowercase RFC 1123 subdomain"), "{err}");
    // Unknown field.
    let f = write(
        "unknown.yaml",
        &base.replace("  replicas: 2", "  replicas: 2\n  bogus: 1"),
    );
    let err = g.fails(&["create", "-f", &f]);
    assert!(
        err.contains("strict decoding error: unknown field \"spec.bogus\""),
        "{err}"
    );
    // Malformed JSON.
    let f = write(
        "malformed.json",
        "{\"apiVersion\": \"apps/v1\", \"kind\": \"Deployment\",",
    );
    g.fails(&["create", "-f", &f]);
    let err = g.fails(&[
        "patch",
        "deploy",
        "deploy-demo",
        "--type=merge",
        "-p",
        "{\"spec\":",
    ]);
    assert!(!err.is_empty());
    // Negative replicas.
    let err = g.fails(&["scale", "deploy", "deploy-demo", "--replicas=-1"]);
    assert!(err.contains("replicas"), "{err}");
    // Stale resourceVersion.
    let err = g.fails(&[
        "label",
        "deploy",
        "deploy-demo",
        "x=y",
        "--resource-version=1",
    ]);
    assert!(err.contains("the object has been modified"), "{err}");
    // No valid token.
    let err = g.fails(&["get", "ns", "--token=wrong"]);
    assert!(err.contains("Unauthorized"), "{err}");
    let after = g.ok(&["get", "deploy", "deploy-demo", "-o", "json"]);
    assert_eq!(before, after, "a rejected request must change nothing");
    g.ok(&["get", "ns", "default"]);
}

#[test]
fn watch_with_kubectl_get_w_sees_changes() {
    let Some(g) = ger() else { return };
    let mut child = std::process::Command::new("kubectl")
        .args(["get", "ns", "-w", "--no-headers", "-o", "name"])
        .env("HOME", &g.home)
        .env("KUBECONFIG", &g.kubeconfig)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: watched\n";
    let out = g.kubectl_with(&["apply", "-f", "-"], Some(ns), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("namespace/default"), "{text}");
    assert!(text.contains("namespace/watched"), "{text}");
}

fn curl(g: &GerServer, path: &str) -> String {
    let token = std::fs::read_to_string(g.data_dir.join("pki/token")).unwrap();
    let out = std::process::Command::new("curl")
        .args(["-sS", "-N", "--max-time", "20", "--cacert"])
        .arg(g.data_dir.join("pki/ca.crt"))
        .arg("-H")
        .arg(format!("Authorization: Bearer {}", token.trim()))
        .arg(format!("{}{path}", g.server))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn survives_kill_9_and_resumes_watches() {
    let Some(mut g) = ger() else { return };
    let mut list = String::new();
    for i in 0..1000 {
        list.push_str(&format!(
            "---\napiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: lease-{i}\nspec:\n  holderIdentity: h{i}\n"
        ));
    }
    let out = g.kubectl_with(&["create", "-f", "-"], Some(&list), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: serde_json::Value =
        serde_json::from_str(&curl(&g, "/apis/coordination.k8s.io/v1/leases?limit=1")).unwrap();
    let rv_before: i64 = listed["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(listed["metadata"]["remainingItemCount"], 999);
    // A few more writes after the list revision, then kill -9 right away.
    g.ok(&["annotate", "lease", "lease-1", "a=b"]);
    g.ok(&["delete", "lease", "lease-2"]);
    g.kill9();
    g.restart();
    let count = g.ok(&["get", "leases", "-o", "name"]).lines().count();
    assert_eq!(count, 999);
    g.ok(&["annotate", "lease", "lease-3", "after=restart"]);
    let rv_after: i64 = g
        .ok(&[
            "get",
            "lease",
            "lease-3",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .parse()
        .unwrap();
    assert!(rv_after > rv_before + 2, "{rv_after} <= {rv_before} + 2");
    let events = curl(
        &g,
        &format!(
            "/apis/coordination.k8s.io/v1/namespaces/default/leases?watch=1&resourceVersion={rv_before}&timeoutSeconds=1"
        ),
    );
    let got: Vec<(String, String)> = events
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["type"].as_str().unwrap().to_string(),
                v["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("MODIFIED", "lease-1"),
        ("DELETED", "lease-2"),
        ("MODIFIED", "lease-3"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(got, want, "{events}");
    let too_old = curl(
        &g,
        "/apis/coordination.k8s.io/v1/leases?watch=1&resourceVersion=0&timeoutSeconds=1",
    );
    assert!(
        too_old.lines().count() >= 999,
        "rv=0 starts with the current objects"
    );
}

#[test]
fn events_expire_after_the_event_ttl() {
    if !kubectl_available() {
        return;
    }
    let g = GerServer::start_with(
        Path::new(env!("CARGO_BIN_EXE_ger")),
        &["--api-only", "--event-ttl", "2s"],
    );
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let event = format!(
        r#"{{"apiVersion":"v1","kind":"Event","metadata":{{"name":"boot"}},
        "involvedObject":{{"kind":"Node","name":"n1"}},"reason":"Starting","message":"hello",
        "type":"Normal","lastTimestamp":"{now}","firstTimestamp":"{now}","count":1}}"#
    );
    let out = g.kubectl_with(&["create", "-f", "-"], Some(&event), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ns = r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"stays"}}"#;
    let out = g.kubectl_with(&["create", "-f", "-"], Some(ns), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(g.ok(&["get", "events", "--no-headers"]).contains("hello"));
    g.wait_until(&["get", "events", "-o", "name"], 15, |o| {
        o.trim().is_empty()
    });
    assert!(
        g.ok(&["get", "namespace", "stays", "-o", "name"])
            .contains("stays")
    );
}

#[test]
fn explain_reads_the_served_schemas() {
    let Some(g) = ger() else { return };
    let out = g.ok(&["explain", "daemonset.spec.updateStrategy"]);
    assert!(out.contains("KIND:       DaemonSet"), "{out}");
    assert!(
        out.contains("FIELD: updateStrategy <DaemonSetUpdateStrategy>"),
        "{out}"
    );
    assert!(
        out.contains("rollingUpdate\t<RollingUpdateDaemonSet>"),
        "{out}"
    );
    let out = g.ok(&["explain", "deploy.spec"]);
    assert!(
        out.contains("selector\t<LabelSelector> -required-"),
        "{out}"
    );
    assert!(!out.contains("metadata\t<ObjectMeta> -required-"), "{out}");
    for kind in [
        "pods",
        "nodes",
        "namespaces",
        "events",
        "rc",
        "rs",
        "controllerrevisions",
        "leases",
    ] {
        let out = g.ok(&["explain", kind]);
        assert!(out.contains("DESCRIPTION:"), "{kind}: {out}");
    }
    // apply still merges lists by key (kubectl's own patch metadata): a container added by
    // another writer survives a re-apply.
    g.ok(&["apply", "-f", &fixture("deploy-demo.yaml")]);
    g.ok(&[
        "patch",
        "deploy",
        "deploy-demo",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox"}]}}}}"#,
    ]);
    g.ok(&["apply", "-f", &fixture("deploy-demo.yaml")]);
    assert_eq!(
        g.ok(&[
            "get",
            "deploy",
            "deploy-demo",
            "-o",
            "jsonpath={.spec.template.spec.containers[*].name}"
        ])
        .trim(),
        "myapp sidecar"
    );
}

/// ConfigMaps, Secrets and ServiceAccounts: what an agent's manifest brings along.
#[test]
fn configmaps_secrets_and_service_accounts() {
    let Some(g) = ger() else { return };
    let ok = |args: &[&str]| g.ok(args).trim().to_string();
    assert_eq!(
        ok(&[
            "create",
            "configmap",
            "agent-config",
            "--from-literal=level=debug",
            "--from-literal=out=stdout"
        ]),
        "configmap/agent-config created"
    );
    assert_eq!(
        ok(&[
            "create",
            "secret",
            "generic",
            "token",
            "--from-literal=token=abc"
        ]),
        "secret/token created"
    );
    assert_eq!(
        ok(&["create", "serviceaccount", "agent"]),
        "serviceaccount/agent created"
    );
    let manifest = g.path("bundle.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s2}\nstringData: {password: hunter2}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {name: frozen}\nimmutable: true\ndata: {a: \"1\"}\n",
    )
    .unwrap();
    g.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    let table = g.ok(&["get", "cm,secret,sa", "--no-headers"]);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        rows.iter()
            .any(|r| r[..2] == ["configmap/agent-config", "2"]),
        "{table}"
    );
    assert!(
        rows.iter().any(|r| r[..3] == ["secret/s2", "Opaque", "1"]),
        "{table}"
    );
    assert!(
        rows.iter().any(|r| r[..2] == ["serviceaccount/agent", "0"]),
        "{table}"
    );
    // stringData is written into data, encoded, and not kept.
    assert_eq!(
        ok(&[
            "get",
            "secret",
            "s2",
            "-o",
            "jsonpath={.type} {.data.password} {.stringData}"
        ]),
        "Opaque aHVudGVyMg=="
    );
    assert_eq!(
        ok(&["get", "cm", "agent-config", "-o", "jsonpath={.data.level}"]),
        "debug"
    );
    let err = g.fails(&["patch", "cm", "frozen", "-p", r#"{"data":{"a":"2"}}"#]);
    assert!(
        err.contains("The ConfigMap \"frozen\" is invalid: data: Forbidden: field is immutable when `immutable` is set"),
        "{err}"
    );
    let big = g.path("big");
    std::fs::write(&big, vec![b'a'; 1_100_000]).unwrap();
    let err = g.fails(&[
        "create",
        "configmap",
        "big",
        &format!("--from-file={}", big.display()),
    ]);
    assert!(
        err.contains("ConfigMap \"big\" is invalid: []: Too long: must have at most 1048576 bytes"),
        "{err}"
    );
    let tls = g.path("tls.yaml");
    std::fs::write(&tls, "apiVersion: v1\nkind: Secret\nmetadata: {name: cert}\ntype: kubernetes.io/tls\ndata: {tls.crt: YQ==}\n").unwrap();
    let err = g.fails(&["apply", "-f", tls.to_str().unwrap()]);
    assert!(err.contains("data[tls.key]: Required value"), "{err}");
    let sel = ok(&[
        "get",
        "secrets",
        "--field-selector",
        "type=Opaque",
        "-o",
        "name",
    ]);
    assert_eq!(sel, "secret/s2\nsecret/token");
}

#[test]
fn services_get_addresses_and_ports() {
    let Some(g) = ger() else {
        return;
    };
    let rows = |out: &str| -> Vec<Vec<String>> {
        out.lines()
            .map(|l| l.split_whitespace().map(String::from).collect())
            .collect()
    };
    // The API server's own Service, and cluster-info reading it.
    let k = g.ok(&["get", "svc", "kubernetes", "--no-headers"]);
    assert_eq!(
        rows(&k)[0][..5],
        ["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP"]
    );
    let info = g.ok(&["cluster-info"]);
    assert!(
        info.contains("Kubernetes control plane is running at https://127.0.0.1:"),
        "{info}"
    );
    g.ok(&["create", "deployment", "web", "--image=nginx:1.25"]);
    g.ok(&[
        "expose",
        "deployment",
        "web",
        "--port=80",
        "--target-port=8080",
    ]);
    g.ok(&["apply", "-f", &fixture("agent-service.yaml")]);
    g.ok(&[
        "create",
        "service",
        "externalname",
        "docs",
        "--external-name=example.com",
    ]);
    let out = g.ok(&["get", "svc", "-o", "wide"]);
    assert_eq!(
        header(&out),
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE",
            "SELECTOR"
        ]
    );
    let table = rows(&out);
    let row = |name: &str| table.iter().find(|r| r[0] == name).cloned().unwrap();
    let web = row("web");
    assert_eq!(web[1..3], ["ClusterIP".to_string(), web[2].clone()]);
    assert!(
        web[2].starts_with("10.96.") && web[2] != "10.96.0.1",
        "{out}"
    );
    assert_eq!(web[4], "80/TCP");
    assert_eq!(web[6], "app=web");
    let agent = row("agent");
    assert_eq!(agent[1], "NodePort");
    let ports: Vec<&str> = agent[4].split(',').collect();
    assert!(
        ports.len() == 2
            && ports[0].starts_with("9100:3")
            && ports[1].starts_with("80:3")
            && ports.iter().all(|p| p.ends_with("/TCP")),
        "{out}"
    );
    assert_ne!(web[2], agent[2], "two Services, one address");
    assert_eq!(row("docs")[1..4], ["ExternalName", "<none>", "example.com"]);
    // Defaults as upstream's.
    let spec = g.ok(&[
        "get",
        "svc",
        "agent",
        "-o",
        "jsonpath={.spec.ports[0].targetPort} {.spec.ports[0].protocol} {.spec.sessionAffinity} {.spec.externalTrafficPolicy} {.spec.ipFamilies} {.spec.clusterIPs}",
    ]);
    assert_eq!(
        spec,
        format!("9100 TCP None Cluster [\"IPv4\"] [\"{}\"]", agent[2])
    );
    // Applying the same manifest again keeps the address and the node ports.
    assert!(
        g.ok(&["apply", "-f", &fixture("agent-service.yaml")])
            .contains("unchanged")
    );
    assert_eq!(
        rows(&g.ok(&["get", "svc", "agent", "--no-headers"]))[0][2..5],
        agent[2..5]
    );
    // A changed port merges by its port number: the other port and both node ports stay.
    let changed = std::fs::read_to_string(fixture("agent-service.yaml"))
        .unwrap()
        .replace("targetPort: 8080", "targetPort: 8081");
    let out = g.kubectl_with(&["apply", "-f", "-"], Some(&changed), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        rows(&g.ok(&["get", "svc", "agent", "--no-headers"]))[0][2..5],
        agent[2..5]
    );
    assert_eq!(
        g.ok(&[
            "get",
            "svc",
            "agent",
            "-o",
            "jsonpath={.spec.ports[*].targetPort}"
        ]),
        "9100 8081"
    );
    // Bad input: upstream's errors, nothing changed.
    let taken = g.fails(&[
        "create",
        "service",
        "clusterip",
        "dup",
        "--tcp=80",
        &format!("--clusterip={}", web[2]),
    ]);
    assert!(
        taken.contains(&format!(
            "spec.clusterIPs: Invalid value: []string{{\"{}\"}}: failed to allocate IP {}: provided IP is already allocated",
            web[2], web[2]
        )),
        "{taken}"
    );
    let moved = g.fails(&[
        "patch",
        "svc",
        "web",
        "-p",
        r#"{"spec":{"clusterIP":"10.96.9.9"}}"#,
    ]);
    assert!(
        moved.contains("spec.clusterIPs[0]: Invalid value: \"10.96.9.9\": may not change once set"),
        "{moved}"
    );
    let port = agent[4]
        .split(',')
        .next()
        .unwrap()
        .split(['/', ':'])
        .nth(1)
        .unwrap()
        .to_string();
    let manifest = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: clash\nspec:\n  type: NodePort\n  ports:\n  - port: 1\n    nodePort: {port}\n"
    );
    let clash = g.kubectl_with(&["create", "-f", "-"], Some(&manifest), &[]);
    assert!(!clash.status.success());
    assert!(
        String::from_utf8_lossy(&clash.stderr).contains(&format!(
            "spec.ports[0].nodePort: Invalid value: {port}: provided port is already allocated"
        )),
        "{}",
        String::from_utf8_lossy(&clash.stderr)
    );
    let unnamed = "apiVersion: v1\nkind: Service\nmetadata:\n  name: two\nspec:\n  ports:\n  - port: 1\n  - port: 2\n    protocol: QUIC\n";
    let out = g.kubectl_with(&["create", "-f", "-"], Some(unnamed), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spec.ports[0].name: Required value")
            && err.contains("spec.ports[1].protocol: Unsupported value: \"QUIC\": supported values: \"SCTP\", \"TCP\", \"UDP\""),
        "{err}"
    );
    assert_eq!(
        rows(&g.ok(&["get", "svc", "web", "--no-headers"]))[0][..5],
        web[..5]
    );
    // Changing type drops what the new type has no use for.
    g.ok(&[
        "patch",
        "svc",
        "agent",
        "-p",
        r#"{"spec":{"type":"ClusterIP"}}"#,
    ]);
    let spec = g.ok(&[
        "get",
        "svc",
        "agent",
        "-o",
        "jsonpath={.spec.externalTrafficPolicy}|{.spec.ports[*].nodePort}|{.spec.clusterIP}",
    ]);
    assert_eq!(spec, format!("||{}", agent[2]));
    g.ok(&[
        "patch",
        "svc",
        "agent",
        "-p",
        r#"{"spec":{"type":"ExternalName","externalName":"agent.example.com"}}"#,
    ]);
    let row = rows(&g.ok(&["get", "svc", "agent", "--no-headers"]))[0].clone();
    assert_eq!(row[1..4], ["ExternalName", "<none>", "agent.example.com"]);
    // A deleted Service's address is free again.
    g.ok(&["delete", "svc", "web"]);
    g.ok(&[
        "create",
        "service",
        "clusterip",
        "again",
        "--tcp=80",
        &format!("--clusterip={}", web[2]),
    ]);
}

#[test]
fn server_side_apply_owns_merges_and_conflicts() {
    let Some(g) = ger() else {
        return;
    };
    let manifest = |image: &str, label: Option<&str>| {
        let labels = match label {
            Some(l) => format!("\n  labels:\n    {l}: \"yes\""),
            None => String::new(),
        };
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web{labels}\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n      - name: app\n        image: {image}\n"
        )
    };
    let apply = |body: &str, extra: &[&str]| {
        let mut args = vec!["apply", "--server-side", "-f", "-"];
        args.extend_from_slice(extra);
        g.kubectl_with(&args, Some(body), &[])
    };
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let out = apply(&manifest("nginx:1.25", Some("team")), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(text(&out).trim(), "deployment.apps/web serverside-applied");
    let owners = g.ok(&[
        "get",
        "deploy",
        "web",
        "--show-managed-fields",
        "-o",
        "jsonpath={range .metadata.managedFields[*]}{.manager}/{.operation} {end}",
    ]);
    assert_eq!(owners.trim(), "kubectl/Apply");
    // Another manager with another image: a conflict, and nothing changes.
    let out = apply(
        &manifest("nginx:1.26", None),
        &["--field-manager=rollout-bot"],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains(
            "Apply failed with 1 conflict: conflict with \"kubectl\" using apps/v1: .spec.template.spec.containers[name=\"app\"].image"
        ),
        "{}",
        text(&out)
    );
    let image = || {
        g.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ])
    };
    assert_eq!(image(), "nginx:1.25");
    // Forced, the field changes hands.
    let out = apply(
        &manifest("nginx:1.26", None),
        &["--field-manager=rollout-bot", "--force-conflicts"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(image(), "nginx:1.26");
    // kubectl's next apply without the label drops it (no one else applied it), and no longer
    // fights over the image it left to the bot.
    let mut mine = manifest("nginx:1.26", None);
    mine = mine.replace(
        "      - name: app\n        image: nginx:1.26\n",
        "      - name: app\n",
    );
    let out = apply(&mine, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        g.ok(&["get", "deploy", "web", "-o", "jsonpath={.metadata.labels}"]),
        ""
    );
    assert_eq!(image(), "nginx:1.26");
    // Bad requests.
    let out = apply("apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n", &[]);
    assert!(!out.status.success());
    let out = apply(
        &manifest("nginx:1.27", None),
        &["--dry-run=server", "--field-manager=x"],
    );
    assert!(
        !out.status.success(),
        "a dry run conflicts as the real one would"
    );
    assert!(
        text(&out).contains("conflict with \"rollout-bot\""),
        "{}",
        text(&out)
    );
    let out = apply(
        &manifest("nginx:1.27", None),
        &["--dry-run=server", "--field-manager=x", "--force-conflicts"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(image(), "nginx:1.26", "a dry run changes nothing");
    // Client-side apply and the other verbs go on working on the applied object.
    g.ok(&["scale", "deploy", "web", "--replicas=3"]);
    assert_eq!(
        g.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "3"
    );
}

#[test]
fn list_manifests_apply_item_by_item() {
    let Some(g) = ger() else {
        return;
    };
    let list = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: a\n  data:\n    k: v\n- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: b\n";
    let out = g.kubectl_with(&["apply", "-f", "-"], Some(list), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "configmap/a created\nconfigmap/b created\n"
    );
    // What `get -o yaml` prints (a List) goes back in as it came out.
    let all = g.ok(&["get", "cm", "a", "b", "-o", "yaml"]);
    g.ok(&["delete", "cm", "a", "b"]);
    let out = g.kubectl_with(&["apply", "-f", "-"], Some(&all), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(g.ok(&["get", "cm", "a", "-o", "jsonpath={.data.k}"]), "v");
    // Unknown fields inside a List are still the server's strict error.
    let bad = list
        .replace("  data:\n", "  dataa:\n")
        .replace("name: a", "name: c");
    let out = g.kubectl_with(&["apply", "-f", "-"], Some(&bad), &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("strict decoding error: unknown field \"dataa\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
