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
mod tests;
