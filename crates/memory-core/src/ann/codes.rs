//! The graph's int8 codes: what a traversal scores visited nodes with.
//!
//! Every node keeps the int8 code of its vector ([`crate::search::q8::quantize`], the same
//! codes and scales as the store's int8 pre-pass), one node after another in node order. A
//! beam search scores the nodes it visits with one `vpdpbusd` dot of 384 bytes per node instead
//! of an f32 dot of 1,536 bytes, and only its final candidate list is scored again in f32
//! ([`super::hnsw::Scorer::rescore`]), so what the graph returns carries exact scores.
//!
//! Why a copy in node order and not the store's codes: those are kept in panels of 16 rows
//! interleaved by 4 bytes (the layout the multi-query kernels want), so one row's 384 bytes
//! are spread over 96 cache lines; a traversal reads rows in no order, and here a node's
//! code is 6 consecutive cache lines. It costs 392 bytes a node in RAM (on top of the ~190 of
//! links) and is never written to disk: a graph loaded at open serves at once, traversing on
//! the f32 rows, and the writer encodes its nodes again from the rows when it is first idle
//! ([`encode_restored`]) — ~0.4 s of both cores at 1M rows that no longer delays the first
//! query (persisting them instead would add 392 MB per million rows to the directory and a
//! read of them to every open).
//!
//! Only where the CPU has the int8 kernel (AVX-512 VNNI: [`crate::search::q8::kernel`]);
//! elsewhere, or with `MEMORY_SERVER_ANN_Q8=off`, the graph traverses in f32 as before.

use parking_lot::RwLock;
use rayon::prelude::*;

use super::hnsw::Hnsw;
use super::AnnSet;
use crate::search::q8::{self, DotPairQ8, PANEL};
use crate::search::TopK;
use crate::store::state::State;

/// `off` makes the graph traverse on the f32 rows (read once; for comparisons in benchmarks).
pub const ANN_Q8_ENV_VAR: &str = "MEMORY_SERVER_ANN_Q8";

/// The pair kernel the graph scores with, if it scores on int8 codes at all.
pub fn kernel() -> Option<DotPairQ8> {
    static CHOICE: std::sync::OnceLock<Option<DotPairQ8>> = std::sync::OnceLock::new();
    *CHOICE.get_or_init(|| {
        let off = std::env::var(ANN_Q8_ENV_VAR).is_ok_and(|v| v.trim().eq_ignore_ascii_case("off"));
        if off {
            None
        } else {
            q8::kernel().map(|k| k.dot_pair)
        }
    })
}

/// Int8 codes of a graph's nodes (node `i` at `i · dpad`), with their scales and the
/// unsigned-query corrections (`128 · Σ code`, see `q8`) side by side in one array: a beam
/// scores nodes in no order, and each array it reads per node is another cache miss.
#[derive(Default)]
pub struct NodeCodes {
    dpad: usize,
    codes: Vec<i8>,
    /// (scale, correction) of each node.
    meta: Vec<(f32, i32)>,
}

/// A query in int8 (`code + 128` as unsigned bytes) and its scale.
pub struct QueryCodes {
    codes: Vec<u8>,
    scale: f32,
}

impl NodeCodes {
    pub fn len(&self) -> usize {
        self.meta.len()
    }

    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.codes.capacity() + self.meta.capacity() * 8
    }

    /// Append the code of the next node's vector.
    pub fn push(&mut self, v: &[f32]) {
        if self.dpad == 0 {
            self.dpad = q8::padded(v.len());
        }
        let at = self.codes.len();
        if at == self.codes.capacity() {
            // Grow by an eighth, not double: at 1M nodes the codes are 384 MB, and doubling
            // would leave up to as much again reserved and unused (large reallocations are
            // remapped, not copied).
            self.codes.reserve_exact(self.dpad * (self.len() / 8).max(1024));
        }
        self.codes.resize(at + self.dpad, 0);
        let m = q8::quantize(v, &mut self.codes[at..]);
        self.meta.push((m.scale, 128 * m.sum));
    }

    /// Codes for every node of `rows` (node order), each vector given by `row` (on every core).
    pub fn encode_all<'v>(rows: &[u32], row: impl Fn(u32) -> &'v [f32] + Sync) -> NodeCodes {
        let Some(&first) = rows.first() else { return NodeCodes::default() };
        let dpad = q8::padded(row(first).len());
        let mut codes = vec![0i8; rows.len() * dpad];
        let metas: Vec<q8::Q8Meta> = codes.par_chunks_mut(dpad).zip(rows).map(|(out, &r)| q8::quantize(row(r), out)).collect();
        NodeCodes { dpad, codes, meta: metas.iter().map(|m| (m.scale, 128 * m.sum)).collect() }
    }

    /// The codes of `nodes` in the panel layout of the multi-query kernels (entry `i` is
    /// `nodes[i]`), for the seed sample.
    pub fn panels_of(&self, nodes: &[u32]) -> SeedPanels {
        let mut rows = Vec::with_capacity(nodes.len() * self.dpad);
        for &n in nodes {
            rows.extend_from_slice(&self.codes[n as usize * self.dpad..(n as usize + 1) * self.dpad]);
        }
        SeedPanels {
            dpad: self.dpad,
            panels: q8::to_panels(&rows, nodes.len(), self.dpad),
            scale: nodes.iter().map(|&n| self.meta[n as usize].0).collect(),
            corr: nodes.iter().map(|&n| self.meta[n as usize].1).collect(),
        }
    }

    /// `q` coded for scoring against these nodes (`None` before the first node).
    pub fn query(&self, q: &[f32]) -> Option<QueryCodes> {
        if self.dpad == 0 || q8::padded(q.len()) != self.dpad {
            return None;
        }
        let mut codes = vec![128u8; self.dpad];
        let mut scratch = vec![0i8; self.dpad];
        let m = q8::quantize_query(q, &mut codes, &mut scratch);
        Some(QueryCodes { codes, scale: m.scale })
    }

    /// Node `node`'s own code as a query (`code + 128`), to compare it with other nodes.
    pub fn node_query(&self, node: u32) -> QueryCodes {
        let n = node as usize;
        let codes = self.codes[n * self.dpad..(n + 1) * self.dpad].iter().map(|&c| (c as u8) ^ 0x80).collect();
        QueryCodes { codes, scale: self.meta[n].0 }
    }

    /// The int8 estimate of `q · node` (within the bounds of `q8`, a few thousandths at 384
    /// dims on unit vectors).
    #[inline]
    pub fn approx(&self, q: &QueryCodes, dot: DotPairQ8, node: u32) -> f32 {
        let n = node as usize;
        let raw = dot(&q.codes, &self.codes[n * self.dpad..(n + 1) * self.dpad]);
        let (scale, corr) = self.meta[n];
        q.scale * scale * (raw - corr) as f32
    }

    /// Ask the CPU to start loading node `node`'s code and meta into cache (no effect on
    /// results). Why: a beam's cost is waiting for memory, one node's code after another in no
    /// order; hinting every unvisited neighbour of a node before scoring the first lets the
    /// loads overlap instead of queueing behind each dot.
    #[inline]
    pub fn prefetch(&self, node: u32) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let n = node as usize;
            if n < self.meta.len() {
                let at = self.codes.as_ptr().wrapping_add(n * self.dpad);
                // SAFETY: a prefetch reads nothing and never faults; the addresses lie in the
                // arrays anyway (n < len).
                unsafe {
                    for off in (0..self.dpad).step_by(64) {
                        _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(off));
                    }
                    _mm_prefetch::<_MM_HINT_T0>(self.meta.as_ptr().wrapping_add(n) as *const i8);
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = node;
    }
}

/// The seed sample's codes ([`NodeCodes::panels_of`]): every search and every insertion
/// scores the whole sample, so it is kept as the exact int8 pass keeps rows — panels of 16
/// codes that the AMX / VNNI block kernel scores against many queries at once (an insertion
/// batch's rows), reading each panel once for all of them, where one query at a time would
/// read every code again per query (one code here and one there in the graph's own).
pub struct SeedPanels {
    dpad: usize,
    panels: Vec<i8>,
    scale: Vec<f32>,
    corr: Vec<i32>,
}

/// Panels scored per kernel call: a block of raw dots of at most 64 queries stays in L2.
const SEED_BLOCK_PANELS: usize = 64;

impl SeedPanels {
    pub fn len(&self) -> usize {
        self.scale.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scale.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.panels.capacity() + self.scale.capacity() * 4 + self.corr.capacity() * 4
    }

    /// For each query, its `k` best entries as (int8 estimate, entry), best first (ties →
    /// the later entry, as [`TopK`] breaks them); the same estimates as [`NodeCodes::approx`]
    /// gives for the nodes they copy.
    pub fn best(&self, queries: &[&QueryCodes], k: usize) -> Vec<Vec<(f32, u32)>> {
        let nq = queries.len();
        let mut tops: Vec<TopK> = (0..nq).map(|_| TopK::new(k)).collect();
        let kern = q8::kernel().expect("seed panels exist only where the int8 kernel does");
        if nq > 0 && k > 0 && !self.is_empty() {
            let mut qbuf = Vec::with_capacity(nq * self.dpad);
            queries.iter().for_each(|q| qbuf.extend_from_slice(&q.codes));
            let np_all = self.len().div_ceil(PANEL);
            let mut raw = vec![0i32; nq * SEED_BLOCK_PANELS * PANEL];
            for p0 in (0..np_all).step_by(SEED_BLOCK_PANELS) {
                let np = SEED_BLOCK_PANELS.min(np_all - p0);
                let stride = np * PANEL;
                (kern.dot_panels)(&qbuf, nq, &self.panels[p0 * PANEL * self.dpad..(p0 + np) * PANEL * self.dpad], np, self.dpad, &mut raw[..nq * stride]);
                // The last panel's padding lanes are no entries.
                let (first, end) = (p0 * PANEL, (p0 * PANEL + stride).min(self.len()));
                let (scale, corr) = (&self.scale[first..end], &self.corr[first..end]);
                for (qi, top) in tops.iter_mut().enumerate() {
                    let qs = queries[qi].scale;
                    let row = &raw[qi * stride..qi * stride + end - first];
                    for (j, ((&r, &sc), &c)) in row.iter().zip(scale).zip(corr).enumerate() {
                        let s = qs * sc * (r - c) as f32;
                        // Most estimates fall below the threshold: one compare each.
                        if s >= top.threshold() {
                            top.push(s, (first + j) as u32);
                        }
                    }
                }
            }
        }
        tops.into_iter().map(TopK::into_sorted_vec).collect()
    }
}

/// A graph just decoded from its file: it has no codes yet, so it traverses on the f32 rows
/// and its new nodes get no code, until [`encode_restored`] gives every node its code.
pub(super) fn defer_codes(g: &mut Hnsw) {
    g.codes = None;
}

/// Nodes whose codes are still to be encoded after open (0 where graphs traverse in f32).
pub(super) fn nodes_without_codes(g: &Hnsw) -> usize {
    if kernel().is_some() && g.codes.is_none() {
        g.len()
    } else {
        0
    }
}

/// The writer's idle work after open: encode the codes of one graph restored without them
/// ([`defer_codes`]), on every core, holding only read locks while encoding (searches go on
/// meanwhile, in f32); true if there was one. Only the writer changes the graphs, so the
/// graph is the same when the codes are put in.
pub fn encode_restored(st: &State, ann: &RwLock<AnnSet>) -> bool {
    let (slot, codes) = {
        let set = ann.read();
        let Some((slot, g)) = set.graphs.iter().enumerate().find_map(|(i, g)| g.as_ref().filter(|g| nodes_without_codes(&g.graph) > 0).map(|g| (i, g))) else { return false };
        (slot, NodeCodes::encode_all(&g.graph.rows, |r| st.vectors.row(r as usize)))
    };
    let mut set = ann.write();
    if let Some(g) = set.graphs.get_mut(slot).and_then(|g| g.as_mut()) {
        if g.graph.codes.is_none() && codes.len() == g.graph.len() {
            g.graph.codes = Some(codes);
        }
    }
    true
}
