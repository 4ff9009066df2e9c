//! Building the graph: insertion, one row at a time or a batch in parallel.
//!
//! A batch is inserted in chunks of [`CHUNK`] rows in two phases: every row of the chunk
//! searches the graph as it stands for its candidate neighbours, on every core at once
//! (rayon; the searches only read the graph), then the rows are linked one after the other,
//! each also offered the chunk's earlier rows as candidates (a few dozen dots, rows that are
//! in cache), so the graph is the one sequential insertion would give up to which of the
//! chunk's rows each search saw. The beam searches are most of an insertion's cost.
//!
//! Links are chosen with HNSW's diversity heuristic on both ends: a new node keeps a
//! candidate only if no link it already keeps is closer to that candidate than the node is
//! (the candidate would be reached through that link), and a full neighbour list that gains
//! a link is pruned the same way — rather than keeping its most similar — so that a dense
//! cluster's nodes still link out of it (measured in docs/search.md).

use std::collections::HashMap;

use rayon::prelude::*;

use super::hnsw::{push_seeds, Hnsw, RowSource, Scorer};
use crate::search::Kernels;

/// Rows of a batch searched in parallel before being linked.
const CHUNK: usize = 64;

/// Most rows of a batch linked from candidates found ahead ([`Hnsw::presearch`]): each is
/// also compared with every earlier row of the batch, so the work grows with its square.
pub const MAX_PRESEARCHED: usize = 1024;

/// Candidate neighbours of a new node, per level 0…its level: (similarity, node), best first.
pub type Candidates = Vec<Vec<(f32, u32)>>;

/// splitmix64: a well-mixed 64-bit value from any key.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A node's level from 64 random bits: geometric, P(level ≥ l) = m^−l, at most 16.
pub(super) fn level_for(bits: u64, m: usize) -> usize {
    let u = ((bits >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let ml = 1.0 / (m as f64).ln();
    ((-u.ln() * ml) as usize).min(16)
}

impl Hnsw {
    /// Add store row `row` (its vector read from `src`).
    pub fn insert(&mut self, row: u32, src: &impl RowSource, k: &Kernels) {
        let level = self.random_level();
        let cands = self.candidates(src.row(row), level, None, src, k);
        self.link_new(row, level, cands, src, k);
    }

    /// Add the store rows `rows` in this order (see the module comment: parallel searches,
    /// sequential links). `pre`: candidates already found for some of the rows against the
    /// graph as it is now ([`Hnsw::presearch`], by the significance pass); when every row
    /// has them, no row searches again.
    pub fn insert_batch(&mut self, rows: &[u32], pre: HashMap<u32, Candidates>, src: &(impl RowSource + Sync), k: &Kernels) {
        self.insert_batch_with(rows, pre.into_iter().map(|(r, c)| (r, (c, Vec::new()))).collect(), src, k);
    }

    /// [`Hnsw::insert_batch`] where a presearched row may also come with its dots with the
    /// rows before it in `rows`, in order (`k.dot(row, earlier row)`, as [`Hnsw::link_chunk`]
    /// computes them: the same values): the significance pass's, taken instead of computing
    /// them again. Dots that are not exactly one per earlier row are ignored.
    pub fn insert_batch_with(&mut self, rows: &[u32], mut pre: HashMap<u32, (Candidates, Vec<f32>)>, src: &(impl RowSource + Sync), k: &Kernels) {
        let all_pre = self.entry.is_some() && rows.len() <= MAX_PRESEARCHED && rows.iter().all(|r| pre.contains_key(r));
        if all_pre {
            let (found, earlier): (Vec<Candidates>, Vec<Vec<f32>>) = rows.iter().map(|r| pre.remove(r).unwrap_or_default()).unzip();
            let levels: Vec<usize> = found.iter().map(|c| c.len() - 1).collect();
            return self.link_chunk(rows, &levels, found, Some(&earlier), src, k);
        }
        let mut rest = rows;
        // The first row of an empty graph becomes its entry point: nothing to search yet.
        while self.entry.is_none() && !rest.is_empty() {
            self.insert(rest[0], src, k);
            rest = &rest[1..];
        }
        for chunk in rest.chunks(CHUNK) {
            let levels: Vec<usize> = chunk.iter().map(|_| self.random_level()).collect();
            let this = &*self;
            let qs: Vec<&[f32]> = chunk.iter().map(|&r| src.row(r)).collect();
            let seeds = this.seeds_of_chunk(&qs);
            let found: Vec<Candidates> = qs.par_iter().zip(&levels).zip(seeds).map(|((q, &l), s)| this.candidates(q, l, s, src, k)).collect();
            self.link_chunk(chunk, &levels, found, None, src, k);
        }
    }

    /// The candidates of a vector about to be stored, searched before it has a row (the
    /// significance pass's graph search, reused by [`Hnsw::insert_batch`]); its level is drawn
    /// from `key` (the memory's sequence number) since the graph cannot change here.
    pub fn presearch(&self, q: &[f32], key: u64, src: &impl RowSource, k: &Kernels) -> Candidates {
        let level = level_for(splitmix(key), self.params.m);
        self.candidates(q, level, None, src, k)
    }

    /// [`Hnsw::presearch`] of many vectors (with their keys), on every core; their seeds are
    /// scored together ([`Hnsw::seeds_of_batch`]).
    pub fn presearch_batch(&self, qs: &[&[f32]], keys: &[u64], src: &(impl RowSource + Sync), k: &Kernels) -> Vec<Candidates> {
        let seeds = self.seeds_of_chunk(qs);
        qs.par_iter().zip(keys).zip(seeds).map(|((q, &key), s)| self.candidates(q, level_for(splitmix(key), self.params.m), s, src, k)).collect()
    }

    /// The seeds of each of `qs` where they are scored as a batch, else `None` for each (each
    /// search then scores the sample itself).
    fn seeds_of_chunk(&self, qs: &[&[f32]]) -> Vec<Option<Vec<(f32, u32)>>> {
        match self.seeded_inserts.then(|| self.seeds_of_batch(qs)).flatten() {
            Some(v) => v.into_iter().map(Some).collect(),
            None => vec![None; qs.len()],
        }
    }

    /// Link `chunk`'s rows in order, each offered the chunk's earlier rows besides its
    /// `found` candidates (those dots computed on every core first: they need only vectors;
    /// or taken from `earlier`, row j's dots with rows 0..j, where it has exactly those).
    fn link_chunk(&mut self, chunk: &[u32], levels: &[usize], mut found: Vec<Candidates>, earlier: Option<&[Vec<f32>]>, src: &(impl RowSource + Sync), k: &Kernels) {
        let first = self.rows.len() as u32;
        found.par_iter_mut().enumerate().for_each(|(j, cands)| {
            let q = src.row(chunk[j]);
            let known = earlier.map(|e| &e[j][..]).filter(|d| d.len() == j);
            for (l, c) in cands.iter_mut().enumerate() {
                let before = c.len();
                for (e, &el) in levels[..j].iter().enumerate() {
                    if el >= l {
                        let s = known.map_or_else(|| (k.dot)(q, src.row(chunk[e])), |d| d[e]);
                        c.push((s, first + e as u32));
                    }
                }
                if c.len() > before {
                    c.sort_by(|a, b| b.0.total_cmp(&a.0));
                }
            }
        });
        for (j, (cands, &level)) in found.into_iter().zip(levels).enumerate() {
            debug_assert_eq!(cands.len(), level + 1);
            self.link_new(chunk[j], level, cands, src, k);
        }
    }

    /// The candidate neighbours of a new vector `q` on levels 0…`level`: greedy descent from
    /// the entry point to `level + 1` (plus the best seeds, `seeds` where they were scored
    /// with a batch's), then a beam search of `ef_construction` per level (on
    /// the int8 codes), each level's list scored again in f32 for the links and the
    /// significance pass. Levels above the graph's top get none.
    fn candidates(&self, q: &[f32], level: usize, seeds: Option<Vec<(f32, u32)>>, src: &impl RowSource, k: &Kernels) -> Candidates {
        let mut out = vec![Vec::new(); level + 1];
        let Some(mut ep) = self.entry else { return out };
        let sc = Scorer::new(self, q, src, k);
        let mut ep_sim = sc.approx(ep);
        for l in (level + 1..=self.top_level).rev() {
            (ep, ep_sim) = self.greedy(&sc, ep, ep_sim, l);
        }
        let mut eps = vec![(ep_sim, ep)];
        // The first level searched starts from the seeds too when they lie on it (levels 0–2),
        // for the reason a query does (hnsw.rs, `search`): a descent without gradient towards
        // the new node's cluster would link it to strangers only, where no search of its
        // cluster finds it.
        if self.seeded_inserts && level.min(self.top_level) <= 2 {
            match seeds {
                Some(s) => push_seeds(&mut eps, s),
                None => _ = self.add_seeds(&sc, &mut eps),
            }
        }
        for l in (0..=level.min(self.top_level)).rev() {
            let (found, _) = self.search_layer(&sc, &eps, self.params.ef_construction, l, &|_| true);
            out[l] = sc.rescore(&found);
            eps = found;
        }
        out
    }

    /// Append a node for `row` on levels 0…`level` and link it to its chosen candidates and
    /// them back to it.
    fn link_new(&mut self, row: u32, level: usize, cands: Candidates, src: &impl RowSource, k: &Kernels) {
        let node = self.rows.len() as u32;
        self.rows.push(row);
        if let Some(c) = &mut self.codes {
            c.push(src.row(row));
        }
        self.l0.resize(self.l0.len() + self.params.m0, 0);
        self.l0_len.push(0);
        if level > 0 {
            self.upper_of.push(self.upper.len() as u32);
            self.upper.push(vec![Vec::new(); level]);
        } else {
            self.upper_of.push(u32::MAX);
        }
        if self.entry.is_none() {
            self.entry = Some(node);
            self.top_level = level;
            return;
        }
        for (l, found) in cands.iter().enumerate() {
            if found.is_empty() {
                continue;
            }
            let chosen = self.select(found, self.params.m, src, k);
            self.set_links(node, l, &chosen.iter().map(|c| c.1).collect::<Vec<_>>());
            for &(s, nb) in &chosen {
                self.link_back(nb, node, s, l, src, k);
            }
        }
        if level > self.top_level {
            self.top_level = level;
            self.entry = Some(node);
        }
    }

    /// Add `node` to `nb`'s links on `level`; a full list is pruned with the diversity
    /// heuristic over its links and the new one (scored on the int8 codes: recall@10 at 100k
    /// was the same as with f32 here, 0.9985 at ef 96, docs/search.md) (it may drop more than one, leaving room for
    /// the next links without pruning again).
    fn link_back(&mut self, nb: u32, node: u32, sim: f32, level: usize, src: &impl RowSource, k: &Kernels) {
        let cap = if level == 0 { self.params.m0 } else { self.params.m };
        let cur = self.links(nb, level);
        if cur.len() < cap {
            let mut v = cur.to_vec();
            v.push(node);
            self.set_links(nb, level, &v);
            return;
        }
        let base = Scorer::for_node(self, nb, src, k);
        let mut scored: Vec<(f32, u32)> = cur.iter().map(|&c| (base.approx(c), c)).collect();
        // On one scale with the others: int8 estimates where the graph has codes.
        scored.push((if base.is_exact() { sim } else { base.approx(node) }, node));
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        let kept = self.select(&scored, cap, src, k);
        let v: Vec<u32> = kept.iter().map(|s| s.1).collect();
        self.set_links(nb, level, &v);
    }

    /// The diversity heuristic: candidates best first; one is kept unless an already kept
    /// node is more similar to it (int8 estimate, where the graph has codes) than the base
    /// node is (it would be reached through that
    /// one). At most `m`; the rest are dropped, not used to fill the list up (filling it
    /// brought back the cluster-bound links the heuristic removes).
    fn select(&self, found: &[(f32, u32)], m: usize, src: &impl RowSource, k: &Kernels) -> Vec<(f32, u32)> {
        let mut kept: Vec<(f32, u32)> = Vec::with_capacity(m);
        // Each kept node made a scorer once, when kept, and asked for its similarity to each
        // later candidate — not each candidate made one (coding a node as a query costs more
        // than the dot, and most candidates are dropped). The same values: the int8 estimate
        // of two nodes' similarity is symmetric (the products of their codes, times both
        // scales), and so is the f32 dot.
        let mut kept_sc: Vec<Scorer<_>> = Vec::with_capacity(m);
        for &(s, c) in found {
            if kept.len() == m {
                break;
            }
            if kept_sc.iter().all(|o| o.approx(c) < s) {
                kept.push((s, c));
                kept_sc.push(Scorer::for_node(self, c, src, k));
            }
        }
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::super::hnsw::{HnswParams, RowSource, Scorer};
    use super::Hnsw;
    use crate::search::kernels;

    struct Flat(Vec<f32>);
    impl RowSource for Flat {
        fn row(&self, r: u32) -> &[f32] {
            &self.0[r as usize * 64..(r as usize + 1) * 64]
        }
    }

    /// The heuristic as first written: each candidate scored against the kept nodes from its
    /// own side (a scorer per candidate).
    fn select_per_candidate(g: &Hnsw, found: &[(f32, u32)], m: usize, src: &Flat) -> Vec<(f32, u32)> {
        let mut kept: Vec<(f32, u32)> = Vec::new();
        for &(s, c) in found {
            if kept.len() == m {
                break;
            }
            let v = Scorer::for_node(g, c, src, kernels());
            if kept.is_empty() || kept.iter().all(|&(_, o)| v.approx(o) < s) {
                kept.push((s, c));
            }
        }
        kept
    }

    #[test]
    fn select_scoring_from_the_kept_side_keeps_the_same_links() {
        let n = 1500;
        let src = Flat(super::super::tests::clustered(n, 64, 15, 11));
        let mut g = Hnsw::new(HnswParams::default());
        let rows: Vec<u32> = (0..n as u32).collect();
        g.insert_batch(&rows, Default::default(), &src, kernels());
        let mut differing_from_top_m = 0;
        for node in (0..n as u32).step_by(37) {
            // Every node of the graph scored against this one, best first: the list a
            // full neighbour list's pruning sees, longer.
            let sc = Scorer::for_node(&g, node, &src, kernels());
            let mut found: Vec<(f32, u32)> = (0..n as u32).filter(|&o| o != node).map(|o| (sc.approx(o), o)).collect();
            found.sort_by(|a, b| b.0.total_cmp(&a.0));
            found.truncate(96);
            for m in [16, 32] {
                let got = g.select(&found, m, &src, kernels());
                assert_eq!(got, select_per_candidate(&g, &found, m, &src), "node {node}, m {m}");
                differing_from_top_m += usize::from(got[..] != found[..got.len()]);
            }
        }
        // The heuristic did drop candidates (the comparison above is not of two top-m cuts).
        assert!(differing_from_top_m > 0);
    }
}
