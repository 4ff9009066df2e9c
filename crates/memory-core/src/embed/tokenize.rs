//! Model tokenizers (HuggingFace `tokenizer.json`, e.g. sentence-transformers exports such as
//! all-MiniLM-L6-v2) for ONNX embedding models: encoding, truncation, padding and attention masks
//! in the core; inference itself runs elsewhere (onnxruntime in the TypeScript layer).
//!
//! # Contract
//!
//! * Texts are encoded as single sequences **with** the tokenizer's special tokens (its
//!   post-processor, e.g. `[CLS] $A [SEP]`).
//! * **Truncation** to `max_length` tokens (special tokens included) is done here, not by the
//!   tokenizer (any `truncation` in the file is ignored): the special tokens are all kept and the
//!   sequence's own tokens are cut from the end, so `[CLS] a b c d [SEP]` with `max_length = 4`
//!   gives `[CLS] a b [SEP]`. `max_length` must be at least the number of special tokens.
//! * **Padding** is done here too (any `padding` in the file is ignored, except its `pad_id`):
//!   [`ModelTokenizer::encode_batch`] pads every row to the longest sequence of the batch with
//!   [`ModelTokenizer::pad_id`] (attention mask 0, token type 0). The pad id is the padding
//!   config's `pad_id` if the file has one, else the id of `[PAD]`, else of `<pad>`, else 0.
//! * [`ModelTokenizer::token_windows`] cuts a text into windows of model tokens (without special
//!   tokens, without truncation) with the semantics of [`chunk::windows`].
//!
//! Errors: bad arguments are `invalid_request`; a missing tokenizer file is `not_found`, an
//! unreadable one `io`, an unparseable one (or a failure of the tokenizer on a text)
//! `unavailable` — the binding reports all of those as `model_error`.

use std::path::Path;

use rayon::prelude::*;
use tokenizers::{Encoding, PostProcessor, Tokenizer};

use super::chunk::{self, Chunk};
use crate::error::{Error, Result};

/// Batches are tokenized in parallel (rayon) from this many texts and [`PAR_MIN_BYTES`] bytes.
const PAR_MIN_TEXTS: usize = 4;
/// Minimum total text size (bytes) for parallel tokenization: below it, thread hand-off costs
/// more than it saves.
const PAR_MIN_BYTES: usize = 8 * 1024;

fn parallel(texts: &[&str]) -> bool {
    texts.len() >= PAR_MIN_TEXTS && texts.iter().map(|t| t.len()).sum::<usize>() >= PAR_MIN_BYTES
}

/// A padded batch, ready for an ONNX BERT-style model. All matrices are row-major
/// `[batch, seq_len]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids; padding positions hold the pad id.
    pub input_ids: Vec<i64>,
    /// 1 for real tokens (special tokens included), 0 for padding.
    pub attention_mask: Vec<i64>,
    /// Token type (segment) ids; 0 for padding.
    pub token_type_ids: Vec<i64>,
    pub batch: usize,
    /// Length of the longest (truncated) sequence of the batch; 0 for an empty batch.
    pub seq_len: usize,
    /// Number of real tokens of each row (after truncation).
    pub lengths: Vec<u32>,
}

/// A HuggingFace tokenizer with our truncation and padding rules (see the module documentation).
/// Cheap to share between threads (`Send + Sync`; all methods take `&self`).
#[derive(Clone, Debug)]
pub struct ModelTokenizer {
    tokenizer: Tokenizer,
    max_length: usize,
    pad_id: u32,
    vocab_size: usize,
    special_tokens: usize,
}

impl ModelTokenizer {
    /// Load a `tokenizer.json` file. Errors name the file: `not_found` when missing, `io` when
    /// unreadable, `unavailable` when it is not a valid tokenizer, `invalid_request` when
    /// `max_length` is 0 or smaller than the number of special tokens the tokenizer adds.
    pub fn from_file(path: impl AsRef<Path>, max_length: usize) -> Result<Self> {
        let path = path.as_ref();
        if max_length == 0 {
            return Err(Error::invalid(
                "tokenizer max_length must be at least 1 (got 0)",
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::NotFound(format!("tokenizer file not found: {}", path.display()))
            } else {
                Error::io(path, e)
            }
        })?;
        let tokenizer = Tokenizer::from_bytes(&bytes).map_err(|e| {
            Error::Unavailable(format!(
                "cannot load tokenizer file {}: {e}",
                path.display()
            ))
        })?;
        Self::new(tokenizer, max_length)
    }

    /// Wrap an already-built tokenizer. Its own truncation and padding settings are removed (the
    /// padding's `pad_id` is kept as [`Self::pad_id`]).
    pub fn new(mut tokenizer: Tokenizer, max_length: usize) -> Result<Self> {
        let special_tokens = tokenizer
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(false));
        if max_length == 0 || max_length < special_tokens {
            return Err(Error::invalid(format!(
                "tokenizer max_length ({max_length}) must be at least 1 and at least the number of special tokens the tokenizer adds ({special_tokens})"
            )));
        }
        let pad_id = tokenizer
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| tokenizer.token_to_id("[PAD]"))
            .or_else(|| tokenizer.token_to_id("<pad>"))
            .unwrap_or(0);
        tokenizer
            .with_truncation(None)
            .map_err(|e| Error::Internal(format!("cannot disable tokenizer truncation: {e}")))?;
        tokenizer.with_padding(None);
        let vocab_size = tokenizer.get_vocab_size(true);
        Ok(ModelTokenizer {
            tokenizer,
            max_length,
            pad_id,
            vocab_size,
            special_tokens,
        })
    }

    /// Maximum sequence length (special tokens included).
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Id used for padding positions.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Number of special tokens added to a single sequence (2 for `[CLS] $A [SEP]`).
    pub fn special_tokens(&self) -> usize {
        self.special_tokens
    }

    /// The underlying HuggingFace tokenizer (truncation and padding disabled).
    pub fn inner(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Encode one text with special tokens, without offsets (cheaper), untruncated.
    fn encode_fast(&self, text: &str) -> Result<Encoding> {
        self.tokenizer
            .encode_fast(text, true)
            .map_err(|e| Error::Unavailable(format!("tokenizer failed: {e}")))
    }

    fn encode_all(&self, texts: &[&str]) -> Result<Vec<Encoding>> {
        if parallel(texts) {
            texts.par_iter().map(|t| self.encode_fast(t)).collect()
        } else {
            texts.iter().map(|t| self.encode_fast(t)).collect()
        }
    }

    /// Length of an encoding after our truncation.
    fn truncated_len(&self, enc: &Encoding) -> usize {
        enc.len().min(self.max_length)
    }

    /// Write the truncated ids / type ids of `enc` into the start of `ids` / `types` (mask gets
    /// 1s); returns the number of tokens written. Special tokens are kept, the sequence's own
    /// tokens are cut from the end.
    fn write_row(
        &self,
        enc: &Encoding,
        ids: &mut [i64],
        mask: &mut [i64],
        types: &mut [i64],
    ) -> usize {
        let src_ids = enc.get_ids();
        let src_types = enc.get_type_ids();
        let n = src_ids.len();
        if n <= self.max_length {
            for (d, &s) in ids.iter_mut().zip(src_ids) {
                *d = s as i64;
            }
            for (d, &s) in types.iter_mut().zip(src_types) {
                *d = s as i64;
            }
            mask[..n].fill(1);
            return n;
        }
        let special = enc.get_special_tokens_mask();
        let n_special = special.iter().filter(|&&s| s != 0).count();
        // Can't be exceeded by a template-added set (checked in `new`); guard anyway.
        let mut budget = self.max_length.saturating_sub(n_special);
        let mut k = 0;
        for i in 0..n {
            if k == self.max_length {
                break;
            }
            if special[i] == 0 {
                if budget == 0 {
                    continue;
                }
                budget -= 1;
            }
            ids[k] = src_ids[i] as i64;
            types[k] = src_types[i] as i64;
            k += 1;
        }
        mask[..k].fill(1);
        k
    }

    /// Encode `texts` with special tokens, truncate each to [`Self::max_length`] and pad to the
    /// longest sequence of the batch. Large batches are tokenized in parallel.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Encoded> {
        let encs = self.encode_all(texts)?;
        let lengths: Vec<u32> = encs.iter().map(|e| self.truncated_len(e) as u32).collect();
        let batch = texts.len();
        let seq_len = lengths.iter().copied().max().unwrap_or(0) as usize;
        let mut input_ids = vec![self.pad_id as i64; batch * seq_len];
        let mut attention_mask = vec![0i64; batch * seq_len];
        let mut token_type_ids = vec![0i64; batch * seq_len];
        if seq_len > 0 {
            let rows = input_ids
                .chunks_mut(seq_len)
                .zip(attention_mask.chunks_mut(seq_len))
                .zip(token_type_ids.chunks_mut(seq_len))
                .zip(&encs);
            for (((ids, mask), types), enc) in rows {
                self.write_row(enc, ids, mask, types);
            }
        }
        Ok(Encoded {
            input_ids,
            attention_mask,
            token_type_ids,
            batch,
            seq_len,
            lengths,
        })
    }

    /// Number of tokens of each text as [`Self::encode_batch`] would feed them to the model
    /// (special tokens included, after truncation).
    pub fn token_counts(&self, texts: &[&str]) -> Result<Vec<u32>> {
        let count =
            |t: &&str| -> Result<u32> { Ok(self.truncated_len(&self.encode_fast(t)?) as u32) };
        if parallel(texts) {
            texts.par_iter().map(count).collect()
        } else {
            texts.iter().map(count).collect()
        }
    }

    /// The model tokens of `text` (no special tokens, no truncation) as byte ranges `(start,
    /// end)` into `text`: sorted, non-overlapping, on char boundaries (the contract of
    /// `Embedder::tokenize`). Offsets of tokens that share source bytes (byte-level BPE pieces of
    /// one character) are clamped to stay non-overlapping.
    pub fn tokenize(&self, text: &str) -> Result<Vec<(usize, usize)>> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| Error::Unavailable(format!("tokenizer failed: {e}")))?;
        Ok(sanitize_offsets(text, enc.get_offsets()))
    }

    /// Cut `text` into windows of `max_tokens` model tokens overlapping by `stride` tokens, with
    /// the semantics and output of [`chunk::windows`] (UTF-16 offsets for JavaScript; the window
    /// text is `chunk.text(text)`). Requires `stride < max_tokens`, else `invalid_request`.
    pub fn token_windows(
        &self,
        text: &str,
        max_tokens: usize,
        stride: usize,
    ) -> Result<Vec<Chunk>> {
        if stride >= max_tokens {
            // Same message as chunk::windows, before paying for tokenization.
            return chunk::windows("", &[], max_tokens, stride);
        }
        let tokens = self.tokenize(text)?;
        chunk::windows(text, &tokens, max_tokens, stride)
    }
}

/// Make tokenizer offsets acceptable to [`chunk::windows`]: clamp to the text, widen to char
/// boundaries, and clamp each start to the previous end (so ranges never overlap).
fn sanitize_offsets(text: &str, offsets: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let len = text.len();
    let mut prev_end = 0usize;
    offsets
        .iter()
        .map(|&(a, b)| {
            let mut a = a.min(len);
            let mut b = b.min(len).max(a);
            while !text.is_char_boundary(a) {
                a -= 1;
            }
            while !text.is_char_boundary(b) {
                b += 1;
            }
            a = a.max(prev_end);
            b = b.max(a);
            prev_end = b;
            (a, b)
        })
        .collect()
}

#[cfg(test)]
mod tests;
