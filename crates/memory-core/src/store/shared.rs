//! What the store's threads share: the in-memory state behind a lock, the int8 codes of its
//! rows, counters, and the search every reader goes through.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex, RwLock, RwLockReadGuard};

use super::log::NO_EXPIRY;
use super::prepass;
use super::scan::{self, Hit, ScanParams};
use super::plan::{self, Plan, PlanKind};
use super::state::State;
use crate::ann::AnnSet;
use super::types::{CompactPolicy, CompactReport, EmbedderInfo, FsyncPolicy, Memory};
use crate::search::q8::{Q8Kernels, Q8Rows};

/// Rows coded per slice of the writer's idle catch-up (a few ms; the writer checks for new
/// operations between slices).
pub(super) const Q8_CATCH_UP_ROWS: usize = 4096;

// Every pass the pre-pass can serve takes it, a single query too: the f32 scan of one query
// is memory-bound on 1536 bytes a row, the pre-pass reads 384 (`examples/search_q8_bench`,
// 1M × 384 on 2 cores: 1 query 26 ms vs 77 ms, 2 queries 21–27 ms vs 52 ms, 64 queries
// 87–91 ms vs 267 ms).
/// Rows a search's int8 pass may leave to the f32 scan (rows not coded yet: the tail is
/// scanned on one thread).
const Q8_MAX_TAIL: usize = 16384;

pub(super) struct Shared {
    pub dir: PathBuf,
    pub dims: usize,
    pub fsync: FsyncPolicy,
    pub group_commit: bool,
    pub compact: Option<CompactPolicy>,
    /// Keep a full-text index (`StoreOptions::text_index`).
    pub text_index: bool,
    pub embedder: Option<EmbedderInfo>,
    pub state: RwLock<State>,
    /// Int8 codes of the rows (CPUs with an int8 kernel only), see [`Q8Shared`].
    pub q8: Option<Q8Shared>,
    /// The namespaces' ANN graphs (only the writer changes them). Lock order: `state`, then
    /// `ann` (and `q8` after both).
    pub ann: RwLock<AnnSet>,
    /// Searches answered per plan (queries of a multi-query pass count once each).
    pub plans_exact: AtomicU64,
    pub plans_graph: AtomicU64,
    pub storage_bytes: AtomicU64,
    pub fsyncs: AtomicU64,
    pub groups: AtomicU64,
    pub records: AtomicU64,
    pub closed: AtomicBool,
    pub compactions: AtomicU64,
    pub last_compaction: Mutex<Option<CompactReport>>,
    /// The vectors file's rows checked against the log since open ([`super::scrub`]).
    pub scrub: super::scrub::ScrubProgress,
    /// Rows the open restored from the state snapshot (`store/snapshot`).
    pub snapshot_rows: usize,
    /// Signalled by the writer once the text index an open left pending is in place
    /// ([`Shared::state_with_text`]).
    pub text_ready: (Mutex<()>, Condvar),
}

/// Int8 codes of a prefix of the state's rows (`rows.len() <= state.len()`), for the exact
/// int8 pre-pass of [`prepass::search_q8`]: the significance pass of every put group and
/// multi-query searches. Only the writer changes them: it appends the codes of new rows
/// before each put group and, while idle, those of rows it has not coded yet (after open, a
/// few thousand rows at a time); compaction clears them while it holds the state's write
/// lock. Lock order: `state` first, then `rows`.
pub(super) struct Q8Shared {
    pub rows: RwLock<Q8Rows>,
    pub kern: &'static Q8Kernels,
}

impl Q8Shared {
    /// Code up to `max` more rows of `st`; true once every row is coded.
    pub fn catch_up(&self, st: &State, max: usize) -> bool {
        let mut rows = self.rows.write();
        Self::extend(&mut rows, st, max)
    }
    pub fn extend(rows: &mut Q8Rows, st: &State, max: usize) -> bool {
        debug_assert!(rows.len() <= st.len(), "int8 codes ahead of the state");
        let end = st.len().min(rows.len().saturating_add(max));
        for r in rows.len()..end {
            rows.push(st.vectors.row(r));
        }
        end == st.len()
    }
}

impl Shared {
    /// The state once its text index is in place, for a text search. After an open the
    /// writer loads or rebuilds the index when it is first idle (`State::text_index_pending`):
    /// a text search arriving before then waits for it (without holding the lock, which the
    /// writer takes to install it). `Err` if the store closes meanwhile.
    pub fn state_with_text(&self) -> crate::error::Result<RwLockReadGuard<'_, State>> {
        loop {
            let st = self.state.read();
            if !st.text_index_pending() {
                return Ok(st);
            }
            drop(st);
            if self.closed.load(Ordering::SeqCst) {
                return Err(crate::error::Error::Unavailable("the store is closed".into()));
            }
            // The writer notifies under this mutex after installing: checking again under it
            // cannot miss that. The timeout only bounds a wait on a writer that died.
            let mut g = self.text_ready.0.lock();
            if self.state.read().text_index_pending() {
                self.text_ready.1.wait_for(&mut g, std::time::Duration::from_millis(100));
            }
        }
    }

    /// The writer: the text index an open left pending is in place (or the store closes).
    pub fn notify_text_ready(&self) {
        let _g = self.text_ready.0.lock();
        self.text_ready.1.notify_all();
    }

    /// After close: give the memory of the rows, vectors and int8 codes back now rather than
    /// when the last handle goes (a JavaScript wrapper may live on until a garbage
    /// collection). Reads of a closed store see it empty.
    pub fn release(&self) {
        let old = std::mem::replace(&mut *self.state.write(), State::new(self.dims));
        if let Some(q) = &self.q8 {
            *q.rows.write() = Q8Rows::new(self.dims);
        }
        self.ann.write().clear();
        drop(old);
    }

    /// Top-k by the planner's choice (`store/plan.rs`): the namespace's graph, or the exact
    /// pass of [`Shared::search_exact`].
    pub fn search(&self, st: &State, queries: &[f32], nq: usize, p: &ScanParams) -> Vec<Vec<Hit>> {
        self.search_planned(st, queries, nq, p).0
    }

    /// [`Shared::search`] and the plan that ran.
    pub fn search_planned(&self, st: &State, queries: &[f32], nq: usize, p: &ScanParams) -> (Vec<Vec<Hit>>, Plan) {
        let ann = self.ann.read();
        let mut plan = plan::choose(st, &ann, p, p.exact);
        let hits = match plan.kind {
            PlanKind::Graph => {
                self.plans_graph.fetch_add(nq as u64, Ordering::Relaxed);
                plan::run_graph(st, &ann, queries, nq, p, &mut plan)
            }
            PlanKind::Exact => {
                drop(ann);
                self.plans_exact.fetch_add(nq as u64, Ordering::Relaxed);
                self.search_exact(st, queries, nq, p)
            }
        };
        (hits, plan)
    }

    /// Exact top-k: through the int8 pre-pass where it serves (no metadata filter or score
    /// transform, the rows coded, not asked for the f32 scan), else the f32 scan.
    pub fn search_exact(&self, st: &State, queries: &[f32], nq: usize, p: &ScanParams) -> Vec<Vec<Hit>> {
        if let Some(q8) = &self.q8 {
            if !p.f32_scan && p.filter.is_none_or(|f| f.is_empty()) && p.recency_half_life_s.is_none() && p.min_score.is_none() {
                let rows = q8.rows.read();
                if st.len() - rows.len() <= Q8_MAX_TAIL {
                    return prepass::search_q8(st, &rows, q8.kern, queries, nq, p, f32::NEG_INFINITY);
                }
            }
        }
        scan::search(st, queries, nq, p)
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A row as reads return it.
pub(super) fn memory_of(st: &State, row: u32, with_embedding: bool, score: Option<f32>) -> Memory {
    let r = row as usize;
    let x = &st.rows[r];
    Memory {
        id: x.id().to_string(),
        namespace: st.namespaces[st.ns_col[r] as usize].name.clone(),
        text: x.text().to_string(),
        metadata: x.metadata_raw().to_string(),
        significance: st.sig_col[r],
        timestamp: st.ts_col[r],
        associations: st.associations(row).map(str::to_string).collect(),
        seq: x.seq,
        expires_at: (st.exp_col[r] != NO_EXPIRY).then_some(st.exp_col[r]),
        embedding: with_embedding.then(|| st.vectors.row(r).to_vec()),
        score,
    }
}
