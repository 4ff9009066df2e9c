//! The writer's background work (#23): compaction beside concurrent writes, the automatic
//! policy, live/garbage accounting, and the expiry sweep turning expired memories into
//! deletions.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use memory_core::store::{CompactPolicy, FsyncPolicy, Memory, TensorStore};

fn open_with(dir: &std::path::Path, dims: usize, compact: Option<CompactPolicy>) -> TensorStore {
    let mut o = opts(dims, FsyncPolicy::Off);
    o.compact = compact;
    TensorStore::open(dir, o).unwrap()
}

/// Every memory of the namespace, by id: (text, metadata).
fn contents(s: &TensorStore, ns: &str) -> HashMap<String, (String, String)> {
    list_all(s, ns, 500).into_iter().map(|m: Memory| (m.id, (m.text, m.metadata))).collect()
}

#[test]
fn compaction_beside_concurrent_writes_loses_and_resurrects_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let dims = 16;
    let s = Arc::new(open_with(dir.path(), dims, None));
    let mut r = rng(7);
    let mut model: HashMap<String, (String, String)> = HashMap::new();
    for i in 0..3000 {
        let id = format!("m{i}");
        s.put_blocking(vec![item("n", &id, &format!("text {i}"), rvec(&mut r, dims))]).unwrap();
        model.insert(id, (format!("text {i}"), "{}".into()));
    }
    let gone: Vec<String> = (0..3000).step_by(2).map(|i| format!("m{i}")).collect();
    s.delete_blocking("n", gone.clone()).unwrap();
    for g in &gone {
        model.remove(g);
    }
    // A writer stores, updates and deletes (one at a time, so the model is exact) while the
    // main thread compacts again and again.
    let done = Arc::new(AtomicBool::new(false));
    // Compactions finished so far: the writer waits for the first and second at a third and
    // two thirds of its work, so compactions run beside the writes however the threads are
    // scheduled (on a loaded machine the writer could otherwise finish first).
    let compacted = Arc::new(AtomicUsize::new(0));
    let w = {
        let s = s.clone();
        let mut model = model.clone();
        let done = done.clone();
        let compacted = compacted.clone();
        std::thread::spawn(move || {
            let mut r = rng(8);
            for i in 0..600 {
                if i == 200 || i == 400 {
                    let want = i / 200;
                    let t0 = std::time::Instant::now();
                    while compacted.load(Ordering::SeqCst) < want && t0.elapsed() < std::time::Duration::from_secs(30) {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                }
                let id = format!("w{i}");
                s.put_blocking(vec![item("n", &id, &format!("new {i}"), rvec(&mut r, dims))]).unwrap();
                model.insert(id, (format!("new {i}"), "{}".into()));
                let old = format!("m{}", 1 + 2 * (i % 1500));
                if i % 3 == 0 && model.contains_key(&old) {
                    let meta = format!(r#"{{"v":{i}}}"#);
                    s.update_blocking("n", &old, Some(meta.clone()), None).unwrap();
                    model.get_mut(&old).unwrap().1 = meta;
                } else if i % 3 == 1 && model.remove(&old).is_some() {
                    assert_eq!(s.delete_blocking("n", vec![old]).unwrap().deleted.len(), 1);
                }
            }
            done.store(true, Ordering::SeqCst);
            model
        })
    };
    let mut reports = Vec::new();
    while !done.load(Ordering::SeqCst) {
        reports.push(s.compact_blocking().unwrap());
        compacted.fetch_add(1, Ordering::SeqCst);
    }
    let model = w.join().unwrap();
    assert!(reports.len() >= 2, "compactions beside the writes: {}", reports.len());
    assert!(reports.iter().all(|r| !r.automatic && r.finished_at_ms > 0));
    assert_eq!(contents(&s, "n"), model, "after compacting beside the writes");
    // Nothing left to reclaim: the accounting matches what a compaction writes.
    let rep = s.compact_blocking().unwrap();
    let st = s.stats();
    assert_eq!(st.garbage_bytes, 0);
    assert_eq!(st.live_bytes + 40, rep.bytes_after);
    assert_eq!(st.last_compaction.as_ref().unwrap().bytes_after, rep.bytes_after);
    let last_seq = st.last_seq;
    Arc::try_unwrap(s).ok().unwrap().close().unwrap();
    let s = open_with(dir.path(), dims, None);
    assert_eq!(contents(&s, "n"), model, "after reopening");
    assert!(s.put_blocking(vec![item("n", "after", "a", unit(dims, 0))]).unwrap()[0].seq > last_seq);
}

#[test]
fn live_and_garbage_bytes_follow_puts_updates_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let dims = 8;
    let s = open_with(dir.path(), dims, None);
    let mut r = rng(1);
    for i in 0..50 {
        let mut it = item(if i % 2 == 0 { "a" } else { "bb" }, &format!("k{i}"), &"t".repeat(i + 1), rvec(&mut r, dims));
        it.metadata = Some(format!(r#"{{"i":{i}}}"#));
        s.put_blocking(vec![it]).unwrap();
    }
    let st = s.stats();
    assert_eq!(st.garbage_bytes, 0, "only puts: no garbage");
    assert_eq!(st.live_bytes + 40, st.storage_bytes);
    s.update_blocking("a", "k4", Some(r#"{"longer":"metadata than before"}"#.into()), Some(0.3)).unwrap();
    s.delete_blocking("bb", vec!["k1".into(), "k3".into()]).unwrap();
    let st = s.stats();
    assert!(st.garbage_bytes > 0);
    let rep = s.compact_blocking().unwrap();
    assert_eq!(st.live_bytes + 40, rep.bytes_after, "live bytes are what compaction keeps");
    assert_eq!(s.stats().garbage_bytes, 0);
}

#[test]
fn the_policy_compacts_by_itself_and_off_means_off() {
    let dims = 32;
    let cycles = |s: &TensorStore| {
        let mut r = rng(2);
        for i in 0..400 {
            let id = format!("c{i}");
            s.put_blocking(vec![item("n", &id, &format!("secret-{i}-"), rvec(&mut r, dims))]).unwrap();
            s.delete_blocking("n", vec![id]).unwrap();
        }
    };
    let on = tempfile::tempdir().unwrap();
    let s = open_with(on.path(), dims, Some(CompactPolicy { garbage_ratio: 0.5, min_bytes: 16 << 10 }));
    s.put_blocking(vec![item("n", "keep", "kept", unit(dims, 0))]).unwrap();
    cycles(&s);
    // A compaction that started early in the cycles switches with their tail as garbage and
    // the policy then starts another: wait (bounded) until the policy has brought the log down.
    let end = Instant::now() + Duration::from_secs(10);
    while (s.stats().compactions == 0 || s.stats().storage_bytes >= 400 * 200) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    let st = s.stats();
    assert!(st.compactions >= 1, "no automatic compaction");
    assert!(st.last_compaction.unwrap().automatic);
    assert!(st.storage_bytes < 400 * 200, "the log kept growing: {} bytes", st.storage_bytes);
    assert_eq!(s.get("n", "keep", false).unwrap().text, "kept");

    let off = tempfile::tempdir().unwrap();
    let s = open_with(off.path(), dims, None);
    cycles(&s);
    let st = s.stats();
    assert_eq!(st.compactions, 0);
    assert!(st.last_compaction.is_none());
    assert!(st.garbage_bytes > 400 * 150);
}

#[test]
fn expired_memories_become_deletions_and_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let dims = 8;
    let s = open_with(dir.path(), dims, None);
    let (tx, rx) = mpsc::channel();
    s.watch_expired(Box::new(move |r| drop(tx.send(r))));
    let mut a = item("t", "a", "short", unit(dims, 0));
    a.ttl_ms = Some(100);
    let mut b = item("u", "b", "short too", unit(dims, 1));
    b.ttl_ms = Some(120);
    let c = item("t", "c", "stays", unit(dims, 2));
    let outs = s.put_blocking(vec![a, b, c]).unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    while got.len() < 2 {
        got.extend(rx.recv_timeout(Duration::from_secs(5)).expect("expired memories reported").unwrap());
        if got.len() < 2 {
            let (tx, rx2) = mpsc::channel();
            s.watch_expired(Box::new(move |r| drop(tx.send(r))));
            got.extend(rx2.recv_timeout(Duration::from_secs(5)).expect("the second one reported").unwrap());
        }
    }
    assert!(start.elapsed() >= Duration::from_millis(100));
    got.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(got.iter().map(|e| (e.namespace.as_str(), e.id.as_str())).collect::<Vec<_>>(), vec![("t", "a"), ("u", "b")]);
    assert!(got.iter().all(|e| e.seq > outs[2].seq));
    let st = s.stats();
    assert_eq!(st.dead_rows, 2, "the sweep deleted them");
    assert!(st.garbage_bytes > 0);
    assert_eq!(st.last_seq, got.iter().map(|e| e.seq).max().unwrap());
    // Closing tells a waiting watcher.
    let (tx, rx) = mpsc::channel();
    s.watch_expired(Box::new(move |r| drop(tx.send(r))));
    s.close().unwrap();
    assert!(rx.recv_timeout(Duration::from_secs(5)).unwrap().is_err());
    // The deletions are in the log: reopened, the rows are dead, not merely expired.
    let s = open_with(dir.path(), dims, None);
    assert_eq!(s.stats().dead_rows, 2);
    assert_eq!(s.compact_blocking().unwrap().rows_after, 1);
}
