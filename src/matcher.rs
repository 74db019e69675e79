//! Tool name → rule: an exact-name map, then globs ordered by specificity.

use crate::name_table::NameTable;

/// Finds the rule for a tool name: the key equal to the name; else the matching glob with
/// the most literal characters, ties broken by the key that sorts first by bytes.
///
/// Keys are compiled once. Exact names go into a hash map. Globs are sorted by precedence
/// and indexed by their leading literal (the text before the first `*`), so a lookup
/// hashes one prefix of the name per distinct leading-literal length and tries only the
/// globs whose leading literal matches, instead of scanning every glob.
#[derive(Debug, Clone, Default)]
pub(crate) struct Matcher {
    exact: NameTable,
    /// Globs in precedence order, with their values.
    globs: Vec<(Glob, usize)>,
    /// Leading literal → index in `prefix_groups`.
    by_prefix: NameTable,
    /// Positions in `globs` sharing one leading literal, ascending.
    prefix_groups: Vec<Vec<usize>>,
    /// The distinct leading-literal lengths, ascending.
    prefix_lens: Vec<usize>,
}

impl Matcher {
    /// Builds a matcher over `(key, value)` pairs; a key containing `*` is a glob.
    pub(crate) fn new<'k>(keys: impl IntoIterator<Item = (&'k str, usize)>) -> Matcher {
        let mut matcher = Matcher::default();
        let mut exact = Vec::new();
        for (key, value) in keys {
            if key.contains('*') {
                matcher.globs.push((Glob::new(key), value));
            } else {
                exact.push((key, value));
            }
        }
        matcher.exact = NameTable::new(exact);
        matcher.globs.sort_by(|(a, _), (b, _)| {
            b.literal_len
                .cmp(&a.literal_len)
                .then_with(|| a.key.as_bytes().cmp(b.key.as_bytes()))
        });
        let mut groups: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
        for (position, (glob, _)) in matcher.globs.iter().enumerate() {
            let prefix = glob.leading_literal();
            groups.entry(prefix).or_default().push(position);
            matcher.prefix_lens.push(prefix.len());
        }
        matcher.by_prefix = NameTable::new(groups.keys().copied().zip(0..));
        matcher.prefix_groups = groups.into_values().collect();
        matcher.prefix_lens.sort_unstable();
        matcher.prefix_lens.dedup();
        matcher
    }

    /// The value of the key that matches `name` best, if any.
    pub(crate) fn find(&self, name: &str) -> Option<usize> {
        if let Some(value) = self.exact.get(name) {
            return Some(value);
        }
        if self.globs.is_empty() {
            return None;
        }
        let mut best: Option<usize> = None;
        for &len in &self.prefix_lens {
            // A prefix cut inside a character cannot equal a glob's (valid UTF-8) literal.
            let Some(prefix) = name.get(..len) else {
                if len > name.len() {
                    break;
                }
                continue;
            };
            let Some(positions) = self
                .by_prefix
                .get(prefix)
                .and_then(|group| self.prefix_groups.get(group))
            else {
                continue;
            };
            for &position in positions {
                if best.is_some_and(|b| position >= b) {
                    break;
                }
                if self
                    .globs
                    .get(position)
                    .is_some_and(|(glob, _)| glob.matches(name))
                {
                    best = Some(position);
                    break;
                }
            }
        }
        best.and_then(|position| self.globs.get(position))
            .map(|&(_, value)| value)
    }
}

/// A pattern where `*` matches any run of characters, possibly empty.
#[derive(Debug, Clone)]
struct Glob {
    key: Box<str>,
    /// The literal pieces between stars; there is always one more piece than stars.
    pieces: Vec<Box<str>>,
    /// Literal characters (not bytes: `€` counts one), which rank globs.
    literal_len: usize,
    /// Literal bytes, a quick lower bound on a matching name's length.
    literal_bytes: usize,
}

impl Glob {
    fn new(key: &str) -> Glob {
        let pieces: Vec<Box<str>> = key.split('*').map(Into::into).collect();
        Glob {
            key: key.into(),
            literal_len: pieces.iter().map(|p| p.chars().count()).sum(),
            literal_bytes: pieces.iter().map(|p| p.len()).sum(),
            pieces,
        }
    }

    /// The literal text before the first `*`.
    fn leading_literal(&self) -> &str {
        self.pieces.first().map_or("", |piece| piece)
    }

    fn matches(&self, name: &str) -> bool {
        let Some((first, rest)) = self.pieces.split_first() else {
            return false;
        };
        let Some((last, middle)) = rest.split_last() else {
            return name == &**first;
        };
        if name.len() < self.literal_bytes {
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
    fn precedence_counts_characters_not_bytes() {
        // "*€" has one literal character, "ab*" two: "ab*" is more specific.
        assert_eq!(best(&["ab*", "*€"], "ab€"), Some("ab*"));
        assert_eq!(best(&["*€", "ab*"], "ab€"), Some("ab*"));
        // One literal character each, whatever its bytes: the key sorting first wins.
        assert_eq!(best(&["€*", "*x"], "€x"), Some("*x"));
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
    fn globs_sharing_a_leading_literal_keep_their_precedence() {
        let keys = ["svc_*", "svc_*_x", "svc_a*", "*", "s*x", "é*", "*é"];
        assert_eq!(best(&keys, "svc_a_x"), Some("svc_*_x"));
        assert_eq!(best(&keys, "svc_ab"), Some("svc_a*"));
        assert_eq!(best(&keys, "svc_b"), Some("svc_*"));
        assert_eq!(best(&keys, "sx"), Some("s*x"));
        assert_eq!(best(&keys, "éa"), Some("é*"));
        assert_eq!(best(&keys, "aé"), Some("*é"));
        assert_eq!(best(&keys, "q"), Some("*"));
    }

    #[test]
    fn the_index_agrees_with_a_linear_scan() {
        let keys: Vec<String> = (0..200)
            .map(|i| match i % 4 {
                0 => format!("svc{}_*", i % 7),
                1 => format!("*_{}", i % 5),
                2 => format!("svc{}*_{}*", i % 3, i % 4),
                _ => format!("exact{i}"),
            })
            .collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let matcher = Matcher::new(refs.iter().enumerate().map(|(i, k)| (*k, i)));
        let mut ordered: Vec<(usize, &str)> = refs
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, k)| k.contains('*'))
            .collect();
        ordered.sort_by(|a, b| {
            let lit = |k: &str| k.len() - k.matches('*').count();
            lit(b.1)
                .cmp(&lit(a.1))
                .then_with(|| a.1.as_bytes().cmp(b.1.as_bytes()))
        });
        for name in [
            "svc1_2", "svc2_x_3", "svc0_0", "a_1", "exact3", "svc1x_2y", "none", "",
        ] {
            let linear = if refs.contains(&name) {
                refs.iter().position(|k| *k == name)
            } else {
                ordered
                    .iter()
                    .find(|(_, k)| Glob::new(k).matches(name))
                    .map(|(i, _)| *i)
            };
            assert_eq!(matcher.find(name), linear, "{name}");
        }
    }

    #[test]
    fn no_match_without_rule() {
        assert_eq!(best(&["whmcs_get_*"], "whmcs_update_ticket"), None);
    }
}
