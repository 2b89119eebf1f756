//! Test-only mote driven by `test=` on the command line; the integration
//! tests (`cargo xtask test`) check what it prints and how it ends.
//!
//! - `test=panic`: panics (the report and a crash are expected).
//! - `test=pagefault`: reads an unmapped address (an exception report naming
//!   CR2 and a crash are expected).
//! - `test=longline len=N`: prints one line of N characters, then powers off.
//! - `test=sleep ms=N count=C`: sleeps N ms (default 1000) C times (default 1)
//!   and prints the longest and shortest sleep the PV clock measured, and the
//!   wall clock before and after.
//! - `test=idle secs=N`: sleeps N s (default 15) so the host can check that
//!   an idle mote uses no CPU time.
//! - `test=xenstore`: prints its domid and name from xenstore, writes
//!   `data/from-guest`, then waits on a watch until dom0 writes
//!   `data/from-dom0`, and prints that value.
//! - `test=timer`: waits until dom0 writes `data/go`, then writes
//!   `data/timer` = `start`, sleeps 1 s, writes `end`; dom0 times the two
//!   writes with its own clock.
//! - `test=async`: on the executor, three tasks sleep 300, 100 and 200 ms
//!   while a 50 ms timeout cuts a 10 s sleep short; prints whether the
//!   timeout fired and the order the tasks woke in.
//! - `test=wait`: waits for `xl shutdown` or `xl reboot`, says which, and
//!   returns (the runtime then ends the domain as asked).
#![no_std]
#![no_main]

use core::fmt;
use core::time::Duration;
extern crate alloc;

use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use mote::xenstore::{Errno, Store, Xenstore, XsError};
use mote::Instant;

impl From<XsError> for Error {
    fn from(e: XsError) -> Self {
        Error::Xenstore(e)
    }
}

mote::main!(main);

/// Far above the identity-mapped first 4 GiB.
const UNMAPPED: u64 = 0x40_0000_0000;

const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

#[derive(Debug)]
enum Error {
    Xenstore(XsError),
    NoXenstore,
    MissingTest,
    UnknownTest(&'static str),
    BadNumber(&'static str, &'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Xenstore(e) => write!(f, "xenstore: {e}"),
            Error::NoXenstore => f.write_str("this domain has no xenstore connection"),
            Error::MissingTest => f.write_str("no test= on the command line"),
            Error::UnknownTest(t) => write!(f, "unknown test {t:?}"),
            Error::BadNumber(key, v) => write!(f, "{key}={v:?} is not a number"),
        }
    }
}

fn main() -> Result<(), Error> {
    let cmdline = mote::cmdline();
    match cmdline.get("test").ok_or(Error::MissingTest)? {
        "panic" => panic!("deliberate panic from selftest"),
        "pagefault" => {
            // SAFETY: deliberately unsound: the read must fault.
            let value = unsafe { core::ptr::read_volatile(UNMAPPED as *const u64) };
            mote::println!("read {value:#x} from an unmapped address?!");
            Ok(())
        }
        "longline" => {
            long_line(number("len", 10_240)? as usize);
            mote::println!("longline done");
            Ok(())
        }
        "sleep" => {
            let ms = number("ms", 1000)?;
            let count = number("count", 1)?;
            let (sec, nsec) = mote::wallclock();
            mote::println!("sleep: {count} x {ms} ms from wallclock {sec}.{nsec:09}");
            let (mut min, mut max) = (u128::MAX, 0);
            for _ in 0..count {
                let start = Instant::now();
                mote::sleep(Duration::from_millis(ms));
                let slept = start.elapsed().as_nanos();
                min = min.min(slept);
                max = max.max(slept);
            }
            let (sec, nsec) = mote::wallclock();
            mote::println!("sleep: slept {max} ns (shortest {min} ns), wallclock {sec}.{nsec:09}");
            Ok(())
        }
        "idle" => {
            let secs = number("secs", 15)?;
            mote::println!("idle: sleeping {secs} s");
            mote::sleep(Duration::from_secs(secs));
            mote::println!("idle: done");
            Ok(())
        }
        "xenstore" => xenstore(|xs| {
            let domid = xs.domid()?;
            let name = xs.name()?;
            mote::println!("xenstore: domid={} name={name}", domid.0);
            xs.write("data/from-guest", b"written by selftest")?;
            mote::println!("xenstore: wrote data/from-guest");
            let value = wait_for_value(xs, "data/from-dom0")?;
            mote::println!("xenstore: dom0 wrote {value}");
            Ok(())
        }),
        "timer" => xenstore(|xs| {
            mote::println!("timer: waiting for dom0");
            wait_for_value(xs, "data/go")?;
            let start = Instant::now();
            xs.write("data/timer", b"start")?;
            mote::sleep(Duration::from_secs(1));
            let slept = start.elapsed();
            xs.write("data/timer", b"end")?;
            mote::println!("timer: slept {} ns", slept.as_nanos());
            Ok(())
        }),
        "async" => {
            let woke = Rc::new(RefCell::new(Vec::new()));
            let start = Instant::now();
            let timed_out = mote::block_on(async {
                for ms in [300, 100, 200] {
                    let woke = woke.clone();
                    mote::spawn(async move {
                        mote::time::sleep(Duration::from_millis(ms)).await;
                        woke.borrow_mut().push(ms);
                    });
                }
                let cut = mote::time::timeout(
                    Duration::from_millis(50),
                    mote::time::sleep(Duration::from_secs(10)),
                );
                let timed_out = cut.await.is_err();
                mote::time::sleep(Duration::from_millis(400)).await;
                timed_out
            });
            mote::println!("async: timeout fired: {timed_out}");
            mote::println!(
                "async: woke in order {:?} within {} ms",
                woke.borrow(),
                start.elapsed().as_millis()
            );
            Ok(())
        }
        "wait" => {
            mote::println!("wait: waiting for shutdown");
            let request = mote::wait_for_shutdown();
            mote::println!("wait: {request:?} requested");
            Ok(())
        }
        other => Err(Error::UnknownTest(other)),
    }
}

/// Runs `f` with the xenstore client.
fn xenstore(f: impl FnOnce(&mut Xenstore) -> Result<(), Error>) -> Result<(), Error> {
    mote::xenstore::with(f).ok_or(Error::NoXenstore)?
}

/// Watches `path` until it holds a non-empty value; returns the value.
fn wait_for_value(xs: &mut Xenstore, path: &str) -> Result<String, Error> {
    let watch = xs.watch(path, path)?;
    mote::println!("xenstore: watching {path}");
    loop {
        // The first event comes at once; later ones when the node changes.
        xs.wait_event(watch)?;
        match xs.read_string(path) {
            Ok(v) if !v.is_empty() => {
                xs.unwatch(watch)?;
                return Ok(v);
            }
            Ok(_) | Err(XsError::Xen(Errno::NoEnt)) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// The command line's `key` as a number, or `default` when absent.
fn number(key: &'static str, default: u64) -> Result<u64, Error> {
    match mote::cmdline().get_parsed::<u64>(key) {
        None => Ok(default),
        Some(Ok(n)) => Ok(n),
        Some(Err(v)) => Err(Error::BadNumber(key, v)),
    }
}

/// Prints `LONGLINE ` and `len` characters cycling through [`ALPHABET`] as
/// one line, in pieces, without the heap.
fn long_line(len: usize) {
    let mut chunk = [0u8; 360];
    for (i, b) in chunk.iter_mut().enumerate() {
        *b = ALPHABET[i % ALPHABET.len()];
    }
    mote::print!("LONGLINE ");
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        // The chunk length is a multiple of 36, so every piece starts at '0'.
        mote::print!("{}", core::str::from_utf8(&chunk[..n]).unwrap_or_default());
        left -= n;
    }
    mote::println!();
}
