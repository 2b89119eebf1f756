//! One direction of a byte ring shared with another domain: a power-of-two
//! buffer plus free-running `u32` producer and consumer indices, the byte
//! in the stream at index `x` living at `x % N` (`io/console.h`,
//! `io/xs_wire.h`, `docs/misc/xenstore-ring.txt`).
//!
//! Each side keeps its own index privately and only publishes it, so a peer
//! scribbling over our index cannot confuse us. The peer's index is read
//! once per step and checked: more than `N` bytes in flight is reported as
//! [`RingCorrupt`], never used to index the buffer.

use core::cell::UnsafeCell;
use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};

/// The peer broke the ring's invariant: more bytes in flight than fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingCorrupt {
    pub cons: u32,
    pub prod: u32,
}

impl fmt::Display for RingCorrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shared ring corrupt: cons={:#x} prod={:#x}", self.cons, self.prod)
    }
}

/// A ring's bytes inside a shared page.
#[repr(transparent)]
pub struct SharedBytes<const N: usize>(UnsafeCell<[u8; N]>);

// SAFETY: the bytes are shared with another domain by design, so concurrent
// access is the normal case: we only touch them with volatile accesses to
// the slots the ring's indices currently give our side.
unsafe impl<const N: usize> Sync for SharedBytes<N> {}

impl<const N: usize> SharedBytes<N> {
    /// Zeroed bytes, as in a fresh page (host tests use it too).
    pub const fn new() -> Self {
        SharedBytes(UnsafeCell::new([0; N]))
    }
}

impl<const N: usize> Default for SharedBytes<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// The buffer and both indices of one direction, as laid out in the page.
struct Ring<'a, const N: usize> {
    buf: &'a SharedBytes<N>,
    cons: &'a AtomicU32,
    prod: &'a AtomicU32,
}

impl<const N: usize> Ring<'_, N> {
    const MASK: u32 = {
        assert!(N.is_power_of_two() && N <= 1 << 31);
        N as u32 - 1
    };

    /// Bytes in flight between `cons` and `prod`, or the corruption.
    fn used(cons: u32, prod: u32) -> Result<u32, RingCorrupt> {
        let used = prod.wrapping_sub(cons);
        if used > Self::MASK + 1 {
            return Err(RingCorrupt { cons, prod });
        }
        Ok(used)
    }

    /// The slot of stream index `idx`; masking keeps it inside the buffer.
    fn slot(&self, idx: u32) -> *mut u8 {
        self.buf.0.get().cast::<u8>().wrapping_add((idx & Self::MASK) as usize)
    }
}

/// Our side of a direction we write into.
pub struct Producer<'a, const N: usize> {
    ring: Ring<'a, N>,
    prod: u32,
}

impl<'a, const N: usize> Producer<'a, N> {
    /// Takes over writing, continuing after what is already there.
    pub fn new(buf: &'a SharedBytes<N>, cons: &'a AtomicU32, prod: &'a AtomicU32) -> Self {
        let start = prod.load(Ordering::Relaxed);
        Producer { ring: Ring { buf, cons, prod }, prod: start }
    }

    /// Bytes written but not yet consumed by the peer.
    pub fn pending(&self) -> Result<u32, RingCorrupt> {
        // Acquire: the peer is done reading the slots it has released.
        Ring::<N>::used(self.ring.cons.load(Ordering::Acquire), self.prod)
    }

    /// Copies as much of `bytes` as fits and publishes it; returns how much.
    pub fn write_some(&mut self, bytes: &[u8]) -> Result<usize, RingCorrupt> {
        let free = N - self.pending()? as usize;
        let n = free.min(bytes.len());
        for (i, &b) in bytes[..n].iter().enumerate() {
            let slot = self.ring.slot(self.prod.wrapping_add(i as u32));
            // SAFETY: the slot is inside the buffer, and slots between prod
            // and cons + N are ours until the new prod is published below.
            unsafe { slot.write_volatile(b) };
        }
        self.prod = self.prod.wrapping_add(n as u32);
        // Release: the bytes above are visible before the new index.
        self.ring.prod.store(self.prod, Ordering::Release);
        Ok(n)
    }
}

/// Our side of a direction we read from.
pub struct Consumer<'a, const N: usize> {
    ring: Ring<'a, N>,
    cons: u32,
}

impl<'a, const N: usize> Consumer<'a, N> {
    /// Takes over reading, starting at what has not been consumed yet.
    pub fn new(buf: &'a SharedBytes<N>, cons: &'a AtomicU32, prod: &'a AtomicU32) -> Self {
        let start = cons.load(Ordering::Relaxed);
        Consumer { ring: Ring { buf, cons, prod }, cons: start }
    }

    /// Copies out as much as has arrived and fits in `out`, releasing those
    /// slots to the peer; returns how much.
    pub fn read_some(&mut self, out: &mut [u8]) -> Result<usize, RingCorrupt> {
        // Acquire: the bytes the peer published are visible after the index.
        let available = Ring::<N>::used(self.cons, self.ring.prod.load(Ordering::Acquire))?;
        let n = out.len().min(available as usize);
        for (i, b) in out[..n].iter_mut().enumerate() {
            let slot = self.ring.slot(self.cons.wrapping_add(i as u32));
            // SAFETY: the slot is inside the buffer, and slots between cons
            // and prod hold published bytes the peer will not touch until
            // the new cons is published below.
            *b = unsafe { slot.read_volatile() };
        }
        self.cons = self.cons.wrapping_add(n as u32);
        // Release: our reads are done before the peer may reuse the slots.
        self.ring.cons.store(self.cons, Ordering::Release);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Shared {
        buf: SharedBytes<8>,
        cons: AtomicU32,
        prod: AtomicU32,
    }

    fn shared(start: u32) -> Shared {
        Shared { buf: SharedBytes::new(), cons: AtomicU32::new(start), prod: AtomicU32::new(start) }
    }

    #[test]
    fn bytes_cross_the_buffer_end_and_u32_wrap_in_order() {
        let s = shared(u32::MAX - 2);
        let mut tx = Producer::new(&s.buf, &s.cons, &s.prod);
        let mut rx = Consumer::new(&s.buf, &s.cons, &s.prod);
        let mut got = Vec::new();
        let mut out = [0u8; 5];
        for chunk in b"abcdefghijklmnopqrstuvwxyz".chunks(5) {
            assert_eq!(tx.write_some(chunk), Ok(chunk.len()));
            let n = rx.read_some(&mut out).unwrap();
            got.extend_from_slice(&out[..n]);
        }
        assert_eq!(got, b"abcdefghijklmnopqrstuvwxyz");
        assert_eq!(s.prod.load(Ordering::Relaxed), (u32::MAX - 2).wrapping_add(26));
    }

    #[test]
    fn a_full_ring_takes_nothing_more() {
        let s = shared(0);
        let mut tx = Producer::new(&s.buf, &s.cons, &s.prod);
        assert_eq!(tx.write_some(b"0123456789"), Ok(8));
        assert_eq!(tx.write_some(b"x"), Ok(0));
        assert_eq!(tx.pending(), Ok(8));
    }

    #[test]
    fn a_runaway_producer_index_is_an_error_and_nothing_is_read() {
        let s = shared(0);
        let mut rx = Consumer::new(&s.buf, &s.cons, &s.prod);
        s.prod.store(9, Ordering::Relaxed);
        let mut out = [0u8; 16];
        assert_eq!(rx.read_some(&mut out), Err(RingCorrupt { cons: 0, prod: 9 }));
        assert_eq!(s.cons.load(Ordering::Relaxed), 0);
    }
}
