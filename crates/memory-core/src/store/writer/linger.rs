//! How long a put group waits for more puts before its significance pass.
//!
//! The exact significance pass reads every coded row of the namespace once per group, and
//! reading them is what it costs (the int8 kernel is bound by memory, not by the queries:
//! up to 16 queries ride one AMX tile, and the kernel works on 8 queries at a time
//! anyway). Clients that each wait for their answer before sending the next store then
//! settle into cohorts: while one cohort's group is scored, the other's replies travel and
//! its next stores queue up, so every group holds about half of them and each row is read
//! twice as often as needed (measured: 16 connections into 100k rows, ~8–9 stores per
//! group). Waiting a little for stores still arriving merges the cohorts.
//!
//! The wait is bounded by the last exact pass's own duration — at most a quarter of it in
//! all, at most an eighth of it without a new put (so a lone client waits one gap, and only
//! where the pass it waits for costs several times that gap) — and it happens only after a
//! pass of at least [`MIN_PASS`]: small stores, and namespaces with a graph (whose cost is
//! per new memory, so a bigger group saves nothing), never wait.

use std::time::Duration;

/// Passes cheaper than this never make the next group wait.
pub(super) const MIN_PASS: Duration = Duration::from_millis(1);
/// The wait for the next put of a group is at least an eighth of [`MIN_PASS`] (one reply to
/// reach a client and its next store to come back through the event loop takes about that
/// much) and at most this.
const MAX_GAP: Duration = Duration::from_micros(500);
/// A group stops waiting once it holds this many items (the pass takes them in one go).
pub(super) const MAX_ITEMS: usize = 64;

/// The next group's wait, decided from the last group's pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Linger {
    /// Longest wait for the next put (zero: do not wait).
    pub gap: Duration,
    /// Longest wait in all.
    pub total: Duration,
}

impl Linger {
    /// After a group whose significance pass took `pass`; `exact`: every namespace of the
    /// group was scored by the exact pass over all its rows (no graph).
    pub(super) fn after_pass(exact: bool, pass: Duration) -> Linger {
        if !exact || pass < MIN_PASS {
            return Linger::default();
        }
        Linger { gap: (pass / 8).min(MAX_GAP), total: pass / 4 }
    }

    pub(super) fn waits(&self) -> bool {
        !self.gap.is_zero()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cheap_passes_and_graph_namespaces_never_wait() {
        assert!(!Linger::after_pass(true, Duration::from_micros(900)).waits());
        assert!(!Linger::after_pass(false, Duration::from_millis(20)).waits());
    }

    #[test]
    fn the_wait_is_a_fraction_of_the_pass_it_saves() {
        let l = Linger::after_pass(true, Duration::from_micros(2400));
        assert_eq!(l, Linger { gap: Duration::from_micros(300), total: Duration::from_micros(600) });
        // Gaps are bounded; the total stays a quarter of the pass.
        assert_eq!(Linger::after_pass(true, MIN_PASS).gap, Duration::from_micros(125));
        let slow = Linger::after_pass(true, Duration::from_millis(40));
        assert_eq!((slow.gap, slow.total), (MAX_GAP, Duration::from_millis(10)));
    }
}
