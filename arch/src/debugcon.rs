//! The debug console on I/O port 0xE9.
//!
//! Xen (with `guest_loglvl=all`) and QEMU (`-debugcon`) print what a guest
//! writes there. It needs no setup, so it carries output until the PV console
//! is up and whenever that console cannot be used (a crash while it is locked).

use core::fmt;
use x86_64::instructions::port::Port;

const PORT: u16 = 0xE9;

/// A [`fmt::Write`] sink on port 0xE9.
pub struct DebugCon;

impl DebugCon {
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        let mut port = Port::<u8>::new(PORT);
        for &b in bytes {
            // SAFETY: port 0xE9 is the hypervisor's debug console; writing to
            // it has no effect on memory.
            unsafe { port.write(b) };
        }
    }
}

impl fmt::Write for DebugCon {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}
