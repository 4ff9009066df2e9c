//! One stored memory's strings in one heap allocation.
//!
//! A row used to hold its id, text and metadata text as three boxed strings, its metadata
//! parsed into a `serde_json::Map` (a B-tree node of ~640 bytes plus a heap string per key
//! and per string value) and each association as its own boxed string: about 1.3 KB of heap
//! per row for the scale bench's rows. Written by hand because this is the bulk of the
//! store's per-row memory: the row is now its `seq` and one byte string (its timestamp is
//! the state's `ts_col`)
//!
//! ```text
//! id_len text_len meta_len packed_len n_assoc     (LEB128 varints)
//! id text metadata-text packed-metadata association*
//! association := varint (row << 1)              another row of the state: its id
//!              | varint (len << 1 | 1) bytes    an id no row of the namespace had at insert
//! ```
//!
//! The metadata text is kept as the client sent it (reads return it byte for byte); the
//! packed metadata ([`crate::filter::packed`]) is what filters and the inverted index read.
//! An association naming a row that was in the namespace when the row was inserted is
//! stored as that row's index (ids never change, and a state never drops a row: deleted
//! rows stay until a compaction builds a new state, which resolves the ids again), so an
//! association costs a few bytes instead of a heap string.

use crate::filter::packed::{get_varint, put_varint};
use crate::filter::Obj;

/// An association as stored: another row, or an id kept as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assoc<'a> {
    Row(u32),
    Id(&'a str),
}

pub struct Row {
    pub seq: u64,
    data: Box<[u8]>,
}

/// Where each part of a row's data starts.
struct Layout {
    id: usize,
    text: usize,
    meta: usize,
    packed: usize,
    assoc: usize,
    n_assoc: usize,
}

fn str_of(b: &[u8]) -> &str {
    // Every string part was copied from a `&str` by `Row::new`; never invalid, but a panic
    // here would take a reader down, so a broken one reads as empty instead.
    std::str::from_utf8(b).unwrap_or_default()
}

impl Row {
    /// A row from its parts; `packed` is the metadata's packed form.
    pub fn new(seq: u64, id: &str, text: &str, metadata: &str, packed: &[u8], associations: &[Assoc<'_>]) -> Row {
        let mut d = Vec::with_capacity(16 + id.len() + text.len() + metadata.len() + packed.len() + associations.len() * 4);
        for len in [id.len(), text.len(), metadata.len(), packed.len(), associations.len()] {
            put_varint(&mut d, len as u64);
        }
        d.extend_from_slice(id.as_bytes());
        d.extend_from_slice(text.as_bytes());
        d.extend_from_slice(metadata.as_bytes());
        d.extend_from_slice(packed);
        for a in associations {
            match *a {
                Assoc::Row(r) => put_varint(&mut d, (r as u64) << 1),
                Assoc::Id(s) => {
                    put_varint(&mut d, ((s.len() as u64) << 1) | 1);
                    d.extend_from_slice(s.as_bytes());
                }
            }
        }
        Row { seq, data: d.into_boxed_slice() }
    }

    /// A row whose `n` associations are given as [`Row::new`] encodes them (from
    /// [`Row::encoded_associations`]): the state snapshot restores rows this way
    /// (`store/snapshot`), without decoding them.
    pub fn with_encoded_associations(seq: u64, id: &str, text: &str, metadata: &str, packed: &[u8], n: usize, associations: &[u8]) -> Row {
        let mut d = Vec::with_capacity(16 + id.len() + text.len() + metadata.len() + packed.len() + associations.len());
        for len in [id.len(), text.len(), metadata.len(), packed.len(), n] {
            put_varint(&mut d, len as u64);
        }
        d.extend_from_slice(id.as_bytes());
        d.extend_from_slice(text.as_bytes());
        d.extend_from_slice(metadata.as_bytes());
        d.extend_from_slice(packed);
        d.extend_from_slice(associations);
        Row { seq, data: d.into_boxed_slice() }
    }

    /// How many associations the row has and their bytes as stored.
    pub fn encoded_associations(&self) -> (usize, &[u8]) {
        let l = self.layout();
        (l.n_assoc, &self.data[l.assoc..])
    }

    fn layout(&self) -> Layout {
        let d = &self.data;
        let mut at = 0;
        let mut lens = [0usize; 5];
        for l in &mut lens {
            *l = get_varint(d, &mut at) as usize;
        }
        let id = at;
        let text = id + lens[0];
        let meta = text + lens[1];
        let packed = meta + lens[2];
        let assoc = packed + lens[3];
        Layout { id, text, meta, packed, assoc, n_assoc: lens[4] }
    }

    pub fn id(&self) -> &str {
        let l = self.layout();
        str_of(&self.data[l.id..l.text])
    }

    pub fn text(&self) -> &str {
        let l = self.layout();
        str_of(&self.data[l.text..l.meta])
    }

    /// The metadata's JSON text as stored (`{}` when none was given).
    pub fn metadata_raw(&self) -> &str {
        let l = self.layout();
        str_of(&self.data[l.meta..l.packed])
    }

    /// The metadata packed, as filters read it (empty for `{}`).
    pub fn metadata(&self) -> Obj<'_> {
        let l = self.layout();
        Obj::new(&self.data[l.packed..l.assoc])
    }

    /// The metadata's packed bytes (to copy into another row).
    pub fn metadata_packed(&self) -> &[u8] {
        let l = self.layout();
        &self.data[l.packed..l.assoc]
    }

    pub fn association_count(&self) -> usize {
        self.layout().n_assoc
    }

    /// The associations as stored, in order (rows are resolved by `State::associations`).
    pub fn associations(&self) -> impl Iterator<Item = Assoc<'_>> + '_ {
        let l = self.layout();
        let d = &self.data;
        let mut at = l.assoc;
        (0..l.n_assoc).map(move |_| {
            let v = get_varint(d, &mut at);
            if v & 1 == 0 {
                Assoc::Row((v >> 1) as u32)
            } else {
                let len = (v >> 1) as usize;
                let s = str_of(&d[at..at + len]);
                at += len;
                Assoc::Id(s)
            }
        })
    }

    /// The same row with other metadata (an update).
    pub fn with_metadata(&self, metadata: &str, packed: &[u8]) -> Row {
        let assoc: Vec<Assoc<'_>> = self.associations().collect();
        Row::new(self.seq, self.id(), self.text(), metadata, packed, &assoc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_read_back() {
        let packed = crate::filter::packed(serde_json::json!({"a": 1}).as_object().unwrap());
        let long = "x".repeat(300);
        let r = Row::new(7, "id-é", &long, "{ \"a\" : 1 }", &packed, &[Assoc::Row(5), Assoc::Id("gone"), Assoc::Row(1 << 30)]);
        assert_eq!((r.seq, r.id(), r.text(), r.metadata_raw()), (7, "id-é", long.as_str(), "{ \"a\" : 1 }"));
        assert_eq!(r.metadata().to_map(), *serde_json::json!({"a": 1}).as_object().unwrap());
        assert_eq!(r.associations().collect::<Vec<_>>(), vec![Assoc::Row(5), Assoc::Id("gone"), Assoc::Row(1 << 30)]);
        assert_eq!(r.association_count(), 3);
        let u = r.with_metadata("{}", &[]);
        assert_eq!((u.id(), u.text(), u.metadata_raw(), u.metadata().len(), u.association_count()), ("id-é", long.as_str(), "{}", 0, 3));
        let (n, bytes) = r.encoded_associations();
        let copy = Row::with_encoded_associations(7, r.id(), r.text(), r.metadata_raw(), r.metadata_packed(), n, bytes);
        assert_eq!(copy.data, r.data, "a row rebuilt from its encoded associations is the same row");
        let empty = Row::new(1, "i", "t", "", &[], &[]);
        assert_eq!((empty.metadata_raw(), empty.metadata().is_empty(), empty.associations().count()), ("", true, 0));
    }
}
