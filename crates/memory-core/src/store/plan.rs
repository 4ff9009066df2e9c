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
//!   filter, TTL, significance and time conditions are collected, with a candidate list
//!   ([`filtered_ef`]) widened by 1.5× the inverse of the filter's selectivity (at most
//!   [`MAX_EF_WIDEN`]×) and by the square root of the rows the filter leaves over
//!   [`EF_REFERENCE_CANDIDATES`]: a filter that follows the clusters of the data leaves the
//!   rows it passes scattered away from a query, and the list must grow with them to keep
//!   recall@10 ≥ 0.99 (docs/search.md, "The planner").
//! - Unless that list is so long that the exact pass over the filter's candidates costs less
//!   ([`EXACT_ROWS_PER_EF`]) → the exact pass.
//! - Without a filter → the graph with a list of [`ANN_EF`] grown by the square root of the
//!   namespace's rows past [`GRAPH_EF_REFERENCE_ROWS`] ([`graph_ef`]): at 5M rows of clustered
//!   data 96 found 0.8865 of the top 10 and 215 finds 0.9465 (docs/search.md, "The planner").
//! - A search's own `ef` (1…[`MAX_EF`], [`check_ef`]) replaces either list; the exact pass
//!   ignores it.

use roaring::RoaringBitmap;

use super::scan::{Ctx, Hit, ScanParams};
use super::state::State;
use crate::ann::{search_ns, AnnSet, ANN_EF};
use crate::error::{Error, Result};
use crate::search::kernels;

/// Most the candidate list of a filtered traversal is widened for the filter's selectivity.
const MAX_EF_WIDEN: usize = 16;

/// Rows a filter leaves at which a list widened for its selectivity alone (ef 480 at 30%) kept
/// recall@10 ≥ 0.99 (`pnpm bench scale`, 100k rows, a filter following the clusters: 0.992).
/// With 60k it reached 0.98, with 300k (1M rows) 0.962, with 1.5M (5M rows) 0.86: the list
/// grows with the square root of the rows past this.
pub const EF_REFERENCE_CANDIDATES: usize = 30_000;

/// Rows the exact pass scores in the time a filtered traversal spends per slot of its list:
/// a traversal scores ~23 nodes per slot (int8 codes, ~0.66 µs a node at 1M × 384, random
/// reads), the exact pass a candidate row in ~0.095 µs (f32, sequential; both from
/// `pnpm bench scale` at 1M: 7.3 ms at ef 480, 28.5 ms for 300k candidates). A filter leaving
/// fewer rows than this times the list is scored exactly: cheaper, and exact.
pub const EXACT_ROWS_PER_EF: usize = 160;

/// Most slots of a traversal's list: the planner's longest, and the most a search's own `ef`
/// may ask for (a list this long scores ~300k nodes, the cost of an exact pass over ~2M rows).
pub const MAX_EF: usize = 16_384;

/// Refuse a search's own `ef` outside 1…[`MAX_EF`].
pub fn check_ef(ef: Option<usize>) -> Result<()> {
    match ef {
        Some(e) if !(1..=MAX_EF).contains(&e) => Err(Error::invalid(format!("ef must be an integer from 1 to {MAX_EF}, got {e}"))),
        _ => Ok(()),
    }
}

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
    // A search's own `ef` replaces the planner's list (never below k: the list holds the k).
    let own_ef = p.ef.map(|e| e.max(p.k));
    if p.filter.is_none_or(|f| f.is_empty()) {
        let ef = own_ef.unwrap_or(ANN_EF.max(p.k));
        return Plan { kind: PlanKind::Graph, reason: "graph", filter_candidates: None, ef, scored: 0 };
    }
    let ef = own_ef.unwrap_or_else(|| filtered_ef(p.k, live, cand.map(|c| c as usize)));
    if let Some(c) = cand {
        if exact_is_cheaper(c as usize, ef) {
            return Plan { filter_candidates: cand, ..plan(PlanKind::Exact, "exact pass cheaper than a filtered traversal") };
        }
    }
    Plan { kind: PlanKind::Graph, reason: "filtered graph traversal", filter_candidates: cand, ef, scored: 0 }
}

/// Whether the exact pass over a filter's `cand` candidate rows costs less than a filtered
/// traversal with a list of `ef` ([`EXACT_ROWS_PER_EF`]).
fn exact_is_cheaper(cand: usize, ef: usize) -> bool {
    cand < ef.saturating_mul(EXACT_ROWS_PER_EF)
}

/// The candidate list of a filtered traversal of a namespace of `live` rows for the top `k`,
/// given the rows the filter's indexed terms leave (`None`: no indexed term, so unknown):
/// `max(k, ANN_EF)` widened by 1.5× the inverse selectivity (at most [`MAX_EF_WIDEN`]×; 4×
/// when unknown) and by √(candidates ÷ [`EF_REFERENCE_CANDIDATES`]) (the namespace's rows
/// when unknown), at most [`MAX_EF`].
pub(super) fn filtered_ef(k: usize, live: usize, cand: Option<usize>) -> usize {
    let live = live.max(1);
    let (widen, rows) = match cand {
        // 1.5× the inverse selectivity: at 30% a list of 4 × 96 missed 2% of the top 10
        // at 100k in `pnpm bench scale` (docs/search.md), 5 × 96 reached 0.992.
        Some(c) => ((live * 3 / 2).div_ceil(c.max(1)).clamp(1, MAX_EF_WIDEN), c),
        // Filters without indexed terms (ranges, $exists…) widen the list as much as we allow.
        None => (MAX_EF_WIDEN / 4, live),
    };
    let grow = (rows as f64 / EF_REFERENCE_CANDIDATES as f64).sqrt().max(1.0);
    ((ANN_EF.max(k) * widen) as f64 * grow).ceil().min(MAX_EF as f64) as usize
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filtered_list_is_widened_for_selectivity_and_grows_with_the_square_root_of_the_rows_left() {
        // Up to the reference, selectivity alone: 30% of 100k → 5 × 96, as before.
        assert_eq!(filtered_ef(10, 100_000, Some(30_000)), 480);
        assert_eq!(filtered_ef(10, 50_000, Some(15_000)), 480);
        // 30% of 1M and of 5M: √10 and √50 more.
        assert_eq!(filtered_ef(10, 1_000_000, Some(300_000)), (480.0 * 10f64.sqrt()).ceil() as usize);
        assert_eq!(filtered_ef(10, 5_000_000, Some(1_500_000)), (480.0 * 50f64.sqrt()).ceil() as usize);
        // A larger k widens from k; a filter passing everything is not widened for selectivity.
        assert_eq!(filtered_ef(200, 100_000, Some(30_000)), 1000);
        assert_eq!(filtered_ef(10, 20_000, Some(20_000)), 96 * 2);
        // Unknown candidates (no indexed term): 4×, grown by the namespace's rows.
        assert_eq!(filtered_ef(10, 30_000, None), 384);
        assert_eq!(filtered_ef(10, 120_000, None), 768);
        // Bounded.
        assert_eq!(filtered_ef(10, 1 << 31, Some(1 << 30)), MAX_EF);
    }

    #[test]
    fn a_search_s_own_ef_must_be_from_1_to_max_ef() {
        assert!(check_ef(None).is_ok());
        assert!(check_ef(Some(1)).is_ok());
        assert!(check_ef(Some(MAX_EF)).is_ok());
        for bad in [0, MAX_EF + 1, usize::MAX] {
            let e = check_ef(Some(bad)).unwrap_err();
            assert!(matches!(e, Error::InvalidRequest(_)) && e.to_string().contains("ef must be an integer from 1 to 16384"), "{e}");
        }
    }

    #[test]
    fn the_exact_pass_takes_filters_whose_traversal_would_cost_more() {
        // Where the list's cost in exact rows passes the candidates, exact is cheaper: 30% of
        // 100k (ef 480 ≈ 77k rows of exact work > 30k) goes exact; 30% of 1M (ef 1,518 ≈ 243k
        // < 300k) and of 5M take the graph.
        let exact_cheaper = |live: usize, c: usize| exact_is_cheaper(c, filtered_ef(10, live, Some(c)));
        assert!(exact_cheaper(100_000, 30_000));
        assert!(exact_cheaper(200_000, 60_000));
        assert!(!exact_cheaper(1_000_000, 300_000));
        assert!(!exact_cheaper(5_000_000, 1_500_000));
        assert!(!exact_cheaper(5_000_000, 4_000_000));
    }
}
