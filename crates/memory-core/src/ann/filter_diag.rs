//! Where a filtered traversal loses recall (docs/search.md, "Filtered recall at scale"): an
//! ignored test, run by hand, that builds a graph over the layout of `pnpm bench scale`
//! (`bench/lib/clustered.js`: `rows / FILTER_DIAG_CS` centres, row `i` in centre
//! `(i × 7919) mod centres`, so a filter on `i mod 10` passes or rejects whole clusters) and,
//! per list size, splits the misses of the true filtered top 10 into rows the traversal never
//! scored and rows it scored but cut. Also tries a filtered descent of the upper levels
//! (`FILTER_DIAG_EFUP`). The graph is cached in /tmp between runs.
//!
//! `FILTER_DIAG_N=200000 cargo test -p memory-core --features bench --lib filter_diag -- --ignored --nocapture`
//! (also `FILTER_DIAG_D` dims, `FILTER_DIAG_SEL` tenths passing, `FILTER_DIAG_UNCORR` a filter
//! independent of the clusters, `FILTER_DIAG_EFS` list sizes).

use std::io::{Read, Write};
use std::time::Instant;

use super::*;
use crate::search::{kernels, TopK};

struct Flat {
    dims: usize,
    data: Vec<f32>,
}
impl RowSource for Flat {
    fn row(&self, r: u32) -> &[f32] {
        &self.data[r as usize * self.dims..(r as usize + 1) * self.dims]
    }
}

/// bench/lib/clustered.js layout: centres max(10, n/500), row i in centre (i*7919) % C.
fn bench_data(start: usize, n: usize, total: usize, dims: usize, seed: u64) -> Vec<f32> {
    let cs_rows: usize = std::env::var("FILTER_DIAG_CS").map_or(500, |v| v.parse().unwrap());
    let c = (total / cs_rows).max(10);
    let mut s = 0x1234_5678_9abc_def1u64;
    let rnd = |s: &mut u64| {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        (*s >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0
    };
    let cs: Vec<f32> = (0..c * dims).map(|_| rnd(&mut s)).collect();
    let mut s2 = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n * dims);
    for i in start..start + n {
        let ci = (i * 7919) % c;
        let cc = &cs[ci * dims..(ci + 1) * dims];
        let mut v: Vec<f32> = cc.iter().map(|x| x + 0.6 * rnd(&mut s2)).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        out.extend(v);
    }
    out
}

fn put(f: &mut impl Write, xs: &[u32]) {
    f.write_all(&(xs.len() as u64).to_le_bytes()).unwrap();
    for x in xs {
        f.write_all(&x.to_le_bytes()).unwrap();
    }
}
fn get(b: &[u8], off: &mut usize) -> Vec<u32> {
    let n = u64::from_le_bytes(b[*off..*off + 8].try_into().unwrap()) as usize;
    *off += 8;
    let v = b[*off..*off + 4 * n].chunks(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect();
    *off += 4 * n;
    v
}

fn save(g: &Hnsw, path: &str) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    put(&mut f, &g.rows);
    put(&mut f, &g.l0);
    put(&mut f, &g.l0_len.iter().map(|&x| x as u32).collect::<Vec<_>>());
    put(&mut f, &g.upper_of);
    put(&mut f, &[g.entry.unwrap(), g.top_level as u32, g.upper.len() as u32]);
    for u in &g.upper {
        put(&mut f, &[u.len() as u32]);
        for l in u {
            put(&mut f, l);
        }
    }
}
fn load(path: &str, src: &Flat) -> Option<Hnsw> {
    let mut b = Vec::new();
    std::fs::File::open(path).ok()?.read_to_end(&mut b).unwrap();
    let mut off = 0;
    let mut g = Hnsw::new(HnswParams::default());
    g.rows = get(&b, &mut off);
    g.l0 = get(&b, &mut off);
    g.l0_len = get(&b, &mut off).into_iter().map(|x| x as u8).collect();
    g.upper_of = get(&b, &mut off);
    let h = get(&b, &mut off);
    g.entry = Some(h[0]);
    g.top_level = h[1] as usize;
    for _ in 0..h[2] {
        let nl = get(&b, &mut off)[0];
        g.upper.push((0..nl).map(|_| get(&b, &mut off)).collect());
    }
    g.encode_nodes(src);
    Some(g)
}

fn visited_marks(n: usize) -> Vec<bool> {
    VISITED.with(|v| {
        let g = v.borrow();
        g.0[..n].iter().map(|&m| m == g.1).collect()
    })
}

/// Filtered descent: a filtered beam of `ef_up` on every upper level, its passing nodes
/// (plus the greedy node) the entry points of the next.
fn descend(g: &Hnsw, sc: &Scorer<Flat>, ef_up: usize, pass: &dyn Fn(u32) -> bool) -> (Vec<(f32, u32)>, usize) {
    let ep = g.entry.unwrap();
    let mut eps = vec![(sc.approx(ep), ep)];
    let mut scored = 0;
    for l in (1..=g.top_level).rev() {
        let (gep, gs) = g.greedy(sc, eps[0].1, eps[0].0, l);
        let (found, s) = g.search_layer(sc, &eps, ef_up, l, pass);
        scored += s;
        eps = found;
        if !eps.iter().any(|e| e.1 == gep) {
            eps.push((gs, gep));
        }
        eps.sort_by(|a, b| b.0.total_cmp(&a.0));
    }
    (eps, scored)
}

#[test]
#[ignore]
fn filter_diag() {
    let n: usize = std::env::var("FILTER_DIAG_N").map_or(200_000, |v| v.parse().unwrap());
    let dims: usize = std::env::var("FILTER_DIAG_D").map_or(384, |v| v.parse().unwrap());
    let nq = 200;
    let k = kernels();
    let t = Instant::now();
    let src = Flat { dims, data: bench_data(0, n, n, dims, 7) };
    let queries = bench_data(0, nq, n, dims, 99);
    println!("data {:.1}s", t.elapsed().as_secs_f64());
    let cs_rows: usize = std::env::var("FILTER_DIAG_CS").map_or(500, |v| v.parse().unwrap());
    let path = format!("/tmp/filter-diag-{n}-{dims}-{cs_rows}.graph");
    let g = load(&path, &src).unwrap_or_else(|| {
        let t = Instant::now();
        let mut g = Hnsw::new(HnswParams::default());
        let all: Vec<u32> = (0..n as u32).collect();
        all.chunks(1000).for_each(|b| g.insert_batch(b, Default::default(), &src, k));
        println!("build {:.1}s", t.elapsed().as_secs_f64());
        save(&g, &path);
        g
    });
    let sel: u32 = std::env::var("FILTER_DIAG_SEL").map_or(3, |v| v.parse().unwrap());
    let uncorrelated = std::env::var_os("FILTER_DIAG_UNCORR").is_some();
    let pass = move |r: u32| if uncorrelated { r.wrapping_mul(2_654_435_761) % 10 < sel } else { r % 10 < sel };
    println!("top level {}, level-1 nodes {}", g.top_level, g.upper.len());
    let truth: Vec<Vec<u32>> = queries
        .chunks(dims)
        .map(|q| {
            let mut top = TopK::new(10);
            for r in (0..n as u32).filter(|&r| pass(r)) {
                top.push((k.dot)(q, src.row(r)), r);
            }
            top.into_sorted_vec().into_iter().map(|x| x.1).collect()
        })
        .collect();
    // node of each row
    let mut node_of = vec![0u32; n];
    for (i, &r) in g.rows.iter().enumerate() {
        node_of[r as usize] = i as u32;
    }
    let ef_up: usize = std::env::var("FILTER_DIAG_EFUP").map_or(0, |v| v.parse().unwrap());
    let efs: Vec<usize> = std::env::var("FILTER_DIAG_EFS").map_or(vec![96, 240, 480, 960, 1920], |v| v.split(',').map(|x| x.parse().unwrap()).collect());
    for ef in efs {
        for mode in ["greedy", "descend"] {
            if mode == "descend" && ef_up == 0 {
                continue;
            }
            let (mut hit, mut unreached, mut cut, mut ms, mut scored) = (0, 0, 0, Vec::new(), 0usize);
            let (mut hit_in, mut tot_in) = (0, 0);
            for (qi, (q, want)) in queries.chunks(dims).zip(&truth).enumerate() {
                let t = Instant::now();
                let sc = Scorer::new(&g, q, &src, k);
                let eps = if mode == "greedy" {
                    let mut ep = g.entry.unwrap();
                    let mut es = sc.approx(ep);
                    for l in (1..=g.top_level).rev() {
                        (ep, es) = g.greedy(&sc, ep, es, l);
                    }
                    vec![(es, ep)]
                } else {
                    let (e, s) = descend(&g, &sc, ef_up, &pass);
                    scored += s;
                    e
                };
                let (found, s) = g.search_layer(&sc, &eps, ef, 0, &pass);
                scored += s;
                let got: Vec<u32> = sc.rescore(&found).into_iter().take(10).map(|(_, nd)| g.rows[nd as usize]).collect();
                ms.push(t.elapsed().as_secs_f64() * 1e3);
                let marks = visited_marks(g.len());
                let h = got.iter().filter(|r| want.contains(r)).count();
                hit += h;
                if (qi as u32) % 10 < sel {
                    hit_in += h;
                    tot_in += 10;
                }
                for r in want.iter().filter(|r| !got.contains(r)) {
                    if marks[node_of[*r as usize] as usize] {
                        cut += 1;
                    } else {
                        unreached += 1;
                    }
                }
            }
            ms.sort_by(|a, b| a.total_cmp(b));
            println!(
                "{mode:8} ef {ef:5} efup {ef_up}: recall {:.4} (query in a passing cluster {:.4}, outside {:.4}) misses unreached {unreached} reached-but-cut {cut}  p50 {:.2} ms  scored/q {}",
                hit as f64 / (10 * nq) as f64,
                hit_in as f64 / tot_in as f64,
                (hit - hit_in) as f64 / (10 * nq - tot_in) as f64,
                ms[nq / 2],
                scored / nq
            );
        }
    }
}
