//! The vectors file of the current generation, `vectors-<gen>.f32`: row r's f32 values
//! (little-endian) at byte `r · dims · 4`. It is a cache of the log, never trusted on its
//! own: at open, whole chunks of it are mapped from the page cache instead of copying the
//! vectors out of the log into fresh memory, and every mapped row is compared with the log
//! (rows that differ are corrected in memory and rewritten). The writer appends rows to it
//! while idle, without fsync; after a crash it may hold fewer rows, more rows (a torn log
//! tail) or damaged ones, all of which open handles. Compaction starts a new one.
//!
//! The file is also where the f32 rows live while the store is open: the whole chunks it
//! holds are mapped from it (at open, and by the writer as it catches up), so they sit in
//! the page cache rather than in the process's anonymous memory, and are released from the
//! resident set once the idle work that read them all is done ([`VecFile::adopt`]).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::logfile;
use super::state::State;

pub(super) struct VecFile {
    pub file: File,
    pub path: PathBuf,
    /// Leading rows the file holds correctly (the writer appends from here).
    pub rows: usize,
    /// Rows of the file the arena had adopted at the last [`VecFile::adopt`].
    adopted: usize,
    /// Every mapped chunk should be released from the resident set at the next
    /// [`VecFile::adopt`]: after an open, whose idle work (int8 codes, graph) read every row.
    release_pending: bool,
}

/// How long the writer must have been without operations before it writes to the vectors file.
pub(super) const VEC_FILE_QUIET: Duration = Duration::from_millis(3);

/// Rows written to the vectors file per slice of the writer's idle time (~3 MB at 384 dims).
pub(super) const VEC_FILE_SLICE_ROWS: usize = 2048;

impl VecFile {
    /// Open (or create; `truncate` empties it) the vectors file of generation `gen`; also
    /// returns the whole rows it holds now. `None` where mapping is not supported (or the
    /// file cannot be opened): the store then works without one.
    pub fn open(dir: &Path, gen: u64, dims: usize, truncate: bool) -> Option<(VecFile, usize)> {
        if !cfg!(all(unix, target_endian = "little")) {
            return None;
        }
        let path = dir.join(logfile::vectors_name(gen));
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(truncate).open(&path).ok()?;
        let rows = file.metadata().ok()?.len() as usize / (dims * 4).max(1);
        Some((VecFile { file, path, rows: 0, adopted: 0, release_pending: !truncate }, rows))
    }

    /// Once the writer is idle and the file holds every row: let the arena read the rows the
    /// file holds from the file rather than from anonymous memory ([`Vectors::adopt_file`]),
    /// when a whole chunk more is there or after an open. Takes the state's write lock only then.
    ///
    /// [`Vectors::adopt_file`]: super::vectors::Vectors::adopt_file
    pub fn adopt(slot: Option<&mut VecFile>, state: &parking_lot::RwLock<State>) {
        let Some(v) = slot else { return };
        let chunks = |rows: usize| rows / super::vectors::CHUNK_ROWS;
        if chunks(v.rows) <= chunks(v.adopted) && !v.release_pending {
            return;
        }
        let mut st = state.write();
        st.vectors.adopt_file(&v.file, v.rows);
        v.adopted = v.rows;
        v.release_pending = false;
    }

    /// Append rows `self.rows..` of `st` (at most `max`); true once the file holds them all.
    /// Write errors (a full disk) only cost the cache: the file is dropped.
    #[cfg(unix)]
    pub fn catch_up(slot: &mut Option<VecFile>, st: &State, max: usize) -> bool {
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
    pub fn catch_up(_: &mut Option<VecFile>, _: &State, _: usize) -> bool {
        true
    }
}
