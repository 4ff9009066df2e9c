//! A lean HNSW graph (Malkov & Yashunin) over the store's own f32 rows.
//!
//! Written here rather than taken from a crate (docs/search.md has the measurements): the
//! graph holds row numbers and its nodes' int8 codes ([`super::codes`]) — the f32 vectors
//! stay in the store's arena, read through [`RowSource`] — and a traversal scores the nodes
//! it visits on the int8 codes (VNNI), then its final candidate list with the store's f32
//! `dot` ([`Scorer`]), so returned scores are exact. Cosine similarity on normalized
//! vectors: higher is nearer.
//!
//! Nodes are never removed: a deleted or expired memory stays a waypoint of the graph and
//! the caller's `pass` keeps it out of results (the graph is rebuilt at compaction, which
//! drops dead rows). The same `pass` makes traversal filter-aware: every node is expanded,
//! only passing nodes enter the result list (the ACORN-1 / Qdrant approach without extra
//! edges; the planner sends very selective filters to the exact scan instead).

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::Arc;

use parking_lot::Mutex;
use rayon::prelude::*;

use super::codes::{self, NodeCodes, QueryCodes, SeedPanels};
use crate::search::q8::DotPairQ8;
use crate::search::{Kernels, TopK};

/// Where the graph reads a row's vector.
pub trait RowSource {
    fn row(&self, r: u32) -> &[f32];
}

impl RowSource for crate::store::state::Vectors {
    #[inline]
    fn row(&self, r: u32) -> &[f32] {
        crate::store::state::Vectors::row(self, r as usize)
    }
}

/// Graph parameters.
#[derive(Debug, Clone, Copy)]
pub struct HnswParams {
    /// Links per node on the upper levels (and links chosen for a new node on every level).
    pub m: usize,
    /// Most links per node on level 0.
    pub m0: usize,
    /// Candidate list of an insertion.
    pub ef_construction: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams { m: 16, m0: 32, ef_construction: 96 }
    }
}

/// A similarity with a total order (for the heaps).
#[derive(Clone, Copy, PartialEq, Debug)]
pub(super) struct Sim(pub(super) f32);
impl Eq for Sim {}
impl PartialOrd for Sim {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Sim {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.total_cmp(&o.0)
    }
}

thread_local! {
    /// Visited marks of a traversal: a generation stamp per node, so clearing is free.
    static VISITED: RefCell<(Vec<u32>, u32)> = const { RefCell::new((Vec::new(), 0)) };
}

/// What one traversal did (for `explain` and the tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traversal {
    /// Nodes scored.
    pub visited: usize,
}

pub struct Hnsw {
    pub(super) params: HnswParams,
    /// Node → store row.
    pub(super) rows: Vec<u32>,
    /// Level-0 links, `m0` slots per node, and how many of them are used.
    pub(super) l0: Vec<u32>,
    pub(super) l0_len: Vec<u8>,
    /// Node → index into `upper` (`u32::MAX`: the node is on level 0 only).
    pub(super) upper_of: Vec<u32>,
    /// Links of the nodes above level 0: per node, per level 1…top.
    pub(super) upper: Vec<Vec<Vec<u32>>>,
    pub(super) entry: Option<u32>,
    pub(super) top_level: usize,
    pub(super) rng: u64,
    /// Node → int8 code, where the graph traverses on them ([`codes::kernel`]).
    pub(super) codes: Option<NodeCodes>,
    /// The seed sample ([`Hnsw::seed_sample`]), made by the first search that needs it and
    /// again once the graph has grown by a quarter.
    seeds: Mutex<Arc<SeedSample>>,
    /// Whether an insertion's beam starts from the seeds too (always, but for the tests that
    /// compare the graph built without).
    pub(super) seeded_inserts: bool,
}

/// How many of the best-scoring seed nodes a search starts level 0 from, beside the node its
/// greedy descent reached.
pub const SEEDS: usize = 8;

/// The graph's nodes on level 2 and above (a random sample of about one node in m², ~19,500
/// of 5M) and the graph's size when they were listed; with their int8 codes in panels
/// ([`SeedPanels`]) where the graph traverses on codes.
#[derive(Default)]
struct SeedSample {
    graph_len: usize,
    nodes: Vec<u32>,
    panels: Option<SeedPanels>,
}

/// Scores nodes against one query: `approx` for the beam (the int8 codes where the graph has
/// them, else the f32 rows), `rescore` for the final list (always f32).
pub(super) struct Scorer<'a, S: RowSource + ?Sized> {
    g: &'a Hnsw,
    q: &'a [f32],
    src: &'a S,
    k: &'a Kernels,
    q8: Option<(QueryCodes, DotPairQ8, &'a NodeCodes)>,
}

impl<'a, S: RowSource + ?Sized> Scorer<'a, S> {
    pub(super) fn new(g: &'a Hnsw, q: &'a [f32], src: &'a S, k: &'a Kernels) -> Self {
        let q8 = match (&g.codes, codes::kernel()) {
            // Codes for every node (a graph decoded but not yet encoded has none).
            (Some(c), Some(dot)) if c.len() == g.rows.len() => c.query(q).map(|qc| (qc, dot, c)),
            _ => None,
        };
        Scorer { g, q, src, k, q8 }
    }

    /// Scores against node `node`'s own vector (for choosing links): its int8 code where the
    /// graph traverses on them, else its f32 row.
    pub(super) fn for_node(g: &'a Hnsw, node: u32, src: &'a S, k: &'a Kernels) -> Self {
        let q = src.row(g.rows[node as usize]);
        let q8 = match (&g.codes, codes::kernel()) {
            (Some(c), Some(dot)) if c.len() == g.rows.len() => Some((c.node_query(node), dot, c)),
            _ => None,
        };
        Scorer { g, q, src, k, q8 }
    }

    /// Whether `approx` is the f32 dot itself (then nothing needs rescoring).
    pub(super) fn is_exact(&self) -> bool {
        self.q8.is_none()
    }

    /// Start loading what [`Scorer::approx`] of `node` will read (int8 codes only: an f32
    /// row is read through the row source, which may be a mapped file).
    #[inline]
    pub(super) fn prefetch(&self, node: u32) {
        if let Some((_, _, c)) = &self.q8 {
            c.prefetch(node);
        }
    }

    #[inline]
    pub(super) fn approx(&self, node: u32) -> f32 {
        match &self.q8 {
            Some((qc, dot, c)) => c.approx(qc, *dot, node),
            None => self.exact(node),
        }
    }

    #[inline]
    pub(super) fn exact(&self, node: u32) -> f32 {
        (self.k.dot)(self.q, self.src.row(self.g.rows[node as usize]))
    }

    /// `list` (node ids) scored in f32, best first; as it is when the beam was f32.
    pub(super) fn rescore(&self, list: &[(f32, u32)]) -> Vec<(f32, u32)> {
        if self.is_exact() {
            return list.to_vec();
        }
        let mut out: Vec<(f32, u32)> = list.iter().map(|&(_, n)| (self.exact(n), n)).collect();
        out.sort_by(|a, b| b.0.total_cmp(&a.0));
        out
    }
}

impl Hnsw {
    pub fn new(params: HnswParams) -> Self {
        assert!(params.m >= 2 && params.m0 >= params.m && params.m0 <= 255, "HNSW parameters");
        Hnsw { params, rows: Vec::new(), l0: Vec::new(), l0_len: Vec::new(), upper_of: Vec::new(), upper: Vec::new(), entry: None, top_level: 0, rng: 0x9E37_79B9_7F4A_7C15, codes: codes::kernel().map(|_| NodeCodes::default()), seeds: Mutex::default(), seeded_inserts: true }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// The store row of graph node `node`.
    pub fn row_of(&self, node: u32) -> u32 {
        self.rows[node as usize]
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Node `node`'s level-0 links (for the benchmarks' diagnostics).
    pub fn level0_links(&self, node: u32) -> &[u32] {
        self.links(node, 0)
    }

    /// Bytes the graph holds (links and the row map).
    pub fn bytes(&self) -> usize {
        let upper: usize = self.upper.iter().map(|l| l.iter().map(|x| x.capacity() * 4 + 24).sum::<usize>() + 24).sum();
        let codes = self.codes.as_ref().map_or(0, |c| c.bytes());
        let seeds = { let s = self.seeds.lock(); s.nodes.capacity() * 4 + s.panels.as_ref().map_or(0, |c| c.bytes()) };
        seeds + self.rows.capacity() * 4 + self.l0.capacity() * 4 + self.l0_len.capacity() + self.upper_of.capacity() * 4 + upper + codes
    }

    /// Whether traversals score on the int8 codes (the CPU has the kernel and every node has
    /// its code); otherwise they score on the f32 rows.
    pub fn int8_beam(&self) -> bool {
        codes::kernel().is_some() && self.codes.as_ref().is_some_and(|c| c.len() == self.rows.len())
    }

    /// Give every node its int8 code from its row (a graph decoded from its file has none:
    /// the codes are not persisted). Nothing to do where the graph traverses in f32.
    pub fn encode_nodes(&mut self, src: &(impl RowSource + Sync)) {
        if self.codes.is_some() {
            self.codes = Some(NodeCodes::encode_all(&self.rows, |r| src.row(r)));
        }
    }

    pub(super) fn links(&self, node: u32, level: usize) -> &[u32] {
        let n = node as usize;
        if level == 0 {
            let m0 = self.params.m0;
            &self.l0[n * m0..n * m0 + self.l0_len[n] as usize]
        } else {
            &self.upper[self.upper_of[n] as usize][level - 1]
        }
    }

    pub(super) fn set_links(&mut self, node: u32, level: usize, links: &[u32]) {
        let n = node as usize;
        if level == 0 {
            let m0 = self.params.m0;
            self.l0[n * m0..n * m0 + links.len()].copy_from_slice(links);
            self.l0_len[n] = links.len() as u8;
        } else {
            let l = &mut self.upper[self.upper_of[n] as usize][level - 1];
            l.clear();
            l.extend_from_slice(links);
        }
    }

    pub(super) fn random_level(&mut self) -> usize {
        // xorshift64*: reproducible graphs for a given insertion order.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        super::build::level_for(self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D), self.params.m)
    }

    pub(super) fn greedy<S: RowSource + ?Sized>(&self, sc: &Scorer<S>, mut ep: u32, mut ep_sim: f32, level: usize) -> (u32, f32) {
        loop {
            let mut moved = false;
            for &nb in self.links(ep, level) {
                let s = sc.approx(nb);
                if s > ep_sim {
                    (ep, ep_sim) = (nb, s);
                    moved = true;
                }
            }
            if !moved {
                return (ep, ep_sim);
            }
        }
    }

    /// Beam search on one level from `eps`: the `ef` best nodes that `pass` accepts (node
    /// ids, best first, with `sc.approx` scores), expanding through every node. Returns them
    /// and the nodes scored.
    pub(super) fn search_layer<S: RowSource + ?Sized>(&self, sc: &Scorer<S>, eps: &[(f32, u32)], ef: usize, level: usize, pass: &dyn Fn(u32) -> bool) -> (Vec<(f32, u32)>, usize) {
        VISITED.with(|v| {
            let mut guard = v.borrow_mut();
            let (marks, gen) = &mut *guard;
            if marks.len() < self.rows.len() {
                marks.resize(self.rows.len(), 0);
            }
            *gen = gen.wrapping_add(1);
            if *gen == 0 {
                marks.iter_mut().for_each(|m| *m = 0);
                *gen = 1;
            }
            let gen = *gen;
            let mut cands: BinaryHeap<(Sim, u32)> = BinaryHeap::new();
            let mut best: BinaryHeap<Reverse<(Sim, u32)>> = BinaryHeap::new();
            let mut scored = 0;
            for &(s, n) in eps {
                marks[n as usize] = gen;
                cands.push((Sim(s), n));
                if pass(self.rows[n as usize]) {
                    best.push(Reverse((Sim(s), n)));
                }
            }
            while best.len() > ef {
                best.pop();
            }
            while let Some((Sim(s), n)) = cands.pop() {
                if best.len() >= ef && s < best.peek().unwrap().0 .0 .0 {
                    break;
                }
                // The unvisited neighbours first, each one's code asked for as it is found
                // (see `NodeCodes::prefetch`), then scored. (Lists hold at most m0 ≤ 255
                // links: the chunks only make sure that none can overrun `fresh`.)
                for part in self.links(n, level).chunks(256) {
                    let mut fresh = [0u32; 256];
                    let mut nfresh = 0;
                    for &nb in part {
                        if marks[nb as usize] != gen {
                            marks[nb as usize] = gen;
                            sc.prefetch(nb);
                            fresh[nfresh] = nb;
                            nfresh += 1;
                        }
                    }
                    for &nb in &fresh[..nfresh] {
                        let ns = sc.approx(nb);
                        scored += 1;
                        let worst = best.peek().map_or(f32::NEG_INFINITY, |b| b.0 .0 .0);
                        if best.len() < ef || ns > worst {
                            cands.push((Sim(ns), nb));
                            if pass(self.rows[nb as usize]) {
                                best.push(Reverse((Sim(ns), nb)));
                                if best.len() > ef {
                                    best.pop();
                                }
                            }
                        }
                    }
                }
            }
            let mut out: Vec<(f32, u32)> = best.into_iter().map(|Reverse((Sim(s), n))| (s, n)).collect();
            out.sort_by(|a, b| b.0.total_cmp(&a.0));
            (out, scored)
        })
    }

    /// The (up to) `k_out` most similar rows that `pass` accepts, best first, as
    /// (similarity, row), searching with a candidate list of `ef` (≥ `k_out`): the beam
    /// on the int8 codes, its `ef` candidates scored again in f32 (exact scores).
    pub fn search(&self, q: &[f32], k_out: usize, ef: usize, src: &impl RowSource, k: &Kernels, pass: &dyn Fn(u32) -> bool) -> (Vec<(f32, u32)>, Traversal) {
        let Some(mut ep) = self.entry else { return (Vec::new(), Traversal::default()) };
        let sc = Scorer::new(self, q, src, k);
        let mut ep_sim = sc.approx(ep);
        for l in (1..=self.top_level).rev() {
            (ep, ep_sim) = self.greedy(&sc, ep, ep_sim, l);
        }
        // Level 0 starts from the descent's node and from the best seeds. Why: on data in many
        // tight clusters, each about orthogonal to the others, the upper levels give the
        // descent no gradient towards the query's cluster, and a beam that starts in a foreign
        // one fills with foreign nodes whatever its length (5M rows in 10,000 clusters:
        // recall@10 stalled near 0.97 from ef 512 to 2,048, bench/results/ann-sweep-5m.json).
        // Scoring the seed sample, which holds a node of nearly every such cluster, costs
        // about n ÷ m² int8 dots.
        let mut eps = vec![(ep_sim, ep)];
        let seeded = self.add_seeds(&sc, &mut eps);
        let (found, visited) = self.search_layer(&sc, &eps, ef.max(k_out), 0, pass);
        let out = sc.rescore(&found).into_iter().take(k_out).map(|(s, n)| (s, self.rows[n as usize])).collect();
        (out, Traversal { visited: visited + seeded + 1 })
    }

    /// Add the [`SEEDS`] best nodes of the seed sample to `eps` (start points of a level-0..2
    /// beam, which the seeds all lie on), skipping any already there; returns how many
    /// nodes were scored.
    pub(super) fn add_seeds<S: RowSource + ?Sized>(&self, sc: &Scorer<S>, eps: &mut Vec<(f32, u32)>) -> usize {
        let sample = self.seed_sample();
        let best = match (&sc.q8, &sample.panels) {
            (Some((qc, _, _)), Some(p)) => p.best(&[qc], SEEDS).pop().unwrap_or_default().into_iter().map(|(s, e)| (s, sample.nodes[e as usize])).collect(),
            _ => {
                let mut seeds = TopK::new(SEEDS);
                for &n in &sample.nodes {
                    let s = sc.approx(n);
                    if s >= seeds.threshold() {
                        seeds.push(s, n);
                    }
                }
                seeds.into_sorted_vec()
            }
        };
        push_seeds(eps, best);
        sample.nodes.len()
    }

    /// The [`SEEDS`] best seeds of each of many vectors (an insertion batch's), scored on every
    /// core, each core's share of the vectors against every panel of the sample at once; `None`
    /// where the graph does not traverse on codes (each insertion then scores the sample itself).
    pub(super) fn seeds_of_batch(&self, qs: &[&[f32]]) -> Option<Vec<Vec<(f32, u32)>>> {
        let sample = self.seed_sample();
        let (Some(p), Some(codes)) = (&sample.panels, &self.codes) else { return None };
        let qcs: Vec<QueryCodes> = qs.iter().map(|q| codes.query(q)).collect::<Option<_>>()?;
        let share = qcs.len().div_ceil(rayon::current_num_threads()).max(1);
        let out = qcs
            .par_chunks(share)
            .flat_map_iter(|part| {
                let refs: Vec<&QueryCodes> = part.iter().collect();
                p.best(&refs, SEEDS).into_iter().map(|b| b.into_iter().map(|(s, e)| (s, sample.nodes[e as usize])).collect::<Vec<_>>())
            })
            .collect();
        Some(out)
    }

    /// The nodes on level 2 and above, listed again once the graph has grown by a quarter since
    /// they were (nodes added since are not seeds until then: the sample only has to reach
    /// most clusters, not every node).
    fn seed_sample(&self) -> Arc<SeedSample> {
        let mut slot = self.seeds.lock();
        // Listed again too when the graph's codes came (encoded after open) or went.
        if slot.graph_len * 5 / 4 < self.rows.len() || slot.panels.is_some() != self.int8_beam() {
            let nodes: Vec<u32> = (0..self.rows.len() as u32).filter(|&n| self.upper_of[n as usize] != u32::MAX && self.upper[self.upper_of[n as usize] as usize].len() >= 2).collect();
            let panels = self.codes.as_ref().filter(|_| self.int8_beam()).map(|c| c.panels_of(&nodes));
            *slot = Arc::new(SeedSample { graph_len: self.rows.len(), nodes, panels });
        }
        slot.clone()
    }
}

/// Add `seeds` to `eps`, skipping nodes already there.
pub(super) fn push_seeds(eps: &mut Vec<(f32, u32)>, seeds: Vec<(f32, u32)>) {
    for (s, n) in seeds {
        if !eps.iter().any(|e| e.1 == n) {
            eps.push((s, n));
        }
    }
}

#[cfg(test)]
#[path = "filter_diag.rs"]
mod filter_diag;
