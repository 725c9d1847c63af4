//! Services: the cluster IP and node port allocators (kube-apiserver's defaults:
//! `--service-cluster-ip-range=10.96.0.0/12`, `--service-node-port-range=30000-32767`) and
//! the `kubernetes` Service that names the API server.
//!
//! Allocation reads what the watch cache holds and is serialised by [`LOCK`], held until the
//! write is in the cache, so two Services never get the same address or port.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde_json::{Value, json};

use crate::ApiState;
use crate::admission::FieldError;
use crate::errors::{ApiError, ApiResult};
use crate::resources::{self, Resource};

/// Held from allocation until the Service is written.
pub static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The service network: 10.96.0.0/12.
const NET: u32 = u32::from_be_bytes([10, 96, 0, 0]);
const NET_BITS: u32 = 12;
/// The first address, which the `kubernetes` Service holds.
pub const KUBERNETES_IP: &str = "10.96.0.1";
const NODE_PORTS: std::ops::RangeInclusive<i64> = 30000..=32767;

fn in_range(ip: Ipv4Addr) -> bool {
    let mask = u32::MAX << (32 - NET_BITS);
    u32::from(ip) & mask == NET
}

fn service_type(v: &Value) -> &str {
    v["spec"]["type"].as_str().unwrap_or("ClusterIP")
}

fn wants_node_ports(v: &Value) -> bool {
    match service_type(v) {
        "NodePort" => true,
        "LoadBalancer" => v["spec"]["allocateLoadBalancerNodePorts"]
            .as_bool()
            .unwrap_or(true),
        _ => false,
    }
}

/// Addresses and node ports held by the stored Services other than `skip` (a store key).
fn held(st: &ApiState, res: &Resource, skip: &str) -> (BTreeSet<u32>, BTreeSet<i64>) {
    let cache = st.cache.resource(res);
    let cache = cache.read();
    let (mut ips, mut ports) = (BTreeSet::new(), BTreeSet::new());
    for (key, c) in &cache.objects {
        if key == skip {
            continue;
        }
        let v = c.value();
        for ip in v["spec"]["clusterIPs"].as_array().into_iter().flatten() {
            if let Some(ip) = ip.as_str().and_then(|s| s.parse::<Ipv4Addr>().ok()) {
                ips.insert(u32::from(ip));
            }
        }
        for p in v["spec"]["ports"].as_array().into_iter().flatten() {
            if let Some(n) = p["nodePort"].as_i64() {
                ports.insert(n);
            }
        }
    }
    (ips, ports)
}

/// Give a Service being created (`old` is `None`) or updated its cluster IP and node ports:
/// what it asks for if free, else the lowest free ones; an update keeps what it had.
pub fn allocate(st: &ApiState, v: &mut Value, old: Option<&Value>) -> ApiResult<()> {
    let Some(res) = resources::by_kind("Service") else {
        return Ok(());
    };
    let name = v["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let key = res.key(v["metadata"]["namespace"].as_str(), &name);
    let (ips, ports) = held(st, res, &key);
    let mut errs = Vec::new();
    if let Some(old) = old {
        drop_type_dependent(old, v);
        keep_allocated(old, v);
    }
    let external = service_type(v) == "ExternalName";
    let spec = &mut v["spec"];
    let asked = spec["clusterIP"]
        .as_str()
        .or_else(|| spec["clusterIPs"][0].as_str())
        .unwrap_or("")
        .to_string();
    if !external && asked != "None" {
        let ip = if asked.is_empty() {
            let first = NET + 2;
            let last = NET + (1u32 << (32 - NET_BITS)) - 2;
            (first..=last)
                .find(|a| !ips.contains(a))
                .map(Ipv4Addr::from)
        } else {
            match asked.parse::<Ipv4Addr>() {
                Ok(ip) if !in_range(ip) => {
                    errs.push(FieldError::invalid_raw(
                        "spec.clusterIPs",
                        format!("[]string{{{asked:?}}}"),
                        &format!(
                            "failed to allocate IP {asked}: the provided IP ({asked}) is not in the valid range. The range of valid IPs is 10.96.0.0/12"
                        ),
                    ));
                    None
                }
                Ok(ip) if ips.contains(&u32::from(ip)) && old.is_none() => {
                    errs.push(FieldError::invalid_raw(
                        "spec.clusterIPs",
                        format!("[]string{{{asked:?}}}"),
                        &format!("failed to allocate IP {asked}: provided IP is already allocated"),
                    ));
                    None
                }
                Ok(ip) => Some(ip),
                // validation names a malformed address
                Err(_) => None,
            }
        };
        if let Some(ip) = ip {
            spec["clusterIP"] = json!(ip.to_string());
            spec["clusterIPs"] = json!([ip.to_string()]);
        }
    }
    if !external {
        if spec["clusterIP"] == "None" {
            spec["clusterIPs"] = json!(["None"]);
        }
        let m = spec.as_object_mut();
        if let Some(m) = m {
            m.entry("ipFamilies").or_insert(json!(["IPv4"]));
            m.entry("ipFamilyPolicy").or_insert(json!("SingleStack"));
        }
    }
    let node_ports = wants_node_ports(v);
    let mut taken = ports;
    if let Some(list) = v["spec"]["ports"].as_array_mut() {
        for (i, p) in list.iter_mut().enumerate() {
            if !node_ports {
                if let Some(m) = p.as_object_mut() {
                    m.remove("nodePort");
                }
                continue;
            }
            match p["nodePort"].as_i64().filter(|n| *n != 0) {
                Some(n) if !NODE_PORTS.contains(&n) => errs.push(FieldError::invalid(
                    &format!("spec.ports[{i}].nodePort"),
                    &json!(n),
                    "provided port is not in the valid range. The range of valid ports is 30000-32767",
                )),
                Some(n) if taken.contains(&n) => errs.push(FieldError::invalid(
                    &format!("spec.ports[{i}].nodePort"),
                    &json!(n),
                    "provided port is already allocated",
                )),
                Some(n) => {
                    taken.insert(n);
                }
                None => match NODE_PORTS.clone().find(|n| !taken.contains(n)) {
                    Some(n) => {
                        taken.insert(n);
                        p["nodePort"] = json!(n);
                    }
                    None => errs.push(FieldError::invalid(
                        &format!("spec.ports[{i}].nodePort"),
                        &json!(0),
                        "range is full",
                    )),
                },
            }
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(res, &name, &errs))
    }
}

/// A Service changing type loses the fields its new type has no use for, where the update
/// left them as they were (upstream's `dropTypeDependentFields`).
fn drop_type_dependent(old: &Value, new: &mut Value) {
    let (was, now) = (service_type(old).to_string(), service_type(new).to_string());
    if was == now {
        return;
    }
    let mut drop = Vec::new();
    if now == "ExternalName" {
        drop.extend(["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"]);
        drop.push("internalTrafficPolicy");
    }
    if !matches!(now.as_str(), "NodePort" | "LoadBalancer") {
        drop.push("externalTrafficPolicy");
    }
    if now != "LoadBalancer" {
        drop.push("allocateLoadBalancerNodePorts");
    }
    let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    for field in drop {
        if spec.get(field) == old["spec"].get(field) {
            spec.remove(field);
        }
    }
}

/// An update that leaves out the cluster IP or a port's node port keeps the allocated one
/// (upstream's `patchAllocatedValues`).
fn keep_allocated(old: &Value, new: &mut Value) {
    if service_type(new) == "ExternalName" {
        return;
    }
    for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
        let missing = match &new["spec"][field] {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            _ => false,
        };
        if missing && !old["spec"][field].is_null() {
            new["spec"][field] = old["spec"][field].clone();
        }
    }
    if !wants_node_ports(new) {
        return;
    }
    let old_ports = old["spec"]["ports"].as_array().cloned().unwrap_or_default();
    if let Some(list) = new["spec"]["ports"].as_array_mut() {
        for p in list {
            if p["nodePort"].as_i64().is_some_and(|n| n != 0) {
                continue;
            }
            let same = old_ports.iter().find(|o| {
                o["port"] == p["port"] && o["protocol"] == p["protocol"]
                    || (!o["name"].is_null() && o["name"] == p["name"])
            });
            if let Some(n) = same.and_then(|o| o["nodePort"].as_i64()) {
                p["nodePort"] = json!(n);
            }
        }
    }
}

/// The `kubernetes` Service in `default`: the API server at 10.96.0.1:443.
pub fn kubernetes_service(port: u16) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {
            "clusterIP": KUBERNETES_IP,
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
            "sessionAffinity": "None",
            "type": "ClusterIP",
        },
    })
}
