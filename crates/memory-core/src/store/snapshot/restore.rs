//! Building a state from a snapshot and the puts it covers, on every core: rows chunk by
//! chunk (the id maps are left to their first use); the columns, namespaces' row lists and
//! counts are derived from the puts and the snapshot's live bits the way replay leaves them.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use rayon::prelude::*;

use super::{Reader, Snapshot, CHUNK_ROWS};
use crate::store::log::{RecordRef, NO_EXPIRY};
use crate::store::row::Row;
use crate::store::state::{HashMap, Namespace, State};
use crate::text::TextIndex;

/// The fields of a put a row takes: seq, ts, namespace, id, text, expiry.
fn fields<'a>(rec: &RecordRef<'a>) -> (u64, i64, &'a str, &'a str, &'a str, i64) {
    match *rec {
        RecordRef::Put { seq, ts, namespace, id, text, expires_at, .. } => (seq, ts, namespace, id, text, expires_at),
        _ => unreachable!("only puts are rows"),
    }
}

/// The rows of one chunk with their timestamps and expiries (taken from the puts in the
/// same pass, while they are in cache), its live rows and their associations.
struct Chunk {
    rows: Vec<Row>,
    ts: Vec<i64>,
    exp: Vec<i64>,
    live: usize,
    associations: usize,
}

fn restore_chunk(snap: &Snapshot, puts: &[&RecordRef], live: &[bool], c: usize) -> Option<Chunk> {
    let lo = c * CHUNK_ROWS;
    let hi = (lo + CHUNK_ROWS).min(snap.rows);
    let mut rd = Reader { b: snap.row_entries(c), at: 0 };
    let mut out = Chunk { rows: Vec::with_capacity(hi - lo), ts: Vec::with_capacity(hi - lo), exp: Vec::with_capacity(hi - lo), live: 0, associations: 0 };
    for r in lo..hi {
        let (raw, packed) = snap.metadata(rd.v()?)?;
        let n = rd.count()?;
        let len = rd.count()?;
        let assoc = rd.bytes(len)?;
        let (seq, ts, _, id, text, exp) = fields(puts[r]);
        out.rows.push(Row::with_encoded_associations(seq, id, text, raw, packed, n, assoc));
        out.ts.push(ts);
        out.exp.push(exp);
        if live[r] {
            out.live += 1;
            out.associations += n;
        }
    }
    (rd.at == rd.b.len()).then_some(out)
}

/// Each row's namespace, numbered in order of first appearance as replay numbers them;
/// `None` if that order is not the snapshot's.
fn namespace_column(snap: &Snapshot, puts: &[&RecordRef]) -> Option<Vec<u32>> {
    let ids: HashMap<&str, u32> = snap.namespaces.iter().enumerate().map(|(i, n)| (n.as_str(), i as u32)).collect();
    let mut col = Vec::with_capacity(puts.len());
    let mut last: Option<(&str, u32)> = None;
    let mut seen = 0u32;
    for p in puts {
        let (_, _, ns, _, _, _) = fields(p);
        let id = match last {
            Some((name, id)) if name == ns => id,
            _ => *ids.get(ns)?,
        };
        if id > seen {
            return None;
        }
        seen = seen.max(id + 1);
        last = Some((ns, id));
        col.push(id);
    }
    (seen as usize == snap.namespaces.len()).then_some(col)
}

/// Fill `st` (empty, as replay leaves it before applying: its significance and text
/// indexes deferred) with the state the snapshot describes, given the puts of the records it
/// covers in order (row k is the k-th) and the last sequence number of those records. The
/// significance order is left to the caller's `rebuild_sig_index`, the text index to
/// `text::persist`, the vectors to replay. `Err`: why the snapshot does not describe these
/// puts (`st` is then to be discarded).
pub(in crate::store) fn restore(st: &mut State, snap: &Snapshot, puts: &[&RecordRef], last_seq: u64) -> Result<(), String> {
    let n = snap.rows;
    let t0 = std::time::Instant::now();
    let trace = |what: &str| {
        if std::env::var_os("MEMORY_SERVER_TRACE_OPEN").is_some() {
            eprintln!("snapshot: {what} at {:?}", t0.elapsed());
        }
    };
    if puts.len() != n {
        return Err(format!("it covers {n} rows where the log's records give {}", puts.len()));
    }
    let ns_col = namespace_column(snap, puts).ok_or("its namespaces are not the puts'")?;
    let live = snap.live();
    let lists = snap.posting_lists().ok_or("malformed posting lists")?;
    trace("namespaces, live bits, posting lists");
    let chunks: Vec<Option<Chunk>> = (0..n.div_ceil(CHUNK_ROWS)).into_par_iter().map(|c| restore_chunk(snap, puts, &live, c)).collect();
    let (mut rows, mut ts_col, mut exp_col) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut live_count, mut associations) = (0, 0);
    for c in chunks {
        let c = c.ok_or("malformed row entries")?;
        rows.extend(c.rows);
        ts_col.extend(c.ts);
        exp_col.extend(c.exp);
        live_count += c.live;
        associations += c.associations;
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
    Ok(())
}
