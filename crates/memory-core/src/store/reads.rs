//! Reads: each takes the state's shared lock, so it never sees a memory before it is durable
//! and never waits for the writer's fsync.

use std::sync::atomic::Ordering;


use super::plan::Plan;
use super::scan;
use super::shared::{memory_of, now_ms, Shared};
use super::state::State;
use super::types::{CompactReport, Memory, SearchRequest, StoreCounters, StoreStats};
use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::search::{check_vector, normalize};

pub(super) fn get(sh: &Shared, namespace: &str, id: &str, with_embedding: bool) -> Option<Memory> {
    let st = sh.state.read();
    let row = st.find(namespace, id, now_ms())?;
    Some(memory_of(&st, row, with_embedding, None))
}

pub(super) fn search(sh: &Shared, queries: &[f32], nq: usize, req: &SearchRequest) -> Result<Vec<Vec<Memory>>> {
    search_explained(sh, queries, nq, req).map(|(m, _)| m)
}

/// [`search`] and the plan that ran.
pub(super) fn search_explained(sh: &Shared, queries: &[f32], nq: usize, req: &SearchRequest) -> Result<(Vec<Vec<Memory>>, Plan)> {
    let dims = sh.dims;
    if queries.len() != nq * dims {
        return Err(Error::invalid(format!("queries hold {} floats, expected {nq} × {dims}", queries.len())));
    }
    super::plan::check_ef(req.ef)?;
    let mut q = queries.to_vec();
    for (i, v) in q.chunks_mut(dims.max(1)).enumerate() {
        check_vector(v, dims).map_err(|m| Error::invalid(format!("query {i}: {m}")))?;
        normalize(v);
    }
    let st = sh.state.read();
    let (hits, plan) = sh.search_planned(&st, &q, nq, &req.params(now_ms()));
    Ok((hits.into_iter().map(|h| h.into_iter().map(|x| memory_of(&st, x.row, req.include_embeddings, Some(x.score))).collect()).collect(), plan))
}

pub(super) fn search_text(sh: &Shared, query: &str, req: &SearchRequest) -> Result<Vec<Memory>> {
    let st = sh.state_with_text()?;
    let hits = super::textsearch::search_text(&st, query, &req.params(now_ms()))?;
    Ok(hits.into_iter().map(|x| memory_of(&st, x.row, req.include_embeddings, Some(x.score))).collect())
}

pub(super) fn top(sh: &Shared, req: &SearchRequest, count: usize) -> Vec<Memory> {
    let st = sh.state.read();
    let rows = scan::top_by_significance(&st, &req.params(now_ms()), count);
    rows.into_iter().map(|r| memory_of(&st, r, req.include_embeddings, None)).collect()
}

pub(super) fn top_until(sh: &Shared, req: &SearchRequest, count: usize, mut enough: impl FnMut(&Memory) -> bool) -> Vec<Memory> {
    let st = sh.state.read();
    let rows = scan::top_by_significance(&st, &req.params(now_ms()), count);
    let mut out = Vec::with_capacity(rows.len());
    let mut end = rows.len();
    let mut stopping = false;
    let mut i = 0;
    while i < end {
        let m = memory_of(&st, rows[i], req.include_embeddings, None);
        if !stopping && enough(&m) {
            stopping = true;
            end = end.min(i + 2);
        }
        out.push(m);
        i += 1;
    }
    out
}

pub(super) fn list(sh: &Shared, namespace: &str, after_seq: u64, limit: usize, filter: Option<&Filter>) -> (Vec<Memory>, Option<u64>) {
    let st = sh.state.read();
    let Some(ns) = st.ns_id(namespace) else { return (Vec::new(), None) };
    let now = now_ms();
    let nsd = &st.namespaces[ns as usize];
    let start = nsd.rows.partition_point(|&r| st.rows[r as usize].seq <= after_seq);
    let filter = filter.filter(|f| !f.is_empty());
    // Rows the posting lists give (exactly, or a superset to check), else the namespace's rows.
    let cand = filter.and_then(|f| f.candidates(&scan::NsPostings { st: &st, ns }));
    let check = filter.filter(|_| !cand.as_ref().is_some_and(|c| c.exact));
    let rows: Box<dyn Iterator<Item = u32>> = match (&cand, nsd.rows.get(start)) {
        (_, None) => Box::new(std::iter::empty()),
        (Some(c), Some(&first)) => Box::new(c.rows.range(first..)),
        (None, Some(_)) => Box::new(nsd.rows[start..].iter().copied()),
    };
    let mut out = Vec::new();
    let mut more = false;
    for r in rows {
        if !st.visible(r as usize, now) {
            continue;
        }
        if check.is_some_and(|f| !f.matches_packed(st.rows[r as usize].metadata())) {
            continue;
        }
        if out.len() == limit {
            more = true;
            break;
        }
        out.push(memory_of(&st, r, false, None));
    }
    // The cursor is the seq of the last memory returned.
    let next = if more { out.last().map(|m| m.seq) } else { None };
    (out, next)
}

pub(super) fn export(sh: &Shared, after_seq: u64, limit: usize) -> Vec<Memory> {
    let st = sh.state.read();
    let now = now_ms();
    let start = st.rows.partition_point(|r| r.seq <= after_seq);
    (start..st.len()).filter(|&r| st.visible(r, now)).take(limit).map(|r| memory_of(&st, r as u32, true, None)).collect()
}

pub(super) fn namespaces(sh: &Shared) -> Vec<(String, usize)> {
    let st = sh.state.read();
    let now = now_ms();
    let mut out: Vec<(String, usize)> = st
        .namespaces
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.clone(), st.visible_count(i as u32, now)))
        .filter(|(_, c)| *c > 0)
        .collect();
    out.sort();
    out
}

pub(super) fn count(sh: &Shared, namespace: &str) -> usize {
    let st = sh.state.read();
    st.ns_id(namespace).map(|n| st.visible_count(n, now_ms())).unwrap_or(0)
}

pub(super) fn counters(sh: &Shared) -> StoreCounters {
    counters_of(sh, &sh.state.read())
}

/// The counters, from a state the caller holds locked.
fn counters_of(sh: &Shared, st: &State) -> StoreCounters {
    let now = now_ms();
    let storage_bytes = sh.storage_bytes.load(Ordering::Relaxed);
    StoreCounters {
        total_memories: (0..st.namespaces.len()).map(|n| st.visible_count(n as u32, now)).sum(),
        namespaces: st.namespaces.iter().filter(|n| n.live > 0).count(),
        storage_bytes,
        total_associations: st.associations_total,
        last_seq: st.last_seq,
        fsyncs: sh.fsyncs.load(Ordering::Relaxed),
        groups: sh.groups.load(Ordering::Relaxed),
        records: sh.records.load(Ordering::Relaxed),
        rows: st.len(),
        dead_rows: st.len() - st.live_count,
        live_bytes: st.live_bytes,
        garbage_bytes: garbage_bytes(storage_bytes, st.live_bytes),
        compactions: sh.compactions.load(Ordering::Relaxed),
        plans_exact: sh.plans_exact.load(Ordering::Relaxed),
        plans_graph: sh.plans_graph.load(Ordering::Relaxed),
    }
}

pub(super) fn stats(sh: &Shared) -> StoreStats {
    let st = sh.state.read();
    let c = counters_of(sh, &st);
    // One read guard: a second one while the writer waits to write would deadlock.
    let ann = sh.ann.read();
    StoreStats {
        total_memories: c.total_memories,
        dims: st.dims,
        storage_bytes: c.storage_bytes,
        storage_path: sh.dir.display().to_string(),
        fsync: sh.fsync.name(),
        namespaces: c.namespaces,
        rows: c.rows,
        dead_rows: c.dead_rows,
        total_associations: c.total_associations,
        last_seq: c.last_seq,
        fsyncs: c.fsyncs,
        groups: c.groups,
        records: c.records,
        isa: crate::search::kernels().isa.name(),
        embedder: sh.embedder.clone(),
        int8_rows: sh.q8.as_ref().map_or(0, |q| q.rows.read().len()),
        mapped_rows: st.vectors.mapped_rows(),
        scrubbed_rows: sh.scrub.checked(),
        scrub_pending: sh.scrub.pending(),
        scrub_mismatches: sh.scrub.mismatches(),
        scrub_first_mismatch: sh.scrub.first_mismatch(),
        snapshot_rows: sh.snapshot_rows,
        ann_rows: ann.graphs.iter().flatten().map(|g| g.graph.len()).sum(),
        ann_bytes: ann.bytes(),
        ann_pending: ann.pending(&st),
        plans_exact: c.plans_exact,
        plans_graph: c.plans_graph,
        live_bytes: c.live_bytes,
        garbage_bytes: c.garbage_bytes,
        compactions: c.compactions,
        last_compaction: sh.last_compaction.lock().clone(),
    }
}

pub(super) fn compaction_info(sh: &Shared) -> (u64, u64, u64, Option<CompactReport>) {
    let count = sh.compactions.load(Ordering::SeqCst);
    let last = sh.last_compaction.lock().clone();
    let live = sh.state.read().live_bytes;
    let log = sh.storage_bytes.load(Ordering::Relaxed);
    (live, garbage_bytes(log, live), count, last)
}

/// The log's bytes that a compaction would drop (its header is neither).
pub(super) fn garbage_bytes(log_bytes: u64, live_bytes: u64) -> u64 {
    log_bytes.saturating_sub(super::log::HEADER_LEN as u64 + live_bytes)
}
