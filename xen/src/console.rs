//! The PV console (`io/console.h`): a page shared with xenconsoled holding an
//! input ring and an output ring, plus an event channel to notify it.
//!
//! We own `out_prod` and the output bytes; the backend owns `out_cons`. The
//! backend's index is read once per step and checked before use, so a
//! corrupt or hostile value is reported instead of trusted. Writes never drop
//! bytes: when the ring is full the writer waits for the backend.

use crate::event::{self, Port};
use crate::hvm;
use crate::XenError;
use core::cell::UnsafeCell;
use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};

const IN_SIZE: usize = 1024;
const OUT_SIZE: u32 = 2048;

/// `struct xencons_interface`.
#[repr(C)]
pub struct Interface {
    input: UnsafeCell<[u8; IN_SIZE]>,
    output: UnsafeCell<[u8; OUT_SIZE as usize]>,
    in_cons: AtomicU32,
    in_prod: AtomicU32,
    out_cons: AtomicU32,
    out_prod: AtomicU32,
}

// SAFETY: the page is shared memory by design; every access goes through
// atomics (indices) or volatile writes to bytes the backend does not read
// until `out_prod` is published.
unsafe impl Sync for Interface {}

impl Interface {
    /// A blank interface, as Xen hands it over (host tests use it too).
    pub const fn new() -> Self {
        Interface {
            input: UnsafeCell::new([0; IN_SIZE]),
            output: UnsafeCell::new([0; OUT_SIZE as usize]),
            in_cons: AtomicU32::new(0),
            in_prod: AtomicU32::new(0),
            out_cons: AtomicU32::new(0),
            out_prod: AtomicU32::new(0),
        }
    }
}

impl Default for Interface {
    fn default() -> Self {
        Self::new()
    }
}

/// The backend broke the ring's invariant: more bytes in flight than fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingCorrupt {
    pub cons: u32,
    pub prod: u32,
}

impl fmt::Display for RingCorrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "console ring corrupt: out_cons={:#x} out_prod={:#x}", self.cons, self.prod)
    }
}

/// The producer side of the output ring.
pub struct OutputRing<'a> {
    intf: &'a Interface,
    prod: u32,
}

impl<'a> OutputRing<'a> {
    /// Takes over the output ring, continuing after what is already there.
    pub fn new(intf: &'a Interface) -> Self {
        let prod = intf.out_prod.load(Ordering::Relaxed);
        OutputRing { intf, prod }
    }

    /// Bytes written but not yet consumed by the backend.
    pub fn pending(&self) -> Result<u32, RingCorrupt> {
        let cons = self.intf.out_cons.load(Ordering::Acquire);
        let used = self.prod.wrapping_sub(cons);
        if used > OUT_SIZE {
            return Err(RingCorrupt { cons, prod: self.prod });
        }
        Ok(used)
    }

    /// Copies as much of `bytes` as fits and publishes it; returns how much.
    pub fn write_some(&mut self, bytes: &[u8]) -> Result<usize, RingCorrupt> {
        let free = (OUT_SIZE - self.pending()?) as usize;
        let n = free.min(bytes.len());
        let out = self.intf.output.get().cast::<u8>();
        for (i, &b) in bytes[..n].iter().enumerate() {
            let idx = self.prod.wrapping_add(i as u32) & (OUT_SIZE - 1);
            // SAFETY: idx < OUT_SIZE, and slots between prod and cons + size
            // are ours until out_prod is published below.
            unsafe { out.add(idx as usize).write_volatile(b) };
        }
        self.prod = self.prod.wrapping_add(n as u32);
        // Release: the bytes above are visible before the new index.
        self.intf.out_prod.store(self.prod, Ordering::Release);
        Ok(n)
    }

    /// Writes all of `bytes`, translating "\n" to "\r\n" for terminals,
    /// calling `wait` whenever the ring is full.
    pub fn write_all(&mut self, bytes: &[u8], mut wait: impl FnMut()) -> Result<(), RingCorrupt> {
        for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                self.write_fully(b"\r\n", &mut wait)?;
            }
            self.write_fully(line, &mut wait)?;
        }
        Ok(())
    }

    fn write_fully(&mut self, mut bytes: &[u8], wait: &mut impl FnMut()) -> Result<(), RingCorrupt> {
        while !bytes.is_empty() {
            let n = self.write_some(bytes)?;
            bytes = &bytes[n..];
            if !bytes.is_empty() {
                wait();
            }
        }
        Ok(())
    }
}

/// The guest's PV console: the ring Xen set up plus its event channel.
pub struct Console {
    ring: OutputRing<'static>,
    port: Port,
}

/// Why the console could not be set up.
#[derive(Debug, Clone, Copy)]
pub enum ConsoleError {
    Param(XenError),
    /// The ring's frame lies outside the identity-mapped first 4 GiB.
    Unmapped(u64),
}

impl fmt::Display for ConsoleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsoleError::Param(e) => write!(f, "reading console HVM params: {e}"),
            ConsoleError::Unmapped(pfn) => write!(f, "console ring pfn {pfn:#x} is not mapped"),
        }
    }
}

/// Yields while waiting for the backend; bounds [`Console::flush`].
const FLUSH_MAX_YIELDS: u32 = 1_000_000;

impl Console {
    /// Finds the console Xen set up for this domain (`HVM_PARAM_CONSOLE_*`).
    pub fn from_hvm_params() -> Result<Console, ConsoleError> {
        let pfn = hvm::get(hvm::Param::ConsolePfn).map_err(ConsoleError::Param)?;
        let port = hvm::get(hvm::Param::ConsoleEvtchn).map_err(ConsoleError::Param)?;
        if pfn == 0 || pfn >= 1 << 20 {
            return Err(ConsoleError::Unmapped(pfn));
        }
        // SAFETY: Xen gave us this frame as the console page; it lies in the
        // identity-mapped first 4 GiB (checked above), is never freed, and is
        // only accessed through `Interface`'s atomics and volatile writes.
        let intf: &'static Interface = unsafe { &*((pfn << 12) as *const Interface) };
        Ok(Console { ring: OutputRing::new(intf), port: Port(port as u32) })
    }

    /// Writes all of `bytes`, waiting for xenconsoled when the ring is full.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), RingCorrupt> {
        let port = self.port;
        self.ring.write_all(bytes, || {
            let _ = event::send(port);
            crate::sched::yield_now();
        })?;
        let _ = event::send(port);
        Ok(())
    }

    /// Waits (bounded) until xenconsoled has taken everything written, so
    /// that output is not lost when the domain is destroyed right after.
    /// Returns whether the ring drained.
    pub fn flush(&mut self) -> bool {
        for _ in 0..FLUSH_MAX_YIELDS {
            match self.ring.pending() {
                Ok(0) => return true,
                Ok(_) => crate::sched::yield_now(),
                Err(_) => return false,
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plays xenconsoled: consumes everything pending into `sink`.
    fn drain(intf: &Interface, sink: &mut Vec<u8>) {
        let prod = intf.out_prod.load(Ordering::Acquire);
        let mut cons = intf.out_cons.load(Ordering::Relaxed);
        let out = unsafe { &*intf.output.get() };
        while cons != prod {
            sink.push(out[(cons & (OUT_SIZE - 1)) as usize]);
            cons = cons.wrapping_add(1);
        }
        intf.out_cons.store(cons, Ordering::Release);
    }

    #[test]
    fn long_write_waits_for_backend_and_arrives_whole() {
        let intf = Box::new(Interface::new());
        let mut ring = OutputRing::new(&intf);
        let text: Vec<u8> = (0..10_240).map(|i| b'a' + (i % 26) as u8).collect();
        let mut got = Vec::new();
        let mut waits = 0;
        ring.write_all(&text, || {
            waits += 1;
            drain(&intf, &mut got);
        })
        .unwrap();
        drain(&intf, &mut got);
        assert_eq!(got, text);
        // Full after each 2048 bytes but the last batch.
        assert_eq!(waits, 10_240 / OUT_SIZE as usize - 1);
    }

    #[test]
    fn newlines_become_crlf() {
        let intf = Box::new(Interface::new());
        let mut ring = OutputRing::new(&intf);
        ring.write_all(b"a\nb\n", || panic!("ring is not full")).unwrap();
        let mut got = Vec::new();
        drain(&intf, &mut got);
        assert_eq!(got, b"a\r\nb\r\n");
    }

    #[test]
    fn indices_wrap_around_u32() {
        let intf = Box::new(Interface::new());
        intf.out_prod.store(u32::MAX - 5, Ordering::Relaxed);
        intf.out_cons.store(u32::MAX - 5, Ordering::Relaxed);
        let mut ring = OutputRing::new(&intf);
        let mut got = Vec::new();
        ring.write_all(b"0123456789", || unreachable!()).unwrap();
        drain(&intf, &mut got);
        assert_eq!(got, b"0123456789");
        assert_eq!(ring.pending(), Ok(0));
    }

    #[test]
    fn hostile_consumer_index_is_an_error() {
        let intf = Box::new(Interface::new());
        let mut ring = OutputRing::new(&intf);
        ring.write_some(b"abc").unwrap();
        // A consumer index ahead of the producer means > 2048 bytes in flight.
        intf.out_cons.store(100, Ordering::Relaxed);
        assert_eq!(ring.write_some(b"x"), Err(RingCorrupt { cons: 100, prod: 3 }));
        assert!(ring.pending().is_err());
    }
}
