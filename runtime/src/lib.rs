//! The mote runtime: what an app links to run as a Xen unikernel.
//!
//! A mote app is a `#![no_std]`, `#![no_main]` binary: [`main!`] names its entry point, which
//! the runtime calls once it has brought up the CPU tables and Xen, the console, the heap
//! (from the memory map Xen hands over), logging through the [`log`] facade, the grant table,
//! xenstore and the command line (`extra=` in the xl config). When `main` returns the domain
//! powers off; when it returns an error ([`Exit`]) or panics, a report is printed and the
//! domain crashes, which `xl` shows. `cargo xtask build <app>` makes the PVH image that `xl
//! create` boots; `cargo xtask run <app>` boots it under QEMU.
//!
//! ```
//! #![no_std]
//! #![no_main]
//! mote::main!(main);
//! fn main() {
//!     mote::println!("Hello, {}!", mote::cmdline().get("name").unwrap_or("world"));
//! }
//! ```
//!
//! A server is async: [`block_on`] runs the executor on the app's one vCPU, [`spawn`] adds
//! tasks, [`net::up`] brings up the network from the command line (`ip=`, `gw=`, or DHCP),
//! and [`lifecycle::shutdown_requested`] resolves on `xl shutdown` (hosted: SIGINT or
//! SIGTERM), after which the app has [`lifecycle::GRACE`] to finish.
//!
//! ```no_run
//! #![no_std]
//! #![no_main]
//! use mote::net::{TcpListener, UpError};
//!
//! mote::main!(main);
//!
//! fn main() -> Result<(), UpError> {
//!     mote::block_on(async {
//!         let stack = mote::net::up()?;
//!         stack.wait_ipv4().await;
//!         let listener = TcpListener::bind(&stack, 7).expect("port 7 is free on a new stack");
//!         mote::spawn(async move {
//!             loop {
//!                 let stream = listener.accept().await;
//!                 mote::spawn(async move {
//!                     let mut buf = [0; 1024];
//!                     while let Ok(n @ 1..) = stream.read(&mut buf).await {
//!                         if stream.write_all(&buf[..n]).await.is_err() {
//!                             break;
//!                         }
//!                     }
//!                 });
//!             }
//!         });
//!         mote::ready();
//!         let request = mote::lifecycle::shutdown_requested().await;
//!         mote::println!("{request:?} requested, stopping");
//!         Ok(())
//!     })
//! }
//! ```
//!
//! # Where things are
//!
//! - Async: [`block_on`], [`spawn`] and the [`executor`] under them; timers ([`time::sleep`],
//!   [`time::timeout`]) in [`time`]. A task waiting costs nothing: with nothing ready the
//!   vCPU blocks in the hypervisor until the next deadline or event.
//! - Networking: [`net`], a smoltcp stack per vif with async sockets ([`net::TcpListener`],
//!   [`net::TcpStream`], [`net::UdpSocket`]).
//! - Files: [`fs`], read-only ext2/3/4 content disks (`disk` feature); [`disk`] is the block
//!   device under it, on Xen.
//! - Shutdown and reboot requests: [`lifecycle`].
//! - Configuration: [`cmdline()`] (parsed by [`cmdline::Cmdline`]); `log=` takes a
//!   [`logspec`]. [`boot_info`] tells what the runtime found at boot ([`memory`]'s map, the
//!   heap's size).
//! - Output: [`println!`] and [`print!`] to the console; [`log`]'s macros, which also keep
//!   the recent lines for a crash report.
//! - Xen itself, on Xen only: [`xenstore`] (the domain's store, through [`xenstore::with`]),
//!   [`grants`], [`events`], [`heap`] (its use and high water), [`xenbus`] for writing a PV
//!   frontend of one's own.
//!
//! A panic or CPU exception prints a report with the recent log lines; with `gdb=wait` or
//! `gdb=on` on the command line, a gdb stub stops there first (and at breakpoints).
//!
//! # Features
//!
//! Apps take the runtime without its defaults (the workspace's `mote` dependency) and pick:
//!
//! - `ipv6` (default): IPv6 (`ip6=`, `gw6=`), about 40 KiB of image.
//! - `disk` (default): blkfront and the ext2/3/4 reader ([`fs`]), about 100 KiB; an app
//!   without it can still refuse a disk it would not read ([`fs::refuse_attached`]).
//! - `tx-gso` (default): TCP segmentation offload to the backend, about 6 KiB.
//! - `gdb`: the gdb remote stub (`cargo xtask build <app> --gdb`), about 50 KiB; without it
//!   `gdb=` only logs an error.
//! - `hosted`: the app as a Linux process (`cargo xtask run <app> --hosted`), for gdb, perf
//!   and valgrind. The API is the same; underneath, the console is standard output, the
//!   network a TAP device, the first disk an image file (`disk=PATH`) and SIGINT or SIGTERM
//!   the shutdown request. The examples here are built, and those that need no network run,
//!   that way.
//!
// What only an app's platform (Xen, or `hosted`) has is linked where it exists; in the
// runtime's own host build, which has neither, the links go to the features above.
#![cfg_attr(
    any(target_os = "none", feature = "hosted"),
    doc = "[`block_on`]: crate::block_on\n[`net::up`]: crate::net::up\n\
           [`lifecycle`]: crate::lifecycle\n[`lifecycle::GRACE`]: crate::lifecycle::GRACE\n\
           [`lifecycle::shutdown_requested`]: crate::lifecycle::shutdown_requested\n\
           [`cmdline()`]: crate::cmdline()\n[`boot_info`]: crate::boot_info"
)]
#![cfg_attr(
    not(any(target_os = "none", feature = "hosted")),
    doc = "[`block_on`]: #features\n[`net::up`]: #features\n[`lifecycle`]: #features\n\
           [`lifecycle::GRACE`]: #features\n[`lifecycle::shutdown_requested`]: #features\n\
           [`cmdline()`]: #features\n[`boot_info`]: #features"
)]
#![cfg_attr(
    target_os = "none",
    doc = "[`xenstore`]: crate::xenstore\n[`xenstore::with`]: crate::xenstore::with\n\
           [`grants`]: crate::grants\n[`events`]: crate::events\n[`heap`]: crate::heap\n\
           [`xenbus`]: crate::xenbus"
)]
#![cfg_attr(
    not(target_os = "none"),
    doc = "[`xenstore`]: #features\n[`xenstore::with`]: #features\n[`grants`]: #features\n\
           [`events`]: #features\n[`heap`]: #features\n[`xenbus`]: #features"
)]
#![cfg_attr(all(target_os = "none", feature = "disk"), doc = "[`disk`]: crate::disk")]
#![cfg_attr(not(all(target_os = "none", feature = "disk")), doc = "[`disk`]: #features")]
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
pub mod random;
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
mod security;
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
