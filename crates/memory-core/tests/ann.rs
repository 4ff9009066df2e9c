//! The ANN graph inside the store: maintained by the writer, chosen by the planner, loaded
//! after a clean reopen (rebuilt if its file is damaged), consistent with deletes, TTL and filters, and used by the significance pass.

mod common;

use std::time::{Duration, Instant};

use common::*;
use memory_core::filter::Filter;
use memory_core::store::{FsyncPolicy, PlanKind, PutInput, SearchRequest, StoreOptions, TensorStore};
use rand::Rng;

const DIMS: usize = 24;
const MIN_ROWS: usize = 400;

fn open_small(dir: &std::path::Path) -> TensorStore {
    let o = StoreOptions { ann_min_rows: MIN_ROWS, compact: None, ..opts(DIMS, FsyncPolicy::Off) };
    TensorStore::open(dir, o).expect("open")
}

/// Clustered vectors (what embeddings look like): 30 centres, noise around them.
fn clustered(n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut r = rng(seed);
    let centres: Vec<Vec<f32>> = (0..30).map(|i| rvec(&mut rng(1000 + i as u64), DIMS)).collect();
    (0..n).map(|i| centres[i % 30].iter().map(|x| x + 0.5 * r.gen_range(-1.0f32..1.0)).collect()).collect()
}

fn fill(s: &TensorStore, vs: &[Vec<f32>]) {
    for (b, chunk) in vs.chunks(250).enumerate() {
        let items: Vec<PutInput> = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let n = b * 250 + i;
                PutInput { metadata: Some(format!("{{\"tag\":\"t{}\"}}", n % 10)), ..item("ns", &format!("m{n}"), "x", v.clone()) }
            })
            .collect();
        s.put_blocking(items).unwrap();
    }
}

/// Wait (bounded) until the writer has indexed every row.
fn indexed(s: &TensorStore) {
    let t = Instant::now();
    while s.stats().ann_pending > 0 {
        assert!(t.elapsed() < Duration::from_secs(60), "graph not built in 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn req(k: usize, exact: bool) -> SearchRequest {
    SearchRequest { namespace: "ns".into(), k, exact, ..Default::default() }
}

fn ids(s: &TensorStore, q: &[f32], r: &SearchRequest) -> (Vec<String>, PlanKind) {
    let (m, plan) = s.search_explained(q, 1, r).unwrap();
    (m[0].iter().map(|x| x.id.clone()).collect(), plan.kind)
}

#[test]
fn graph_plan_finds_the_exact_top_10_and_is_loaded_equal_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let vs = clustered(3000, 1);
    let queries = clustered(40, 2);
    let before: Vec<Vec<String>>;
    {
        let s = open_small(dir.path());
        fill(&s, &vs);
        indexed(&s);
        assert_eq!(s.stats().ann_rows, 3000);
        let (mut hit, mut total) = (0, 0);
        let mut got_all = Vec::new();
        for q in &queries {
            let (want, kind) = ids(&s, q, &req(10, true));
            assert_eq!(kind, PlanKind::Exact);
            let (got, kind) = ids(&s, q, &req(10, false));
            assert_eq!(kind, PlanKind::Graph);
            hit += got.iter().filter(|g| want.contains(g)).count();
            total += want.len();
            got_all.push(got);
        }
        let recall = hit as f64 / total as f64;
        assert!(recall >= 0.95, "recall@10 {recall}");
        let st = s.stats();
        assert_eq!((st.plans_exact, st.plans_graph), (40, 40));
        before = got_all;
        s.close().unwrap();
    }
    // Reopen: the graph was written at close and is loaded, not rebuilt: every row is in it
    // at once and the first query takes it. Its int8 codes are not in the file: once the
    // writer has encoded them while idle (nothing else pending), the answers are the same.
    let file = dir.path().join("ann-000001.idx");
    assert!(file.exists(), "written at close");
    {
        let s = open_small(dir.path());
        assert_eq!(s.stats().ann_rows, 3000, "loaded whole, not rebuilt a slice at a time");
        assert_eq!(ids(&s, &queries[0], &req(10, false)).1, PlanKind::Graph);
        indexed(&s);
        for (q, want) in queries.iter().zip(&before) {
            assert_eq!(&ids(&s, q, &req(10, false)), &(want.clone(), PlanKind::Graph));
        }
        s.close().unwrap();
    }
    // A damaged file is ignored: the graph is rebuilt from the log, and written again.
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    let s = open_small(dir.path());
    indexed(&s);
    let (mut hit, mut total) = (0, 0);
    for (q, was) in queries.iter().zip(&before) {
        let (got, _) = ids(&s, q, &req(10, false));
        hit += got.iter().filter(|g| was.contains(g)).count();
        total += was.len();
    }
    assert!(hit as f64 / total as f64 >= 0.95, "rebuilt graph agrees on {hit} of {total}");
    s.close().unwrap();
    assert_ne!(std::fs::read(&file).unwrap(), bytes, "rewritten at close");
}

#[test]
fn deleted_expired_and_filtered_rows_are_never_returned_and_small_filters_go_exact() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_small(dir.path());
    let vs = clustered(2000, 3);
    fill(&s, &vs);
    // Some memories with a TTL that passes at once.
    let short: Vec<PutInput> = (0..50).map(|i| PutInput { ttl_ms: Some(1), ..item("ns", &format!("ttl{i}"), "x", vs[i].clone()) }).collect();
    s.put_blocking(short).unwrap();
    indexed(&s);
    let gone: Vec<String> = (0..2000).step_by(3).map(|i| format!("m{i}")).collect();
    s.delete_blocking("ns", gone.clone()).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    for i in (0..200).step_by(7) {
        // A deleted memory's own vector as the query: the graph still walks through it.
        let (got, kind) = ids(&s, &vs[i], &req(10, false));
        assert_eq!(kind, PlanKind::Graph);
        assert_eq!(got.len(), 10);
        assert!(got.iter().all(|g| !gone.contains(g) && !g.starts_with("ttl")), "{got:?}");
    }
    // A filter matching 10% (200 rows, 133 after the deletes: fewer than the graph
    // threshold): exact, and only t3.
    let f = Filter::compile(&serde_json::json!({"tag": "t3"})).unwrap();
    let r = SearchRequest { filter: Some(std::sync::Arc::new(f)), ..req(10, false) };
    let (m, plan) = s.search_explained(&vs[3], 1, &r).unwrap();
    assert_eq!((plan.kind, plan.reason, plan.filter_candidates), (PlanKind::Exact, "selective filter", Some(133)));
    assert!(m[0].iter().all(|x| x.metadata.contains("\"t3\"")));
}

#[test]
fn significance_and_associations_come_from_the_graph_above_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_small(dir.path());
    let vs = clustered(1000, 4);
    fill(&s, &vs);
    indexed(&s);
    // A copy of a stored vector: novelty 0, and the stored one among its associations.
    let out = s.put_blocking(vec![item("ns", "copy", "x", vs[123].clone())]).unwrap();
    assert!(out[0].associations.contains(&"m123".to_string()), "{:?}", out[0].associations);
    let exact_sig = memory_core::significance::significance(Some(1.0), &[], 0.5);
    assert!(out[0].significance <= exact_sig + 0.3 + 1e-6, "novelty counted as 0: {}", out[0].significance);
    // The put is answered before its graph insert: a search at once still finds the new
    // memory (rows not in the graph yet are scored exactly), and the writer indexes it next.
    let want = vec!["copy".to_string(), "m123".to_string()];
    assert_eq!(ids(&s, &vs[123], &req(2, false)).0, want);
    indexed(&s);
    assert_eq!(ids(&s, &vs[123], &req(2, false)).0, want);
}

#[test]
fn a_filter_passing_under_a_sixteenth_of_the_namespace_is_scored_exactly() {
    // Graph threshold 50: both filters below leave more candidates than that; the rarer one
    // (4%) leaves fewer than 1 in 16 of the rows, which a traversal would walk past; the
    // other is cheaper to score than to traverse for.
    let dir = tempfile::tempdir().unwrap();
    let s = TensorStore::open(dir.path(), StoreOptions { ann_min_rows: 50, compact: None, ..opts(DIMS, FsyncPolicy::Off) }).unwrap();
    let vs = clustered(2000, 6);
    let items: Vec<PutInput> = vs.iter().enumerate().map(|(n, v)| PutInput { metadata: Some(format!("{{\"tag\":\"t{}\",\"rare\":{}}}", n % 10, n % 25 == 0)), ..item("ns", &format!("m{n}"), "x", v.clone()) }).collect();
    s.put_blocking(items).unwrap();
    indexed(&s);
    let with = |f: serde_json::Value| SearchRequest { filter: Some(std::sync::Arc::new(Filter::compile(&f).unwrap())), ..req(10, false) };
    let (m, plan) = s.search_explained(&vs[0], 1, &with(serde_json::json!({"rare": true}))).unwrap();
    assert_eq!((plan.kind, plan.reason, plan.filter_candidates), (PlanKind::Exact, "selective filter", Some(80)));
    assert!(m[0].len() == 10 && m[0].iter().all(|x| x.metadata.contains("\"rare\":true")));
    // 10% (200 rows): more than 1 in 16, but a traversal widened for it (ef 1,440) would
    // cost more than scoring them.
    let (m, plan) = s.search_explained(&vs[0], 1, &with(serde_json::json!({"tag": "t3"}))).unwrap();
    assert_eq!((plan.kind, plan.reason, plan.filter_candidates), (PlanKind::Exact, "exact pass cheaper than a filtered traversal", Some(200)));
    assert!(m[0].len() == 10 && m[0].iter().all(|x| x.metadata.contains("\"t3\"")));
}

#[test]
fn a_search_s_own_ef_sets_the_graph_list_and_a_longer_list_never_finds_less() {
    // 120 clusters of 50 rows: a short list reaches the query's own cluster less often.
    let dir = tempfile::tempdir().unwrap();
    let s = open_small(dir.path());
    let centres: Vec<Vec<f32>> = (0..120).map(|i| rvec(&mut rng(5000 + i as u64), DIMS)).collect();
    let mut r = rng(8);
    let mut around = |i: usize| -> Vec<f32> { centres[(i * 7) % 120].iter().map(|x| x + 0.5 * r.gen_range(-1.0f32..1.0)).collect() };
    let vs: Vec<Vec<f32>> = (0..6000).map(&mut around).collect();
    let queries: Vec<Vec<f32>> = (0..60).map(&mut around).collect();
    fill(&s, &vs);
    indexed(&s);
    let with_ef = |ef: Option<usize>, exact: bool| SearchRequest { ef, ..req(10, exact) };
    let wants: Vec<Vec<String>> = queries.iter().map(|q| ids(&s, q, &with_ef(None, true)).0).collect();
    let mut recalls = Vec::new();
    for ef in [1, 12, 24, 48, 96, 384, 1536] {
        let (mut hit, mut total) = (0, 0);
        for (q, want) in queries.iter().zip(&wants) {
            let (m, plan) = s.search_explained(q, 1, &with_ef(Some(ef), false)).unwrap();
            // The list holds at least the k asked for.
            assert_eq!((plan.kind, plan.ef), (PlanKind::Graph, ef.max(10)));
            hit += m[0].iter().filter(|x| want.contains(&x.id)).count();
            total += want.len();
        }
        recalls.push(hit as f64 / total as f64);
    }
    for w in recalls.windows(2) {
        assert!(w[1] >= w[0], "a longer list found less: {recalls:?}");
    }
    assert!(recalls[0] < recalls[6] && recalls[6] >= 0.99, "{recalls:?}");
    // Ignored by the exact pass; outside 1…16,384 refused before anything runs.
    let (_, plan) = s.search_explained(&queries[0], 1, &with_ef(Some(500), true)).unwrap();
    assert_eq!((plan.kind, plan.ef), (PlanKind::Exact, 0));
    for bad in [0, 16_385] {
        let err = s.search_explained(&queries[0], 1, &with_ef(Some(bad), false)).unwrap_err();
        assert!(err.to_string().contains("ef must be an integer from 1 to 16384"), "{err}");
    }
    assert!(s.search_explained(&queries[0], 1, &with_ef(Some(16_384), false)).is_ok());
}
