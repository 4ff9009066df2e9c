//! An open from the state snapshot a clean close writes (`state-<gen>.idx`) answers every
//! read exactly as an open that replays the whole log — get, list, vector search with and
//! without filters (exact and graph plans), text search, significance order, associations,
//! expiry and the stats' counts — over random mixes of puts, updates, deletes, TTLs and
//! namespaces; stores made after it (a crash after a clean close) are applied on top; and a
//! snapshot that does not fit (damaged, torn, of another generation, over a log that
//! changed) is ignored and the log replayed.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use memory_core::filter::Filter;
use memory_core::store::{FsyncPolicy, Memory, SearchRequest, StoreOptions, TensorStore};
use rand::rngs::StdRng;
use rand::Rng;

const DIMS: usize = 8;
const SNAPSHOT: &str = "state-000001.idx";
const NAMESPACES: [&str; 3] = ["a", "b", "c"];

fn options() -> StoreOptions {
    // A graph from 40 rows, so searches take the graph plan too.
    StoreOptions { ann_min_rows: 40, ..opts(DIMS, FsyncPolicy::Off) }
}

fn open_dir(dir: &Path) -> TensorStore {
    TensorStore::open(dir, options()).expect("open store")
}

/// Puts (batches of 1–4, metadata of a few shapes, some with a TTL far ahead or a few ms
/// ahead, explicit significance or computed), updates of metadata and significance, deletes
/// by id and by filter, puts again of deleted ids, over three namespaces.
fn random_ops(s: &TensorStore, r: &mut StdRng, n: usize, ids: &mut Vec<(String, String)>, short_ttls: bool) {
    let far = memory_core::store::now_ms() + 3_600_000;
    for _ in 0..n {
        let ns = NAMESPACES[r.gen_range(0..3)];
        let roll = r.gen_range(0..12);
        if roll < 7 || ids.is_empty() {
            let items = (0..r.gen_range(1..=4))
                .map(|_| {
                    let id = if roll == 0 && !ids.is_empty() { ids[r.gen_range(0..ids.len())].1.clone() } else { format!("m{}", r.gen::<u32>()) };
                    let mut it = item(ns, &id, &format!("note {} about {}", r.gen_range(0..40), ["cats", "dogs", "rain", "tea"][r.gen_range(0..4)]), rvec(r, DIMS));
                    it.metadata = match r.gen_range(0..4) {
                        0 => None,
                        1 => Some(format!(r#"{{"tag":"t{}","n":{}}}"#, r.gen_range(0..3), r.gen_range(0..5))),
                        2 => Some(format!(r#"{{ "deep": {{"k": [1, "x", {}]}}, "u": "{}" }}"#, r.gen_range(0..2), r.gen::<u16>())),
                        _ => Some(format!(r#"{{"flag":{},"none":null}}"#, r.gen_bool(0.5))),
                    };
                    it.significance = r.gen_bool(0.3).then(|| r.gen_range(0.0..1.0));
                    match r.gen_range(0..10) {
                        0 => it.expires_at = Some(far),
                        1 if short_ttls => it.ttl_ms = Some(r.gen_range(1..50)),
                        _ => {}
                    }
                    ids.push((ns.to_string(), id));
                    it
                })
                .collect();
            // A put of a live id is refused; that is part of the mix.
            let _ = s.put_blocking(items);
        } else {
            let (ns, id) = ids[r.gen_range(0..ids.len())].clone();
            let _ = match roll {
                7 | 8 => s.update_blocking(&ns, &id, r.gen_bool(0.6).then(|| format!(r#"{{"tag":"t{}"}}"#, r.gen_range(0..4))), r.gen_bool(0.6).then(|| r.gen_range(0.0..1.0))).map(|_| ()),
                9 | 10 => s.delete_blocking(&ns, vec![id]).map(|_| ()),
                _ => s.delete_where_blocking(&ns, Some(Filter::compile(&serde_json::json!({"tag": "t3", "n": 4})).unwrap())).map(|_| ()),
            };
        }
    }
}

/// Wait (bounded) until the expiry sweep has deleted every expired memory, so the stats of
/// two opens of the directory do not depend on when each one's sweep runs.
fn swept(s: &TensorStore) {
    let t = Instant::now();
    loop {
        let st = s.stats();
        if st.rows - st.dead_rows == st.total_memories {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "the expiry sweep did not run");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn req(ns: &str, k: usize) -> SearchRequest {
    SearchRequest { namespace: ns.into(), k, ..Default::default() }
}

fn with_score(m: &Memory) -> (String, String, Vec<String>, u32, u32) {
    (m.id.clone(), m.metadata.clone(), m.associations.clone(), m.significance.to_bits(), m.score.map_or(0, f32::to_bits))
}

/// Every read the comparison covers, as comparable values (once the writer has brought the
/// graphs up to date, so both opens search the same graphs).
fn reads(s: &TensorStore, r: &mut StdRng) -> Vec<String> {
    let t = Instant::now();
    while s.stats().ann_pending > 0 {
        assert!(t.elapsed() < Duration::from_secs(30), "the graphs did not catch up");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut out = Vec::new();
    let st = s.stats();
    out.push(format!("stats {} {} {} {} {} {} {} {}", st.total_memories, st.namespaces, st.rows, st.dead_rows, st.total_associations, st.last_seq, st.live_bytes, st.garbage_bytes));
    out.push(format!("namespaces {:?}", s.namespaces()));
    let filters = [serde_json::json!({"tag": "t1"}), serde_json::json!({"n": {"$gte": 2}}), serde_json::json!({"deep.k": 1}), serde_json::json!({"flag": true}), serde_json::json!({"tag": {"$ne": "t0"}})];
    for ns in NAMESPACES {
        let all = list_all(s, ns, 7);
        out.push(format!("count {ns} {}", s.count(ns)));
        out.push(format!("list {ns} {:?}", all.iter().map(key).collect::<Vec<_>>()));
        for m in &all {
            out.push(format!("get {:?}", s.get(ns, &m.id, true).map(|m| (key(&m), m.embedding))));
        }
        out.push(format!("top {:?}", s.top(&req(ns, 1000), 1000).iter().map(key).collect::<Vec<_>>()));
        for f in &filters {
            let filter = Arc::new(Filter::compile(f).unwrap());
            let (page, _) = s.list(ns, 0, 1000, Some(&filter));
            out.push(format!("list {ns} {f} {:?}", page.iter().map(key).collect::<Vec<_>>()));
            out.push(format!("top {ns} {f} {:?}", s.top(&SearchRequest { filter: Some(filter.clone()), ..req(ns, 50) }, 50).iter().map(key).collect::<Vec<_>>()));
        }
        for (q, filter) in filters.iter().take(4).enumerate() {
            let v = rvec(r, DIMS);
            for exact in [true, false] {
                let f = (q > 0).then(|| Arc::new(Filter::compile(filter).unwrap()));
                let (hits, plan) = s.search_explained(&v, 1, &SearchRequest { filter: f, exact, ..req(ns, 10) }).unwrap();
                out.push(format!("search {ns} {q} {exact} {:?} {:?}", plan.kind, hits[0].iter().map(with_score).collect::<Vec<_>>()));
            }
        }
        for text in ["cats", "note 7", "rain tea"] {
            out.push(format!("text {ns} {text} {:?}", s.search_text_blocking(text, &req(ns, 20)).unwrap().iter().map(with_score).collect::<Vec<_>>()));
        }
    }
    out
}

/// The reads of a copy of `dir` opened with its snapshot and of one opened without it (the
/// log replayed), and the rows each restored from the snapshot.
fn both_opens(dir: &Path, seed: u64) -> ((Vec<String>, usize), (Vec<String>, usize)) {
    let with = tempfile::tempdir().unwrap();
    let without = tempfile::tempdir().unwrap();
    copy_dir(dir, with.path());
    copy_dir(dir, without.path());
    std::fs::remove_file(without.path().join(SNAPSHOT)).unwrap();
    let read = |d: &Path| {
        let s = open_dir(d);
        let out = (reads(&s, &mut rng(seed)), s.stats().snapshot_rows);
        s.close().unwrap();
        out
    };
    (read(with.path()), read(without.path()))
}

fn assert_same_reads(got: &[String], want: &[String]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g, w);
    }
}

#[test]
fn an_open_from_the_snapshot_reads_like_an_open_that_replays_the_log() {
    for seed in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut r = rng(seed);
        let mut ids = Vec::new();
        // A few sessions, each closed cleanly: the last close's snapshot covers them all.
        for session in 0..3 {
            let s = open_dir(d);
            if session > 0 {
                assert!(s.stats().snapshot_rows > 0, "seed {seed}: session {session} opened from the snapshot");
            }
            random_ops(&s, &mut r, 120, &mut ids, true);
            std::thread::sleep(Duration::from_millis(60));
            swept(&s);
            s.close().unwrap();
        }
        let s = open_dir(d);
        let live_reads = reads(&s, &mut rng(seed));
        let rows = s.stats().rows;
        s.close().unwrap();
        let ((from_snapshot, restored), (replayed, none)) = both_opens(d, seed);
        assert_eq!((restored, none), (rows, 0), "seed {seed}");
        assert_same_reads(&from_snapshot, &replayed);
        assert_same_reads(&from_snapshot, &live_reads);
    }
}

#[test]
fn stores_after_the_snapshot_are_applied_on_top_of_it_after_a_crash() {
    for seed in 10..13 {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut r = rng(seed);
        let mut ids = Vec::new();
        let s = open_dir(d);
        random_ops(&s, &mut r, 150, &mut ids, false);
        s.close().unwrap();
        let s = open_dir(d);
        let covered = s.stats().snapshot_rows;
        assert!(covered > 0);
        random_ops(&s, &mut r, 100, &mut ids, false);
        s.flush_blocking().unwrap();
        // A crash now: the directory as it is on disk, the store never closed.
        let crashed = tempfile::tempdir().unwrap();
        copy_dir(d, crashed.path());
        let live_reads = reads(&s, &mut rng(seed));
        s.close().unwrap();
        let ((from_snapshot, restored), (replayed, _)) = both_opens(crashed.path(), seed);
        assert_eq!(restored, covered, "seed {seed}: the snapshot covers the rows of the clean close, the rest is replayed");
        assert_same_reads(&from_snapshot, &replayed);
        assert_same_reads(&from_snapshot, &live_reads);
    }
}

/// A store of `n` random operations, closed cleanly (its snapshot written).
fn closed_store(d: &Path, seed: u64, n: usize) {
    let s = open_dir(d);
    random_ops(&s, &mut rng(seed), n, &mut Vec::new(), false);
    s.close().unwrap();
    assert!(d.join(SNAPSHOT).exists());
}

/// Open `d`, expecting the snapshot ignored: its reads equal those of a replay.
fn assert_ignored(d: &Path, seed: u64) {
    let s = open_dir(d);
    assert_eq!(s.stats().snapshot_rows, 0, "the snapshot was not used");
    let got = reads(&s, &mut rng(seed));
    s.close().unwrap();
    // The close wrote a snapshot that fits: opening again takes it and reads the same.
    let s = open_dir(d);
    assert!(s.stats().snapshot_rows > 0 || s.stats().rows == 0);
    assert_same_reads(&reads(&s, &mut rng(seed)), &got);
    s.close().unwrap();
}

#[test]
fn a_damaged_or_torn_snapshot_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    closed_store(dir.path(), 20, 200);
    let good = std::fs::read(dir.path().join(SNAPSHOT)).unwrap();
    let (_, (want, _)) = both_opens(dir.path(), 20);
    for (what, bytes) in [("a flipped byte", { let mut b = good.clone(); b[good.len() / 2] ^= 1; b }), ("torn", good[..good.len() - 5].to_vec()), ("empty", Vec::new())] {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), copy.path());
        std::fs::write(copy.path().join(SNAPSHOT), &bytes).unwrap();
        let s = open_dir(copy.path());
        assert_eq!(s.stats().snapshot_rows, 0, "{what}");
        assert_same_reads(&reads(&s, &mut rng(20)), &want);
        s.close().unwrap();
        // That close wrote a whole snapshot again: the next open takes it.
        let s = open_dir(copy.path());
        assert!(s.stats().snapshot_rows > 0, "{what}");
        assert_same_reads(&reads(&s, &mut rng(20)), &want);
        s.close().unwrap();
    }
}

#[test]
fn a_snapshot_of_another_generation_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    closed_store(d, 21, 200);
    let old = std::fs::read(d.join(SNAPSHOT)).unwrap();
    let s = open_dir(d);
    s.compact_blocking().unwrap();
    s.close().unwrap();
    assert!(!d.join(SNAPSHOT).exists(), "the old generation's snapshot is removed");
    assert!(d.join("state-000002.idx").exists());
    std::fs::write(d.join("state-000002.idx"), &old).unwrap();
    assert_ignored(d, 21);
}

#[test]
fn a_snapshot_over_a_log_that_changed_is_ignored() {
    // Another directory's snapshot beside this log: same generation, other records.
    let (x, y) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    closed_store(x.path(), 22, 200);
    closed_store(y.path(), 23, 200);
    std::fs::copy(x.path().join(SNAPSHOT), y.path().join(SNAPSHOT)).unwrap();
    assert_ignored(y.path(), 23);

    // The log cut below the records the snapshot covers (what a repair of its tail leaves).
    let z = tempfile::tempdir().unwrap();
    closed_store(z.path(), 24, 200);
    let wal = wal_path(z.path());
    let bytes = std::fs::read(&wal).unwrap();
    let offsets = record_offsets(&bytes);
    std::fs::write(&wal, &bytes[..offsets[offsets.len() - 3]]).unwrap();
    assert_ignored(z.path(), 24);

    // A record inside the covered records replaced by another of the same length.
    let w = tempfile::tempdir().unwrap();
    closed_store(w.path(), 25, 200);
    let s = open_dir(w.path());
    let victim = list_all(&s, "a", 100).into_iter().next().expect("a memory");
    s.close().unwrap();
    let mut bytes = std::fs::read(wal_path(w.path())).unwrap();
    let at = bytes.windows(victim.text.len()).position(|win| win == victim.text.as_bytes()).unwrap();
    // Same length, another text, and the record's checksum fixed: a valid log, other records.
    bytes[at] = if bytes[at] == b'n' { b'N' } else { b'n' };
    let start = *record_offsets(&bytes).iter().rfind(|&&o| o < at).unwrap();
    let len = u32::from_le_bytes(bytes[start..start + 4].try_into().unwrap()) as usize;
    let crc = crc32c::crc32c(&bytes[start + 8..start + 8 + len]);
    bytes[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(wal_path(w.path()), &bytes).unwrap();
    assert_ignored(w.path(), 25);
}

/// What opening `d` gives: its reads, or its error (the directory's path written `<dir>`).
fn open_outcome(d: &Path, seed: u64) -> Result<Vec<String>, String> {
    match TensorStore::open(d, options()) {
        Ok(s) => {
            let got = reads(&s, &mut rng(seed));
            s.close().unwrap();
            Ok(got)
        }
        Err(e) => Err(e.to_string().replace(&d.display().to_string(), "<dir>")),
    }
}

#[test]
fn a_damaged_record_the_snapshot_covers_is_refused_as_without_it() {
    // The restore checks each covered record as it reads it: one that does not verify (a
    // byte flipped on disk after the close; its checksum not fixed) makes the open ignore
    // the snapshot and replay the log — which refuses damage before the tail and cuts a torn
    // last record — with the same outcome as with no snapshot.
    let dir = tempfile::tempdir().unwrap();
    closed_store(dir.path(), 26, 200);
    let bytes = std::fs::read(wal_path(dir.path())).unwrap();
    let offsets = record_offsets(&bytes);
    // A put early on, an update or delete (kind byte 2 or 3), and the last covered record.
    let put = offsets[1];
    let other = *offsets.iter().find(|&&o| matches!(bytes[o + 8], 2 | 3)).expect("an update or a delete among the records");
    let last = *offsets.last().unwrap();
    for (what, at) in [("a put's text", put + 8 + 40), ("an update's or a delete's id", other + 8 + 20), ("the last record's kind", last + 8)] {
        let (with, without) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for d in [with.path(), without.path()] {
            copy_dir(dir.path(), d);
            let mut b = bytes.clone();
            b[at] ^= 0x5a;
            std::fs::write(wal_path(d), &b).unwrap();
        }
        std::fs::remove_file(without.path().join(SNAPSHOT)).unwrap();
        let (got, want) = (open_outcome(with.path(), 26), open_outcome(without.path(), 26));
        match (&got, &want) {
            (Ok(a), Ok(b)) => assert_same_reads(a, b),
            _ => assert_eq!(got, want, "{what}"),
        }
        if what.starts_with("the last") {
            assert!(got.is_ok(), "a damaged last record is a torn tail: {got:?}");
        } else {
            assert!(got.as_ref().is_err_and(|e| e.contains("repair")), "{what}: {got:?}");
        }
    }
}

/// Reads that the writer's work after an open touches (`store/writer`, `finish_open`): by
/// id (the id maps), text (the text index) and by significance (its ordered index).
fn reads_by_id_text_significance(s: &TensorStore, ids: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for ns in NAMESPACES {
        for text in ["cats", "note 7", "rain tea"] {
            out.push(format!("text {ns} {text} {:?}", s.search_text_blocking(text, &req(ns, 20)).unwrap().iter().map(with_score).collect::<Vec<_>>()));
        }
        out.push(format!("top {:?}", s.top(&req(ns, 1000), 1000).iter().map(key).collect::<Vec<_>>()));
        let filter = Arc::new(Filter::compile(&serde_json::json!({"tag": {"$ne": "t0"}})).unwrap());
        out.push(format!("top {ns} filtered {:?}", s.top(&SearchRequest { filter: Some(filter), min_significance: 0.3, ..req(ns, 50) }, 50).iter().map(key).collect::<Vec<_>>()));
    }
    for (ns, id) in ids.iter().step_by(7) {
        out.push(format!("get {ns} {id} {:?}", s.get(ns, id, false).map(|m| key(&m))));
    }
    out
}

#[test]
fn reads_right_after_the_open_are_those_after_the_writer_finished_it() {
    for seed in 20..23 {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut ids = Vec::new();
        let s = open_dir(d);
        random_ops(&s, &mut rng(seed), 600, &mut ids, false);
        s.close().unwrap();
        // The first reads may come before the writer has built the id maps, the text index
        // and the significance order (they wait or take the columns); the same reads once
        // it has (the writer does it before its first operation, so once a flush is
        // answered) must give the same.
        let s = open_dir(d);
        assert!(s.stats().snapshot_rows > 0);
        let first = reads_by_id_text_significance(&s, &ids);
        s.flush_blocking().unwrap();
        assert_same_reads(&first, &reads_by_id_text_significance(&s, &ids));
        s.close().unwrap();
    }
}
