//! Where a store's in-memory rows spend their heap, per structure, and how fast the filter's
//! per-row check runs over them.
//!
//! `cargo run --profile test --features bench -p memory-core --example row_footprint_bench --
//! [rows]` (default 100000; `--release` works too, with a long LTO build). Rows shaped like `pnpm bench scale`'s (id `m123456`, text `memory 123456`,
//! metadata `{"tag":…,"group":…}`, clustered 384-dim vectors so associations form) are
//! stored through the real put path (significance and associations computed by the
//! writer), read back with `export`, and applied to a fresh `State` as replay would. A
//! counting global allocator (sizes as malloc rounds them) then measures each structure by
//! the bytes freed when it is dropped. The figures are bytes per row.
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use memory_core::filter::Filter;
use memory_core::store::state::State;
use memory_core::store::{FsyncPolicy, PutInput, PutRecord, SearchRequest, StoreOptions, TensorStore};

/// Live heap bytes, as malloc rounds them (usable size), so small allocations count whole.
static LIVE: AtomicI64 = AtomicI64::new(0);

struct Counting;

fn usable(p: *mut u8) -> i64 {
    // SAFETY: `p` is a live allocation of the system allocator (checked non-null).
    if p.is_null() {
        0
    } else {
        unsafe { libc::malloc_usable_size(p.cast()) as i64 }
    }
}

// SAFETY: every call is forwarded to `System`; only a counter is updated beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(l) };
        LIVE.fetch_add(usable(p), Ordering::Relaxed);
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(usable(p), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc_zeroed(l) };
        LIVE.fetch_add(usable(p), Ordering::Relaxed);
        p
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let before = usable(p);
        // SAFETY: forwarded with the caller's pointer, layout and size.
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            LIVE.fetch_add(usable(q) - before, Ordering::Relaxed);
        }
        q
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> i64 {
    LIVE.load(Ordering::Relaxed)
}

const DIMS: usize = 384;

/// xorshift32 in [-0.5, 0.5).
fn next(x: &mut u32) -> f32 {
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    (*x as f32 / u32::MAX as f32) - 0.5
}

/// Unit vectors around `clusters` centroids; neighbours' cosine is about 0.86, over the
/// association floor (0.8), as in the scale bench.
fn vector(centroids: &[Vec<f32>], i: usize, x: &mut u32) -> Vec<f32> {
    let c = &centroids[i % centroids.len()];
    let noise: Vec<f32> = (0..DIMS).map(|_| next(x)).collect();
    let nn = noise.iter().map(|v| v * v).sum::<f32>().sqrt();
    let mut v: Vec<f32> = c.iter().zip(&noise).map(|(a, b)| a + 0.4 * b / nn).collect();
    let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
    v.iter_mut().for_each(|a| *a /= n);
    v
}

fn metadata(i: usize) -> String {
    let tag = if i % 100 == 7 { "rare" } else { "common" };
    let group = if i % 10 < 3 { "g0".to_string() } else { format!("g{}", i % 10) };
    format!("{{\"tag\":\"{tag}\",\"group\":\"{group}\"}}")
}

/// Bytes freed by `f` (which drops or shrinks something), per row.
fn freed(rows: usize, f: impl FnOnce()) -> f64 {
    let before = live();
    f();
    (before - live()) as f64 / rows as f64
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let dir = std::env::temp_dir().join(format!("row-footprint-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut opts = StoreOptions::new(DIMS);
    opts.fsync = FsyncPolicy::Off;
    opts.ann_min_rows = usize::MAX; // the graph is measured elsewhere (bench scale)
    let mut x: u32 = 7;
    let centroids: Vec<Vec<f32>> = (0..n / 50 + 1).map(|_| (0..DIMS).map(|_| next(&mut x)).collect()).collect();
    let store = TensorStore::open(&dir, opts.clone()).unwrap();
    let t = Instant::now();
    for start in (0..n).step_by(1000) {
        let items: Vec<PutInput> = (start..(start + 1000).min(n))
            .map(|i| PutInput {
                namespace: "scale".into(),
                id: Some(format!("m{i}")),
                text: format!("memory {i}"),
                metadata: Some(metadata(i)),
                significance: None,
                vector: vector(&centroids, i, &mut x),
                ttl_ms: None,
                timestamp: None,
                expires_at: None,
            })
            .collect();
        store.put_blocking(items).unwrap();
    }
    println!("put {n} rows through the writer in {:.1} s", t.elapsed().as_secs_f64());
    let heap_open = live();
    filter_speed(&store, n);
    let memories = store.export(0, usize::MAX);
    store.close().unwrap();
    drop(store);
    println!("store heap while open (vectors file mapped, not counted): {:.0} B/row", heap_open as f64 / n as f64);

    // The same rows applied to a fresh state, as replay applies the log.
    let mut st = State::new(DIMS);
    let mut assoc = 0usize;
    for m in memories {
        assoc += m.associations.len();
        let rec = PutRecord { seq: m.seq, ts: m.timestamp, namespace: m.namespace, id: m.id, text: m.text, metadata: m.metadata, significance: m.significance, expires_at: m.expires_at.unwrap_or(i64::MIN), associations: m.associations, vector: m.embedding.unwrap_or_else(|| vec![0.0; DIMS]) };
        st.apply_put(rec, None);
    }
    println!("associations per row: {:.2}", assoc as f64 / n as f64);
    let total = report(&mut st, n);
    println!("  {:<40} {total:>8.1} B/row (the f32 vectors, mapped apart, not counted)", "state total");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The cost of the filter's per-row check: a `list` whose filter no row matches and the
/// posting lists cannot answer (a range), so every row of the namespace is checked; and an
/// exact search with a range filter passing 10% of the rows.
fn filter_speed(store: &TensorStore, n: usize) {
    let none = Filter::compile(&serde_json::json!({"tag": {"$gt": "zzz"}})).unwrap();
    let some = Arc::new(Filter::compile(&serde_json::json!({"group": {"$gt": "g8"}})).unwrap());
    let reps = 5;
    let t = Instant::now();
    for _ in 0..reps {
        let (out, _) = store.list("scale", 0, 10, Some(&none));
        assert!(out.is_empty());
    }
    let per_row_ns = t.elapsed().as_nanos() as f64 / (reps * n) as f64;
    println!("filter check in list (no match, every row checked): {per_row_ns:.1} ns/row");
    let mut x = 99u32;
    let q: Vec<f32> = (0..DIMS).map(|_| next(&mut x)).collect();
    let req = SearchRequest { namespace: "scale".into(), k: 10, filter: Some(some), filter_key: "g8".into(), exact: true, ..Default::default() };
    let t = Instant::now();
    for _ in 0..reps {
        store.search(&q, 1, &req).unwrap();
    }
    println!("exact search, range filter passing 10%: {:.2} ms", t.elapsed().as_secs_f64() * 1e3 / reps as f64);
}

/// Each structure's bytes per row, by dropping it.
fn report(st: &mut State, n: usize) -> f64 {
    let mut total = 0.0;
    let mut p = |name: &str, b: f64| {
        total += b;
        println!("  {name:<40} {b:>8.1} B/row");
    };
    p("rows (Row: seq + one allocation)", freed(n, || drop(std::mem::take(&mut st.rows))));
    let nss = &mut st.namespaces;
    p("namespace id maps", freed(n, || nss.iter_mut().for_each(|ns| drop(std::mem::take(&mut ns.ids)))));
    p("namespace significance index", freed(n, || nss.iter_mut().for_each(|ns| drop(std::mem::take(&mut ns.by_sig)))));
    p("namespace metadata posting lists", freed(n, || nss.iter_mut().for_each(|ns| drop(std::mem::take(&mut ns.index)))));
    p("namespace text index", freed(n, || nss.iter_mut().for_each(|ns| drop(std::mem::take(&mut ns.text)))));
    p("namespace row lists", freed(n, || nss.iter_mut().for_each(|ns| drop(std::mem::take(&mut ns.rows)))));
    p(
        "columns (ns, sig, ts, exp, live, text_len)",
        freed(n, || {
            drop(std::mem::take(&mut st.ns_col));
            drop(std::mem::take(&mut st.sig_col));
            drop(std::mem::take(&mut st.ts_col));
            drop(std::mem::take(&mut st.exp_col));
            drop(std::mem::take(&mut st.live_col));
            drop(std::mem::take(&mut st.text_len));
        }),
    );
    total
}
