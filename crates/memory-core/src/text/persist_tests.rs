//! The persisted text index against a rebuilt one, on states built the way the writer
//! (index kept row by row) and replay (index deferred) build them; damaged, stale and
//! foreign files refused.

use std::collections::BTreeMap;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::persist::{self, file_name, restore, Persisted};
use crate::store::log::{PutRecord, NO_EXPIRY};
use crate::store::state::{parse_metadata, State};

#[derive(Clone)]
enum Op {
    Put { ns: &'static str, id: String, text: String, expiring: bool },
    Delete { ns: &'static str, id: String },
    Update { ns: &'static str, id: String },
    /// The expiry sweep: every row with an expiry is killed.
    Sweep,
}

fn text(g: &mut StdRng) -> String {
    let n = g.gen_range(0..12);
    (0..n).map(|_| format!("w{}", (1.0 / g.gen_range(0.002f64..1.0)) as u32)).chain(["Running".to_string()]).collect::<Vec<_>>().join(" ")
}

/// Puts in two namespaces (some expiring, some replacing an earlier id), updates, deletes
/// and an expiry sweep; `seed` and `from` make a distinct history each time.
fn history(seed: u64, from: usize, n: usize) -> Vec<Op> {
    let mut g = StdRng::seed_from_u64(seed);
    let mut ops = Vec::new();
    for i in from..from + n {
        let ns = if i % 4 == 3 { "b" } else { "a" };
        // Every 13th put reuses an earlier id: the old row is retired.
        let id = if i % 13 == 12 { format!("m{}", i / 2) } else { format!("m{i}") };
        ops.push(Op::Put { ns, id, text: text(&mut g), expiring: i % 17 == 0 });
        if i % 5 == 4 {
            ops.push(Op::Delete { ns, id: format!("m{}", g.gen_range(0..=i)) });
        }
        if i % 7 == 6 {
            ops.push(Op::Update { ns, id: format!("m{}", g.gen_range(0..=i)) });
        }
        if i % 97 == 96 {
            ops.push(Op::Sweep);
        }
    }
    ops
}

fn apply(st: &mut State, ops: &[Op], seq0: u64) {
    for (k, op) in ops.iter().enumerate() {
        let seq = seq0 + k as u64 + 1;
        let row = |st: &State, ns: &str, id: &str| st.ns_id(ns).and_then(|n| st.row_by_id(n, id));
        match op {
            Op::Put { ns, id, text, expiring } => {
                let expires_at = if *expiring { 1 } else { NO_EXPIRY };
                let rec = PutRecord { seq, ts: seq as i64, namespace: ns.to_string(), id: id.clone(), text: text.clone(), metadata: "{}".into(), significance: 0.5, expires_at, associations: vec![], vector: vec![0.0; 4] };
                st.apply_put(rec, None);
            }
            Op::Delete { ns, id } => {
                if let Some(r) = row(st, ns, id) {
                    st.kill(r);
                }
            }
            Op::Update { ns, id } => {
                if let Some(r) = row(st, ns, id) {
                    let raw = format!("{{\"u\":{seq}}}");
                    let parsed = parse_metadata(&raw);
                    st.apply_update(r, Some((raw, parsed)), Some(0.9), seq);
                }
            }
            Op::Sweep => {
                for r in st.expired_rows(10, usize::MAX) {
                    st.kill(r);
                }
            }
        }
    }
}

/// The writer's state: the index kept op by op.
fn incremental(ops: &[Op]) -> State {
    let mut st = State::new(4);
    apply(&mut st, ops, 0);
    st
}

/// What replay leaves: the ops applied with the text index deferred.
fn replayed(ops: &[Op]) -> State {
    let mut st = State::new(4);
    st.defer_text_index();
    apply(&mut st, ops, 0);
    st
}

/// What the writer does with a state an open left with its text index pending: `file` if it
/// fits, else the rebuild (`persist::finish`); which it was, and the state.
fn finished(file: Option<Persisted>, st: State) -> (&'static str, State) {
    let state = parking_lot::RwLock::new(st);
    let how = persist::finish(file, &state);
    (how, state.into_inner())
}

fn rebuilt(ops: &[Op]) -> State {
    let mut st = replayed(ops);
    st.build_text_index();
    st
}

type Lists = BTreeMap<String, Vec<(u32, u16)>>;
/// Per namespace: name, docs, total length, lists.
type Spaces = Vec<(String, u32, u64, Lists)>;

/// Per namespace: docs, total length, term → live (row, tf) entries; and each live row's
/// length. Term ids and dead entries not yet pruned are left out: they change no result.
fn canonical(st: &State) -> (Spaces, Vec<(usize, u32)>) {
    let spaces = st
        .namespaces
        .iter()
        .map(|ns| {
            let ix = &ns.text;
            let mut lists = Lists::new();
            for (term, &id) in &ix.ids {
                let p = &ix.lists[id as usize];
                let live: Vec<(u32, u16)> = p.rows.iter().zip(&p.tfs).filter(|(&r, _)| st.live_col[r as usize]).map(|(&r, &tf)| (r, tf)).collect();
                assert_eq!(p.live as usize, live.len(), "live count of {term}");
                if !live.is_empty() {
                    lists.insert(term.to_string(), live);
                }
            }
            (ns.name.clone(), ix.docs, ix.total_len, lists)
        })
        .collect();
    let lens = (0..st.len()).filter(|&r| st.live_col[r]).map(|r| (r, st.text_len[r])).collect();
    (spaces, lens)
}

fn results(st: &State) -> Vec<Vec<(u32, u32)>> {
    let mut out = Vec::new();
    for ns in &st.namespaces {
        for q in ["w1", "w1 w2 w40", "run w3", "w250 w7"] {
            let hits = ns.text.search(q, &st.text_len, 10, |r, s| st.live_col[r as usize].then_some(s));
            out.push(hits.into_iter().map(|(s, r)| (r, s.to_bits())).collect());
        }
    }
    out
}

fn assert_same(a: &State, b: &State) {
    assert_eq!(canonical(a), canonical(b));
    assert_eq!(results(a), results(b));
}

fn saved(dir: &Path, ops: &[Op]) -> State {
    let st = incremental(ops);
    persist::save(dir, 1, &st).unwrap();
    st
}

#[test]
fn persisted_index_equals_the_rebuilt_one() {
    let dir = tempfile::tempdir().unwrap();
    let a = history(1, 0, 600);
    let at_close = saved(dir.path(), &a);
    // The writer's own index already equals a rebuild.
    assert_same(&at_close, &rebuilt(&a));
    // Reopened as closed, and with a log tail past the file (puts, deletes of old and new
    // rows, updates, a sweep: what a run that crashed after more writes leaves).
    let tail = history(2, 600, 300);
    for ops in [a.clone(), [a.clone(), tail].concat()] {
        let mut st = replayed(&ops);
        assert!(restore(persist::load(dir.path(), 1).expect("file loads"), &mut st));
        assert_same(&st, &rebuilt(&ops));
        // And it goes on like the writer's own: more rows indexed one at a time.
        let more = history(3, 900, 50);
        let (mut x, mut y) = (st, rebuilt(&ops));
        apply(&mut x, &more, 10_000);
        apply(&mut y, &more, 10_000);
        assert_same(&x, &y);
    }
}

#[test]
fn an_empty_store_and_an_index_off_store() {
    let dir = tempfile::tempdir().unwrap();
    saved(dir.path(), &[]);
    let mut st = replayed(&[]);
    assert!(restore(persist::load(dir.path(), 1).unwrap(), &mut st));
    // A store opened without the index writes nothing.
    let off = tempfile::tempdir().unwrap();
    let mut st = State::new(4);
    st.text_on = false;
    apply(&mut st, &history(1, 0, 20), 0);
    persist::save(off.path(), 1, &st).unwrap();
    assert!(!off.path().join(file_name(1)).exists());
}

#[test]
fn damaged_files_are_not_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let a = history(4, 0, 300);
    saved(dir.path(), &a);
    let path = dir.path().join(file_name(1));
    let good = std::fs::read(&path).unwrap();
    assert!(persist::load(dir.path(), 1).is_some());
    // Torn anywhere (a crash while it was written and renamed without the data).
    for cut in [0, 8, 55, 56, 57, good.len() / 2, good.len() - 1] {
        std::fs::write(&path, &good[..cut]).unwrap();
        assert!(persist::load(dir.path(), 1).is_none(), "cut at {cut}");
    }
    // A flipped bit in the body, or in the header.
    for at in [20, 60, good.len() / 3, good.len() - 1] {
        let mut bad = good.clone();
        bad[at] ^= 0x10;
        std::fs::write(&path, &bad).unwrap();
        assert!(persist::load(dir.path(), 1).is_none(), "flip at {at}");
    }
    // Written by another format or analyzer version (header checksum made right again).
    for field in [8, 12] {
        let mut other = good.clone();
        other[field] = other[field].wrapping_add(1);
        let crc = crc32c::crc32c(&other[..52]);
        other[52..56].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&path, &other).unwrap();
        assert!(persist::load(dir.path(), 1).is_none(), "field at {field}");
    }
    // No file at all; then the rebuild.
    std::fs::remove_file(&path).unwrap();
    let (how, st) = finished(persist::load(dir.path(), 1), replayed(&a));
    assert_eq!(how, "rebuilt");
    assert_same(&st, &rebuilt(&a));
}

#[test]
fn a_file_for_other_rows_falls_back_to_the_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let a = history(5, 0, 300);
    saved(dir.path(), &a);
    // Another generation's file (the log was compacted since: rows renumbered).
    std::fs::copy(dir.path().join(file_name(1)), dir.path().join(file_name(2))).unwrap();
    assert!(persist::load(dir.path(), 2).is_none());
    let others = [
        // The log lost its tail (`repair`): fewer rows than the file covers.
        a[..a.len() / 2].to_vec(),
        // A different history: the same ops with one text changed.
        {
            let mut b = a.clone();
            let Some(Op::Put { text, .. }) = b.iter_mut().filter(|o| matches!(o, Op::Put { .. })).nth(10) else { unreachable!() };
            text.push_str(" extra");
            b
        },
        // The same lengths and sequence numbers, one text spelled differently.
        {
            let mut b = a.clone();
            let Some(Op::Put { text, .. }) = b.iter_mut().filter(|o| matches!(o, Op::Put { .. })).nth(20) else { unreachable!() };
            text.replace_range(..1, "x");
            b
        },
        // One memory in another namespace.
        {
            let mut b = a.clone();
            let Some(Op::Put { ns, .. }) = b.iter_mut().filter(|o| matches!(o, Op::Put { ns: "a", .. })).nth(30) else { unreachable!() };
            *ns = "b";
            b
        },
        // Same rows, shifted sequence numbers.
        [vec![Op::Sweep], a.clone()].concat(),
    ];
    for ops in others {
        let mut st = replayed(&ops);
        let before = canonical(&st);
        assert!(!restore(persist::load(dir.path(), 1).unwrap(), &mut st));
        assert_eq!(canonical(&st), before, "a refused file changes nothing");
        let (how, st) = finished(persist::load(dir.path(), 1), st);
        assert_eq!(how, "rebuilt");
        assert_same(&st, &rebuilt(&ops));
    }
    // Restored where it fits.
    assert_eq!(finished(persist::load(dir.path(), 1), replayed(&a)).0, "loaded");
}

#[test]
fn saving_removes_other_generations_files() {
    let dir = tempfile::tempdir().unwrap();
    saved(dir.path(), &history(6, 0, 50));
    std::fs::write(dir.path().join(format!("{}.tmp", file_name(3))), b"torn").unwrap();
    let st = incremental(&history(6, 0, 50));
    persist::save(dir.path(), 2, &st).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    names.sort();
    assert_eq!(names, [file_name(2)]);
}

#[test]
fn an_index_finished_after_the_open_equals_the_rebuilt_one() {
    let dir = tempfile::tempdir().unwrap();
    let a = history(7, 0, 500);
    saved(dir.path(), &a);
    // Opened (index pending), then the writer applies more before it finishes the index:
    // puts, deletes of rows old and new, updates, a sweep — none of them indexed meanwhile.
    let more = history(8, 500, 200);
    let mut st = replayed(&a);
    apply(&mut st, &more, 10_000);
    assert!(st.text_index_pending());
    let (how, st) = finished(persist::load(dir.path(), 1), st);
    assert_eq!(how, "loaded");
    assert!(!st.text_index_pending());
    let mut want = replayed(&a);
    apply(&mut want, &more, 10_000);
    want.build_text_index();
    assert_same(&st, &want);
    // A file that does not fit (other rows), or none: rebuilt from the rows.
    let other = history(9, 0, 300);
    for file in [persist::load(dir.path(), 1), None] {
        let (how, st) = finished(file, replayed(&other));
        assert_eq!(how, "rebuilt");
        assert_same(&st, &rebuilt(&other));
    }
    // Nothing pending: nothing done.
    assert_eq!(finished(persist::load(dir.path(), 1), incremental(&a)).0, "not pending");
}
