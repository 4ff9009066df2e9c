#![allow(dead_code)]
//! Shared helpers for the store integration tests.

use std::path::{Path, PathBuf};

use memory_core::store::{FsyncPolicy, Memory, PutInput, StoreOptions, TensorStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub const WAL: &str = "wal-000001.log";

pub fn opts(dims: usize, fsync: FsyncPolicy) -> StoreOptions {
    StoreOptions { dims, fsync, embedder: None, reembed: false, group_commit: true, compact: Some(Default::default()), text_index: true, ann_min_rows: memory_core::ann::ANN_MIN_ROWS }
}

pub fn open(dir: &Path, dims: usize) -> TensorStore {
    TensorStore::open(dir, opts(dims, FsyncPolicy::Off)).expect("open store")
}

pub fn open_always(dir: &Path, dims: usize) -> TensorStore {
    TensorStore::open(dir, opts(dims, FsyncPolicy::Always)).expect("open store")
}

pub fn item(ns: &str, id: &str, text: &str, v: Vec<f32>) -> PutInput {
    PutInput { namespace: ns.into(), id: Some(id.into()), text: text.into(), vector: v, ..Default::default() }
}

pub fn rvec(rng: &mut StdRng, dims: usize) -> Vec<f32> {
    loop {
        let v: Vec<f32> = (0..dims).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        if v.iter().map(|x| x * x).sum::<f32>() > 1e-3 {
            return v;
        }
    }
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

pub fn unit(dims: usize, i: usize) -> Vec<f32> {
    let mut v = vec![0.0; dims];
    v[i] = 1.0;
    v
}

pub fn norm64(v: &[f32]) -> Vec<f64> {
    let n: f64 = v.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>().sqrt();
    v.iter().map(|&x| x as f64 / n).collect()
}

pub fn cos64(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub fn wal_path(dir: &Path) -> PathBuf {
    dir.join(WAL)
}

pub fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

/// Start offsets of every record in a log file (after the 40-byte header).
pub fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut off = 40;
    while off + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
        if len == 0 || off + 8 + len > bytes.len() {
            break;
        }
        out.push(off);
        off += 8 + len;
    }
    out
}

/// Every memory of a namespace in store order, via list pagination.
pub fn list_all(s: &TensorStore, ns: &str, page: usize) -> Vec<Memory> {
    let mut out = Vec::new();
    let mut cursor = 0;
    loop {
        let (m, next) = s.list(ns, cursor, page, None);
        assert!(m.len() <= page);
        out.extend(m);
        match next {
            Some(c) => cursor = c,
            None => break,
        }
    }
    out
}

/// A comparable snapshot of a memory (no score/embedding).
pub fn key(m: &Memory) -> (String, String, String, String, u32, i64, Vec<String>, u64, Option<i64>) {
    (
        m.namespace.clone(),
        m.id.clone(),
        m.text.clone(),
        m.metadata.clone(),
        m.significance.to_bits(),
        m.timestamp,
        m.associations.clone(),
        m.seq,
        m.expires_at,
    )
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}
