//! `$and` / `$or` / `$not`, `$contains` / `$all`, and the compiler's limits and messages.

use super::*;
use proptest::prelude::*;
use serde_json::json;

use super::tests::{condition, json_value, key, metadata, path, scalar};

fn m(filter: Value, metadata: Value) -> bool {
    Filter::compile(&filter).unwrap().matches(metadata.as_object().unwrap())
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

/// `$not` nested `levels - 1` times around `inner`: a filter `levels` deep.
fn nots(levels: usize, inner: Value) -> Value {
    (1..levels).fold(inner, |f, _| json!({"$not": f}))
}

#[test]
fn or_and_not() {
    let note = json!({"type": "note", "n": 3, "tags": ["a", "b"]});
    assert!(m(json!({"$or": [{"type": "todo"}, {"n": 3}]}), note.clone()));
    assert!(!m(json!({"$or": [{"type": "todo"}, {"n": 4}]}), note.clone()));
    assert!(m(json!({"$and": [{"type": "note"}, {"n": {"$gt": 2}}]}), note.clone()));
    assert!(!m(json!({"$and": [{"type": "note"}, {"n": {"$gt": 3}}]}), note.clone()));
    assert!(m(json!({"$not": {"type": "todo"}}), note.clone()));
    assert!(!m(json!({"$not": {"type": "note"}}), note.clone()));
    // $not negates the whole sub-filter: a missing key matches.
    assert!(m(json!({"$not": {"missing": 1}}), note.clone()));
    assert!(!m(json!({"$not": {}}), note.clone()), "{{}} matches everything, its negation nothing");
    assert!(m(json!({"$and": [{}]}), note.clone()));
    // Logical operators sit beside plain keys, all of which must hold.
    assert!(m(json!({"type": "note", "$or": [{"tags": "z"}, {"tags": "b"}]}), note.clone()));
    assert!(!m(json!({"type": "todo", "$or": [{"tags": "z"}, {"tags": "b"}]}), note.clone()));
    // Nesting.
    let f = json!({"$or": [{"$and": [{"type": "note"}, {"$not": {"tags": "a"}}]}, {"n": {"$in": [1, 3]}}]});
    assert!(m(f.clone(), note.clone()));
    assert!(!m(f, json!({"type": "note", "n": 2, "tags": ["a"]})));
}

#[test]
fn contains_and_all() {
    let md = json!({"tags": ["a", "b", {"k": 1}, [1, 2]], "s": "abc", "one": "a", "n": {"list": [1, 2.0]}});
    assert!(m(json!({"tags": {"$contains": "a"}}), md.clone()));
    assert!(!m(json!({"tags": {"$contains": "z"}}), md.clone()));
    assert!(m(json!({"tags": {"$contains": {"k": 1.0}}}), md.clone()), "deep equality on elements");
    assert!(m(json!({"tags": {"$contains": [1, 2]}}), md.clone()));
    assert!(!m(json!({"s": {"$contains": "b"}}), md.clone()), "not a substring test");
    assert!(!m(json!({"one": {"$contains": "a"}}), md.clone()), "a scalar is not an array");
    assert!(!m(json!({"missing": {"$contains": "a"}}), md.clone()));
    assert!(m(json!({"n.list": {"$contains": 2}}), md.clone()));
    assert!(m(json!({"tags": {"$all": ["b", "a"]}}), md.clone()));
    assert!(!m(json!({"tags": {"$all": ["a", "z"]}}), md.clone()));
    assert!(!m(json!({"one": {"$all": ["a"]}}), md.clone()));
    assert!(m(json!({"n.list": {"$all": [1.0, 2]}}), md));
}

#[test]
fn logical_errors_name_where() {
    for bad in [json!([]), json!({}), json!("x"), json!(null)] {
        assert_eq!(err(json!({"$or": bad})), "filter.$or: must be a non-empty array of filters");
        assert_eq!(err(json!({"$and": bad})), "filter.$and: must be a non-empty array of filters");
    }
    assert_eq!(err(json!({"$or": [{"a": 1}, 2]})), "filter.$or[1]: must be an object");
    assert_eq!(err(json!({"$not": [{"a": 1}]})), "filter.$not: must be an object");
    assert_eq!(err(json!({"$nor": [{"a": 1}]})), "filter: unknown operator $nor");
    assert_eq!(err(json!({"$or": [{"$xor": []}]})), "filter.$or[0]: unknown operator $xor");
    assert_eq!(err(json!({"$not": {"tags": {"$in": "a"}}})), "filter.$not.tags.$in must be an array");
    assert_eq!(err(json!({"a": {"$not": {"$gt": 1}}})), "filter.a: unknown operator $not");
    assert_eq!(err(json!({"$and": [{"": 1}]})), "filter.$and[0]: empty key");
    assert_eq!(err(json!({"tags": {"$all": []}})), "filter.tags.$all: must be a non-empty array");
    assert_eq!(err(json!({"tags": {"$all": "a"}})), "filter.tags.$all: must be a non-empty array");
}

#[test]
fn depth_limit() {
    assert!(Filter::compile(&nots(MAX_FILTER_DEPTH, json!({"a": 1}))).is_ok());
    let at = format!("filter{}", ".$not".repeat(MAX_FILTER_DEPTH));
    assert_eq!(
        err(nots(MAX_FILTER_DEPTH + 1, json!({"a": 1}))),
        format!("{at}: filters nest deeper than {MAX_FILTER_DEPTH} levels")
    );
    // $or levels count the same way.
    let or = |levels: usize| (1..levels).fold(json!({"a": 1}), |f, _| json!({"$or": [{"b": 2}, f]}));
    assert!(Filter::compile(&or(MAX_FILTER_DEPTH)).is_ok());
    assert!(err(or(MAX_FILTER_DEPTH + 1)).ends_with(&format!("filters nest deeper than {MAX_FILTER_DEPTH} levels")));
    // A filter far deeper than the limit is refused at the limit, not by exhausting the stack.
    assert!(err(nots(200, json!({}))).contains("nest deeper"));
}

#[test]
fn sub_filters_count_as_conditions() {
    let f = Filter::compile(&json!({"$or": [{"a": 1}, {"b": {"$gt": 1, "$lt": 3}}], "c": 1})).unwrap();
    assert_eq!(f.len(), 2 + 3 + 1);
    let many: Vec<Value> = (0..MAX_CONDITIONS).map(|_| json!({})).collect();
    assert!(Filter::compile(&json!({"$or": many.clone()})).is_ok());
    let mut more = many;
    more.push(json!({}));
    assert_eq!(err(json!({"$or": more})), format!("filter has too many conditions (max {MAX_CONDITIONS})"));
}

#[test]
fn operator_lists_are_what_the_compiler_accepts() {
    let arg = |op: &str| match op {
        "$in" | "$nin" | "$all" => json!([1]),
        "$exists" => json!(true),
        _ => json!(1),
    };
    for op in FIELD_OPERATORS {
        assert!(Filter::compile(&json!({"a": {op: arg(op)}})).is_ok(), "{op}");
    }
    for op in LOGICAL_OPERATORS {
        let arg = if op == "$not" { json!({"a": 1}) } else { json!([{"a": 1}]) };
        assert!(Filter::compile(&json!({op: arg})).is_ok(), "{op}");
    }
}

/// A generated filter compiled; `None` when it has more conditions than allowed (the only
/// error a generated filter may have).
pub(super) fn compiled(v: &Value) -> Option<Filter> {
    match Filter::compile(v) {
        Ok(f) => Some(f),
        Err(e) => {
            assert!(e.to_string().contains("too many conditions"), "{v}: {e}");
            None
        }
    }
}

/// The conditions of [`condition`] plus the array operators.
fn any_condition() -> impl Strategy<Value = Value> {
    let wanted = prop_oneof![4 => scalar(), 1 => json_value(key().boxed())];
    prop_oneof![
        4 => condition(),
        1 => wanted.clone().prop_map(|v| json!({"$contains": v})),
        1 => prop::collection::vec(wanted, 1..3).prop_map(|l| json!({"$all": l})),
    ]
}

/// A random filter tree: conditions under `$and` / `$or` / `$not`, up to four levels deep.
pub(super) fn tree_filter() -> impl Strategy<Value = Value> {
    let leaf = prop::collection::btree_map(path(), any_condition(), 0..3).prop_map(|m| Value::Object(m.into_iter().collect()));
    leaf.prop_recursive(3, 24, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4).prop_map(|v| json!({"$and": v})),
            prop::collection::vec(inner.clone(), 1..4).prop_map(|v| json!({"$or": v})),
            inner.clone().prop_map(|f| json!({"$not": f})),
            (inner, path(), condition()).prop_map(|(mut f, p, c)| {
                f.as_object_mut().unwrap().insert(p, c);
                f
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// The logical operators mean what boolean logic says.
    #[test]
    fn prop_logic(a in tree_filter(), b in tree_filter(), md in metadata(key().boxed())) {
        let (Some(fa), Some(fb)) = (compiled(&a), compiled(&b)) else { return Ok(()) };
        let (fa, fb) = (fa.matches(&md), fb.matches(&md));
        let both = [a.clone(), b.clone()];
        let cases = [
            (json!({"$and": both.clone()}), fa && fb),
            (json!({"$or": both.clone()}), fa || fb),
            (json!({"$not": a}), !fa),
            (json!({"$not": {"$or": both}}), !fa && !fb),
        ];
        for (f, want) in cases {
            match Filter::compile(&f) {
                Ok(f) => prop_assert_eq!(f.matches(&md), want),
                // Two large random trees may together pass the condition limit.
                Err(e) => prop_assert!(e.to_string().contains("too many conditions"), "{}", e),
            }
        }
    }
}
