//! The compact row (one allocation: id, text, metadata text, packed metadata, associations
//! as row numbers) returns everything as it was stored: metadata texts byte for byte through
//! every read, filters on them the rows they name, and associations the same ids through
//! deletes, re-puts of a deleted id, updates, compaction and reopening.

mod common;

use std::sync::Arc;

use common::*;
use memory_core::filter::Filter;
use memory_core::store::log::{PutRecord, NO_EXPIRY};
use memory_core::store::{Memory, SearchRequest, TensorStore};
use serde_json::{json, Value};

/// (id, metadata text as sent). Whitespace, key order, duplicate keys, number spellings
/// and escapes must come back as sent; filters read what the text means.
const METADATA: [(&str, &str); 10] = [
    ("nums", r#"{"big":1e21,"neg0":-0.0,"u":18446744073709551615,"i":-9223372036854775808,"exp":1E+2,"frac":0.10}"#),
    ("unicode", r#"{"ключ":"значение","emoji 🎉":"✓","esc":"caf\u00e9\n","":"empty key"}"#),
    ("nested", r#"{"author":{"name":"ada","langs":["en","fr"],"meta":{}},"tags":[],"deep":{"a":{"b":{"c":{"d":1}}}}}"#),
    ("dup", r#"{"k":1,"k":2}"#),
    ("spaced", "{ \"tag\" : \"common\" ,\n  \"group\" : \"g3\" }"),
    ("dotted", r#"{"a.b":1,"a":{"b":2}}"#),
    ("empty", "{}"),
    ("none", ""),
    ("scalars", r#"{"n":null,"t":true,"f":false,"tag":"rare","score":0.75}"#),
    ("mixed", r#"{"tags":["a",1,true,null,{"x":1},[2]],"score":-3}"#),
];

fn store_all(s: &TensorStore, dims: usize) {
    let items = METADATA
        .iter()
        .enumerate()
        .map(|(i, (id, md))| {
            let mut it = item("ns", id, &format!("text of {id} ✓"), unit(dims, i % dims));
            it.metadata = (!md.is_empty()).then(|| md.to_string());
            it
        })
        .collect();
    s.put_blocking(items).unwrap();
}

/// What a memory's metadata reads back as: the text sent, `{}` for none.
fn sent(id: &str) -> &'static str {
    let md = METADATA.iter().find(|m| m.0 == id).unwrap().1;
    if md.is_empty() {
        "{}"
    } else {
        md
    }
}

fn check_reads(s: &TensorStore, dims: usize, when: &str) {
    let check = |m: &Memory, how: &str| {
        assert_eq!(m.metadata, sent(&m.id), "{when}, {how}: {}", m.id);
        assert_eq!(m.text, format!("text of {} ✓", m.id), "{when}, {how}");
    };
    for (id, _) in METADATA {
        check(&s.get("ns", id, false).unwrap(), "get");
    }
    let listed = list_all(s, "ns", 3);
    assert_eq!(listed.len(), METADATA.len(), "{when}");
    listed.iter().for_each(|m| check(m, "list"));
    s.export(0, 100).iter().for_each(|m| check(m, "export"));
    let req = SearchRequest { namespace: "ns".into(), k: 20, ..Default::default() };
    s.search(&unit(dims, 0), 1, &req).unwrap()[0].iter().for_each(|m| check(m, "search"));
}

/// The ids a filter selects, through `list` and through an exact filtered search.
fn selected(s: &TensorStore, dims: usize, f: &Value) -> Vec<String> {
    let filter = Filter::compile(f).unwrap();
    let (listed, _) = s.list("ns", 0, 100, Some(&filter));
    let mut ids: Vec<String> = listed.into_iter().map(|m| m.id).collect();
    ids.sort();
    let req = SearchRequest { namespace: "ns".into(), k: 100, filter: Some(Arc::new(filter)), filter_key: f.to_string(), exact: true, ..Default::default() };
    let mut found: Vec<String> = s.search(&unit(dims, 0), 1, &req).unwrap().remove(0).into_iter().map(|m| m.id).collect();
    found.sort();
    assert_eq!(ids, found, "list and search disagree on {f}");
    ids
}

fn check_filters(s: &TensorStore, dims: usize, when: &str) {
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({"big": 1e21}), vec!["nums"]),
        (json!({"big": {"$gt": 1e20}}), vec!["nums"]),
        (json!({"neg0": 0}), vec!["nums"]),
        (json!({"u": 18446744073709551615u64}), vec!["nums"]),
        (json!({"i": {"$lt": -9223372036854775807i64}}), vec!["nums"]),
        (json!({"exp": 100}), vec!["nums"]),
        (json!({"frac": 0.1}), vec!["nums"]),
        (json!({"ключ": "значение"}), vec!["unicode"]),
        (json!({"emoji 🎉": {"$exists": true}}), vec!["unicode"]),
        (json!({"esc": "café\n"}), vec!["unicode"]),
        (json!({"author.name": "ada"}), vec!["nested"]),
        (json!({"author.langs": "fr"}), vec!["nested"]),
        (json!({"author.meta": {}}), vec!["nested"]),
        (json!({"tags": []}), vec!["nested"]),
        (json!({"deep.a.b.c.d": 1}), vec!["nested"]),
        (json!({"deep.a.b": {"c": {"d": 1}}}), vec!["nested"]),
        (json!({"k": 2}), vec!["dup"]),
        (json!({"k": 1}), vec![]),
        (json!({"tag": "common", "group": "g3"}), vec!["spaced"]),
        (json!({"a.b": 1}), vec!["dotted"]),
        (json!({"n": null, "t": true, "f": false}), vec!["scalars"]),
        (json!({"score": {"$gte": 0.5}}), vec!["scalars"]),
        (json!({"score": {"$lt": 0}}), vec!["mixed"]),
        (json!({"tags": {"$contains": {"x": 1}}}), vec!["mixed"]),
        (json!({"tags": {"$all": ["a", 1, true, null]}}), vec!["mixed"]),
        (json!({"tags": [2]}), vec!["mixed"]),
        (json!({"tag": {"$in": ["rare", "common"]}}), vec!["scalars", "spaced"]),
        (json!({"tag": {"$exists": false}}), vec!["dotted", "dup", "empty", "mixed", "nested", "none", "nums", "unicode"]),
        (json!({"$not": {"tags": {"$exists": true}}}), vec!["dotted", "dup", "empty", "none", "nums", "scalars", "spaced", "unicode"]),
        (json!({"$or": [{"k": 2}, {"a": {"b": 2}}]}), vec!["dotted", "dup"]),
    ];
    for (f, want) in cases {
        assert_eq!(selected(s, dims, &f), want, "{when}: {f}");
    }
}

#[test]
fn metadata_reads_back_byte_for_byte_and_filters_select_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let dims = 8;
    let s = open(dir.path(), dims);
    store_all(&s, dims);
    check_reads(&s, dims, "stored");
    check_filters(&s, dims, "stored");
    drop(s);
    let s = open(dir.path(), dims);
    check_reads(&s, dims, "reopened");
    check_filters(&s, dims, "reopened");
    // An update replaces the text and what filters see; the other rows stay as they were.
    let new_md = r#"{ "tag" : "updated", "big" : 2e21 }"#;
    assert_eq!(s.update_blocking("ns", "spaced", Some(new_md.into()), None).unwrap().metadata, new_md);
    assert_eq!(selected(&s, dims, &json!({"tag": "updated"})), vec!["spaced"]);
    assert_eq!(selected(&s, dims, &json!({"tag": "common"})), Vec::<String>::new());
    assert_eq!(selected(&s, dims, &json!({"big": {"$gt": 1e21}})), vec!["spaced"]);
    s.update_blocking("ns", "spaced", Some(sent("spaced").into()), None).unwrap();
    s.compact_blocking().unwrap();
    check_reads(&s, dims, "compacted");
    check_filters(&s, dims, "compacted");
    drop(s);
    let s = open(dir.path(), dims);
    check_reads(&s, dims, "reopened after compaction");
    check_filters(&s, dims, "reopened after compaction");
}

/// Every memory's associations, by id.
fn associations(s: &TensorStore) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = list_all(s, "x", 100).into_iter().map(|m| (m.id, m.associations)).collect();
    out.sort();
    out
}

#[test]
fn associations_keep_their_ids_through_deletes_re_puts_compaction_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let dims = 8;
    let s = open(dir.path(), dims);
    let near = |a: f32| {
        let mut v = unit(dims, 0);
        v[1] = a;
        v
    };
    for (id, a) in [("p0", 0.05f32), ("p1", 0.3), ("p2", 0.15)] {
        s.put_blocking(vec![item("x", id, id, near(a))]).unwrap();
    }
    let q = s.put_blocking(vec![item("x", "q", "q", unit(dims, 0))]).unwrap().remove(0);
    assert_eq!(q.associations, vec!["p0", "p2", "p1"]);
    // Imported records may name ids no row of the namespace has: kept as given.
    let rec = |id: &str, assoc: &[&str]| PutRecord { seq: 0, ts: 1_700_000_000_000, namespace: "x".into(), id: id.into(), text: id.into(), metadata: "{}".into(), significance: 0.5, expires_at: NO_EXPIRY, associations: assoc.iter().map(|a| a.to_string()).collect(), vector: unit(dims, 3) };
    s.bulk_load_blocking(vec![rec("imported", &["ghost", "p1", "q", "ünïcode id"])]).unwrap();
    let before: Vec<(String, Vec<String>)> = associations(&s).into_iter().filter(|(id, _)| !["p0", "p1"].contains(&id.as_str())).collect();
    assert!(before.contains(&("imported".into(), vec!["ghost".into(), "p1".into(), "q".into(), "ünïcode id".into()])));
    assert!(before.contains(&("q".into(), vec!["p0".into(), "p2".into(), "p1".into()])));
    // The rows named are deleted; one id is stored again (a new row): the ids read the same.
    s.delete_blocking("x", vec!["p0".into(), "p1".into()]).unwrap();
    s.put_blocking(vec![item("x", "p1", "p1 again", unit(dims, 4))]).unwrap();
    s.update_blocking("x", "q", Some(r#"{"touched":true}"#.into()), None).unwrap();
    let expect = |s: &TensorStore, when: &str| {
        let now = associations(s);
        for (id, assoc) in &before {
            let got = now.iter().find(|(i, _)| i == id).map(|(_, a)| a);
            assert_eq!(got, Some(assoc), "{when}: {id}");
        }
        let counted: usize = now.iter().map(|(_, a)| a.len()).sum();
        assert_eq!(s.stats().total_associations, counted, "{when}");
    };
    expect(&s, "after deletes");
    s.compact_blocking().unwrap();
    expect(&s, "after compaction");
    drop(s);
    let s = open(dir.path(), dims);
    expect(&s, "reopened");
}
