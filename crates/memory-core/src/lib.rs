//! memory-core: the performance-critical core of memory-server, in plain Rust (no napi).
//!
//! - [`store`]: the durable `TensorStore` (append-only log, group commit, recovery, compaction)
//! - [`search`]: SIMD similarity kernels (scalar oracle, AVX2+FMA, AVX-512, NEON) and top-k
//! - [`filter`]: the metadata filter language of searches, lists and deletes
//! - [`significance`]: novelty / surprise / importance scoring, and the pass that scores a put group
//! - [`ann`]: the approximate nearest-neighbour graph (HNSW) of big namespaces
//! - [`text`]: the full-text analyzer, inverted index and BM25 ranking
//! - [`embed`]: the deterministic `hash` embedder and text windowing for `process`

#![warn(clippy::undocumented_unsafe_blocks)]

pub mod ann;
pub mod embed;
pub mod error;
pub mod filter;
pub mod search;
pub mod significance;
pub mod store;
pub mod text;

pub use error::{Error, Result};
