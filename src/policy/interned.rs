//! The counters and rule keys a policy defines, kept once for the life of the process, so
//! that every decision refers to them with a plain `&'static` reference: no reference
//! count to touch when a decision is made, cloned or dropped, on any thread, and nothing
//! to allocate when a thread first meets a reloaded policy.
//!
//! Cost: loading a policy looks each of its counters and rule keys up in a process-wide
//! set (a lock taken at load time only, never by evaluation). Equal values are kept once:
//! reloading the same policy, or one that changes a few rules, adds only what is new.
//! What a process has ever loaded stays: about 100 bytes per distinct counter and the
//! length of each distinct rule key (at most 512 bytes), bounded by the tools and counters
//! an operator names. Reasons are free text (a generated policy may date them, and a
//! condition's own text quotes its operand), so they stay reference-counted: only
//! refusals carry them.

use super::Counter;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::OnceLock;

/// The one `&'static` copy of `counter`.
pub(crate) fn counter(counter: Counter) -> &'static Counter {
    static COUNTERS: OnceLock<Mutex<HashSet<&'static Counter>>> = OnceLock::new();
    let mut counters = COUNTERS.get_or_init(Mutex::default).lock();
    if let Some(kept) = counters.get(&counter) {
        return kept;
    }
    let kept: &'static Counter = Box::leak(Box::new(counter));
    counters.insert(kept);
    kept
}

/// The one `&'static` copy of `text`.
pub(crate) fn text(text: &str) -> &'static str {
    static TEXTS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut texts = TEXTS.get_or_init(Mutex::default).lock();
    if let Some(kept) = texts.get(text) {
        return kept;
    }
    let kept: &'static str = Box::leak(Box::from(text));
    texts.insert(kept);
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scope;

    #[test]
    fn equal_values_are_kept_once() {
        let first = text("whmcs_update_*");
        assert!(std::ptr::eq(first, text(&String::from("whmcs_update_*"))));
        assert!(!std::ptr::eq(first, text("whmcs_get_*")));

        let counter_a = counter(Counter::new("writes", 60, Scope::Grant));
        assert!(std::ptr::eq(
            counter_a,
            counter(Counter::new("writes", 60, Scope::Grant))
        ));
        let other_window = counter(Counter::new("writes", 3600, Scope::Grant));
        assert!(!std::ptr::eq(counter_a, other_window));
        assert_eq!(other_window.window_secs(), 3600);
    }

    #[test]
    fn loading_a_policy_again_keeps_nothing_new() {
        let text = r#"{"version": "1", "tools": {"interned_test_tool": {
            "limits": [{"counter": "interned_test_counter", "window": "minute", "max": 5}]}}}"#;
        let load = || -> crate::Policy { text.parse().unwrap_or_else(|e| unreachable!("{e}")) };
        let (first, again) = (load(), load());
        let rule = |policy: &crate::Policy| policy.rules.first().cloned();
        let (Some(first), Some(again)) = (rule(&first), rule(&again)) else {
            unreachable!("one rule")
        };
        assert!(std::ptr::eq(first.key, again.key));
        let counter = |rule: &crate::policy::Rule| rule.limits.first().map(|l| l.counter);
        assert!(counter(&first)
            .zip(counter(&again))
            .is_some_and(|(a, b)| std::ptr::eq(a, b)));
    }
}
