//! The background scrub: the rows an open did not check because `verified-<gen>.idx`
//! vouched for them ([`super::verified`]) are read from the vectors file by a thread of
//! their own at the lowest CPU priority, after open, and each is checked against the
//! crc32c its put recorded in the log — what open did for every row before (reading 1.5 GB
//! per million rows of 384 dims ahead of the first query).
//!
//! A row that does not match is reported, never passed over: a line on stderr naming the
//! row, its memory and what to do, [`ScrubProgress`] in the store's stats
//! (`scrub_mismatches`), the verified file removed so the next open checks every row and
//! refuses the directory as it always did (then `repair` drops the damaged memories and
//! reports each), no verified file written at close, and compaction refused (it copies
//! rows from memory under new checksums, which would make a damaged row look sound).
//!
//! The rows are read with `pread` into a small buffer, not through the mapping searches
//! read: the scrub holds no lock and leaves nothing in the process's resident set.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::shared::Shared;
use super::vectors::read_at;
use super::verified;
use crate::error::{Error, Result};

/// Rows read per `pread` (384 KB at 384 dims): the stop flag is looked at between reads.
const BLOCK_ROWS: usize = 256;

/// Mismatching rows reported one line each; after that only the count at the end.
const REPORT_ROWS: usize = 16;

/// How the checking of the vectors file's rows against the log stands since open.
#[derive(Default)]
pub(super) struct ScrubProgress {
    /// Rows checked so far: at open (the rows no verified file vouched for) and by the scrub.
    checked: AtomicUsize,
    /// Rows the scrub has still to check.
    pending: AtomicUsize,
    /// Rows found not matching their put's checksum (by the scrub; open refuses instead).
    mismatches: AtomicUsize,
    /// The first of them (`usize::MAX`: none).
    first_mismatch: AtomicUsize,
    stop: AtomicBool,
}

impl ScrubProgress {
    /// `checked` rows checked at open, `pending` left to the scrub.
    pub fn new(checked: usize, pending: usize) -> Self {
        ScrubProgress { checked: AtomicUsize::new(checked), pending: AtomicUsize::new(pending), first_mismatch: AtomicUsize::new(usize::MAX), ..Default::default() }
    }
    pub fn checked(&self) -> usize {
        self.checked.load(Ordering::Relaxed)
    }
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }
    pub fn mismatches(&self) -> usize {
        self.mismatches.load(Ordering::Relaxed)
    }
    /// The first row found not matching, if any.
    pub fn first_mismatch(&self) -> Option<usize> {
        Some(self.first_mismatch.load(Ordering::Relaxed)).filter(|&r| r != usize::MAX)
    }
    /// Ask the scrub to stop (the store is closing); it does within one read.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// For compaction: wait until the scrub has checked every row (or `cancel` is set), and
    /// refuse if it found rows not matching (see the module comment).
    pub fn wait_sound(&self, cancel: &AtomicBool, vectors_file: &str) -> Result<()> {
        while self.pending() > 0 && !self.stop.load(Ordering::Relaxed) && !cancel.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
        }
        match self.first_mismatch() {
            None => Ok(()),
            Some(row) => Err(Error::Corrupt {
                file: vectors_file.to_string(),
                offset: 0,
                reason: format!("{} vector rows (the first is row {row}) do not match their checksums: not compacted; stop the server and run `memory-server repair`", self.mismatches()),
            }),
        }
    }
}

/// Start the scrub of rows `0..crcs.len()` of the vectors file at `path` (`crcs`: the
/// checksums the log's puts give for them). `None` when there is nothing to check.
pub(super) fn spawn(shared: Arc<Shared>, path: PathBuf, crcs: Vec<u32>) -> Option<JoinHandle<()>> {
    if crcs.is_empty() {
        return None;
    }
    let dims = shared.dims;
    std::thread::Builder::new().name("memory-scrub".into()).spawn(move || run(&shared, &path, dims, &crcs)).ok()
}

fn run(shared: &Shared, path: &Path, dims: usize, crcs: &[u32]) {
    lowest_priority();
    let progress = &shared.scrub;
    let row_bytes = dims * 4;
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return report_unreadable(shared, path, 0, &e),
    };
    let mut buf = vec![0u8; BLOCK_ROWS * row_bytes];
    let mut r = 0;
    while r < crcs.len() {
        if progress.stop.load(Ordering::Relaxed) {
            return;
        }
        let n = BLOCK_ROWS.min(crcs.len() - r);
        let block = &mut buf[..n * row_bytes];
        if let Err(e) = read_at(&file, block, (r * row_bytes) as u64) {
            return report_unreadable(shared, path, r, &e);
        }
        for (k, row) in block.chunks_exact(row_bytes).enumerate() {
            if crc32c::crc32c(row) != crcs[r + k] {
                mismatch(shared, path, r + k);
            }
        }
        r += n;
        progress.checked.fetch_add(n, Ordering::Relaxed);
        progress.pending.fetch_sub(n, Ordering::Relaxed);
    }
    let bad = progress.mismatches();
    if bad > 0 {
        eprintln!("memory-server: scrub of {} done: {bad} vector rows do not match their checksums (see above); stop the server and run `memory-server repair`", path.display());
    }
}

/// Record and report row `row` not matching its put.
fn mismatch(shared: &Shared, path: &Path, row: usize) {
    let progress = &shared.scrub;
    let seen = progress.mismatches.fetch_add(1, Ordering::Relaxed);
    let _ = progress.first_mismatch.compare_exchange(usize::MAX, row, Ordering::Relaxed, Ordering::Relaxed);
    if seen == 0 {
        // The next open must check every row again, and so refuse the directory.
        verified::remove_all(&shared.dir);
    }
    if seen < REPORT_ROWS {
        let st = shared.state.read();
        let who = st.rows.get(row).map_or_else(String::new, |x| format!(" (memory {:?} in namespace {:?})", x.id(), st.namespaces[st.ns_col[row] as usize].name));
        eprintln!(
            "memory-server: vector row {row}{who} of {} does not match the checksum its put recorded in the log: it is damaged on disk and searches read it as it is; stop the server and run `memory-server repair`, which drops and reports the damaged memories",
            path.display()
        );
    }
}

/// The file could not be read from row `row` on: every row left counts as not checked and
/// not matching, reported like a damaged row.
fn report_unreadable(shared: &Shared, path: &Path, row: usize, e: &std::io::Error) {
    let progress = &shared.scrub;
    let left = progress.pending.swap(0, Ordering::Relaxed);
    progress.mismatches.fetch_add(left, Ordering::Relaxed);
    let _ = progress.first_mismatch.compare_exchange(usize::MAX, row, Ordering::Relaxed, Ordering::Relaxed);
    verified::remove_all(&shared.dir);
    eprintln!("memory-server: the scrub could not read {} from vector row {row} on ({e}): {left} rows unchecked; stop the server and run `memory-server repair`", path.display());
}

/// Nice 19: the scrub takes only CPU time nothing else wants.
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19);
    }
}
