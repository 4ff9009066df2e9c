//! The store's filtered reads (search, top, list, delete by filter), which answer filters
//! from the posting lists where they can, against per-row evaluation of random filters over
//! random metadata — through puts, metadata updates and deletes that keep the posting lists
//! up to date. Seeded, so a failure reproduces.

mod common;

use std::collections::BTreeSet;

use common::*;
use memory_core::filter::Filter;
use memory_core::store::{SearchRequest, TensorStore};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Map, Value};

const DIMS: usize = 4;

/// What the store should hold, in store order.
struct Model {
    rows: Vec<MRow>,
}

struct MRow {
    ns: String,
    id: String,
    meta: Map<String, Value>,
    sig: f32,
    live: bool,
}

fn scalar(r: &mut StdRng) -> Value {
    match r.gen_range(0..6) {
        0 => json!(["note", "todo", "idea"].choose(r).unwrap()),
        1 => json!(r.gen_range(0..4)),
        2 => json!(r.gen_range(0..4) as f64 + 0.5),
        3 => json!(["x", "y", "z"].choose(r).unwrap()),
        4 => json!(r.gen_bool(0.5)),
        _ => Value::Null,
    }
}

fn metadata(r: &mut StdRng) -> Map<String, Value> {
    let mut m = Map::new();
    if r.gen_bool(0.8) {
        m.insert("type".into(), json!(["note", "todo", "idea"].choose(r).unwrap()));
    }
    if r.gen_bool(0.7) {
        let tags: Vec<Value> = (0..r.gen_range(0..4)).map(|_| scalar(r)).collect();
        m.insert("tags".into(), if r.gen_bool(0.85) { Value::Array(tags) } else { scalar(r) });
    }
    if r.gen_bool(0.7) {
        m.insert("n".into(), json!(r.gen_range(0..5)));
    }
    if r.gen_bool(0.5) {
        m.insert("a".into(), json!({"b": scalar(r), "c": [scalar(r), scalar(r)]}));
    }
    if r.gen_bool(0.1) {
        m.insert("a.b".into(), scalar(r)); // shadows the nested a.b
    }
    if r.gen_bool(0.5) {
        m.insert("flag".into(), scalar(r));
    }
    m
}

fn path(r: &mut StdRng) -> &'static str {
    ["type", "tags", "n", "a.b", "a.c", "flag", "missing"].choose(r).unwrap()
}

fn condition(r: &mut StdRng) -> Value {
    let list = |r: &mut StdRng, min: usize| -> Vec<Value> { (0..r.gen_range(min..3)).map(|_| scalar(r)).collect() };
    match r.gen_range(0..9) {
        0 | 1 => scalar(r),
        2 => json!({"$in": list(r, 0)}),
        3 => json!({"$nin": list(r, 0)}),
        4 => json!({"$ne": scalar(r)}),
        5 => json!({"$contains": scalar(r)}),
        6 => json!({"$all": list(r, 1)}),
        7 => json!({"$gte": r.gen_range(0..4)}),
        _ => json!({"$exists": r.gen_bool(0.5)}),
    }
}

fn filter(r: &mut StdRng, depth: usize) -> Value {
    let mut f = Map::new();
    for _ in 0..r.gen_range(0..3) {
        f.insert(path(r).into(), condition(r));
    }
    if depth < 3 && r.gen_bool(0.6) {
        let subs: Vec<Value> = (0..r.gen_range(1..4)).map(|_| filter(r, depth + 1)).collect();
        match r.gen_range(0..3) {
            0 => f.insert("$and".into(), Value::Array(subs)),
            1 => f.insert("$or".into(), Value::Array(subs)),
            _ => f.insert("$not".into(), subs.into_iter().next().unwrap()),
        };
    }
    Value::Object(f)
}

fn put(s: &TensorStore, model: &mut Model, r: &mut StdRng, ns: &str, n: usize) {
    for _ in 0..n {
        let id = format!("m{}", model.rows.len());
        let md = metadata(r);
        let sig = r.gen_range(0.0f32..1.0);
        let mut it = item(ns, &id, "text", rvec(r, DIMS));
        it.metadata = Some(Value::Object(md.clone()).to_string());
        it.significance = Some(sig);
        s.put_blocking(vec![it]).unwrap();
        model.rows.push(MRow { ns: ns.into(), id, meta: md, sig, live: true });
    }
}

/// Change the metadata of some memories and delete others.
fn churn(s: &TensorStore, model: &mut Model, r: &mut StdRng) {
    for row in model.rows.iter_mut().filter(|x| x.live) {
        if r.gen_bool(0.1) {
            let md = metadata(r);
            s.update_blocking(&row.ns, &row.id, Some(Value::Object(md.clone()).to_string()), None).unwrap();
            row.meta = md;
        } else if r.gen_bool(0.05) {
            s.delete_blocking(&row.ns, vec![row.id.clone()]).unwrap();
            row.live = false;
        }
    }
}

/// Ids the filter selects in `ns`, by per-row evaluation, in store order.
fn naive(model: &Model, ns: &str, f: &Filter) -> Vec<String> {
    model.rows.iter().filter(|x| x.live && x.ns == ns && f.matches(&x.meta)).map(|x| x.id.clone()).collect()
}

fn check_reads(s: &TensorStore, model: &Model, r: &mut StdRng, rounds: usize) {
    for round in 0..rounds {
        let fj = filter(r, 1);
        let Ok(f) = Filter::compile(&fj) else { continue };
        for ns in ["a", "b"] {
            let want = naive(model, ns, &f);
            let what = format!("round {round} ns {ns} filter {fj}");
            let listed: Vec<String> = s.list(ns, 0, 10_000, Some(&f)).0.into_iter().map(|m| m.id).collect();
            assert_eq!(listed, want, "list: {what}");
            // A page boundary inside the candidates.
            let (page, next) = s.list(ns, 0, 3, Some(&f));
            assert_eq!(page.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), want.iter().take(3).cloned().collect::<Vec<_>>(), "list page: {what}");
            if let Some(c) = next {
                let rest: Vec<String> = s.list(ns, c, 10_000, Some(&f)).0.into_iter().map(|m| m.id).collect();
                assert_eq!(rest, want[3..].to_vec(), "list rest: {what}");
            }
            let req = SearchRequest { namespace: ns.into(), k: 10_000, filter: Some(f.clone().into()), filter_key: fj.to_string(), ..Default::default() };
            let mut by_sig: Vec<&MRow> = model.rows.iter().filter(|x| x.live && x.ns == ns && f.matches(&x.meta)).collect();
            // Significance desc, then newer first (later puts are newer rows).
            by_sig.reverse();
            by_sig.sort_by(|a, b| b.sig.total_cmp(&a.sig));
            let top: Vec<String> = s.top(&req, 10_000).into_iter().map(|m| m.id).collect();
            assert_eq!(top, by_sig.iter().map(|x| x.id.clone()).collect::<Vec<_>>(), "top: {what}");
            let top5: Vec<String> = s.top(&req, 5).into_iter().map(|m| m.id).collect();
            assert_eq!(top5, top.iter().take(5).cloned().collect::<Vec<_>>(), "top 5: {what}");
            let found: BTreeSet<String> = s.search(&rvec(r, DIMS), 1, &req).unwrap().remove(0).into_iter().map(|m| m.id).collect();
            assert_eq!(found, want.iter().cloned().collect::<BTreeSet<_>>(), "search: {what}");
        }
    }
}

#[test]
fn filtered_reads_equal_per_row_evaluation() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), DIMS);
    let mut r = rng(2025);
    let mut model = Model { rows: Vec::new() };
    // One namespace holding every row (the complement of a posting list is a range)…
    put(&s, &mut model, &mut r, "a", 300);
    check_reads(&s, &model, &mut r, 150);
    // …then a second one, metadata changes and deletes.
    put(&s, &mut model, &mut r, "b", 150);
    put(&s, &mut model, &mut r, "a", 100);
    churn(&s, &mut model, &mut r);
    check_reads(&s, &model, &mut r, 300);
    // After a restart the posting lists are rebuilt from the log.
    drop(s);
    let s = open(dir.path(), DIMS);
    check_reads(&s, &model, &mut r, 100);
}

#[test]
fn delete_by_filter_equals_per_row_evaluation() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), DIMS);
    let mut r = rng(7);
    let mut model = Model { rows: Vec::new() };
    put(&s, &mut model, &mut r, "a", 200);
    put(&s, &mut model, &mut r, "b", 100);
    churn(&s, &mut model, &mut r);
    let mut deleted_some = false;
    for _ in 0..40 {
        let fj = filter(&mut r, 1);
        let Ok(f) = Filter::compile(&fj) else { continue };
        let want = naive(&model, "a", &f);
        let got = s.delete_where_blocking("a", Some(f)).unwrap();
        let mut got_ids = got.deleted.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>();
        got_ids.sort();
        let mut want_sorted = want.clone();
        want_sorted.sort();
        assert_eq!(got_ids, want_sorted, "delete {fj}");
        deleted_some |= !want.is_empty();
        for row in model.rows.iter_mut().filter(|x| x.ns == "a" && want.contains(&x.id)) {
            row.live = false;
        }
        let left: Vec<String> = list_all(&s, "a", 1000).into_iter().map(|m| m.id).collect();
        assert_eq!(left, naive(&model, "a", &Filter::default()), "left after {fj}");
    }
    assert!(deleted_some, "the random filters deleted something");
    assert_eq!(list_all(&s, "b", 1000).len(), naive(&model, "b", &Filter::default()).len(), "the other namespace is untouched");
}
