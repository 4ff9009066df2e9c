//! Thin napi-rs binding over `memory-core`: conversions, promises and `AsyncTask`s only.
//!
//! Errors reach JavaScript as `Error`s whose message starts with `[code] ` (a stable machine
//! code such as `invalid_request`, `not_found`, `storage_full`, `corrupt`, `locked`);
//! `ts/native.ts` turns that prefix into the error's `code` property.

#![deny(clippy::all)]

use std::sync::Arc;

/// mimalloc for the core's allocations (the addon's own heap; Node's is untouched): replaying
/// 1M records at open allocates ~5M small objects, which took ~15% less time than with glibc's
/// malloc, and so did a 1,000-item batch store. The local-dynamic TLS model keeps it loadable
/// through `dlopen` next to other addons.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use memory_core::embed::{chunk, HashEmbedder};
use memory_core::filter::Filter;
use memory_core::store::{self as core_store, FsyncPolicy, StoreOptions, TensorStore};
use napi::bindgen_prelude::*;
use napi_derive::napi;

/// ONNX embedding models: `ModelTokenizer` and `meanPool`.
pub mod model;
mod completion;
mod factory;

use factory::{MemoryValue, PutResultValue};

fn to_napi(e: memory_core::Error) -> napi::Error {
    napi::Error::new(Status::GenericFailure, format!("[{}] {}", e.code().as_str(), e))
}

fn invalid(msg: impl Into<String>) -> napi::Error {
    napi::Error::new(Status::InvalidArg, format!("[invalid_request] {}", msg.into()))
}

fn parse_filter(json: Option<&str>) -> napi::Result<Option<Filter>> {
    match json {
        None | Some("") => Ok(None),
        Some(s) => {
            let v: serde_json::Value = serde_json::from_str(s).map_err(|e| invalid(format!("filter is not valid JSON: {e}")))?;
            Filter::compile(&v).map(Some).map_err(to_napi)
        }
    }
}

/// Hands an operation to the store now — on the JS thread, so operations reach the writer in
/// the order JS issued them (pipelined stores of one connection land in the log in request
/// order) — and returns its promise, settled through [`completion`].
fn submit<'env, U: Send + 'static, T: ToNapiValue>(
    env: &'env Env,
    start: impl FnOnce(core_store::Done<U>),
    map: impl FnOnce(U) -> napi::Result<T> + Send + 'static,
) -> napi::Result<PromiseRaw<'env, T>> {
    completion::promise(env, to_napi, start, map)
}

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

impl From<core_store::Memory> for Memory {
    fn from(m: core_store::Memory) -> Self {
        Memory {
            id: m.id,
            namespace: m.namespace,
            text: m.text,
            metadata: m.metadata,
            significance: m.significance as f64,
            timestamp: m.timestamp,
            associations: m.associations,
            seq: m.seq as i64,
            expires_at: m.expires_at,
            embedding: m.embedding.map(Float32Array::new),
            score: m.score.map(|s| s as f64),
        }
    }
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
    /// false): for measuring the scan itself.
    pub f32_scan: Option<bool>,
}

fn search_request(o: &SearchOptions) -> napi::Result<core_store::SearchRequest> {
    let filter = parse_filter(o.filter.as_deref())?;
    Ok(core_store::SearchRequest {
        namespace: o.namespace.clone(),
        k: o.k as usize,
        min_score: o.min_score.map(|x| x as f32),
        min_significance: o.min_significance.unwrap_or(0.0) as f32,
        filter_key: o.filter.clone().unwrap_or_default(),
        filter: filter.map(Arc::new),
        since_ms: o.since_ms,
        until_ms: o.until_ms,
        recency_half_life_s: o.recency_half_life_s,
        include_embeddings: o.include_embeddings.unwrap_or(false),
        f32_scan: o.f32_scan.unwrap_or(false),
    })
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

impl From<core_store::DeleteOutcome> for DeleteResult {
    fn from(d: core_store::DeleteOutcome) -> Self {
        DeleteResult {
            deleted: d.deleted.into_iter().map(|(id, seq)| DeletedId { id, seq: seq as i64 }).collect(),
            not_found: d.not_found,
        }
    }
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
}

#[napi(object)]
pub struct CompactResult {
    pub rows_before: u32,
    pub rows_after: u32,
    pub bytes_before: i64,
    pub bytes_after: i64,
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

#[napi(object)]
pub struct RepairResult {
    pub file: String,
    pub kept_records: i64,
    pub kept_bytes: i64,
    pub moved_to: Option<String>,
    pub moved_bytes: i64,
    pub reason: Option<String>,
}

/// A durable memory store (one data directory). Writes resolve once durable under the
/// fsync policy; reads never see an unacknowledged write.
#[napi]
pub struct MemoryStore {
    inner: Arc<TensorStore>,
}

pub struct OpenTask {
    dir: String,
    opts: Option<StoreOptions>,
}

impl Task for OpenTask {
    type Output = TensorStore;
    type JsValue = MemoryStore;
    fn compute(&mut self) -> napi::Result<TensorStore> {
        TensorStore::open(&self.dir, self.opts.take().expect("opened once")).map_err(to_napi)
    }
    fn resolve(&mut self, _env: Env, s: TensorStore) -> napi::Result<MemoryStore> {
        Ok(MemoryStore { inner: Arc::new(s) })
    }
}

fn store_options(o: OpenOptions) -> napi::Result<StoreOptions> {
    let mut so = StoreOptions::new(o.dims as usize);
    if let Some(f) = o.fsync.as_deref() {
        so.fsync = FsyncPolicy::parse(f).map_err(to_napi)?;
    }
    so.embedder = match (o.embedder_name, o.embedder_hash) {
        (Some(name), hash) => Some(core_store::EmbedderInfo { name, hash: hash.unwrap_or_default() }),
        _ => None,
    };
    so.reembed = o.reembed.unwrap_or(false);
    so.group_commit = o.group_commit.unwrap_or(true);
    Ok(so)
}

pub struct SearchTask {
    store: Arc<TensorStore>,
    queries: Vec<f32>,
    nq: usize,
    req: core_store::SearchRequest,
}

impl Task for SearchTask {
    type Output = Vec<Vec<core_store::Memory>>;
    type JsValue = Vec<Vec<MemoryValue>>;
    fn compute(&mut self) -> napi::Result<Self::Output> {
        self.store.search(&self.queries, self.nq, &self.req).map_err(to_napi)
    }
    fn resolve(&mut self, _env: Env, out: Self::Output) -> napi::Result<Self::JsValue> {
        Ok(out.into_iter().map(|v| v.into_iter().map(MemoryValue).collect()).collect())
    }
}

impl MemoryStore {
    fn counter_values(&self) -> [f64; 10] {
        let s = self.inner.counters();
        [
            s.total_memories as f64,
            s.namespaces as f64,
            s.storage_bytes as f64,
            s.total_associations as f64,
            s.last_seq as f64,
            s.fsyncs as f64,
            s.groups as f64,
            s.records as f64,
            s.rows as f64,
            s.dead_rows as f64,
        ]
    }
}

#[napi]
impl MemoryStore {
    /// Open (or create) a store synchronously (replays the log: seconds for millions of memories).
    #[napi(factory)]
    pub fn open(dir: String, options: OpenOptions) -> napi::Result<MemoryStore> {
        let s = TensorStore::open(&dir, store_options(options)?).map_err(to_napi)?;
        Ok(MemoryStore { inner: Arc::new(s) })
    }

    /// Open (or create) a store on the thread pool.
    #[napi(ts_return_type = "Promise<MemoryStore>")]
    pub fn open_async(dir: String, options: OpenOptions) -> napi::Result<AsyncTask<OpenTask>> {
        Ok(AsyncTask::new(OpenTask { dir, opts: Some(store_options(options)?) }))
    }

    #[napi(getter)]
    pub fn dims(&self) -> u32 {
        self.inner.dims() as u32
    }

    /// Store memories, all-or-nothing; resolves once durable.
    #[napi(ts_return_type = "Promise<PutResult[]>")]
    pub fn put<'env>(&self, env: &'env Env, items: Vec<PutItem>) -> napi::Result<PromiseRaw<'env, Vec<PutResultValue>>> {
        let inputs: Vec<core_store::PutInput> = items
            .into_iter()
            .map(|it| core_store::PutInput {
                namespace: it.namespace,
                id: it.id,
                text: it.text,
                metadata: it.metadata,
                significance: it.significance.map(|s| s as f32),
                vector: it.embedding.to_vec(),
                ttl_ms: it.ttl_ms.map(|t| t.max(0.0) as u64),
            })
            .collect();
        submit(env, |d| self.inner.put(inputs, d), |out| Ok(out.into_iter().map(PutResultValue).collect::<Vec<_>>()))
    }

    /// `put` of one memory with positional arguments: no object to read property by property,
    /// and the result comes from the registered put-result factory (see `setPutResultFactory`).
    #[napi(ts_return_type = "Promise<PutResult>")]
    #[allow(clippy::too_many_arguments)]
    pub fn put_one<'env>(
        &self,
        env: &'env Env,
        namespace: String,
        id: Option<String>,
        text: String,
        metadata: Option<String>,
        significance: Option<f64>,
        ttl_ms: Option<f64>,
        embedding: Float32ArraySlice,
    ) -> napi::Result<PromiseRaw<'env, PutResultValue>> {
        let input = core_store::PutInput {
            namespace,
            id,
            text,
            metadata,
            significance: significance.map(|s| s as f32),
            vector: embedding.to_vec(),
            ttl_ms: ttl_ms.map(|t| t.max(0.0) as u64),
        };
        submit(env, |d| self.inner.put(vec![input], d), |mut out| {
            out.pop().map(PutResultValue).ok_or_else(|| napi::Error::new(Status::GenericFailure, "[internal] a put returned no result"))
        })
    }

    /// Replace metadata (whole) and/or set significance.
    #[napi(ts_return_type = "Promise<Memory>")]
    pub fn update<'env>(&self, env: &'env Env, namespace: String, id: String, metadata: Option<String>, significance: Option<f64>) -> napi::Result<PromiseRaw<'env, MemoryValue>> {
        submit(env, |d| self.inner.update(namespace, id, metadata, significance.map(|s| s as f32), d), |m| Ok(MemoryValue(m)))
    }

    #[napi(ts_return_type = "Promise<DeleteResult>")]
    pub fn delete<'env>(&self, env: &'env Env, namespace: String, ids: Vec<String>) -> napi::Result<PromiseRaw<'env, DeleteResult>> {
        submit(env, |d| self.inner.delete(namespace, ids, d), |r| Ok(DeleteResult::from(r)))
    }

    /// Delete every memory of the namespace matching the filter (JSON); no filter = all.
    #[napi(ts_return_type = "Promise<DeleteResult>")]
    pub fn delete_where<'env>(&self, env: &'env Env, namespace: String, filter: Option<String>) -> napi::Result<PromiseRaw<'env, DeleteResult>> {
        let f = parse_filter(filter.as_deref())?;
        submit(env, |d| self.inner.delete_where(namespace, f, d), |r| Ok(DeleteResult::from(r)))
    }

    /// Load memories as recorded (significance, associations, timestamps kept; no scan).
    #[napi(ts_return_type = "Promise<number>")]
    pub fn bulk_load<'env>(&self, env: &'env Env, records: Vec<BulkRecord>) -> napi::Result<PromiseRaw<'env, u32>> {
        let recs: Vec<core_store::PutRecord> = records
            .into_iter()
            .map(|r| core_store::PutRecord {
                seq: 0,
                ts: r.timestamp,
                namespace: r.namespace,
                id: r.id,
                text: r.text,
                metadata: r.metadata.unwrap_or_else(|| "{}".into()),
                significance: r.significance as f32,
                expires_at: r.expires_at.unwrap_or(core_store::log::NO_EXPIRY),
                associations: r.associations.unwrap_or_default(),
                vector: r.embedding.to_vec(),
            })
            .collect();
        submit(env, |d| self.inner.bulk_load(recs, d), |n| Ok(n as u32))
    }

    /// Rewrite the log without deleted/expired memories.
    #[napi(ts_return_type = "Promise<CompactResult>")]
    pub fn compact<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, CompactResult>> {
        submit(env, |d| self.inner.compact(d), |r| {
            Ok(CompactResult { rows_before: r.rows_before as u32, rows_after: r.rows_after as u32, bytes_before: r.bytes_before as i64, bytes_after: r.bytes_after as i64 })
        })
    }

    /// fsync anything written but not yet synced.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn flush<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, ()>> {
        submit(env, |d| self.inner.flush(d), Ok)
    }

    /// Flush and close; later calls fail with `unavailable`.
    #[napi]
    pub fn close(&self) -> napi::Result<()> {
        self.inner.close().map_err(to_napi)
    }

    #[napi(ts_return_type = "Memory | null")]
    pub fn get(&self, namespace: String, id: String, with_embedding: Option<bool>) -> Option<MemoryValue> {
        self.inner.get(&namespace, &id, with_embedding.unwrap_or(false)).map(MemoryValue)
    }

    /// Exact top-k for `nq` queries (row-major `nq × dims`) in one pass, on the thread pool.
    #[napi(ts_return_type = "Promise<Memory[][]>")]
    pub fn search(&self, queries: Float32Array, nq: u32, options: SearchOptions) -> napi::Result<AsyncTask<SearchTask>> {
        Ok(AsyncTask::new(SearchTask { store: self.inner.clone(), queries: queries.to_vec(), nq: nq as usize, req: search_request(&options)? }))
    }

    /// Synchronous form of `search` (blocks the event loop: for tools and benchmarks).
    #[napi(ts_return_type = "Memory[][]")]
    pub fn search_sync(&self, queries: Float32Array, nq: u32, options: SearchOptions) -> napi::Result<Vec<Vec<MemoryValue>>> {
        let out = self.inner.search(&queries, nq as usize, &search_request(&options)?).map_err(to_napi)?;
        Ok(out.into_iter().map(|v| v.into_iter().map(MemoryValue).collect()).collect())
    }

    /// One query; concurrent calls with equal options share one pass over memory.
    #[napi(ts_return_type = "Promise<Memory[]>")]
    pub fn search_batched<'env>(&self, env: &'env Env, query: Float32Array, options: SearchOptions) -> napi::Result<PromiseRaw<'env, Vec<MemoryValue>>> {
        let req = search_request(&options)?;
        let q = query.to_vec();
        submit(env, |d| self.inner.search_batched(q, req, d), |r| {
            Ok(r.into_iter().map(MemoryValue).collect::<Vec<_>>())
        })
    }

    /// Highest significance first (newest first on ties), from the ordered index.
    #[napi(ts_return_type = "Memory[]")]
    pub fn top(&self, options: SearchOptions) -> napi::Result<Vec<MemoryValue>> {
        let req = search_request(&options)?;
        Ok(self.inner.top(&req, options.k as usize).into_iter().map(MemoryValue).collect())
    }

    /// A page of a namespace in store order after `afterSeq` (0 = from the start).
    #[napi]
    pub fn list(&self, namespace: String, after_seq: i64, limit: u32, filter: Option<String>) -> napi::Result<ListPage> {
        let f = parse_filter(filter.as_deref())?;
        let (m, next) = self.inner.list(&namespace, after_seq.max(0) as u64, limit as usize, f.as_ref());
        Ok(ListPage { memories: m.into_iter().map(MemoryValue).collect(), next_cursor: next.map(|s| s as i64) })
    }

    /// Every memory (all namespaces, with embeddings) after `afterSeq`, up to `limit`.
    #[napi(ts_return_type = "Memory[]")]
    pub fn export(&self, after_seq: i64, limit: u32) -> Vec<MemoryValue> {
        self.inner.export(after_seq.max(0) as u64, limit as usize).into_iter().map(MemoryValue).collect()
    }

    #[napi]
    pub fn namespaces(&self) -> Vec<NamespaceCount> {
        self.inner.namespaces().into_iter().map(|(name, n)| NamespaceCount { name, total_memories: n as u32 }).collect()
    }

    #[napi]
    pub fn count(&self, namespace: String) -> u32 {
        self.inner.count(&namespace) as u32
    }

    /// The changing counters only, as numbers in one array (cheap to call per request):
    /// `[totalMemories, namespaces, storageBytes, totalAssociations, lastSeq, fsyncs, groups,
    /// records, rows, deadRows]`.
    #[napi]
    pub fn counters(&self) -> Float64Array {
        Float64Array::new(self.counter_values().to_vec())
    }

    /// Writes the numbers of `counters()` into `out` (length ≥ 10): no allocation, for
    /// handlers called at high rates (`stats`).
    #[napi]
    pub fn counters_into(&self, mut out: Float64ArraySlice) -> napi::Result<()> {
        // SAFETY: called synchronously on the JS thread; nothing else touches `out` meanwhile.
        let o = unsafe { out.as_mut() };
        if o.len() < 10 {
            return Err(invalid("countersInto: out must hold at least 10 numbers"));
        }
        o[..10].copy_from_slice(&self.counter_values());
        Ok(())
    }

    #[napi]
    pub fn stats(&self) -> StoreStats {
        let s = self.inner.stats();
        StoreStats {
            total_memories: s.total_memories as u32,
            dims: s.dims as u32,
            storage_bytes: s.storage_bytes as i64,
            storage_path: s.storage_path,
            fsync: s.fsync.to_string(),
            namespaces: s.namespaces as u32,
            rows: s.rows as u32,
            dead_rows: s.dead_rows as u32,
            total_associations: s.total_associations as u32,
            last_seq: s.last_seq as i64,
            fsyncs: s.fsyncs as i64,
            groups: s.groups as i64,
            records: s.records as i64,
            isa: s.isa.to_string(),
            embedder_name: s.embedder.as_ref().map(|e| e.name.clone()),
            embedder_hash: s.embedder.map(|e| e.hash),
            int8_rows: s.int8_rows as u32,
            mapped_rows: s.mapped_rows as u32,
        }
    }
}

/// Keep every record before the first corrupt one; move the rest aside (stopped store only).
/// Register `(id, seq, significance, timestamp, associations, existing, namespaceTotal) =>
/// PutResult` as this thread's put-result factory: put results are then built in JavaScript,
/// several times cheaper than a native object conversion (see `factory.rs`).
#[napi(ts_args_type = "factory: (id: string, seq: number, significance: number, timestamp: number, associations: string[], existing: boolean, namespaceTotal: number) => PutResult")]
pub fn set_put_result_factory(env: Env, factory: Unknown) -> napi::Result<()> {
    if factory.get_type()? != ValueType::Function {
        return Err(invalid("the put-result factory must be a function"));
    }
    factory::register(factory::Kind::PutResult, env.raw(), factory.raw())
}

/// Register `(id, namespace, text, metadata, significance, timestamp, associations, seq,
/// expiresAt, embedding, score) => Memory` as this thread's memory factory (the last three
/// `undefined` when absent): memories returned by reads are then built in JavaScript.
#[napi(ts_args_type = "factory: (id: string, namespace: string, text: string, metadata: string, significance: number, timestamp: number, associations: string[], seq: number, expiresAt: number | undefined, embedding: Float32Array | undefined, score: number | undefined) => Memory")]
pub fn set_memory_factory(env: Env, factory: Unknown) -> napi::Result<()> {
    if factory.get_type()? != ValueType::Function {
        return Err(invalid("the memory factory must be a function"));
    }
    factory::register(factory::Kind::Memory, env.raw(), factory.raw())
}

#[napi]
pub fn repair(dir: String) -> napi::Result<RepairResult> {
    let r = core_store::repair(std::path::Path::new(&dir)).map_err(to_napi)?;
    Ok(RepairResult {
        file: r.file.display().to_string(),
        kept_records: r.kept_records as i64,
        kept_bytes: r.kept_bytes as i64,
        moved_to: r.moved_to.map(|p| p.display().to_string()),
        moved_bytes: r.moved_bytes as i64,
        reason: r.reason,
    })
}

// ---------- the `hash` embedder ----------

pub struct EmbedTask {
    texts: Vec<String>,
    dims: usize,
}

impl Task for EmbedTask {
    type Output = Vec<f32>;
    type JsValue = Float32Array;
    fn compute(&mut self) -> napi::Result<Vec<f32>> {
        let e = HashEmbedder::new(self.dims);
        let refs: Vec<&str> = self.texts.iter().map(|s| s.as_str()).collect();
        Ok(e.embed_batch(&refs))
    }
    fn resolve(&mut self, _env: Env, v: Vec<f32>) -> napi::Result<Float32Array> {
        Ok(Float32Array::new(v))
    }
}

fn check_dims(dims: Option<u32>) -> napi::Result<usize> {
    let d = dims.unwrap_or(memory_core::embed::HASH_DIMS as u32) as usize;
    if !(8..=16384).contains(&d) {
        return Err(invalid(format!("dims must be between 8 and 16384, got {d}")));
    }
    Ok(d)
}

/// Embed texts with the deterministic `hash` embedder: a flat `texts.length × dims` array.
#[napi]
pub fn hash_embed(texts: Vec<String>, dims: Option<u32>) -> napi::Result<Float32Array> {
    let e = HashEmbedder::new(check_dims(dims)?);
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    Ok(Float32Array::new(e.embed_batch(&refs)))
}

/// `hashEmbed` on the thread pool.
#[napi(ts_return_type = "Promise<Float32Array>")]
pub fn hash_embed_async(texts: Vec<String>, dims: Option<u32>) -> napi::Result<AsyncTask<EmbedTask>> {
    Ok(AsyncTask::new(EmbedTask { texts, dims: check_dims(dims)? }))
}

#[napi(object)]
pub struct TextWindow {
    /// UTF-16 offsets (JavaScript string indices).
    pub start: u32,
    pub end: u32,
    pub text: String,
}

/// Cut text into windows of `maxTokens` word tokens overlapping by `stride` tokens.
#[napi]
pub fn word_windows(text: String, max_tokens: u32, stride: u32) -> napi::Result<Vec<TextWindow>> {
    let tokens = HashEmbedder::tokenize(&text);
    let w = chunk::windows(&text, &tokens, max_tokens as usize, stride as usize).map_err(to_napi)?;
    Ok(w.into_iter().map(|c| TextWindow { start: c.start as u32, end: c.end as u32, text: text[c.start_byte..c.end_byte].to_string() }).collect())
}

/// Cut text into windows over caller-supplied token byte ranges (UTF-8 offsets, flat
/// `[start0, end0, start1, end1, …]`), e.g. from a model tokenizer.
#[napi]
pub fn token_windows(text: String, token_byte_ranges: Vec<u32>, max_tokens: u32, stride: u32) -> napi::Result<Vec<TextWindow>> {
    if !token_byte_ranges.len().is_multiple_of(2) {
        return Err(invalid("tokenByteRanges must hold start/end pairs"));
    }
    let tokens: Vec<(usize, usize)> = token_byte_ranges.chunks(2).map(|p| (p[0] as usize, p[1] as usize)).collect();
    if tokens.iter().any(|&(s, e)| s > e || e > text.len() || !text.is_char_boundary(s) || !text.is_char_boundary(e)) {
        return Err(invalid("tokenByteRanges must be ordered UTF-8 boundaries inside the text"));
    }
    let w = chunk::windows(&text, &tokens, max_tokens as usize, stride as usize).map_err(to_napi)?;
    Ok(w.into_iter().map(|c| TextWindow { start: c.start as u32, end: c.end as u32, text: text[c.start_byte..c.end_byte].to_string() }).collect())
}

// ---------- kernels (introspection and benchmark baselines) ----------

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

/// Which SIMD kernels are in use and which this CPU supports.
#[napi]
pub fn kernel_info() -> KernelInfo {
    KernelInfo {
        isa: memory_core::search::kernels().isa.name().to_string(),
        available: memory_core::search::available_isas().into_iter().map(|i| i.name().to_string()).collect(),
        int8: memory_core::search::q8::kernel().is_some(),
        int8_kernel: memory_core::search::q8::kernel_name().to_string(),
        prefetch: memory_core::search::kernels().prefetch,
    }
}

/// Anonymous mapping for the bandwidth baseline, with 4 KB pages (`MADV_NOHUGEPAGE`) like the
/// store's vector chunks: a buffer from the global allocator can land on transparent huge
/// pages (mimalloc asks for them), whose fewer TLB misses read ~10% faster here than the
/// memory the scans read.
struct BandwidthBuf {
    ptr: *mut f32,
    floats: usize,
}

// SAFETY: the mapping is owned by the struct and only accessed under the mutex below.
unsafe impl Send for BandwidthBuf {}

impl BandwidthBuf {
    fn new(floats: usize) -> Option<Self> {
        let len = floats * 4;
        // SAFETY: a fresh private anonymous mapping; madvise only changes its paging policy.
        unsafe {
            let p = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
            if p == libc::MAP_FAILED {
                return None;
            }
            libc::madvise(p, len, libc::MADV_NOHUGEPAGE);
            let ptr = p as *mut f32;
            std::slice::from_raw_parts_mut(ptr, floats).fill(1.0);
            Some(Self { ptr, floats })
        }
    }

    fn as_slice(&self) -> &[f32] {
        // SAFETY: `floats` initialized f32s, mapped until drop.
        unsafe { std::slice::from_raw_parts(self.ptr, self.floats) }
    }
}

impl Drop for BandwidthBuf {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping made in `new`.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.floats * 4) };
    }
}

/// Sum of a large array with the bandwidth kernel on both cores: the read-bandwidth
/// baseline for search benchmarks. Returns seconds taken (best of `repeat`). The array is
/// kept between calls of the same size, so a benchmark can alternate this with the pass it
/// compares (`floats = 0` frees it). It is mapped with 4 KB pages, like the store's vectors.
#[napi]
pub fn bench_read_bandwidth(floats: u32, repeat: u32) -> Result<f64> {
    use rayon::prelude::*;
    static BUF: std::sync::Mutex<Option<BandwidthBuf>> = std::sync::Mutex::new(None);
    let mut buf = BUF.lock().unwrap_or_else(|e| e.into_inner());
    if floats == 0 {
        *buf = None;
        return Ok(0.0);
    }
    if buf.as_ref().is_none_or(|b| b.floats != floats as usize) {
        *buf = None;
        *buf = Some(BandwidthBuf::new(floats as usize).ok_or_else(|| Error::from_reason("benchReadBandwidth: mmap failed"))?);
    }
    let data = buf.as_ref().expect("set above").as_slice();
    let k = memory_core::search::kernels();
    let mut best = f64::INFINITY;
    let mut acc = 0.0f32;
    for _ in 0..repeat.max(1) {
        let t = std::time::Instant::now();
        acc += data.par_chunks(1 << 18).map(|c| (k.sum)(c)).sum::<f32>();
        best = best.min(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(acc);
    Ok(best)
}

/// The machine's measured peak FP32 rate with the FMA kernel on both cores (FLOP/s).
#[napi]
pub fn bench_peak_flops(iters: u32) -> f64 {
    use rayon::prelude::*;
    let k = memory_core::search::kernels();
    let threads = rayon::current_num_threads().max(1);
    let t = std::time::Instant::now();
    let r: f32 = (0..threads).into_par_iter().map(|_| (k.fma_peak)(iters as u64)).sum();
    std::hint::black_box(r);
    let secs = t.elapsed().as_secs_f64();
    (threads as f64 * iters as f64 * k.fma_flops_per_iter as f64) / secs
}
