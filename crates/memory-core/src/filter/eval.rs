//! Per-row evaluation of a compiled filter against one metadata object.

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

use super::{Bound, CmpOp, Cond, Node, Op};

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

/// Whether `metadata` satisfies `n`.
pub(super) fn node(n: &Node, metadata: &Map<String, Value>) -> bool {
    match n {
        Node::Cond(c) => op(&c.op, lookup(metadata, c)),
        Node::And(children) => children.iter().all(|c| node(c, metadata)),
        Node::Or(children) => children.iter().any(|c| node(c, metadata)),
        Node::Not(child) => !node(child, metadata),
    }
}

/// Resolve a condition's path: literal top-level key first, then the dotted walk through objects.
pub(super) fn lookup<'a>(m: &'a Map<String, Value>, c: &Cond) -> Option<&'a Value> {
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

fn op(op: &Op, v: Option<&Value>) -> bool {
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
        Op::Contains(want) => matches!(v, Some(Value::Array(items)) if array_has(items, want)),
        Op::All(list) => matches!(v, Some(Value::Array(items)) if list.iter().all(|w| array_has(items, w))),
    }
}

fn array_has(items: &[Value], want: &Value) -> bool {
    items.iter().any(|e| json_eq(e, want))
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
    json_eq(x, want) || matches!(x, Value::Array(items) if array_has(items, want))
}

/// The number as an integer, when JSON wrote it as one.
pub(super) fn int_of(n: &Number) -> Option<i128> {
    n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from))
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
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q)),
        (Value::Object(x), Value::Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w))),
        _ => a == b,
    }
}
