use super::*;

/// A protobuf writer for the cases kubectl does not send.
#[derive(Default)]
struct W(Vec<u8>);

impl W {
    fn varint(mut self, mut v: u64) -> Self {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(b);
                return self;
            }
            self.0.push(b | 0x80);
        }
    }
    fn int(self, num: u64, v: i64) -> Self {
        self.varint(num << 3).varint(v as u64)
    }
    fn bytes(self, num: u64, b: &[u8]) -> Self {
        let mut w = self.varint((num << 3) | 2).varint(b.len() as u64);
        w.0.extend_from_slice(b);
        w
    }
    fn str(self, num: u64, s: &str) -> Self {
        self.bytes(num, s.as_bytes())
    }
    fn msg(self, num: u64, m: W) -> Self {
        self.bytes(num, &m.0)
    }
}

fn envelope(api_version: &str, kind: &str, raw: W) -> Vec<u8> {
    let tm = W::default().str(1, api_version).str(2, kind);
    let mut out = MAGIC.to_vec();
    out.extend(W::default().msg(1, tm).msg(2, raw).0);
    out
}

include!("fixtures.rs");

#[test]
fn schema_resolves_every_message_it_names() {
    let s = schema();
    assert!(s.messages.len() > 150, "{}", s.messages.len());
    for (name, fields) in &s.messages {
        assert!(!fields.is_empty(), "{name} has no fields");
        for f in fields.values() {
            let types = match f.shape {
                Shape::Optional(t) | Shape::Repeated(t) => vec![t],
                Shape::Inline(m) => vec![Type::Message(m)],
                Shape::Map(_, t) => vec![t],
            };
            for t in types {
                if let Type::Message(m) = t {
                    assert!(s.messages.contains_key(m), "{name}.{} names {m}", f.name);
                }
            }
        }
    }
    for (av, kind, msg) in [
        ("v1", "Pod", "core.v1.Pod"),
        ("apps/v1", "Deployment", "apps.v1.Deployment"),
        ("policy/v1", "Eviction", "policy.v1.Eviction"),
        ("coordination.k8s.io/v1", "Lease", "coordination.v1.Lease"),
        ("v1", "DeleteOptions", "meta.v1.DeleteOptions"),
        ("meta.k8s.io/v1", "DeleteOptions", "meta.v1.DeleteOptions"),
    ] {
        assert_eq!(s.message_for(av, kind), Some(msg));
    }
    assert_eq!(s.message_for("v1", "Service"), Some("core.v1.Service"));
    assert_eq!(s.message_for("v1", "PersistentVolumeClaim"), None);
}

#[test]
fn kubectl_create_deployment() {
    let v = to_json(CREATE_DEPLOYMENT).unwrap();
    assert_eq!(
        v,
        json!({
            "kind": "Deployment",
            "apiVersion": "apps/v1",
            "metadata": {"name": "nginx", "labels": {"app": "nginx"}},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "nginx"}},
                "template": {
                    "metadata": {"labels": {"app": "nginx"}},
                    "spec": {
                        "containers": [{
                            "name": "nginx",
                            "image": "nginx:1.25",
                            "ports": [{"containerPort": 80}],
                            "resources": {},
                        }],
                    },
                },
                "strategy": {},
            },
            // status.replicas shares its name with the pointer spec.replicas; a create
            // ignores status anyway.
            "status": {"replicas": 0},
        })
    );
}

#[test]
fn kubectl_create_namespace() {
    let v = to_json(CREATE_NAMESPACE).unwrap();
    assert_eq!(
        v,
        json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "foo"}, "spec": {}, "status": {}})
    );
}

#[test]
fn special_messages_take_their_json_forms() {
    let time = W::default().int(1, 1_700_000_000);
    let micro = W::default().int(1, 1_700_000_000).int(2, 123_456_000);
    let meta = W::default()
        .str(1, "p")
        .msg(8, time)
        .msg(9, W::default().int(1, GO_ZERO_TIME))
        .msg(11, W::default().str(1, "a").str(2, ""));
    let port = W::default().int(3, 8080);
    let probe = W::default()
        .msg(
            1,
            W::default().msg(
                2,
                W::default()
                    .str(1, "/")
                    .msg(2, W::default().int(1, 1).str(3, "http")),
            ),
        ) // handler.httpGet
        .int(2, 0);
    let container = W::default()
        .str(1, "c")
        .msg(6, port)
        .msg(
            8,
            W::default().msg(
                1,
                W::default()
                    .str(1, "cpu")
                    .msg(2, W::default().str(1, "100m")),
            ),
        )
        .msg(10, probe);
    let volume = W::default()
        .str(1, "scratch")
        .msg(2, W::default().msg(2, W::default().str(1, "")));
    let spec = W::default()
        .msg(1, volume)
        .msg(2, container)
        .int(4, 0) // terminationGracePeriodSeconds: a pointer, 0 kept
        .int(11, 0) // hostNetwork: not a pointer, false dropped
        .msg(22, W::default().str(1, "k").str(2, "Exists"));
    let raw = W::default().msg(1, meta).msg(2, spec);
    let v = to_json(&envelope("v1", "Pod", raw)).unwrap();
    assert_eq!(
        v["metadata"]["creationTimestamp"],
        json!("2023-11-14T22:13:20Z")
    );
    assert!(v["metadata"].get("deletionTimestamp").is_none(), "{v}");
    assert_eq!(v["metadata"]["labels"], json!({"a": ""}));
    let c = &v["spec"]["containers"][0];
    assert_eq!(c["ports"], json!([{"containerPort": 8080}]));
    assert_eq!(c["resources"]["limits"], json!({"cpu": "100m"}));
    assert_eq!(
        c["livenessProbe"]["httpGet"],
        json!({"path": "/", "port": "http"})
    );
    assert_eq!(
        v["spec"]["volumes"],
        json!([{"name": "scratch", "emptyDir": {}}])
    );
    assert_eq!(v["spec"]["terminationGracePeriodSeconds"], json!(0));
    assert!(v["spec"].get("hostNetwork").is_none(), "{v}");
    assert_eq!(
        v["spec"]["tolerations"],
        json!([{"key": "k", "operator": "Exists"}])
    );

    // MicroTime keeps microseconds; an int IntOrString is a number.
    let ev = W::default().msg(1, W::default().str(1, "e")).msg(10, micro);
    let v = to_json(&envelope("v1", "Event", ev)).unwrap();
    assert_eq!(v["eventTime"], json!("2023-11-14T22:13:20.123456Z"));
    let ru = W::default()
        .msg(1, W::default().int(2, 2))
        .msg(2, W::default().int(2, 0));
    let strategy = W::default().str(1, "RollingUpdate").msg(2, ru);
    let ds = W::default().msg(2, W::default().msg(3, strategy));
    let v = to_json(&envelope("apps/v1", "DaemonSet", ds)).unwrap();
    assert_eq!(
        v["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"],
        json!(2)
    );
}

#[test]
fn raw_extensions_are_json_and_numbers_may_be_packed_or_negative() {
    let cr = W::default()
        .msg(1, W::default().str(1, "r"))
        .bytes(2, &W::default().bytes(1, br#"{"spec":{"x":1}}"#).0)
        .int(3, 7);
    let v = to_json(&envelope("apps/v1", "ControllerRevision", cr)).unwrap();
    assert_eq!(v["data"], json!({"spec": {"x": 1}}));
    assert_eq!(v["revision"], json!(7));

    // supplementalGroups (int64, repeated) packed; runAsUser negative.
    let packed = W::default().varint(1).varint(2).varint(3);
    let sc = W::default().int(2, -1).bytes(4, &packed.0);
    let v = to_json(&envelope(
        "v1",
        "Pod",
        W::default().msg(2, W::default().msg(14, sc)),
    ))
    .unwrap();
    assert_eq!(v["spec"]["securityContext"]["runAsUser"], json!(-1));
    assert_eq!(
        v["spec"]["securityContext"]["supplementalGroups"],
        json!([1, 2, 3])
    );
}

#[test]
fn unknown_fields_are_skipped() {
    let meta = W::default().str(1, "n").int(999, 5).str(998, "x");
    let v = to_json(&envelope("v1", "Namespace", W::default().msg(1, meta))).unwrap();
    assert_eq!(v["metadata"], json!({"name": "n"}));
}

#[test]
fn bad_bodies_are_errors_not_panics() {
    let good = envelope(
        "v1",
        "Namespace",
        W::default().msg(1, W::default().str(1, "n")),
    );
    assert!(to_json(b"{\"kind\":\"Namespace\"}").is_err());
    assert!(to_json(MAGIC).is_err(), "no kind");
    for cut in 4..good.len() {
        // Any prefix is an error or a smaller object, never a panic.
        let _ = to_json(&good[..cut]);
    }
    assert!(to_json(&good[..good.len() - 1]).is_err());
    let e = to_json(&envelope("v1", "PersistentVolumeClaim", W::default())).unwrap_err();
    assert!(e.to_string().contains("PersistentVolumeClaim"), "{e}");
    let bad_utf8 = envelope(
        "v1",
        "Namespace",
        W::default().msg(1, W::default().bytes(1, &[0xff, 0xfe])),
    );
    assert!(
        to_json(&bad_utf8)
            .unwrap_err()
            .to_string()
            .contains("UTF-8")
    );
    let wrong_wire = envelope("v1", "Namespace", W::default().int(1, 3));
    assert!(to_json(&wrong_wire).is_err());
    // Garbage at every depth is an error or an object, never a panic.
    let mut nest = W::default().str(1, "x");
    for _ in 0..100 {
        nest = W::default().msg(2, nest).bytes(1, &[0x08, 0xff]);
    }
    let _ = to_json(&envelope("v1", "Pod", nest));
}

#[test]
fn content_types() {
    assert!(is_protobuf("application/vnd.kubernetes.protobuf"));
    assert!(is_protobuf(
        "application/vnd.kubernetes.protobuf; charset=utf-8"
    ));
    assert!(!is_protobuf("application/json"));
    assert!(!is_protobuf("application/vnd.kubernetes.protobuf.x"));
}
