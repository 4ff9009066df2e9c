//! Reply byte budgets: `top`, the searches and `list` stop building results once their bytes
//! pass the caller's `maxBytes`, before anything becomes a JavaScript value (turning 1,000
//! memories of 64 KiB into strings took tens of milliseconds of the event loop for a reply
//! the server then cut to a few of them).
//!
//! The bytes counted are the memory's own (id, namespace, text, metadata, associations, 4 per
//! float of the embedding): a lower bound of any encoding of it. Results are kept up to the
//! memory whose bytes pass the budget, *and one more*: a caller that estimates a larger
//! encoding (the JSON reply) always finds the list over its budget, so it can tell that it was
//! cut (and the rows it keeps are among those built).

use memory_core::filter::Filter;
use memory_core::store::{Memory, TensorStore};

/// Rows asked of the store at a time by [`list_within`].
const LIST_CHUNK: usize = 32;

/// A memory's own bytes: a lower bound of its size in any reply encoding.
pub fn raw_bytes(m: &Memory) -> usize {
    m.id.len()
        + m.namespace.len()
        + m.text.len()
        + m.metadata.len()
        + m.associations.iter().map(String::len).sum::<usize>()
        + m.embedding.as_ref().map_or(0, |e| e.len() * 4)
}

/// A running byte count for `TensorStore::top_until`: true from the memory that passes `max_bytes`.
pub fn over_budget(max_bytes: f64) -> impl FnMut(&Memory) -> bool {
    let mut total = 0usize;
    move |m| {
        total += raw_bytes(m);
        total as f64 > max_bytes
    }
}

/// Drops the rows after the one whose running byte total passes `max_bytes`, and one more.
pub fn truncate_within(rows: &mut Vec<Memory>, max_bytes: Option<f64>) {
    let Some(max) = max_bytes else { return };
    let mut total = 0usize;
    for (i, m) in rows.iter().enumerate() {
        total += raw_bytes(m);
        if total as f64 > max {
            rows.truncate(i + 2);
            return;
        }
    }
}

/// `TensorStore::list` that stops at `max_bytes` (same rule as [`truncate_within`]), asking
/// the store for small chunks so that rows past the budget are never copied out of it. The
/// cursor is the seq of the last row returned when more rows follow it.
pub fn list_within(store: &TensorStore, namespace: &str, after_seq: u64, limit: usize, filter: Option<&Filter>, max_bytes: f64) -> (Vec<Memory>, Option<u64>) {
    let mut out: Vec<Memory> = Vec::new();
    let mut after = after_seq;
    let mut total = 0usize;
    // Rows still wanted: `limit`, cut to "this one and one more" once the budget is passed.
    let mut wanted = limit;
    while out.len() < wanted {
        let (page, next) = store.list(namespace, after, (wanted - out.len()).min(LIST_CHUNK), filter);
        let n = page.len();
        for (i, m) in page.into_iter().enumerate() {
            total += raw_bytes(&m);
            if total as f64 > max_bytes {
                wanted = wanted.min(out.len() + 2);
            }
            after = m.seq;
            out.push(m);
            if out.len() >= wanted {
                let more = i + 1 < n || next.is_some();
                return (out, more.then_some(after));
            }
        }
        match next {
            Some(seq) => after = seq,
            None => return (out, None),
        }
    }
    (out, None)
}
