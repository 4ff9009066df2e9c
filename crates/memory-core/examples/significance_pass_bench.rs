//! The significance pass of put groups on clustered vectors: CPU per (new memory, stored
//! memory) pair, with f32 scoring of dense blocks in the int8 pre-pass and without it.
//!
//! ```text
//! cargo run --release -p memory-core --features bench --example significance_pass_bench -- [rows] [group]
//! ```
//!
//! Puts `rows` memories (default 20,000) in groups of `group` (default 32, what a
//! re-embedding puts) into an empty store, as a re-embedding does, three ways: vectors all
//! close to one direction (pairwise cosines ~0.92–0.99, like the generated MiniLM-shaped
//! model's embeddings of the re-embedding benchmark's sentences), the same with blocks off
//! (every candidate rescored on its own, as before), and spread (random) vectors. Prints
//! wall and process CPU time per pair, and what the int8 pre-pass did with the pairs.
use memory_core::store::{prepass_counts as counts, FsyncPolicy, PutInput, StoreOptions, TensorStore};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

fn main() {
    let rows: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let group: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(32);
    let dims = 384;
    let mut x: u32 = 7;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        (x as f32 / u32::MAX as f32) * 2.0 - 1.0
    };
    let centre: Vec<f32> = (0..dims).map(|_| rnd()).collect();
    // Noise 0.185 of the centre's per-coordinate spread: cosines 1 / (1 + 0.185²) ≈ 0.967 on
    // average, the model's median.
    let clustered: Vec<f32> = (0..rows).flat_map(|_| centre.iter().map(|c| c + 0.185 * rnd()).collect::<Vec<_>>()).collect();
    let spread: Vec<f32> = (0..rows * dims).map(|_| rnd()).collect();
    println!("{rows} rows in groups of {group}, {dims} dims, int8 kernel: {}", memory_core::search::q8::kernel().is_some());
    for (name, vectors, dense_off) in [("clustered, blocks", &clustered, false), ("clustered, no blocks (before)", &clustered, true), ("spread, blocks", &spread, false)] {
        counts::DENSE_OFF.store(dense_off, Relaxed);
        run(name, vectors, dims, rows, group);
    }
}

fn run(name: &str, vectors: &[f32], dims: usize, rows: usize, group: usize) {
    let dir = std::env::temp_dir().join(format!("significance-pass-bench-{}-{}", std::process::id(), name.len()));
    let mut opts = StoreOptions::new(dims);
    opts.fsync = FsyncPolicy::Off;
    let s = TensorStore::open(&dir, opts).unwrap();
    let before = counts::get();
    let (t, cpu0) = (Instant::now(), process_cpu_s());
    let mut pairs = 0u64;
    for start in (0..rows).step_by(group) {
        let end = (start + group).min(rows);
        let items = (start..end)
            .map(|i| PutInput { namespace: "default".into(), id: Some(format!("m{i}")), text: format!("memory {i}"), metadata: None, significance: None, vector: vectors[i * dims..(i + 1) * dims].to_vec(), ttl_ms: None, timestamp: None, expires_at: None })
            .collect();
        s.put_blocking(items).unwrap();
        pairs += (start * (end - start)) as u64;
    }
    let (secs, cpu) = (t.elapsed().as_secs_f64(), process_cpu_s() - cpu0);
    let c: Vec<u64> = counts::get().iter().zip(before).map(|(a, b)| a - b).collect();
    let pct = |n: u64| 100.0 * n as f64 / pairs.max(1) as f64;
    println!(
        "{name:30} {secs:7.2} s  {:6.0} puts/s  {:5.1} ns/pair, CPU {:5.1} ns/pair | of the pairs: int8-bounded {:5.1}%, candidates {:5.1}%, f32 in blocks {:5.1}%, rescored one by one {:5.1}%",
        rows as f64 / secs,
        secs * 1e9 / pairs.max(1) as f64,
        cpu * 1e9 / pairs.max(1) as f64,
        pct(c[0]),
        pct(c[1]),
        pct(c[2]),
        pct(c[3])
    );
    s.close().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// CPU time of the whole process (every thread: the writer, the scan pool, the int8 coder).
#[cfg(unix)]
fn process_cpu_s() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

#[cfg(not(unix))]
fn process_cpu_s() -> f64 {
    0.0
}
