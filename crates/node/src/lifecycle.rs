//! The simulated kubelet's pod lifecycle as a pure function: from a pod and the time, the
//! status to write next (if any) and when to look again.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{Value, json};

use crate::{FleetOptions, KUBELET_VERSION};

/// One step of the lifecycle.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The whole new `status`, when it changes.
    pub status: Option<Value>,
    /// The pod gets its addresses in this step.
    pub needs_ip: bool,
    /// Look again after this long.
    pub next: Option<Duration>,
}

/// Where a pod is, read from its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Bound,
    Creating,
    PullFailing,
    Running,
    Ready,
    CrashLooping,
    Finished,
}

const CRASH_BACKOFF_START: u64 = 10;
const CRASH_BACKOFF_MAX: u64 = 300;
const PULL_BACKOFF: Duration = Duration::from_secs(10);
const PULL_ERROR_SHOWN: Duration = Duration::from_secs(2);

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn parse(s: Option<&str>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// How a container's command ends, if it does: `Some(exit code)`.
pub fn exit_code(c: &Container) -> Option<i32> {
    let words: Vec<&str> = c
        .command
        .iter()
        .flatten()
        .chain(c.args.iter().flatten())
        .map(String::as_str)
        .collect();
    let first = words.first().copied().unwrap_or("");
    match first.rsplit('/').next().unwrap_or("") {
        "false" => return Some(1),
        "true" => return Some(0),
        _ => {}
    }
    let script = words.join(" ");
    let idx = script.find("exit ")?;
    let code: String = script[idx + 5..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    code.parse().ok()
}

/// Whether the simulated registry lacks `image`.
pub fn image_missing(image: &str, opts: &FleetOptions) -> bool {
    opts.missing_images.iter().any(|p| {
        if p.starts_with('-') {
            image.ends_with(p.as_str())
        } else {
            image.contains(p.as_str())
        }
    })
}

fn containers(pod: &Pod) -> &[Container] {
    pod.spec.as_ref().map_or(&[], |s| s.containers.as_slice())
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

fn status_value(pod: &Pod) -> Value {
    serde_json::to_value(&pod.status).unwrap_or(Value::Null)
}

/// The stage the status shows.
pub fn stage(pod: &Pod) -> Stage {
    let s = status_value(pod);
    if let Some("Succeeded" | "Failed") = s["phase"].as_str() {
        return Stage::Finished;
    }
    if s["startTime"].is_null() {
        return Stage::Bound;
    }
    let statuses = s["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let waiting = |r: &str| {
        statuses
            .iter()
            .any(|c| c["state"]["waiting"]["reason"] == r)
    };
    if waiting("ErrImagePull") || waiting("ImagePullBackOff") {
        return Stage::PullFailing;
    }
    if waiting("CrashLoopBackOff") {
        return Stage::CrashLooping;
    }
    if waiting("ContainerCreating") || statuses.is_empty() {
        return Stage::Creating;
    }
    let ready = s["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    if ready { Stage::Ready } else { Stage::Running }
}

/// How long after starting the pod becomes Ready.
fn readiness_wait(pod: &Pod, opts: &FleetOptions) -> Duration {
    let probe = containers(pod)
        .iter()
        .filter_map(|c| c.readiness_probe.as_ref())
        .filter_map(|p| p.initial_delay_seconds)
        .max()
        .unwrap_or(0);
    opts.ready_delay + Duration::from_secs(u64::try_from(probe).unwrap_or(0))
}

struct Conditions {
    initialized: bool,
    containers_ready: bool,
    reason: Option<&'static str>,
}

fn conditions(pod: &Pod, c: Conditions, now: DateTime<Utc>) -> Value {
    let old = status_value(pod);
    let old_conds = old["conditions"].as_array().cloned().unwrap_or_default();
    let cond = |ty: &str, ok: bool, reason: Option<&str>| {
        let status = if ok { "True" } else { "False" };
        let prev = old_conds.iter().find(|c| c["type"] == ty);
        let since = prev
            .filter(|p| p["status"] == status)
            .and_then(|p| p["lastTransitionTime"].as_str().map(String::from))
            .unwrap_or_else(|| ts(now));
        let mut v = json!({"type": ty, "status": status, "lastProbeTime": null, "lastTransitionTime": since});
        if let Some(r) = reason.filter(|_| !ok) {
            v["reason"] = json!(r);
        }
        v
    };
    let scheduled = old_conds
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .cloned()
        .unwrap_or_else(|| cond("PodScheduled", true, None));
    let mut out = vec![
        cond("PodReadyToStartContainers", true, None),
        cond("Initialized", c.initialized, None),
        cond("Ready", c.containers_ready, c.reason),
        cond("ContainersReady", c.containers_ready, c.reason),
        scheduled,
    ];
    // Conditions other components own (readiness gates, PodNeedUpgrade, …) stay as they are:
    // the status is written as a merge patch, which replaces the whole list.
    let owned = |t: &Value| out.iter().any(|c| c["type"] == *t);
    let foreign: Vec<Value> = old_conds
        .iter()
        .filter(|c| !owned(&c["type"]))
        .cloned()
        .collect();
    out.extend(foreign);
    Value::Array(out)
}

fn container_status(c: &Container, state: Value, ready: bool, restarts: i64, last: Value) -> Value {
    let started = state.get("running").is_some();
    json!({
        "name": c.name,
        "image": c.image.clone().unwrap_or_default(),
        "imageID": "",
        "containerID": if started || state.get("terminated").is_some() { json!(format!("ger://{}", c.name)) } else { Value::Null },
        "ready": ready,
        "restartCount": restarts,
        "started": started,
        "state": state,
        "lastState": last,
    })
}

/// The next step for `pod` at `now`.
pub fn plan(pod: &Pod, opts: &FleetOptions, now: DateTime<Utc>) -> Plan {
    let old = status_value(pod);
    let start = parse(old["startTime"].as_str()).unwrap_or(now);
    let stage = stage(pod);
    let wait = |until: DateTime<Utc>| (until - now).to_std().ok().filter(|d| !d.is_zero());
    match stage {
        Stage::Finished | Stage::Ready => Plan {
            status: None,
            needs_ip: false,
            next: None,
        },
        Stage::Bound => {
            if opts.create_delay.is_zero() {
                return run(pod, opts, now, now);
            }
            let statuses: Vec<Value> = containers(pod)
                .iter()
                .map(|c| {
                    container_status(
                        c,
                        json!({"waiting": {"reason": "ContainerCreating"}}),
                        false,
                        0,
                        json!({}),
                    )
                })
                .collect();
            let mut status = json!({
                "phase": "Pending",
                "startTime": ts(now),
                "conditions": conditions(pod, Conditions { initialized: true, containers_ready: false, reason: Some("ContainersNotReady") }, now),
                "containerStatuses": statuses,
            });
            if let Some(q) = old.get("qosClass") {
                status["qosClass"] = q.clone();
            }
            Plan {
                status: Some(status),
                needs_ip: false,
                next: Some(opts.create_delay),
            }
        }
        Stage::Creating => {
            let due = start + chrono::Duration::from_std(opts.create_delay).unwrap_or_default();
            match wait(due) {
                Some(d) => Plan {
                    status: None,
                    needs_ip: false,
                    next: Some(d),
                },
                None => run(pod, opts, start, now),
            }
        }
        Stage::PullFailing => pull_failing(pod),
        Stage::Running => {
            let started = old["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| parse(c["state"]["running"]["startedAt"].as_str()))
                .max()
                .unwrap_or(now);
            let due =
                started + chrono::Duration::from_std(readiness_wait(pod, opts)).unwrap_or_default();
            match wait(due) {
                Some(d) => Plan {
                    status: None,
                    needs_ip: false,
                    next: Some(d),
                },
                None => run(pod, opts, start, now),
            }
        }
        Stage::CrashLooping => {
            let finished = old["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| parse(c["lastState"]["terminated"]["finishedAt"].as_str()))
                .max()
                .unwrap_or(now);
            let restarts = old["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["restartCount"].as_i64())
                .max()
                .unwrap_or(0);
            let due = finished + chrono::Duration::seconds(crash_backoff(restarts) as i64);
            match wait(due) {
                Some(d) => Plan {
                    status: None,
                    needs_ip: false,
                    next: Some(d),
                },
                None => run(pod, opts, start, now),
            }
        }
    }
}

fn crash_backoff(restarts: i64) -> u64 {
    let n = u32::try_from((restarts - 1).clamp(0, 10)).unwrap_or(0);
    (CRASH_BACKOFF_START << n).min(CRASH_BACKOFF_MAX)
}

fn pull_failing(pod: &Pod) -> Plan {
    let old = status_value(pod);
    let mut statuses = old["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut next = PULL_BACKOFF;
    for c in statuses.iter_mut() {
        let image = c["image"].as_str().unwrap_or("").to_string();
        match c["state"]["waiting"]["reason"].as_str() {
            Some("ErrImagePull") => {
                c["state"] = json!({"waiting": {"reason": "ImagePullBackOff",
                    "message": format!("Back-off pulling image \"{image}\"")}});
            }
            Some("ImagePullBackOff") => {
                c["state"] = json!({"waiting": {"reason": "ErrImagePull",
                    "message": pull_error(&image)}});
                next = PULL_ERROR_SHOWN;
            }
            _ => {}
        }
    }
    let mut status = old.clone();
    status["containerStatuses"] = json!(statuses);
    Plan {
        status: Some(status),
        needs_ip: false,
        next: Some(next),
    }
}

fn pull_error(image: &str) -> String {
    format!(
        "failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": {image}: not found"
    )
}

/// Containers start (or fail to): the status once the sandbox is up at `now`.
fn run(pod: &Pod, opts: &FleetOptions, start: DateTime<Utc>, now: DateTime<Utc>) -> Plan {
    let old = status_value(pod);
    let old_statuses = old["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let policy = restart_policy(pod);
    let mut statuses = Vec::new();
    let mut pulling = false;
    let mut all_ready = true;
    let mut any_running = false;
    let mut finished: Vec<i32> = Vec::new();
    let mut crash_next: Option<Duration> = None;
    let ready_due = old_statuses
        .iter()
        .filter_map(|c| parse(c["state"]["running"]["startedAt"].as_str()))
        .max()
        .unwrap_or(now)
        + chrono::Duration::from_std(readiness_wait(pod, opts)).unwrap_or_default();
    let ready_now = ready_due <= now;
    for c in containers(pod) {
        let prev = old_statuses.iter().find(|s| s["name"] == c.name.as_str());
        let restarts = prev.and_then(|p| p["restartCount"].as_i64()).unwrap_or(0);
        let image = c.image.clone().unwrap_or_default();
        if image_missing(&image, opts) {
            pulling = true;
            all_ready = false;
            statuses.push(container_status(
                c,
                json!({"waiting": {"reason": "ErrImagePull", "message": pull_error(&image)}}),
                false,
                0,
                json!({}),
            ));
            continue;
        }
        match exit_code(c) {
            Some(code) => {
                let reason = if code == 0 { "Completed" } else { "Error" };
                let terminated = json!({"exitCode": code, "reason": reason,
                    "startedAt": ts(now), "finishedAt": ts(now), "containerID": format!("ger://{}", c.name)});
                let restarts_here = policy == "Always" || (policy == "OnFailure" && code != 0);
                all_ready = false;
                if restarts_here {
                    let n = restarts + 1;
                    let backoff = crash_backoff(n);
                    crash_next = Some(Duration::from_secs(backoff));
                    any_running = true;
                    statuses.push(container_status(
                        c,
                        json!({"waiting": {"reason": "CrashLoopBackOff",
                            "message": format!("back-off {backoff}s restarting failed container={} pod={}_{}({})",
                                c.name, pod.metadata.name.as_deref().unwrap_or(""),
                                pod.metadata.namespace.as_deref().unwrap_or(""),
                                pod.metadata.uid.as_deref().unwrap_or(""))}}),
                        false,
                        n,
                        json!({"terminated": terminated}),
                    ));
                } else {
                    finished.push(code);
                    statuses.push(container_status(
                        c,
                        json!({"terminated": terminated}),
                        false,
                        restarts,
                        json!({}),
                    ));
                }
            }
            None => {
                any_running = true;
                let started_at = prev
                    .and_then(|p| {
                        p["state"]["running"]["startedAt"]
                            .as_str()
                            .map(String::from)
                    })
                    .unwrap_or_else(|| ts(now));
                if !ready_now {
                    all_ready = false;
                }
                statuses.push(container_status(
                    c,
                    json!({"running": {"startedAt": started_at}}),
                    ready_now,
                    restarts,
                    prev.map(|p| p["lastState"].clone()).unwrap_or(json!({})),
                ));
            }
        }
    }
    let total = containers(pod).len();
    let (phase, reason) = if pulling {
        ("Pending", Some("ContainersNotReady"))
    } else if !finished.is_empty() && finished.len() == total {
        if finished.iter().all(|c| *c == 0) {
            ("Succeeded", Some("PodCompleted"))
        } else {
            ("Failed", Some("PodFailed"))
        }
    } else if any_running {
        ("Running", Some("ContainersNotReady"))
    } else {
        ("Pending", Some("ContainersNotReady"))
    };
    let ready = all_ready && phase == "Running";
    let mut status = json!({
        "phase": phase,
        "startTime": ts(start),
        "conditions": conditions(pod, Conditions { initialized: true, containers_ready: ready, reason }, now),
        "containerStatuses": statuses,
    });
    if let Some(q) = old.get("qosClass") {
        status["qosClass"] = q.clone();
    }
    for k in ["podIP", "podIPs", "hostIP", "hostIPs"] {
        if let Some(v) = old.get(k).filter(|v| !v.is_null()) {
            status[k] = v.clone();
        }
    }
    let needs_ip = old.get("podIP").is_none_or(Value::is_null) && !pulling;
    let next = if pulling {
        Some(PULL_ERROR_SHOWN)
    } else if let Some(d) = crash_next {
        Some(d)
    } else if phase == "Running" && !ready {
        Some(
            (ready_due - now)
                .to_std()
                .unwrap_or(Duration::ZERO)
                .max(Duration::from_millis(1)),
        )
    } else {
        None
    };
    Plan {
        status: Some(status),
        needs_ip,
        next,
    }
}

/// A simulated kubelet's node status.
pub fn node_status(ip: &str, opts: &FleetOptions) -> k8s_openapi::api::core::v1::NodeStatus {
    let now = ts(Utc::now());
    let cond = |ty: &str, status: &str, reason: &str, message: &str| {
        json!({"type": ty, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    let resources = json!({"cpu": opts.cpu, "memory": opts.memory, "pods": opts.max_pods.to_string(),
        "ephemeral-storage": "100Gi"});
    serde_json::from_value(json!({
        "capacity": resources,
        "allocatable": resources,
        "addresses": [{"type": "InternalIP", "address": ip}],
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": "", "systemUUID": "", "bootID": "",
            "kernelVersion": "6.1.0-ger", "osImage": "ger simulated node",
            "containerRuntimeVersion": "ger://1.0.0", "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION, "operatingSystem": "linux", "architecture": "amd64",
        },
    }))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(containers: Value, policy: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"nodeName": "node-0", "restartPolicy": policy, "containers": containers},
            "status": {"phase": "Pending", "qosClass": "BestEffort",
                "conditions": [{"type": "PodScheduled", "status": "True"}]},
        }))
        .unwrap()
    }

    fn apply(p: &mut Pod, plan: &Plan) {
        if let Some(s) = &plan.status {
            let mut s = s.clone();
            if plan.needs_ip {
                s["podIP"] = json!("10.244.0.2");
            }
            p.status = serde_json::from_value(s).unwrap();
        }
    }

    fn zero() -> FleetOptions {
        FleetOptions {
            create_delay: Duration::ZERO,
            ready_delay: Duration::ZERO,
            ..FleetOptions::default()
        }
    }

    #[test]
    fn zero_delays_go_straight_to_ready() {
        let mut p = pod(json!([{"name": "c", "image": "nginx"}]), "Always");
        let plan = plan(&p, &zero(), Utc::now());
        assert!(plan.needs_ip);
        apply(&mut p, &plan);
        assert_eq!(stage(&p), Stage::Ready);
        assert_eq!(plan.next, None);
    }

    #[test]
    fn foreign_conditions_are_kept() {
        let mut p = pod(json!([{"name": "c", "image": "nginx"}]), "Always");
        let extra = json!({"type": "PodNeedUpgrade", "status": "True", "message": "controllerrevision: x",
            "lastTransitionTime": "2025-01-01T00:00:00Z"});
        p.status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()
            .push(serde_json::from_value(extra.clone()).unwrap());
        let next = plan(&p, &zero(), Utc::now());
        apply(&mut p, &next);
        assert_eq!(stage(&p), Stage::Ready);
        let conds = serde_json::to_value(&p.status).unwrap()["conditions"].clone();
        let types: Vec<&str> = conds
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled",
                "PodNeedUpgrade"
            ]
        );
        assert_eq!(conds[5], extra);
    }

    #[test]
    fn stages_with_delays() {
        let opts = FleetOptions::default();
        // Status times have whole seconds: start on one so the stage delays are exact.
        let t0 = chrono::Timelike::with_nanosecond(&Utc::now(), 0).unwrap();
        let mut p = pod(json!([{"name": "c", "image": "nginx"}]), "Always");
        let s1 = plan(&p, &opts, t0);
        apply(&mut p, &s1);
        assert_eq!(stage(&p), Stage::Creating);
        assert_eq!(s1.next, Some(opts.create_delay));
        assert_eq!(plan(&p, &opts, t0).status, None, "nothing before the delay");
        let t1 = t0 + chrono::Duration::seconds(1);
        let s2 = plan(&p, &opts, t1);
        apply(&mut p, &s2);
        assert_eq!(stage(&p), Stage::Running);
        let t2 = t1 + chrono::Duration::seconds(1);
        let next = plan(&p, &opts, t2);
        apply(&mut p, &next);
        assert_eq!(stage(&p), Stage::Ready);
    }

    #[test]
    fn faults() {
        let opts = zero();
        let mut p = pod(
            json!([{"name": "c", "image": "nginx:1.0-missing"}]),
            "Always",
        );
        let next = plan(&p, &opts, Utc::now());
        apply(&mut p, &next);
        assert_eq!(stage(&p), Stage::PullFailing);
        let st = serde_json::to_value(&p.status).unwrap();
        assert_eq!(
            st["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ErrImagePull"
        );
        let next = plan(&p, &opts, Utc::now());
        apply(&mut p, &next);
        let st = serde_json::to_value(&p.status).unwrap();
        assert_eq!(
            st["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ImagePullBackOff"
        );

        let mut p = pod(
            json!([{"name": "c", "image": "busybox", "command": ["sh", "-c", "exit 1"]}]),
            "Always",
        );
        let next = plan(&p, &opts, Utc::now());
        apply(&mut p, &next);
        assert_eq!(stage(&p), Stage::CrashLooping);
        let st = serde_json::to_value(&p.status).unwrap();
        assert_eq!(st["phase"], "Running");
        assert_eq!(st["containerStatuses"][0]["restartCount"], 1);
        let later = Utc::now() + chrono::Duration::seconds(11);
        let next = plan(&p, &opts, later);
        apply(&mut p, &next);
        let st = serde_json::to_value(&p.status).unwrap();
        assert_eq!(
            st["containerStatuses"][0]["restartCount"], 2,
            "restarts grow"
        );

        let mut p = pod(
            json!([{"name": "c", "image": "busybox", "command": ["false"]}]),
            "Never",
        );
        let next = plan(&p, &opts, Utc::now());
        apply(&mut p, &next);
        assert_eq!(serde_json::to_value(&p.status).unwrap()["phase"], "Failed");
        let mut p = pod(
            json!([{"name": "c", "image": "busybox", "command": ["true"]}]),
            "OnFailure",
        );
        let next = plan(&p, &opts, Utc::now());
        apply(&mut p, &next);
        assert_eq!(
            serde_json::to_value(&p.status).unwrap()["phase"],
            "Succeeded"
        );
    }

    #[test]
    fn exit_codes_and_images() {
        let c = |cmd: Value| -> Container {
            serde_json::from_value(json!({"name": "c", "command": cmd})).unwrap()
        };
        assert_eq!(exit_code(&c(json!(["false"]))), Some(1));
        assert_eq!(
            exit_code(&c(json!(["/bin/sh", "-c", "sleep 1; exit 3"]))),
            Some(3)
        );
        assert_eq!(exit_code(&c(json!(["nginx", "-g", "daemon off;"]))), None);
        let opts = FleetOptions::default();
        assert!(image_missing("nginx:1.0-missing", &opts));
        assert!(image_missing("doesnotexist/app:v1", &opts));
        assert!(!image_missing("nginx:1.25", &opts));
    }
}
