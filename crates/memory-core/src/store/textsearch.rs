//! Text search over a [`State`]: BM25 over a namespace's [`crate::text::TextIndex`], with the
//! same filters as the vector scan (the scan's `Ctx::pass`) applied to every candidate and
//! the same recency decay.

use super::scan::{Ctx, Hit, ScanParams};
use super::state::State;
use crate::error::{Error, Result};
use crate::search::kernels;

/// The `k` best rows of the namespace for `query` by BM25, best first.
pub fn search_text(st: &State, query: &str, p: &ScanParams) -> Result<Vec<Hit>> {
    if !st.text_on {
        return Err(Error::invalid("this store keeps no text index (opened with text_index off): text and hybrid retrieval are unavailable"));
    }
    let Some(ns) = st.ns_id(p.namespace) else { return Ok(Vec::new()) };
    let filter = p.filter.filter(|f| !f.is_empty());
    let ctx = Ctx { st, p, ns, k: kernels(), queries: &[], nq: 0, check_filter: filter.is_some(), all_pass: false };
    let accept = |row: u32, score: f32| {
        if !ctx.pass(row as usize) {
            return None;
        }
        Some(match p.recency_half_life_s {
            Some(h) => {
                let age_s = ((p.now_ms - st.ts_col[row as usize]).max(0) as f64) / 1000.0;
                (score as f64 * (-age_s / h).exp2()) as f32
            }
            None => score,
        })
    };
    let top = st.namespaces[ns as usize].text.search(query, &st.text_len, p.k, accept);
    Ok(top.into_iter().map(|(score, row)| Hit { row, score }).collect())
}
