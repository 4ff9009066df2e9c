//! The text analyzer: the same pipeline for stored texts and for queries.
//!
//! 1. words by the Unicode word boundaries of UAX #29 (`unicode-segmentation`): letters and
//!    digits together, `user_id` and `v2.3` stay one word, `ERR-4521` is two; punctuation and
//!    spaces are dropped;
//! 2. lowercase (Unicode), then accents folded: NFKD and combining marks dropped (`Café` →
//!    `cafe`, `ﬁ` → `fi`); ASCII words skip this step;
//! 3. words of ASCII letters only are stemmed with Snowball English (`rust-stemmers`):
//!    `running` → `run`; words holding digits or other scripts are kept as they are, so
//!    identifiers match exactly;
//! 4. words longer than [`MAX_TERM_BYTES`] after folding are dropped (hashes, base64 blobs).

use std::borrow::Cow;

use rust_stemmers::{Algorithm, Stemmer};
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;
use unicode_segmentation::UnicodeSegmentation;

use crate::store::state::HashMap;

/// Bumped whenever a change here makes any text give different terms: an index persisted by
/// another version is rebuilt instead of loaded (`text/persist.rs`).
pub const ANALYZER_VERSION: u32 = 1;

/// Longest term kept, in bytes (a SHA-256 in hex is 64).
pub const MAX_TERM_BYTES: usize = 64;

/// Words whose stems an analyzer remembers (then it starts over): the Snowball stemmer costs
/// about a microsecond a word, a lookup a tenth of that, and word frequencies are so skewed
/// that a few thousand words cover most of any text (building the index of 100,000 texts of
/// 20 words went from 3.9 s to well under one).
const STEM_MEMO_WORDS: usize = 100_000;

/// Reusable analyzer: holds the stemmer, its memo and a scratch buffer (one per thread).
pub struct Analyzer {
    stemmer: Stemmer,
    buf: String,
    /// word → its stem, `None` where the stem is the word itself.
    stems: HashMap<Box<str>, Option<Box<str>>>,
}

impl Default for Analyzer {
    fn default() -> Self {
        Self::new()
    }
}

impl Analyzer {
    pub fn new() -> Self {
        Analyzer { stemmer: Stemmer::create(Algorithm::English), buf: String::new(), stems: HashMap::default() }
    }

    /// Fold `word` into the buffer (steps 2 and 4); false when nothing is left to index.
    fn fold(&mut self, word: &str) -> bool {
        self.buf.clear();
        if word.is_ascii() {
            self.buf.push_str(word);
            self.buf.make_ascii_lowercase();
        } else {
            for c in word.chars().flat_map(char::to_lowercase).nfkd() {
                if !is_combining_mark(c) {
                    self.buf.push(c);
                }
            }
        }
        !self.buf.is_empty() && self.buf.len() <= MAX_TERM_BYTES
    }

    /// Call `word` for every folded word of `text` (steps 1, 2 and 4: not stemmed yet; see
    /// [`stem_word`](Self::stem_word)), in order.
    pub fn for_each_word(&mut self, text: &str, mut word: impl FnMut(&str)) {
        for w in text.unicode_words() {
            if self.fold(w) {
                word(&self.buf);
            }
        }
    }

    /// The term of a folded word (step 3).
    pub fn stem_word<'a>(&self, word: &'a str) -> Cow<'a, str> {
        if word.bytes().all(|b| b.is_ascii_lowercase()) {
            self.stemmer.stem(word)
        } else {
            Cow::Borrowed(word)
        }
    }

    /// Call `term` for every term of `text`, in order (repeats included).
    pub fn for_each_term(&mut self, text: &str, mut term: impl FnMut(&str)) {
        for word in text.unicode_words() {
            if !self.fold(word) {
                continue;
            }
            if !self.buf.bytes().all(|b| b.is_ascii_lowercase()) {
                term(&self.buf);
                continue;
            }
            match self.stems.get(self.buf.as_str()) {
                Some(Some(stem)) => term(stem),
                Some(None) => term(&self.buf),
                None => {
                    let stem = self.stemmer.stem(&self.buf);
                    let memo = (*stem != *self.buf).then(|| Box::from(&*stem));
                    term(&stem);
                    if self.stems.len() >= STEM_MEMO_WORDS {
                        self.stems.clear();
                    }
                    self.stems.insert(Box::from(self.buf.as_str()), memo);
                }
            }
        }
    }

    /// The terms of `text`, in order.
    pub fn terms(&mut self, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        self.for_each_term(text, |t| out.push(t.to_string()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_lowercased_and_stemmed() {
        let mut a = Analyzer::new();
        assert_eq!(a.terms("The Runners were RUNNING quickly!"), ["the", "runner", "were", "run", "quick"]);
    }

    #[test]
    fn accents_folded_in_any_case() {
        let mut a = Analyzer::new();
        assert_eq!(a.terms("Café CRÈME brûlée Ångström"), a.terms("cafe creme brulee angstrom"));
        assert_eq!(a.terms("ﬁle"), ["file"]);
    }

    #[test]
    fn identifiers_kept_whole_and_unstemmed() {
        let mut a = Analyzer::new();
        assert_eq!(a.terms("ERR-4521 in user_id v2.3.1"), ["err", "4521", "in", "user_id", "v2.3.1"]);
        // Digits keep a word out of the stemmer: "errors404" stays as written.
        assert_eq!(a.terms("errors404"), ["errors404"]);
    }

    #[test]
    fn other_scripts_are_words_too() {
        let mut a = Analyzer::new();
        assert_eq!(a.terms("Привет, МИР"), ["привет", "мир"]);
        // UAX #29 makes each ideograph a word.
        assert_eq!(a.terms("東京"), ["東", "京"]);
    }

    #[test]
    fn punctuation_only_and_overlong_words_give_nothing() {
        let mut a = Analyzer::new();
        assert!(a.terms("... --- !!!").is_empty());
        let long = "x".repeat(MAX_TERM_BYTES + 1);
        assert_eq!(a.terms(&format!("{long} kept")), ["kept"]);
    }
}
