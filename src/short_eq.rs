//! Equality of short strings as a byte loop.
//!
//! `==` on slices calls `memcmp`. For the few bytes of a tool name, a glob's piece or a
//! scope id, that call measured at tens of nanoseconds in the engine's benchmarks on the
//! development machine (glibc's AVX-512 `memcmp`), more than the rest of a lookup; this
//! loop costs a few. Long inputs are rare on these paths (names are at most 512 bytes).

/// Whether `a` and `b` hold the same bytes.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn equal_only_when_every_byte_and_the_length_agree() {
        assert!(same(b"", b""));
        assert!(same(b"whmcs_get_", b"whmcs_get_"));
        assert!(!same(b"whmcs_get_", b"whmcs_get"));
        assert!(!same(b"a", b"b"));
        assert!(!same(b"", b"\0"));
    }
}
