//! Exact top-k search over a [`State`]: filters applied inside the scan, many queries per
//! pass, both cores for large stores.
//!
//! Candidate rows come from the cheapest source available:
//! - a metadata filter with equality / `$in` terms → intersected posting lists (roaring);
//! - a namespace holding a small share of the store → that namespace's row list;
//! - otherwise a dense scan over all rows, checking the namespace column per row.
//! Rows failing a filter are never read from the vector arena, so a selective filter makes
//! the scan faster. Each query keeps a bounded top-k heap.

use rayon::prelude::*;
use roaring::RoaringBitmap;

use crate::filter::Filter;
use crate::search::q8::{quantize_query, Q8Cols, Q8Kernels, Q8Meta, Q8Rows, QBound, PANEL};
use crate::search::{kernels, Kernels, TopK};
use crate::store::state::{State, CHUNK_ROWS};

/// Rows per inner block: small enough that a block of rows stays in L1/L2 while every
/// query of a multi-query pass is scored against it.
const BLOCK: usize = 128;
/// Rows per parallel task.
const TASK_ROWS: usize = 32768;
const _: () = assert!(CHUNK_ROWS % TASK_ROWS == 0 || TASK_ROWS % CHUNK_ROWS == 0);
const _: () = assert!(CHUNK_ROWS % BLOCK == 0 && TASK_ROWS % BLOCK == 0);

#[derive(Debug, Clone, Default)]
pub struct ScanParams<'a> {
    pub namespace: &'a str,
    pub k: usize,
    pub min_score: Option<f32>,
    pub min_significance: f32,
    pub filter: Option<&'a Filter>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub recency_half_life_s: Option<f64>,
    pub now_ms: i64,
    /// Scan the f32 vectors even where the int8 pre-pass could serve (same results).
    pub f32_scan: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub row: u32,
    pub score: f32,
}

struct Ctx<'a> {
    st: &'a State,
    p: &'a ScanParams<'a>,
    ns: u32,
    k: &'static Kernels,
    queries: &'a [f32],
    nq: usize,
    check_filter: bool,
    /// Every row passes (one namespace, nothing deleted or expiring, no filters): the dense
    /// scan then skips the per-row checks.
    all_pass: bool,
}

impl<'a> Ctx<'a> {
    #[inline]
    fn pass(&self, r: usize) -> bool {
        let st = self.st;
        if !st.live_col[r] || st.ns_col[r] != self.ns || st.expired(r, self.p.now_ms) {
            return false;
        }
        if st.sig_col[r] < self.p.min_significance {
            return false;
        }
        let ts = st.ts_col[r];
        if self.p.since_ms.is_some_and(|s| ts < s) || self.p.until_ms.is_some_and(|u| ts > u) {
            return false;
        }
        if self.check_filter {
            let f = self.p.filter.unwrap();
            return match &st.rows[r].metadata {
                Some(m) => f.matches(m),
                None => f.matches(&serde_json::Map::new()),
            };
        }
        true
    }

    #[inline]
    fn push(&self, heaps: &mut [TopK], q: usize, row: usize, cos: f32) {
        let score = match self.p.recency_half_life_s {
            Some(h) => {
                let age_s = ((self.p.now_ms - self.st.ts_col[row]).max(0) as f64) / 1000.0;
                (cos as f64 * (-age_s / h).exp2()) as f32
            }
            None => cos,
        };
        if self.p.min_score.is_some_and(|m| score < m) {
            return;
        }
        heaps[q].push(score, row as u32);
    }

    /// Score a contiguous run of rows that all pass.
    fn score_contiguous(&self, heaps: &mut [TopK], start: usize, end: usize, buf: &mut Vec<f32>) {
        let rows = self.st.vectors.rows(start, end);
        let n = end - start;
        let dims = self.st.dims;
        if self.nq == 1 {
            buf.resize(n, 0.0);
            (self.k.dot_rows)(self.queries, rows, dims, &mut buf[..n]);
            let thr_free = self.p.recency_half_life_s.is_none() && self.p.min_score.is_none();
            for (i, &s) in buf[..n].iter().enumerate() {
                // `<`, not `<=`: an equal score still wins against an older row (TopK keeps
                // the newer row on ties), as in every other path.
                if thr_free && s < heaps[0].threshold() {
                    continue;
                }
                self.push(heaps, 0, start + i, s);
            }
        } else {
            buf.resize(n * self.nq, 0.0);
            (self.k.dot_block)(self.queries, self.nq, rows, n, dims, &mut buf[..n * self.nq]);
            let thr_free = self.p.recency_half_life_s.is_none() && self.p.min_score.is_none();
            for q in 0..self.nq {
                let scores = &buf[q * n..(q + 1) * n];
                let mut thr = heaps[q].threshold();
                for (i, &s) in scores.iter().enumerate() {
                    // Most scores lose to a full heap: reject them without the call.
                    if thr_free && s < thr {
                        continue;
                    }
                    self.push(heaps, q, start + i, s);
                    thr = heaps[q].threshold();
                }
            }
        }
    }

    /// Score an arbitrary list of passing rows (gathered into a contiguous buffer for the
    /// multi-query kernel).
    fn score_list(&self, heaps: &mut [TopK], rows: &[u32], buf: &mut Vec<f32>, gather: &mut Vec<f32>) {
        let dims = self.st.dims;
        if self.nq == 1 {
            for &r in rows {
                let s = (self.k.dot)(self.queries, self.st.vectors.row(r as usize));
                self.push(heaps, 0, r as usize, s);
            }
            return;
        }
        for part in rows.chunks(BLOCK) {
            gather.clear();
            for &r in part {
                gather.extend_from_slice(self.st.vectors.row(r as usize));
            }
            let n = part.len();
            buf.resize(n * self.nq, 0.0);
            (self.k.dot_block)(self.queries, self.nq, gather, n, dims, &mut buf[..n * self.nq]);
            for q in 0..self.nq {
                for (i, &r) in part.iter().enumerate() {
                    self.push(heaps, q, r as usize, buf[q * n + i]);
                }
            }
        }
    }

    /// Dense scan of rows `start..end` (within one chunk-aligned task range).
    fn scan_range(&self, start: usize, end: usize) -> Vec<TopK> {
        let mut heaps: Vec<TopK> = (0..self.nq).map(|_| TopK::new(self.p.k)).collect();
        let (mut buf, mut gather, mut pass) = (Vec::new(), Vec::new(), Vec::with_capacity(BLOCK));
        let mut b = start;
        while b < end {
            let e = (b + BLOCK).min(end).min((b / CHUNK_ROWS + 1) * CHUNK_ROWS);
            if self.all_pass {
                self.score_contiguous(&mut heaps, b, e, &mut buf);
                b = e;
                continue;
            }
            pass.clear();
            pass.extend((b..e).filter(|&r| self.pass(r)).map(|r| r as u32));
            if pass.len() == e - b {
                self.score_contiguous(&mut heaps, b, e, &mut buf);
            } else if !pass.is_empty() {
                self.score_list(&mut heaps, &pass, &mut buf, &mut gather);
            }
            b = e;
        }
        heaps
    }

    /// Scan a sorted candidate list.
    fn scan_list(&self, cand: &[u32]) -> Vec<TopK> {
        let mut heaps: Vec<TopK> = (0..self.nq).map(|_| TopK::new(self.p.k)).collect();
        let (mut buf, mut gather) = (Vec::new(), Vec::new());
        let mut pass = Vec::with_capacity(BLOCK);
        for part in cand.chunks(BLOCK) {
            pass.clear();
            pass.extend(part.iter().copied().filter(|&r| self.pass(r as usize)));
            // A run of consecutive rows in one chunk can use the contiguous kernel.
            let contiguous = pass.len() > 1
                && (pass[pass.len() - 1] - pass[0]) as usize == pass.len() - 1
                && pass[0] as usize / CHUNK_ROWS == pass[pass.len() - 1] as usize / CHUNK_ROWS;
            if contiguous {
                self.score_contiguous(&mut heaps, pass[0] as usize, pass[pass.len() - 1] as usize + 1, &mut buf);
            } else if !pass.is_empty() {
                self.score_list(&mut heaps, &pass, &mut buf, &mut gather);
            }
        }
        heaps
    }
}

fn merge(mut a: Vec<TopK>, b: Vec<TopK>) -> Vec<TopK> {
    for (x, y) in a.iter_mut().zip(b) {
        x.merge(y);
    }
    a
}

/// Top-k rows for each of `nq` queries (`queries` is nq × dims, L2-normalized), best first.
pub fn search(st: &State, queries: &[f32], nq: usize, p: &ScanParams) -> Vec<Vec<Hit>> {
    let empty = || (0..nq).map(|_| Vec::new()).collect::<Vec<_>>();
    let Some(ns) = st.ns_id(p.namespace) else { return empty() };
    if p.k == 0 || nq == 0 {
        return empty();
    }
    debug_assert_eq!(queries.len(), nq * st.dims);
    let filter = p.filter.filter(|f| !f.is_empty());
    let nsd = &st.namespaces[ns as usize];
    let all_pass = filter.is_none()
        && p.min_significance <= 0.0
        && p.since_ms.is_none()
        && p.until_ms.is_none()
        && nsd.live == st.len()
        && nsd.expiring.is_empty();
    let ctx = Ctx { st, p, ns, k: kernels(), queries, nq, check_filter: filter.is_some(), all_pass };

    // Candidate list from the inverted index, when the filter has indexable terms.
    let mut cand: Option<RoaringBitmap> = None;
    if let Some(f) = filter {
        for (path, keys) in f.index_terms() {
            let mut u = RoaringBitmap::new();
            if let Some(vals) = nsd.index.get(&path) {
                for key in &keys {
                    if let Some(bm) = vals.get(key) {
                        u |= bm;
                    }
                }
            }
            cand = Some(match cand {
                Some(c) => c & u,
                None => u,
            });
        }
    }

    let heaps = if let Some(c) = cand {
        let list: Vec<u32> = c.iter().collect();
        run_list(&ctx, &list)
    } else if nsd.live * 2 < st.len() {
        run_list(&ctx, &nsd.rows)
    } else {
        let n = st.len();
        // Split across cores once there is enough work: by rows for large stores, and also
        // for small stores scored against many queries at once (a multi-query pass is
        // compute-bound, so even a few thousand rows are worth two cores).
        let task_rows = if n * nq >= 1 << 14 && n > 2 * BLOCK {
            (n.div_ceil(2 * rayon::current_num_threads()).next_multiple_of(BLOCK)).clamp(BLOCK, TASK_ROWS)
        } else {
            TASK_ROWS
        };
        if n <= task_rows {
            ctx.scan_range(0, n)
        } else {
            let tasks: Vec<usize> = (0..n).step_by(task_rows).collect();
            tasks
                .into_par_iter()
                .map(|s| ctx.scan_range(s, (s + task_rows).min(n)))
                .reduce_with(merge)
                .unwrap_or_default()
        }
    };
    heaps
        .into_iter()
        .map(|h| h.into_sorted_vec().into_iter().map(|(score, row)| Hit { row, score }).collect())
        .collect()
}

fn run_list(ctx: &Ctx, list: &[u32]) -> Vec<TopK> {
    if list.len() <= TASK_ROWS {
        return ctx.scan_list(list);
    }
    list.par_chunks(TASK_ROWS).map(|c| ctx.scan_list(c)).reduce_with(merge).unwrap_or_default()
}

/// Rows per block of the int8 pre-pass (4 panels).
const Q8_BLOCK: usize = 64;
const _: () = assert!(Q8_BLOCK.is_multiple_of(PANEL));

/// One share of an int8 pass: per query, the k best lower bounds and the candidate rows
/// (with their upper bounds) seen in that share.
struct Q8Part {
    lb: Vec<TopK>,
    /// Per query, the best lower bound seen.
    best: Vec<f32>,
    cands: Vec<Vec<(u32, f32)>>,
}

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

/// Exact top-k like [`search`] (best first, ties → newer row) through the int8 pre-pass of
/// [`crate::search::q8`]: rows are bounded with int8 codes and only those that may still be
/// in a query's top k are scored in f32. Parameters: namespace, `min_significance` and the
/// time range (no metadata filter, recency or `min_score`: use [`search`] for those).
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
    let dims = st.dims;
    let dpad = q8.dpad();
    let mut qc = vec![0u8; nq * dpad];
    let mut scratch = vec![0i8; dpad];
    let qm: Vec<Q8Meta> = (0..nq).map(|i| quantize_query(&queries[i * dims..(i + 1) * dims], &mut qc[i * dpad..(i + 1) * dpad], &mut scratch)).collect();
    // Rounding of the int8 score and of the f32 dot the candidates are finally ranked by.
    let slack: Vec<f32> = qm.iter().map(|m| (dims as f32 * 2.4e-7 + 1e-5) * m.norm * q8.max_norm() + f32::MIN_POSITIVE).collect();

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
    let mut tail: Vec<TopK> = (0..nq).map(|_| TopK::new(p.k)).collect();
    for block in rest.chunks(BLOCK) {
        for (q, heap) in tail.iter_mut().enumerate() {
            let query = &queries[q * dims..(q + 1) * dims];
            for &r in block {
                heap.push((ctx.k.dot)(query, st.vectors.row(r as usize)), r);
            }
        }
    }
    let n = list.map_or(coded, |l| l.len());

    let run = |from: usize, to: usize| -> Q8Part {
        let mut lb: Vec<TopK> = (0..nq).map(|_| TopK::new(p.k)).collect();
        let mut best = vec![f32::NEG_INFINITY; nq];
        let mut cands: Vec<Vec<(u32, f32)>> = vec![Vec::new(); nq];
        let (mut idx, mut gather, mut raw) = (Vec::with_capacity(Q8_BLOCK), Vec::new(), vec![0i32; nq * Q8_BLOCK]);
        // Gathered columns (non-contiguous blocks) and per-query bounds of one block.
        let (mut g_scale, mut g_corr, mut g_norm, mut g_err) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut ub, mut lo) = ([0f32; Q8_BLOCK], [0f32; Q8_BLOCK]);
        let mut pos = from;
        while pos < to {
            let end = (pos + Q8_BLOCK).min(to);
            idx.clear();
            match list {
                Some(l) => idx.extend(l[pos..end].iter().copied().filter(|&r| all_pass || ctx.pass(r as usize))),
                None => idx.extend((pos as u32..end as u32).filter(|&r| all_pass || ctx.pass(r as usize))),
            }
            pos = end;
            let m = idx.len();
            if m == 0 {
                continue;
            }
            let (first, last) = (idx[0] as usize, idx[m - 1] as usize);
            let np = m.div_ceil(PANEL);
            let (panels, cols): (&[i8], Q8Cols) = if last - first + 1 == m && first.is_multiple_of(PANEL) {
                (q8.panels(first / PANEL, first / PANEL + np), q8.cols(first, last + 1))
            } else {
                gather.resize(np * PANEL * dpad, 0);
                g_scale.clear();
                g_corr.clear();
                g_norm.clear();
                g_err.clear();
                for (j, &r) in idx.iter().enumerate() {
                    let r = r as usize;
                    q8.copy_row(r, &mut gather, j);
                    let c = q8.cols(r, r + 1);
                    g_scale.push(c.scale[0]);
                    g_corr.push(c.corr[0]);
                    g_norm.push(c.norm[0]);
                    g_err.push(c.err[0]);
                }
                (&gather[..np * PANEL * dpad], Q8Cols { scale: &g_scale, corr: &g_corr, norm: &g_norm, err: &g_err })
            };
            let stride = np * PANEL;
            (kern.dot_panels)(&qc, nq, panels, np, dpad, &mut raw[..nq * stride]);
            for q in 0..nq {
                let heap = &mut lb[q];
                let mut thr = needed(best[q], heap.threshold(), floor);
                let qb = QBound { scale: qm[q].scale, err: qm[q].err, hat: qm[q].hat, slack: slack[q] };
                let mut mask = (kern.bounds)(&raw[q * stride..q * stride + m], cols, qb, thr, &mut ub, &mut lo);
                let c = &mut cands[q];
                while mask != 0 {
                    let j = mask.trailing_zeros() as usize;
                    mask &= mask - 1;
                    // The threshold only rises: re-check rows the mask let through.
                    if ub[j] < thr {
                        continue;
                    }
                    c.push((idx[j], ub[j]));
                    if lo[j] > thr {
                        heap.push(lo[j], idx[j]);
                        best[q] = best[q].max(lo[j]);
                        thr = needed(best[q], heap.threshold(), floor);
                    }
                }
            }
        }
        Q8Part { lb, best, cands }
    };

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
        (0..n).step_by(step).collect::<Vec<_>>().into_par_iter().map(|s| run(s, (s + step).min(n))).collect()
    } else {
        vec![run(0, n)]
    };
    let kern_f32 = kernels();
    (0..nq)
        .map(|q| {
            let mut lb = TopK::new(p.k);
            for part in &parts {
                lb.merge(part.lb[q].clone());
            }
            let best = parts.iter().map(|part| part.best[q]).fold(f32::NEG_INFINITY, f32::max);
            let thr = needed(best, lb.threshold(), floor);
            let query = &queries[q * dims..(q + 1) * dims];
            let mut top = std::mem::replace(&mut tail[q], TopK::new(0));
            for part in &parts {
                for &(r, ub) in &part.cands[q] {
                    if ub >= thr {
                        top.push((kern_f32.dot)(query, st.vectors.row(r as usize)), r);
                    }
                }
            }
            top.into_sorted_vec().into_iter().map(|(score, row)| Hit { row, score }).collect()
        })
        .collect()
}

/// "Retrieve without query": highest significance first, newest first on ties, from the
/// ordered index (no sort per call).
pub fn top_by_significance(st: &State, p: &ScanParams, count: usize) -> Vec<u32> {
    let Some(ns) = st.ns_id(p.namespace) else { return Vec::new() };
    let ctx = Ctx { st, p, ns, k: kernels(), queries: &[], nq: 0, check_filter: p.filter.is_some_and(|f| !f.is_empty()), all_pass: false };
    let mut out = Vec::with_capacity(count.min(1024));
    for &(_, _, std::cmp::Reverse(row)) in &st.namespaces[ns as usize].by_sig {
        if out.len() >= count {
            break;
        }
        if st.sig_col[row as usize] < p.min_significance {
            break;
        }
        if ctx.pass(row as usize) {
            out.push(row);
        }
    }
    out
}

/// Visible rows of a namespace matching the filters, in log order (for `list`, delete by
/// filter and export).
pub fn matching_rows(st: &State, p: &ScanParams) -> Vec<u32> {
    let Some(ns) = st.ns_id(p.namespace) else { return Vec::new() };
    let ctx = Ctx { st, p, ns, k: kernels(), queries: &[], nq: 0, check_filter: p.filter.is_some_and(|f| !f.is_empty()), all_pass: false };
    st.namespaces[ns as usize].rows.iter().copied().filter(|&r| ctx.pass(r as usize)).collect()
}

#[cfg(test)]
mod q8_tests {
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
    fn oracle(st: &State, q: &[f32], p: &ScanParams) -> Vec<Hit> {
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
        let Some(kern) = q8::kernel() else { return };
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
