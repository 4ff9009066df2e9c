//! The posting-list answer of a filter against per-row evaluation.

use std::collections::HashMap;

use proptest::prelude::*;
use roaring::RoaringBitmap;
use serde_json::json;

use super::tests::{key, metadata};
use super::tests_logic::{compiled, tree_filter};
use super::*;

/// Posting lists built from [`index_entries`] of some rows, as the store builds them.
struct TestIndex {
    postings: HashMap<(String, IndexKey), RoaringBitmap>,
    rows: u32,
}

impl TestIndex {
    fn of(rows: &[Map<String, Value>]) -> TestIndex {
        let mut postings: HashMap<(String, IndexKey), RoaringBitmap> = HashMap::new();
        for (r, md) in rows.iter().enumerate() {
            for entry in index_entries(md) {
                postings.entry(entry).or_default().insert(r as u32);
            }
        }
        TestIndex { postings, rows: rows.len() as u32 }
    }
}

impl PostingIndex for TestIndex {
    fn postings(&self, path: &str, key: &IndexKey) -> Option<&RoaringBitmap> {
        self.postings.get(&(path.to_owned(), key.clone()))
    }

    fn universe(&self) -> RoaringBitmap {
        (0..self.rows).collect()
    }
}

fn naive(f: &Filter, rows: &[Map<String, Value>]) -> RoaringBitmap {
    (0..rows.len() as u32).filter(|&r| f.matches(&rows[r as usize])).collect()
}

/// The posting-list answer agrees with per-row evaluation: never misses a row, and is the
/// exact set when it says so. Returns the candidates for further checks.
fn check(f: &Filter, rows: &[Map<String, Value>]) -> Option<Candidates> {
    let want = naive(f, rows);
    let c = f.candidates(&TestIndex::of(rows));
    if let Some(c) = &c {
        assert!(want.is_subset(&c.rows), "{f:?}: candidates {:?} miss some of {:?}", c.rows, want);
        if c.exact {
            assert_eq!(c.rows, want, "{f:?}: exact candidates differ from per-row evaluation");
        }
    }
    c
}

fn rows(v: Value) -> Vec<Map<String, Value>> {
    v.as_array().unwrap().iter().map(|r| r.as_object().unwrap().clone()).collect()
}

fn plan(f: Value, rows: &[Map<String, Value>]) -> Option<(Vec<u32>, bool)> {
    check(&Filter::compile(&f).unwrap(), rows).map(|c| (c.rows.iter().collect(), c.exact))
}

#[test]
fn plans_of_examples() {
    let rs = rows(json!([
        {"type": "note", "tags": ["a", "b"], "n": 1},
        {"type": "todo", "tags": ["b"], "n": 2, "author": {"name": "ada"}},
        {"type": "note", "tags": "a", "n": 3.0},
        {"a.b": 1, "a": {"b": 2}},
        {}
    ]));
    assert_eq!(plan(json!({"type": "note"}), &rs), Some((vec![0, 2], true)));
    assert_eq!(plan(json!({"$or": [{"type": "todo"}, {"n": 3}]}), &rs), Some((vec![1, 2], true)));
    assert_eq!(plan(json!({"$not": {"type": "note"}}), &rs), Some((vec![1, 3, 4], true)));
    assert_eq!(plan(json!({"type": {"$ne": "note"}}), &rs), Some((vec![1, 3, 4], true)));
    assert_eq!(plan(json!({"type": {"$nin": ["note", "todo"]}}), &rs), Some((vec![3, 4], true)));
    assert_eq!(plan(json!({"author.name": "ada"}), &rs), Some((vec![1], true)));
    // The literal key shadows the nested path: only row 3's literal "a.b" is indexed.
    assert_eq!(plan(json!({"a.b": 1}), &rs), Some((vec![3], true)));
    assert_eq!(plan(json!({"a.b": 2}), &rs), Some((vec![], true)));
    // $contains: a superset (row 2's scalar "a" is indexed alike), checked per row.
    assert_eq!(plan(json!({"tags": {"$contains": "a"}}), &rs), Some((vec![0, 2], false)));
    assert_eq!(plan(json!({"tags": {"$all": ["a", "b"]}}), &rs), Some((vec![0], false)));
    // An $and narrows by its indexable part; an $or with a range branch cannot narrow.
    assert_eq!(plan(json!({"type": "note", "n": {"$gt": 1}}), &rs), Some((vec![0, 2], false)));
    assert_eq!(plan(json!({"$or": [{"type": "todo"}, {"n": {"$gt": 2}}]}), &rs), None);
    assert_eq!(plan(json!({"$not": {"tags": {"$contains": "a"}}}), &rs), None);
    assert_eq!(plan(json!({"n": {"$exists": true}}), &rs), None);
    assert_eq!(plan(json!({}), &rs), None);
    assert_eq!(plan(json!({"$not": {}}), &rs), Some((vec![], true)));
    assert_eq!(plan(json!({"type": {"$in": []}}), &rs), Some((vec![], true)));
    // Beyond the indexed depth: per row.
    assert_eq!(plan(json!({"a.b.c.d.e": 1}), &rs), None);
}

#[test]
fn large_integers_are_not_exact() {
    // 2^53 and 2^53 + 1 share an f64 index key but are different integers.
    let rs = rows(json!([{"n": 9007199254740992u64}, {"n": 9007199254740993u64}, {"n": 5}]));
    assert_eq!(plan(json!({"n": 9007199254740993u64}), &rs), Some((vec![0, 1], false)));
    assert_eq!(plan(json!({"n": {"$ne": 9007199254740993u64}}), &rs), None);
    assert_eq!(plan(json!({"n": 9007199254740991u64}), &rs), Some((vec![], true)));
    assert_eq!(plan(json!({"n": 9007199254740992.0}), &rs), Some((vec![0, 1], true)), "a float compares through f64 too");
}

#[test]
fn index_entries_follow_path_lookup() {
    let md = json!({"a.b": 1, "a": {"b": 2, "c.d": 3, "x": {"y": 4}}, "a.x": {"y": 5}});
    let e = index_entries(md.as_object().unwrap());
    let key = |n: f64| IndexKey::of(&json!(n)).unwrap();
    // a.b reads the literal key; a → "c.d" and the object below "a.x" are unreachable.
    assert_eq!(e, vec![("a.b".to_string(), key(1.0)), ("a.x.y".to_string(), key(4.0))]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// Random filters over random metadata: the posting lists' answer agrees with per-row
    /// evaluation (a superset, and exactly it when marked exact).
    #[test]
    fn prop_plan_equals_per_row(f in tree_filter(), rs in prop::collection::vec(metadata(key().boxed()), 0..12)) {
        if let Some(f) = compiled(&f) {
            check(&f, &rs);
        }
    }

    /// The same over a tiny vocabulary, where literal dotted keys, nested objects, arrays and
    /// the filter's values collide often.
    #[test]
    fn prop_plan_equals_per_row_small_vocabulary(f in small_filter(), rs in prop::collection::vec(small_metadata(), 0..12)) {
        if let Some(f) = compiled(&f) {
            check(&f, &rs);
        }
    }
}

fn small_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![Just(json!(1)), Just(json!(2.0)), Just(json!("a"))]
}

fn small_value() -> impl Strategy<Value = Value> {
    let k = || prop::sample::select(vec!["a", "b", "a.b"]).prop_map(str::to_owned);
    small_scalar().prop_recursive(3, 12, 3, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map(k(), inner, 0..3).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn small_metadata() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(prop::sample::select(vec!["a", "b", "a.b", "a.b.a"]).prop_map(str::to_owned), small_value(), 0..4)
        .prop_map(|m| m.into_iter().collect())
}

fn small_filter() -> impl Strategy<Value = Value> {
    let path = prop::sample::select(vec!["a", "b", "a.b", "a.a", "a.b.a", "b.a"]).prop_map(str::to_owned);
    let cond = prop_oneof![
        2 => small_scalar(),
        1 => prop::collection::vec(small_scalar(), 0..3).prop_map(|l| json!({"$in": l})),
        1 => prop::collection::vec(small_scalar(), 0..3).prop_map(|l| json!({"$nin": l})),
        1 => small_scalar().prop_map(|v| json!({"$ne": v})),
        1 => small_scalar().prop_map(|v| json!({"$contains": v})),
        1 => prop::collection::vec(small_scalar(), 1..3).prop_map(|l| json!({"$all": l})),
    ];
    let leaf = prop::collection::btree_map(path, cond, 1..3).prop_map(|m| Value::Object(m.into_iter().collect()));
    leaf.prop_recursive(2, 8, 2, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..3).prop_map(|v| json!({"$or": v})),
            prop::collection::vec(inner.clone(), 1..3).prop_map(|v| json!({"$and": v})),
            inner.prop_map(|f| json!({"$not": f})),
        ]
    })
}
