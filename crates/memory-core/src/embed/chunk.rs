//! Token windows for the inference `process` command.
//!
//! `process` cuts a text into windows of `max_tokens` tokens of the embedder's tokenizer (words for
//! `hash`); consecutive windows overlap by `stride` tokens, so window `i` starts at token
//! `i * (max_tokens - stride)`. A window spans from its first token's start to its last token's
//! end (the text between tokens inside a window is included; text before the first token or after
//! the last one is not). The last window always ends at the last token and no window is emitted
//! that would be contained in the previous one. A text without tokens gives one chunk covering the
//! whole text. Offsets are returned both as byte offsets and as UTF-16 code-unit offsets
//! (JavaScript string indices).

use crate::error::{Error, Result};

/// One window. `start_byte..end_byte` indexes the Rust `&str`; `start..end` are UTF-16 code-unit
/// offsets (JavaScript `String.prototype.slice(start, end)` gives the same text).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Chunk {
    pub start_byte: usize,
    pub end_byte: usize,
    /// UTF-16 offset of `start_byte`.
    pub start: usize,
    /// UTF-16 offset of `end_byte`.
    pub end: usize,
}

impl Chunk {
    /// The chunk's text (`text` must be the string the chunk was computed from).
    pub fn text<'a>(&self, text: &'a str) -> &'a str {
        &text[self.start_byte..self.end_byte]
    }
}

/// Cut `text` into windows of `max_tokens` tokens, consecutive windows sharing `stride` tokens.
///
/// `tokens` are byte ranges into `text`: sorted, non-overlapping, `start <= end`, on char
/// boundaries (as produced by an embedder's `tokenize`); otherwise `invalid_request`.
/// Requires `0 <= stride < max_tokens` (so `max_tokens >= 1`), else `invalid_request` naming both.
pub fn windows(
    text: &str,
    tokens: &[(usize, usize)],
    max_tokens: usize,
    stride: usize,
) -> Result<Vec<Chunk>> {
    if stride >= max_tokens {
        return Err(Error::invalid(format!(
            "stride ({stride}) must be smaller than max_tokens ({max_tokens})"
        )));
    }
    let mut prev_end = 0usize;
    for (i, &(a, b)) in tokens.iter().enumerate() {
        if a > b
            || b > text.len()
            || a < prev_end
            || !text.is_char_boundary(a)
            || !text.is_char_boundary(b)
        {
            return Err(Error::invalid(format!(
                "token {i} ({a}..{b}) is not a sorted, non-overlapping char-boundary range of a {}-byte text",
                text.len()
            )));
        }
        prev_end = b;
    }

    let mut spans: Vec<(usize, usize)> = Vec::new();
    if tokens.is_empty() {
        spans.push((0, text.len()));
    } else {
        let step = max_tokens - stride;
        let n = tokens.len();
        let mut i = 0;
        loop {
            let last = (i + max_tokens).min(n) - 1;
            spans.push((tokens[i].0, tokens[last].1));
            if last == n - 1 {
                break;
            }
            i += step;
        }
    }

    let mut offsets = Vec::with_capacity(spans.len() * 2);
    for &(a, b) in &spans {
        offsets.push(a);
        offsets.push(b);
    }
    let u16 = utf16_offsets(text, &offsets);
    Ok(spans
        .iter()
        .enumerate()
        .map(|(k, &(a, b))| Chunk {
            start_byte: a,
            end_byte: b,
            start: u16[2 * k],
            end: u16[2 * k + 1],
        })
        .collect())
}

/// Convert byte offsets in `text` to UTF-16 code-unit offsets (JavaScript string indices), in one
/// pass over the text (offsets may come in any order; they are sorted internally when needed).
/// An offset inside a multi-byte char maps to the offset just after that char; offsets past the
/// end map to the UTF-16 length of the text.
pub fn utf16_offsets(text: &str, byte_offsets: &[usize]) -> Vec<usize> {
    let mut res = vec![0usize; byte_offsets.len()];
    if text.is_ascii() {
        for (r, &b) in res.iter_mut().zip(byte_offsets) {
            *r = b.min(text.len());
        }
        return res;
    }
    let sorted = byte_offsets.windows(2).all(|w| w[0] <= w[1]);
    let mut order: Vec<usize> = (0..byte_offsets.len()).collect();
    if !sorted {
        order.sort_by_key(|&i| byte_offsets[i]);
    }
    let mut chars = text.chars();
    let mut byte_pos = 0usize; // byte offset just after the consumed chars
    let mut u16_pos = 0usize;
    for &i in &order {
        let target = byte_offsets[i];
        while byte_pos < target {
            match chars.next() {
                Some(c) => {
                    byte_pos += c.len_utf8();
                    u16_pos += c.len_utf16();
                }
                None => break,
            }
        }
        res[i] = u16_pos;
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::HashEmbedder;
    use proptest::prelude::*;

    fn tok(text: &str) -> Vec<(usize, usize)> {
        HashEmbedder::tokenize(text)
    }

    fn texts(text: &str, chunks: &[Chunk]) -> Vec<String> {
        chunks.iter().map(|c| c.text(text).to_string()).collect()
    }

    /// Reference UTF-16 offset via encode_utf16 on the prefix.
    fn u16_ref(text: &str, b: usize) -> usize {
        text[..b].encode_utf16().count()
    }

    #[test]
    fn basic_windows() {
        let t = "a b c d e f g";
        let c = windows(t, &tok(t), 3, 1).unwrap();
        assert_eq!(texts(t, &c), vec!["a b c", "c d e", "e f g"]);
        let c = windows(t, &tok(t), 3, 0).unwrap();
        assert_eq!(texts(t, &c), vec!["a b c", "d e f", "g"]);
        let c = windows(t, &tok(t), 4, 2).unwrap();
        assert_eq!(texts(t, &c), vec!["a b c d", "c d e f", "e f g"]);
        // Last window ends at the last token; no window contained in the previous.
        let t = "a b c d e";
        let c = windows(t, &tok(t), 3, 1).unwrap();
        assert_eq!(texts(t, &c), vec!["a b c", "c d e"]);
        let c = windows(t, &tok(t), 4, 1).unwrap();
        assert_eq!(texts(t, &c), vec!["a b c d", "d e"]);
    }

    #[test]
    fn window_spans_tokens_not_surrounding_text() {
        let t = "  Hello, world!  ";
        let c = windows(t, &tok(t), 10, 0).unwrap();
        assert_eq!(
            c,
            vec![Chunk {
                start_byte: 2,
                end_byte: 14,
                start: 2,
                end: 14
            }]
        );
        assert_eq!(c[0].text(t), "Hello, world");
    }

    #[test]
    fn stride_edge_cases() {
        let t = "a b c d e";
        // stride = max_tokens - 1: step of one token.
        let c = windows(t, &tok(t), 2, 1).unwrap();
        assert_eq!(texts(t, &c), vec!["a b", "b c", "c d", "d e"]);
        // max_tokens = 1, stride 0: every token alone.
        let c = windows(t, &tok(t), 1, 0).unwrap();
        assert_eq!(texts(t, &c), vec!["a", "b", "c", "d", "e"]);
        // Window larger than the text: one chunk.
        let c = windows(t, &tok(t), 100, 99).unwrap();
        assert_eq!(texts(t, &c), vec!["a b c d e"]);
        // Exactly max_tokens tokens: one chunk.
        let c = windows(t, &tok(t), 5, 2).unwrap();
        assert_eq!(texts(t, &c), vec!["a b c d e"]);
        // Errors name both values.
        for (m, s) in [(3, 3), (3, 4), (0, 0), (1, 1)] {
            let e = windows(t, &tok(t), m, s).unwrap_err();
            assert_eq!(e.code(), crate::error::ErrorCode::InvalidRequest);
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("stride ({s})"))
                    && msg.contains(&format!("max_tokens ({m})")),
                "{msg}"
            );
        }
    }

    #[test]
    fn no_tokens_one_chunk() {
        for t in ["", "   ", "!!! 😀 ..."] {
            let c = windows(t, &tok(t), 4, 1).unwrap();
            assert_eq!(c.len(), 1);
            assert_eq!(c[0].start_byte, 0);
            assert_eq!(c[0].end_byte, t.len());
            assert_eq!(c[0].start, 0);
            assert_eq!(c[0].end, t.encode_utf16().count());
        }
    }

    #[test]
    fn invalid_tokens_rejected() {
        let t = "héllo world";
        assert!(windows(t, &[(0, 2)], 2, 0).is_err(), "not a char boundary");
        assert!(windows(t, &[(0, 3), (2, 5)], 2, 0).is_err(), "overlap");
        assert!(windows(t, &[(6, 7), (0, 1)], 2, 0).is_err(), "unsorted");
        assert!(windows(t, &[(3, 1)], 2, 0).is_err(), "reversed");
        assert!(windows(t, &[(0, 100)], 2, 0).is_err(), "out of range");
        assert!(
            windows(t, &[(0, 6), (6, 12)], 2, 0).is_ok(),
            "adjacent is fine"
        );
    }

    #[test]
    fn emoji_and_non_bmp_offsets() {
        // 😀 is 4 bytes, 1 char, 2 UTF-16 units; é is 2 bytes, 1 unit; 한 is 3 bytes, 1 unit.
        let t = "😀 café 한국 𝔘𝔫𝔦 end";
        let toks = tok(t);
        let c = windows(t, &toks, 2, 1).unwrap();
        assert_eq!(texts(t, &c), vec!["café 한국", "한국 𝔘𝔫𝔦", "𝔘𝔫𝔦 end"]);
        for ch in &c {
            assert_eq!(ch.start, u16_ref(t, ch.start_byte));
            assert_eq!(ch.end, u16_ref(t, ch.end_byte));
            // JS slice semantics: UTF-16 slice equals the byte slice.
            let u: Vec<u16> = t.encode_utf16().collect();
            assert_eq!(
                String::from_utf16(&u[ch.start..ch.end]).unwrap(),
                ch.text(t)
            );
        }
        // Explicit values: "café" starts after "😀 " = 2 + 1 units (5 bytes).
        assert_eq!((c[0].start_byte, c[0].start), (5, 3));
        // "𝔘𝔫𝔦" (3 non-BMP letters): chars=3, UTF-16=6.
        assert_eq!(c[2].end - c[2].start, 6 + 4);
        let chars_before_end = t[..c[2].end_byte].chars().count();
        assert_ne!(
            c[2].end, chars_before_end,
            "UTF-16 offsets differ from char counts"
        );
    }

    #[test]
    fn utf16_offsets_cases() {
        let t = "a😀b";
        assert_eq!(utf16_offsets(t, &[0, 1, 5, 6]), vec![0, 1, 3, 4]);
        // Unsorted, duplicates, past-the-end, mid-char.
        assert_eq!(
            utf16_offsets(t, &[6, 0, 5, 5, 100, 3]),
            vec![4, 0, 3, 3, 4, 3]
        );
        assert_eq!(utf16_offsets("abc", &[3, 1, 9]), vec![3, 1, 3]);
        assert_eq!(utf16_offsets("", &[0, 1]), vec![0, 0]);
        assert!(utf16_offsets("x", &[]).is_empty());
    }

    proptest! {
        #[test]
        fn prop_utf16_matches_reference(s in "\\PC{0,40}", seed in any::<u64>()) {
            let mut bounds: Vec<usize> = (0..=s.len()).filter(|&b| s.is_char_boundary(b)).collect();
            // Shuffle deterministically.
            let mut x = seed | 1;
            for i in (1..bounds.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                bounds.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let got = utf16_offsets(&s, &bounds);
            for (b, g) in bounds.iter().zip(got) {
                prop_assert_eq!(g, u16_ref(&s, *b));
            }
        }

        #[test]
        fn prop_windows_cover_tokens(words in prop::collection::vec("[a-z😀é]{1,3}", 0..30),
                                     max in 1usize..8, stride_frac in 0usize..8) {
            let stride = stride_frac % max;
            let t = words.join(" ");
            let toks = tok(&t);
            let c = windows(&t, &toks, max, stride).unwrap();
            if toks.is_empty() {
                prop_assert_eq!(c.len(), 1);
            } else {
                // Window k starts at token k*step; consecutive windows overlap by `stride` tokens.
                let step = max - stride;
                let n = toks.len();
                let expected = if n <= max { 1 } else { (n - max).div_ceil(step) + 1 };
                prop_assert_eq!(c.len(), expected);
                for (k, ch) in c.iter().enumerate() {
                    prop_assert_eq!(ch.start_byte, toks[k * step].0);
                    let last = (k * step + max).min(n) - 1;
                    prop_assert_eq!(ch.end_byte, toks[last].1);
                    prop_assert_eq!(ch.start, u16_ref(&t, ch.start_byte));
                    prop_assert_eq!(ch.end, u16_ref(&t, ch.end_byte));
                }
                prop_assert_eq!(c.last().unwrap().end_byte, toks[n - 1].1);
                for w in c.windows(2) {
                    prop_assert!(w[1].end_byte > w[0].end_byte && w[1].start_byte > w[0].start_byte);
                }
            }
        }
    }
}
