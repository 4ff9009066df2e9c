//! Exact top-k search over a [`State`]: filters applied inside the scan, many queries per
//! pass, both cores for large stores.
//!
//! Candidate rows come from the cheapest source available:
//! - a metadata filter the posting lists can answer (equality, `$in`, `$contains`, combined by
//!   `$and` / `$or` / `$not`) → the rows they give (roaring), with no per-row filter check when
//!   the answer is exact;
//! - a namespace holding a small share of the store → that namespace's row list;
//! - otherwise a dense scan over all rows, checking the namespace column per row.
//!
//! Rows failing a filter are never read from the vector arena, so a selective filter makes
//! the scan faster. Each query keeps a bounded top-k heap. The int8 pre-pass that serves
//! unfiltered passes is in `store/prepass.rs`.

use rayon::prelude::*;
use roaring::RoaringBitmap;

use crate::filter::{Candidates, Filter, IndexKey, PostingIndex};
use crate::search::{kernels, Kernels, TopK};
use crate::store::state::{sig_key, State, CHUNK_ROWS};

/// Rows per inner block: small enough that a block of rows stays in L1/L2 while every
/// query of a multi-query pass is scored against it.
pub(super) const BLOCK: usize = 128;
/// Rows per parallel task.
const TASK_ROWS: usize = 32768;
const _: () = assert!(CHUNK_ROWS.is_multiple_of(TASK_ROWS) || TASK_ROWS.is_multiple_of(CHUNK_ROWS));
const _: () = assert!(CHUNK_ROWS.is_multiple_of(BLOCK) && TASK_ROWS.is_multiple_of(BLOCK));

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
    /// Take the exact pass even where the namespace's graph could serve.
    pub exact: bool,
    /// The graph's candidate list for this search instead of the planner's (`store/plan.rs`;
    /// 1…[`crate::store::plan::MAX_EF`], checked by [`crate::store::plan::check_ef`]);
    /// ignored by the exact plan.
    pub ef: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub row: u32,
    pub score: f32,
}

/// One pass over the rows: what it scores and which rows it accepts.
pub(super) struct Ctx<'a> {
    pub st: &'a State,
    pub p: &'a ScanParams<'a>,
    pub ns: u32,
    pub k: &'static Kernels,
    pub queries: &'a [f32],
    pub nq: usize,
    pub check_filter: bool,
    /// Every row passes (one namespace, nothing deleted or expiring, no filters): the dense
    /// scan then skips the per-row checks.
    pub all_pass: bool,
}

impl<'a> Ctx<'a> {
    /// Whether row `r` is one the pass may return.
    #[inline]
    pub fn pass(&self, r: usize) -> bool {
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
            return f.matches_packed(st.rows[r].metadata());
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
    // Candidate rows from the inverted index, when the filter has indexable conditions; an
    // exact answer needs no per-row filter check.
    let cand = filter.and_then(|f| f.candidates(&NsPostings { st, ns }));
    let check_filter = filter.is_some() && !cand.as_ref().is_some_and(|c| c.exact);
    let ctx = Ctx { st, p, ns, k: kernels(), queries, nq, check_filter, all_pass };

    let heaps = if let Some(c) = cand {
        let list: Vec<u32> = c.rows.iter().collect();
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

/// "Retrieve without query": highest significance first, newest first on ties, from the
/// ordered index (no sort per call) — or, when the posting lists narrow the filter to a small
/// share of the namespace, by sorting those few rows.
pub fn top_by_significance(st: &State, p: &ScanParams, count: usize) -> Vec<u32> {
    let Some(ns) = st.ns_id(p.namespace) else { return Vec::new() };
    let (ctx, cand) = filtered_ctx(st, p, ns);
    let nsd = &st.namespaces[ns as usize];
    if let Some(c) = cand.as_ref().filter(|c| c.rows.len() * SELECTIVE < nsd.live as u64) {
        // Few candidates: sort them rather than walk the whole ordered index past the rest.
        let mut rows: Vec<u32> = c.rows.iter().filter(|&r| ctx.pass(r as usize)).collect();
        rows.sort_unstable_by_key(|&r| sig_key(st.sig_col[r as usize], st.ts_col[r as usize], r));
        rows.truncate(count);
        return rows;
    }
    if st.defer_sig_index {
        return top_from_columns(st, p, ns, &ctx, cand.as_ref(), count);
    }
    let mut out = Vec::with_capacity(count.min(1024));
    for &(_, _, std::cmp::Reverse(row)) in &nsd.by_sig {
        if out.len() >= count {
            break;
        }
        if st.sig_col[row as usize] < p.min_significance {
            break;
        }
        if cand.as_ref().is_none_or(|c| c.rows.contains(row)) && ctx.pass(row as usize) {
            out.push(row);
        }
    }
    out
}

/// [`top_by_significance`] while the ordered index is not built (after an open, until the
/// writer's idle work builds it): the same rows from the columns, by selection instead of a
/// walk. The walk stops at the first live row of the index whose significance is below
/// `min_significance`, so only rows ordered before it count here too.
fn top_from_columns(st: &State, p: &ScanParams, ns: u32, ctx: &Ctx, cand: Option<&Candidates>, count: usize) -> Vec<u32> {
    if count == 0 {
        return Vec::new();
    }
    let nsd = &st.namespaces[ns as usize];
    let key = |r: u32| sig_key(st.sig_col[r as usize], st.ts_col[r as usize], r);
    let stop = nsd.rows.par_iter().copied().filter(|&r| st.live_col[r as usize] && st.sig_col[r as usize] < p.min_significance).map(key).min();
    let mut rows: Vec<u32> = nsd
        .rows
        .par_iter()
        .copied()
        .filter(|&r| stop.is_none_or(|s| key(r) < s) && cand.is_none_or(|c| c.rows.contains(r)) && ctx.pass(r as usize))
        .collect();
    if rows.len() > count {
        rows.select_nth_unstable_by_key(count - 1, |&r| key(r));
        rows.truncate(count);
    }
    rows.sort_unstable_by_key(|&r| key(r));
    rows
}

/// Visible rows of a namespace matching the filters, in log order (for `list`, delete by
/// filter and export).
pub fn matching_rows(st: &State, p: &ScanParams) -> Vec<u32> {
    let Some(ns) = st.ns_id(p.namespace) else { return Vec::new() };
    let (ctx, cand) = filtered_ctx(st, p, ns);
    match cand {
        Some(c) => c.rows.iter().filter(|&r| ctx.pass(r as usize)).collect(),
        None => st.namespaces[ns as usize].rows.iter().copied().filter(|&r| ctx.pass(r as usize)).collect(),
    }
}

/// A namespace's candidates take the sorting path of [`top_by_significance`] when they are
/// fewer than 1/SELECTIVE of its rows.
const SELECTIVE: u64 = 8;

/// The pass context of a scan without queries, and the rows its filter can match (from the
/// posting lists; `None` when they cannot narrow it).
fn filtered_ctx<'a>(st: &'a State, p: &'a ScanParams<'a>, ns: u32) -> (Ctx<'a>, Option<Candidates>) {
    let filter = p.filter.filter(|f| !f.is_empty());
    let cand = filter.and_then(|f| f.candidates(&NsPostings { st, ns }));
    let check_filter = filter.is_some() && !cand.as_ref().is_some_and(|c| c.exact);
    (Ctx { st, p, ns, k: kernels(), queries: &[], nq: 0, check_filter, all_pass: false }, cand)
}

/// One namespace's posting lists, as the filter planner reads them.
pub(super) struct NsPostings<'a> {
    pub st: &'a State,
    pub ns: u32,
}

impl PostingIndex for NsPostings<'_> {
    fn postings(&self, path: &str, key: &IndexKey) -> Option<&RoaringBitmap> {
        self.st.namespaces[self.ns as usize].index.get(path)?.get(key)
    }

    fn universe(&self) -> RoaringBitmap {
        let rows = &self.st.namespaces[self.ns as usize].rows;
        if rows.len() == self.st.len() {
            let mut all = RoaringBitmap::new();
            all.insert_range(0..rows.len() as u32);
            all
        } else {
            // The namespace's row list is in row order.
            RoaringBitmap::from_sorted_iter(rows.iter().copied()).unwrap_or_else(|_| rows.iter().copied().collect())
        }
    }
}
