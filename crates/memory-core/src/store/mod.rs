//! `TensorStore`: the durable memory store.
//!
//! One writer thread owns the log. Writers hand it operations through a channel and get a
//! completion callback; the writer takes every operation waiting at that moment as one
//! group, computes significance and associations for all new memories of the group in one
//! multi-query pass, appends the group's records with one `write`, makes them durable with
//! one fsync (policy `always`), applies them to the in-memory state and only then completes
//! the callbacks — group commit. Reads take a shared lock on the state and never see a
//! memory before it is durable.
//!
//! Concurrent searches can share a pass too: [`TensorStore::search_batched`] queues a query
//! and a searcher thread runs every query waiting with the same parameters in one pass.
//!
//! This module is the façade; the work is done by one module per role:
//!
//! | module | role |
//! | --- | --- |
//! | `types` | options, inputs, outcomes, memories |
//! | `validate` | input checks on the caller's thread (metadata parsed once, there) |
//! | `open`, `replay`, `dirlock` | opening a directory: lock, identity, log replay, threads |
//! | `verified`, `scrub` | the rows a clean close vouched for, checked after open by a background scrub |
//! | `snapshot` | the state as a clean close left it, restored at open instead of applying the log's records |
//! | `writer/` | the writer thread; `writer/put` put groups, `writer/compact` compaction, `writer/expiry` the expiry sweep |
//! | `searcher` | the searcher thread: batched single-query searches |
//! | `reads` | reads under the state's shared lock |
//! | `shared` | what the threads share: the state, the int8 codes, counters |
//! | `log`, `logfile`, `repair` | the log's format, its files, repairing a damaged one |
//! | `state`, `row`, `idmap`, `vectors`, `vecfile` | the in-memory image, a row's one allocation, the id maps, its vector arena, the vectors file |
//! | `scan`, `prepass` | exact top-k: the f32 scan and the int8 pre-pass |
//! | `textsearch` | BM25 over the namespace's text index ([`crate::text`]), same filters |
//!
//! The significance pass of a put group is [`crate::significance`]'s.

mod convert;
pub(crate) mod derived_file;
mod dirlock;
mod idmap;
pub mod log;
pub(crate) mod logfile;
mod open;
pub mod plan;
pub(crate) mod prepass;
/// The int8 passes' pair counts (benchmarks only).
#[cfg(feature = "bench")]
pub use prepass::counts as prepass_counts;
mod reads;
mod repair;
mod replay;
mod row;
pub mod scan;
mod scrub;
mod searcher;
mod shared;
mod snapshot;
pub mod state;
mod textsearch;
mod types;
mod validate;
mod vecfile;
mod vectors;
mod verified;
mod writer;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::search::{check_vector, normalize};
use searcher::SearchJob;
use shared::Shared;
use writer::{fail_op, Op};

pub use dirlock::{lock as lock_dir, DirLock};
pub use log::PutRecord;
pub use plan::{Plan, PlanKind};
pub use repair::{repair, LostRange, MetaRepair, RepairReport};
pub use scan::Hit;
pub use shared::now_ms;
pub use types::*;
pub use validate::{MAX_ID_CHARS, MAX_METADATA_BYTES, MAX_NAMESPACE_CHARS, MAX_TEXT_BYTES};
pub use vectors::CHUNK_ROWS as VECTOR_CHUNK_ROWS;

/// The directory's identity (dims, embedder).
pub const META_FILE: &str = "store.json";
/// Holds the PID of the process that has the directory open (locked too; the directory
/// itself carries the lock that counts, see `dirlock`).
pub const LOCK_FILE: &str = "LOCK";

pub struct TensorStore {
    shared: Arc<Shared>,
    tx: Mutex<Option<Sender<Op>>>,
    search_tx: Mutex<Option<Sender<SearchJob>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// The directory's lock, held until close.
    lock: Mutex<Option<dirlock::DirLock>>,
}

fn closed() -> Error {
    Error::Unavailable("the store is closed".into())
}

impl TensorStore {
    /// Open (or create) the store in `dir`, replaying its log.
    pub fn open(dir: impl AsRef<Path>, opts: StoreOptions) -> Result<TensorStore> {
        open::open(dir.as_ref(), opts)
    }

    pub fn dims(&self) -> usize {
        self.shared.dims
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    fn send(&self, op: Op) {
        let guard = self.tx.lock();
        match guard.as_ref() {
            Some(tx) => {
                if let Err(mpsc::SendError(op)) = tx.send(op) {
                    fail_op(op, closed());
                }
            }
            None => fail_op(op, closed()),
        }
    }

    // ----- writes: validated here, run by the writer thread -----

    /// Store memories (all-or-nothing); `done` runs once they are durable.
    pub fn put(&self, items: Vec<PutInput>, done: Done<Vec<PutOutcome>>) {
        if items.is_empty() {
            return done(Err(Error::invalid("items must not be empty")));
        }
        match validate::prepare(items, self.shared.dims) {
            Ok(items) => self.send(Op::Put(items, done)),
            Err(e) => done(Err(e)),
        }
    }

    /// Replace a memory's metadata (whole) and/or set its significance.
    pub fn update(&self, namespace: String, id: String, metadata: Option<String>, significance: Option<f32>, done: Done<Memory>) {
        match validate::check_update(&namespace, &id, metadata.as_deref(), significance) {
            Ok(metadata) => self.send(Op::Update { namespace, id, metadata, significance, done }),
            Err(e) => done(Err(e)),
        }
    }

    pub fn delete(&self, namespace: String, ids: Vec<String>, done: Done<DeleteOutcome>) {
        self.send(Op::Delete { namespace, ids, done })
    }

    /// Delete every visible memory of the namespace matching `filter` (all when `None`).
    pub fn delete_where(&self, namespace: String, filter: Option<Filter>, done: Done<DeleteOutcome>) {
        self.send(Op::DeleteWhere { namespace, filter, done })
    }

    /// Bulk-load records as recorded (significance and associations kept, no scan); one
    /// fsync at the end. Records keep their id/namespace/timestamps; `seq` is reassigned.
    /// Records whose (namespace, id) already exists are skipped. Returns how many were added.
    pub fn bulk_load(&self, records: Vec<PutRecord>, done: Done<usize>) {
        match validate::check_bulk_records(&records, self.shared.dims) {
            Ok(()) => self.send(Op::BulkLoad(records, done)),
            Err(e) => done(Err(e)),
        }
    }

    /// Compact the log now (or join the compaction running); `done` runs after the switch.
    /// The copy runs on a thread of its own: writes wait only for the switch.
    pub fn compact(&self, done: Done<CompactReport>) {
        self.send(Op::Compact(done))
    }

    /// `done` gets the memories the expiry sweep deletes next: at once those swept since the
    /// last call (once watched, the writer keeps them for the next call), else after the next
    /// pass that deletes any. Fails with `unavailable` when the store closes.
    pub fn watch_expired(&self, done: Done<Vec<ExpiredMemory>>) {
        self.send(Op::WatchExpired(done))
    }

    /// fsync whatever is written (a no-op under `always`).
    pub fn flush(&self, done: Done<()>) {
        self.send(Op::Flush(done))
    }

    /// Flush and stop the writer; further writes fail with `unavailable`. The in-memory state
    /// is freed: reads of a closed store see it empty.
    pub fn close(&self) -> Result<()> {
        let tx = self.tx.lock().take();
        let stx = self.search_tx.lock().take();
        drop(stx);
        // Called from one of the store's own threads (e.g. a completion callback dropped the
        // last handle): waiting for the writer or joining would deadlock. Hang up instead;
        // the writer drains what is queued, syncs and exits on its own.
        let me = std::thread::current().id();
        if self.threads.lock().iter().any(|t| t.thread().id() == me) {
            drop(tx);
            let threads: Vec<JoinHandle<()>> = self.threads.lock().drain(..).collect();
            let lock = self.lock.lock().take();
            let shared = self.shared.clone();
            // Keep the directory locked until the writer has really finished.
            let _ = std::thread::Builder::new().name("memory-close".into()).spawn(move || {
                for t in threads {
                    let _ = t.join();
                }
                shared.closed.store(true, Ordering::SeqCst);
                shared.release();
                drop(lock);
            });
            return Ok(());
        }
        let mut res = Ok(());
        if let Some(tx) = tx {
            let (dtx, drx) = mpsc::channel();
            if tx.send(Op::Close(Box::new(move |r| drop(dtx.send(r))))).is_ok() {
                res = drx.recv().unwrap_or(Ok(()));
            }
        }
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.release();
        // Release the directory lock now, not when the last reference goes away.
        drop(self.lock.lock().take());
        res
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    // ----- blocking conveniences (tests, CLI, Rust users) -----

    pub fn put_blocking(&self, items: Vec<PutInput>) -> Result<Vec<PutOutcome>> {
        blocking(|d| self.put(items, d))
    }
    pub fn update_blocking(&self, namespace: &str, id: &str, metadata: Option<String>, significance: Option<f32>) -> Result<Memory> {
        blocking(|d| self.update(namespace.into(), id.into(), metadata, significance, d))
    }
    pub fn delete_blocking(&self, namespace: &str, ids: Vec<String>) -> Result<DeleteOutcome> {
        blocking(|d| self.delete(namespace.into(), ids, d))
    }
    pub fn delete_where_blocking(&self, namespace: &str, filter: Option<Filter>) -> Result<DeleteOutcome> {
        blocking(|d| self.delete_where(namespace.into(), filter, d))
    }
    pub fn bulk_load_blocking(&self, records: Vec<PutRecord>) -> Result<usize> {
        blocking(|d| self.bulk_load(records, d))
    }
    pub fn compact_blocking(&self) -> Result<CompactReport> {
        blocking(|d| self.compact(d))
    }
    pub fn flush_blocking(&self) -> Result<()> {
        blocking(|d| self.flush(d))
    }

    // ----- reads -----

    pub fn get(&self, namespace: &str, id: &str, with_embedding: bool) -> Option<Memory> {
        reads::get(&self.shared, namespace, id, with_embedding)
    }

    /// Exact top-k search for `nq` queries at once (queries are normalized here).
    pub fn search(&self, queries: &[f32], nq: usize, req: &SearchRequest) -> Result<Vec<Vec<Memory>>> {
        reads::search(&self.shared, queries, nq, req)
    }

    /// [`search`](Self::search) and the plan that ran (the `explain` of `retrieve`).
    pub fn search_explained(&self, queries: &[f32], nq: usize, req: &SearchRequest) -> Result<(Vec<Vec<Memory>>, Plan)> {
        reads::search_explained(&self.shared, queries, nq, req)
    }

    /// Queue one query; concurrent queries with equal parameters share one pass.
    pub fn search_batched(&self, mut query: Vec<f32>, req: SearchRequest, done: Done<Vec<Memory>>) {
        if let Err(m) = check_vector(&query, self.shared.dims) {
            return done(Err(Error::invalid(format!("embedding: {m}"))));
        }
        if let Err(e) = plan::check_ef(req.ef) {
            return done(Err(e));
        }
        normalize(&mut query);
        let guard = self.search_tx.lock();
        match guard.as_ref() {
            Some(tx) => {
                if let Err(mpsc::SendError(job)) = tx.send(SearchJob { query, text: None, req, done }) {
                    (job.done)(Err(closed()));
                }
            }
            None => done(Err(closed())),
        }
    }

    /// Queue one text query (BM25 over the namespace's text index, same filters as
    /// [`search_batched`](Self::search_batched); `min_score` does not apply): run on the
    /// searcher thread, `score` is the BM25 score (recency-decayed if asked).
    pub fn search_text(&self, query: String, req: SearchRequest, done: Done<Vec<Memory>>) {
        let guard = self.search_tx.lock();
        match guard.as_ref() {
            Some(tx) => {
                if let Err(mpsc::SendError(job)) = tx.send(SearchJob { query: Vec::new(), text: Some(query), req, done }) {
                    (job.done)(Err(closed()));
                }
            }
            None => done(Err(closed())),
        }
    }

    /// [`search_text`](Self::search_text) on the caller's thread.
    pub fn search_text_blocking(&self, query: &str, req: &SearchRequest) -> Result<Vec<Memory>> {
        reads::search_text(&self.shared, query, req)
    }

    /// Highest significance first (newest first on ties), from the ordered index.
    pub fn top(&self, req: &SearchRequest, count: usize) -> Vec<Memory> {
        reads::top(&self.shared, req, count)
    }

    /// [`top`](Self::top), building memories only until `enough` says so: the memory for
    /// which it first returns true and one more are the last built (a caller with a reply
    /// byte budget stops there without copying the rest out of the store).
    pub fn top_until(&self, req: &SearchRequest, count: usize, enough: impl FnMut(&Memory) -> bool) -> Vec<Memory> {
        reads::top_until(&self.shared, req, count, enough)
    }

    /// Memories of a namespace in store order, after the cursor (a `seq`). Returns the page
    /// and the cursor of the next page, if any.
    pub fn list(&self, namespace: &str, after_seq: u64, limit: usize, filter: Option<&Filter>) -> (Vec<Memory>, Option<u64>) {
        reads::list(&self.shared, namespace, after_seq, limit, filter)
    }

    /// Every visible memory in seq order after `after_seq` (all namespaces), with
    /// embeddings: the export path.
    pub fn export(&self, after_seq: u64, limit: usize) -> Vec<Memory> {
        reads::export(&self.shared, after_seq, limit)
    }

    /// (name, visible memories) per namespace that has any.
    pub fn namespaces(&self) -> Vec<(String, usize)> {
        reads::namespaces(&self.shared)
    }

    /// Visible memories in one namespace.
    pub fn count(&self, namespace: &str) -> usize {
        reads::count(&self.shared, namespace)
    }

    /// The changing numbers of [`stats`](Self::stats), without its allocations.
    pub fn counters(&self) -> StoreCounters {
        reads::counters(&self.shared)
    }

    pub fn stats(&self) -> StoreStats {
        reads::stats(&self.shared)
    }

    /// Live and garbage log bytes, compactions so far and the last one: [`stats`](Self::stats)'s
    /// compaction numbers alone.
    pub fn compaction_info(&self) -> (u64, u64, u64, Option<CompactReport>) {
        reads::compaction_info(&self.shared)
    }
}

impl Drop for TensorStore {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Run an asynchronous operation and wait for its completion.
fn blocking<T: Send + 'static>(f: impl FnOnce(Done<T>)) -> Result<T> {
    let (tx, rx) = mpsc::channel();
    f(Box::new(move |r| drop(tx.send(r))));
    rx.recv().unwrap_or_else(|_| Err(closed()))
}
