//! The metadata filter language: the `filter` of searches, lists and deletes.
//!
//! A filter is a JSON object mapping metadata keys to conditions; **all** keys must match.
//! Logical operators combine whole filters.
//!
//! ```text
//! { "type": "note" }                         equality
//! { "tags": { "$in": ["a", "b"] } }          field operators: $in $nin $gt $gte $lt $lte $ne $exists
//! { "tags": { "$contains": "a" } }                             $contains $all (array fields)
//! { "score": { "$gte": 0.5, "$lt": 1 } }     several operators on one key: all must hold
//! { "author.name": "ada" }                   dotted path into nested objects
//! { "$or": [ {"type": "note"}, {"pinned": true} ] }           $and / $or: non-empty arrays of filters
//! { "$not": { "type": "draft" } }                             $not: one filter
//! {}                                         matches everything
//! ```
//!
//! # Semantics (contract)
//!
//! * **Paths.** A key is a path. The whole key is first looked up literally among the top-level
//!   metadata keys (so a metadata key that itself contains a dot stays addressable); if absent and
//!   the key contains dots, it is split on `.` and walked through nested *objects*:
//!   `"a.b"` reads `metadata["a"]["b"]`. Arrays are not traversed by paths. Empty keys and keys with
//!   an empty segment (`"a..b"`, `".a"`) are rejected.
//! * **Logical operators.** A key starting with `$` in a filter object is a logical operator:
//!   `$and: [f, …]` holds when every filter holds, `$or: [f, …]` when at least one does (both take
//!   a non-empty array of filter objects), `$not: f` when `f` does not. They may sit beside plain
//!   keys (all keys of an object must match) and nest up to [`MAX_FILTER_DEPTH`] filter objects
//!   deep, counting the outermost filter as level 1. `$not` negates the whole sub-filter, so
//!   `{"$not": {"tags": "a"}}` also matches rows without `tags`.
//! * **Equality** (a plain value, including arrays and objects whose keys do not start with `$`):
//!   deep JSON equality where numbers compare numerically (`1 == 1.0`; integers compare exactly),
//!   strings/bools/null compare by value, objects ignore key order. In addition, **when the metadata
//!   value is an array, equality means "contains"**: `{"tags": "a"}` matches `{"tags": ["a", "b"]}`
//!   (an array condition also still matches an identical array).
//! * **`$ne: v`** is the negation of equality (so `{"tags": {"$ne": "a"}}` means "does not contain a").
//! * **`$in: [..]`** matches when equality (with the "contains" rule) holds for at least one listed
//!   value; `$in: []` matches nothing. **`$nin`** is its negation. Both require an array.
//! * **`$contains: v`** holds when the value is an *array* with an element deeply equal to `v`
//!   (a scalar or a string value never matches: this is not a substring test).
//!   **`$all: [v, …]`** (non-empty) holds when the value is an array containing every listed value.
//! * **`$gt` `$gte` `$lt` `$lte`** take a number or a string. Numbers compare numerically with
//!   numbers, strings compare with strings in Unicode code-point order; a value of any other type
//!   never matches. On an array value the comparison holds if it holds for some element. Each
//!   operator of a key is evaluated on its own (on an array, `$gt` and `$lt` may be satisfied by
//!   different elements).
//! * **`$exists: bool`** tests presence of the path (a JSON `null` value is present).
//! * **Missing values** never equal anything and never satisfy a comparison; hence `$ne` and `$nin`
//!   match documents where the key is missing. Combine with `$exists: true` to require presence.
//! * Mixing `$`-keys and plain keys in one condition object is an error; an unknown operator is an
//!   error naming where it is (`filter.type: unknown operator $regex`,
//!   `filter.$or[1]: unknown operator $nor`). Every error is `invalid_request`.
//! * At most [`MAX_CONDITIONS`] conditions: one per plain equality, one per field operator and one
//!   per filter object inside `$and` / `$or` / `$not`.
//!
//! # Inverted index
//!
//! [`index_entries`] lists the `(path, key)` pairs the store indexes for a metadata object: every
//! scalar that a filter path of at most [`MAX_INDEX_DEPTH`] segments resolves to, and every scalar
//! element of an array found there. [`Filter::candidates`] answers a filter from such posting
//! lists where they can (equality and `$in` on scalars, their negations, `$contains` / `$all`;
//! `$and` intersects, `$or` unites, `$not` complements within the namespace) and says whether the
//! answer is exact or a superset the caller must still check with [`Filter::matches`].

use serde_json::{Map, Value};

use crate::error::Result;

mod compile;
mod eval;
mod index;
pub mod packed;

pub use index::{index_entries, index_entries_packed, Candidates, IndexKey, PostingIndex};
pub use packed::{pack, packed, Obj};

/// Maximum number of conditions (plain equalities, field operators and sub-filters) in one filter.
pub const MAX_CONDITIONS: usize = 64;

/// Maximum nesting depth (number of path segments) that [`index_entries`] indexes and for which
/// the posting lists answer a condition.
pub const MAX_INDEX_DEPTH: usize = 4;

/// Filter objects a filter may nest through `$and` / `$or` / `$not`, the outermost being level 1.
/// Eight keeps the deepest filter inside the protocol's frame nesting limit of 32: the filter is
/// level 3 of a request frame and each `$or` level adds two (an array and an object).
pub const MAX_FILTER_DEPTH: usize = 8;

/// Operators that combine filters (keys of a filter object).
pub const LOGICAL_OPERATORS: [&str; 3] = ["$and", "$or", "$not"];

/// Operators on one metadata path (keys of a condition object).
pub const FIELD_OPERATORS: [&str; 10] = ["$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$ne", "$exists", "$contains", "$all"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CmpOp {
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Clone, Debug)]
enum Bound {
    Num(serde_json::Number),
    Str(String),
}

#[derive(Clone, Debug)]
enum Op {
    Eq(Value),
    Ne(Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Cmp(CmpOp, Bound),
    Exists(bool),
    Contains(Value),
    All(Vec<Value>),
}

#[derive(Clone, Debug)]
struct Cond {
    /// The key as written in the filter.
    path: String,
    /// `path` split on '.'.
    segments: Vec<String>,
    op: Op,
}

/// A compiled filter: a tree of conditions.
#[derive(Clone, Debug)]
enum Node {
    Cond(Cond),
    /// Every child holds (`$and`, and the keys of one filter object).
    And(Vec<Node>),
    /// At least one child holds.
    Or(Vec<Node>),
    Not(Box<Node>),
}

/// A compiled metadata filter. See the module documentation for the language.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// The keys of the outermost filter object, all of which must hold.
    root: Vec<Node>,
    /// Conditions counted against [`MAX_CONDITIONS`].
    size: usize,
}

impl Filter {
    /// Compile a filter from JSON. The value must be an object (else `"filter must be an object"`).
    pub fn compile(v: &Value) -> Result<Filter> {
        let (root, size) = compile::compile(v)?;
        Ok(Filter { root, size })
    }

    /// Whether `metadata` satisfies the filter (packs it first: the store keeps metadata
    /// packed and calls [`Filter::matches_packed`]).
    pub fn matches(&self, metadata: &Map<String, Value>) -> bool {
        self.matches_packed(Obj::new(&packed(metadata)))
    }

    /// Whether a packed metadata object satisfies the filter.
    pub fn matches_packed(&self, metadata: Obj<'_>) -> bool {
        self.root.iter().all(|n| eval::node(n, metadata))
    }

    /// `true` for the empty filter `{}` (matches everything).
    pub fn is_empty(&self) -> bool {
        self.root.is_empty()
    }

    /// Number of compiled conditions (plain equalities, field operators and sub-filters).
    pub fn len(&self) -> usize {
        self.size
    }

    /// The rows the filter can match according to the posting lists of `idx`, or `None` when
    /// the posting lists cannot narrow it (the empty filter, or a filter whose every branch
    /// needs a per-row check, e.g. a range). With `exact`, the rows are exactly those whose
    /// metadata matches; otherwise a superset to check with [`Filter::matches`].
    pub fn candidates(&self, idx: &impl PostingIndex) -> Option<Candidates> {
        if self.root.is_empty() {
            return None;
        }
        index::plan(&self.root, idx)
    }

    /// Equality-style conditions of the outermost filter object usable with an inverted index:
    /// for each plain equality on a scalar and each `$in` whose values are all scalars (on paths
    /// of at most [`MAX_INDEX_DEPTH`] segments), `(path, keys)` such that a row can only match
    /// the condition if [`index_entries`] of its metadata contains `(path, k)` for some `k` in
    /// `keys`. `keys` is sorted and deduplicated; it is empty for `$in: []` (nothing matches).
    pub fn index_terms(&self) -> Vec<(String, Vec<IndexKey>)> {
        self.root
            .iter()
            .filter_map(|n| match n {
                Node::Cond(c) => index::equality_keys(c).map(|(keys, _)| (c.path.clone(), keys)),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_logic;
#[cfg(test)]
mod tests_plan;
#[cfg(test)]
mod tests_packed;
