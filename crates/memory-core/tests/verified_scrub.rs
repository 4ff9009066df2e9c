//! Open after a clean close checks only the vectors file's rows written after the ones the
//! close vouched for (`verified-<gen>.idx`); the background scrub checks the others: a
//! damaged one is reported (stats, the verified file withdrawn, compaction refused) and the
//! next open refuses the directory as before, for `repair`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use memory_core::store::{repair, FsyncPolicy, TensorStore};
use memory_core::Error;

const VECTORS: &str = "vectors-000001.f32";
const VERIFIED: &str = "verified-000001.idx";
const DIMS: usize = 16;

fn vectors_path(dir: &Path) -> PathBuf {
    dir.join(VECTORS)
}

/// Store `n` memories m{from}… in namespace "a", one put each (fsync always); their
/// stored embeddings.
fn put_many(s: &TensorStore, from: usize, n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut r = rng(seed);
    (from..from + n)
        .map(|i| {
            let id = format!("m{i}");
            s.put_blocking(vec![item("a", &id, &format!("memory {i}"), rvec(&mut r, DIMS))]).unwrap();
            s.get("a", &id, true).unwrap().embedding.unwrap()
        })
        .collect()
}

fn flip_byte(dir: &Path, row: usize) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().read(true).write(true).open(vectors_path(dir)).unwrap();
    let at = (row * DIMS * 4 + 5) as u64;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x08], at).unwrap();
}

/// Wait (bounded) until the scrub has checked every row.
fn scrubbed(s: &TensorStore) {
    let t = Instant::now();
    while s.stats().scrub_pending > 0 {
        assert!(t.elapsed() < Duration::from_secs(60), "the scrub did not finish");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn refused(dir: &Path) -> Error {
    TensorStore::open(dir, opts(DIMS, FsyncPolicy::Off)).err().expect("a damaged row must be refused")
}

#[test]
fn a_clean_close_vouches_for_its_rows_and_the_scrub_checks_them_after_open() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = open_always(d, DIMS);
    assert!(!d.join(VERIFIED).exists(), "nothing to vouch for before a close");
    let stored = put_many(&s, 0, 40, 1);
    s.close().unwrap();
    assert!(d.join(VERIFIED).exists(), "written at a clean close");

    let s = open(d, DIMS);
    scrubbed(&s);
    let st = s.stats();
    assert_eq!((st.scrubbed_rows, st.scrub_mismatches, st.scrub_first_mismatch), (40, 0, None));
    for (i, v) in stored.iter().enumerate() {
        assert_eq!(&s.get("a", &format!("m{i}"), true).unwrap().embedding.unwrap(), v);
    }
    // The file stays while the store runs: rows below it are never rewritten.
    assert!(d.join(VERIFIED).exists());
    s.close().unwrap();

    // A directory without the file (closed by an older build, or never closed) is checked
    // whole at open, as before.
    std::fs::remove_file(d.join(VERIFIED)).unwrap();
    let s = open(d, DIMS);
    let st = s.stats();
    assert_eq!((st.scrubbed_rows, st.scrub_pending), (40, 0), "all checked at open");
}

#[test]
fn a_damaged_row_the_close_vouched_for_is_found_by_the_scrub_and_reported() {
    let base = tempfile::tempdir().unwrap();
    let d = base.path().join("d");
    let s = open_always(&d, DIMS);
    let stored = put_many(&s, 0, 50, 2);
    s.close().unwrap();
    let bad = 20;
    flip_byte(&d, bad);

    // Open does not read the row (the close vouched for it); the scrub does, and says so.
    let s = open(&d, DIMS);
    scrubbed(&s);
    let st = s.stats();
    assert_eq!((st.scrub_mismatches, st.scrub_first_mismatch), (1, Some(bad)));
    assert_eq!(st.scrubbed_rows, 50);
    assert!(!d.join(VERIFIED).exists(), "the scrub withdraws the verified file");
    // Compaction would copy the damaged row under a new checksum: refused.
    let e = s.compact_blocking().expect_err("compaction refused").to_string();
    assert!(e.contains("row 20") && e.contains("do not match") && e.contains("repair"), "{e}");
    // Other memories are served as stored; a new one is stored durably.
    assert_eq!(s.get("a", "m3", true).unwrap().embedding.unwrap(), stored[3]);
    put_many(&s, 50, 1, 3);
    s.close().unwrap();
    assert!(!d.join(VERIFIED).exists(), "no verified file after a scrub found damage");

    // The next open checks every row, and refuses as it always did.
    let offs = record_offsets(&std::fs::read(wal_path(&d)).unwrap());
    match refused(&d) {
        Error::Corrupt { file, offset, reason } => {
            assert!(file.contains(WAL) && file.contains("repair"), "{file}");
            assert_eq!(offset, offs[bad] as u64);
            assert!(reason.contains(&format!("vector row {bad}")), "{reason}");
        }
        other => panic!("{other}"),
    }
    let rep = repair(&d).unwrap();
    assert_eq!(rep.lost.len(), 1, "{:?}", rep.lost);
    let s = open(&d, DIMS);
    assert!(s.get("a", &format!("m{bad}"), false).is_none());
    assert_eq!(s.count("a"), 50);
    scrubbed(&s);
    assert_eq!(s.stats().scrub_mismatches, 0);
}

#[test]
fn rows_written_after_the_verified_ones_are_checked_at_open() {
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("src");
    let s = open_always(&src, DIMS);
    put_many(&s, 0, 30, 4);
    s.close().unwrap();
    // A second run stores 10 more and "crashes": the directory copied while it is open
    // (every put synced), so the verified file still covers the first 30 rows.
    let s = open_always(&src, DIMS);
    let later = put_many(&s, 30, 10, 5);
    let crashed = base.path().join("crashed");
    copy_dir(&src, &crashed);
    s.close().unwrap();

    // A middle row of the tail damaged: corruption, refused at open like before.
    let d = base.path().join("middle");
    copy_dir(&crashed, &d);
    flip_byte(&d, 35);
    let offs = record_offsets(&std::fs::read(wal_path(&d)).unwrap());
    match refused(&d) {
        Error::Corrupt { offset, reason, .. } => {
            assert_eq!(offset, offs[35] as u64);
            assert!(reason.contains("vector row 35"), "{reason}");
        }
        other => panic!("{other}"),
    }

    // The last row never reached the disk (zeros): a torn tail, cut before its put.
    let d = base.path().join("torn");
    copy_dir(&crashed, &d);
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(vectors_path(&d)).unwrap();
        f.write_all_at(&[0; DIMS * 4], (39 * DIMS * 4) as u64).unwrap();
    }
    let wal = std::fs::read(wal_path(&d)).unwrap();
    let last = *record_offsets(&wal).last().unwrap();
    let s = open(&d, DIMS);
    assert!(s.get("a", "m39", false).is_none(), "the torn put is cut");
    assert_eq!(s.get("a", "m38", true).unwrap().embedding.unwrap(), later[8]);
    assert_eq!(file_len(&wal_path(&d)), last as u64);
    scrubbed(&s);
    let st = s.stats();
    assert_eq!((st.scrubbed_rows, st.scrub_mismatches), (39, 0), "30 by the scrub, 9 at open");
    s.close().unwrap();

    // Undamaged, the crashed copy opens with all 40.
    let s = open(&crashed, DIMS);
    assert_eq!(s.count("a"), 40);
    scrubbed(&s);
    assert_eq!(s.stats().scrub_mismatches, 0);
}

#[test]
fn a_verified_file_for_another_log_vouches_for_nothing() {
    let base = tempfile::tempdir().unwrap();
    let (a, b) = (base.path().join("a"), base.path().join("b"));
    for (d, seed) in [(&a, 6), (&b, 7)] {
        let s = open_always(d, DIMS);
        put_many(&s, 0, 20, seed);
        s.close().unwrap();
    }
    // b's log and vectors with a's verified file: the checksums differ, so every row is
    // checked at open, and a damaged one refused.
    std::fs::copy(a.join(VERIFIED), b.join(VERIFIED)).unwrap();
    flip_byte(&b, 4);
    match refused(&b) {
        Error::Corrupt { reason, .. } => assert!(reason.contains("vector row 4"), "{reason}"),
        other => panic!("{other}"),
    }
}
