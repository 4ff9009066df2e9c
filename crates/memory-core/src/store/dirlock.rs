//! The data directory's lock: one process at a time opens (or repairs) a directory.
//!
//! What enforces it is an OS lock (`flock`, through std's `File::try_lock`) on the
//! directory itself, held for as long as the store is open. It lives on the directory's
//! inode, so no file operation inside the directory can undo it: deleting `LOCK` under a
//! running server used to let a second server lock a fresh `LOCK` file and write to the same
//! log. `flock` locks belong to an open file description, so a second open in the same
//! process is refused like another process. The kernel drops the lock when the process dies.
//!
//! The `LOCK` file is still locked too (servers before the directory lock only look at it)
//! and holds the holder's PID, so a refusal can name it while the file is there.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::Path;

use super::LOCK_FILE;
use crate::error::{Error, Result};

/// Held until dropped (the store's close, or the end of a repair).
pub struct DirLock {
    _dir: Option<File>,
    _file: File,
}

/// Lock `dir` (which must exist) or say who holds it; `what` ends the refusal ("stop it
/// before repair").
pub fn lock(dir: &Path, what: &str) -> Result<DirLock> {
    // Directories open as files on Unix only; elsewhere the LOCK file is all there is.
    let handle = if cfg!(unix) { Some(File::open(dir).map_err(|e| Error::io(dir, e))?) } else { None };
    if let Some(h) = &handle {
        try_lock(h, dir, dir, what)?;
    }
    let lock_path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&lock_path).map_err(|e| Error::io(&lock_path, e))?;
    try_lock(&file, dir, &lock_path, what)?;
    // The PID is only for messages: failing to write it costs nothing else.
    let _ = file.set_len(0).and_then(|_| writeln!(file, "{}", std::process::id()));
    Ok(DirLock { _dir: handle, _file: file })
}

fn try_lock(f: &File, dir: &Path, locked: &Path, what: &str) -> Result<()> {
    match f.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => {
            let holder = holder_pid(dir).map(|pid| format!(" (pid {pid})")).unwrap_or_default();
            Err(Error::Locked(format!("data directory {} is in use by another memory server{holder}{what}", dir.display())))
        }
        Err(TryLockError::Error(e)) => Err(Error::io(locked, e)),
    }
}

/// The PID the holder wrote into `LOCK`, if the file is still there.
fn holder_pid(dir: &Path) -> Option<u32> {
    std::fs::read_to_string(dir.join(LOCK_FILE)).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_refused_even_without_lock_file() {
        let d = tempfile::tempdir().unwrap();
        let held = lock(d.path(), "").unwrap();
        let e = lock(d.path(), "").err().expect("second lock refused");
        assert!(e.to_string().contains(&format!("(pid {})", std::process::id())), "{e}");
        std::fs::remove_file(d.path().join(LOCK_FILE)).unwrap();
        let e = lock(d.path(), "; stop it first").err().expect("refused after LOCK was deleted");
        assert_eq!(e.code(), crate::error::ErrorCode::Locked);
        assert!(e.to_string().ends_with("in use by another memory server; stop it first"), "{e}");
        drop(held);
        drop(lock(d.path(), "").unwrap());
    }
}
