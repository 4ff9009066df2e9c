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

fn all_results(s: &TensorStore) -> Vec<Vec<(String, u32)>> {
    let queries = ["widget3", "widget3 gadget5", "entry 42", "often mentions", "late arrival"];
    ["a", "b", "c"].iter().flat_map(|ns| queries.iter().map(move |q| ids_scores(s, q, &req(ns, 20)))).collect()
}

fn files(dir: &std::path::Path, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).filter(|n| n.starts_with(prefix)).collect();
    names.sort();
    names
}

/// The same directory without its index file: what the rebuild gives.
fn rebuilt_results(dir: &std::path::Path) -> Vec<Vec<(String, u32)>> {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir, copy.path());
    for f in files(copy.path(), "text-") {
        std::fs::remove_file(copy.path().join(f)).unwrap();
    }
    let s = open(copy.path(), D);
    let r = all_results(&s);
    s.close().unwrap();
    r
}

/// Writes after the index file: more puts, a new namespace, deletes of rows the file holds.
fn write_tail(s: &TensorStore) {
    let mut g = rng(9);
    s.put_blocking(vec![item("a", "late", "widget3 late arrival", rvec(&mut g, D)), item("c", "new", "widget3 gadget5 late", rvec(&mut g, D))]).unwrap();
    assert_eq!(s.delete_blocking("a", vec!["m3".into(), "m10".into(), "m42".into()]).unwrap().deleted.len(), 3);
    s.flush_blocking().unwrap();
}

#[test]
fn a_crash_after_the_index_file_replays_the_log_tail() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), D);
    fill(&s);
    s.close().unwrap();
    assert_eq!(files(dir.path(), "text-"), ["text-000001.idx"], "written at close");
    let s = open(dir.path(), D);
    write_tail(&s);
    let want = all_results(&s);
    assert!(want[0].iter().any(|(id, _)| id == "late") && !want[0].iter().any(|(id, _)| id == "m3"));
    // A crash now: the log holds the tail, the index file is the one written before it.
    let crashed = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), crashed.path());
    s.close().unwrap();
    let c = open(crashed.path(), D);
    assert_eq!(all_results(&c), want);
    c.close().unwrap();
    assert_eq!(rebuilt_results(crashed.path()), want);
    // The clean close wrote the index with the tail: same results again.
    let s = open(dir.path(), D);
    assert_eq!(all_results(&s), want);
}

#[test]
fn writes_while_opened_without_the_index_are_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), D);
    fill(&s);
    s.close().unwrap();
    let mut o = opts(D, FsyncPolicy::Off);
    o.text_index = false;
    let s = TensorStore::open(dir.path(), o).unwrap();
    write_tail(&s);
    s.close().unwrap();
    let want = rebuilt_results(dir.path());
    let s = open(dir.path(), D);
    assert_eq!(all_results(&s), want);
    assert!(want[0].iter().any(|(id, _)| id == "late"));
}

#[test]
fn a_damaged_index_file_is_rebuilt_and_compaction_moves_it_to_the_new_generation() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), D);
    fill(&s);
    let want = all_results(&s);
    s.close().unwrap();
    let path = dir.path().join("text-000001.idx");
    let len = file_len(&path);
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len / 2).unwrap();
    let s = open(dir.path(), D);
    assert_eq!(all_results(&s), want);
    s.compact_blocking().unwrap();
    assert_eq!(all_results(&s), want);
    s.close().unwrap();
    assert_eq!(files(dir.path(), "text-"), ["text-000002.idx"]);
    let s = open(dir.path(), D);
    assert_eq!(all_results(&s), want);
}
