//! Multi-query search through the store: f32 pass vs int8 pre-pass, per number of queries.
//!
//! ```text
//! cargo run --release -p memory-core --example search_q8_bench -- [rows]
//! ```
use memory_core::store::{FsyncPolicy, PutRecord, SearchRequest, StoreOptions, TensorStore};
use std::time::Instant;

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let dims = 384;
    let dir = std::env::temp_dir().join(format!("search-q8-bench-{}", std::process::id()));
    let mut opts = StoreOptions::new(dims);
    opts.fsync = FsyncPolicy::Off;
    let s = TensorStore::open(&dir, opts).unwrap();
    let mut x: u32 = 1;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        (x as f32 / u32::MAX as f32) - 0.5
    };
    for start in (0..n).step_by(20_000) {
        let recs: Vec<PutRecord> = (start..(start + 20_000).min(n))
            .map(|i| PutRecord { seq: 0, ts: 1_700_000_000_000 + i as i64, namespace: "default".into(), id: format!("m{i}"), text: String::new(), metadata: "{}".into(), significance: 0.5, expires_at: i64::MIN, associations: vec![], vector: (0..dims).map(|_| rnd()).collect() })
            .collect();
        s.bulk_load_blocking(recs).unwrap();
    }
    let t = Instant::now();
    while memory_core::search::q8::kernel().is_some() && s.stats().int8_rows < n && t.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    println!("{n} rows; int8 codes {} after {:.2} s", s.stats().int8_rows, t.elapsed().as_secs_f64());
    let queries: Vec<f32> = (0..64 * dims).map(|_| rnd()).collect();
    let req = SearchRequest { namespace: "default".into(), k: 10, ..Default::default() };
    for nq in [1usize, 2, 4, 8, 16, 32, 64] {
        let q = &queries[..nq * dims];
        s.search(q, nq, &req).unwrap();
        let mut ts: Vec<f64> = (0..7)
            .map(|_| {
                let t = Instant::now();
                s.search(q, nq, &req).unwrap();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        ts.sort_by(f64::total_cmp);
        println!("nq {nq:2}: {:8.2} ms  ({:.2} ms/query)", ts[3], ts[3] / nq as f64);
    }
    s.close().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
