//! Conversions between the JavaScript objects of [`crate::types`] and the core's types.

use std::sync::Arc;

use memory_core::embed::chunk::Chunk;
use memory_core::filter::Filter;
use memory_core::store::{self as core_store, log::NO_EXPIRY, FsyncPolicy, StoreOptions};
use napi::bindgen_prelude::*;

use crate::types::*;
use crate::{invalid, to_napi};

pub fn parse_filter(json: Option<&str>) -> napi::Result<Option<Filter>> {
    match json {
        None | Some("") => Ok(None),
        Some(s) => {
            let v: serde_json::Value = serde_json::from_str(s).map_err(|e| invalid(format!("filter is not valid JSON: {e}")))?;
            Filter::compile(&v).map(Some).map_err(to_napi)
        }
    }
}

pub fn store_options(o: OpenOptions) -> napi::Result<StoreOptions> {
    let mut so = StoreOptions::new(o.dims as usize);
    if let Some(f) = o.fsync.as_deref() {
        so.fsync = FsyncPolicy::parse(f).map_err(to_napi)?;
    }
    so.embedder = match (o.embedder_name, o.embedder_hash) {
        (Some(name), hash) => Some(core_store::EmbedderInfo { name, hash: hash.unwrap_or_default() }),
        _ => None,
    };
    so.reembed = o.reembed.unwrap_or(false);
    so.group_commit = o.group_commit.unwrap_or(true);
    so.text_index = o.text_index.unwrap_or(true);
    let mut policy = core_store::CompactPolicy::default();
    if let Some(r) = o.compact_garbage_ratio {
        if !(0.0..1.0).contains(&r) {
            return Err(invalid(format!("compactGarbageRatio must be at least 0 and below 1, got {r}")));
        }
        policy.garbage_ratio = r;
    }
    if let Some(b) = o.compact_min_bytes {
        if !(b >= 0.0 && b.is_finite()) {
            return Err(invalid(format!("compactMinBytes must be a number of bytes, got {b}")));
        }
        policy.min_bytes = b as u64;
    }
    so.compact = (policy.garbage_ratio > 0.0).then_some(policy);
    if let Some(n) = o.ann_min_rows {
        so.ann_min_rows = n.max(1) as usize;
    }
    Ok(so)
}

pub fn search_request(o: &SearchOptions) -> napi::Result<core_store::SearchRequest> {
    let filter = parse_filter(o.filter.as_deref())?;
    let max_ef = core_store::plan::MAX_EF as f64;
    let ef = match o.ef {
        Some(e) if e.fract() != 0.0 || !(1.0..=max_ef).contains(&e) => return Err(invalid(format!("ef must be an integer from 1 to {max_ef}, got {e}"))),
        e => e.map(|e| e as usize),
    };
    Ok(core_store::SearchRequest {
        namespace: o.namespace.clone(),
        k: o.k as usize,
        min_score: o.min_score.map(|x| x as f32),
        min_significance: o.min_significance.unwrap_or(0.0) as f32,
        filter_key: o.filter.clone().unwrap_or_default(),
        filter: filter.map(Arc::new),
        since_ms: o.since_ms,
        until_ms: o.until_ms,
        recency_half_life_s: o.recency_half_life_s,
        include_embeddings: o.include_embeddings.unwrap_or(false),
        f32_scan: o.f32_scan.unwrap_or(false),
        exact: o.exact.unwrap_or(false),
        ef,
    })
}

/// One memory to put, from `put`'s object or `putOne`'s arguments.
pub fn put_input(namespace: String, id: Option<String>, text: String, metadata: Option<String>, significance: Option<f64>, ttl_ms: Option<f64>, embedding: &[f32]) -> core_store::PutInput {
    core_store::PutInput {
        namespace,
        id,
        text,
        metadata,
        significance: significance.map(|s| s as f32),
        vector: embedding.to_vec(),
        ttl_ms: ttl_ms.map(|t| t.max(0.0) as u64),
        timestamp: None,
        expires_at: None,
    }
}

impl From<PutItem> for core_store::PutInput {
    fn from(it: PutItem) -> Self {
        let mut input = put_input(it.namespace, it.id, it.text, it.metadata, it.significance, it.ttl_ms, &it.embedding);
        // NaN or negative: refused by validation (as a negative time).
        let ms = |t: f64| if t.is_finite() && t >= 0.0 { t as i64 } else { -1 };
        input.timestamp = it.timestamp_ms.map(ms);
        input.expires_at = it.expires_at_ms.map(ms);
        input
    }
}

impl From<BulkRecord> for core_store::PutRecord {
    fn from(r: BulkRecord) -> Self {
        core_store::PutRecord {
            seq: 0,
            ts: r.timestamp,
            namespace: r.namespace,
            id: r.id,
            text: r.text,
            metadata: r.metadata.unwrap_or_else(|| "{}".into()),
            significance: r.significance as f32,
            expires_at: r.expires_at.unwrap_or(NO_EXPIRY),
            associations: r.associations.unwrap_or_default(),
            vector: r.embedding.to_vec(),
        }
    }
}

impl From<core_store::Memory> for Memory {
    fn from(m: core_store::Memory) -> Self {
        Memory {
            id: m.id,
            namespace: m.namespace,
            text: m.text,
            metadata: m.metadata,
            significance: m.significance as f64,
            timestamp: m.timestamp,
            associations: m.associations,
            seq: m.seq as i64,
            expires_at: m.expires_at,
            embedding: m.embedding.map(Float32Array::new),
            score: m.score.map(|s| s as f64),
        }
    }
}

impl From<core_store::PutOutcome> for PutResult {
    fn from(o: core_store::PutOutcome) -> Self {
        PutResult {
            id: o.id,
            seq: o.seq as i64,
            significance: o.significance as f64,
            timestamp: o.timestamp,
            associations: o.associations,
            existing: o.existing,
            namespace_total: o.namespace_total,
        }
    }
}

impl From<core_store::DeleteOutcome> for DeleteResult {
    fn from(d: core_store::DeleteOutcome) -> Self {
        DeleteResult {
            deleted: d.deleted.into_iter().map(|(id, seq)| DeletedId { id, seq: seq as i64 }).collect(),
            not_found: d.not_found,
        }
    }
}

impl From<core_store::CompactReport> for CompactResult {
    fn from(r: core_store::CompactReport) -> Self {
        CompactResult {
            rows_before: r.rows_before as u32,
            rows_after: r.rows_after as u32,
            bytes_before: r.bytes_before as i64,
            bytes_after: r.bytes_after as i64,
            finished_at: r.finished_at_ms,
            duration_ms: r.duration_ms as i64,
            start_seq: r.start_seq as i64,
            automatic: r.automatic,
        }
    }
}

impl From<core_store::StoreStats> for StoreStats {
    fn from(s: core_store::StoreStats) -> Self {
        StoreStats {
            total_memories: s.total_memories as u32,
            dims: s.dims as u32,
            storage_bytes: s.storage_bytes as i64,
            storage_path: s.storage_path,
            fsync: s.fsync.to_string(),
            namespaces: s.namespaces as u32,
            rows: s.rows as u32,
            dead_rows: s.dead_rows as u32,
            total_associations: s.total_associations as u32,
            last_seq: s.last_seq as i64,
            fsyncs: s.fsyncs as i64,
            groups: s.groups as i64,
            records: s.records as i64,
            isa: s.isa.to_string(),
            embedder_name: s.embedder.as_ref().map(|e| e.name.clone()),
            embedder_hash: s.embedder.map(|e| e.hash),
            int8_rows: s.int8_rows as u32,
            mapped_rows: s.mapped_rows as u32,
            scrubbed_rows: s.scrubbed_rows as u32,
            scrub_pending: s.scrub_pending as u32,
            scrub_mismatches: s.scrub_mismatches as u32,
            scrub_first_mismatch: s.scrub_first_mismatch.map(|r| r as u32),
            ann_rows: s.ann_rows as u32,
            ann_bytes: s.ann_bytes as f64,
            ann_pending: s.ann_pending as u32,
            plans_exact: s.plans_exact as f64,
            plans_graph: s.plans_graph as f64,
            live_bytes: s.live_bytes as i64,
            garbage_bytes: s.garbage_bytes as i64,
            compactions: s.compactions as i64,
            last_compaction: s.last_compaction.map(CompactResult::from),
        }
    }
}

/// The counters as the numbers of `counters()`, in its order.
pub fn counter_values(s: core_store::StoreCounters) -> [f64; COUNTERS] {
    [
        s.total_memories as f64,
        s.namespaces as f64,
        s.storage_bytes as f64,
        s.total_associations as f64,
        s.last_seq as f64,
        s.fsyncs as f64,
        s.groups as f64,
        s.records as f64,
        s.rows as f64,
        s.dead_rows as f64,
        s.live_bytes as f64,
        s.garbage_bytes as f64,
        s.compactions as f64,
        s.plans_exact as f64,
        s.plans_graph as f64,
    ]
}

/// How many numbers `counters()` gives.
pub const COUNTERS: usize = 15;

impl From<core_store::RepairReport> for RepairResult {
    fn from(r: core_store::RepairReport) -> Self {
        let path = |p: std::path::PathBuf| p.display().to_string();
        RepairResult {
            file: path(r.file),
            kept_records: r.kept_records as i64,
            kept_bytes: r.kept_bytes as i64,
            lost: r
                .lost
                .into_iter()
                .map(|l| LostRange {
                    start: l.start as i64,
                    end: l.end as i64,
                    first_seq: l.first_seq as i64,
                    last_seq: l.last_seq.map(|s| s as i64),
                    records: l.records.map(|n| n as i64),
                    reason: l.reason,
                })
                .collect(),
            lost_bytes: r.lost_bytes as i64,
            damaged_to: r.damaged_to.map(path),
            report_to: r.report_to.map(path),
            meta_reason: r.meta.as_ref().map(|m| m.reason.clone()),
            meta_moved_to: r.meta.map(|m| path(m.moved_to)),
        }
    }
}

/// Windows of `text` as JavaScript sees them.
pub fn text_windows(text: &str, windows: Vec<Chunk>) -> Vec<TextWindow> {
    windows.into_iter().map(|c| TextWindow { start: c.start as u32, end: c.end as u32, text: c.text(text).to_string() }).collect()
}
