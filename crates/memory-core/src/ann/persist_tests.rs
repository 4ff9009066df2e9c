//! The persisted graphs: read back equal, and refused when damaged, stale or foreign.

use std::path::Path;

use super::persist::{self, file_name, read, restore};
use super::tests::clustered;
use super::{AnnSet, HnswParams};
use crate::search::kernels;
use crate::store::log::{PutRecord, NO_EXPIRY};
use crate::store::state::State;

const DIMS: usize = 16;

/// `n` rows, every 10th in namespace "b" (too small for a graph at min_rows 300), the rest
/// in "a"; every 11th of "a" deleted.
fn state(n: usize, seed: u64) -> State {
    let vs = clustered(n, DIMS, 12, seed);
    let mut st = State::new(DIMS);
    for i in 0..n {
        let ns = if i % 10 == 9 { "b" } else { "a" };
        let rec = PutRecord { seq: i as u64 + 1, ts: 1, namespace: ns.into(), id: format!("m{i}"), text: String::new(), metadata: "{}".into(), significance: 0.5, expires_at: NO_EXPIRY, associations: vec![], vector: vs[i * DIMS..(i + 1) * DIMS].to_vec() };
        st.apply_put(rec, None);
    }
    for r in (0..n).step_by(11).filter(|r| r % 10 != 9) {
        st.live_col[r] = false;
    }
    st
}

fn built(st: &State) -> AnnSet {
    let mut ann = AnnSet::new(HnswParams::default(), 300);
    while ann.catch_up(st, 500, Default::default()) > 0 {}
    ann
}

/// Each row's crc32c, as the log's puts record them.
fn crcs(st: &State) -> Vec<u32> {
    (0..st.len()).map(|r| crc32c::crc32c(&crate::store::log::f32_bytes(st.vectors.row(r)))).collect()
}

fn save(dir: &Path, gen: u64, st: &State, ann: &AnnSet) {
    persist::save(dir, gen, st, ann, &crcs(st)).unwrap();
}

/// Everything a graph is, as bytes (the file's own encoding of it).
fn image(dir: &Path, st: &State, ann: &AnnSet) -> Vec<u8> {
    save(dir, 9, st, ann);
    std::fs::read(dir.join(file_name(9))).unwrap()
}

fn loaded(dir: &Path, gen: u64, st: &State) -> Option<AnnSet> {
    let mut ann = AnnSet::new(HnswParams::default(), 300);
    restore(read(dir, gen), st, &crcs(st), &mut ann).then_some(ann)
}

/// `ann` after the writer's idle work has encoded the int8 codes its restore left out.
fn encoded(ann: AnnSet, st: &State) -> AnnSet {
    let lock = parking_lot::RwLock::new(ann);
    while super::codes::encode_restored(st, &lock) {}
    lock.into_inner()
}

#[test]
fn a_persisted_graph_reads_back_equal_and_answers_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(2000, 1);
    let ann = built(&st);
    assert!(ann.graph(0).is_some() && ann.graph(1).is_none());
    save(dir.path(), 1, &st, &ann);
    let back = loaded(dir.path(), 1, &st).expect("the file is taken");
    assert_eq!(back.graph(0).unwrap().covered, ann.graph(0).unwrap().covered);
    let other = tempfile::tempdir().unwrap();
    assert_eq!(image(other.path(), &st, &back), image(other.path(), &st, &ann));
    super::tests::assert_valid(&back.graph(0).unwrap().graph);
    let k = kernels();
    // The int8 codes are not in the file: the restored graph serves at once on the f32 rows
    // (exact scores, its own row first), and counts as pending until they are encoded.
    let with_kernel = super::codes::kernel().is_some();
    assert!(!back.graph(0).unwrap().graph.int8_beam());
    let nodes = back.graph(0).unwrap().graph.len();
    assert_eq!(back.pending(&st), if with_kernel { nodes } else { 0 });
    for r in (0..2000).step_by(97).filter(|r| r % 10 != 9 && r % 11 != 0) {
        let q = st.vectors.row(r);
        let hits = back.graph(0).unwrap().graph.search(q, 10, 64, &st.vectors, k, &|_| true).0;
        assert_eq!(hits[0].1, r as u32, "row {r} is its own nearest");
        assert!(hits.iter().all(|&(s, row)| s == (k.dot)(q, st.vectors.row(row as usize))), "exact scores");
    }
    let back = encoded(back, &st);
    assert_eq!(back.graph(0).unwrap().graph.int8_beam(), with_kernel);
    assert_eq!(back.pending(&st), 0);
    for r in (0..2000).step_by(97) {
        let q = st.vectors.row(r);
        let a = ann.graph(0).unwrap().graph.search(q, 10, 64, &st.vectors, k, &|_| true).0;
        assert_eq!(back.graph(0).unwrap().graph.search(q, 10, 64, &st.vectors, k, &|_| true).0, a, "the same answers as the graph that was saved");
    }
}

#[test]
fn rows_stored_after_the_file_are_left_for_the_writer_to_index() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(1500, 2);
    save(dir.path(), 1, &st, &built(&st));
    // The same history with more rows after it (a later run that crashed before closing).
    let longer = state(1800, 2);
    let mut back = loaded(dir.path(), 1, &longer).expect("a prefix of the rows is taken");
    let awaiting_codes = if super::codes::kernel().is_some() { back.graph(0).unwrap().graph.len() } else { 0 };
    assert_eq!(back.pending(&longer), (1500..1800).filter(|i| i % 10 != 9).count() + awaiting_codes);
    // Nodes added before the codes are encoded get theirs with the others.
    while back.catch_up(&longer, 500, Default::default()) > 0 {}
    let back = encoded(back, &longer);
    assert_eq!(back.pending(&longer), 0);
    assert_eq!(back.graph(0).unwrap().graph.int8_beam(), super::codes::kernel().is_some());
    super::tests::assert_valid(&back.graph(0).unwrap().graph);
}

#[test]
fn damaged_stale_and_foreign_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(1200, 3);
    save(dir.path(), 1, &st, &built(&st));
    let path = dir.path().join(file_name(1));
    let good = std::fs::read(&path).unwrap();
    assert!(loaded(dir.path(), 1, &st).is_some());
    // Another generation's log.
    assert!(loaded(dir.path(), 2, &st).is_none());
    // Other rows: fewer than the file's, or the same sequence numbers and namespaces with
    // other vectors (re-embedded).
    assert!(loaded(dir.path(), 1, &state(1100, 3)).is_none());
    assert!(loaded(dir.path(), 1, &state(1200, 4)).is_none());
    // A flipped byte anywhere, a torn file, an empty one.
    for at in [3, 20, 60, good.len() / 2, good.len() - 1] {
        let mut bad = good.clone();
        bad[at] ^= 0x40;
        std::fs::write(&path, &bad).unwrap();
        assert!(loaded(dir.path(), 1, &st).is_none(), "flipped byte {at}");
    }
    for len in [0, 47, good.len() - 4] {
        std::fs::write(&path, &good[..len]).unwrap();
        assert!(loaded(dir.path(), 1, &st).is_none(), "torn at {len}");
    }
    // No graph: no file, and an old one is removed.
    std::fs::write(&path, &good).unwrap();
    save(dir.path(), 1, &st, &AnnSet::new(HnswParams::default(), 300));
    assert!(!path.exists());
}
