//! Building a state from a snapshot and the puts it covers, on every core: rows chunk by
//! chunk, each put read from the log (checked and decoded by the caller's `put`) as its row is
//! built (the id maps are left to their first use); the columns, namespaces' row lists and
//! counts are derived from the puts and the snapshot's live bits the way replay leaves them.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use rayon::prelude::*;

use super::{Reader, Snapshot, CHUNK_ROWS};
use crate::store::log::NO_EXPIRY;
use crate::store::row::Row;
use crate::store::state::{HashMap, Namespace, State};
use crate::text::TextIndex;

/// What a row takes from the put that made it, and the checksum of its vector's row.
pub(in crate::store) struct CoveredPut<'a> {
    pub seq: u64,
    pub ts: i64,
    pub namespace: &'a str,
    pub id: &'a str,
    pub text: &'a str,
    pub expires_at: i64,
    pub crc: u32,
}

/// The rows of one chunk with their timestamps, expiries, namespaces and vector checksums
/// (taken from the puts as they are read), its live rows and their associations.
struct Chunk {
    rows: Vec<Row>,
    ts: Vec<i64>,
    exp: Vec<i64>,
    ns: Vec<u32>,
    crcs: Vec<u32>,
    live: usize,
    associations: usize,
}

/// Why a chunk could not be built.
enum ChunkError {
    /// A put did not verify.
    Put,
    /// A put's namespace is not one of the snapshot's.
    Namespace,
    /// The snapshot's row entries do not decode.
    Entries,
}

type PutOf<'p, 'a> = dyn Fn(usize) -> Option<CoveredPut<'a>> + Sync + 'p;

fn restore_chunk(snap: &Snapshot, put: &PutOf, ns_ids: &HashMap<&str, u32>, live: &[bool], c: usize) -> Result<Chunk, ChunkError> {
    let lo = c * CHUNK_ROWS;
    let hi = (lo + CHUNK_ROWS).min(snap.rows);
    let mut rd = Reader { b: snap.row_entries(c), at: 0 };
    let n = hi - lo;
    let mut out = Chunk { rows: Vec::with_capacity(n), ts: Vec::with_capacity(n), exp: Vec::with_capacity(n), ns: Vec::with_capacity(n), crcs: Vec::with_capacity(n), live: 0, associations: 0 };
    let mut last: Option<(&str, u32)> = None;
    for (r, &is_live) in live.iter().enumerate().take(hi).skip(lo) {
        let p = put(r).ok_or(ChunkError::Put)?;
        let entry = (|| {
            let (raw, packed) = snap.metadata(rd.v()?)?;
            let n = rd.count()?;
            let len = rd.count()?;
            Some((raw, packed, n, rd.bytes(len)?))
        })();
        let (raw, packed, n, assoc) = entry.ok_or(ChunkError::Entries)?;
        let ns = match last {
            Some((name, id)) if name == p.namespace => id,
            _ => *ns_ids.get(p.namespace).ok_or(ChunkError::Namespace)?,
        };
        last = Some((p.namespace, ns));
        out.rows.push(Row::with_encoded_associations(p.seq, p.id, p.text, raw, packed, n, assoc));
        out.ts.push(p.ts);
        out.exp.push(p.expires_at);
        out.ns.push(ns);
        out.crcs.push(p.crc);
        if is_live {
            out.live += 1;
            out.associations += n;
        }
    }
    if rd.at == rd.b.len() {
        Ok(out)
    } else {
        Err(ChunkError::Entries)
    }
}

/// Whether the namespaces are numbered in order of first appearance, as replay numbers them.
fn first_appearance_order(col: &[u32], namespaces: usize) -> bool {
    let mut seen = 0u32;
    for &id in col {
        if id > seen {
            return false;
        }
        seen = seen.max(id + 1);
    }
    seen as usize == namespaces
}

/// Fill `st` (empty, as replay leaves it before applying: its significance and text
/// indexes deferred) with the state the snapshot describes, given the `puts` puts of the
/// records it covers (`put(k)`: the k-th, which made row k, or `None` if it does not verify)
/// and the last sequence number of those records. Returns the puts' vector checksums in row
/// order. The significance order is left to the caller's `rebuild_sig_index`, the text index
/// to `text::persist`, the vectors to replay. `Err`: why the snapshot does not describe these
/// puts (`st` is then to be discarded).
pub(in crate::store) fn restore(st: &mut State, snap: &Snapshot, put: &PutOf, puts: usize, last_seq: u64) -> Result<Vec<u32>, String> {
    let n = snap.rows;
    let t0 = std::time::Instant::now();
    let trace = |what: &str| {
        if std::env::var_os("MEMORY_SERVER_TRACE_OPEN").is_some() {
            eprintln!("snapshot: {what} at {:?}", t0.elapsed());
        }
    };
    if puts != n {
        return Err(format!("it covers {n} rows where the log's records give {puts}"));
    }
    let ns_ids: HashMap<&str, u32> = snap.namespaces.iter().enumerate().map(|(i, n)| (n.as_str(), i as u32)).collect();
    let live = snap.live();
    let lists = snap.posting_lists().ok_or("malformed posting lists")?;
    trace("namespaces, live bits, posting lists");
    let chunks: Vec<Result<Chunk, ChunkError>> = (0..n.div_ceil(CHUNK_ROWS)).into_par_iter().map(|c| restore_chunk(snap, put, &ns_ids, &live, c)).collect();
    let (mut rows, mut ts_col, mut exp_col, mut ns_col, mut crcs) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut live_count, mut associations) = (0, 0);
    for c in chunks {
        let c = c.map_err(|e| match e {
            ChunkError::Put => "the log's records it covers do not all verify",
            ChunkError::Namespace => "its namespaces are not the puts'",
            ChunkError::Entries => "malformed row entries",
        })?;
        rows.extend(c.rows);
        ts_col.extend(c.ts);
        exp_col.extend(c.exp);
        ns_col.extend(c.ns);
        crcs.extend(c.crcs);
        live_count += c.live;
        associations += c.associations;
    }
    if !first_appearance_order(&ns_col, snap.namespaces.len()) {
        return Err("its namespaces are not the puts'".into());
    }
    trace("rows and columns");
    let mut namespaces: Vec<Namespace> = snap
        .namespaces
        .iter()
        .zip(lists)
        .map(|(name, index)| Namespace {
            name: name.clone(),
            ids: OnceLock::new(),
            rows: Vec::new(),
            live: 0,
            by_sig: BTreeSet::new(),
            index,
            expiring: Vec::new(),
            text: TextIndex::default(),
        })
        .collect();
    if namespaces.len() == 1 {
        namespaces[0].rows = (0..n as u32).collect();
    } else {
        for (r, &ns) in ns_col.iter().enumerate() {
            namespaces[ns as usize].rows.push(r as u32);
        }
    }
    for ns in &mut namespaces {
        // Replay keeps every row given a TTL, deleted or not, until the writer prunes them.
        ns.expiring = ns.rows.iter().copied().filter(|&r| exp_col[r as usize] != NO_EXPIRY).collect();
        ns.live = ns.rows.iter().filter(|&&r| live[r as usize]).count();
    }
    // The id maps are built when first needed (`State::ids`): the writer's idle work after
    // the open, or a read by id before it.
    trace("row lists, counts");
    st.ns_by_name = namespaces.iter().enumerate().map(|(i, ns)| (ns.name.clone(), i as u32)).collect();
    st.namespaces = namespaces;
    st.rows = rows;
    st.ns_col = ns_col;
    st.sig_col = snap.significance();
    st.ts_col = ts_col;
    st.exp_col = exp_col;
    st.live_col = live;
    st.text_len = vec![0; n];
    st.live_count = live_count;
    st.associations_total = associations;
    st.live_bytes = snap.live_bytes;
    st.last_seq = st.last_seq.max(last_seq);
    Ok(crcs)
}
