//! Tool name → hidden, or the rule that governs it: exact names, then globs ordered by
//! specificity.

use crate::short_eq::same;
use hashbrown::HashTable;

/// What a policy makes of a tool name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// `hide` matches it.
    Hidden,
    /// The index of its rule; `None` when only the default applies.
    Rule(Option<usize>),
}

/// Resolves tool names against a policy's `hide` list and rule keys with one pass over the
/// name's bytes in the common case.
///
/// `hide` wins over any rule. Otherwise the rule is the key equal to the name, else the
/// matching glob with the most literal characters, ties broken by the key that sorts first
/// by bytes.
///
/// Keys are compiled once into one hash table holding exact names and the globs' leading
/// literals (the text before the first `*`). A lookup hashes the name once for the exact
/// names; only on a miss does it hash the name's prefixes — incrementally, in one more
/// pass — at each distinct leading-literal length, and tries only the globs whose leading
/// literal matches, in precedence order, instead of scanning every glob.
///
/// The hash is unkeyed. That is safe because only the policy's own keys are inserted: a
/// caller only looks names up, so it cannot build colliding chains. It is our own rather
/// than `foldhash` so that a name's prefixes hash incrementally instead of from scratch.
#[derive(Debug, Clone, Default)]
pub(crate) struct Matcher {
    table: HashTable<Entry>,
    /// Hide globs, then rule globs, each in precedence order.
    globs: Vec<Glob>,
    /// How many of `globs` come from `hide`.
    hide_globs: usize,
    /// The distinct leading-literal lengths, ascending.
    prefix_lens: Vec<usize>,
}

/// One text of the table: an exact name, a leading literal of globs, or both.
#[derive(Debug, Clone)]
struct Entry {
    hash: u64,
    text: Box<str>,
    /// What the name resolves to when it is the whole tool name.
    exact: Option<Exact>,
    /// Positions in `globs` of the globs with this leading literal, ascending.
    globs: Vec<usize>,
}

#[derive(Debug, Clone, Copy)]
struct Exact {
    /// Hidden by an exact `hide` name or a `hide` glob (decided when compiling).
    hidden: bool,
    rule: Option<usize>,
}

impl Matcher {
    /// Compiles `hide` (names and globs) and the rule keys; rule `i` is the `i`th key.
    pub(crate) fn new<'k, H: AsRef<str>>(
        hide: &[H],
        rule_keys: impl IntoIterator<Item = &'k str>,
    ) -> Matcher {
        let mut matcher = Matcher::default();
        let mut hide_globs = Vec::new();
        let mut rule_globs = Vec::new();
        let mut exact_hidden = Vec::new();
        for key in hide.iter().map(AsRef::as_ref) {
            if key.contains('*') {
                hide_globs.push(Glob::new(key, None));
            } else {
                exact_hidden.push(key);
            }
        }
        let mut exact_rules = Vec::new();
        for (i, key) in rule_keys.into_iter().enumerate() {
            if key.contains('*') {
                rule_globs.push(Glob::new(key, Some(i)));
            } else {
                exact_rules.push((key, i));
            }
        }
        hide_globs.sort_by(Glob::precedence);
        rule_globs.sort_by(Glob::precedence);
        for name in exact_hidden {
            matcher.entry(name).exact = Some(Exact {
                hidden: true,
                rule: None,
            });
        }
        for (name, rule) in exact_rules {
            let hidden_by_glob = hide_globs.iter().any(|g| g.matches(name));
            let exact = matcher.entry(name).exact.get_or_insert(Exact {
                hidden: hidden_by_glob,
                rule: None,
            });
            exact.rule = exact.rule.or(Some(rule));
        }
        matcher.hide_globs = hide_globs.len();
        matcher.globs = hide_globs.into_iter().chain(rule_globs).collect();
        let literals: Vec<(Box<str>, usize)> = matcher
            .globs
            .iter()
            .enumerate()
            .map(|(position, glob)| (glob.leading_literal().into(), position))
            .collect();
        for (literal, position) in literals {
            matcher.prefix_lens.push(literal.len());
            matcher.entry(&literal).globs.push(position);
        }
        matcher.prefix_lens.sort_unstable();
        matcher.prefix_lens.dedup();
        matcher
    }

    fn entry(&mut self, text: &str) -> &mut Entry {
        let hash = NameHash::of(text.as_bytes());
        self.table
            .entry(hash, |e| *e.text == *text, |e| e.hash)
            .or_insert_with(|| Entry {
                hash,
                text: text.into(),
                exact: None,
                globs: Vec::new(),
            })
            .into_mut()
    }

    fn get(&self, hash: u64, text: &[u8]) -> Option<&Entry> {
        self.table.find(hash, |e| same(e.text.as_bytes(), text))
    }

    /// What `name` resolves to.
    pub(crate) fn resolve(&self, name: &str) -> Target {
        let exact = self
            .get(NameHash::of(name.as_bytes()), name.as_bytes())
            .and_then(|e| e.exact);
        match exact {
            Some(Exact { hidden: true, .. }) => return Target::Hidden,
            Some(Exact {
                rule: Some(rule), ..
            }) => return Target::Rule(Some(rule)),
            _ => {}
        }
        match self.best_glob(name, 0) {
            Some(position) if position < self.hide_globs => Target::Hidden,
            Some(position) => Target::Rule(self.globs.get(position).and_then(|g| g.rule)),
            None => Target::Rule(None),
        }
    }

    /// Whether `hide` matches `name`: its exact names and its globs only, so the cost
    /// does not grow with the rule keys (`mcp-policy check` asks this of every key).
    pub(crate) fn is_hidden(&self, name: &str) -> bool {
        let exact = self
            .get(NameHash::of(name.as_bytes()), name.as_bytes())
            .and_then(|e| e.exact);
        if let Some(exact) = exact {
            return exact.hidden;
        }
        self.globs
            .iter()
            .take(self.hide_globs)
            .any(|glob| glob.matches(name))
    }

    /// The rule for `name` whether or not it is hidden.
    pub(crate) fn rule(&self, name: &str) -> Option<usize> {
        let exact = self
            .get(NameHash::of(name.as_bytes()), name.as_bytes())
            .and_then(|e| e.exact);
        if let Some(rule) = exact.and_then(|e| e.rule) {
            return Some(rule);
        }
        self.best_glob(name, self.hide_globs)
            .and_then(|position| self.globs.get(position))
            .and_then(|g| g.rule)
    }

    /// The position of the first glob at or after `from` that matches `name`.
    fn best_glob(&self, name: &str, from: usize) -> Option<usize> {
        if self.globs.len() <= from {
            return None;
        }
        let bytes = name.as_bytes();
        let mut best: Option<usize> = None;
        let mut prefixes = Prefixes::new(bytes);
        for &len in &self.prefix_lens {
            let Some(prefix) = bytes.get(..len) else {
                break;
            };
            let Some(entry) = self.get(prefixes.hash(len), prefix) else {
                continue;
            };
            for &position in entry.globs.iter().filter(|&&p| p >= from) {
                if best.is_some_and(|b| position >= b) {
                    break;
                }
                if self.globs.get(position).is_some_and(|g| g.matches(name)) {
                    best = Some(position);
                    break;
                }
            }
        }
        best
    }
}

/// A multiply-fold hash over eight-byte words, computable for a name's prefixes in one
/// pass (`Prefixes`): the words before a prefix's last partial word are shared, so each
/// further prefix costs one mix for its tail.
struct NameHash;

const MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

impl NameHash {
    fn of(bytes: &[u8]) -> u64 {
        Prefixes::new(bytes).hash(bytes.len())
    }
}

/// Hashes of the prefixes of one name, in ascending length.
struct Prefixes<'n> {
    bytes: &'n [u8],
    /// The state after `words` whole words.
    state: u64,
    words: usize,
}

impl<'n> Prefixes<'n> {
    fn new(bytes: &'n [u8]) -> Prefixes<'n> {
        Prefixes {
            bytes,
            state: MULTIPLIER,
            words: 0,
        }
    }

    /// The hash of the first `len` bytes; `len` must not decrease between calls.
    fn hash(&mut self, len: usize) -> u64 {
        while (self.words + 1) * 8 <= len {
            let word = word(self.bytes.get(self.words * 8..(self.words + 1) * 8));
            self.state = mix(self.state, word);
            self.words += 1;
        }
        let tail = word(self.bytes.get(self.words * 8..len));
        // The length goes in last, so names that differ only by trailing zero bytes differ.
        let hash = mix(mix(self.state, tail), len as u64);
        // Fold the high bits down: the table indexes with the low ones.
        hash ^ (hash >> 29)
    }
}

/// Up to eight bytes as a little-endian word, zero-padded. A byte loop, not
/// `copy_from_slice`: a copy of variable length becomes a `memcpy` call, slower here.
fn word(bytes: Option<&[u8]>) -> u64 {
    bytes
        .unwrap_or_default()
        .iter()
        .take(8)
        .enumerate()
        .fold(0, |word, (i, &byte)| word | u64::from(byte) << (8 * i))
}

fn mix(hash: u64, word: u64) -> u64 {
    let product = u128::from(hash ^ word) * u128::from(MULTIPLIER);
    (product as u64) ^ ((product >> 64) as u64)
}

/// A pattern where `*` matches any run of characters, possibly empty.
#[derive(Debug, Clone)]
struct Glob {
    key: Box<str>,
    /// The rule it belongs to; `None` for a `hide` glob.
    rule: Option<usize>,
    /// The literal pieces between stars; there is always one more piece than stars.
    pieces: Vec<Box<str>>,
    /// Literal characters (not bytes: `€` counts one), which rank globs.
    literal_len: usize,
    /// Literal bytes, a quick lower bound on a matching name's length.
    literal_bytes: usize,
}

impl Glob {
    fn new(key: &str, rule: Option<usize>) -> Glob {
        let pieces: Vec<Box<str>> = key.split('*').map(Into::into).collect();
        Glob {
            key: key.into(),
            rule,
            literal_len: pieces.iter().map(|p| p.chars().count()).sum(),
            literal_bytes: pieces.iter().map(|p| p.len()).sum(),
            pieces,
        }
    }

    /// Most literal characters first, then the key sorting first by bytes.
    fn precedence(a: &Glob, b: &Glob) -> std::cmp::Ordering {
        b.literal_len
            .cmp(&a.literal_len)
            .then_with(|| a.key.as_bytes().cmp(b.key.as_bytes()))
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
        let (head, tail) = (first.as_bytes(), last.as_bytes());
        // `name.len() >= literal_bytes` so both cuts are in bounds and do not overlap; they
        // fall on character boundaries when the bytes equal the (UTF-8) pieces.
        let starts = name
            .as_bytes()
            .get(..head.len())
            .is_some_and(|b| same(b, head));
        let ends = name
            .as_bytes()
            .get(name.len() - tail.len()..)
            .is_some_and(|b| same(b, tail));
        if !(starts && ends) {
            return false;
        }
        let Some(mut remaining) = name.get(head.len()..name.len() - tail.len()) else {
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

    const NO_HIDE: &[&str] = &[];

    #[test]
    fn is_hidden_reads_hide_alone_and_agrees_with_resolve() {
        let rules: Vec<String> = (0..2_000).map(|i| format!("*_{i}")).collect();
        let matcher = Matcher::new(
            &["whmcs_delete_*", "secret", "*_7"],
            rules.iter().map(String::as_str),
        );
        for name in [
            "whmcs_delete_client",
            "secret",
            "x_7",
            "x_8",
            "*_9",
            "whmcs_get",
            "secret2",
        ] {
            assert_eq!(
                matcher.is_hidden(name),
                matcher.resolve(name) == Target::Hidden,
                "{name}"
            );
        }
        assert!(matcher.is_hidden("x_7") && !matcher.is_hidden("x_8"));
    }

    fn best<'k>(keys: &[&'k str], name: &str) -> Option<&'k str> {
        let matcher = Matcher::new(NO_HIDE, keys.iter().copied());
        assert_eq!(
            matcher.resolve(name),
            Target::Rule(matcher.rule(name)),
            "{name}"
        );
        matcher.rule(name).map(|i| keys[i])
    }

    #[test]
    fn hide_wins_over_every_rule_yet_the_rule_stays_known() {
        let hide = ["whmcs_delete_*", "exact_hidden", "shared"];
        let keys = ["whmcs_delete_client", "whmcs_*", "shared", "*"];
        let matcher = Matcher::new(&hide, keys.iter().copied());
        for (name, rule) in [
            ("whmcs_delete_client", Some(0)),
            ("whmcs_delete_x", Some(1)),
            ("exact_hidden", Some(3)),
            ("shared", Some(2)),
        ] {
            assert_eq!(matcher.resolve(name), Target::Hidden, "{name}");
            assert_eq!(matcher.rule(name), rule, "{name}");
        }
        assert_eq!(matcher.resolve("whmcs_get"), Target::Rule(Some(1)));
        assert_eq!(matcher.resolve("exact_hidden2"), Target::Rule(Some(3)));
        let only_hide = Matcher::new(&["a*"], []);
        assert_eq!(only_hide.resolve("ab"), Target::Hidden);
        assert_eq!(only_hide.resolve("b"), Target::Rule(None));
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
        let matcher = Matcher::new(NO_HIDE, refs.iter().copied());
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
                    .find(|(_, k)| Glob::new(k, None).matches(name))
                    .map(|(i, _)| *i)
            };
            assert_eq!(matcher.rule(name), linear, "{name}");
        }
    }

    #[test]
    fn no_match_without_rule() {
        assert_eq!(best(&["whmcs_get_*"], "whmcs_update_ticket"), None);
    }
}
