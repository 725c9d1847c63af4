#![allow(clippy::expect_used, clippy::panic)]
//! The conformance suite every backend passes: etcd's MVCC meaning as the apiserver relies on it.
//!
//! Each check takes a fresh, empty store from the factory.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::{DynStore, EventKind, StoreError};

fn v(s: &str) -> crate::Bytes {
    Arc::from(s.as_bytes())
}

async fn next(rx: &mut crate::WatchReceiver) -> crate::Event {
    match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
        Ok(Some(ev)) => ev,
        other => panic!("expected a watch event, got {other:?}"),
    }
}

/// Run every check, each on a fresh store.
pub async fn run_all<F, Fut>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = DynStore>,
{
    create_get_and_already_exists(factory().await).await;
    revisions_are_global_and_increasing(factory().await).await;
    guaranteed_update_and_conflict(factory().await).await;
    delete_with_precondition(factory().await).await;
    list_by_prefix_and_at_revision(factory().await).await;
    watch_from_revision_in_order(factory().await).await;
    watch_sees_concurrent_writes_once(factory().await).await;
    compaction_makes_old_revisions_too_old(factory().await).await;
}

pub async fn create_get_and_already_exists(s: DynStore) {
    let kv = s.create("/a/x", v("1")).await.expect("create");
    assert_eq!(kv.mod_revision, 1);
    assert_eq!(kv.create_revision, 1);
    let got = s.get("/a/x").await.expect("get").expect("present");
    assert_eq!(got, kv);
    assert_eq!(
        s.create("/a/x", v("2")).await,
        Err(StoreError::AlreadyExists("/a/x".into()))
    );
    assert_eq!(s.current_revision(), 1, "a failed write takes no revision");
    assert_eq!(s.get("/a/missing").await.expect("get"), None);
}

pub async fn revisions_are_global_and_increasing(s: DynStore) {
    let a = s.create("/a/1", v("a")).await.expect("create");
    let b = s.create("/b/1", v("b")).await.expect("create");
    let c = s.update("/a/1", v("a2"), None).await.expect("update");
    assert!(a.mod_revision < b.mod_revision && b.mod_revision < c.mod_revision);
    assert_eq!(c.create_revision, a.mod_revision);
    assert_eq!(s.current_revision(), c.mod_revision);
}

pub async fn guaranteed_update_and_conflict(s: DynStore) {
    let a = s.create("/a/x", v("1")).await.expect("create");
    let b = s
        .update("/a/x", v("2"), Some(a.mod_revision))
        .await
        .expect("update at the right revision");
    match s.update("/a/x", v("3"), Some(a.mod_revision)).await {
        Err(StoreError::Conflict { current, .. }) => assert_eq!(current, b.mod_revision),
        other => panic!("stale precondition must conflict, got {other:?}"),
    }
    let now = s.get("/a/x").await.expect("get").expect("present");
    assert_eq!(&*now.value, b"2");
    assert!(matches!(
        s.update("/a/missing", v("x"), None).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn delete_with_precondition(s: DynStore) {
    let a = s.create("/a/x", v("1")).await.expect("create");
    let b = s.update("/a/x", v("2"), None).await.expect("update");
    assert!(matches!(
        s.delete("/a/x", Some(a.mod_revision)).await,
        Err(StoreError::Conflict { .. })
    ));
    let gone = s
        .delete("/a/x", Some(b.mod_revision))
        .await
        .expect("delete");
    assert_eq!(&*gone.value, b"2");
    assert_eq!(gone.mod_revision, b.mod_revision + 1);
    assert_eq!(s.get("/a/x").await.expect("get"), None);
    assert!(matches!(
        s.delete("/a/x", None).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn list_by_prefix_and_at_revision(s: DynStore) {
    s.create("/pods/ns1/a", v("a")).await.expect("create");
    s.create("/pods/ns1/b", v("b")).await.expect("create");
    let r = s
        .create("/pods/ns2/c", v("c"))
        .await
        .expect("create")
        .mod_revision;
    s.create("/podsx/z", v("z")).await.expect("create");
    s.update("/pods/ns1/a", v("a2"), None)
        .await
        .expect("update");
    s.delete("/pods/ns1/b", None).await.expect("delete");
    let (now, rev) = s.list("/pods/", None).await.expect("list");
    assert_eq!(rev, s.current_revision());
    let keys: Vec<_> = now.iter().map(|kv| kv.key.to_string()).collect();
    assert_eq!(keys, ["/pods/ns1/a", "/pods/ns2/c"]);
    assert_eq!(&*now[0].value, b"a2");
    let (then, at) = s.list("/pods/", Some(r)).await.expect("list at revision");
    assert_eq!(at, r);
    let then: Vec<_> = then
        .iter()
        .map(|kv| {
            (
                kv.key.to_string(),
                String::from_utf8_lossy(&kv.value).to_string(),
            )
        })
        .collect();
    assert_eq!(
        then,
        [
            ("/pods/ns1/a".to_string(), "a".to_string()),
            ("/pods/ns1/b".to_string(), "b".to_string()),
            ("/pods/ns2/c".to_string(), "c".to_string())
        ]
    );
    let (ns1, _) = s.list("/pods/ns1/", None).await.expect("list");
    assert_eq!(ns1.len(), 1);
}

pub async fn watch_from_revision_in_order(s: DynStore) {
    let a = s.create("/w/a", v("1")).await.expect("create");
    s.create("/other/x", v("x")).await.expect("create");
    s.update("/w/a", v("2"), None).await.expect("update");
    let mut rx = s.watch("/w/", a.mod_revision).expect("watch");
    let mut live = s.watch("/w/", s.current_revision()).expect("watch");
    s.delete("/w/a", None).await.expect("delete");
    s.create("/w/b", v("b")).await.expect("create");
    let e1 = next(&mut rx).await;
    assert_eq!((e1.kind, &*e1.kv.value), (EventKind::Put, &b"2"[..]));
    assert_eq!(e1.prev.as_ref().map(|p| &*p.value), Some(&b"1"[..]));
    let e2 = next(&mut rx).await;
    assert_eq!(e2.kind, EventKind::Delete);
    assert_eq!(&*e2.kv.value, b"2");
    let e3 = next(&mut rx).await;
    assert_eq!((&*e3.kv.key, e3.prev.is_none()), ("/w/b", true));
    assert!(e1.revision() < e2.revision() && e2.revision() < e3.revision());
    let l1 = next(&mut live).await;
    let l2 = next(&mut live).await;
    assert_eq!(
        (l1.revision(), l2.revision()),
        (e2.revision(), e3.revision())
    );
    assert!(rx.try_recv().is_err() && live.try_recv().is_err());
}

pub async fn watch_sees_concurrent_writes_once(s: DynStore) {
    let start = s.current_revision();
    let mut tasks = Vec::new();
    for t in 0..4 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                s.create(&format!("/c/{t}-{i}"), v("x"))
                    .await
                    .expect("create");
            }
        }));
    }
    // Watchers that start mid-stream, from the start revision, must still see everything.
    tokio::task::yield_now().await;
    let mut rx = s.watch("/c/", start).expect("watch");
    for t in tasks {
        t.await.expect("writer task");
    }
    let mut last = start;
    for _ in 0..200 {
        let ev = next(&mut rx).await;
        assert_eq!(ev.revision(), last + 1, "no gap, no duplicate");
        last = ev.revision();
    }
    assert!(rx.try_recv().is_err());
}

pub async fn compaction_makes_old_revisions_too_old(s: DynStore) {
    for i in 0..10 {
        s.create(&format!("/k/{i}"), v("x")).await.expect("create");
    }
    s.compact(5).await.expect("compact");
    assert_eq!(s.compacted_revision(), 5);
    assert!(matches!(
        s.watch("/k/", 4),
        Err(StoreError::Compacted { requested: 4, .. })
    ));
    assert!(matches!(
        s.list("/k/", Some(3)).await,
        Err(StoreError::Compacted { .. })
    ));
    let mut rx = s.watch("/k/", 5).expect("watch at the compaction point");
    assert_eq!(next(&mut rx).await.revision(), 6);
    let (items, _) = s.list("/k/", Some(7)).await.expect("list after compaction");
    assert_eq!(items.len(), 7);
}
