//! The PV console (`io/console.h`): a page shared with xenconsoled holding an
//! input ring and an output ring, plus an event channel to notify it.
//!
//! We own `out_prod` and the output bytes; the backend owns `out_cons`. The
//! backend's index is read once per step and checked before use, so a
//! corrupt or hostile value is reported instead of trusted. When the ring is
//! full the writer waits for the backend, but not forever: a xenconsoled
//! that takes nothing for [`STALL_LIMIT_NS`] is taken to be stuck (a hung
//! dom0 console must not hang the guest). What cannot be
//! written then is dropped and counted, later writes are dropped at once
//! while the ring stays full, and once it has room again a line says how
//! many bytes were lost.

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

/// How long [`Console::write`] waits for a xenconsoled that takes nothing
/// before it gives up on it; one that takes anything starts the time again.
/// Long enough for a dom0 busy booting guests, short enough that a stopped
/// one costs the guest one pause rather than its life.
pub const STALL_LIMIT_NS: u64 = 5_000_000_000;

/// How long the backend has taken nothing, for one write's waits.
#[derive(Default)]
struct Stall {
    since: Option<u64>,
}

impl Stall {
    /// At `now` (ns), after a try that wrote something (`took`) or nothing: whether to wait
    /// on, that is whether the backend took anything within [`STALL_LIMIT_NS`].
    fn keep_waiting(&mut self, took: bool, now: u64) -> bool {
        let since = if took { *self.since.insert(now) } else { *self.since.get_or_insert(now) };
        now.saturating_sub(since) < STALL_LIMIT_NS
    }
}

/// The producer side of the output ring.
pub struct OutputRing<'a> {
    ring: Producer<'a, OUT_SIZE>,
    /// Bytes given up on and not yet reported; while non-zero the backend
    /// is taken to be stuck and writes do not wait.
    dropped: u64,
}

impl<'a> OutputRing<'a> {
    /// Takes over the output ring, continuing after what is already there.
    pub fn new(intf: &'a Interface) -> Self {
        OutputRing { ring: Producer::new(&intf.output, &intf.out_cons, &intf.out_prod), dropped: 0 }
    }

    /// Bytes written but not yet consumed by the backend.
    pub fn pending(&self) -> Result<u32, RingCorrupt> {
        self.ring.pending()
    }

    /// Copies as much of `bytes` as fits and publishes it; returns how much.
    pub fn write_some(&mut self, bytes: &[u8]) -> Result<usize, RingCorrupt> {
        self.ring.write_some(bytes)
    }

    /// Writes `bytes`, translating "\n" to "\r\n" for terminals, calling
    /// `wait(took)` whenever the ring is full, with `took` true if the last
    /// try wrote anything; drops and counts the rest once `wait` says to give
    /// up (false). Bytes dropped before are reported first, or, while the
    /// ring has no room for that line, these are dropped too.
    pub fn write_all(&mut self, bytes: &[u8], mut wait: impl FnMut(bool) -> bool) -> Result<(), RingCorrupt> {
        if self.dropped > 0 && !self.report_dropped()? {
            self.dropped += bytes.len() as u64;
            return Ok(());
        }
        let mut start = 0;
        for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
            // The "\n" before this line, and all after it.
            if i > 0 && self.write_fully(b"\r\n", &mut wait)? < 2 {
                self.dropped += (bytes.len() - start + 1) as u64;
                return Ok(());
            }
            let written = self.write_fully(line, &mut wait)?;
            if written < line.len() {
                self.dropped += (bytes.len() - start - written) as u64;
                return Ok(());
            }
            start += line.len() + 1;
        }
        Ok(())
    }

    /// Bytes dropped since the backend was last seen taking any, and not yet
    /// reported on the console.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Writes as much of `bytes` as the backend takes before it is stuck;
    /// returns how much.
    fn write_fully(
        &mut self,
        bytes: &[u8],
        wait: &mut impl FnMut(bool) -> bool,
    ) -> Result<usize, RingCorrupt> {
        let mut written = 0;
        while written < bytes.len() {
            let n = self.write_some(&bytes[written..])?;
            written += n;
            if written == bytes.len() || !wait(n > 0) {
                break;
            }
        }
        Ok(written)
    }

    /// Writes the line that says how many bytes were dropped, when it fits
    /// whole; true if it did.
    fn report_dropped(&mut self) -> Result<bool, RingCorrupt> {
        const HEAD: &[u8] = b"\r\n[console: ";
        const TAIL: &[u8] = b" bytes dropped]\r\n";
        // The count in decimal, written from the end (u64::MAX has 20 digits); no
        // formatting machinery, which the kernel's smallest images do without here.
        let mut line = [0u8; HEAD.len() + 20 + TAIL.len()];
        let mut at = HEAD.len() + 20;
        let mut n = self.dropped;
        loop {
            at -= 1;
            line[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        line[at - HEAD.len()..at].copy_from_slice(HEAD);
        line[HEAD.len() + 20..].copy_from_slice(TAIL);
        let line = &line[at - HEAD.len()..];
        if OUT_SIZE - (self.pending()? as usize) < line.len() {
            return Ok(false);
        }
        self.write_some(line)?;
        self.dropped = 0;
        Ok(true)
    }
}

/// The guest's PV console: the ring Xen set up plus its event channel.
pub struct Console {
    ring: OutputRing<'static>,
    port: Port,
    /// Monotonic nanoseconds, for [`STALL_LIMIT_NS`].
    now_ns: fn() -> u64,
}

/// Yields while waiting for the backend; bounds [`Console::flush`].
const FLUSH_MAX_YIELDS: u32 = 1_000_000;

impl Console {
    /// Finds the console Xen set up for this domain (`HVM_PARAM_CONSOLE_*`);
    /// `now_ns` is the clock its writes' waits are bounded by.
    pub fn from_hvm_params(now_ns: fn() -> u64) -> Result<Console, RingPageError> {
        let page = hvm::ring_page(hvm::Param::ConsolePfn, hvm::Param::ConsoleEvtchn)?;
        // SAFETY: Xen gave us this mapped frame as the console page; it is
        // never freed and only accessed through `Interface`'s atomics and
        // volatile accesses.
        let intf: &'static Interface = unsafe { &*(page.addr as *const Interface) };
        Ok(Console { ring: OutputRing::new(intf), port: page.port, now_ns })
    }

    /// Writes `bytes`, waiting for xenconsoled when the ring is full, for
    /// a bounded time ([`OutputRing::write_all`]).
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), RingCorrupt> {
        let (port, now_ns) = (self.port, self.now_ns);
        let mut stall = Stall::default();
        self.ring.write_all(bytes, |took| {
            if !stall.keep_waiting(took, now_ns()) {
                return false;
            }
            let _ = event::send(port);
            crate::sched::yield_now();
            true
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
        ring.write_all(&text, |_| {
            waits += 1;
            drain(&intf, &mut got);
            true
        })
        .unwrap();
        drain(&intf, &mut got);
        assert_eq!(got, text);
        // Full after each 2048 bytes but the last batch.
        assert_eq!(waits, 10_240 / OUT_SIZE - 1);
    }

    #[test]
    fn a_console_that_never_drains_costs_one_bounded_wait_and_the_loss_is_told() {
        let intf = Box::new(Interface::new());
        let mut ring = OutputRing::new(&intf);
        let text = [b'x'; OUT_SIZE + 100];
        // The first wait follows the ring's worth written; the writer gives up at the third
        // without progress.
        let mut took_at = Vec::new();
        ring.write_all(&text, |took| {
            took_at.push(took);
            took_at.len() < 4
        })
        .unwrap();
        assert_eq!(took_at, [true, false, false, false]);
        // Still stuck: later writes are dropped without waiting again.
        ring.write_all(b"more\n", |_| panic!("waited again on a console known to be stuck")).unwrap();
        assert_eq!(ring.dropped(), 105);
        // xenconsoled takes what was in the ring; the next write says what was lost.
        let mut got = Vec::new();
        drain(&intf, &mut got);
        assert_eq!(got, text[..OUT_SIZE]);
        ring.write_all(b"back\n", |_| panic!("the ring has room")).unwrap();
        got.clear();
        drain(&intf, &mut got);
        assert_eq!(got, b"\r\n[console: 105 bytes dropped]\r\nback\r\n");
    }

    #[test]
    fn a_write_waits_until_the_backend_has_taken_nothing_for_the_limit() {
        let mut stall = Stall::default();
        assert!(stall.keep_waiting(true, 1_000));
        assert!(stall.keep_waiting(false, 1_000 + STALL_LIMIT_NS - 1));
        // Progress starts the time again.
        assert!(stall.keep_waiting(true, 2 * STALL_LIMIT_NS));
        assert!(stall.keep_waiting(false, 3 * STALL_LIMIT_NS - 1));
        assert!(!stall.keep_waiting(false, 3 * STALL_LIMIT_NS));
        // A first wait without progress starts it too.
        let mut stall = Stall::default();
        assert!(stall.keep_waiting(false, 7));
        assert!(!stall.keep_waiting(false, 7 + STALL_LIMIT_NS));
    }

    #[test]
    fn the_loss_report_holds_any_count() {
        let intf = Box::new(Interface::new());
        let mut ring = OutputRing::new(&intf);
        for (count, text) in [(0, "0"), (7, "7"), (u64::MAX, "18446744073709551615")] {
            ring.dropped = count;
            assert!(ring.report_dropped().unwrap());
            let mut got = Vec::new();
            drain(&intf, &mut got);
            assert_eq!(got, format!("\r\n[console: {text} bytes dropped]\r\n").as_bytes());
        }
    }

    #[test]
    fn a_slow_console_loses_nothing() {
        let intf = Box::new(Interface::new());
        let mut ring = OutputRing::new(&intf);
        let text: Vec<u8> = (0..3 * OUT_SIZE).map(|i| b'a' + (i % 26) as u8).collect();
        let mut got = Vec::new();
        // The writer gives up after three waits in a row without progress; xenconsoled takes
        // its bytes at every third, just before.
        let (mut waits, mut idle) = (0, 0);
        ring.write_all(&text, |took| {
            waits += 1;
            idle = if took { 1 } else { idle + 1 };
            if waits % 3 == 0 {
                drain(&intf, &mut got);
            }
            idle <= 3
        })
        .unwrap();
        drain(&intf, &mut got);
        assert_eq!(got, text);
    }

    #[test]
    fn newlines_become_crlf() {
        let intf = Box::new(Interface::new());
        let mut ring = OutputRing::new(&intf);
        ring.write_all(b"a\nb\n", |_| panic!("ring is not full")).unwrap();
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
        ring.write_all(b"0123456789", |_| unreachable!()).unwrap();
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
