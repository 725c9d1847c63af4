//! Prometheus metrics at `/metrics` (text format 0.0.4), named as kube-apiserver names them
//! where it has a name for the same thing.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, Ordering};

use parking_lot::Mutex;

/// (verb, group, resource, code) of a request.
type RequestKey = (String, &'static str, &'static str, u16);

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<RequestKey, u64>>,
    /// Open watch streams.
    pub watchers: AtomicI64,
}

impl Metrics {
    pub fn record(&self, verb: &str, group: &'static str, resource: &'static str, code: u16) {
        *self
            .requests
            .lock()
            .entry((verb.to_string(), group, resource, code))
            .or_default() += 1;
    }

    /// The exposition text; `revision` is the store's current revision.
    pub fn render(&self, revision: i64, objects: &[(&'static str, usize)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP apiserver_request_total Counter of apiserver requests broken out by verb, group, resource and HTTP response code.\n");
        out.push_str("# TYPE apiserver_request_total counter\n");
        for ((verb, group, resource, code), n) in self.requests.lock().iter() {
            let _ = writeln!(
                out,
                "apiserver_request_total{{verb=\"{verb}\",group=\"{group}\",resource=\"{resource}\",code=\"{code}\"}} {n}"
            );
        }
        out.push_str("# HELP apiserver_longrunning_requests Number of open watch streams.\n");
        out.push_str("# TYPE apiserver_longrunning_requests gauge\n");
        let _ = writeln!(
            out,
            "apiserver_longrunning_requests{{verb=\"WATCH\"}} {}",
            self.watchers.load(Ordering::Relaxed)
        );
        out.push_str("# HELP apiserver_storage_objects Number of stored objects at the time of last check split by kind.\n");
        out.push_str("# TYPE apiserver_storage_objects gauge\n");
        for (resource, n) in objects {
            let _ = writeln!(
                out,
                "apiserver_storage_objects{{resource=\"{resource}\"}} {n}"
            );
        }
        out.push_str("# HELP ger_store_revision The store's current revision.\n");
        out.push_str("# TYPE ger_store_revision gauge\n");
        let _ = writeln!(out, "ger_store_revision {revision}");
        out
    }
}
