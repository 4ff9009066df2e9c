//! The packed metadata form: it reads back as the map it was packed from, and the filter and
//! the inverted index give on it exactly what they gave on a parsed `serde_json::Map` (the
//! evaluator and `index_entries` as they were before packing are kept below as the oracle).

use std::cmp::Ordering;

use proptest::prelude::*;
use serde_json::{json, Map, Number, Value};

use super::index::IndexKey;
use super::packed::{packed, Obj};
use super::tests::{json_value, key, metadata};
use super::tests_logic::tree_filter;
use super::*;

/// The filter evaluator on parsed JSON, as it was before metadata was packed.
mod oracle {
    use super::*;

    pub fn matches(f: &Filter, m: &Map<String, Value>) -> bool {
        f.root.iter().all(|n| node(n, m))
    }

    fn node(n: &Node, m: &Map<String, Value>) -> bool {
        match n {
            Node::Cond(c) => op(&c.op, lookup(m, c)),
            Node::And(children) => children.iter().all(|c| node(c, m)),
            Node::Or(children) => children.iter().any(|c| node(c, m)),
            Node::Not(child) => !node(child, m),
        }
    }

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
            Op::Contains(want) => matches!(v, Some(Value::Array(items)) if items.iter().any(|e| json_eq(e, want))),
            Op::All(list) => matches!(v, Some(Value::Array(items)) if list.iter().all(|w| items.iter().any(|e| json_eq(e, w)))),
        }
    }

    fn cmp_holds(op: CmpOp, bound: &Bound, x: &Value) -> bool {
        let ord = match (x, bound) {
            (Value::Number(a), Bound::Num(b)) => num_cmp(a, b),
            (Value::String(a), Bound::Str(b)) => Some(a.as_str().cmp(b.as_str())),
            _ => None,
        };
        ord.is_some_and(|o| match op {
            CmpOp::Gt => o == Ordering::Greater,
            CmpOp::Gte => o != Ordering::Less,
            CmpOp::Lt => o == Ordering::Less,
            CmpOp::Lte => o != Ordering::Greater,
        })
    }

    fn eq_or_contains(x: &Value, want: &Value) -> bool {
        json_eq(x, want) || matches!(x, Value::Array(items) if items.iter().any(|e| json_eq(e, want)))
    }

    fn int_of(n: &Number) -> Option<i128> {
        n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from))
    }

    fn num_cmp(a: &Number, b: &Number) -> Option<Ordering> {
        match (int_of(a), int_of(b)) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
        }
    }

    fn json_eq(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => num_cmp(x, y) == Some(Ordering::Equal),
            (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q)),
            (Value::Object(x), Value::Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w))),
            _ => a == b,
        }
    }

    /// `index_entries` on parsed JSON, as it was before packing.
    pub fn index_entries(metadata: &Map<String, Value>) -> Vec<(String, IndexKey)> {
        fn walk(top: &Map<String, Value>, m: &Map<String, Value>, prefix: &str, depth: usize, out: &mut Vec<(String, IndexKey)>) {
            for (k, v) in m {
                let path = if prefix.is_empty() {
                    k.clone()
                } else if k.contains('.') {
                    continue;
                } else {
                    format!("{prefix}.{k}")
                };
                let shadowed = !prefix.is_empty() && top.contains_key(&path);
                match v {
                    Value::Object(inner) if depth < MAX_INDEX_DEPTH && !k.contains('.') => walk(top, inner, &path, depth + 1, out),
                    Value::Object(_) => {}
                    _ if shadowed => {}
                    Value::Array(items) => out.extend(items.iter().filter_map(IndexKey::of).map(|key| (path.clone(), key))),
                    scalar => out.extend(IndexKey::of(scalar).map(|key| (path, key))),
                }
            }
        }
        let mut out = Vec::new();
        walk(metadata, metadata, "", 1, &mut out);
        out.sort();
        out.dedup();
        out
    }
}

fn parse(text: &str) -> Map<String, Value> {
    serde_json::from_str::<Value>(text).unwrap().as_object().unwrap().clone()
}

/// Metadata the wire lets through, at the edges of JSON numbers, strings and nesting.
const EDGE_CASES: [&str; 9] = [
    r#"{"big":1e21,"neg0":-0.0,"zero":0,"u":18446744073709551615,"i":-9223372036854775808,"f":1.5e-300,"two53":9007199254740993}"#,
    r#"{"ключ":"значение","emoji 🎉":"✓","esc":"a\"b\\c\u00e9\n","":"empty key"}"#,
    r#"{"empty":{},"arr":[],"nested":{"a":{"b":{"c":{"d":{"e":1}}}}},"mixed":[1,"1",true,null,{"x":[2]},[3]]}"#,
    r#"{"dup":1,"dup":2}"#,
    r#"{ "spaced" : [ 1 , 2 ] ,
        "tag" : "common" }"#,
    r#"{"a.b":1,"a":{"b":2}}"#,
    r#"{}"#,
    r#"{"n":null,"t":true,"f":false}"#,
    r#"{"long":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#,
];

#[test]
fn packed_reads_back_as_parsed() {
    for text in EDGE_CASES {
        let m = parse(text);
        let p = packed(&m);
        let obj = Obj::new(&p);
        assert_eq!(obj.to_map(), m, "{text}");
        assert_eq!(obj.len(), m.len(), "{text}");
        for (k, v) in &m {
            assert_eq!(obj.get(k).map(|x| x.to_value()), Some(v.clone()), "{text}: {k}");
        }
        assert!(obj.get("no such key").is_none());
        assert_eq!(index_entries(&m), oracle::index_entries(&m), "{text}");
    }
    assert!(packed(&Map::new()).is_empty(), "{{}} packs to nothing");
    // Duplicate keys: the last one wins, as when parsing.
    assert_eq!(Obj::new(&packed(&parse(r#"{"dup":1,"dup":2}"#))).get("dup").map(|v| v.to_value()), Some(json!(2)));
}

#[test]
fn filters_on_edge_cases_agree_with_the_oracle() {
    let filters = [
        json!({"big": 1e21}),
        json!({"big": {"$gt": 1e20}}),
        json!({"neg0": 0}),
        json!({"zero": -0.0}),
        json!({"u": {"$gte": 18446744073709551615u64}}),
        json!({"i": {"$lt": -9223372036854775807i64}}),
        json!({"two53": 9007199254740992u64}),
        json!({"ключ": "значение"}),
        json!({"emoji 🎉": {"$exists": true}}),
        json!({"esc": "a\"b\\c\u{e9}\n"}),
        json!({"empty": {}}),
        json!({"arr": []}),
        json!({"nested.a.b.c.d": {"e": 1}}),
        json!({"nested.a.b": {"c": {"d": {"e": 1}}}}),
        json!({"mixed": {"x": [2]}}),
        json!({"mixed": {"$contains": [3]}}),
        json!({"mixed": {"$all": [1, "1", true, null]}}),
        json!({"mixed": {"$gt": 0}}),
        json!({"dup": 2}),
        json!({"spaced": 2, "tag": {"$in": ["common", "rare"]}}),
        json!({"a.b": 1}),
        json!({"$or": [{"n": null}, {"t": {"$ne": true}}]}),
        json!({"$not": {"f": false}}),
        json!({"long": {"$gte": "x"}}),
    ];
    for text in EDGE_CASES {
        let m = parse(text);
        for fj in &filters {
            let f = Filter::compile(fj).unwrap();
            assert_eq!(f.matches(&m), oracle::matches(&f, &m), "{fj} on {text}");
        }
    }
    // A few spelled out, so the oracle is not the only witness.
    let edge = parse(EDGE_CASES[0]);
    let holds = |fj: Value| Filter::compile(&fj).unwrap().matches(&edge);
    assert!(holds(json!({"big": 1e21})) && holds(json!({"neg0": 0})) && holds(json!({"zero": -0.0})));
    assert!(holds(json!({"u": 18446744073709551615u64})) && !holds(json!({"two53": 9007199254740992u64})));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Packing keeps every value, and the filter and the index read it as they read JSON.
    #[test]
    fn prop_packed_same_as_parsed(fj in tree_filter(), md in metadata(key().boxed()), extra in json_value(key().boxed())) {
        let mut md = md;
        md.insert("x".into(), extra);
        let p = packed(&md);
        prop_assert_eq!(Obj::new(&p).to_map(), md.clone());
        prop_assert_eq!(index_entries(&md), oracle::index_entries(&md));
        if let Ok(f) = Filter::compile(&fj) {
            prop_assert_eq!(f.matches(&md), oracle::matches(&f, &md));
        }
    }
}
