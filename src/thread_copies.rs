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
//! Cost: the first use on a thread of each counter and rule key under a loaded policy
//! allocates one small `Arc` (the counter's name text stays shared). Nothing is copied on
//! reload: a thread makes fresh clones on demand under the new policy. A thread remembers
//! the clones of its last four policies (an engine's policy and its shadow, and a few
//! reloads), dropping the oldest beyond that.

use crate::decision::RuleKey;
use crate::policy::{Counter, Limit, Policy, Rule};
use smallvec::SmallVec;
use std::cell::RefCell;
use std::sync::Arc;

/// Policies whose clones one thread keeps.
const POLICIES_PER_THREAD: usize = 4;

#[derive(Default)]
struct PolicyCopies {
    policy: u64,
    counters: Vec<Option<Arc<Counter>>>,
    rule_keys: Vec<Option<Arc<str>>>,
}

thread_local! {
    static COPIES: RefCell<SmallVec<[PolicyCopies; POLICIES_PER_THREAD]>> =
        const { RefCell::new(SmallVec::new_const()) };
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
            let mut all = cell.try_borrow_mut().ok()?;
            let index = match all.iter().position(|c| c.policy == policy.id) {
                Some(index) => index,
                None => {
                    if all.len() >= POLICIES_PER_THREAD {
                        all.remove(0);
                    }
                    all.push(PolicyCopies {
                        policy: policy.id,
                        ..PolicyCopies::default()
                    });
                    all.len() - 1
                }
            };
            f(all.get_mut(index)?)
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
