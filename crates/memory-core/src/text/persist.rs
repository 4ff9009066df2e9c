//! The text index on disk, so that reopening a store does not rebuild it.
//!
//! `text-<gen>.idx` sits beside the log of generation `gen`. The writer writes it when the
//! store closes (`store/writer`, at shutdown), for every row the state holds then; open
//! reads it on another core while the log replays, and takes it only if it was written by
//! this format and analyzer for this generation and for the same first rows as the log
//! gives now (a digest of their sequence numbers, namespaces and texts). Rows past those, and
//! rows deleted since, come from the replayed state (the log tail: memories stored after
//! the file was written, by a run that then crashed, or opened without the index). Anything
//! else — no file, a torn or truncated one, another generation, another analyzer, a digest
//! that differs — and the index is rebuilt from the log as before. The log stays the truth:
//! the file only saves the work of analysing every text again.
//!
//! Layout (all integers little-endian; `v` is an unsigned LEB128 varint):
//!
//! ```text
//! header (56 bytes): "MSTXTIDX" | format u32 | analyzer version u32 | gen u64 | rows u64
//!                    | row digest u64 | body length u64 | body crc32c u32 | header crc32c u32
//! body:  rows v | live bitmap, (rows + 7) / 8 bytes (bit r of byte r / 8: row r was live)
//!        | each live row's length in terms, v, in row order
//!        | namespaces v | per namespace: name (len v, UTF-8) | docs v | total length v | terms v
//!          | per term: term (len v, UTF-8) | entries v | rows, v each, the first as is and
//!            the others as the gap to the previous | term frequencies, v each
//! ```
//!
//! Only live rows' postings are written, so a loaded index is what a rebuild would give
//! (term ids aside). The format is ours, written by hand: it is a few dozen lines, and
//! loading it must be a single pass over a compact buffer for reopen to be fast.

use std::path::Path;

use super::analyzer::ANALYZER_VERSION;
use super::index::{Postings, TextIndex};
use crate::error::Result;
use crate::store::derived_file;
use crate::store::state::State;

const MAGIC: &[u8; 8] = b"MSTXTIDX";
/// Bumped when the layout changes: a file of another format is rebuilt, not read.
pub const FORMAT: u32 = 1;
const HEADER_LEN: usize = 56;

/// Files are `text-<gen>.idx`.
const PREFIX: &str = "text";

/// The file name of generation `gen`'s index.
pub fn file_name(gen: u64) -> String {
    derived_file::file_name(PREFIX, gen)
}

/// The generation a file name belongs to, for `text-<gen>.idx` and its `.tmp`.
pub fn generation_of(name: &str) -> Option<u64> {
    derived_file::generation_of(PREFIX, name)
}

/// Identifies the first `rows` rows of a state, in order: their sequence numbers (unique
/// within a generation), namespaces, and texts (length and CRC32C, which stays the same
/// from build to build, unlike the hash maps' hasher). The index is a function of exactly
/// these (and of which rows are live, checked apart).
fn row_digest(st: &State, rows: usize) -> u64 {
    let rows = &st.rows[..rows];
    derived_file::row_digest(rows.len(), |r| {
        let text = rows[r].text().as_bytes();
        [rows[r].seq, st.ns_col[r] as u64, text.len() as u64, crc32c::crc32c(text) as u64]
    })
}

fn put_v(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push(x as u8 | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_v(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// The body of the file for `st` (every row it holds).
fn encode_body(st: &State) -> Vec<u8> {
    let rows = st.len();
    let mut out = Vec::with_capacity(rows * 48);
    put_v(&mut out, rows as u64);
    let mut bits = vec![0u8; rows.div_ceil(8)];
    for (r, _) in st.live_col.iter().enumerate().filter(|(_, &l)| l) {
        bits[r / 8] |= 1 << (r % 8);
    }
    out.extend_from_slice(&bits);
    for (r, _) in st.live_col.iter().enumerate().filter(|(_, &l)| l) {
        put_v(&mut out, st.text_len[r] as u64);
    }
    put_v(&mut out, st.namespaces.len() as u64);
    for ns in &st.namespaces {
        let ix = &ns.text;
        put_str(&mut out, &ns.name);
        put_v(&mut out, ix.docs as u64);
        put_v(&mut out, ix.total_len);
        let mut terms: Vec<Option<&str>> = vec![None; ix.lists.len()];
        for (t, &id) in &ix.ids {
            terms[id as usize] = Some(t);
        }
        let kept: Vec<(&str, &Postings)> = terms.iter().zip(&ix.lists).filter(|(_, p)| p.live > 0).map(|(t, p)| (t.unwrap_or_default(), p)).collect();
        put_v(&mut out, kept.len() as u64);
        let mut live_rows: Vec<(u32, u16)> = Vec::new();
        for (term, p) in kept {
            live_rows.clear();
            live_rows.extend(p.rows.iter().zip(&p.tfs).filter(|(&r, _)| st.live_col[r as usize]).map(|(&r, &tf)| (r, tf)));
            put_str(&mut out, term);
            put_v(&mut out, live_rows.len() as u64);
            let mut prev = 0u32;
            for (i, &(r, _)) in live_rows.iter().enumerate() {
                put_v(&mut out, if i == 0 { r } else { r - prev } as u64);
                prev = r;
            }
            for &(_, tf) in &live_rows {
                put_v(&mut out, tf as u64);
            }
        }
    }
    out
}

/// Write `st`'s text index as generation `gen`'s file in `dir` (a temporary file renamed
/// over the old one), and remove other generations' files. Not fsynced: a file torn by a
/// crash fails its checksum and the next open rebuilds.
pub fn save(dir: &Path, gen: u64, st: &State) -> Result<()> {
    if !st.text_on || st.defer_text {
        return Ok(());
    }
    let body = encode_body(st);
    let mut head = Vec::with_capacity(HEADER_LEN);
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&FORMAT.to_le_bytes());
    head.extend_from_slice(&ANALYZER_VERSION.to_le_bytes());
    head.extend_from_slice(&gen.to_le_bytes());
    head.extend_from_slice(&(st.len() as u64).to_le_bytes());
    head.extend_from_slice(&row_digest(st, st.len()).to_le_bytes());
    head.extend_from_slice(&(body.len() as u64).to_le_bytes());
    head.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    let crc = crc32c::crc32c(&head);
    head.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(head.len(), HEADER_LEN);
    derived_file::write(dir, PREFIX, gen, &head, &body)
}

/// Remove the index files (and leftover temporary files) of generations other than `gen`.
pub fn remove_other_generations(dir: &Path, gen: u64) {
    derived_file::remove_other_generations(dir, PREFIX, gen)
}

/// A file read back, not yet checked against the replayed state.
pub struct Persisted {
    rows: usize,
    digest: u64,
    /// Bit r: row r was live when the file was written.
    live: Vec<u8>,
    /// The lengths of those live rows, in row order.
    lens: Vec<u32>,
    namespaces: Vec<(String, TextIndex)>,
}

impl Persisted {
    fn was_live(&self, row: usize) -> bool {
        self.live[row / 8] & (1 << (row % 8)) != 0
    }
}

/// Read generation `gen`'s file; `None` if there is none or it is not whole and ours.
pub fn load(dir: &Path, gen: u64) -> Option<Persisted> {
    let bytes = std::fs::read(dir.join(file_name(gen))).ok()?;
    decode(&bytes, gen)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn decode(bytes: &[u8], gen: u64) -> Option<Persisted> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC || crc32c::crc32c(&bytes[..52]) != u32_at(bytes, 52) {
        return None;
    }
    if u32_at(bytes, 8) != FORMAT || u32_at(bytes, 12) != ANALYZER_VERSION || u64_at(bytes, 16) != gen {
        return None;
    }
    let (rows, digest, body_len) = (u64_at(bytes, 24), u64_at(bytes, 32), u64_at(bytes, 40));
    let body = &bytes[HEADER_LEN..];
    if body.len() as u64 != body_len || crc32c::crc32c(body) != u32_at(bytes, 48) {
        return None;
    }
    let mut p = decode_body(&mut Reader { b: body, at: 0 })?;
    if p.rows as u64 != rows {
        return None;
    }
    p.digest = digest;
    Some(p)
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn v(&mut self) -> Option<u64> {
        let mut x = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.at)?;
            self.at += 1;
            x |= ((byte & 0x7f) as u64) << shift;
            if byte < 0x80 {
                return Some(x);
            }
        }
        None
    }

    /// A count of items taking at least a byte each: no more than the bytes left.
    fn count(&mut self) -> Option<usize> {
        let n = self.v()?;
        (n <= (self.b.len() - self.at) as u64).then_some(n as usize)
    }

    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    fn str(&mut self) -> Option<&'a str> {
        let n = self.count()?;
        std::str::from_utf8(self.bytes(n)?).ok()
    }
}

fn decode_body(rd: &mut Reader) -> Option<Persisted> {
    let rows = usize::try_from(rd.v()?).ok().filter(|&r| r <= u32::MAX as usize)?;
    let live = rd.bytes(rows.div_ceil(8))?.to_vec();
    let live_rows: usize = live.iter().map(|b| b.count_ones() as usize).sum();
    let mut lens = Vec::with_capacity(live_rows.min(rd.b.len()));
    for _ in 0..live_rows {
        lens.push(u32::try_from(rd.v()?).ok()?);
    }
    let mut p = Persisted { rows, digest: 0, live, lens, namespaces: Vec::new() };
    let spaces = rd.count()?;
    for _ in 0..spaces {
        let name = rd.str()?.to_string();
        let mut ix = TextIndex { docs: u32::try_from(rd.v()?).ok()?, total_len: rd.v()?, ..TextIndex::default() };
        let terms = rd.count()?;
        ix.lists.reserve(terms);
        for id in 0..terms {
            let term = rd.str()?;
            let n = rd.count()?;
            let mut list = Postings { rows: Vec::with_capacity(n), tfs: Vec::with_capacity(n), live: n as u32 };
            let mut row = 0u64;
            for i in 0..n {
                let d = rd.v()?;
                if i > 0 && d == 0 {
                    return None; // rows strictly ascend
                }
                row += d;
                if row >= rows as u64 || !p.was_live(row as usize) {
                    return None;
                }
                list.rows.push(row as u32);
            }
            for _ in 0..n {
                list.tfs.push(u16::try_from(rd.v()?).ok().filter(|&tf| tf > 0)?);
            }
            if ix.ids.insert(Box::from(term), id as u32).is_some() {
                return None;
            }
            ix.lists.push(list);
        }
        p.namespaces.push((name, ix));
    }
    (rd.at == rd.b.len()).then_some(p)
}

/// Take `p` as the text index of `st` (replayed, its text index deferred) if it describes
/// the same first rows, then index the rows past them and drop the rows deleted since.
/// Returns false, leaving `st` as it was, if it does not fit. (The store goes through
/// [`finish`], which checks under the read lock and installs under the write lock; this is
/// the same on a plain state, for the tests.)
#[cfg(test)]
pub fn restore(p: Persisted, st: &mut State) -> bool {
    if !fits(&p, st) {
        return false;
    }
    install(p, st);
    true
}

/// [`restore`] once [`fits`] holds.
fn install(p: Persisted, st: &mut State) {
    let Persisted { rows, live, lens, namespaces, .. } = p;
    // Namespaces are numbered in order of first appearance, so the file's are the first.
    for (ns, (_, ix)) in st.namespaces.iter_mut().zip(namespaces) {
        ns.text = ix;
    }
    st.defer_text = false;
    st.text_len.clear();
    st.text_len.resize(st.len(), 0);
    let was_live = |r: usize| live[r / 8] & (1 << (r % 8)) != 0;
    let mut lens = lens.into_iter();
    for r in 0..rows {
        if was_live(r) {
            st.text_len[r] = lens.next().expect("one length per live row");
        }
    }
    // Deleted since the file was written (expired and swept, deleted, replaced).
    for r in 0..rows {
        if was_live(r) && !st.live_col[r] {
            let ns = &mut st.namespaces[st.ns_col[r] as usize];
            ns.text.remove(r as u32, st.rows[r].text(), st.text_len[r], &st.live_col);
        }
    }
    // Stored since (the log tail), one at a time as the writer would have.
    for r in rows..st.len() {
        if st.live_col[r] {
            let ns = &mut st.namespaces[st.ns_col[r] as usize];
            st.text_len[r] = ns.text.add(r as u32, st.rows[r].text());
        }
    }
}

/// The file describes `st`'s first rows: the same rows in the same namespaces (numbered
/// alike), and no row live now that was not live then.
fn fits(p: &Persisted, st: &State) -> bool {
    if !st.text_on || p.rows > st.len() || p.namespaces.len() > st.namespaces.len() || row_digest(st, p.rows) != p.digest {
        return false;
    }
    if p.namespaces.iter().zip(&st.namespaces).any(|((name, _), ns)| *name != ns.name) {
        return false;
    }
    (0..p.rows).all(|r| if p.was_live(r) { (st.ns_col[r] as usize) < p.namespaces.len() } else { !st.live_col[r] })
}

/// After an open (the writer's idle work, `store/writer`): the persisted index `p` if it
/// fits the state, else the rebuild, for a state whose text index is pending
/// ([`State::text_index_pending`]). What takes long — checking that the file fits,
/// rebuilding — is done under the read lock, so searches go on; only installing the result
/// takes the write lock. Sound because the caller is the writer, the only thread that
/// changes the state: it is the same state under both locks. Returns which it was.
pub fn finish(p: Option<Persisted>, state: &parking_lot::RwLock<State>) -> &'static str {
    let st = state.read();
    if !st.text_index_pending() {
        return "not pending";
    }
    match p.filter(|p| fits(p, &st)) {
        Some(p) => {
            drop(st);
            install(p, &mut state.write());
            "loaded"
        }
        None => {
            let built = st.text_index_built();
            drop(st);
            state.write().install_text_index(built);
            "rebuilt"
        }
    }
}
