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
    assert_eq!(err(json!({"$nor": []})), "filter: unknown operator $nor");
    assert_eq!(
        err(json!({"$or": [{"a": {"$regex": 1}}]})),
        "filter.$or[0].a: unknown operator $regex"
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

pub(super) fn scalar() -> impl Strategy<Value = Value> {
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

pub(super) fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "c", "tags", "a.b"]).prop_map(str::to_owned)
}

pub(super) fn dotfree_key() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "c", "tags"]).prop_map(str::to_owned)
}

pub(super) fn json_value(k: BoxedStrategy<String>) -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 40, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(k.clone(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

pub(super) fn metadata(k: BoxedStrategy<String>) -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(k.clone(), json_value(k), 0..5)
        .prop_map(|m| m.into_iter().collect())
}

pub(super) fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(dotfree_key(), 1..7).prop_map(|v| v.join("."))
}

pub(super) fn condition() -> impl Strategy<Value = Value> {
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
