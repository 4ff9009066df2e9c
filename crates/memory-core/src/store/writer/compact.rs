//! Compaction: rewrite the log with only the visible memories, as the next generation.

use std::path::Path;
use std::sync::atomic::Ordering;

use super::Writer;
use crate::error::{Error, Result};
use crate::store::log::{self, Header, Record};
use crate::store::logfile::{self, LogWriter};
use crate::store::shared::now_ms;
use crate::store::state::State;
use crate::store::types::CompactReport;
use crate::store::vecfile::VecFile;

impl Writer {
    /// Rewrite the log with only the visible memories (updates merged), as generation
    /// gen+1, then switch to it. Sequence numbers are kept, so list cursors stay valid.
    pub(super) fn compact(&mut self) -> Result<CompactReport> {
        let tmp = self.shared.dir.join(format!("{}.tmp", logfile::log_name(self.log.gen + 1)));
        // A leftover from a failed attempt would make `create_new` fail forever.
        let _ = std::fs::remove_file(&tmp);
        let r = self.compact_into(&tmp);
        if r.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        r
    }

    fn compact_into(&mut self, tmp: &Path) -> Result<CompactReport> {
        let dir = self.shared.dir.clone();
        let gen = self.log.gen + 1;
        let final_path = dir.join(logfile::log_name(gen));
        let bytes_before = self.log.len;
        let (new_state, rows_before) = self.write_generation(tmp, gen)?;
        std::fs::rename(tmp, &final_path).map_err(|e| Error::io(&final_path, e))?;
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

    /// Write every visible memory into a new log file `tmp` of generation `gen`, fsynced;
    /// returns the state it holds and the number of rows before.
    fn write_generation(&self, tmp: &Path, gen: u64) -> Result<(State, usize)> {
        let now = now_ms();
        let dims = self.shared.dims;
        let (new_state, rows_before) = {
            let st = self.shared.state.read();
            let mut f = logfile::create(tmp, Header { dims: dims as u32, gen, high_water: 0 })?;
            let mut new_state = State::new(dims);
            let mut buf = Vec::with_capacity(1 << 20);
            for r in 0..st.len() {
                if !st.visible(r, now) {
                    continue;
                }
                let rec = st.record_of(r as u32);
                log::encode_record(&mut buf, &Record::Put(rec.clone()));
                new_state.apply_put(rec, None);
                if buf.len() >= 1 << 20 {
                    std::io::Write::write_all(&mut f, &buf).map_err(|e| Error::io(tmp, e))?;
                    buf.clear();
                }
            }
            std::io::Write::write_all(&mut f, &buf).map_err(|e| Error::io(tmp, e))?;
            f.sync_all().map_err(|e| Error::io(tmp, e))?;
            new_state.last_seq = st.last_seq;
            (new_state, st.len())
        };
        // Record the high-water mark so sequence numbers never go back after a restart,
        // even when the newest records were deletes that compaction dropped.
        {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = std::fs::OpenOptions::new().write(true).open(tmp).map_err(|e| Error::io(tmp, e))?;
            f.seek(SeekFrom::Start(0)).map_err(|e| Error::io(tmp, e))?;
            f.write_all(&Header { dims: dims as u32, gen, high_water: new_state.last_seq }.encode()).map_err(|e| Error::io(tmp, e))?;
            f.sync_all().map_err(|e| Error::io(tmp, e))?;
        }
        Ok((new_state, rows_before))
    }
}
