//! Controller expectations (`pkg/controller/controller_utils.go`): after asking for creations
//! or deletions a controller waits to observe them before it trusts its cache again, for at
//! most five minutes. Deletions are tracked by pod key (the ReplicaSet's UID-tracking flavour).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Record {
    add: i64,
    del: i64,
    del_keys: HashSet<String>,
    at: Instant,
}

#[derive(Default)]
pub struct Expectations {
    records: Mutex<HashMap<String, Record>>,
}

impl Expectations {
    pub fn satisfied(&self, key: &str) -> bool {
        match self.records.lock().get(key) {
            None => true,
            Some(r) => {
                (r.add <= 0 && r.del <= 0 && r.del_keys.is_empty())
                    || r.at.elapsed() > EXPECTATIONS_TIMEOUT
            }
        }
    }

    pub fn expect_creations(&self, key: &str, n: i64) {
        self.records.lock().insert(
            key.to_string(),
            Record {
                add: n,
                del: 0,
                del_keys: HashSet::new(),
                at: Instant::now(),
            },
        );
    }

    /// Expect `n` deletions of any dependents (the DaemonSet flavour).
    pub fn expect_deletions(&self, key: &str, n: i64) {
        self.records.lock().insert(
            key.to_string(),
            Record {
                add: 0,
                del: n,
                del_keys: HashSet::new(),
                at: Instant::now(),
            },
        );
    }

    /// Expect these exact dependents to be deleted (the ReplicaSet flavour).
    pub fn expect_deletion_of(&self, key: &str, keys: impl IntoIterator<Item = String>) {
        self.records.lock().insert(
            key.to_string(),
            Record {
                add: 0,
                del: 0,
                del_keys: keys.into_iter().collect(),
                at: Instant::now(),
            },
        );
    }

    /// Set both counts at once (DaemonSet: creations and deletions in one sync).
    pub fn set(&self, key: &str, add: i64, del: i64) {
        self.records.lock().insert(
            key.to_string(),
            Record {
                add,
                del,
                del_keys: HashSet::new(),
                at: Instant::now(),
            },
        );
    }

    pub fn creation_observed(&self, key: &str) {
        if let Some(r) = self.records.lock().get_mut(key) {
            r.add -= 1;
        }
    }

    pub fn lower(&self, key: &str, add: i64, del: i64) {
        if let Some(r) = self.records.lock().get_mut(key) {
            r.add -= add;
            r.del -= del;
        }
    }

    /// A dependent was deleted (or marked for deletion).
    pub fn deletion_observed(&self, key: &str, dependent: Option<&str>) {
        if let Some(r) = self.records.lock().get_mut(key) {
            match dependent {
                Some(d) if r.del_keys.remove(d) => {}
                Some(_) if !r.del_keys.is_empty() => {}
                _ => r.del -= 1,
            }
        }
    }

    pub fn delete(&self, key: &str) {
        self.records.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_follow_upstream() {
        let e = Expectations::default();
        assert!(e.satisfied("a"), "no record: satisfied");
        e.expect_creations("a", 2);
        assert!(!e.satisfied("a"));
        e.creation_observed("a");
        assert!(!e.satisfied("a"));
        e.creation_observed("a");
        assert!(e.satisfied("a"));
        e.expect_deletion_of("a", ["ns/p1".to_string(), "ns/p2".to_string()]);
        e.deletion_observed("a", Some("ns/other"));
        assert!(!e.satisfied("a"), "only the expected pods count");
        e.deletion_observed("a", Some("ns/p1"));
        e.deletion_observed("a", Some("ns/p2"));
        assert!(e.satisfied("a"));
        e.set("b", 1, 1);
        e.lower("b", 1, 0);
        assert!(!e.satisfied("b"));
        e.deletion_observed("b", Some("x"));
        assert!(e.satisfied("b"));
    }
}
