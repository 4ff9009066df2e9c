//! A state restored from its snapshot (and the records after it applied) is the state
//! replay builds from the same log, field by field; a damaged or foreign file is refused.

use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::store::log::{self, DeleteRecord, Header, PutRecord, Record, RecordRef, UpdateRecord};
use crate::store::replay::{apply, restore_covered, Decoded};
use crate::store::state::{self, State};

const DIMS: usize = 4;

/// A random history over three namespaces: puts (repeated and unique metadata shapes,
/// nested objects and arrays, associations to ids present or not, TTLs), significance and
/// metadata updates, deletes and puts again of deleted ids.
fn history(seed: u64, n: usize) -> Vec<Record> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    let mut ids: Vec<(String, String)> = Vec::new();
    for seq in 1..=n as u64 {
        let ns = ["a", "b", "c"][rng.gen_range(0..3)].to_string();
        let roll = rng.gen_range(0..10);
        if roll < 6 || ids.is_empty() {
            let id = if roll == 0 && !ids.is_empty() { ids[rng.gen_range(0..ids.len())].1.clone() } else { format!("m{seq}") };
            let metadata = match rng.gen_range(0..4) {
                0 => "{}".to_string(),
                1 => format!(r#"{{"tag":"t{}","n":{}}}"#, rng.gen_range(0..3), rng.gen_range(0..5)),
                2 => format!(r#"{{ "nested": {{"k": [1, "x", {}]}}, "u": "{seq}" }}"#, rng.gen_range(0..2)),
                _ => format!(r#"{{"flag":{},"none":null}}"#, rng.gen_bool(0.5)),
            };
            let associations = (0..rng.gen_range(0..4)).map(|_| if rng.gen_bool(0.7) && !ids.is_empty() { ids[rng.gen_range(0..ids.len())].1.clone() } else { format!("gone{}", rng.gen_range(0..100)) }).collect();
            let expires_at = if rng.gen_bool(0.2) { 1_000 + rng.gen_range(0..1_000_000i64) } else { log::NO_EXPIRY };
            out.push(Record::Put(PutRecord { seq, ts: 1_000 + seq as i64, namespace: ns.clone(), id: id.clone(), text: format!("text {seq} {}", rng.gen_range(0..50)), metadata, significance: rng.gen_range(0.0..1.0), expires_at, associations, vector: vec![seq as f32; DIMS] }));
            ids.push((ns, id));
        } else {
            let (ns, id) = ids[rng.gen_range(0..ids.len())].clone();
            out.push(match roll {
                6 | 7 => Record::Update(UpdateRecord {
                    seq,
                    ts: 0,
                    namespace: ns,
                    id,
                    metadata: rng.gen_bool(0.6).then(|| format!(r#"{{"tag":"t{}"}}"#, rng.gen_range(0..4))),
                    significance: rng.gen_bool(0.6).then(|| rng.gen_range(0.0..1.0)),
                }),
                _ => Record::Delete(DeleteRecord { seq, ts: 0, namespace: ns, id }),
            });
        }
    }
    out
}

/// A version-2 log image of `records` (the k-th put is row k).
fn image(records: &[Record]) -> Vec<u8> {
    let mut b = Header { version: log::VERSION, dims: DIMS as u32, gen: 1, high_water: 0 }.encode().to_vec();
    let mut row = 0;
    for r in records {
        match r {
            Record::Put(p) => {
                log::encode_put(&mut b, p, row);
                row += 1;
            }
            other => log::encode_record(&mut b, other),
        }
    }
    b
}

fn decode(bytes: &[u8]) -> (Vec<(usize, usize)>, Vec<Decoded<'_>>) {
    let (frames, framed) = log::frames(bytes);
    assert!(framed);
    let decoded = frames
        .iter()
        .map(|&(off, len)| {
            let rec = log::check_frame(bytes, off, len, DIMS).unwrap();
            let meta = if let RecordRef::Put { metadata, .. } = &rec { state::parse_metadata(metadata) } else { None };
            Some((rec, meta))
        })
        .collect();
    (frames, decoded)
}

/// The state replay builds from `bytes` (its vectors aside).
fn replayed(bytes: &[u8]) -> State {
    let mut st = replayed_sig_pending(bytes);
    st.rebuild_sig_index();
    st
}

/// Write the snapshot of `st`, which holds exactly the records of `bytes`, and read it back.
fn snapshot_of(dir: &Path, bytes: &[u8], st: &State) -> Snapshot {
    let log_path = dir.join("wal-000001.log");
    std::fs::write(&log_path, bytes).unwrap();
    save(dir, 1, &log_path, st).unwrap();
    read(dir, 1).unwrap().unwrap()
}

/// Restore `snap` with the records of `bytes` it covers, apply the others, as replay does.
fn restored(bytes: &[u8], snap: &Snapshot) -> State {
    let (frames, mut decoded) = decode(bytes);
    assert_eq!(records_digest(bytes, &frames[..snap.records]), snap.digest);
    let tail = decoded.split_off(snap.records);
    let mut st = State::new(DIMS);
    st.defer_sig_index(frames.len());
    st.defer_text_index();
    let (crcs, _) = restore_covered(&mut st, snap, bytes, &frames[..snap.records], DIMS).unwrap();
    let puts = decoded.iter().flatten().filter_map(|(r, _)| match r {
        RecordRef::Put { vector: log::PutVector::Row { crc, .. }, .. } => Some(*crc),
        _ => None,
    });
    assert_eq!(crcs, puts.collect::<Vec<_>>(), "the covered puts' row checksums, in row order");
    let rest = tail.len();
    apply(&mut st, tail, rest, &frames[snap.records..], "log").unwrap();
    st.rebuild_sig_index();
    st
}

fn assert_same(a: &State, b: &State) {
    assert_eq!(a.len(), b.len());
    for (r, (x, y)) in a.rows.iter().zip(&b.rows).enumerate() {
        assert_eq!((x.seq, x.id(), x.text(), x.metadata_raw(), x.metadata_packed()), (y.seq, y.id(), y.text(), y.metadata_raw(), y.metadata_packed()), "row {r}");
        assert_eq!(x.encoded_associations(), y.encoded_associations(), "row {r}'s associations");
    }
    assert_eq!(a.ns_col, b.ns_col);
    assert_eq!(a.sig_col.iter().map(|s| s.to_bits()).collect::<Vec<_>>(), b.sig_col.iter().map(|s| s.to_bits()).collect::<Vec<_>>());
    assert_eq!((&a.ts_col, &a.exp_col, &a.live_col), (&b.ts_col, &b.exp_col, &b.live_col));
    assert_eq!((a.live_count, a.associations_total, a.live_bytes, a.last_seq), (b.live_count, b.associations_total, b.live_bytes, b.last_seq));
    assert_eq!(a.text_len.len(), b.text_len.len());
    assert_eq!(a.ns_by_name, b.ns_by_name);
    assert_eq!(a.namespaces.len(), b.namespaces.len());
    for (n, (x, y)) in a.namespaces.iter().zip(&b.namespaces).enumerate() {
        assert_eq!((&x.name, &x.rows, x.live, &x.expiring), (&y.name, &y.rows, y.live, &y.expiring));
        assert_eq!(x.by_sig, y.by_sig, "namespace {}", x.name);
        assert_eq!(x.index, y.index, "namespace {}'s posting lists", x.name);
        let (xi, yi) = (a.ids(n as u32), b.ids(n as u32));
        assert_eq!(xi.len(), yi.len());
        for &r in &x.rows {
            let id = a.rows[r as usize].id();
            assert_eq!(xi.get(&a.rows, id), yi.get(&b.rows, id), "id {id}");
        }
    }
}

#[test]
fn a_restored_state_is_the_replayed_state() {
    for seed in 0..8 {
        let dir = tempfile::tempdir().unwrap();
        let records = history(seed, 600);
        let bytes = image(&records);
        let want = replayed(&bytes);
        let snap = snapshot_of(dir.path(), &bytes, &want);
        assert_eq!((snap.rows, snap.records, snap.log_len), (want.len(), records.len(), bytes.len() as u64));
        assert_same(&restored(&bytes, &snap), &want);
    }
}

#[test]
fn records_after_the_snapshot_are_applied_on_top_of_it() {
    for seed in 10..16 {
        let dir = tempfile::tempdir().unwrap();
        let records = history(seed, 600);
        let bytes = image(&records);
        let cut = 150 + (seed as usize - 10) * 70;
        let prefix = image(&records[..cut]);
        let snap = snapshot_of(dir.path(), &prefix, &replayed(&prefix));
        assert!(bytes.starts_with(&prefix));
        assert_same(&restored(&bytes, &snap), &replayed(&bytes));
    }
}

#[test]
fn an_empty_store_has_a_snapshot_too() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = image(&[]);
    let snap = snapshot_of(dir.path(), &bytes, &replayed(&bytes));
    assert_eq!((snap.rows, snap.records), (0, 0));
    let records = history(3, 50);
    assert_same(&restored(&image(&records), &snap), &replayed(&image(&records)));
}

#[test]
fn a_damaged_torn_or_foreign_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bytes = image(&history(5, 300));
    snapshot_of(d, &bytes, &replayed(&bytes));
    let path = d.join(file_name(1));
    let good = std::fs::read(&path).unwrap();
    for at in [0, 9, 13, 21, 37, 45, 53, 61, 69, 73, HEADER_LEN + 1, good.len() / 2, good.len() - 1] {
        let mut bad = good.clone();
        bad[at] ^= 0x10;
        std::fs::write(&path, &bad).unwrap();
        assert!(read(d, 1).unwrap().is_err(), "byte {at} flipped");
    }
    for len in [0, 40, HEADER_LEN, good.len() - 1] {
        std::fs::write(&path, &good[..len]).unwrap();
        assert!(read(d, 1).unwrap().is_err(), "cut to {len} bytes");
    }
    std::fs::write(&path, &good).unwrap();
    assert!(read(d, 1).unwrap().is_ok());
    std::fs::write(d.join(file_name(2)), &good).unwrap();
    assert!(read(d, 2).unwrap().err().unwrap().contains("generation 1"));
    assert!(read(d, 3).is_none(), "no file");
}

#[test]
fn a_log_with_other_puts_is_not_snapshotted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bytes = image(&history(7, 100));
    let st = replayed(&image(&history(7, 90)));
    let log_path = d.join("wal-000001.log");
    std::fs::write(&log_path, &bytes).unwrap();
    assert!(save(d, 1, &log_path, &st).is_err());
    std::fs::write(&log_path, &bytes[..bytes.len() - 3]).unwrap();
    assert!(save(d, 1, &log_path, &replayed(&bytes)).is_err(), "a log that does not end with a whole record");
    assert!(read(d, 1).is_none());
}

/// The state replay builds from `bytes` as an open leaves it: the ordered significance
/// index not built yet (the writer builds it once idle).
fn replayed_sig_pending(bytes: &[u8]) -> State {
    let (frames, decoded) = decode(bytes);
    let mut st = State::new(DIMS);
    st.defer_sig_index(frames.len());
    st.defer_text_index();
    apply(&mut st, decoded, frames.len(), &frames, "log").unwrap();
    st
}

#[test]
fn reads_by_significance_before_the_index_is_built_are_those_of_the_index() {
    use crate::filter::Filter;
    use crate::store::scan::{top_by_significance, ScanParams};
    let filters: Vec<Option<Filter>> = [None, Some(serde_json::json!({"tag": "t1"})), Some(serde_json::json!({"tag": {"$ne": "t0"}})), Some(serde_json::json!({"n": {"$gte": 2}})), Some(serde_json::json!({"flag": true}))]
        .into_iter()
        .map(|f| f.map(|f| Filter::compile(&f).unwrap()))
        .collect();
    for seed in 20..24 {
        // Significance on a few levels, so the order's ties (newest first) are exercised.
        let mut records = history(seed, 800);
        for r in &mut records {
            if let Record::Put(p) = r {
                p.significance = (p.significance * 4.0).floor() / 4.0;
            }
        }
        let bytes = image(&records);
        let built = replayed(&bytes);
        let mut pending = replayed_sig_pending(&bytes);
        assert!(pending.defer_sig_index && pending.namespaces.iter().all(|n| n.by_sig.is_empty()), "the reads below take the columns");
        let mut compared = 0;
        for ns in ["a", "b", "c", "none"] {
            for min_significance in [0.0, 0.25, 0.5, 0.9] {
                for filter in &filters {
                    for now_ms in [0, 500_000] {
                        for count in [0, 1, 7, 50, 1000] {
                            let p = ScanParams { namespace: ns, min_significance, filter: filter.as_ref(), now_ms, ..Default::default() };
                            let want = top_by_significance(&built, &p, count);
                            assert_eq!(top_by_significance(&pending, &p, count), want, "seed {seed} {ns} min {min_significance} {filter:?} now {now_ms} count {count}");
                            compared += usize::from(!want.is_empty());
                        }
                    }
                }
            }
        }
        assert!(compared > 100, "most reads find rows");
        // The index the writer builds from the columns is the one replay builds.
        let keys = pending.sig_index_keys();
        pending.install_sig_index(keys);
        assert!(!pending.defer_sig_index);
        assert_same(&pending, &built);
    }
}
