//! `memory-server repair`: salvage every intact record of a damaged log, and rebuild a
//! damaged `store.json` from the log.
//!
//! Damage is rarely more than a few bytes (a flipped bit, a torn sector), so after a bad
//! record repair resynchronises: it scans forward byte by byte for the next record whose
//! length, checksum and body verify and whose sequence number follows the last one kept,
//! and goes on from there to the end of the file. The log is rewritten with every record
//! kept (to `<log>.tmp`, fsynced, renamed over it); the damaged byte ranges are copied, as
//! they were, into `<log>.damaged-<ms>` with a report `<log>.damaged-<ms>.txt` saying where
//! each came from.
//!
//! In a version-2 log a put's vector is a row of the vectors file, under the crc32c its
//! record carries: a put whose row does not match (a damaged row) is lost like a damaged
//! record, reported with its sequence number, and the vectors file is rewritten with the
//! rows of the puts kept, in order (the kept puts re-pointed at them), so every salvaged
//! memory keeps its embedding. The two files are swapped in a crash-safe order: the new
//! log (`<log>.tmp`) and vectors (`vectors-<gen>.f32.repair`) are written and fsynced, the
//! log is renamed (the moment the repair takes effect), then the vectors file; an open that
//! finds a `.repair` file finishes the swap if the log's `.tmp` is gone and drops it if not
//! ([`finish_interrupted`]). A version-1 log carries its vectors in its puts; its vectors
//! file (a cache) is removed and the next open converts the log.

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::dirlock;
use super::log::{self, find_valid_record, valid_record_at, Header, HEADER_LEN, MAX_RECORD};
use super::logfile::{find_current, sync_dir, vectors_name, LogImage};
use super::open::{write_meta, MetaFile};
use super::{now_ms, META_FILE};
use crate::error::{Error, Result};

/// A damaged byte range of the log that repair could not keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostRange {
    /// Bytes `start..end` of the log as it was.
    pub start: u64,
    pub end: u64,
    /// The lost sequence numbers lie in `first_seq..=last_seq` (`None`: to the end of the
    /// log, nothing after it was kept). Exact when the log's sequence numbers were
    /// consecutive, as they are until a compaction drops deleted memories.
    pub first_seq: u64,
    pub last_seq: Option<u64>,
    /// How many records the range held, when their length prefixes still tile it exactly
    /// (e.g. one record with a flipped bit in its body); `None` when the framing is damaged.
    pub records: Option<u64>,
    /// What was wrong with its first record.
    pub reason: String,
}

/// `store.json` could not be read and was rebuilt from the log.
#[derive(Debug, Clone)]
pub struct MetaRepair {
    pub reason: String,
    /// Where the unreadable file was kept.
    pub moved_to: PathBuf,
    pub dims: usize,
}

/// What [`repair`] did.
#[derive(Debug, Clone)]
pub struct RepairReport {
    pub file: PathBuf,
    /// Records in the log after repair.
    pub kept_records: u64,
    /// Bytes of the log after repair.
    pub kept_bytes: u64,
    /// The damaged ranges, in file order (empty: the log needed no repair).
    pub lost: Vec<LostRange>,
    pub lost_bytes: u64,
    /// The damaged bytes, concatenated in file order, and the report describing them.
    pub damaged_to: Option<PathBuf>,
    pub report_to: Option<PathBuf>,
    pub meta: Option<MetaRepair>,
}

/// Repair the stopped data directory `dir` (see the module documentation).
pub fn repair(dir: &Path) -> Result<RepairReport> {
    if !dir.is_dir() {
        return Err(Error::NotFound(format!("no data directory {}", dir.display())));
    }
    // Never rewrite files under a running store.
    let _lock = dirlock::lock(dir, "; stop it before repair")?;
    // Repair rewrites the files: the next open checks every row again.
    super::verified::remove_all(dir);
    let Some((gen, path)) = find_current(dir)? else {
        return Err(Error::NotFound(format!("no log file (wal-*.log) in {}", dir.display())));
    };
    let file = path.display().to_string();
    let bytes = LogImage::open(&path)?;
    let meta = read_meta(dir);
    let stamp = now_ms();

    // The header: as written, or rebuilt from store.json (then its 40 bytes are a lost range).
    let (header, mut lost) = match Header::decode(&bytes, &file) {
        Ok(h) => (h, Vec::new()),
        Err(e) => {
            // A header whose checksum verifies is not damaged (another format version, say):
            // rebuilding it would throw away records this build cannot read.
            let intact = bytes.len() >= HEADER_LEN && crc32c::crc32c(&bytes[..32]).to_le_bytes() == bytes[32..36];
            let (Ok(m), false) = (&meta, intact) else { return Err(e) };
            let end = HEADER_LEN.min(bytes.len()) as u64;
            let range = LostRange { start: 0, end, first_seq: 1, last_seq: None, records: Some(0), reason: format!("file header: {e}") };
            (Header { version: log::VERSION, dims: m.dims as u32, gen, high_water: 0 }, vec![range])
        }
    };
    let meta = match meta {
        Ok(m) if m.dims == header.dims as usize => None,
        Ok(m) => Some(format!("it says {} dimensions, the log {}", m.dims, header.dims)),
        Err(reason) => reason,
    }
    .map(|reason| rebuild_meta(dir, &reason, header.dims as usize, stamp))
    .transpose()?;

    let dims = header.dims as usize;
    // Every record kept: (offset, end).
    let mut kept: Vec<(usize, usize)> = Vec::new();
    let mut last_seq = 0u64;
    let mut off = HEADER_LEN.min(bytes.len());
    while off < bytes.len() {
        if let Some((len, seq)) = valid_record_at(&bytes, off, dims).filter(|&(_, seq)| seq > last_seq) {
            if let Some(l) = lost.last_mut().filter(|l| l.end == off as u64) {
                l.last_seq = Some(seq - 1);
            }
            kept.push((off, off + 8 + len));
            last_seq = seq;
            off += 8 + len;
            continue;
        }
        let next = find_valid_record(&bytes, off + 1, dims, last_seq).unwrap_or(bytes.len());
        let reason = diagnose(&bytes, off, dims, last_seq);
        lost.push(LostRange { start: off as u64, end: next as u64, first_seq: last_seq + 1, last_seq: None, records: tiling(&bytes, off, next), reason });
        off = next;
    }

    let mut header = header;
    if !lost.is_empty() && lost[0].start == 0 && kept.iter().any(|&(a, _)| bytes[a + 8] == log::KIND_PUT) {
        // A rebuilt header of a version-1 log.
        header.version = log::VERSION_INLINE;
    }
    let rows_file = dir.join(vectors_name(gen));
    if header.version == log::VERSION && !rows_file.exists() && kept.iter().any(|&(a, b)| put_row(&bytes[a..b]).is_some()) {
        // Without it every memory would be "lost": that is a misplaced file, not damage.
        return Err(Error::NotFound(format!("{} is missing: it holds the vectors of the log's memories; put it back before repair", rows_file.display())));
    }
    let vectors = if header.version == log::VERSION { Some(open_vectors(&rows_file)?) } else { None };
    if let Some(v) = &vectors {
        lost_rows(&bytes, &mut kept, v, dims, &mut lost);
    }
    let kept_records = kept.len() as u64;
    let mut report = RepairReport {
        file: path.clone(),
        kept_records,
        kept_bytes: bytes.len() as u64,
        lost_bytes: lost.iter().map(|l| l.end - l.start).sum(),
        lost,
        damaged_to: None,
        report_to: None,
        meta,
    };
    if report.lost.is_empty() {
        return Ok(report);
    }
    // Set the damaged bytes aside first: if anything below fails, the log is still as it was.
    let damaged = PathBuf::from(format!("{file}.damaged-{stamp}"));
    let mut aside = Vec::with_capacity(report.lost_bytes as usize);
    for l in &report.lost {
        aside.extend_from_slice(&bytes[l.start as usize..l.end as usize]);
    }
    write_synced(&damaged, &aside)?;
    let txt = PathBuf::from(format!("{}.txt", damaged.display()));
    write_synced(&txt, describe(&report, &damaged).as_bytes())?;

    // Written straight from the (mapped) old log: a log of gigabytes is not copied in memory.
    let tmp = PathBuf::from(format!("{file}.tmp"));
    let mut out = std::io::BufWriter::with_capacity(1 << 20, File::create(&tmp).map_err(|e| Error::io(&tmp, e))?);
    let rows_tmp = PathBuf::from(format!("{}{REPAIR_SUFFIX}", rows_file.display()));
    let mut rows_out = match &vectors {
        Some(_) => Some(std::io::BufWriter::with_capacity(1 << 20, File::create(&rows_tmp).map_err(|e| Error::io(&rows_tmp, e))?)),
        None => None,
    };
    let mut kept_bytes = HEADER_LEN as u64;
    out.write_all(&header.encode()).map_err(|e| Error::io(&tmp, e))?;
    let row_bytes = dims * 4;
    let mut next_row = 0u64;
    for &(a, b) in &kept {
        match (&vectors, &mut rows_out, put_row(&bytes[a..b])) {
            (Some(v), Some(w), Some((row, _))) => {
                // The kept puts' rows, in order: the k-th put kept is row k.
                let r = row as usize * row_bytes;
                w.write_all(&v[r..r + row_bytes]).map_err(|e| Error::io(&rows_tmp, e))?;
                out.write_all(&log::with_row(&bytes[a..b], next_row)).map_err(|e| Error::io(&tmp, e))?;
                next_row += 1;
            }
            _ => out.write_all(&bytes[a..b]).map_err(|e| Error::io(&tmp, e))?,
        }
        kept_bytes += (b - a) as u64;
    }
    out.into_inner().map_err(|e| Error::io(&tmp, e.into_error()))?.sync_all().map_err(|e| Error::io(&tmp, e))?;
    if let Some(w) = rows_out {
        w.into_inner().map_err(|e| Error::io(&rows_tmp, e.into_error()))?.sync_all().map_err(|e| Error::io(&rows_tmp, e))?;
    }
    sync_dir(dir)?;
    drop((bytes, vectors));
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    sync_dir(dir)?;
    if header.version == log::VERSION {
        std::fs::rename(&rows_tmp, &rows_file).map_err(|e| Error::io(&rows_file, e))?;
    } else {
        // A version-1 log's vectors file is a cache of its puts; the next open converts the log.
        let _ = std::fs::remove_file(&rows_file);
    }
    sync_dir(dir)?;
    report.kept_bytes = kept_bytes;
    report.damaged_to = Some(damaged);
    report.report_to = Some(txt);
    Ok(report)
}

/// The suffix of a vectors file written by repair, waiting for its log to be renamed.
const REPAIR_SUFFIX: &str = ".repair";

/// At open, before anything else: finish a repair interrupted between its two renames (the
/// log's `.tmp` is gone, so the repaired log is in place: its vectors file goes in too), or
/// drop one interrupted before (the old log and vectors file are still in place).
pub(super) fn finish_interrupted(dir: &Path) -> Result<()> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Ok(()) };
    for ent in rd.flatten() {
        let name = ent.file_name().to_string_lossy().to_string();
        let Some(vectors) = name.strip_suffix(REPAIR_SUFFIX) else { continue };
        let Some(gen) = vectors.strip_prefix("vectors-").and_then(|s| s.strip_suffix(".f32")).and_then(|g| g.parse::<u64>().ok()) else { continue };
        let log_tmp = dir.join(format!("{}.tmp", super::logfile::log_name(gen)));
        if log_tmp.exists() {
            std::fs::remove_file(ent.path()).map_err(|e| Error::io(ent.path(), e))?;
        } else {
            let target = dir.join(vectors);
            std::fs::rename(ent.path(), &target).map_err(|e| Error::io(&target, e))?;
        }
        sync_dir(dir)?;
    }
    Ok(())
}

/// The vectors file, mapped (empty if there is none).
fn open_vectors(path: &Path) -> Result<LogImage> {
    if !path.exists() {
        return Ok(LogImage::Owned(Vec::new()));
    }
    LogImage::open(path)
}

/// The row and vector crc of a framed version-2 put, `None` for any other record.
fn put_row(frame: &[u8]) -> Option<(u64, u32)> {
    if frame.get(8) != Some(&log::KIND_PUT_ROW) || frame.len() < 8 + 17 + log::ROW_REF_LEN {
        return None;
    }
    let t = &frame[frame.len() - log::ROW_REF_LEN..];
    Some((u64::from_le_bytes(t[0..8].try_into().unwrap()), u32::from_le_bytes(t[8..12].try_into().unwrap())))
}

/// Move the kept puts whose vector row is missing from the vectors file or does not match
/// its checksum from `kept` to `lost` (which stays in file order).
fn lost_rows(bytes: &[u8], kept: &mut Vec<(usize, usize)>, vectors: &[u8], dims: usize, lost: &mut Vec<LostRange>) {
    let row_bytes = dims * 4;
    let before = lost.len();
    kept.retain(|&(a, b)| {
        let Some((row, crc)) = put_row(&bytes[a..b]) else { return true };
        let at = row as usize * row_bytes;
        let reason = match vectors.get(at..at + row_bytes) {
            Some(v) if crc32c::crc32c(v) == crc => return true,
            Some(_) => format!("its vector (row {row} of the vectors file) does not match its checksum"),
            None => format!("its vector (row {row}) is missing from the vectors file"),
        };
        let seq = u64::from_le_bytes(bytes[a + 9..a + 17].try_into().unwrap());
        lost.push(LostRange { start: a as u64, end: b as u64, first_seq: seq, last_seq: Some(seq), records: Some(1), reason });
        false
    });
    if lost.len() > before {
        lost.sort_by_key(|l| l.start);
    }
}

/// `store.json` as recorded, or why it cannot be read (`None`: there is none, which open
/// handles by writing one).
fn read_meta(dir: &Path) -> std::result::Result<MetaFile, Option<String>> {
    let path = dir.join(META_FILE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(None),
        Err(e) => return Err(Some(e.to_string())),
    };
    serde_json::from_slice::<MetaFile>(&text).map_err(|e| Some(e.to_string()))
}

/// Keep the unreadable `store.json` aside and write one from the log's dimensions. The
/// embedder it named is not known any more: the next open records its own.
fn rebuild_meta(dir: &Path, reason: &str, dims: usize, stamp: i64) -> Result<MetaRepair> {
    let path = dir.join(META_FILE);
    let moved_to = dir.join(format!("{META_FILE}.damaged-{stamp}"));
    std::fs::rename(&path, &moved_to).map_err(|e| Error::io(&path, e))?;
    write_meta(dir, &MetaFile { format: 1, dims, embedder: None })?;
    Ok(MetaRepair { reason: reason.to_string(), moved_to, dims })
}

/// Why the record at `off` was not kept.
fn diagnose(bytes: &[u8], off: usize, dims: usize, last_seq: u64) -> String {
    let rest = &bytes[off..];
    if rest.len() < 8 {
        return "partial record header at end of file".into();
    }
    let len = u32::from_le_bytes(rest[0..4].try_into().unwrap()) as usize;
    if len == 0 {
        return if rest.iter().all(|&b| b == 0) { "zero-filled tail".into() } else { "record of length 0".into() };
    }
    if len > MAX_RECORD {
        return format!("record length {len} over the {MAX_RECORD}-byte limit");
    }
    if 8 + len > rest.len() {
        return format!("record length {len} runs past end of file");
    }
    let crc = u32::from_le_bytes(rest[4..8].try_into().unwrap());
    if crc32c::crc32c(&rest[8..8 + len]) != crc {
        return "checksum mismatch".into();
    }
    match valid_record_at(bytes, off, dims) {
        None => "malformed record body".into(),
        Some((_, seq)) => format!("sequence number {seq} not after {last_seq}"),
    }
}

/// The number of records in `start..end` if their length prefixes tile it exactly.
fn tiling(bytes: &[u8], start: usize, end: usize) -> Option<u64> {
    let (mut p, mut n) = (start, 0u64);
    while p < end {
        if end - p < 8 {
            return None;
        }
        let len = u32::from_le_bytes(bytes[p..p + 4].try_into().unwrap()) as usize;
        if len == 0 || len > end - p - 8 {
            return None;
        }
        p += 8 + len;
        n += 1;
    }
    Some(n)
}

/// One line per lost range, as the CLI prints them: `bytes a..b (n bytes): sequence s (1
/// record): reason`.
fn describe_range(l: &LostRange) -> String {
    let seqs = match l.last_seq {
        Some(last) if last == l.first_seq => format!("sequence {last}"),
        Some(last) if last > l.first_seq => format!("sequences {}..{last}", l.first_seq),
        Some(_) => "no sequence number missing".to_string(),
        None => format!("sequences from {} to the end", l.first_seq),
    };
    let records = match l.records {
        Some(1) => " (1 record)".to_string(),
        Some(n) => format!(" ({n} records)"),
        None => String::new(),
    };
    format!("bytes {}..{} ({} bytes): {seqs}{records}: {}", l.start, l.end, l.end - l.start, l.reason)
}

/// The report kept beside the damaged bytes.
fn describe(r: &RepairReport, damaged: &Path) -> String {
    let mut s = format!(
        "memory-server repair of {}\n{} records kept; {} damaged ranges ({} bytes) were not, and are in {} in this order:\n",
        r.file.display(),
        r.kept_records,
        r.lost.len(),
        r.lost_bytes,
        damaged.display()
    );
    let mut at = 0u64;
    for l in &r.lost {
        let _ = writeln!(s, "  at {at} in that file: {}", describe_range(l));
        at += l.end - l.start;
    }
    s
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(|e| Error::io(path, e))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiling_counts_whole_frames_only() {
        let mut b = vec![0u8; 40];
        for len in [10u32, 20] {
            b.extend_from_slice(&len.to_le_bytes());
            b.extend_from_slice(&[0; 4]);
            b.extend(std::iter::repeat_n(7u8, len as usize));
        }
        assert_eq!(tiling(&b, 40, b.len()), Some(2));
        assert_eq!(tiling(&b, 40, b.len() - 1), None);
        assert_eq!(tiling(&b, 41, b.len()), None);
    }
}
