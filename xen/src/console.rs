//! The PV console (`io/console.h`): a page shared with xenconsoled holding an
//! input ring and an output ring, plus an event channel to notify it.
//!
//! We own `out_prod` and the output bytes; the backend owns `out_cons`. The
//! backend's index is read once per step and checked before use, so a
//! corrupt or hostile value is reported instead of trusted. Writes never drop
//! bytes: when the ring is full the writer waits for the backend.

use crate::event::{self, Port};
use crate::hvm::{self, RingPageError};
use crate::ring::{Producer, RingCorrupt, SharedBytes};
use core::sync::atomic::AtomicU32;

const IN_SIZE: usize = 1024;
const OUT_SIZE: usize = 2048;

/// `struct xencons_interface`.
#[repr(C)]
pub struct Interface {
    input: SharedBytes<IN_SIZE>,
    output: SharedBytes<OUT_SIZE>,
    in_cons: AtomicU32,
    in_prod: AtomicU32,
    out_cons: AtomicU32,
    out_prod: AtomicU32,
}

impl Interface {
    /// A blank interface, as Xen hands it over (host tests use it too).
    pub const fn new() -> Self {
        Interface {
            input: SharedBytes::new(),
            output: SharedBytes::new(),
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

/// The producer side of the output ring.
pub struct OutputRing<'a> {
    ring: Producer<'a, OUT_SIZE>,
}

impl<'a> OutputRing<'a> {
    /// Takes over the output ring, continuing after what is already there.
    pub fn new(intf: &'a Interface) -> Self {
        OutputRing { ring: Producer::new(&intf.output, &intf.out_cons, &intf.out_prod) }
    }

    /// Bytes written but not yet consumed by the backend.
    pub fn pending(&self) -> Result<u32, RingCorrupt> {
        self.ring.pending()
    }

    /// Copies as much of `bytes` as fits and publishes it; returns how much.
    pub fn write_some(&mut self, bytes: &[u8]) -> Result<usize, RingCorrupt> {
        self.ring.write_some(bytes)
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

/// Yields while waiting for the backend; bounds [`Console::flush`].
const FLUSH_MAX_YIELDS: u32 = 1_000_000;

impl Console {
    /// Finds the console Xen set up for this domain (`HVM_PARAM_CONSOLE_*`).
    pub fn from_hvm_params() -> Result<Console, RingPageError> {
        let page = hvm::ring_page(hvm::Param::ConsolePfn, hvm::Param::ConsoleEvtchn)?;
        // SAFETY: Xen gave us this mapped frame as the console page; it is
        // never freed and only accessed through `Interface`'s atomics and
        // volatile accesses.
        let intf: &'static Interface = unsafe { &*(page.addr as *const Interface) };
        Ok(Console { ring: OutputRing::new(intf), port: page.port })
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
    use crate::ring::Consumer;
    use core::sync::atomic::Ordering;

    /// Plays xenconsoled: consumes everything pending into `sink`.
    fn drain(intf: &Interface, sink: &mut Vec<u8>) {
        let mut backend = Consumer::new(&intf.output, &intf.out_cons, &intf.out_prod);
        let mut buf = [0; OUT_SIZE];
        let n = backend.read_some(&mut buf).unwrap();
        sink.extend_from_slice(&buf[..n]);
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
        assert_eq!(waits, 10_240 / OUT_SIZE - 1);
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
