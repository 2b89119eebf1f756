//! The global console: the PV console once it is up, port 0xE9 before that
//! and whenever the ring cannot be used.

use core::fmt::{self, Write};
use mote_arch::debugcon::DebugCon;
use mote_xen::console::Console;
use spin::Mutex;

static CONSOLE: Mutex<Option<Console>> = Mutex::new(None);

/// Switches output to the PV console.
pub(crate) fn install(console: Console) {
    *CONSOLE.lock() = Some(console);
}

struct Writer<'a>(&'a mut Option<Console>);

impl Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_bytes(self.0, s.as_bytes());
        Ok(())
    }
}

fn write_bytes(console: &mut Option<Console>, bytes: &[u8]) {
    if let Some(c) = console {
        match c.write(bytes) {
            Ok(()) => return,
            Err(e) => {
                // The backend broke the ring: say so where it can be seen and
                // keep going on the debug port.
                let _ = writeln!(DebugCon, "mote: {e}; console switched to port 0xE9");
                *console = None;
            }
        }
    }
    DebugCon.write_bytes(bytes);
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    let mut guard = CONSOLE.lock();
    let _ = Writer(&mut guard).write_fmt(args);
}

/// Prints from a crash path: never waits for a lock another context may
/// hold forever (a panic inside the console itself); falls back to 0xE9.
pub(crate) fn print_fatal(args: fmt::Arguments<'_>) {
    match CONSOLE.try_lock() {
        Some(mut guard) => {
            let _ = Writer(&mut guard).write_fmt(args);
        }
        None => {
            let _ = DebugCon.write_fmt(args);
        }
    }
}

/// Waits (bounded) until the console backend has taken all output.
pub fn flush() {
    if let Some(mut guard) = CONSOLE.try_lock() {
        if let Some(c) = guard.as_mut() {
            c.flush();
        }
    }
}
