//! A namespace's inverted index over memory texts and its BM25 ranking.
//!
//! Written by hand rather than taken from tantivy (docs/search.md has the measurements): the
//! store already owns rows, deletion, durability and filters, so what is needed is only
//! term → rows posting lists kept in step with the writer, and a ranking that asks the store
//! which rows pass. A term's postings are row ids in ascending order (rows are appended in
//! log order) with the term's frequency in that row. Deleting a row only lowers the live
//! counts; its postings go when a list holds more dead entries than live ones.

use std::cell::RefCell;

use rayon::prelude::*;

use super::analyzer::Analyzer;
use crate::search::TopK;
use crate::store::state::HashMap;

/// BM25 term-frequency saturation (Lucene's and tantivy's default).
pub const K1: f32 = 1.2;
/// BM25 length normalisation (Lucene's and tantivy's default).
pub const B: f32 = 0.75;

/// Fewest rows per parallel task of a bulk build. Tasks are otherwise as large as two per
/// core allows: each task keeps its own word maps, so more tasks repeat more of that work.
const MIN_BUILD_CHUNK: usize = 8192;

thread_local! {
    static ANALYZER: RefCell<Analyzer> = RefCell::new(Analyzer::new());
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Run `f` with this thread's analyzer.
pub fn with_analyzer<R>(f: impl FnOnce(&mut Analyzer) -> R) -> R {
    ANALYZER.with(|a| f(&mut a.borrow_mut()))
}

/// One term's postings.
#[derive(Default, Debug, Clone)]
pub struct Postings {
    pub rows: Vec<u32>,
    /// Term frequency in each row (saturates at u16::MAX: BM25 hardly moves past a few).
    pub tfs: Vec<u16>,
    /// Entries whose row is live (the document frequency BM25 uses).
    pub live: u32,
}

#[derive(Default, Debug)]
pub struct TextIndex {
    pub(super) ids: HashMap<Box<str>, u32>,
    pub(super) lists: Vec<Postings>,
    /// Live documents indexed and the sum of their lengths (in terms).
    pub docs: u32,
    pub total_len: u64,
}

/// The accumulator of a query: one score per row, and the rows touched.
#[derive(Default)]
struct Scratch {
    acc: Vec<f32>,
    touched: Vec<u32>,
}

/// Sorted (term id, frequency) pairs of one text.
fn count_terms(ids: &mut [u32]) -> Vec<(u32, u16)> {
    ids.sort_unstable();
    let mut out: Vec<(u32, u16)> = Vec::with_capacity(ids.len());
    for &id in ids.iter() {
        match out.last_mut() {
            Some((t, n)) if *t == id => *n = n.saturating_add(1),
            _ => out.push((id, 1)),
        }
    }
    out
}

impl TextIndex {
    fn term_id(&mut self, term: &str) -> u32 {
        if let Some(&id) = self.ids.get(term) {
            return id;
        }
        let id = self.lists.len() as u32;
        self.lists.push(Postings::default());
        self.ids.insert(Box::from(term), id);
        id
    }

    /// Index `text` as `row` (greater than every row indexed so far); returns its length in terms.
    pub fn add(&mut self, row: u32, text: &str) -> u32 {
        let mut ids = Vec::new();
        with_analyzer(|a| a.for_each_term(text, |t| ids.push(self.term_id(t))));
        let len = ids.len() as u32;
        for (id, tf) in count_terms(&mut ids) {
            let p = &mut self.lists[id as usize];
            debug_assert!(p.rows.last().is_none_or(|&r| r < row), "rows are indexed in ascending order");
            p.rows.push(row);
            p.tfs.push(tf);
            p.live += 1;
        }
        self.docs += 1;
        self.total_len += len as u64;
        len
    }

    /// `row` (indexed with `text`, `len` terms) is gone; `live` is the store's live column,
    /// already false for `row`. A list with more dead entries than live ones is pruned.
    pub fn remove(&mut self, row: u32, text: &str, len: u32, live: &[bool]) {
        let mut ids = Vec::new();
        with_analyzer(|a| {
            a.for_each_term(text, |t| {
                if let Some(&id) = self.ids.get(t) {
                    ids.push(id)
                }
            })
        });
        for (id, _) in count_terms(&mut ids) {
            let p = &mut self.lists[id as usize];
            p.live = p.live.saturating_sub(1);
            if p.rows.len() >= 16 && (p.live as usize) * 2 < p.rows.len() {
                let (rows, tfs) = (std::mem::take(&mut p.rows), std::mem::take(&mut p.tfs));
                for (r, tf) in rows.into_iter().zip(tfs) {
                    if live[r as usize] {
                        p.rows.push(r);
                        p.tfs.push(tf);
                    }
                }
            }
        }
        debug_assert!(!live[row as usize]);
        self.docs = self.docs.saturating_sub(1);
        self.total_len = self.total_len.saturating_sub(len as u64);
    }

    /// Build the index of `docs` (ascending rows) at once, analysing on every core; returns
    /// each document's length in terms, in order.
    pub fn build(docs: &[(u32, &str)]) -> (TextIndex, Vec<u32>) {
        struct Part {
            terms: Vec<Box<str>>,
            /// Per document: its (local term id, tf) pairs.
            docs: Vec<Vec<(u32, u16)>>,
            lens: Vec<u32>,
        }
        let chunk = docs.len().div_ceil(2 * rayon::current_num_threads()).max(MIN_BUILD_CHUNK);
        let parts: Vec<Part> = docs
            .par_chunks(chunk)
            .map(|chunk| {
                // Folded word → local term id, then term → local term id: one lookup per
                // word in the common case, the stemmer once per distinct word.
                let mut by_word: HashMap<Box<str>, u32> = HashMap::default();
                let mut by_term: HashMap<Box<str>, u32> = HashMap::default();
                let stemmer = Analyzer::new();
                let mut terms = Vec::new();
                let mut out = Vec::with_capacity(chunk.len());
                let mut lens = Vec::with_capacity(chunk.len());
                let mut ids = Vec::new();
                with_analyzer(|a| {
                    for &(_, text) in chunk {
                        ids.clear();
                        a.for_each_word(text, |w| {
                            let id = match by_word.get(w) {
                                Some(&id) => id,
                                None => {
                                    let t = stemmer.stem_word(w);
                                    let id = match by_term.get(&*t) {
                                        Some(&id) => id,
                                        None => {
                                            let id = terms.len() as u32;
                                            terms.push(Box::from(&*t));
                                            by_term.insert(Box::from(&*t), id);
                                            id
                                        }
                                    };
                                    by_word.insert(Box::from(w), id);
                                    id
                                }
                            };
                            ids.push(id);
                        });
                        lens.push(ids.len() as u32);
                        out.push(count_terms(&mut ids));
                    }
                });
                Part { terms, docs: out, lens }
            })
            .collect();
        let mut ix = TextIndex::default();
        let mut lens = Vec::with_capacity(docs.len());
        let mut rows = docs.iter().map(|d| d.0);
        for part in parts {
            let global: Vec<u32> = part.terms.iter().map(|t| ix.term_id(t)).collect();
            for (pairs, len) in part.docs.into_iter().zip(part.lens) {
                let row = rows.next().expect("one row per document");
                for (lid, tf) in pairs {
                    let p = &mut ix.lists[global[lid as usize] as usize];
                    p.rows.push(row);
                    p.tfs.push(tf);
                    p.live += 1;
                }
                ix.docs += 1;
                ix.total_len += len as u64;
                lens.push(len);
            }
        }
        (ix, lens)
    }

    /// Distinct terms (including those whose rows are all gone).
    pub fn terms(&self) -> usize {
        self.lists.len()
    }

    /// Posting entries held (dead ones not pruned yet included).
    pub fn postings(&self) -> usize {
        self.lists.iter().map(|p| p.rows.len()).sum()
    }

    /// The BM25 inverse document frequency of a term in `df` of the index's documents
    /// (Lucene's form, always positive).
    pub fn idf(&self, df: u32) -> f32 {
        let n = self.docs as f32;
        let df = df as f32;
        (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
    }

    /// The `k` best rows for `query` by BM25, best first (ties: higher row first).
    ///
    /// `doc_len` holds every row's length in terms. `accept(row, score)` says whether a row
    /// may be returned and with what final score (at most `score`: a filter, a recency
    /// decay); it is only asked about rows that could still make the top `k`.
    ///
    /// Term at a time, rarest term first, with MaxScore pruning: once the `k`-th best
    /// accepted score so far beats the most the remaining (common) terms could add, no row
    /// outside the candidates can make the top `k`, so the remaining lists are only probed
    /// for the candidates (binary search) instead of being walked whole.
    pub fn search(&self, query: &str, doc_len: &[u32], k: usize, accept: impl Fn(u32, f32) -> Option<f32>) -> Vec<(f32, u32)> {
        if k == 0 || self.docs == 0 {
            return Vec::new();
        }
        let mut ids: Vec<u32> = Vec::new();
        with_analyzer(|a| {
            a.for_each_term(query, |t| {
                if let Some(&id) = self.ids.get(t) {
                    ids.push(id)
                }
            })
        });
        ids.sort_unstable();
        ids.dedup();
        let mut terms: Vec<(&Postings, f32)> = ids.iter().map(|&id| &self.lists[id as usize]).filter(|p| p.live > 0).map(|p| (p, self.idf(p.live))).collect();
        if terms.is_empty() {
            return Vec::new();
        }
        // Rarest (highest idf, so highest upper bound) first; shorter list on ties.
        terms.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.rows.len().cmp(&b.0.rows.len())));
        let avgdl = (self.total_len as f32 / self.docs as f32).max(1.0);
        let norm = |row: u32| K1 * (1.0 - B + B * doc_len[row as usize] as f32 / avgdl);
        let bound = |idf: f32| idf * (K1 + 1.0);
        let mut rest: f32 = terms.iter().map(|t| bound(t.1)).sum();
        SCRATCH.with(|s| {
            let s = &mut *s.borrow_mut();
            if s.acc.len() < doc_len.len() {
                s.acc.resize(doc_len.len(), 0.0);
            }
            let (acc, touched) = (&mut s.acc, &mut s.touched);
            touched.clear();
            let mut closed = false;
            for (i, &(p, idf)) in terms.iter().enumerate() {
                rest -= bound(idf);
                if !closed {
                    for (&row, &tf) in p.rows.iter().zip(&p.tfs) {
                        let tf = tf as f32;
                        let a = &mut acc[row as usize];
                        if *a == 0.0 {
                            touched.push(row);
                        }
                        *a += idf * tf * (K1 + 1.0) / (tf + norm(row));
                    }
                } else {
                    let mut from = 0;
                    for &row in touched.iter() {
                        from += p.rows[from..].partition_point(|&r| r < row);
                        if from < p.rows.len() && p.rows[from] == row {
                            let tf = p.tfs[from] as f32;
                            acc[row as usize] += idf * tf * (K1 + 1.0) / (tf + norm(row));
                        }
                    }
                }
                // Worth checking only when the next list is long next to the candidates.
                let next_long = terms.get(i + 1).is_some_and(|n| n.0.rows.len() > 4 * touched.len());
                if !closed && next_long {
                    touched.retain(|&r| {
                        let keep = accept(r, acc[r as usize]).is_some();
                        if !keep {
                            acc[r as usize] = 0.0;
                        }
                        keep
                    });
                    if touched.len() >= k {
                        let mut finals: Vec<f32> = touched.iter().map(|&r| accept(r, acc[r as usize]).unwrap_or(0.0)).collect();
                        let (_, kth, _) = finals.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
                        if *kth > rest {
                            closed = true;
                            touched.sort_unstable();
                        }
                    }
                }
            }
            let mut top = TopK::new(k);
            for &row in touched.iter() {
                let score = std::mem::replace(&mut acc[row as usize], 0.0);
                // `accept` never raises a score, so a raw score under the threshold loses.
                if score < top.threshold() {
                    continue;
                }
                if let Some(f) = accept(row, score) {
                    top.push(f, row);
                }
            }
            touched.clear();
            top.into_sorted_vec()
        })
    }
}
