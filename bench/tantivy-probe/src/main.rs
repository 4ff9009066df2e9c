//! tantivy on the synthetic corpus of `text_index_bench` (same generator): indexing rate into
//! a RAM directory (one writer, 2 indexing threads) and BM25 top-10 query latency.
use std::time::Instant;

use tantivy::collector::TopDocs;
use tantivy::query::QueryParser;
use tantivy::schema::{Schema, STORED, TEXT};
use tantivy::{doc, Index};

/// The same generator as crates/memory-core/examples/text_index_bench.rs.
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
    // Zipf(1) over the vocabulary by inverse CDF on the harmonic numbers.
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
    let mut sb = Schema::builder();
    let id = sb.add_u64_field("row", STORED);
    let body = sb.add_text_field("text", TEXT);
    let index = Index::create_in_ram(sb.build());
    let t = Instant::now();
    let mut w = index.writer_with_num_threads(2, 200_000_000).unwrap();
    for (i, x) in texts.iter().enumerate() {
        w.add_document(doc!(id => i as u64, body => x.as_str())).unwrap();
    }
    w.commit().unwrap();
    let index_s = t.elapsed().as_secs_f64();
    let reader = index.reader().unwrap();
    let searcher = reader.searcher();
    let qp = QueryParser::for_index(&index, vec![body]);
    // Queries: two mid-frequency words and one rare word, as in text_index_bench.
    let mut lat = Vec::new();
    for q in 0..200 {
        let s = format!("{} {} {}", word(50 + q), word(500 + q * 7), word(20_000 + q * 13));
        let query = qp.parse_query(&s).unwrap();
        let t = Instant::now();
        let top = searcher.search(&query, &TopDocs::with_limit(10)).unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(!top.is_empty());
    }
    lat.sort_by(f64::total_cmp);
    println!(
        "{{\"engine\":\"tantivy 0.22\",\"docs\":{n},\"index_s\":{index_s:.3},\"docs_per_s\":{:.0},\"query_p50_ms\":{:.3},\"query_p99_ms\":{:.3}}}",
        n as f64 / index_s,
        lat[lat.len() / 2],
        lat[lat.len() * 99 / 100]
    );
}
