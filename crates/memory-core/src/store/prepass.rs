//! The exact int8 pre-pass: top-k through the int8 codes of [`crate::search::q8`], for
//! passes without a metadata filter or score transform (multi-query searches, single
//! queries where the rows are coded, and the significance pass of every put group).
//!
//! Every coded row gets an upper and a lower bound on its cosine from one int8 dot; only
//! rows whose upper bound may still reach a query's top k are scored again in f32, so the
//! result is the exact top k of the f32 scan at a quarter of its memory traffic.

use rayon::prelude::*;

use super::scan::{Ctx, Hit, ScanParams, BLOCK};
use super::state::State;
use super::vectors::CHUNK_ROWS;
use crate::search::q8::{quantize_query, Q8Cols, Q8Kernels, Q8Meta, Q8Rows, QBound, PANEL};
use crate::search::{kernels, TopK};

/// Rows per block of the int8 pre-pass (4 panels).
const Q8_BLOCK: usize = 64;
const _: () = assert!(Q8_BLOCK.is_multiple_of(PANEL));

/// One share of an int8 pass: per query, the k best lower bounds and the candidate rows
/// (with their upper bounds) seen in that share, and the k best exact scores of the rows
/// it scored in f32 right away (blocks where most rows were candidates).
struct Q8Part {
    lb: Vec<TopK>,
    /// Per query, the best lower bound (or exact score) seen.
    best: Vec<f32>,
    cands: Vec<Vec<(u32, f32)>>,
    exact: Vec<TopK>,
    /// (query, row) pairs scored into `exact`.
    block_scored: usize,
}

/// A block is scored in f32 at once, for every query of the pass, when the rows that are a
/// candidate of some query, times the queries, are at most this many times the candidate
/// pairs. Scoring a block of rows against all queries with [`crate::search::Kernels::dot_block`]
/// loads each row once while it is in cache (compute-bound, ~10 ns a pair at 384 dims here);
/// rescoring a candidate later reads its row from memory again for each query (~10× that).
/// Clustered vectors (e.g. every cosine between 0.92 and 0.99) leave the int8 bounds too
/// loose to rule rows out, and then every block goes this way.
const DENSE_RATIO: usize = 8;

/// While blocks come out dense (every row a candidate of half the pairs), the next ones skip
/// the int8 bounds and are scored in f32 directly; every this many blocks one is bounded
/// again, to notice when the bounds start ruling rows out.
const PROBE_EVERY: usize = 8;

/// The score a row's upper bound must reach to stay a candidate, from the best lower bound
/// seen (`best`), the k-th best (`kth`) and the floor of [`search_q8`]. Below the floor only
/// the best hit is wanted, so while `best < floor` only rows that may beat `best` count;
/// from then on, rows that may reach the floor and the top k. Never above `best` (the true
/// best hit always stays in) and never below `kth` of the lower bounds kept, which are lower
/// bounds of distinct rows, so at most the true k-th best score.
#[inline]
fn needed(best: f32, kth: f32, floor: f32) -> f32 {
    if best < floor {
        best
    } else {
        kth.max(floor)
    }
}

/// Exact top-k like [`super::scan::search`] (best first, ties → newer row) through the int8
/// pre-pass: rows are bounded with int8 codes and only those that may still be in a query's
/// top k are scored in f32. Parameters: namespace, `min_significance` and the time range (no
/// metadata filter, recency or `min_score`: use [`super::scan::search`] for those).
/// `q8` holds the codes of the first `q8.len()` rows of `st`; rows after those (coded later)
/// are scored exactly in f32 without a pre-pass. Scores of coded rows are `kernels().dot` of
/// the query and the row.
///
/// `floor` narrows what is asked for: hits scoring below it are wanted only as the best hit.
/// The result then holds the exact best hit and every hit of the exact top k scoring at
/// least `floor`, in order; any other hits in it are not necessarily the true runners-up.
/// (The significance pass needs the nearest neighbour and the associations, which have a
/// minimum cosine: with random-like data this cuts the exact rescoring to a handful of rows.)
/// `f32::NEG_INFINITY` asks for the whole exact top k.
pub fn search_q8(st: &State, q8: &Q8Rows, kern: &Q8Kernels, queries: &[f32], nq: usize, p: &ScanParams, floor: f32) -> Vec<Vec<Hit>> {
    assert!(
        p.filter.is_none_or(|f| f.is_empty()) && p.recency_half_life_s.is_none() && p.min_score.is_none(),
        "search_q8 serves passes without metadata filters and score transforms only"
    );
    assert!(q8.len() <= st.len(), "int8 codes ahead of the store");
    let empty = || (0..nq).map(|_| Vec::new()).collect::<Vec<_>>();
    let Some(ns) = st.ns_id(p.namespace) else { return empty() };
    if p.k == 0 || nq == 0 {
        return empty();
    }
    let nsd = &st.namespaces[ns as usize];
    let all_pass = nsd.live == st.len() && nsd.expiring.is_empty() && p.min_significance <= 0.0 && p.since_ms.is_none() && p.until_ms.is_none();
    let ctx = Ctx { st, p, ns, k: kernels(), queries, nq, check_filter: false, all_pass };
    let coded = q8.len();
    // Rows (or the namespace's row list) split into the coded part and the rest, which is
    // scored exactly here (with `dot`, like the candidates; blocks of rows kept in cache
    // across the queries).
    let (list, rest): (Option<&[u32]>, Vec<u32>) = if nsd.live * 2 < st.len() {
        let l = &nsd.rows[..];
        let c = l.partition_point(|&r| (r as usize) < coded);
        (Some(&l[..c]), l[c..].iter().copied().filter(|&r| all_pass || ctx.pass(r as usize)).collect())
    } else {
        (None, (coded as u32..st.len() as u32).filter(|&r| all_pass || ctx.pass(r as usize)).collect())
    };
    let pass = Q8Pass::new(ctx, q8, kern, list, floor);
    let tail = pass.score_exactly(&rest);
    let n = list.map_or(coded, |l| l.len());

    // Two cores once the pass is big enough to be worth splitting (2^18 row·queries, about
    // half a millisecond on one core). Below that, waking the pool costs the writer more than
    // it saves: on the 64-writer ingest benchmark (2 cores, ~2k rows × 32 queries per pass)
    // the pass on the calling thread gave ~10% more puts per second than splitting from 2^16.
    // Above it the writer's group waits on the pass: `store` from 16 connections into a
    // growing store (~20k rows × 16-32 queries per group) went from ~7,300 to ~7,950 stores/s
    // when these passes split instead of from 2^20. (The kernel works on groups of 8 queries,
    // so fewer cost about as much as 8.)
    let parts: Vec<Q8Part> = if n * nq.max(8) >= 1 << 18 && n >= 4 * Q8_BLOCK {
        let threads = rayon::current_num_threads().max(1);
        let step = n.div_ceil(threads).next_multiple_of(Q8_BLOCK);
        (0..n).step_by(step).collect::<Vec<_>>().into_par_iter().map(|s| pass.share(s, (s + step).min(n))).collect()
    } else {
        vec![pass.share(0, n)]
    };
    pass.rescore(&parts, tail)
}

/// What every share of one int8 pass reads: the pass, the codes and the quantized queries.
struct Q8Pass<'a> {
    ctx: Ctx<'a>,
    q8: &'a Q8Rows,
    kern: &'a Q8Kernels,
    /// The coded rows of the namespace's row list, or `None` for rows `0..q8.len()`.
    list: Option<&'a [u32]>,
    floor: f32,
    /// The queries' codes (`nq × dpad`), their quantization and rounding slack.
    qc: Vec<u8>,
    qm: Vec<Q8Meta>,
    slack: Vec<f32>,
}

impl<'a> Q8Pass<'a> {
    fn new(ctx: Ctx<'a>, q8: &'a Q8Rows, kern: &'a Q8Kernels, list: Option<&'a [u32]>, floor: f32) -> Self {
        let (nq, dims, dpad) = (ctx.nq, ctx.st.dims, q8.dpad());
        let mut qc = vec![0u8; nq * dpad];
        let mut scratch = vec![0i8; dpad];
        let qm: Vec<Q8Meta> = (0..nq).map(|i| quantize_query(&ctx.queries[i * dims..(i + 1) * dims], &mut qc[i * dpad..(i + 1) * dpad], &mut scratch)).collect();
        // Rounding of the int8 score and of the f32 dot the candidates are finally ranked by.
        let slack: Vec<f32> = qm.iter().map(|m| (dims as f32 * 2.4e-7 + 1e-5) * m.norm * q8.max_norm() + f32::MIN_POSITIVE).collect();
        Q8Pass { ctx, q8, kern, list, floor, qc, qm, slack }
    }

    fn query(&self, q: usize) -> &[f32] {
        let dims = self.ctx.st.dims;
        &self.ctx.queries[q * dims..(q + 1) * dims]
    }

    /// Rows without codes, scored exactly in f32 (a block at a time against every query).
    fn score_exactly(&self, rows: &[u32]) -> Vec<TopK> {
        let ctx = &self.ctx;
        let mut tail: Vec<TopK> = (0..ctx.nq).map(|_| TopK::new(ctx.p.k)).collect();
        let mut scratch = F32Scratch::default();
        for block in rows.chunks(BLOCK) {
            let scores = scratch.scores(ctx, block);
            for (q, heap) in tail.iter_mut().enumerate() {
                for (j, &r) in block.iter().enumerate() {
                    heap.push(scores[q * block.len() + j], r);
                }
            }
        }
        tail
    }

    /// One share: positions `from..to` of the pass's rows, a block of [`Q8_BLOCK`] at a time.
    /// A block is bounded with the int8 codes, and its candidates kept for [`Self::rescore`];
    /// or, where most of its rows are candidates, scored in f32 for every query at once
    /// (see [`DENSE_RATIO`], [`PROBE_EVERY`]).
    fn share(&self, from: usize, to: usize) -> Q8Part {
        let (nq, k, dpad) = (self.ctx.nq, self.ctx.p.k, self.q8.dpad());
        let heaps = || (0..nq).map(|_| TopK::new(k)).collect::<Vec<_>>();
        let mut part = Q8Part { lb: heaps(), best: vec![f32::NEG_INFINITY; nq], cands: vec![Vec::new(); nq], exact: heaps(), block_scored: 0 };
        let (mut idx, mut gathered, mut raw) = (Vec::with_capacity(Q8_BLOCK), Gathered::default(), vec![0i32; nq * Q8_BLOCK]);
        let mut bounds = ([0f32; Q8_BLOCK], [0f32; Q8_BLOCK]);
        let (mut f32_scratch, mut cand_lens, mut dense_rows) = (F32Scratch::default(), vec![0usize; nq], Vec::with_capacity(Q8_BLOCK));
        let pass = |r: u32| self.ctx.all_pass || self.ctx.pass(r as usize);
        #[cfg(feature = "bench")]
        let dense_on = !counts::DENSE_OFF.load(std::sync::atomic::Ordering::Relaxed);
        #[cfg(not(feature = "bench"))]
        let dense_on = true;
        // Blocks scored in f32 without bounds since the last bounded one (`None`: not dense),
        // and the bounded blocks in a row that came out dense (the first ones of a share
        // always do, while the heaps fill).
        let (mut dense_for, mut dense_streak): (Option<usize>, usize) = (None, 0);
        let mut pos = from;
        while pos < to {
            let end = (pos + Q8_BLOCK).min(to);
            idx.clear();
            match self.list {
                Some(l) => idx.extend(l[pos..end].iter().copied().filter(|&r| pass(r))),
                None => idx.extend((pos as u32..end as u32).filter(|&r| pass(r))),
            }
            pos = end;
            if idx.is_empty() {
                continue;
            }
            if let Some(n) = dense_for.as_mut().filter(|n| **n + 1 < PROBE_EVERY) {
                *n += 1;
                self.score_block_f32(&mut part, &idx, &mut f32_scratch);
                continue;
            }
            let np = idx.len().div_ceil(PANEL);
            let (panels, cols) = gathered.block(self.q8, &idx);
            let stride = np * PANEL;
            (self.kern.dot_panels)(&self.qc, nq, panels, np, dpad, &mut raw[..nq * stride]);
            for (len, c) in cand_lens.iter_mut().zip(&part.cands) {
                *len = c.len();
            }
            let (union, count) = self.bound_block(&mut part, &raw, stride, &idx, cols, &mut bounds);
            let rows = union.count_ones() as usize;
            #[cfg(feature = "bench")]
            counts::add(&counts::BOUNDED, idx.len() * nq);
            #[cfg(feature = "bench")]
            counts::add(&counts::CANDIDATES, count);
            dense_streak = if rows == idx.len() && 2 * count >= rows * nq { dense_streak + 1 } else { 0 };
            dense_for = (dense_on && dense_streak >= 2).then_some(0);
            if dense_on && count > 0 && rows * nq <= count * DENSE_RATIO {
                // Cheaper to score the candidate rows for every query now than each candidate
                // again later: they leave the candidate lists for the exact heaps.
                for (c, &len) in part.cands.iter_mut().zip(&cand_lens) {
                    c.truncate(len);
                }
                dense_rows.clear();
                dense_rows.extend(idx.iter().enumerate().filter(|&(j, _)| union >> j & 1 == 1).map(|(_, &r)| r));
                self.score_block_f32(&mut part, &dense_rows, &mut f32_scratch);
            }
        }
        part
    }

    /// Score the rows `rows` (sorted, at most [`Q8_BLOCK`]) in f32 against every query of the
    /// pass with the multi-query kernel (its scores are bit for bit `dot`'s), into the exact
    /// heaps.
    fn score_block_f32(&self, part: &mut Q8Part, rows: &[u32], scratch: &mut F32Scratch) {
        let (nq, n) = (self.ctx.nq, rows.len());
        part.block_scored += n * nq;
        #[cfg(feature = "bench")]
        counts::add(&counts::BLOCK_F32, n * nq);
        let scores = scratch.scores(&self.ctx, rows);
        for q in 0..nq {
            let (heap, best) = (&mut part.exact[q], &mut part.best[q]);
            let mut thr = heap.threshold();
            for (j, &s) in scores[q * n..(q + 1) * n].iter().enumerate() {
                if s >= thr {
                    heap.push(s, rows[j]);
                    thr = heap.threshold();
                    *best = best.max(s);
                }
            }
        }
    }

    /// Bound the rows `idx` of one block for every query (`raw`: their int8 dots, `stride`
    /// per query): rows that may still be in the top k become candidates, and lower bounds
    /// above the threshold raise it.
    /// Returns the rows that became a candidate of some query (bit `j` for `idx[j]`) and the
    /// number of (query, row) candidates added.
    fn bound_block(&self, part: &mut Q8Part, raw: &[i32], stride: usize, idx: &[u32], cols: Q8Cols, (ub, lo): &mut ([f32; Q8_BLOCK], [f32; Q8_BLOCK])) -> (u64, usize) {
        let m = idx.len();
        let (mut union, mut count) = (0u64, 0usize);
        for q in 0..self.ctx.nq {
            let exact_kth = part.exact[q].threshold();
            let heap = &mut part.lb[q];
            let best = &mut part.best[q];
            let mut thr = needed(*best, heap.threshold().max(exact_kth), self.floor);
            let qm = &self.qm[q];
            let qb = QBound { scale: qm.scale, err: qm.err, hat: qm.hat, slack: self.slack[q] };
            let mut mask = (self.kern.bounds)(&raw[q * stride..q * stride + m], cols, qb, thr, ub, lo);
            let c = &mut part.cands[q];
            while mask != 0 {
                let j = mask.trailing_zeros() as usize;
                mask &= mask - 1;
                // The threshold only rises: re-check rows the mask let through.
                if ub[j] < thr {
                    continue;
                }
                c.push((idx[j], ub[j]));
                union |= 1 << j;
                count += 1;
                if lo[j] > thr {
                    heap.push(lo[j], idx[j]);
                    *best = best.max(lo[j]);
                    thr = needed(*best, heap.threshold().max(exact_kth), self.floor);
                }
            }
        }
        (union, count)
    }

    /// Merge the shares and score the candidates that may still be in a query's top k in f32,
    /// together with the rows scored exactly (`tail`, and each share's exact heaps).
    fn rescore(&self, parts: &[Q8Part], mut tail: Vec<TopK>) -> Vec<Vec<Hit>> {
        let kern_f32 = kernels();
        (0..self.ctx.nq)
            .map(|q| {
                let (mut lb, mut exact) = (TopK::new(self.ctx.p.k), TopK::new(self.ctx.p.k));
                for part in parts {
                    lb.merge(part.lb[q].clone());
                    exact.merge(part.exact[q].clone());
                }
                let best = parts.iter().map(|part| part.best[q]).fold(f32::NEG_INFINITY, f32::max);
                let thr = needed(best, lb.threshold().max(exact.threshold()), self.floor);
                let query = self.query(q);
                let mut top = std::mem::replace(&mut tail[q], TopK::new(0));
                top.merge(exact);
                for part in parts {
                    for &(r, ub) in &part.cands[q] {
                        if ub >= thr {
                            #[cfg(feature = "bench")]
                            counts::add(&counts::RESCORED, 1);
                            top.push((kern_f32.dot)(query, self.ctx.st.vectors.row(r as usize)), r);
                        }
                    }
                }
                top.into_sorted_vec().into_iter().map(|(score, row)| Hit { row, score }).collect()
            })
            .collect()
    }
}

/// Scratch of [`Q8Pass::score_block_f32`]: rows gathered where they are not one contiguous
/// run, and the scores.
#[derive(Default)]
struct F32Scratch {
    rows: Vec<f32>,
    scores: Vec<f32>,
}

impl F32Scratch {
    /// `dot` of every query of the pass with every row of `rows` (sorted): `nq × rows.len()`,
    /// query-major.
    fn scores(&mut self, ctx: &Ctx, rows: &[u32]) -> &[f32] {
        let (st, n, dims) = (ctx.st, rows.len(), ctx.st.dims);
        let (first, last) = (rows[0] as usize, rows[n - 1] as usize);
        let run = last - first + 1 == n && first / CHUNK_ROWS == last / CHUNK_ROWS;
        let block = if run {
            st.vectors.rows(first, last + 1)
        } else {
            self.rows.clear();
            for &r in rows {
                self.rows.extend_from_slice(st.vectors.row(r as usize));
            }
            &self.rows[..]
        };
        self.scores.resize(n * ctx.nq, 0.0);
        (ctx.k.dot_block)(ctx.queries, ctx.nq, block, n, dims, &mut self.scores);
        &self.scores
    }
}

/// What the int8 passes did, for the benchmarks (`examples/significance_pass_bench`): (query,
/// row) pairs counted since the process started.
#[cfg(feature = "bench")]
pub mod counts {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

    /// Pairs bounded with the int8 codes.
    pub static BOUNDED: AtomicU64 = AtomicU64::new(0);
    /// Pairs the bounds left as candidates.
    pub static CANDIDATES: AtomicU64 = AtomicU64::new(0);
    /// Pairs scored in f32 a block at a time (dense blocks).
    pub static BLOCK_F32: AtomicU64 = AtomicU64::new(0);
    /// Candidates rescored in f32 one at a time after the bounds.
    pub static RESCORED: AtomicU64 = AtomicU64::new(0);
    /// Set: no block is scored in f32 at once (every candidate is rescored on its own, as
    /// before blocks were), to compare the two.
    pub static DENSE_OFF: AtomicBool = AtomicBool::new(false);

    pub(super) fn add(c: &AtomicU64, n: usize) {
        c.fetch_add(n as u64, Relaxed);
    }

    /// `[BOUNDED, CANDIDATES, BLOCK_F32, RESCORED]` so far.
    pub fn get() -> [u64; 4] {
        [&BOUNDED, &CANDIDATES, &BLOCK_F32, &RESCORED].map(|c| c.load(Relaxed))
    }
}

/// Scratch for blocks whose rows are not one run of whole panels: their codes and per-row
/// columns gathered.
#[derive(Default)]
struct Gathered {
    codes: Vec<i8>,
    scale: Vec<f32>,
    corr: Vec<i32>,
    norm: Vec<f32>,
    err: Vec<f32>,
}

impl Gathered {
    /// The panels and columns of the rows `idx` (sorted, at most [`Q8_BLOCK`]): in place
    /// where they are consecutive from a panel boundary, else gathered here.
    fn block<'s>(&'s mut self, q8: &'s Q8Rows, idx: &[u32]) -> (&'s [i8], Q8Cols<'s>) {
        let m = idx.len();
        let (first, last) = (idx[0] as usize, idx[m - 1] as usize);
        let np = m.div_ceil(PANEL);
        if last - first + 1 == m && first.is_multiple_of(PANEL) {
            return (q8.panels(first / PANEL, first / PANEL + np), q8.cols(first, last + 1));
        }
        let dpad = q8.dpad();
        self.codes.resize(np * PANEL * dpad, 0);
        self.scale.clear();
        self.corr.clear();
        self.norm.clear();
        self.err.clear();
        for (j, &r) in idx.iter().enumerate() {
            let r = r as usize;
            q8.copy_row(r, &mut self.codes, j);
            let c = q8.cols(r, r + 1);
            self.scale.push(c.scale[0]);
            self.corr.push(c.corr[0]);
            self.norm.push(c.norm[0]);
            self.err.push(c.err[0]);
        }
        (&self.codes[..np * PANEL * dpad], Q8Cols { scale: &self.scale, corr: &self.corr, norm: &self.norm, err: &self.err })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::q8;
    use crate::search::q8::tests::rng;
    use crate::store::state::{NewRow, VectorSrc};

    fn unit(mut v: Vec<f32>) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        v
    }

    /// Brute force: every passing row scored with `kernels().dot`, bounded top-k.
    pub(super) fn oracle(st: &State, q: &[f32], p: &ScanParams) -> Vec<Hit> {
        let ns = st.ns_id(p.namespace).unwrap();
        let ctx = Ctx { st, p, ns, k: kernels(), queries: q, nq: 1, check_filter: false, all_pass: false };
        let mut top = TopK::new(p.k);
        for r in 0..st.len() {
            if ctx.pass(r) {
                top.push((kernels().dot)(q, st.vectors.row(r)), r as u32);
            }
        }
        top.into_sorted_vec().into_iter().map(|(score, row)| Hit { row, score }).collect()
    }

    #[test]
    fn int8_prepass_finds_exactly_the_exact_top_k() {
        let Some(kern) = q8::tests::kernel_or_skip("int8_prepass_finds_exactly_the_exact_top_k") else { return };
        // `mixed`: two namespaces, deleted and expired rows (filtered and gathered blocks);
        // otherwise one namespace where every row passes (contiguous panels).
        for (dims, rows, seed, mixed) in [(384usize, 3000usize, 1u64, true), (100, 700, 2, true), (17, 300, 3, true), (384, 2500, 4, false), (64, 77, 5, false)] {
            let mut r = rng(seed);
            let mut st = State::new(dims);
            let mut stored: Vec<Vec<f32>> = Vec::new();
            let now = 1_000_000;
            for i in 0..rows {
                // Exact duplicates, near-duplicates and clustered vectors alongside random ones.
                let v = match i % 7 {
                    0 if i > 0 => stored[i / 2].clone(),
                    1 if i > 0 => unit(stored[i - 1].iter().map(|x| x + r() * 1e-3).collect()),
                    2 => unit((0..dims).map(|d| if d % 5 == 0 { 1.0 } else { r() * 0.1 }).collect()),
                    _ => unit((0..dims).map(|_| r()).collect()),
                };
                let ns = if mixed && i % 10 == 3 { "small" } else { "big" };
                let id = format!("m{i}");
                let expires_at = if mixed && i % 13 == 5 { now - 1 } else { crate::store::log::NO_EXPIRY };
                let row = st.insert_row(NewRow {
                    seq: i as u64 + 1,
                    ts: i as i64,
                    namespace: ns,
                    id: &id,
                    text: "t",
                    metadata_raw: "{}",
                    metadata: None,
                    significance: (i % 10) as f32 / 10.0,
                    expires_at,
                    associations: Box::new([]),
                    vector: VectorSrc::F32(&v),
                });
                if mixed && i % 11 == 4 {
                    st.kill(row);
                }
                stored.push(v);
            }
            let mut codes = q8::Q8Rows::new(dims);
            for i in 0..st.len() {
                codes.push(st.vectors.row(i));
            }
            // Queries: stored vectors (exact matches and ties), near ones and random ones.
            let mut queries = Vec::new();
            for i in 0..40 {
                let q = match i % 3 {
                    0 => stored[(i * 37) % rows].clone(),
                    1 => unit(stored[(i * 53) % rows].iter().map(|x| x + r() * 0.05).collect()),
                    _ => unit((0..dims).map(|_| r()).collect()),
                };
                queries.extend_from_slice(&q);
            }
            for ns in if mixed { &["big", "small"][..] } else { &["big"][..] } {
                for k in [1usize, 11, 50] {
                    let p = ScanParams { namespace: ns, k, now_ms: now, ..Default::default() };
                    for nq in [1usize, 5, 40] {
                        let got = search_q8(&st, &codes, kern, &queries[..nq * dims], nq, &p, f32::NEG_INFINITY);
                        for (qi, hits) in got.iter().enumerate() {
                            let want = oracle(&st, &queries[qi * dims..(qi + 1) * dims], &p);
                            assert_eq!(hits, &want, "dims={dims} ns={ns} k={k} nq={nq} query {qi}");
                        }
                        // With a floor: the best hit, then exactly the top-k hits at or above it.
                        for floor in [0.05f32, 0.5, 0.8, 0.999] {
                            let got = search_q8(&st, &codes, kern, &queries[..nq * dims], nq, &p, floor);
                            for (qi, hits) in got.iter().enumerate() {
                                let want = oracle(&st, &queries[qi * dims..(qi + 1) * dims], &p);
                                let above = |h: &[Hit]| h.iter().filter(|x| x.score >= floor).copied().collect::<Vec<_>>();
                                let what = format!("dims={dims} ns={ns} k={k} nq={nq} floor={floor} query {qi}");
                                assert_eq!(hits.first(), want.first(), "{what}: best hit");
                                assert_eq!(above(hits), above(&want), "{what}: hits at or above the floor");
                            }
                        }
                    }
                }
                // Codes for only a prefix of the rows (the rest scored exactly without a
                // pre-pass), with significance and time-range conditions.
                for coded in [0, rows / 3, rows - rows.min(5)] {
                    let mut part = q8::Q8Rows::new(dims);
                    for i in 0..coded {
                        part.push(st.vectors.row(i));
                    }
                    let conds = [
                        ScanParams { namespace: ns, k: 11, now_ms: now, ..Default::default() },
                        ScanParams { namespace: ns, k: 11, now_ms: now, min_significance: 0.35, ..Default::default() },
                        ScanParams { namespace: ns, k: 7, now_ms: now, since_ms: Some(rows as i64 / 4), until_ms: Some(rows as i64 / 2), ..Default::default() },
                    ];
                    for p in &conds {
                        let got = search_q8(&st, &part, kern, &queries[..9 * dims], 9, p, f32::NEG_INFINITY);
                        for (qi, hits) in got.iter().enumerate() {
                            let want = oracle(&st, &queries[qi * dims..(qi + 1) * dims], p);
                            assert_eq!(hits, &want, "dims={dims} ns={ns} coded={coded} {p:?} query {qi}");
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod dense_tests {
    use super::tests::oracle;
    use super::*;
    use crate::search::q8;
    use crate::search::q8::tests::rng;
    use crate::store::state::{NewRow, VectorSrc};

    /// Unit vectors all close to one direction (pairwise cosines ~0.93–0.99, like the
    /// generated MiniLM-shaped model's embeddings of similar sentences), a few exact
    /// duplicates among them. `mixed`: every third row in another namespace and every
    /// eleventh deleted, so the pass's rows are a gathered list.
    fn clustered_store(dims: usize, rows: usize, mixed: bool) -> (State, Vec<Vec<f32>>) {
        let mut r = rng(9);
        let centre: Vec<f32> = (0..dims).map(|_| r()).collect();
        let mut st = State::new(dims);
        let mut stored: Vec<Vec<f32>> = Vec::new();
        for i in 0..rows {
            let v = if i % 50 == 7 {
                stored[i / 3].clone()
            } else {
                let mut v: Vec<f32> = centre.iter().map(|c| c + r() * 0.04).collect();
                let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter_mut().for_each(|x| *x /= n);
                v
            };
            let id = format!("m{i}");
            let row = st.insert_row(NewRow {
                seq: i as u64 + 1,
                ts: i as i64,
                namespace: if mixed && i % 3 == 1 { "other" } else { "big" },
                id: &id,
                text: "t",
                metadata_raw: "{}",
                metadata: None,
                significance: 0.5,
                expires_at: crate::store::log::NO_EXPIRY,
                associations: Box::new([]),
                vector: VectorSrc::F32(&v),
            });
            if mixed && i % 11 == 4 {
                st.kill(row);
            }
            stored.push(v);
        }
        (st, stored)
    }

    #[test]
    fn clustered_rows_are_scored_a_block_at_a_time_with_the_exact_top_k() {
        let Some(kern) = q8::tests::kernel_or_skip("clustered_rows_are_scored_a_block_at_a_time_with_the_exact_top_k") else { return };
        for (dims, rows, mixed) in [(384usize, 2000usize, false), (384, 2100, true), (33, 900, true)] {
            let (st, stored) = clustered_store(dims, rows, mixed);
            // All rows coded, or only a prefix (the rest scored exactly as the tail).
            for coded in [st.len(), st.len() * 2 / 3] {
                let mut codes = q8::Q8Rows::new(dims);
                for i in 0..coded {
                    codes.push(st.vectors.row(i));
                }
                // Queries: stored vectors (exact matches, duplicates' ties) and new ones.
                let mut queries = Vec::new();
                for i in 0..32 {
                    queries.extend_from_slice(&stored[(i * 61 + 7) % rows]);
                }
                for k in [1usize, 11] {
                    let p = ScanParams { namespace: "big", k, now_ms: 1, ..Default::default() };
                    for nq in [1usize, 5, 32] {
                        for floor in [f32::NEG_INFINITY, 0.8, 0.999] {
                            let got = search_q8(&st, &codes, kern, &queries[..nq * dims], nq, &p, floor);
                            for (qi, hits) in got.iter().enumerate() {
                                let want = oracle(&st, &queries[qi * dims..(qi + 1) * dims], &p);
                                let above = |h: &[Hit]| h.iter().filter(|x| x.score >= floor).copied().collect::<Vec<_>>();
                                let what = format!("dims={dims} rows={rows} mixed={mixed} coded={coded} k={k} nq={nq} floor={floor} query {qi}");
                                assert_eq!(hits.first(), want.first(), "{what}: best hit");
                                assert_eq!(above(hits), above(&want), "{what}: hits at or above the floor");
                                if floor == f32::NEG_INFINITY {
                                    assert_eq!(hits, &want, "{what}");
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_share_of_clustered_rows_goes_to_the_exact_heaps_not_the_candidate_lists() {
        let Some(kern) = q8::tests::kernel_or_skip("a_share_of_clustered_rows_goes_to_the_exact_heaps_not_the_candidate_lists") else { return };
        let dims = 384;
        let (st, stored) = clustered_store(dims, 1024, false);
        let mut codes = q8::Q8Rows::new(dims);
        for i in 0..st.len() {
            codes.push(st.vectors.row(i));
        }
        let queries: Vec<f32> = (0..16).flat_map(|i| stored[i * 13].clone()).collect();
        let p = ScanParams { namespace: "big", k: 11, now_ms: 1, ..Default::default() };
        let ns = st.ns_id("big").unwrap();
        let ctx = Ctx { st: &st, p: &p, ns, k: kernels(), queries: &queries, nq: 16, check_filter: false, all_pass: true };
        let pass = Q8Pass::new(ctx, &codes, kern, None, 0.8);
        let part = pass.share(0, st.len());
        // The bounds cannot tell these rows apart: rescoring each candidate per query would
        // read nearly every row 16 times. Instead every block is scored in f32 once.
        let left: usize = part.cands.iter().map(Vec::len).sum();
        assert_eq!(left, 0, "candidates left for one-at-a-time rescoring");
        assert_eq!(part.block_scored, 16 * 1024, "pairs scored a block at a time");
        assert!(part.exact.iter().all(|h| h.len() == 11), "every query's exact heap is full");
        // And on spread (random) rows the bounds still do the work: most rows are ruled out,
        // a handful of candidates per query are left.
        let mut r = rng(3);
        let mut st2 = State::new(dims);
        for i in 0..1024 {
            let v: Vec<f32> = (0..dims).map(|_| r()).collect();
            let id = format!("r{i}");
            st2.insert_row(NewRow { seq: i + 1, ts: i as i64, namespace: "big", id: &id, text: "t", metadata_raw: "{}", metadata: None, significance: 0.5, expires_at: crate::store::log::NO_EXPIRY, associations: Box::new([]), vector: VectorSrc::F32(&v) });
        }
        let mut codes2 = q8::Q8Rows::new(dims);
        for i in 0..st2.len() {
            codes2.push(st2.vectors.row(i));
        }
        let queries2: Vec<f32> = (0..16).flat_map(|i| st2.vectors.row(i * 13).to_vec()).collect();
        let ctx = Ctx { st: &st2, p: &p, ns: st2.ns_id("big").unwrap(), k: kernels(), queries: &queries2, nq: 16, check_filter: false, all_pass: true };
        let part = Q8Pass::new(ctx, &codes2, kern, None, 0.8).share(0, st2.len());
        // (The first blocks of a share are, in part, while the heaps fill.)
        assert!(part.block_scored < 16 * 1024 / 4, "{} pairs of random rows scored a block at a time", part.block_scored);
        let left: usize = part.cands.iter().map(Vec::len).sum();
        assert!(left < 16 * 1024 / 10, "{left} candidates of 16 × 1024 pairs");
    }
}
