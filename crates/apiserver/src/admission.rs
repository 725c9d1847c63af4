//! Defaulting and validation with kube-apiserver 1.32's defaults and error messages
//! (`pkg/apis/{core,apps}/v1/defaults.go`, `pkg/apis/{core,apps}/validation`).

use base64::Engine;
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------------------------------
// Field errors

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    Required,
    Invalid,
    NotSupported,
    Duplicate,
    Forbidden,
    TooLong,
    TooMany,
    NotFound,
}

/// One field error, as apimachinery's `field.Error`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub kind: ErrorType,
    pub field: String,
    /// The offending value, already rendered the way Go prints it.
    pub value: Option<String>,
    pub detail: String,
}

impl FieldError {
    fn new(kind: ErrorType, field: &str, value: Option<String>, detail: &str) -> Self {
        Self {
            kind,
            field: field.to_string(),
            value,
            detail: detail.to_string(),
        }
    }

    pub fn invalid(field: &str, value: &Value, detail: &str) -> Self {
        Self::new(ErrorType::Invalid, field, Some(go_value(value)), detail)
    }

    pub(crate) fn invalid_raw(field: &str, value: String, detail: &str) -> Self {
        Self::new(ErrorType::Invalid, field, Some(value), detail)
    }

    pub fn required(field: &str, detail: &str) -> Self {
        Self::new(ErrorType::Required, field, None, detail)
    }

    pub fn forbidden(field: &str, detail: &str) -> Self {
        Self::new(ErrorType::Forbidden, field, None, detail)
    }

    fn not_supported(field: &str, value: &Value, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
        Self::new(
            ErrorType::NotSupported,
            field,
            Some(go_value(value)),
            &format!("supported values: {}", list.join(", ")),
        )
    }

    fn duplicate(field: &str, value: &Value) -> Self {
        Self::new(ErrorType::Duplicate, field, Some(go_value(value)), "")
    }

    fn not_found(field: &str, value: &Value) -> Self {
        Self::new(ErrorType::NotFound, field, Some(go_value(value)), "")
    }

    /// `field: body`, as in the Status message.
    pub fn message(&self) -> String {
        format!("{}: {}", self.field, self.cause_message())
    }

    /// The error without its field (`ErrorBody`), as in `details.causes[].message`.
    pub fn cause_message(&self) -> String {
        let ty = match self.kind {
            ErrorType::Required => "Required value",
            ErrorType::Invalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
            ErrorType::NotFound => "Not found",
        };
        let mut s = match (&self.value, self.kind) {
            (_, ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong) | (None, _) => {
                ty.to_string()
            }
            (Some(v), _) => format!("{ty}: {v}"),
        };
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    pub fn reason(&self) -> &'static str {
        match self.kind {
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
            ErrorType::NotFound => "FieldValueNotFound",
        }
    }
}

/// How Go's `field.Error` prints a scalar value.
fn go_value(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// `%#v` of a `map[string]string`.
fn go_string_map(v: Option<&Value>) -> String {
    let mut parts: Vec<(String, String)> = v
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    if parts.is_empty() && v.is_none_or(Value::is_null) {
        return "map[string]string(nil)".to_string();
    }
    parts.sort();
    let body: Vec<String> = parts.iter().map(|(k, v)| format!("{k:?}:{v:?}")).collect();
    format!("map[string]string{{{}}}", body.join(", "))
}

/// `%#v` of a `v1.LabelSelector`.
fn go_label_selector(v: Option<&Value>) -> String {
    let Some(sel) = v.filter(|v| v.is_object()) else {
        return "null".to_string();
    };
    let exprs = match sel.get("matchExpressions").and_then(Value::as_array) {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(list) => {
            let items: Vec<String> = list
                .iter()
                .map(|e| {
                    let values = match e.get("values").and_then(Value::as_array) {
                        None => "[]string(nil)".to_string(),
                        Some(vs) => {
                            let q: Vec<String> = vs.iter().map(go_value).collect();
                            format!("[]string{{{}}}", q.join(", "))
                        }
                    };
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{:?}, Operator:{:?}, Values:{values}}}",
                        str_at(e, "key"),
                        str_at(e, "operator"),
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
        }
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{exprs}}}",
        go_string_map(sel.get("matchLabels"))
    )
}

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

// ---------------------------------------------------------------------------------------
// Defaulting

/// The map at `v[key]`, made an empty map first when absent or not a map. `v` must be an
/// object (callers check).
fn obj_mut<'a>(v: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    let slot = &mut v[key];
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

fn default_field(m: &mut Map<String, Value>, key: &str, value: Value) {
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.to_string(), value);
    }
}

/// Fill in what kube-apiserver defaults for `kind`.
pub fn apply_defaults(kind: &str, obj: &mut Value) {
    if !obj.is_object() {
        return;
    }
    match kind {
        "Pod" => {
            if let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) {
                default_pod_spec(spec);
                default_pod_only(spec);
            }
        }
        "Deployment" => {
            let spec = obj_mut(obj, "spec");
            default_field(spec, "replicas", json!(1));
            default_field(spec, "revisionHistoryLimit", json!(10));
            default_field(spec, "progressDeadlineSeconds", json!(600));
            let strategy = spec.entry("strategy").or_insert_with(|| json!({}));
            if let Some(st) = strategy.as_object_mut() {
                default_field(st, "type", json!("RollingUpdate"));
                if st.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                    let ru = st.entry("rollingUpdate").or_insert_with(|| json!({}));
                    if let Some(ru) = ru.as_object_mut() {
                        default_field(ru, "maxUnavailable", json!("25%"));
                        default_field(ru, "maxSurge", json!("25%"));
                    }
                }
            }
            default_template(obj);
        }
        "ReplicaSet" => {
            default_field(obj_mut(obj, "spec"), "replicas", json!(1));
            default_template(obj);
        }
        "DaemonSet" => {
            let spec = obj_mut(obj, "spec");
            default_field(spec, "revisionHistoryLimit", json!(10));
            let strategy = spec.entry("updateStrategy").or_insert_with(|| json!({}));
            if let Some(st) = strategy.as_object_mut() {
                default_field(st, "type", json!("RollingUpdate"));
                if st.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                    let ru = st.entry("rollingUpdate").or_insert_with(|| json!({}));
                    if let Some(ru) = ru.as_object_mut() {
                        default_field(ru, "maxUnavailable", json!(1));
                        default_field(ru, "maxSurge", json!(0));
                    }
                }
            }
            default_template(obj);
        }
        "ReplicationController" => {
            let template_labels = obj
                .pointer("/spec/template/metadata/labels")
                .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
                .cloned();
            let spec = obj_mut(obj, "spec");
            default_field(spec, "replicas", json!(1));
            if let Some(labels) = template_labels {
                if spec
                    .get("selector")
                    .and_then(Value::as_object)
                    .is_none_or(Map::is_empty)
                {
                    spec.insert("selector".into(), labels.clone());
                }
                let meta = obj_mut(obj, "metadata");
                if meta
                    .get("labels")
                    .and_then(Value::as_object)
                    .is_none_or(Map::is_empty)
                {
                    meta.insert("labels".into(), labels);
                }
            }
            default_template(obj);
        }
        "Namespace" => {
            let name = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if !name.is_empty() {
                let meta = obj_mut(obj, "metadata");
                let labels = meta.entry("labels").or_insert_with(|| json!({}));
                if let Some(l) = labels.as_object_mut() {
                    l.insert("kubernetes.io/metadata.name".into(), json!(name));
                }
            }
            let spec = obj_mut(obj, "spec");
            default_field(spec, "finalizers", json!(["kubernetes"]));
            let status = obj_mut(obj, "status");
            default_field(status, "phase", json!("Active"));
        }
        "Secret" => {
            // `stringData` is write-only: its entries land in `data`, encoded.
            if let Some(Value::Object(plain)) =
                obj.as_object_mut().and_then(|o| o.remove("stringData"))
            {
                let data = obj_mut(obj, "data");
                for (k, v) in plain {
                    let text = v.as_str().unwrap_or_default();
                    data.insert(
                        k,
                        json!(base64::engine::general_purpose::STANDARD.encode(text)),
                    );
                }
            }
            if obj
                .get("type")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                obj["type"] = json!("Opaque");
            }
        }
        "Service" => default_service(obj),
        "Node" => {
            if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut)
                && let Some(cap) = status.get("capacity").cloned()
            {
                default_field(status, "allocatable", cap);
            }
        }
        _ => {}
    }
}

/// A Service's defaults (the cluster IP and node ports are allocated later, see `services`).
fn default_service(obj: &mut Value) {
    let spec = obj_mut(obj, "spec");
    default_field(spec, "type", json!("ClusterIP"));
    let kind = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
    default_field(spec, "sessionAffinity", json!("None"));
    if kind != "ExternalName" {
        default_field(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if matches!(kind.as_str(), "NodePort" | "LoadBalancer") {
        default_field(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if kind == "LoadBalancer" {
        default_field(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default_field(p, "protocol", json!("TCP"));
            if let Some(port) = p.get("port").cloned() {
                default_field(p, "targetPort", port);
            }
        }
    }
    let status = obj_mut(obj, "status");
    default_field(status, "loadBalancer", json!({}));
}

/// `ValidateService`, the parts a Service written by hand gets wrong.
fn validate_service(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let spec = &obj["spec"];
    let kind = spec["type"].as_str().unwrap_or("ClusterIP");
    if !matches!(
        kind,
        "ClusterIP" | "ExternalName" | "LoadBalancer" | "NodePort"
    ) {
        errs.push(FieldError::not_supported(
            "spec.type",
            &spec["type"],
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        ));
    }
    let affinity = &spec["sessionAffinity"];
    if !affinity.is_null() && !matches!(affinity.as_str(), Some("ClientIP" | "None")) {
        errs.push(FieldError::not_supported(
            "spec.sessionAffinity",
            affinity,
            &["ClientIP", "None"],
        ));
    }
    let cluster_ip = spec["clusterIP"].as_str().unwrap_or("");
    if kind == "ExternalName" {
        if spec["externalName"].as_str().is_none_or(str::is_empty) {
            errs.push(FieldError::required("spec.externalName", ""));
        }
    } else if !cluster_ip.is_empty()
        && cluster_ip != "None"
        && cluster_ip.parse::<std::net::Ipv4Addr>().is_err()
    {
        errs.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            &json!(cluster_ip),
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ));
    }
    let ports = spec["ports"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if ports.is_empty() && kind != "ExternalName" && cluster_ip != "None" {
        errs.push(FieldError::required("spec.ports", ""));
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let name = p["name"].as_str().unwrap_or("");
        if ports.len() > 1 && name.is_empty() {
            errs.push(FieldError::required(&format!("spec.ports[{i}].name"), ""));
        } else if !name.is_empty() && !names.insert(name) {
            errs.push(FieldError::duplicate(
                &format!("spec.ports[{i}].name"),
                &json!(name),
            ));
        }
        let port = p["port"].as_i64().unwrap_or(0);
        if !(1..=65535).contains(&port) {
            errs.push(FieldError::invalid(
                &format!("spec.ports[{i}].port"),
                &json!(port),
                "must be between 1 and 65535, inclusive",
            ));
        }
        let proto = &p["protocol"];
        if !matches!(proto.as_str(), Some("SCTP" | "TCP" | "UDP")) {
            errs.push(FieldError::not_supported(
                &format!("spec.ports[{i}].protocol"),
                proto,
                &["SCTP", "TCP", "UDP"],
            ));
        }
    }
    if let Some(old) = old {
        let before = old["spec"]["clusterIP"].as_str().unwrap_or("");
        let both_addressed = service_has_ip(old) && service_has_ip(obj);
        if both_addressed && before != cluster_ip {
            errs.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                &json!(cluster_ip),
                "may not change once set",
            ));
        }
    }
}

fn service_has_ip(v: &Value) -> bool {
    v["spec"]["type"].as_str() != Some("ExternalName")
}

/// Pod templates of the workload kinds: encoded with `creationTimestamp: null`, then the
/// pod spec defaults.
fn default_template(obj: &mut Value) {
    let Some(template) = obj
        .get_mut("spec")
        .and_then(|s| s.get_mut("template"))
        .filter(|t| t.is_object())
    else {
        return;
    };
    let meta = obj_mut(template, "metadata");
    if !meta.contains_key("creationTimestamp") {
        meta.insert("creationTimestamp".into(), Value::Null);
    }
    let spec = template.get_mut("spec").filter(|s| s.is_object());
    if let Some(spec) = spec {
        default_pod_spec(spec);
    }
}

fn default_pod_spec(spec: &mut Value) {
    let Some(m) = spec.as_object_mut() else {
        return;
    };
    default_field(m, "restartPolicy", json!("Always"));
    default_field(m, "dnsPolicy", json!("ClusterFirst"));
    default_field(m, "securityContext", json!({}));
    default_field(m, "terminationGracePeriodSeconds", json!(30));
    default_field(m, "schedulerName", json!("default-scheduler"));
    for list in ["containers", "initContainers"] {
        if let Some(Value::Array(cs)) = m.get_mut(list) {
            for c in cs.iter_mut() {
                default_container(c);
            }
        }
    }
    if let Some(Value::Array(vols)) = m.get_mut("volumes") {
        for v in vols.iter_mut() {
            default_volume(v);
        }
    }
}

fn default_container(c: &mut Value) {
    let Some(m) = c.as_object_mut() else {
        return;
    };
    let image = m
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    default_field(m, "imagePullPolicy", json!(pull_policy_for(&image)));
    default_field(m, "terminationMessagePath", json!("/dev/termination-log"));
    default_field(m, "terminationMessagePolicy", json!("File"));
    default_field(m, "resources", json!({}));
    if let Some(Value::Array(ports)) = m.get_mut("ports") {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default_field(p, "protocol", json!("TCP"));
        }
    }
    if let Some(Value::Array(env)) = m.get_mut("env") {
        for e in env.iter_mut() {
            if let Some(fr) = e
                .pointer_mut("/valueFrom/fieldRef")
                .and_then(Value::as_object_mut)
            {
                default_field(fr, "apiVersion", json!("v1"));
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = m.get_mut(probe).and_then(Value::as_object_mut) {
            default_field(p, "timeoutSeconds", json!(1));
            default_field(p, "periodSeconds", json!(10));
            default_field(p, "successThreshold", json!(1));
            default_field(p, "failureThreshold", json!(3));
            if let Some(h) = p.get_mut("httpGet").and_then(Value::as_object_mut) {
                default_field(h, "path", json!("/"));
                default_field(h, "scheme", json!("HTTP"));
            }
        }
    }
}

/// `Always` for `:latest` or untagged images, else `IfNotPresent` (digests count as tags).
pub fn pull_policy_for(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

const VOLUME_SOURCES: [&str; 26] = [
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "csi",
];

fn default_volume(v: &mut Value) {
    let Some(m) = v.as_object_mut() else {
        return;
    };
    let has_source = VOLUME_SOURCES
        .iter()
        .chain(["scaleIO", "storageos", "ephemeral", "image"].iter())
        .any(|k| m.contains_key(*k));
    if !has_source {
        m.insert("emptyDir".into(), json!({}));
    }
    for src in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(s) = m.get_mut(src).and_then(Value::as_object_mut) {
            default_field(s, "defaultMode", json!(420));
        }
    }
    if let Some(h) = m.get_mut("hostPath").and_then(Value::as_object_mut) {
        default_field(h, "type", json!(""));
    }
}

/// Defaults and admission plugins that apply to pods but not to templates.
fn default_pod_only(spec: &mut Value) {
    let Some(m) = spec.as_object_mut() else {
        return;
    };
    default_field(m, "enableServiceLinks", json!(true));
    default_field(m, "serviceAccountName", json!("default"));
    let sa = m
        .get("serviceAccountName")
        .cloned()
        .unwrap_or(json!("default"));
    default_field(m, "serviceAccount", sa);
    default_field(m, "priority", json!(0));
    default_field(m, "preemptionPolicy", json!("PreemptLowerPriority"));
    // DefaultTolerationSeconds admission: tolerate not-ready/unreachable for 300 s.
    let tolerations = m.entry("tolerations").or_insert_with(|| json!([]));
    if let Some(list) = tolerations.as_array_mut() {
        for key in [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
        ] {
            let covered = list.iter().any(|t| {
                let k = str_at(t, "key");
                let effect = str_at(t, "effect");
                let exists = str_at(t, "operator") == "Exists";
                (k == key || (k.is_empty() && exists))
                    && (effect.is_empty() || effect == "NoExecute")
            });
            if !covered {
                list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
            }
        }
    }
    // Requests default to limits.
    for list in ["containers", "initContainers"] {
        if let Some(Value::Array(cs)) = m.get_mut(list) {
            for c in cs.iter_mut() {
                let limits = c
                    .pointer("/resources/limits")
                    .and_then(Value::as_object)
                    .cloned();
                if let (Some(limits), Some(res)) = (
                    limits,
                    c.get_mut("resources").and_then(Value::as_object_mut),
                ) {
                    let req = res.entry("requests").or_insert_with(|| json!({}));
                    if let Some(req) = req.as_object_mut() {
                        for (k, v) in limits {
                            req.entry(k).or_insert(v);
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Name and label rules

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// DNS-1123 label messages (empty when valid).
pub fn dns_label_errors(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 63 {
        out.push("must be no more than 63 characters".to_string());
    }
    if !is_dns_label(s) {
        out.push(LABEL_MSG.to_string());
    }
    out
}

/// DNS-1123 subdomain messages (empty when valid).
pub fn dns_subdomain_errors(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 253 {
        out.push("must be no more than 253 characters".to_string());
    }
    if s.is_empty() || !s.split('.').all(is_dns_label) {
        out.push(SUBDOMAIN_MSG.to_string());
    }
    out
}

fn is_qualified_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

fn qualified_name_errors(key: &str) -> Vec<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let mut out = Vec::new();
    if let Some(p) = prefix {
        if p.is_empty() {
            out.push("prefix part must be non-empty".to_string());
        } else {
            out.extend(
                dns_subdomain_errors(p)
                    .into_iter()
                    .map(|m| format!("prefix part {m}")),
            );
        }
    }
    if name.is_empty() {
        out.push("name part must be non-empty".to_string());
    } else {
        if name.len() > 63 {
            out.push("name part must be no more than 63 characters".to_string());
        }
        if !is_qualified_part(name) {
            out.push(QUALIFIED_NAME_MSG.to_string());
        }
    }
    out
}

fn validate_labels(labels: Option<&Value>, field: &str, errs: &mut Vec<FieldError>) {
    let Some(m) = labels.and_then(Value::as_object) else {
        return;
    };
    for (k, v) in m {
        for msg in qualified_name_errors(k) {
            errs.push(FieldError::invalid(field, &json!(k), &msg));
        }
        let val = v.as_str().unwrap_or_default();
        if val.len() > 63 {
            errs.push(FieldError::invalid(
                field,
                v,
                "must be no more than 63 characters",
            ));
        }
        if !val.is_empty() && !is_qualified_part(val) {
            errs.push(FieldError::invalid(field, v, LABEL_VALUE_MSG));
        }
    }
}

const TOTAL_ANNOTATION_SIZE: usize = 256 * 1024;

fn validate_meta(kind: &str, obj: &Value, errs: &mut Vec<FieldError>) {
    let meta = obj.get("metadata");
    let name = meta.map(|m| str_at(m, "name")).unwrap_or_default();
    let generate = meta.map(|m| str_at(m, "generateName")).unwrap_or_default();
    let name_rule: fn(&str) -> Vec<String> = match kind {
        "Namespace" => dns_label_errors,
        _ => dns_subdomain_errors,
    };
    if name.is_empty() {
        if generate.is_empty() {
            errs.push(FieldError::required(
                "metadata.name",
                "name or generateName is required",
            ));
        }
    } else {
        for msg in name_rule(name) {
            errs.push(FieldError::invalid("metadata.name", &json!(name), &msg));
        }
    }
    validate_labels(meta.and_then(|m| m.get("labels")), "metadata.labels", errs);
    if let Some(ann) = meta
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object)
    {
        let mut total = 0;
        for (k, v) in ann {
            for msg in qualified_name_errors(&k.to_lowercase()) {
                errs.push(FieldError::invalid("metadata.annotations", &json!(k), &msg));
            }
            total += k.len() + v.as_str().map_or(0, str::len);
        }
        if total > TOTAL_ANNOTATION_SIZE {
            errs.push(FieldError::new(
                ErrorType::TooLong,
                "metadata.annotations",
                None,
                &format!("must have at most {TOTAL_ANNOTATION_SIZE} bytes"),
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Validation

fn nonnegative(obj: &Value, ptr: &str, field: &str, errs: &mut Vec<FieldError>) {
    if let Some(n) = obj.pointer(ptr).and_then(Value::as_i64)
        && n < 0
    {
        errs.push(FieldError::invalid(
            field,
            &json!(n),
            "must be greater than or equal to 0",
        ));
    }
}

/// Validate a whole object (create when `old` is `None`, else update).
pub fn validate(kind: &str, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_meta(kind, obj, &mut errs);
    match kind {
        "Pod" => {
            validate_pod_spec(obj.get("spec"), "spec", true, &mut errs);
            if let Some(old) = old {
                validate_pod_update(obj, old, &mut errs);
            }
        }
        "Deployment" => validate_deployment(obj, &mut errs),
        "ReplicaSet" => validate_replicaset(obj, &mut errs),
        "DaemonSet" => validate_daemonset(obj, &mut errs),
        "ReplicationController" => validate_rc(obj, &mut errs),
        "Node" => validate_node(obj, &mut errs),
        "Lease" => {
            if let Some(d) = obj
                .pointer("/spec/leaseDurationSeconds")
                .and_then(Value::as_i64)
                && d <= 0
            {
                errs.push(FieldError::invalid(
                    "spec.leaseDurationSeconds",
                    &json!(d),
                    "must be greater than 0",
                ));
            }
            nonnegative(
                obj,
                "/spec/leaseTransitions",
                "spec.leaseTransitions",
                &mut errs,
            );
        }
        "ControllerRevision" => {
            nonnegative(obj, "/revision", "revision", &mut errs);
            if let Some(old) = old
                && old.get("data") != obj.get("data")
            {
                errs.push(FieldError::invalid_raw(
                    "data",
                    "runtime.RawExtension{...}".into(),
                    "field is immutable",
                ));
            }
        }
        "ConfigMap" => validate_config_map(obj, old, &mut errs),
        "Service" => validate_service(obj, old, &mut errs),
        "Secret" => validate_secret(obj, old, &mut errs),
        "Event" => {
            let ns = obj
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("");
            let ino = obj
                .pointer("/involvedObject/namespace")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !ino.is_empty() && ino != ns {
                errs.push(FieldError::invalid(
                    "involvedObject.namespace",
                    &json!(ino),
                    "does not match event.namespace",
                ));
            }
        }
        _ => {}
    }
    if let Some(old) = old
        && matches!(kind, "Deployment" | "ReplicaSet" | "DaemonSet")
        && old.pointer("/spec/selector") != obj.pointer("/spec/selector")
    {
        errs.push(FieldError::invalid_raw(
            "spec.selector",
            go_label_selector(obj.pointer("/spec/selector")),
            "field is immutable",
        ));
    }
    errs
}

/// ConfigMaps and Secrets hold at most 1 MiB (`MaxSecretSize`).
const MAX_DATA_SIZE: usize = 1024 * 1024;

/// `validation.IsConfigMapKey`.
fn config_key_errors(key: &str) -> Vec<String> {
    let mut out = Vec::new();
    if key.len() > 253 {
        out.push("must be no more than 253 characters".to_string());
    }
    if key.is_empty()
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        out.push("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')".to_string());
    }
    match key {
        "." => out.push("must not be '.'".to_string()),
        ".." => out.push("must not be '..'".to_string()),
        k if k.starts_with("..") => out.push("must not start with '..'".to_string()),
        _ => {}
    }
    out
}

fn entries(obj: &Value, field: &str) -> Vec<(String, usize)> {
    obj.get(field)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().map_or(0, str::len)))
                .collect()
        })
        .unwrap_or_default()
}

/// Once `immutable` is set, neither it nor the data may change.
fn validate_immutable_data(
    obj: &Value,
    old: Option<&Value>,
    fields: &[&str],
    errs: &mut Vec<FieldError>,
) {
    let Some(old) = old.filter(|o| o.get("immutable") == Some(&json!(true))) else {
        return;
    };
    const MSG: &str = "field is immutable when `immutable` is set";
    if obj.get("immutable") != Some(&json!(true)) {
        errs.push(FieldError::forbidden("immutable", MSG));
    }
    for f in fields {
        let empty = |v: Option<&Value>| {
            v.is_none_or(|v| v.is_null() || v.as_object().is_some_and(Map::is_empty))
        };
        let (a, b) = (obj.get(*f), old.get(*f));
        if a != b && !(empty(a) && empty(b)) {
            errs.push(FieldError::forbidden(f, MSG));
        }
    }
}

fn validate_config_map(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let data = entries(obj, "data");
    let binary = entries(obj, "binaryData");
    let mut total = 0;
    for (field, mine, other, other_name) in [
        ("data", &data, &binary, "binaryData"),
        ("binaryData", &binary, &data, "data"),
    ] {
        for (key, len) in mine {
            let path = format!("{field}[{key}]");
            for msg in config_key_errors(key) {
                errs.push(FieldError::invalid(&path, &json!(key), &msg));
            }
            if other.iter().any(|(k, _)| k == key) {
                errs.push(FieldError::invalid(
                    &path,
                    &json!(key),
                    &format!("duplicate of key present in {other_name}"),
                ));
            }
            // binaryData travels base64-encoded: count what it decodes to.
            total += if field == "binaryData" {
                len / 4 * 3
            } else {
                *len
            };
        }
    }
    if total > MAX_DATA_SIZE {
        errs.push(FieldError::new(
            ErrorType::TooLong,
            "[]",
            None,
            &format!("must have at most {MAX_DATA_SIZE} bytes"),
        ));
    }
    validate_immutable_data(obj, old, &["data", "binaryData"], errs);
}

/// The keys a Secret of a given type must carry.
fn required_secret_keys(ty: &str) -> &'static [&'static str] {
    match ty {
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        _ => &[],
    }
}

fn validate_secret(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let data = entries(obj, "data");
    let mut total = 0;
    for (key, len) in &data {
        for msg in config_key_errors(key) {
            errs.push(FieldError::invalid(
                &format!("data[{key}]"),
                &json!(key),
                &msg,
            ));
        }
        total += len / 4 * 3;
    }
    if total > MAX_DATA_SIZE {
        errs.push(FieldError::new(
            ErrorType::TooLong,
            "data",
            None,
            &format!("must have at most {MAX_DATA_SIZE} bytes"),
        ));
    }
    let ty = obj.get("type").and_then(Value::as_str).unwrap_or("Opaque");
    for key in required_secret_keys(ty) {
        if !data.iter().any(|(k, _)| k == key) {
            errs.push(FieldError::required(&format!("data[{key}]"), ""));
        }
    }
    if ty == "kubernetes.io/service-account-token"
        && obj
            .pointer("/metadata/annotations/kubernetes.io~1service-account.name")
            .is_none()
    {
        errs.push(FieldError::required(
            "metadata.annotations[kubernetes.io/service-account.name]",
            "",
        ));
    }
    if let Some(old) = old {
        let old_ty = old.get("type").and_then(Value::as_str).unwrap_or("Opaque");
        if old_ty != ty {
            errs.push(FieldError::invalid(
                "type",
                &json!(ty),
                "field is immutable",
            ));
        }
    }
    validate_immutable_data(obj, old, &["data"], errs);
}

fn validate_node(obj: &Value, errs: &mut Vec<FieldError>) {
    if let Some(taints) = obj.pointer("/spec/taints").and_then(Value::as_array) {
        for (i, t) in taints.iter().enumerate() {
            let effect = t.get("effect").cloned().unwrap_or(Value::Null);
            let f = format!("spec.taints[{i}].effect");
            match effect.as_str() {
                Some("NoSchedule" | "PreferNoSchedule" | "NoExecute") => {}
                None | Some("") => errs.push(FieldError::required(&f, "")),
                Some(_) => errs.push(FieldError::not_supported(
                    &f,
                    &effect,
                    &["NoExecute", "NoSchedule", "PreferNoSchedule"],
                )),
            }
            if str_at(t, "key").is_empty() {
                errs.push(FieldError::required(&format!("spec.taints[{i}].key"), ""));
            }
        }
    }
}

fn validate_pod_spec(spec: Option<&Value>, path: &str, is_pod: bool, errs: &mut Vec<FieldError>) {
    let Some(spec) = spec else {
        errs.push(FieldError::required(&format!("{path}.containers"), ""));
        return;
    };
    let mut volume_names: Vec<&str> = Vec::new();
    if let Some(vols) = spec.get("volumes").and_then(Value::as_array) {
        for (i, v) in vols.iter().enumerate() {
            let f = format!("{path}.volumes[{i}]");
            unique_label_name(str_at(v, "name"), &f, &mut volume_names, errs);
            let sources = v
                .as_object()
                .map_or(0, |m| m.keys().filter(|k| *k != "name").count());
            if sources > 1 {
                errs.push(FieldError::forbidden(
                    &f,
                    "may not specify more than 1 volume type",
                ));
            }
        }
    }
    let mut seen: Vec<&str> = Vec::new();
    for list in ["initContainers", "containers"] {
        let cs = spec.get(list).and_then(Value::as_array);
        if list == "containers" && cs.is_none_or(Vec::is_empty) {
            errs.push(FieldError::required(&format!("{path}.containers"), ""));
        }
        for (i, c) in cs.into_iter().flatten().enumerate() {
            let f = format!("{path}.{list}[{i}]");
            validate_container(c, &f, &volume_names, &mut seen, errs);
        }
    }
    let restart = spec.get("restartPolicy").cloned().unwrap_or(Value::Null);
    let rp_field = format!("{path}.restartPolicy");
    if is_pod {
        match restart.as_str() {
            Some("Always" | "OnFailure" | "Never") => {}
            None | Some("") => errs.push(FieldError::required(&rp_field, "")),
            Some(_) => errs.push(FieldError::not_supported(
                &rp_field,
                &restart,
                &["Always", "OnFailure", "Never"],
            )),
        }
    }
    if let Some(dns) = spec.get("dnsPolicy")
        && !matches!(
            dns.as_str(),
            Some("ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None")
        )
    {
        errs.push(FieldError::not_supported(
            &format!("{path}.dnsPolicy"),
            dns,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        ));
    }
    validate_labels(
        spec.get("nodeSelector"),
        &format!("{path}.nodeSelector"),
        errs,
    );
    nonnegative(
        spec,
        "/activeDeadlineSeconds",
        &format!("{path}.activeDeadlineSeconds"),
        errs,
    );
}

fn validate_container<'a>(
    c: &'a Value,
    f: &str,
    volumes: &[&str],
    seen: &mut Vec<&'a str>,
    errs: &mut Vec<FieldError>,
) {
    unique_label_name(str_at(c, "name"), f, seen, errs);
    if str_at(c, "image").is_empty() {
        errs.push(FieldError::required(&format!("{f}.image"), ""));
    }
    if let Some(p) = c.get("imagePullPolicy")
        && !matches!(p.as_str(), Some("Always" | "IfNotPresent" | "Never"))
    {
        errs.push(FieldError::not_supported(
            &format!("{f}.imagePullPolicy"),
            p,
            &["Always", "IfNotPresent", "Never"],
        ));
    }
    if let Some(ports) = c.get("ports").and_then(Value::as_array) {
        for (i, p) in ports.iter().enumerate() {
            let pf = format!("{f}.ports[{i}]");
            let port = p.get("containerPort").and_then(Value::as_i64).unwrap_or(0);
            if !(1..=65535).contains(&port) {
                errs.push(FieldError::invalid(
                    &format!("{pf}.containerPort"),
                    &json!(port),
                    "must be between 1 and 65535, inclusive",
                ));
            }
            if let Some(hp) = p.get("hostPort").and_then(Value::as_i64)
                && hp != 0
                && !(1..=65535).contains(&hp)
            {
                errs.push(FieldError::invalid(
                    &format!("{pf}.hostPort"),
                    &json!(hp),
                    "must be between 1 and 65535, inclusive",
                ));
            }
            if let Some(proto) = p.get("protocol")
                && !matches!(proto.as_str(), Some("TCP" | "UDP" | "SCTP"))
            {
                errs.push(FieldError::not_supported(
                    &format!("{pf}.protocol"),
                    proto,
                    &["SCTP", "TCP", "UDP"],
                ));
            }
        }
    }
    if let Some(env) = c.get("env").and_then(Value::as_array) {
        for (i, e) in env.iter().enumerate() {
            if str_at(e, "name").is_empty() {
                errs.push(FieldError::required(&format!("{f}.env[{i}].name"), ""));
            }
        }
    }
    if let Some(mounts) = c.get("volumeMounts").and_then(Value::as_array) {
        for (i, m) in mounts.iter().enumerate() {
            let mf = format!("{f}.volumeMounts[{i}]");
            let name = str_at(m, "name");
            if name.is_empty() {
                errs.push(FieldError::required(&format!("{mf}.name"), ""));
            } else if !volumes.contains(&name) {
                errs.push(FieldError::not_found(&format!("{mf}.name"), &json!(name)));
            }
            if str_at(m, "mountPath").is_empty() {
                errs.push(FieldError::required(&format!("{mf}.mountPath"), ""));
            }
        }
    }
}

/// `<field>.name`: required, a DNS-1123 label, unique among `seen` (which it joins).
fn unique_label_name<'a>(
    name: &'a str,
    field: &str,
    seen: &mut Vec<&'a str>,
    errs: &mut Vec<FieldError>,
) {
    let f = format!("{field}.name");
    if name.is_empty() {
        errs.push(FieldError::required(&f, ""));
        return;
    }
    for msg in dns_label_errors(name) {
        errs.push(FieldError::invalid(&f, &json!(name), &msg));
    }
    if seen.contains(&name) {
        errs.push(FieldError::duplicate(&f, &json!(name)));
    }
    seen.push(name);
}

const POD_UPDATE_MSG: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

fn validate_pod_update(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    let mutable_stripped = |pod: &Value| {
        let mut spec = pod.get("spec").cloned().unwrap_or(Value::Null);
        if let Some(m) = spec.as_object_mut() {
            for k in [
                "activeDeadlineSeconds",
                "tolerations",
                "terminationGracePeriodSeconds",
            ] {
                m.remove(k);
            }
            for list in ["containers", "initContainers"] {
                if let Some(Value::Array(cs)) = m.get_mut(list) {
                    for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                        c.remove("image");
                    }
                }
            }
        }
        spec
    };
    if mutable_stripped(new) != mutable_stripped(old) {
        errs.push(FieldError::forbidden("spec", POD_UPDATE_MSG));
        return;
    }
    // Tolerations may only be added.
    let old_tol = old.pointer("/spec/tolerations").and_then(Value::as_array);
    let new_tol = new.pointer("/spec/tolerations").and_then(Value::as_array);
    if let Some(old_tol) = old_tol
        && !old_tol
            .iter()
            .all(|t| new_tol.is_some_and(|n| n.contains(t)))
    {
        errs.push(FieldError::forbidden(
            "spec.tolerations",
            "existing toleration can not be modified except its tolerationSeconds",
        ));
    }
}

/// Selector (required, non-empty, matching the template labels) and template of a workload.
fn validate_workload(obj: &Value, what: &str, errs: &mut Vec<FieldError>) {
    let selector = obj.pointer("/spec/selector");
    let labels = obj.pointer("/spec/template/metadata/labels");
    match selector {
        None | Some(Value::Null) => errs.push(FieldError::required("spec.selector", "")),
        Some(sel) => {
            let parsed = crate::selector::LabelSelector::from_label_selector(Some(sel));
            match parsed {
                Err(msg) => errs.push(FieldError::invalid_raw(
                    "spec.selector",
                    go_label_selector(Some(sel)),
                    &msg,
                )),
                Ok(s) if s.is_empty() => errs.push(FieldError::invalid_raw(
                    "spec.selector",
                    go_label_selector(Some(sel)),
                    &format!("empty selector is invalid for {what}"),
                )),
                Ok(s) => {
                    if !s.matches(labels) {
                        errs.push(FieldError::invalid_raw(
                            "spec.template.metadata.labels",
                            go_string_map(labels),
                            "`selector` does not match template `labels`",
                        ));
                    }
                }
            }
        }
    }
    validate_template(obj, errs);
}

fn validate_template(obj: &Value, errs: &mut Vec<FieldError>) {
    let Some(template) = obj.pointer("/spec/template").filter(|t| !t.is_null()) else {
        errs.push(FieldError::required("spec.template", ""));
        return;
    };
    validate_labels(
        template.pointer("/metadata/labels"),
        "spec.template.metadata.labels",
        errs,
    );
    let spec = template.get("spec");
    validate_pod_spec(spec, "spec.template.spec", false, errs);
    if let Some(rp) = spec.and_then(|s| s.get("restartPolicy"))
        && rp.as_str() != Some("Always")
    {
        errs.push(FieldError::not_supported(
            "spec.template.spec.restartPolicy",
            rp,
            &["Always"],
        ));
    }
    if spec
        .and_then(|s| s.get("activeDeadlineSeconds"))
        .is_some_and(|v| !v.is_null())
    {
        errs.push(FieldError::forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            "activeDeadlineSeconds in ReplicaSet is not Supported",
        ));
    }
}

/// An int-or-percent value: (value out of 100 when a percent, is_percent), or an error.
fn int_or_percent(v: &Value) -> Result<(i64, bool), ()> {
    match v {
        Value::Number(n) => n.as_i64().map(|n| (n, false)).ok_or(()),
        Value::String(s) => s
            .strip_suffix('%')
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse().ok())
            .map(|n| (n, true))
            .ok_or(()),
        _ => Err(()),
    }
}

const PERCENT_MSG: &str = "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')";

fn go_intstr(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `ValidatePositiveIntOrPercent` + `IsNotMoreThan100Percent`; returns the value when valid.
fn check_int_or_percent(v: Option<&Value>, field: &str, errs: &mut Vec<FieldError>) -> i64 {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return 0;
    };
    match int_or_percent(v) {
        Err(()) => {
            errs.push(FieldError::invalid_raw(field, go_intstr(v), PERCENT_MSG));
            0
        }
        Ok((n, pct)) => {
            if !pct && n < 0 {
                errs.push(FieldError::invalid_raw(
                    field,
                    go_intstr(v),
                    "must be greater than or equal to 0",
                ));
            }
            if pct && n > 100 {
                errs.push(FieldError::invalid_raw(
                    field,
                    go_intstr(v),
                    "must not be greater than 100%",
                ));
            }
            n
        }
    }
}

fn validate_deployment(obj: &Value, errs: &mut Vec<FieldError>) {
    nonnegative(obj, "/spec/replicas", "spec.replicas", errs);
    validate_workload(obj, "deployment", errs);
    let strategy = obj.pointer("/spec/strategy");
    let ty = strategy
        .and_then(|s| s.get("type"))
        .cloned()
        .unwrap_or(Value::Null);
    let ru = strategy
        .and_then(|s| s.get("rollingUpdate"))
        .filter(|r| !r.is_null());
    match ty.as_str() {
        Some("Recreate") => {
            if ru.is_some() {
                errs.push(FieldError::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        Some("RollingUpdate") => match ru {
            None => errs.push(FieldError::required(
                "spec.strategy.rollingUpdate",
                "this should be defaulted and never be nil",
            )),
            Some(ru) => {
                let unavailable = check_int_or_percent(
                    ru.get("maxUnavailable"),
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    errs,
                );
                let surge = check_int_or_percent(
                    ru.get("maxSurge"),
                    "spec.strategy.rollingUpdate.maxSurge",
                    errs,
                );
                if unavailable == 0 && surge == 0 {
                    errs.push(FieldError::invalid_raw(
                        "spec.strategy.rollingUpdate.maxUnavailable",
                        ru.get("maxUnavailable").map_or("0".into(), go_intstr),
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
            }
        },
        _ => errs.push(FieldError::not_supported(
            "spec.strategy.type",
            &ty,
            &["Recreate", "RollingUpdate"],
        )),
    }
    nonnegative(obj, "/spec/minReadySeconds", "spec.minReadySeconds", errs);
    nonnegative(
        obj,
        "/spec/revisionHistoryLimit",
        "spec.revisionHistoryLimit",
        errs,
    );
    if let Some(pd) = obj
        .pointer("/spec/progressDeadlineSeconds")
        .and_then(Value::as_i64)
    {
        let min_ready = obj
            .pointer("/spec/minReadySeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if pd < 0 {
            nonnegative(
                obj,
                "/spec/progressDeadlineSeconds",
                "spec.progressDeadlineSeconds",
                errs,
            );
        } else if pd <= min_ready {
            errs.push(FieldError::invalid(
                "spec.progressDeadlineSeconds",
                &json!(pd),
                "must be greater than minReadySeconds",
            ));
        }
    }
}

fn validate_replicaset(obj: &Value, errs: &mut Vec<FieldError>) {
    nonnegative(obj, "/spec/replicas", "spec.replicas", errs);
    nonnegative(obj, "/spec/minReadySeconds", "spec.minReadySeconds", errs);
    // upstream's message says "deployment" for replica sets too.
    validate_workload(obj, "deployment", errs);
}

fn validate_daemonset(obj: &Value, errs: &mut Vec<FieldError>) {
    validate_workload(obj, "daemonset", errs);
    nonnegative(obj, "/spec/minReadySeconds", "spec.minReadySeconds", errs);
    nonnegative(
        obj,
        "/spec/templateGeneration",
        "spec.templateGeneration",
        errs,
    );
    let strategy = obj.pointer("/spec/updateStrategy");
    let ty = strategy
        .and_then(|s| s.get("type"))
        .cloned()
        .unwrap_or(Value::Null);
    let ru = strategy
        .and_then(|s| s.get("rollingUpdate"))
        .filter(|r| !r.is_null());
    match ty.as_str() {
        Some("OnDelete") => {}
        Some("RollingUpdate") => match ru {
            None => errs.push(FieldError::required(
                "spec.updateStrategy.rollingUpdate",
                "",
            )),
            Some(ru) => {
                let unavailable = check_int_or_percent(
                    ru.get("maxUnavailable"),
                    "spec.updateStrategy.rollingUpdate.maxUnavailable",
                    errs,
                );
                let surge = check_int_or_percent(
                    ru.get("maxSurge"),
                    "spec.updateStrategy.rollingUpdate.maxSurge",
                    errs,
                );
                match (unavailable != 0, surge != 0) {
                    (true, true) => errs.push(FieldError::invalid_raw(
                        "spec.updateStrategy.rollingUpdate.maxSurge",
                        ru.get("maxSurge").map_or("0".into(), go_intstr),
                        "may not be set when maxUnavailable is non-zero",
                    )),
                    (false, false) => errs.push(FieldError::required(
                        "spec.updateStrategy.rollingUpdate.maxUnavailable",
                        "cannot be 0 when maxSurge is 0",
                    )),
                    _ => {}
                }
            }
        },
        _ => errs.push(FieldError::not_supported(
            "spec.updateStrategy.type",
            &ty,
            &["OnDelete", "RollingUpdate"],
        )),
    }
    nonnegative(
        obj,
        "/spec/revisionHistoryLimit",
        "spec.revisionHistoryLimit",
        errs,
    );
}

fn validate_rc(obj: &Value, errs: &mut Vec<FieldError>) {
    nonnegative(obj, "/spec/replicas", "spec.replicas", errs);
    nonnegative(obj, "/spec/minReadySeconds", "spec.minReadySeconds", errs);
    let selector = obj.pointer("/spec/selector").and_then(Value::as_object);
    if selector.is_none_or(Map::is_empty) {
        errs.push(FieldError::required("spec.selector", ""));
    } else {
        validate_labels(obj.pointer("/spec/selector"), "spec.selector", errs);
    }
    if obj.pointer("/spec/template").is_some_and(|t| !t.is_null()) {
        let labels = obj
            .pointer("/spec/template/metadata/labels")
            .and_then(Value::as_object);
        let matches = selector.is_some_and(|sel| {
            sel.iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        });
        if selector.is_some_and(|s| !s.is_empty()) && !matches {
            errs.push(FieldError::invalid_raw(
                "spec.template.metadata.labels",
                go_string_map(obj.pointer("/spec/template/metadata/labels")),
                "`selector` does not match template `labels`",
            ));
        }
    }
    validate_template(obj, errs);
}

/// Validate a write to the /status subresource.
pub fn validate_status(kind: &str, obj: &Value, _old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let counters: &[&str] = match kind {
        "Deployment" => &[
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
            "observedGeneration",
            "collisionCount",
            "terminatingReplicas",
        ],
        "ReplicaSet" | "ReplicationController" => &[
            "replicas",
            "fullyLabeledReplicas",
            "readyReplicas",
            "availableReplicas",
            "observedGeneration",
        ],
        "DaemonSet" => &[
            "currentNumberScheduled",
            "numberMisscheduled",
            "desiredNumberScheduled",
            "numberReady",
            "observedGeneration",
            "updatedNumberScheduled",
            "numberAvailable",
            "numberUnavailable",
            "collisionCount",
        ],
        _ => &[],
    };
    for c in counters {
        nonnegative(
            obj,
            &format!("/status/{c}"),
            &format!("status.{c}"),
            &mut errs,
        );
    }
    let get = |f: &str| {
        obj.pointer(&format!("/status/{f}"))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    // (field, limit): a counter may not exceed its limit.
    const ABOVE_REPLICAS: &str = "cannot be greater than status.replicas";
    const ABOVE_READY: &str = "cannot be greater than readyReplicas";
    let first = match kind {
        "Deployment" => "updatedReplicas",
        "ReplicaSet" | "ReplicationController" => "fullyLabeledReplicas",
        _ => return errs,
    };
    let limits = [
        (first, "replicas", ABOVE_REPLICAS),
        ("readyReplicas", "replicas", ABOVE_REPLICAS),
        ("availableReplicas", "replicas", ABOVE_REPLICAS),
        ("availableReplicas", "readyReplicas", ABOVE_READY),
    ];
    for (f, limit, msg) in limits {
        if get(f) > get(limit) {
            errs.push(FieldError::invalid(
                &format!("status.{f}"),
                &json!(get(f)),
                msg,
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keys_sizes_and_immutability() {
        let cm = json!({"metadata":{"name":"c"},"data":{"ok.key_1":"v","a b":"v","..x":"v","dup":"1"},
            "binaryData":{"dup":"AA=="}});
        let msgs = messages("ConfigMap", &cm);
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("data[a b]: Invalid value: \"a b\": a valid config key")),
            "{msgs:?}"
        );
        assert!(
            msgs.contains(
                &"data[..x]: Invalid value: \"..x\": must not start with '..'".to_string()
            ),
            "{msgs:?}"
        );
        assert!(
            msgs.contains(
                &"data[dup]: Invalid value: \"dup\": duplicate of key present in binaryData"
                    .to_string()
            ),
            "{msgs:?}"
        );
        assert!(
            msgs.contains(
                &"binaryData[dup]: Invalid value: \"dup\": duplicate of key present in data"
                    .to_string()
            ),
            "{msgs:?}"
        );
        assert!(!msgs.iter().any(|m| m.contains("ok.key_1")), "{msgs:?}");
        let big = json!({"metadata":{"name":"c"},"data":{"a":"x".repeat(MAX_DATA_SIZE + 1)}});
        assert_eq!(
            messages("ConfigMap", &big),
            ["[]: Too long: must have at most 1048576 bytes"]
        );
        let frozen = json!({"metadata":{"name":"c"},"immutable":true,"data":{"a":"1"}});
        let thawed = json!({"metadata":{"name":"c"},"data":{"a":"1"}});
        let changed = json!({"metadata":{"name":"c"},"immutable":true,"data":{"a":"2"}});
        let msgs = |new: &Value| -> Vec<String> {
            validate("ConfigMap", new, Some(&frozen))
                .iter()
                .map(FieldError::message)
                .collect()
        };
        assert!(msgs(&frozen).is_empty());
        assert_eq!(
            msgs(&thawed),
            ["immutable: Forbidden: field is immutable when `immutable` is set"]
        );
        assert_eq!(
            msgs(&changed),
            ["data: Forbidden: field is immutable when `immutable` is set"]
        );
    }

    #[test]
    fn secrets_default_their_type_and_take_string_data() {
        let mut s = json!({"metadata":{"name":"s"},"data":{"a":"YQ=="},"stringData":{"b":"hunter2","a":"x"}});
        apply_defaults("Secret", &mut s);
        assert_eq!(
            s,
            json!({"metadata":{"name":"s"},"type":"Opaque","data":{"a":"eA==","b":"aHVudGVyMg=="}})
        );
        assert!(messages("Secret", &s).is_empty());
        let tls =
            json!({"metadata":{"name":"s"},"type":"kubernetes.io/tls","data":{"tls.crt":"YQ=="}});
        assert_eq!(messages("Secret", &tls), ["data[tls.key]: Required value"]);
        let retyped = json!({"metadata":{"name":"s"},"type":"kubernetes.io/basic-auth","data":{}});
        let errs: Vec<String> = validate("Secret", &retyped, Some(&s))
            .iter()
            .map(FieldError::message)
            .collect();
        assert_eq!(
            errs,
            ["type: Invalid value: \"kubernetes.io/basic-auth\": field is immutable"]
        );
    }

    fn deployment(spec: Value) -> Value {
        let mut d = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},
            "spec":{"selector":{"matchLabels":{"app":"web"}},
                "template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"c","image":"nginx:1.25"}]}}}});
        if let (Some(s), Some(extra)) = (d["spec"].as_object_mut(), spec.as_object()) {
            for (k, v) in extra {
                s.insert(k.clone(), v.clone());
            }
        }
        apply_defaults("Deployment", &mut d);
        d
    }

    fn messages(kind: &str, obj: &Value) -> Vec<String> {
        validate(kind, obj, None)
            .iter()
            .map(FieldError::message)
            .collect()
    }

    #[test]
    fn deployment_defaults() {
        let d = deployment(json!({}));
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type":"RollingUpdate","rollingUpdate":{"maxSurge":"25%","maxUnavailable":"25%"}})
        );
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert!(d["spec"]["template"]["metadata"]["creationTimestamp"].is_null());
        assert!(
            d["spec"]["template"]["metadata"]
                .as_object()
                .unwrap()
                .contains_key("creationTimestamp")
        );
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["resources"], json!({}));
        let ps = &d["spec"]["template"]["spec"];
        assert_eq!(ps["restartPolicy"], "Always");
        assert_eq!(ps["dnsPolicy"], "ClusterFirst");
        assert_eq!(ps["schedulerName"], "default-scheduler");
        assert_eq!(ps["terminationGracePeriodSeconds"], 30);
        assert_eq!(ps["securityContext"], json!({}));
        assert!(
            messages("Deployment", &d).is_empty(),
            "{:?}",
            messages("Deployment", &d)
        );
    }

    #[test]
    fn daemonset_and_rc_defaults() {
        let mut ds = json!({"metadata":{"name":"ds"},"spec":{"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"busybox"}]}}}});
        apply_defaults("DaemonSet", &mut ds);
        assert_eq!(
            ds["spec"]["updateStrategy"],
            json!({"type":"RollingUpdate","rollingUpdate":{"maxUnavailable":1,"maxSurge":0}})
        );
        assert_eq!(
            ds["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "Always"
        );
        assert!(messages("DaemonSet", &ds).is_empty());
        let mut rc = json!({"metadata":{"name":"rc"},"spec":{"template":{"metadata":{"labels":{"app":"x"}},"spec":{"containers":[{"name":"c","image":"busybox:latest"}]}}}});
        apply_defaults("ReplicationController", &mut rc);
        assert_eq!(rc["spec"]["selector"], json!({"app":"x"}));
        assert_eq!(rc["metadata"]["labels"], json!({"app":"x"}));
        assert_eq!(rc["spec"]["replicas"], 1);
        assert!(messages("ReplicationController", &rc).is_empty());
    }

    #[test]
    fn pod_defaults() {
        let mut pod = json!({"metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"r.io:5000/app","resources":{"limits":{"cpu":"1"}},"ports":[{"containerPort":80}]}],"volumes":[{"name":"v"},{"name":"s","secret":{"secretName":"x"}}]}});
        apply_defaults("Pod", &mut pod);
        let spec = &pod["spec"];
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(
            spec["containers"][0]["resources"]["requests"],
            json!({"cpu":"1"})
        );
        assert_eq!(spec["containers"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(spec["volumes"][0]["emptyDir"], json!({}));
        assert_eq!(spec["volumes"][1]["secret"]["defaultMode"], 420);
        assert_eq!(spec["enableServiceLinks"], true);
        assert_eq!(spec["tolerations"].as_array().unwrap().len(), 2);
        assert_eq!(spec["tolerations"][0]["tolerationSeconds"], 300);
        assert!(
            messages("Pod", &pod).is_empty(),
            "{:?}",
            messages("Pod", &pod)
        );
    }

    #[test]
    fn pull_policies() {
        for (image, want) in [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.25", "IfNotPresent"),
            ("registry:5000/nginx", "Always"),
            ("registry:5000/nginx:v1", "IfNotPresent"),
            ("nginx@sha256:abc", "IfNotPresent"),
        ] {
            assert_eq!(pull_policy_for(image), want, "{image}");
        }
    }

    #[test]
    fn upstream_messages() {
        let cases: Vec<(&str, Value, &str)> = vec![
            (
                "Deployment",
                deployment(
                    json!({"strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":0,"maxUnavailable":0}}}),
                ),
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0",
            ),
            (
                "Deployment",
                deployment(json!({"selector":{"matchLabels":{"app":"other"}}})),
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`",
            ),
            (
                "Deployment",
                deployment(json!({"replicas":-1})),
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            ),
            (
                "Deployment",
                deployment(
                    json!({"strategy":{"type":"RollingUpdate","rollingUpdate":{"maxUnavailable":"110%"}}}),
                ),
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 110%: must not be greater than 100%",
            ),
            (
                "Deployment",
                deployment(
                    json!({"strategy":{"type":"Recreate","rollingUpdate":{"maxUnavailable":1}}}),
                ),
                "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'",
            ),
            (
                "Deployment",
                deployment(
                    json!({"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"c"}]}}}),
                ),
                "spec.template.spec.containers[0].image: Required value",
            ),
            (
                "Deployment",
                {
                    let mut d = deployment(json!({}));
                    d["metadata"]["name"] = json!("Web");
                    d
                },
                "metadata.name: Invalid value: \"Web\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            ),
            (
                "DaemonSet",
                {
                    let mut d = deployment(json!({}));
                    d["spec"].as_object_mut().unwrap().remove("strategy");
                    d["spec"]["updateStrategy"] = json!({"type":"RollingUpdate","rollingUpdate":{"maxUnavailable":0,"maxSurge":0}});
                    d
                },
                "spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0",
            ),
            (
                "Namespace",
                json!({"metadata":{"name":"a.b"}}),
                "metadata.name: Invalid value: \"a.b\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            ),
        ];
        for (kind, obj, want) in cases {
            let got = messages(kind, &obj);
            assert!(
                got.iter().any(|m| m == want),
                "{kind}: want {want}\n got {got:?}"
            );
        }
    }

    #[test]
    fn immutable_selector_and_pod_spec() {
        let old = deployment(json!({}));
        let mut new = old.clone();
        new["spec"]["selector"] = json!({"matchLabels":{"app":"web","x":"y"}});
        new["spec"]["template"]["metadata"]["labels"]["x"] = json!("y");
        let got: Vec<String> = validate("Deployment", &new, Some(&old))
            .iter()
            .map(FieldError::message)
            .collect();
        assert_eq!(
            got,
            vec![
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\", \"x\":\"y\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
            ]
        );

        let mut pod =
            json!({"metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"a"}]}});
        apply_defaults("Pod", &mut pod);
        let mut image = pod.clone();
        image["spec"]["containers"][0]["image"] = json!("b");
        assert!(validate("Pod", &image, Some(&pod)).is_empty());
        let mut other = pod.clone();
        other["spec"]["restartPolicy"] = json!("Never");
        assert_eq!(validate("Pod", &other, Some(&pod))[0].field, "spec");
    }

    #[test]
    fn status_rules() {
        let d = json!({"status":{"replicas":1,"updatedReplicas":2,"readyReplicas":-1}});
        let got: Vec<String> = validate_status("Deployment", &d, &d)
            .iter()
            .map(FieldError::message)
            .collect();
        assert!(
            got.contains(
                &"status.readyReplicas: Invalid value: -1: must be greater than or equal to 0"
                    .to_string()
            )
        );
        assert!(
            got.contains(
                &"status.updatedReplicas: Invalid value: 2: cannot be greater than status.replicas"
                    .to_string()
            )
        );
    }
}
