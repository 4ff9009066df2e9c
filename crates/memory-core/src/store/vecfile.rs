//! The vectors file of the current generation, `vectors-<gen>.f32`: row r's f32 values
//! (little-endian) at byte `r · dims · 4`, where r is the row of the r-th put of the log of
//! the same generation. It is the one durable copy of each vector: a put record carries the
//! row's place and the crc32c of its bytes, not the floats (`store/log.rs`). A put group
//! writes its rows here before its records go to the log, and both files are fsynced before
//! anything is acknowledged (`writer::commit`). At open its whole chunks are mapped from the
//! page cache instead of copied, and its rows are checked against their puts' crcs
//! (`store/replay.rs`; the rows `verified-<gen>.idx` vouches for by the background scrub,
//! `store/scrub.rs`). The file keeps every row's crc in memory so that a clean close can
//! write that record ([`VecFile::save_verified`]). It is never shortened while open: rows past the log's puts (a crash
//! between the two writes) are overwritten by the next puts. Compaction writes the next
//! generation's file beside its log.
//!
//! The file is also where the f32 rows live while the store is open: the whole chunks it
//! holds are mapped from it (at open, and by the writer as it writes them), so they sit in
//! the page cache rather than in the process's anonymous memory, and are released from the
//! resident set once the idle work that read them all is done ([`VecFile::adopt`]).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::logfile;
use super::state::State;
use crate::error::{Error, Result};

/// Write all of `bytes` at `offset`.
fn write_at(file: &File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::write_all_at(file, bytes, offset)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = file;
        f.seek(SeekFrom::Start(offset))?;
        f.write_all(bytes)
    }
}

pub(super) struct VecFile {
    pub file: File,
    pub path: PathBuf,
    gen: u64,
    dims: usize,
    /// Leading rows the file holds (every row of the state once a group is written).
    pub rows: usize,
    /// The crc32c of each row written or checked, in row order (from the log's puts at open,
    /// computed from the bytes as rows are written): 4 bytes a row, for the verified file.
    pub crcs: Vec<u32>,
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
    /// returns the whole rows it holds now.
    pub fn open(dir: &Path, gen: u64, dims: usize, truncate: bool) -> Result<(VecFile, usize)> {
        let path = dir.join(logfile::vectors_name(gen));
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(truncate).open(&path).map_err(|e| Error::io(&path, e))?;
        let rows = file.metadata().map_err(|e| Error::io(&path, e))?.len() as usize / (dims * 4).max(1);
        Ok((VecFile { file, path, gen, dims, rows: 0, crcs: Vec::new(), adopted: 0, release_pending: !truncate }, rows))
    }

    /// Write `vectors` as rows `first..` (page cache only; [`VecFile::sync`] makes them
    /// durable). Rows the log does not reference are harmless, so a failed write needs no
    /// undoing: nothing goes to the log after it.
    pub fn write_rows<'a>(&mut self, first: usize, vectors: impl Iterator<Item = &'a [f32]>) -> Result<()> {
        let mut bytes = Vec::new();
        let mut n = 0;
        for v in vectors {
            debug_assert_eq!(v.len(), self.dims);
            bytes.extend_from_slice(&super::log::f32_bytes(v));
            n += 1;
        }
        write_at(&self.file, &bytes, (first * self.dims * 4) as u64).map_err(|e| Error::io(&self.path, e))?;
        self.rows = first + n;
        self.note_crcs(first, &bytes);
        Ok(())
    }

    /// Record the crcs of rows `first..` written from `bytes`. A row with no crc known
    /// (a gap, never expected) gets 0: the verified file's digest then differs from the log's
    /// and the next open checks every row, as without the file.
    fn note_crcs(&mut self, first: usize, bytes: &[u8]) {
        self.crcs.resize(first, 0);
        self.crcs.extend(bytes.chunks_exact(self.dims * 4).map(crc32c::crc32c));
    }

    /// After a clean close (the rows synced): write `verified-<gen>.idx` for every row the
    /// file holds, so the next open checks only the rows written after them
    /// (`store/verified.rs`). Not when a scrub found a row not matching.
    pub fn save_verified(&self, dir: &Path) {
        let rows = self.rows.min(self.crcs.len());
        super::verified::save(dir, self.gen, &self.crcs[..rows]);
    }

    /// Make the rows written durable (`fdatasync`).
    pub fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
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
    /// The writer writes every row with its group, so this finds nothing to do unless a
    /// row write failed after the state took it (it never does: a failed write fails the
    /// group). A write error drops the file from the writer.
    #[cfg(unix)]
    pub fn catch_up(slot: &mut Option<VecFile>, st: &State, max: usize) -> bool {
        use std::os::unix::fs::FileExt;
        let Some(v) = slot.as_mut() else { return true };
        v.rows = v.rows.min(st.len());
        let end = st.len().min(v.rows.saturating_add(max));
        let mut off = (v.rows * st.dims * 4) as u64;
        for part in st.vectors.rows_bytes(v.rows, end) {
            if v.file.write_all_at(part, off).is_err() {
                // The file is the durable copy: never removed here; writes then fail.
                *slot = None;
                return true;
            }
            v.note_crcs(off as usize / (st.dims * 4), part);
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
