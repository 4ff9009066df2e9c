//! What the files derived from the log share (the text index `text-<gen>.idx`, the ANN
//! graphs `ann-<gen>.idx`): their names by generation, writing one whole (a temporary file
//! renamed over the old one), removing other generations' files, and the digest that ties a
//! file to the rows it was built from. Each file's own layout and checks stay in its module.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// `<prefix>-<gen>.idx`.
pub fn file_name(prefix: &str, gen: u64) -> String {
    format!("{prefix}-{gen:06}.idx")
}

/// The generation a file name belongs to, for `<prefix>-<gen>.idx` and its `.tmp`.
pub fn generation_of(prefix: &str, name: &str) -> Option<u64> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('-')?;
    let gen = rest.strip_suffix(".idx").or_else(|| rest.strip_suffix(".idx.tmp"))?;
    gen.parse().ok()
}

/// Write `head` then `body` as `dir/<prefix>-<gen>.idx` through a temporary file renamed over
/// it, then remove other generations' files. Not fsynced: a file torn by a crash fails its
/// checksum and the next open rebuilds what it held.
pub fn write(dir: &Path, prefix: &str, gen: u64, head: &[u8], body: &[u8]) -> Result<()> {
    let path = dir.join(file_name(prefix, gen));
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(head)?;
        f.write_all(body)?;
        Ok(())
    };
    write().map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    remove_other_generations(dir, prefix, gen);
    Ok(())
}

/// Remove the `<prefix>-…` files (and leftover temporary files) of generations other than `gen`.
pub fn remove_other_generations(dir: &Path, prefix: &str, gen: u64) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for ent in rd.flatten() {
        let name = ent.file_name().to_string_lossy().to_string();
        if generation_of(prefix, &name).is_some_and(|g| g != gen || name.ends_with(".tmp")) {
            let _ = std::fs::remove_file(ent.path());
        }
    }
}

/// A digest of rows `0..rows`, in order, from the values `key(row)` gives for each (what
/// identifies a row for that file: sequence number, namespace, and its text or vector).
pub fn row_digest<const N: usize>(rows: usize, key: impl Fn(usize) -> [u64; N]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for r in 0..rows {
        for x in key(r) {
            h = (h.rotate_left(23) ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_generations() {
        assert_eq!(file_name("ann", 7), "ann-000007.idx");
        assert_eq!(generation_of("ann", "ann-000007.idx"), Some(7));
        assert_eq!(generation_of("ann", "ann-000007.idx.tmp"), Some(7));
        assert_eq!(generation_of("ann", "text-000007.idx"), None);
        assert_eq!(generation_of("text", "text-12.idx"), Some(12));
        assert_eq!(generation_of("ann", "annx-000007.idx"), None);
        assert_eq!(generation_of("ann", "ann-000007.log"), None);
    }

    #[test]
    fn write_replaces_and_removes_other_generations() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join("ann-000001.idx"), b"old").unwrap();
        std::fs::write(p.join("ann-000002.idx.tmp"), b"torn").unwrap();
        std::fs::write(p.join("text-000001.idx"), b"other kind").unwrap();
        write(p, "ann", 2, b"head", b"body").unwrap();
        assert_eq!(std::fs::read(p.join("ann-000002.idx")).unwrap(), b"headbody");
        assert!(!p.join("ann-000001.idx").exists() && !p.join("ann-000002.idx.tmp").exists());
        assert!(p.join("text-000001.idx").exists(), "another file kind is left alone");
    }

    #[test]
    fn digest_follows_every_key_and_the_order() {
        let keys = [[1u64, 2], [3, 4], [5, 6]];
        let d = row_digest(3, |r| keys[r]);
        assert_eq!(d, row_digest(3, |r| keys[r]));
        assert_ne!(d, row_digest(2, |r| keys[r]));
        assert_ne!(d, row_digest(3, |r| keys[2 - r]));
        assert_ne!(d, row_digest(3, |r| if r == 1 { [3, 5] } else { keys[r] }));
    }
}
