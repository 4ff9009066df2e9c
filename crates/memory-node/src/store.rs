//! The `MemoryStore` class: one data directory. Writes return promises settled by the
//! store's threads ([`crate::completion`]); reads answer synchronously; searches come in
//! both forms (`search` on the thread pool, `searchSync`).

use std::sync::Arc;

use memory_core::store::{self as core_store, TensorStore};
use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::budget::{list_within, over_budget, truncate_within};
use crate::convert::{counter_values, parse_filter, COUNTERS, put_input, search_request, store_options};
use crate::factory::{MemoryValue, PutResultValue};
use crate::types::*;
use crate::{invalid, submit, to_napi};

/// A durable memory store (one data directory). Writes resolve once durable under the
/// fsync policy; reads never see an unacknowledged write.
#[napi]
pub struct MemoryStore {
    inner: Arc<TensorStore>,
}

pub struct OpenTask {
    dir: String,
    opts: Option<core_store::StoreOptions>,
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
        Ok(memory_lists(out))
    }
}

pub struct ExplainTask {
    store: Arc<TensorStore>,
    queries: Vec<f32>,
    nq: usize,
    req: core_store::SearchRequest,
}

impl Task for ExplainTask {
    type Output = (Vec<Vec<core_store::Memory>>, core_store::Plan);
    type JsValue = ExplainedSearch;
    fn compute(&mut self) -> napi::Result<Self::Output> {
        self.store.search_explained(&self.queries, self.nq, &self.req).map_err(to_napi)
    }
    fn resolve(&mut self, _env: Env, (out, p): Self::Output) -> napi::Result<Self::JsValue> {
        let plan = SearchPlan { plan: p.kind.name().into(), reason: p.reason.into(), filter_candidates: p.filter_candidates.map(|c| c as f64), ef: p.ef as u32, scored: p.scored as f64 };
        Ok(ExplainedSearch { results: memory_lists(out), plan })
    }
}

fn memories(v: Vec<core_store::Memory>) -> Vec<MemoryValue> {
    v.into_iter().map(MemoryValue).collect()
}

fn memory_lists(v: Vec<Vec<core_store::Memory>>) -> Vec<Vec<MemoryValue>> {
    v.into_iter().map(memories).collect()
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
        let inputs: Vec<core_store::PutInput> = items.into_iter().map(Into::into).collect();
        submit(env, |d| self.inner.put(inputs, d), |out| Ok(out.into_iter().map(PutResultValue).collect::<Vec<_>>()))
    }

    /// `put` of one memory with positional arguments: no object to read property by property,
    /// and the result comes from the registered put-result factory (see `setPutResultFactory`).
    #[napi(ts_return_type = "Promise<PutResult>")]
    // The positional form exists to avoid an options object: one argument per field.
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
        let input = put_input(namespace, id, text, metadata, significance, ttl_ms, &embedding);
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
        let recs: Vec<core_store::PutRecord> = records.into_iter().map(Into::into).collect();
        submit(env, |d| self.inner.bulk_load(recs, d), |n| Ok(n as u32))
    }

    /// Rewrite the log without deleted/expired memories.
    #[napi(ts_return_type = "Promise<CompactResult>")]
    pub fn compact<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, CompactResult>> {
        submit(env, |d| self.inner.compact(d), |r| Ok(CompactResult::from(r)))
    }

    /// Live and garbage bytes of the log, compactions so far and the last one.
    #[napi]
    pub fn compaction_info(&self) -> CompactionInfo {
        let (live, garbage, n, last) = self.inner.compaction_info();
        CompactionInfo { live_bytes: live as i64, garbage_bytes: garbage as i64, compactions: n as i64, last: last.map(CompactResult::from) }
    }

    /// Resolves with the memories the expiry sweep deletes next (those swept since the last
    /// call at once, else after the next pass that sweeps any); rejects with `unavailable`
    /// once the store closes. Call it again after each resolution to keep watching.
    #[napi(ts_return_type = "Promise<ExpiredMemory[]>")]
    pub fn next_expired<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, Vec<ExpiredMemory>>> {
        submit(env, |d| self.inner.watch_expired(d), |v| Ok(v.into_iter().map(|e| ExpiredMemory { namespace: e.namespace, id: e.id, seq: e.seq as i64 }).collect()))
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

    /// `search` and the plan that answered it (`exact` or `graph`, and why).
    #[napi(ts_return_type = "Promise<ExplainedSearch>")]
    pub fn search_explained(&self, queries: Float32Array, nq: u32, options: SearchOptions) -> napi::Result<AsyncTask<ExplainTask>> {
        Ok(AsyncTask::new(ExplainTask { store: self.inner.clone(), queries: queries.to_vec(), nq: nq as usize, req: search_request(&options)? }))
    }

    /// Synchronous form of `search` (blocks the event loop: for tools and benchmarks).
    #[napi(ts_return_type = "Memory[][]")]
    pub fn search_sync(&self, queries: Float32Array, nq: u32, options: SearchOptions) -> napi::Result<Vec<Vec<MemoryValue>>> {
        let out = self.inner.search(&queries, nq as usize, &search_request(&options)?).map_err(to_napi)?;
        Ok(memory_lists(out))
    }

    /// One query; concurrent calls with equal options share one pass over memory.
    #[napi(ts_return_type = "Promise<Memory[]>")]
    pub fn search_batched<'env>(&self, env: &'env Env, query: Float32Array, options: SearchOptions) -> napi::Result<PromiseRaw<'env, Vec<MemoryValue>>> {
        let req = search_request(&options)?;
        let q = query.to_vec();
        let max_bytes = options.max_bytes;
        submit(env, |d| self.inner.search_batched(q, req, d), move |mut r| {
            truncate_within(&mut r, max_bytes);
            Ok(memories(r))
        })
    }

    /// Text query: BM25 over the namespace's text index on the searcher thread, same filters
    /// as `searchBatched` (`minScore` does not apply); `score` is the BM25 score.
    #[napi(ts_return_type = "Promise<Memory[]>")]
    pub fn search_text<'env>(&self, env: &'env Env, query: String, options: SearchOptions) -> napi::Result<PromiseRaw<'env, Vec<MemoryValue>>> {
        let req = search_request(&options)?;
        let max_bytes = options.max_bytes;
        submit(env, |d| self.inner.search_text(query, req, d), move |mut r| {
            truncate_within(&mut r, max_bytes);
            Ok(memories(r))
        })
    }

    /// Highest significance first (newest first on ties), from the ordered index.
    #[napi(ts_return_type = "Memory[]")]
    pub fn top(&self, options: SearchOptions) -> napi::Result<Vec<MemoryValue>> {
        let req = search_request(&options)?;
        let k = options.k as usize;
        let rows = match options.max_bytes {
            Some(max) => self.inner.top_until(&req, k, over_budget(max)),
            None => self.inner.top(&req, k),
        };
        Ok(memories(rows))
    }

    /// A page of a namespace in store order after `afterSeq` (0 = from the start). With
    /// `maxBytes`, the page also stops once its memories' bytes pass it (see `SearchOptions.maxBytes`).
    #[napi]
    pub fn list(&self, namespace: String, after_seq: i64, limit: u32, filter: Option<String>, max_bytes: Option<f64>) -> napi::Result<ListPage> {
        let f = parse_filter(filter.as_deref())?;
        let after = after_seq.max(0) as u64;
        let (m, next) = match max_bytes {
            Some(max) => list_within(&self.inner, &namespace, after, limit as usize, f.as_ref(), max),
            None => self.inner.list(&namespace, after, limit as usize, f.as_ref()),
        };
        Ok(ListPage { memories: memories(m), next_cursor: next.map(|s| s as i64) })
    }

    /// Every memory (all namespaces, with embeddings) after `afterSeq`, up to `limit`.
    #[napi(ts_return_type = "Memory[]")]
    pub fn export(&self, after_seq: i64, limit: u32) -> Vec<MemoryValue> {
        memories(self.inner.export(after_seq.max(0) as u64, limit as usize))
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
    /// records, rows, deadRows, liveBytes, garbageBytes, compactions]`.
    #[napi]
    pub fn counters(&self) -> Float64Array {
        Float64Array::new(counter_values(self.inner.counters()).to_vec())
    }

    /// Writes the numbers of `counters()` into `out` (length ≥ 13): no allocation, for
    /// handlers called at high rates (`stats`).
    #[napi]
    pub fn counters_into(&self, mut out: Float64ArraySlice) -> napi::Result<()> {
        // SAFETY: `as_mut` is unsafe because JavaScript may hold other views of the same
        // buffer. This call is synchronous on the JS thread and runs no JavaScript until it
        // returns, so nothing else reads or writes the buffer while the slice lives.
        let o = unsafe { out.as_mut() };
        if o.len() < COUNTERS {
            return Err(invalid("countersInto: out must hold at least 13 numbers"));
        }
        o[..COUNTERS].copy_from_slice(&counter_values(self.inner.counters()));
        Ok(())
    }

    #[napi]
    pub fn stats(&self) -> StoreStats {
        StoreStats::from(self.inner.stats())
    }
}
