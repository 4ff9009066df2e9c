//! Integration tests of the durable `TensorStore`: store semantics (validation, significance,
//! associations, TTL, compaction, search) and durability (group commit, torn tails,
//! corruption and repair, reopen).
//!
//! Sections: input validation, significance/associations semantics, group commit, TTL,
//! compaction and cursors, crash simulation (torn tails), corruption + repair, bulk load,
//! search against a brute-force oracle (incl. the parallel path over > 32768 rows), and a
//! property test against an in-memory model with reopens.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::*;
use memory_core::error::ErrorCode;
use memory_core::filter::Filter;
use memory_core::store::log::NO_EXPIRY;
use memory_core::store::{
    repair, EmbedderInfo, FsyncPolicy, Memory, PutInput, PutOutcome, PutRecord, SearchRequest, StoreOptions, TensorStore,
};
use memory_core::Error;
use serde_json::{json, Map, Value};

// ---------------------------------------------------------------------------------------
// Bad input → typed error, nothing written
// ---------------------------------------------------------------------------------------

fn assert_err(r: memory_core::Result<impl std::fmt::Debug>, code: ErrorCode, needle: &str) {
    let e = r.expect_err("expected an error");
    assert_eq!(e.code(), code, "wrong code for {e}");
    assert!(e.to_string().contains(needle), "message {:?} does not contain {:?}", e.to_string(), needle);
}

#[test]
fn bad_input_is_a_typed_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let dims = 8;
    let s = open_always(dir.path(), dims);
    let mut r = rng(1);
    s.put_blocking(vec![item("default", "keep", "kept", rvec(&mut r, dims))]).unwrap();
    let wal = wal_path(dir.path());
    let len0 = file_len(&wal);
    let bytes0 = s.stats().storage_bytes;
    let seq0 = s.stats().last_seq;
    let good = |id: &str| item("default", id, "hello", rvec(&mut rng(id.len() as u64 + 7), dims));

    let mut bad: Vec<(PutInput, ErrorCode, &str)> = Vec::new();
    let mut x = good("a");
    x.vector = vec![1.0; dims - 1];
    bad.push((x, ErrorCode::InvalidRequest, "dimensions"));
    let mut x = good("a");
    x.vector[3] = f32::NAN;
    bad.push((x, ErrorCode::InvalidRequest, "NaN"));
    let mut x = good("a");
    x.vector[2] = f32::INFINITY;
    bad.push((x, ErrorCode::InvalidRequest, "Infinity"));
    let mut x = good("a");
    x.vector[2] = f32::NEG_INFINITY;
    bad.push((x, ErrorCode::InvalidRequest, "Infinity"));
    let mut x = good("a");
    x.vector = vec![0.0; dims];
    bad.push((x, ErrorCode::InvalidRequest, "zero vector"));
    let mut x = good("a");
    x.text = String::new();
    bad.push((x, ErrorCode::InvalidRequest, "text"));
    let mut x = good("a");
    x.text = "   \n".into();
    bad.push((x, ErrorCode::InvalidRequest, "text"));
    let mut x = good("a");
    x.text = "x".repeat(64 * 1024 + 1);
    bad.push((x, ErrorCode::PayloadTooLarge, "64 KiB"));
    let mut x = good("a");
    x.metadata = Some(format!("{{\"big\":\"{}\"}}", "y".repeat(16 * 1024)));
    bad.push((x, ErrorCode::PayloadTooLarge, "16 KiB"));
    let mut x = good("a");
    x.metadata = Some("[1,2]".into());
    bad.push((x, ErrorCode::InvalidRequest, "object"));
    let mut x = good("a");
    x.metadata = Some("\"str\"".into());
    bad.push((x, ErrorCode::InvalidRequest, "object"));
    let mut x = good("a");
    x.metadata = Some("{not json".into());
    bad.push((x, ErrorCode::InvalidRequest, "JSON"));
    let mut x = good("a");
    x.significance = Some(1.5);
    bad.push((x, ErrorCode::InvalidRequest, "significance"));
    let mut x = good("a");
    x.significance = Some(-0.1);
    bad.push((x, ErrorCode::InvalidRequest, "significance"));
    let mut x = good("a");
    x.significance = Some(f32::NAN);
    bad.push((x, ErrorCode::InvalidRequest, "significance"));
    let mut x = good("a");
    x.metadata = Some(r#"{"importance": 2}"#.into());
    bad.push((x, ErrorCode::InvalidRequest, "importance"));
    let mut x = good("a");
    x.metadata = Some(r#"{"importance": "high"}"#.into());
    bad.push((x, ErrorCode::InvalidRequest, "importance"));
    let mut x = good("a");
    x.id = Some("i".repeat(257));
    bad.push((x, ErrorCode::PayloadTooLarge, "256"));
    let mut x = good("a");
    x.id = Some(String::new());
    bad.push((x, ErrorCode::InvalidRequest, "id"));
    let mut x = good("a");
    x.namespace = String::new();
    bad.push((x, ErrorCode::InvalidRequest, "namespace"));

    for (input, code, needle) in bad {
        let what = format!("{:?}", (&input.id, input.text.len(), &input.metadata, input.significance, &input.vector.get(..3)));
        // Alone.
        let e = s.put_blocking(vec![input.clone()]).expect_err(&what);
        assert_eq!(e.code(), code, "{what}: {e}");
        assert!(e.to_string().contains(needle), "{what}: {e}");
        // Inside a batch with good items: the whole batch is rejected.
        let e = s.put_blocking(vec![good("b1"), input, good("b2")]).expect_err(&what);
        assert_eq!(e.code(), code, "{what}: {e}");
        assert!(e.to_string().contains("items[1]"), "{what}: batch error should name the item: {e}");
    }
    // Empty batch.
    assert_err(s.put_blocking(vec![]), ErrorCode::InvalidRequest, "empty");

    // Update / delete errors.
    assert_err(s.update_blocking("default", "nope", Some("{}".into()), None), ErrorCode::NotFound, "nope");
    assert_err(s.update_blocking("default", "keep", Some("[1]".into()), None), ErrorCode::InvalidRequest, "object");
    assert_err(s.update_blocking("default", "keep", Some(r#"{"importance":-1}"#.into()), None), ErrorCode::InvalidRequest, "importance");
    assert_err(s.update_blocking("default", "keep", None, Some(2.0)), ErrorCode::InvalidRequest, "significance");
    assert_err(s.update_blocking("default", "keep", None, Some(f32::NAN)), ErrorCode::InvalidRequest, "significance");
    assert_err(
        s.update_blocking("default", "keep", Some(format!("{{\"a\":\"{}\"}}", "z".repeat(20000))), None),
        ErrorCode::PayloadTooLarge,
        "16 KiB",
    );
    let d = s.delete_blocking("default", vec!["nope".into(), "nope2".into()]).unwrap();
    assert!(d.deleted.is_empty());
    assert_eq!(d.not_found, vec!["nope".to_string(), "nope2".to_string()]);
    let d = s.delete_blocking("other-ns", vec!["keep".into()]).unwrap();
    assert_eq!(d.not_found, vec!["keep".to_string()], "namespaces are separate");

    // Nothing was written.
    s.flush_blocking().unwrap();
    assert_eq!(file_len(&wal), len0, "a rejected request must not write to the log");
    assert_eq!(s.stats().storage_bytes, bytes0);
    assert_eq!(s.stats().last_seq, seq0);
    assert_eq!(s.count("default"), 1);
    assert_eq!(s.stats().total_memories, 1);
    let keep = s.get("default", "keep", false).unwrap();
    assert_eq!(keep.metadata, "{}");

    // Bulk load with a bad record is rejected whole.
    let mut rec = PutRecord {
        seq: 0,
        ts: 1,
        namespace: "default".into(),
        id: "bl".into(),
        text: "t".into(),
        metadata: "{}".into(),
        significance: 0.5,
        expires_at: NO_EXPIRY,
        associations: vec![],
        vector: vec![1.0; dims],
    };
    let mut bad_rec = rec.clone();
    bad_rec.vector[0] = f32::NAN;
    assert_err(s.bulk_load_blocking(vec![rec.clone(), bad_rec]), ErrorCode::InvalidRequest, "NaN");
    rec.significance = f32::NAN;
    let e = s.bulk_load_blocking(vec![rec.clone()]).expect_err("NaN significance must be refused");
    assert_eq!(e.code(), ErrorCode::InvalidRequest);
    rec.significance = 0.5;
    rec.vector = vec![0.0; dims];
    let e = s.bulk_load_blocking(vec![rec]).expect_err("zero vector must be refused");
    assert_eq!(e.code(), ErrorCode::InvalidRequest);
    s.flush_blocking().unwrap();
    assert_eq!(file_len(&wal), len0);
    assert_eq!(s.count("default"), 1);
    drop(s);

    // Reopen: still just the one memory.
    let s = open(dir.path(), dims);
    assert_eq!(s.count("default"), 1);
    assert_eq!(s.stats().last_seq, seq0);
}

#[test]
fn open_errors_dims_lock_embedder() {
    let dir = tempfile::tempdir().unwrap();
    let emb = |name: &str, hash: &str| Some(EmbedderInfo { name: name.into(), hash: hash.into() });
    let o = |dims: usize, e: Option<EmbedderInfo>, reembed: bool| StoreOptions { dims, fsync: FsyncPolicy::Off, embedder: e, reembed, group_commit: true, compact: None, text_index: true, ann_min_rows: memory_core::ann::ANN_MIN_ROWS };
    {
        let s = TensorStore::open(dir.path(), o(8, emb("hash", "h1"), false)).unwrap();
        s.put_blocking(vec![item("default", "a", "x", unit(8, 0))]).unwrap();
        // Second open while the first is open → Locked.
        let e = TensorStore::open(dir.path(), o(8, emb("hash", "h1"), false)).err().expect("must be locked");
        assert_eq!(e.code(), ErrorCode::Locked, "{e}");
        assert!(matches!(e, Error::Locked(_)));
        assert!(e.to_string().contains(&dir.path().display().to_string()), "{e}");
        // Repair refuses too while the store is open.
        let e = repair(dir.path()).expect_err("repair must not run on an open store");
        assert_eq!(e.code(), ErrorCode::Locked, "{e}");
    }
    // Other dims → clear error.
    let e = TensorStore::open(dir.path(), o(16, emb("hash", "h1"), false)).err().unwrap();
    assert_eq!(e.code(), ErrorCode::InvalidRequest);
    assert!(e.to_string().contains("8-dimensional") && e.to_string().contains("16"), "{e}");
    // Other embedder of the same dims → refused…
    let e = TensorStore::open(dir.path(), o(8, emb("minilm", "h2"), false)).err().unwrap();
    assert_eq!(e.code(), ErrorCode::InvalidRequest);
    assert!(e.to_string().contains("reembed") && e.to_string().contains("minilm"), "{e}");
    // …unless reembed; then the new one is recorded.
    {
        let s = TensorStore::open(dir.path(), o(8, emb("minilm", "h2"), true)).unwrap();
        assert_eq!(s.count("default"), 1);
        assert_eq!(s.stats().embedder, emb("minilm", "h2"));
    }
    let e = TensorStore::open(dir.path(), o(8, emb("hash", "h1"), false)).err().unwrap();
    assert!(e.to_string().contains("reembed"), "{e}");
    let s = TensorStore::open(dir.path(), o(8, emb("minilm", "h2"), false)).unwrap();
    assert_eq!(s.count("default"), 1);
    // Writes after close fail with unavailable.
    s.close().unwrap();
    let e = s.put_blocking(vec![item("default", "b", "x", unit(8, 1))]).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unavailable);
    // Close frees the in-memory state at once (the handle may outlive it): reads see nothing…
    assert_eq!(s.stats().rows, 0);
    assert_eq!(s.count("default"), 0);
    drop(s);
    // …and nothing stored is lost by that.
    let s = TensorStore::open(dir.path(), o(8, emb("minilm", "h2"), false)).unwrap();
    assert_eq!(s.count("default"), 1);
}

// ---------------------------------------------------------------------------------------
// Semantics
// ---------------------------------------------------------------------------------------

fn close_to(a: f32, b: f64) -> bool {
    (a as f64 - b).abs() < 1e-5
}

#[test]
fn significance_hand_computed() {
    let dir = tempfile::tempdir().unwrap();
    let dims = 64;
    let s = open(dir.path(), dims);
    let put = |id: &str, v: Vec<f32>, meta: Option<&str>| {
        let mut it = item("ns", id, id, v);
        it.metadata = meta.map(String::from);
        s.put_blocking(vec![it]).unwrap().remove(0)
    };
    // Empty namespace: 0.5 + 0.3 + 0.2·importance.
    let a = put("a", unit(dims, 0), Some(r#"{"importance":0.8}"#));
    assert!(close_to(a.significance, 0.5 + 0.3 + 0.16), "{}", a.significance);
    assert!(a.associations.is_empty());
    // Exact duplicate vector: novelty 0, surprise 0 → 0.2·0.5.
    let b = put("b", vec![2.0; 1].into_iter().chain(vec![0.0; dims - 1]).collect(), None);
    assert!(close_to(b.significance, 0.1), "{}", b.significance);
    assert_eq!(b.associations, vec!["a".to_string()]);
    // Orthogonal: novelty 1, surprise 1 - mean(0,0) = 1; importance 0 → 0.8.
    let c = put("c", unit(dims, 1), Some(r#"{"importance":0}"#));
    assert!(close_to(c.significance, 0.8), "{}", c.significance);
    // Opposite of a/b: negative cosines count as 0 → novelty 1 (max(−1,−1,0)→0), surprise 1.
    let mut v = unit(dims, 0);
    v[0] = -1.0;
    let d = put("d", v, None);
    assert!(close_to(d.significance, 0.9), "{}", d.significance);
    // Mixed: cos 0.6 to c, 0 to a/b, −0.8 … to d.
    let mut v = vec![0.0; dims];
    v[1] = 0.6;
    v[2] = 0.8;
    let e = put("e", v, Some(r#"{"importance":1}"#));
    let exp = 0.5 * (1.0 - 0.6) + 0.3 * (1.0 - 0.6 / 4.0) + 0.2;
    assert!(close_to(e.significance, exp), "{} vs {exp}", e.significance);

    // Surprise is the mean over the LAST 32 only.
    let dir2 = tempfile::tempdir().unwrap();
    let s2 = open(dir2.path(), dims);
    s2.put_blocking(vec![item("w", "first", "x", unit(dims, 0))]).unwrap();
    for i in 1..=32 {
        s2.put_blocking(vec![item("w", &format!("o{i}"), "x", unit(dims, i))]).unwrap();
    }
    let o = s2.put_blocking(vec![item("w", "q", "x", unit(dims, 0))]).unwrap().remove(0);
    // novelty 0 (same as "first"), surprise 1 (last 32 all orthogonal), importance 0.5.
    assert!(close_to(o.significance, 0.3 + 0.1), "{}", o.significance);
    let mut v = unit(dims, 0);
    v[32] = 1.0;
    let o2 = s2.put_blocking(vec![item("w", "q2", "x", v)]).unwrap().remove(0);
    // Last 32 = o2..o32 and q: cos(o32)=√½, cos(q)=√½ → mean √2/32.
    let h = std::f64::consts::FRAC_1_SQRT_2;
    let exp = 0.5 * (1.0 - h) + 0.3 * (1.0 - 2.0 * h / 32.0) + 0.1;
    assert!(close_to(o2.significance, exp), "{} vs {exp}", o2.significance);

    // Explicit significance overrides; queries never change state.
    let before = s2.get("w", "q", false).unwrap();
    let req = SearchRequest { namespace: "w".into(), k: 5, ..Default::default() };
    s2.search(&unit(dims, 0), 1, &req).unwrap();
    s2.top(&req, 10);
    let mut it = item("w", "given", "x", unit(dims, 0));
    it.significance = Some(0.25);
    let g = s2.put_blocking(vec![it]).unwrap().remove(0);
    assert_eq!(g.significance, 0.25);
    assert_eq!(s2.get("w", "q", false).unwrap(), before);
}

#[test]
fn associations_nearest_first_at_most_three_per_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let dims = 8;
    let s = open(dir.path(), dims);
    let mk = |a: f32| {
        let mut v = unit(dims, 0);
        v[1] = a;
        v
    };
    // cos to e0: 1/sqrt(1+a²)
    let specs = [("p0", 0.05f32), ("p1", 0.3), ("p2", 0.6), ("p3", 0.72), ("p4", 1.0), ("p5", 0.15)];
    let mut stored: Vec<(String, Vec<f64>)> = Vec::new();
    for (id, a) in specs {
        let v = mk(a);
        let out = s.put_blocking(vec![item("x", id, id, v.clone())]).unwrap().remove(0);
        // Brute force over the earlier ones.
        let q = norm64(&v);
        let mut c: Vec<(f64, &str)> = stored.iter().map(|(i, w)| (cos64(&q, w), i.as_str())).collect();
        c.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap());
        let exp: Vec<String> = c.iter().filter(|x| x.0 >= 0.8).take(3).map(|x| x.1.to_string()).collect();
        assert_eq!(out.associations, exp, "{id}");
        stored.push((id.to_string(), q));
    }
    let q = s.put_blocking(vec![item("x", "q", "q", unit(dims, 0))]).unwrap().remove(0);
    assert_eq!(q.associations, vec!["p0", "p5", "p1"]);
    // Nothing ≥ 0.8 → none.
    let far = s.put_blocking(vec![item("x", "far", "far", unit(dims, 5))]).unwrap().remove(0);
    assert!(far.associations.is_empty());
    // Another namespace sees none of these: empty namespace → 0.9, no associations.
    let y = s.put_blocking(vec![item("y", "q", "q", unit(dims, 0))]).unwrap().remove(0);
    assert!(y.associations.is_empty());
    assert!(close_to(y.significance, 0.9), "{}", y.significance);
    // Associations stick after reopen.
    drop(s);
    let s = open(dir.path(), dims);
    assert_eq!(s.get("x", "q", false).unwrap().associations, vec!["p0", "p5", "p1"]);
    assert_eq!(s.stats().total_associations, s.namespaces().iter().map(|(n, _)| list_all(&s, n, 100).iter().map(|m| m.associations.len()).sum::<usize>()).sum::<usize>());
}

#[test]
fn existing_id_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), 8);
    let a = s.put_blocking(vec![item("n", "a", "first", unit(8, 0))]).unwrap().remove(0);
    assert!(!a.existing);
    s.put_blocking(vec![item("n", "b", "other", unit(8, 1))]).unwrap();
    let seq = s.stats().last_seq;
    let len = s.stats().storage_bytes;
    let mut again = item("n", "a", "second", unit(8, 2));
    again.significance = Some(0.01);
    again.metadata = Some(r#"{"x":1}"#.into());
    let r = s.put_blocking(vec![again.clone()]).unwrap().remove(0);
    assert!(r.existing);
    assert_eq!((r.seq, r.significance, r.timestamp, r.associations.clone()), (a.seq, a.significance, a.timestamp, a.associations.clone()));
    // In a batch, with an in-batch duplicate of a new id too.
    let rs = s
        .put_blocking(vec![again, item("n", "c", "new", unit(8, 3)), item("n", "c", "dup", unit(8, 4))])
        .unwrap();
    assert!(rs[0].existing && !rs[1].existing && rs[2].existing);
    assert_eq!(rs[0].seq, a.seq);
    assert_eq!((rs[2].seq, rs[2].significance, rs[2].timestamp, &rs[2].associations), (rs[1].seq, rs[1].significance, rs[1].timestamp, &rs[1].associations));
    assert_eq!(s.stats().last_seq, seq + 1);
    assert!(s.stats().storage_bytes > len);
    let m = s.get("n", "a", false).unwrap();
    assert_eq!((m.text.as_str(), m.metadata.as_str(), m.seq), ("first", "{}", a.seq));
    assert_eq!(s.get("n", "c", false).unwrap().text, "new");
    // Same id in another namespace is a different memory.
    let o = s.put_blocking(vec![item("m", "a", "ns m", unit(8, 0))]).unwrap().remove(0);
    assert!(!o.existing);
    assert_eq!(s.count("n"), 3);
    assert_eq!(s.count("m"), 1);
    // After delete, the id is free again.
    s.delete_blocking("n", vec!["a".into()]).unwrap();
    let r = s.put_blocking(vec![item("n", "a", "reborn", unit(8, 0))]).unwrap().remove(0);
    assert!(!r.existing);
    drop(s);
    let s = open(dir.path(), 8);
    assert_eq!(s.get("n", "a", false).unwrap().text, "reborn");
    assert_eq!(s.count("n"), 3);
}

/// A put may carry the memory's original time and absolute expiry (re-embedding copies
/// memories into the new embedder's store with them); significance is still computed, and
/// both survive a reopen.
#[test]
fn put_keeps_a_given_timestamp_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), 8);
    let far = 4_102_444_800_000; // 2100-01-01
    let mut old = item("n", "a", "old", unit(8, 0));
    old.timestamp = Some(1_000_000);
    old.expires_at = Some(far);
    old.ttl_ms = Some(5); // the absolute expiry wins
    let r = s.put_blocking(vec![old, item("n", "b", "now", unit(8, 1))]).unwrap();
    assert_eq!(r[0].timestamp, 1_000_000);
    assert!(r[1].timestamp > far / 10_000, "no timestamp given: now ({})", r[1].timestamp);
    assert!((r[0].significance - 0.9).abs() < 1e-6, "computed as for any put: {}", r[0].significance);
    drop(s);
    let s = open(dir.path(), 8);
    let m = s.get("n", "a", false).unwrap();
    assert_eq!((m.timestamp, m.expires_at), (1_000_000, Some(far)));
    assert_eq!(s.get("n", "b", false).unwrap().expires_at, None);
}

/// A put may carry its timestamp (a cluster replica applies the receiving instance's): it is
/// stored, survives a reopen, and the expiry counts from it; a negative one is refused.
#[test]
fn given_timestamp_is_kept_and_expiry_counts_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), 8);
    let mut a = item("n", "a", "first", unit(8, 0));
    a.timestamp = Some(1_700_000_000_000);
    let r = s.put_blocking(vec![a]).unwrap().remove(0);
    assert_eq!(r.timestamp, 1_700_000_000_000);
    // An hour of TTL counted from 2023: long expired, so not visible.
    let mut old = item("n", "old", "expired at once", unit(8, 1));
    old.timestamp = Some(1_700_000_000_000);
    old.ttl_ms = Some(3_600_000);
    s.put_blocking(vec![old]).unwrap();
    assert!(s.get("n", "old", false).is_none());
    let mut bad = item("n", "b", "negative", unit(8, 2));
    bad.timestamp = Some(-5);
    assert_err(s.put_blocking(vec![bad]), ErrorCode::InvalidRequest, "timestamp must not be negative");
    drop(s);
    let s = open(dir.path(), 8);
    assert_eq!(s.get("n", "a", false).unwrap().timestamp, 1_700_000_000_000);
    assert!(s.get("n", "b", false).is_none());
}

/// Clustered vectors with some exact duplicates (ties) and explicit significances.
fn batch_items(seed: u64, n: usize, dims: usize) -> Vec<PutInput> {
    let mut r = rng(seed);
    let bases: Vec<Vec<f32>> = (0..4).map(|_| rvec(&mut r, dims)).collect();
    let mut out = Vec::new();
    for i in 0..n {
        let b = &bases[i % 4];
        let v: Vec<f32> = if i % 3 == 0 { b.clone() } else { b.iter().map(|x| x + r.gen_range(-0.25f32..0.25)).collect() };
        let ns = if i % 7 == 3 { "other" } else { "main" };
        let id = if i % 11 == 10 { format!("m{}", i - 3) } else { format!("m{i}") };
        let mut it = item(ns, &id, &format!("text {i}"), v);
        if i % 9 == 4 {
            it.significance = Some(0.33);
        }
        if i % 6 == 1 {
            it.metadata = Some(format!(r#"{{"importance": {}}}"#, (i % 4) as f64 / 4.0));
        }
        out.push(it);
    }
    out
}
use rand::Rng;

/// Two runs of the same puts gave the same outcomes (ids, seqs, significance, associations,
/// and for new memories the namespace count right after each).
fn assert_same_outcomes(got: &[PutOutcome], want: &[PutOutcome]) {
    assert_eq!(got.len(), want.len());
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert_eq!((&a.id, a.existing, a.seq), (&b.id, b.existing, b.seq), "item {i}");
        assert!((a.significance - b.significance).abs() < 1e-5, "item {i}: {} vs {}", a.significance, b.significance);
        assert_eq!(a.associations, b.associations, "item {i}");
        if !a.existing {
            assert_eq!(a.namespace_total, b.namespace_total, "item {i}: count right after it");
        }
    }
}

#[test]
fn batch_equals_one_by_one() {
    let dims = 16;
    let n = 80;
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (s1, s2) = (open(d1.path(), dims), open(d2.path(), dims));
    // Some prior content in both.
    let pre = batch_items(99, 20, dims);
    s1.put_blocking(pre.clone()).unwrap();
    for it in pre {
        s2.put_blocking(vec![it]).unwrap();
    }
    let items = batch_items(5, n, dims);
    let batched = s1.put_blocking(items.clone()).unwrap();
    let single: Vec<_> = items.into_iter().map(|it| s2.put_blocking(vec![it]).unwrap().remove(0)).collect();
    assert_same_outcomes(&batched, &single);
    for ns in ["main", "other"] {
        let (l1, l2) = (list_all(&s1, ns, 1000), list_all(&s2, ns, 1000));
        let f = |l: &[Memory]| l.iter().map(|m| (m.id.clone(), m.seq, m.associations.clone())).collect::<Vec<_>>();
        assert_eq!(f(&l1), f(&l2));
    }
}

/// A batch large enough that its namespaces' new memories are scored on every core (64 or
/// more new memories in one namespace: `PARALLEL_MIN_NEW` in `significance/pass.rs`) gives
/// what storing the items one by one gives: the same significance bits and associations.
#[test]
fn large_batch_scored_in_parallel_equals_one_by_one() {
    let dims = 32;
    let n = 400;
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (s1, s2) = (open(d1.path(), dims), open(d2.path(), dims));
    let items = batch_items(23, n, dims);
    let new_in_main = items.iter().filter(|it| it.namespace == "main").filter_map(|it| it.id.clone()).collect::<std::collections::HashSet<_>>().len();
    assert!(new_in_main >= 2 * 64, "{new_in_main} new memories in one namespace");
    let batched = s1.put_blocking(items.clone()).unwrap();
    let single: Vec<_> = items.into_iter().map(|it| s2.put_blocking(vec![it]).unwrap().remove(0)).collect();
    assert_same_outcomes(&batched, &single);
    assert!(batched.iter().any(|o| !o.associations.is_empty()), "some memories have associations");
    for ns in ["main", "other"] {
        let (l1, l2) = (list_all(&s1, ns, 1000), list_all(&s2, ns, 1000));
        let f = |l: &[Memory]| l.iter().map(|m| (m.id.clone(), m.seq, m.significance.to_bits(), m.associations.clone())).collect::<Vec<_>>();
        assert_eq!(f(&l1), f(&l2));
    }
}

/// Puts submitted without waiting (many group commits of varying size) give exactly what
/// storing the items one by one gives, duplicates across groups included.
#[test]
fn concurrent_groups_equal_one_by_one() {
    let dims = 32;
    let n = 600;
    let items = batch_items(17, n, dims);
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (s1, s2) = (open_always(d1.path(), dims), open(d2.path(), dims));
    let single: Vec<_> = items.iter().cloned().map(|it| s2.put_blocking(vec![it]).unwrap().remove(0)).collect();
    // From one thread, in bursts: log order = submission order; the writer forms groups
    // from whatever is queued.
    let (tx, rx) = std::sync::mpsc::channel();
    for (i, it) in items.iter().cloned().enumerate() {
        let tx = tx.clone();
        s1.put(vec![it], Box::new(move |r| tx.send((i, r)).unwrap()));
        if i % 50 == 0 {
            std::thread::sleep(Duration::from_micros(300));
        }
    }
    drop(tx);
    let mut piped: Vec<Option<PutOutcome>> = vec![None; n];
    for (i, r) in rx {
        piped[i] = Some(r.unwrap().remove(0));
    }
    assert!(s1.stats().groups >= 2);
    let piped: Vec<PutOutcome> = piped.into_iter().map(Option::unwrap).collect();
    assert_same_outcomes(&piped, &single);
    for ns in ["main", "other"] {
        let (l1, l2) = (list_all(&s1, ns, 10_000), list_all(&s2, ns, 10_000));
        let f = |l: &[Memory]| l.iter().map(|m| (m.id.clone(), m.seq, m.significance, m.associations.clone())).collect::<Vec<_>>();
        assert_eq!(f(&l1), f(&l2));
    }
}

#[test]
fn group_commit_shares_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let dims = 8;
    let n = 64;
    {
        let s = Arc::new(open_always(dir.path(), dims));
        let f0 = s.stats().fsyncs;
        let barrier = Arc::new(Barrier::new(n));
        let hs: Vec<_> = (0..n)
            .map(|i| {
                let (s, b) = (s.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let v = rvec(&mut rng(i as u64), dims);
                    b.wait();
                    s.put_blocking(vec![item("g", &format!("t{i}"), "x", v)]).unwrap().remove(0)
                })
            })
            .collect();
        let outs: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        let seqs: HashSet<u64> = outs.iter().map(|o| o.seq).collect();
        assert_eq!(seqs.len(), n, "every store gets its own seq");
        assert!(outs.iter().all(|o| !o.existing));
        let st = s.stats();
        assert_eq!(st.total_memories, n);
        let fsyncs = st.fsyncs - f0;
        assert!(fsyncs >= 1 && fsyncs < n as u64, "fsyncs = {fsyncs}: concurrent stores must share fsyncs");
        assert!(st.groups < n as u64, "groups = {}", st.groups);
        // Each memory's significance was computed against every memory before it in log
        // order: re-derive the first in seq order (empty namespace → 0.9).
        let first = outs.iter().min_by_key(|o| o.seq).unwrap();
        assert!(close_to(first.significance, 0.9), "{}", first.significance);
    }
    let s = open(dir.path(), dims);
    assert_eq!(s.count("g"), n);
}

#[test]
fn ttl_expiry_hides_and_compaction_drops() {
    let dir = tempfile::tempdir().unwrap();
    let dims = 8;
    let s = open(dir.path(), dims);
    let mut short = item("t", "short", "short lived", unit(dims, 0));
    // Long enough that a loaded machine still sees it before it expires.
    short.ttl_ms = Some(300);
    let mut long = item("t", "long", "long lived", unit(dims, 0));
    long.ttl_ms = Some(3_600_000);
    let keep = item("t", "keep", "forever", unit(dims, 1));
    let outs = s.put_blocking(vec![short, long, keep]).unwrap();
    assert_eq!(s.count("t"), 3);
    assert!(s.get("t", "short", false).unwrap().expires_at.is_some());
    assert!(s.get("t", "keep", false).unwrap().expires_at.is_none());
    std::thread::sleep(Duration::from_millis(350));
    assert!(s.get("t", "short", false).is_none());
    assert_eq!(s.count("t"), 2);
    assert_eq!(s.stats().total_memories, 2);
    assert_eq!(s.namespaces(), vec![("t".to_string(), 2)]);
    let ids = |v: Vec<Memory>| v.into_iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(ids(list_all(&s, "t", 10)), vec!["long", "keep"]);
    let req = SearchRequest { namespace: "t".into(), k: 10, ..Default::default() };
    assert_eq!(ids(s.search(&unit(dims, 0), 1, &req).unwrap().remove(0)), vec!["long", "keep"]);
    assert!(!ids(s.top(&req, 10)).contains(&"short".to_string()));
    // An expired memory no longer counts for significance: a new one like it is novel
    // only w.r.t. "long".
    let d = s.delete_where_blocking("t", None).unwrap();
    assert_eq!(d.deleted.len(), 2, "delete all skips expired");
    let rep = s.compact_blocking().unwrap();
    assert_eq!(rep.rows_after, 0);
    assert_eq!(s.stats().rows, 0);
    drop(s);
    let s = open(dir.path(), dims);
    assert_eq!(s.count("t"), 0);
    assert!(s.stats().last_seq >= outs[2].seq + 2);

    // Expired id can be stored again (a new memory); compaction drops the expired row.
    let mut x = item("t", "x", "v1", unit(dims, 2));
    x.ttl_ms = Some(30);
    s.put_blocking(vec![x]).unwrap();
    s.put_blocking(vec![item("t", "y", "stays", unit(dims, 3))]).unwrap();
    std::thread::sleep(Duration::from_millis(60));
    let again = s.put_blocking(vec![item("t", "x", "v2", unit(dims, 2))]).unwrap().remove(0);
    assert!(!again.existing);
    assert!(close_to(again.significance, 0.9), "expired memory must not count: {}", again.significance);
    let mut z = item("t", "z", "soon gone", unit(dims, 4));
    z.ttl_ms = Some(30);
    s.put_blocking(vec![z]).unwrap();
    std::thread::sleep(Duration::from_millis(60));
    let rep = s.compact_blocking().unwrap();
    assert_eq!(rep.rows_after, 2);
    assert_eq!(ids(list_all(&s, "t", 10)), vec!["y", "x"]);
    drop(s);
    let s = open(dir.path(), dims);
    assert_eq!(ids(list_all(&s, "t", 10)), vec!["y", "x"]);
    assert_eq!(s.get("t", "x", false).unwrap().text, "v2");
}

#[test]
fn compaction_keeps_everything_else_and_cursors() {
    let dir = tempfile::tempdir().unwrap();
    let dims = 8;
    let s = open(dir.path(), dims);
    let mut r = rng(3);
    for i in 0..40 {
        let mut it = item(if i % 3 == 0 { "b" } else { "a" }, &format!("k{i}"), &format!("t{i}"), rvec(&mut r, dims));
        it.metadata = Some(format!(r#"{{"i":{i},"tag":"{}"}}"#, if i % 2 == 0 { "even" } else { "odd" }));
        s.put_blocking(vec![it]).unwrap();
    }
    s.update_blocking("a", "k2", Some(r#"{"tag":"updated"}"#.into()), Some(0.77)).unwrap();
    s.delete_blocking("a", (0..40).filter(|i| i % 5 == 1 && i % 3 != 0).map(|i| format!("k{i}")).collect()).unwrap();
    let before: Vec<Memory> = ["a", "b"].iter().flat_map(|ns| list_all(&s, ns, 7)).collect();
    let (page1, cur) = s.list("a", 0, 10, None);
    let cur = cur.unwrap();
    let last_seq = s.stats().last_seq;
    // Delete the newest so that compaction drops the highest seq: seqs must not go back.
    let newest = before.iter().max_by_key(|m| m.seq).unwrap().clone();
    s.delete_blocking(&newest.namespace, vec![newest.id.clone()]).unwrap();
    let rep = s.compact_blocking().unwrap();
    assert!(rep.bytes_after < rep.bytes_before);
    assert_eq!(rep.rows_after, before.len() - 1);
    let after: Vec<Memory> = ["a", "b"].iter().flat_map(|ns| list_all(&s, ns, 7)).collect();
    let want: Vec<_> = before.iter().filter(|m| m.id != newest.id || m.namespace != newest.namespace).map(key).collect();
    assert_eq!(after.iter().map(key).collect::<Vec<_>>(), want);
    // Cursor from before compaction continues correctly.
    let (page2, _) = s.list("a", cur, 1000, None);
    let all_a: Vec<_> = want.iter().filter(|k| k.0 == "a").map(|k| k.1.clone()).collect();
    let got: Vec<_> = page1.iter().chain(&page2).map(|m| m.id.clone()).filter(|id| *id != newest.id).collect();
    assert_eq!(got, all_a);
    // Filter index survives compaction (updated metadata too).
    let f = Filter::compile(&json!({"tag": "updated"})).unwrap();
    let (l, _) = s.list("a", 0, 100, Some(&f));
    assert_eq!(l.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), vec!["k2"]);
    assert_eq!(l[0].significance, 0.77);
    drop(s);
    let s = open(dir.path(), dims);
    let again: Vec<Memory> = ["a", "b"].iter().flat_map(|ns| list_all(&s, ns, 7)).collect();
    assert_eq!(again.iter().map(key).collect::<Vec<_>>(), want);
    let o = s.put_blocking(vec![item("a", "fresh", "f", unit(dims, 0))]).unwrap().remove(0);
    assert!(o.seq > last_seq + 1, "seq went back after compaction + reopen: {} <= {}", o.seq, last_seq + 1);
    // Compact twice in a row, then reopen.
    s.compact_blocking().unwrap();
    s.compact_blocking().unwrap();
    drop(s);
    let s = open(dir.path(), dims);
    assert_eq!(s.count("a") + s.count("b"), want.len() + 1);
    let names: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).filter(|n| n.starts_with("wal-")).collect();
    assert_eq!(names.len(), 1, "old generations removed: {names:?}");
}

#[test]
fn list_pagination_under_concurrent_puts() {
    let dir = tempfile::tempdir().unwrap();
    let dims = 8;
    let s = Arc::new(open(dir.path(), dims));
    let mut r = rng(11);
    let initial: Vec<PutInput> = (0..150).map(|i| item("l", &format!("i{i}"), "x", rvec(&mut r, dims))).collect();
    s.put_blocking(initial).unwrap();
    let s2 = s.clone();
    let writer = std::thread::spawn(move || {
        let mut r = rng(12);
        for i in 0..150 {
            s2.put_blocking(vec![item("l", &format!("c{i}"), "x", rvec(&mut r, dims))]).unwrap();
            if i % 10 == 0 {
                s2.put_blocking(vec![item("other", &format!("o{i}"), "x", rvec(&mut r, dims))]).unwrap();
            }
        }
    });
    let mut seen = Vec::new();
    let mut cursor = 0;
    loop {
        let (page, next) = s.list("l", cursor, 7, None);
        seen.extend(page.iter().map(|m| (m.seq, m.id.clone())));
        match next {
            Some(c) => cursor = c,
            None => break,
        }
        std::thread::yield_now();
    }
    writer.join().unwrap();
    // Store order, no duplicates, every initial one exactly once.
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "not in store order");
    let ids: Vec<&String> = seen.iter().map(|x| &x.1).collect();
    let uniq: HashSet<&String> = ids.iter().copied().collect();
    assert_eq!(uniq.len(), ids.len());
    for i in 0..150 {
        assert!(uniq.contains(&format!("i{i}")), "i{i} missing");
    }
    // Continuing from the last cursor after the writer finished finds exactly the rest.
    let (rest, _) = s.list("l", seen.last().unwrap().0, 1000, None);
    let total: HashSet<String> = seen.iter().map(|x| x.1.clone()).chain(rest.iter().map(|m| m.id.clone())).collect();
    assert_eq!(total.len(), 300);
    assert_eq!(list_all(&s, "l", 1000).len(), 300);
}

// ---------------------------------------------------------------------------------------
// Bulk load
// ---------------------------------------------------------------------------------------

/// Compaction renumbers rows; the significance pass must see the new rows (not codes of the
/// old ones), even when a bulk load brings the row count back to what it was.
/// Waits (bounded) until the writer has int8 codes for every row, where the CPU has the
/// int8 kernel; returns whether it does (multi-query searches then take the pre-pass).
fn wait_int8_codes(s: &TensorStore) -> bool {
    if memory_core::search::q8::kernel().is_none() {
        eprintln!("int8 codes skipped (searches take the f32 scan): no int8 kernel (AVX-512 VNNI) on this CPU, or MEMORY_SERVER_Q8=off");
        return false;
    }
    let t = std::time::Instant::now();
    while s.stats().int8_rows < s.stats().rows {
        assert!(t.elapsed() < std::time::Duration::from_secs(60), "int8 codes never caught up");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    true
}

#[test]
fn multi_query_search_through_int8_codes_across_compaction_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let dims = 40;
    let now = memory_core::store::now_ms();
    let (s, mut rows) = build_search_store(dir.path(), dims, 6_000, 900, now);
    let mut r = rng(77);
    delete_some(&s, &mut rows, &mut r, 0.05);
    let qs: Vec<Vec<f32>> = (0..6).map(|_| rvec(&mut r, dims)).collect();
    let flat: Vec<f32> = qs.iter().flatten().copied().collect();
    let check = |s: &TensorStore, stage: &str| {
        for ns in ["big", "small"] {
            // The parameters the int8 pre-pass serves (no metadata filter or score transform).
            for (pi, p) in queries(now, ns).iter().enumerate().filter(|(_, p)| p.filter.is_none() && p.min_score.is_none() && p.half_life.is_none()) {
                let multi = s.search(&flat, qs.len(), &p.req(false)).unwrap();
                for (qi, q) in qs.iter().enumerate() {
                    let all = oracle(&rows, q, p, memory_core::store::now_ms());
                    // No recency weighting among these parameters: no drift to allow for.
                    assert_topk_tol(&multi[qi], &all, p.k, &format!("{stage}: ns {ns} params #{pi} query {qi}"), tol_for(p, 0));
                }
            }
        }
    };
    let coded = wait_int8_codes(&s);
    check(&s, "coded");
    // Compaction renumbers the rows: the codes start over and are rebuilt while idle.
    s.compact_blocking().unwrap();
    check(&s, "after compaction");
    if coded {
        wait_int8_codes(&s);
        assert_eq!(s.stats().int8_rows, s.stats().rows);
    }
    check(&s, "after compaction, coded");
    s.close().unwrap();
    let s = open(dir.path(), dims);
    check(&s, "reopened");
    wait_int8_codes(&s);
    check(&s, "reopened, coded");
    // New rows after the codes (the pass scores them exactly until they are coded).
    let extra: Vec<Vec<f32>> = (0..50).map(|_| rvec(&mut r, dims)).collect();
    for (i, v) in extra.iter().enumerate() {
        s.put_blocking(vec![item("big", &format!("x{i}"), "t", v.clone())]).unwrap();
    }
    let best = s.search(&[extra[7].clone(), extra[42].clone()].concat(), 2, &SearchRequest { namespace: "big".into(), k: 1, ..Default::default() }).unwrap();
    assert_eq!(best[0][0].id, "x7");
    assert_eq!(best[1][0].id, "x42");
}

/// Waits (bounded) until the writer has written `rows` rows to the vectors file of `dir`.
fn wait_vectors_file(dir: &std::path::Path, rows: usize, dims: usize) -> std::path::PathBuf {
    let t = std::time::Instant::now();
    loop {
        let files: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("vectors-")).collect();
        assert!(files.len() <= 1, "more than one vectors file: {files:?}");
        if let Some(f) = files.first() {
            if std::fs::metadata(f).unwrap().len() as usize >= rows * dims * 4 {
                return f.clone();
            }
        }
        assert!(t.elapsed() < Duration::from_secs(60), "vectors file never reached {rows} rows");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn significance_after_compaction_and_bulk_load_sees_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let dims = 32;
    let s = open(dir.path(), dims);
    let mut r = rng(3);
    for i in 0..40 {
        s.put_blocking(vec![item("n", &format!("a{i}"), "t", rvec(&mut r, dims))]).unwrap();
    }
    s.delete_blocking("n", (0..10).map(|i| format!("a{i}")).collect()).unwrap();
    s.compact_blocking().unwrap();
    let news: Vec<Vec<f32>> = (0..10).map(|_| rvec(&mut r, dims)).collect();
    let recs = news
        .iter()
        .enumerate()
        .map(|(i, v)| PutRecord {
            seq: 0,
            ts: 1_600_000_000_000,
            namespace: "n".into(),
            id: format!("b{i}"),
            text: "t".into(),
            metadata: "{}".into(),
            significance: 0.5,
            expires_at: NO_EXPIRY,
            associations: vec![],
            vector: v.clone(),
        })
        .collect();
    assert_eq!(s.bulk_load_blocking(recs).unwrap(), 10);
    // Storing each bulk-loaded vector again finds it as the nearest neighbour.
    for (i, v) in news.iter().enumerate() {
        let o = s.put_blocking(vec![item("n", &format!("dup{i}"), "t", v.clone())]).unwrap().remove(0);
        assert_eq!(o.associations.first(), Some(&format!("b{i}")), "dup{i}: {:?}", o.associations);
        assert!(o.significance < 0.5, "dup{i}: {}", o.significance);
    }
}

/// An export bulk-loaded into another store gives the same vectors, bit for bit (a cluster
/// member joining from a snapshot must equal the member it copies): a vector that is unit
/// length already is not normalized again.
#[test]
fn export_then_bulk_load_keeps_vector_bits() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dims = 16;
    let src = open(a.path(), dims);
    let mut r = rng(7);
    for i in 0..50 {
        src.put_blocking(vec![item("n", &format!("m{i}"), "t", rvec(&mut r, dims))]).unwrap();
    }
    let exported = src.export(0, 1000);
    let recs: Vec<PutRecord> = exported
        .iter()
        .map(|m| PutRecord {
            seq: 0,
            ts: m.timestamp,
            namespace: m.namespace.clone(),
            id: m.id.clone(),
            text: m.text.clone(),
            metadata: m.metadata.clone(),
            significance: m.significance,
            expires_at: NO_EXPIRY,
            associations: m.associations.clone(),
            vector: m.embedding.clone().unwrap(),
        })
        .collect();
    let dst = open(b.path(), dims);
    assert_eq!(dst.bulk_load_blocking(recs).unwrap(), 50);
    for m in &exported {
        let got = dst.get("n", &m.id, true).unwrap();
        assert_eq!(got.embedding, m.embedding, "{}", m.id);
        assert_eq!((got.significance, &got.associations, got.timestamp), (m.significance, &m.associations, m.timestamp));
    }
    // A vector that is not unit length is still normalized.
    let rec = PutRecord { seq: 0, ts: 1, namespace: "n".into(), id: "long".into(), text: "t".into(), metadata: "{}".into(), significance: 0.5, expires_at: NO_EXPIRY, associations: vec![], vector: vec![2.0; dims] };
    dst.bulk_load_blocking(vec![rec]).unwrap();
    let v = dst.get("n", "long", true).unwrap().embedding.unwrap();
    assert!((v.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
}

#[test]
fn bulk_load_keeps_values_skips_duplicates_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let dims = 8;
    let s = open_always(dir.path(), dims);
    s.put_blocking(vec![item("bl", "exists", "already here", unit(dims, 0))]).unwrap();
    let mut r = rng(21);
    let mut recs = Vec::new();
    for i in 0..20000 {
        recs.push(PutRecord {
            seq: 0,
            ts: 1_600_000_000_000 + i as i64,
            namespace: if i % 4 == 0 { "bl2".into() } else { "bl".into() },
            id: format!("r{i}"),
            text: format!("record {i}"),
            metadata: format!(r#"{{"i":{i}}}"#),
            significance: (i % 100) as f32 / 100.0,
            expires_at: NO_EXPIRY,
            associations: vec![format!("a{i}"), "zz".into()],
            vector: rvec(&mut r, dims),
        });
    }
    let mut dup = recs[5].clone();
    dup.text = "dup".into();
    recs.push(dup);
    let mut ex = recs[1].clone();
    ex.id = "exists".into();
    recs.push(ex);
    let added = s.bulk_load_blocking(recs.clone()).unwrap();
    assert_eq!(added, 20000);
    assert!(s.stats().fsyncs <= 3, "bulk load syncs once: {}", s.stats().fsyncs);
    let check = |s: &TensorStore| {
        assert_eq!(s.count("bl") + s.count("bl2"), 20001);
        for i in [0usize, 1, 5, 777, 19999] {
            let m = s.get(&recs[i].namespace, &recs[i].id, true).unwrap();
            assert_eq!(m.text, recs[i].text);
            assert_eq!(m.significance, recs[i].significance);
            assert_eq!(m.associations, recs[i].associations);
            assert_eq!(m.timestamp, recs[i].ts);
            assert_eq!(m.metadata, recs[i].metadata);
            let e = m.embedding.unwrap();
            let n = norm64(&recs[i].vector);
            assert!(e.iter().zip(&n).all(|(a, b)| (*a as f64 - b).abs() < 1e-6), "stored normalized");
        }
        assert_eq!(s.get("bl", "exists", false).unwrap().text, "already here");
        let l = list_all(s, "bl", 1000);
        assert!(l.windows(2).all(|w| w[0].seq < w[1].seq));
        assert_eq!(l[0].id, "exists");
    };
    check(&s);
    drop(s);
    let s = open(dir.path(), dims);
    check(&s);
    // Loading again adds nothing.
    assert_eq!(s.bulk_load_blocking(recs[..100].to_vec()).unwrap(), 0);
    // A normal put after the load sees the loaded memories.
    let o = s.put_blocking(vec![item("bl", "after", "x", recs[2].vector.clone())]).unwrap().remove(0);
    assert_eq!(o.associations.first().map(String::as_str), Some("r2"));
}

// ---------------------------------------------------------------------------------------
// Crash simulation: torn tails
// ---------------------------------------------------------------------------------------

type Snap = Vec<(String, String, String, String, u32, i64, Vec<String>, u64, Option<i64>)>;

fn snapshot(s: &TensorStore) -> Snap {
    ["a", "b"].iter().flat_map(|ns| list_all(s, ns, 1000)).map(|m| key(&m)).collect()
}

#[test]
fn torn_tail_at_every_offset() {
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("src");
    let dims = 8;
    let wal = wal_path(&src);
    // The snapshot after each single-record operation (its log length is known once the
    // log is read back below: the file runs ahead of its records in zeros while open, and
    // `storage_bytes` counts the vectors file too).
    let mut states: Vec<Snap> = Vec::new();
    {
        let s = open_always(&src, dims);
        states.push(snapshot(&s));
        let mut r = rng(31);
        let mut step = |s: &TensorStore| {
            s.flush_blocking().unwrap();
            states.push(snapshot(s));
        };
        for i in 0..8 {
            let mut it = item(if i % 2 == 0 { "a" } else { "b" }, &format!("p{i}"), &format!("text {i}"), rvec(&mut r, dims));
            it.metadata = Some(format!(r#"{{"n":{i}}}"#));
            s.put_blocking(vec![it]).unwrap();
            step(&s);
        }
        s.update_blocking("a", "p2", Some(r#"{"n":"updated"}"#.into()), Some(0.42)).unwrap();
        step(&s);
        s.put_blocking(vec![item("a", "p8", "text 8", rvec(&mut r, dims))]).unwrap();
        step(&s);
        s.delete_blocking("b", vec!["p3".into()]).unwrap();
        step(&s);
        s.put_blocking(vec![item("b", "p9", "text 9", rvec(&mut r, dims))]).unwrap();
        step(&s);
    }
    let bytes = std::fs::read(&wal).unwrap();
    let offs = record_offsets(&bytes);
    assert_eq!(offs.len(), 12);
    assert_eq!(states.len(), 13);
    let full = bytes.len() as u64;
    // Snapshot k follows the first k records: the log ends where record k starts (or at the
    // end of the closed file after the last one).
    let snaps: Vec<(u64, Snap)> = offs.iter().map(|&o| o as u64).chain([full]).zip(states).collect();
    let start = offs[offs.len() - 4] as u64; // the update, a put, the delete, a put
    let mut n = 0;
    for cut in start..=full {
        let d = base.path().join(format!("c{cut}"));
        copy_dir(&src, &d);
        std::fs::OpenOptions::new().write(true).open(wal_path(&d)).unwrap().set_len(cut).unwrap();
        let expected = &snaps.iter().rev().find(|(len, _)| *len <= cut).unwrap().1;
        {
            let s = TensorStore::open(&d, opts(dims, FsyncPolicy::Off)).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            assert_eq!(&snapshot(&s), expected, "cut at {cut}");
            let o = s.put_blocking(vec![item("a", "new", "after crash", unit(dims, 0))]).unwrap().remove(0);
            assert!(!o.existing);
            assert!(expected.iter().all(|m| m.7 < o.seq), "cut at {cut}: seq reused");
        }
        {
            let s = TensorStore::open(&d, opts(dims, FsyncPolicy::Off)).unwrap_or_else(|e| panic!("reopen after cut at {cut}: {e}"));
            let snap = snapshot(&s);
            assert_eq!(snap.len(), expected.len() + 1, "cut at {cut}");
            assert_eq!(s.get("a", "new", false).unwrap().text, "after crash");
        }
        std::fs::remove_dir_all(&d).unwrap();
        n += 1;
    }
    assert!(n > 100);

    // Zero-filled tail after complete records.
    let d = base.path().join("zeros");
    copy_dir(&src, &d);
    let mut b = bytes.clone();
    b.extend(std::iter::repeat_n(0u8, 4096));
    std::fs::write(wal_path(&d), &b).unwrap();
    {
        let s = open(&d, dims);
        assert_eq!(snapshot(&s), snaps.last().unwrap().1);
        s.put_blocking(vec![item("a", "z", "after zeros", unit(dims, 1))]).unwrap();
    }
    {
        let s = open(&d, dims);
        assert_eq!(s.get("a", "z", false).unwrap().text, "after zeros");
        assert_eq!(file_len(&wal_path(&d)), full + (file_len(&wal_path(&d)) - full));
    }
    // A torn last record followed by zeros (the file grew but the data never landed).
    for (cut, fill) in [(offs[11] as u64 + 20, 4096usize), (offs[11] as u64 + 3, 10), (offs[11] as u64 + 8, 1)] {
        let d = base.path().join(format!("tornzeros{cut}-{fill}"));
        copy_dir(&src, &d);
        let mut b = bytes[..cut as usize].to_vec();
        b.extend(std::iter::repeat_n(0u8, fill));
        std::fs::write(wal_path(&d), &b).unwrap();
        let s = TensorStore::open(&d, opts(dims, FsyncPolicy::Off)).unwrap_or_else(|e| panic!("torn + zeros at {cut}: {e}"));
        assert_eq!(snapshot(&s), snaps[11].1);
    }
}

// ---------------------------------------------------------------------------------------
// Corruption before the tail + repair
// ---------------------------------------------------------------------------------------

#[test]
fn corruption_before_tail_is_refused_and_repaired() {
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("src");
    let dims = 8;
    {
        let s = open_always(&src, dims);
        let mut r = rng(41);
        for i in 0..10 {
            s.put_blocking(vec![item("a", &format!("p{i}"), &format!("text number {i}"), rvec(&mut r, dims))]).unwrap();
        }
    }
    let bytes = std::fs::read(wal_path(&src)).unwrap();
    let offs = record_offsets(&bytes);
    assert_eq!(offs.len(), 10);
    let bad = offs[3];
    let next = offs[4];
    // (what, byte index to change, new value)
    let cases: Vec<(&str, usize, u8)> = vec![
        ("body byte", bad + 8 + 30, bytes[bad + 8 + 30] ^ 0x40),
        ("crc byte", bad + 5, bytes[bad + 5] ^ 0x01),
        ("length high byte", bad + 3, 0x7f),
        ("length low byte", bad, bytes[bad].wrapping_add(1)),
        ("length to zero", bad, 0),
        ("kind byte", bad + 8, 9),
    ];
    for (what, at, val) in cases {
        let d = base.path().join(format!("case{at}-{val}"));
        copy_dir(&src, &d);
        let mut b = bytes.clone();
        if what == "length to zero" {
            b[bad..bad + 4].copy_from_slice(&[0, 0, 0, 0]);
        } else {
            b[at] = val;
        }
        let wal = wal_path(&d);
        std::fs::write(&wal, &b).unwrap();
        let e = TensorStore::open(&d, opts(dims, FsyncPolicy::Off)).err().unwrap_or_else(|| panic!("{what}: open must fail"));
        assert_eq!(e.code(), ErrorCode::Corrupt, "{what}: {e}");
        match &e {
            Error::Corrupt { file, offset, .. } => {
                assert!(file.contains(WAL), "{what}: {file}");
                assert_eq!(*offset, bad as u64, "{what}");
            }
            other => panic!("{what}: {other}"),
        }
        let msg = e.to_string();
        assert!(msg.contains(WAL) && msg.contains(&format!("offset {bad}")), "{what}: {msg}");
        // Nothing was changed by the failed open.
        assert_eq!(std::fs::read(&wal).unwrap(), b, "{what}: a refused open must not touch the log");

        // Repair resynchronises on record 4: only record 3 (sequence 4) is lost.
        let rep = repair(&d).unwrap();
        assert_eq!(rep.kept_records, 9, "{what}");
        assert_eq!(rep.lost.len(), 1, "{what}: {:?}", rep.lost);
        let l = &rep.lost[0];
        assert_eq!((l.start, l.end), (bad as u64, next as u64), "{what}");
        assert_eq!((l.first_seq, l.last_seq), (4, Some(4)), "{what}");
        assert_eq!(rep.lost_bytes, (next - bad) as u64);
        let aside = rep.damaged_to.clone().expect("damaged bytes kept");
        assert_eq!(std::fs::read(&aside).unwrap(), b[bad..next].to_vec(), "{what}");
        let txt = std::fs::read_to_string(rep.report_to.as_ref().unwrap()).unwrap();
        assert!(txt.contains(&format!("bytes {bad}..{next}")) && txt.contains("sequence 4"), "{what}: {txt}");
        assert_eq!(rep.kept_bytes, (b.len() - (next - bad)) as u64);
        assert_eq!(file_len(&wal), rep.kept_bytes);
        {
            let s = open(&d, dims);
            let ids: Vec<String> = list_all(&s, "a", 100).into_iter().map(|m| m.id).collect();
            assert_eq!(ids, vec!["p0", "p1", "p2", "p4", "p5", "p6", "p7", "p8", "p9"], "{what}");
            s.put_blocking(vec![item("a", "p3", "again", unit(dims, 0))]).unwrap();
        }
        let s = open(&d, dims);
        assert_eq!(s.count("a"), 10);
        // Repairing a clean log is a no-op.
        drop(s);
        let before = std::fs::read(&wal).unwrap();
        let rep = repair(&d).unwrap();
        assert!(rep.lost.is_empty() && rep.damaged_to.is_none() && rep.meta.is_none());
        assert_eq!(rep.kept_records, 10);
        assert_eq!(std::fs::read(&wal).unwrap(), before);
    }
    // A bad header is corruption at offset 0; repair rebuilds it from store.json.
    let d = base.path().join("hdr");
    copy_dir(&src, &d);
    let mut b = bytes.clone();
    b[13] ^= 0xff;
    std::fs::write(wal_path(&d), &b).unwrap();
    let e = TensorStore::open(&d, opts(dims, FsyncPolicy::Off)).err().unwrap();
    assert_eq!(e.code(), ErrorCode::Corrupt, "{e}");
    assert!(e.to_string().contains(WAL) && e.to_string().contains("offset 0"), "{e}");
    let rep = repair(&d).unwrap();
    assert_eq!(rep.kept_records, 10);
    assert_eq!(rep.lost.iter().map(|l| (l.start, l.end)).collect::<Vec<_>>(), vec![(0, 40)]);
    assert_eq!(open(&d, dims).count("a"), 10);
    // An intact header of another format version is not "repaired" away.
    let d = base.path().join("version");
    copy_dir(&src, &d);
    let mut b = bytes.clone();
    b[8..12].copy_from_slice(&3u32.to_le_bytes());
    let crc = crc32c::crc32c(&b[..32]);
    b[32..36].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(wal_path(&d), &b).unwrap();
    let e = repair(&d).expect_err("another version is not damage");
    assert!(e.to_string().contains("unsupported log version 3"), "{e}");
    assert_eq!(std::fs::read(wal_path(&d)).unwrap(), b);
}

/// One flipped bit in the middle record of many: repair keeps every other record, each with
/// its own vector (readable and searchable), reports the lost one, and a garbage store.json
/// is rebuilt from the log.
#[test]
fn repair_salvages_every_intact_record_after_the_damage() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (dims, n) = (16, 301);
    let mut r = rng(77);
    let vecs: Vec<Vec<f32>> = (0..n).map(|_| rvec(&mut r, dims)).collect();
    {
        let s = open_always(d, dims);
        for (i, v) in vecs.iter().enumerate() {
            s.put_blocking(vec![item("a", &format!("m{i}"), &format!("memory {i}"), v.clone())]).unwrap();
        }
        // Let the writer fill the vectors file: its rows after the lost one must not be trusted.
        wait_vectors_file(d, n, dims);
    }
    let mut b = std::fs::read(wal_path(d)).unwrap();
    let offs = record_offsets(&b);
    let mid = n / 2;
    let (bad, next) = (offs[mid], offs[mid + 1]);
    b[bad + (next - bad) / 2] ^= 0x04;
    std::fs::write(wal_path(d), &b).unwrap();
    std::fs::write(d.join("store.json"), b"\x00garbage").unwrap();

    let rep = repair(d).unwrap();
    assert_eq!(rep.kept_records, n as u64 - 1);
    assert_eq!(rep.lost.len(), 1);
    let l = &rep.lost[0];
    assert_eq!((l.start, l.end, l.first_seq, l.last_seq, l.records), (bad as u64, next as u64, mid as u64 + 1, Some(mid as u64 + 1), Some(1)));
    assert_eq!(l.reason, "checksum mismatch");
    let meta = rep.meta.expect("store.json rebuilt");
    assert_eq!(meta.dims, dims);
    assert_eq!(std::fs::read(&meta.moved_to).unwrap(), b"\x00garbage");

    let s = open(d, dims);
    assert_eq!(s.count("a"), n - 1);
    assert!(s.get("a", &format!("m{mid}"), false).is_none());
    let req = SearchRequest { namespace: "a".into(), k: 1, ..Default::default() };
    for (i, v) in vecs.iter().enumerate().filter(|&(i, _)| i != mid) {
        let m = s.get("a", &format!("m{i}"), true).unwrap_or_else(|| panic!("m{i} lost"));
        assert_eq!(m.text, format!("memory {i}"));
        let stored = m.embedding.unwrap();
        let want = norm64(v);
        assert!(stored.iter().zip(&want).all(|(a, b)| (*a as f64 - b).abs() < 1e-6), "m{i}: embedding changed");
        let hits = s.search(v, 1, &req).unwrap();
        assert_eq!(hits[0][0].id, format!("m{i}"));
    }
}

// ---------------------------------------------------------------------------------------
// Search against a brute-force oracle
// ---------------------------------------------------------------------------------------

struct ORow {
    ns: String,
    id: String,
    ts: i64,
    sig: f32,
    meta: Map<String, Value>,
    v: Vec<f64>,
    live: bool,
}

struct Query<'a> {
    ns: &'a str,
    k: usize,
    min_score: Option<f32>,
    min_sig: f32,
    filter: Option<Value>,
    since: Option<i64>,
    until: Option<i64>,
    half_life: Option<f64>,
}

impl Query<'_> {
    fn req(&self, with_key: bool) -> SearchRequest {
        let f = self.filter.as_ref().map(|f| Arc::new(Filter::compile(f).unwrap()));
        SearchRequest {
            namespace: self.ns.into(),
            k: self.k,
            min_score: self.min_score,
            min_significance: self.min_sig,
            filter: f,
            filter_key: if with_key { self.filter.as_ref().map(|f| f.to_string()).unwrap_or_default() } else { String::new() },
            since_ms: self.since,
            until_ms: self.until,
            recency_half_life_s: self.half_life,
            include_embeddings: false,
            f32_scan: false,
            exact: false,
            ef: None,
        }
    }
}

/// Every eligible row's (id, score), best first (ties: newer row first).
fn oracle(rows: &[ORow], q: &[f32], p: &Query, now: i64) -> Vec<(String, f64)> {
    let qn = norm64(q);
    let f = p.filter.as_ref().map(|f| Filter::compile(f).unwrap());
    let mut out: Vec<(usize, f64)> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        if !r.live || r.ns != p.ns || r.sig < p.min_sig {
            continue;
        }
        if p.since.is_some_and(|s| r.ts < s) || p.until.is_some_and(|u| r.ts > u) {
            continue;
        }
        if f.as_ref().is_some_and(|f| !f.matches(&r.meta)) {
            continue;
        }
        let mut s = cos64(&qn, &r.v);
        if let Some(h) = p.half_life {
            s *= (-(((now - r.ts).max(0)) as f64 / 1000.0) / h).exp2();
        }
        if p.min_score.is_some_and(|m| s < m as f64) {
            continue;
        }
        out.push((i, s));
    }
    out.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap().then(b.0.cmp(&a.0)));
    out.into_iter().map(|(i, s)| (rows[i].id.clone(), s)).collect()
}

/// Recency-weighted scores depend on "now", which the store reads when it searches and the
/// oracle when it scores: with `span_ms` between the two (measured around them by the caller:
/// under qemu or a loaded machine it runs to seconds), a score moves by at most the decay of
/// that span (|score| ≤ 1), taken twice over plus a second for the clocks' granularity.
fn tol_for(p: &Query, span_ms: i64) -> f64 {
    match p.half_life {
        Some(h) => 2e-5 + 2.0 * (1.0 - 0.5f64.powf((span_ms.max(0) as f64 / 1000.0 + 1.0) / h)),
        None => 2e-5,
    }
}

/// The milliseconds since `t0` (`now_ms` clock).
fn since(t0: i64) -> i64 {
    memory_core::store::now_ms() - t0
}

fn assert_topk_tol(got: &[Memory], all: &[(String, f64)], k: usize, what: &str, tol: f64) {
    #[allow(non_snake_case)]
    let TOL = tol;
    assert_eq!(got.len(), k.min(all.len()), "{what}: result count");
    let by_id: HashMap<&str, f64> = all.iter().map(|(i, s)| (i.as_str(), *s)).collect();
    let mut seen = HashSet::new();
    for (i, m) in got.iter().enumerate() {
        let s = m.score.expect("score") as f64;
        assert!((s - all[i].1).abs() < TOL, "{what}: rank {i}: score {s} vs oracle {}", all[i].1);
        let o = by_id.get(m.id.as_str()).unwrap_or_else(|| panic!("{what}: {} is not eligible", m.id));
        assert!((o - s).abs() < TOL, "{what}: {} score {s} vs oracle {o}", m.id);
        assert!(seen.insert(m.id.clone()), "{what}: duplicate {}", m.id);
        if i > 0 {
            assert!(got[i - 1].score.unwrap() >= m.score.unwrap(), "{what}: not sorted");
        }
    }
}

/// A store with `big` rows in "big" and `small` rows in "small", built with bulk_load.
/// Deletes each row with probability `p` (marking it dead in the model), namespace by namespace.
fn delete_some(s: &TensorStore, rows: &mut [ORow], r: &mut rand::rngs::StdRng, p: f64) {
    let mut del: HashMap<String, Vec<String>> = HashMap::new();
    for row in rows.iter_mut() {
        if r.gen_bool(p) {
            row.live = false;
            del.entry(row.ns.clone()).or_default().push(row.id.clone());
        }
    }
    for (ns, ids) in del {
        let n = ids.len();
        assert_eq!(s.delete_blocking(&ns, ids).unwrap().deleted.len(), n);
    }
}

fn build_search_store(dir: &std::path::Path, dims: usize, big: usize, small: usize, now: i64) -> (TensorStore, Vec<ORow>) {
    let s = open(dir, dims);
    let mut r = rng(51);
    let types = ["a", "b", "c"];
    let mut recs = Vec::new();
    let mut rows = Vec::new();
    let mut n_small = 0;
    for i in 0..big + small {
        let ns = if i % ((big + small) / small.max(1)).max(1) == 1 && n_small < small { "small" } else { "big" };
        if ns == "small" {
            n_small += 1;
        }
        let meta = json!({"type": types[i % 3], "g": i % 50, "n": (i % 1000) as f64 / 10.0, "tags": [format!("t{}", i % 7), "all"]});
        let v = rvec(&mut r, dims);
        let ts = now - (i as i64 % 5000) * 1000;
        let sig = r.gen_range(0.0f32..1.0);
        recs.push(PutRecord {
            seq: 0,
            ts,
            namespace: ns.into(),
            id: format!("r{i}"),
            text: format!("t{i}"),
            metadata: meta.to_string(),
            significance: sig,
            expires_at: NO_EXPIRY,
            associations: vec![],
            vector: v.clone(),
        });
        rows.push(ORow { ns: ns.into(), id: format!("r{i}"), ts, sig, meta: meta.as_object().unwrap().clone(), v: norm64(&v), live: true });
    }
    assert_eq!(s.bulk_load_blocking(recs).unwrap(), big + small);
    let n_big = rows.iter().filter(|r| r.ns == "big").count();
    assert_eq!(s.count("big"), n_big);
    (s, rows)
}

fn queries<'a>(now: i64, ns: &'a str) -> Vec<Query<'a>> {
    let q = |k, min_score, min_sig, filter: Option<Value>, since, until, half_life| Query { ns, k, min_score, min_sig, filter, since, until, half_life };
    vec![
        q(10, None, 0.0, None, None, None, None),
        q(1, None, 0.0, None, None, None, None),
        q(100, None, 0.0, None, None, None, None),
        q(10, None, 0.5, None, None, None, None),
        q(10, None, 0.0, Some(json!({"g": 7})), None, None, None),
        q(10, None, 0.0, Some(json!({"type": {"$in": ["a", "b", "c"]}})), None, None, None),
        q(10, None, 0.0, Some(json!({"tags": "all"})), None, None, None),
        q(10, None, 0.0, Some(json!({"n": {"$gt": 50}})), None, None, None),
        q(10, None, 0.3, Some(json!({"type": "b", "n": {"$lte": 20.5}})), Some(now - 2_000_000), Some(now - 100_000), None),
        q(10, Some(0.5), 0.0, None, None, None, None),
        q(20, Some(0.2), 0.0, Some(json!({"type": {"$in": ["a"]}})), None, None, Some(600.0)),
        q(10, None, 0.0, None, Some(now - 50_000), None, Some(3600.0)),
        q(10, None, 0.0, Some(json!({"g": 999})), None, None, None),
        q(10, None, 0.0, Some(json!({"type": {"$in": []}})), None, None, None),
        q(10, None, 0.0, Some(json!({"$or": [{"type": "a"}, {"tags": "t3"}]})), None, None, None),
        q(10, None, 0.0, Some(json!({"tags": {"$contains": "t1"}, "$not": {"type": "b"}})), None, None, None),
        q(10, None, 0.2, Some(json!({"g": {"$ne": 7}, "$or": [{"n": {"$lt": 30}}, {"type": "c"}]})), None, None, None),
        q(10, Some(2.0), 0.0, None, None, None, None),
    ]
}

#[test]
fn search_matches_brute_force_large_parallel() {
    let dir = tempfile::tempdir().unwrap();
    let dims = 8;
    let now = memory_core::store::now_ms();
    let (s, mut rows) = build_search_store(dir.path(), dims, 40_000, 2_500, now);
    assert!(s.stats().rows > 32768);
    // Some dead rows in both namespaces.
    let mut r = rng(52);
    delete_some(&s, &mut rows, &mut r, 0.02);
    let qs: Vec<Vec<f32>> = (0..5).map(|_| rvec(&mut r, dims)).collect();
    for ns in ["big", "small"] {
        for (pi, p) in queries(now, ns).iter().enumerate() {
            let req = p.req(true);
            let flat: Vec<f32> = qs.iter().flatten().copied().collect();
            let t_multi = memory_core::store::now_ms();
            let multi = s.search(&flat, qs.len(), &req).unwrap();
            for (qi, q) in qs.iter().enumerate() {
                let what = format!("ns {ns} params #{pi} query {qi}");
                let t_oracle = memory_core::store::now_ms();
                let all = oracle(&rows, q, p, t_oracle);
                let one = s.search(q, 1, &req).unwrap().remove(0);
                // The f32 scan (asked for explicitly) finds the same.
                let f32_req = SearchRequest { f32_scan: true, ..req.clone() };
                let one_f32 = s.search(q, 1, &f32_req).unwrap().remove(0);
                let after = since(t_oracle);
                assert_topk_tol(&one, &all, p.k, &what, tol_for(p, after));
                assert_topk_tol(&one_f32, &all, p.k, &format!("{what} (f32 scan)"), tol_for(p, after));
                // Searched before this query's oracle, from `t_multi` on.
                assert_topk_tol(&multi[qi], &all, p.k, &format!("{what} (nq=5)"), tol_for(p, t_oracle - t_multi));
            }
        }
    }
    // top(): significance desc, ties newest first, from the ordered index.
    for (ns, min_sig, filter) in [("big", 0.0, None), ("big", 0.9, None), ("small", 0.0, Some(json!({"type": "c"}))), ("big", 0.2, Some(json!({"g": {"$in": [1, 2]}})))] {
        let p = Query { ns, k: 0, min_score: None, min_sig, filter: filter.clone(), since: None, until: None, half_life: None };
        let f = filter.as_ref().map(|f| Filter::compile(f).unwrap());
        let mut want: Vec<(usize, &ORow)> = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.live && r.ns == ns && r.sig >= min_sig && f.as_ref().is_none_or(|f| f.matches(&r.meta)))
            .collect();
        want.sort_by(|a, b| b.1.sig.total_cmp(&a.1.sig).then(b.1.ts.cmp(&a.1.ts)).then(b.0.cmp(&a.0)));
        let got = s.top(&p.req(true), 300);
        let want: Vec<&str> = want.iter().take(300).map(|x| x.1.id.as_str()).collect();
        assert_eq!(got.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), want, "top {ns} {min_sig} {filter:?}");
    }
}

#[test]
fn search_ties_newest_first_and_batched_threads() {
    let dir = tempfile::tempdir().unwrap();
    let dims = 8;
    let s = Arc::new(open(dir.path(), dims));
    // Ten identical vectors: ties go to the newest (like top()).
    let mut items = Vec::new();
    for i in 0..10 {
        let mut it = item("tie", &format!("d{i}"), "same", unit(dims, 0));
        it.significance = Some(0.5);
        items.push(it);
    }
    s.put_blocking(items).unwrap();
    let req = SearchRequest { namespace: "tie".into(), k: 3, ..Default::default() };
    let ids = |v: &[Memory]| v.iter().map(|m| m.id.clone()).collect::<Vec<_>>();
    let one = s.search(&unit(dims, 0), 1, &req).unwrap().remove(0);
    assert_eq!(ids(&one), vec!["d9", "d8", "d7"]);
    let two = s.search(&[unit(dims, 0), unit(dims, 0)].concat(), 2, &req).unwrap();
    assert_eq!(ids(&two[0]), vec!["d9", "d8", "d7"]);
    assert_eq!(ids(&two[1]), ids(&one));
    assert_eq!(ids(&s.top(&req, 3)), vec!["d9", "d8", "d7"]);

    // search_batched from many threads == search, including different filters without
    // filter_key (must not be merged into one pass).
    let now = memory_core::store::now_ms();
    let d2 = tempfile::tempdir().unwrap();
    let (s2, rows) = build_search_store(d2.path(), dims, 3000, 400, now);
    let s2 = Arc::new(s2);
    let rows = Arc::new(rows);
    let hs: Vec<_> = (0..8)
        .map(|t| {
            let (s2, rows) = (s2.clone(), rows.clone());
            std::thread::spawn(move || {
                let mut r = rng(100 + t);
                for round in 0..12 {
                    let ns = if (t + round) % 3 == 0 { "small" } else { "big" };
                    let qs = queries(now, ns);
                    let p = &qs[(t as usize * 5 + round as usize) % qs.len()];
                    let q = rvec(&mut r, dims);
                    let (tx, rx) = std::sync::mpsc::channel();
                    let t0 = memory_core::store::now_ms();
                    s2.search_batched(q.clone(), p.req(t % 2 == 0), Box::new(move |res| drop(tx.send(res))));
                    let got = rx.recv().unwrap().unwrap();
                    let direct = s2.search(&q, 1, &p.req(true)).unwrap().remove(0);
                    let all = oracle(&rows, &q, p, memory_core::store::now_ms());
                    let span = since(t0);
                    assert_topk_tol(&got, &all, p.k, &format!("batched t{t} r{round}"), tol_for(p, span));
                    assert_topk_tol(&direct, &all, p.k, &format!("direct t{t} r{round}"), tol_for(p, span));
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let e = s.search(&[1.0; 3], 1, &req).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidRequest);
}

// ---------------------------------------------------------------------------------------
// Property test against an in-memory model, with reopens
// ---------------------------------------------------------------------------------------

mod model {
    use super::*;
    use proptest::prelude::*;

    const DIMS: usize = 8;
    const NS: [&str; 3] = ["alpha", "beta", "gamma"];
    const SIGS: [f32; 4] = [0.0, 0.5, 1.0, 0.25];

    #[derive(Clone, Debug)]
    pub struct It {
        ns: usize,
        id: usize,
        text: u8,
        base: usize,
        noise: u16,
        sig: Option<usize>,
        meta: Option<u8>,
    }

    #[derive(Clone, Debug)]
    pub enum MOp {
        Put(It),
        Batch(Vec<It>),
        Update { ns: usize, id: usize, meta: Option<u8>, sig: Option<usize> },
        Delete { ns: usize, ids: Vec<usize> },
        DeleteWhere { ns: usize, k: Option<u8> },
        Compact,
        Reopen,
    }

    fn it_strategy() -> impl Strategy<Value = It> {
        (0..3usize, 0..10usize, any::<u8>(), 0..5usize, any::<u16>(), proptest::option::weighted(0.25, 0..4usize), proptest::option::weighted(0.5, any::<u8>()))
            .prop_map(|(ns, id, text, base, noise, sig, meta)| It { ns, id, text, base, noise, sig, meta })
    }

    fn op_strategy() -> impl Strategy<Value = MOp> {
        prop_oneof![
            6 => it_strategy().prop_map(MOp::Put),
            3 => proptest::collection::vec(it_strategy(), 1..6).prop_map(MOp::Batch),
            2 => (0..3usize, 0..10usize, proptest::option::of(any::<u8>()), proptest::option::of(0..4usize)).prop_map(|(ns, id, meta, sig)| MOp::Update { ns, id, meta, sig }),
            2 => (0..3usize, proptest::collection::vec(0..10usize, 1..4)).prop_map(|(ns, ids)| MOp::Delete { ns, ids }),
            1 => (0..3usize, proptest::option::of(0..3u8)).prop_map(|(ns, k)| MOp::DeleteWhere { ns, k }),
            1 => Just(MOp::Compact),
            1 => Just(MOp::Reopen),
        ]
    }

    fn meta_text(m: u8) -> String {
        format!(r#"{{"k":{},"importance":{}}}"#, m % 3, (m % 5) as f64 / 4.0)
    }

    fn base_vec(b: usize) -> Vec<f32> {
        rvec(&mut rng(1000 + b as u64), DIMS)
    }

    fn vec_of(it: &It) -> Vec<f32> {
        let b = base_vec(it.base);
        if it.noise.is_multiple_of(4) {
            return b;
        }
        let mut r = rng(it.noise as u64);
        b.iter().map(|x| x + rand::Rng::gen_range(&mut r, -0.3f32..0.3)).collect()
    }

    #[derive(Clone, Debug)]
    struct MMem {
        text: String,
        metadata: String,
        sig: f32,
        ts: i64,
        seq: u64,
        assoc: Vec<String>,
        v: Vec<f64>,
        vec32: Vec<f32>,
    }

    #[derive(Default)]
    struct Model {
        mems: HashMap<(usize, usize), MMem>,
        max_seq: u64,
    }

    impl Model {
        fn ns_sorted(&self, ns: usize) -> Vec<(usize, &MMem)> {
            let mut v: Vec<(usize, &MMem)> = self.mems.iter().filter(|((n, _), _)| *n == ns).map(|((_, id), m)| (*id, m)).collect();
            v.sort_by_key(|(_, m)| m.seq);
            v
        }

        /// Expected (significance, associations, ambiguous) for a new memory.
        fn score(&self, ns: usize, v: &[f64], importance: f64) -> (f64, Vec<String>, bool) {
            let prior = self.ns_sorted(ns);
            if prior.is_empty() {
                return ((0.5 + 0.3 + 0.2 * importance).clamp(0.0, 1.0), vec![], false);
            }
            let mut c: Vec<(f64, u64, String)> = prior.iter().map(|(id, m)| (cos64(v, &m.v), m.seq, format!("id{id}"))).collect();
            let recent: Vec<f64> = c.iter().rev().take(32).map(|x| x.0.max(0.0)).collect();
            c.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap().then(b.1.cmp(&a.1)));
            let novelty = 1.0 - c[0].0.clamp(0.0, 1.0);
            let surprise = 1.0 - recent.iter().sum::<f64>() / recent.len() as f64;
            let sig = (0.5 * novelty + 0.3 * surprise + 0.2 * importance).clamp(0.0, 1.0);
            let assoc = c.iter().filter(|x| x.0 >= 0.8).take(3).map(|x| x.2.clone()).collect();
            let top: Vec<f64> = c.iter().take(4).map(|x| x.0).collect();
            let amb = top.windows(2).any(|w| w[0] != w[1] && (w[0] - w[1]).abs() < 1e-4) || top.iter().any(|x| (x - 0.8).abs() < 1e-4);
            (sig, assoc, amb)
        }
    }

    fn check(s: &TensorStore, m: &Model, when: &str) {
        let mut total = 0;
        let mut names = Vec::new();
        for (ni, ns) in NS.iter().enumerate() {
            let want = m.ns_sorted(ni);
            total += want.len();
            if !want.is_empty() {
                names.push((ns.to_string(), want.len()));
            }
            assert_eq!(s.count(ns), want.len(), "{when}: count {ns}");
            let got = list_all(s, ns, 3);
            // (id, text, metadata, significance bits, timestamp, seq, associations)
            type Listed = (String, String, String, u32, i64, u64, Vec<String>);
            let g: Vec<Listed> =
                got.iter().map(|x| (x.id.clone(), x.text.clone(), x.metadata.clone(), x.significance.to_bits(), x.timestamp, x.seq, x.associations.clone())).collect();
            let w: Vec<Listed> =
                want.iter().map(|(id, x)| (format!("id{id}"), x.text.clone(), x.metadata.clone(), x.sig.to_bits(), x.ts, x.seq, x.assoc.clone())).collect();
            assert_eq!(g, w, "{when}: list {ns}");
            assert!(got.iter().all(|x| x.namespace == *ns));
            // top: significance desc, newest first on ties.
            let mut t = want.clone();
            t.sort_by(|a, b| b.1.sig.total_cmp(&a.1.sig).then(b.1.ts.cmp(&a.1.ts)).then(b.1.seq.cmp(&a.1.seq)));
            let req = SearchRequest { namespace: ns.to_string(), k: 100, ..Default::default() };
            let top: Vec<String> = s.top(&req, 100).into_iter().map(|x| x.id).collect();
            assert_eq!(top, t.iter().map(|(id, _)| format!("id{id}")).collect::<Vec<_>>(), "{when}: top {ns}");
            for id in 0..10 {
                let g = s.get(ns, &format!("id{id}"), true);
                match m.mems.get(&(ni, id)) {
                    None => assert!(g.is_none(), "{when}: {ns}/id{id} should not exist"),
                    Some(x) => {
                        let g = g.unwrap_or_else(|| panic!("{when}: {ns}/id{id} missing"));
                        assert_eq!((g.text.as_str(), g.metadata.as_str(), g.significance, g.seq), (x.text.as_str(), x.metadata.as_str(), x.sig, x.seq), "{when}: get {ns}/id{id}");
                        let e = g.embedding.unwrap();
                        assert!(e.iter().zip(&x.v).all(|(a, b)| (*a as f64 - b).abs() < 1e-6));
                    }
                }
            }
            // A search for a stored vector finds it (or an equal-scoring one) first.
            if let Some((_, x)) = want.first() {
                let hits = s.search(&x.vec32, 1, &SearchRequest { namespace: ns.to_string(), k: 1, ..Default::default() }).unwrap().remove(0);
                assert!((hits[0].score.unwrap() - 1.0).abs() < 1e-4, "{when}: self search {ns}");
            }
        }
        assert_eq!(s.namespaces(), names, "{when}: namespaces");
        assert_eq!(s.stats().total_memories, total, "{when}: total");
        assert!(s.stats().last_seq >= m.max_seq, "{when}: last_seq");
    }

    fn run(ops: Vec<MOp>) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Some(open(dir.path(), DIMS));
        let mut m = Model::default();
        let half = ops.len() / 2;
        for (step, op) in ops.into_iter().enumerate() {
            if step == half {
                // Always close and reopen midway.
                drop(s.take());
                s = Some(open(dir.path(), DIMS));
                check(s.as_ref().unwrap(), &m, &format!("after midway reopen at step {step}"));
            }
            let st = s.as_ref().unwrap();
            let when = format!("step {step} {op:?}");
            match op {
                MOp::Put(_) | MOp::Batch(_) => {
                    let its = match op {
                        MOp::Put(i) => vec![i],
                        MOp::Batch(v) => v,
                        _ => unreachable!(),
                    };
                    let inputs: Vec<PutInput> = its
                        .iter()
                        .map(|it| PutInput {
                            namespace: NS[it.ns].into(),
                            id: Some(format!("id{}", it.id)),
                            text: format!("text {} {}", it.text, it.noise),
                            metadata: it.meta.map(meta_text),
                            significance: it.sig.map(|i| SIGS[i]),
                            vector: vec_of(it),
                            ttl_ms: None,
                            timestamp: None,
                            expires_at: None,
                        })
                        .collect();
                    let outs = st.put_blocking(inputs.clone()).unwrap_or_else(|e| panic!("{when}: {e}"));
                    assert_eq!(outs.len(), its.len());
                    for ((it, inp), o) in its.iter().zip(inputs).zip(outs) {
                        assert_eq!(o.id, format!("id{}", it.id));
                        if let Some(x) = m.mems.get(&(it.ns, it.id)) {
                            assert!(o.existing, "{when}: expected existing");
                            assert_eq!((o.seq, o.significance, o.timestamp, &o.associations), (x.seq, x.sig, x.ts, &x.assoc), "{when}");
                            continue;
                        }
                        assert!(!o.existing, "{when}: unexpected existing for {:?}", o.id);
                        assert!(o.seq > m.max_seq, "{when}: seq {} not after {}", o.seq, m.max_seq);
                        m.max_seq = o.seq;
                        let v = norm64(&inp.vector);
                        let importance = it.meta.map(|x| (x % 5) as f64 / 4.0).unwrap_or(0.5);
                        let (sig, assoc, amb) = m.score(it.ns, &v, importance);
                        match inp.significance {
                            Some(g) => assert_eq!(o.significance, g, "{when}"),
                            None => assert!((o.significance as f64 - sig).abs() < 1e-4, "{when}: significance {} vs model {sig}", o.significance),
                        }
                        if !amb {
                            assert_eq!(o.associations, assoc, "{when}: associations");
                        }
                        m.mems.insert(
                            (it.ns, it.id),
                            MMem { text: inp.text, metadata: inp.metadata.unwrap_or_else(|| "{}".into()), sig: o.significance, ts: o.timestamp, seq: o.seq, assoc: o.associations, v, vec32: inp.vector },
                        );
                    }
                }
                MOp::Update { ns, id, meta, sig } => {
                    let r = st.update_blocking(NS[ns], &format!("id{id}"), meta.map(meta_text), sig.map(|i| SIGS[i]));
                    match m.mems.get_mut(&(ns, id)) {
                        None => assert_eq!(r.unwrap_err().code(), ErrorCode::NotFound, "{when}"),
                        Some(x) => {
                            let r = r.unwrap_or_else(|e| panic!("{when}: {e}"));
                            if let Some(mt) = meta {
                                x.metadata = meta_text(mt);
                            }
                            if let Some(i) = sig {
                                x.sig = SIGS[i];
                            }
                            assert_eq!((r.text.as_str(), r.metadata.as_str(), r.significance), (x.text.as_str(), x.metadata.as_str(), x.sig), "{when}");
                            assert!(r.seq > m.max_seq || r.seq == x.seq);
                            m.max_seq = m.max_seq.max(r.seq);
                        }
                    }
                }
                MOp::Delete { ns, ids } => {
                    let r = st.delete_blocking(NS[ns], ids.iter().map(|i| format!("id{i}")).collect()).unwrap();
                    let mut want_del = Vec::new();
                    let mut want_nf = Vec::new();
                    for i in &ids {
                        if m.mems.contains_key(&(ns, *i)) {
                            if !want_del.contains(&format!("id{i}")) {
                                want_del.push(format!("id{i}"));
                            }
                        } else {
                            want_nf.push(format!("id{i}"));
                        }
                    }
                    assert_eq!(r.deleted.iter().map(|x| x.0.clone()).collect::<Vec<_>>(), want_del, "{when}");
                    assert_eq!(r.not_found, want_nf, "{when}");
                    for (_, sq) in &r.deleted {
                        assert!(*sq > m.max_seq, "{when}");
                        m.max_seq = *sq;
                    }
                    for i in ids {
                        m.mems.remove(&(ns, i));
                    }
                }
                MOp::DeleteWhere { ns, k } => {
                    let f = k.map(|k| Filter::compile(&json!({ "k": k })).unwrap());
                    let r = st.delete_where_blocking(NS[ns], f).unwrap();
                    let mut want: Vec<String> = m
                        .mems
                        .iter()
                        .filter(|((n, _), x)| {
                            *n == ns
                                && match k {
                                    None => true,
                                    Some(k) => serde_json::from_str::<Value>(&x.metadata).unwrap().get("k") == Some(&json!(k)),
                                }
                        })
                        .map(|((_, id), _)| format!("id{id}"))
                        .collect();
                    let mut got: Vec<String> = r.deleted.iter().map(|x| x.0.clone()).collect();
                    want.sort();
                    got.sort();
                    assert_eq!(got, want, "{when}");
                    assert!(r.not_found.is_empty());
                    m.mems.retain(|(n, id), _| !(*n == ns && want.contains(&format!("id{id}"))));
                    if let Some(mx) = r.deleted.iter().map(|x| x.1).max() {
                        m.max_seq = m.max_seq.max(mx);
                    }
                }
                MOp::Compact => {
                    st.compact_blocking().unwrap();
                }
                MOp::Reopen => {
                    drop(s.take());
                    s = Some(open(dir.path(), DIMS));
                    check(s.as_ref().unwrap(), &m, &format!("after reopen at {when}"));
                }
            }
            check(s.as_ref().unwrap(), &m, &when);
        }
        drop(s.take());
        let s = open(dir.path(), DIMS);
        check(&s, &m, "final reopen");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]
        #[test]
        fn store_matches_model(ops in proptest::collection::vec(op_strategy(), 1..60)) {
            run(ops);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Lifecycle details
// ---------------------------------------------------------------------------------------

/// The last handle dropped inside a completion callback (on the writer thread) must not
/// deadlock, and the directory lock is released once the writer is done.
#[test]
fn last_handle_dropped_in_callback_does_not_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let dims = 8;
    let s = Arc::new(open_always(dir.path(), dims));
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let (fin_tx, fin_rx) = std::sync::mpsc::channel::<bool>();
    let s2 = s.clone();
    s.put(
        vec![item("d", "a", "x", unit(dims, 0))],
        Box::new(move |r| {
            let ok = r.is_ok();
            go_rx.recv().unwrap();
            drop(s2); // the last reference: TensorStore::drop runs on the writer thread
            let _ = fin_tx.send(ok);
        }),
    );
    drop(s);
    go_tx.send(()).unwrap();
    let ok = fin_rx.recv_timeout(Duration::from_secs(10)).expect("deadlock: drop inside a callback never returned");
    assert!(ok);
    // The lock is released shortly after; the data is there.
    let mut reopened = None;
    for _ in 0..200 {
        match TensorStore::open(dir.path(), opts(dims, FsyncPolicy::Off)) {
            Ok(s) => {
                reopened = Some(s);
                break;
            }
            Err(e) => {
                assert_eq!(e.code(), ErrorCode::Locked, "{e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    let s = reopened.expect("lock never released");
    assert_eq!(s.get("d", "a", false).unwrap().text, "x");
}

#[test]
fn interval_policy_syncs_in_the_background_and_export_lists_everything() {
    let dir = tempfile::tempdir().unwrap();
    let dims = 8;
    let s = TensorStore::open(dir.path(), opts(dims, FsyncPolicy::Interval(Duration::from_millis(20)))).unwrap();
    assert_eq!(s.stats().fsync, "interval");
    let mut r = rng(61);
    for i in 0..5 {
        s.put_blocking(vec![item(if i % 2 == 0 { "e1" } else { "e2" }, &format!("x{i}"), "t", rvec(&mut r, dims))]).unwrap();
    }
    let mut synced = false;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(10));
        if s.stats().fsyncs >= 1 {
            synced = true;
            break;
        }
    }
    assert!(synced, "interval policy never synced");
    s.delete_blocking("e2", vec!["x1".into()]).unwrap();
    let all = s.export(0, 100);
    assert_eq!(all.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), vec!["x0", "x2", "x3", "x4"]);
    assert!(all.iter().all(|m| m.embedding.as_ref().is_some_and(|e| e.len() == dims)));
    let rest = s.export(all[1].seq, 2);
    assert_eq!(rest.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), vec!["x3", "x4"]);
    drop(s);
    let s = open(dir.path(), dims);
    assert_eq!(s.export(0, 100).len(), 4);
}

/// The metadata inverted index follows updates, deletes, compaction and reopen.
#[test]
fn filtered_search_follows_updates_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let dims = 8;
    let mut s = open(dir.path(), dims);
    let mut r = rng(71);
    let mut items = Vec::new();
    for i in 0..60 {
        let mut it = item("f", &format!("m{i}"), "t", rvec(&mut r, dims));
        it.metadata = Some(json!({"type": if i % 2 == 0 { "even" } else { "odd" }, "tags": [format!("g{}", i % 3)], "n": i}).to_string());
        items.push(it);
    }
    s.put_blocking(items).unwrap();
    s.update_blocking("f", "m0", Some(json!({"type": "special", "n": 1000}).to_string()), None).unwrap();
    s.update_blocking("f", "m2", Some("{}".into()), None).unwrap();
    s.delete_blocking("f", vec!["m4".into()]).unwrap();
    let d = s.delete_where_blocking("f", Some(Filter::compile(&json!({"tags": "g1", "type": "odd"})).unwrap())).unwrap();
    let want_del: Vec<String> = (0..60).filter(|i| i % 3 == 1 && i % 2 == 1).map(|i| format!("m{i}")).collect();
    assert_eq!(d.deleted.iter().map(|x| x.0.clone()).collect::<Vec<_>>(), want_del);
    let check = |s: &TensorStore, when: &str| {
        let q = unit(dims, 0);
        let ids = |f: Value| {
            let f = Arc::new(Filter::compile(&f).unwrap());
            let req = SearchRequest { namespace: "f".into(), k: 100, filter: Some(f.clone()), ..Default::default() };
            let mut v: Vec<String> = s.search(&q, 1, &req).unwrap().remove(0).into_iter().map(|m| m.id).collect();
            v.sort();
            let mut t: Vec<String> = s.top(&req, 100).into_iter().map(|m| m.id).collect();
            t.sort();
            assert_eq!(v, t, "{when}: search and top disagree");
            let (mut l, _) = s.list("f", 0, 1000, Some(&f));
            l.sort_by(|a, b| a.id.cmp(&b.id));
            assert_eq!(v, l.into_iter().map(|m| m.id).collect::<Vec<_>>(), "{when}: search and list disagree");
            v
        };
        assert_eq!(ids(json!({"type": "special"})), vec!["m0"], "{when}");
        let mut even: Vec<String> = (6..60).step_by(2).map(|i| format!("m{i}")).collect();
        even.sort();
        assert_eq!(ids(json!({"type": "even"})), even, "{when}");
        assert_eq!(ids(json!({"type": {"$in": ["even", "special"]}})).len(), even.len() + 1, "{when}");
        assert!(ids(json!({"tags": "g1", "type": "odd"})).is_empty(), "{when}");
        assert_eq!(ids(json!({"n": {"$gte": 1000}})), vec!["m0"], "{when}");
        assert_eq!(ids(json!({"n": 2})), Vec::<String>::new(), "{when}");
    };
    check(&s, "live");
    s.compact_blocking().unwrap();
    check(&s, "after compaction");
    drop(s);
    s = open(dir.path(), dims);
    check(&s, "after reopen");
}

/// A crash while the first log file was being created leaves a short header: the store
/// starts it again (it can hold no records).
#[test]
fn torn_header_of_a_new_log_is_recreated() {
    let base = tempfile::tempdir().unwrap();
    let dims = 8;
    let src = base.path().join("src");
    drop(open(&src, dims));
    let full = std::fs::read(wal_path(&src)).unwrap();
    assert_eq!(full.len(), 40);
    for cut in 0..40 {
        let d = base.path().join(format!("h{cut}"));
        copy_dir(&src, &d);
        std::fs::write(wal_path(&d), &full[..cut]).unwrap();
        {
            let s = TensorStore::open(&d, opts(dims, FsyncPolicy::Off)).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
            assert_eq!(s.stats().total_memories, 0);
            s.put_blocking(vec![item("a", "x", "t", unit(dims, 0))]).unwrap();
        }
        let s = open(&d, dims);
        assert_eq!(s.count("a"), 1);
    }
}

/// A refused open must not rewrite the directory's identity (store.json).
/// A directory whose log is gone refuses to open (it used to start empty and truncate the
/// vectors file); a new or empty directory still starts empty.
#[test]
fn missing_log_is_refused_and_nothing_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dims = 8;
    {
        let s = open_always(d, dims);
        s.put_blocking(vec![item("a", "x", "kept in the log", unit(dims, 1))]).unwrap();
        wait_vectors_file(d, 1, dims);
    }
    std::fs::rename(wal_path(d), d.join("elsewhere")).unwrap();
    let files = |d: &std::path::Path| {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(d).unwrap().flatten().map(|e| (e.file_name().to_string_lossy().to_string(), std::fs::read(e.path()).unwrap())).filter(|(n, _)| n != "LOCK").collect();
        v.sort();
        v
    };
    let before = files(d);
    let e = TensorStore::open(d, opts(dims, FsyncPolicy::Off)).err().expect("must refuse");
    assert_eq!(e.code(), ErrorCode::NotFound, "{e}");
    let msg = e.to_string();
    assert!(msg.contains("no log") && msg.contains("store.json") && msg.contains("vectors-000001.f32") && msg.contains(&d.display().to_string()), "{msg}");
    assert_eq!(files(d), before);
    // An empty directory (LOCK aside) and one that does not exist yet start empty.
    let empty = d.join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("LOCK"), b"").unwrap();
    assert_eq!(open(&empty, dims).count("a"), 0);
    assert_eq!(open(&d.join("new/deeper"), dims).count("a"), 0);
}

#[test]
fn refused_open_does_not_poison_store_json() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path(), 8);
        s.put_blocking(vec![item("a", "x", "t", unit(8, 0))]).unwrap();
    }
    std::fs::remove_file(dir.path().join("store.json")).unwrap();
    let e = TensorStore::open(dir.path(), opts(16, FsyncPolicy::Off)).err().expect("dims differ from the log");
    assert_eq!(e.code(), ErrorCode::InvalidRequest, "{e}");
    assert!(e.to_string().contains("8-dimensional"), "{e}");
    let s = TensorStore::open(dir.path(), opts(8, FsyncPolicy::Off)).unwrap_or_else(|e| panic!("the right dims must still open: {e}"));
    assert_eq!(s.count("a"), 1);
    drop(s);
    // Same for a corrupt log: a refused reembed open does not switch the embedder.
    {
        let s = open(dir.path(), 8);
        s.put_blocking(vec![item("a", "y", "t", unit(8, 1))]).unwrap();
    }
    let wal = wal_path(dir.path());
    let mut b = std::fs::read(&wal).unwrap();
    let offs = record_offsets(&b);
    assert_eq!(offs.len(), 2);
    b[offs[0] + 8 + 20] ^= 0xff;
    std::fs::write(&wal, &b).unwrap();
    let before = std::fs::read_to_string(dir.path().join("store.json")).unwrap();
    let o = StoreOptions { dims: 8, fsync: FsyncPolicy::Off, embedder: Some(EmbedderInfo { name: "other".into(), hash: "h".into() }), reembed: true, group_commit: true, compact: None, text_index: true, ann_min_rows: memory_core::ann::ANN_MIN_ROWS };
    let e = TensorStore::open(dir.path(), o).err().expect("corrupt");
    assert_eq!(e.code(), ErrorCode::Corrupt);
    assert_eq!(std::fs::read_to_string(dir.path().join("store.json")).unwrap(), before);
}

/// Crash states around a compaction: the old generation left behind after the rename, and
/// a half-written next generation (`.tmp`), are both cleaned up on open.
#[test]
fn crash_around_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let dims = 8;
    let mut r = rng(81);
    {
        let s = open(dir.path(), dims);
        for i in 0..20 {
            s.put_blocking(vec![item("c", &format!("k{i}"), "t", rvec(&mut r, dims))]).unwrap();
        }
        s.delete_blocking("c", vec!["k3".into(), "k19".into()]).unwrap();
    }
    let old = std::fs::read(dir.path().join("wal-000001.log")).unwrap();
    let last_seq;
    {
        let s = open(dir.path(), dims);
        last_seq = s.stats().last_seq;
        s.compact_blocking().unwrap();
        assert!(!dir.path().join("wal-000001.log").exists());
        assert!(dir.path().join("wal-000002.log").exists());
    }
    std::fs::write(dir.path().join("wal-000001.log"), &old).unwrap();
    std::fs::write(dir.path().join("wal-000003.log.tmp"), b"partial").unwrap();
    let s = open(dir.path(), dims);
    assert_eq!(s.count("c"), 18);
    assert!(!dir.path().join("wal-000001.log").exists());
    assert!(!dir.path().join("wal-000003.log.tmp").exists());
    let o = s.put_blocking(vec![item("c", "new", "t", unit(dims, 0))]).unwrap().remove(0);
    assert!(o.seq > last_seq);
    s.compact_blocking().unwrap();
    drop(s);
    let s = open(dir.path(), dims);
    assert_eq!(s.count("c"), 19);
}
