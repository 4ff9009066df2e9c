//! A namespace's id → row map that stores only row numbers.
//!
//! A `HashMap<Box<str>, u32>` keeps a second heap copy of every id (a 32-byte malloc chunk
//! for `m123456`) plus a 24-byte slot: ~70 bytes per row. The id is already in the row
//! (`store/row.rs`), so this table holds 4-byte row numbers and hashes and compares through
//! the rows (hashbrown's `HashTable`, the building block of std's map, lets the caller do
//! both): ~8 bytes per row.

use hashbrown::HashTable;

use super::row::Row;

#[derive(Default)]
pub struct IdMap {
    table: HashTable<u32>,
    /// aHash, randomly seeded: ids are client-supplied (no HashDoS).
    hasher: ahash::RandomState,
}

impl IdMap {
    fn hash(&self, id: &str) -> u64 {
        self.hasher.hash_one(id)
    }

    /// The map of `members` (rows of `rows` with distinct ids), hashing them on every core:
    /// an open restoring the state snapshot builds a million-row map this way instead of
    /// inserting one row after the other.
    pub fn build(rows: &[Row], members: &[u32]) -> IdMap {
        use rayon::prelude::*;
        let hasher = ahash::RandomState::new();
        let hashes: Vec<u64> = members.par_iter().with_min_len(4096).map(|&r| hasher.hash_one(rows[r as usize].id())).collect();
        let mut table = HashTable::with_capacity(members.len());
        for (&r, &h) in members.iter().zip(&hashes) {
            // The capacity is reserved: the table does not grow, so nothing is rehashed.
            table.insert_unique(h, r, |&x| hasher.hash_one(rows[x as usize].id()));
        }
        IdMap { table, hasher }
    }

    /// The row holding `id`.
    pub fn get(&self, rows: &[Row], id: &str) -> Option<u32> {
        self.table.find(self.hash(id), |&r| rows[r as usize].id() == id).copied()
    }

    /// Point `id` at `row` (already in `rows`), replacing the row it pointed at.
    pub fn insert(&mut self, rows: &[Row], row: u32) {
        let id = rows[row as usize].id();
        let hasher = &self.hasher;
        let h = hasher.hash_one(id);
        match self.table.find_mut(h, |&r| rows[r as usize].id() == id) {
            Some(slot) => *slot = row,
            None => {
                self.table.insert_unique(h, row, |&r| hasher.hash_one(rows[r as usize].id()));
            }
        }
    }

    /// Forget `id` if it points at `row`.
    pub fn remove(&mut self, id: &str, row: u32) {
        if let Ok(e) = self.table.find_entry(self.hash(id), |&r| r == row) {
            e.remove();
        }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}
