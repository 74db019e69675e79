//! The bound on calls held for a person's answer (revisions before 2026-07-28): each
//! holds its request in memory until answered, so their number and the bytes of their
//! arguments are capped across every relay that shares one [`Approvals`](super::Approvals).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Held calls at most, by default.
pub(crate) const DEFAULT_MAX_HELD: usize = 256;
/// Bytes of held calls' arguments at most, by default (16 MiB).
pub(crate) const DEFAULT_MAX_HELD_BYTES: usize = 16 << 20;

/// What held calls use now, against their bounds.
#[derive(Debug)]
pub(crate) struct HeldBudget {
    calls: AtomicUsize,
    bytes: AtomicUsize,
    max_calls: usize,
    max_bytes: usize,
}

/// One held call's share of the budget, given back when dropped (answered, timed out,
/// or its relay gone).
#[derive(Debug)]
pub(crate) struct HeldTicket {
    budget: Arc<HeldBudget>,
    bytes: usize,
}

impl HeldBudget {
    pub(crate) fn new(max_calls: usize, max_bytes: usize) -> HeldBudget {
        HeldBudget {
            calls: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            max_calls,
            max_bytes,
        }
    }

    /// A ticket for a call whose arguments take `bytes`, or why it cannot be held.
    pub(crate) fn hold(self: &Arc<Self>, bytes: usize) -> Result<HeldTicket, String> {
        let calls = self.calls.fetch_add(1, Ordering::AcqRel);
        let held = self.bytes.fetch_add(bytes, Ordering::AcqRel);
        let ticket = HeldTicket {
            budget: Arc::clone(self),
            bytes,
        };
        if calls >= self.max_calls {
            return Err(format!(
                "{} calls are already waiting for a person's approval, the most this \
                 gateway holds; ask again once some are answered",
                self.max_calls
            ));
        }
        if held.saturating_add(bytes) > self.max_bytes {
            return Err(format!(
                "the calls waiting for a person's approval already hold {held} bytes of \
                 arguments and this one {bytes}, over the {} this gateway holds; ask again \
                 once some are answered, or send smaller arguments",
                self.max_bytes
            ));
        }
        Ok(ticket)
    }

    /// Calls held now.
    #[cfg(test)]
    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::Acquire)
    }
}

impl Drop for HeldTicket {
    fn drop(&mut self) {
        self.budget.calls.fetch_sub(1, Ordering::AcqRel);
        self.budget.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_bounded_in_number_and_bytes_and_given_back() {
        let budget = Arc::new(HeldBudget::new(2, 100));
        let a = budget.hold(60).unwrap();
        assert!(budget.hold(50).is_err(), "110 bytes");
        let b = budget.hold(40).unwrap();
        assert!(budget.hold(0).is_err(), "3 calls");
        drop(a);
        drop(b);
        assert_eq!(budget.calls(), 0);
        let _c = budget.hold(100).unwrap();
    }
}
