//! `memory-server repair`: keep every record of a damaged log before the first bad one.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use super::log::{scan, ScanEnd};
use super::logfile::{find_current, read_all, sync_dir};
use crate::error::{Error, Result};

/// What [`repair`] did.
#[derive(Debug, Clone)]
pub struct RepairReport {
    pub file: PathBuf,
    /// Records kept (before the first bad one).
    pub kept_records: u64,
    /// Byte offset where the kept prefix ends.
    pub kept_bytes: u64,
    /// Where the rest was moved, if anything was cut.
    pub moved_to: Option<PathBuf>,
    pub moved_bytes: u64,
    pub reason: Option<String>,
}

/// Keep every valid record before the first bad one; move the rest of the file aside into
/// `<log>.corrupt-<offset>` and truncate the log there.
pub fn repair(dir: &Path) -> Result<RepairReport> {
    if !dir.is_dir() {
        return Err(Error::NotFound(format!("no data directory {}", dir.display())));
    }
    // Never cut a log under a running store.
    let _lock = super::dirlock::lock(dir, "; stop it before repair")?;
    let Some((_, path)) = find_current(dir)? else {
        return Err(Error::NotFound(format!("no log file (wal-*.log) in {}", dir.display())));
    };
    let bytes = read_all(&path)?;
    let file = path.display().to_string();
    let mut kept = 0u64;
    let sc = scan(&bytes, &file, |_, _| kept += 1)?;
    let (cut, reason) = match sc.end {
        ScanEnd::Clean => {
            return Ok(RepairReport { file: path, kept_records: kept, kept_bytes: sc.valid_len, moved_to: None, moved_bytes: 0, reason: None })
        }
        ScanEnd::Torn { offset, reason } | ScanEnd::Corrupt { offset, reason } => (offset, reason),
    };
    let aside = PathBuf::from(format!("{}.corrupt-{}", path.display(), cut));
    std::fs::write(&aside, &bytes[cut as usize..]).map_err(|e| Error::io(&aside, e))?;
    File::open(&aside).and_then(|f| f.sync_all()).map_err(|e| Error::io(&aside, e))?;
    let f = OpenOptions::new().write(true).open(&path).map_err(|e| Error::io(&path, e))?;
    f.set_len(cut).map_err(|e| Error::io(&path, e))?;
    f.sync_all().map_err(|e| Error::io(&path, e))?;
    sync_dir(dir)?;
    Ok(RepairReport {
        file: path,
        kept_records: kept,
        kept_bytes: cut,
        moved_to: Some(aside),
        moved_bytes: bytes.len() as u64 - cut,
        reason: Some(reason),
    })
}
