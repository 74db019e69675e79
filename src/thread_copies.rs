//! Per-thread clones of the policy's counters and rule keys, so that decisions made on
//! many threads never write to one shared reference count.
//!
//! A decision carries the key of its rule and, when allowed, an `Arc<Counter>` for each
//! counter it charged (for refunds and audit records). If every thread cloned the
//! policy's own `Arc`s, all threads calling one tool would bump one reference count on one
//! cache line, and sixteen threads would scale little better than one. So each thread
//! makes its own `Arc` of a counter or key the first time it needs it under a policy, and
//! clones that one afterwards.
//!
//! Cost: the first use on a thread of each counter and long rule key under a loaded policy
//! allocates one small `Arc` (the counter's name text stays shared). Nothing is copied on
//! reload: a thread makes fresh clones on demand under the new policy. A thread remembers
//! the clones of its last four policies (an engine's policy and its shadow, and a few
//! reloads). Beyond that it retires the oldest, and frees its clones a few per call:
//! a thread that used all 10 000 counters of a policy would otherwise stall one call for
//! milliseconds freeing them (measured under reloads every 50 ms).

use crate::decision::RuleKey;
use crate::policy::{Counter, Limit, Policy, Rule};
use smallvec::SmallVec;
use std::cell::RefCell;
use std::sync::Arc;

/// Policies whose clones one thread keeps.
const POLICIES_PER_THREAD: usize = 4;
/// Retired clones freed per call.
const FREED_PER_CALL: usize = 16;

#[derive(Default)]
struct PolicyCopies {
    policy: u64,
    counters: Vec<Option<Arc<Counter>>>,
    rule_keys: Vec<Option<Arc<str>>>,
}

#[derive(Default)]
struct ThreadCopies {
    live: SmallVec<[PolicyCopies; POLICIES_PER_THREAD]>,
    /// Evicted from `live`, being freed a few clones per call.
    retired: Vec<PolicyCopies>,
}

impl ThreadCopies {
    fn free_some_retired(&mut self) {
        let Some(oldest) = self.retired.last_mut() else {
            return;
        };
        for _ in 0..FREED_PER_CALL {
            if oldest.counters.pop().is_none() && oldest.rule_keys.pop().is_none() {
                self.retired.pop();
                return;
            }
        }
    }
}

thread_local! {
    static COPIES: RefCell<ThreadCopies> = const {
        RefCell::new(ThreadCopies {
            live: SmallVec::new_const(),
            retired: Vec::new(),
        })
    };
}

/// This thread's clone of `limit`'s counter under `policy`.
pub(crate) fn counter(policy: &Policy, limit: &Limit) -> Arc<Counter> {
    with_copies(policy, |copies| {
        local(&mut copies.counters, limit.slot, || {
            Arc::new((*limit.counter).clone())
        })
    })
    .unwrap_or_else(|| Arc::clone(&limit.counter))
}

/// The key of `rule` (of `policy`): copied when short, else cloned from this thread's copy.
pub(crate) fn rule_key(policy: &Policy, rule: &Rule) -> RuleKey {
    if rule.key.len() <= RuleKey::INLINE_BYTES {
        return RuleKey::inline(&rule.key);
    }
    let key = with_copies(policy, |copies| {
        local(&mut copies.rule_keys, rule.slot, || {
            // A fresh allocation: the point is not to share the policy's.
            let text: &str = &rule.key;
            text.into()
        })
    });
    RuleKey::from_arc(key.unwrap_or_else(|| Arc::clone(&rule.key)))
}

/// Runs `f` on this thread's copies for `policy`; `None` when the thread is being torn
/// down, or when a clock or store re-entered the engine while they were in use (the
/// caller then clones the shared value: correct, merely contended).
fn with_copies<T>(policy: &Policy, f: impl FnOnce(&mut PolicyCopies) -> Option<T>) -> Option<T> {
    COPIES
        .try_with(|cell| {
            let mut copies = cell.try_borrow_mut().ok()?;
            if !copies.retired.is_empty() {
                copies.free_some_retired();
            }
            let index = match copies.live.iter().position(|c| c.policy == policy.id) {
                Some(index) => index,
                None => {
                    if copies.live.len() >= POLICIES_PER_THREAD {
                        let oldest = copies.live.remove(0);
                        // Moving it costs nothing; its clones are freed over later calls.
                        copies.retired.insert(0, oldest);
                    }
                    copies.live.push(PolicyCopies {
                        policy: policy.id,
                        ..PolicyCopies::default()
                    });
                    copies.live.len() - 1
                }
            };
            f(copies.live.get_mut(index)?)
        })
        .ok()
        .flatten()
}

fn local<T: ?Sized>(
    slots: &mut Vec<Option<Arc<T>>>,
    slot: u32,
    make: impl FnOnce() -> Arc<T>,
) -> Option<Arc<T>> {
    let slot = usize::try_from(slot).ok()?;
    if slots.len() <= slot {
        slots.resize(slot + 1, None);
    }
    Some(Arc::clone(slots.get_mut(slot)?.get_or_insert_with(make)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        r#"{"version": "1", "tools": {"a_tool_with_a_rather_long_name": {"rate_limit": "5/minute"}}}"#
            .parse()
            .unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn each_thread_clones_its_own_copy_once_per_policy() {
        let policy = policy();
        let rule = policy.rules.first().unwrap_or_else(|| unreachable!());
        let limit = rule.rate_limit.as_ref().unwrap_or_else(|| unreachable!());
        let here = counter(&policy, limit);
        assert!(
            Arc::ptr_eq(&here, &counter(&policy, limit)),
            "one copy per thread"
        );
        assert!(
            !Arc::ptr_eq(&here, &limit.counter),
            "never the policy's own"
        );
        assert_eq!(*here, *limit.counter);
        let there = std::thread::scope(|s| s.spawn(|| counter(&policy, limit)).join());
        let there = there.unwrap_or_else(|_| unreachable!());
        assert!(!Arc::ptr_eq(&here, &there), "another thread has its own");
        assert_eq!(
            rule_key(&policy, rule).as_str(),
            "a_tool_with_a_rather_long_name"
        );
    }

    #[test]
    fn policies_beyond_four_are_retired_and_freed_over_later_calls() {
        let policies: Vec<Policy> = (0..6).map(|_| policy()).collect();
        let mut first = None;
        for policy in &policies {
            let limit = policy.rules[0]
                .rate_limit
                .as_ref()
                .unwrap_or_else(|| unreachable!());
            first.get_or_insert_with(|| counter(policy, limit));
            counter(policy, limit);
        }
        let first = first.unwrap_or_else(|| unreachable!());
        // The first two policies' copies were retired; a few calls free them.
        for _ in 0..4 {
            let limit = policies[5].rules[0]
                .rate_limit
                .as_ref()
                .unwrap_or_else(|| unreachable!());
            counter(&policies[5], limit);
        }
        assert_eq!(Arc::strong_count(&first), 1, "only this test holds it now");
        COPIES.with(|c| assert!(c.borrow().retired.is_empty()));
    }
}
