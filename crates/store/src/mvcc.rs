//! The in-memory MVCC engine shared by every backend.
//!
//! Assumptions: all writes go through one `Engine`; a persistence sink (if any) commits
//! records in the order it receives them.
//! Invariants: revisions are assigned under the state lock, so history is in revision order;
//! a watcher receives each event with a revision above its start exactly once, in order,
//! and only after the sink has made it durable; a write is acknowledged only once durable.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use crate::{
    Bytes, Event, EventKind, KeyValue, Result, Revision, Store, StoreError, WatchReceiver,
};

/// How many events of history are kept in memory for watches and past-revision lists.
pub const DEFAULT_HISTORY: usize = 10_000;

pub(crate) struct State {
    pub(crate) rev: Revision,
    pub(crate) keys: BTreeMap<Arc<str>, KeyValue>,
    /// Events with revisions in `(compacted, rev]`.
    pub(crate) history: VecDeque<Event>,
    pub(crate) compacted: Revision,
    history_cap: usize,
}

impl State {
    pub(crate) fn new(history_cap: usize) -> Self {
        State {
            rev: 0,
            keys: BTreeMap::new(),
            history: VecDeque::new(),
            compacted: 0,
            history_cap: history_cap.max(1),
        }
    }

    /// Apply an event that is already complete (used when loading persisted history).
    pub(crate) fn replay(&mut self, ev: Event, keep_history: bool) {
        self.rev = ev.kv.mod_revision;
        match ev.kind {
            EventKind::Put => {
                self.keys.insert(ev.kv.key.clone(), ev.kv.clone());
            }
            EventKind::Delete => {
                self.keys.remove(&ev.kv.key);
            }
        }
        if keep_history {
            self.push_history(ev);
        }
    }

    fn push_history(&mut self, ev: Event) {
        self.history.push_back(ev);
        while self.history.len() > self.history_cap {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.kv.mod_revision;
            }
        }
    }

    fn compact(&mut self, revision: Revision) {
        let revision = revision.min(self.rev);
        while self
            .history
            .front()
            .is_some_and(|e| e.kv.mod_revision <= revision)
        {
            self.history.pop_front();
        }
        self.compacted = self.compacted.max(revision);
    }

    fn create(&mut self, key: &str, value: Bytes) -> Result<Event> {
        if self.keys.contains_key(key) {
            return Err(StoreError::AlreadyExists(key.to_string()));
        }
        let rev = self.rev + 1;
        let kv = KeyValue {
            key: Arc::from(key),
            value,
            create_revision: rev,
            mod_revision: rev,
        };
        Ok(self.commit(Event {
            kind: EventKind::Put,
            kv,
            prev: None,
        }))
    }

    fn current(&self, key: &str, expected: Option<Revision>) -> Result<&KeyValue> {
        let cur = self
            .keys
            .get(key)
            .ok_or_else(|| StoreError::NotFound(key.to_string()))?;
        if let Some(expected) = expected
            && cur.mod_revision != expected
        {
            return Err(StoreError::Conflict {
                key: key.to_string(),
                expected,
                current: cur.mod_revision,
            });
        }
        Ok(cur)
    }

    fn update(&mut self, key: &str, value: Bytes, expected: Option<Revision>) -> Result<Event> {
        let prev = self.current(key, expected)?.clone();
        let kv = KeyValue {
            key: prev.key.clone(),
            value,
            create_revision: prev.create_revision,
            mod_revision: self.rev + 1,
        };
        Ok(self.commit(Event {
            kind: EventKind::Put,
            kv,
            prev: Some(prev),
        }))
    }

    fn delete(&mut self, key: &str, expected: Option<Revision>) -> Result<Event> {
        let prev = self.current(key, expected)?.clone();
        let kv = KeyValue {
            mod_revision: self.rev + 1,
            ..prev.clone()
        };
        Ok(self.commit(Event {
            kind: EventKind::Delete,
            kv,
            prev: Some(prev),
        }))
    }

    fn commit(&mut self, ev: Event) -> Event {
        self.replay(ev.clone(), true);
        ev
    }

    fn list(&self, prefix: &str, revision: Option<Revision>) -> Result<(Vec<KeyValue>, Revision)> {
        let at = revision.unwrap_or(self.rev);
        if at < self.compacted {
            return Err(StoreError::Compacted {
                requested: at,
                oldest: self.compacted + 1,
            });
        }
        let mut view: BTreeMap<Arc<str>, KeyValue> = self
            .keys
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if at < self.rev {
            // Undo the writes after `at`, newest first.
            for ev in self.history.iter().rev() {
                if ev.kv.mod_revision <= at {
                    break;
                }
                if !ev.kv.key.starts_with(prefix) {
                    continue;
                }
                match &ev.prev {
                    Some(prev) => view.insert(prev.key.clone(), prev.clone()),
                    None => view.remove(&ev.kv.key),
                };
            }
        }
        Ok((view.into_values().collect(), at.min(self.rev)))
    }
}

struct Watcher {
    prefix: String,
    /// The last revision this watcher has been sent (or skipped).
    last: Revision,
    tx: mpsc::UnboundedSender<Event>,
}

#[derive(Default)]
pub(crate) struct Hub {
    /// The last revision handed to watchers (everything up to it is durable).
    dispatched: Revision,
    watchers: Vec<Watcher>,
}

impl Hub {
    pub(crate) fn dispatch(&mut self, ev: &Event) {
        let rev = ev.kv.mod_revision;
        self.watchers.retain_mut(|w| {
            if rev <= w.last {
                return true;
            }
            w.last = rev;
            if ev.kv.key.starts_with(&w.prefix) {
                w.tx.send(ev.clone()).is_ok()
            } else {
                !w.tx.is_closed()
            }
        });
        self.dispatched = self.dispatched.max(rev);
    }

    pub(crate) fn set_dispatched(&mut self, rev: Revision) {
        self.dispatched = rev;
    }

    /// Drop every watcher (their streams end).
    pub(crate) fn close(&mut self) {
        self.watchers.clear();
    }
}

/// A write on its way to the persistence sink.
pub(crate) enum Record {
    Write(Event, oneshot::Sender<Result<()>>),
    Compact(Revision),
}

/// The persistence side of a backend: receives records in revision order.
pub(crate) type Sink = std::sync::mpsc::Sender<Record>;

/// The MVCC store: the memory backend as it is, and the state of the persistent backends.
pub struct MvccStore {
    pub(crate) state: Mutex<State>,
    pub(crate) hub: Arc<Mutex<Hub>>,
    sink: Option<Sink>,
    /// Compactions are forwarded to the sink once they advanced this far.
    last_sink_compact: Mutex<Revision>,
}

impl MvccStore {
    pub(crate) fn new(state: State, hub: Arc<Mutex<Hub>>, sink: Option<Sink>) -> Self {
        let compacted = state.compacted;
        MvccStore {
            state: Mutex::new(state),
            hub,
            sink,
            last_sink_compact: Mutex::new(compacted),
        }
    }

    async fn write(&self, op: impl FnOnce(&mut State) -> Result<Event>) -> Result<KeyValue> {
        let (kv, ack) = {
            let mut st = self.state.lock();
            let ev = op(&mut st)?;
            let kv = ev.kv.clone();
            let Some(sink) = &self.sink else {
                self.hub.lock().dispatch(&ev);
                return Ok(kv);
            };
            let (tx, rx) = oneshot::channel();
            sink.send(Record::Write(ev, tx))
                .map_err(|_| StoreError::Closed)?;
            let mut last = self.last_sink_compact.lock();
            if st.compacted - *last >= 1_000 {
                *last = st.compacted;
                let _ = sink.send(Record::Compact(st.compacted));
            }
            (kv, rx)
        };
        ack.await.map_err(|_| StoreError::Closed)??;
        Ok(kv)
    }

    fn watch(&self, prefix: &str, after: Revision) -> Result<WatchReceiver> {
        let st = self.state.lock();
        if after < st.compacted {
            return Err(StoreError::Compacted {
                requested: after,
                oldest: st.compacted + 1,
            });
        }
        let mut hub = self.hub.lock();
        let (tx, rx) = mpsc::unbounded_channel();
        for ev in &st.history {
            let rev = ev.kv.mod_revision;
            if rev > after && rev <= hub.dispatched && ev.kv.key.starts_with(prefix) {
                let _ = tx.send(ev.clone());
            }
        }
        let last = after.max(hub.dispatched);
        hub.watchers.push(Watcher {
            prefix: prefix.to_string(),
            last,
            tx,
        });
        Ok(rx)
    }
}

#[async_trait::async_trait]
impl Store for MvccStore {
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        self.write(|st| st.create(key, value)).await
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.state.lock().keys.get(key).cloned())
    }

    async fn list(
        &self,
        prefix: &str,
        revision: Option<Revision>,
    ) -> Result<(Vec<KeyValue>, Revision)> {
        self.state.lock().list(prefix, revision)
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Option<Revision>,
    ) -> Result<KeyValue> {
        self.write(|st| st.update(key, value, expected)).await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        self.write(|st| st.delete(key, expected)).await
    }

    fn watch(&self, prefix: &str, after: Revision) -> Result<WatchReceiver> {
        MvccStore::watch(self, prefix, after)
    }

    fn current_revision(&self) -> Revision {
        self.state.lock().rev
    }

    fn compacted_revision(&self) -> Revision {
        self.state.lock().compacted
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let mut st = self.state.lock();
        st.compact(revision);
        if let Some(sink) = &self.sink {
            *self.last_sink_compact.lock() = st.compacted;
            sink.send(Record::Compact(st.compacted))
                .map_err(|_| StoreError::Closed)?;
        }
        Ok(())
    }
}

impl MvccStore {
    /// The memory backend: no persistence, `history` events kept for watches.
    pub fn memory(history: usize) -> Self {
        MvccStore::new(State::new(history), Arc::default(), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance;

    #[tokio::test]
    async fn memory_conformance() {
        conformance::run_all(|| async { Arc::new(MvccStore::memory(1_000)) as crate::DynStore })
            .await;
    }
}
