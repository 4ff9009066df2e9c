//! Opening a data directory: its lock ([`super::dirlock`]), its identity (`store.json`: dims and embedder), the
//! current log replayed into a fresh state ([`super::replay`]), leftovers of interrupted
//! compactions removed, and the writer, searcher and scrub threads started.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{mpsc, Arc};

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use super::log::{self, Header, ScanEnd};
use super::logfile::{self, LogImage, LogWriter};
use super::replay::replay;
use super::scrub::{self, ScrubProgress};
use super::searcher::{self, SearchJob};
use super::shared::{Q8Shared, Shared};
use super::snapshot;
use super::state::State;
use super::types::{EmbedderInfo, StoreOptions};
use super::vecfile::VecFile;
use super::writer::{Op, Writer};
use super::dirlock::{self, DirLock};
use super::verified;
use super::{TensorStore, META_FILE};
use crate::error::{Error, Result};
use crate::ann::{persist as ann_persist, AnnSet, HnswParams};
use crate::search::q8::{self, Q8Rows};
use crate::text::persist as text_persist;

/// `store.json`: what the directory's vectors are.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct MetaFile {
    pub format: u32,
    pub dims: usize,
    pub embedder: Option<EmbedderInfo>,
}

/// Open (or create) the store in `dir`, replaying its log.
pub(super) fn open(dir: &Path, opts: StoreOptions) -> Result<TensorStore> {
    let t_open = std::time::Instant::now();
    let trace = std::env::var_os("MEMORY_SERVER_TRACE_OPEN").is_some();
    crate::search::init_scan_pool();
    if opts.dims == 0 || opts.dims > 16384 {
        return Err(Error::invalid(format!("dims must be between 1 and 16384, got {}", opts.dims)));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let lock = dirlock::lock(dir, "")?;
    super::repair::finish_interrupted(dir)?;
    let current = logfile::find_current(dir)?;
    if current.is_none() {
        refuse_without_log(dir)?;
    }
    let meta = identity(dir, &opts)?;
    // Leftovers of an interrupted compaction.
    if let Ok(rd) = std::fs::read_dir(dir) {
        for ent in rd.flatten() {
            if ent.file_name().to_string_lossy().ends_with(".log.tmp") {
                let _ = std::fs::remove_file(ent.path());
            }
        }
    }
    let mut st = State::new(opts.dims);
    st.text_on = opts.text_index;
    // The persisted ANN graphs are read and decoded on another core while the log replays,
    // then checked against the replayed rows.
    let ((log, vec_file, vouched, snapshot_rows), ann_file) = match current {
        None => {
            let (log, vec_file) = create_log(dir, opts.dims)?;
            ((log, vec_file, 0, 0), None)
        }
        Some((gen, path)) => {
            let read_graphs = || {
                let t = std::time::Instant::now();
                let file = ann_persist::read(dir, gen);
                if trace {
                    eprintln!("open: ANN graph file read and decoded in {:?}", t.elapsed());
                }
                file
            };
            let (reopened, file) = rayon::join(|| reopen_log(dir, gen, &path, opts.dims, &mut st), read_graphs);
            let reopened = reopened?;
            // A converted version-1 directory is a new generation: its graphs are rebuilt.
            let file = file.filter(|_| reopened.0.gen == gen);
            (reopened, file)
        }
    };
    // Rows checked at open, and those left to the scrub (see `store/scrub.rs`).
    let checked_rows = vec_file.as_ref().map_or(0, |v| v.crcs.len()) - vouched;
    let mut ann = AnnSet::new(HnswParams::default(), opts.ann_min_rows);
    let t_ann = std::time::Instant::now();
    let restored = ann_persist::restore(ann_file, &st, vec_file.as_ref().map_or(&[][..], |v| &v.crcs[..]), &mut ann);
    if trace {
        eprintln!("open: ANN graphs {} in {:?}", if restored { "loaded" } else { "to build" }, t_ann.elapsed());
    }
    // Record the directory's identity only once the log has been accepted, so a refused
    // open (wrong dims, corruption) does not rewrite it.
    write_meta(dir, &meta)?;
    let shared = Arc::new(Shared {
        dir: dir.to_path_buf(),
        dims: opts.dims,
        fsync: opts.fsync,
        group_commit: opts.group_commit,
        compact: opts.compact,
        text_index: opts.text_index,
        embedder: meta.embedder.clone(),
        storage_bytes: AtomicU64::new(log.len + vec_file.as_ref().map_or(0, |v| v.rows * opts.dims * 4) as u64),
        state: RwLock::new(st),
        q8: q8::kernel().map(|kern| Q8Shared { rows: RwLock::new(Q8Rows::new(opts.dims)), kern }),
        ann: RwLock::new(ann),
        plans_exact: AtomicU64::new(0),
        plans_graph: AtomicU64::new(0),
        fsyncs: AtomicU64::new(0),
        groups: AtomicU64::new(0),
        records: AtomicU64::new(0),
        closed: AtomicBool::new(false),
        compactions: AtomicU64::new(0),
        last_compaction: Mutex::new(None),
        scrub: ScrubProgress::new(checked_rows, vouched),
        snapshot_rows,
        text_ready: Default::default(),
    });
    let to_scrub = vec_file.as_ref().map(|v| (v.path.clone(), v.crcs[..vouched].to_vec()));
    let mut store = start(shared, log, vec_file, lock)?;
    if let Some((path, crcs)) = to_scrub {
        store.threads.get_mut().extend(scrub::spawn(store.shared.clone(), path, crcs));
    }
    if trace {
        eprintln!("open: done in {:?}", t_open.elapsed());
    }
    Ok(store)
}

/// A directory without a log may only be new: if it holds a store's other files (its
/// identity, a vectors file, what `repair` set aside), the log has been lost or moved, and
/// starting empty would silently drop every memory (and a new log would truncate the
/// vectors file). Refuse, naming what is there.
fn refuse_without_log(dir: &Path) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut found: Vec<String> = rd
        .flatten()
        .map(|ent| ent.file_name().to_string_lossy().to_string())
        .filter(|name| name == META_FILE || (name.starts_with("vectors-") && name.ends_with(".f32")) || (name.starts_with("wal-") && name.contains(".log.")))
        .collect();
    if found.is_empty() {
        return Ok(());
    }
    found.sort();
    Err(Error::NotFound(format!(
        "data directory {} has no log (wal-*.log) but holds {}: its memories are in the log, so it will not start empty; put the log back, or use an empty --data-dir",
        dir.display(),
        found.join(", ")
    )))
}

/// The directory's identity: dims and embedder, checked against `opts` (a different
/// embedder only with `reembed`, which records the new one).
fn identity(dir: &Path, opts: &StoreOptions) -> Result<MetaFile> {
    let meta_path = dir.join(META_FILE);
    let mut meta = if meta_path.exists() {
        let text = std::fs::read_to_string(&meta_path).map_err(|e| Error::io(&meta_path, e))?;
        let m: MetaFile = serde_json::from_str(&text).map_err(|e| Error::Corrupt { file: meta_path.display().to_string(), offset: 0, reason: e.to_string() })?;
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
                    "data directory {} was written by embedder {} (model hash {}), not {} (model hash {}); start with --reembed to re-embed its memories with the new embedder (in the background)",
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
    Ok(meta)
}

/// A new directory: the first log, with just its header.
fn create_log(dir: &Path, dims: usize) -> Result<(LogWriter, Option<VecFile>)> {
    let path = dir.join(logfile::log_name(1));
    let header = Header { version: log::VERSION, dims: dims as u32, gen: 1, high_water: 0 };
    // The vectors file first: a directory with a log always has its vectors file.
    let (vec_file, _) = VecFile::open(dir, 1, dims, true)?;
    drop(logfile::create(&path, header)?);
    logfile::sync_dir(dir)?;
    Ok((LogWriter::open_append(path, 1, log::HEADER_LEN as u64)?, Some(vec_file)))
}

/// Replay the current log (generation `gen`) into `st` and open it for appending after its
/// last valid record; refuses a log with corruption before its tail. Also returns the
/// vectors file (its rows' crcs known), how many of its leading rows the verified file
/// vouched for (not checked yet: the scrub's) and how many rows the state snapshot gave.
fn reopen_log(dir: &Path, gen: u64, path: &Path, dims: usize, st: &mut State) -> Result<(LogWriter, Option<VecFile>, usize, usize)> {
    let mut bytes = LogImage::open(path)?;
    if gen == 1 && bytes.len() < log::HEADER_LEN {
        // A crash while the very first log was being created: it holds no records (the
        // header is written and synced before any), so start it again.
        let header = Header { version: log::VERSION, dims: dims as u32, gen: 1, high_water: 0 }.encode();
        std::fs::write(path, header).map_err(|e| Error::io(path, e))?;
        File::open(path).and_then(|f| f.sync_all()).map_err(|e| Error::io(path, e))?;
        bytes = LogImage::Owned(header.to_vec());
    }
    let file = path.display().to_string();
    // Check the dims before replaying: vectors are decoded with the header's dims.
    let header = Header::decode(&bytes, &file)?;
    if header.dims as usize != dims {
        return Err(Error::invalid(format!("log {file} holds {}-dimensional vectors, expected {dims}", header.dims)));
    }
    let inline = header.version == log::VERSION_INLINE;
    // A version-1 log holds its vectors; the vectors file beside it was a cache.
    // Not created here: a missing one is refused by replay when the log has puts.
    let vf = if inline || !dir.join(logfile::vectors_name(gen)).exists() { None } else { Some(VecFile::open(dir, gen, dims, false)?) };
    let t0 = std::time::Instant::now();
    let vouched_for = |crcs: &[u32]| verified::rows_vouched_for(dir, gen, crcs);
    // The state as the last clean close left it (`store/snapshot`); a version-1 log has none.
    let snap = match (!inline).then(|| snapshot::read(dir, gen)).flatten() {
        Some(Ok(s)) => Some(s),
        Some(Err(why)) => {
            snapshot::ignored(&file, gen, &why);
            None
        }
        None => None,
    };
    if std::env::var_os("MEMORY_SERVER_TRACE_OPEN").is_some() {
        eprintln!("open: state snapshot {} at {:?}", if snap.is_some() { "read" } else { "absent" }, t0.elapsed());
    }
    let replayed = replay(&bytes, &file, st, vf.as_ref().map(|(v, rows)| (&v.file, *rows)), &vouched_for, snap)?;
    let sc = replayed.scan;
    if let ScanEnd::Corrupt { offset, reason } = sc.end {
        return Err(Error::Corrupt { file: format!("{file} (run `memory-server repair` to keep the records before it)"), offset, reason });
    }
    st.last_seq = st.last_seq.max(sc.last_seq);
    if inline {
        // The log's valid records are all in `st` (a torn tail is dropped with the old file).
        drop(bytes);
        let (log, vec_file, converted) = super::convert::convert(dir, gen, st)?;
        *st = converted;
        remove_other_generations(dir, log.gen);
        if std::env::var_os("MEMORY_SERVER_TRACE_OPEN").is_some() {
            eprintln!("open: version-1 log converted to generation {} in {:?}", log.gen, t0.elapsed());
        }
        return Ok((log, Some(vec_file), 0, 0));
    }
    // The text index is left pending (`State::text_index_pending`): no vector search needs
    // it, so the writer loads `text-<gen>.idx` (or rebuilds the index) when it is first idle,
    // after the open, and text searches wait for it until then (`Shared::state_with_text`).
    st.defer_text = st.text_on;
    if std::env::var_os("MEMORY_SERVER_TRACE_OPEN").is_some() {
        eprintln!("open: replay in {:?} (text index {})", t0.elapsed(), if st.text_on { "pending" } else { "off" });
    }
    let (mut vec_file, _) = match vf {
        Some(v) => v,
        None => VecFile::open(dir, gen, dims, false)?,
    };
    vec_file.rows = st.vectors.len();
    vec_file.crcs = replayed.crcs;
    drop(bytes);
    remove_other_generations(dir, gen);
    Ok((LogWriter::open_append(path.to_path_buf(), gen, sc.valid_len)?, Some(vec_file), replayed.vouched, replayed.restored))
}

/// Remove older logs and other generations' vectors files left behind by a crash around a
/// compaction.
fn remove_other_generations(dir: &Path, gen: u64) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let generation = |name: &str, prefix: &str, suffix: &str| name.strip_prefix(prefix).and_then(|s| s.strip_suffix(suffix)).and_then(|g| g.parse::<u64>().ok());
    for ent in rd.flatten() {
        let name = ent.file_name().to_string_lossy().to_string();
        if generation(&name, "wal-", ".log").is_some_and(|g| g < gen) || generation(&name, "vectors-", ".f32").is_some_and(|g| g != gen) {
            let _ = std::fs::remove_file(ent.path());
        }
    }
    text_persist::remove_other_generations(dir, gen);
    ann_persist::remove_other_generations(dir, gen);
    verified::remove_other_generations(dir, gen);
    snapshot::remove_other_generations(dir, gen);
}

pub(super) fn write_meta(dir: &Path, meta: &MetaFile) -> Result<()> {
    let path = dir.join(META_FILE);
    let tmp = dir.join(format!("{META_FILE}.tmp"));
    let text = serde_json::to_string_pretty(meta).map_err(|e| Error::Internal(e.to_string()))?;
    if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
        return Ok(());
    }
    std::fs::write(&tmp, &text).map_err(|e| Error::io(&tmp, e))?;
    File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    logfile::sync_dir(dir)
}

/// Start the writer and searcher threads.
fn start(shared: Arc<Shared>, log: LogWriter, vec_file: Option<VecFile>, lock: DirLock) -> Result<TensorStore> {
    let (tx, rx) = mpsc::channel::<Op>();
    let (stx, srx) = mpsc::channel::<SearchJob>();
    let w = Writer::new(shared.clone(), log, rx, vec_file);
    let t1 = std::thread::Builder::new().name("memory-writer".into()).spawn(move || w.run()).map_err(|e| Error::Internal(e.to_string()))?;
    let sh2 = shared.clone();
    let t2 = std::thread::Builder::new().name("memory-searcher".into()).spawn(move || searcher::run(sh2, srx)).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(TensorStore {
        shared,
        tx: Mutex::new(Some(tx)),
        search_tx: Mutex::new(Some(stx)),
        threads: Mutex::new(vec![t1, t2]),
        lock: Mutex::new(Some(lock)),
    })
}
