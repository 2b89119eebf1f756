//! The grant-reference allocator: which entries of the table are ours to
//! hand out, one bit per reference.
//!
//! Reserved references and the padding past the table's end are marked used
//! from the start and can never be freed, so the search for a free bit can
//! never return them.

use super::{GrantError, GrantRef, RESERVED_ENTRIES};
use alloc::vec;
use alloc::vec::Vec;

pub(crate) struct RefAllocator {
    /// Bit `r % 64` of word `r / 64` is set while reference `r` is taken.
    used: Vec<u64>,
    /// Number of entries in the table.
    capacity: u32,
    /// Word where the next search starts, so allocation does not rescan the
    /// full words at the front every time.
    next: usize,
}

impl RefAllocator {
    /// An allocator for a table of `capacity` entries, all free but the
    /// reserved ones.
    pub(crate) fn new(capacity: u32) -> Self {
        let words = capacity.div_ceil(64) as usize;
        let mut refs = RefAllocator { used: vec![0; words], capacity, next: 0 };
        let padding = capacity..words as u32 * 64;
        for r in (0..RESERVED_ENTRIES.min(capacity)).chain(padding) {
            refs.set(r, true);
        }
        refs
    }

    /// Takes a free reference, or `None` when all are taken.
    pub(crate) fn alloc(&mut self) -> Option<GrantRef> {
        let words = self.used.len();
        let w = (0..words).map(|i| (self.next + i) % words).find(|&w| self.used[w] != u64::MAX)?;
        let r = w as u32 * 64 + self.used[w].trailing_ones();
        self.set(r, true);
        self.next = w;
        Some(GrantRef(r))
    }

    /// Checks that `r` is a reference this allocator handed out and that has
    /// not been freed since.
    pub(crate) fn check_taken(&self, r: GrantRef) -> Result<(), GrantError> {
        if r.0 < RESERVED_ENTRIES {
            Err(GrantError::Reserved(r))
        } else if r.0 >= self.capacity {
            Err(GrantError::OutOfRange(r))
        } else if !self.is_set(r.0) {
            Err(GrantError::NotGranted(r))
        } else {
            Ok(())
        }
    }

    /// Returns `r` to the pool; rejects anything [`Self::check_taken`] does.
    pub(crate) fn free(&mut self, r: GrantRef) -> Result<(), GrantError> {
        self.check_taken(r)?;
        self.set(r.0, false);
        Ok(())
    }

    fn is_set(&self, r: u32) -> bool {
        self.used[r as usize / 64] & (1 << (r % 64)) != 0
    }

    fn set(&mut self, r: u32, taken: bool) {
        let word = &mut self.used[r as usize / 64];
        if taken {
            *word |= 1 << (r % 64);
        } else {
            *word &= !(1 << (r % 64));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn drain(refs: &mut RefAllocator) -> Vec<u32> {
        core::iter::from_fn(|| refs.alloc()).map(|r| r.0).collect()
    }

    #[test]
    fn hands_out_every_unreserved_ref_once_then_runs_out() {
        // 100 is not a multiple of 64: the last word has padding bits.
        let mut refs = RefAllocator::new(100);
        let mut got = drain(&mut refs);
        got.sort();
        assert_eq!(got, (RESERVED_ENTRIES..100).collect::<Vec<_>>());
        assert_eq!(refs.alloc(), None);
    }

    #[test]
    fn tables_too_small_for_more_than_the_reserved_refs_have_none() {
        for capacity in [0, 1, RESERVED_ENTRIES] {
            assert_eq!(RefAllocator::new(capacity).alloc(), None, "capacity {capacity}");
        }
        assert_eq!(drain(&mut RefAllocator::new(RESERVED_ENTRIES + 1)), [RESERVED_ENTRIES]);
    }

    #[test]
    fn a_freed_ref_is_reused_when_the_rest_are_taken() {
        let mut refs = RefAllocator::new(512);
        drain(&mut refs);
        refs.free(GrantRef(300)).unwrap();
        assert_eq!(refs.alloc(), Some(GrantRef(300)));
        assert_eq!(refs.alloc(), None);
    }

    #[test]
    fn double_free_is_rejected() {
        let mut refs = RefAllocator::new(64);
        let r = refs.alloc().unwrap();
        refs.free(r).unwrap();
        assert_eq!(refs.free(r), Err(GrantError::NotGranted(r)));
        assert_eq!(refs.free(GrantRef(40)), Err(GrantError::NotGranted(GrantRef(40))));
    }

    #[test]
    fn reserved_and_out_of_range_refs_cannot_be_freed() {
        let mut refs = RefAllocator::new(100);
        drain(&mut refs);
        for r in [0, 1, RESERVED_ENTRIES - 1] {
            assert_eq!(refs.free(GrantRef(r)), Err(GrantError::Reserved(GrantRef(r))));
        }
        // 100..128 are padding bits, set like taken refs; they must not pass.
        for r in [100, 127, 128, u32::MAX] {
            assert_eq!(refs.free(GrantRef(r)), Err(GrantError::OutOfRange(GrantRef(r))));
        }
        assert_eq!(refs.alloc(), None);
    }

    #[test]
    fn random_alloc_and_free_match_a_model() {
        let mut refs = RefAllocator::new(200);
        let mut taken = BTreeSet::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            if seed.is_multiple_of(3) && !taken.is_empty() {
                let r = *taken.iter().nth(seed as usize / 3 % taken.len()).unwrap();
                refs.free(GrantRef(r)).unwrap();
                taken.remove(&r);
            } else {
                match refs.alloc() {
                    Some(r) => assert!(r.0 >= RESERVED_ENTRIES && r.0 < 200 && taken.insert(r.0)),
                    None => assert_eq!(taken.len(), 200 - RESERVED_ENTRIES as usize),
                }
            }
        }
    }
}
