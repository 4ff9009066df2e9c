//! The index decision of docs/search.md: the HNSW graph of `memory_core::ann` against the
//! exact int8 pass (the product's exact path) on clustered unit vectors.
//!
//! `cargo run --release -p memory-core --example ann_bench -- [rows] [dims] [queries]`
//! (defaults 100000 384 200). Prints build time, graph bytes, and per `ef` the recall@10
//! against the exact top 10 and the p50 / p99 of one query.

use std::time::Instant;

use memory_core::ann::{Hnsw, HnswParams, RowSource};
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

fn clustered(n: usize, dims: usize, centers: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut rnd = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0
    };
    let cs: Vec<f32> = (0..centers * dims).map(|_| rnd()).collect();
    let mut out = Vec::with_capacity(n * dims);
    for i in 0..n {
        let c = &cs[(i % centers) * dims..(i % centers + 1) * dims];
        let mut v: Vec<f32> = c.iter().map(|x| x + 0.6 * rnd()).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        out.extend(v);
    }
    out
}

/// CPU seconds this process has used (user + system, from /proc; 0 where there is none).
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces), from the state on: utime and
    // stime are the 12th and 13th, in clock ticks of 1/100 s.
    let rest = stat.rsplit_once(')').map_or("", |x| x.1);
    let f: Vec<f64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0.0)).collect();
    f.get(11).zip(f.get(12)).map_or(0.0, |(u, s)| (u + s) / 100.0)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("numbers")).collect();
    let n = *args.first().unwrap_or(&100_000);
    let dims = *args.get(1).unwrap_or(&384);
    let nq = *args.get(2).unwrap_or(&200);
    let k = kernels();
    // Queries from the same clusters as the rows (not stored).
    // ANN_BENCH_CENTRES: how many clusters (default one per 500 rows, as bench/lib/clustered.js).
    let centres = std::env::var("ANN_BENCH_CENTRES").ok().and_then(|c| c.parse().ok()).unwrap_or((n / 500).max(10));
    let mut data = clustered(n + nq, dims, centres, 1);
    let queries = data.split_off(n * dims);
    let src = Flat { dims, data };

    let (t, cpu0) = (Instant::now(), cpu_s());
    let mut g = Hnsw::new(HnswParams::default());
    let all: Vec<u32> = (0..n as u32).collect();
    if std::env::var_os("ANN_BENCH_SERIAL").is_some() {
        all.iter().for_each(|&r| g.insert(r, &src, k));
    } else {
        // In batches of 1,000, as the writer inserts a put group.
        all.chunks(1000).for_each(|b| g.insert_batch(b, Default::default(), &src, k));
    }
    let (build, cpu) = (t.elapsed().as_secs_f64(), cpu_s() - cpu0);
    let beam = if memory_core::ann::codes::kernel().is_some() { "int8 beam, f32 rescoring" } else { "f32 beam" };
    println!(
        "rows {n} dims {dims} ({beam}): build {build:.1} s ({:.0} µs/insert of wall time, {:.0} µs of CPU, batches of 1,000 on {} threads), graph {:.1} MB, f32 vectors {:.1} MB",
        build * 1e6 / n as f64,
        cpu * 1e6 / n as f64,
        rayon::current_num_threads(),
        g.bytes() as f64 / 1e6,
        (n * dims * 4) as f64 / 1e6
    );

    // How the graph holds each cluster together (a row's cluster is its index mod `centres`):
    // nodes no level-0 link leads to, and nodes none of whose level-0 links stays in its cluster
    // (an insertion whose beam never reached its cluster links it to strangers only).
    let mut in_deg = vec![0u32; n];
    let mut stranded = 0usize;
    for node in 0..n as u32 {
        let links = g.level0_links(node);
        links.iter().for_each(|&l| in_deg[l as usize] += 1);
        let own = g.row_of(node) as usize % centres;
        stranded += usize::from(!links.iter().any(|&l| g.row_of(l) as usize % centres == own));
    }
    let unreached = in_deg.iter().filter(|&&d| d == 0).count();
    println!("level 0: {unreached} nodes without in-links, {stranded} with no link into their own cluster ({centres} clusters)");

    // Exact baseline: the f32 dot over every row (batches of 1,000, rayon).
    let mut exact_ms = Vec::new();
    let truth: Vec<Vec<u32>> = queries
        .chunks(dims)
        .map(|q| {
            let t = Instant::now();
            let mut top = TopK::new(10);
            for r in 0..n as u32 {
                top.push((k.dot)(q, src.row(r)), r);
            }
            exact_ms.push(t.elapsed().as_secs_f64() * 1e3);
            top.into_sorted_vec().into_iter().map(|x| x.1).collect()
        })
        .collect();
    println!("exact f32 scan: p50 {:.2} ms", pct(&mut exact_ms, 0.5));
    // Novelty = 1 − the nearest stored cosine. The significance pass asks the graph for the
    // 11 best at ef 96: how far is its nearest from the exact one?
    let mut diff: Vec<f64> = queries
        .chunks(dims)
        .zip(&truth)
        .map(|(q, want)| {
            let exact = (k.dot)(q, src.row(want[0])) as f64;
            let (got, _) = g.search(q, 11, 96, &src, k, &|_| true);
            exact - got[0].0 as f64
        })
        .collect();
    let zero = diff.iter().filter(|d| **d == 0.0).count() as f64 / diff.len() as f64;
    println!(
        "novelty |approx − exact| (ef 96): zero for {:.1}% of stores, p50 {:.5}, p99 {:.5}, max {:.5}",
        zero * 100.0,
        pct(&mut diff, 0.5),
        pct(&mut diff, 0.99),
        diff.iter().cloned().fold(0.0, f64::max)
    );
    for ef in [64usize, 96, 128, 192, 256, 384] {
        let (mut hit, mut ms, mut visited) = (0usize, Vec::new(), 0usize);
        for (q, want) in queries.chunks(dims).zip(&truth) {
            let t = Instant::now();
            let (got, tr) = g.search(q, 10, ef, &src, k, &|_| true);
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            visited += tr.visited;
            hit += got.iter().filter(|(_, r)| want.contains(r)).count();
        }
        let recall = hit as f64 / (10 * truth.len()) as f64;
        println!("ef {ef:>3}: recall@10 {recall:.4}  p50 {:.3} ms  p99 {:.3} ms  nodes scored {}", pct(&mut ms, 0.5), pct(&mut ms, 0.99), visited / truth.len());
    }
    // A 30% metadata filter, with the candidate lists the planner gives it (96 widened by
    // 1.5 × live ÷ candidates = 5) and a narrower one: recall against the exact top 10 of the
    // passing rows.
    let pass = |r: u32| r.wrapping_mul(2_654_435_761) % 10 < 3;
    let truth30: Vec<Vec<u32>> = queries
        .chunks(dims)
        .map(|q| {
            let mut top = TopK::new(10);
            for r in (0..n as u32).filter(|&r| pass(r)) {
                top.push((k.dot)(q, src.row(r)), r);
            }
            top.into_sorted_vec().into_iter().map(|x| x.1).collect()
        })
        .collect();
    for ef in [384usize, 480] {
        let (mut hit, mut ms) = (0usize, Vec::new());
        for (q, want) in queries.chunks(dims).zip(&truth30) {
            let t = Instant::now();
            let (got, _) = g.search(q, 10, ef, &src, k, &pass);
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            hit += got.iter().filter(|(_, r)| want.contains(r)).count();
        }
        println!("30% filter, ef {ef}: recall@10 {:.4}  p50 {:.3} ms  p99 {:.3} ms", hit as f64 / (10 * truth30.len()) as f64, pct(&mut ms, 0.5), pct(&mut ms, 0.99));
    }
}
