//! The query planner: exact pass or graph traversal for a vector search.
//!
//! - `exact: true`, a recency half-life (it re-ranks by age, which no graph orders by), or a
//!   namespace without a graph (fewer than `ann_min_rows` rows, default
//!   [`crate::ann::ANN_MIN_ROWS`]) → the exact pass.
//! - A metadata filter whose indexed terms leave fewer than `ann_min_rows` candidate rows, or
//!   fewer than 1 in [`MAX_EF_WIDEN`] of the namespace (the posting lists' cardinalities are
//!   known) → the exact pass over those candidates: cheaper than a traversal that must walk
//!   past the rows the filter rejects, and exact.
//! - Otherwise → the graph, filter-aware: every node is a waypoint, only rows passing the
//!   filter, TTL, significance and time conditions are collected, with the candidate list
//!   widened by 1.5× the inverse of the filter's selectivity (at most [`MAX_EF_WIDEN`]×).

use roaring::RoaringBitmap;

use super::scan::{Ctx, Hit, ScanParams};
use super::state::State;
use crate::ann::{search_ns, AnnSet, ANN_EF};
use crate::search::kernels;

/// Most the candidate list of a filtered traversal is widened.
const MAX_EF_WIDEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanKind {
    Exact,
    Graph,
}

impl PlanKind {
    pub fn name(self) -> &'static str {
        match self {
            PlanKind::Exact => "exact",
            PlanKind::Graph => "graph",
        }
    }
}

/// Which plan ran for a search and why (the `explain` of `retrieve`).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub kind: PlanKind,
    pub reason: &'static str,
    /// Rows the metadata filter's indexed terms leave, when it has any.
    pub filter_candidates: Option<u64>,
    /// The graph's candidate list (graph plans).
    pub ef: usize,
    /// Rows or graph nodes scored, summed over the queries (graph plans; the exact pass
    /// scores every passing row).
    pub scored: usize,
}

/// Rows of namespace `ns` the indexed terms of the filter allow (`None`: no filter, or none
/// of its terms is indexed).
pub(super) fn filter_candidates(st: &State, ns: u32, p: &ScanParams) -> Option<RoaringBitmap> {
    let f = p.filter.filter(|f| !f.is_empty())?;
    let nsd = &st.namespaces[ns as usize];
    let mut cand: Option<RoaringBitmap> = None;
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
    cand
}

/// Choose the plan for a search (`exact`: the caller forces the exact pass).
pub(super) fn choose(st: &State, ann: &AnnSet, p: &ScanParams, exact: bool) -> Plan {
    let plan = |kind, reason| Plan { kind, reason, filter_candidates: None, ef: 0, scored: 0 };
    if exact {
        return plan(PlanKind::Exact, "exact: true");
    }
    if p.recency_half_life_s.is_some() {
        return plan(PlanKind::Exact, "recency re-ranks every row");
    }
    let Some(ns) = st.ns_id(p.namespace) else { return plan(PlanKind::Exact, "empty namespace") };
    if ann.graph(ns).is_none() {
        return plan(PlanKind::Exact, "namespace below the graph threshold");
    }
    if ann.serving(st, ns).is_none() {
        return plan(PlanKind::Exact, "graph still being built");
    }
    let live = st.namespaces[ns as usize].live.max(1);
    let cand = filter_candidates(st, ns, p).map(|c| c.len());
    if let Some(c) = cand {
        // Fewer candidates than the graph threshold, or than the nodes a traversal widened
        // to its limit would have to walk past to find them: scoring them is cheaper.
        if (c as usize) < ann.min_rows.max(live / MAX_EF_WIDEN) {
            return Plan { filter_candidates: cand, ..plan(PlanKind::Exact, "selective filter") };
        }
    }
    // Filters without indexed terms (ranges, $exists…) widen the list as much as we allow.
    let widen = match (p.filter.is_some_and(|f| !f.is_empty()), cand) {
        (false, _) => 1,
        // 1.5× the inverse selectivity: at 30% a list of 4 × 96 missed 2% of the top 10
        // at 100k in `pnpm bench scale` (docs/search.md), 5 × 96 reached 0.992.
        (true, Some(c)) => (live * 3 / 2).div_ceil(c.max(1) as usize).clamp(1, MAX_EF_WIDEN),
        (true, None) => MAX_EF_WIDEN / 4,
    };
    let ef = ANN_EF.max(p.k) * widen;
    Plan { kind: PlanKind::Graph, reason: if widen > 1 { "filtered graph traversal" } else { "graph" }, filter_candidates: cand, ef, scored: 0 }
}

/// Run a graph plan: per query, the graph's top k of the rows that pass, plus the rows it
/// does not cover yet scored exactly; `min_score` applied to the result.
pub(super) fn run_graph(st: &State, ann: &AnnSet, queries: &[f32], nq: usize, p: &ScanParams, plan: &mut Plan) -> Vec<Vec<Hit>> {
    let ns = st.ns_id(p.namespace).expect("graph plans have a namespace");
    let g = ann.graph(ns).expect("graph plans have a graph");
    let check_filter = p.filter.is_some_and(|f| !f.is_empty());
    let ctx = Ctx { st, p, ns, k: kernels(), queries, nq, check_filter, all_pass: false };
    // The rows the filter's indexed terms allow (a superset of those it passes): a bitmap
    // probe turns most rejected nodes away before the filter reads their metadata, which
    // made a 30% filter's traversal several times slower per node than an unfiltered one.
    let cand = if check_filter { filter_candidates(st, ns, p) } else { None };
    let pass = |r: u32| cand.as_ref().is_none_or(|c| c.contains(r)) && ctx.pass(r as usize);
    let dims = st.dims;
    (0..nq)
        .map(|q| {
            let (found, scored) = search_ns(g, st, ns, &queries[q * dims..(q + 1) * dims], p.k, plan.ef, &pass);
            plan.scored += scored;
            found.into_iter().filter(|(s, _)| p.min_score.is_none_or(|m| *s >= m)).map(|(score, row)| Hit { row, score }).collect()
        })
        .collect()
}
