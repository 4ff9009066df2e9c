//! The expiry sweep: memories whose TTL has passed become deletions.
//!
//! Reads hide an expired memory at once (`State::visible`); the sweep makes it a delete
//! record in the log — so compaction reclaims it and a restart agrees — and reports it, so
//! the memory server can publish `memory_removed` with `reason: "expired"`. The writer runs
//! a pass when the earliest expiry it knows of has passed, at most every [`SWEEP_INTERVAL`]
//! (expiries close together share one pass and one fsync), [`SWEEP_MAX_ROWS`] rows per pass
//! so operations waiting get their turn between passes.

use std::time::{Duration, Instant};

use super::Writer;
use crate::error::Error;
use crate::store::log::{self, DeleteRecord, Record};
use crate::store::shared::now_ms;
use crate::store::types::{Done, ExpiredMemory};

/// Shortest time between two passes (unless the last one left expired rows behind).
pub(super) const SWEEP_INTERVAL: Duration = Duration::from_millis(250);
/// Rows deleted per pass (one commit).
const SWEEP_MAX_ROWS: usize = 1024;
/// Swept memories kept for a watcher that has not come back yet; beyond it they are dropped
/// (their events are lost; a subscriber resyncs with `list`).
const BACKLOG_MAX: usize = 100_000;

#[derive(Default)]
pub(super) struct Expiry {
    /// The earliest expiry of a row not deleted yet (ms since the epoch), if any.
    next_at: Option<i64>,
    last_pass: Option<Instant>,
    /// The last pass stopped at its limit: the next one may run at once.
    more: bool,
    /// Someone asked for swept memories once: keep them from now on.
    watching: bool,
    watchers: Vec<Done<Vec<ExpiredMemory>>>,
    backlog: Vec<ExpiredMemory>,
}

impl Expiry {
    pub fn new(next_at: Option<i64>) -> Self {
        Expiry { next_at, ..Default::default() }
    }
}

impl Writer {
    /// A row with this expiry was added.
    pub(super) fn note_expiry(&mut self, at: Option<i64>) {
        if let Some(at) = at {
            self.expiry.next_at = Some(self.expiry.next_at.map_or(at, |n| n.min(at)));
        }
    }

    /// How long until a pass is due (zero: now), if any is.
    pub(super) fn sweep_wait(&self) -> Option<Duration> {
        let next = self.expiry.next_at?;
        let until_expiry = Duration::from_millis(next.saturating_sub(now_ms()).max(0) as u64);
        let until_allowed = match self.expiry.last_pass {
            Some(t) if !self.expiry.more => SWEEP_INTERVAL.saturating_sub(t.elapsed()),
            _ => Duration::ZERO,
        };
        Some(until_expiry.max(until_allowed))
    }

    pub(super) fn sweep_if_due(&mut self) {
        if self.sweep_wait() == Some(Duration::ZERO) {
            self.sweep(SWEEP_MAX_ROWS);
        }
    }

    /// Sweep every expired row now (before a compaction).
    pub(super) fn sweep_all(&mut self) {
        while self.expiry.next_at.is_some_and(|n| n <= now_ms()) && self.sweep(SWEEP_MAX_ROWS) > 0 {}
    }

    /// One pass: up to `max` expired rows become delete records. Returns how many.
    fn sweep(&mut self, max: usize) -> usize {
        let now = now_ms();
        self.expiry.last_pass = Some(Instant::now());
        let (rows, expired, buf) = {
            let st = self.shared.state.read();
            let rows = st.expired_rows(now, max);
            let mut buf = Vec::new();
            let mut expired = Vec::with_capacity(rows.len());
            for (seq, &r) in (st.last_seq + 1..).zip(&rows) {
                let namespace = st.namespaces[st.ns_col[r as usize] as usize].name.clone();
                let id = st.rows[r as usize].id().to_string();
                log::encode_record(&mut buf, &Record::Delete(DeleteRecord { seq, ts: now, namespace: namespace.clone(), id: id.clone() }));
                expired.push(ExpiredMemory { namespace, id, seq });
            }
            if rows.is_empty() {
                self.expiry.next_at = st.next_expiry().filter(|&n| n > now);
                self.expiry.more = false;
                return 0;
            }
            (rows, expired, buf)
        };
        if self.commit(&buf, rows.len()).is_err() {
            // A full disk, say: reads hide the rows anyway; try again in a while.
            self.expiry.next_at = Some(now + 1000);
            self.expiry.more = false;
            return 0;
        }
        {
            let mut st = self.shared.state.write();
            for &r in &rows {
                st.kill(r);
            }
            if let Some(last) = expired.last() {
                st.last_seq = st.last_seq.max(last.seq);
            }
            st.prune_expiring();
            self.expiry.next_at = st.next_expiry();
        }
        self.expiry.more = rows.len() == max;
        self.deliver(expired);
        rows.len()
    }

    fn deliver(&mut self, expired: Vec<ExpiredMemory>) {
        if !self.expiry.watching {
            return;
        }
        let room = BACKLOG_MAX.saturating_sub(self.expiry.backlog.len());
        self.expiry.backlog.extend(expired.into_iter().take(room));
        if self.expiry.backlog.is_empty() || self.expiry.watchers.is_empty() {
            return;
        }
        let list = std::mem::take(&mut self.expiry.backlog);
        for w in std::mem::take(&mut self.expiry.watchers) {
            w(Ok(list.clone()));
        }
    }

    /// Complete `done` with the memories swept since the last call (at once if there are
    /// some, else after the next pass that sweeps any).
    pub(super) fn watch_expired(&mut self, done: Done<Vec<ExpiredMemory>>) {
        self.expiry.watching = true;
        self.expiry.watchers.push(done);
        self.deliver(Vec::new());
    }

    /// Closing: the watchers get `e`.
    pub(super) fn close_expiry(&mut self, e: &Error) {
        for w in std::mem::take(&mut self.expiry.watchers) {
            w(Err(Error::Unavailable(e.to_string())));
        }
    }
}
