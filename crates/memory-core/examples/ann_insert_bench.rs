//! What one graph insert costs at a given graph size (issue #24: durable single inserts):
//! the beam search that finds a new memory's candidates (which the significance pass also
//! reads its nearest stored memories from) and the link step, measured apart, one thread.
//!
//! `cargo run --release -p memory-core --example ann_insert_bench -- [rows] [inserts] [group]`
//! (defaults 100000 4000 16). Builds a graph of `rows` clustered unit vectors, then inserts
//! `inserts` more in groups of `group` the way the writer does after a put group
//! ([`Hnsw::presearch`] per memory, then [`Hnsw::insert_batch`] with those candidates), and
//! prints µs per insert of each part, then recall@10 at ef 96 on held-out queries.
//! `ANN_INSERT_BENCH_DOTS=1` hands each row its dots with the group's earlier rows, computed
//! outside the timed link step, as the significance pass hands them to the writer
//! ([`Hnsw::insert_batch_with`]): the link step's time then leaves them out.

use std::time::{Duration, Instant};


use memory_core::ann::{Candidates, Hnsw, HnswParams, RowSource};
use memory_core::search::{kernels, TopK};

struct Flat {
    dims: usize,
    data: Vec<f32>,
}

impl RowSource for Flat {
    fn row(&self, r: u32) -> &[f32] {
        &self.data[r as usize * self.dims..(r as usize + 1) * self.dims]
    }
}

/// Uniform values in [−1, 1) from `seed` (xorshift64).
fn rng(seed: u64) -> impl FnMut() -> f32 {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0
    }
}

/// Appends `v` scaled to unit length.
fn push_unit(out: &mut Vec<f32>, mut v: Vec<f32>) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    out.extend(v);
}

/// The same clustered data as `ann_bench` (unit vectors around n / 500 centres).
fn clustered(n: usize, dims: usize, centers: usize, seed: u64) -> Vec<f32> {
    let mut rnd = rng(seed);
    let cs: Vec<f32> = (0..centers * dims).map(|_| rnd()).collect();
    let mut out = Vec::with_capacity(n * dims);
    for i in 0..n {
        let c = &cs[(i % centers) * dims..(i % centers + 1) * dims];
        push_unit(&mut out, c.iter().map(|x| x + 0.6 * rnd()).collect());
    }
    out
}

/// Uniform random unit vectors (no structure: every insert's neighbours are far).
fn uniform(n: usize, dims: usize, seed: u64) -> Vec<f32> {
    let mut rnd = rng(seed);
    let mut out = Vec::with_capacity(n * dims);
    for _ in 0..n {
        push_unit(&mut out, (0..dims).map(|_| rnd()).collect());
    }
    out
}

/// CPU time of the calling thread (so that other processes on a loaded machine count less).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("numbers")).collect();
    let n = *args.first().unwrap_or(&100_000);
    let inserts = *args.get(1).unwrap_or(&4000);
    let group = *args.get(2).unwrap_or(&16).max(&1);
    let (dims, nq) = (384, 200);
    let k = kernels();
    // `ANN_INSERT_BENCH_DATA=random`: uniform random unit vectors (bench-inserts.js's data;
    // bench/usearch-insert.js measures usearch on both kinds).
    let random = std::env::var("ANN_INSERT_BENCH_DATA").is_ok_and(|v| v == "random");
    let mut data = if random { uniform(n + inserts + nq, dims, 1) } else { clustered(n + inserts + nq, dims, (n / 500).max(10), 1) };
    let queries = data.split_off((n + inserts) * dims);
    let src = Flat { dims, data };

    let t = Instant::now();
    let mut g = Hnsw::new(HnswParams::default());
    let base: Vec<u32> = (0..n as u32).collect();
    base.chunks(1000).for_each(|b| g.insert_batch(b, Default::default(), &src, k));
    println!("rows {n}: graph built in {:.1} s (int8 beam: {})", t.elapsed().as_secs_f64(), g.int8_beam());

    // One thread for what follows: µs per insert of the work itself, not of a pool's spread.
    // Named so that `perf report --comms insert-bench` shows only this part.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).thread_name(|_| "insert-bench".into()).build().expect("pool");
    let (mut search, mut link) = (Duration::ZERO, Duration::ZERO);
    let hand_in_dots = std::env::var_os("ANN_INSERT_BENCH_DOTS").is_some_and(|v| !v.is_empty());
    pool.install(|| {
        let rows: Vec<u32> = (n as u32..(n + inserts) as u32).collect();
        for chunk in rows.chunks(group) {
            let t = thread_cpu();
            let pre: std::collections::HashMap<u32, Candidates> = chunk.iter().map(|&r| (r, g.presearch(src.row(r), r as u64, &src, k))).collect();
            let t2 = thread_cpu();
            if hand_in_dots {
                // Not timed: the significance pass computed these already.
                let pre = pre.into_iter().map(|(r, c)| (r, (c, chunk.iter().take_while(|&&e| e < r).map(|&e| (k.dot)(src.row(r), src.row(e))).collect()))).collect();
                let t2 = thread_cpu();
                g.insert_batch_with(chunk, pre, &src, k);
                search += t2 - t;
                link += thread_cpu() - t2;
                continue;
            }
            g.insert_batch(chunk, pre, &src, k);
            search += t2 - t;
            link += thread_cpu() - t2;
        }
    });
    let per = |d: Duration| d.as_secs_f64() * 1e6 / inserts as f64;
    println!("{inserts} inserts in groups of {group}{}, CPU time of the one thread: search {:.1} µs + link {:.1} µs = {:.1} µs per insert", if hand_in_dots { " (dots handed in)" } else { "" }, per(search), per(link), per(search + link));

    let total = n + inserts;
    let mut hit = 0;
    for q in queries.chunks(dims) {
        let mut top = TopK::new(10);
        for r in 0..total as u32 {
            top.push((k.dot)(q, src.row(r)), r);
        }
        let want: Vec<u32> = top.into_sorted_vec().into_iter().map(|x| x.1).collect();
        let (got, _) = g.search(q, 10, 96, &src, k, &|_| true);
        hit += got.iter().filter(|(_, r)| want.contains(r)).count();
    }
    println!("recall@10 at ef 96 after the inserts: {:.4}", hit as f64 / (10 * nq) as f64);
}
