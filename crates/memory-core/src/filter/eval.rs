//! Per-row evaluation of a compiled filter against one metadata object, read in place in
//! its packed form ([`super::packed`]).

use std::cmp::Ordering;

use serde_json::{Number, Value};

use super::packed::{Arr, Obj, Val};
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
pub(super) fn node(n: &Node, metadata: Obj<'_>) -> bool {
    match n {
        Node::Cond(c) => op(&c.op, lookup(metadata, c)),
        Node::And(children) => children.iter().all(|c| node(c, metadata)),
        Node::Or(children) => children.iter().any(|c| node(c, metadata)),
        Node::Not(child) => !node(child, metadata),
    }
}

/// Resolve a condition's path: literal top-level key first, then the dotted walk through objects.
pub(super) fn lookup<'a>(m: Obj<'a>, c: &Cond) -> Option<Val<'a>> {
    if let Some(v) = m.get(&c.path) {
        return Some(v);
    }
    if c.segments.len() < 2 {
        return None;
    }
    let mut cur = m.get(&c.segments[0])?;
    for seg in &c.segments[1..] {
        cur = cur.as_obj()?.get(seg)?;
    }
    Some(cur)
}

fn op(op: &Op, v: Option<Val<'_>>) -> bool {
    match op {
        Op::Eq(want) => v.is_some_and(|x| eq_or_contains(x, want)),
        Op::Ne(want) => !v.is_some_and(|x| eq_or_contains(x, want)),
        Op::In(list) => v.is_some_and(|x| list.iter().any(|w| eq_or_contains(x, w))),
        Op::Nin(list) => !v.is_some_and(|x| list.iter().any(|w| eq_or_contains(x, w))),
        Op::Cmp(op, bound) => v.is_some_and(|x| match x {
            Val::Arr(items) => items.iter().any(|e| cmp_holds(*op, bound, e)),
            _ => cmp_holds(*op, bound, x),
        }),
        Op::Exists(b) => v.is_some() == *b,
        Op::Contains(want) => matches!(v, Some(Val::Arr(items)) if array_has(items, want)),
        Op::All(list) => matches!(v, Some(Val::Arr(items)) if list.iter().all(|w| array_has(items, w))),
    }
}

fn array_has(items: Arr<'_>, want: &Value) -> bool {
    items.iter().any(|e| json_eq(e, want))
}

fn cmp_holds(op: CmpOp, bound: &Bound, x: Val<'_>) -> bool {
    let ord = match (x, bound) {
        (Val::Str(a), Bound::Str(b)) => Some(a.cmp(b.as_str())),
        (_, Bound::Num(b)) => x.number().and_then(|a| num_cmp(&a, b)),
        _ => None,
    };
    ord.is_some_and(|o| op.holds(o))
}

/// Equality, plus "array contains" when the metadata value is an array.
fn eq_or_contains(x: Val<'_>, want: &Value) -> bool {
    json_eq(x, want) || matches!(x, Val::Arr(items) if array_has(items, want))
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

/// Deep JSON equality of a stored value and a filter's, with numeric number comparison
/// (`1 == 1.0`); objects ignore key order.
fn json_eq(a: Val<'_>, b: &Value) -> bool {
    match (a, b) {
        (Val::Null, Value::Null) => true,
        (Val::Bool(x), Value::Bool(y)) => x == *y,
        (Val::Str(x), Value::String(y)) => x == y,
        (Val::Arr(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q)),
        (Val::Obj(x), Value::Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w))),
        (_, Value::Number(y)) => a.number().is_some_and(|x| num_cmp(&x, y) == Some(Ordering::Equal)),
        _ => false,
    }
}
