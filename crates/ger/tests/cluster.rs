//! A small working cluster, driven with real kubectl: simulated nodes, the scheduler, the
//! ReplicaSet and ReplicationController controllers, garbage collection and events.

mod common;

use common::{fixture, rows};

fn count_running(out: &str) -> usize {
    rows(out)
        .iter()
        .filter(|r| {
            r.get(1).map(String::as_str) == Some("1/1")
                && r.get(2).map(String::as_str) == Some("Running")
        })
        .count()
}

#[test]
fn replicaset_walkthrough() {
    let Some(g) = common::cluster(&[]) else {
        return;
    };
    g.ok(&["apply", "-f", &fixture("rs-demo.yaml")]);
    g.wait_until(&["get", "rs", "myapp", "--no-headers"], 30, |o| {
        rows(o).first().is_some_and(|r| r[1..4] == ["2", "2", "2"])
    });
    let pods = g.ok(&["get", "pods", "-l", "app=myapp", "--no-headers"]);
    for r in rows(&pods) {
        assert!(
            r[0].starts_with("myapp-") && r[0].len() == "myapp-".len() + 5,
            "{pods}"
        );
        assert_eq!(r[1..3], ["1/1", "Running"], "{pods}");
    }
    // Scale up, then down: the pods ready for the shortest time go first (ready times are
    // compared in log2 buckets of seconds, so let the first pods age a little).
    let originals = g.ok(&["get", "pods", "-l", "app=myapp", "-o", "name"]);
    std::thread::sleep(std::time::Duration::from_secs(4));
    g.ok(&["scale", "rs", "myapp", "--replicas=5"]);
    g.wait_until(
        &["get", "pods", "-l", "app=myapp", "--no-headers"],
        30,
        |o| count_running(o) == 5,
    );
    g.ok(&["scale", "rs", "myapp", "--replicas=3"]);
    g.wait_until(
        &["get", "pods", "-l", "app=myapp", "--no-headers"],
        30,
        |o| rows(o).len() == 3,
    );
    let left = g.ok(&["get", "pods", "-l", "app=myapp", "-o", "name"]);
    for pod in originals.lines() {
        assert!(
            left.contains(pod),
            "the older pods stay: {pod} not in {left}"
        );
    }
    // A new template applies to new pods only.
    let text = std::fs::read_to_string(fixture("rs-demo.yaml")).unwrap();
    let v2 = g.path("rs-v2.yaml");
    std::fs::write(
        &v2,
        text.replace("replicas: 2", "replicas: 3")
            .replace("myapp:v1", "myapp:v2"),
    )
    .unwrap();
    g.ok(&["apply", "-f", v2.to_str().unwrap()]);
    let images = g.ok(&[
        "get",
        "pods",
        "-l",
        "app=myapp",
        "-o",
        "jsonpath={.items[*].spec.containers[0].image}",
    ]);
    assert!(
        images.split(' ').all(|i| i == "ikubernetes/myapp:v1"),
        "{images}"
    );
    let victim = g.ok(&[
        "get",
        "pods",
        "-l",
        "app=myapp",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    g.ok(&["delete", "pod", &victim]);
    g.wait_until(
        &[
            "get",
            "pods",
            "-l",
            "app=myapp",
            "-o",
            "jsonpath={range .items[*]}{.spec.containers[0].image} {.status.phase}{\"\\n\"}{end}",
        ],
        30,
        |o| {
            o.lines()
                .filter(|l| *l == "ikubernetes/myapp:v2 Running")
                .count()
                == 1
                && o.lines().count() == 3
        },
    );
    // Orphan the pods, then adopt them with a new ReplicaSet.
    g.ok(&["delete", "rs", "myapp", "--cascade=orphan"]);
    g.wait_until(&["get", "rs", "-o", "name"], 10, |o| o.trim().is_empty());
    let owners = g.ok(&[
        "get",
        "pods",
        "-l",
        "app=myapp",
        "-o",
        "jsonpath={.items[*].metadata.ownerReferences}",
    ]);
    assert_eq!(owners.trim(), "", "orphans have no ownerReferences");
    assert_eq!(
        rows(&g.ok(&["get", "pods", "-l", "app=myapp", "--no-headers"])).len(),
        3
    );
    g.ok(&["apply", "-f", v2.to_str().unwrap()]);
    g.wait_until(
        &[
            "get",
            "pods",
            "-l",
            "app=myapp",
            "-o",
            "jsonpath={range .items[*]}{.metadata.ownerReferences[0].name}{\"\\n\"}{end}",
        ],
        20,
        |o| o.lines().count() == 3 && o.lines().all(|l| l == "myapp"),
    );
    // Events: describe shows what the controller did.
    let d = g.ok(&["describe", "rs", "myapp"]);
    assert!(d.contains("Events:"), "{d}");
    let ev = g.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=SuccessfulCreate",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(ev.contains("Created pod: myapp-"), "{ev}");
    // Background deletion removes the pods.
    g.ok(&["delete", "rs", "myapp"]);
    g.wait_until(&["get", "pods", "-l", "app=myapp", "-o", "name"], 30, |o| {
        o.trim().is_empty()
    });
}

#[test]
fn foreground_deletion_waits_for_dependents() {
    // Pods take a few seconds to stop, so the owner is seen waiting for them.
    let Some(g) = common::cluster(&["--max-grace-seconds", "5"]) else {
        return;
    };
    g.ok(&["apply", "-f", &fixture("rs-demo.yaml")]);
    g.wait_until(
        &["get", "pods", "-l", "app=myapp", "--no-headers"],
        30,
        |o| count_running(o) == 2,
    );
    g.ok(&[
        "delete",
        "rs",
        "myapp",
        "--cascade=foreground",
        "--wait=false",
    ]);
    let during = g.ok(&[
        "get",
        "rs",
        "myapp",
        "-o",
        "jsonpath={.metadata.deletionTimestamp} {.metadata.finalizers}",
    ]);
    assert!(during.contains("foregroundDeletion"), "{during}");
    g.wait_until(&["get", "rs", "-o", "name"], 30, |o| o.trim().is_empty());
    assert_eq!(
        g.ok(&["get", "pods", "-l", "app=myapp", "-o", "name"])
            .trim(),
        ""
    );
}

#[test]
fn replication_controller_scales_and_cascades() {
    let Some(g) = common::cluster(&[]) else {
        return;
    };
    g.ok(&["apply", "-f", &fixture("my-nginx-rc.yaml")]);
    g.wait_until(&["get", "rc", "my-nginx", "--no-headers"], 30, |o| {
        rows(o).first().is_some_and(|r| r[1..4] == ["5", "5", "5"])
    });
    g.ok(&["scale", "rc", "my-nginx", "--replicas=2"]);
    g.wait_until(
        &["get", "pods", "-l", "app=nginx", "--no-headers"],
        30,
        |o| rows(o).len() == 2,
    );
    let d = g.ok(&["describe", "rc", "my-nginx"]);
    assert!(d.contains("SuccessfulDelete"), "{d}");
    g.ok(&["delete", "rc", "my-nginx"]);
    g.wait_until(&["get", "pods", "-l", "app=nginx", "-o", "name"], 30, |o| {
        o.trim().is_empty()
    });
}

fn pod_yaml(name: &str, extra_spec: &str, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n{extra_spec}  containers:\n  - name: c\n    image: {image}\n"
    )
}

#[test]
fn scheduling_follows_selectors_cordons_and_resources() {
    let Some(g) = common::cluster(&[]) else {
        return;
    };
    g.wait_until(&["get", "nodes", "--no-headers"], 20, |o| {
        rows(o).len() == 3
    });
    let apply = |name: &str, text: &str| {
        let p = g.path(name);
        std::fs::write(&p, text).unwrap();
        g.ok(&["apply", "-f", p.to_str().unwrap()]);
    };
    apply(
        "ssd.yaml",
        &pod_yaml("ssd", "  nodeSelector:\n    disktype: ssd\n", "nginx"),
    );
    let msg = g.wait_until(
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=ssd,reason=FailedScheduling",
            "-o",
            "jsonpath={.items[*].message}",
        ],
        20,
        |o| !o.is_empty(),
    );
    assert!(
        msg.contains(
            "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
        ),
        "{msg}"
    );
    let pending = g.ok(&["get", "pod", "ssd", "--no-headers"]);
    assert_eq!(rows(&pending)[0][2], "Pending");
    g.ok(&["label", "node", "node-1", "disktype=ssd"]);
    let node = g.wait_until(
        &[
            "get",
            "pod",
            "ssd",
            "-o",
            "jsonpath={.spec.nodeName} {.status.phase}",
        ],
        30,
        |o| o.ends_with("Running"),
    );
    assert_eq!(node, "node-1 Running");
    // A cordoned node gets no new pods.
    g.ok(&["cordon", "node-0"]);
    for i in 0..6 {
        apply(
            &format!("p{i}.yaml"),
            &pod_yaml(&format!("p{i}"), "", "nginx"),
        );
    }
    let nodes = g.wait_until(
        &[
            "get",
            "pods",
            "-o",
            "jsonpath={range .items[*]}{.spec.nodeName}{\"\\n\"}{end}",
        ],
        20,
        |o| o.lines().filter(|l| !l.is_empty()).count() == 7,
    );
    assert!(!nodes.lines().any(|l| l == "node-0"), "{nodes}");
    let st = g.ok(&["get", "node", "node-0", "--no-headers"]);
    assert_eq!(rows(&st)[0][1], "Ready,SchedulingDisabled");
    // More cpu than any node has.
    apply(
        "big.yaml",
        &pod_yaml(
            "big",
            "",
            "nginx\n    resources:\n      requests:\n        cpu: \"100\"",
        ),
    );
    let cond = g.wait_until(
        &[
            "get",
            "pod",
            "big",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].message}",
        ],
        20,
        |o| !o.is_empty(),
    );
    assert!(cond.contains("Insufficient cpu"), "{cond}");
    let d = g.ok(&["describe", "pod", "big"]);
    assert!(
        d.contains("FailedScheduling") && d.contains("Insufficient cpu"),
        "{d}"
    );
}

#[test]
fn failing_pods_show_upstream_statuses() {
    let Some(g) = common::cluster(&[]) else {
        return;
    };
    let apply = |name: &str, text: &str| {
        let p = g.path(name);
        std::fs::write(&p, text).unwrap();
        g.ok(&["apply", "-f", p.to_str().unwrap()]);
    };
    apply("pull.yaml", &pod_yaml("pull", "", "nginx:1.0-missing"));
    apply(
        "crash.yaml",
        &pod_yaml(
            "crash",
            "",
            "busybox\n    command: [\"sh\", \"-c\", \"exit 1\"]",
        ),
    );
    let pull = g.wait_until(&["get", "pod", "pull", "--no-headers"], 20, |o| {
        rows(o)
            .first()
            .is_some_and(|r| r[2] == "ErrImagePull" || r[2] == "ImagePullBackOff")
    });
    assert_eq!(rows(&pull)[0][1], "0/1");
    g.wait_until(&["get", "pod", "pull", "--no-headers"], 30, |o| {
        rows(o).first().is_some_and(|r| r[2] == "ImagePullBackOff")
    });
    let crash = g.wait_until(&["get", "pod", "crash", "--no-headers"], 20, |o| {
        rows(o).first().is_some_and(|r| r[2] == "CrashLoopBackOff")
    });
    let restarts: u32 = rows(&crash)[0][3].parse().unwrap();
    assert!(restarts >= 1, "{crash}");
    let d = g.ok(&["describe", "node", "node-0"]);
    assert!(d.contains("kubelet is posting ready status"), "{d}");
}

#[test]
fn kill_9_during_scale_up_ends_with_exact_count() {
    let Some(mut g) = common::cluster(&["--node-pods", "500"]) else {
        return;
    };
    g.wait_until(&["get", "nodes", "--no-headers"], 20, |o| {
        rows(o).len() == 3
    });
    let rs = g.path("big-rs.yaml");
    std::fs::write(
        &rs,
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: many\nspec:\n  replicas: 1000\n  selector:\n    matchLabels:\n      app: many\n  template:\n    metadata:\n      labels:\n        app: many\n    spec:\n      containers:\n      - name: c\n        image: agent:v1\n",
    )
    .unwrap();
    g.ok(&["apply", "-f", rs.to_str().unwrap()]);
    g.wait_until(
        &["get", "rs", "many", "-o", "jsonpath={.status.replicas}"],
        30,
        |o| o.parse::<u32>().is_ok_and(|n| n > 0),
    );
    g.kill9();
    g.restart();
    let out = g.wait_until(
        &[
            "get",
            "rs",
            "many",
            "-o",
            "jsonpath={.status.replicas} {.status.readyReplicas}",
        ],
        120,
        |o| o == "1000 1000",
    );
    assert_eq!(out, "1000 1000");
    let names = g.ok(&["get", "pods", "-l", "app=many", "-o", "name"]);
    assert_eq!(
        names.lines().count(),
        1000,
        "no extra pods after the restart"
    );
}

#[test]
fn nodes_join_and_namespaces_empty_on_delete() {
    let Some(g) = common::cluster(&[]) else {
        return;
    };
    // A user-added simulated node comes up Ready with a kubelet's events.
    let node = g.path("node.yaml");
    std::fs::write(
        &node,
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: edge-1\n  labels:\n    kubernetes.io/hostname: edge-1\n  annotations:\n    node.ger.io/simulated: \"true\"\n",
    )
    .unwrap();
    g.ok(&["apply", "-f", node.to_str().unwrap()]);
    g.wait_until(&["get", "node", "edge-1", "--no-headers"], 20, |o| {
        rows(o).first().is_some_and(|r| r[1] == "Ready")
    });
    let d = g.wait_until(&["describe", "node", "edge-1"], 20, |o| {
        o.contains("NodeReady")
    });
    assert!(d.contains("Starting kubelet."), "{d}");
    g.wait_until(
        &[
            "get",
            "lease",
            "edge-1",
            "-n",
            "kube-node-lease",
            "-o",
            "name",
        ],
        20,
        |o| !o.is_empty(),
    );
    g.ok(&["delete", "node", "edge-1"]);
    // Deleting a namespace deletes what is in it, pods given their grace period.
    g.kubectl_with(
        &["apply", "-f", "-"],
        Some(r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"team"}}"#),
        &[],
    );
    g.ok(&["apply", "-n", "team", "-f", &fixture("my-nginx-rc.yaml")]);
    g.wait_until(&["get", "pods", "-n", "team", "--no-headers"], 30, |o| {
        count_running(o) == 5
    });
    g.ok(&["delete", "ns", "team", "--wait=false"]);
    let phase = g.ok(&["get", "ns", "team", "-o", "jsonpath={.status.phase}"]);
    assert_eq!(phase, "Terminating");
    g.wait_until(&["get", "ns", "-o", "name"], 30, |o| {
        !o.contains("namespace/team")
    });
    assert_eq!(
        g.ok(&["get", "pods", "-n", "team", "-o", "name"]).trim(),
        ""
    );
}

/// kubectl's typed clients (`create namespace|deployment`, `drain`) send protobuf.
#[test]
fn imperative_commands_speak_protobuf() {
    let Some(g) = common::cluster(&[]) else {
        return;
    };
    let ok = |args: &[&str]| g.ok(args).trim().to_string();
    assert_eq!(
        ok(&["create", "namespace", "team-a"]),
        "namespace/team-a created"
    );
    assert_eq!(
        ok(&["get", "ns", "team-a", "-o", "jsonpath={.status.phase}"]),
        "Active"
    );
    // Every namespace gets its `default` ServiceAccount, made again when deleted.
    g.wait_until(&["get", "sa", "-n", "team-a", "-o", "name"], 10, |o| {
        o.trim() == "serviceaccount/default"
    });
    g.ok(&["delete", "sa", "default", "-n", "team-a"]);
    g.wait_until(&["get", "sa", "-n", "team-a", "-o", "name"], 10, |o| {
        o.trim() == "serviceaccount/default"
    });
    assert_eq!(
        ok(&[
            "create",
            "deployment",
            "web",
            "--image=nginx:1.25",
            "--replicas=3",
            "--port=80",
            "-n",
            "team-a"
        ]),
        "deployment.apps/web created"
    );
    // Defaults apply as to a JSON body: nothing Go sent as "" or 0 sticks.
    assert_eq!(
        ok(&[
            "get",
            "deploy",
            "web",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.spec.strategy.type} {.spec.template.spec.restartPolicy} {.spec.template.spec.containers[0].ports[0].protocol} {.spec.template.spec.containers[0].imagePullPolicy} {.spec.progressDeadlineSeconds}",
        ]),
        "RollingUpdate Always TCP IfNotPresent 600"
    );
    g.wait_until(
        &["get", "deploy", "web", "-n", "team-a", "--no-headers"],
        30,
        |o| rows(o).first().is_some_and(|r| r[1] == "3/3"),
    );
    // A pointer field set to zero is a value.
    g.ok(&[
        "create",
        "deployment",
        "idle",
        "--image=nginx",
        "--replicas=0",
    ]);
    assert_eq!(
        ok(&["get", "deploy", "idle", "-o", "jsonpath={.spec.replicas}"]),
        "0"
    );
    // The name kubectl sent must be valid, as for JSON.
    let out = g.kubectl(&["create", "namespace", "Bad_Name"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Invalid value: \"Bad_Name\""), "{err}");
    // drain: its pods leave the node and come back elsewhere.
    let on = |node: &str| {
        ok(&[
            "get",
            "pods",
            "-n",
            "team-a",
            "--field-selector",
            &format!("spec.nodeName={node}"),
            "-o",
            "name",
        ])
    };
    let node = ["node-0", "node-1", "node-2"]
        .into_iter()
        .find(|n| !on(n).trim().is_empty())
        .unwrap();
    let out = ok(&["drain", node, "--ignore-daemonsets", "--timeout=60s"]);
    assert!(out.ends_with(&format!("node/{node} drained")), "{out}");
    assert!(out.contains("evicting pod team-a/web-"), "{out}");
    assert!(on(node).trim().is_empty());
    g.wait_until(
        &["get", "deploy", "web", "-n", "team-a", "--no-headers"],
        30,
        |o| rows(o).first().is_some_and(|r| r[1] == "3/3"),
    );
}

/// NoExecute taints evict the pods that do not tolerate them, now or after their
/// tolerationSeconds; removing the taint cancels what was scheduled.
#[test]
fn no_execute_taints_evict() {
    let Some(g) = common::cluster(&[]) else {
        return;
    };
    let tolerating = |seconds: Option<u32>| {
        let seconds = seconds.map_or(String::new(), |s| format!("\n    tolerationSeconds: {s}"));
        format!(
            "  nodeName: node-1\n  tolerations:\n  - key: maintenance\n    operator: Exists\n    effect: NoExecute{seconds}\n"
        )
    };
    for (name, spec) in [
        ("plain", "  nodeName: node-1\n".to_string()),
        ("patient", tolerating(Some(3))),
        ("waiting", tolerating(Some(120))),
        ("stubborn", tolerating(None)),
    ] {
        let p = g.path(&format!("{name}.yaml"));
        std::fs::write(&p, pod_yaml(name, &spec, "nginx")).unwrap();
        g.ok(&["apply", "-f", p.to_str().unwrap()]);
    }
    g.wait_until(&["get", "pods", "--no-headers"], 30, |o| {
        count_running(o) == 4
    });
    g.ok(&["taint", "nodes", "node-1", "maintenance=now:NoExecute"]);
    let names = |o: &str| -> Vec<String> { rows(o).iter().map(|r| r[0].clone()).collect() };
    let left = g.wait_until(&["get", "pods", "--no-headers"], 20, |o| {
        !names(o).contains(&"plain".to_string())
    });
    assert!(names(&left).contains(&"patient".to_string()), "{left}");
    let left = g.wait_until(&["get", "pods", "--no-headers"], 30, |o| {
        !names(o).contains(&"patient".to_string())
    });
    assert_eq!(names(&left), ["stubborn", "waiting"], "{left}");
    let events = |reason: &str| {
        g.ok(&[
            "get",
            "events",
            "--field-selector",
            &format!("reason={reason}"),
            "-o",
            "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
        ])
    };
    let marked = events("TaintManagerEviction");
    assert!(
        marked.contains("Marking for deletion Pod default/plain"),
        "{marked}"
    );
    assert!(
        marked.contains("Marking for deletion Pod default/patient"),
        "{marked}"
    );
    g.ok(&["taint", "nodes", "node-1", "maintenance-"]);
    let cancelled = g.wait_until(
        &[
            "get",
            "events",
            "--field-selector",
            "reason=TaintManagerEviction",
            "-o",
            "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
        ],
        20,
        |o| o.contains("Cancelling deletion of Pod default/waiting"),
    );
    assert!(!cancelled.contains("default/stubborn"), "{cancelled}");
    let left = g.ok(&["get", "pods", "--no-headers"]);
    assert_eq!(names(&left), ["stubborn", "waiting"], "{left}");
}

#[test]
fn logs_tell_what_the_runtime_did() {
    let Some(g) = common::cluster(&[]) else {
        return;
    };
    g.ok(&[
        "run",
        "once",
        "--image=busybox",
        "--restart=Never",
        "--",
        "sh",
        "-c",
        "exit 0",
    ]);
    g.ok(&[
        "run",
        "crash",
        "--image=busybox",
        "--",
        "sh",
        "-c",
        "sleep 1; exit 3",
    ]);
    g.ok(&["run", "web", "--image=nginx:1.25"]);
    g.wait_until(
        &["get", "pod", "once", "-o", "jsonpath={.status.phase}"],
        30,
        |o| o == "Succeeded",
    );
    let out = g.ok(&["logs", "once"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0]
            .starts_with("ger: simulated container once started from image busybox on node node-")
            && lines[0].ends_with(" (restart 0)"),
        "{out}"
    );
    assert_eq!(
        lines[1],
        "ger: container once exited with code 0 (Completed)"
    );
    let stamped = g.ok(&["logs", "once", "--timestamps", "--tail=1"]);
    assert!(
        stamped.len() > 31
            && stamped.as_bytes()[10] == b'T'
            && stamped[..31].ends_with("Z ")
            && stamped.ends_with(" exited with code 0 (Completed)\n"),
        "{stamped}"
    );
    // A crash-looping container: its previous instance.
    g.wait_until(
        &[
            "get",
            "pod",
            "crash",
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount}",
        ],
        30,
        |o| o.parse::<i32>().is_ok_and(|n| n >= 1),
    );
    assert_eq!(
        g.ok(&["logs", "crash", "--previous", "--tail=1"]),
        "ger: container crash exited with code 3 (Error)\n"
    );
    assert!(
        g.fails(&["logs", "crash", "-c", "other"])
            .contains("container other is not valid for pod crash"),
    );
    // -f follows a running container until it ends (here: its pod goes away).
    g.wait_until(
        &["get", "pod", "web", "-o", "jsonpath={.status.phase}"],
        30,
        |o| o == "Running",
    );
    std::thread::scope(|s| {
        let follow = s.spawn(|| g.ok(&["logs", "-f", "web"]));
        std::thread::sleep(std::time::Duration::from_secs(2));
        assert!(
            !follow.is_finished(),
            "logs -f returned while the container runs"
        );
        g.ok(&["delete", "pod", "web", "--wait=false"]);
        let out = follow.join().unwrap();
        assert!(
            out.starts_with("ger: simulated container web started from image nginx:1.25")
                && out.lines().count() == 1,
            "{out}"
        );
    });
    // A pod no node takes.
    g.ok(&[
        "run",
        "unplaced",
        "--image=busybox",
        "--overrides",
        r#"{"spec":{"nodeSelector":{"disk":"none"}}}"#,
    ]);
    assert!(
        g.fails(&["logs", "unplaced"])
            .contains("pod unplaced does not have a host assigned"),
    );
}

#[test]
fn services_publish_their_ready_pods() {
    let Some(g) = common::cluster(&[]) else {
        return;
    };
    let ep = g.ok(&[
        "get",
        "endpoints",
        "kubernetes",
        "-o",
        "jsonpath={.subsets[0].ports[0].port}",
    ]);
    assert!(g.server.ends_with(&format!(":{ep}")), "{} {ep}", g.server);
    g.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.25",
        "--replicas=3",
    ]);
    g.ok(&[
        "expose",
        "deployment",
        "web",
        "--port=80",
        "--target-port=8080",
    ]);
    let ready_ips = |o: &str| {
        o.split_whitespace()
            .filter(|a| a.starts_with("10.244."))
            .count()
    };
    let listed = g.wait_until(
        &[
            "get",
            "endpoints",
            "web",
            "-o",
            "jsonpath={.subsets[*].addresses[*].ip}",
        ],
        30,
        |o| ready_ips(o) == 3,
    );
    let pod_ips = g.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].status.podIP}",
    ]);
    let mut a: Vec<&str> = listed.split_whitespace().collect();
    let mut b: Vec<&str> = pod_ips.split_whitespace().collect();
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b);
    assert_eq!(
        g.ok(&[
            "get",
            "endpoints",
            "web",
            "-o",
            "jsonpath={.subsets[0].ports[0].port}"
        ]),
        "8080"
    );
    // The slice says the same, and `describe` reads it.
    let slice = g.ok(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
        "-o",
        "jsonpath={.items[*].endpoints[*].addresses[0]}",
    ]);
    let mut c: Vec<&str> = slice.split_whitespace().collect();
    c.sort_unstable();
    assert_eq!(c, b);
    let d = g.ok(&["describe", "svc", "web"]);
    assert!(
        d.lines()
            .any(|l| l.starts_with("Endpoints:") && l.matches(":8080").count() == 3),
        "{d}"
    );
    // Fewer pods, fewer addresses; no Service, no Endpoints.
    g.ok(&["scale", "deployment", "web", "--replicas=1"]);
    g.wait_until(
        &[
            "get",
            "endpoints",
            "web",
            "-o",
            "jsonpath={.subsets[*].addresses[*].ip}",
        ],
        30,
        |o| ready_ips(o) == 1,
    );
    g.ok(&["delete", "svc", "web"]);
    g.wait_until(
        &["get", "endpoints,endpointslices", "-o", "name"],
        30,
        |o| !o.contains("web"),
    );
}
