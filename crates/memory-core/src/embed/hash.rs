//! The default `hash` embedder (`hash-v1`): deterministic feature hashing, [`HASH_DIMS`] = 384
//! dimensions, L2-normalized, no model files — so the product works offline out of the box.
//!
//! # Algorithm `hash-v1` (product contract — any change must change [`HashEmbedder::name`])
//!
//! **1. Tokens** ([`HashEmbedder::tokenize`], byte ranges into the original text). Scanning the
//! text by `char`:
//! * a token starts at a char with [`char::is_alphanumeric`];
//! * it continues over alphanumeric chars, over *combining chars* (table [`COMBINING`]: combining
//!   diacritical blocks, ZWNJ/ZWJ, variation selectors, Hebrew/Arabic points, and the
//!   non-alphanumeric chars of the Indic and Thai/Lao blocks except their punctuation — so
//!   decomposed accents, viramas and tone marks do not split words), and over a single apostrophe
//!   (`'` U+0027 or `’` U+2019) that is *immediately followed by an alphanumeric char*
//!   (`don't`, `rock'n'roll` are one token each; a trailing `dogs'` gives `dogs`) that is not
//!   an [`IDEOGRAPHIC`] char;
//! * anything else ends it. Combining chars never start a token;
//! * exception for scripts written without spaces: an alphanumeric char in [`IDEOGRAPHIC`] (Han,
//!   Hiragana, Katakana) is a token on its own (plus any combining chars right after it), so
//!   Chinese/Japanese text yields per-character unigrams and character-bigram features.
//!
//! **2. Normalization of a token** into its *word*: [`str::to_lowercase`] (full Unicode lowercase,
//! final-sigma aware), then `’` is replaced by `'`.
//!
//! **3. Features**, each `(kind byte, UTF-8 bytes, weight)`:
//! * unigram: kind `b'W'`, bytes = word, weight **1.0** (repeated words add up);
//! * bigram of adjacent words `w1 w2` (adjacent in the token sequence, regardless of what
//!   separates them): kind `b'B'`, bytes = `w1 ++ [0x00] ++ w2`, weight **0.5**;
//! * char trigrams of each word padded as `^word$` (by `char`; a word of `n` chars has `n`
//!   trigrams): kind `b'C'`, bytes = the 3 chars' UTF-8, weight **0.5 / sqrt(n)** each, so the
//!   trigram block of one word has L2 norm 0.5 (before collisions) whatever its length.
//!
//! If the text has **no token**: `s = text.trim().to_lowercase()`; if `s` is empty the result is
//! the unit vector `e0` (`out[0] = 1`, rest 0); otherwise the char trigrams of `^s$` are used with
//! kind `b'R'` and weight **1.0** each.
//!
//! **4. Hashing**: `h = splitmix64_finalize(fnv1a_64([kind] ++ bytes))` with FNV-1a 64
//! (offset `0xcbf29ce484222325`, prime `0x100000001b3`) and the splitmix64 finalizer
//! (`z ^= z >> 30; z *= 0xbf58476d1ce4e5b9; z ^= z >> 27; z *= 0x94d049bb133111eb; z ^= z >> 31`,
//! wrapping). Bucket `h % dims`, sign `+1` if bit 63 of `h` is 0 else `-1`. `out[bucket] +=
//! sign * weight`, accumulated in `f32` in feature order (tokens left to right; for each token:
//! unigram, then its trigrams left to right, then the bigram with the previous word).
//!
//! **5. Normalization**: `norm = sqrt(Σ out[i]²)` computed in `f64`; `out[i] = (out[i] / norm) as
//! f32` (in `f64`). If `norm == 0` (all features cancelled) the result is `e0`.
//!
//! All steps are IEEE-exact integer/float operations, so results are bit-identical across
//! platforms; `is_alphanumeric` and `to_lowercase` follow the Unicode version of the Rust standard
//! library used to build (relevant only for newly-assigned characters).

use rayon::prelude::*;

use crate::error::{Error, Result};

/// Default dimensionality of the `hash` embedder.
pub const HASH_DIMS: usize = 384;

/// The `hash` embedder's name, recorded with the vectors it made (see the module docs: any
/// change to the algorithm must change it).
pub const HASH_NAME: &str = "hash-v1";

/// Smallest supported dimensionality.
pub const MIN_DIMS: usize = 8;

/// Batches at least this large are embedded in parallel with rayon.
const PAR_THRESHOLD: usize = 32;

const W_UNIGRAM: f32 = 1.0;
const W_BIGRAM: f32 = 0.5;
/// Total L2 weight of one word's trigram block.
const W_TRIGRAMS: f64 = 0.5;
const W_RAW_TRIGRAM: f32 = 1.0;

const KIND_UNIGRAM: u8 = b'W';
const KIND_BIGRAM: u8 = b'B';
const KIND_TRIGRAM: u8 = b'C';
const KIND_RAW_TRIGRAM: u8 = b'R';

/// Characters (inclusive ranges) that continue — but never start — a token when they are not
/// alphanumeric themselves. Part of the `hash-v1` contract.
pub const COMBINING: &[(u32, u32)] = &[
    (0x0300, 0x036F), // Combining Diacritical Marks
    (0x0483, 0x0489), // Cyrillic combining
    (0x0591, 0x05BD), // Hebrew points (05BE maqaf excluded)
    (0x05BF, 0x05BF),
    (0x05C1, 0x05C2),
    (0x05C4, 0x05C5),
    (0x05C7, 0x05C7),
    (0x0610, 0x061A), // Arabic marks
    (0x064B, 0x065F),
    (0x0670, 0x0670),
    (0x06D6, 0x06DC),
    (0x06DF, 0x06E4),
    (0x06E7, 0x06E8),
    (0x06EA, 0x06ED),
    (0x0900, 0x0963), // Devanagari .. Sinhala (dandas 0964-0965 and 0DF4 excluded)
    (0x0966, 0x0DF3),
    (0x0DF5, 0x0DFF),
    (0x0E00, 0x0E2E), // Thai / Lao (0E2F, 0E3F, 0E4F, 0E5A-0E5B, 0EAF excluded)
    (0x0E30, 0x0E3E),
    (0x0E40, 0x0E4E),
    (0x0E50, 0x0E59),
    (0x0E5C, 0x0EAE),
    (0x0EB0, 0x0EFF),
    (0x1AB0, 0x1AFF), // Combining Diacritical Marks Extended
    (0x1DC0, 0x1DFF), // Combining Diacritical Marks Supplement
    (0x200C, 0x200D), // ZWNJ, ZWJ
    (0x20D0, 0x20FF), // Combining Diacritical Marks for Symbols
    (0x3099, 0x309A), // Combining (semi-)voiced sound marks
    (0xFE00, 0xFE0F), // Variation Selectors
    (0xFE20, 0xFE2F), // Combining Half Marks
];

fn is_combining(c: char) -> bool {
    in_ranges(COMBINING, c)
}

/// Alphanumeric characters of scripts written without spaces between words (Han, Hiragana,
/// Katakana): each forms a token on its own. Part of the `hash-v1` contract.
pub const IDEOGRAPHIC: &[(u32, u32)] = &[
    (0x3040, 0x30FF),   // Hiragana, Katakana
    (0x31F0, 0x31FF),   // Katakana Phonetic Extensions
    (0x3400, 0x4DBF),   // CJK Unified Ideographs Extension A
    (0x4E00, 0x9FFF),   // CJK Unified Ideographs
    (0xF900, 0xFAFF),   // CJK Compatibility Ideographs
    (0xFF66, 0xFF9F),   // Halfwidth Katakana
    (0x20000, 0x323AF), // CJK Extensions B..H, Compatibility Supplement
];

fn in_ranges(table: &[(u32, u32)], c: char) -> bool {
    let c = c as u32;
    // Tables are sorted: binary search for the last range starting at or before c.
    let i = table.partition_point(|&(lo, _)| lo <= c);
    i > 0 && c <= table[i - 1].1
}

fn is_ideographic(c: char) -> bool {
    in_ranges(IDEOGRAPHIC, c)
}

fn is_apostrophe(c: char) -> bool {
    c == '\'' || c == '\u{2019}'
}

// ---------- hashing ----------

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

struct Fnv(u64);

impl Fnv {
    fn new(kind: u8) -> Self {
        let mut h = Fnv(FNV_OFFSET);
        h.write(&[kind]);
        h
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(FNV_PRIME);
        }
        self.0 = h;
    }
    fn finish(&self) -> u64 {
        let mut z = self.0;
        z ^= z >> 30;
        z = z.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z ^= z >> 27;
        z = z.wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[inline]
fn add(out: &mut [f32], h: u64, weight: f32) {
    let bucket = (h % out.len() as u64) as usize;
    if h >> 63 == 0 {
        out[bucket] += weight;
    } else {
        out[bucket] -= weight;
    }
}

/// Hash the char trigrams of `^chars$` into `out`; `weight == None` means 0.5/sqrt(n).
fn add_trigrams(out: &mut [f32], kind: u8, s: &str, weight: Option<f32>) {
    let mut padded: Vec<char> = Vec::with_capacity(s.len() + 2);
    padded.push('^');
    padded.extend(s.chars());
    padded.push('$');
    let n = padded.len() - 2;
    if n == 0 {
        return;
    }
    let w = weight.unwrap_or_else(|| (W_TRIGRAMS / (n as f64).sqrt()) as f32);
    let mut buf = [0u8; 12];
    for t in padded.windows(3) {
        let mut len = 0;
        for &c in t {
            len += c.encode_utf8(&mut buf[len..]).len();
        }
        let mut h = Fnv::new(kind);
        h.write(&buf[..len]);
        add(out, h.finish(), w);
    }
}

fn set_e0(out: &mut [f32]) {
    out.fill(0.0);
    out[0] = 1.0;
}

/// The deterministic feature-hashing text embedder (`hash-v1`). See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashEmbedder {
    dims: usize,
}

impl Default for HashEmbedder {
    fn default() -> Self {
        HashEmbedder { dims: HASH_DIMS }
    }
}

impl HashEmbedder {
    /// New embedder with `dims` output dimensions. Panics if `dims < 8` (see [`Self::try_new`]).
    pub fn new(dims: usize) -> Self {
        Self::try_new(dims).expect("HashEmbedder dims")
    }

    /// New embedder; `invalid_request` error if `dims < 8`.
    pub fn try_new(dims: usize) -> Result<Self> {
        if dims < MIN_DIMS {
            return Err(Error::invalid(format!(
                "hash embedder dims must be at least {MIN_DIMS} (got {dims})"
            )));
        }
        Ok(HashEmbedder { dims })
    }

    /// [`HASH_NAME`].
    pub fn name(&self) -> &'static str {
        HASH_NAME
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Embed `text` into `out` (must have length `dims`, else panics). The result is L2-normalized.
    pub fn embed(&self, text: &str, out: &mut [f32]) {
        assert_eq!(out.len(), self.dims, "embed: output length must equal dims");
        out.fill(0.0);
        let tokens = Self::tokenize(text);
        if tokens.is_empty() {
            let s = text.trim();
            if s.is_empty() {
                set_e0(out);
                return;
            }
            add_trigrams(
                out,
                KIND_RAW_TRIGRAM,
                &s.to_lowercase(),
                Some(W_RAW_TRIGRAM),
            );
        } else {
            let mut prev: Option<String> = None;
            for &(a, b) in &tokens {
                let mut word = text[a..b].to_lowercase();
                if word.contains('\u{2019}') {
                    word = word.replace('\u{2019}', "'");
                }
                let mut h = Fnv::new(KIND_UNIGRAM);
                h.write(word.as_bytes());
                add(out, h.finish(), W_UNIGRAM);
                add_trigrams(out, KIND_TRIGRAM, &word, None);
                if let Some(p) = &prev {
                    let mut h = Fnv::new(KIND_BIGRAM);
                    h.write(p.as_bytes());
                    h.write(&[0]);
                    h.write(word.as_bytes());
                    add(out, h.finish(), W_BIGRAM);
                }
                prev = Some(word);
            }
        }
        let norm = out
            .iter()
            .map(|&x| (x as f64) * (x as f64))
            .sum::<f64>()
            .sqrt();
        if norm == 0.0 || !norm.is_finite() {
            set_e0(out);
            return;
        }
        for x in out.iter_mut() {
            *x = (*x as f64 / norm) as f32;
        }
    }

    /// Embed every text; returns `texts.len() * dims` floats (row `i` = `texts[i]`). Batches of
    /// 32 or more texts are embedded in parallel (results are identical either way).
    pub fn embed_batch(&self, texts: &[&str]) -> Vec<f32> {
        let mut out = vec![0.0f32; texts.len() * self.dims];
        if texts.len() >= PAR_THRESHOLD {
            out.par_chunks_mut(self.dims)
                .zip(texts.par_iter())
                .for_each(|(row, t)| self.embed(t, row));
        } else {
            for (row, t) in out.chunks_mut(self.dims).zip(texts) {
                self.embed(t, row);
            }
        }
        out
    }

    /// Word tokens of `text` as byte ranges `(start, end)`, sorted and non-overlapping (step 1 of
    /// the algorithm in the module documentation).
    pub fn tokenize(text: &str) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut start: Option<usize> = None;
        // The open token is a single ideograph (closed by any following non-combining char).
        let mut single = false;
        let mut end = 0;
        let mut it = text.char_indices().peekable();
        while let Some((i, c)) = it.next() {
            if c.is_alphanumeric() {
                let ideo = is_ideographic(c);
                if ideo || single {
                    if let Some(s) = start.take() {
                        out.push((s, end));
                    }
                }
                if start.is_none() {
                    start = Some(i);
                }
                single = ideo;
                end = i + c.len_utf8();
            } else if start.is_some()
                && (is_combining(c)
                    || (!single
                        && is_apostrophe(c)
                        && it
                            .peek()
                            .is_some_and(|&(_, n)| n.is_alphanumeric() && !is_ideographic(n))))
            {
                end = i + c.len_utf8();
            } else if let Some(s) = start.take() {
                out.push((s, end));
                single = false;
            }
        }
        if let Some(s) = start {
            out.push((s, end));
        }
        out
    }
}

#[cfg(test)]
mod tests {
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
}
