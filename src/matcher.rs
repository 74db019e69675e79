//! Tool name → rule: an exact-name map, then globs ordered by specificity.

use std::collections::HashMap;

/// Finds the rule for a tool name: the key equal to the name; else the matching glob with
/// the most literal characters, ties broken by the key that sorts first by bytes.
///
/// Keys are compiled once: exact names go into a hash map, globs into a list sorted by
/// precedence, so the first glob that matches is the answer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Matcher {
    exact: HashMap<Box<str>, usize>,
    globs: Vec<(Glob, usize)>,
}

impl Matcher {
    /// Builds a matcher over `(key, value)` pairs; a key containing `*` is a glob.
    pub(crate) fn new<'k>(keys: impl IntoIterator<Item = (&'k str, usize)>) -> Matcher {
        let mut matcher = Matcher::default();
        for (key, value) in keys {
            if key.contains('*') {
                matcher.globs.push((Glob::new(key), value));
            } else {
                matcher.exact.insert(key.into(), value);
            }
        }
        matcher.globs.sort_by(|(a, _), (b, _)| {
            b.literal_len
                .cmp(&a.literal_len)
                .then_with(|| a.key.as_bytes().cmp(b.key.as_bytes()))
        });
        matcher
    }

    /// The value of the key that matches `name` best, if any.
    pub(crate) fn find(&self, name: &str) -> Option<usize> {
        if let Some(&value) = self.exact.get(name) {
            return Some(value);
        }
        self.globs
            .iter()
            .find(|(glob, _)| glob.matches(name))
            .map(|&(_, value)| value)
    }
}

/// A pattern where `*` matches any run of characters, possibly empty.
#[derive(Debug, Clone)]
struct Glob {
    key: Box<str>,
    /// The literal pieces between stars; there is always one more piece than stars.
    pieces: Vec<Box<str>>,
    literal_len: usize,
}

impl Glob {
    fn new(key: &str) -> Glob {
        let pieces: Vec<Box<str>> = key.split('*').map(Into::into).collect();
        Glob {
            key: key.into(),
            literal_len: pieces.iter().map(|p| p.len()).sum(),
            pieces,
        }
    }

    fn matches(&self, name: &str) -> bool {
        let Some((first, rest)) = self.pieces.split_first() else {
            return false;
        };
        let Some((last, middle)) = rest.split_last() else {
            return name == &**first;
        };
        if name.len() < self.literal_len {
            return false;
        }
        let Some(mut remaining) = name
            .strip_prefix(&**first)
            .and_then(|n| n.strip_suffix(&**last))
        else {
            return false;
        };
        // Greedy leftmost matching of each middle piece is optimal for `*`-only globs.
        for piece in middle {
            match remaining.find(&**piece) {
                Some(at) => remaining = remaining.get(at + piece.len()..).unwrap_or_default(),
                None => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn best<'k>(keys: &[&'k str], name: &str) -> Option<&'k str> {
        let matcher = Matcher::new(keys.iter().enumerate().map(|(i, k)| (*k, i)));
        matcher.find(name).map(|i| keys[i])
    }

    #[test]
    fn exact_name_beats_any_glob() {
        assert_eq!(
            best(&["whmcs_*", "whmcs_get_ticket"], "whmcs_get_ticket"),
            Some("whmcs_get_ticket")
        );
    }

    #[test]
    fn glob_with_most_literals_wins() {
        assert_eq!(
            best(&["*", "whmcs_*", "whmcs_get_*"], "whmcs_get_ticket"),
            Some("whmcs_get_*")
        );
        assert_eq!(
            best(&["*", "whmcs_*", "whmcs_get_*"], "whmcs_add_credit"),
            Some("whmcs_*")
        );
        assert_eq!(best(&["*", "whmcs_*"], "other"), Some("*"));
    }

    #[test]
    fn ties_go_to_the_key_sorting_first_by_bytes() {
        assert_eq!(best(&["b*_x", "*a_x"], "ba_x"), Some("*a_x"));
        assert_eq!(best(&["*a_x", "b*_x"], "ba_x"), Some("*a_x"));
    }

    #[test]
    fn star_matches_empty_runs_and_middle_pieces_in_order() {
        assert_eq!(best(&["a*b*c"], "abc"), Some("a*b*c"));
        assert_eq!(best(&["a*b*c"], "axxbyyc"), Some("a*b*c"));
        assert_eq!(best(&["a*b*c"], "acb"), None);
        assert_eq!(best(&["ab*ba"], "aba"), None);
        assert_eq!(
            best(&["*_delete_*"], "whmcs_delete_client"),
            Some("*_delete_*")
        );
    }

    #[test]
    fn no_match_without_rule() {
        assert_eq!(best(&["whmcs_get_*"], "whmcs_update_ticket"), None);
    }
}
