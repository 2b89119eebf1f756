//! The mote runtime: everything between the PVH entry and an app's `main`.
//!
//! It brings up the CPU tables and Xen, the console, the heap (from the
//! memory map Xen hands over), logging through the `log` facade, the grant
//! table, xenstore and the command line (`extra=` in the xl config), then
//! calls the app's `main` (named with [`main!`]) and powers the domain off
//! when it returns. A panic or CPU exception prints a report and crashes the
//! domain, which `xl` reports as a crash; with `gdb=wait` or `gdb=on` on the
//! command line, a gdb stub stops there first (and at breakpoints). The stub
//! is the `gdb` feature (off by default: `cargo xtask build <app> --gdb` and
//! `cargo xtask debug` turn it on); without it, `gdb=` only logs an error.
//!
//! Async code runs on the runtime's [`executor`] (`block_on`, [`spawn`],
//! the timers in [`time`]); [`net`] is a smoltcp network stack with async
//! sockets, driven by the same executor. Both also run on the host, where
//! their tests use a fake clock and an in-memory wire.
//!
//! With the `hosted` feature (`cargo xtask run <app> --hosted`), the same API runs an app as a
//! Linux process instead, for gdb, perf and valgrind: see [`hosted`].
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! mote::main!(main);
//! fn main() {
//!     mote::println!("Hello, {}!", mote::cmdline().get("name").unwrap_or("world"));
//! }
//! ```
#![cfg_attr(target_os = "none", no_std)]
#![deny(missing_docs)]

#[cfg(all(target_os = "none", feature = "hosted"))]
compile_error!("the `hosted` feature runs an app as a Linux process: build it for a Linux target");

extern crate alloc;

pub mod cmdline;
// Xen's block devices as futures: in the kernel, and in the host tests (against blkfront's
// in-memory backend); not in a hosted build, which links nothing of Xen.
#[cfg(all(feature = "disk", any(target_os = "none", test)))]
pub mod disk_async;
pub mod executor;
pub mod fs;
pub mod logspec;
pub mod memory;
pub mod net;
pub mod time;

#[cfg(test)]
mod testing;

#[cfg(target_os = "none")]
mod console;
#[cfg(target_os = "none")]
mod crash;
#[cfg(target_os = "none")]
mod devices;
#[cfg(all(target_os = "none", feature = "disk"))]
pub mod disk;
#[cfg(target_os = "none")]
pub mod events;
#[cfg(all(target_os = "none", feature = "gdb"))]
mod gdb;
#[cfg(all(target_os = "none", not(feature = "gdb")))]
#[path = "nogdb.rs"]
mod gdb;
#[cfg(target_os = "none")]
pub mod grants;
#[cfg(target_os = "none")]
pub mod heap;
#[cfg(feature = "hosted")]
#[doc(hidden)]
pub mod hosted;
#[cfg(target_os = "none")]
pub mod lifecycle;
#[cfg(feature = "hosted")]
#[path = "hosted/lifecycle.rs"]
pub mod lifecycle;
#[cfg(any(target_os = "none", feature = "hosted"))]
mod logger;
#[cfg(target_os = "none")]
mod start;
#[cfg(target_os = "none")]
pub mod xenstore;

#[cfg(target_os = "none")]
pub use console::{_print, flush};
#[cfg(target_os = "none")]
pub use events::{sleep, wallclock};
#[cfg(target_os = "none")]
pub use executor::xen::block_on;
#[cfg(target_os = "none")]
pub use lifecycle::{wait_for_shutdown, Request as ShutdownRequest};
/// The xenbus handshake of PV device frontends, over [`xenstore::with`]'s client.
#[cfg(target_os = "none")]
pub use mote_xen::xenbus;
#[cfg(target_os = "none")]
pub use start::{boot_info, cmdline, BootInfo};

#[cfg(feature = "hosted")]
pub use executor::hosted::block_on;
#[cfg(feature = "hosted")]
pub use hosted::{_print, boot_info, cmdline, flush, wallclock, BootInfo};
#[cfg(feature = "hosted")]
pub use lifecycle::Request as ShutdownRequest;

pub use executor::spawn;
pub use log;
pub use time::Instant;

/// Tells that the app serves from now on: logs `boot: ready N us after the first instruction`
/// (hosted: after the process started), the guest's own time to serve, which `cargo xtask bench
/// boot` reports. Call it once the app's sockets are bound, from inside the executor.
///
/// # Panics
/// Outside [`executor::Executor::block_on`].
pub fn ready() {
    #[cfg(target_os = "none")]
    let start = boot_info().first_instruction;
    #[cfg(not(target_os = "none"))]
    let start = Instant::default();
    // In u64: formatting a u128 would bring its own code.
    let us = u64::try_from(time::now().duration_since(start).as_micros()).unwrap_or(u64::MAX);
    log::info!("boot: ready {us} us after the first instruction");
}

/// What an app's `main` may return: `()`, or a `Result` whose error is
/// logged before the domain ends as crashed.
pub trait Exit {
    /// Whether the app succeeded; reports the error if not.
    fn succeeded(self) -> bool;
}

impl Exit for () {
    fn succeeded(self) -> bool {
        true
    }
}

impl<E: core::fmt::Display> Exit for Result<(), E> {
    fn succeeded(self) -> bool {
        match self {
            Ok(()) => true,
            Err(e) => {
                log::error!("main returned an error: {e}");
                false
            }
        }
    }
}

/// Names the app's entry point: `mote::main!(main);`.
#[cfg(not(feature = "hosted"))]
#[macro_export]
macro_rules! main {
    ($main:path) => {
        #[export_name = "__mote_app_main"]
        fn __mote_app_main() -> bool {
            $crate::Exit::succeeded($main())
        }
    };
}

/// Names the app's entry point: `mote::main!(main);`. Hosted, it is the C `main` of a
/// Linux process (the app crate is `#![no_main]`, so Rust's own entry is not made).
#[cfg(feature = "hosted")]
#[macro_export]
macro_rules! main {
    ($main:path) => {
        #[export_name = "main"]
        extern "C" fn __mote_hosted_main(_argc: i32, _argv: *const *const u8) -> i32 {
            $crate::hosted::start(|| $crate::Exit::succeeded($main()))
        }
    };
}

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::_print(::core::format_args!($($arg)*)) };
}

/// Prints to the console, with a newline.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::_print(::core::format_args!("{}\n", ::core::format_args!($($arg)*))) };
}
