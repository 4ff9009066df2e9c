//! The metadata filter language: the `filter` of searches, lists and deletes.
//!
//! A filter is a JSON object mapping metadata keys to conditions; **all** keys must match.
//!
//! ```text
//! { "type": "note" }                         equality
//! { "tags": { "$in": ["a", "b"] } }          operators: $in $nin $gt $gte $lt $lte $ne $exists
//! { "score": { "$gte": 0.5, "$lt": 1 } }     several operators on one key: all must hold
//! { "author.name": "ada" }                   dotted path into nested objects
//! {}                                         matches everything
//! ```
//!
//! # Semantics (contract)
//!
//! * **Paths.** A key is a path. The whole key is first looked up literally among the top-level
//!   metadata keys (so a metadata key that itself contains a dot stays addressable); if absent and
//!   the key contains dots, it is split on `.` and walked through nested *objects*:
//!   `"a.b"` reads `metadata["a"]["b"]`. Arrays are not traversed by paths. Empty keys and keys with
//!   an empty segment (`"a..b"`, `".a"`) are rejected. A top-level key starting with `$` is rejected
//!   (there is no `$and`/`$or`).
//! * **Equality** (a plain value, including arrays and objects whose keys do not start with `$`):
//!   deep JSON equality where numbers compare numerically (`1 == 1.0`; integers compare exactly),
//!   strings/bools/null compare by value, objects ignore key order. In addition, **when the metadata
//!   value is an array, equality means "contains"**: `{"tags": "a"}` matches `{"tags": ["a", "b"]}`
//!   (an array condition also still matches an identical array).
//! * **`$ne: v`** is the negation of equality (so `{"tags": {"$ne": "a"}}` means "does not contain a").
//! * **`$in: [..]`** matches when equality (with the "contains" rule) holds for at least one listed
//!   value; `$in: []` matches nothing. **`$nin`** is its negation. Both require an array.
//! * **`$gt` `$gte` `$lt` `$lte`** take a number or a string. Numbers compare numerically with
//!   numbers, strings compare with strings in Unicode code-point order; a value of any other type
//!   never matches. On an array value the comparison holds if it holds for some element. Each
//!   operator of a key is evaluated on its own (on an array, `$gt` and `$lt` may be satisfied by
//!   different elements).
//! * **`$exists: bool`** tests presence of the path (a JSON `null` value is present).
//! * **Missing values** never equal anything and never satisfy a comparison; hence `$ne` and `$nin`
//!   match documents where the key is missing. Combine with `$exists: true` to require presence.
//! * Mixing `$`-keys and plain keys in one condition object is an error; an unknown operator is an
//!   error naming it (`filter.type: unknown operator $regex`). Every error is `invalid_request`.
//! * At most [`MAX_CONDITIONS`] conditions (one per plain equality, one per operator).
//!
//! # Inverted index
//!
//! [`index_entries`] lists the `(path, key)` pairs the store indexes for a metadata object: every
//! scalar at nesting depth ≤ [`MAX_INDEX_DEPTH`] and every scalar element of an array at such a
//! path. [`Filter::index_terms`] returns, for each plain scalar equality and each `$in` over
//! scalars (on a path of at most `MAX_INDEX_DEPTH` segments), the set of keys one of which must be
//! indexed under that path for the condition to hold. Posting lists are a superset filter only:
//! the store must still call [`Filter::matches`] on candidates.

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

use crate::error::{Error, Result};

/// Maximum number of conditions (plain equalities + operators) in one filter.
pub const MAX_CONDITIONS: usize = 64;

/// Maximum nesting depth (number of path segments) that [`index_entries`] indexes and for which
/// [`Filter::index_terms`] emits terms.
pub const MAX_INDEX_DEPTH: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CmpOp {
    Gt,
    Gte,
    Lt,
    Lte,
}

impl CmpOp {
    fn holds(self, ord: Ordering) -> bool {
        match self {
            CmpOp::Gt => ord == Ordering::Greater,
            CmpOp::Gte => ord != Ordering::Less,
            CmpOp::Lt => ord == Ordering::Less,
            CmpOp::Lte => ord != Ordering::Greater,
        }
    }
}

#[derive(Clone, Debug)]
enum Bound {
    Num(Number),
    Str(String),
}

#[derive(Clone, Debug)]
enum Op {
    Eq(Value),
    Ne(Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Cmp(CmpOp, Bound),
    Exists(bool),
}

#[derive(Clone, Debug)]
struct Cond {
    /// The key as written in the filter.
    path: String,
    /// `path` split on '.'.
    segments: Vec<String>,
    op: Op,
}

/// A compiled metadata filter. See the module documentation for the language.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    conds: Vec<Cond>,
}

impl Filter {
    /// Compile a filter from JSON. The value must be an object (else `"filter must be an object"`).
    pub fn compile(v: &Value) -> Result<Filter> {
        let obj = v
            .as_object()
            .ok_or_else(|| Error::invalid("filter must be an object"))?;
        let mut conds: Vec<Cond> = Vec::new();
        let push = |conds: &mut Vec<Cond>, c: Cond| -> Result<()> {
            if conds.len() >= MAX_CONDITIONS {
                return Err(Error::invalid(format!(
                    "filter has too many conditions (max {MAX_CONDITIONS})"
                )));
            }
            conds.push(c);
            Ok(())
        };
        for (key, spec) in obj {
            if key.starts_with('$') {
                return Err(Error::invalid(format!("filter: unknown operator {key}")));
            }
            if key.is_empty() {
                return Err(Error::invalid("filter: empty key"));
            }
            let segments: Vec<String> = key.split('.').map(str::to_owned).collect();
            if segments.iter().any(|s| s.is_empty()) {
                return Err(Error::invalid(format!(
                    "filter.{key}: empty path segment in key \"{key}\""
                )));
            }
            let mk = |op: Op| Cond {
                path: key.clone(),
                segments: segments.clone(),
                op,
            };
            match spec {
                Value::Object(m) if m.keys().any(|k| k.starts_with('$')) => {
                    if let Some(plain) = m.keys().find(|k| !k.starts_with('$')) {
                        let opk = m.keys().find(|k| k.starts_with('$')).unwrap();
                        return Err(Error::invalid(format!(
                            "filter.{key}: cannot mix operators ({opk}) and plain keys ({plain}) in one object"
                        )));
                    }
                    for (opname, arg) in m {
                        let op = compile_op(key, opname, arg)?;
                        push(&mut conds, mk(op))?;
                    }
                }
                other => push(&mut conds, mk(Op::Eq(other.clone())))?,
            }
        }
        Ok(Filter { conds })
    }

    /// Whether `metadata` satisfies every condition.
    pub fn matches(&self, metadata: &Map<String, Value>) -> bool {
        self.conds.iter().all(|c| eval(&c.op, lookup(metadata, c)))
    }

    /// `true` for the empty filter `{}` (matches everything).
    pub fn is_empty(&self) -> bool {
        self.conds.is_empty()
    }

    /// Number of compiled conditions.
    pub fn len(&self) -> usize {
        self.conds.len()
    }

    /// Equality-style conditions usable with an inverted index: for each plain equality on a scalar
    /// and each `$in` whose values are all scalars (on paths of at most [`MAX_INDEX_DEPTH`]
    /// segments), `(path, keys)` such that a row can only match the condition if
    /// [`index_entries`] of its metadata contains `(path, k)` for some `k` in `keys`.
    /// `keys` is sorted and deduplicated; it is empty for `$in: []` (nothing matches).
    pub fn index_terms(&self) -> Vec<(String, Vec<IndexKey>)> {
        let mut out = Vec::new();
        for c in &self.conds {
            if c.segments.len() > MAX_INDEX_DEPTH {
                continue;
            }
            let keys = match &c.op {
                Op::Eq(v) => match IndexKey::of(v) {
                    Some(k) => vec![k],
                    None => continue,
                },
                Op::In(vs) => {
                    let keys: Option<Vec<IndexKey>> = vs.iter().map(IndexKey::of).collect();
                    match keys {
                        Some(mut k) => {
                            k.sort();
                            k.dedup();
                            k
                        }
                        None => continue,
                    }
                }
                _ => continue,
            };
            out.push((c.path.clone(), keys));
        }
        out
    }
}

fn compile_op(key: &str, opname: &str, arg: &Value) -> Result<Op> {
    let cmp = |op: CmpOp| -> Result<Op> {
        match arg {
            Value::Number(n) => Ok(Op::Cmp(op, Bound::Num(n.clone()))),
            Value::String(s) => Ok(Op::Cmp(op, Bound::Str(s.clone()))),
            _ => Err(Error::invalid(format!(
                "filter.{key}.{opname} must be a number or a string"
            ))),
        }
    };
    let list = || -> Result<Vec<Value>> {
        match arg {
            Value::Array(a) => Ok(a.clone()),
            _ => Err(Error::invalid(format!(
                "filter.{key}.{opname} must be an array"
            ))),
        }
    };
    match opname {
        "$in" => Ok(Op::In(list()?)),
        "$nin" => Ok(Op::Nin(list()?)),
        "$gt" => cmp(CmpOp::Gt),
        "$gte" => cmp(CmpOp::Gte),
        "$lt" => cmp(CmpOp::Lt),
        "$lte" => cmp(CmpOp::Lte),
        "$ne" => Ok(Op::Ne(arg.clone())),
        "$exists" => match arg {
            Value::Bool(b) => Ok(Op::Exists(*b)),
            _ => Err(Error::invalid(format!(
                "filter.{key}.$exists must be a boolean"
            ))),
        },
        other => Err(Error::invalid(format!(
            "filter.{key}: unknown operator {other}"
        ))),
    }
}

/// Resolve a condition's path: literal top-level key first, then the dotted walk through objects.
fn lookup<'a>(m: &'a Map<String, Value>, c: &Cond) -> Option<&'a Value> {
    if let Some(v) = m.get(&c.path) {
        return Some(v);
    }
    if c.segments.len() < 2 {
        return None;
    }
    let mut cur = m.get(&c.segments[0])?;
    for seg in &c.segments[1..] {
        cur = cur.as_object()?.get(seg)?;
    }
    Some(cur)
}

fn eval(op: &Op, v: Option<&Value>) -> bool {
    match op {
        Op::Eq(want) => v.is_some_and(|x| eq_or_contains(x, want)),
        Op::Ne(want) => !v.is_some_and(|x| eq_or_contains(x, want)),
        Op::In(list) => v.is_some_and(|x| list.iter().any(|w| eq_or_contains(x, w))),
        Op::Nin(list) => !v.is_some_and(|x| list.iter().any(|w| eq_or_contains(x, w))),
        Op::Cmp(op, bound) => v.is_some_and(|x| match x {
            Value::Array(items) => items.iter().any(|e| cmp_holds(*op, bound, e)),
            _ => cmp_holds(*op, bound, x),
        }),
        Op::Exists(b) => v.is_some() == *b,
    }
}

fn cmp_holds(op: CmpOp, bound: &Bound, x: &Value) -> bool {
    let ord = match (x, bound) {
        (Value::Number(a), Bound::Num(b)) => num_cmp(a, b),
        (Value::String(a), Bound::Str(b)) => Some(a.as_str().cmp(b.as_str())),
        _ => None,
    };
    ord.is_some_and(|o| op.holds(o))
}

/// Equality, plus "array contains" when the metadata value is an array.
fn eq_or_contains(x: &Value, want: &Value) -> bool {
    json_eq(x, want) || matches!(x, Value::Array(items) if items.iter().any(|e| json_eq(e, want)))
}

fn int_of(n: &Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

/// Numeric comparison: exact for two integers, IEEE f64 otherwise.
fn num_cmp(a: &Number, b: &Number) -> Option<Ordering> {
    match (int_of(a), int_of(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

/// Deep JSON equality with numeric number comparison (`1 == 1.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => num_cmp(x, y) == Some(Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

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
}

/// Every `(path, key)` pair of a metadata object the store should index: each scalar at nesting
/// depth ≤ [`MAX_INDEX_DEPTH`] (path = keys joined with `.`), and each scalar element of an array
/// found at such a path (`{"tags": ["a", "b"]}` yields `tags=a` and `tags=b`, which is why equality
/// on an array field means "contains"). Objects and arrays inside arrays are not indexed.
/// The result is sorted and deduplicated.
pub fn index_entries(metadata: &Map<String, Value>) -> Vec<(String, IndexKey)> {
    fn walk(m: &Map<String, Value>, prefix: &str, depth: usize, out: &mut Vec<(String, IndexKey)>) {
        for (k, v) in m {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                Value::Array(items) => {
                    for e in items {
                        if let Some(key) = IndexKey::of(e) {
                            out.push((path.clone(), key));
                        }
                    }
                }
                Value::Object(inner) => {
                    if depth < MAX_INDEX_DEPTH {
                        walk(inner, &path, depth + 1, out);
                    }
                }
                scalar => {
                    if let Some(key) = IndexKey::of(scalar) {
                        out.push((path, key));
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(metadata, "", 1, &mut out);
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests;
