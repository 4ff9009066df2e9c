//! The JavaScript objects the binding takes and returns (`#[napi(object)]`): their `///` docs
//! are the JSDoc of the generated `index.d.cts`.

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::factory::MemoryValue;

#[napi(object)]
pub struct OpenOptions {
    /// Vector dimensions (fixed per data directory).
    pub dims: u32,
    /// `always` (default) | `interval` | `off`.
    pub fsync: Option<String>,
    pub embedder_name: Option<String>,
    pub embedder_hash: Option<String>,
    /// Accept a different embedder of the same dims.
    pub reembed: Option<bool>,
    /// Let concurrent writes share one fsync (default true; false = one fsync per write).
    pub group_commit: Option<bool>,
    /// Automatic compaction once this share of the log is garbage (default 0.5; 0 = off).
    pub compact_garbage_ratio: Option<f64>,
    /// …and the log holds at least this many bytes (default 1 MiB).
    pub compact_min_bytes: Option<f64>,
    /// Namespaces of at least this many rows get an ANN graph (default 200,000).
    pub ann_min_rows: Option<u32>,
    /// Keep a full-text (BM25) index of the texts, built at open (default true).
    pub text_index: Option<bool>,
}

#[napi(object)]
pub struct PutItem {
    pub namespace: String,
    pub id: Option<String>,
    pub text: String,
    /// JSON object text.
    pub metadata: Option<String>,
    pub significance: Option<f64>,
    pub embedding: Float32Array,
    pub ttl_ms: Option<f64>,
    /// The memory's time (ms since the epoch) instead of the put's (cluster replicas pass the
    /// receiving instance's; re-embedding keeps the original).
    pub timestamp_ms: Option<f64>,
    /// Absolute expiry (ms since the epoch); wins over `ttlMs`.
    pub expires_at_ms: Option<f64>,
}

#[napi(object)]
pub struct PutResult {
    pub id: String,
    pub seq: i64,
    pub significance: f64,
    pub timestamp: i64,
    pub associations: Vec<String>,
    pub existing: bool,
    /// Visible memories in the namespace right after this put took effect (existing: when answered).
    pub namespace_total: u32,
}

#[napi(object)]
pub struct Memory {
    pub id: String,
    pub namespace: String,
    pub text: String,
    /// JSON object text.
    pub metadata: String,
    pub significance: f64,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    pub associations: Vec<String>,
    pub seq: i64,
    pub expires_at: Option<i64>,
    pub embedding: Option<Float32Array>,
    pub score: Option<f64>,
}

#[napi(object)]
pub struct SearchOptions {
    pub namespace: String,
    /// How many results (top-k).
    pub k: u32,
    pub min_score: Option<f64>,
    pub min_significance: Option<f64>,
    /// Metadata filter as JSON text.
    pub filter: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub recency_half_life_s: Option<f64>,
    pub include_embeddings: Option<bool>,
    /// Scan the f32 vectors even where the int8 pre-pass could serve (same results; default
    /// false): for measuring the scan itself, or ruling the pre-pass out.
    pub f32_scan: Option<bool>,
    /// The exact pass even where the namespace's ANN graph could serve (default false).
    pub exact: Option<bool>,
    /// The graph's candidate list for this search instead of the planner's: an integer from 1
    /// to 16,384 (larger finds more of the true top k, slower); ignored by the exact plan.
    pub ef: Option<f64>,
    /// `top` and `searchBatched`: stop once the results' own bytes (id, namespace, text,
    /// metadata, associations, 4 per embedding float) pass this; the memory that passes it and
    /// one more are still returned, so a caller estimating a larger encoding sees the cut.
    pub max_bytes: Option<f64>,
}

#[napi(object)]
pub struct DeletedId {
    pub id: String,
    pub seq: i64,
}

#[napi(object)]
pub struct DeleteResult {
    pub deleted: Vec<DeletedId>,
    pub not_found: Vec<String>,
}

/// Which plan answered a search and why (`retrieve`'s `explain`).
#[napi(object, object_from_js = false)]
pub struct SearchPlan {
    /// `exact` | `graph`.
    pub plan: String,
    pub reason: String,
    /// Rows the filter's indexed terms leave, when it has any.
    pub filter_candidates: Option<f64>,
    /// The graph's candidate list (graph plans; 0 for exact).
    pub ef: u32,
    /// Graph nodes and uncovered rows scored, over the queries (graph plans).
    pub scored: f64,
}

#[napi(object, object_from_js = false)]
pub struct ExplainedSearch {
    #[napi(ts_type = "Array<Array<Memory>>")]
    pub results: Vec<Vec<MemoryValue>>,
    pub plan: SearchPlan,
}

#[napi(object, object_from_js = false)]
pub struct ListPage {
    #[napi(ts_type = "Array<Memory>")]
    pub memories: Vec<MemoryValue>,
    pub next_cursor: Option<i64>,
}

#[napi(object)]
pub struct NamespaceCount {
    pub name: String,
    pub total_memories: u32,
}

#[napi(object)]
pub struct StoreStats {
    pub total_memories: u32,
    pub dims: u32,
    pub storage_bytes: i64,
    pub storage_path: String,
    pub fsync: String,
    pub namespaces: u32,
    pub rows: u32,
    pub dead_rows: u32,
    pub total_associations: u32,
    pub last_seq: i64,
    pub fsyncs: i64,
    pub groups: i64,
    pub records: i64,
    pub isa: String,
    pub embedder_name: Option<String>,
    pub embedder_hash: Option<String>,
    /// Rows with int8 codes for the pre-pass of multi-query searches (0 on CPUs without
    /// AVX-512 VNNI). Coded in the background after open; multi-query searches use the f32
    /// pass until it reaches `rows`.
    pub int8_rows: u32,
    /// Rows whose vectors were mapped from the data directory's vectors file at open instead
    /// of copied out of the log (whole chunks of 16,384 rows; see docs/storage.md).
    pub mapped_rows: u32,
    /// Rows of the vectors file checked against their log checksums since open (at open, then
    /// by the background scrub, which has `scrubPending` left); `scrubMismatches` did not
    /// match (damaged on disk; the first is row `scrubFirstMismatch`): run `repair`.
    pub scrubbed_rows: u32,
    pub scrub_pending: u32,
    pub scrub_mismatches: u32,
    pub scrub_first_mismatch: Option<u32>,
    /// Rows in the ANN graphs, the graphs' bytes, rows waiting to be indexed, and searches
    /// answered per plan (`exact` / `graph`) since open.
    pub ann_rows: u32,
    pub ann_bytes: f64,
    pub ann_pending: u32,
    pub plans_exact: f64,
    pub plans_graph: f64,
    /// Log bytes of the live memories (what a compaction keeps) and the rest.
    pub live_bytes: i64,
    pub garbage_bytes: i64,
    pub compactions: i64,
    pub last_compaction: Option<CompactResult>,
}

#[napi(object)]
pub struct CompactResult {
    pub rows_before: u32,
    pub rows_after: u32,
    pub bytes_before: i64,
    pub bytes_after: i64,
    /// When it finished (ms since the Unix epoch) and how long it took.
    pub finished_at: i64,
    pub duration_ms: i64,
    /// The store's last sequence number when it started: every change up to it is merged.
    pub start_seq: i64,
    /// Started by the policy rather than asked for.
    pub automatic: bool,
}

/// Log bytes of the live memories and the rest, and the last compaction (null before one).
#[napi(object)]
pub struct CompactionInfo {
    pub live_bytes: i64,
    pub garbage_bytes: i64,
    pub compactions: i64,
    pub last: Option<CompactResult>,
}

/// A memory the expiry sweep deleted; `seq` is its delete record's.
#[napi(object)]
pub struct ExpiredMemory {
    pub namespace: String,
    pub id: String,
    pub seq: i64,
}

#[napi(object)]
pub struct BulkRecord {
    pub namespace: String,
    pub id: String,
    pub text: String,
    pub metadata: Option<String>,
    pub significance: f64,
    pub timestamp: i64,
    pub associations: Option<Vec<String>>,
    pub expires_at: Option<i64>,
    pub embedding: Float32Array,
}

/// What `repair` did (see `crates/memory-core/src/store/repair.rs`).
#[napi(object)]
pub struct RepairResult {
    /// The log.
    pub file: String,
    /// Records and bytes of the log after repair.
    pub kept_records: i64,
    pub kept_bytes: i64,
    /// The damaged ranges that were not kept, in file order (empty: the log was intact).
    pub lost: Vec<LostRange>,
    pub lost_bytes: i64,
    /// The damaged bytes (concatenated in file order) and the report describing them.
    pub damaged_to: Option<String>,
    pub report_to: Option<String>,
    /// Why `store.json` was rebuilt from the log, and where the unreadable one was kept.
    pub meta_reason: Option<String>,
    pub meta_moved_to: Option<String>,
}

#[napi(object)]
pub struct LostRange {
    /// Bytes `start..end` of the log as it was.
    pub start: i64,
    pub end: i64,
    /// The lost sequence numbers lie in `firstSeq..=lastSeq` (no `lastSeq`: to the end).
    pub first_seq: i64,
    pub last_seq: Option<i64>,
    /// Records the range held, when their length prefixes still tile it.
    pub records: Option<i64>,
    pub reason: String,
}

#[napi(object)]
pub struct TextWindow {
    /// UTF-16 offsets (JavaScript string indices).
    pub start: u32,
    pub end: u32,
    pub text: String,
}

#[napi(object)]
pub struct KernelInfo {
    pub isa: String,
    pub available: Vec<String>,
    /// Whether multi-query searches and the significance pass use the int8 pre-pass
    /// (AVX-512 VNNI, unless `MEMORY_SERVER_Q8=off` or the ISA is forced lower).
    pub int8: bool,
    /// Its dot-product kernel: "amx" (Intel AMX tiles, where the CPU and OS have them, unless
    /// `MEMORY_SERVER_Q8=vnni`), "vnni", or "none".
    pub int8_kernel: String,
    /// The memory-bound f32 kernels (single-query scan, bandwidth sum) prefetch in software
    /// (AVX-512 on Intel, unless `MEMORY_SERVER_PREFETCH=off`; `on` forces it).
    pub prefetch: bool,
}
