//! BM25 on a small corpus against scores computed by hand (k1 = 1.2, b = 0.75, Lucene idf),
//! pruning against the unpruned ranking, and index maintenance.

use super::index::TextIndex;

const DOCS: [&str; 4] = ["The quick brown fox", "the lazy dog", "Quick, quick dog running", "Error 4521 in the parser"];

fn index_of(texts: &[&str]) -> (TextIndex, Vec<u32>) {
    let mut ix = TextIndex::default();
    let lens = texts.iter().enumerate().map(|(i, t)| ix.add(i as u32, t)).collect();
    (ix, lens)
}

fn scores(ix: &TextIndex, lens: &[u32], q: &str) -> Vec<(u32, f32)> {
    ix.search(q, lens, 10, |_, s| Some(s)).into_iter().map(|(s, r)| (r, s)).collect()
}

fn assert_scores(got: Vec<(u32, f32)>, want: &[(u32, f32)]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for ((r, s), (wr, ws)) in got.iter().zip(want) {
        assert_eq!(r, wr, "{got:?} vs {want:?}");
        assert!((s - ws).abs() < 1e-4, "row {r}: {s} vs {ws}");
    }
}

#[test]
fn bm25_scores_match_the_formula() {
    let (ix, lens) = index_of(&DOCS);
    assert_eq!(lens, [4, 3, 4, 5]);
    // Computed independently (Python) from the same definition. Row 0 scores ln 2 for
    // "quick": idf ln(1 + 2.5/2.5), one occurrence in a document of average length.
    use std::f32::consts::LN_2;
    assert_scores(scores(&ix, &lens, "quick"), &[(2, 0.953077), (0, LN_2)]);
    assert_scores(scores(&ix, &lens, "QUICK dogs"), &[(2, 1.646225), (1, 0.772113), (0, LN_2)]);
    assert_scores(scores(&ix, &lens, "4521"), &[(3, 1.092264)]);
    assert!(scores(&ix, &lens, "absent words").is_empty());
    assert!(scores(&ix, &lens, "").is_empty());
}

#[test]
fn bulk_build_equals_incremental() {
    let (a, la) = index_of(&DOCS);
    let docs: Vec<(u32, &str)> = DOCS.iter().enumerate().map(|(i, t)| (i as u32, *t)).collect();
    let (b, lb) = TextIndex::build(&docs);
    assert_eq!(la, lb);
    assert_eq!((a.docs, a.total_len, a.terms(), a.postings()), (b.docs, b.total_len, b.terms(), b.postings()));
    for q in ["quick dog", "the", "parser error", "fox brown lazy"] {
        assert_eq!(scores(&a, &la, q), scores(&b, &lb, q), "{q}");
    }
}

#[test]
fn removed_rows_leave_the_statistics_and_the_results() {
    let (mut ix, lens) = index_of(&DOCS);
    let mut live = vec![true; 4];
    live[2] = false;
    ix.remove(2, DOCS[2], lens[2], &live);
    assert_eq!((ix.docs, ix.total_len), (3, 12));
    // The store filters dead rows through `accept`; scores now come from three documents.
    let got = ix.search("quick", &lens, 10, |r, s| live[r as usize].then_some(s));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, 0);
    let idf3 = (1.0f32 + (3.0 - 1.0 + 0.5) / 1.5).ln();
    let want = idf3 * 2.2 / (1.0 + 1.2 * (0.25 + 0.75 * 4.0 / 4.0));
    assert!((got[0].0 - want).abs() < 1e-5);
}

#[test]
fn accept_filters_and_rescores() {
    let (ix, lens) = index_of(&DOCS);
    let got = ix.search("quick dog", &lens, 10, |r, s| (r != 2).then_some(s / 2.0));
    let rows: Vec<u32> = got.iter().map(|x| x.1).collect();
    assert_eq!(rows, [1, 0]);
    assert!((got[0].0 - 0.772113 / 2.0).abs() < 1e-4);
}

/// A deterministic corpus where some terms are in most documents (long lists the pruning
/// skips) and some in few.
fn corpus(n: usize) -> Vec<String> {
    let mut x = 0x2545f491u32;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    (0..n)
        .map(|_| {
            (0..12)
                .map(|_| {
                    let r = next();
                    // Skewed: word i with probability ~ 1/(i+1).
                    let w = (r % 1000) as f64 / 1000.0;
                    format!("w{}", ((1.0 / (w + 0.002)) as u32).min(400))
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

#[test]
fn pruned_ranking_equals_exhaustive_ranking() {
    let texts = corpus(5000);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (ix, lens) = index_of(&refs);
    for q in ["w1 w2 w300", "w1 w399", "w2 w3 w4 w5 w120", "w400 w1", "w7 w1 w2"] {
        for k in [1, 5, 10, 50] {
            let got = ix.search(q, &lens, k, |_, s| Some(s));
            // Exhaustive: k = every document, so no pruning can happen, then cut.
            let mut all = ix.search(q, &lens, texts.len(), |_, s| Some(s));
            all.truncate(k);
            assert_eq!(got.len(), all.len(), "{q} k={k}");
            for (a, b) in got.iter().zip(&all) {
                assert!((a.0 - b.0).abs() < 1e-5, "{q} k={k}: {got:?} vs {all:?}");
            }
            // With a filter too (odd rows only).
            let got = ix.search(q, &lens, k, |r, s| (r % 2 == 1).then_some(s));
            let mut all: Vec<(f32, u32)> = ix.search(q, &lens, texts.len(), |_, s| Some(s)).into_iter().filter(|x| x.1 % 2 == 1).collect();
            all.truncate(k);
            assert_eq!(got.iter().map(|x| x.1).collect::<Vec<_>>(), all.iter().map(|x| x.1).collect::<Vec<_>>(), "{q} k={k} filtered");
        }
    }
}
