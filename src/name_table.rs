//! A read-only hash table from names the policy defines to indexes.
//!
//! Tool-name lookup is on every call's path, so this table is built for it: open
//! addressing with linear probing at most half full, each slot keeping its key's hash so a
//! probe compares bytes only on a hash match, and a hash that reads eight bytes at a time.
//!
//! The hash is unkeyed. That is safe here because only the policy's own keys are inserted:
//! a caller only looks names up, so it cannot build colliding chains, and a lookup costs
//! at most the longest run of occupied slots, which the operator's keys fix. Tables filled
//! from caller-controlled ids, like the counter store, use std's keyed SipHash instead.

/// Names → indexes, built once.
#[derive(Debug, Clone, Default)]
pub(crate) struct NameTable {
    slots: Box<[Option<Slot>]>,
    len: usize,
}

#[derive(Debug, Clone)]
struct Slot {
    hash: u64,
    name: Box<str>,
    value: usize,
}

impl NameTable {
    /// A table of `entries`; a repeated name keeps its first value.
    pub(crate) fn new<'n>(entries: impl IntoIterator<Item = (&'n str, usize)>) -> NameTable {
        let entries: Vec<(&str, usize)> = entries.into_iter().collect();
        if entries.is_empty() {
            return NameTable::default();
        }
        let capacity = (entries.len() * 2).next_power_of_two();
        let mut table = NameTable {
            slots: (0..capacity).map(|_| None).collect(),
            len: 0,
        };
        for (name, value) in entries {
            table.insert(name, value);
        }
        table
    }

    fn insert(&mut self, name: &str, value: usize) {
        let hash = name_hash(name);
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        // At most half full, so a free slot is always found.
        for _ in 0..self.slots.len() {
            match self.slots.get_mut(i) {
                Some(slot @ None) => {
                    *slot = Some(Slot {
                        hash,
                        name: name.into(),
                        value,
                    });
                    self.len += 1;
                    return;
                }
                Some(Some(existing)) if existing.hash == hash && *existing.name == *name => return,
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// The value stored for `name`.
    pub(crate) fn get(&self, name: &str) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let hash = name_hash(name);
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        for _ in 0..self.slots.len() {
            let slot = self.slots.get(i)?.as_ref()?;
            if slot.hash == hash && *slot.name == *name {
                return Some(slot.value);
            }
            i = (i + 1) & mask;
        }
        None
    }
}

const MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

/// A fast multiply-fold hash over eight-byte words; the length seeds it, so names that
/// differ only by trailing zero bytes still differ.
fn name_hash(name: &str) -> u64 {
    let bytes = name.as_bytes();
    let mut hash = (bytes.len() as u64).wrapping_mul(MULTIPLIER);
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(word);
        hash = mix(hash, u64::from_le_bytes(buf));
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut buf = [0u8; 8];
        if let Some(prefix) = buf.get_mut(..rest.len()) {
            prefix.copy_from_slice(rest);
        }
        hash = mix(hash, u64::from_le_bytes(buf));
    }
    // Fold the high bits down: the table indexes with the low ones.
    hash ^ (hash >> 29)
}

fn mix(hash: u64, word: u64) -> u64 {
    let product = u128::from(hash ^ word) * u128::from(MULTIPLIER);
    (product as u64) ^ ((product >> 64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_name_and_nothing_else() {
        let names: Vec<String> = (0..1000).map(|i| format!("tool_{i}")).collect();
        let table = NameTable::new(names.iter().enumerate().map(|(i, n)| (n.as_str(), i)));
        for (i, name) in names.iter().enumerate() {
            assert_eq!(table.get(name), Some(i));
        }
        for miss in ["", "tool_", "tool_1000", "tool_1\0", "x"] {
            assert_eq!(table.get(miss), None, "{miss:?}");
        }
    }

    #[test]
    fn the_first_of_repeated_names_wins_and_empty_tables_find_nothing() {
        let table = NameTable::new([("a", 1), ("a", 2), ("", 3)]);
        assert_eq!(table.get("a"), Some(1));
        assert_eq!(table.get(""), Some(3));
        assert_eq!(NameTable::new([]).get("a"), None);
        assert_eq!(NameTable::default().get(""), None);
    }
}
