//! Full-text search: the analyzer ([`analyzer`]) and the per-namespace inverted index with
//! its BM25 ranking ([`index`]). The store keeps one [`TextIndex`] per namespace in step with
//! its rows (`store/state.rs`); `retrieve` modes `text` and `hybrid` query it.

pub mod analyzer;
pub mod index;
pub mod persist;

pub use analyzer::Analyzer;
pub use index::{TextIndex, B, K1};

#[cfg(test)]
mod persist_tests;
#[cfg(test)]
mod tests;
