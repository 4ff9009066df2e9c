//! Converting a version-1 generation (puts carrying their vectors inline) at open: the
//! replayed state is written out the way compaction rewrites a generation — generation
//! `gen + 1` as a version-2 log (`wal-<gen+1>.log.tmp`, fsynced, renamed) beside its vectors
//! file (fsynced before the rename), deleted memories dropped — and the old generation's
//! files removed. A crash before the rename leaves the version-1 log in charge, and the next
//! open converts it again.

use std::io::Write;
use std::path::Path;

use super::log::{self, Header};
use super::logfile::{self, LogWriter};
use super::state::State;
use super::vecfile::VecFile;
use super::writer::copy_live_rows;
use crate::error::{Error, Result};

/// Rows encoded per write of the new log.
const SLICE_ROWS: usize = 16384;

/// Write `old` (replayed from a version-1 log of generation `gen`) as version-2 generation
/// `gen + 1`; returns its log, its vectors file and its state (text index built).
pub(super) fn convert(dir: &Path, gen: u64, old: &State) -> Result<(LogWriter, VecFile, State)> {
    let dims = old.dims;
    let new_gen = gen + 1;
    let tmp = dir.join(format!("{}.tmp", logfile::log_name(new_gen)));
    let _ = std::fs::remove_file(&tmp);
    let header = Header { version: log::VERSION, dims: dims as u32, gen: new_gen, high_water: old.last_seq };
    let mut file = logfile::create(&tmp, header)?;
    let (mut vec_file, _) = VecFile::open(dir, new_gen, dims, true)?;
    let mut state = State::new(dims);
    state.text_on = old.text_on;
    state.defer_text_index();
    let mut buf = Vec::with_capacity(1 << 20);
    let mut r = 0;
    while r < old.len() {
        let end = (r + SLICE_ROWS).min(old.len());
        let first = state.len();
        copy_live_rows(old, r..end, &mut state, &mut buf);
        vec_file.write_rows(first, (first..state.len()).map(|k| state.vectors.row(k)))?;
        file.write_all(&buf).map_err(|e| Error::io(&tmp, e))?;
        buf.clear();
        r = end;
    }
    state.last_seq = state.last_seq.max(old.last_seq);
    vec_file.sync()?;
    file.sync_all().map_err(|e| Error::io(&tmp, e))?;
    drop(file);
    let path = dir.join(logfile::log_name(new_gen));
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    logfile::sync_dir(dir)?;
    state.build_text_index();
    let len = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?.len();
    Ok((LogWriter::open_append(path, new_gen, len)?, vec_file, state))
}
