use super::*;

fn emb(text: &str) -> Vec<f32> {
    let mut v = vec![0.0; HASH_DIMS];
    HashEmbedder::default().embed(text, &mut v);
    v
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f32]) -> f64 {
    a.iter()
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        .sqrt()
}

fn words(text: &str) -> Vec<&str> {
    HashEmbedder::tokenize(text)
        .into_iter()
        .map(|(a, b)| &text[a..b])
        .collect()
}

#[test]
fn basics() {
    let e = HashEmbedder::new(HASH_DIMS);
    assert_eq!(e.name(), "hash-v1");
    assert_eq!(e.dims(), 384);
    assert_eq!(HashEmbedder::default(), e);
    assert_eq!(HashEmbedder::new(8).dims(), 8);
    assert!(HashEmbedder::try_new(7).is_err());
    assert!(HashEmbedder::try_new(0)
        .unwrap_err()
        .to_string()
        .contains("got 0"));
}

#[test]
#[should_panic]
fn new_panics_below_min() {
    HashEmbedder::new(4);
}

#[test]
#[should_panic]
fn embed_panics_on_wrong_len() {
    HashEmbedder::new(16).embed("x", &mut [0.0; 15]);
}

#[test]
fn tokenize_ascii() {
    assert_eq!(
        words("Hello, world! 42 times"),
        vec!["Hello", "world", "42", "times"]
    );
    assert_eq!(HashEmbedder::tokenize("  ab  c "), vec![(2, 4), (6, 7)]);
    assert!(HashEmbedder::tokenize("").is_empty());
    assert!(HashEmbedder::tokenize(" ,.;!? ").is_empty());
    assert_eq!(
        words("snake_case-and-kebab"),
        vec!["snake", "case", "and", "kebab"]
    );
}

#[test]
fn tokenize_apostrophes() {
    assert_eq!(
        words("don't stop rock'n'roll"),
        vec!["don't", "stop", "rock'n'roll"]
    );
    assert_eq!(
        words("it’s the dogs' toys"),
        vec!["it’s", "the", "dogs", "toys"]
    );
    assert_eq!(words("'quoted' a''b"), vec!["quoted", "a", "b"]);
}

#[test]
fn tokenize_unicode() {
    assert_eq!(
        words("Ça va? Größe straße"),
        vec!["Ça", "va", "Größe", "straße"]
    );
    // Decomposed accent (e + U+0301) stays inside the word.
    assert_eq!(words("cafe\u{301} noir"), vec!["cafe\u{301}", "noir"]);
    // A combining mark never starts a token.
    assert_eq!(words("\u{301}abc"), vec!["abc"]);
    // Devanagari with virama is one word.
    assert_eq!(words("नमस्ते दुनिया"), vec!["नमस्ते", "दुनिया"]);
    assert_eq!(
        words("日本語のテキスト"),
        vec!["日", "本", "語", "の", "テ", "キ", "ス", "ト"]
    );
    assert_eq!(words("abc日本def 中"), vec!["abc", "日", "本", "def", "中"]);
    assert_eq!(words("a'日"), vec!["a", "日"]);
    // Combining voiced mark stays with its kana.
    assert_eq!(words("か\u{3099}き"), vec!["か\u{3099}", "き"]);
    assert_eq!(words("hi 👋🏽 there"), vec!["hi", "there"]);
    assert_eq!(words("Привет, мир"), vec!["Привет", "мир"]);
    // Byte ranges are on char boundaries.
    let t = "αβγ δ";
    for (a, b) in HashEmbedder::tokenize(t) {
        assert!(t.is_char_boundary(a) && t.is_char_boundary(b));
    }
}

#[test]
fn combining_table_sorted() {
    for table in [COMBINING, IDEOGRAPHIC] {
        for w in table.windows(2) {
            assert!(w[0].0 <= w[0].1 && w[0].1 < w[1].0);
        }
    }
    assert!(is_ideographic('日') && is_ideographic('か') && !is_ideographic('a'));
    assert!(is_combining('\u{301}'));
    assert!(is_combining('\u{94D}'));
    assert!(!is_combining('\u{964}'));
    assert!(!is_combining('a'));
    assert!(!is_combining('\u{FE30}'));
}

#[test]
fn deterministic_and_normalized() {
    for t in [
        "the cat sat on the mat",
        "",
        "   ",
        "!!!",
        "😀",
        "日本語",
        "a",
        "x y z",
    ] {
        let a = emb(t);
        let b = emb(t);
        assert_eq!(a, b);
        assert!((norm(&a) - 1.0).abs() < 1e-5, "{t:?} norm {}", norm(&a));
        assert!(a.iter().all(|x| x.is_finite()));
    }
    for dims in [8, 9, 100, 1024] {
        let e = HashEmbedder::new(dims);
        let mut v = vec![0.0; dims];
        e.embed("some words here", &mut v);
        assert!((norm(&v) - 1.0).abs() < 1e-5);
    }
}

#[test]
fn empty_and_whitespace_are_e0() {
    for t in ["", " ", "\n\t  \u{3000}"] {
        let v = emb(t);
        assert_eq!(v[0], 1.0);
        assert!(v[1..].iter().all(|&x| x == 0.0));
    }
}

#[test]
fn no_token_text_uses_raw_trigrams() {
    let a = emb("!!!");
    let b = emb("?!?");
    let e0 = emb("");
    assert_ne!(a, e0);
    assert_ne!(a, b);
    assert_eq!(emb("  !!!  "), a, "trimmed");
    assert!(cos(&emb("😀😀"), &emb("😀😀😀")) > 0.3);
}

#[test]
fn case_insensitive() {
    assert_eq!(emb("Hello World"), emb("hello world"));
    assert_eq!(emb("ÉCOLE"), emb("école"));
    assert_eq!(emb("it’s"), emb("it's"));
    // Separators between words do not matter.
    assert_eq!(emb("hello, world!"), emb("hello world"));
}

#[test]
fn similar_texts_high_cosine() {
    let c = cos(&emb("the cat sat on the mat"), &emb("the cat sat on a mat"));
    assert!(c > 0.7, "cos {c}");
    let c = cos(
        &emb("how do I reset my password"),
        &emb("how can I reset my password?"),
    );
    assert!(c > 0.7, "cos {c}");
    let c = cos(&emb("running quickly"), &emb("runner quick"));
    assert!(c > 0.05, "trigrams give partial credit: {c}");
}

#[test]
fn unrelated_texts_low_cosine() {
    let pairs = [
        (
            "the cat sat on the mat",
            "quantum chromodynamics lattice simulation",
        ),
        (
            "stock market prices fell sharply",
            "my grandmother bakes delicious bread",
        ),
        (
            "rust borrow checker lifetimes",
            "tropical beaches and sunny weather",
        ),
        ("database index compaction", "a poem about autumn leaves"),
    ];
    for (a, b) in pairs {
        let c = cos(&emb(a), &emb(b));
        assert!(c.abs() < 0.3, "{a:?} vs {b:?}: {c}");
    }
    // Word order matters somewhat (bigrams) but bag of words dominates.
    let c = cos(&emb("dog bites man"), &emb("man bites dog"));
    assert!(c > 0.6 && c < 0.99, "{c}");
}

#[test]
fn non_ascii_similarity() {
    let c = cos(&emb("Größe der Straße"), &emb("größe der straße ist"));
    assert!(c > 0.7, "{c}");
    let c = cos(&emb("東京は日本の首都です"), &emb("東京は日本の首都"));
    assert!(c > 0.5, "{c}");
    let c = cos(&emb("東京は日本の首都です"), &emb("the weather is nice"));
    assert!(c.abs() < 0.3, "{c}");
}

#[test]
fn batch_matches_single() {
    let e = HashEmbedder::default();
    let texts: Vec<String> = (0..100)
        .map(|i| format!("text number {i} about {}", i % 7))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    for n in [0, 1, 5, 31, 32, 100] {
        let flat = e.embed_batch(&refs[..n]);
        assert_eq!(flat.len(), n * HASH_DIMS);
        for (i, t) in refs[..n].iter().enumerate() {
            assert_eq!(&flat[i * HASH_DIMS..(i + 1) * HASH_DIMS], &emb(t)[..]);
        }
    }
}

#[test]
fn hash_primitives_golden() {
    // FNV-1a 64 reference values (empty input = offset basis; "a").
    let mut h = Fnv(FNV_OFFSET);
    assert_eq!(h.0, 0xcbf29ce484222325);
    h.write(b"a");
    assert_eq!(h.0, 0xaf63dc4c8601ec8c);
}

/// Pins `hash-v1`: if this fails, the embedding algorithm changed (stored vectors would become
/// incompatible) — bump the name instead of updating the numbers casually.
#[test]
fn golden_embedding() {
    let v = emb("The quick brown fox jumps over the lazy dog");
    let nz: Vec<(usize, f32)> = v
        .iter()
        .copied()
        .enumerate()
        .filter(|&(_, x)| x != 0.0)
        .take(6)
        .collect();
    let golden: &[(usize, f32)] = &GOLDEN;
    assert_eq!(nz.len(), golden.len(), "{nz:?}");
    for (&(i, x), &(gi, gx)) in nz.iter().zip(golden) {
        assert_eq!(i, gi, "{nz:?}");
        assert!((x - gx).abs() < 1e-6, "{nz:?}");
    }
    let small = {
        let mut o = vec![0.0; 8];
        HashEmbedder::new(8).embed("hello", &mut o);
        o
    };
    for (x, g) in small.iter().zip(GOLDEN_8) {
        assert!((x - g).abs() < 1e-6, "{small:?}");
    }
}

const GOLDEN: [(usize, f32); 6] = [
    (0, -0.12896006),
    (3, -0.12896006),
    (20, -0.057672687),
    (24, 0.07445512),
    (28, -0.07445512),
    (38, 0.07445512),
];
const GOLDEN_8: [f32; 8] = [
    -0.93250483,
    0.0,
    -0.2085144,
    0.0,
    0.0,
    -0.2085144,
    0.2085144,
    0.0,
];
