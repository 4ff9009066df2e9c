//! ONNX sentence-embedding models: the tokenizer (`tokenizer.json`) and mean pooling, in Rust;
//! inference itself runs in onnxruntime-node from TypeScript.
//!
//! Errors: bad arguments are `[invalid_request] …`; a tokenizer file that is missing, unreadable
//! or invalid, and a failure of the tokenizer on a text, are `[model_error] …`.

use std::sync::Arc;

use memory_core::embed::{self as core_embed, ModelTokenizer as CoreTokenizer};
use memory_core::error::ErrorCode;
use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::convert::text_windows;
use crate::types::TextWindow;
use crate::{invalid, to_napi};

/// `invalid_request` errors keep their code; every other core error is the model's fault.
fn model_err(e: memory_core::Error) -> napi::Error {
    if e.code() == ErrorCode::InvalidRequest {
        to_napi(e)
    } else {
        napi::Error::new(Status::GenericFailure, format!("[model_error] {e}"))
    }
}

fn refs(texts: &[String]) -> Vec<&str> {
    texts.iter().map(String::as_str).collect()
}

/// A padded batch for a BERT-style ONNX model; matrices are row-major `[batch, seqLen]`.
#[napi(object)]
pub struct EncodedBatch {
    /// Token ids (padding positions hold `padId`).
    pub input_ids: BigInt64Array,
    /// 1 for real tokens (special tokens included), 0 for padding.
    pub attention_mask: BigInt64Array,
    /// Segment ids (0 for a single sequence and for padding).
    pub token_type_ids: BigInt64Array,
    pub batch: u32,
    /// Longest sequence of the batch after truncation (0 for an empty batch).
    pub seq_len: u32,
    /// Real (unpadded) length of each row.
    pub lengths: Uint32Array,
}

/// A HuggingFace `tokenizer.json` (e.g. a sentence-transformers export) with truncation to
/// `maxLength` tokens (special tokens kept) and padding to the longest text of each batch.
#[napi]
pub struct ModelTokenizer {
    inner: Arc<CoreTokenizer>,
}

#[napi]
impl ModelTokenizer {
    /// Load `tokenizer.json` (synchronous: reads and parses the file).
    #[napi(constructor)]
    pub fn new(path: String, max_length: u32) -> napi::Result<Self> {
        if max_length == 0 {
            return Err(invalid("maxLength must be at least 1 (got 0)"));
        }
        let t = CoreTokenizer::from_file(&path, max_length as usize).map_err(model_err)?;
        Ok(ModelTokenizer { inner: Arc::new(t) })
    }

    /// Tokenize with special tokens, truncate to `maxLength`, pad to the longest text.
    #[napi]
    pub fn encode_batch(&self, texts: Vec<String>) -> napi::Result<EncodedBatch> {
        let e = self.inner.encode_batch(&refs(&texts)).map_err(model_err)?;
        Ok(EncodedBatch {
            input_ids: BigInt64Array::new(e.input_ids),
            attention_mask: BigInt64Array::new(e.attention_mask),
            token_type_ids: BigInt64Array::new(e.token_type_ids),
            batch: e.batch as u32,
            seq_len: e.seq_len as u32,
            lengths: Uint32Array::new(e.lengths),
        })
    }

    /// Tokens per text as fed to the model (special tokens included, after truncation).
    #[napi]
    pub fn token_counts(&self, texts: Vec<String>) -> napi::Result<Uint32Array> {
        let c = self.inner.token_counts(&refs(&texts)).map_err(model_err)?;
        Ok(Uint32Array::new(c))
    }

    /// Cut text into windows of `maxTokens` model tokens (no special tokens, no truncation)
    /// overlapping by `stride` tokens; same shape and rules as `wordWindows`.
    #[napi]
    pub fn token_windows(&self, text: String, max_tokens: u32, stride: u32) -> napi::Result<Vec<TextWindow>> {
        let w = self.inner.token_windows(&text, max_tokens as usize, stride as usize).map_err(model_err)?;
        Ok(text_windows(&text, w))
    }

    /// Vocabulary size (added tokens included).
    #[napi(getter)]
    pub fn vocab_size(&self) -> u32 {
        self.inner.vocab_size() as u32
    }

    /// Id written at padding positions.
    #[napi(getter)]
    pub fn pad_id(&self) -> u32 {
        self.inner.pad_id()
    }

    /// Maximum tokens per text (special tokens included).
    #[napi(getter)]
    pub fn max_length(&self) -> u32 {
        self.inner.max_length() as u32
    }
}

/// Mean-pool a model's last hidden state (`[batch, seqLen, dims]`, row-major) over the positions
/// where `attentionMask` (`[batch, seqLen]`) is non-zero, then L2-normalize when `normalize`;
/// returns `batch × dims` floats (an all-padding row gives zeros).
#[napi]
pub fn mean_pool(hidden: Float32Array, attention_mask: BigInt64Array, batch: u32, seq_len: u32, dims: u32, normalize: bool) -> napi::Result<Float32Array> {
    let out = core_embed::mean_pool(&hidden, &attention_mask, batch as usize, seq_len as usize, dims as usize, normalize).map_err(to_napi)?;
    Ok(Float32Array::new(out))
}
