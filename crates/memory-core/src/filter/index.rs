//! The inverted index side of the filter: which `(path, key)` pairs a row is indexed under,
//! and how a filter tree is answered from the posting lists.
//!
//! The posting lists answer a condition *exactly* when the row set they give is precisely the
//! rows the condition holds on: an equality or `$in` on scalars whose index keys compare like
//! the filter does (see [`exact_key`]) on a path of at most [`MAX_INDEX_DEPTH`] segments. That
//! needs [`index_entries`] to list, under a path, exactly the scalars the filter's path lookup
//! reaches (a literal top-level key shadows the nested path of the same spelling). Exact
//! answers can be complemented (`$ne`, `$nin`, `$not`) within the namespace; inexact ones
//! (`$contains` and `$all` also admit non-array values) only narrow, and the caller checks the
//! rows with `Filter::matches`.

use std::slice;

use roaring::RoaringBitmap;
use serde_json::{Map, Value};

use super::eval::int_of;
use super::packed::{packed, Obj, Val};
use super::{Cond, Node, Op, MAX_INDEX_DEPTH};

/// Canonical hashable form of a scalar JSON value for the inverted index. Numbers are normalized
/// through `f64` (so `1` and `1.0` are the same key, `-0.0` becomes `0.0`); strings, bools and null
/// are distinct from each other and from numbers. (`Ord` is an arbitrary total order, not numeric.)
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IndexKey {
    Null,
    Bool(bool),
    /// `f64::to_bits` of the number, with `-0.0` mapped to `0.0`.
    Num(u64),
    Str(String),
}

impl IndexKey {
    /// The key of a scalar; `None` for arrays and objects.
    pub fn of(v: &Value) -> Option<IndexKey> {
        match v {
            Value::Null => Some(IndexKey::Null),
            Value::Bool(b) => Some(IndexKey::Bool(*b)),
            Value::Number(n) => {
                let f = n.as_f64()?;
                let f = if f == 0.0 { 0.0 } else { f };
                Some(IndexKey::Num(f.to_bits()))
            }
            Value::String(s) => Some(IndexKey::Str(s.clone())),
            Value::Array(_) | Value::Object(_) => None,
        }
    }

    /// The key of a packed scalar, the same as [`IndexKey::of`] of the value it was packed from.
    pub fn of_packed(v: Val<'_>) -> Option<IndexKey> {
        match v {
            Val::Null => Some(IndexKey::Null),
            Val::Bool(b) => Some(IndexKey::Bool(b)),
            Val::U64(_) | Val::I64(_) | Val::F64(_) => {
                let f = v.number()?.as_f64()?;
                let f = if f == 0.0 { 0.0 } else { f };
                Some(IndexKey::Num(f.to_bits()))
            }
            Val::Str(s) => Some(IndexKey::Str(s.to_string())),
            Val::Arr(_) | Val::Obj(_) => None,
        }
    }
}

/// Whether rows indexed under the key of scalar `v` are exactly the rows equal to `v`. Integers
/// compare exactly but index through `f64`, so from 2^53 on distinct integers share a key.
fn exact_key(v: &Value) -> bool {
    const F64_EXACT_INTS: i128 = 1 << 53;
    match v {
        Value::Number(n) => int_of(n).is_none_or(|i| i.abs() < F64_EXACT_INTS),
        _ => true,
    }
}

/// Every `(path, key)` pair of a metadata object the store should index: each scalar at nesting
/// depth ≤ [`MAX_INDEX_DEPTH`] (path = keys joined with `.`), and each scalar element of an array
/// found at such a path (`{"tags": ["a", "b"]}` yields `tags=a` and `tags=b`, which is why equality
/// on an array field means "contains"). Objects and arrays inside arrays are not indexed, nor is
/// what a filter path cannot reach: below a key containing a dot, or a nested path spelled like a
/// top-level key (which the filter reads instead). The result is sorted and deduplicated.
pub fn index_entries(metadata: &Map<String, Value>) -> Vec<(String, IndexKey)> {
    index_entries_packed(Obj::new(&packed(metadata)))
}

/// [`index_entries`] of a packed metadata object (what the store keeps).
pub fn index_entries_packed(metadata: Obj<'_>) -> Vec<(String, IndexKey)> {
    fn walk(top: Obj<'_>, m: Obj<'_>, prefix: &str, depth: usize, out: &mut Vec<(String, IndexKey)>) {
        for (k, v) in m.iter() {
            let path = if prefix.is_empty() {
                k.to_string()
            } else if k.contains('.') {
                continue; // "a" → "b.c" is not what the path "a.b.c" reads
            } else {
                format!("{prefix}.{k}")
            };
            // A nested path spelled like a top-level key reads that key instead (its own
            // entries come from the top level), but what lies below it is still reachable.
            let shadowed = !prefix.is_empty() && top.contains_key(&path);
            match v {
                Val::Obj(inner) if depth < MAX_INDEX_DEPTH && !k.contains('.') => walk(top, inner, &path, depth + 1, out),
                Val::Obj(_) => {}
                _ if shadowed => {}
                Val::Arr(items) => out.extend(items.iter().filter_map(IndexKey::of_packed).map(|key| (path.clone(), key))),
                scalar => out.extend(IndexKey::of_packed(scalar).map(|key| (path, key))),
            }
        }
    }
    let mut out = Vec::new();
    walk(metadata, metadata, "", 1, &mut out);
    out.sort();
    out.dedup();
    out
}

/// The posting lists of one namespace, as [`super::Filter::candidates`] reads them.
pub trait PostingIndex {
    /// Rows indexed under `(path, key)`.
    fn postings(&self, path: &str, key: &IndexKey) -> Option<&RoaringBitmap>;
    /// Every row of the namespace (what `$not` complements within).
    fn universe(&self) -> RoaringBitmap;
}

/// The rows a filter can match, from the posting lists.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidates {
    pub rows: RoaringBitmap,
    /// `rows` are exactly the matching rows (no per-row check needed), not a superset.
    pub exact: bool,
}

/// For an equality or `$in` on scalars on an indexed path: the keys one of which a row must be
/// indexed under, and whether being indexed under one is also enough (see [`exact_key`]).
pub(super) fn equality_keys(c: &Cond) -> Option<(Vec<IndexKey>, bool)> {
    match &c.op {
        Op::Eq(v) => scalar_keys(c, slice::from_ref(v)),
        Op::In(vs) => scalar_keys(c, vs),
        _ => None,
    }
}

fn scalar_keys(c: &Cond, values: &[Value]) -> Option<(Vec<IndexKey>, bool)> {
    if c.segments.len() > MAX_INDEX_DEPTH {
        return None;
    }
    let mut keys: Vec<IndexKey> = values.iter().map(IndexKey::of).collect::<Option<_>>()?;
    keys.sort();
    keys.dedup();
    Some((keys, values.iter().all(exact_key)))
}

/// Answer the conjunction `root` from the posting lists of `idx`.
pub(super) fn plan(root: &[Node], idx: &impl PostingIndex) -> Option<Candidates> {
    let mut p = Planner { idx, universe: None };
    match p.all(root) {
        Plan::Any => None,
        Plan::Rows(rows, exact) => Some(Candidates { rows, exact }),
    }
}

/// What the posting lists say about a sub-tree.
enum Plan {
    /// Nothing: every row may match.
    Any,
    /// The rows that may match, and whether exactly those match.
    Rows(RoaringBitmap, bool),
}

struct Planner<'a, I> {
    idx: &'a I,
    /// The namespace's rows, built on the first complement.
    universe: Option<RoaringBitmap>,
}

impl<I: PostingIndex> Planner<'_, I> {
    fn node(&mut self, n: &Node) -> Plan {
        match n {
            Node::Cond(c) => self.cond(c),
            Node::And(children) => self.all(children),
            Node::Or(children) => self.any(children),
            Node::Not(child) => match self.node(child) {
                Plan::Rows(rows, true) => Plan::Rows(self.complement(&rows), true),
                _ => Plan::Any,
            },
        }
    }

    /// Intersection: exact only when every child is.
    fn all(&mut self, children: &[Node]) -> Plan {
        if children.is_empty() {
            return Plan::Rows(self.universe().clone(), true);
        }
        let mut acc: Option<RoaringBitmap> = None;
        let mut exact = true;
        for c in children {
            match self.node(c) {
                Plan::Any => exact = false,
                Plan::Rows(rows, e) => {
                    exact &= e;
                    acc = Some(match acc {
                        Some(a) => a & rows,
                        None => rows,
                    });
                }
            }
        }
        acc.map_or(Plan::Any, |rows| Plan::Rows(rows, exact))
    }

    /// Union: narrows only when every child does.
    fn any(&mut self, children: &[Node]) -> Plan {
        let mut acc = RoaringBitmap::new();
        let mut exact = true;
        for c in children {
            match self.node(c) {
                Plan::Any => return Plan::Any,
                Plan::Rows(rows, e) => {
                    exact &= e;
                    acc |= rows;
                }
            }
        }
        Plan::Rows(acc, exact)
    }

    fn cond(&mut self, c: &Cond) -> Plan {
        if c.segments.len() > MAX_INDEX_DEPTH {
            return Plan::Any;
        }
        let positive = match &c.op {
            Op::Eq(_) | Op::In(_) => return self.keyed(c, equality_keys(c)),
            Op::Ne(v) => scalar_keys(c, slice::from_ref(v)),
            Op::Nin(vs) => scalar_keys(c, vs),
            Op::Contains(v) => return self.contains(c, slice::from_ref(v)),
            Op::All(vs) => return self.contains(c, vs),
            Op::Cmp(..) | Op::Exists(_) => return Plan::Any,
        };
        // $ne / $nin: the complement of the exact equality.
        match self.keyed(c, positive) {
            Plan::Rows(rows, true) => Plan::Rows(self.complement(&rows), true),
            _ => Plan::Any,
        }
    }

    /// Rows indexed under any of `keys` at the condition's path.
    fn keyed(&self, c: &Cond, keys: Option<(Vec<IndexKey>, bool)>) -> Plan {
        let Some((keys, exact)) = keys else { return Plan::Any };
        let mut rows = RoaringBitmap::new();
        for k in &keys {
            if let Some(bm) = self.idx.postings(&c.path, k) {
                rows |= bm;
            }
        }
        Plan::Rows(rows, exact)
    }

    /// `$contains` / `$all`: rows indexed under every scalar wanted (a superset: a scalar value
    /// equal to the one wanted is indexed alike but is not an array).
    fn contains(&self, c: &Cond, wanted: &[Value]) -> Plan {
        let mut acc: Option<RoaringBitmap> = None;
        for key in wanted.iter().filter_map(IndexKey::of) {
            let rows = self.idx.postings(&c.path, &key).cloned().unwrap_or_default();
            acc = Some(match acc {
                Some(a) => a & rows,
                None => rows,
            });
        }
        acc.map_or(Plan::Any, |rows| Plan::Rows(rows, false))
    }

    fn universe(&mut self) -> &RoaringBitmap {
        let idx = self.idx;
        self.universe.get_or_insert_with(|| idx.universe())
    }

    fn complement(&mut self, rows: &RoaringBitmap) -> RoaringBitmap {
        self.universe() - rows
    }
}
