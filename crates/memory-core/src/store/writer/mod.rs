//! The writer thread: the only thread that appends to the log.
//!
//! Before its first operation the writer finishes what the open left to it so as to answer
//! its first query sooner: the id maps, the text index and the significance order
//! ([`Writer::finish_open`]). Operations arrive through a channel, in the order callers
//! issued them. Puts waiting
//! together form one group ([`put`]): one significance pass, one write of the rows to the
//! vectors file and one of the records to the log, one fsync of each. Between operations the
//! writer does its idle work: the int8 codes of rows not coded yet, interval fsyncs, and
//! mapping the whole chunks the vectors file holds in place of anonymous memory.
//! Compaction ([`compact`]) copies the log on a thread of its own and the writer makes the
//! switch; the expiry sweep ([`expiry`]) turns expired memories into deletions.

mod compact;
mod expiry;
mod linger;
mod put;

pub(in crate::store) use compact::copy_live_rows;

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::log::{self, DeleteRecord, PutRecord, Record, UpdateRecord};
use super::logfile::LogWriter;
use super::scan::{self, ScanParams};
use super::shared::{memory_of, now_ms, Shared, Q8_CATCH_UP_ROWS};
use super::types::{CompactReport, DeleteOutcome, Done, ExpiredMemory, FsyncPolicy, Memory, PutOutcome};
use super::validate::{Metadata, ValidPut};
use super::vecfile::{VecFile, VEC_FILE_QUIET, VEC_FILE_SLICE_ROWS};
use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::search::normalize;

/// Rows added to the ANN graphs per slice of idle catch-up: a few tens of milliseconds,
/// after which the writer looks for operations again.
pub(super) const ANN_CATCH_UP_ROWS: usize = 128;

/// Rows of a backlog added to the ANN graphs by a put group beyond its own (a graph just
/// started for a namespace crossing the threshold, or rebuilt after open without its file):
/// ~0.1–0.2 s on two cores, so a steady stream of batches does not keep it behind for long.
pub(super) const ANN_GROUP_CATCH_UP_ROWS: usize = 1024;

/// Most operations the writer takes into one group.
const MAX_GROUP_ITEMS: usize = 4096;

/// A put operation: its validated items and its completion.
type PutOp = (Vec<ValidPut>, Done<Vec<PutOutcome>>);

/// An operation for the writer.
pub(super) enum Op {
    Put(Vec<ValidPut>, Done<Vec<PutOutcome>>),
    Update { namespace: String, id: String, metadata: Option<Metadata>, significance: Option<f32>, done: Done<Memory> },
    Delete { namespace: String, ids: Vec<String>, done: Done<DeleteOutcome> },
    DeleteWhere { namespace: String, filter: Option<Filter>, done: Done<DeleteOutcome> },
    BulkLoad(Vec<PutRecord>, Done<usize>),
    Compact(Done<CompactReport>),
    /// Completed with the memories the expiry sweep deletes next (see [`expiry`]).
    WatchExpired(Done<Vec<ExpiredMemory>>),
    Flush(Done<()>),
    Close(Done<()>),
}

/// Complete `op` with `e` without running it.
pub(super) fn fail_op(op: Op, e: Error) {
    match op {
        Op::Put(_, d) => d(Err(e)),
        Op::Update { done, .. } => done(Err(e)),
        Op::Delete { done, .. } => done(Err(e)),
        Op::DeleteWhere { done, .. } => done(Err(e)),
        Op::BulkLoad(_, d) => d(Err(e)),
        Op::Compact(d) => d(Err(e)),
        Op::WatchExpired(d) => d(Err(e)),
        Op::Flush(d) => d(Err(e)),
        Op::Close(d) => d(Err(e)),
    }
}

/// The same error for every operation of a failed group.
fn clone_err(e: &Error) -> Error {
    match e {
        Error::StorageFull(m) => Error::StorageFull(m.clone()),
        Error::Io { path, source } => Error::Io { path: path.clone(), source: std::io::Error::new(source.kind(), source.to_string()) },
        other => Error::Unavailable(other.to_string()),
    }
}

pub(super) struct Writer {
    shared: Arc<Shared>,
    log: LogWriter,
    rx: Receiver<Op>,
    /// An operation taken while gathering a put group that is not a put.
    stash: Option<Op>,
    dirty: bool,
    last_sync: Instant,
    /// Some rows may have no int8 codes yet (see `Q8Shared`) or may be missing from the
    /// vectors file: the writer catches up while idle.
    idle_work: bool,
    vec_file: Option<VecFile>,
    /// No operation has arrived for [`VEC_FILE_QUIET`] (reset by every operation).
    quiet: bool,
    compaction: Option<compact::Running>,
    /// After a failed automatic compaction: not before then.
    compact_retry_at: Option<Instant>,
    expiry: expiry::Expiry,
    /// How long the next put group may wait for more puts ([`linger`]).
    linger: linger::Linger,
}

/// While a compaction runs, the writer looks this often whether it can switch.
const COMPACTION_POLL: Duration = Duration::from_millis(5);

/// What waiting for the next operation gave.
enum Next {
    Op(Op),
    /// Nothing yet (a slice of idle work done or a timeout): wait again.
    Again,
    /// Every sender is gone.
    Hangup,
}

impl Writer {
    pub(super) fn new(shared: Arc<Shared>, log: LogWriter, rx: Receiver<Op>, vec_file: Option<VecFile>) -> Self {
        let next_expiry = shared.state.read().next_expiry();
        Writer {
            shared,
            log,
            rx,
            stash: None,
            dirty: false,
            last_sync: Instant::now(),
            idle_work: true,
            vec_file,
            quiet: false,
            compaction: None,
            compact_retry_at: None,
            expiry: expiry::Expiry::new(next_expiry),
            linger: linger::Linger::default(),
        }
    }

    /// The thread's body: until close, or until every handle is gone.
    pub(super) fn run(mut self) {
        self.finish_open();
        while let Some(op) = self.next_op() {
            self.quiet = false;
            if !self.handle(op) {
                return;
            }
            self.maybe_compact();
        }
        self.shutdown();
    }

    /// Closing: a running compaction is abandoned, expiry watchers are told, the scrub
    /// stopped, and the text index, the ANN graphs and the state snapshot are written beside
    /// the log so the next open loads them instead of rebuilding them (`text::persist`,
    /// `ann::persist`, `store/snapshot`; if that fails, the next open rebuilds), then the
    /// verified file once every row is synced.
    fn shutdown(&mut self) {
        let closed = Error::Unavailable("the store is closed".into());
        self.abort_compaction(Error::Unavailable("the store is closed".into()));
        self.close_expiry(&closed);
        self.shared.scrub.stop();
        // Closed before the writer was idle after the open: the text index is still to be
        // put in place, else the file written below would not hold it.
        self.finish_text_index();
        let st = self.shared.state.read();
        let _ = crate::text::persist::save(&self.shared.dir, self.log.gen, &st);
        let crcs = self.vec_file.as_ref().map_or(&[][..], |v| &v.crcs[..]);
        let _ = crate::ann::persist::save(&self.shared.dir, self.log.gen, &st, &self.shared.ann.read(), crcs);
        drop(st);
        // A cleanly closed log ends with its last record (see `LogWriter`)…
        if self.log.trim().is_ok() {
            // …which the state snapshot covers: the next open restores the state from it
            // instead of applying every record (`store/snapshot`).
            let st = self.shared.state.read();
            if let Err(why) = super::snapshot::save(&self.shared.dir, self.log.gen, &self.log.path, &st) {
                eprintln!("memory-server: the state snapshot was not written ({why}); the next open replays the log");
            }
        }
        // Every row synced: the next open need not check them before answering.
        if self.sync_now().is_ok() && self.shared.scrub.mismatches() == 0 {
            if let Some(v) = &self.vec_file {
                v.save_verified(&self.shared.dir);
            }
        }
    }

    /// What an open leaves to the writer so as to answer its first query sooner, done before
    /// the writer takes its first operation (a put waits for it once; a stream of them cannot
    /// put it off): the id maps (`State::ids`), the text index ([`Writer::finish_text_index`])
    /// and the ordered significance index (`store/replay.rs`). Each is built under the read
    /// lock, so searches go on meanwhile, and installed under the write lock where it must be
    /// — sound because nothing changes the state in between: only this thread does.
    fn finish_open(&mut self) {
        let t = Instant::now();
        let trace = std::env::var_os("MEMORY_SERVER_TRACE_OPEN").is_some();
        let st = self.shared.state.read();
        if st.id_maps_pending() {
            st.build_id_maps();
            if trace {
                eprintln!("writer: id maps at {:?}", t.elapsed());
            }
        }
        drop(st);
        self.finish_text_index();
        let st = self.shared.state.read();
        if st.defer_sig_index {
            let keys = st.sig_index_keys();
            drop(st);
            self.shared.state.write().install_sig_index(keys);
            if trace {
                eprintln!("writer: significance index at {:?}", t.elapsed());
            }
        }
    }

    /// The text index an open left pending (`State::text_index_pending`): `text-<gen>.idx`
    /// loaded and restored if it fits the state, else the index rebuilt (`text::persist::finish`).
    /// Text searches waiting for it are woken. Nothing to do when it is not pending.
    fn finish_text_index(&mut self) {
        if !self.shared.state.read().text_index_pending() {
            return;
        }
        let t = Instant::now();
        let file = crate::text::persist::load(&self.shared.dir, self.log.gen);
        let how = crate::text::persist::finish(file, &self.shared.state);
        self.shared.notify_text_ready();
        if std::env::var_os("MEMORY_SERVER_TRACE_OPEN").is_some() {
            eprintln!("writer: text index {how} in {:?}", t.elapsed());
        }
    }

    /// Background work between operations: the switch of a finished compaction, an expiry
    /// sweep that is due.
    fn background(&mut self) {
        if self.compaction_ready() {
            self.finish_compaction();
        }
        self.sweep_if_due();
        self.maybe_compact();
    }

    /// How long the writer may block waiting for an operation before background work is due.
    fn background_wait(&self) -> Option<Duration> {
        let c = self.compaction.is_some().then_some(COMPACTION_POLL);
        match (c, self.sweep_wait()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next operation, doing idle work and interval fsyncs while there is none; `None`
    /// (after a last fsync) once every sender is gone.
    fn next_op(&mut self) -> Option<Op> {
        loop {
            self.background();
            let next = if let Some(op) = self.stash.take() {
                Next::Op(op)
            } else if self.idle_work {
                self.idle_step()
            } else {
                self.wait_step()
            };
            match next {
                Next::Op(op) => return Some(op),
                Next::Again => {}
                Next::Hangup => {
                    let _ = self.sync_now();
                    return None;
                }
            }
        }
    }

    /// With idle work to do: a queued operation, else one slice of the work.
    ///
    /// Idle time encodes the int8 codes of a graph loaded at open, codes the rows that have
    /// no int8 codes yet and appends rows to the vectors
    /// file, a slice at a time, so a new operation waits for one slice at most. The int8
    /// codes are needed by the next put group anyway; the vectors file only after a quiet
    /// moment ([`VEC_FILE_QUIET`] without an operation), so a writer kept busy by concurrent
    /// puts spends nothing on it (its page-cache writes were ~7% of the writer's time under
    /// 64 concurrent writers) and it catches up in pauses, such as between the batches of a
    /// bulk load.
    fn idle_step(&mut self) -> Next {
        match self.rx.try_recv() {
            Ok(op) => return Next::Op(op),
            Err(TryRecvError::Disconnected) => return Next::Hangup,
            Err(TryRecvError::Empty) => {}
        }
        if let FsyncPolicy::Interval(iv) = self.shared.fsync {
            if self.dirty && self.last_sync.elapsed() >= iv {
                self.interval_sync();
            }
        }
        let st = self.shared.state.read();
        if crate::ann::codes::encode_restored(&st, &self.shared.ann) {
            return Next::Again;
        }
        if self.shared.q8.as_ref().is_some_and(|q8| !q8.catch_up(&st, Q8_CATCH_UP_ROWS)) {
            return Next::Again;
        }
        if self.shared.ann.write().catch_up(&st, ANN_CATCH_UP_ROWS, Default::default()) > 0 {
            return Next::Again;
        }
        if self.vec_file.as_ref().is_none_or(|v| v.rows >= st.len()) {
            drop(st);
            VecFile::adopt(self.vec_file.as_mut(), &self.shared.state);
            self.idle_work = false;
            return Next::Again;
        }
        if self.quiet {
            // Still no operation since the quiet moment: the next slice.
            VecFile::catch_up(&mut self.vec_file, &st, VEC_FILE_SLICE_ROWS);
            return Next::Again;
        }
        drop(st);
        match self.rx.recv_timeout(VEC_FILE_QUIET) {
            Ok(op) => Next::Op(op),
            Err(RecvTimeoutError::Timeout) => {
                self.quiet = true;
                Next::Again
            }
            Err(RecvTimeoutError::Disconnected) => Next::Hangup,
        }
    }

    /// Without idle work: block until an operation arrives or an interval fsync is due.
    fn wait_step(&mut self) -> Next {
        let policy_wait = match self.shared.fsync {
            FsyncPolicy::Interval(iv) if self.dirty => iv.saturating_sub(self.last_sync.elapsed()),
            _ => Duration::from_secs(3600),
        };
        // Woken earlier for background work (a compaction to switch, an expiry sweep), the
        // writer does not sync: the policy's own timing decides that.
        let background = self.background_wait().filter(|&b| b < policy_wait);
        match self.rx.recv_timeout(background.unwrap_or(policy_wait)) {
            Ok(op) => Next::Op(op),
            Err(RecvTimeoutError::Timeout) => {
                if background.is_none() {
                    self.interval_sync();
                }
                Next::Again
            }
            Err(RecvTimeoutError::Disconnected) => Next::Hangup,
        }
    }

    /// Run one operation; false after `Close`.
    fn handle(&mut self, op: Op) -> bool {
        match op {
            Op::Put(items, done) => {
                let group = self.gather_puts((items, done));
                self.put_group(group);
                self.idle_work = true;
            }
            Op::Update { namespace, id, metadata, significance, done } => done(self.update(namespace, id, metadata, significance)),
            Op::Delete { namespace, ids, done } => done(self.delete(&namespace, ids)),
            Op::DeleteWhere { namespace, filter, done } => done(self.delete_where(&namespace, filter.as_ref())),
            Op::BulkLoad(records, done) => {
                done(self.bulk_load(records));
                self.idle_work = true;
            }
            Op::Compact(done) => self.start_compaction(Some(done), false),
            Op::WatchExpired(done) => self.watch_expired(done),
            Op::Flush(done) => done(self.sync_now()),
            Op::Close(done) => {
                self.shutdown();
                done(self.sync_now());
                // Fail anything still queued.
                while let Ok(op) = self.rx.try_recv() {
                    fail_op(op, Error::Unavailable("the store is closed".into()));
                }
                return false;
            }
        }
        true
    }

    /// `first` and the puts queued right behind it (up to [`MAX_GROUP_ITEMS`] items; none
    /// without group commit), then, after an expensive exact pass, the puts arriving within
    /// the [`linger`] wait. A queued operation of another kind ends the group.
    fn gather_puts(&mut self, first: PutOp) -> Vec<PutOp> {
        let mut n: usize = first.0.len();
        let mut group = vec![first];
        let max_items = if self.shared.group_commit { MAX_GROUP_ITEMS } else { 0 };
        let linger = self.linger;
        let until = Instant::now() + linger.total;
        while n < max_items {
            let next = match self.rx.try_recv() {
                Err(TryRecvError::Empty) if linger.waits() && n < linger::MAX_ITEMS => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    match self.rx.recv_timeout(linger.gap.min(left)) {
                        Ok(op) => op,
                        Err(_) => break,
                    }
                }
                Ok(op) => op,
                Err(_) => break,
            };
            match next {
                Op::Put(items, done) => {
                    n += items.len();
                    group.push((items, done));
                }
                other => {
                    self.stash = Some(other);
                    break;
                }
            }
        }
        group
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
        // The rows, then the records that point at them. Nothing is acknowledged before both
        // return, and replay cuts puts whose rows did not reach the disk at the end of the
        // log as a torn tail, so the two fsyncs could also overlap.
        if let Some(v) = &self.vec_file {
            v.sync()?;
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
                self.log.truncate_to(before);
                return Err(e);
            }
        } else if let FsyncPolicy::Interval(iv) = self.shared.fsync {
            if self.last_sync.elapsed() >= iv {
                let _ = self.sync_now();
            }
        }
        self.shared.storage_bytes.store(self.stored_bytes(), Ordering::Relaxed);
        self.shared.groups.fetch_add(1, Ordering::Relaxed);
        self.shared.records.fetch_add(records as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Write `vectors` as rows `first..` of the vectors file (see [`VecFile::write_rows`]).
    fn write_rows<'a>(&mut self, first: usize, vectors: impl Iterator<Item = &'a [f32]>) -> Result<()> {
        let v = self.vec_file.as_mut().ok_or_else(|| Error::Unavailable("the vectors file could not be written; restart the store".into()))?;
        v.write_rows(first, vectors)
    }

    /// Bytes the current generation holds on disk: its log and its vectors file's rows.
    fn stored_bytes(&self) -> u64 {
        self.log.len + self.vec_file.as_ref().map_or(0, |v| v.rows * self.shared.dims * 4) as u64
    }

    fn update(&mut self, namespace: String, id: String, metadata: Option<Metadata>, significance: Option<f32>) -> Result<Memory> {
        let now = now_ms();
        let (row, seq) = {
            let st = self.shared.state.read();
            let row = st.find(&namespace, &id, now).ok_or_else(|| Error::NotFound(format!("memory {id:?} not found in namespace {namespace:?}")))?;
            (row, st.last_seq + 1)
        };
        let metadata = metadata.map(|m| (m.text, m.parsed));
        let rec = Record::Update(UpdateRecord { seq, ts: now, namespace, id, metadata: metadata.as_ref().map(|(text, _)| text.clone()), significance });
        let mut buf = Vec::new();
        log::encode_record(&mut buf, &rec);
        self.commit(&buf, 1)?;
        let mut st = self.shared.state.write();
        st.apply_update(row, metadata, significance, seq);
        let mut m = memory_of(&st, row, false, None);
        m.seq = seq;
        Ok(m)
    }

    /// Delete every visible memory of the namespace matching `filter` (all without one).
    fn delete_where(&mut self, namespace: &str, filter: Option<&Filter>) -> Result<DeleteOutcome> {
        let ids = {
            let st = self.shared.state.read();
            let p = ScanParams { namespace, filter, now_ms: now_ms(), ..Default::default() };
            scan::matching_rows(&st, &p).into_iter().map(|r| st.rows[r as usize].id().to_string()).collect::<Vec<_>>()
        };
        self.delete(namespace, ids)
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

    /// Add up to `max` rows not in their namespace's ANN graph yet.
    fn index_rows(&self, max: usize, pre: std::collections::HashMap<u32, crate::ann::Presearched>) -> usize {
        let st = self.shared.state.read();
        let mut ann = self.shared.ann.write();
        ann.catch_up(&st, max, pre)
    }

    fn bulk_load(&mut self, records: Vec<PutRecord>) -> Result<usize> {
        let now = now_ms();
        let dims = self.shared.dims;
        let mut added = 0;
        // In slices so memory for the encoded batch stays bounded.
        for part in records.chunks(8192) {
            let mut keep = Vec::with_capacity(part.len());
            let mut buf = Vec::new();
            let first;
            {
                let st = self.shared.state.read();
                first = st.len();
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
                    // A vector exported by a store is unit length already: normalizing it again
                    // would move its last bits, and a restored snapshot (a cluster replica joining)
                    // must keep them to stay identical to the replicas it copies.
                    let sq: f64 = r.vector[..dims].iter().map(|&x| f64::from(x) * f64::from(x)).sum();
                    if (sq - 1.0).abs() > 1e-6 {
                        normalize(&mut r.vector[..dims]);
                    }
                    log::encode_put(&mut buf, &r, (first + keep.len()) as u64);
                    keep.push(r);
                }
            }
            if keep.is_empty() {
                continue;
            }
            // One fsync for the whole load (below); write now, the rows first.
            self.write_rows(first, keep.iter().map(|r| r.vector.as_slice()))?;
            self.log.append(&buf)?;
            self.dirty = true;
            self.shared.storage_bytes.store(self.stored_bytes(), Ordering::Relaxed);
            let mut st = self.shared.state.write();
            added += keep.len();
            let soonest = keep.iter().map(|r| r.expires_at).filter(|&e| e != log::NO_EXPIRY).min();
            for r in keep {
                st.apply_put(r, None);
            }
            drop(st);
            self.note_expiry(soonest);
        }
        if self.shared.fsync != FsyncPolicy::Off {
            self.sync_now()?;
        }
        Ok(added)
    }
}
