//! The log's zero-filled stretch ahead of its records (`LogWriter`): the file is extended in
//! zeroed chunks so a group's fsync flushes only data. A crash image therefore ends in zeros
//! (or in a record torn somewhere inside that stretch); reopening and `repair` must read the
//! zeros as the end of the log and keep every complete record, and a clean close must leave
//! the file ending with its last record.

mod common;

use common::*;
use memory_core::store::{repair, FsyncPolicy, TensorStore};

const DIMS: usize = 8;

/// Stores `n` memories one at a time (each acknowledged, so durable under `always`).
fn put_each(s: &TensorStore, from: usize, n: usize) {
    let mut r = rng(from as u64 + 5);
    for i in from..from + n {
        s.put_blocking(vec![item("default", &format!("m{i}"), &format!("text {i}"), rvec(&mut r, DIMS))]).unwrap();
    }
}

/// The log's length in records: `storage_bytes` less the vectors file's `rows` rows.
fn log_len(s: &TensorStore, rows: usize) -> u64 {
    s.stats().storage_bytes - (rows * DIMS * 4) as u64
}

fn ids(s: &TensorStore) -> Vec<String> {
    let mut v: Vec<String> = list_all(s, "default", 1000).into_iter().map(|m| m.id).collect();
    v.sort();
    v
}

fn expected(n: usize) -> Vec<String> {
    let mut v: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
    v.sort();
    v
}

#[test]
fn the_log_runs_ahead_in_zeros_and_a_clean_close_cuts_them_off() {
    let dir = tempfile::tempdir().unwrap();
    let wal = wal_path(dir.path());
    let s = open_always(dir.path(), DIMS);
    put_each(&s, 0, 20);
    let records = log_len(&s, 20);
    let on_disk = std::fs::read(&wal).unwrap();
    assert!(on_disk.len() as u64 >= records + 64 * 1024, "the file is extended ahead of its records: {} bytes for {records}", on_disk.len());
    assert!(on_disk[records as usize..].iter().all(|&b| b == 0), "the stretch ahead is zeros");
    assert_eq!(record_offsets(&on_disk).len(), 20);
    s.close().unwrap();
    assert_eq!(file_len(&wal), records, "closed: the file ends with its last record");
    let s = open_always(dir.path(), DIMS);
    assert_eq!(ids(&s), expected(20));
    assert_eq!(log_len(&s, 20), records);
}

#[test]
fn a_crash_image_ending_in_the_zero_stretch_keeps_every_acknowledged_record() {
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("src");
    let s = open_always(&src, DIMS);
    put_each(&s, 0, 30);
    let records = log_len(&s, 30);
    // The data directory as a crash at this moment leaves it: every acknowledged store
    // fsynced, the file longer than its records.
    let crash = base.path().join("crash");
    copy_dir(&src, &crash);
    drop(s);
    assert!(file_len(&wal_path(&crash)) > records);

    let fixed = base.path().join("repaired");
    copy_dir(&crash, &fixed);
    let rep = repair(&fixed).unwrap();
    assert_eq!(rep.kept_records, 30);
    assert_eq!(rep.kept_bytes, records);
    assert!(rep.lost.iter().all(|l| l.records.unwrap_or(0) == 0), "a zero tail holds no records: {:?}", rep.lost);

    for d in [&crash, &fixed] {
        let s = open_always(d, DIMS);
        assert_eq!(ids(&s), expected(30));
        // Appending goes on after the last record (the next open sees it).
        put_each(&s, 30, 5);
        drop(s);
        let s = open_always(d, DIMS);
        assert_eq!(ids(&s), expected(35));
    }
}

#[test]
fn a_record_torn_inside_the_zero_stretch_is_cut_off_and_the_earlier_ones_kept() {
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("src");
    let s = open_always(&src, DIMS);
    put_each(&s, 0, 12);
    let image = base.path().join("image");
    copy_dir(&src, &image);
    drop(s);
    let bytes = std::fs::read(wal_path(&image)).unwrap();
    let offs = record_offsets(&bytes);
    assert_eq!(offs.len(), 12);
    let (last, end) = (offs[11], offs[11] + 8 + u32::from_le_bytes(bytes[offs[11]..offs[11] + 4].try_into().unwrap()) as usize);
    // The crash came while the last record was being written into the preallocated zeros:
    // only its first `landed` bytes reached the disk, the rest of the file is still zeros.
    let mut tested = 0;
    for landed in (1..end - last).step_by(3) {
        let d = base.path().join(format!("torn{landed}"));
        copy_dir(&image, &d);
        let mut b = bytes.clone();
        b[last + landed..].fill(0);
        std::fs::write(wal_path(&d), &b).unwrap();
        {
            let s = TensorStore::open(&d, opts(DIMS, FsyncPolicy::Always)).unwrap_or_else(|e| panic!("torn after {landed} bytes: {e}"));
            assert_eq!(ids(&s), expected(11), "torn after {landed} bytes");
            put_each(&s, 11, 1);
        }
        let s = open_always(&d, DIMS);
        assert_eq!(ids(&s), expected(12), "reopened after the torn record at {landed} bytes");
        drop(s);
        std::fs::remove_dir_all(&d).unwrap();
        tested += 1;
    }
    assert!(tested > 10);
}
