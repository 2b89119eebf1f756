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
#![no_std]
#![no_main]

use core::fmt;
use core::time::Duration;
use mote::Instant;

mote::main!(main);

/// Far above the identity-mapped first 4 GiB.
const UNMAPPED: u64 = 0x40_0000_0000;

const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

#[derive(Debug)]
enum Error {
    MissingTest,
    UnknownTest(&'static str),
    BadNumber(&'static str, &'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
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
        other => Err(Error::UnknownTest(other)),
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
