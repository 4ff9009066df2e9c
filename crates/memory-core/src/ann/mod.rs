//! Approximate nearest-neighbour search: one HNSW graph per namespace ([`hnsw`]).
//!
//! The graph of a namespace covers a prefix of its row list (`covered` positions of
//! `Namespace::rows`); rows after it (just stored, or not indexed yet after open) are scored
//! exactly by whoever searches, so a search is always over every row. The writer extends the
//! graphs after every put group ([`build`]: in parallel, with the candidates the
//! significance pass found) and, after open, while idle; it writes them beside the log at
//! close and open loads them ([`persist`]), rebuilding only what the file does not hold. Only namespaces of at least [`ANN_MIN_ROWS`] rows get a graph:
//! below that the exact int8 pass is as fast and exact.

mod build;
pub mod codes;
pub mod persist;
pub mod hnsw;
#[cfg(test)]
mod persist_tests;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use crate::search::{kernels, TopK};
use crate::store::state::State;
pub use build::{Candidates, MAX_PRESEARCHED};
pub use hnsw::{Hnsw, HnswParams, RowSource, Traversal};

/// Namespaces with fewer rows than this are searched exactly and have no graph. Set by the
/// cost of writes (docs/search.md, "Where the graph pays"): keeping a graph costs each stored
/// memory a beam search and its links, ~260 µs at 200k × 384 on 2 cores (measured with the
/// f32 beam; the int8 beam is cheaper, to be measured quiet before this moves), where the exact
/// significance pass of a 1,000-item batch costs ~160 µs a memory at 200k and grows with
/// the namespace; the two meet near 400k. Queries gain from the graph far earlier (0.3 ms
/// against ~2.5 ms exact at 100k), so a read-heavy store lowers it (`annMinRows`).
pub const ANN_MIN_ROWS: usize = 200_000;

/// The candidate list of a top-k graph search: `max(k, ANN_EF)` (recall@10 0.998 at 100k
/// clustered rows in the measurements of docs/search.md, 0.993 at 64: the margin is for
/// larger graphs).
pub const ANN_EF: usize = 96;

/// A new memory's candidate neighbours, found by the significance pass's graph search
/// before it was stored, for its insertion into the graph (one search per memory, not two).
pub struct Presearched {
    /// The graph's node count when they were found: they are used only if it is unchanged.
    pub graph_len: usize,
    pub cands: Candidates,
    /// Its dots with the new memories stored before it in the same group and namespace, in
    /// order (the significance pass computed them; empty if it did not).
    pub earlier: Vec<f32>,
}

/// A namespace's graph and how much of its row list it covers.
pub struct NsGraph {
    pub graph: Hnsw,
    pub covered: usize,
}

/// The graphs of every namespace (by namespace id; `None` below [`ANN_MIN_ROWS`]).
pub struct AnnSet {
    pub graphs: Vec<Option<NsGraph>>,
    pub params: HnswParams,
    /// Namespaces with at least this many live rows get a graph ([`ANN_MIN_ROWS`] unless
    /// the store was opened with another).
    pub min_rows: usize,
}

impl AnnSet {
    pub fn new(params: HnswParams, min_rows: usize) -> Self {
        AnnSet { graphs: Vec::new(), params, min_rows: min_rows.max(1) }
    }

    pub fn graph(&self, ns: u32) -> Option<&NsGraph> {
        self.graphs.get(ns as usize).and_then(|g| g.as_ref())
    }

    /// The graph of namespace `ns` if it covers enough of it to serve: while more than
    /// `min_rows` rows wait (just after open, or when a namespace first crosses the
    /// threshold) the rows it leaves would be scored one by one, and the exact multi-row
    /// pass is faster.
    pub fn serving(&self, st: &State, ns: u32) -> Option<&NsGraph> {
        self.graph(ns).filter(|g| st.namespaces[ns as usize].rows.len() - g.covered <= self.min_rows)
    }

    /// Forget every graph (compaction renumbers the rows); the writer rebuilds them.
    pub fn clear(&mut self) {
        self.graphs.clear();
    }

    /// Index up to `max` more rows of the namespaces big enough for a graph; returns how
    /// many were indexed (0 once everything is covered). `pre`: candidates the significance
    /// pass found for rows just stored (by row), used where the graph has not changed since.
    pub fn catch_up(&mut self, st: &State, max: usize, mut pre: HashMap<u32, Presearched>) -> usize {
        let k = kernels();
        let mut done = 0;
        if self.graphs.len() < st.namespaces.len() {
            self.graphs.resize_with(st.namespaces.len(), || None);
        }
        for (i, ns) in st.namespaces.iter().enumerate() {
            if done >= max {
                break;
            }
            let slot = &mut self.graphs[i];
            if slot.is_none() {
                if ns.live < self.min_rows {
                    continue;
                }
                *slot = Some(NsGraph { graph: Hnsw::new(self.params), covered: 0 });
            }
            let g = slot.as_mut().unwrap();
            let mut batch = Vec::new();
            while g.covered < ns.rows.len() && done + batch.len() < max {
                let r = ns.rows[g.covered];
                g.covered += 1;
                // Rows already dead when reached need no node (nothing can find them).
                if st.live_col[r as usize] {
                    batch.push(r);
                }
            }
            let len = g.graph.len();
            let found = batch.iter().filter_map(|r| pre.remove(r).filter(|p| p.graph_len == len).map(|p| (*r, (p.cands, p.earlier)))).collect();
            g.graph.insert_batch_with(&batch, found, &st.vectors, k);
            done += batch.len();
        }
        done
    }

    /// Bytes held by every graph.
    pub fn bytes(&self) -> usize {
        self.graphs.iter().flatten().map(|g| g.graph.bytes()).sum()
    }

    /// Rows not covered yet, over every namespace that has a graph or should have one, and
    /// nodes of a graph loaded at open whose int8 codes are still to be encoded.
    pub fn pending(&self, st: &State) -> usize {
        st.namespaces
            .iter()
            .enumerate()
            .map(|(i, ns)| match self.graph(i as u32) {
                Some(g) => ns.rows.len() - g.covered + codes::nodes_without_codes(&g.graph),
                None if ns.live >= self.min_rows => ns.rows.len(),
                None => 0,
            })
            .sum()
    }
}

/// Top `k_out` of one query in namespace `ns` through its graph, plus the rows the graph
/// does not cover yet scored exactly; `pass(row)` says which rows may be returned. Best
/// first, ties → newer row. Returns the hits and the nodes the traversal scored.
pub fn search_ns(g: &NsGraph, st: &State, ns: u32, q: &[f32], k_out: usize, ef: usize, pass: &dyn Fn(u32) -> bool) -> (Vec<(f32, u32)>, usize) {
    let k = kernels();
    let (found, t) = g.graph.search(q, k_out, ef, &st.vectors, k, pass);
    let mut top = TopK::new(k_out);
    for (s, r) in found {
        top.push(s, r);
    }
    let tail = &st.namespaces[ns as usize].rows[g.covered..];
    for &r in tail {
        if pass(r) {
            top.push((k.dot)(q, st.vectors.row(r as usize)), r);
        }
    }
    (top.into_sorted_vec(), t.visited + tail.len())
}
