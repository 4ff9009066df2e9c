//! Text embedding in the core: the deterministic `hash` embedder (works offline out of the box)
//! and the windowing used by the inference `process` command.
//!
//! - [`hash`]: [`HashEmbedder`], a feature-hashing embedder (`hash-v1`, [`HASH_DIMS`] = 384 dims,
//!   L2-normalized), and its word tokenizer.
//! - [`chunk`]: cutting a text into overlapping token windows, with UTF-16 (JavaScript) offsets.
//! - [`tokenize`]: [`ModelTokenizer`], a HuggingFace `tokenizer.json` for ONNX sentence-embedding
//!   models (truncation, padding, attention masks, model-token windows).
//! - [`pool`]: [`mean_pool`], mean pooling + L2 normalization of the model's hidden states.

pub mod chunk;
pub mod hash;
pub mod pool;
pub mod tokenize;

pub use hash::{HashEmbedder, HASH_DIMS, HASH_NAME};
pub use pool::mean_pool;
pub use tokenize::{Encoded, ModelTokenizer};

/// A text embedder usable by the store / inference layer.
pub trait Embedder: Send + Sync {
    /// Stable model name (recorded with stored vectors; changes when the algorithm changes).
    fn name(&self) -> &str;
    /// Output dimensionality.
    fn dims(&self) -> usize;
    /// Embed each text; returns `texts.len() * dims()` floats, row-major (one row per text).
    fn embed_batch(&self, texts: &[&str]) -> Vec<f32>;
    /// The embedder's tokens as byte ranges `(start, end)` into `text`, sorted and non-overlapping
    /// (used by `process` to cut windows of `max_tokens` tokens).
    fn tokenize(&self, text: &str) -> Vec<(usize, usize)>;
}

impl Embedder for HashEmbedder {
    fn name(&self) -> &str {
        HashEmbedder::name(self)
    }

    fn dims(&self) -> usize {
        HashEmbedder::dims(self)
    }

    fn embed_batch(&self, texts: &[&str]) -> Vec<f32> {
        HashEmbedder::embed_batch(self, texts)
    }

    fn tokenize(&self, text: &str) -> Vec<(usize, usize)> {
        HashEmbedder::tokenize(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embed_trait_object() {
        let e: Box<dyn Embedder> = Box::new(HashEmbedder::new(HASH_DIMS));
        assert_eq!(e.name(), "hash-v1");
        assert_eq!(e.dims(), 384);
        let v = e.embed_batch(&["hello world", "bye"]);
        assert_eq!(v.len(), 2 * 384);
        assert_eq!(e.tokenize("hello, world"), vec![(0, 5), (7, 12)]);
        let mut one = vec![0.0; 384];
        HashEmbedder::new(384).embed("bye", &mut one);
        assert_eq!(&v[384..], &one[..]);
    }
}
