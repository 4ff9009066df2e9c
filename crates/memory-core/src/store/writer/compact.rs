//! Compaction: rewrite the log with only the memories not deleted, as the next generation.
//!
//! It runs beside the writer, not on it: a `memory-compact` thread copies the rows into
//! `wal-<gen+1>.log.tmp` and their vectors into `vectors-<gen+1>.f32` a slice at a time
//! under the state's read lock (released between slices, so the writer goes on committing),
//! builds the new in-memory state as it goes and fsyncs both files. Meanwhile the writer
//! keeps appending to the old log. When the thread is done, the writer makes the switch —
//! the only part that holds writes up: it copies the records appended since the start (the
//! old log's tail; its puts re-pointed at their rows in the new vectors file, whose vectors
//! it appends there) into the new file and applies them to the new state, fsyncs, renames,
//! and swaps log, vectors file and state. A crash before the rename leaves the old
//! generation in charge; the new generation's files are removed at the next open.
//!
//! Replaying the tail over rows copied later than the start is safe: rows are never
//! renumbered meanwhile (one compaction at a time), a put in the tail is a row the thread
//! did not copy (rows past the start), and updates and deletes are idempotent (an update
//! sets the values it already copied, a delete of a row it skipped finds nothing).
//! Sequence numbers are kept, so list cursors stay valid; the tail's are all after the
//! copied rows', so the file stays in order.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{clone_err, Writer};
use crate::error::{Error, Result};
use crate::store::log::{self, Header, PutVector, RecordRef};
use crate::store::logfile::{self, LogWriter};
use crate::store::reads::garbage_bytes;
use crate::store::shared::{now_ms, Shared};
use crate::store::state::{self, State};
use crate::store::types::{CompactReport, Done};
use crate::store::vecfile::VecFile;

/// Rows the compaction thread copies per hold of the state's read lock (a few ms).
const SLICE_ROWS: usize = 4096;
/// After a failed automatic compaction (e.g. a full disk), wait this long before the policy
/// may start another.
const RETRY_AFTER: Duration = Duration::from_secs(60);

/// A compaction in progress.
pub(super) struct Running {
    thread: JoinHandle<Result<Prepared>>,
    cancel: Arc<AtomicBool>,
    waiters: Vec<Done<CompactReport>>,
    tmp: PathBuf,
    gen: u64,
    /// The old log's length and the store's last seq when it started.
    tail_from: u64,
    start_seq: u64,
    started: Instant,
    automatic: bool,
}

/// What the compaction thread hands over: the new file (the copied rows, fsynced) and the
/// state it holds.
struct Prepared {
    file: File,
    state: State,
    vec_file: VecFile,
}

impl Writer {
    /// Start a compaction (or join the one running). Expired memories are swept into deletions
    /// first, so this compaction drops them and their `expired` events go out.
    pub(super) fn start_compaction(&mut self, done: Option<Done<CompactReport>>, automatic: bool) {
        if let Some(c) = &mut self.compaction {
            c.waiters.extend(done);
            return;
        }
        self.sweep_all();
        let gen = self.log.gen + 1;
        let tmp = self.shared.dir.join(format!("{}.tmp", logfile::log_name(gen)));
        // A leftover from a failed attempt would make `create_new` fail forever.
        let _ = std::fs::remove_file(&tmp);
        let (rows, start_seq) = {
            let st = self.shared.state.read();
            (st.len(), st.last_seq)
        };
        let cancel = Arc::new(AtomicBool::new(false));
        let (shared, c, t) = (self.shared.clone(), cancel.clone(), tmp.clone());
        let spawned = std::thread::Builder::new().name("memory-compact".into()).spawn(move || {
            let r = write_generation(&shared, &t, gen, rows, &c);
            if r.is_err() {
                let _ = std::fs::remove_file(&t);
                let _ = std::fs::remove_file(shared.dir.join(logfile::vectors_name(gen)));
            }
            r
        });
        match spawned {
            Ok(thread) => {
                self.compaction =
                    Some(Running { thread, cancel, waiters: done.into_iter().collect(), tmp, gen, tail_from: self.log.len, start_seq, started: Instant::now(), automatic })
            }
            Err(e) => {
                if let Some(d) = done {
                    d(Err(Error::Internal(format!("cannot start the compaction thread: {e}"))));
                }
            }
        }
    }

    /// The policy's check, after every operation: enough garbage in a big enough log.
    pub(super) fn maybe_compact(&mut self) {
        let Some(policy) = self.shared.compact else { return };
        if self.compaction.is_some() || self.compact_retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let live = self.shared.state.read().live_bytes;
        let stored = self.stored_bytes();
        if policy.due(stored, garbage_bytes(stored, live)) {
            self.start_compaction(None, true);
        }
    }

    /// A compaction is running and its thread has finished: switch to its generation.
    pub(super) fn compaction_ready(&self) -> bool {
        self.compaction.as_ref().is_some_and(|c| c.thread.is_finished())
    }

    pub(super) fn finish_compaction(&mut self) {
        let Some(c) = self.compaction.take() else { return };
        let prepared = c.thread.join().unwrap_or_else(|_| Err(Error::Internal("the compaction thread panicked".into())));
        let result = prepared.and_then(|p| self.switch(p, c.gen, c.tail_from));
        let waiters = c.waiters;
        match result {
            Ok((rows_before, rows_after, bytes_before, bytes_after)) => {
                self.compact_retry_at = None;
                let report = CompactReport {
                    rows_before,
                    rows_after,
                    bytes_before,
                    bytes_after,
                    finished_at_ms: now_ms(),
                    duration_ms: c.started.elapsed().as_millis() as u64,
                    start_seq: c.start_seq,
                    automatic: c.automatic,
                };
                // The report before the count: a reader that sees the new count (compaction_info
                // reads the count first) also sees this report.
                *self.shared.last_compaction.lock() = Some(report.clone());
                self.shared.compactions.fetch_add(1, Ordering::SeqCst);
                for w in waiters {
                    w(Ok(report.clone()));
                }
            }
            Err(e) => {
                let _ = std::fs::remove_file(&c.tmp);
                let _ = std::fs::remove_file(self.shared.dir.join(logfile::vectors_name(c.gen)));
                self.compact_retry_at = Some(Instant::now() + RETRY_AFTER);
                for w in waiters {
                    w(Err(clone_err(&e)));
                }
            }
        }
    }

    /// Stop a running compaction (closing): its file is removed, its waiters fail with `e`.
    pub(super) fn abort_compaction(&mut self, e: Error) {
        let Some(c) = self.compaction.take() else { return };
        c.cancel.store(true, Ordering::Relaxed);
        let _ = c.thread.join();
        let _ = std::fs::remove_file(&c.tmp);
        let _ = std::fs::remove_file(self.shared.dir.join(logfile::vectors_name(c.gen)));
        for w in c.waiters {
            w(Err(clone_err(&e)));
        }
    }

    /// The switch (writes wait meanwhile): the old log's tail into the new file and state,
    /// fsync, rename, swap. Returns rows and bytes before and after.
    fn switch(&mut self, p: Prepared, gen: u64, tail_from: u64) -> Result<(usize, usize, u64, u64)> {
        let dir = self.shared.dir.clone();
        let tmp = dir.join(format!("{}.tmp", logfile::log_name(gen)));
        let final_path = dir.join(logfile::log_name(gen));
        let bytes_before = self.stored_bytes();
        let tail = read_range(&self.log.path, tail_from, self.log.len)?;
        let Prepared { mut file, state: mut new_state, vec_file: mut new_vecs } = p;
        let rows_before = {
            let st = self.shared.state.read();
            let first = new_state.len();
            let tail = apply_tail(&mut new_state, &tail, self.shared.dims, &st)?;
            new_vecs.write_rows(first, (first..new_state.len()).map(|r| new_state.vectors.row(r)))?;
            new_vecs.sync()?;
            file.write_all(&tail).map_err(|e| Error::io(&tmp, e))?;
            new_state.last_seq = new_state.last_seq.max(st.last_seq);
            st.len()
        };
        // The high-water mark, so sequence numbers never go back after a restart, even when
        // the newest records were deletes that compaction dropped.
        file.seek(SeekFrom::Start(0)).map_err(|e| Error::io(&tmp, e))?;
        file.write_all(&Header { version: log::VERSION, dims: self.shared.dims as u32, gen, high_water: new_state.last_seq }.encode()).map_err(|e| Error::io(&tmp, e))?;
        file.sync_all().map_err(|e| Error::io(&tmp, e))?;
        drop(file);
        std::fs::rename(&tmp, &final_path).map_err(|e| Error::io(&final_path, e))?;
        // Open the new log before switching to it. If that fails, take the new generation
        // back out so the old log (which later writes keep going to) stays the truth.
        let opened = logfile::sync_dir(&dir)
            .and_then(|_| std::fs::metadata(&final_path).map_err(|e| Error::io(&final_path, e)))
            .and_then(|m| LogWriter::open_append(final_path.clone(), gen, m.len()));
        let new_log = match opened {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_file(&final_path);
                let _ = logfile::sync_dir(&dir);
                return Err(e);
            }
        };
        let old = std::mem::replace(&mut self.log, new_log).path;
        let _ = std::fs::remove_file(&old);
        // The old generation's text index file goes with its log (it holds deleted memories'
        // terms); the new generation's is written at close.
        crate::text::persist::remove_other_generations(&dir, gen);
        crate::ann::persist::remove_other_generations(&dir, gen);
        // So does its state snapshot (it holds deleted memories' metadata).
        super::super::snapshot::remove_other_generations(&dir, gen);
        // Everything is in the new file, fsynced.
        self.dirty = false;
        let rows_after = new_state.len();
        let old_state = {
            let mut st = self.shared.state.write();
            // Rows were renumbered: the int8 codes are rebuilt from the new state (cleared
            // under the state's write lock, so no search pairs new rows with old codes).
            if let Some(q) = &self.shared.q8 {
                q.rows.write().clear();
            }
            self.shared.ann.write().clear();
            std::mem::replace(&mut *st, new_state)
        };
        // Freed once readers and the next operation no longer wait for the lock.
        drop(old_state);
        // The new generation's vectors file, written beside its log; the old one goes with
        // the old log (its mapped chunks stay readable until the old state is dropped).
        if let Some(old) = self.vec_file.replace(new_vecs) {
            let _ = std::fs::remove_file(&old.path);
        }
        self.idle_work = true;
        let bytes_after = self.stored_bytes();
        self.shared.storage_bytes.store(bytes_after, Ordering::Relaxed);
        Ok((rows_before, rows_after, bytes_before, bytes_after))
    }
}

/// The compaction thread: every row of the first `rows` not deleted, into a new log file
/// `tmp` and vectors file of generation `gen` (both fsynced) and a new state.
fn write_generation(shared: &Shared, tmp: &Path, gen: u64, rows: usize, cancel: &AtomicBool) -> Result<Prepared> {
    let dims = shared.dims;
    // The rows are copied from memory under new checksums: not before the scrub has checked
    // them against the old ones (`store/scrub.rs`).
    shared.scrub.wait_sound(cancel, &shared.dir.join(logfile::vectors_name(gen - 1)).display().to_string())?;
    let mut file = logfile::create(tmp, Header { version: log::VERSION, dims: dims as u32, gen, high_water: 0 })?;
    let (mut vec_file, _) = VecFile::open(&shared.dir, gen, dims, true)?;
    let mut state = State::new(dims);
    state.text_on = shared.text_index;
    // Texts are indexed once at the end, on every core.
    state.defer_text_index();
    let mut buf = Vec::with_capacity(1 << 20);
    let mut r = 0;
    while r < rows {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Unavailable("compaction cancelled: the store is closing".into()));
        }
        let first = state.len();
        {
            let st = shared.state.read();
            let end = (r + SLICE_ROWS).min(rows).min(st.len());
            copy_live_rows(&st, r..end, &mut state, &mut buf);
            r = if end > r { end } else { rows };
        }
        vec_file.write_rows(first, (first..state.len()).map(|k| state.vectors.row(k)))?;
        file.write_all(&buf).map_err(|e| Error::io(tmp, e))?;
        buf.clear();
    }
    vec_file.sync()?;
    file.sync_data().map_err(|e| Error::io(tmp, e))?;
    state.build_text_index();
    Ok(Prepared { file, state, vec_file })
}

/// The rows of `rows` in `src` not deleted, as they stand now (updates merged), appended to
/// `dst` and as version-2 put records (pointing at their rows in `dst`) to `buf`. Expired
/// rows stay until the expiry sweep records their deletion (which the next compaction
/// drops), so none vanishes without its event.
pub(in crate::store) fn copy_live_rows(src: &State, rows: std::ops::Range<usize>, dst: &mut State, buf: &mut Vec<u8>) {
    for row in rows {
        if !src.live_col[row] {
            continue;
        }
        let rec = src.record_of(row as u32);
        log::encode_put(buf, &rec, dst.len() as u64);
        let packed = src.rows[row].metadata_packed();
        dst.apply_put(rec, Some((!packed.is_empty()).then(|| packed.into())));
    }
}

/// Bytes `from..to` of a file.
fn read_range(path: &Path, from: u64, to: u64) -> Result<Vec<u8>> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    f.seek(SeekFrom::Start(from)).map_err(|e| Error::io(path, e))?;
    let mut buf = vec![0u8; to.saturating_sub(from) as usize];
    f.read_exact(&mut buf).map_err(|e| Error::io(path, e))?;
    Ok(buf)
}

/// Apply records appended to the old log during the compaction to the new state, as replay
/// would, taking the puts' vectors from their rows in `old` (the state they were applied to).
/// Returns the records for the new log: puts pointing at their new rows, the rest verbatim.
fn apply_tail(st: &mut State, tail: &[u8], dims: usize, old: &State) -> Result<Vec<u8>> {
    let bad = || Error::Internal("compaction: the log's tail does not verify".into());
    let (frames, whole) = log::frames_from(tail, 0);
    if !whole {
        return Err(bad());
    }
    let mut out = Vec::with_capacity(tail.len());
    for (off, len) in frames {
        let frame = &tail[off..off + 8 + len];
        match log::check_frame(tail, off, len, dims).ok_or_else(bad)? {
            RecordRef::Put { seq, ts, namespace, id, text, metadata, significance, expires_at, associations, vector } => {
                let PutVector::Row { row, .. } = vector else { return Err(bad()) };
                if row as usize >= old.len() {
                    return Err(bad());
                }
                out.extend_from_slice(&log::with_row(frame, st.len() as u64));
                st.insert_row(state::NewRow {
                    seq,
                    ts,
                    namespace,
                    id,
                    text,
                    metadata_raw: metadata,
                    metadata: state::parse_metadata(metadata),
                    significance,
                    expires_at,
                    associations: associations.into_iter().map(Box::from).collect(),
                    vector: state::VectorSrc::F32(old.vectors.row(row as usize)),
                });
            }
            RecordRef::Update { seq, namespace, id, metadata, significance, .. } => {
                out.extend_from_slice(frame);
                if let Some(row) = st.ns_id(namespace).and_then(|n| st.row_by_id(n, id)) {
                    st.apply_update(row, metadata.map(|m| (m.to_string(), state::parse_metadata(m))), significance, seq);
                }
                st.last_seq = st.last_seq.max(seq);
            }
            RecordRef::Delete { seq, namespace, id, .. } => {
                out.extend_from_slice(frame);
                if let Some(row) = st.ns_id(namespace).and_then(|n| st.row_by_id(n, id)) {
                    st.kill(row);
                }
                st.last_seq = st.last_seq.max(seq);
            }
        }
    }
    Ok(out)
}
