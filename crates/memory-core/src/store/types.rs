//! The store's public data types: options, inputs, outcomes and the memories reads return.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::scan::ScanParams;
use crate::error::{Error, Result};
use crate::filter::Filter;

/// The completion callback of an asynchronous store operation.
pub type Done<T> = Box<dyn FnOnce(Result<T>) + Send>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Acknowledge a write only after its fsync (group commit).
    Always,
    /// fsync every `interval` (1 s as parsed from `"interval"`); a crash may lose the
    /// writes of the last interval.
    Interval(Duration),
    /// Never fsync (except on close and compaction).
    Off,
}

impl FsyncPolicy {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "interval" => Ok(FsyncPolicy::Interval(Duration::from_secs(1))),
            "off" => Ok(FsyncPolicy::Off),
            other => Err(Error::invalid(format!("fsync must be one of always, interval, off; got {other:?}"))),
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::Interval(_) => "interval",
            FsyncPolicy::Off => "off",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbedderInfo {
    pub name: String,
    pub hash: String,
}

#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub dims: usize,
    pub fsync: FsyncPolicy,
    /// The embedder this store's vectors come from; checked against the data directory.
    pub embedder: Option<EmbedderInfo>,
    /// Accept a different embedder of the same dims (and record the new one).
    pub reembed: bool,
    /// Let concurrent writes share one fsync (default). `false` commits every operation on
    /// its own — the one-fsync-per-put baseline the benchmarks compare against.
    pub group_commit: bool,
    /// When the writer compacts the log by itself; `None` = only when asked.
    pub compact: Option<CompactPolicy>,
    /// Namespaces with at least this many rows get an ANN graph and the planner's graph plan
    /// (default [`crate::ann::ANN_MIN_ROWS`]; lower it in tests to exercise the graph on
    /// small data).
    pub ann_min_rows: usize,
    /// Keep a full-text (BM25) index of the texts, built at open (default). Without it,
    /// text searches fail with `invalid_request`.
    pub text_index: bool,
}

impl StoreOptions {
    pub fn new(dims: usize) -> Self {
        StoreOptions { dims, fsync: FsyncPolicy::Always, embedder: None, reembed: false, group_commit: true, compact: Some(CompactPolicy::default()), text_index: true, ann_min_rows: crate::ann::ANN_MIN_ROWS }
    }
}

/// Share of the log that must be garbage (deleted memories, superseded updates, delete
/// records) before the writer compacts by itself: then a compaction writes at most as many
/// bytes as the garbage it drops, so its cost stays proportional to what was written.
pub const DEFAULT_COMPACT_GARBAGE_RATIO: f64 = 0.5;
/// Smallest log the writer compacts by itself: below it a compaction would run too often
/// for too little (1 MiB is ~600 memories of 384 dims, rewritten in milliseconds).
pub const DEFAULT_COMPACT_MIN_BYTES: u64 = 1 << 20;

/// Automatic compaction: once the log holds at least `min_bytes` of which at least
/// `garbage_ratio` is garbage (checked after every write).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompactPolicy {
    pub garbage_ratio: f64,
    pub min_bytes: u64,
}

impl Default for CompactPolicy {
    fn default() -> Self {
        CompactPolicy { garbage_ratio: DEFAULT_COMPACT_GARBAGE_RATIO, min_bytes: DEFAULT_COMPACT_MIN_BYTES }
    }
}

impl CompactPolicy {
    /// Is a log of `log_bytes`, `garbage_bytes` of them garbage, due for compaction?
    pub fn due(&self, log_bytes: u64, garbage_bytes: u64) -> bool {
        log_bytes >= self.min_bytes && garbage_bytes > 0 && garbage_bytes as f64 >= self.garbage_ratio * log_bytes as f64
    }
}

/// A memory the writer's expiry sweep deleted (its TTL passed): `seq` is its delete record's.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpiredMemory {
    pub namespace: String,
    pub id: String,
    pub seq: u64,
}

#[derive(Debug, Clone, Default)]
pub struct PutInput {
    pub namespace: String,
    pub id: Option<String>,
    pub text: String,
    /// JSON object text; `None` or empty means `{}`.
    pub metadata: Option<String>,
    pub significance: Option<f32>,
    pub vector: Vec<f32>,
    pub ttl_ms: Option<u64>,
    /// The memory's timestamp (ms since the epoch) instead of the put's clock: a cluster
    /// replica applies a write with the time its receiving instance gave it (so every replica
    /// stores the same timestamp and expiry), and re-embedding copies a memory into the new
    /// embedder's store with the time it was first stored.
    pub timestamp: Option<i64>,
    /// Absolute expiry (ms since the epoch); wins over `ttl_ms` (re-embedding keeps it).
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PutOutcome {
    pub id: String,
    pub seq: u64,
    pub significance: f32,
    pub timestamp: i64,
    pub associations: Vec<String>,
    pub existing: bool,
    /// Visible memories in the namespace right after this put took effect (for an existing
    /// memory: when the put was answered). Exact even when several puts share a group commit.
    pub namespace_total: u32,
}

/// A memory as reads return it.
#[derive(Debug, Clone, PartialEq)]
pub struct Memory {
    pub id: String,
    pub namespace: String,
    pub text: String,
    /// JSON object text.
    pub metadata: String,
    pub significance: f32,
    pub timestamp: i64,
    pub associations: Vec<String>,
    pub seq: u64,
    pub expires_at: Option<i64>,
    pub embedding: Option<Vec<f32>>,
    pub score: Option<f32>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeleteOutcome {
    /// (id, seq of the delete record)
    pub deleted: Vec<(String, u64)>,
    pub not_found: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct CompactReport {
    pub rows_before: usize,
    pub rows_after: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// When it finished (ms since the Unix epoch) and how long it took from start to switch.
    pub finished_at_ms: i64,
    pub duration_ms: u64,
    /// The store's last sequence number when it started: every record up to it is merged.
    pub start_seq: u64,
    /// Started by the policy rather than asked for.
    pub automatic: bool,
}

#[derive(Debug, Clone, Default)]
pub struct StoreStats {
    pub total_memories: usize,
    pub dims: usize,
    pub storage_bytes: u64,
    pub storage_path: String,
    pub fsync: &'static str,
    pub namespaces: usize,
    pub rows: usize,
    pub dead_rows: usize,
    pub total_associations: usize,
    pub last_seq: u64,
    pub fsyncs: u64,
    pub groups: u64,
    pub records: u64,
    pub isa: &'static str,
    pub embedder: Option<EmbedderInfo>,
    /// Rows with int8 codes for the pre-pass of multi-query searches (0 without an int8
    /// kernel). After open the writer codes the stored rows in the background; until it
    /// reaches `rows`, multi-query searches use the f32 pass.
    pub int8_rows: usize,
    /// Rows whose vectors were mapped from the vectors file at open rather than copied out of
    /// the log (whole chunks of 16,384 rows; see docs/storage.md).
    pub mapped_rows: usize,
    /// The vectors file's rows checked against the checksums their puts recorded since open:
    /// at open those a clean close did not vouch for, then the others by the background
    /// scrub (`scrub_pending` left). `scrub_mismatches` rows did not match, the first being
    /// `scrub_first_mismatch`: damaged on disk, reported on stderr; run `repair` (see
    /// docs/storage.md, "Opening").
    pub scrubbed_rows: usize,
    pub scrub_pending: usize,
    pub scrub_mismatches: usize,
    pub scrub_first_mismatch: Option<usize>,
    /// Rows the open restored from the state snapshot of the last clean close instead of
    /// applying their records (`state-<gen>.idx`, docs/storage.md); 0 when the log was replayed.
    pub snapshot_rows: usize,
    /// Rows in the namespaces' ANN graphs, bytes the graphs hold, rows waiting to be indexed
    /// (after open the writer rebuilds the graphs while idle) and searches per plan so far.
    pub ann_rows: usize,
    pub ann_bytes: usize,
    pub ann_pending: usize,
    pub plans_exact: u64,
    pub plans_graph: u64,
    /// Log bytes of the live memories (what a compaction would keep) and the rest.
    pub live_bytes: u64,
    pub garbage_bytes: u64,
    pub compactions: u64,
    pub last_compaction: Option<CompactReport>,
}

/// The numbers of [`StoreStats`] that change (see [`super::TensorStore::counters`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreCounters {
    pub total_memories: usize,
    pub namespaces: usize,
    pub storage_bytes: u64,
    pub total_associations: usize,
    pub last_seq: u64,
    pub fsyncs: u64,
    pub groups: u64,
    pub records: u64,
    pub rows: usize,
    pub dead_rows: usize,
    /// Log bytes of the live rows, and of what a compaction would drop.
    pub live_bytes: u64,
    pub garbage_bytes: u64,
    /// Compactions so far (the last one's report: `compaction_info`).
    pub compactions: u64,
    /// Searches answered by the exact pass and by an ANN graph (see `store/plan.rs`).
    pub plans_exact: u64,
    pub plans_graph: u64,
}

/// Owned search parameters (for the batched path).
#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    pub namespace: String,
    pub k: usize,
    pub min_score: Option<f32>,
    pub min_significance: f32,
    pub filter: Option<Arc<Filter>>,
    /// Canonical text of the filter, used to group compatible queries.
    pub filter_key: String,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub recency_half_life_s: Option<f64>,
    pub include_embeddings: bool,
    /// Scan the f32 vectors even where the int8 pre-pass could serve (same results): for
    /// measuring the scan itself, or ruling the pre-pass out.
    pub f32_scan: bool,
    /// The exact pass even where the namespace's ANN graph could serve (see `store/plan.rs`).
    pub exact: bool,
    /// The graph's candidate list instead of the planner's (1…16,384; `store/plan.rs`).
    pub ef: Option<usize>,
}

impl SearchRequest {
    pub(super) fn params(&self, now_ms: i64) -> ScanParams<'_> {
        ScanParams {
            namespace: &self.namespace,
            k: self.k,
            min_score: self.min_score,
            min_significance: self.min_significance,
            filter: self.filter.as_deref(),
            since_ms: self.since_ms,
            until_ms: self.until_ms,
            recency_half_life_s: self.recency_half_life_s,
            now_ms,
            f32_scan: self.f32_scan,
            exact: self.exact,
            ef: self.ef,
        }
    }
}
