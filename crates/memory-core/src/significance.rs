//! Significance of a new memory within its namespace: how much it adds to what the
//! namespace already holds, fixed when it is stored.
//!
//! novelty    = 1 − max cosine to any stored memory of the namespace
//! surprise   = 1 − mean cosine to the last [`RECENT_WINDOW`] stored memories
//! importance = the client's `metadata.importance` (0…1, default 0.5)
//! significance = clamp(0.5·novelty + 0.3·surprise + 0.2·importance, 0, 1)
//!
//! Negative cosines count as 0; an empty namespace gives novelty = surprise = 1.
//! Only stores change this state: queries never do.

use serde_json::{Map, Value};

use crate::error::{Error, Result};

pub(crate) mod pass;

/// How many of the most recent memories surprise is measured against.
pub const RECENT_WINDOW: usize = 32;
/// Associations: nearest earlier memories with at least this cosine…
pub const ASSOCIATION_MIN_COS: f32 = 0.8;
/// …and at most this many of them.
pub const MAX_ASSOCIATIONS: usize = 3;
pub const DEFAULT_IMPORTANCE: f32 = 0.5;

/// `metadata.importance`, validated: a number in 0…1, or absent (→ 0.5).
pub fn importance_of(metadata: Option<&Map<String, Value>>) -> Result<f32> {
    match metadata.and_then(|m| m.get("importance")) {
        None | Some(Value::Null) => Ok(DEFAULT_IMPORTANCE),
        Some(Value::Number(n)) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if (0.0..=1.0).contains(&x) {
                Ok(x as f32)
            } else {
                Err(Error::invalid(format!("metadata.importance must be between 0 and 1, got {x}")))
            }
        }
        Some(other) => Err(Error::invalid(format!("metadata.importance must be a number between 0 and 1, got {other}"))),
    }
}

/// Combine the three parts. `max_cos` is `None` for an empty namespace; `recent` holds the
/// cosines to the last (up to 32) memories.
// `max(0.0).min(1.0)` rather than `clamp`: a NaN cosine then counts as 0 instead of making
// the significance NaN (which the ordered significance index cannot hold).
#[allow(clippy::manual_clamp)]
pub fn significance(max_cos: Option<f32>, recent: &[f32], importance: f32) -> f32 {
    let novelty = match max_cos {
        None => 1.0,
        Some(c) => 1.0 - c.max(0.0).min(1.0),
    };
    let surprise = if recent.is_empty() {
        1.0
    } else {
        1.0 - recent.iter().map(|c| c.max(0.0).min(1.0)).sum::<f32>() / recent.len() as f32
    };
    (0.5 * novelty + 0.3 * surprise + 0.2 * importance).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_namespace_is_fully_novel() {
        assert!((significance(None, &[], 0.5) - 0.9).abs() < 1e-6);
        assert!((significance(None, &[], 1.0) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn duplicates_score_low_and_negative_cosines_count_as_zero() {
        assert!((significance(Some(1.0), &[1.0, 1.0], 0.0) - 0.0).abs() < 1e-6);
        let s = significance(Some(-0.5), &[-0.2, -1.0], 0.5);
        assert!((s - 0.9).abs() < 1e-6, "{s}");
        let s = significance(Some(0.6), &[0.6, 0.0], 0.5);
        assert!((s - (0.5 * 0.4 + 0.3 * 0.7 + 0.1)).abs() < 1e-6, "{s}");
    }

    #[test]
    fn importance_is_validated() {
        let m = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(importance_of(None).unwrap(), 0.5);
        assert_eq!(importance_of(Some(&m(json!({"importance": 0.9})))).unwrap(), 0.9);
        assert!(importance_of(Some(&m(json!({"importance": 1.5})))).unwrap_err().to_string().contains("between 0 and 1"));
        assert!(importance_of(Some(&m(json!({"importance": "high"})))).is_err());
    }
}
