//! The in-memory image of a store: rows in log order (each one allocation, `store/row.rs`),
//! flat f32 vectors in 64-byte aligned chunks that the search scans directly
//! (`store/vectors.rs`), per-namespace id maps (`store/idmap.rs`), an ordered significance
//! index, a metadata inverted index and a full-text index ([`crate::text`]).

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::sync::OnceLock;

use roaring::RoaringBitmap;
use serde_json::{Map, Value};

pub use super::idmap::IdMap;
pub use super::row::{Assoc, Row};
pub use super::vectors::{Vectors, CHUNK_ROWS};
use crate::filter::{index_entries_packed, packed, IndexKey, Obj};
use crate::store::log::{put_len, PutRecord, NO_EXPIRY};
use crate::text::TextIndex;

/// Hash maps keyed by client-supplied strings: aHash is fast and randomly seeded (no HashDoS).
pub type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

pub type SigKey = (Reverse<u32>, Reverse<i64>, Reverse<u32>);

pub fn sig_key(significance: f32, ts: i64, row: u32) -> SigKey {
    // Significance is in 0…1, where f32 bit patterns order like the values.
    (Reverse(significance.max(0.0).to_bits()), Reverse(ts), Reverse(row))
}

pub struct Namespace {
    pub name: String,
    /// id → its row (the latest put of that id, live or not yet retired). Built on first
    /// use ([`State::ids`]) from the live rows: an open restoring the state snapshot leaves it
    /// to the writer's first idle moment or the first read by id, whichever comes first, and
    /// changes made meanwhile need not touch it (the map is a function of the live rows).
    pub ids: OnceLock<IdMap>,
    /// Rows of this namespace in log order (dead rows included; check `live`).
    pub rows: Vec<u32>,
    pub live: usize,
    pub by_sig: BTreeSet<SigKey>,
    /// path → value → rows having it.
    pub index: HashMap<String, HashMap<IndexKey, RoaringBitmap>>,
    /// Rows given a TTL (usually none), so counting visible memories stays O(1) otherwise.
    pub expiring: Vec<u32>,
    /// The texts of the live rows, for BM25 (empty when the store has no text index).
    pub text: TextIndex,
}

impl Namespace {
    fn new(name: String) -> Self {
        Namespace { name, ids: OnceLock::new(), rows: Vec::new(), live: 0, by_sig: BTreeSet::new(), index: HashMap::default(), expiring: Vec::new(), text: TextIndex::default() }
    }
}

pub struct State {
    pub dims: usize,
    pub rows: Vec<Row>,
    pub vectors: Vectors,
    // Columns the scan reads without touching `rows`.
    pub ns_col: Vec<u32>,
    pub sig_col: Vec<f32>,
    pub ts_col: Vec<i64>,
    pub exp_col: Vec<i64>,
    pub live_col: Vec<bool>,
    pub namespaces: Vec<Namespace>,
    pub ns_by_name: HashMap<String, u32>,
    pub last_seq: u64,
    pub live_count: usize,
    pub associations_total: usize,
    /// Bytes the live rows' put records take in the log ([`put_len`]): what a compaction
    /// would write. The rest of the log is garbage (deleted rows, superseded updates).
    pub live_bytes: u64,
    /// Set during bulk replay, and after an open until the writer's idle work builds the
    /// index (`by_sig` is then empty; readers take the columns instead, see
    /// `scan::top_by_significance`); see [`State::rebuild_sig_index`].
    pub defer_sig_index: bool,
    /// Keep a full-text index (the store's `text_index` option).
    pub text_on: bool,
    /// Set during bulk replay and compaction; see [`State::build_text_index`].
    pub defer_text: bool,
    /// Each row's length in terms (0 for rows not indexed).
    pub text_len: Vec<u32>,
}

/// Where a new row's vector comes from.
pub enum VectorSrc<'a> {
    F32(&'a [f32]),
    /// Little-endian f32 bytes straight from the log image.
    LeBytes(&'a [u8]),
    /// Written afterwards with [`Vectors::fill_le_bytes`] (bulk replay).
    Deferred,
    /// Not touched at all: the caller fills a `Vectors` of its own (replay does both at once).
    Elsewhere,
}

/// A row to insert, borrowing its strings (from a record or the log image).
pub struct NewRow<'a> {
    pub seq: u64,
    pub ts: i64,
    pub namespace: &'a str,
    pub id: &'a str,
    pub text: &'a str,
    pub metadata_raw: &'a str,
    pub metadata: ParsedMetadata,
    pub significance: f32,
    pub expires_at: i64,
    pub associations: Box<[Box<str>]>,
    pub vector: VectorSrc<'a>,
}

/// A metadata object parsed and packed ([`crate::filter::packed`]): `None` for `{}`. Parsing
/// and packing happen before the state's lock (on the caller's thread for a put, on every
/// core during replay); the row keeps the packed bytes.
pub type ParsedMetadata = Option<Box<[u8]>>;

/// Parse and pack a metadata text known to be valid (from the log); anything else counts as `{}`.
pub fn parse_metadata(raw: &str) -> ParsedMetadata {
    if raw.is_empty() || raw == "{}" {
        return None;
    }
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(m)) => pack_metadata(&m),
        _ => None,
    }
}

/// The packed form of a parsed metadata object.
pub fn pack_metadata(m: &Map<String, Value>) -> ParsedMetadata {
    (!m.is_empty()).then(|| packed(m).into_boxed_slice())
}

impl State {
    pub fn new(dims: usize) -> Self {
        State {
            dims,
            rows: Vec::new(),
            vectors: Vectors::new(dims),
            ns_col: Vec::new(),
            sig_col: Vec::new(),
            ts_col: Vec::new(),
            exp_col: Vec::new(),
            live_col: Vec::new(),
            namespaces: Vec::new(),
            ns_by_name: HashMap::default(),
            last_seq: 0,
            live_count: 0,
            associations_total: 0,
            live_bytes: 0,
            defer_sig_index: false,
            text_on: true,
            defer_text: false,
            text_len: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn ns_id(&self, name: &str) -> Option<u32> {
        self.ns_by_name.get(name).copied()
    }

    fn ns_id_or_create(&mut self, name: &str) -> u32 {
        // Runs of the same namespace are the common case (replay, batches).
        if let Some(last) = self.namespaces.last() {
            if last.name == name {
                return (self.namespaces.len() - 1) as u32;
            }
        }
        if let Some(&id) = self.ns_by_name.get(name) {
            return id;
        }
        let id = self.namespaces.len() as u32;
        self.namespaces.push(Namespace::new(name.to_string()));
        self.ns_by_name.insert(name.to_string(), id);
        id
    }

    #[inline]
    pub fn expired(&self, row: usize, now_ms: i64) -> bool {
        let e = self.exp_col[row];
        e != NO_EXPIRY && e <= now_ms
    }

    /// A row that reads see: not deleted, not expired.
    #[inline]
    pub fn visible(&self, row: usize, now_ms: i64) -> bool {
        self.live_col[row] && !self.expired(row, now_ms)
    }

    /// Look up a visible memory.
    pub fn find(&self, ns: &str, id: &str, now_ms: i64) -> Option<u32> {
        let n = self.ns_id(ns)?;
        let row = self.row_by_id(n, id)?;
        self.visible(row as usize, now_ms).then_some(row)
    }

    /// The row the id map of namespace `ns` holds for `id` (deleted or expired included).
    pub fn row_by_id(&self, ns: u32, id: &str) -> Option<u32> {
        self.ids(ns).get(&self.rows, id)
    }

    /// Namespace `ns`'s id map, built from its live rows (hashed on every core) if it is not
    /// yet (see [`Namespace::ids`]). Under the read lock: readers asking at the same time
    /// wait for the one building it.
    pub fn ids(&self, ns: u32) -> &IdMap {
        let nsd = &self.namespaces[ns as usize];
        nsd.ids.get_or_init(|| {
            let members: Vec<u32> = nsd.rows.iter().copied().filter(|&r| self.live_col[r as usize]).collect();
            IdMap::build(&self.rows, &members)
        })
    }

    /// Build every namespace's id map not built yet (the writer's idle work after an open).
    pub fn build_id_maps(&self) {
        for n in 0..self.namespaces.len() {
            self.ids(n as u32);
        }
    }

    /// Whether some namespace's id map is not built yet.
    pub fn id_maps_pending(&self) -> bool {
        self.namespaces.iter().any(|ns| ns.ids.get().is_none())
    }

    /// A row's associations as ids, in order.
    pub fn associations(&self, row: u32) -> impl Iterator<Item = &str> + '_ {
        self.rows[row as usize].associations().map(|a| match a {
            Assoc::Row(r) => self.rows[r as usize].id(),
            Assoc::Id(s) => s,
        })
    }

    /// Append a put. A live row with the same (namespace, id) is retired first (the writer
    /// only writes such a put when the old one had expired; replay does the same).
    /// `metadata` may be passed pre-parsed to save a parse.
    pub fn apply_put(&mut self, r: PutRecord, metadata: Option<ParsedMetadata>) -> u32 {
        let metadata = metadata.unwrap_or_else(|| parse_metadata(&r.metadata));
        self.insert_row(NewRow {
            seq: r.seq,
            ts: r.ts,
            namespace: &r.namespace,
            id: &r.id,
            text: &r.text,
            metadata_raw: &r.metadata,
            metadata,
            significance: r.significance,
            expires_at: r.expires_at,
            associations: r.associations.iter().map(|a| Box::from(a.as_str())).collect(),
            vector: VectorSrc::F32(&r.vector),
        })
    }

    /// Append a row. A live row with the same (namespace, id) is retired first (the writer
    /// only writes such a put when the old one had expired; replay does the same).
    pub fn insert_row(&mut self, r: NewRow<'_>) -> u32 {
        let packed = r.metadata.as_deref().unwrap_or_default();
        let n = self.ns_id_or_create(r.namespace);
        if let Some(old) = self.row_by_id(n, r.id) {
            self.kill(old);
        }
        let row = self.rows.len() as u32;
        // An association naming a row of the namespace is kept as that row's number.
        let ids = self.ids(n);
        let assoc: Vec<Assoc<'_>> = r.associations.iter().map(|a| ids.get(&self.rows, a).map_or(Assoc::Id(a), Assoc::Row)).collect();
        self.rows.push(Row::new(r.seq, r.id, r.text, r.metadata_raw, packed, &assoc));
        let defer = self.defer_sig_index;
        let ns = &mut self.namespaces[n as usize];
        for (path, key) in index_entries_packed(Obj::new(packed)) {
            ns.index.entry(path).or_default().entry(key).or_default().insert(row);
        }
        // Built above (`row_by_id`), before this row was pushed: it is not one of its members.
        ns.ids.get_mut().expect("the id map is built").insert(&self.rows, row);
        ns.rows.push(row);
        let text_len = if self.text_on && !self.defer_text { ns.text.add(row, r.text) } else { 0 };
        self.text_len.push(text_len);
        if r.expires_at != NO_EXPIRY {
            ns.expiring.push(row);
        }
        ns.live += 1;
        if !defer {
            ns.by_sig.insert(sig_key(r.significance, r.ts, row));
        }
        match r.vector {
            VectorSrc::F32(v) => self.vectors.push(v),
            VectorSrc::LeBytes(b) => self.vectors.push_le_bytes(b),
            VectorSrc::Deferred => self.vectors.push_deferred(),
            VectorSrc::Elsewhere => {}
        }
        self.ns_col.push(n);
        self.sig_col.push(r.significance);
        self.ts_col.push(r.ts);
        self.exp_col.push(r.expires_at);
        self.live_col.push(true);
        self.associations_total += r.associations.len();
        self.live_bytes += put_len(r.namespace.len(), r.id.len(), r.text.len(), r.metadata_raw.len(), r.associations.iter().map(|a| a.len()), self.dims);
        self.live_count += 1;
        self.last_seq = self.last_seq.max(r.seq);
        row
    }

    /// Bulk replay: stop maintaining the ordered significance index row by row…
    pub fn defer_sig_index(&mut self, rows_hint: usize) {
        self.defer_sig_index = true;
        self.rows.reserve(rows_hint);
        self.text_len.reserve(rows_hint);
        self.ns_col.reserve(rows_hint);
        self.sig_col.reserve(rows_hint);
        self.ts_col.reserve(rows_hint);
        self.exp_col.reserve(rows_hint);
        self.live_col.reserve(rows_hint);
    }

    /// …and build it once at the end (a sort and a bulk build instead of n inserts).
    pub fn rebuild_sig_index(&mut self) {
        let keys = self.sig_index_keys();
        self.install_sig_index(keys);
    }

    /// Each namespace's live rows in the significance index's order, sorted on every core.
    /// Needs only `&self`: after an open the writer computes them under the read lock while
    /// searches go on, then installs them with [`State::install_sig_index`] under the write
    /// lock (the writer is the only thread that changes the state, so nothing changes in
    /// between).
    pub fn sig_index_keys(&self) -> Vec<Vec<SigKey>> {
        use rayon::prelude::*;
        self.namespaces
            .iter()
            .map(|ns| {
                let mut keys: Vec<SigKey> = ns
                    .rows
                    .iter()
                    .filter(|&&r| self.live_col[r as usize])
                    .map(|&r| sig_key(self.sig_col[r as usize], self.ts_col[r as usize], r))
                    .collect();
                keys.par_sort_unstable();
                keys
            })
            .collect()
    }

    /// Take the keys of [`State::sig_index_keys`] (computed on this state as it is) as the
    /// ordered significance index, maintained row by row from now on.
    pub fn install_sig_index(&mut self, keys: Vec<Vec<SigKey>>) {
        debug_assert_eq!(keys.len(), self.namespaces.len());
        self.defer_sig_index = false;
        for (ns, keys) in self.namespaces.iter_mut().zip(keys) {
            // Sorted: the set is built in one pass, without comparisons against its nodes.
            ns.by_sig = keys.into_iter().collect();
        }
    }

    /// Bulk replay and compaction: stop indexing texts row by row…
    pub fn defer_text_index(&mut self) {
        self.defer_text = true;
    }

    /// …and index every live row at once, analysing on every core (`TextIndex::build`).
    pub fn build_text_index(&mut self) {
        if !self.text_on {
            self.defer_text = false;
            return;
        }
        let built = self.text_index_built();
        self.install_text_index(built);
    }

    /// Every namespace's text index over its live rows, and each indexed row with its
    /// length in terms. Needs only `&self`, so the writer can build it under the read lock
    /// after an open while searches go on (`text::persist::finish`).
    pub fn text_index_built(&self) -> Vec<(TextIndex, Vec<(u32, u32)>)> {
        (0..self.namespaces.len())
            .map(|n| {
                let docs: Vec<(u32, &str)> = self.namespaces[n].rows.iter().filter(|&&r| self.live_col[r as usize]).map(|&r| (r, self.rows[r as usize].text())).collect();
                let (ix, lens) = TextIndex::build(&docs);
                (ix, docs.iter().map(|d| d.0).zip(lens).collect())
            })
            .collect()
    }

    /// Take the indexes of [`State::text_index_built`] (built from this state as it is),
    /// maintained row by row from now on.
    pub fn install_text_index(&mut self, built: Vec<(TextIndex, Vec<(u32, u32)>)>) {
        debug_assert_eq!(built.len(), self.namespaces.len());
        self.defer_text = false;
        self.text_len.clear();
        self.text_len.resize(self.rows.len(), 0);
        for (n, (ix, lens)) in built.into_iter().enumerate() {
            for (r, len) in lens {
                self.text_len[r as usize] = len;
            }
            self.namespaces[n].text = ix;
        }
    }

    /// Whether the text index is still to be loaded or built (after an open, until the
    /// writer's idle work has done it): text searches wait for it (`Shared::text_ready`).
    pub fn text_index_pending(&self) -> bool {
        self.text_on && self.defer_text
    }

    /// Mark a row dead and drop it from every index.
    pub fn kill(&mut self, row: u32) {
        let r = row as usize;
        if !self.live_col[r] {
            return;
        }
        self.live_col[r] = false;
        let n = self.ns_col[r] as usize;
        let key = sig_key(self.sig_col[r], self.ts_col[r], row);
        let ns = &mut self.namespaces[n];
        if !self.defer_sig_index {
            ns.by_sig.remove(&key);
        }
        let x = &self.rows[r];
        // A map not built yet is built from the live rows, which no longer include this one.
        if let Some(ids) = ns.ids.get_mut() {
            ids.remove(x.id(), row);
        }
        ns.live -= 1;
        for (path, key) in index_entries_packed(x.metadata()) {
            if let Some(vals) = ns.index.get_mut(&path) {
                if let Some(bm) = vals.get_mut(&key) {
                    bm.remove(row);
                    if bm.is_empty() {
                        vals.remove(&key);
                    }
                }
                if vals.is_empty() {
                    ns.index.remove(&path);
                }
            }
        }
        if self.text_on && !self.defer_text {
            ns.text.remove(row, x.text(), self.text_len[r], &self.live_col);
        }
        self.associations_total -= x.association_count();
        self.live_count -= 1;
        self.live_bytes = self.live_bytes.saturating_sub(self.row_bytes(row));
    }

    /// [`put_len`] of a row as it stands (updates merged in).
    fn row_bytes(&self, row: u32) -> u64 {
        let r = row as usize;
        let x = &self.rows[r];
        let ns = &self.namespaces[self.ns_col[r] as usize].name;
        put_len(ns.len(), x.id().len(), x.text().len(), x.metadata_raw().len(), self.associations(row).map(str::len), self.dims)
    }

    /// Apply an update: new significance and/or new metadata (its text and parsed object).
    pub fn apply_update(&mut self, row: u32, metadata: Option<(String, ParsedMetadata)>, significance: Option<f32>, seq: u64) {
        let r = row as usize;
        let n = self.ns_col[r] as usize;
        if let Some(s) = significance {
            if self.defer_sig_index {
                self.sig_col[r] = s;
            } else {
                let ns = &mut self.namespaces[n];
                ns.by_sig.remove(&sig_key(self.sig_col[r], self.ts_col[r], row));
                self.sig_col[r] = s;
                ns.by_sig.insert(sig_key(s, self.ts_col[r], row));
            }
        }
        if let Some((raw, parsed)) = metadata {
            let ns = &mut self.namespaces[n];
            for (path, key) in index_entries_packed(self.rows[r].metadata()) {
                if let Some(vals) = ns.index.get_mut(&path) {
                    if let Some(bm) = vals.get_mut(&key) {
                        bm.remove(row);
                    }
                }
            }
            let packed = parsed.as_deref().unwrap_or_default();
            for (path, key) in index_entries_packed(Obj::new(packed)) {
                ns.index.entry(path).or_default().entry(key).or_default().insert(row);
            }
            if self.live_col[r] {
                self.live_bytes = (self.live_bytes + raw.len() as u64).saturating_sub(self.rows[r].metadata_raw().len() as u64);
            }
            self.rows[r] = self.rows[r].with_metadata(&raw, packed);
        }
        self.last_seq = self.last_seq.max(seq);
    }

    /// Visible memories of a namespace: O(1) unless some memories have a TTL.
    pub fn visible_count(&self, ns: u32, now_ms: i64) -> usize {
        let n = &self.namespaces[ns as usize];
        let expired = n.expiring.iter().filter(|&&r| self.live_col[r as usize] && self.expired(r as usize, now_ms)).count();
        n.live - expired
    }

    /// The earliest expiry among rows not deleted yet (expired ones included): when the
    /// writer's expiry sweep is next due. O(rows given a TTL).
    pub fn next_expiry(&self) -> Option<i64> {
        self.namespaces.iter().flat_map(|n| n.expiring.iter()).filter(|&&r| self.live_col[r as usize]).map(|&r| self.exp_col[r as usize]).min()
    }

    /// Up to `max` rows not deleted yet whose expiry has passed.
    pub fn expired_rows(&self, now_ms: i64, max: usize) -> Vec<u32> {
        self.namespaces
            .iter()
            .flat_map(|n| n.expiring.iter())
            .copied()
            .filter(|&r| self.live_col[r as usize] && self.expired(r as usize, now_ms))
            .take(max)
            .collect()
    }

    /// Forget deleted rows in the per-namespace lists of rows given a TTL (they only grow
    /// otherwise).
    pub fn prune_expiring(&mut self) {
        let live = &self.live_col;
        for n in &mut self.namespaces {
            n.expiring.retain(|&r| live[r as usize]);
        }
    }

    /// The last `n` visible rows of a namespace (newest last).
    pub fn recent_rows(&self, ns: u32, n: usize, now_ms: i64) -> Vec<u32> {
        let mut out: Vec<u32> = self.namespaces[ns as usize]
            .rows
            .iter()
            .rev()
            .copied()
            .filter(|&r| self.visible(r as usize, now_ms))
            .take(n)
            .collect();
        out.reverse();
        out
    }

    /// Find a live row by id and seq in any namespace (used to resolve in-group duplicates).
    pub fn find_any(&self, id: &str, seq: u64) -> Option<u32> {
        let i = self.rows.partition_point(|r| r.seq < seq);
        (i < self.rows.len() && self.rows[i].seq == seq && self.rows[i].id() == id).then_some(i as u32)
    }

    /// Rebuild the put record of a row as it stands now (updates merged in).
    pub fn record_of(&self, row: u32) -> PutRecord {
        let r = row as usize;
        let x = &self.rows[r];
        PutRecord {
            seq: x.seq,
            ts: self.ts_col[r],
            namespace: self.namespaces[self.ns_col[r] as usize].name.clone(),
            id: x.id().to_string(),
            text: x.text().to_string(),
            metadata: x.metadata_raw().to_string(),
            significance: self.sig_col[r],
            expires_at: self.exp_col[r],
            associations: self.associations(row).map(str::to_string).collect(),
            vector: self.vectors.row(r).to_vec(),
        }
    }
}
