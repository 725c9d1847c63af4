//! A work queue with client-go's guarantees: a key is queued at most once, is processed by
//! at most one worker at a time (an add while it is processed runs it once more afterwards),
//! and failures are retried with per-key exponential backoff.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct State {
    queue: VecDeque<String>,
    dirty: HashSet<String>,
    processing: HashSet<String>,
    failures: HashMap<String, u32>,
    shut: bool,
}

#[derive(Default)]
pub struct Queue {
    state: Mutex<State>,
    notify: Notify,
}

/// What a reconcile asks of the queue.
pub enum Outcome {
    /// Done; forget the key's failures.
    Done,
    /// Run again after this delay (and forget failures).
    RequeueAfter(Duration),
}

const BASE_DELAY: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_secs(300);

impl Queue {
    pub fn new() -> Arc<Queue> {
        Arc::new(Queue::default())
    }

    pub fn add(&self, key: impl Into<String>) {
        let key = key.into();
        let mut s = self.state.lock();
        if s.shut || s.dirty.contains(&key) {
            return;
        }
        s.dirty.insert(key.clone());
        if !s.processing.contains(&key) {
            s.queue.push_back(key);
            drop(s);
            self.notify.notify_one();
        }
    }

    pub fn add_after(self: &Arc<Self>, key: impl Into<String>, delay: Duration) {
        let key = key.into();
        if delay.is_zero() {
            self.add(key);
            return;
        }
        let q = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(q) = q.upgrade() {
                q.add(key);
            }
        });
    }

    /// Retry `key` after its backoff: 5 ms, doubling per consecutive failure, at most 5 min.
    pub fn add_rate_limited(self: &Arc<Self>, key: &str) {
        let n = {
            let mut s = self.state.lock();
            let n = s.failures.entry(key.to_string()).or_insert(0);
            *n += 1;
            *n
        };
        let delay = BASE_DELAY
            .saturating_mul(1u32 << (n - 1).min(20))
            .min(MAX_DELAY);
        self.add_after(key.to_string(), delay);
    }

    pub fn forget(&self, key: &str) {
        self.state.lock().failures.remove(key);
    }

    pub fn len(&self) -> usize {
        self.state.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    async fn get(&self) -> Option<String> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before looking, so an add in between is not missed.
            notified.as_mut().enable();
            {
                let mut s = self.state.lock();
                if s.shut {
                    return None;
                }
                if let Some(key) = s.queue.pop_front() {
                    s.dirty.remove(&key);
                    s.processing.insert(key.clone());
                    return Some(key);
                }
            }
            notified.await;
        }
    }

    fn done(&self, key: &str) {
        let mut s = self.state.lock();
        s.processing.remove(key);
        if s.dirty.contains(key) {
            s.queue.push_back(key.to_string());
            drop(s);
            self.notify.notify_one();
        }
    }

    pub fn shut_down(&self) {
        self.state.lock().shut = true;
        self.notify.notify_waiters();
    }

    /// Queue every key, then run `workers` workers syncing them with `sync` on `ctl` until
    /// `stop` fires: a controller's main loop.
    pub async fn serve<C, Fut, E>(
        self: Arc<Self>,
        keys: impl IntoIterator<Item = String>,
        ctl: Arc<C>,
        sync: fn(Arc<C>, String) -> Fut,
        workers: usize,
        stop: CancellationToken,
    ) where
        C: Send + Sync + 'static,
        Fut: Future<Output = Result<Outcome, E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        for k in keys {
            self.add(k);
        }
        self.run(workers, stop, move |key| sync(ctl.clone(), key))
            .await;
    }

    /// Run `workers` workers calling `reconcile` for each key until `stop` fires.
    pub async fn run<F, Fut, E>(
        self: Arc<Self>,
        workers: usize,
        stop: CancellationToken,
        reconcile: F,
    ) where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Outcome, E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let reconcile = Arc::new(reconcile);
        let mut tasks = Vec::new();
        for _ in 0..workers.max(1) {
            let q = self.clone();
            let reconcile = reconcile.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(key) = q.get().await {
                    // A panicking sync must not take the worker (and its key) with it.
                    let run = std::panic::AssertUnwindSafe(reconcile(key.clone()));
                    let Ok(result) = futures::FutureExt::catch_unwind(run).await else {
                        tracing::error!(%key, "sync panicked; retrying");
                        q.add_rate_limited(&key);
                        q.done(&key);
                        continue;
                    };
                    match result {
                        Ok(Outcome::Done) => q.forget(&key),
                        Ok(Outcome::RequeueAfter(d)) => {
                            q.forget(&key);
                            q.add_after(key.clone(), d);
                        }
                        Err(e) => {
                            tracing::debug!(%key, error = %e, "sync failed; retrying");
                            q.add_rate_limited(&key);
                        }
                    }
                    q.done(&key);
                }
            }));
        }
        stop.cancelled().await;
        self.shut_down();
        for t in tasks {
            let _ = t.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn keys_are_deduplicated_and_serialised() {
        let q = Queue::new();
        for _ in 0..10 {
            q.add("a");
        }
        q.add("b");
        assert_eq!(q.len(), 2);
        let runs = Arc::new(AtomicUsize::new(0));
        let active = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let (r, a, q2) = (runs.clone(), active.clone(), q.clone());
        let worker = tokio::spawn(q.clone().run(4, stop.clone(), move |key| {
            let (r, a, q2) = (r.clone(), a.clone(), q2.clone());
            async move {
                if key == "a" {
                    assert_eq!(a.fetch_add(1, Ordering::SeqCst), 0, "one worker per key");
                    // Added again while processing: runs once more afterwards.
                    if r.fetch_add(1, Ordering::SeqCst) == 0 {
                        q2.add("a");
                        q2.add("a");
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    a.fetch_sub(1, Ordering::SeqCst);
                }
                Ok::<_, String>(Outcome::Done)
            }
        }));
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.cancel();
        worker.await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn failures_back_off_and_retry() {
        let q = Queue::new();
        q.add("k");
        let tries = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let t = tries.clone();
        let worker = tokio::spawn(q.clone().run(1, stop.clone(), move |_| {
            let t = t.clone();
            async move {
                if t.fetch_add(1, Ordering::SeqCst) < 3 {
                    Err("not yet".to_string())
                } else {
                    Ok(Outcome::Done)
                }
            }
        }));
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.cancel();
        worker.await.unwrap();
        assert_eq!(tries.load(Ordering::SeqCst), 4);
    }
}
