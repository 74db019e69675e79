//! [`SlidingWindow`]: the counter behind every limit, public so that a third-party store
//! can keep the same guarantees as the built-in ones.
//!
//! # Algorithm
//!
//! A window of length `W` is split into sub-buckets of width `W/16`, aligned to absolute
//! time (bucket `b` covers `[b·W/16, (b+1)·W/16)`). A call recorded in bucket `b` is
//! treated as if it happened at the *end* of that bucket, so the current bucket and the 16
//! before it are live: a call at time `t` in bucket `b` is admitted when the units in
//! buckets `b-16 ..= b`, plus its cost, are at most `max`.
//!
//! # Guarantees (for one key, with window `W` and limit `max`)
//!
//! - **Safety, exact.** Any interval of length `W` touches at most 17 consecutive
//!   buckets, and the last call admitted in it saw all 17 when it was checked, so no
//!   interval of length `W` ever holds more than `max` admitted units.
//! - **Liveness, within `W/16`.** The live buckets start at most `W·(1 + 1/16)` before
//!   now, so a call is admitted whenever what was admitted in the preceding
//!   `W·(1 + 1/16)`, plus its cost, is at most `max`.
//! - **`retry_after` ≤ `W·(1 + 1/16)`**: the time until enough of the oldest buckets have
//!   expired; repeating the call then (with nothing admitted meanwhile) admits it. This
//!   holds while the clock does not go back: after a jump back by `J`, the wait counts from
//!   the newest time seen, so on the caller's clock it is up to `J` longer.
//!
//! Memory is constant per key: 17 counts and two words. Time that goes backwards is
//! treated as the newest time seen, so a clock that jumps back can neither panic nor
//! re-open budget.

use crate::clock::Timestamp;
use crate::policy::Counter;
use std::time::Duration;

/// Sub-buckets per window.
pub(crate) const SUB_BUCKETS: u64 = 16;
/// Live buckets: the current one and the 16 before it.
const SLOTS: usize = SUB_BUCKETS as usize + 1;
const NANOS_PER_SEC: u64 = 1_000_000_000;

/// The width of one sub-bucket in nanoseconds. Exact: a second is 2^9·5^9 ns.
pub(crate) fn bucket_width_nanos(window_secs: u64) -> u64 {
    window_secs.saturating_mul(NANOS_PER_SEC) / SUB_BUCKETS
}

fn bucket_width(counter: &Counter) -> u64 {
    bucket_width_nanos(counter.window_secs()).max(1)
}

fn bucket_of(at: Timestamp, counter: &Counter) -> u64 {
    at.as_nanos() / bucket_width(counter)
}

/// The counts of one (counter, scope id) key: the algorithm and guarantees of this
/// module's docs, in 160 bytes.
///
/// A window does not store its counter: every method takes the [`Counter`] whose window
/// length applies, and the caller must pass the same one each time. A store keeps one
/// `SlidingWindow` per key and calls it under the key's lock (or equivalent); the window
/// itself is plain data.
///
/// ```
/// use mcp_policy::store::SlidingWindow;
/// use mcp_policy::{Counter, Scope, Timestamp};
/// use std::time::Duration;
///
/// let counter = Counter::new("writes", 60, Scope::Grant);
/// let start = Timestamp::from_nanos(1_000_000_000_000);
/// let mut window = SlidingWindow::new(start, &counter);
/// assert_eq!(window.admit(start, &counter, 2, 3, true), Ok(()));
/// // One more unit would exceed max 3: refused, with the wait until it fits.
/// let wait = window.admit(start, &counter, 2, 3, true).unwrap_err();
/// assert!(wait <= Duration::from_secs(64));
/// let later = Timestamp::from_nanos(start.as_nanos() + wait.as_nanos() as u64);
/// assert_eq!(window.admit(later, &counter, 2, 3, true), Ok(()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
// `repr(C)`: the fields a call reads and writes (`head`, `total`, `current`) come first,
// in one cache line, so that threads sharing a hot key pass one line between them, not
// three.
#[repr(C)]
pub struct SlidingWindow {
    /// The newest bucket index seen.
    head: u64,
    /// Units live: `current` plus the sum of `counts`.
    total: u64,
    /// Units in the newest bucket, `head`; moved into `counts` when time moves on.
    current: u64,
    /// Units per older bucket, at `bucket % 17`; the slot of `head` stays zero.
    counts: [u64; SLOTS],
}

impl SlidingWindow {
    /// An empty window for `counter`, as of `now`.
    pub fn new(now: Timestamp, counter: &Counter) -> SlidingWindow {
        SlidingWindow::at_bucket(bucket_of(now, counter))
    }

    /// Checks whether `cost` more units fit under `max` at `now` and, if they do and
    /// `record` is set, records them. `Err` carries how long until they fit
    /// ([`Duration::MAX`] if never: `cost > max`); nothing is recorded then.
    pub fn admit(
        &mut self,
        now: Timestamp,
        counter: &Counter,
        cost: u64,
        max: u64,
        record: bool,
    ) -> Result<(), Duration> {
        let width = bucket_width(counter);
        self.advance(now.as_nanos() / width);
        if self.has_room(cost, max) {
            if record {
                self.record(cost);
            }
            Ok(())
        } else {
            Err(self
                .retry_after(now.as_nanos(), width, cost, max)
                .unwrap_or(Duration::MAX))
        }
    }

    /// Takes back `cost` units that the latest recording [`admit`](Self::admit) recorded,
    /// with no other call in between: for a store undoing the limits of a call that
    /// another of its limits refused. Works whatever the clock did meanwhile.
    pub fn unrecord(&mut self, cost: u64) {
        self.release(self.head, cost);
    }

    /// Gives back up to `cost` units recorded at `recorded_at`, if they are still inside
    /// the window at `now`; never more than that bucket holds.
    pub fn give_back(
        &mut self,
        now: Timestamp,
        counter: &Counter,
        recorded_at: Timestamp,
        cost: u64,
    ) {
        self.advance(bucket_of(now, counter));
        self.release(bucket_of(recorded_at, counter), cost);
    }

    /// Whether nothing recorded is live at `now`: a store can forget the key.
    pub fn is_idle(&self, now: Timestamp, counter: &Counter) -> bool {
        self.is_idle_at(bucket_of(now, counter))
    }

    /// Units live as of the newest time this window has seen.
    pub fn total(&self) -> u64 {
        self.total
    }

    fn at_bucket(bucket: u64) -> SlidingWindow {
        SlidingWindow {
            head: bucket,
            total: 0,
            current: 0,
            counts: [0; SLOTS],
        }
    }

    /// Moves the window forward to `bucket`, dropping buckets that left it. A bucket
    /// older than the head (a clock that went back) leaves the window as it is.
    fn advance(&mut self, bucket: u64) {
        if bucket <= self.head {
            return;
        }
        if bucket - self.head >= SLOTS as u64 {
            self.counts = [0; SLOTS];
            self.current = 0;
            self.total = 0;
        } else {
            let head = self.head;
            let newest = std::mem::take(&mut self.current);
            // Not `slot_mut`: for the head that is `current` itself.
            if let Some(slot) = self.counts.get_mut((head % SLOTS as u64) as usize) {
                *slot = newest;
            }
            for b in head + 1..=bucket {
                let slot = self.slot_mut(b);
                let dropped = std::mem::take(slot);
                self.total -= dropped;
            }
        }
        self.head = bucket;
    }

    /// Whether `cost` more units fit under `max` right now.
    fn has_room(&self, cost: u64, max: u64) -> bool {
        self.total.saturating_add(cost) <= max
    }

    /// Adds `cost` units to the newest bucket.
    fn record(&mut self, cost: u64) {
        let head = self.head;
        *self.slot_mut(head) += cost;
        self.total += cost;
    }

    /// Gives back up to `cost` units recorded in `bucket`, if that bucket is still live.
    fn release(&mut self, bucket: u64, cost: u64) {
        if bucket > self.head || self.head - bucket >= SLOTS as u64 {
            return;
        }
        let slot = self.slot_mut(bucket);
        let returned = cost.min(*slot);
        *slot -= returned;
        self.total -= returned;
    }

    /// How long from `now_nanos` until `cost` units fit under `max`, given the buckets
    /// expire in order; `None` if they never fit (`cost > max`).
    fn retry_after(&self, now_nanos: u64, width: u64, cost: u64, max: u64) -> Option<Duration> {
        if cost > max {
            return None;
        }
        let mut remaining = self.total;
        // After k more buckets begin, buckets head-16 ..= head-16+k-1 have expired.
        for k in 1..=SLOTS as u64 {
            let expiring = self.head.wrapping_add(k).wrapping_sub(SLOTS as u64);
            if self.head + k >= SLOTS as u64 {
                remaining -= self.count(expiring);
            }
            if remaining.saturating_add(cost) <= max {
                let at = (self.head + k).saturating_mul(width);
                return Some(Duration::from_nanos(at.saturating_sub(now_nanos)));
            }
        }
        None
    }

    /// Whether nothing live remains at `bucket`: the key can be forgotten.
    fn is_idle_at(&self, bucket: u64) -> bool {
        self.total == 0 || bucket.saturating_sub(self.head) >= SLOTS as u64
    }

    fn count(&self, bucket: u64) -> u64 {
        if bucket == self.head {
            return self.current;
        }
        self.counts
            .get((bucket % SLOTS as u64) as usize)
            .copied()
            .unwrap_or(0)
    }

    /// The count of `bucket`: `current` for the head (set `head` first when moving it),
    /// else its slot.
    fn slot_mut(&mut self, bucket: u64) -> &mut u64 {
        if bucket == self.head {
            return &mut self.current;
        }
        let index = (bucket % SLOTS as u64) as usize;
        // `index < SLOTS` always; the fallback keeps the code free of panics.
        match self.counts.get_mut(index) {
            Some(slot) => slot,
            None => &mut self.total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_max_within_the_window() {
        let mut w = SlidingWindow::at_bucket(100);
        for _ in 0..3 {
            assert!(w.has_room(1, 3));
            w.record(1);
        }
        assert!(!w.has_room(1, 3));
    }

    #[test]
    fn buckets_expire_after_sixteen_more_begin() {
        let mut w = SlidingWindow::at_bucket(100);
        w.record(3);
        w.advance(116);
        assert_eq!(w.total(), 3, "bucket 100 is still live at 116");
        w.advance(117);
        assert_eq!(w.total(), 0);
    }

    #[test]
    fn retry_after_points_at_the_first_bucket_with_room() {
        let mut w = SlidingWindow::at_bucket(100);
        w.record(2);
        w.advance(105);
        w.record(1);
        // Bucket width 1 ns, now = 105 ns, max 3 and full: room comes back when bucket
        // 100 expires, at the start of bucket 117.
        let now = 105;
        assert_eq!(
            w.retry_after(now, 1, 1, 3),
            Some(Duration::from_nanos(117 - 105))
        );
        assert_eq!(
            w.retry_after(now, 1, 3, 3),
            Some(Duration::from_nanos(122 - 105))
        );
        assert_eq!(w.retry_after(now, 1, 4, 3), None);
    }

    #[test]
    fn release_only_touches_live_buckets() {
        let mut w = SlidingWindow::at_bucket(10);
        w.record(5);
        w.release(10, 2);
        assert_eq!(w.total(), 3);
        w.release(10, 100);
        assert_eq!(w.total(), 0, "never more than was recorded");
        w.record(1);
        w.advance(40);
        w.release(10, 1);
        assert_eq!(w.total(), 0);
    }

    #[test]
    fn the_newest_bucket_moves_into_the_ring_as_time_moves_on() {
        let mut w = SlidingWindow::at_bucket(100);
        w.record(2);
        w.advance(101);
        w.record(3);
        w.release(100, 1);
        assert_eq!((w.total(), w.count(100), w.count(101)), (4, 1, 3));
        w.release(101, 1);
        assert_eq!((w.total(), w.count(101)), (3, 2));
        w.advance(117);
        assert_eq!(w.total(), 2, "bucket 100 expired when bucket 117 began");
        w.advance(118);
        assert_eq!(w.total(), 0);
        w.record(1);
        assert_eq!((w.total(), w.count(118), w.count(101)), (1, 1, 0));
    }

    #[test]
    fn time_going_back_changes_nothing() {
        let mut w = SlidingWindow::at_bucket(50);
        w.record(1);
        w.advance(20);
        assert_eq!(w.head, 50);
        assert_eq!(w.total(), 1);
    }

    #[test]
    fn bucket_width_is_exact_for_every_window() {
        for secs in [1, 60, 3600, 86_400, 31_536_000] {
            assert_eq!(bucket_width_nanos(secs) * SUB_BUCKETS, secs * 1_000_000_000);
        }
    }
}
