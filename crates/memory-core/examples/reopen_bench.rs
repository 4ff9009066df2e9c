//! Time reopening a store of N memories (N from argv, default 200000; dims 384).
use memory_core::store::{FsyncPolicy, PutRecord, StoreOptions, TensorStore};
use std::time::Instant;

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let dims = 384;
    let keep = std::env::var_os("REOPEN_DIR");
    let dir = keep.clone().map(std::path::PathBuf::from).unwrap_or_else(|| std::env::temp_dir().join(format!("reopen-bench-{}", std::process::id())));
    let mut opts = StoreOptions::new(dims);
    opts.fsync = FsyncPolicy::Off;
    if !dir.join("store.json").exists() {
        let _ = std::fs::remove_dir_all(&dir);
        let s = TensorStore::open(&dir, opts.clone()).unwrap();
        let mut x: u32 = 1;
        let t = Instant::now();
        for start in (0..n).step_by(10_000) {
            let recs: Vec<PutRecord> = (start..(start + 10_000).min(n))
                .map(|i| {
                    let vector = (0..dims)
                        .map(|_| {
                            x ^= x << 13;
                            x ^= x >> 17;
                            x ^= x << 5;
                            (x as f32 / u32::MAX as f32) - 0.5
                        })
                        .collect();
                    PutRecord { seq: 0, ts: 1_700_000_000_000 + i as i64, namespace: "default".into(), id: format!("m{i}"), text: format!("memory {i}"), metadata: "{}".into(), significance: (i % 1000) as f32 / 1000.0, expires_at: i64::MIN, associations: vec![], vector }
                })
                .collect();
            s.bulk_load_blocking(recs).unwrap();
        }
        println!("load {n}: {:?}", t.elapsed());
        s.close().unwrap();
    }
    for _ in 0..2 {
        let t = Instant::now();
        let s = TensorStore::open(&dir, opts.clone()).unwrap();
        println!("reopen: {:?} ({} memories)", t.elapsed(), s.stats().total_memories);
        if let Ok(sm) = std::fs::read_to_string("/proc/self/smaps_rollup") {
            for l in sm.lines().filter(|l| l.starts_with("AnonHugePages") || l.starts_with("Rss")) {
                println!("  {l}");
            }
        }
        s.close().unwrap();
    }
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
