//! Input validation, run on the caller's thread before an operation reaches the writer (it
//! spreads the cost and fails fast). Everything it parses travels on with the operation, so
//! the writer never parses a metadata text again.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

use super::log::PutRecord;
use super::shared::now_ms;
use super::state::ParsedMetadata;
use super::types::PutInput;
use crate::error::{Error, Result};
use crate::search::{check_vector, normalize};
use crate::significance::{importance_of, DEFAULT_IMPORTANCE};

/// UTF-8 bytes of a memory's text.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// UTF-8 bytes of a memory's metadata as JSON text.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Characters of a memory id.
pub const MAX_ID_CHARS: usize = 256;
/// Characters of a namespace name.
pub const MAX_NAMESPACE_CHARS: usize = 256;

/// A metadata text checked and parsed once.
pub(crate) struct Metadata {
    /// The text as stored (`{}` when none was given).
    pub text: String,
    pub parsed: ParsedMetadata,
    /// `metadata.importance`, validated (0.5 when absent).
    pub importance: f32,
}

impl Metadata {
    fn empty() -> Self {
        Metadata { text: "{}".to_string(), parsed: None, importance: DEFAULT_IMPORTANCE }
    }
}

/// A put that passed validation: id assigned, vector normalized, metadata parsed.
pub(crate) struct ValidPut {
    pub namespace: String,
    pub id: String,
    pub text: String,
    pub metadata: Metadata,
    pub significance: Option<f32>,
    pub vector: Vec<f32>,
    pub ttl_ms: Option<u64>,
    pub timestamp: Option<i64>,
    pub expires_at: Option<i64>,
}

pub(crate) fn check_name(what: &str, s: &str, max: usize) -> Result<()> {
    if s.is_empty() {
        return Err(Error::invalid(format!("{what} must not be empty")));
    }
    let n = s.chars().count();
    if n > max {
        return Err(Error::PayloadTooLarge(format!("{what} is {n} characters, over the {max}-character limit")));
    }
    Ok(())
}

/// Validate and parse a metadata JSON text (`None` or blank means `{}`).
pub(crate) fn check_metadata(field: &str, raw: Option<&str>) -> Result<Metadata> {
    let raw = match raw {
        None => return Ok(Metadata::empty()),
        Some(r) if r.trim().is_empty() => return Ok(Metadata::empty()),
        Some(r) => r,
    };
    if raw.len() > MAX_METADATA_BYTES {
        return Err(Error::PayloadTooLarge(format!(
            "{field} is {} bytes as JSON, over the {MAX_METADATA_BYTES}-byte (16 KiB) limit",
            raw.len()
        )));
    }
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(m)) => {
            let importance = importance_of(Some(&m)).map_err(|e| Error::invalid(format!("{field}: {e}")))?;
            let parsed = super::state::pack_metadata(&m);
            Ok(Metadata { text: raw.to_string(), parsed, importance })
        }
        Ok(_) => Err(Error::invalid(format!("{field} must be a JSON object"))),
        Err(e) => Err(Error::invalid(format!("{field} is not valid JSON: {e}"))),
    }
}

pub(crate) fn check_significance(field: &str, s: f32) -> Result<()> {
    if !(0.0..=1.0).contains(&s) {
        return Err(Error::invalid(format!("{field} must be between 0 and 1, got {s}")));
    }
    Ok(())
}

/// Validate a put's items (all-or-nothing); field names carry the item index in a batch.
pub(crate) fn prepare(items: Vec<PutInput>, dims: usize) -> Result<Vec<ValidPut>> {
    let batch = items.len() > 1;
    let mut out = Vec::with_capacity(items.len());
    for (i, mut it) in items.into_iter().enumerate() {
        let f = |name: &str| if batch { format!("items[{i}].{name}") } else { name.to_string() };
        check_name(&f("namespace"), &it.namespace, MAX_NAMESPACE_CHARS)?;
        if it.text.trim().is_empty() {
            return Err(Error::invalid(format!("{} must be a non-empty string", f("text"))));
        }
        if it.text.len() > MAX_TEXT_BYTES {
            return Err(Error::PayloadTooLarge(format!(
                "{} is {} bytes, over the {MAX_TEXT_BYTES}-byte (64 KiB) limit",
                f("text"),
                it.text.len()
            )));
        }
        let id = match it.id.take() {
            Some(id) => {
                check_name(&f("id"), &id, MAX_ID_CHARS)?;
                id
            }
            None => random_id(),
        };
        let metadata = check_metadata(&f("metadata"), it.metadata.as_deref())?;
        if it.timestamp.is_some_and(|t| t < 0) {
            return Err(Error::invalid(format!("{} must not be negative", f("timestamp"))));
        }
        if it.expires_at.is_some_and(|t| t < 0) {
            return Err(Error::invalid(format!("{} must not be negative", f("expires_at"))));
        }
        if let Some(s) = it.significance {
            check_significance(&f("significance"), s)?;
        }
        check_vector(&it.vector, dims).map_err(|m| Error::invalid(format!("{}: {m}", f("embedding"))))?;
        if normalize(&mut it.vector) == 0.0 {
            return Err(Error::invalid(format!("{} must not be the zero vector", f("embedding"))));
        }
        out.push(ValidPut {
            namespace: it.namespace,
            id,
            text: it.text,
            metadata,
            significance: it.significance,
            vector: it.vector,
            ttl_ms: it.ttl_ms,
            timestamp: it.timestamp,
            expires_at: it.expires_at,
        });
    }
    Ok(out)
}

/// Validate an update's arguments; returns the parsed metadata, if any is given.
pub(crate) fn check_update(namespace: &str, id: &str, metadata: Option<&str>, significance: Option<f32>) -> Result<Option<Metadata>> {
    check_name("namespace", namespace, MAX_NAMESPACE_CHARS)?;
    check_name("id", id, MAX_ID_CHARS)?;
    let metadata = metadata.map(|m| check_metadata("metadata", Some(m))).transpose()?;
    if let Some(s) = significance {
        check_significance("significance", s)?;
    }
    Ok(metadata)
}

/// Validate bulk-load records: they are written as given (no scan), so every field the log
/// format and the indexes rely on is checked here.
pub(crate) fn check_bulk_records(records: &[PutRecord], dims: usize) -> Result<()> {
    for (i, r) in records.iter().enumerate() {
        if let Err(m) = check_vector(&r.vector, dims) {
            return Err(Error::invalid(format!("records[{i}].embedding: {m}")));
        }
        if r.text.len() > MAX_TEXT_BYTES || r.metadata.len() > MAX_METADATA_BYTES || r.associations.len() > 255 {
            return Err(Error::PayloadTooLarge(format!("records[{i}] is over a size limit")));
        }
        if r.namespace.is_empty() || r.id.is_empty() || r.namespace.len() > 65535 || r.id.len() > 65535 {
            return Err(Error::invalid(format!("records[{i}] needs a namespace and an id")));
        }
        if r.associations.iter().any(|a| a.len() > 65535) {
            return Err(Error::PayloadTooLarge(format!("records[{i}].associations has an id over 65535 bytes")));
        }
        // NaN or out-of-range significance would corrupt the ordered significance index.
        check_significance(&format!("records[{i}].significance"), r.significance)?;
        // Reads hand metadata out as JSON object text: it must be one.
        check_metadata(&format!("records[{i}].metadata"), Some(&r.metadata))?;
        if r.vector.iter().all(|&x| x == 0.0) {
            return Err(Error::invalid(format!("records[{i}].embedding must not be the zero vector")));
        }
    }
    Ok(())
}

/// A random 128-bit id as 32 hex digits.
fn random_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let s = RandomState::new();
    let mut h1 = s.build_hasher();
    h1.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h1.write_i64(now_ms());
    let a = h1.finish();
    let mut h2 = s.build_hasher();
    h2.write_u64(a ^ 0x9e37_79b9_7f4a_7c15);
    let b = h2.finish();
    format!("{a:016x}{b:016x}")
}
