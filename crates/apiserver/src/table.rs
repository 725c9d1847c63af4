//! `meta.k8s.io/v1` Table columns and cells, as kube-apiserver 1.32 prints each kind.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::selector;

const NONE: &str = "<none>";

fn col(name: &str, ty: &str, description: &str, priority: u8) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({"name": name, "type": ty, "format": format, "description": description, "priority": priority})
}

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.";

/// The column definitions of a resource's table.
pub fn column_definitions(plural: &str) -> Vec<Value> {
    let name = || col("Name", "string", NAME_DESC, 0);
    let age = || col("Age", "string", AGE_DESC, 0);
    let workload_wide = || {
        vec![
            col(
                "Containers",
                "string",
                "Names of each container in the template.",
                1,
            ),
            col(
                "Images",
                "string",
                "Images referenced by each container in the template.",
                1,
            ),
            col("Selector", "string", "Label selector for pods.", 1),
        ]
    };
    let mut cols = match plural {
        "pods" => vec![
            name(),
            col(
                "Ready",
                "string",
                "The aggregate readiness state of this pod for accepting traffic.",
                0,
            ),
            col(
                "Status",
                "string",
                "The aggregate status of the containers in this pod.",
                0,
            ),
            col(
                "Restarts",
                "string",
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
                0,
            ),
            age(),
            col(
                "IP",
                "string",
                "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
                1,
            ),
            col(
                "Node",
                "string",
                "NodeName is a request to schedule this pod onto a specific node.",
                1,
            ),
            col(
                "Nominated Node",
                "string",
                "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods.",
                1,
            ),
            col(
                "Readiness Gates",
                "string",
                "If specified, all readiness gates will be evaluated for pod readiness.",
                1,
            ),
        ],
        "nodes" => vec![
            name(),
            col("Status", "string", "The status of the node", 0),
            col("Roles", "string", "The roles of the node", 0),
            age(),
            col(
                "Version",
                "string",
                "Kubelet Version reported by the node.",
                0,
            ),
            col(
                "Internal-IP",
                "string",
                "List of addresses reachable to the node. Queried from cloud provider, if available.",
                1,
            ),
            col(
                "External-IP",
                "string",
                "List of addresses reachable to the node. Queried from cloud provider, if available.",
                1,
            ),
            col(
                "OS-Image",
                "string",
                "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
                1,
            ),
            col(
                "Kernel-Version",
                "string",
                "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
                1,
            ),
            col(
                "Container-Runtime",
                "string",
                "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
                1,
            ),
        ],
        "deployments" => {
            let mut v = vec![
                name(),
                col("Ready", "string", "Number of the pod with ready state", 0),
                col(
                    "Up-to-date",
                    "integer",
                    "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
                    0,
                ),
                col(
                    "Available",
                    "integer",
                    "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
                    0,
                ),
                age(),
            ];
            v.extend(workload_wide());
            v
        }
        "replicasets" | "replicationcontrollers" => {
            let mut v = vec![
                name(),
                col(
                    "Desired",
                    "integer",
                    "Replicas is the number of desired replicas.",
                    0,
                ),
                col(
                    "Current",
                    "integer",
                    "Replicas is the most recently observed number of replicas.",
                    0,
                ),
                col(
                    "Ready",
                    "integer",
                    "The number of ready replicas for this replica set.",
                    0,
                ),
                age(),
            ];
            v.extend(workload_wide());
            v
        }
        "daemonsets" => {
            let mut v = vec![
                name(),
                col(
                    "Desired",
                    "integer",
                    "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod).",
                    0,
                ),
                col(
                    "Current",
                    "integer",
                    "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
                    0,
                ),
                col(
                    "Ready",
                    "integer",
                    "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
                    0,
                ),
                col(
                    "Up-to-date",
                    "integer",
                    "The total number of nodes that are running updated daemon pod",
                    0,
                ),
                col(
                    "Available",
                    "integer",
                    "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)",
                    0,
                ),
                col(
                    "Node Selector",
                    "string",
                    "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node.",
                    0,
                ),
                age(),
            ];
            v.extend(workload_wide());
            v
        }
        "controllerrevisions" => vec![
            name(),
            col("Controller", "string", "Controller of the object", 0),
            col(
                "Revision",
                "string",
                "Revision indicates the revision of the state represented by Data.",
                0,
            ),
            age(),
        ],
        "events" => vec![
            col(
                "Last Seen",
                "string",
                "Time when this Event was last observed.",
                0,
            ),
            col(
                "Type",
                "string",
                "Type of this event (Normal, Warning), new types could be added in the future.",
                0,
            ),
            col(
                "Reason",
                "string",
                "This should be a short, machine understandable string that gives the reason for this event being generated.",
                0,
            ),
            col(
                "Object",
                "string",
                "The object that this event is about.",
                0,
            ),
            col(
                "Subobject",
                "string",
                "The subobject that this event is about.",
                1,
            ),
            col(
                "Source",
                "string",
                "The component reporting this event. Should be a short machine understandable string.",
                1,
            ),
            col(
                "Message",
                "string",
                "A human-readable description of the status of this operation.",
                0,
            ),
            col(
                "First Seen",
                "string",
                "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
                1,
            ),
            col(
                "Count",
                "string",
                "The number of times this event has occurred.",
                1,
            ),
            {
                let mut n = col("Name", "string", NAME_DESC, 1);
                n["format"] = json!("name");
                n
            },
        ],
        "namespaces" => vec![
            name(),
            col("Status", "string", "The status of the namespace", 0),
            age(),
        ],
        "leases" => vec![
            name(),
            col("Holder", "string", "The holder of the lease", 0),
            age(),
        ],
        "configmaps" => vec![
            name(),
            col("Data", "string", "Data contains the configuration data.", 0),
            age(),
        ],
        "secrets" => vec![
            name(),
            col(
                "Type",
                "string",
                "Used to facilitate programmatic handling of secret data.",
                0,
            ),
            col("Data", "string", "Data contains the secret data.", 0),
            age(),
        ],
        "endpointslices" => vec![
            name(),
            col(
                "AddressType",
                "string",
                "The address type of the endpoint slice.",
                0,
            ),
            col("Ports", "string", "The ports of the endpoint slice.", 0),
            col(
                "Endpoints",
                "string",
                "The endpoints of the endpoint slice.",
                0,
            ),
            age(),
        ],
        "endpoints" => vec![
            name(),
            col("Endpoints", "string", "Endpoints of the service", 0),
            age(),
        ],
        "services" => vec![
            name(),
            col("Type", "string", "The type of service.", 0),
            col(
                "Cluster-IP",
                "string",
                "The cluster IP assigned to the service.",
                0,
            ),
            col("External-IP", "string", "External IPs of the service.", 0),
            col("Port(s)", "string", "The ports of the service.", 0),
            age(),
            col(
                "Selector",
                "string",
                "The label selector of the service.",
                1,
            ),
        ],
        "serviceaccounts" => vec![
            name(),
            col(
                "Secrets",
                "string",
                "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
                0,
            ),
            age(),
        ],
        _ => vec![name(), age()],
    };
    // Every column shares one shape; keep the list stable for clients that index it.
    cols.shrink_to_fit();
    cols
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn i(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn arr<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        NONE.to_string()
    } else {
        s.to_string()
    }
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The age of a timestamp as kubectl prints it (`<unknown>` when unset).
fn age_of(ts: &str, now: DateTime<Utc>) -> String {
    match parse_time(ts) {
        Some(t) => human_duration(now - t),
        None => "<unknown>".to_string(),
    }
}

/// apimachinery's `duration.HumanDuration`.
pub fn human_duration(d: chrono::TimeDelta) -> String {
    let secs = d.num_seconds();
    if secs < -1 {
        return "<invalid>".to_string();
    }
    if secs < 0 {
        return "0s".to_string();
    }
    if secs < 60 * 2 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn containers(obj: &Value, spec: &str) -> (String, String) {
    let cs = arr(obj, &format!("{spec}/containers"));
    let names: Vec<&str> = cs.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = cs.iter().map(|c| s(c, "/image")).collect();
    (names.join(","), images.join(","))
}

fn label_selector(obj: &Value) -> String {
    selector::label_selector_string(obj.pointer("/spec/selector")).unwrap_or_default()
}

fn none_if_empty(s: String) -> String {
    if s.is_empty() { NONE.to_string() } else { s }
}

/// The cells of one row.
pub fn row_cells(plural: &str, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let name = json!(s(obj, "/metadata/name"));
    let age = json!(age_of(s(obj, "/metadata/creationTimestamp"), now));
    match plural {
        "pods" => pod_cells(obj, now),
        "nodes" => node_cells(obj, now),
        "deployments" => {
            let (names, images) = containers(obj, "/spec/template/spec");
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    i(obj, "/status/readyReplicas"),
                    i(obj, "/spec/replicas")
                )),
                json!(i(obj, "/status/updatedReplicas")),
                json!(i(obj, "/status/availableReplicas")),
                age,
                json!(names),
                json!(images),
                json!(label_selector(obj)),
            ]
        }
        "replicasets" | "replicationcontrollers" => {
            let (names, images) = containers(obj, "/spec/template/spec");
            let sel = if plural == "replicasets" {
                none_if_empty(label_selector(obj))
            } else {
                selector::format_labels(obj.pointer("/spec/selector"))
            };
            vec![
                name,
                json!(i(obj, "/spec/replicas")),
                json!(i(obj, "/status/replicas")),
                json!(i(obj, "/status/readyReplicas")),
                age,
                json!(names),
                json!(images),
                json!(sel),
            ]
        }
        "daemonsets" => {
            let (names, images) = containers(obj, "/spec/template/spec");
            let node_sel = selector::format_labels(obj.pointer("/spec/template/spec/nodeSelector"));
            vec![
                name,
                json!(i(obj, "/status/desiredNumberScheduled")),
                json!(i(obj, "/status/currentNumberScheduled")),
                json!(i(obj, "/status/numberReady")),
                json!(i(obj, "/status/updatedNumberScheduled")),
                json!(i(obj, "/status/numberAvailable")),
                json!(node_sel),
                age,
                json!(names),
                json!(images),
                json!(none_if_empty(label_selector(obj))),
            ]
        }
        "controllerrevisions" => {
            let controller = arr(obj, "/metadata/ownerReferences")
                .iter()
                .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
                .map(|r| {
                    let api = s(r, "/apiVersion");
                    let group = api.rsplit_once('/').map_or("", |(g, _)| g);
                    let kind = s(r, "/kind").to_lowercase();
                    let gk = if group.is_empty() {
                        kind
                    } else {
                        format!("{kind}.{group}")
                    };
                    format!("{gk}/{}", s(r, "/name"))
                })
                .unwrap_or_else(|| NONE.to_string());
            vec![
                name,
                json!(controller),
                json!(i(obj, "/revision").to_string()),
                age,
            ]
        }
        "events" => event_cells(obj, now),
        "namespaces" => vec![name, json!(s(obj, "/status/phase")), age],
        "leases" => vec![name, json!(s(obj, "/spec/holderIdentity")), age],
        "configmaps" => {
            let n = len_of(obj, "/data") + len_of(obj, "/binaryData");
            vec![name, json!(n.to_string()), age]
        }
        "secrets" => {
            let n = len_of(obj, "/data") + len_of(obj, "/stringData");
            vec![name, json!(s(obj, "/type")), json!(n.to_string()), age]
        }
        "serviceaccounts" => vec![name, json!(len_of(obj, "/secrets").to_string()), age],
        "endpoints" => vec![name, json!(endpoint_list(obj)), age],
        "endpointslices" => {
            let ports: Vec<String> = arr(obj, "/ports")
                .iter()
                .map(|p| i(p, "/port").to_string())
                .collect();
            let addresses: Vec<String> = arr(obj, "/endpoints")
                .iter()
                .flat_map(|e| arr(e, "/addresses").iter().filter_map(Value::as_str))
                .map(String::from)
                .collect();
            let list = first_three(addresses);
            vec![
                name,
                json!(s(obj, "/addressType")),
                json!(if ports.is_empty() {
                    "<unset>".to_string()
                } else {
                    ports.join(",")
                }),
                json!(if list.is_empty() {
                    "<unset>".to_string()
                } else {
                    list
                }),
                age,
            ]
        }
        "services" => {
            let kind = match s(obj, "/spec/type") {
                "" => "ClusterIP",
                t => t,
            };
            let cluster_ip = arr(obj, "/spec/clusterIPs")
                .first()
                .and_then(Value::as_str)
                .map_or_else(|| or_none(s(obj, "/spec/clusterIP")), String::from);
            let mut external: Vec<String> = Vec::new();
            if kind == "LoadBalancer" {
                for ing in arr(obj, "/status/loadBalancer/ingress") {
                    let addr = match s(ing, "/ip") {
                        "" => s(ing, "/hostname"),
                        ip => ip,
                    };
                    if !addr.is_empty() {
                        external.push(addr.to_string());
                    }
                }
            }
            external.extend(
                arr(obj, "/spec/externalIPs")
                    .iter()
                    .filter_map(Value::as_str)
                    .map(String::from),
            );
            let external = match kind {
                "ExternalName" => s(obj, "/spec/externalName").to_string(),
                "LoadBalancer" if external.is_empty() => "<pending>".to_string(),
                _ => none_if_empty(external.join(",")),
            };
            let ports: Vec<String> = arr(obj, "/spec/ports")
                .iter()
                .map(|p| {
                    let node_port = i(p, "/nodePort");
                    if node_port > 0 {
                        format!("{}:{node_port}/{}", i(p, "/port"), s(p, "/protocol"))
                    } else {
                        format!("{}/{}", i(p, "/port"), s(p, "/protocol"))
                    }
                })
                .collect();
            let selector: Vec<String> = obj
                .pointer("/spec/selector")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default();
            vec![
                name,
                json!(kind),
                json!(cluster_ip),
                json!(external),
                json!(none_if_empty(ports.join(","))),
                age,
                json!(none_if_empty(selector.join(","))),
            ]
        }
        _ => vec![name, age],
    }
}

/// `ip:port` of every ready address and port, the first three, as `kubectl get ep` shows them.
fn endpoint_list(obj: &Value) -> String {
    let mut all = Vec::new();
    for subset in arr(obj, "/subsets") {
        let ports = arr(subset, "/ports");
        for a in arr(subset, "/addresses") {
            if ports.is_empty() {
                all.push(s(a, "/ip").to_string());
            }
            for p in ports {
                all.push(format!("{}:{}", s(a, "/ip"), i(p, "/port")));
            }
        }
    }
    none_if_empty(first_three(all))
}

/// The first three of `items`, and how many more there are: `a,b,c + 2 more...`.
fn first_three(mut items: Vec<String>) -> String {
    const MAX: usize = 3;
    let more = items.len().saturating_sub(MAX);
    items.truncate(MAX);
    let mut out = items.join(",");
    if more > 0 {
        out.push_str(&format!(" + {more} more..."));
    }
    out
}

/// The number of entries of the map or list at `ptr`.
fn len_of(obj: &Value, ptr: &str) -> usize {
    match obj.pointer(ptr) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

/// Row conditions: pods that finished are marked `Completed`.
pub fn row_conditions(plural: &str, obj: &Value) -> Option<Value> {
    if plural != "pods" {
        return None;
    }
    let message = match s(obj, "/status/phase") {
        "Succeeded" => "The pod has completed successfully.",
        "Failed" => "The pod failed.",
        _ => return None,
    };
    Some(json!([{
        "type": "Completed",
        "status": "True",
        "reason": s(obj, "/status/phase"),
        "message": message,
    }]))
}

fn node_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let ready = arr(obj, "/status/conditions")
        .iter()
        .find(|c| s(c, "/type") == "Ready")
        .map(|c| {
            if s(c, "/status") == "True" {
                "Ready"
            } else {
                "NotReady"
            }
        })
        .unwrap_or("Unknown");
    let mut status = ready.to_string();
    if obj.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    let mut roles: Vec<String> = Vec::new();
    if let Some(labels) = obj.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.push(role.to_string());
                }
            } else if k == "kubernetes.io/role"
                && let Some(v) = v.as_str().filter(|v| !v.is_empty())
            {
                roles.push(v.to_string());
            }
        }
    }
    roles.sort();
    roles.dedup();
    let address = |ty: &str| {
        arr(obj, "/status/addresses")
            .iter()
            .find(|a| s(a, "/type") == ty)
            .map_or(NONE.to_string(), |a| s(a, "/address").to_string())
    };
    let unknown = |v: &str| {
        if v.is_empty() {
            "<unknown>".to_string()
        } else {
            v.to_string()
        }
    };
    vec![
        json!(s(obj, "/metadata/name")),
        json!(status),
        json!(if roles.is_empty() {
            NONE.to_string()
        } else {
            roles.join(",")
        }),
        json!(age_of(s(obj, "/metadata/creationTimestamp"), now)),
        json!(s(obj, "/status/nodeInfo/kubeletVersion")),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(unknown(s(obj, "/status/nodeInfo/osImage"))),
        json!(unknown(s(obj, "/status/nodeInfo/kernelVersion"))),
        json!(unknown(s(obj, "/status/nodeInfo/containerRuntimeVersion"))),
    ]
}

fn event_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let first_ts = {
        let f = s(obj, "/firstTimestamp");
        if f.is_empty() {
            s(obj, "/eventTime")
        } else {
            f
        }
    };
    let mut first = age_of(first_ts, now);
    let mut last = {
        let l = s(obj, "/lastTimestamp");
        if l.is_empty() {
            first.clone()
        } else {
            age_of(l, now)
        }
    };
    let mut count = i(obj, "/count");
    if obj.pointer("/series").is_some_and(Value::is_object) {
        last = age_of(s(obj, "/series/lastObservedTime"), now);
        count = i(obj, "/series/count");
    } else if count == 0 {
        count = 1;
    }
    if first_ts.is_empty() && !s(obj, "/lastTimestamp").is_empty() {
        first = last.clone();
    }
    let component = {
        let c = s(obj, "/source/component");
        if c.is_empty() {
            s(obj, "/reportingComponent")
        } else {
            c
        }
    };
    let host = {
        let h = s(obj, "/source/host");
        if h.is_empty() {
            s(obj, "/reportingInstance")
        } else {
            h
        }
    };
    let source = if host.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {host}")
    };
    vec![
        json!(last),
        json!(s(obj, "/type")),
        json!(s(obj, "/reason")),
        json!(format!(
            "{}/{}",
            s(obj, "/involvedObject/kind").to_lowercase(),
            s(obj, "/involvedObject/name")
        )),
        json!(s(obj, "/involvedObject/fieldPath")),
        json!(source),
        json!(s(obj, "/message").trim()),
        json!(first),
        json!(count.to_string()),
        json!(s(obj, "/metadata/name")),
    ]
}

fn restarts_cell(count: i64, last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match last {
        Some(t) if count > 0 => format!("{count} ({} ago)", human_duration(now - t)),
        _ => count.to_string(),
    }
}

fn last_finished(status: &Value) -> Option<DateTime<Utc>> {
    parse_time(s(status, "/lastState/terminated/finishedAt"))
}

fn later(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// kube-apiserver's `printPod`.
fn pod_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let phase = s(obj, "/status/phase");
    let mut reason = phase.to_string();
    if !s(obj, "/status/reason").is_empty() {
        reason = s(obj, "/status/reason").to_string();
    }
    for c in arr(obj, "/status/conditions") {
        if s(c, "/type") == "PodScheduled" && s(c, "/reason") == "SchedulingGated" {
            reason = "SchedulingGated".to_string();
        }
    }
    let init_specs = arr(obj, "/spec/initContainers");
    let is_sidecar = |name: &str| {
        init_specs
            .iter()
            .any(|c| s(c, "/name") == name && s(c, "/restartPolicy") == "Always")
    };
    let mut total = arr(obj, "/spec/containers").len() as i64;
    total += init_specs
        .iter()
        .filter(|c| s(c, "/restartPolicy") == "Always")
        .count() as i64;
    let mut ready = 0i64;
    let mut restarts = 0i64;
    let mut sidecar_restarts = 0i64;
    let mut last_restart: Option<DateTime<Utc>> = None;
    let mut last_sidecar_restart: Option<DateTime<Utc>> = None;
    let mut initializing = false;
    for (idx, cs) in arr(obj, "/status/initContainerStatuses").iter().enumerate() {
        let rc = i(cs, "/restartCount");
        restarts += rc;
        let sidecar = is_sidecar(s(cs, "/name"));
        if rc > 0 {
            if sidecar {
                sidecar_restarts += rc;
                last_sidecar_restart = later(last_sidecar_restart, last_finished(cs));
            } else {
                last_restart = later(last_restart, last_finished(cs));
            }
        }
        let term = cs.pointer("/state/terminated");
        let waiting_reason = s(cs, "/state/waiting/reason");
        if term.is_some() && i(cs, "/state/terminated/exitCode") == 0 {
            continue;
        }
        if sidecar && cs.get("started").and_then(Value::as_bool) == Some(true) {
            if cs.get("ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        if term.is_some() {
            let r = s(cs, "/state/terminated/reason");
            reason = if !r.is_empty() {
                format!("Init:{r}")
            } else if i(cs, "/state/terminated/signal") != 0 {
                format!("Init:Signal:{}", i(cs, "/state/terminated/signal"))
            } else {
                format!("Init:ExitCode:{}", i(cs, "/state/terminated/exitCode"))
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{idx}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }
    let initialized = arr(obj, "/status/conditions")
        .iter()
        .any(|c| s(c, "/type") == "Initialized" && s(c, "/status") == "True");
    if !initializing || initialized {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for cs in arr(obj, "/status/containerStatuses").iter().rev() {
            let rc = i(cs, "/restartCount");
            restarts += rc;
            if rc > 0 {
                last_restart = later(last_restart, last_finished(cs));
            }
            let waiting = s(cs, "/state/waiting/reason");
            let term_reason = s(cs, "/state/terminated/reason");
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if cs.pointer("/state/terminated").is_some() {
                reason = if !term_reason.is_empty() {
                    term_reason.to_string()
                } else if i(cs, "/state/terminated/signal") != 0 {
                    format!("Signal:{}", i(cs, "/state/terminated/signal"))
                } else {
                    format!("ExitCode:{}", i(cs, "/state/terminated/exitCode"))
                };
            } else if cs.get("ready").and_then(Value::as_bool) == Some(true)
                && cs.pointer("/state/running").is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = arr(obj, "/status/conditions")
                .iter()
                .any(|c| s(c, "/type") == "Ready" && s(c, "/status") == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.to_string();
        }
    }
    if obj
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        if s(obj, "/status/reason") == "NodeLost" {
            reason = "Unknown".to_string();
        } else if phase != "Failed" && phase != "Succeeded" {
            reason = "Terminating".to_string();
        }
    }
    let ip = arr(obj, "/status/podIPs")
        .first()
        .map(|p| s(p, "/ip").to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| or_none(s(obj, "/status/podIP")));
    let gates = arr(obj, "/spec/readinessGates");
    let gates_cell = if gates.is_empty() {
        NONE.to_string()
    } else {
        let conds = arr(obj, "/status/conditions");
        let true_count = gates
            .iter()
            .filter(|g| {
                conds
                    .iter()
                    .any(|c| s(c, "/type") == s(g, "/conditionType") && s(c, "/status") == "True")
            })
            .count();
        format!("{true_count}/{}", gates.len())
    };
    vec![
        json!(s(obj, "/metadata/name")),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_cell(restarts, last_restart, now)),
        json!(age_of(s(obj, "/metadata/creationTimestamp"), now)),
        json!(ip),
        json!(or_none(s(obj, "/spec/nodeName"))),
        json!(or_none(s(obj, "/status/nominatedNodeName"))),
        json!(gates_cell),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn human_durations() {
        let table = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (125, "2m5s"),
            (600, "10m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 60 * 5, "3h5m"),
            (9 * 3600, "9h"),
            (50 * 3600, "2d2h"),
            (48 * 3600, "2d"),
            (10 * 86400, "10d"),
            (3 * 365 * 86400 + 4 * 86400, "3y4d"),
            (9 * 365 * 86400, "9y"),
        ];
        for (secs, want) in table {
            assert_eq!(human_duration(TimeDelta::seconds(secs)), want, "{secs}s");
        }
    }

    #[test]
    fn pod_status_cells() {
        let now = Utc::now();
        let ts = (now - TimeDelta::seconds(30)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let cases = [
            (json!({"status":{"phase":"Pending"}}), "0/1", "Pending", "0"),
            (
                json!({"status":{"phase":"Running","containerStatuses":[{"name":"c","ready":true,"restartCount":2,"state":{"running":{}},"lastState":{"terminated":{"finishedAt":ts}}}]}}),
                "1/1",
                "Running",
                "2 (30s ago)",
            ),
            (
                json!({"status":{"phase":"Pending","containerStatuses":[{"name":"c","ready":false,"restartCount":0,"state":{"waiting":{"reason":"ContainerCreating"}}}]}}),
                "0/1",
                "ContainerCreating",
                "0",
            ),
            (
                json!({"metadata":{"deletionTimestamp":ts},"status":{"phase":"Running"}}),
                "0/1",
                "Terminating",
                "0",
            ),
            (
                json!({"spec":{"containers":[{"name":"c"}],"initContainers":[{"name":"i"}]},"status":{"phase":"Pending","initContainerStatuses":[{"name":"i","state":{"running":{}}}]}}),
                "0/1",
                "Init:0/1",
                "0",
            ),
        ];
        for (mut pod, ready, status, restarts) in cases {
            if pod.pointer("/spec/containers").is_none() {
                pod["spec"] = json!({"containers":[{"name":"c"}]});
            }
            let cells = row_cells("pods", &pod, now);
            assert_eq!(cells[1], ready, "{pod}");
            assert_eq!(cells[2], status, "{pod}");
            assert_eq!(cells[3], restarts, "{pod}");
            assert_eq!(cells.len(), column_definitions("pods").len());
        }
    }

    #[test]
    fn every_kind_has_matching_cells() {
        let now = Utc::now();
        for plural in [
            "pods",
            "nodes",
            "deployments",
            "replicasets",
            "replicationcontrollers",
            "daemonsets",
            "controllerrevisions",
            "events",
            "namespaces",
            "leases",
            "configmaps",
            "secrets",
            "serviceaccounts",
            "services",
            "endpoints",
            "endpointslices",
        ] {
            assert_eq!(
                row_cells(plural, &json!({}), now).len(),
                column_definitions(plural).len(),
                "{plural}"
            );
        }
        let node = json!({"metadata":{"labels":{"node-role.kubernetes.io/edge":"","kubernetes.io/role":"worker"}},
            "spec":{"unschedulable":true},"status":{"conditions":[{"type":"Ready","status":"False"}]}});
        let cells = row_cells("nodes", &node, now);
        assert_eq!(cells[1], "NotReady,SchedulingDisabled");
        assert_eq!(cells[2], "edge,worker");
        let cr = json!({"revision": 3, "metadata":{"ownerReferences":[{"apiVersion":"apps/v1","kind":"DaemonSet","name":"agent","controller":true}]}});
        let cells = row_cells("controllerrevisions", &cr, now);
        assert_eq!(cells[1], "daemonset.apps/agent");
        assert_eq!(cells[2], "3");
        let lb = json!({"spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.7"],
            "selector": {"tier": "edge", "app": "agent"},
            "ports": [{"port": 443, "nodePort": 31000, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}});
        let cells = row_cells("services", &lb, now);
        assert_eq!(
            cells[1..5],
            [
                json!("LoadBalancer"),
                json!("10.96.0.7"),
                json!("<pending>"),
                json!("443:31000/TCP,53/UDP")
            ]
        );
        assert_eq!(cells[6], "app=agent,tier=edge");
        let ep = json!({"subsets": [{"addresses": [{"ip": "10.244.1.2"}, {"ip": "10.244.2.2"}],
            "ports": [{"port": 8080}, {"port": 9100}]}]});
        assert_eq!(
            row_cells("endpoints", &ep, now)[1],
            "10.244.1.2:8080,10.244.1.2:9100,10.244.2.2:8080 + 1 more..."
        );
        assert_eq!(row_cells("endpoints", &json!({}), now)[1], "<none>");
        let ext = json!({"spec": {"type": "ExternalName", "externalName": "example.com"}});
        let cells = row_cells("services", &ext, now);
        assert_eq!(
            cells[2..5],
            [json!("<none>"), json!("example.com"), json!("<none>")]
        );
    }
}
