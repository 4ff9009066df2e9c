//! Time open → first answered query on a data directory shaped like `pnpm bench scale`'s
//! (one namespace `scale`, ids `m<i>`, texts `memory <i>`, two metadata keys, up to three
//! three associations each), with and without its state snapshot.
//!
//! `cargo run --release -p memory-core --example open_first_query -- DIR [ROWS]`: builds DIR
//! with ROWS memories (default 200,000) through `bulk_load` if it holds no store and closes
//! it; then opens it three times with the snapshot and once without (the snapshot moved
//! aside for that open), printing each open → first query and the files' sizes.
//! `MEMORY_SERVER_TRACE_OPEN=1` prints the phases; `OPEN_BENCH_OPENS=N` sets the opens with
//! the snapshot, `OPEN_BENCH_SKIP_REPLAY=1` leaves out the open without it. No graph unless `OPEN_BENCH_GRAPH=1`
//! (then one from 20,000 rows, built before the first close: long at 1M on 2 cores); without
//! it the first query takes the exact pass.
use std::path::Path;
use std::time::{Duration, Instant};

use memory_core::store::{FsyncPolicy, PutRecord, SearchRequest, StoreOptions, TensorStore};

const DIMS: usize = 384;

fn options() -> StoreOptions {
    let mut o = StoreOptions::new(DIMS);
    o.fsync = FsyncPolicy::Off;
    o.ann_min_rows = if std::env::var_os("OPEN_BENCH_GRAPH").is_some() { 20_000 } else { usize::MAX };
    o
}

fn vector(x: &mut u32) -> Vec<f32> {
    (0..DIMS)
        .map(|_| {
            *x ^= *x << 13;
            *x ^= *x >> 17;
            *x ^= *x << 5;
            (*x as f32 / u32::MAX as f32) - 0.5
        })
        .collect()
}

fn build(dir: &Path, n: usize) {
    let s = TensorStore::open(dir, options()).unwrap();
    let mut x: u32 = 1;
    let t = Instant::now();
    for start in (0..n).step_by(10_000) {
        let recs: Vec<PutRecord> = (start..(start + 10_000).min(n))
            .map(|i| {
                let tag = if i % 100 == 7 { "rare" } else { "common" };
                let group = if i % 10 < 3 { "g0".to_string() } else { format!("g{}", i % 10) };
                let associations = (1..=3).filter(|d| i >= d * 7).map(|d| format!("m{}", i - d * 7)).collect();
                PutRecord {
                    seq: 0,
                    ts: 1_700_000_000_000 + i as i64,
                    namespace: "scale".into(),
                    id: format!("m{i}"),
                    text: format!("memory {i}"),
                    metadata: format!(r#"{{"tag":"{tag}","group":"{group}"}}"#),
                    significance: (i % 1000) as f32 / 1000.0,
                    expires_at: i64::MIN,
                    associations,
                    vector: vector(&mut x),
                }
            })
            .collect();
        s.bulk_load_blocking(recs).unwrap();
    }
    println!("loaded {n} in {:?}; building the graph…", t.elapsed());
    let t = Instant::now();
    while s.stats().ann_pending > 0 && t.elapsed() < Duration::from_secs(1800) {
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("graph in {:?}", t.elapsed());
    s.close().unwrap();
}

fn open_and_query(dir: &Path, label: &str) {
    let mut x: u32 = 99;
    let q = vector(&mut x);
    let t = Instant::now();
    let s = TensorStore::open(dir, options()).unwrap();
    let opened = t.elapsed();
    let hits = s.search(&q, 1, &SearchRequest { namespace: "scale".into(), k: 10, ..Default::default() }).unwrap();
    let first = t.elapsed();
    let st = s.stats();
    println!("{label}: open {opened:?}, open → first query {first:?} ({} hits; {} rows, {} from the snapshot)", hits[0].len(), st.rows, st.snapshot_rows);
    s.close().unwrap();
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().expect("DIR"));
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(200_000);
    if !dir.join("store.json").exists() {
        build(&dir, n);
    }
    // `OPEN_BENCH_OPENS=N`: N opens with the snapshot (default 3); `OPEN_BENCH_SKIP_REPLAY=1`:
    // not the open without it (for A/B runs and profiles of the snapshot's open alone).
    let opens: usize = std::env::var("OPEN_BENCH_OPENS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    for i in 0..opens {
        open_and_query(&dir, &format!("with the snapshot #{i}"));
    }
    if std::env::var_os("OPEN_BENCH_SKIP_REPLAY").is_some() {
        return;
    }
    let snap = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("state-")));
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        println!("  {} {} bytes", e.file_name().to_string_lossy(), e.metadata().unwrap().len());
    }
    if let Some(p) = snap {
        let aside = dir.join("snapshot-aside");
        std::fs::rename(&p, &aside).unwrap();
        open_and_query(&dir, "without (the log replayed)");
        // That close wrote a new snapshot; the one set aside is removed.
        std::fs::remove_file(aside).unwrap();
    }
}
