//! Argument names a server might read differently from the policy: `Priority` where a
//! condition reads `priority`. A server that matches names ignoring case (Go's
//! `encoding/json`, many others) would act on a value the policy never looked at.

use crate::json::fold_case;
use serde_json::Value;
use std::collections::HashMap;

/// Every argument name any path of a policy reads, by folded case: computed once per
/// loaded policy, then asked per call.
#[derive(Debug, Default)]
pub(crate) struct CaseGuard {
    /// Folded name → the spellings the policy uses.
    names: HashMap<String, Vec<String>>,
}

/// An argument name that differs only in case from a name the policy reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseVariant {
    /// The name as the call spelled it.
    pub found: String,
    /// The policy's spelling.
    pub expected: String,
}

impl CaseGuard {
    pub(crate) fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> CaseGuard {
        let mut guard = CaseGuard::default();
        for name in names {
            let spellings = guard.names.entry(fold_case(name)).or_default();
            if !spellings.iter().any(|s| s == name) {
                spellings.push(name.to_owned());
            }
        }
        guard
    }

    /// The first name, at any depth of `args`, that the policy reads under another case
    /// only. Walks the arguments without recursion, so no nesting depth overflows.
    pub(crate) fn find(&self, args: &Value) -> Option<CaseVariant> {
        if self.names.is_empty() {
            return None;
        }
        let mut stack = vec![args];
        while let Some(value) = stack.pop() {
            match value {
                Value::Object(map) => {
                    for (key, inner) in map {
                        if let Some(spellings) = self.names.get(&fold_case(key)) {
                            if !spellings.contains(key) {
                                return Some(CaseVariant {
                                    found: key.clone(),
                                    expected: spellings.first().cloned().unwrap_or_default(),
                                });
                            }
                        }
                        stack.push(inner);
                    }
                }
                Value::Array(items) => stack.extend(items),
                _ => {}
            }
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_case_variants_of_read_names_are_found_at_any_depth() {
        let guard = CaseGuard::new(["priority", "ticket_id"]);
        assert_eq!(
            guard
                .find(&json!({"priority": 1, "other": {"PRIORITY": 2}}))
                .unwrap()
                .found,
            "PRIORITY"
        );
        assert_eq!(
            guard
                .find(&json!([{"x": [{"Ticket_Id": 1}]}]))
                .unwrap()
                .expected,
            "ticket_id"
        );
        assert_eq!(guard.find(&json!({"priority": 1, "Status": 2})), None);
    }
}
