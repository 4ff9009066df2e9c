//! The significance pass of a put group: significance and associations for every new memory
//! of the group, against the stored memories of its namespace (one multi-query pass per
//! namespace) and the earlier members of the group.

use std::collections::HashMap;

use rayon::prelude::*;

use super::{significance, ASSOCIATION_MIN_COS, MAX_ASSOCIATIONS, RECENT_WINDOW};
use crate::ann::{search_ns, AnnSet, Candidates, NsGraph, Presearched, ANN_EF, MAX_PRESEARCHED};
use crate::search::q8::{Q8Kernels, Q8Rows};
use crate::store::log::PutRecord;
use crate::store::prepass::search_q8;
use crate::store::scan::{self, Hit, ScanParams};
use crate::store::state::{ParsedMetadata, State};

/// Extra stored neighbours fetched when scoring a new memory (see [`score_new`]).
const ASSOC_TIE_SLACK: usize = 8;

/// Most queries of one stored-neighbour pass.
const PASS_QUERIES: usize = 64;

/// A new memory of a put group.
pub(crate) struct NewMemory {
    /// Where its outcome goes: (operation, item) of the group.
    pub slot: (usize, usize),
    /// The record to write; [`score_new`] fills in significance and associations.
    pub record: PutRecord,
    pub parsed: ParsedMetadata,
    pub importance: f32,
    pub given_significance: Option<f32>,
    /// Its candidate neighbours in the namespace's graph, when the stored neighbours came
    /// from there: the writer links it into the graph with them instead of searching again.
    pub presearched: Option<Presearched>,
}

/// A neighbour candidate of the significance pass: a stored row or an earlier member of the
/// group being stored.
#[derive(Clone, Copy)]
enum Who {
    Row(u32),
    New(usize),
}

/// Significance and associations for the new memories of a group, against the stored
/// memories (one multi-query pass per namespace) and the earlier members of the group.
/// `q8`: the int8 codes of every stored row, where the CPU has an int8 kernel.
/// `ann`: the namespaces' graphs; a namespace with one is scored from its graph (O(log n)
/// per new memory) instead of the exact pass (O(n)).
pub(crate) fn score_new(st: &State, q8: Option<(&Q8Rows, &'static Q8Kernels)>, ann: Option<&AnnSet>, news: &mut [NewMemory], now: i64) {
    let mut by_ns: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in news.iter().enumerate() {
        by_ns.entry(n.record.namespace.as_str()).or_default().push(i);
    }
    let by_ns: Vec<(String, Vec<usize>)> = by_ns.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    for (ns, idx) in by_ns {
        // A graph with a long tail of rows not in it yet (just built, still catching up)
        // would leave every new memory to score that tail one row at a time: the exact
        // multi-query pass is faster then.
        let graph = ann.zip(st.ns_id(&ns)).and_then(|(a, n)| a.serving(st, n).map(|g| (g, n))).filter(|(g, n)| st.namespaces[*n as usize].rows.len() - g.covered <= MAX_PRESEARCHED);
        if let Some((g, n)) = graph {
            let stored = if g.covered == st.namespaces[n as usize].rows.len() && idx.len() <= MAX_PRESEARCHED {
                graph_neighbours_presearched(st, g, news, &idx, now)
            } else {
                // One graph search per new memory, on every core (they only read).
                let k = MAX_ASSOCIATIONS + ASSOC_TIE_SLACK;
                let visible = |r: u32| st.visible(r as usize, now);
                idx.par_iter().map(|&i| search_ns(g, st, n, &news[i].record.vector, k, ANN_EF, &visible).0.into_iter().map(|(score, row)| Hit { row, score }).collect()).collect()
            };
            // The graph's scores are `dot`s like the int8 pass's.
            score_namespace(st, true, news, &ns, &idx, &stored, now);
            continue;
        }
        let stored = stored_neighbours(st, q8, news, &ns, &idx, now);
        score_namespace(st, q8.is_some(), news, &ns, &idx, &stored, now);
    }
}

/// The nearest stored memories of each new memory `idx` from the namespace's graph `g`
/// (which covers every row), through the search that will also insert it
/// ([`crate::ann::Hnsw::presearch`]: its level-0 candidates, ef_construction of them, are
/// its nearest stored memories): one graph search per stored memory. In parallel.
fn graph_neighbours_presearched(st: &State, g: &NsGraph, news: &mut [NewMemory], idx: &[usize], now: i64) -> Vec<Vec<Hit>> {
    let kern = crate::search::kernels();
    let graph_len = g.graph.len();
    let qs: Vec<&[f32]> = idx.iter().map(|&i| &news[i].record.vector[..]).collect();
    let keys: Vec<u64> = idx.iter().map(|&i| news[i].record.seq).collect();
    let found: Vec<Candidates> = g.graph.presearch_batch(&qs, &keys, &st.vectors, kern);
    let mut stored = Vec::with_capacity(idx.len());
    for (&i, cands) in idx.iter().zip(found) {
        let hits = cands[0]
            .iter()
            .map(|&(score, node)| Hit { row: g.graph.row_of(node), score })
            .filter(|h| st.visible(h.row as usize, now))
            .take(MAX_ASSOCIATIONS + ASSOC_TIE_SLACK)
            .collect();
        stored.push(hits);
        news[i].presearched = Some(Presearched { graph_len, cands, earlier: Vec::new() });
    }
    stored
}

/// The nearest stored memories of each new memory `idx` of namespace `ns`, in passes of at
/// most [`PASS_QUERIES`] queries.
fn stored_neighbours(st: &State, q8: Option<(&Q8Rows, &'static Q8Kernels)>, news: &[NewMemory], ns: &str, idx: &[usize], now: i64) -> Vec<Vec<Hit>> {
    let dims = st.dims;
    let mut queries = Vec::with_capacity(idx.len() * dims);
    for &i in idx {
        queries.extend_from_slice(&news[i].record.vector);
    }
    // A few more than needed, then every cosine is recomputed with one kernel, so that ties
    // (e.g. the same text stored twice) break the same way (newest first) whether the
    // memories were stored in one batch or one by one.
    let p = ScanParams { namespace: ns, k: MAX_ASSOCIATIONS + ASSOC_TIE_SLACK, now_ms: now, ..Default::default() };
    let mut stored: Vec<Vec<Hit>> = Vec::with_capacity(idx.len());
    for part in queries.chunks(PASS_QUERIES * dims) {
        let nq = part.len() / dims;
        if let Some((rows, kern)) = q8 {
            // The same nearest neighbour and associations, through the int8 pre-pass
            // (other runners-up below the association floor are not needed).
            stored.extend(search_q8(st, rows, kern, part, nq, &p, ASSOCIATION_MIN_COS));
            continue;
        }
        // The blocked kernel works on queries in fours (leftovers take a slower single-query
        // path): pad each pass with copies of its last query and drop their results.
        let padded = if nq > 4 { nq.next_multiple_of(4) } else { nq };
        if padded == nq {
            stored.extend(scan::search(st, part, nq, &p));
        } else {
            let mut q = Vec::with_capacity(padded * dims);
            q.extend_from_slice(part);
            for _ in nq..padded {
                q.extend_from_slice(&part[(nq - 1) * dims..]);
            }
            stored.extend(scan::search(st, &q, padded, &p).into_iter().take(nq));
        }
    }
    stored
}

/// Groups of at least this many new memories in one namespace are scored on every core
/// ([`score_namespace`]): a memory's cosines to the group's earlier members grow with the
/// group (a batch of 1,000 is ~500,000 f32 dots, a third of the writer thread's time in a
/// batch ingest), while a small group (single stores arriving together) would spend more
/// waking the pool than it saves.
const PARALLEL_MIN_NEW: usize = 64;

/// Significance and associations of the new memories `idx` of namespace `ns`, from their
/// `stored` neighbours (`exact_scores`: their scores are already `dot`s, from the int8 pass),
/// the recent window and the earlier members of the group. Each memory reads only the
/// others' vectors, so they are scored independently (in parallel for large groups, see
/// [`PARALLEL_MIN_NEW`]) with the same kernel and order as one at a time.
fn score_namespace(st: &State, exact_scores: bool, news: &mut [NewMemory], ns: &str, idx: &[usize], stored: &[Vec<Hit>], now: i64) {
    let recent: Vec<u32> = st.ns_id(ns).map(|n| st.recent_rows(n, RECENT_WINDOW, now)).unwrap_or_default();
    let ctx = ScoreCtx { st, exact_scores, news, idx, stored, recent: &recent };
    let scored: Vec<Scored> = if idx.len() >= PARALLEL_MIN_NEW {
        // Later members have more earlier members to compare with: small pieces balance that.
        (0..idx.len()).into_par_iter().with_min_len(8).map_init(Scratch::default, |s, qi| ctx.score(qi, s)).collect()
    } else {
        let mut s = Scratch::default();
        (0..idx.len()).map(|qi| ctx.score(qi, &mut s)).collect()
    };
    for (&i, (significance, assoc, earlier)) in idx.iter().zip(scored) {
        news[i].record.significance = significance;
        news[i].record.associations = assoc;
        if let Some(p) = &mut news[i].presearched {
            p.earlier = earlier;
        }
    }
}

/// A new memory's significance, associations and — when it is to be linked into the graph
/// with presearched candidates — its dots with the group's earlier members of its namespace,
/// in order: the graph's links offer it those members as candidates and take these instead
/// of computing them again (`Hnsw::insert_batch_with`; a batch of 1,000 is ~500,000 dots).
type Scored = (f32, Vec<String>, Vec<f32>);

/// Reused per memory: candidates as (cosine, seq, who) and the recent window's cosines.
#[derive(Default)]
struct Scratch {
    cands: Vec<(f32, u64, Who)>,
    recent_cos: Vec<f32>,
}

/// What scoring one new memory of a namespace reads.
struct ScoreCtx<'a> {
    st: &'a State,
    exact_scores: bool,
    news: &'a [NewMemory],
    idx: &'a [usize],
    stored: &'a [Vec<Hit>],
    /// The namespace's last [`RECENT_WINDOW`] stored rows, oldest first.
    recent: &'a [u32],
}

impl ScoreCtx<'_> {
    /// The significance and associations of the `qi`-th new memory of the namespace (and its
    /// dots with the earlier ones, see [`Scored`]).
    fn score(&self, qi: usize, s: &mut Scratch) -> Scored {
        let (st, news, idx) = (self.st, self.news, self.idx);
        let k = crate::search::kernels();
        let i = idx[qi];
        let v = &news[i].record.vector;
        // Candidates: stored hits + earlier group members of this namespace. The int8 pass
        // already scored its hits with `k.dot`; the f32 pass's scores come from the blocked
        // kernel, so they are recomputed with `k.dot` for ties to break the same way.
        // Only the best cosine matters below the association floor: candidates under it
        // are not kept (a group's earlier members can be many).
        let Scratch { cands, recent_cos } = s;
        cands.clear();
        let mut max_cos: Option<f32> = None;
        let mut consider = |c: f32, seq: u64, who: Who, cands: &mut Vec<(f32, u64, Who)>| {
            max_cos = Some(max_cos.map_or(c, |m| m.max(c)));
            if c >= ASSOCIATION_MIN_COS {
                cands.push((c, seq, who));
            }
        };
        for h in &self.stored[qi] {
            let r = h.row as usize;
            let c = if self.exact_scores { h.score } else { (k.dot)(v, st.vectors.row(r)) };
            consider(c, st.rows[r].seq, Who::Row(h.row), cands);
        }
        // The window is the last RECENT_WINDOW memories before this one, oldest first:
        // the newest stored ones that the earlier group members leave room for, then those.
        recent_cos.clear();
        let recent = self.recent;
        let room = RECENT_WINDOW.saturating_sub(qi).min(recent.len());
        recent_cos.extend(recent[recent.len() - room..].iter().map(|&r| (k.dot)(v, st.vectors.row(r as usize))));
        // Kept only for a memory the writer links with presearched candidates (see [`Scored`]).
        let keep_dots = news[i].presearched.is_some();
        let mut earlier = Vec::with_capacity(if keep_dots { qi } else { 0 });
        for &j in &idx[..qi] {
            let c = (k.dot)(v, &news[j].record.vector);
            consider(c, news[j].record.seq, Who::New(j), cands);
            recent_cos.push(c);
            if keep_dots {
                earlier.push(c);
            }
        }
        if recent_cos.len() > RECENT_WINDOW {
            recent_cos.drain(..recent_cos.len() - RECENT_WINDOW);
        }
        // Best first; ties → newer first.
        cands.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)));
        let assoc: Vec<String> = cands
            .iter()
            .take(MAX_ASSOCIATIONS)
            .map(|c| match c.2 {
                Who::Row(r) => st.rows[r as usize].id().to_string(),
                Who::New(j) => news[j].record.id.clone(),
            })
            .collect();
        let n = &news[i];
        (n.given_significance.unwrap_or_else(|| significance(max_cos, recent_cos, n.importance)), assoc, earlier)
    }
}
