//! Our inverted index on the synthetic corpus that bench/tantivy-probe indexes with tantivy
//! (same generator): bulk build (all cores, as at open), one-by-one adds (as the writer does),
//! and BM25 top-10 query latency, for docs/search.md.
//! Run: cargo run --release -p memory-core --example text_index_bench -- 100000
use std::time::Instant;

use memory_core::text::TextIndex;

/// The generator of bench/tantivy-probe/src/main.rs.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}
const SYL: [&str; 16] = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "zen", "dor", "pel", "quin", "bar", "fy", "gro", "hex"];
fn word(mut i: usize) -> String {
    let mut w = String::new();
    loop {
        w.push_str(SYL[i % 16]);
        i /= 16;
        if i == 0 {
            break;
        }
    }
    w
}
fn corpus(n: usize, vocab: usize, words: usize) -> Vec<String> {
    let mut cdf = Vec::with_capacity(vocab);
    let mut s = 0.0;
    for r in 1..=vocab {
        s += 1.0 / r as f64;
        cdf.push(s);
    }
    let vocab_words: Vec<String> = (0..vocab).map(word).collect();
    let mut rng = Rng(0x9e3779b97f4a7c15);
    (0..n)
        .map(|_| {
            let mut t = String::new();
            for k in 0..words {
                let u = rng.unit() * s;
                let i = cdf.partition_point(|&c| c < u).min(vocab - 1);
                if k > 0 {
                    t.push(' ');
                }
                t.push_str(&vocab_words[i]);
            }
            t
        })
        .collect()
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let texts = corpus(n, 50_000, 20);
    let docs: Vec<(u32, &str)> = texts.iter().enumerate().map(|(i, t)| (i as u32, t.as_str())).collect();
    let t = Instant::now();
    let mut an = memory_core::text::Analyzer::new();
    let mut tokens = 0usize;
    for x in &texts {
        an.for_each_term(x, |_| tokens += 1);
    }
    let analyze_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (ix, lens) = TextIndex::build(&docs);
    let build_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut one = TextIndex::default();
    for &(r, x) in &docs {
        one.add(r, x);
    }
    let add_s = t.elapsed().as_secs_f64();
    drop(one);
    let mut lat = Vec::new();
    for q in 0..200 {
        let s = format!("{} {} {}", word(50 + q), word(500 + q * 7), word(20_000 + q * 13));
        let t = Instant::now();
        let top = ix.search(&s, &lens, 10, |_, s| Some(s));
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(!top.is_empty());
    }
    lat.sort_by(f64::total_cmp);
    // A query of the three most common words: the worst case for term-at-a-time.
    let common = format!("{} {} {}", word(0), word(1), word(2));
    let t = Instant::now();
    for _ in 0..20 {
        ix.search(&common, &lens, 10, |_, s| Some(s));
    }
    let common_ms = t.elapsed().as_secs_f64() * 1e3 / 20.0;
    println!(
        "{{\"engine\":\"memory-core TextIndex\",\"docs\":{n},\"tokens\":{tokens},\"analyze_one_thread_s\":{analyze_s:.3},\"terms\":{},\"postings\":{},\"bulk_build_s\":{build_s:.3},\"bulk_docs_per_s\":{:.0},\"one_by_one_s\":{add_s:.3},\"one_by_one_docs_per_s\":{:.0},\"query_p50_ms\":{:.3},\"query_p99_ms\":{:.3},\"common_words_query_ms\":{common_ms:.3}}}",
        ix.terms(),
        ix.postings(),
        n as f64 / build_s,
        n as f64 / add_s,
        lat[lat.len() / 2],
        lat[lat.len() * 99 / 100]
    );
}
