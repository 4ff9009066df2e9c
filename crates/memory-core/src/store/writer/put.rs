//! A put group: every put waiting together, scored in one significance pass, written with
//! one `write`, made durable with one fsync, applied to the state, and only then answered.

use std::collections::HashMap;
use std::time::Instant;

use parking_lot::RwLockWriteGuard;

use super::linger::Linger;
use super::{clone_err, PutOp, Writer};
use crate::ann::Presearched;
use crate::significance::pass::{score_new, NewMemory};
use crate::store::log::{self, PutRecord, NO_EXPIRY};
use crate::store::shared::{memory_of, now_ms, Q8Shared};
use crate::store::state::State;
use super::ANN_GROUP_CATCH_UP_ROWS;
use crate::store::types::PutOutcome;

/// Per operation of a group, per item: its outcome once known.
type Outcomes = Vec<Vec<Option<PutOutcome>>>;

impl Writer {
    pub(super) fn put_group(&mut self, mut group: Vec<PutOp>) {
        let now = now_ms();
        let (mut outcomes, news, buf) = {
            let st = self.shared.state.read();
            let ann = self.shared.ann.read();
            let (outcomes, mut news) = assemble(&st, &mut group, now);
            // Every stored row coded (read-locked for the pass; dropped before `st`).
            let q8 = self.shared.q8.as_ref().map(|q| {
                let mut rows = q.rows.write();
                Q8Shared::extend(&mut rows, &st, usize::MAX);
                (RwLockWriteGuard::downgrade(rows), q.kern)
            });
            let exact = news.iter().all(|n| st.ns_id(&n.record.namespace).is_none_or(|ns| ann.serving(&st, ns).is_none()));
            let started = Instant::now();
            score_new(&st, q8.as_ref().map(|(rows, k)| (&**rows, *k)), Some(&ann), &mut news, now);
            self.linger = Linger::after_pass(exact, started.elapsed());
            // The k-th new memory becomes row `first + k` (applied in order below).
            let first = st.len();
            let mut buf = Vec::new();
            for (k, n) in news.iter().enumerate() {
                log::encode_put(&mut buf, &n.record, (first + k) as u64);
            }
            (outcomes, news, (first, buf))
        };
        let (first, buf) = buf;
        // The rows go to the vectors file before their records go to the log.
        let result = if news.is_empty() { Ok(()) } else { self.write_rows(first, news.iter().map(|n| n.record.vector.as_slice())).and_then(|_| self.commit(&buf, news.len())) };
        if let Err(e) = result {
            for (_, done) in group {
                done(Err(clone_err(&e)));
            }
            return;
        }
        let soonest = news.iter().map(|n| n.record.expires_at).filter(|&e| e != NO_EXPIRY).min();
        let added = news.len();
        let pre = self.apply(&group, news, &mut outcomes, now);
        self.note_expiry(soonest);
        // Answered as soon as the group is durable and applied: the graph insert below does
        // not change what a store returns, and searches score rows not in a graph yet exactly,
        // so the replies need not wait for it. The clients' next stores then queue up while
        // the writer inserts into the graph, instead of being sent only after it.
        for ((_, done), slots) in group.into_iter().zip(outcomes) {
            done(Ok(slots.into_iter().map(|o| o.expect("every item has an outcome")).collect()));
        }
        // Into the graphs now, so the next group's significance pass and searches find them
        // there (plus a slice of any backlog, so that a graph just started catches up under
        // a steady load too; the rest is indexed while idle), with the candidates the
        // significance pass already found.
        self.index_rows(added + ANN_GROUP_CATCH_UP_ROWS, pre);
    }

    /// Make the group's new memories visible (only now that they are durable) and complete
    /// the outcomes of the items that were already stored. Returns the graph candidates the
    /// significance pass found, by the row each memory got.
    fn apply(&self, group: &[PutOp], news: Vec<NewMemory>, outcomes: &mut Outcomes, now: i64) -> HashMap<u32, Presearched> {
        let mut st = self.shared.state.write();
        let mut pre = HashMap::new();
        for mut n in news {
            let (op, item) = n.slot;
            let mut o = PutOutcome {
                id: n.record.id.clone(),
                seq: n.record.seq,
                significance: n.record.significance,
                timestamp: n.record.ts,
                associations: n.record.associations.clone(),
                existing: false,
                namespace_total: 0,
            };
            let namespace = n.record.namespace.clone();
            let presearched = n.presearched.take();
            let row = st.apply_put(n.record, Some(n.parsed));
            if let Some(p) = presearched {
                pre.insert(row, p);
            }
            o.namespace_total = st.ns_id(&namespace).map(|ns| st.visible_count(ns, now)).unwrap_or(0) as u32;
            outcomes[op][item] = Some(o);
        }
        // In-group duplicates take the stored memory's values.
        for (oi, slots) in outcomes.iter_mut().enumerate() {
            for (ii, slot) in slots.iter_mut().enumerate() {
                let Some(o) = slot.as_mut() else { continue };
                if o.existing {
                    let ns = group[oi].0[ii].namespace.as_str();
                    o.namespace_total = st.ns_id(ns).map(|n| st.visible_count(n, now)).unwrap_or(0) as u32;
                }
                if o.existing && o.significance.is_nan() {
                    if let Some(row) = st.find_any(&o.id, o.seq) {
                        o.significance = st.sig_col[row as usize];
                        o.associations = st.associations(row).map(str::to_string).collect();
                        o.timestamp = st.ts_col[row as usize];
                    }
                }
            }
        }
        pre
    }
}

/// Sort the group's items into memories already stored (answered with what is stored),
/// repeats of an earlier item of the group (answered once that one is stored) and new
/// memories, which get their sequence numbers here. Text, metadata and vectors move into the
/// new records (only namespaces are read from the items later).
fn assemble(st: &State, group: &mut [PutOp], now: i64) -> (Outcomes, Vec<NewMemory>) {
    let mut outcomes: Outcomes = group.iter().map(|(items, _)| vec![None; items.len()]).collect();
    let mut news: Vec<NewMemory> = Vec::new();
    let mut seq = st.last_seq;
    // (namespace, id) → index into `news`, for duplicates inside the group.
    let mut pending: HashMap<(String, String), usize> = HashMap::new();
    for (oi, (items, _)) in group.iter_mut().enumerate() {
        for (ii, it) in items.iter_mut().enumerate() {
            let id = std::mem::take(&mut it.id);
            if let Some(row) = st.find(&it.namespace, &id, now) {
                let m = memory_of(st, row, false, None);
                outcomes[oi][ii] = Some(PutOutcome {
                    id,
                    seq: m.seq,
                    significance: m.significance,
                    timestamp: m.timestamp,
                    associations: m.associations,
                    existing: true,
                    namespace_total: 0,
                });
                continue;
            }
            let key = (it.namespace.clone(), id.clone());
            if let Some(&j) = pending.get(&key) {
                // Filled in after significance is known.
                outcomes[oi][ii] = Some(PutOutcome { id, seq: news[j].record.seq, significance: f32::NAN, timestamp: now, associations: vec![], existing: true, namespace_total: 0 });
                continue;
            }
            seq += 1;
            pending.insert(key, news.len());
            let ts = it.timestamp.unwrap_or(now);
            news.push(NewMemory {
                slot: (oi, ii),
                record: PutRecord {
                    seq,
                    ts,
                    namespace: it.namespace.clone(),
                    id,
                    text: std::mem::take(&mut it.text),
                    metadata: std::mem::take(&mut it.metadata.text),
                    significance: 0.0,
                    expires_at: it.expires_at.or(it.ttl_ms.map(|t| ts.saturating_add(t.min(i64::MAX as u64) as i64))).unwrap_or(NO_EXPIRY),
                    associations: Vec::new(),
                    vector: std::mem::take(&mut it.vector),
                },
                parsed: it.metadata.parsed.take(),
                importance: it.metadata.importance,
                given_significance: it.significance,
                presearched: None,
            });
        }
    }
    (outcomes, news)
}
