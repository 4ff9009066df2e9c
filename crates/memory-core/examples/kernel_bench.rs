//! Throughput of the `search` kernels for every ISA available on this machine.
//!
//! ```text
//! cargo run --release -p memory-core --features bench --example kernel_bench -- [rows] [dims] [--scalar]
//! ```
//!
//! Defaults: 1,000,000 rows x 384 dims (1.5 GB of f32). Reports, single-threaded and with
//! rayon over all cores (chunks of rows):
//! - `sum` and `dot_rows` (1 query) read bandwidth in GB/s and their ratio,
//! - `dot_block` with 64 queries in GFLOP/s (streaming over all rows in L2-sized blocks, and on
//!   one L2-resident block), and the speed-up of one 64-query pass over 64 single-query passes,
//! - `fma_peak` GFLOP/s.
//!
//! Tables with a software-prefetching variant (AVX-512) are run both ways.
//!
//! The scalar table is skipped unless `--scalar` is given (its 64-query pass is slow).

use std::hint::black_box;
use std::time::Instant;

use memory_core::search::{available_isas, kernels_for, prefetching, Isa, Kernels};
use rayon::prelude::*;

const CHUNK_ROWS: usize = 4096;
/// Rows per `dot_block` call: 256 at 384 dims (384 KB, L2-resident), scaled for other dims.
fn block_rows(dims: usize) -> usize {
    ((256 * 384 / dims.max(1)) / 4 * 4).clamp(16, 1024)
}
const NQ: usize = 64;
const REPS: usize = 5;

/// Best-of-`REPS` wall time in seconds.
fn best<F: FnMut()>(mut f: F) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..REPS {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    let mut pos = Vec::new();
    let mut with_scalar = false;
    for a in std::env::args().skip(1) {
        if a == "--scalar" {
            with_scalar = true;
        } else {
            pos.push(a.parse::<usize>().expect("usage: kernel_bench [rows] [dims] [--scalar]"));
        }
    }
    let rows = pos.first().copied().unwrap_or(1_000_000);
    let dims = pos.get(1).copied().unwrap_or(384);
    let threads = rayon::current_num_threads();
    let bytes = (rows * dims * 4) as f64;
    println!(
        "kernel_bench: {rows} rows x {dims} dims = {:.2} GB, {threads} rayon threads, \
         best of {REPS}",
        bytes / 1e9
    );

    // Touch every page (in parallel) so first-touch page faults are not measured.
    let mut data = vec![0.0f32; rows * dims];
    data.par_chunks_mut(1 << 16).enumerate().for_each(|(c, ch)| {
        let mut x = (c as u32).wrapping_mul(2_654_435_761) | 1;
        for v in ch {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *v = (x >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
        }
    });
    let queries: Vec<f32> = (0..NQ * dims).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
    let data = &data[..];

    for isa in available_isas() {
        if isa == Isa::Scalar && !with_scalar {
            continue;
        }
        let k = kernels_for(isa).unwrap();
        println!("\n== {} ==", isa.name());
        bench_isa(k, data, &queries, rows, dims, bytes);
        if let Some(pf) = prefetching(k) {
            println!("\n== {} with software prefetch ==", isa.name());
            bench_isa(pf, data, &queries, rows, dims, bytes);
        }
    }
}

fn bench_isa(k: &Kernels, data: &[f32], queries: &[f32], rows: usize, dims: usize, bytes: f64) {
    let q0 = &queries[..dims];
    let chunk = CHUNK_ROWS * dims;

    // --- single thread ---
    let t_sum1 = best(|| {
        black_box((k.sum)(black_box(data)));
    });
    let mut out = vec![0.0f32; CHUNK_ROWS];
    let t_rows1 = best(|| {
        for c in data.chunks(chunk) {
            let n = c.len() / dims;
            (k.dot_rows)(q0, c, dims, &mut out[..n]);
            black_box(&out);
        }
    });
    println!(
        "1 thread : sum {:6.2} GB/s | dot_rows {:6.2} GB/s ({:5.1}% of sum)",
        bytes / t_sum1 / 1e9,
        bytes / t_rows1 / 1e9,
        100.0 * t_sum1 / t_rows1
    );

    // --- all threads (rayon over chunks) ---
    let t_sum_p = best(|| {
        let s: f32 = data.par_chunks(chunk).map(|c| (k.sum)(c)).sum();
        black_box(s);
    });
    let t_rows_p = best(|| {
        data.par_chunks(chunk).for_each_init(
            || vec![0.0f32; CHUNK_ROWS],
            |out, c| {
                let n = c.len() / dims;
                (k.dot_rows)(q0, c, dims, &mut out[..n]);
                black_box(&out);
            },
        );
    });
    println!(
        "N threads: sum {:6.2} GB/s | dot_rows {:6.2} GB/s ({:5.1}% of sum)",
        bytes / t_sum_p / 1e9,
        bytes / t_rows_p / 1e9,
        100.0 * t_sum_p / t_rows_p
    );

    // --- dot_block, 64 queries ---
    let flops = 2.0 * (rows * dims * NQ) as f64;
    let br = block_rows(dims);
    let block = br * dims;
    let one_block = |out: &mut Vec<f32>, c: &[f32]| {
        let n = c.len() / dims;
        (k.dot_block)(queries, NQ, c, n, dims, &mut out[..n * NQ]);
        black_box(&out);
    };
    let mut bout = vec![0.0f32; br * NQ];
    let t_blk1 = best(|| {
        for c in data.chunks(block) {
            one_block(&mut bout, c);
        }
    });
    let t_blk_p = best(|| {
        data.par_chunks(block)
            .for_each_init(|| vec![0.0f32; br * NQ], |out, c| one_block(out, c));
    });
    // Same work on one L2-resident block, repeated: the kernel's compute ceiling.
    let hot = &data[..block.min(data.len())];
    let hot_rows = hot.len() / dims;
    let reps = (rows / hot_rows.max(1)).max(1);
    let t_hot = best(|| {
        for _ in 0..reps {
            one_block(&mut bout, black_box(hot));
        }
    });
    let hot_flops = 2.0 * (reps * hot_rows * dims * NQ) as f64;
    println!(
        "dot_block nq={NQ}, {br}-row blocks: 1 thread {:6.1} GFLOP/s ({:.3} s/pass) | \
         N threads {:6.1} GFLOP/s | L2-hot block {:6.1} GFLOP/s",
        flops / t_blk1 / 1e9,
        t_blk1,
        flops / t_blk_p / 1e9,
        hot_flops / t_hot / 1e9
    );
    println!(
        "64-query pass vs 64 single-query passes: {:5.1}x (1 thread), {:5.1}x (N threads)",
        NQ as f64 * t_rows1 / t_blk1,
        NQ as f64 * t_rows_p / t_blk_p
    );

    // --- FMA peak ---
    let iters = 100_000_000u64;
    let t_fma = best(|| {
        black_box((k.fma_peak)(black_box(iters)));
    });
    let peak = (iters * k.fma_flops_per_iter) as f64 / t_fma / 1e9;
    println!(
        "fma_peak: {peak:6.1} GFLOP/s per thread; dot_block L2-hot = {:4.1}% of peak",
        100.0 * hot_flops / t_hot / 1e9 / peak
    );
}
