//! One durable copy of each vector: the vectors file holds the f32 rows and the log's puts
//! point at them (row and crc32c), so a crash between the two writes, a damaged row,
//! compaction, repair and a version-1 directory are checked here against what the store
//! acknowledged.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use memory_core::error::ErrorCode;
use memory_core::store::log::{self, DeleteRecord, Header, PutRecord, Record, UpdateRecord, NO_EXPIRY};
use memory_core::store::{repair, FsyncPolicy, SearchRequest, TensorStore};
use memory_core::Error;

const VECTORS: &str = "vectors-000001.f32";

fn vectors_path(dir: &Path) -> PathBuf {
    dir.join(VECTORS)
}

/// A closed directory holding `n` memories m0…m{n-1} in namespace "a", stored one put at a
/// time under fsync always; returns their stored (normalized) embeddings.
fn filled(dir: &Path, dims: usize, n: usize, seed: u64) -> Vec<Vec<f32>> {
    let s = open_always(dir, dims);
    let mut r = rng(seed);
    for i in 0..n {
        s.put_blocking(vec![item("a", &format!("m{i}"), &format!("memory {i}"), rvec(&mut r, dims))]).unwrap();
    }
    let stored = (0..n).map(|i| embedding(&s, &format!("m{i}"))).collect();
    s.close().unwrap();
    stored
}

fn embedding(s: &TensorStore, id: &str) -> Vec<f32> {
    s.get("a", id, true).unwrap_or_else(|| panic!("{id} missing")).embedding.unwrap()
}

/// Every memory of `want` (index i is m{i}; `None`: must be absent) is there with its
/// embedding, and is its own nearest neighbour.
fn check(s: &TensorStore, want: &[Option<Vec<f32>>], what: &str) {
    let req = SearchRequest { namespace: "a".into(), k: 1, ..Default::default() };
    for (i, w) in want.iter().enumerate() {
        let id = format!("m{i}");
        match w {
            None => assert!(s.get("a", &id, false).is_none(), "{what}: {id} should be gone"),
            Some(v) => {
                assert_eq!(&embedding(s, &id), v, "{what}: {id}'s embedding");
                assert_eq!(s.search(v, 1, &req).unwrap()[0][0].id, id, "{what}: {id} not its own nearest");
            }
        }
    }
    assert_eq!(s.count("a"), want.iter().filter(|w| w.is_some()).count(), "{what}: count");
}

fn all(v: &[Vec<f32>]) -> Vec<Option<Vec<f32>>> {
    v.iter().cloned().map(Some).collect()
}

#[test]
fn the_log_holds_no_vector_and_the_vectors_file_holds_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let (dims, n) = (64, 200);
    let stored = filled(dir.path(), dims, n, 1);
    assert_eq!(file_len(&vectors_path(dir.path())), (n * dims * 4) as u64);
    let wal = std::fs::read(wal_path(dir.path())).unwrap();
    assert_eq!(u32::from_le_bytes(wal[8..12].try_into().unwrap()), log::VERSION);
    for v in &stored {
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert!(!wal.windows(16).any(|w| w == &bytes[..16]), "a vector's bytes are in the log");
    }
    let s = open(dir.path(), dims);
    check(&s, &all(&stored), "reopened");
}

#[test]
fn a_crash_between_the_vectors_write_and_the_log_write_loses_nothing_acknowledged() {
    let base = tempfile::tempdir().unwrap();
    let (dims, n) = (16, 30);
    let src = base.path().join("src");
    let stored = filled(&src, dims, n, 2);
    let row_bytes = dims * 4;

    // Rows written, their records never: the rows past the log are ignored, then overwritten.
    let d = base.path().join("rows-only");
    copy_dir(&src, &d);
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(vectors_path(&d)).unwrap();
        f.write_all(&vec![0x5A; 3 * row_bytes]).unwrap();
    }
    let s = open(&d, dims);
    check(&s, &all(&stored), "rows past the log");
    let extra = rvec(&mut rng(9), dims);
    s.put_blocking(vec![item("b", "extra", "t", extra)]).unwrap();
    let extra = s.get("b", "extra", true).unwrap().embedding;
    s.close().unwrap();
    let s = open(&d, dims);
    check(&s, &all(&stored), "after the overwrite");
    assert_eq!(s.get("b", "extra", true).unwrap().embedding, extra);
    drop(s);

    // The last put's record reached the disk and its row did not (the file never grew, or
    // the page holding the row is zero): a torn tail, cut before that put. That put was never
    // acknowledged — under fsync always the row is synced before the record is written.
    for (what, damage) in [("short file", 0), ("zero row", 1)] {
        let d = base.path().join(what.replace(' ', "-"));
        copy_dir(&src, &d);
        // A crash's image: the clean close that vouches for the rows never happened.
        std::fs::remove_file(d.join("verified-000001.idx")).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(vectors_path(&d)).unwrap();
        if damage == 0 {
            f.set_len(((n - 1) * row_bytes) as u64).unwrap();
        } else {
            use std::os::unix::fs::FileExt;
            f.write_all_at(&vec![0; row_bytes], ((n - 1) * row_bytes) as u64).unwrap();
        }
        drop(f);
        let wal_before = std::fs::read(wal_path(&d)).unwrap();
        let last = *record_offsets(&wal_before).last().unwrap();
        let s = open(&d, dims);
        let mut want = all(&stored);
        want[n - 1] = None;
        check(&s, &want, what);
        assert_eq!(file_len(&wal_path(&d)), last as u64, "{what}: the log is cut before the torn put");
        // Stored again, it takes the row back.
        let again = rvec(&mut rng(10), dims);
        s.put_blocking(vec![item("a", &format!("m{}", n - 1), "again", again)]).unwrap();
        want[n - 1] = Some(embedding(&s, &format!("m{}", n - 1)));
        s.close().unwrap();
        check(&open(&d, dims), &want, &format!("{what}, reopened"));
    }

    // The last log record only partly written, its row complete: the record is a torn tail.
    let d = base.path().join("torn-record");
    copy_dir(&src, &d);
    let len = file_len(&wal_path(&d));
    std::fs::OpenOptions::new().write(true).open(wal_path(&d)).unwrap().set_len(len - 5).unwrap();
    let mut want = all(&stored);
    want[n - 1] = None;
    check(&open(&d, dims), &want, "torn record");
}

#[test]
fn a_flipped_byte_in_a_vector_row_is_refused_and_repair_keeps_every_other_memory() {
    let base = tempfile::tempdir().unwrap();
    let (dims, n) = (16, 50);
    let d = base.path().join("d");
    let stored = filled(&d, dims, n, 3);
    let bad = 20;
    let wal = std::fs::read(wal_path(&d)).unwrap();
    let offs = record_offsets(&wal);
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().read(true).write(true).open(vectors_path(&d)).unwrap();
        let mut b = [0u8; 1];
        let at = (bad * dims * 4 + 7) as u64;
        f.read_exact_at(&mut b, at).unwrap();
        f.write_all_at(&[b[0] ^ 0x20], at).unwrap();
    }
    // Without the verified file a clean close writes (a crash, an older build) open checks
    // every row; with it, the background scrub finds the row (tests/verified_scrub.rs).
    std::fs::remove_file(d.join("verified-000001.idx")).unwrap();
    let damaged_vectors = std::fs::read(vectors_path(&d)).unwrap();
    let e = TensorStore::open(&d, opts(dims, FsyncPolicy::Off)).err().expect("a damaged row must be refused");
    assert_eq!(e.code(), ErrorCode::Corrupt, "{e}");
    match &e {
        Error::Corrupt { file, offset, reason } => {
            assert!(file.contains(WAL) && file.contains("repair"), "{file}");
            assert_eq!(*offset, offs[bad] as u64);
            assert!(reason.contains(&format!("vector row {bad}")), "{reason}");
        }
        other => panic!("{other}"),
    }
    assert_eq!(std::fs::read(wal_path(&d)).unwrap(), wal, "a refused open must not touch the log");
    assert_eq!(std::fs::read(vectors_path(&d)).unwrap(), damaged_vectors, "nor the vectors file");

    // An interrupted repair: in one copy the repaired log was renamed in and its vectors file
    // was not yet (open finishes it), in another neither was (open drops the half-written one).
    let before = base.path().join("before");
    copy_dir(&d, &before);
    let rep = repair(&d).unwrap();
    assert_eq!(rep.kept_records, n as u64 - 1);
    assert_eq!(rep.lost.len(), 1, "{:?}", rep.lost);
    let l = &rep.lost[0];
    assert_eq!((l.start, l.end, l.first_seq, l.last_seq, l.records), (offs[bad] as u64, offs[bad + 1] as u64, bad as u64 + 1, Some(bad as u64 + 1), Some(1)));
    assert!(l.reason.contains("vector") && l.reason.contains("checksum"), "{}", l.reason);
    let txt = std::fs::read_to_string(rep.report_to.as_ref().unwrap()).unwrap();
    assert!(txt.contains(&format!("sequence {}", bad + 1)), "{txt}");
    assert_eq!(file_len(&vectors_path(&d)), ((n - 1) * dims * 4) as u64, "the vectors file holds the kept rows");

    let mut want = all(&stored);
    want[bad] = None;
    let s = open(&d, dims);
    check(&s, &want, "repaired");
    let again = rvec(&mut rng(11), dims);
    s.put_blocking(vec![item("a", &format!("m{bad}"), "again", again)]).unwrap();
    want[bad] = Some(embedding(&s, &format!("m{bad}")));
    s.close().unwrap();
    check(&open(&d, dims), &want, "repaired, stored again, reopened");

    let half = base.path().join("half");
    copy_dir(&before, &half);
    let repaired_log = {
        let r = base.path().join("r");
        copy_dir(&before, &r);
        repair(&r).unwrap();
        (std::fs::read(wal_path(&r)).unwrap(), std::fs::read(vectors_path(&r)).unwrap())
    };
    std::fs::write(wal_path(&half), &repaired_log.0).unwrap();
    std::fs::write(half.join(format!("{VECTORS}.repair")), &repaired_log.1).unwrap();
    let mut want = all(&stored);
    want[bad] = None;
    check(&open(&half, dims), &want, "repair finished at open");
    assert!(!half.join(format!("{VECTORS}.repair")).exists());

    let none = base.path().join("none");
    copy_dir(&before, &none);
    std::fs::write(none.join(format!("{WAL}.tmp")), &repaired_log.0).unwrap();
    std::fs::write(none.join(format!("{VECTORS}.repair")), &repaired_log.1).unwrap();
    let e = TensorStore::open(&none, opts(dims, FsyncPolicy::Off)).err().expect("still damaged");
    assert_eq!(e.code(), ErrorCode::Corrupt);
    assert!(!none.join(format!("{VECTORS}.repair")).exists(), "an uncommitted repair's vectors file is dropped");
    assert_eq!(std::fs::read(vectors_path(&none)).unwrap(), damaged_vectors);
}

#[test]
fn compaction_writes_the_next_generations_vectors_file_with_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (dims, n) = (16, 3000);
    let d = dir.path();
    let s = std::sync::Arc::new(open_always(d, dims));
    let mut r = rng(4);
    let recs: Vec<PutRecord> = (0..n).map(|i| PutRecord { seq: 0, ts: 1_700_000_000_000 + i as i64, namespace: "a".into(), id: format!("m{i}"), text: format!("memory {i}"), metadata: "{}".into(), significance: 0.5, expires_at: NO_EXPIRY, associations: vec![], vector: rvec(&mut r, dims) }).collect();
    s.bulk_load_blocking(recs).unwrap();
    s.delete_blocking("a", (0..n).step_by(2).map(|i| format!("m{i}")).collect()).unwrap();
    // Puts while the compaction runs land in the old log's tail, which the switch re-points
    // at the new vectors file.
    let writer = {
        let s = s.clone();
        std::thread::spawn(move || {
            let mut r = rng(5);
            for i in n..n + 300 {
                s.put_blocking(vec![item("a", &format!("m{i}"), "tail", rvec(&mut r, dims))]).unwrap();
            }
        })
    };
    let report = s.compact_blocking().unwrap();
    writer.join().unwrap();
    assert!(report.rows_after < report.rows_before);
    let total = n + 300;
    let want: Vec<Option<Vec<f32>>> = (0..total).map(|i| s.get("a", &format!("m{i}"), true).map(|m| m.embedding.unwrap())).collect();
    assert_eq!(want.iter().filter(|w| w.is_some()).count(), n / 2 + 300);
    check(&s, &want, "compacted");
    let s = std::sync::Arc::try_unwrap(s).ok().unwrap();
    s.close().unwrap();
    let names: Vec<String> = std::fs::read_dir(d).unwrap().flatten().map(|e| e.file_name().to_string_lossy().to_string()).filter(|f| f.starts_with("vectors-") || f.starts_with("wal-")).collect();
    let gen = names.iter().filter_map(|f| f.strip_prefix("wal-").and_then(|g| g.strip_suffix(".log"))).max().unwrap().to_string();
    assert!(gen.parse::<u64>().unwrap() >= 2, "{names:?}");
    let mut names = names;
    names.sort();
    // A compaction may have started by itself too; either way one generation is left.
    assert_eq!(names, vec![format!("vectors-{gen}.f32"), format!("wal-{gen}.log")], "{names:?}");
    assert_eq!(file_len(&d.join(format!("vectors-{gen}.f32"))), ((n / 2 + 300) * dims * 4) as u64);
    let s = open(d, dims);
    check(&s, &want, "compacted, reopened");
}

#[test]
fn an_embedding_replaced_under_the_same_id_is_the_one_kept() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dims = 16;
    let s = open_always(d, dims);
    let mut r = rng(6);
    s.put_blocking(vec![item("a", "m0", "first", rvec(&mut r, dims))]).unwrap();
    s.put_blocking(vec![item("a", "m1", "other", rvec(&mut r, dims))]).unwrap();
    // Deleted and stored again with another embedding.
    s.delete_blocking("a", vec!["m0".into()]).unwrap();
    s.put_blocking(vec![item("a", "m0", "second", rvec(&mut r, dims))]).unwrap();
    // Expired and stored again.
    let mut exp = item("a", "m2", "short-lived", rvec(&mut r, dims));
    exp.ttl_ms = Some(30);
    s.put_blocking(vec![exp]).unwrap();
    std::thread::sleep(Duration::from_millis(80));
    s.put_blocking(vec![item("a", "m2", "again", rvec(&mut r, dims))]).unwrap();
    s.update_blocking("a", "m1", Some(r#"{"k":1}"#.into()), Some(0.9)).unwrap();
    let want: Vec<Option<Vec<f32>>> = (0..3).map(|i| Some(embedding(&s, &format!("m{i}")))).collect();
    assert_eq!(s.get("a", "m0", false).unwrap().text, "second");
    check(&s, &want, "replaced");
    s.close().unwrap();
    let s = open(d, dims);
    check(&s, &want, "replaced, reopened");
    assert_eq!(s.get("a", "m1", false).unwrap().metadata, r#"{"k":1}"#);
    s.compact_blocking().unwrap();
    check(&s, &want, "replaced, compacted");
    s.close().unwrap();
    let s = open(d, dims);
    check(&s, &want, "replaced, compacted, reopened");
    assert_eq!(s.get("a", "m2", false).unwrap().text, "again");
}

#[test]
fn export_then_bulk_load_gives_back_the_same_memories() {
    let base = tempfile::tempdir().unwrap();
    let dims = 16;
    let a = base.path().join("a");
    let stored = filled(&a, dims, 80, 7);
    let s = open(&a, dims);
    let exported: Vec<_> = list_all(&s, "a", 30).into_iter().map(|m| s.get("a", &m.id, true).unwrap()).collect();
    drop(s);
    let b = base.path().join("b");
    let t = open_always(&b, dims);
    let recs = exported
        .iter()
        .map(|m| PutRecord { seq: 0, ts: m.timestamp, namespace: m.namespace.clone(), id: m.id.clone(), text: m.text.clone(), metadata: m.metadata.clone(), significance: m.significance, expires_at: NO_EXPIRY, associations: m.associations.clone(), vector: m.embedding.clone().unwrap() })
        .collect();
    assert_eq!(t.bulk_load_blocking(recs).unwrap(), 80);
    t.close().unwrap();
    let t = open(&b, dims);
    check(&t, &all(&stored), "bulk loaded, reopened");
    let again: Vec<_> = list_all(&t, "a", 30).into_iter().map(|m| t.get("a", &m.id, true).unwrap()).collect();
    let strip = |m: &memory_core::store::Memory| (m.id.clone(), m.text.clone(), m.metadata.clone(), m.significance.to_bits(), m.timestamp, m.associations.clone(), m.embedding.clone());
    assert_eq!(again.iter().map(strip).collect::<Vec<_>>(), exported.iter().map(strip).collect::<Vec<_>>());
}

/// A version-1 log written with the old encoder (vectors inline), with an update, a delete,
/// a stale vectors cache and a torn last record.
fn version_1_dir(d: &Path, dims: usize, n: usize) -> Vec<Vec<f32>> {
    std::fs::create_dir_all(d).unwrap();
    let mut r = rng(8);
    let vectors: Vec<Vec<f32>> = (0..n)
        .map(|_| {
            let v = rvec(&mut r, dims);
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter().map(|x| x / norm).collect()
        })
        .collect();
    let mut buf = Header { version: log::VERSION_INLINE, dims: dims as u32, gen: 1, high_water: 0 }.encode().to_vec();
    for (i, v) in vectors.iter().enumerate() {
        let put = PutRecord { seq: i as u64 + 1, ts: 1_700_000_000_000 + i as i64, namespace: "a".into(), id: format!("m{i}"), text: format!("memory {i}"), metadata: "{}".into(), significance: 0.5, expires_at: NO_EXPIRY, associations: vec![], vector: v.clone() };
        log::encode_put_inline(&mut buf, &put);
    }
    let seq = n as u64;
    log::encode_record(&mut buf, &Record::Update(UpdateRecord { seq: seq + 1, ts: 1, namespace: "a".into(), id: "m1".into(), metadata: Some(r#"{"x":2}"#.into()), significance: None }));
    log::encode_record(&mut buf, &Record::Delete(DeleteRecord { seq: seq + 2, ts: 1, namespace: "a".into(), id: "m2".into() }));
    let mut torn = Vec::new();
    log::encode_put_inline(&mut torn, &PutRecord { seq: seq + 3, ts: 1, namespace: "a".into(), id: "torn".into(), text: "t".into(), metadata: "{}".into(), significance: 0.5, expires_at: NO_EXPIRY, associations: vec![], vector: vec![0.5; dims] });
    buf.extend_from_slice(&torn[..torn.len() - 9]);
    std::fs::write(d.join(WAL), &buf).unwrap();
    // The old cache beside it, wrong: the log is what counts.
    std::fs::write(d.join(VECTORS), vec![0x33; n * dims * 4]).unwrap();
    vectors
}

#[test]
fn a_version_1_directory_is_converted_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (dims, n) = (16, 40);
    let vectors = version_1_dir(d, dims, n);
    let mut want: Vec<Option<Vec<f32>>> = vectors.iter().cloned().map(Some).collect();
    want[2] = None;
    let s = open(d, dims);
    check(&s, &want, "converted");
    assert_eq!(s.get("a", "m1", false).unwrap().metadata, r#"{"x":2}"#);
    assert!(s.get("a", "torn", false).is_none());
    s.put_blocking(vec![item("b", "new", "after the conversion", rvec(&mut rng(12), dims))]).unwrap();
    let new = s.get("b", "new", true).unwrap().embedding;
    let seq = s.get("b", "new", false).unwrap().seq;
    assert!(seq > n as u64 + 2, "sequence numbers go on after the old log's: {seq}");
    s.close().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(d).unwrap().flatten().map(|e| e.file_name().to_string_lossy().to_string()).filter(|f| f.starts_with("vectors-") || f.starts_with("wal-")).collect();
    names.sort();
    assert_eq!(names, vec!["vectors-000002.f32", "wal-000002.log"]);
    let wal = std::fs::read(d.join("wal-000002.log")).unwrap();
    assert_eq!(u32::from_le_bytes(wal[8..12].try_into().unwrap()), log::VERSION);
    assert_eq!(file_len(&d.join("vectors-000002.f32")), (n * dims * 4) as u64, "39 kept rows and the new one");
    let s = open(d, dims);
    check(&s, &want, "converted, reopened");
    assert_eq!(s.get("b", "new", true).unwrap().embedding, new);
}

#[test]
fn repair_of_a_version_1_log_keeps_its_records_and_open_converts_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (dims, n) = (16, 30);
    let vectors = version_1_dir(d, dims, n);
    let mut wal = std::fs::read(d.join(WAL)).unwrap();
    let offs = record_offsets(&wal);
    wal[offs[5] + 20] ^= 0x01;
    std::fs::write(d.join(WAL), &wal).unwrap();
    assert_eq!(TensorStore::open(d, opts(dims, FsyncPolicy::Off)).err().unwrap().code(), ErrorCode::Corrupt);
    let rep = repair(d).unwrap();
    assert_eq!(rep.lost.len(), 2, "the damaged record and the torn tail: {:?}", rep.lost);
    let mut want: Vec<Option<Vec<f32>>> = vectors.into_iter().map(Some).collect();
    want[2] = None;
    want[5] = None;
    check(&open(d, dims), &want, "repaired and converted");
}
