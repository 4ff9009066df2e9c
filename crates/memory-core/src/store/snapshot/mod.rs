//! `state-<gen>.idx`: the store's decoded state as it stood at the last clean close, so that
//! an open restores it instead of applying every record of the log again.
//!
//! Replaying a million puts meant parsing every metadata text as JSON, allocating and
//! filling every row, inserting every id into its namespace's map and every metadata value
//! into its posting list, one record after the other: most of an open's time once the
//! vectors and the graph were no longer read. The log stays the truth and the file holds
//! only what is costly to derive from it: each row's metadata (an index into a table of the
//! distinct metadata texts with their packed form, so the JSON is not parsed again), its
//! associations as the row stores them, its significance and whether it is live, and the
//! namespaces' posting lists (roaring's own serialization). A row's id, text, sequence
//! number, namespace, timestamp, expiry and vector checksum still come from its put, which
//! open reads anyway to check it: the file does not hold the texts a second time.
//!
//! The writer writes it at a clean close, after the log's last record (`store/writer`,
//! shutdown), tied to the log by the number of records it covers, their length in bytes and
//! a digest of every record's offset, length and checksum. Open takes it only if it was
//! written by this format for this generation, its checksums hold, and the log's first
//! records are exactly those (every one of them verified by its own checksum, as replay
//! does); the records after them — stores made after the close by a run that then crashed —
//! are applied on top of it as replay would (`store/replay.rs`), which gives the same state
//! because applying records is a function of the state and the records. Anything else (no
//! file, a torn or damaged one, another generation, a log that was repaired, replaced or cut
//! below it) and the whole log is replayed as without the file, with a line on stderr when
//! a file was there. Never fsynced: a torn file fails its checksum.
//!
//! Layout (integers little-endian; `v` an unsigned LEB128 varint, `str` a `v` length and
//! UTF-8 bytes):
//!
//! ```text
//! header (76 bytes): "MSSTATE\0" | format u32 | gen u64 | rows u64 | records u64
//!                    | log bytes covered u64 | records digest u64 | live bytes u64
//!                    | body length u64 | body crc32c u32 | header crc32c u32
//! body:  namespaces v | their names, str each, in the state's order
//!        | metadata texts v | per text: the text, str | its packed form, v length + bytes
//!        | significance, f32 per row | live, (rows + 7) / 8 bytes (bit r of byte r / 8)
//!        | chunk offsets, u64 per 4,096 rows and one more: where each chunk's row entries
//!          start (and the last ends), from the first entry
//!        | row entries: metadata text v | associations v | their bytes v | the bytes as
//!          the row stores them (`store/row.rs`)
//!        | posting lists, per namespace: paths v | per path: path str | keys v
//!          | per key: key | bitmap v length + roaring's portable serialization
//! key:   0 null | 1 then u8 bool | 2 then u64 (the number's f64 bits) | 3 then str
//! ```
//!
//! Written by hand like the text index's file: a few dozen lines, and restoring it is what
//! makes the open fast (rows are built on every core, chunk by chunk).

mod restore;

use std::ops::Range;
use std::path::Path;

use roaring::RoaringBitmap;

use super::derived_file;
use super::log;
use super::logfile::LogImage;
use super::state::{HashMap, State};
use crate::filter::IndexKey;

pub(super) use restore::{restore, CoveredPut};

const MAGIC: &[u8; 8] = b"MSSTATE\0";
/// Bumped when the layout changes: a file of another format is ignored (the log replayed).
const FORMAT: u32 = 1;
const HEADER_LEN: usize = 76;
const PREFIX: &str = "state";
/// Rows per chunk of row entries: the unit restored on one core.
const CHUNK_ROWS: usize = 4096;

/// A namespace's posting lists: path → value → rows.
pub(super) type PostingLists = HashMap<String, HashMap<IndexKey, RoaringBitmap>>;

/// The digest of the records `frames` of a log image: each one's offset, length and
/// checksum, in order (the checksum read from its frame; whether it holds is checked apart).
pub(super) fn records_digest(bytes: &[u8], frames: &[(usize, usize)]) -> u64 {
    derived_file::row_digest(frames.len(), |i| {
        let (off, len) = frames[i];
        [off as u64, len as u64, u64::from(u32::from_le_bytes(bytes[off + 4..off + 8].try_into().expect("4 bytes")))]
    })
}

fn put_v(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push(x as u8 | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_v(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_key(out: &mut Vec<u8>, key: &IndexKey) {
    match key {
        IndexKey::Null => out.push(0),
        IndexKey::Bool(b) => out.extend_from_slice(&[1, u8::from(*b)]),
        IndexKey::Num(bits) => {
            out.push(2);
            out.extend_from_slice(&bits.to_le_bytes());
        }
        IndexKey::Str(s) => {
            out.push(3);
            put_bytes(out, s.as_bytes());
        }
    }
}

/// The body of the file for `st` (every row it holds).
fn encode_body(st: &State) -> Vec<u8> {
    let rows = st.len();
    let mut out = Vec::with_capacity(rows * 24 + 4096);
    put_v(&mut out, st.namespaces.len() as u64);
    for ns in &st.namespaces {
        put_bytes(&mut out, ns.name.as_bytes());
    }
    // The distinct metadata (text and packed form): most stores repeat a few shapes.
    let mut table: HashMap<(&str, &[u8]), u32> = HashMap::default();
    let mut texts: Vec<(&str, &[u8])> = Vec::new();
    let meta_of: Vec<u32> = st
        .rows
        .iter()
        .map(|r| {
            let key = (r.metadata_raw(), r.metadata_packed());
            *table.entry(key).or_insert_with(|| {
                texts.push(key);
                (texts.len() - 1) as u32
            })
        })
        .collect();
    put_v(&mut out, texts.len() as u64);
    for (raw, packed) in &texts {
        put_bytes(&mut out, raw.as_bytes());
        put_bytes(&mut out, packed);
    }
    for s in &st.sig_col {
        out.extend_from_slice(&s.to_le_bytes());
    }
    let mut live = vec![0u8; rows.div_ceil(8)];
    for (r, _) in st.live_col.iter().enumerate().filter(|(_, &l)| l) {
        live[r / 8] |= 1 << (r % 8);
    }
    out.extend_from_slice(&live);
    let chunks = rows.div_ceil(CHUNK_ROWS);
    let offsets_at = out.len();
    out.resize(offsets_at + (chunks + 1) * 8, 0);
    let entries_at = out.len();
    for (r, row) in st.rows.iter().enumerate() {
        if r % CHUNK_ROWS == 0 {
            let at = offsets_at + r / CHUNK_ROWS * 8;
            let offset = (out.len() - entries_at) as u64;
            out[at..at + 8].copy_from_slice(&offset.to_le_bytes());
        }
        let (n, assoc) = row.encoded_associations();
        put_v(&mut out, u64::from(meta_of[r]));
        put_v(&mut out, n as u64);
        put_bytes(&mut out, assoc);
    }
    let end = (out.len() - entries_at) as u64;
    out[offsets_at + chunks * 8..entries_at].copy_from_slice(&end.to_le_bytes());
    let mut bitmap = Vec::new();
    for ns in &st.namespaces {
        put_v(&mut out, ns.index.len() as u64);
        for (path, values) in &ns.index {
            put_bytes(&mut out, path.as_bytes());
            put_v(&mut out, values.len() as u64);
            for (key, rows) in values {
                put_key(&mut out, key);
                bitmap.clear();
                rows.serialize_into(&mut bitmap).expect("writing to a Vec");
                put_bytes(&mut out, &bitmap);
            }
        }
    }
    out
}

/// After a clean close (the log trimmed to its last record): write generation `gen`'s file
/// for `st`, which holds every record of the log at `log_path`. `Err` says why not (a log
/// that does not frame whole, or whose puts are not the state's rows); the next open then
/// replays what the file does not cover.
pub(super) fn save(dir: &Path, gen: u64, log_path: &Path, st: &State) -> Result<(), String> {
    let bytes = LogImage::open(log_path).map_err(|e| e.to_string())?;
    let (frames, framed) = log::frames(&bytes);
    if !framed {
        return Err("the log does not end with a whole record".into());
    }
    let puts = frames.iter().filter(|&&(off, _)| matches!(bytes[off + 8], log::KIND_PUT | log::KIND_PUT_ROW)).count();
    if puts != st.len() {
        return Err(format!("the log holds {puts} puts and the state {} rows", st.len()));
    }
    let body = encode_body(st);
    let mut head = Vec::with_capacity(HEADER_LEN);
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&FORMAT.to_le_bytes());
    for x in [gen, st.len() as u64, frames.len() as u64, bytes.len() as u64, records_digest(&bytes, &frames), st.live_bytes, body.len() as u64] {
        head.extend_from_slice(&x.to_le_bytes());
    }
    head.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    let crc = crc32c::crc32c(&head);
    head.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(head.len(), HEADER_LEN);
    derived_file::write(dir, PREFIX, gen, &head, &body).map_err(|e| e.to_string())
}

/// Remove the files of generations other than `gen`.
pub(super) fn remove_other_generations(dir: &Path, gen: u64) {
    derived_file::remove_other_generations(dir, PREFIX, gen);
}

/// Say on stderr that generation `gen`'s snapshot beside the log `log_file` is not used,
/// and why (a missing file is not worth a line).
pub(super) fn ignored(log_file: &str, gen: u64, why: &str) {
    let path = Path::new(log_file).with_file_name(file_name(gen));
    eprintln!("memory-server: {} not used ({why}); replaying the whole log {log_file}", path.display());
}

/// The file name of generation `gen`'s snapshot.
pub fn file_name(gen: u64) -> String {
    derived_file::file_name(PREFIX, gen)
}

/// A file read back and checked whole, not yet against the log.
pub(super) struct Snapshot {
    /// Rows (the puts it covers), records and log bytes it covers, their digest.
    pub rows: usize,
    pub records: usize,
    pub log_len: u64,
    pub digest: u64,
    pub live_bytes: u64,
    pub namespaces: Vec<String>,
    body: Vec<u8>,
    /// Per distinct metadata: where its text and its packed form are in `body`.
    metadata: Vec<(Range<usize>, Range<usize>)>,
    sig_at: usize,
    live_at: usize,
    /// Where each chunk's row entries start in `body`, and where the last ends.
    chunks: Vec<usize>,
    index_at: usize,
}

/// Read generation `gen`'s file: `None` without one; `Err` (why) if it is there but not
/// whole, not of this format or of another generation.
pub(super) fn read(dir: &Path, gen: u64) -> Option<Result<Snapshot, String>> {
    let bytes = std::fs::read(dir.join(file_name(gen))).ok()?;
    Some(decode(bytes, gen))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn decode(mut bytes: Vec<u8>, gen: u64) -> Result<Snapshot, String> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC || crc32c::crc32c(&bytes[..72]) != u32_at(&bytes, 72) {
        return Err("torn or damaged header".into());
    }
    if u32_at(&bytes, 8) != FORMAT {
        return Err(format!("format {} (this build reads {FORMAT})", u32_at(&bytes, 8)));
    }
    if u64_at(&bytes, 12) != gen {
        return Err(format!("written for generation {}", u64_at(&bytes, 12)));
    }
    let body_len = u64_at(&bytes, 60);
    if (bytes.len() - HEADER_LEN) as u64 != body_len || crc32c::crc32c(&bytes[HEADER_LEN..]) != u32_at(&bytes, 68) {
        return Err("torn or damaged body (its checksum does not hold)".into());
    }
    let rows = usize::try_from(u64_at(&bytes, 20)).ok().filter(|&r| r <= u32::MAX as usize).ok_or("too many rows")?;
    let (records, log_len, digest, live_bytes) = (u64_at(&bytes, 28) as usize, u64_at(&bytes, 36), u64_at(&bytes, 44), u64_at(&bytes, 52));
    bytes.drain(..HEADER_LEN);
    let mut s = Snapshot { rows, records, log_len, digest, live_bytes, namespaces: Vec::new(), body: bytes, metadata: Vec::new(), sig_at: 0, live_at: 0, chunks: Vec::new(), index_at: 0 };
    s.parse().ok_or_else(|| "malformed body".to_string())?;
    Ok(s)
}

/// Reads varints and byte strings from a body.
pub(super) struct Reader<'a> {
    pub b: &'a [u8],
    pub at: usize,
}

impl<'a> Reader<'a> {
    pub fn v(&mut self) -> Option<u64> {
        let mut x = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.at)?;
            self.at += 1;
            x |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(x);
            }
        }
        None
    }

    /// A count of items taking at least a byte each: no more than the bytes left.
    pub fn count(&mut self) -> Option<usize> {
        let n = self.v()?;
        (n <= (self.b.len() - self.at) as u64).then_some(n as usize)
    }

    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    /// A `v` length and that many bytes, as a range of the body.
    fn range(&mut self) -> Option<Range<usize>> {
        let n = self.count()?;
        let start = self.at;
        self.bytes(n)?;
        Some(start..self.at)
    }

    fn str(&mut self) -> Option<&'a str> {
        let n = self.count()?;
        std::str::from_utf8(self.bytes(n)?).ok()
    }

    fn key(&mut self) -> Option<IndexKey> {
        Some(match *self.bytes(1)?.first()? {
            0 => IndexKey::Null,
            1 => IndexKey::Bool(*self.bytes(1)?.first()? != 0),
            2 => IndexKey::Num(u64::from_le_bytes(self.bytes(8)?.try_into().ok()?)),
            3 => IndexKey::Str(self.str()?.to_string()),
            _ => return None,
        })
    }
}

impl Snapshot {
    /// Find the sections of the body (the row entries and posting lists are read by
    /// [`restore`]).
    fn parse(&mut self) -> Option<()> {
        let rows = self.rows;
        let mut rd = Reader { b: &self.body, at: 0 };
        for _ in 0..rd.count()? {
            self.namespaces.push(rd.str()?.to_string());
        }
        let texts = rd.count()?;
        self.metadata.reserve(texts);
        for _ in 0..texts {
            let raw = rd.range()?;
            std::str::from_utf8(&rd.b[raw.clone()]).ok()?;
            self.metadata.push((raw, rd.range()?));
        }
        self.sig_at = rd.at;
        rd.bytes(rows.checked_mul(4)?)?;
        self.live_at = rd.at;
        rd.bytes(rows.div_ceil(8))?;
        let chunks = rows.div_ceil(CHUNK_ROWS);
        let offsets = rd.bytes((chunks + 1) * 8)?;
        let entries_at = rd.at;
        self.chunks = offsets.chunks_exact(8).map(|o| entries_at.saturating_add(u64::from_le_bytes(o.try_into().unwrap()) as usize)).collect();
        if self.chunks.windows(2).any(|w| w[0] > w[1]) || self.chunks[0] != entries_at || *self.chunks.last()? > self.body.len() {
            return None;
        }
        self.index_at = *self.chunks.last()?;
        Some(())
    }

    /// The metadata text `i` and its packed form.
    pub(super) fn metadata(&self, i: u64) -> Option<(&str, &[u8])> {
        let (raw, packed) = self.metadata.get(usize::try_from(i).ok()?)?;
        // Checked to be UTF-8 by `parse`.
        Some((std::str::from_utf8(&self.body[raw.clone()]).ok()?, &self.body[packed.clone()]))
    }

    pub(super) fn significance(&self) -> Vec<f32> {
        self.body[self.sig_at..self.sig_at + self.rows * 4].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
    }

    pub(super) fn live(&self) -> Vec<bool> {
        let bits = &self.body[self.live_at..];
        (0..self.rows).map(|r| bits[r / 8] & (1 << (r % 8)) != 0).collect()
    }

    /// The row entries of chunk `c` (rows `c · CHUNK_ROWS ..`).
    pub(super) fn row_entries(&self, c: usize) -> &[u8] {
        &self.body[self.chunks[c]..self.chunks[c + 1]]
    }

    /// Every namespace's posting lists, in the state's order; `None` if malformed.
    pub(super) fn posting_lists(&self) -> Option<Vec<PostingLists>> {
        let mut rd = Reader { b: &self.body, at: self.index_at };
        let mut out = Vec::with_capacity(self.namespaces.len());
        for _ in &self.namespaces {
            let mut paths = PostingLists::default();
            for _ in 0..rd.count()? {
                let path = rd.str()?.to_string();
                let mut values = HashMap::default();
                for _ in 0..rd.count()? {
                    let key = rd.key()?;
                    let n = rd.count()?;
                    let rows = RoaringBitmap::deserialize_from(rd.bytes(n)?).ok()?;
                    if rows.max().is_some_and(|m| m as usize >= self.rows) {
                        return None;
                    }
                    values.insert(key, rows);
                }
                paths.insert(path, values);
            }
            out.push(paths);
        }
        (rd.at == self.body.len()).then_some(out)
    }
}

#[cfg(test)]
mod tests;
