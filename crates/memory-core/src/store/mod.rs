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

pub mod log;
pub mod scan;
pub mod state;

use std::collections::HashMap;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::search::q8::{self, Q8Kernels, Q8Rows};
use crate::search::{check_vector, normalize};
use crate::significance::{importance_of, significance, ASSOCIATION_MIN_COS, MAX_ASSOCIATIONS, RECENT_WINDOW};
use log::{DeleteRecord, Header, LogWriter, Record, ScanEnd, UpdateRecord, NO_EXPIRY};
use scan::ScanParams;
use state::{parse_metadata, State};

pub use scan::Hit;

pub const MAX_TEXT_BYTES: usize = 64 * 1024;
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
pub const MAX_ID_CHARS: usize = 256;
pub const MAX_NAMESPACE_CHARS: usize = 256;
pub const META_FILE: &str = "store.json";
pub const LOCK_FILE: &str = "LOCK";
/// Most operations the writer takes into one group.
const MAX_GROUP_ITEMS: usize = 4096;
/// Extra stored neighbours fetched when scoring a new memory (see `score_new`).
const ASSOC_TIE_SLACK: usize = 8;
/// Most queries the searcher runs in one pass.
const MAX_SEARCH_BATCH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Acknowledge a write only after its fsync (group commit).
    Always,
    /// fsync every `interval` (SPEC: 1 s).
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
}

impl StoreOptions {
    pub fn new(dims: usize) -> Self {
        StoreOptions { dims, fsync: FsyncPolicy::Always, embedder: None, reembed: false, group_commit: true }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct MetaFile {
    format: u32,
    dims: usize,
    embedder: Option<EmbedderInfo>,
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
}

/// The numbers of [`StoreStats`] that change (see [`TensorStore::counters`]).
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
    /// measuring the scan itself.
    pub f32_scan: bool,
}

impl SearchRequest {
    fn group_key(&self) -> String {
        // Queries with a filter but no canonical key must not share a pass with a different
        // filter: fall back to the filter's identity.
        let filter_key = match (&self.filter, self.filter_key.is_empty()) {
            (Some(f), true) if !f.is_empty() => format!("\u{1}ptr:{:p}", Arc::as_ptr(f)),
            (None, _) => String::new(),
            _ => self.filter_key.clone(),
        };
        format!(
            "{}\u{0}{}\u{0}{:?}\u{0}{}\u{0}{}\u{0}{:?}\u{0}{:?}\u{0}{:?}\u{0}{}\u{0}{}",
            self.namespace,
            self.k,
            self.min_score,
            self.min_significance,
            filter_key,
            self.since_ms,
            self.until_ms,
            self.recency_half_life_s,
            self.include_embeddings,
            self.f32_scan
        )
    }
    fn params(&self, now_ms: i64) -> ScanParams<'_> {
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
        }
    }
}

pub type Done<T> = Box<dyn FnOnce(Result<T>) + Send>;

enum Op {
    Put(Vec<PutInput>, Done<Vec<PutOutcome>>),
    Update { namespace: String, id: String, metadata: Option<String>, significance: Option<f32>, done: Done<Memory> },
    Delete { namespace: String, ids: Vec<String>, done: Done<DeleteOutcome> },
    DeleteWhere { namespace: String, filter: Option<Filter>, done: Done<DeleteOutcome> },
    BulkLoad(Vec<PutRecord>, Done<usize>),
    Compact(Done<CompactReport>),
    Flush(Done<()>),
    Close(Done<()>),
}

#[derive(Debug, Clone, Default)]
pub struct CompactReport {
    pub rows_before: usize,
    pub rows_after: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

struct SearchJob {
    query: Vec<f32>,
    req: SearchRequest,
    done: Done<Vec<Memory>>,
}

/// The vectors file of the current generation, `vectors-<gen>.f32`: row r's f32 values
/// (little-endian) at byte `r · dims · 4`. It is a cache of the log, never trusted on its
/// own: at open, whole chunks of it are mapped from the page cache instead of copying the
/// vectors out of the log into fresh memory, and every mapped row is compared with the log
/// (rows that differ are corrected in memory and rewritten). The writer appends rows to it
/// while idle, without fsync; after a crash it may hold fewer rows, more rows (a torn log
/// tail) or damaged ones, all of which open handles. Compaction starts a new one.
struct VecFile {
    file: File,
    path: PathBuf,
    /// Leading rows the file holds correctly (the writer appends from here).
    rows: usize,
}

/// How long the writer must have been without operations before it writes to the vectors file.
const VEC_FILE_QUIET: Duration = Duration::from_millis(3);

/// Rows written to the vectors file per slice of the writer's idle time (~3 MB at 384 dims).
const VEC_FILE_SLICE_ROWS: usize = 2048;

impl VecFile {
    /// Open (or create; `truncate` empties it) the vectors file of generation `gen`; also
    /// returns the whole rows it holds now. `None` where mapping is not supported (or the
    /// file cannot be opened): the store then works without one.
    fn open(dir: &Path, gen: u64, dims: usize, truncate: bool) -> Option<(VecFile, usize)> {
        if !cfg!(all(unix, target_endian = "little")) {
            return None;
        }
        let path = dir.join(log::vectors_name(gen));
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(truncate).open(&path).ok()?;
        let rows = file.metadata().ok()?.len() as usize / (dims * 4).max(1);
        Some((VecFile { file, path, rows: 0 }, rows))
    }

    /// Append rows `self.rows..` of `st` (at most `max`); true once the file holds them all.
    /// Write errors (a full disk) only cost the cache: the file is dropped.
    #[cfg(unix)]
    fn catch_up(slot: &mut Option<VecFile>, st: &State, max: usize) -> bool {
        use std::os::unix::fs::FileExt;
        let Some(v) = slot.as_mut() else { return true };
        v.rows = v.rows.min(st.len());
        let end = st.len().min(v.rows.saturating_add(max));
        let mut off = (v.rows * st.dims * 4) as u64;
        for part in st.vectors.rows_bytes(v.rows, end) {
            if v.file.write_all_at(part, off).is_err() {
                let _ = std::fs::remove_file(&v.path);
                *slot = None;
                return true;
            }
            off += part.len() as u64;
        }
        v.rows = end;
        end == st.len()
    }
    #[cfg(not(unix))]
    fn catch_up(_: &mut Option<VecFile>, _: &State, _: usize) -> bool {
        true
    }
}

/// Int8 codes of a prefix of the state's rows (`rows.len() <= state.len()`), for the exact
/// int8 pre-pass of [`scan::search_q8`]: the significance pass of every put group and
/// multi-query searches. Only the writer changes them: it appends the codes of new rows
/// before each put group and, while idle, those of rows it has not coded yet (after open, a
/// few thousand rows at a time); compaction clears them while it holds the state's write
/// lock. Lock order: `state` first, then `rows`.
struct Q8Shared {
    rows: RwLock<Q8Rows>,
    kern: &'static Q8Kernels,
}

/// Rows coded per slice of the writer's idle catch-up (a few ms; the writer checks for new
/// operations between slices).
const Q8_CATCH_UP_ROWS: usize = 4096;

impl Shared {
    /// After close: give the memory of the rows, vectors and int8 codes back now rather than
    /// when the last handle goes (a JavaScript wrapper may live on until a garbage
    /// collection). Reads of a closed store see it empty.
    fn release(&self) {
        let old = std::mem::replace(&mut *self.state.write(), State::new(self.dims));
        if let Some(q) = &self.q8 {
            *q.rows.write() = Q8Rows::new(self.dims);
        }
        drop(old);
    }

    /// Exact top-k: through the int8 pre-pass where it serves (no metadata filter or score
    /// transform, the rows coded, not asked for the f32 scan), else the f32 scan.
    fn search(&self, st: &State, queries: &[f32], nq: usize, p: &ScanParams) -> Vec<Vec<scan::Hit>> {
        if let Some(q8) = &self.q8 {
            if !p.f32_scan && p.filter.is_none_or(|f| f.is_empty()) && p.recency_half_life_s.is_none() && p.min_score.is_none() {
                let rows = q8.rows.read();
                if st.len() - rows.len() <= Q8_MAX_TAIL {
                    return scan::search_q8(st, &rows, q8.kern, queries, nq, p, f32::NEG_INFINITY);
                }
            }
        }
        scan::search(st, queries, nq, p)
    }
}

impl Q8Shared {
    /// Code up to `max` more rows of `st`; true once every row is coded.
    fn catch_up(&self, st: &State, max: usize) -> bool {
        let mut rows = self.rows.write();
        Self::extend(&mut rows, st, max)
    }
    fn extend(rows: &mut Q8Rows, st: &State, max: usize) -> bool {
        debug_assert!(rows.len() <= st.len(), "int8 codes ahead of the state");
        let end = st.len().min(rows.len().saturating_add(max));
        for r in rows.len()..end {
            rows.push(st.vectors.row(r));
        }
        end == st.len()
    }
}

// Every pass the pre-pass can serve takes it, a single query too: the f32 scan of one query
// is memory-bound on 1536 bytes a row, the pre-pass reads 384 (`examples/search_q8_bench`,
// 1M × 384 on 2 cores: 1 query 26 ms vs 77 ms, 2 queries 21–27 ms vs 52 ms, 64 queries
// 87–91 ms vs 267 ms).
/// Rows a search's int8 pass may leave to the f32 scan (rows not coded yet: the tail is
/// scanned on one thread).
const Q8_MAX_TAIL: usize = 16384;

struct Shared {
    dir: PathBuf,
    dims: usize,
    fsync: FsyncPolicy,
    group_commit: bool,
    embedder: Option<EmbedderInfo>,
    state: RwLock<State>,
    /// Int8 codes of the rows (CPUs with an int8 kernel only), see [`Q8Shared`].
    q8: Option<Q8Shared>,
    storage_bytes: AtomicU64,
    fsyncs: AtomicU64,
    groups: AtomicU64,
    records: AtomicU64,
    closed: AtomicBool,
}

pub struct TensorStore {
    shared: Arc<Shared>,
    tx: Mutex<Option<Sender<Op>>>,
    search_tx: Mutex<Option<Sender<SearchJob>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Held (flock) until close.
    lock: Mutex<Option<File>>,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn random_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let s = std::collections::hash_map::RandomState::new();
    let mut h1 = s.build_hasher();
    h1.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h1.write_i64(now_ms());
    let a = h1.finish();
    let mut h2 = s.build_hasher();
    h2.write_u64(a ^ 0x9e37_79b9_7f4a_7c15);
    let b = h2.finish();
    format!("{a:016x}{b:016x}")
}

fn check_name(what: &str, s: &str, max: usize) -> Result<()> {
    if s.is_empty() {
        return Err(Error::invalid(format!("{what} must not be empty")));
    }
    let n = s.chars().count();
    if n > max {
        return Err(Error::PayloadTooLarge(format!("{what} is {n} characters, over the {max}-character limit")));
    }
    Ok(())
}

/// Validate and parse a metadata JSON text; returns (canonical text, parsed).
fn check_metadata(field: &str, raw: Option<&str>) -> Result<(String, Option<Box<Map<String, Value>>>)> {
    let raw = match raw {
        None => return Ok(("{}".to_string(), None)),
        Some(r) if r.trim().is_empty() => return Ok(("{}".to_string(), None)),
        Some(r) => r,
    };
    if raw.len() > MAX_METADATA_BYTES {
        return Err(Error::PayloadTooLarge(format!(
            "{field} is {} bytes as JSON, over the {MAX_METADATA_BYTES}-byte (16 KiB) limit",
            raw.len()
        )));
    }
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(m)) => {
            importance_of(Some(&m)).map_err(|e| Error::invalid(format!("{field}: {e}")))?;
            let parsed = if m.is_empty() { None } else { Some(Box::new(m)) };
            Ok((raw.to_string(), parsed))
        }
        Ok(_) => Err(Error::invalid(format!("{field} must be a JSON object"))),
        Err(e) => Err(Error::invalid(format!("{field} is not valid JSON: {e}"))),
    }
}

fn check_significance(field: &str, s: f32) -> Result<()> {
    if !(0.0..=1.0).contains(&s) {
        return Err(Error::invalid(format!("{field} must be between 0 and 1, got {s}")));
    }
    Ok(())
}

struct Prepared {
    input: PutInput,
    id: String,
    metadata: String,
}

fn prepare(items: Vec<PutInput>, dims: usize) -> Result<Vec<Prepared>> {
    let batch = items.len() > 1;
    let mut out = Vec::with_capacity(items.len());
    for (i, mut it) in items.into_iter().enumerate() {
        let f = |name: &str| if batch { format!("items[{i}].{name}") } else { name.to_string() };
        check_name(&f("namespace"), &it.namespace, MAX_NAMESPACE_CHARS)?;
        if it.text.trim().is_empty() {
            return Err(Error::invalid(format!("{} must be a non-empty string", f("text"))));
        }
        if it.text.len() > MAX_TEXT_BYTES {
            return Err(Error::PayloadTooLarge(format!(
                "{} is {} bytes, over the {MAX_TEXT_BYTES}-byte (64 KiB) limit",
                f("text"),
                it.text.len()
            )));
        }
        let id = match it.id.take() {
            Some(id) => {
                check_name(&f("id"), &id, MAX_ID_CHARS)?;
                id
            }
            None => random_id(),
        };
        let (metadata, parsed) = check_metadata(&f("metadata"), it.metadata.as_deref())?;
        if let Some(s) = it.significance {
            check_significance(&f("significance"), s)?;
        }
        check_vector(&it.vector, dims).map_err(|m| Error::invalid(format!("{}: {m}", f("embedding"))))?;
        if normalize(&mut it.vector) == 0.0 {
            return Err(Error::invalid(format!("{} must not be the zero vector", f("embedding"))));
        }
        drop(parsed);
        out.push(Prepared { input: it, id, metadata });
    }
    Ok(out)
}

impl TensorStore {
    /// Open (or create) the store in `dir`, replaying its log.
    pub fn open(dir: impl AsRef<Path>, opts: StoreOptions) -> Result<TensorStore> {
        crate::search::init_scan_pool();
        let dir = dir.as_ref().to_path_buf();
        if opts.dims == 0 || opts.dims > 16384 {
            return Err(Error::invalid(format!("dims must be between 1 and 16384, got {}", opts.dims)));
        }
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&lock_path).map_err(|e| Error::io(&lock_path, e))?;
        match fs4::fs_std::FileExt::try_lock_exclusive(&lock) {
            Ok(true) => {}
            Ok(false) | Err(_) => {
                return Err(Error::Locked(format!(
                    "data directory {} is in use by another memory server (lock {} is held)",
                    dir.display(),
                    lock_path.display()
                )))
            }
        }

        // The directory's identity: dims and embedder.
        let meta_path = dir.join(META_FILE);
        let mut meta = if meta_path.exists() {
            let text = std::fs::read_to_string(&meta_path).map_err(|e| Error::io(&meta_path, e))?;
            let m: MetaFile = serde_json::from_str(&text)
                .map_err(|e| Error::Corrupt { file: meta_path.display().to_string(), offset: 0, reason: e.to_string() })?;
            if m.dims != opts.dims {
                return Err(Error::invalid(format!(
                    "data directory {} holds {}-dimensional vectors but the embedder produces {} dimensions; use another --data-dir or the matching model",
                    dir.display(),
                    m.dims,
                    opts.dims
                )));
            }
            m
        } else {
            MetaFile { format: 1, dims: opts.dims, embedder: opts.embedder.clone() }
        };
        if let (Some(have), Some(want)) = (&meta.embedder, &opts.embedder) {
            if have != want {
                if !opts.reembed {
                    return Err(Error::invalid(format!(
                        "data directory {} was written by embedder {} (model hash {}), not {} (model hash {}); start with --reembed to accept it",
                        dir.display(),
                        have.name,
                        have.hash,
                        want.name,
                        want.hash
                    )));
                }
                meta.embedder = Some(want.clone());
            }
        } else if meta.embedder.is_none() {
            meta.embedder = opts.embedder.clone();
        }

        // Leftovers of an interrupted compaction.
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for ent in rd.flatten() {
                if ent.file_name().to_string_lossy().ends_with(".log.tmp") {
                    let _ = std::fs::remove_file(ent.path());
                }
            }
        }

        let mut st = State::new(opts.dims);
        let vec_file: Option<VecFile>;
        let writer = match log::find_current(&dir)? {
            None => {
                let path = dir.join(log::log_name(1));
                let header = Header { dims: opts.dims as u32, gen: 1, high_water: 0 };
                drop(log::create(&path, header)?);
                log::sync_dir(&dir)?;
                vec_file = VecFile::open(&dir, 1, opts.dims, true).map(|(v, _)| v);
                LogWriter::open_append(path, 1, log::HEADER_LEN as u64)?
            }
            Some((gen, path)) => {
                let mut bytes = log::LogImage::open(&path)?;
                if gen == 1 && bytes.len() < log::HEADER_LEN {
                    // A crash while the very first log was being created: it holds no records
                    // (the header is written and synced before any), so start it again.
                    let header = Header { dims: opts.dims as u32, gen: 1, high_water: 0 }.encode();
                    std::fs::write(&path, header).map_err(|e| Error::io(&path, e))?;
                    File::open(&path).and_then(|f| f.sync_all()).map_err(|e| Error::io(&path, e))?;
                    bytes = log::LogImage::Owned(header.to_vec());
                }
                let file = path.display().to_string();
                // Check the dims before replaying: vectors are decoded with the header's dims.
                let header = Header::decode(&bytes, &file)?;
                if header.dims as usize != opts.dims {
                    return Err(Error::invalid(format!(
                        "log {file} holds {}-dimensional vectors, expected {}",
                        header.dims, opts.dims
                    )));
                }
                let vf = VecFile::open(&dir, gen, opts.dims, false);
                let (sc, file_ok) = replay(&bytes, &file, &mut st, vf.as_ref().map(|(v, rows)| (&v.file, *rows)))?;
                vec_file = vf.map(|(mut v, _)| {
                    v.rows = file_ok.min(st.vectors.len());
                    v
                });
                if let ScanEnd::Corrupt { offset, reason } = sc.end {
                    return Err(Error::Corrupt {
                        file: format!("{file} (run `memory-server repair` to keep the records before it)"),
                        offset,
                        reason,
                    });
                }
                st.last_seq = st.last_seq.max(sc.last_seq);
                drop(bytes);
                // Remove older generations left behind by a crash after a compaction rename.
                if let Ok(rd) = std::fs::read_dir(&dir) {
                    for ent in rd.flatten() {
                        let name = ent.file_name().to_string_lossy().to_string();
                        if let Some(g) = name.strip_prefix("wal-").and_then(|s| s.strip_suffix(".log")).and_then(|g| g.parse::<u64>().ok()) {
                            if g < gen {
                                let _ = std::fs::remove_file(ent.path());
                            }
                        }
                        // Vectors files of other generations (a crash around a compaction).
                        if let Some(g) = name.strip_prefix("vectors-").and_then(|s| s.strip_suffix(".f32")).and_then(|g| g.parse::<u64>().ok()) {
                            if g != gen {
                                let _ = std::fs::remove_file(ent.path());
                            }
                        }
                    }
                }
                LogWriter::open_append(path, gen, sc.valid_len)?
            }
        };

        // Record the directory's identity only once the log has been accepted, so a refused
        // open (wrong dims, corruption) does not rewrite it.
        write_meta(&dir, &meta)?;

        let shared = Arc::new(Shared {
            dir: dir.clone(),
            dims: opts.dims,
            fsync: opts.fsync,
            group_commit: opts.group_commit,
            embedder: meta.embedder.clone(),
            storage_bytes: AtomicU64::new(writer.len),
            state: RwLock::new(st),
            q8: q8::kernel().map(|kern| Q8Shared { rows: RwLock::new(Q8Rows::new(opts.dims)), kern }),
            fsyncs: AtomicU64::new(0),
            groups: AtomicU64::new(0),
            records: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        });
        let (tx, rx) = mpsc::channel::<Op>();
        let (stx, srx) = mpsc::channel::<SearchJob>();
        let w = Writer { shared: shared.clone(), log: writer, rx, stash: None, dirty: false, last_sync: Instant::now(), idle_work: true, vec_file, quiet: false };
        let t1 = std::thread::Builder::new().name("memory-writer".into()).spawn(move || w.run()).map_err(|e| Error::Internal(e.to_string()))?;
        let sh2 = shared.clone();
        let t2 = std::thread::Builder::new().name("memory-searcher".into()).spawn(move || searcher(sh2, srx)).map_err(|e| Error::Internal(e.to_string()))?;
        Ok(TensorStore {
            shared,
            tx: Mutex::new(Some(tx)),
            search_tx: Mutex::new(Some(stx)),
            threads: Mutex::new(vec![t1, t2]),
            lock: Mutex::new(Some(lock)),
        })
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
                    fail_op(op, Error::Unavailable("the store is closed".into()));
                }
            }
            None => fail_op(op, Error::Unavailable("the store is closed".into())),
        }
    }

    /// Store memories (all-or-nothing); `done` runs once they are durable.
    pub fn put(&self, items: Vec<PutInput>, done: Done<Vec<PutOutcome>>) {
        if items.is_empty() {
            return done(Err(Error::invalid("items must not be empty")));
        }
        match prepare_check(items, self.shared.dims) {
            Ok(items) => self.send(Op::Put(items, done)),
            Err(e) => done(Err(e)),
        }
    }

    pub fn update(&self, namespace: String, id: String, metadata: Option<String>, significance: Option<f32>, done: Done<Memory>) {
        if let Err(e) = check_name("namespace", &namespace, MAX_NAMESPACE_CHARS).and_then(|_| check_name("id", &id, MAX_ID_CHARS)) {
            return done(Err(e));
        }
        if let Some(m) = &metadata {
            if let Err(e) = check_metadata("metadata", Some(m)) {
                return done(Err(e));
            }
        }
        if let Some(s) = significance {
            if let Err(e) = check_significance("significance", s) {
                return done(Err(e));
            }
        }
        self.send(Op::Update { namespace, id, metadata, significance, done })
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
        for (i, r) in records.iter().enumerate() {
            if let Err(m) = check_vector(&r.vector, self.shared.dims) {
                return done(Err(Error::invalid(format!("records[{i}].embedding: {m}"))));
            }
            if r.text.len() > MAX_TEXT_BYTES || r.metadata.len() > MAX_METADATA_BYTES || r.associations.len() > 255 {
                return done(Err(Error::PayloadTooLarge(format!("records[{i}] is over a size limit"))));
            }
            if r.namespace.is_empty() || r.id.is_empty() || r.namespace.len() > 65535 || r.id.len() > 65535 {
                return done(Err(Error::invalid(format!("records[{i}] needs a namespace and an id"))));
            }
            if r.associations.iter().any(|a| a.len() > 65535) {
                return done(Err(Error::PayloadTooLarge(format!("records[{i}].associations has an id over 65535 bytes"))));
            }
            // NaN or out-of-range significance would corrupt the ordered significance index.
            if let Err(e) = check_significance(&format!("records[{i}].significance"), r.significance) {
                return done(Err(e));
            }
            // Reads hand metadata out as JSON object text: it must be one.
            if let Err(e) = check_metadata(&format!("records[{i}].metadata"), Some(&r.metadata)) {
                return done(Err(e));
            }
            if r.vector.iter().all(|&x| x == 0.0) {
                return done(Err(Error::invalid(format!("records[{i}].embedding must not be the zero vector"))));
            }
        }
        self.send(Op::BulkLoad(records, done))
    }

    pub fn compact(&self, done: Done<CompactReport>) {
        self.send(Op::Compact(done))
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
        let st = self.shared.state.read();
        let row = st.find(namespace, id, now_ms())?;
        Some(memory_of(&st, row, with_embedding, None))
    }

    /// Exact top-k search for `nq` queries at once (queries are normalized here).
    pub fn search(&self, queries: &[f32], nq: usize, req: &SearchRequest) -> Result<Vec<Vec<Memory>>> {
        let dims = self.shared.dims;
        if queries.len() != nq * dims {
            return Err(Error::invalid(format!("queries hold {} floats, expected {nq} × {dims}", queries.len())));
        }
        let mut q = queries.to_vec();
        for (i, v) in q.chunks_mut(dims.max(1)).enumerate() {
            check_vector(v, dims).map_err(|m| Error::invalid(format!("query {i}: {m}")))?;
            normalize(v);
        }
        let st = self.shared.state.read();
        let now = now_ms();
        let hits = self.shared.search(&st, &q, nq, &req.params(now));
        Ok(hits.into_iter().map(|h| h.into_iter().map(|x| memory_of(&st, x.row, req.include_embeddings, Some(x.score))).collect()).collect())
    }

    /// Queue one query; concurrent queries with equal parameters share one pass.
    pub fn search_batched(&self, mut query: Vec<f32>, req: SearchRequest, done: Done<Vec<Memory>>) {
        if let Err(m) = check_vector(&query, self.shared.dims) {
            return done(Err(Error::invalid(format!("embedding: {m}"))));
        }
        normalize(&mut query);
        let guard = self.search_tx.lock();
        match guard.as_ref() {
            Some(tx) => {
                if let Err(mpsc::SendError(job)) = tx.send(SearchJob { query, req, done }) {
                    (job.done)(Err(Error::Unavailable("the store is closed".into())));
                }
            }
            None => done(Err(Error::Unavailable("the store is closed".into()))),
        }
    }

    /// Highest significance first (newest first on ties), from the ordered index.
    pub fn top(&self, req: &SearchRequest, count: usize) -> Vec<Memory> {
        let st = self.shared.state.read();
        let rows = scan::top_by_significance(&st, &req.params(now_ms()), count);
        rows.into_iter().map(|r| memory_of(&st, r, req.include_embeddings, None)).collect()
    }

    /// Memories of a namespace in store order, after the cursor (a `seq`). Returns the page
    /// and the cursor of the next page, if any.
    pub fn list(&self, namespace: &str, after_seq: u64, limit: usize, filter: Option<&Filter>) -> (Vec<Memory>, Option<u64>) {
        let st = self.shared.state.read();
        let Some(ns) = st.ns_id(namespace) else { return (Vec::new(), None) };
        let now = now_ms();
        let nsd = &st.namespaces[ns as usize];
        let start = nsd.rows.partition_point(|&r| st.rows[r as usize].seq <= after_seq);
        let mut out = Vec::new();
        let mut more = false;
        for &r in &nsd.rows[start..] {
            if !st.visible(r as usize, now) {
                continue;
            }
            if let Some(f) = filter {
                let empty = Map::new();
                if !f.matches(st.rows[r as usize].metadata.as_deref().unwrap_or(&empty)) {
                    continue;
                }
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

    /// Every visible memory in seq order after `after_seq` (all namespaces), with
    /// embeddings: the export path.
    pub fn export(&self, after_seq: u64, limit: usize) -> Vec<Memory> {
        let st = self.shared.state.read();
        let now = now_ms();
        let start = st.rows.partition_point(|r| r.seq <= after_seq);
        (start..st.len()).filter(|&r| st.visible(r, now)).take(limit).map(|r| memory_of(&st, r as u32, true, None)).collect()
    }

    /// (name, visible memories) per namespace that has any.
    pub fn namespaces(&self) -> Vec<(String, usize)> {
        let st = self.shared.state.read();
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

    /// Visible memories in one namespace.
    pub fn count(&self, namespace: &str) -> usize {
        let st = self.shared.state.read();
        let now = now_ms();
        st.ns_id(namespace)
            .map(|n| st.visible_count(n, now))
            .unwrap_or(0)
    }

    /// The changing numbers of [`stats`](Self::stats), without its allocations.
    pub fn counters(&self) -> StoreCounters {
        let st = self.shared.state.read();
        let now = now_ms();
        StoreCounters {
            total_memories: (0..st.namespaces.len()).map(|n| st.visible_count(n as u32, now)).sum(),
            namespaces: st.namespaces.iter().filter(|n| n.live > 0).count(),
            storage_bytes: self.shared.storage_bytes.load(Ordering::Relaxed),
            total_associations: st.associations_total,
            last_seq: st.last_seq,
            fsyncs: self.shared.fsyncs.load(Ordering::Relaxed),
            groups: self.shared.groups.load(Ordering::Relaxed),
            records: self.shared.records.load(Ordering::Relaxed),
            rows: st.len(),
            dead_rows: st.len() - st.live_count,
        }
    }

    pub fn stats(&self) -> StoreStats {
        let st = self.shared.state.read();
        let now = now_ms();
        let total: usize = (0..st.namespaces.len()).map(|n| st.visible_count(n as u32, now)).sum();
        StoreStats {
            total_memories: total,
            dims: st.dims,
            storage_bytes: self.shared.storage_bytes.load(Ordering::Relaxed),
            storage_path: self.shared.dir.display().to_string(),
            fsync: self.shared.fsync.name(),
            namespaces: st.namespaces.iter().filter(|n| n.live > 0).count(),
            rows: st.len(),
            dead_rows: st.len() - st.live_count,
            total_associations: st.associations_total,
            last_seq: st.last_seq,
            fsyncs: self.shared.fsyncs.load(Ordering::Relaxed),
            groups: self.shared.groups.load(Ordering::Relaxed),
            records: self.shared.records.load(Ordering::Relaxed),
            isa: crate::search::kernels().isa.name(),
            embedder: self.shared.embedder.clone(),
            int8_rows: self.shared.q8.as_ref().map_or(0, |q| q.rows.read().len()),
            mapped_rows: st.vectors.mapped_rows(),
        }
    }
}

impl Drop for TensorStore {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Run validation on the caller's thread (spreads the cost and fails fast) but hand the
/// raw inputs on; the writer re-derives the parsed parts cheaply.
fn prepare_check(items: Vec<PutInput>, dims: usize) -> Result<Vec<PutInput>> {
    Ok(prepare(items, dims)?
        .into_iter()
        .map(|p| {
            let mut i = p.input;
            i.id = Some(p.id);
            i.metadata = Some(p.metadata);
            i
        })
        .collect())
}

fn blocking<T: Send + 'static>(f: impl FnOnce(Done<T>)) -> Result<T> {
    let (tx, rx) = mpsc::channel();
    f(Box::new(move |r| drop(tx.send(r))));
    rx.recv().unwrap_or_else(|_| Err(Error::Unavailable("the store is closed".into())))
}

fn write_meta(dir: &Path, meta: &MetaFile) -> Result<()> {
    let path = dir.join(META_FILE);
    let tmp = dir.join(format!("{META_FILE}.tmp"));
    let text = serde_json::to_string_pretty(meta).map_err(|e| Error::Internal(e.to_string()))?;
    if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
        return Ok(());
    }
    std::fs::write(&tmp, &text).map_err(|e| Error::io(&tmp, e))?;
    File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    log::sync_dir(dir)
}

/// Replay a log image into `st`.
///
/// Fast path: frame the records by their length prefixes, verify checksums and decode them
/// on all cores without copying (metadata parsed there too), then apply them in order with
/// the ordered significance index built once at the end. If anything does not verify, the
/// sequential [`log::scan`] classifies the damage (torn tail or corruption) and only the
/// valid prefix is applied.
/// `vec_file` is the vectors file of this generation and how many rows it holds: whole
/// chunks of it are mapped instead of copied from the log, and checked against the log.
/// Returns the scan and the number of leading rows the vectors file holds correctly.
fn replay(bytes: &[u8], file: &str, st: &mut State, vec_file: Option<(&File, usize)>) -> Result<(log::Scan, usize)> {
    use rayon::prelude::*;
    let header = Header::decode(bytes, file)?;
    let dims = header.dims as usize;
    let trace = std::env::var_os("MEMORY_SERVER_TRACE_OPEN").is_some();
    let t0 = Instant::now();
    let (frames, framed) = log::frames(bytes);
    type Decoded<'a> = Option<(log::RecordRef<'a>, Option<Box<Map<String, Value>>>)>;
    let decoded: Vec<Decoded> = frames
        .par_iter()
        .with_min_len(256)
        .map(|&(off, len)| {
            let rec = log::check_frame(bytes, off, len, dims)?;
            let meta = match &rec {
                log::RecordRef::Put { metadata, .. } => parse_metadata(metadata),
                _ => None,
            };
            Some((rec, meta))
        })
        .collect();
    if trace {
        eprintln!("replay: framed+decoded {} records in {:?}", frames.len(), t0.elapsed());
    }
    let mut ok = framed && decoded.iter().all(|d| d.is_some());
    if ok {
        let mut last = 0u64;
        for d in decoded.iter().flatten() {
            if d.0.seq() <= last {
                ok = false;
                break;
            }
            last = d.0.seq();
        }
    }
    let (sc, limit) = if ok {
        let last_seq = decoded.last().and_then(|d| d.as_ref()).map(|d| d.0.seq()).unwrap_or(0).max(header.high_water);
        (log::Scan { header, valid_len: bytes.len() as u64, end: ScanEnd::Clean, last_seq }, decoded.len())
    } else {
        let sc = log::scan(bytes, file, |_, _| {})?;
        let n = frames.iter().take_while(|&&(o, l)| (o + 8 + l) as u64 <= sc.valid_len).count();
        (sc, n)
    };
    st.defer_sig_index(limit);
    // Every put adds exactly one row, in order, to the (empty) state: row k is the k-th put.
    // So the vectors can be copied into the arena on other cores while this thread applies
    // the records.
    debug_assert_eq!(st.len(), 0);
    let vectors: Vec<(u32, &[u8])> = decoded
        .iter()
        .take(limit)
        .filter_map(|d| match d {
            Some((log::RecordRef::Put { vector, .. }, _)) => Some(*vector),
            _ => None,
        })
        .enumerate()
        .map(|(k, v)| (k as u32, v))
        .collect();
    let mut arena = std::mem::replace(&mut st.vectors, state::Vectors::new(dims));
    if let Some((f, rows)) = vec_file {
        arena.map_file(f, rows.min(vectors.len()));
    }
    arena.reserve_rows(vectors.len());
    let apply = |st: &mut State| -> Result<()> {
        for (i, d) in decoded.into_iter().take(limit).enumerate() {
            let Some((rec, meta)) = d else {
                return Err(Error::Corrupt { file: file.to_string(), offset: frames[i].0 as u64, reason: "record failed verification".into() });
            };
            match rec {
                log::RecordRef::Put { seq, ts, namespace, id, text, metadata, significance, expires_at, associations, .. } => {
                    st.insert_row(state::NewRow {
                        seq,
                        ts,
                        namespace,
                        id,
                        text,
                        metadata_raw: metadata,
                        metadata: meta,
                        significance,
                        expires_at,
                        associations: associations.into_iter().map(Box::from).collect(),
                        vector: state::VectorSrc::Elsewhere,
                    });
                }
                log::RecordRef::Update { seq, namespace, id, metadata, significance, .. } => {
                    if let Some(n) = st.ns_id(namespace) {
                        if let Some(&row) = st.namespaces[n as usize].ids.get(id) {
                            st.apply_update(row, metadata.map(str::to_string), significance, seq);
                        }
                    }
                    st.last_seq = st.last_seq.max(seq);
                }
                log::RecordRef::Delete { seq, namespace, id, .. } => {
                    if let Some(n) = st.ns_id(namespace) {
                        if let Some(&row) = st.namespaces[n as usize].ids.get(id) {
                            st.kill(row);
                        }
                    }
                    st.last_seq = st.last_seq.max(seq);
                }
            }
        }
        Ok(())
    };
    let (applied, diff) = rayon::join(
        || {
            let r = apply(st);
            if trace {
                eprintln!("replay: records applied at {:?}", t0.elapsed());
            }
            r
        },
        || {
            let diff = arena.fill_le_bytes(&vectors);
            if trace {
                eprintln!("replay: vectors copied at {:?} ({} rows mapped from the vectors file, first differing: {diff:?})", t0.elapsed(), arena.mapped_rows());
            }
            diff
        },
    );
    applied?;
    let file_ok = diff.unwrap_or(usize::MAX).min(arena.mapped_rows());
    arena.set_len(vectors.len());
    debug_assert_eq!(arena.len(), st.len());
    st.vectors = arena;
    drop(vectors);
    if trace {
        eprintln!("replay: applied + vectors in {:?}", t0.elapsed());
    }
    st.rebuild_sig_index();
    if trace {
        eprintln!("replay: sig index in {:?}", t0.elapsed());
    }
    Ok((sc, file_ok))
}

fn memory_of(st: &State, row: u32, with_embedding: bool, score: Option<f32>) -> Memory {
    let r = row as usize;
    let x = &st.rows[r];
    Memory {
        id: x.id.to_string(),
        namespace: st.namespaces[st.ns_col[r] as usize].name.clone(),
        text: x.text.to_string(),
        metadata: x.metadata_raw.to_string(),
        significance: st.sig_col[r],
        timestamp: x.ts,
        associations: x.associations.iter().map(|a| a.to_string()).collect(),
        seq: x.seq,
        expires_at: (st.exp_col[r] != NO_EXPIRY).then_some(st.exp_col[r]),
        embedding: with_embedding.then(|| st.vectors.row(r).to_vec()),
        score,
    }
}

fn fail_op(op: Op, e: Error) {
    match op {
        Op::Put(_, d) => d(Err(e)),
        Op::Update { done, .. } => done(Err(e)),
        Op::Delete { done, .. } => done(Err(e)),
        Op::DeleteWhere { done, .. } => done(Err(e)),
        Op::BulkLoad(_, d) => d(Err(e)),
        Op::Compact(d) => d(Err(e)),
        Op::Flush(d) => d(Err(e)),
        Op::Close(d) => d(Err(e)),
    }
}

fn clone_err(e: &Error) -> Error {
    match e {
        Error::StorageFull(m) => Error::StorageFull(m.clone()),
        Error::Io { path, source } => Error::Io { path: path.clone(), source: std::io::Error::new(source.kind(), source.to_string()) },
        other => Error::Unavailable(other.to_string()),
    }
}

struct Writer {
    shared: Arc<Shared>,
    log: LogWriter,
    rx: Receiver<Op>,
    stash: Option<Op>,
    dirty: bool,
    last_sync: Instant,
    /// Some rows may have no int8 codes yet (see [`Q8Shared`]) or may be missing from the
    /// vectors file: the writer catches up while idle.
    idle_work: bool,
    vec_file: Option<VecFile>,
    /// No operation has arrived for [`VEC_FILE_QUIET`] (reset by every operation).
    quiet: bool,
}

/// A put being assembled in a group.
struct NewMemory {
    op: usize,
    item: usize,
    record: PutRecord,
    parsed: Option<Box<Map<String, Value>>>,
    importance: f32,
    given_significance: Option<f32>,
}

impl Writer {
    fn run(mut self) {
        loop {
            let op = if let Some(op) = self.stash.take() {
                op
            } else if self.idle_work {
                // Idle time codes the rows that have no int8 codes yet and appends rows to the
                // vectors file, a slice at a time, so a new operation waits for one slice at most.
                // The int8 codes are needed by the next put group anyway; the vectors file only
                // after a quiet moment (VEC_FILE_QUIET without an operation), so a writer kept
                // busy by concurrent puts spends nothing on it (its page-cache writes were ~7%
                // of the writer's time under 64 concurrent writers) and it catches up in
                // pauses, such as between the batches of a bulk load.
                match self.rx.try_recv() {
                    Ok(op) => op,
                    Err(TryRecvError::Empty) => {
                        if let FsyncPolicy::Interval(iv) = self.shared.fsync {
                            if self.dirty && self.last_sync.elapsed() >= iv {
                                self.interval_sync();
                            }
                        }
                        let st = self.shared.state.read();
                        if !self.shared.q8.as_ref().is_none_or(|q8| q8.catch_up(&st, Q8_CATCH_UP_ROWS)) {
                            continue;
                        }
                        if !self.vec_file.as_ref().is_some_and(|v| v.rows < st.len()) {
                            self.idle_work = false;
                            continue;
                        }
                        if self.quiet {
                            // Still no operation since the quiet moment: the next slice.
                            VecFile::catch_up(&mut self.vec_file, &st, VEC_FILE_SLICE_ROWS);
                            continue;
                        }
                        drop(st);
                        match self.rx.recv_timeout(VEC_FILE_QUIET) {
                            Ok(op) => op,
                            Err(RecvTimeoutError::Timeout) => {
                                self.quiet = true;
                                continue;
                            }
                            Err(RecvTimeoutError::Disconnected) => {
                                let _ = self.sync_now();
                                return;
                            }
                        }
                    }
                    Err(TryRecvError::Disconnected) => {
                        let _ = self.sync_now();
                        return;
                    }
                }
            } else {
                let wait = match self.shared.fsync {
                    FsyncPolicy::Interval(iv) if self.dirty => iv.saturating_sub(self.last_sync.elapsed()),
                    _ => Duration::from_secs(3600),
                };
                match self.rx.recv_timeout(wait) {
                    Ok(op) => op,
                    Err(RecvTimeoutError::Timeout) => {
                        self.interval_sync();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => {
                        let _ = self.sync_now();
                        return;
                    }
                }
            };
            self.quiet = false;
            match op {
                Op::Put(items, done) => {
                    let mut group = vec![(items, done)];
                    let mut n: usize = group[0].0.len();
                    let max_items = if self.shared.group_commit { MAX_GROUP_ITEMS } else { 0 };
                    while n < max_items {
                        match self.rx.try_recv() {
                            Ok(Op::Put(items, done)) => {
                                n += items.len();
                                group.push((items, done));
                            }
                            Ok(other) => {
                                self.stash = Some(other);
                                break;
                            }
                            Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => break,
                        }
                    }
                    self.put_group(group);
                    self.idle_work = true;
                }
                Op::Update { namespace, id, metadata, significance, done } => done(self.update(namespace, id, metadata, significance)),
                Op::Delete { namespace, ids, done } => done(self.delete(&namespace, ids)),
                Op::DeleteWhere { namespace, filter, done } => {
                    let rows = {
                        let st = self.shared.state.read();
                        let p = ScanParams { namespace: &namespace, filter: filter.as_ref(), now_ms: now_ms(), ..Default::default() };
                        scan::matching_rows(&st, &p).into_iter().map(|r| st.rows[r as usize].id.to_string()).collect::<Vec<_>>()
                    };
                    done(self.delete(&namespace, rows))
                }
                Op::BulkLoad(records, done) => {
                    done(self.bulk_load(records));
                    self.idle_work = true;
                }
                Op::Compact(done) => done(self.compact()),
                Op::Flush(done) => done(self.sync_now()),
                Op::Close(done) => {
                    done(self.sync_now());
                    // Fail anything still queued.
                    while let Ok(op) = self.rx.try_recv() {
                        fail_op(op, Error::Unavailable("the store is closed".into()));
                    }
                    return;
                }
            }
        }
    }

    fn interval_sync(&mut self) {
        if self.dirty {
            let _ = self.sync_now();
        }
    }

    fn sync_now(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        self.log.sync()?;
        self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Append `buf` and make it durable per policy; on failure nothing stays in the file.
    fn commit(&mut self, buf: &[u8], records: usize) -> Result<()> {
        let before = self.log.len;
        self.log.append(buf)?;
        self.dirty = true;
        if self.shared.fsync == FsyncPolicy::Always {
            if let Err(e) = self.sync_now() {
                let _ = self.log.file.set_len(before);
                self.log.len = before;
                let _ = std::io::Seek::seek(&mut self.log.file, std::io::SeekFrom::Start(before));
                return Err(e);
            }
        } else if let FsyncPolicy::Interval(iv) = self.shared.fsync {
            if self.last_sync.elapsed() >= iv {
                let _ = self.sync_now();
            }
        }
        self.shared.storage_bytes.store(self.log.len, Ordering::Relaxed);
        self.shared.groups.fetch_add(1, Ordering::Relaxed);
        self.shared.records.fetch_add(records as u64, Ordering::Relaxed);
        Ok(())
    }

    fn put_group(&mut self, mut group: Vec<(Vec<PutInput>, Done<Vec<PutOutcome>>)>) {
        let now = now_ms();
        let dims = self.shared.dims;
        // Per op: outcome slots; None until filled.
        let mut outcomes: Vec<Vec<Option<PutOutcome>>> = group.iter().map(|(items, _)| vec![None; items.len()]).collect();
        let mut news: Vec<NewMemory> = Vec::new();
        let mut buf = Vec::new();
        {
            let st = self.shared.state.read();
            let mut seq = st.last_seq;
            // (namespace, id) → index into `news`, for duplicates inside the group.
            let mut pending: HashMap<(String, String), usize> = HashMap::new();
            // Text, metadata and vector move into the records (only namespaces are read later).
            for (oi, (items, _)) in group.iter_mut().enumerate() {
                for (ii, it) in items.iter_mut().enumerate() {
                    let id = it.id.take().unwrap_or_default();
                    if let Some(row) = st.find(&it.namespace, &id, now) {
                        let m = memory_of(&st, row, false, None);
                        outcomes[oi][ii] = Some(PutOutcome {
                            id,
                            seq: m.seq,
                            significance: m.significance,
                            timestamp: m.timestamp,
                            associations: m.associations,
                            existing: true,
                            namespace_total: 0,
                        });
                        continue;
                    }
                    let key = (it.namespace.clone(), id.clone());
                    if let Some(&j) = pending.get(&key) {
                        // Filled in after significance is known.
                        outcomes[oi][ii] = Some(PutOutcome { id, seq: news[j].record.seq, significance: f32::NAN, timestamp: now, associations: vec![], existing: true, namespace_total: 0 });
                        continue;
                    }
                    let parsed = parse_metadata(it.metadata.as_deref().unwrap_or("{}"));
                    let importance = importance_of(parsed.as_deref()).unwrap_or(0.5);
                    seq += 1;
                    pending.insert(key, news.len());
                    news.push(NewMemory {
                        op: oi,
                        item: ii,
                        record: PutRecord {
                            seq,
                            ts: now,
                            namespace: it.namespace.clone(),
                            id,
                            text: std::mem::take(&mut it.text),
                            metadata: it.metadata.take().unwrap_or_else(|| "{}".into()),
                            significance: 0.0,
                            expires_at: it.ttl_ms.map(|t| now.saturating_add(t.min(i64::MAX as u64) as i64)).unwrap_or(NO_EXPIRY),
                            associations: Vec::new(),
                            vector: std::mem::take(&mut it.vector),
                        },
                        parsed,
                        importance,
                        given_significance: it.significance,
                    });
                }
            }
            // Every stored row coded (read-locked for the pass; dropped before `st`).
            let q8 = self.shared.q8.as_ref().map(|q| {
                let mut rows = q.rows.write();
                Q8Shared::extend(&mut rows, &st, usize::MAX);
                (parking_lot::RwLockWriteGuard::downgrade(rows), q.kern)
            });
            score_new(&st, q8.as_ref().map(|(rows, k)| (&**rows, *k)), &mut news, dims, now);
            for n in &news {
                log::encode_put(&mut buf, &n.record);
            }
        }
        let result = if news.is_empty() { Ok(()) } else { self.commit(&buf, news.len()) };
        if let Err(e) = result {
            for (_, done) in group {
                done(Err(clone_err(&e)));
            }
            return;
        }
        // Visible only now that it is durable.
        {
            let mut st = self.shared.state.write();
            for n in news {
                let (op, item) = (n.op, n.item);
                let mut o = PutOutcome {
                    id: n.record.id.clone(),
                    seq: n.record.seq,
                    significance: n.record.significance,
                    timestamp: n.record.ts,
                    associations: n.record.associations.clone(),
                    existing: false,
                    namespace_total: 0,
                };
                let namespace = n.record.namespace.clone();
                st.apply_put(n.record, Some(n.parsed));
                o.namespace_total = st.ns_id(&namespace).map(|ns| st.visible_count(ns, now)).unwrap_or(0) as u32;
                outcomes[op][item] = Some(o);
            }
            // In-group duplicates take the stored memory's values.
            for (oi, slots) in outcomes.iter_mut().enumerate() {
                for (ii, slot) in slots.iter_mut().enumerate() {
                    let Some(o) = slot.as_mut() else { continue };
                    if o.existing {
                        let ns = group[oi].0[ii].namespace.as_str();
                        o.namespace_total = st.ns_id(ns).map(|n| st.visible_count(n, now)).unwrap_or(0) as u32;
                    }
                    if o.existing && o.significance.is_nan() {
                        if let Some(row) = st.find_any(&o.id, o.seq) {
                            o.significance = st.sig_col[row as usize];
                            o.associations = st.rows[row as usize].associations.iter().map(|a| a.to_string()).collect();
                            o.timestamp = st.ts_col[row as usize];
                        }
                    }
                }
            }
        }
        for ((_, done), slots) in group.into_iter().zip(outcomes) {
            done(Ok(slots.into_iter().map(|o| o.expect("every item has an outcome")).collect()));
        }
    }

    fn update(&mut self, namespace: String, id: String, metadata: Option<String>, significance: Option<f32>) -> Result<Memory> {
        let now = now_ms();
        let (row, seq) = {
            let st = self.shared.state.read();
            let row = st.find(&namespace, &id, now).ok_or_else(|| Error::NotFound(format!("memory {id:?} not found in namespace {namespace:?}")))?;
            (row, st.last_seq + 1)
        };
        let metadata = match metadata {
            Some(m) => Some(check_metadata("metadata", Some(&m))?.0),
            None => None,
        };
        let rec = Record::Update(UpdateRecord { seq, ts: now, namespace, id, metadata: metadata.clone(), significance });
        let mut buf = Vec::new();
        log::encode_record(&mut buf, &rec);
        self.commit(&buf, 1)?;
        let mut st = self.shared.state.write();
        st.apply_update(row, metadata, significance, seq);
        let mut m = memory_of(&st, row, false, None);
        m.seq = seq;
        Ok(m)
    }

    fn delete(&mut self, namespace: &str, ids: Vec<String>) -> Result<DeleteOutcome> {
        let now = now_ms();
        let mut out = DeleteOutcome::default();
        let mut rows = Vec::new();
        let mut buf = Vec::new();
        {
            let st = self.shared.state.read();
            let mut seq = st.last_seq;
            let mut seen = std::collections::HashSet::new();
            for id in ids {
                match st.find(namespace, &id, now) {
                    Some(row) if seen.insert(row) => {
                        seq += 1;
                        log::encode_record(&mut buf, &Record::Delete(DeleteRecord { seq, ts: now, namespace: namespace.to_string(), id: id.clone() }));
                        rows.push(row);
                        out.deleted.push((id, seq));
                    }
                    Some(_) => {}
                    None => out.not_found.push(id),
                }
            }
        }
        if rows.is_empty() {
            return Ok(out);
        }
        self.commit(&buf, rows.len())?;
        let mut st = self.shared.state.write();
        for r in rows {
            st.kill(r);
        }
        if let Some(&(_, s)) = out.deleted.last() {
            st.last_seq = st.last_seq.max(s);
        }
        Ok(out)
    }

    fn bulk_load(&mut self, records: Vec<PutRecord>) -> Result<usize> {
        let now = now_ms();
        let dims = self.shared.dims;
        let mut added = 0;
        // In slices so memory for the encoded batch stays bounded.
        for part in records.chunks(8192) {
            let mut keep = Vec::with_capacity(part.len());
            let mut buf = Vec::new();
            {
                let st = self.shared.state.read();
                let mut seq = st.last_seq;
                let mut seen = std::collections::HashSet::new();
                for r in part {
                    if st.find(&r.namespace, &r.id, now).is_some() || !seen.insert((r.namespace.clone(), r.id.clone())) {
                        continue;
                    }
                    seq += 1;
                    let mut r = r.clone();
                    r.seq = seq;
                    if r.metadata.trim().is_empty() {
                        r.metadata = "{}".into();
                    }
                    normalize(&mut r.vector[..dims]);
                    log::encode_record(&mut buf, &Record::Put(r.clone()));
                    keep.push(r);
                }
            }
            if keep.is_empty() {
                continue;
            }
            // One fsync for the whole load (below); write now.
            self.log.append(&buf)?;
            self.dirty = true;
            self.shared.storage_bytes.store(self.log.len, Ordering::Relaxed);
            let mut st = self.shared.state.write();
            added += keep.len();
            for r in keep {
                st.apply_put(r, None);
            }
        }
        if self.shared.fsync != FsyncPolicy::Off {
            self.sync_now()?;
        }
        Ok(added)
    }

    /// Rewrite the log with only the visible memories (updates merged), as generation
    /// gen+1, then switch to it. Sequence numbers are kept, so list cursors stay valid.
    fn compact(&mut self) -> Result<CompactReport> {
        let tmp = self.shared.dir.join(format!("{}.tmp", log::log_name(self.log.gen + 1)));
        // A leftover from a failed attempt would make `create_new` fail forever.
        let _ = std::fs::remove_file(&tmp);
        let r = self.compact_inner();
        if r.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        r
    }

    fn compact_inner(&mut self) -> Result<CompactReport> {
        let dir = self.shared.dir.clone();
        let gen = self.log.gen + 1;
        let tmp = dir.join(format!("{}.tmp", log::log_name(gen)));
        let final_path = dir.join(log::log_name(gen));
        let now = now_ms();
        let bytes_before = self.log.len;
        let (new_state, rows_before) = {
            let st = self.shared.state.read();
            let header = Header { dims: self.shared.dims as u32, gen, high_water: 0 };
            let mut f = log::create(&tmp, header)?;
            let mut new_state = State::new(self.shared.dims);
            let mut buf = Vec::with_capacity(1 << 20);
            for r in 0..st.len() {
                if !st.visible(r, now) {
                    continue;
                }
                let rec = st.record_of(r as u32);
                log::encode_record(&mut buf, &Record::Put(rec.clone()));
                new_state.apply_put(rec, None);
                if buf.len() >= 1 << 20 {
                    std::io::Write::write_all(&mut f, &buf).map_err(|e| Error::io(&tmp, e))?;
                    buf.clear();
                }
            }
            std::io::Write::write_all(&mut f, &buf).map_err(|e| Error::io(&tmp, e))?;
            f.sync_all().map_err(|e| Error::io(&tmp, e))?;
            new_state.last_seq = st.last_seq;
            (new_state, st.len())
        };
        // Record the high-water mark so sequence numbers never go back after a restart,
        // even when the newest records were deletes that compaction dropped.
        {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = std::fs::OpenOptions::new().write(true).open(&tmp).map_err(|e| Error::io(&tmp, e))?;
            f.seek(SeekFrom::Start(0)).map_err(|e| Error::io(&tmp, e))?;
            f.write_all(&Header { dims: self.shared.dims as u32, gen, high_water: new_state.last_seq }.encode()).map_err(|e| Error::io(&tmp, e))?;
            f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        }
        std::fs::rename(&tmp, &final_path).map_err(|e| Error::io(&final_path, e))?;
        // Open the new log before switching to it. If that fails, take the new generation
        // back out so the old log (which later writes keep going to) stays the truth.
        let opened = log::sync_dir(&dir)
            .and_then(|_| std::fs::metadata(&final_path).map_err(|e| Error::io(&final_path, e)))
            .and_then(|m| LogWriter::open_append(final_path.clone(), gen, m.len()));
        let new_log = match opened {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_file(&final_path);
                let _ = log::sync_dir(&dir);
                return Err(e);
            }
        };
        let len = new_log.len;
        let old = std::mem::replace(&mut self.log, new_log).path;
        let _ = std::fs::remove_file(&old);
        let rows_after = new_state.len();
        let last_seq = new_state.last_seq;
        {
            let mut st = self.shared.state.write();
            *st = new_state;
            st.last_seq = last_seq;
            // Rows were renumbered: the int8 codes are rebuilt from the new state (cleared
            // under the state's write lock, so no search pairs new rows with old codes).
            if let Some(q) = &self.shared.q8 {
                q.rows.write().clear();
            }
        }
        // A new vectors file for the new generation, filled while idle.
        if let Some(old) = self.vec_file.take() {
            let _ = std::fs::remove_file(&old.path);
        }
        self.vec_file = VecFile::open(&self.shared.dir, self.log.gen, self.shared.dims, true).map(|(v, _)| v);
        self.idle_work = true;
        self.shared.storage_bytes.store(len, Ordering::Relaxed);
        Ok(CompactReport { rows_before, rows_after, bytes_before, bytes_after: len })
    }
}

impl State {
    /// Find a live row by id and seq in any namespace (used to resolve in-group duplicates).
    fn find_any(&self, id: &str, seq: u64) -> Option<u32> {
        let i = self.rows.partition_point(|r| r.seq < seq);
        (i < self.rows.len() && self.rows[i].seq == seq && &*self.rows[i].id == id).then_some(i as u32)
    }
}

/// Significance and associations for the new memories of a group, against the stored
/// memories (one multi-query pass per namespace) and the earlier members of the group.
fn score_new(st: &State, q8: Option<(&Q8Rows, &'static Q8Kernels)>, news: &mut [NewMemory], dims: usize, now: i64) {
    let mut by_ns: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in news.iter().enumerate() {
        by_ns.entry(n.record.namespace.as_str()).or_default().push(i);
    }
    let by_ns: Vec<(String, Vec<usize>)> = by_ns.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    for (ns, idx) in by_ns {
        let mut queries = Vec::with_capacity(idx.len() * dims);
        for &i in &idx {
            queries.extend_from_slice(&news[i].record.vector);
        }
        // A few more than needed, then every cosine is recomputed with one kernel below, so
        // that ties (e.g. the same text stored twice) break the same way (newest first)
        // whether the memories were stored in one batch or one by one.
        let p = ScanParams { namespace: &ns, k: MAX_ASSOCIATIONS + ASSOC_TIE_SLACK, now_ms: now, ..Default::default() };
        // Stored neighbours, in passes of at most 64 queries.
        let mut stored: Vec<Vec<Hit>> = Vec::with_capacity(idx.len());
        for part in queries.chunks(64 * dims) {
            let nq = part.len() / dims;
            if let Some((rows, kern)) = q8 {
                // The same nearest neighbour and associations, through the int8 pre-pass
                // (other runners-up below the association floor are not needed).
                stored.extend(scan::search_q8(st, rows, kern, part, nq, &p, ASSOCIATION_MIN_COS));
                continue;
            }
            // The blocked kernel works on queries in fours (leftovers take a slower
            // single-query path): pad each pass with copies of its last query and drop
            // their results.
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
        let recent: Vec<u32> = st.ns_id(&ns).map(|n| st.recent_rows(n, RECENT_WINDOW, now)).unwrap_or_default();
        let k = crate::search::kernels();
        // Reused per memory: candidates as (cosine, seq, who) and the recent window's cosines.
        let mut cands: Vec<(f32, u64, Who)> = Vec::new();
        let mut recent_cos: Vec<f32> = Vec::with_capacity(RECENT_WINDOW + idx.len());
        for (qi, &i) in idx.iter().enumerate() {
            let v = &news[i].record.vector;
            // Candidates: stored hits + earlier group members of this namespace. The int8 pass
            // already scored its hits with `k.dot`; the f32 pass's scores come from the blocked
            // kernel, so they are recomputed with `k.dot` for ties to break the same way.
            // Only the best cosine matters below the association floor: candidates under it
            // are not kept (a group's earlier members can be many).
            cands.clear();
            let mut max_cos: Option<f32> = None;
            let mut consider = |c: f32, seq: u64, who: Who, cands: &mut Vec<(f32, u64, Who)>| {
                max_cos = Some(max_cos.map_or(c, |m| m.max(c)));
                if c >= ASSOCIATION_MIN_COS {
                    cands.push((c, seq, who));
                }
            };
            for h in &stored[qi] {
                let r = h.row as usize;
                let c = if q8.is_some() { h.score } else { (k.dot)(v, st.vectors.row(r)) };
                consider(c, st.rows[r].seq, Who::Row(h.row), &mut cands);
            }
            // The window is the last RECENT_WINDOW memories before this one, oldest first:
            // the newest stored ones that the earlier group members leave room for, then those.
            recent_cos.clear();
            let room = RECENT_WINDOW.saturating_sub(qi).min(recent.len());
            recent_cos.extend(recent[recent.len() - room..].iter().map(|&r| (k.dot)(v, st.vectors.row(r as usize))));
            for &j in &idx[..qi] {
                let c = (k.dot)(v, &news[j].record.vector);
                consider(c, news[j].record.seq, Who::New(j), &mut cands);
                recent_cos.push(c);
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
                    Who::Row(r) => st.rows[r as usize].id.to_string(),
                    Who::New(j) => news[j].record.id.clone(),
                })
                .collect();
            let n = &mut news[i];
            n.record.significance = n.given_significance.unwrap_or_else(|| significance(max_cos, &recent_cos, n.importance));
            n.record.associations = assoc;
        }
    }
}

/// A neighbour candidate of the significance pass: a stored row or an earlier member of the
/// group being stored.
#[derive(Clone, Copy)]
enum Who {
    Row(u32),
    New(usize),
}

fn searcher(shared: Arc<Shared>, rx: Receiver<SearchJob>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < 4 * MAX_SEARCH_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        // Group compatible queries; each group is one pass (≤ 64 queries).
        let mut groups: Vec<(String, Vec<SearchJob>)> = Vec::new();
        for j in jobs {
            let key = j.req.group_key();
            match groups.iter_mut().find(|(k, g)| *k == key && g.len() < MAX_SEARCH_BATCH) {
                Some((_, g)) => g.push(j),
                None => groups.push((key, vec![j])),
            }
        }
        for (_, g) in groups {
            let dims = shared.dims;
            let mut q = Vec::with_capacity(g.len() * dims);
            for j in &g {
                q.extend_from_slice(&j.query);
            }
            let st = shared.state.read();
            let now = now_ms();
            let hits = shared.search(&st, &q, g.len(), &g[0].req.params(now));
            let results: Vec<Vec<Memory>> = hits
                .into_iter()
                .map(|h| h.into_iter().map(|x| memory_of(&st, x.row, g[0].req.include_embeddings, Some(x.score))).collect())
                .collect();
            drop(st);
            for (j, r) in g.into_iter().zip(results) {
                (j.done)(Ok(r));
            }
        }
    }
}

pub use log::{repair, RepairReport};
pub use state::CHUNK_ROWS as VECTOR_CHUNK_ROWS;
pub use log::PutRecord;
