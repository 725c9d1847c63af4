//! The SQLite backend: one file (`<dir>/state.db`), WAL, group commit.
//!
//! Every write is a row `(rev, key, value, create_rev, deleted)`, as kine keeps them; the
//! current state is the newest row of each key. One writer thread commits whatever has queued
//! up in one transaction, then hands the events to watchers and acknowledges the writers, so a
//! write is acknowledged only after it is durable (it survives `kill -9`), and watchers never
//! see a revision that a crash could take back.
//!
//! On open, the file is replayed into the in-memory MVCC engine: the current state and the
//! history since the last compaction.

use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::{Connection, params};

use crate::mvcc::{Hub, MvccStore, Record, State};
use crate::{Event, EventKind, KeyValue, Result, Revision, StoreError};

/// How many queued writes one transaction takes at most.
const MAX_BATCH: usize = 2_048;

fn open_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Open(e.to_string())
}

/// Open (or create) the store in `dir`, keeping `history` events in memory.
pub fn open_sqlite(dir: &Path, history: usize) -> Result<MvccStore> {
    std::fs::create_dir_all(dir).map_err(open_err)?;
    let conn = Connection::open(dir.join("state.db")).map_err(open_err)?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL;
         PRAGMA synchronous=NORMAL;
         CREATE TABLE IF NOT EXISTS kv (
             rev INTEGER PRIMARY KEY,
             key TEXT NOT NULL,
             value BLOB NOT NULL,
             create_rev INTEGER NOT NULL,
             deleted INTEGER NOT NULL);
         CREATE INDEX IF NOT EXISTS kv_key ON kv(key, rev);
         CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);",
    )
    .map_err(open_err)?;
    let state = load(&conn, history)?;
    let hub = Arc::new(Mutex::new(Hub::default()));
    hub.lock().set_dispatched(state.rev);
    let (tx, rx) = std::sync::mpsc::channel();
    let writer_hub = hub.clone();
    std::thread::Builder::new()
        .name("ger-store-sqlite".into())
        .spawn(move || writer(conn, rx, writer_hub))
        .map_err(open_err)?;
    Ok(MvccStore::new(state, hub, Some(tx)))
}

fn load(conn: &Connection, history: usize) -> Result<State> {
    let compacted: Revision = conn
        .query_row("SELECT value FROM meta WHERE name = 'compacted'", [], |r| {
            r.get(0)
        })
        .unwrap_or(0);
    let mut state = State::new(history);
    let mut stmt = conn
        .prepare("SELECT rev, key, value, create_rev, deleted FROM kv ORDER BY rev")
        .map_err(open_err)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, bool>(4)?,
            ))
        })
        .map_err(open_err)?;
    for row in rows {
        let (rev, key, value, create_rev, deleted) = row.map_err(open_err)?;
        let key: Arc<str> = Arc::from(key);
        let prev = state.keys.get(&key).cloned();
        let kv = KeyValue {
            key,
            value: Arc::from(value),
            create_revision: create_rev,
            mod_revision: rev,
        };
        let kind = if deleted {
            EventKind::Delete
        } else {
            EventKind::Put
        };
        state.replay(Event { kind, kv, prev }, rev > compacted);
    }
    state.compacted = state.compacted.max(compacted.min(state.rev));
    Ok(state)
}

fn writer(mut conn: Connection, rx: std::sync::mpsc::Receiver<Record>, hub: Arc<Mutex<Hub>>) {
    let mut failed: Option<String> = None;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let outcome = match &failed {
            Some(e) => Err(e.clone()),
            None => commit(&mut conn, &batch).map_err(|e| e.to_string()),
        };
        if let Err(e) = &outcome {
            tracing::error!(error = %e, "sqlite store: commit failed; refusing further writes");
            failed = Some(e.clone());
        }
        let mut hub = hub.lock();
        for record in batch {
            if let Record::Write(ev, ack) = record {
                match &outcome {
                    Ok(()) => {
                        hub.dispatch(&ev);
                        let _ = ack.send(Ok(()));
                    }
                    Err(e) => {
                        let _ = ack.send(Err(StoreError::Persist(e.clone())));
                    }
                }
            }
        }
    }
    hub.lock().close();
}

fn commit(conn: &mut Connection, batch: &[Record]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO kv (rev, key, value, create_rev, deleted) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for record in batch {
            match record {
                Record::Write(ev, _) => {
                    insert.execute(params![
                        ev.kv.mod_revision,
                        &*ev.kv.key,
                        &*ev.kv.value,
                        ev.kv.create_revision,
                        ev.kind == EventKind::Delete,
                    ])?;
                }
                Record::Compact(rev) => {
                    // Keep, for each key, the newest row at or below `rev` unless it is a
                    // tombstone: that is the state at `rev`, the base later history builds on.
                    tx.execute(
                        "DELETE FROM kv WHERE rev <= ?1 AND (deleted = 1 OR EXISTS (
                             SELECT 1 FROM kv AS newer
                             WHERE newer.key = kv.key AND newer.rev > kv.rev AND newer.rev <= ?1))",
                        params![rev],
                    )?;
                    tx.execute(
                        "INSERT INTO meta (name, value) VALUES ('compacted', ?1)
                         ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                        params![rev],
                    )?;
                }
            }
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DynStore, Store, conformance};

    #[tokio::test]
    async fn sqlite_conformance() {
        let dirs = Arc::new(Mutex::new(Vec::new()));
        let keep = dirs.clone();
        conformance::run_all(move || {
            let dirs = keep.clone();
            async move {
                let dir = tempfile::tempdir().expect("tempdir");
                let store = open_sqlite(dir.path(), 1_000).expect("open");
                dirs.lock().push(dir);
                Arc::new(store) as DynStore
            }
        })
        .await;
        drop(dirs);
    }

    #[tokio::test]
    async fn reopen_keeps_state_history_and_revisions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut before = 0;
        {
            let store = open_sqlite(dir.path(), 1_000).expect("open");
            for i in 0..50 {
                store
                    .create(&format!("/r/k{i}"), Arc::from(&b"v"[..]))
                    .await
                    .expect("create");
            }
            store.delete("/r/k3", None).await.expect("delete");
            let kv = store
                .update("/r/k4", Arc::from(&b"w"[..]), None)
                .await
                .expect("update");
            before = before.max(kv.mod_revision);
        }
        // The writer thread finishes its queue when the store is dropped; give it a moment.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let store = open_sqlite(dir.path(), 1_000).expect("reopen");
        assert_eq!(store.current_revision(), before);
        let (items, _) = store.list("/r/", None).await.expect("list");
        assert_eq!(items.len(), 49);
        let k4 = store.get("/r/k4").await.expect("get").expect("k4");
        assert_eq!(&*k4.value, b"w");
        assert_eq!(k4.create_revision, 5);
        // A watch from before the reopen sees the later events.
        let mut rx = store.watch("/r/", 48).expect("watch");
        let a = rx.recv().await.expect("event");
        let b = rx.recv().await.expect("event");
        let c = rx.recv().await.expect("event");
        assert_eq!((a.revision(), b.revision(), c.revision()), (49, 50, 51));
        assert_eq!(c.kind, EventKind::Delete);
        let next = store
            .create("/r/new", Arc::from(&b"n"[..]))
            .await
            .expect("create");
        assert_eq!(next.mod_revision, before + 1);
    }

    #[tokio::test]
    async fn compaction_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = open_sqlite(dir.path(), 1_000).expect("open");
            for i in 0..10 {
                store
                    .create(&format!("/c/k{i}"), Arc::from(&b"v"[..]))
                    .await
                    .expect("create");
                store
                    .update(&format!("/c/k{i}"), Arc::from(&b"v2"[..]), None)
                    .await
                    .expect("update");
            }
            store.delete("/c/k0", None).await.expect("delete");
            store.compact(15).await.expect("compact");
            store
                .create("/c/after", Arc::from(&b"a"[..]))
                .await
                .expect("create");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let store = open_sqlite(dir.path(), 1_000).expect("reopen");
        assert_eq!(store.compacted_revision(), 15);
        let (items, rev) = store.list("/c/", None).await.expect("list");
        assert_eq!(rev, 22);
        assert_eq!(items.len(), 10);
        assert!(
            items
                .iter()
                .all(|kv| &*kv.key == "/c/after" || &*kv.value == b"v2")
        );
        assert!(matches!(
            store.watch("/c/", 10),
            Err(StoreError::Compacted { .. })
        ));
        let (at16, _) = store.list("/c/", Some(16)).await.expect("list at 16");
        assert_eq!(at16.len(), 8);
    }
}
