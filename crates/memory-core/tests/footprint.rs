//! The f32 rows live in the vectors file while the store is open: whole chunks the file
//! holds are mapped from it (at open and, as the writer catches the file up, during a
//! session), and released from the process's resident set once the idle work that read
//! them is done — without ever changing a value, including rows that open corrected.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use memory_core::store::log::{PutRecord, NO_EXPIRY};
use memory_core::store::{SearchRequest, TensorStore};

/// Resident kB of this process's mappings of `file` (from /proc/self/smaps).
fn resident_kb(file: &Path) -> usize {
    let name = file.display().to_string();
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut total = 0;
    let mut current = false;
    for line in smaps.lines() {
        let is_head = line.split_whitespace().next().is_some_and(|f| f.contains('-') && f.chars().all(|c| c.is_ascii_hexdigit() || c == '-'));
        if is_head {
            current = line.ends_with(&name);
        } else if current && line.starts_with("Rss:") {
            total += line.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap();
        }
    }
    total
}

/// Whether /proc/self/smaps reports resident pages at all: under qemu-user (the aarch64
/// tests) it is emulated with every `Rss:` 0, so residency cannot be checked there.
fn smaps_reports_residency() -> bool {
    std::fs::read_to_string("/proc/self/smaps").unwrap().lines().any(|l| l.starts_with("Rss:") && l.split_whitespace().nth(1).is_some_and(|v| v != "0"))
}

/// Wait (bounded) until `cond` holds.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < Duration::from_secs(60), "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn f32_rows_are_read_from_the_vectors_file_and_leave_the_resident_set() {
    if !cfg!(target_os = "linux") {
        return;
    }
    let rss = smaps_reports_residency();
    if !rss {
        eprintln!("ignored (residency only): /proc/self/smaps reports no resident pages here (qemu-user?); values and mappings are still checked");
    }
    let dir = tempfile::tempdir().unwrap();
    let dims = 8;
    let n = 40_000; // two whole chunks of 16,384 rows and a partial one
    let s = open(dir.path(), dims);
    let mut r = rng(17);
    let vectors: Vec<Vec<f32>> = (0..n).map(|_| rvec(&mut r, dims)).collect();
    for start in (0..n).step_by(10_000) {
        let recs: Vec<PutRecord> = (start..start + 10_000)
            .map(|i| PutRecord { seq: 0, ts: 1_600_000_000_000 + i as i64, namespace: "n".into(), id: format!("m{i}"), text: "t".into(), metadata: "{}".into(), significance: 0.5, expires_at: NO_EXPIRY, associations: vec![], vector: vectors[i].clone() })
            .collect();
        s.bulk_load_blocking(recs).unwrap();
    }
    let probe = [0usize, 1234, 16_383, 16_384, 20_000, 32_767, 32_768, 39_999];
    let stored = |s: &TensorStore, i: usize| s.get("n", &format!("m{i}"), true).unwrap().embedding.unwrap();
    let want: Vec<Vec<f32>> = probe.iter().map(|&i| stored(&s, i)).collect();
    let check = |s: &TensorStore, what: &str| {
        for (k, &i) in probe.iter().enumerate() {
            assert_eq!(stored(s, i), want[k], "{what}: row {i}");
        }
        let req = SearchRequest { namespace: "n".into(), k: 1, ..Default::default() };
        for &i in &[5usize, 17_000, 39_000] {
            let hit = s.search(&vectors[i], 1, &req).unwrap().remove(0).remove(0);
            assert_eq!(hit.id, format!("m{i}"), "{what}: search for row {i}");
        }
    };
    // In the session that stored them: once the writer has written the file, the whole
    // chunks are mapped from it and none of their pages is resident in the process.
    wait_until("the whole chunks are mapped", || s.stats().mapped_rows == 32_768);
    let file = dir.path().join("vectors-000001.f32");
    assert!(!rss || resident_kb(&file) == 0, "pages of the mapped chunks still resident");
    check(&s, "adopted in session");
    assert!(!rss || resident_kb(&file) > 0, "rows were read from the file");
    s.close().unwrap();

    // Reopened: the whole chunks are mapped, every row checked against its put's checksum,
    // and the chunks released again before anything reads them.
    let s = open(dir.path(), dims);
    assert_eq!(s.stats().mapped_rows, 32_768);
    wait_until("the checked chunks are released", || !rss || resident_kb(&file) == 0);
    check(&s, "after release");
    s.close().unwrap();

    // Reopened clean: whole chunks mapped, values unchanged.
    let s = open(dir.path(), dims);
    assert_eq!(s.stats().mapped_rows, 32_768);
    check(&s, "reopened");
}
