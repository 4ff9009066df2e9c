//! The searcher thread: queued single-query searches with the same parameters share one
//! multi-query pass over the rows.

use std::sync::mpsc::Receiver;
use std::sync::Arc;

use super::shared::{memory_of, now_ms, Shared};
use super::types::{Done, Memory, SearchRequest};
use crate::filter::Filter;

/// Most queries the searcher runs in one pass.
const MAX_SEARCH_BATCH: usize = 64;

/// One queued query (normalized) and its completion.
pub(super) struct SearchJob {
    pub query: Vec<f32>,
    /// A text query instead (BM25, `query` empty): runs on its own, not in a shared pass.
    pub text: Option<String>,
    pub req: SearchRequest,
    pub done: Done<Vec<Memory>>,
}

/// Which queries may share a pass: those whose requests have equal keys. Floats compare by
/// their bits, so a query only joins a pass whose parameters are exactly its own.
#[derive(PartialEq)]
struct PassKey<'a> {
    namespace: &'a str,
    k: usize,
    min_score: Option<u32>,
    min_significance: u32,
    filter: FilterKey<'a>,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    recency_half_life_s: Option<u64>,
    include_embeddings: bool,
    f32_scan: bool,
    exact: bool,
    ef: Option<usize>,
}

/// A request's filter, as far as sharing a pass goes.
#[derive(PartialEq)]
enum FilterKey<'a> {
    /// The filter's canonical text (empty: no filter, or one matching everything).
    Text(&'a str),
    /// A filter without canonical text: only queries with this very filter share its pass.
    Identity(*const Filter),
}

impl SearchRequest {
    fn pass_key(&self) -> PassKey<'_> {
        let filter = match (&self.filter, self.filter_key.is_empty()) {
            (Some(f), true) if !f.is_empty() => FilterKey::Identity(Arc::as_ptr(f)),
            (None, _) => FilterKey::Text(""),
            _ => FilterKey::Text(&self.filter_key),
        };
        PassKey {
            namespace: &self.namespace,
            k: self.k,
            min_score: self.min_score.map(f32::to_bits),
            min_significance: self.min_significance.to_bits(),
            filter,
            since_ms: self.since_ms,
            until_ms: self.until_ms,
            recency_half_life_s: self.recency_half_life_s.map(f64::to_bits),
            include_embeddings: self.include_embeddings,
            f32_scan: self.f32_scan,
            exact: self.exact,
            ef: self.ef,
        }
    }
}

/// The thread's body: until every sender is gone.
pub(super) fn run(shared: Arc<Shared>, rx: Receiver<SearchJob>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < 4 * MAX_SEARCH_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let (texts, jobs): (Vec<SearchJob>, Vec<SearchJob>) = jobs.into_iter().partition(|j| j.text.is_some());
        for j in texts {
            let r = super::reads::search_text(&shared, j.text.as_deref().unwrap_or(""), &j.req);
            (j.done)(r);
        }
        for group in group_jobs(jobs) {
            run_pass(&shared, group);
        }
    }
}

/// Compatible queries together, in arrival order; each group is one pass (≤ 64 queries).
fn group_jobs(jobs: Vec<SearchJob>) -> Vec<Vec<SearchJob>> {
    let mut groups: Vec<Vec<SearchJob>> = Vec::new();
    for j in jobs {
        let key = j.req.pass_key();
        match groups.iter().position(|g| g.len() < MAX_SEARCH_BATCH && g[0].req.pass_key() == key) {
            Some(i) => groups[i].push(j),
            None => groups.push(vec![j]),
        }
    }
    groups
}

/// One pass for a group of queries, then every completion.
fn run_pass(shared: &Shared, group: Vec<SearchJob>) {
    let mut q = Vec::with_capacity(group.len() * shared.dims);
    for j in &group {
        q.extend_from_slice(&j.query);
    }
    let req = &group[0].req;
    let st = shared.state.read();
    let hits = shared.search(&st, &q, group.len(), &req.params(now_ms()));
    let results: Vec<Vec<Memory>> = hits
        .into_iter()
        .map(|h| h.into_iter().map(|x| memory_of(&st, x.row, req.include_embeddings, Some(x.score))).collect())
        .collect();
    drop(st);
    for (j, r) in group.into_iter().zip(results) {
        (j.done)(Ok(r));
    }
}
