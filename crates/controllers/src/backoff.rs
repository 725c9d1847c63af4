//! Per-key exponential backoff (client-go's `flowcontrol.Backoff`): the DaemonSet controller
//! waits this long before killing another failed pod on the same node, so it does not fight a
//! node that keeps failing its pods.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub struct Backoff {
    initial: Duration,
    max: Duration,
    /// key → (current delay, when it was last stepped).
    entries: Mutex<HashMap<String, (Duration, Instant)>>,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The current delay of `key` (zero when it has none).
    pub fn get(&self, key: &str) -> Duration {
        self.entries
            .lock()
            .get(key)
            .map_or(Duration::ZERO, |(d, _)| *d)
    }

    /// Whether less than the current delay has passed since `key` last stepped.
    pub fn in_backoff_since_update(&self, key: &str, now: Instant) -> bool {
        self.entries
            .lock()
            .get(key)
            .is_some_and(|(d, at)| now.saturating_duration_since(*at) < *d)
    }

    /// Step `key`: the initial delay when it is new or long quiet (twice the maximum), else
    /// double, up to the maximum.
    pub fn next(&self, key: &str, now: Instant) {
        let mut entries = self.entries.lock();
        let delay = match entries.get(key) {
            Some((d, at)) if now.saturating_duration_since(*at) <= self.max * 2 => {
                (*d * 2).min(self.max)
            }
            _ => self.initial,
        };
        entries.insert(key.to_string(), (delay, now));
        // Forget keys quiet for long (client-go's GC, done as it goes).
        let max = self.max;
        entries.retain(|_, (_, at)| now.saturating_duration_since(*at) <= max * 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_to_the_maximum_and_reset_when_quiet() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(15 * 60));
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert!(!b.in_backoff_since_update("ds/node-1", t0));
        // (step at, delay after the step)
        let steps = [(0, 1), (1, 2), (3, 4), (7, 8), (15, 16), (31, 32)];
        for (at, delay) in steps {
            b.next("ds/node-1", t0 + s(at));
            assert_eq!(b.get("ds/node-1"), s(delay), "step at {at}s");
            assert!(b.in_backoff_since_update("ds/node-1", t0 + s(at)));
            assert!(!b.in_backoff_since_update("ds/node-1", t0 + s(at + delay)));
        }
        let mut at = t0 + s(31);
        for _ in 0..20 {
            at += s(1);
            b.next("ds/node-1", at);
        }
        assert_eq!(b.get("ds/node-1"), s(15 * 60), "capped");
        // Other keys are their own.
        assert_eq!(b.get("ds/node-2"), Duration::ZERO);
        // Quiet for more than twice the maximum: back to the start.
        b.next("ds/node-1", at + s(31 * 60));
        assert_eq!(b.get("ds/node-1"), s(1));
    }
}
