//! Replaying a log image into an empty state at open.
//!
//! Fast path: frame the records by their length prefixes, verify checksums and decode them
//! on all cores without copying (metadata parsed there too), then apply them in order with
//! the ordered significance index left deferred (the writer builds it once after the open,
//! `store/writer`, `finish_open`). The records a state snapshot covers are not decoded
//! ahead: the restore reads each put as it builds its row, on all cores
//! ([`restore_covered`]). If anything does not verify, the sequential [`log::scan`]
//! classifies the damage (torn tail or corruption) and only the valid prefix is applied.
//!
//! The vectors of a version-2 log are rows of the vectors file, mapped (whole chunks) or read
//! (the last partial chunk) and checked against the crc32c each put records — all of them, or
//! only those after the rows `verified-<gen>.idx` vouches for ([`super::verified`]: written at
//! a clean close), which the background scrub checks after open ([`super::scrub`]). Rows that
//! do not match from some put to the very end of the log (none matching after it) are the
//! trace of a crash before both files reached the disk: the log is cut before that put, as a
//! torn tail. A mismatch followed by rows that match is corruption, for `repair`.

use std::fs::File;
use std::time::Instant;

use rayon::prelude::*;

use super::log::{self, Header, PutVector, RecordRef, ScanEnd};
use super::snapshot::{self, CoveredPut, Snapshot};
use super::state::{self, ParsedMetadata, State};
use super::vectors::Vectors;
use crate::error::{Error, Result};

/// Most rows a torn tail of the vectors file may cover: a bulk load's slice, written before
/// its one fsync (a put group is at most 4,096). More rows missing or wrong at the end is
/// not taken for a crash's trace but refused as corruption (a truncated or replaced file),
/// so `repair` reports every memory it loses instead of open dropping them silently.
const TORN_ROWS_MAX: usize = 8192;

/// A verified record and, for a put, its parsed metadata; `None` where verification failed.
pub(super) type Decoded<'a> = Option<(RecordRef<'a>, ParsedMetadata)>;

/// What [`replay`] gives back.
pub(super) struct Replayed {
    pub scan: log::Scan,
    /// The crc32c each applied put records for its row, in row order (empty for a version-1 log).
    pub crcs: Vec<u32>,
    /// Leading rows not checked here because the verified file vouched for them: the scrub's.
    pub vouched: usize,
    /// Rows restored from the state snapshot rather than applied from the log.
    pub restored: usize,
}

/// Replay a log image into `st` (empty).
///
/// `vec_file` is the vectors file of this generation and how many rows it holds (a
/// version-2 log with puts needs it: its rows are the puts' vectors; without it open is
/// refused, never started with the memories cut off). Returns the scan, whose end is a
/// torn tail or corruption when the vectors file does not hold the puts' rows (see the
/// module documentation). `vouched_for(crcs)`: how many leading rows the verified file
/// vouches for, given the puts' checksums. `snap`: the state snapshot of the last clean
/// close ([`super::snapshot`]), restored instead of applying the records it covers when it
/// describes the log's first records, else ignored with a line on stderr.
pub(super) fn replay(bytes: &[u8], file: &str, st: &mut State, vec_file: Option<(&File, usize)>, vouched_for: &dyn Fn(&[u32]) -> usize, snap: Option<Snapshot>) -> Result<Replayed> {
    let header = Header::decode(bytes, file)?;
    let gen = header.gen;
    let inline = header.version == log::VERSION_INLINE;
    let dims = header.dims as usize;
    let trace = std::env::var_os("MEMORY_SERVER_TRACE_OPEN").is_some();
    let t0 = Instant::now();
    let (frames, framed) = log::frames(bytes);
    let snap = snap.and_then(|s| match snapshot_fits(&s, bytes, &frames) {
        Ok(()) => Some(s),
        Err(why) => {
            snapshot::ignored(file, gen, &why);
            None
        }
    });
    // The records the snapshot covers are not decoded here: the restore below checks and
    // decodes each of its puts as it builds that put's row ([`restore_covered`]). A decoded
    // copy of them all (~160 bytes a record: ~160 MB for a million, written, read again and
    // freed) was most of an open's time. The records after them are checked and decoded on
    // every core.
    let covered = snap.as_ref().map_or(0, |s| s.records);
    let decoded: Vec<Decoded> = frames[covered..]
        .par_iter()
        .with_min_len(256)
        .map(|&(off, len)| {
            let rec = log::check_frame(bytes, off, len, dims)?;
            let meta = match &rec {
                RecordRef::Put { metadata, .. } => state::parse_metadata(metadata),
                _ => None,
            };
            Some((rec, meta))
        })
        .collect();
    if trace {
        eprintln!("replay: framed {} records, decoded the {} after the snapshot's, in {:?}", frames.len(), decoded.len(), t0.elapsed());
    }
    // The log's file runs ahead of its records in zeros (`LogWriter`), and a crash leaves them:
    // whole records followed by nothing but zeros end there, without the sequential scan that
    // tells a torn tail from damage (no valid record can follow in zeros).
    let records_end = frames.last().map_or(log::HEADER_LEN.min(bytes.len()), |&(o, l)| o + 8 + l);
    let zero_tail = !framed && bytes[records_end..].iter().all(|&b| b == 0);
    // The covered puts are rows 0.. (the restore checks that): the first put after them is the next row.
    let first_row = snap.as_ref().map_or(0, |s| s.rows as u64);
    let checked = check_decoded(&decoded, inline, first_row);
    let (mut sc, limit) = if (framed || zero_tail) && checked.valid_in_order {
        let last_seq = decoded.last().and_then(|d| d.as_ref()).map(|d| d.0.seq()).unwrap_or(0).max(header.high_water);
        let end = if framed { ScanEnd::Clean } else { ScanEnd::Torn { offset: records_end as u64, reason: "zero-filled tail".into() } };
        (log::Scan { header, valid_len: records_end as u64, end, last_seq }, frames.len())
    } else {
        let sc = log::scan(bytes, file, |_, _| {})?;
        let n = frames.iter().take_while(|&&(o, l)| (o + 8 + l) as u64 <= sc.valid_len).count();
        (sc, n)
    };
    if limit < covered {
        snapshot::ignored(file, gen, "the log's records it covers do not all verify");
        return replay(bytes, file, st, vec_file, vouched_for, None);
    }
    // A log cut short of its last records (a torn tail, damage) is checked again up to the cut.
    let tail = limit - covered;
    let checked = if tail == decoded.len() { checked } else { check_decoded(&decoded[..tail], inline, first_row) };
    if let Some((i, reason)) = checked.wrong_put {
        return Err(Error::Corrupt { file: file.to_string(), offset: frames[covered + i].0 as u64, reason });
    }
    st.defer_sig_index(limit);
    // The caller builds the text index, or loads it (`text::persist`).
    st.defer_text_index();
    debug_assert_eq!(st.len(), 0);
    let mut crcs = Vec::new();
    if let Some(s) = &snap {
        let first_after = decoded.first().and_then(|d| d.as_ref()).map(|d| d.0.seq());
        let restored = restore_covered(st, s, bytes, &frames[..covered], dims).and_then(|(c, last_seq)| match first_after {
            Some(next) if tail > 0 && next <= last_seq => Err(format!("the record after the ones it covers has sequence number {next}, not above {last_seq}")),
            _ => Ok((c, last_seq)),
        });
        match restored {
            Ok((c, last_seq)) => {
                crcs = c;
                sc.last_seq = sc.last_seq.max(last_seq);
            }
            Err(why) => {
                snapshot::ignored(file, gen, &why);
                start_over(st, dims);
                return replay(bytes, file, st, vec_file, vouched_for, None);
            }
        }
        if trace {
            eprintln!("replay: {covered} records restored from the state snapshot at {:?}", t0.elapsed());
        }
    }
    let mut arena = Vectors::new(dims);
    let mut vouched = 0;
    if inline {
        // Version 1: the vectors are in the log (this log is converted right after).
        let vectors: Vec<(u32, &[u8])> = put_vectors(&decoded[..tail]).enumerate().map(|(k, v)| (k as u32, if let PutVector::Inline(b) = v { b } else { unreachable!() })).collect();
        arena.reserve_rows(vectors.len());
        arena.fill_le_bytes(&vectors);
        arena.set_len(vectors.len());
    } else {
        crcs.extend(checked.crcs);
        match vec_file {
            Some((f, file_rows)) => {
                // Rows the file lacks (read as zeros) are checked whatever it vouches for.
                vouched = vouched_for(&crcs).min(file_rows);
                arena.load_file(f, file_rows.min(crcs.len()), crcs.len());
            }
            None if crcs.is_empty() => {}
            None => {
                return Err(Error::Corrupt {
                    file: file.replace("wal-", "vectors-").replace(".log", ".f32"),
                    offset: 0,
                    reason: format!("the vectors file is missing, and it holds the vectors of the log's {} memories: put it back", crcs.len()),
                })
            }
        }
    }
    // The rows are checked on the other cores while this thread applies the records.
    let (applied, bad) = rayon::join(
        || {
            let r = apply(st, decoded, tail, &frames[covered..], file);
            if trace {
                eprintln!("replay: {tail} records applied at {:?}", t0.elapsed());
            }
            r
        },
        || {
            let bad = arena.rows_not_matching(&crcs, vouched);
            if trace {
                eprintln!(
                    "replay: {} vector rows checked at {:?} ({} vouched for by the verified file, left to the scrub; {} mapped, {} not matching)",
                    crcs.len() - vouched,
                    t0.elapsed(),
                    vouched,
                    arena.mapped_rows(),
                    bad.len()
                );
            }
            bad
        },
    );
    applied?;
    if let Some(&first) = bad.first() {
        // The frame of the first put whose row does not match.
        let offset = frames[put_frame(bytes, &frames[..limit], first)].0;
        if bad.len() == crcs.len() - first && bad.len() <= TORN_ROWS_MAX {
            // A torn tail (rare): replay again the log before that put.
            start_over(st, dims);
            drop(arena);
            let mut r = replay(&bytes[..offset], file, st, vec_file, vouched_for, snap)?;
            r.scan.end = ScanEnd::Torn { offset: offset as u64, reason: format!("vector rows {first}.. not in the vectors file (a crash before it reached the disk)") };
            r.scan.valid_len = offset as u64;
            return Ok(r);
        }
        sc.end = ScanEnd::Corrupt { offset: offset as u64, reason: format!("vector row {first} of the vectors file does not match its checksum") };
        return Ok(Replayed { scan: sc, crcs, vouched, restored: 0 });
    }
    // Checking read every mapped row: give them back to the page cache.
    arena.release_mapped(arena.mapped_rows());
    debug_assert_eq!(arena.len(), st.len());
    st.vectors = arena;
    // The ordered significance index stays deferred: no search needs it (only reads by
    // significance without a query, which take the columns meanwhile), so the writer builds it
    // when it is first idle, after the open (`Writer::idle_step`).
    Ok(Replayed { scan: sc, crcs, vouched, restored: snap.map_or(0, |s| s.rows) })
}

/// Empty `st` for another replay of the log, keeping whether it indexes text.
fn start_over(st: &mut State, dims: usize) {
    let text_on = st.text_on;
    *st = State::new(dims);
    st.text_on = text_on;
}

/// The vectors of the puts among `decoded`, in order (every put adds exactly one row, in
/// order, to the empty state: row k is the k-th put).
fn put_vectors<'a>(decoded: &'a [Decoded<'a>]) -> impl Iterator<Item = PutVector<'a>> + 'a {
    decoded.iter().filter_map(|d| match d {
        Some((RecordRef::Put { vector, .. }, _)) => Some(*vector),
        _ => None,
    })
}

/// The index among `frames` of the `k`-th put (read from each record's kind byte).
fn put_frame(bytes: &[u8], frames: &[(usize, usize)], k: usize) -> usize {
    frames.iter().enumerate().filter(|(_, &(off, _))| matches!(bytes[off + 8], log::KIND_PUT | log::KIND_PUT_ROW)).nth(k).map(|(i, _)| i).unwrap_or(frames.len())
}

/// Restore the state `snap` describes from the records it covers (`frames`, the log's first),
/// each put checked (checksum, decoding, its row: the k-th put is row k) and read as the
/// restore builds its row, on every core; the other records (updates and deletes, which the
/// snapshot holds applied) only checked. Returns the puts' row checksums in row order and the
/// records' last sequence number. `Err`: why the snapshot does not describe these records —
/// `st` is then to be discarded, and the whole log replayed (which tells what is wrong).
pub(super) fn restore_covered(st: &mut State, snap: &Snapshot, bytes: &[u8], frames: &[(usize, usize)], dims: usize) -> std::result::Result<(Vec<u32>, u64), String> {
    const NOT_VERIFIED: &str = "the log's records it covers do not all verify";
    // Each record's kind and sequence number are its body's first 9 bytes; read here for the
    // order of the records and the frame of each put, checked with the whole record below.
    let mut puts: Vec<u32> = Vec::with_capacity(frames.len());
    let mut others = Vec::new();
    let mut last_seq = 0u64;
    for (i, &(off, len)) in frames.iter().enumerate() {
        let head = bytes.get(off + 8..off + 8 + len.min(9)).filter(|h| h.len() == 9).ok_or(NOT_VERIFIED)?;
        let seq = u64::from_le_bytes(head[1..9].try_into().unwrap());
        if seq <= last_seq {
            return Err(NOT_VERIFIED.into());
        }
        last_seq = seq;
        match head[0] {
            log::KIND_PUT | log::KIND_PUT_ROW => puts.push(i as u32),
            _ => others.push(i),
        }
    }
    if !others.par_iter().all(|&i| log::check_covered_frame(bytes, frames[i].0, frames[i].1, dims).is_some()) {
        return Err(NOT_VERIFIED.into());
    }
    let put = |r: usize| -> Option<CoveredPut> {
        let (off, len) = frames[puts[r] as usize];
        match log::check_covered_frame(bytes, off, len, dims)? {
            RecordRef::Put { seq, ts, namespace, id, text, expires_at, vector: PutVector::Row { row, crc }, .. } if row == r as u64 => Some(CoveredPut { seq, ts, namespace, id, text, expires_at, crc }),
            _ => None,
        }
    };
    let crcs = snapshot::restore(st, snap, &put, puts.len(), last_seq)?;
    Ok((crcs, last_seq))
}

/// What one pass over the decoded records finds (they can be many: read once, not once per
/// question). `first_row`: the row the first put among them makes.
struct Checked {
    /// Every record verified, with strictly increasing sequence numbers.
    valid_in_order: bool,
    /// A put of the other version's kind, or a version-2 put not pointing at its own row
    /// (the k-th put is row k): the record index and what is wrong.
    wrong_put: Option<(usize, String)>,
    /// The checksums of the version-2 puts' rows, in row order (up to a wrong put).
    crcs: Vec<u32>,
}

fn check_decoded(decoded: &[Decoded], inline: bool, first_row: u64) -> Checked {
    let mut c = Checked { valid_in_order: true, wrong_put: None, crcs: Vec::new() };
    if !inline {
        c.crcs.reserve(decoded.len());
    }
    let mut last = 0u64;
    let mut k = first_row;
    for (i, d) in decoded.iter().enumerate() {
        let Some((rec, _)) = d else {
            c.valid_in_order = false;
            continue;
        };
        c.valid_in_order &= rec.seq() > last;
        last = rec.seq();
        let RecordRef::Put { vector, .. } = rec else { continue };
        if c.wrong_put.is_some() {
            continue;
        }
        match (vector, inline) {
            (PutVector::Inline(_), true) => {}
            (PutVector::Row { row, crc }, false) if *row == k => c.crcs.push(*crc),
            (PutVector::Row { row, .. }, false) => c.wrong_put = Some((i, format!("put of row {row} where row {k} comes next"))),
            _ => c.wrong_put = Some((i, "a put of the other log version".into())),
        }
        k += 1;
    }
    c
}

/// Whether the snapshot describes the first records of the log image framed as `frames`:
/// as many records, ending at the same offset, with the same offsets, lengths and checksums.
fn snapshot_fits(s: &Snapshot, bytes: &[u8], frames: &[(usize, usize)]) -> std::result::Result<(), String> {
    let Some(covered) = frames.get(..s.records) else {
        return Err(format!("it covers {} records and the log holds {}", s.records, frames.len()));
    };
    let end = covered.last().map_or(log::HEADER_LEN, |&(off, len)| off + 8 + len);
    if end as u64 != s.log_len || snapshot::records_digest(bytes, covered) != s.digest {
        return Err("the log's first records are not the ones it was written for (the log was repaired, replaced or cut)".into());
    }
    Ok(())
}

/// Apply the first `limit` records to `st` (their vectors are loaded apart, see [`replay`]).
pub(super) fn apply(st: &mut State, decoded: Vec<Decoded>, limit: usize, frames: &[(usize, usize)], file: &str) -> Result<()> {
    for (i, d) in decoded.into_iter().take(limit).enumerate() {
        let Some((rec, meta)) = d else {
            return Err(Error::Corrupt { file: file.to_string(), offset: frames[i].0 as u64, reason: "record failed verification".into() });
        };
        match rec {
            RecordRef::Put { seq, ts, namespace, id, text, metadata, significance, expires_at, associations, .. } => {
                st.insert_row(state::NewRow {
                    seq,
                    ts,
                    namespace,
                    id,
                    text,
                    metadata_raw: metadata,
                    metadata: meta,
                    significance,
                    expires_at,
                    associations: associations.into_iter().map(Box::from).collect(),
                    vector: state::VectorSrc::Elsewhere,
                });
            }
            RecordRef::Update { seq, namespace, id, metadata, significance, .. } => {
                if let Some(n) = st.ns_id(namespace) {
                    if let Some(row) = st.row_by_id(n, id) {
                        st.apply_update(row, metadata.map(|m| (m.to_string(), state::parse_metadata(m))), significance, seq);
                    }
                }
                st.last_seq = st.last_seq.max(seq);
            }
            RecordRef::Delete { seq, namespace, id, .. } => {
                if let Some(n) = st.ns_id(namespace) {
                    if let Some(row) = st.row_by_id(n, id) {
                        st.kill(row);
                    }
                }
                st.last_seq = st.last_seq.max(seq);
            }
        }
    }
    Ok(())
}
