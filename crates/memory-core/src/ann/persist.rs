//! The ANN graphs on disk, so that reopening a large store does not rebuild them (at 1M
//! rows a rebuild is minutes of both cores; reading the file is a fraction of a second).
//!
//! `ann-<gen>.idx` sits beside the log of generation `gen`, written by the writer when the
//! store closes, read while the log replays (on another core) and taken only if it was
//! written by this format for this generation, with the same graph parameters, and for the
//! same first rows as the log gives now (a digest of their sequence numbers, namespaces and
//! the crc32c of each vector that its put records in the log — so the check reads no vector;
//! re-embedded vectors change it). Rows after those (a later run
//! that crashed) are indexed by the writer as after any open; rows deleted since stay
//! waypoints like any dead row. Anything else — no file, torn, truncated, another
//! generation, a digest or a namespace that differs, a link out of range — and the graphs
//! are rebuilt from the log as before: the log stays the truth.
//!
//! Layout (integers little-endian):
//!
//! ```text
//! header (48 bytes): "MSANNIDX" | format u32 | gen u64 | rows u64 | row digest u64
//!                    | body length u64 | body crc32c u32
//! body: m u32 | m0 u32 | ef_construction u32 | namespaces u32
//!       | per namespace: 0u8 (no graph) or 1u8 | name (len u32, UTF-8) | covered u64
//!         | nodes u32 | entry u32 (u32::MAX: none) | top level u32 | rng u64
//!         | rows, u32 per node | level-0 link counts, u8 per node | level-0 links, u32 each
//!         | nodes above level 0 u32 | per such node, in node order: node u32 | levels u8
//!           | per level: links u8 | links, u32 each
//! ```
//!
//! Our own format, written by hand like the text index's: the graph is a few flat arrays and
//! loading must be one pass over one buffer.

use std::path::Path;

use super::hnsw::{Hnsw, HnswParams};
use super::{AnnSet, NsGraph};
use crate::error::Result;
use crate::store::derived_file;
use crate::store::state::State;

const MAGIC: &[u8; 8] = b"MSANNIDX";
/// Bumped when the layout changes: a file of another format is rebuilt, not read. (2: the row
/// digest takes each vector's crc32c instead of its first two components.)
pub const FORMAT: u32 = 2;
const HEADER_LEN: usize = 48;
/// Files are `ann-<gen>.idx`.
const PREFIX: &str = "ann";

pub fn file_name(gen: u64) -> String {
    derived_file::file_name(PREFIX, gen)
}

/// Identifies the first `rows` rows of a state: sequence numbers (unique within a
/// generation), namespaces and each vector's crc32c (`crcs`, row by row, as the log's puts
/// record them). Reading the vectors instead would fault in every page of the vectors file's
/// mapping at open (1.5 GB per million rows of 384 dims) before the first query.
fn row_digest(st: &State, crcs: &[u32], rows: usize) -> u64 {
    derived_file::row_digest(rows, |r| [st.rows[r].seq, u64::from(st.ns_col[r]), u64::from(crcs[r])])
}

fn put_u32s(out: &mut Vec<u8>, xs: &[u32]) {
    out.reserve(xs.len() * 4);
    for x in xs {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

fn encode_graph(out: &mut Vec<u8>, name: &str, g: &NsGraph) {
    let h = &g.graph;
    out.push(1);
    out.extend_from_slice(&(name.len() as u32).to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&(g.covered as u64).to_le_bytes());
    let n = h.rows.len();
    out.extend_from_slice(&(n as u32).to_le_bytes());
    out.extend_from_slice(&h.entry.unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&(h.top_level as u32).to_le_bytes());
    out.extend_from_slice(&h.rng.to_le_bytes());
    put_u32s(out, &h.rows);
    out.extend_from_slice(&h.l0_len);
    for node in 0..n as u32 {
        put_u32s(out, h.links(node, 0));
    }
    let above: Vec<u32> = (0..n as u32).filter(|&x| h.upper_of[x as usize] != u32::MAX).collect();
    out.extend_from_slice(&(above.len() as u32).to_le_bytes());
    for node in above {
        let levels = &h.upper[h.upper_of[node as usize] as usize];
        out.extend_from_slice(&node.to_le_bytes());
        out.push(levels.len() as u8);
        for l in levels {
            out.push(l.len() as u8);
            put_u32s(out, l);
        }
    }
}

/// Write the graphs of `ann` as generation `gen`'s file in `dir` (a temporary file renamed
/// over the old one), and remove other generations' files; with no graph (or without every
/// row's crc32c in `crcs` to tie it to the rows), no file. Not fsynced: a file torn by a
/// crash fails its checksum and the next open rebuilds.
pub fn save(dir: &Path, gen: u64, st: &State, ann: &AnnSet, crcs: &[u32]) -> Result<()> {
    let path = dir.join(file_name(gen));
    if ann.graphs.iter().all(|g| g.is_none()) || crcs.len() < st.len() {
        let _ = std::fs::remove_file(&path);
        return Ok(());
    }
    let mut body = Vec::with_capacity(ann.bytes() + 64);
    for x in [ann.params.m, ann.params.m0, ann.params.ef_construction, ann.graphs.len()] {
        body.extend_from_slice(&(x as u32).to_le_bytes());
    }
    for (i, g) in ann.graphs.iter().enumerate() {
        match g {
            Some(g) => encode_graph(&mut body, &st.namespaces[i].name, g),
            None => body.push(0),
        }
    }
    let mut head = Vec::with_capacity(HEADER_LEN);
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&FORMAT.to_le_bytes());
    head.extend_from_slice(&gen.to_le_bytes());
    head.extend_from_slice(&(st.len() as u64).to_le_bytes());
    head.extend_from_slice(&row_digest(st, crcs, st.len()).to_le_bytes());
    head.extend_from_slice(&(body.len() as u64).to_le_bytes());
    head.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    debug_assert_eq!(head.len(), HEADER_LEN);
    derived_file::write(dir, PREFIX, gen, &head, &body)
}

/// Remove the graph files (and leftover temporary files) of generations other than `gen`.
pub fn remove_other_generations(dir: &Path, gen: u64) {
    derived_file::remove_other_generations(dir, PREFIX, gen)
}

/// A file read back and decoded, not yet checked against the replayed state.
pub struct Persisted {
    rows: usize,
    digest: u64,
    params: HnswParams,
    graphs: Vec<Option<(String, NsGraph)>>,
}

/// Read and decode generation `gen`'s file; `None` if there is none or it is not whole.
pub fn read(dir: &Path, gen: u64) -> Option<Persisted> {
    // Mapped, not read: at 1M rows the file is ~100 MB, and a copy of it would cost the open a
    // pass over fresh memory that is dropped right after decoding.
    let bytes = crate::store::logfile::LogImage::open(&dir.join(file_name(gen))).ok()?;
    decode(&bytes, gen)
}

/// Give `ann` the persisted graphs if they belong to `st`, whose rows' vectors have the
/// crc32c `crcs` (see the module comment). Returns whether they were taken.
pub fn restore(p: Option<Persisted>, st: &State, crcs: &[u32], ann: &mut AnnSet) -> bool {
    let Some(p) = p else { return false };
    let (a, b) = (p.params, ann.params);
    if (a.m, a.m0, a.ef_construction) != (b.m, b.m0, b.ef_construction) || p.rows > st.len() || p.rows > crcs.len() || p.graphs.len() > st.namespaces.len() || row_digest(st, crcs, p.rows) != p.digest {
        return false;
    }
    let ns_ok = p.graphs.iter().enumerate().all(|(i, g)| g.as_ref().is_none_or(|(name, g)| st.namespaces[i].name == *name && g.covered <= st.namespaces[i].rows.len() && g.graph.rows.iter().all(|&r| (r as usize) < p.rows && st.ns_col[r as usize] == i as u32)));
    if !ns_ok {
        return false;
    }
    ann.graphs = p.graphs.into_iter().map(|g| g.map(|(_, g)| g)).collect();
    // The int8 codes the traversal scores with are not in the file: the writer encodes them
    // from the rows once idle (`codes::encode_restored`); until then traversals score in f32.
    ann.graphs.iter_mut().flatten().for_each(|g| super::codes::defer_codes(&mut g.graph));
    true
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn u32s(&mut self, n: usize) -> Option<Vec<u32>> {
        let mut out = vec![0; n];
        self.u32s_into(&mut out)?;
        Some(out)
    }
    /// As many u32s as `out` holds, into it (no allocation: a node's level-0 list goes
    /// straight into its slot).
    fn u32s_into(&mut self, out: &mut [u32]) -> Option<()> {
        let b = self.take(out.len().checked_mul(4)?)?;
        for (o, c) in out.iter_mut().zip(b.chunks_exact(4)) {
            *o = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        Some(())
    }
}

fn decode(bytes: &[u8], gen: u64) -> Option<Persisted> {
    let mut h = Reader { b: bytes.get(..HEADER_LEN)?, at: 0 };
    if h.take(8)? != MAGIC || h.u32()? != FORMAT || h.u64()? != gen {
        return None;
    }
    let (rows, digest, body_len, crc) = (h.u64()? as usize, h.u64()?, h.u64()?, h.u32()?);
    let body = &bytes[HEADER_LEN..];
    if body.len() as u64 != body_len || crc32c::crc32c(body) != crc {
        return None;
    }
    let mut r = Reader { b: body, at: 0 };
    let params = HnswParams { m: r.u32()? as usize, m0: r.u32()? as usize, ef_construction: r.u32()? as usize };
    if params.m < 2 || params.m0 < params.m || params.m0 > 255 {
        return None;
    }
    let slots = r.u32()? as usize;
    let mut graphs = Vec::with_capacity(slots.min(1 << 16));
    for _ in 0..slots {
        graphs.push(match r.u8()? {
            0 => None,
            1 => Some(decode_graph(&mut r, params)?),
            _ => return None,
        });
    }
    (r.at == body.len()).then_some(Persisted { rows, digest, params, graphs })
}

fn decode_graph(r: &mut Reader, params: HnswParams) -> Option<(String, NsGraph)> {
    let name_len = r.u32()? as usize;
    let name = std::str::from_utf8(r.take(name_len)?).ok()?.to_string();
    let covered = r.u64()? as usize;
    let n = r.u32()? as usize;
    let entry = r.u32()?;
    let top_level = r.u32()? as usize;
    let rng = r.u64()?;
    let mut g = Hnsw::new(params);
    g.rows = r.u32s(n)?;
    g.l0_len = r.take(n)?.to_vec();
    g.l0 = vec![0; n.checked_mul(params.m0)?];
    for node in 0..n {
        let len = g.l0_len[node] as usize;
        if len > params.m0 {
            return None;
        }
        r.u32s_into(&mut g.l0[node * params.m0..node * params.m0 + len])?;
    }
    g.upper_of = vec![u32::MAX; n];
    let above = r.u32()? as usize;
    for _ in 0..above {
        let node = r.u32()? as usize;
        let levels = r.u8()? as usize;
        if node >= n || g.upper_of[node] != u32::MAX || levels == 0 || levels > top_level {
            return None;
        }
        let mut ls = Vec::with_capacity(levels);
        for _ in 0..levels {
            let len = r.u8()? as usize;
            if len > params.m {
                return None;
            }
            ls.push(r.u32s(len)?);
        }
        g.upper_of[node] = g.upper.len() as u32;
        g.upper.push(ls);
    }
    // Every link names a node, on a level that node is on (the traversal reads its links
    // there); the entry point exists and reaches the top level.
    let levels_of = |x: u32| match g.upper_of.get(x as usize) {
        None => None,
        Some(&u32::MAX) => Some(0),
        Some(&u) => Some(g.upper[u as usize].len()),
    };
    let links_ok = g.l0.chunks(params.m0).zip(&g.l0_len).all(|(l, &len)| l[..len as usize].iter().all(|&x| (x as usize) < n))
        && g.upper.iter().all(|ls| ls.iter().enumerate().all(|(i, l)| l.iter().all(|&x| levels_of(x).is_some_and(|lv| lv > i))));
    let entry_ok = match (n, entry) {
        (0, u32::MAX) => top_level == 0,
        (_, e) if (e as usize) < n => top_level == 0 || (g.upper_of[e as usize] != u32::MAX && g.upper[g.upper_of[e as usize] as usize].len() == top_level),
        _ => false,
    };
    if !links_ok || !entry_ok || covered < n {
        return None;
    }
    g.entry = (entry != u32::MAX).then_some(entry);
    g.top_level = top_level;
    g.rng = rng;
    Some((name, NsGraph { graph: g, covered }))
}
