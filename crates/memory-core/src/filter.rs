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
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn meta(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn f(v: Value) -> Filter {
        Filter::compile(&v).unwrap()
    }

    fn m(filter: Value, metadata: Value) -> bool {
        f(filter).matches(&meta(metadata))
    }

    fn err(v: Value) -> String {
        match Filter::compile(&v) {
            Err(e) => {
                assert_eq!(e.code(), crate::error::ErrorCode::InvalidRequest);
                e.to_string()
            }
            Ok(_) => panic!("expected error for {v}"),
        }
    }

    fn num(x: f64) -> IndexKey {
        IndexKey::of(&json!(x)).unwrap()
    }

    #[test]
    fn empty_filter_matches_everything() {
        let fl = f(json!({}));
        assert!(fl.is_empty());
        assert_eq!(fl.len(), 0);
        assert!(fl.matches(&meta(json!({}))));
        assert!(fl.matches(&meta(json!({"a": 1}))));
        assert!(fl.index_terms().is_empty());
        assert!(Filter::default().is_empty());
    }

    #[test]
    fn not_an_object() {
        for v in [json!(null), json!(1), json!("x"), json!([]), json!(true)] {
            assert_eq!(err(v), "filter must be an object");
        }
    }

    #[test]
    fn equality_scalars() {
        assert!(m(json!({"type": "note"}), json!({"type": "note"})));
        assert!(!m(json!({"type": "note"}), json!({"type": "todo"})));
        assert!(!m(json!({"type": "note"}), json!({})));
        assert!(m(json!({"n": 1}), json!({"n": 1.0})));
        assert!(m(json!({"n": 1.0}), json!({"n": 1})));
        assert!(m(json!({"n": -0.0}), json!({"n": 0})));
        assert!(!m(json!({"n": 1}), json!({"n": "1"})));
        assert!(!m(json!({"n": 1}), json!({"n": true})));
        assert!(m(json!({"b": true}), json!({"b": true})));
        assert!(!m(json!({"b": true}), json!({"b": false})));
        assert!(m(json!({"z": null}), json!({"z": null})));
        assert!(!m(json!({"z": null}), json!({})), "missing is not null");
        assert!(m(json!({"big": u64::MAX}), json!({"big": u64::MAX})));
        assert!(!m(
            json!({"big": 9007199254740993u64}),
            json!({"big": 9007199254740992u64})
        ));
        assert!(m(json!({"neg": -5}), json!({"neg": -5.0})));
    }

    #[test]
    fn all_keys_must_match() {
        let fl = json!({"a": 1, "b": "x"});
        assert!(m(fl.clone(), json!({"a": 1, "b": "x", "c": 3})));
        assert!(!m(fl.clone(), json!({"a": 1, "b": "y"})));
        assert!(!m(fl, json!({"a": 1})));
    }

    #[test]
    fn equality_deep() {
        assert!(m(
            json!({"o": {"x": 1, "y": [1, 2]}}),
            json!({"o": {"y": [1.0, 2], "x": 1}})
        ));
        assert!(!m(json!({"o": {"x": 1}}), json!({"o": {"x": 1, "y": 2}})));
        assert!(m(json!({"o": {}}), json!({"o": {}})));
        assert!(!m(json!({"o": {}}), json!({"o": {"a": 1}})));
        assert!(m(json!({"arr": [1, 2]}), json!({"arr": [1, 2]})));
        assert!(!m(json!({"arr": [1, 2]}), json!({"arr": [2, 1]})));
        // An array condition also "is contained" in an array of arrays.
        assert!(m(json!({"arr": [1, 2]}), json!({"arr": [[1, 2], [3]]})));
    }

    #[test]
    fn equality_on_array_means_contains() {
        assert!(m(json!({"tags": "a"}), json!({"tags": ["a", "b"]})));
        assert!(m(json!({"tags": "b"}), json!({"tags": ["a", "b"]})));
        assert!(!m(json!({"tags": "c"}), json!({"tags": ["a", "b"]})));
        assert!(!m(json!({"tags": "a"}), json!({"tags": []})));
        assert!(m(json!({"tags": 2}), json!({"tags": [1, 2.0]})));
        assert!(!m(json!({"tags": "a"}), json!({"tags": [["a"]]})));
    }

    #[test]
    fn op_in_nin() {
        let fl = json!({"tags": {"$in": ["x", "b"]}});
        assert!(m(fl.clone(), json!({"tags": "b"})));
        assert!(m(fl.clone(), json!({"tags": ["a", "b"]})));
        assert!(!m(fl.clone(), json!({"tags": ["a", "c"]})));
        assert!(!m(fl, json!({})));
        assert!(!m(json!({"t": {"$in": []}}), json!({"t": 1})));
        assert!(m(json!({"n": {"$in": [1, 2]}}), json!({"n": 2.0})));

        let fl = json!({"tags": {"$nin": ["x", "b"]}});
        assert!(!m(fl.clone(), json!({"tags": "b"})));
        assert!(!m(fl.clone(), json!({"tags": ["a", "b"]})));
        assert!(m(fl.clone(), json!({"tags": ["a", "c"]})));
        assert!(m(fl.clone(), json!({"tags": "a"})));
        assert!(m(fl, json!({})), "$nin matches missing keys");
        assert!(m(json!({"t": {"$nin": []}}), json!({"t": 1})));
    }

    #[test]
    fn op_ne() {
        assert!(m(json!({"t": {"$ne": "a"}}), json!({"t": "b"})));
        assert!(!m(json!({"t": {"$ne": "a"}}), json!({"t": "a"})));
        assert!(m(json!({"t": {"$ne": "a"}}), json!({})));
        assert!(!m(json!({"t": {"$ne": "a"}}), json!({"t": ["a", "b"]})));
        assert!(m(json!({"t": {"$ne": 1}}), json!({"t": "1"})));
        assert!(!m(json!({"t": {"$ne": 1}}), json!({"t": 1.0})));
        assert!(m(json!({"t": {"$ne": null}}), json!({"t": 0})));
        assert!(!m(json!({"t": {"$ne": {"a": 1}}}), json!({"t": {"a": 1}})));
    }

    #[test]
    fn op_comparisons_numbers() {
        let md = json!({"n": 5});
        assert!(m(json!({"n": {"$gt": 4}}), md.clone()));
        assert!(!m(json!({"n": {"$gt": 5}}), md.clone()));
        assert!(m(json!({"n": {"$gte": 5}}), md.clone()));
        assert!(m(json!({"n": {"$gte": 4.5}}), md.clone()));
        assert!(!m(json!({"n": {"$gte": 5.5}}), md.clone()));
        assert!(m(json!({"n": {"$lt": 6}}), md.clone()));
        assert!(!m(json!({"n": {"$lt": 5}}), md.clone()));
        assert!(m(json!({"n": {"$lte": 5.0}}), md.clone()));
        assert!(!m(json!({"n": {"$lte": 4.99}}), md.clone()));
        assert!(m(json!({"n": {"$gt": 4, "$lt": 6}}), md.clone()));
        assert!(!m(json!({"n": {"$gt": 4, "$lt": 5}}), md.clone()));
        assert!(m(json!({"n": {"$gt": -1e300}}), md.clone()));
        // Large integers compare exactly.
        assert!(m(
            json!({"n": {"$gt": 9007199254740992u64}}),
            json!({"n": 9007199254740993u64})
        ));
        assert!(m(json!({"n": {"$lt": 0}}), json!({"n": i64::MIN})));
        // Type mismatch never matches; missing never matches.
        assert!(!m(json!({"n": {"$gt": 1}}), json!({"n": "5"})));
        assert!(!m(json!({"n": {"$lt": 1}}), json!({"n": null})));
        assert!(!m(json!({"n": {"$lt": 1}}), json!({"n": false})));
        assert!(!m(json!({"n": {"$gt": 1}}), json!({})));
    }

    #[test]
    fn op_comparisons_strings() {
        let md = json!({"d": "2024-05-01"});
        assert!(m(json!({"d": {"$gte": "2024-01-01"}}), md.clone()));
        assert!(m(json!({"d": {"$lt": "2024-06"}}), md.clone()));
        assert!(!m(json!({"d": {"$gt": "2024-05-01"}}), md.clone()));
        assert!(m(json!({"d": {"$lte": "2024-05-01"}}), md.clone()));
        assert!(!m(json!({"d": {"$gt": 1}}), md.clone()));
        assert!(
            m(json!({"s": {"$gt": "B"}}), json!({"s": "a"})),
            "code point order"
        );
        assert!(m(json!({"s": {"$gt": "é"}}), json!({"s": "😀"})));
        assert!(!m(json!({"s": {"$lt": "b"}}), json!({"s": 1})));
    }

    #[test]
    fn comparisons_on_arrays_any_element() {
        assert!(m(json!({"v": {"$gt": 10}}), json!({"v": [1, 20]})));
        assert!(!m(json!({"v": {"$gt": 30}}), json!({"v": [1, 20]})));
        assert!(m(json!({"v": {"$lt": "b"}}), json!({"v": ["z", "a"]})));
        assert!(!m(json!({"v": {"$gt": 0}}), json!({"v": []})));
    }

    #[test]
    fn op_exists() {
        assert!(m(json!({"a": {"$exists": true}}), json!({"a": 1})));
        assert!(m(json!({"a": {"$exists": true}}), json!({"a": null})));
        assert!(!m(json!({"a": {"$exists": true}}), json!({"b": 1})));
        assert!(m(json!({"a": {"$exists": false}}), json!({"b": 1})));
        assert!(!m(json!({"a": {"$exists": false}}), json!({"a": 1})));
        assert!(m(json!({"a.b": {"$exists": true}}), json!({"a": {"b": 0}})));
        assert!(!m(json!({"a.b": {"$exists": true}}), json!({"a": 5})));
        assert!(m(
            json!({"a.b": {"$exists": false}}),
            json!({"a": [{"b": 1}]})
        ));
        assert!(m(
            json!({"a": {"$exists": true, "$ne": null}}),
            json!({"a": 3})
        ));
        assert!(!m(
            json!({"a": {"$exists": true, "$ne": null}}),
            json!({"a": null})
        ));
    }

    #[test]
    fn nested_paths() {
        let md = json!({"author": {"name": "ada", "meta": {"age": 36, "langs": ["en", "fr"]}}});
        assert!(m(json!({"author.name": "ada"}), md.clone()));
        assert!(!m(json!({"author.name": "bob"}), md.clone()));
        assert!(m(json!({"author.meta.age": {"$gte": 30}}), md.clone()));
        assert!(m(json!({"author.meta.langs": "fr"}), md.clone()));
        assert!(m(
            json!({"author.meta.langs": {"$in": ["de", "en"]}}),
            md.clone()
        ));
        assert!(!m(json!({"author.missing.x": 1}), md.clone()));
        assert!(!m(json!({"author.name.x": 1}), md.clone()));
        assert!(m(
            json!({"author": {"name": "ada", "meta": {"age": 36.0, "langs": ["en", "fr"]}}}),
            md
        ));
        // Literal dotted key first.
        assert!(m(json!({"a.b": 1}), json!({"a.b": 1})));
        assert!(m(json!({"a.b": 1}), json!({"a.b": 1, "a": {"b": 2}})));
        assert!(m(json!({"a.b": 2}), json!({"a": {"b": 2}})));
        // Deep (beyond the index depth) still works for matching.
        let deep = json!({"a": {"b": {"c": {"d": {"e": {"f": 7}}}}}});
        assert!(m(json!({"a.b.c.d.e.f": 7}), deep.clone()));
        assert!(f(json!({"a.b.c.d.e.f": 7})).index_terms().is_empty());
    }

    #[test]
    fn error_unknown_operator() {
        assert_eq!(
            err(json!({"type": {"$regex": "x"}})),
            "filter.type: unknown operator $regex"
        );
        assert_eq!(
            err(json!({"type": {"$eq": "x"}})),
            "filter.type: unknown operator $eq"
        );
        assert_eq!(err(json!({"$or": []})), "filter: unknown operator $or");
        assert_eq!(
            err(json!({"$and": [{"a": 1}]})),
            "filter: unknown operator $and"
        );
    }

    #[test]
    fn error_operator_arguments() {
        assert_eq!(
            err(json!({"tags": {"$in": "a"}})),
            "filter.tags.$in must be an array"
        );
        assert_eq!(
            err(json!({"tags": {"$nin": {"a": 1}}})),
            "filter.tags.$nin must be an array"
        );
        for op in ["$gt", "$gte", "$lt", "$lte"] {
            for bad in [json!(null), json!(true), json!([1]), json!({"a": 1})] {
                assert_eq!(
                    err(json!({"n": {op: bad}})),
                    format!("filter.n.{op} must be a number or a string")
                );
            }
        }
        assert_eq!(
            err(json!({"a": {"$exists": 1}})),
            "filter.a.$exists must be a boolean"
        );
        assert_eq!(
            err(json!({"a": {"$exists": "true"}})),
            "filter.a.$exists must be a boolean"
        );
    }

    #[test]
    fn error_mixed_keys() {
        let e = err(json!({"a": {"$gt": 1, "b": 2}}));
        assert!(e.starts_with("filter.a: cannot mix operators"), "{e}");
        assert!(e.contains("$gt") && e.contains("(b)"), "{e}");
    }

    #[test]
    fn error_bad_keys() {
        assert_eq!(err(json!({"": 1})), "filter: empty key");
        assert!(err(json!({"a..b": 1})).contains("empty path segment"));
        assert!(err(json!({".a": 1})).contains("empty path segment"));
        assert!(err(json!({"a.": 1})).contains("empty path segment"));
    }

    #[test]
    fn condition_limit() {
        let mut o = Map::new();
        for i in 0..MAX_CONDITIONS {
            o.insert(format!("k{i}"), json!(i));
        }
        assert_eq!(
            Filter::compile(&Value::Object(o.clone())).unwrap().len(),
            MAX_CONDITIONS
        );
        o.insert("extra".into(), json!(1));
        assert_eq!(
            err(Value::Object(o)),
            format!("filter has too many conditions (max {MAX_CONDITIONS})")
        );
        // Operators count individually.
        let mut o = Map::new();
        for i in 0..32 {
            o.insert(format!("k{i}"), json!({"$gt": 0, "$lt": 10}));
        }
        assert!(Filter::compile(&Value::Object(o.clone())).is_ok());
        o.insert("x".into(), json!({"$exists": true}));
        assert!(err(Value::Object(o)).contains("too many conditions"));
    }

    #[test]
    fn index_key_of() {
        assert_eq!(IndexKey::of(&json!(1)), IndexKey::of(&json!(1.0)));
        assert_eq!(IndexKey::of(&json!(0)), IndexKey::of(&json!(-0.0)));
        assert_ne!(IndexKey::of(&json!(1)), IndexKey::of(&json!("1")));
        assert_ne!(IndexKey::of(&json!(1)), IndexKey::of(&json!(true)));
        assert_ne!(IndexKey::of(&json!(0)), IndexKey::of(&json!(null)));
        assert_ne!(IndexKey::of(&json!(0)), IndexKey::of(&json!(false)));
        assert_ne!(IndexKey::of(&json!("")), IndexKey::of(&json!(null)));
        assert_eq!(IndexKey::of(&json!(null)), Some(IndexKey::Null));
        assert_eq!(IndexKey::of(&json!(true)), Some(IndexKey::Bool(true)));
        assert_eq!(IndexKey::of(&json!("x")), Some(IndexKey::Str("x".into())));
        assert_eq!(
            IndexKey::of(&json!(2.5)),
            Some(IndexKey::Num(2.5f64.to_bits()))
        );
        assert_eq!(IndexKey::of(&json!([1])), None);
        assert_eq!(IndexKey::of(&json!({})), None);
    }

    #[test]
    fn index_entries_shape() {
        let md = meta(json!({
            "type": "note",
            "tags": ["a", "b", "a", {"x": 1}, [2]],
            "n": 1.0,
            "z": null,
            "o": {"p": {"q": {"r": true, "s": {"t": 1}}}, "list": [1, 2]},
            "empty": {}
        }));
        let e = index_entries(&md);
        let want: Vec<(String, IndexKey)> = vec![
            ("n".into(), num(1.0)),
            ("o.list".into(), num(1.0)),
            ("o.list".into(), num(2.0)),
            ("o.p.q.r".into(), IndexKey::Bool(true)),
            ("tags".into(), IndexKey::Str("a".into())),
            ("tags".into(), IndexKey::Str("b".into())),
            ("type".into(), IndexKey::Str("note".into())),
            ("z".into(), IndexKey::Null),
        ];
        let mut want = want;
        want.sort();
        assert_eq!(
            e, want,
            "o.p.q.s.t is deeper than 4 and must not be indexed"
        );
        assert!(index_entries(&Map::new()).is_empty());
    }

    #[test]
    fn index_terms_shape() {
        let fl = f(json!({
            "type": "note",
            "tags": {"$in": ["b", "a", "b"]},
            "n": {"$in": [1, 1.0, 2]},
            "mixed": {"$in": [1, [2]]},
            "obj": {"a": 1},
            "arr": [1],
            "r": {"$gt": 1},
            "ne": {"$ne": 1},
            "x": {"$nin": [1]},
            "e": {"$exists": true},
            "emp": {"$in": []},
            "a.b.c.d": 1,
            "a.b.c.d.e": 1
        }));
        let mut t = fl.index_terms();
        t.sort();
        assert_eq!(
            t,
            vec![
                ("a.b.c.d".to_string(), vec![num(1.0)]),
                ("emp".to_string(), vec![]),
                ("n".to_string(), vec![num(1.0), num(2.0)]),
                (
                    "tags".to_string(),
                    vec![IndexKey::Str("a".into()), IndexKey::Str("b".into())]
                ),
                ("type".to_string(), vec![IndexKey::Str("note".into())]),
            ]
        );
    }

    #[test]
    fn index_terms_agree_with_entries_examples() {
        let md = meta(json!({"tags": ["a", "b"], "a": {"b": 1}, "c.d": "x"}));
        for fl in [
            json!({"tags": "a"}),
            json!({"tags": {"$in": ["z", "b"]}}),
            json!({"a.b": 1.0}),
            json!({"c.d": "x"}),
        ] {
            let fl = f(fl);
            assert!(fl.matches(&md));
            let entries = index_entries(&md);
            for (path, keys) in fl.index_terms() {
                assert!(entries.iter().any(|(p, k)| *p == path && keys.contains(k)));
            }
        }
    }

    // ---------- property tests ----------

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-3i64..4).prop_map(|i| json!(i)),
            (-3i64..4).prop_map(|i| json!(i as f64)),
            Just(json!(0.5)),
            Just(json!(-0.0)),
            prop::sample::select(vec!["a", "b", "c", "", "1"]).prop_map(|s| json!(s)),
        ]
    }

    fn key() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["a", "b", "c", "tags", "a.b"]).prop_map(str::to_owned)
    }

    fn dotfree_key() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["a", "b", "c", "tags"]).prop_map(str::to_owned)
    }

    fn json_value(k: BoxedStrategy<String>) -> impl Strategy<Value = Value> {
        scalar().prop_recursive(5, 40, 5, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(k.clone(), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn metadata(k: BoxedStrategy<String>) -> impl Strategy<Value = Map<String, Value>> {
        prop::collection::btree_map(k.clone(), json_value(k), 0..5)
            .prop_map(|m| m.into_iter().collect())
    }

    fn path() -> impl Strategy<Value = String> {
        prop::collection::vec(dotfree_key(), 1..7).prop_map(|v| v.join("."))
    }

    fn condition() -> impl Strategy<Value = Value> {
        let list = prop::collection::vec(
            prop_oneof![4 => scalar(), 1 => json_value(key().boxed())],
            0..4,
        );
        let ops = prop_oneof![
            list.clone().prop_map(|l| json!({"$in": l})),
            list.prop_map(|l| json!({"$nin": l})),
            scalar().prop_map(|v| json!({"$ne": v})),
            any::<bool>().prop_map(|b| json!({"$exists": b})),
            (
                prop::sample::select(vec!["$gt", "$gte", "$lt", "$lte"]),
                -3i64..4
            )
                .prop_map(|(op, n)| json!({op: n})),
            (
                prop::sample::select(vec!["$gt", "$lt"]),
                prop::sample::select(vec!["a", "b"])
            )
                .prop_map(|(op, s)| json!({op: s})),
        ];
        prop_oneof![
            3 => scalar(),
            1 => json_value(dotfree_key().boxed()),
            3 => ops,
        ]
    }

    fn filter_json() -> impl Strategy<Value = Value> {
        prop::collection::btree_map(prop_oneof![path(), key()], condition(), 0..4)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// If a row matches, every index term of the filter is satisfied by the row's index entries.
        #[test]
        fn prop_index_terms_consistent(fj in filter_json(), md in metadata(key().boxed())) {
            let fl = Filter::compile(&fj).unwrap();
            if fl.matches(&md) {
                let entries = index_entries(&md);
                for (path, keys) in fl.index_terms() {
                    prop_assert!(
                        entries.iter().any(|(p, k)| *p == path && keys.contains(k)),
                        "filter {} matches {:?} but term {} {:?} not in entries {:?}",
                        fj, md, path, keys, entries
                    );
                }
            }
        }

        /// Filters built from a row's own index entries match that row (dot-free keys).
        #[test]
        fn prop_entries_yield_matching_filters(md in metadata(dotfree_key().boxed())) {
            for (path, key) in index_entries(&md) {
                let v = match key {
                    IndexKey::Null => Value::Null,
                    IndexKey::Bool(b) => Value::Bool(b),
                    IndexKey::Num(bits) => json!(f64::from_bits(bits)),
                    IndexKey::Str(s) => Value::String(s),
                };
                let mut o = Map::new();
                o.insert(path.clone(), v.clone());
                let fl = Filter::compile(&Value::Object(o)).unwrap();
                prop_assert!(fl.matches(&md), "{} = {} should match {:?}", path, v, md);
                let mut o = Map::new();
                o.insert(path.clone(), json!({"$in": [v.clone()]}));
                prop_assert!(Filter::compile(&Value::Object(o)).unwrap().matches(&md));
                let mut o = Map::new();
                o.insert(path.clone(), json!({"$exists": true}));
                prop_assert!(Filter::compile(&Value::Object(o)).unwrap().matches(&md));
            }
        }

        /// $ne / $nin are exact negations of equality / $in.
        #[test]
        fn prop_negations(p in key(), v in scalar(), l in prop::collection::vec(scalar(), 0..3),
                          md in metadata(key().boxed())) {
            let mut a = Map::new(); a.insert(p.clone(), v.clone());
            let mut b = Map::new(); b.insert(p.clone(), json!({"$ne": v}));
            prop_assert_ne!(
                Filter::compile(&Value::Object(a)).unwrap().matches(&md),
                Filter::compile(&Value::Object(b)).unwrap().matches(&md)
            );
            let mut a = Map::new(); a.insert(p.clone(), json!({"$in": l.clone()}));
            let mut b = Map::new(); b.insert(p, json!({"$nin": l}));
            prop_assert_ne!(
                Filter::compile(&Value::Object(a)).unwrap().matches(&md),
                Filter::compile(&Value::Object(b)).unwrap().matches(&md)
            );
        }
    }
}
