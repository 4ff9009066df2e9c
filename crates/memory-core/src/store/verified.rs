//! `verified-<gen>.idx`: how many leading rows of the vectors file of generation `gen` are
//! known to hold exactly the bytes their puts' checksums describe, so that an open checks
//! only the rows after them (the tail a crash can tear) and leaves the rest to the
//! background scrub ([`super::scrub`]) instead of reading 1.5 GB per million rows first.
//!
//! The writer writes it when the store closes cleanly, after its last fsync: every row the
//! vectors file holds then was either checked at open or written by this process from the
//! bytes whose checksum went to the log. It stays true while the store runs (rows below it
//! are never rewritten; new rows go after it) and across a crash (rows after it are checked
//! at the next open), so it is not removed at open. It is tied to the log by a digest of
//! the checksums the log's puts give for those rows: a log that changed under it (repair,
//! compaction, another directory's log) gives another digest and open checks every row, as
//! without the file. A scrub that finds a row not matching removes it, so the next open
//! checks everything and refuses the directory until `repair`. Never fsynced: a torn file
//! fails its own checksum and only costs the next open a full check.
//!
//! Layout (40 bytes, integers little-endian):
//!
//! ```text
//! "MSVERIFY" | format u32 | gen u64 | rows u64 | digest of the rows' crc32c u64
//!            | crc32c of the 36 bytes before it u32
//! ```

use std::path::Path;

use super::derived_file;

const MAGIC: &[u8; 8] = b"MSVERIFY";
/// Bumped when the layout changes: a file of another format is ignored (every row checked).
const FORMAT: u32 = 1;
const LEN: usize = 40;
const PREFIX: &str = "verified";

/// The digest of the rows' checksums, in row order.
fn digest(crcs: &[u32]) -> u64 {
    derived_file::row_digest(crcs.len(), |r| [u64::from(crcs[r])])
}

/// Record that the vectors file of generation `gen` holds rows `0..crcs.len()` with these
/// checksums (see the module comment for when that is true). Best effort: without the file
/// the next open checks every row.
pub(super) fn save(dir: &Path, gen: u64, crcs: &[u32]) {
    let mut head = Vec::with_capacity(LEN);
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&FORMAT.to_le_bytes());
    head.extend_from_slice(&gen.to_le_bytes());
    head.extend_from_slice(&(crcs.len() as u64).to_le_bytes());
    head.extend_from_slice(&digest(crcs).to_le_bytes());
    let crc = crc32c::crc32c(&head);
    head.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(head.len(), LEN);
    let _ = derived_file::write(dir, PREFIX, gen, &head, &[]);
}

/// How many leading rows of `crcs` (the checksums the log's puts give, row by row) the file
/// of generation `gen` vouches for: its rows when it is whole, of this generation and its
/// digest is that of `crcs`' first rows; else 0.
pub(super) fn rows_vouched_for(dir: &Path, gen: u64, crcs: &[u32]) -> usize {
    let Ok(b) = std::fs::read(dir.join(derived_file::file_name(PREFIX, gen))) else { return 0 };
    if b.len() != LEN || &b[..8] != MAGIC || crc32c::crc32c(&b[..36]) != u32::from_le_bytes(b[36..40].try_into().unwrap()) {
        return 0;
    }
    let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let (format, file_gen, rows, want) = (u32::from_le_bytes(b[8..12].try_into().unwrap()), u64_at(12), u64_at(20) as usize, u64_at(28));
    if format != FORMAT || file_gen != gen || rows > crcs.len() || digest(&crcs[..rows]) != want {
        return 0;
    }
    rows
}

/// Remove the file of every generation: the rows it vouches for can no longer be trusted
/// (a scrub found one not matching, or `repair` rewrote the files).
pub(super) fn remove_all(dir: &Path) {
    derived_file::remove_other_generations(dir, PREFIX, u64::MAX);
}

/// Remove the files of generations other than `gen`.
pub(super) fn remove_other_generations(dir: &Path, gen: u64) {
    derived_file::remove_other_generations(dir, PREFIX, gen);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vouches_only_for_the_same_checksums_generation_and_a_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let crcs: Vec<u32> = (0..100u32).map(|i| i.wrapping_mul(0x9E37_79B9)).collect();
        assert_eq!(rows_vouched_for(p, 1, &crcs), 0, "no file");
        save(p, 1, &crcs[..60]);
        assert_eq!(rows_vouched_for(p, 1, &crcs), 60, "rows after it are the tail");
        assert_eq!(rows_vouched_for(p, 1, &crcs[..60]), 60);
        assert_eq!(rows_vouched_for(p, 1, &crcs[..59]), 0, "a log with fewer puts");
        assert_eq!(rows_vouched_for(p, 2, &crcs), 0, "another generation");
        let mut other = crcs.clone();
        other[30] ^= 1;
        assert_eq!(rows_vouched_for(p, 1, &other), 0, "a put with another checksum");
        let path = p.join(derived_file::file_name(PREFIX, 1));
        let good = std::fs::read(&path).unwrap();
        for at in [0, 9, 13, 21, 29, 37] {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            std::fs::write(&path, &bad).unwrap();
            assert_eq!(rows_vouched_for(p, 1, &crcs), 0, "byte {at} flipped");
        }
        std::fs::write(&path, &good[..39]).unwrap();
        assert_eq!(rows_vouched_for(p, 1, &crcs), 0, "torn");
        std::fs::write(&path, &good).unwrap();
        remove_all(p);
        assert!(!path.exists());
    }
}
