//! The built-in `hash` embedder and text windowing.

use memory_core::embed::hash::MIN_DIMS;
use memory_core::embed::{chunk, HashEmbedder, HASH_DIMS};
use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::convert::text_windows;
use crate::types::TextWindow;
use crate::{invalid, to_napi};

/// Largest `dims` the binding accepts for the `hash` embedder.
const MAX_HASH_DIMS: usize = 16384;

pub struct EmbedTask {
    texts: Vec<String>,
    dims: usize,
}

impl Task for EmbedTask {
    type Output = Vec<f32>;
    type JsValue = Float32Array;
    fn compute(&mut self) -> napi::Result<Vec<f32>> {
        Ok(embed(&self.texts, self.dims))
    }
    fn resolve(&mut self, _env: Env, v: Vec<f32>) -> napi::Result<Float32Array> {
        Ok(Float32Array::new(v))
    }
}

fn embed(texts: &[String], dims: usize) -> Vec<f32> {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    HashEmbedder::new(dims).embed_batch(&refs)
}

fn check_dims(dims: Option<u32>) -> napi::Result<usize> {
    let d = dims.map_or(HASH_DIMS, |d| d as usize);
    if !(MIN_DIMS..=MAX_HASH_DIMS).contains(&d) {
        return Err(invalid(format!("dims must be between {MIN_DIMS} and {MAX_HASH_DIMS}, got {d}")));
    }
    Ok(d)
}

/// Embed texts with the deterministic `hash` embedder: a flat `texts.length × dims` array.
#[napi]
pub fn hash_embed(texts: Vec<String>, dims: Option<u32>) -> napi::Result<Float32Array> {
    Ok(Float32Array::new(embed(&texts, check_dims(dims)?)))
}

/// `hashEmbed` on the thread pool.
#[napi(ts_return_type = "Promise<Float32Array>")]
pub fn hash_embed_async(texts: Vec<String>, dims: Option<u32>) -> napi::Result<AsyncTask<EmbedTask>> {
    Ok(AsyncTask::new(EmbedTask { texts, dims: check_dims(dims)? }))
}

/// Cut text into windows of `maxTokens` word tokens overlapping by `stride` tokens.
#[napi]
pub fn word_windows(text: String, max_tokens: u32, stride: u32) -> napi::Result<Vec<TextWindow>> {
    let tokens = HashEmbedder::tokenize(&text);
    let w = chunk::windows(&text, &tokens, max_tokens as usize, stride as usize).map_err(to_napi)?;
    Ok(text_windows(&text, w))
}

/// Cut text into windows over caller-supplied token byte ranges (UTF-8 offsets, flat
/// `[start0, end0, start1, end1, …]`), e.g. from a model tokenizer.
#[napi]
pub fn token_windows(text: String, token_byte_ranges: Vec<u32>, max_tokens: u32, stride: u32) -> napi::Result<Vec<TextWindow>> {
    if !token_byte_ranges.len().is_multiple_of(2) {
        return Err(invalid("tokenByteRanges must hold start/end pairs"));
    }
    let tokens: Vec<(usize, usize)> = token_byte_ranges.chunks(2).map(|p| (p[0] as usize, p[1] as usize)).collect();
    if tokens.iter().any(|&(s, e)| s > e || e > text.len() || !text.is_char_boundary(s) || !text.is_char_boundary(e)) {
        return Err(invalid("tokenByteRanges must be ordered UTF-8 boundaries inside the text"));
    }
    let w = chunk::windows(&text, &tokens, max_tokens as usize, stride as usize).map_err(to_napi)?;
    Ok(text_windows(&text, w))
}
