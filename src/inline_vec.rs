//! A short list kept on the stack, spilling to the heap only when long.

/// Up to `N` items on the stack; more spill into a `Vec`. Lets the hot path handle the
/// usual handful of limits per call without allocating, yet accept any number.
#[derive(Debug, Clone)]
pub(crate) struct InlineVec<T: Copy, const N: usize> {
    inline: [T; N],
    len: usize,
    heap: Vec<T>,
}

impl<T: Copy, const N: usize> InlineVec<T, N> {
    /// An empty list; `filler` only initializes unused stack slots and is never read.
    pub(crate) fn new(filler: T) -> Self {
        InlineVec {
            inline: [filler; N],
            len: 0,
            heap: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, item: T) {
        if let Some(slot) = self.inline.get_mut(self.len) {
            *slot = item;
        } else {
            if self.heap.is_empty() {
                self.heap.extend_from_slice(&self.inline);
            }
            self.heap.push(item);
        }
        self.len += 1;
    }

    pub(crate) fn as_slice(&self) -> &[T] {
        if self.len <= N {
            self.inline.get(..self.len).unwrap_or_default()
        } else {
            &self.heap
        }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [T] {
        if self.len <= N {
            self.inline.get_mut(..self.len).unwrap_or_default()
        } else {
            &mut self.heap
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_across_the_spill() {
        let mut list = InlineVec::<u32, 2>::new(0);
        assert!(list.as_slice().is_empty());
        for i in 1..=5 {
            list.push(i);
            assert_eq!(list.as_slice(), (1..=i).collect::<Vec<_>>());
        }
        list.as_mut_slice().reverse();
        assert_eq!(list.as_slice(), [5, 4, 3, 2, 1]);
    }
}
