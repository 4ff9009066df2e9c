//! Metadata as the store keeps it in memory: one compact byte string per row, read in place
//! by the filter ([`super::Filter::matches_packed`]) and the inverted index
//! ([`super::index_entries_packed`]).
//!
//! Written by hand because it is the row's footprint: a parsed `serde_json::Map` costs a
//! B-tree node (~640 bytes) plus one heap string per key and per string value even for
//! `{"tag":"a","group":"b"}`; this form is ~25 bytes inside the row's single allocation
//! (`store/row.rs`). The JSON text the client sent is kept beside it unchanged, so reads
//! return it byte for byte; this form only answers filters, so it keeps exactly what they
//! compare: each value's JSON type, numbers as serde_json parsed them (u64, i64 or f64),
//! strings unescaped, object keys deduplicated (the last one wins, as when parsing).
//!
//! Layout (integers are LEB128 varints):
//! ```text
//! object  := count entry*              entries sorted by key bytes
//! entry   := keylen key-bytes value
//! value   := 0 (null) | 1 (false) | 2 (true)
//!          | 3 u64-le | 4 i64-le | 5 f64-le-bits
//!          | 6 len utf8-bytes
//!          | 7 count bodylen value*     (array)
//!          | 8 count bodylen entry*     (object)
//! ```
//! The top level is an `object` with no tag; `{}` is the empty string.

use serde_json::{Map, Number, Value};

const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const U64: u8 = 3;
const I64: u8 = 4;
const F64: u8 = 5;
const STR: u8 = 6;
const ARR: u8 = 7;
const OBJ: u8 = 8;

/// Append the packed form of a metadata object (nothing for `{}`).
pub fn pack(m: &Map<String, Value>, out: &mut Vec<u8>) {
    if !m.is_empty() {
        put_entries(m, out);
    }
}

/// The packed form of a metadata object, as a new vector.
pub fn packed(m: &Map<String, Value>) -> Vec<u8> {
    let mut out = Vec::new();
    pack(m, &mut out);
    out
}

fn put_entries(m: &Map<String, Value>, out: &mut Vec<u8>) {
    put_varint(out, m.len() as u64);
    // serde_json's map without `preserve_order` iterates in key order already; sorting keeps
    // the early exit of `Obj::get` right whatever the map's order.
    let mut entries: Vec<(&String, &Value)> = m.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    for (k, v) in entries {
        put_varint(out, k.len() as u64);
        out.extend_from_slice(k.as_bytes());
        put_value(v, out);
    }
}

fn put_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(NULL),
        Value::Bool(false) => out.push(FALSE),
        Value::Bool(true) => out.push(TRUE),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                out.push(U64);
                out.extend_from_slice(&u.to_le_bytes());
            } else if let Some(i) = n.as_i64() {
                out.push(I64);
                out.extend_from_slice(&i.to_le_bytes());
            } else {
                out.push(F64);
                out.extend_from_slice(&n.as_f64().unwrap_or(0.0).to_bits().to_le_bytes());
            }
        }
        Value::String(s) => {
            out.push(STR);
            put_varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Array(items) => {
            out.push(ARR);
            let mut body = Vec::new();
            items.iter().for_each(|x| put_value(x, &mut body));
            put_varint(out, items.len() as u64);
            put_varint(out, body.len() as u64);
            out.extend_from_slice(&body);
        }
        Value::Object(m) => {
            out.push(OBJ);
            let mut body = Vec::new();
            put_entries(m, &mut body);
            // The body starts with its own count; the count is repeated nowhere else.
            put_varint(out, body.len() as u64);
            out.extend_from_slice(&body);
        }
    }
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Read a varint at `*at`, advancing it. The bytes were written by [`put_varint`].
#[inline]
pub(crate) fn get_varint(b: &[u8], at: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let byte = b[*at];
        *at += 1;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte < 0x80 {
            return v;
        }
        shift += 7;
    }
}

fn get_u64(b: &[u8], at: &mut usize) -> u64 {
    let v = u64::from_le_bytes(b[*at..*at + 8].try_into().unwrap_or_default());
    *at += 8;
    v
}

fn get_str<'a>(b: &'a [u8], at: &mut usize) -> &'a str {
    let len = get_varint(b, at) as usize;
    let s = &b[*at..*at + len];
    *at += len;
    // Written from a `&str` by `pack`; never invalid, but a panic here would take the
    // searcher down, so a broken string reads as empty instead.
    std::str::from_utf8(s).unwrap_or_default()
}

/// A metadata value read in place.
#[derive(Clone, Copy, Debug)]
pub enum Val<'a> {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(&'a str),
    Arr(Arr<'a>),
    Obj(Obj<'a>),
}

/// A packed array: its element count and the bytes of its elements.
#[derive(Clone, Copy, Debug)]
pub struct Arr<'a> {
    count: usize,
    body: &'a [u8],
}

/// A packed object: its entries' bytes (count first). The empty slice is `{}`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Obj<'a> {
    bytes: &'a [u8],
}

impl<'a> Val<'a> {
    /// Read the value at `*at`, advancing past it.
    fn read(b: &'a [u8], at: &mut usize) -> Val<'a> {
        let tag = b[*at];
        *at += 1;
        match tag {
            FALSE => Val::Bool(false),
            TRUE => Val::Bool(true),
            U64 => Val::U64(get_u64(b, at)),
            I64 => Val::I64(get_u64(b, at) as i64),
            F64 => Val::F64(f64::from_bits(get_u64(b, at))),
            STR => Val::Str(get_str(b, at)),
            ARR => {
                let count = get_varint(b, at) as usize;
                let len = get_varint(b, at) as usize;
                let body = &b[*at..*at + len];
                *at += len;
                Val::Arr(Arr { count, body })
            }
            OBJ => {
                let len = get_varint(b, at) as usize;
                let bytes = &b[*at..*at + len];
                *at += len;
                Val::Obj(Obj { bytes })
            }
            _ => Val::Null,
        }
    }

    /// The number as serde_json holds it (the filter compares `Number`s).
    pub fn number(&self) -> Option<Number> {
        match *self {
            Val::U64(u) => Some(Number::from(u)),
            Val::I64(i) => Some(Number::from(i)),
            Val::F64(f) => Number::from_f64(f),
            _ => None,
        }
    }

    pub fn as_obj(&self) -> Option<Obj<'a>> {
        match self {
            Val::Obj(o) => Some(*o),
            _ => None,
        }
    }

    /// The value as a `serde_json::Value` (tests and diagnostics).
    pub fn to_value(&self) -> Value {
        match *self {
            Val::Null => Value::Null,
            Val::Bool(b) => Value::Bool(b),
            Val::U64(_) | Val::I64(_) | Val::F64(_) => self.number().map_or(Value::Null, Value::Number),
            Val::Str(s) => Value::String(s.to_string()),
            Val::Arr(a) => Value::Array(a.iter().map(|v| v.to_value()).collect()),
            Val::Obj(o) => Value::Object(o.to_map()),
        }
    }
}

impl<'a> Arr<'a> {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = Val<'a>> + 'a {
        let body = self.body;
        let mut at = 0;
        (0..self.count).map(move |_| Val::read(body, &mut at))
    }
}

impl<'a> Obj<'a> {
    /// The object packed in `bytes` (written by [`pack`]).
    pub fn new(bytes: &'a [u8]) -> Obj<'a> {
        Obj { bytes }
    }

    pub fn len(&self) -> usize {
        if self.bytes.is_empty() {
            return 0;
        }
        get_varint(self.bytes, &mut 0) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty() || self.len() == 0
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, Val<'a>)> + 'a {
        let b = self.bytes;
        let mut at = 0;
        let count = if b.is_empty() { 0 } else { get_varint(b, &mut at) as usize };
        (0..count).map(move |_| {
            let k = get_str(b, &mut at);
            (k, Val::read(b, &mut at))
        })
    }

    /// The value under `key` (a linear walk that stops past where the key would sort:
    /// metadata objects are small).
    pub fn get(&self, key: &str) -> Option<Val<'a>> {
        for (k, v) in self.iter() {
            match k.as_bytes().cmp(key.as_bytes()) {
                std::cmp::Ordering::Less => continue,
                std::cmp::Ordering::Equal => return Some(v),
                std::cmp::Ordering::Greater => return None,
            }
        }
        None
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The object as a `serde_json::Map` (tests and diagnostics).
    pub fn to_map(&self) -> Map<String, Value> {
        self.iter().map(|(k, v)| (k.to_string(), v.to_value())).collect()
    }
}
