//! Replaying a log image into an empty state at open.
//!
//! Fast path: frame the records by their length prefixes, verify checksums and decode them
//! on all cores without copying (metadata parsed there too), then apply them in order with
//! the ordered significance index built once at the end. If anything does not verify, the
//! sequential [`log::scan`] classifies the damage (torn tail or corruption) and only the
//! valid prefix is applied.

use std::fs::File;
use std::time::Instant;

use rayon::prelude::*;

use super::log::{self, Header, RecordRef, ScanEnd};
use super::state::{self, ParsedMetadata, State};
use super::vectors::Vectors;
use crate::error::{Error, Result};

/// A verified record and, for a put, its parsed metadata; `None` where verification failed.
type Decoded<'a> = Option<(RecordRef<'a>, ParsedMetadata)>;

/// Replay a log image into `st` (empty).
///
/// `vec_file` is the vectors file of this generation and how many rows it holds: whole
/// chunks of it are mapped instead of copied from the log, and checked against the log.
/// Returns the scan and the number of leading rows the vectors file holds correctly.
pub(super) fn replay(bytes: &[u8], file: &str, st: &mut State, vec_file: Option<(&File, usize)>) -> Result<(log::Scan, usize)> {
    let header = Header::decode(bytes, file)?;
    let dims = header.dims as usize;
    let trace = std::env::var_os("MEMORY_SERVER_TRACE_OPEN").is_some();
    let t0 = Instant::now();
    let (frames, framed) = log::frames(bytes);
    let decoded: Vec<Decoded> = frames
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
        eprintln!("replay: framed+decoded {} records in {:?}", frames.len(), t0.elapsed());
    }
    // The log's file runs ahead of its records in zeros (`LogWriter`), and a crash leaves them:
    // whole records followed by nothing but zeros end there, without the sequential scan that
    // tells a torn tail from damage (no valid record can follow in zeros).
    let records_end = frames.last().map_or(log::HEADER_LEN.min(bytes.len()), |&(o, l)| o + 8 + l);
    let zero_tail = !framed && bytes[records_end..].iter().all(|&b| b == 0);
    let (sc, limit) = if (framed || zero_tail) && all_valid_in_order(&decoded) {
        let last_seq = decoded.last().and_then(|d| d.as_ref()).map(|d| d.0.seq()).unwrap_or(0).max(header.high_water);
        let end = if framed { ScanEnd::Clean } else { ScanEnd::Torn { offset: records_end as u64, reason: "zero-filled tail".into() } };
        (log::Scan { header, valid_len: records_end as u64, end, last_seq }, decoded.len())
    } else {
        let sc = log::scan(bytes, file, |_, _| {})?;
        let n = frames.iter().take_while(|&&(o, l)| (o + 8 + l) as u64 <= sc.valid_len).count();
        (sc, n)
    };
    st.defer_sig_index(limit);
    // The caller builds the text index, or loads it (`text::persist`).
    st.defer_text_index();
    // Every put adds exactly one row, in order, to the (empty) state: row k is the k-th put.
    // So the vectors can be copied into the arena on other cores while this thread applies
    // the records.
    debug_assert_eq!(st.len(), 0);
    let vectors: Vec<(u32, &[u8])> = decoded
        .iter()
        .take(limit)
        .filter_map(|d| match d {
            Some((RecordRef::Put { vector, .. }, _)) => Some(*vector),
            _ => None,
        })
        .enumerate()
        .map(|(k, v)| (k as u32, v))
        .collect();
    let mut arena = std::mem::replace(&mut st.vectors, Vectors::new(dims));
    if let Some((f, rows)) = vec_file {
        arena.map_file(f, rows.min(vectors.len()));
    }
    arena.reserve_rows(vectors.len());
    let (applied, diff) = rayon::join(
        || {
            let r = apply(st, decoded, limit, &frames, file);
            if trace {
                eprintln!("replay: records applied at {:?}", t0.elapsed());
            }
            r
        },
        || {
            let diff = arena.fill_le_bytes(&vectors);
            if trace {
                eprintln!("replay: vectors copied at {:?} ({} rows mapped from the vectors file, first differing: {diff:?})", t0.elapsed(), arena.mapped_rows());
            }
            diff
        },
    );
    applied?;
    let file_ok = diff.unwrap_or(usize::MAX).min(arena.mapped_rows());
    arena.set_len(vectors.len());
    // Comparing read every mapped row: give the chunks that matched back to the page cache.
    arena.release_mapped(file_ok);
    debug_assert_eq!(arena.len(), st.len());
    st.vectors = arena;
    drop(vectors);
    if trace {
        eprintln!("replay: applied + vectors in {:?}", t0.elapsed());
    }
    st.rebuild_sig_index();
    if trace {
        eprintln!("replay: sig index in {:?}", t0.elapsed());
    }
    Ok((sc, file_ok))
}

/// Every record verified, with strictly increasing sequence numbers.
fn all_valid_in_order(decoded: &[Decoded]) -> bool {
    let mut last = 0u64;
    for d in decoded {
        let Some((rec, _)) = d else { return false };
        if rec.seq() <= last {
            return false;
        }
        last = rec.seq();
    }
    true
}

/// Apply the first `limit` records to `st` (their vectors go elsewhere, see [`replay`]).
fn apply(st: &mut State, decoded: Vec<Decoded>, limit: usize, frames: &[(usize, usize)], file: &str) -> Result<()> {
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
                    if let Some(&row) = st.namespaces[n as usize].ids.get(id) {
                        st.apply_update(row, metadata.map(|m| (m.to_string(), state::parse_metadata(m))), significance, seq);
                    }
                }
                st.last_seq = st.last_seq.max(seq);
            }
            RecordRef::Delete { seq, namespace, id, .. } => {
                if let Some(n) = st.ns_id(namespace) {
                    if let Some(&row) = st.namespaces[n as usize].ids.get(id) {
                        st.kill(row);
                    }
                }
                st.last_seq = st.last_seq.max(seq);
            }
        }
    }
    Ok(())
}
