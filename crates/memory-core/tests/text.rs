//! The store's text index through `TensorStore`: kept in step with puts, deletes and
//! expiry, equal after replay and after compaction, filters applied, and off when asked.

mod common;

use common::*;
use memory_core::filter::Filter;
use memory_core::store::{FsyncPolicy, SearchRequest, TensorStore};
use std::sync::Arc;

const D: usize = 8;

fn req(ns: &str, k: usize) -> SearchRequest {
    SearchRequest { namespace: ns.into(), k, ..Default::default() }
}

fn ids_scores(s: &TensorStore, q: &str, r: &SearchRequest) -> Vec<(String, u32)> {
    s.search_text_blocking(q, r).unwrap().into_iter().map(|m| (m.id, m.score.unwrap().to_bits())).collect()
}

fn fill(s: &TensorStore) {
    let mut g = rng(5);
    let items = (0..300)
        .map(|i| {
            let mut it = item("a", &format!("m{i}"), &format!("entry {i} mentions widget{} and gadget{} often", i % 7, i % 11), rvec(&mut g, D));
            it.metadata = Some(format!("{{\"k\":{}}}", i % 3));
            it
        })
        .collect();
    s.put_blocking(items).unwrap();
    s.put_blocking(vec![item("b", "other", "widget3 in another namespace", rvec(&mut g, D))]).unwrap();
}

#[test]
fn replay_and_compaction_rebuild_the_same_index() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), D);
    fill(&s);
    let gone: Vec<String> = (0..300).filter(|i| i % 5 == 0).map(|i| format!("m{i}")).collect();
    assert_eq!(s.delete_blocking("a", gone).unwrap().deleted.len(), 60);
    let queries = ["widget3", "widget3 gadget5", "entry 42", "often mentions"];
    let before: Vec<_> = queries.iter().map(|q| ids_scores(&s, q, &req("a", 20))).collect();
    assert!(before[0].iter().all(|(id, _)| id.starts_with('m')), "namespace b stays out");
    // Deleted rows are gone from results and from the statistics.
    assert!(!ids_scores(&s, "entry 40", &req("a", 300)).iter().any(|(id, _)| id == "m40"));
    s.compact_blocking().unwrap();
    let compacted: Vec<_> = queries.iter().map(|q| ids_scores(&s, q, &req("a", 20))).collect();
    assert_eq!(before, compacted);
    s.close().unwrap();
    let s = open(dir.path(), D);
    let replayed: Vec<_> = queries.iter().map(|q| ids_scores(&s, q, &req("a", 20))).collect();
    assert_eq!(before, replayed);
}

#[test]
fn filters_and_namespaces_apply() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), D);
    fill(&s);
    let mut r = req("a", 100);
    r.filter = Some(Arc::new(Filter::compile(&serde_json::json!({ "k": 1 })).unwrap()));
    let hits = s.search_text_blocking("widget3", &r).unwrap();
    assert!(!hits.is_empty());
    assert!(hits.iter().all(|m| m.metadata == "{\"k\":1}"));
    let all = s.search_text_blocking("widget3", &req("a", 100)).unwrap();
    assert_eq!(all.len(), 300 / 7 + 1);
    assert!(hits.len() < all.len());
    assert_eq!(s.search_text_blocking("widget3", &req("b", 10)).unwrap()[0].id, "other");
    assert!(s.search_text_blocking("widget3", &req("nope", 10)).unwrap().is_empty());
}

#[test]
fn expired_memories_drop_out() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), D);
    let mut it = item("a", "short", "ephemeral zebra", unit(D, 0));
    it.ttl_ms = Some(1);
    s.put_blocking(vec![it, item("a", "long", "lasting zebra", unit(D, 1))]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let ids: Vec<String> = s.search_text_blocking("zebra", &req("a", 10)).unwrap().into_iter().map(|m| m.id).collect();
    assert_eq!(ids, ["long"]);
}

#[test]
fn without_the_text_index_text_search_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(D, FsyncPolicy::Off);
    o.text_index = false;
    let s = TensorStore::open(dir.path(), o).unwrap();
    s.put_blocking(vec![item("a", "x", "some words", unit(D, 0))]).unwrap();
    let e = s.search_text_blocking("words", &req("a", 10)).unwrap_err();
    assert!(e.to_string().contains("no text index"), "{e}");
    s.close().unwrap();
    // The same directory opened with the index finds the memory: nothing was lost.
    let s = open(dir.path(), D);
    assert_eq!(s.search_text_blocking("words", &req("a", 10)).unwrap()[0].id, "x");
}
