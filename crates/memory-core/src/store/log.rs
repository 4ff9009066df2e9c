//! The append-only log: the only file a `TensorStore` writes memories to.
//!
//! # On-disk format (version 2)
//!
//! A data directory holds one current log file, `wal-<gen>.log` (`<gen>` is a zero-padded
//! decimal generation number). Compaction writes generation `gen + 1` beside it (first as
//! `wal-<gen+1>.log.tmp`, fsynced, then renamed) and removes the old one, so at any moment
//! the highest complete generation is the truth.
//!
//! All integers are little-endian.
//!
//! ```text
//! file header (40 bytes)
//!   0  magic      [u8; 8]  b"MEMLOG\0\x01"
//!   8  version    u32      2 (1: puts carry their vectors inline, see below)
//!  12  dims       u32      vector dimensions of every put in this file
//!  16  gen        u64      generation number (matches the file name)
//!  24  high_water u64      the store's last sequence number when the file was started
//!                           (records may be older, from compaction; the next record
//!                           written is after max(high_water, every record's seq))
//!  32  crc        u32      crc32c of bytes 0..32
//!  36  reserved   u32      0
//!
//! record (repeated until end of file)
//!   0  len        u32      length of body in bytes (1 ..= MAX_RECORD)
//!   4  crc        u32      crc32c of body
//!   8  body       [u8; len]
//!
//! body
//!   kind  u8    4 = put (version 2), 2 = update, 3 = delete; 1 = put (version 1 only)
//!   seq   u64   strictly increasing within the file
//!   ts    i64   milliseconds since the Unix epoch when the record was made
//!   put:    ns str16, id str16, text str32, metadata str32 (JSON object text),
//!           significance f32, expires_at i64 (i64::MIN = never),
//!           n_assoc u8, n_assoc × str16, then
//!           kind 4: row u64, vector_crc u32 — the vector is row `row` of the vectors file
//!                   of the same generation (`vectors-<gen>.f32`, row r at byte
//!                   r · dims · 4, little-endian f32), and vector_crc the crc32c of its
//!                   dims · 4 bytes; the k-th put of a file is row k
//!           kind 1: vector [f32; dims] (version 1: the log held every vector itself)
//!   update: ns str16, id str16, flags u8 (bit 0 metadata, bit 1 significance),
//!           [metadata str32], [significance f32]
//!   delete: ns str16, id str16
//! str16 = u16 byte length + UTF-8 bytes; str32 = u32 byte length + UTF-8 bytes.
//! ```
//!
//! The vectors file is the one durable copy of each vector: a put group writes its rows
//! there before its log records and fsyncs both before it is acknowledged. A version-1 log
//! is converted at open into a version-2 generation (see `store/convert.rs`).
//!
//! # Recovery
//!
//! Opening replays every record. A tail that is incomplete (a header or body running past
//! the end of the file, a zero-filled tail, or a bad checksum on the very last record) is a
//! torn write and is truncated. Any other bad record is corruption: open refuses with an
//! error naming the file and byte offset; [`repair`](super::repair::repair) keeps every intact
//! record — before the damage and, resynchronising on the next valid record, after it — and
//! sets the damaged bytes aside in a file it names. Naming, mapping and appending to
//! the files themselves: `store/logfile.rs`.

use crate::error::{Error, Result};

pub const MAGIC: [u8; 8] = *b"MEMLOG\0\x01";
pub const VERSION: u32 = 2;
/// The version whose puts carry their vectors inline (read, and converted at open).
pub const VERSION_INLINE: u32 = 1;
pub const HEADER_LEN: usize = 40;
/// Largest body accepted; anything larger is corruption (text ≤ 64 KiB, metadata ≤ 16 KiB,
/// vectors ≤ 16k dims leave plenty of room).
pub const MAX_RECORD: usize = 16 << 20;

pub const KIND_PUT: u8 = 1;
pub const KIND_UPDATE: u8 = 2;
pub const KIND_DELETE: u8 = 3;
/// A put whose vector is a row of the vectors file (version 2).
pub const KIND_PUT_ROW: u8 = 4;
/// Bytes a version-2 put body ends with: row u64, vector_crc u32.
pub const ROW_REF_LEN: usize = 12;

pub const NO_EXPIRY: i64 = i64::MIN;

#[derive(Debug, Clone, PartialEq)]
pub struct PutRecord {
    pub seq: u64,
    pub ts: i64,
    pub namespace: String,
    pub id: String,
    pub text: String,
    pub metadata: String,
    pub significance: f32,
    pub expires_at: i64,
    pub associations: Vec<String>,
    pub vector: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpdateRecord {
    pub seq: u64,
    pub ts: i64,
    pub namespace: String,
    pub id: String,
    pub metadata: Option<String>,
    pub significance: Option<f32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeleteRecord {
    pub seq: u64,
    pub ts: i64,
    pub namespace: String,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Put(PutRecord),
    Update(UpdateRecord),
    Delete(DeleteRecord),
}

impl Record {
    pub fn seq(&self) -> u64 {
        match self {
            Record::Put(r) => r.seq,
            Record::Update(r) => r.seq,
            Record::Delete(r) => r.seq,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// [`VERSION`], or [`VERSION_INLINE`] for a log written by an older build.
    pub version: u32,
    pub dims: u32,
    pub gen: u64,
    pub high_water: u64,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&self.dims.to_le_bytes());
        b[16..24].copy_from_slice(&self.gen.to_le_bytes());
        b[24..32].copy_from_slice(&self.high_water.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..32]);
        b[32..36].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8], file: &str) -> Result<Header> {
        let corrupt = |reason: &str| Error::Corrupt { file: file.to_string(), offset: 0, reason: reason.to_string() };
        if b.len() < HEADER_LEN {
            return Err(corrupt("file shorter than its 40-byte header"));
        }
        if b[0..8] != MAGIC {
            return Err(corrupt("bad magic (not a memory-server log)"));
        }
        let crc = u32::from_le_bytes(b[32..36].try_into().unwrap());
        if crc != crc32c::crc32c(&b[0..32]) {
            return Err(corrupt("header checksum mismatch"));
        }
        let version = u32::from_le_bytes(b[8..12].try_into().unwrap());
        if version != VERSION && version != VERSION_INLINE {
            return Err(corrupt(&format!("unsupported log version {version} (this build reads {VERSION_INLINE} and {VERSION})")));
        }
        Ok(Header {
            version,
            dims: u32::from_le_bytes(b[12..16].try_into().unwrap()),
            gen: u64::from_le_bytes(b[16..24].try_into().unwrap()),
            high_water: u64::from_le_bytes(b[24..32].try_into().unwrap()),
        })
    }
}

// ---------- encoding ----------

fn put_str16(buf: &mut Vec<u8>, s: &str) {
    debug_assert!(s.len() <= u16::MAX as usize);
    buf.extend_from_slice(&(s.len() as u16).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn put_str32(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// Append one framed record (len, crc, body) to `buf`.
pub fn encode_record(buf: &mut Vec<u8>, rec: &Record) {
    match rec {
        Record::Put(r) => encode_put_inline(buf, r),
        Record::Update(r) => {
            let (start, body_start) = begin(buf);
            buf.push(KIND_UPDATE);
            buf.extend_from_slice(&r.seq.to_le_bytes());
            buf.extend_from_slice(&r.ts.to_le_bytes());
            put_str16(buf, &r.namespace);
            put_str16(buf, &r.id);
            let flags = (r.metadata.is_some() as u8) | ((r.significance.is_some() as u8) << 1);
            buf.push(flags);
            if let Some(m) = &r.metadata {
                put_str32(buf, m);
            }
            if let Some(s) = r.significance {
                buf.extend_from_slice(&s.to_le_bytes());
            }
            frame(buf, start, body_start);
        }
        Record::Delete(r) => {
            let (start, body_start) = begin(buf);
            buf.push(KIND_DELETE);
            buf.extend_from_slice(&r.seq.to_le_bytes());
            buf.extend_from_slice(&r.ts.to_le_bytes());
            put_str16(buf, &r.namespace);
            put_str16(buf, &r.id);
            frame(buf, start, body_start);
        }
    }
}

/// A version-2 put (kind 4) whose vector is row `row` of the vectors file: the record holds
/// the row and the crc32c of the vector's bytes, not the vector (the writer writes the row to
/// the vectors file itself).
pub fn encode_put(buf: &mut Vec<u8>, r: &PutRecord, row: u64) {
    encode_put_ref(buf, r, row, vector_crc(&r.vector));
}

/// [`encode_put`] with the vector's crc already known (compaction re-encodes puts whose
/// vector it does not hold as a `Vec`).
pub fn encode_put_ref(buf: &mut Vec<u8>, r: &PutRecord, row: u64, crc: u32) {
    buf.reserve(8 + 1 + 8 + 8 + 2 + r.namespace.len() + 2 + r.id.len() + 4 + r.text.len() + 4 + r.metadata.len() + 4 + 8 + 1 + ROW_REF_LEN);
    let (start, body_start) = begin(buf);
    encode_put_fields(buf, r, KIND_PUT_ROW);
    buf.extend_from_slice(&row.to_le_bytes());
    buf.extend_from_slice(&crc.to_le_bytes());
    frame(buf, start, body_start);
}

/// The crc32c of a vector's little-endian bytes, as a version-2 put records it.
pub fn vector_crc(v: &[f32]) -> u32 {
    crc32c::crc32c(f32_bytes(v).as_ref())
}

/// A vector's little-endian bytes (borrowed on little-endian targets).
pub fn f32_bytes(v: &[f32]) -> std::borrow::Cow<'_, [u8]> {
    #[cfg(target_endian = "little")]
    {
        // SAFETY: any f32 is 4 plain bytes; on a little-endian target they are its LE encoding.
        std::borrow::Cow::Borrowed(unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), v.len() * 4) })
    }
    #[cfg(not(target_endian = "little"))]
    {
        std::borrow::Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }
}

/// A copy of a framed version-2 put (`frame`: its 8-byte prefix and body) pointing at row
/// `row` instead: repair and compaction renumber rows without decoding the rest.
pub fn with_row(frame_bytes: &[u8], row: u64) -> Vec<u8> {
    let mut out = frame_bytes.to_vec();
    let n = out.len();
    out[n - ROW_REF_LEN..n - 4].copy_from_slice(&row.to_le_bytes());
    let crc = crc32c::crc32c(&out[8..]);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    out
}

/// A version-1 put (kind 1) carrying its vector inline. Only a version-1 log holds these
/// (this build converts such a log at open); kept to read them and to write test fixtures.
pub fn encode_put_inline(buf: &mut Vec<u8>, r: &PutRecord) {
    buf.reserve(8 + 1 + 8 + 8 + 2 + r.namespace.len() + 2 + r.id.len() + 4 + r.text.len() + 4 + r.metadata.len() + 4 + 8 + 1 + r.vector.len() * 4);
    let (start, body_start) = begin(buf);
    encode_put_fields(buf, r, KIND_PUT);
    put_f32s(buf, &r.vector);
    frame(buf, start, body_start);
}

/// The fields every put starts with, up to its associations.
fn encode_put_fields(buf: &mut Vec<u8>, r: &PutRecord, kind: u8) {
    buf.push(kind);
    buf.extend_from_slice(&r.seq.to_le_bytes());
    buf.extend_from_slice(&r.ts.to_le_bytes());
    put_str16(buf, &r.namespace);
    put_str16(buf, &r.id);
    put_str32(buf, &r.text);
    put_str32(buf, &r.metadata);
    buf.extend_from_slice(&r.significance.to_le_bytes());
    buf.extend_from_slice(&r.expires_at.to_le_bytes());
    buf.push(r.associations.len() as u8);
    for a in &r.associations {
        put_str16(buf, a);
    }
}

/// Bytes [`encode_put`] writes for a put with these field lengths (frame included), plus its
/// row in the vectors file: what a memory costs in a compacted generation, which is how the
/// store counts live and garbage bytes.
pub fn put_len(namespace: usize, id: usize, text: usize, metadata: usize, associations: impl Iterator<Item = usize>, dims: usize) -> u64 {
    let assoc: usize = associations.map(|a| 2 + a).sum();
    (8 + 1 + 8 + 8 + 2 + namespace + 2 + id + 4 + text + 4 + metadata + 4 + 8 + 1 + assoc + ROW_REF_LEN + dims * 4) as u64
}

/// Little-endian f32s (one copy on little-endian targets).
fn put_f32s(buf: &mut Vec<u8>, v: &[f32]) {
    #[cfg(target_endian = "little")]
    {
        // SAFETY: any f32 is 4 plain bytes; on a little-endian target they are its LE encoding.
        buf.extend_from_slice(unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), v.len() * 4) });
    }
    #[cfg(not(target_endian = "little"))]
    for x in v {
        buf.extend_from_slice(&x.to_le_bytes());
    }
}

/// Reserve the 8-byte prefix (len, crc) of a record; returns where it and the body start.
fn begin(buf: &mut Vec<u8>) -> (usize, usize) {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; 8]);
    (start, buf.len())
}

/// Fill in the length and checksum of the record whose prefix starts at `start`.
fn frame(buf: &mut [u8], start: usize, body_start: usize) {
    let len = (buf.len() - body_start) as u32;
    let crc = crc32c::crc32c(&buf[body_start..]);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

// ---------- decoding ----------

struct Cursor<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.p + n > self.b.len() {
            return None;
        }
        let s = &self.b[self.p..self.p + n];
        self.p += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|s| u16::from_le_bytes(s.try_into().unwrap()))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|s| u32::from_le_bytes(s.try_into().unwrap()))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|s| u64::from_le_bytes(s.try_into().unwrap()))
    }
    fn i64(&mut self) -> Option<i64> {
        self.u64().map(|v| v as i64)
    }
    fn f32(&mut self) -> Option<f32> {
        self.u32().map(f32::from_bits)
    }
}

/// Where a decoded put's vector is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PutVector<'a> {
    /// `dims` little-endian f32 in the record (version 1).
    Inline(&'a [u8]),
    /// Row `row` of the vectors file, whose bytes have crc32c `crc` (version 2).
    Row { row: u64, crc: u32 },
}

/// A record decoded without copying: strings and the vector bytes borrow the log image.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordRef<'a> {
    Put {
        seq: u64,
        ts: i64,
        namespace: &'a str,
        id: &'a str,
        text: &'a str,
        metadata: &'a str,
        significance: f32,
        expires_at: i64,
        associations: Vec<&'a str>,
        vector: PutVector<'a>,
    },
    Update { seq: u64, ts: i64, namespace: &'a str, id: &'a str, metadata: Option<&'a str>, significance: Option<f32> },
    Delete { seq: u64, ts: i64, namespace: &'a str, id: &'a str },
}

impl RecordRef<'_> {
    pub fn seq(&self) -> u64 {
        match self {
            RecordRef::Put { seq, .. } | RecordRef::Update { seq, .. } | RecordRef::Delete { seq, .. } => *seq,
        }
    }

    pub fn to_owned(&self) -> Record {
        match self {
            RecordRef::Put { seq, ts, namespace, id, text, metadata, significance, expires_at, associations, vector } => Record::Put(PutRecord {
                seq: *seq,
                ts: *ts,
                namespace: namespace.to_string(),
                id: id.to_string(),
                text: text.to_string(),
                metadata: metadata.to_string(),
                significance: *significance,
                expires_at: *expires_at,
                associations: associations.iter().map(|a| a.to_string()).collect(),
                // A version-2 put's vector is in the vectors file, not here.
                vector: match vector {
                    PutVector::Inline(b) => b.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
                    PutVector::Row { .. } => Vec::new(),
                },
            }),
            RecordRef::Update { seq, ts, namespace, id, metadata, significance } => Record::Update(UpdateRecord {
                seq: *seq,
                ts: *ts,
                namespace: namespace.to_string(),
                id: id.to_string(),
                metadata: metadata.map(str::to_string),
                significance: *significance,
            }),
            RecordRef::Delete { seq, ts, namespace, id } => {
                Record::Delete(DeleteRecord { seq: *seq, ts: *ts, namespace: namespace.to_string(), id: id.to_string() })
            }
        }
    }
}

impl<'a> Cursor<'a> {
    fn str16_ref(&mut self) -> Option<&'a str> {
        let n = self.u16()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }
    fn str32_ref(&mut self) -> Option<&'a str> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }
}

/// Decode a record body (already checksum-verified) without copying. `None` means malformed.
pub fn decode_body_ref(body: &[u8], dims: usize) -> Option<RecordRef<'_>> {
    decode_body_with(body, dims, false)
}

/// [`decode_body_ref`], but a put comes without its metadata (`""`) and associations (none):
/// their bytes are only stepped over (the record still has to be well formed, to its last
/// byte). For the records a state snapshot covers, whose metadata and associations the
/// snapshot gives (`store/snapshot`): an open then neither checks those strings' UTF-8 nor
/// allocates a list per put.
fn decode_body_with(body: &[u8], dims: usize, without_metadata: bool) -> Option<RecordRef<'_>> {
    let mut c = Cursor { b: body, p: 0 };
    let kind = c.u8()?;
    let seq = c.u64()?;
    let ts = c.i64()?;
    let rec = match kind {
        KIND_PUT | KIND_PUT_ROW => {
            let namespace = c.str16_ref()?;
            let id = c.str16_ref()?;
            let text = c.str32_ref()?;
            let metadata = if without_metadata {
                let n = c.u32()? as usize;
                c.take(n)?;
                ""
            } else {
                c.str32_ref()?
            };
            let significance = c.f32()?;
            let expires_at = c.i64()?;
            let n = c.u8()? as usize;
            let mut associations = Vec::with_capacity(if without_metadata { 0 } else { n });
            for _ in 0..n {
                if without_metadata {
                    let len = c.u16()? as usize;
                    c.take(len)?;
                } else {
                    associations.push(c.str16_ref()?);
                }
            }
            let vector = if kind == KIND_PUT {
                PutVector::Inline(c.take(dims * 4)?)
            } else {
                PutVector::Row { row: c.u64()?, crc: c.u32()? }
            };
            RecordRef::Put { seq, ts, namespace, id, text, metadata, significance, expires_at, associations, vector }
        }
        KIND_UPDATE => {
            let namespace = c.str16_ref()?;
            let id = c.str16_ref()?;
            let flags = c.u8()?;
            let metadata = if flags & 1 != 0 { Some(c.str32_ref()?) } else { None };
            let significance = if flags & 2 != 0 { Some(c.f32()?) } else { None };
            RecordRef::Update { seq, ts, namespace, id, metadata, significance }
        }
        KIND_DELETE => {
            let namespace = c.str16_ref()?;
            let id = c.str16_ref()?;
            RecordRef::Delete { seq, ts, namespace, id }
        }
        _ => return None,
    };
    if c.p != body.len() {
        return None;
    }
    Some(rec)
}

/// Decode a record body (already checksum-verified). `None` means malformed.
pub fn decode_body(body: &[u8], dims: usize) -> Option<Record> {
    decode_body_ref(body, dims).map(|r| r.to_owned())
}

/// Record frames `(offset, body length)` found by following length prefixes only (no
/// checksums). `true` when they cover the file exactly; `false` when something at the tail
/// does not frame (the caller falls back to [`scan`] to classify it).
pub fn frames(bytes: &[u8]) -> (Vec<(usize, usize)>, bool) {
    frames_from(bytes, HEADER_LEN.min(bytes.len()))
}

/// [`frames`] of records starting at `start` (e.g. a slice of a log holding no header).
pub fn frames_from(bytes: &[u8], start: usize) -> (Vec<(usize, usize)>, bool) {
    let total = bytes.len();
    let mut off = start;
    let mut out = Vec::with_capacity(total / 512 + 1);
    while off < total {
        if total - off < 8 {
            return (out, false);
        }
        let len = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
        if len == 0 || len > MAX_RECORD || off + 8 + len > total {
            return (out, false);
        }
        out.push((off, len));
        off += 8 + len;
    }
    (out, true)
}

/// Checksum and decode one frame found by [`frames`].
pub fn check_frame(bytes: &[u8], off: usize, len: usize, dims: usize) -> Option<RecordRef<'_>> {
    check_frame_with(bytes, off, len, dims, false)
}

/// [`check_frame`] for a record a state snapshot covers: a put comes without its metadata
/// and associations (see [`decode_body_with`]); its checksum is verified all the same.
pub fn check_covered_frame(bytes: &[u8], off: usize, len: usize, dims: usize) -> Option<RecordRef<'_>> {
    check_frame_with(bytes, off, len, dims, true)
}

fn check_frame_with(bytes: &[u8], off: usize, len: usize, dims: usize, without_metadata: bool) -> Option<RecordRef<'_>> {
    let crc = u32::from_le_bytes(bytes[off + 4..off + 8].try_into().unwrap());
    let body = &bytes[off + 8..off + 8 + len];
    if crc32c::crc32c(body) != crc {
        return None;
    }
    decode_body_with(body, dims, without_metadata)
}

/// What a scan of a log file found.
#[derive(Debug)]
pub enum ScanEnd {
    /// Every byte was a valid record.
    Clean,
    /// A torn tail starting at this offset (safe to truncate).
    Torn { offset: u64, reason: String },
    /// Corruption before the tail.
    Corrupt { offset: u64, reason: String },
}

pub struct Scan {
    pub header: Header,
    /// Offset just past the last valid record.
    pub valid_len: u64,
    pub end: ScanEnd,
    pub last_seq: u64,
}

/// Scan a whole log image, calling `on_record` for each valid record in order.
pub fn scan(bytes: &[u8], file: &str, mut on_record: impl FnMut(Record, u64)) -> Result<Scan> {
    let header = Header::decode(bytes, file)?;
    let dims = header.dims as usize;
    let mut off = HEADER_LEN;
    let mut last_seq = 0u64;
    let total = bytes.len();
    let end = loop {
        if off == total {
            break ScanEnd::Clean;
        }
        let o = off as u64;
        if total - off < 8 {
            break ScanEnd::Torn { offset: o, reason: "partial record header at end of file".into() };
        }
        let len = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(bytes[off + 4..off + 8].try_into().unwrap());
        if len == 0 {
            if bytes[off..].iter().all(|&b| b == 0) {
                break ScanEnd::Torn { offset: o, reason: "zero-filled tail".into() };
            }
            break ScanEnd::Corrupt { offset: o, reason: "record of length 0".into() };
        }
        if off + 8 + len > total {
            // Looks like a torn write — unless a valid later record follows, which means the
            // length field itself is damaged (truncating here would drop acknowledged records).
            if let Some(p) = find_valid_record(bytes, off + 8, dims, last_seq) {
                break ScanEnd::Corrupt {
                    offset: o,
                    reason: format!("record length {len} runs past end of file, but a valid record follows at offset {p}"),
                };
            }
            break ScanEnd::Torn { offset: o, reason: format!("record length {len} runs past end of file") };
        }
        if len > MAX_RECORD {
            break ScanEnd::Corrupt { offset: o, reason: format!("record length {len} over the {MAX_RECORD}-byte limit") };
        }
        let body = &bytes[off + 8..off + 8 + len];
        if crc32c::crc32c(body) != crc {
            if off + 8 + len == total {
                break ScanEnd::Torn { offset: o, reason: "checksum mismatch on the last record".into() };
            }
            // A partly written last record followed by a zero-filled tail (the file grew but
            // the data never reached the disk) is a torn write too.
            if bytes[off + 8 + len..].iter().all(|&b| b == 0) {
                break ScanEnd::Torn { offset: o, reason: "checksum mismatch on the last record before a zero-filled tail".into() };
            }
            break ScanEnd::Corrupt { offset: o, reason: "checksum mismatch".into() };
        }
        let Some(rec) = decode_body(body, dims) else {
            break ScanEnd::Corrupt { offset: o, reason: "malformed record body".into() };
        };
        if rec.seq() <= last_seq {
            break ScanEnd::Corrupt {
                offset: o,
                reason: format!("sequence number {} not after {}", rec.seq(), last_seq),
            };
        }
        last_seq = rec.seq();
        on_record(rec, o);
        off += 8 + len;
    };
    let valid_len = match &end {
        ScanEnd::Clean => total as u64,
        ScanEnd::Torn { offset, .. } | ScanEnd::Corrupt { offset, .. } => *offset,
    };
    let last_seq = last_seq.max(header.high_water);
    Ok(Scan { header, valid_len, end, last_seq })
}

/// The first offset at or after `from` holding a complete, checksum-valid, decodable record
/// with a sequence number after `after_seq` (used to tell a damaged length field from a torn
/// tail, and by repair to resynchronise after damage).
pub fn find_valid_record(bytes: &[u8], from: usize, dims: usize, after_seq: u64) -> Option<usize> {
    let total = bytes.len();
    let mut p = from;
    while p + 8 + 17 <= total {
        // Cheap filters first (a plausible length and kind) before the checksum.
        let len = u32::from_le_bytes(bytes[p..p + 4].try_into().unwrap()) as usize;
        if (17..=MAX_RECORD).contains(&len) && p + 8 + len <= total && matches!(bytes[p + 8], KIND_PUT | KIND_UPDATE | KIND_DELETE | KIND_PUT_ROW) && valid_record_at(bytes, p, dims).is_some_and(|(_, seq)| seq > after_seq) {
            return Some(p);
        }
        p += 1;
    }
    None
}

/// The complete, checksum-valid, decodable record at `off`, if there is one: its body length
/// and sequence number.
pub fn valid_record_at(bytes: &[u8], off: usize, dims: usize) -> Option<(usize, u64)> {
    let total = bytes.len();
    if off + 8 > total {
        return None;
    }
    let len = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
    if len == 0 || len > MAX_RECORD || off + 8 + len > total {
        return None;
    }
    let crc = u32::from_le_bytes(bytes[off + 4..off + 8].try_into().unwrap());
    let body = &bytes[off + 8..off + 8 + len];
    if crc32c::crc32c(body) != crc {
        return None;
    }
    decode_body_ref(body, dims).map(|r| (len, r.seq()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_len_is_what_encode_put_writes() {
        let r = PutRecord {
            seq: 9,
            ts: 1,
            namespace: "ns-é".into(),
            id: "id".into(),
            text: "some text".into(),
            metadata: r#"{"a":1}"#.into(),
            significance: 0.5,
            expires_at: NO_EXPIRY,
            associations: vec!["x".into(), "yz".into()],
            vector: vec![0.25; 12],
        };
        let mut buf = Vec::new();
        encode_put(&mut buf, &r, 7);
        let n = put_len(r.namespace.len(), r.id.len(), r.text.len(), r.metadata.len(), r.associations.iter().map(|a| a.len()), 12);
        assert_eq!(n, buf.len() as u64 + 12 * 4, "the record plus its row in the vectors file");
    }

    #[test]
    fn a_put_points_at_its_row_and_with_row_renumbers_it() {
        let r = PutRecord { seq: 3, ts: 2, namespace: "n".into(), id: "a".into(), text: "t".into(), metadata: "{}".into(), significance: 0.25, expires_at: NO_EXPIRY, associations: vec![], vector: vec![0.5, -1.0, 2.0] };
        let mut buf = Vec::new();
        encode_put(&mut buf, &r, 41);
        let crc = vector_crc(&r.vector);
        let Some(RecordRef::Put { vector, seq, .. }) = check_frame(&buf, 0, buf.len() - 8, 3) else { panic!("does not decode") };
        assert_eq!((vector, seq), (PutVector::Row { row: 41, crc }, 3));
        let moved = with_row(&buf, 5);
        let Some(RecordRef::Put { vector, .. }) = check_frame(&moved, 0, moved.len() - 8, 3) else { panic!("renumbered put does not verify") };
        assert_eq!(vector, PutVector::Row { row: 5, crc });
        let mut inline = Vec::new();
        encode_put_inline(&mut inline, &r);
        let Some(RecordRef::Put { vector: PutVector::Inline(b), .. }) = check_frame(&inline, 0, inline.len() - 8, 3) else { panic!("inline put does not decode") };
        assert_eq!(b.len(), 12);
    }
}
