//! `TensorStore::top_until`: the reply byte budget's early stop (memory-node's `top` with
//! `maxBytes`) returns a prefix of `top`, ending one memory after the one that satisfied `enough`.
mod common;

use common::*;
use memory_core::store::SearchRequest;

#[test]
fn top_until_is_a_prefix_of_top_ending_one_after_enough() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), 8);
    let mut r = rng(7);
    let items: Vec<_> = (0..20)
        .map(|i| {
            let mut it = item("n", &format!("m{i}"), &"x".repeat(100 * (i + 1)), rvec(&mut r, 8));
            it.significance = Some(i as f32 / 20.0);
            it
        })
        .collect();
    s.put_blocking(items).unwrap();
    let req = SearchRequest { namespace: "n".into(), k: 20, ..Default::default() };
    let all = s.top(&req, 20);
    assert_eq!(all.len(), 20);
    let ids = |v: &[memory_core::store::Memory]| v.iter().map(|m| m.id.clone()).collect::<Vec<_>>();

    // Enough after 1,000 bytes of text: the memory that passes it, and one more.
    let mut total = 0;
    let cut = s.top_until(&req, 20, |m| {
        total += m.text.len();
        total > 1000
    });
    let mut sum = 0;
    let passes = all
        .iter()
        .position(|m| {
            sum += m.text.len();
            sum > 1000
        })
        .unwrap();
    assert_eq!(ids(&cut), ids(&all[..passes + 2]));

    // Never enough: the whole top; enough at once: two memories.
    assert_eq!(ids(&s.top_until(&req, 20, |_| false)), ids(&all));
    assert_eq!(ids(&s.top_until(&req, 20, |_| true)), ids(&all[..2]));
    assert_eq!(ids(&s.top_until(&req, 1, |_| true)), ids(&all[..1]));
}
