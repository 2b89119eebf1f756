//! x86-64 CPU support for mote.
//!
//! Owns what the processor needs to run Rust: the PVH entry and the switch from
//! 32-bit protected mode to long mode ([`boot`]), the page tables
//! ([`paging`]), descriptor tables ([`gdt`], [`idt`]), CPU exception reports
//! ([`exception`]) and the debug port ([`debugcon`]). It knows nothing of
//! Xen's devices: whoever boots on top installs a
//! [`exception::FatalHandler`] that prints and ends the domain.
//!
//! Only the page-table builder builds for the host, for its unit tests.
#![cfg_attr(not(test), no_std)]

#[cfg(target_os = "none")]
pub mod boot;
#[cfg(target_os = "none")]
pub mod cpu;
#[cfg(target_os = "none")]
pub mod debugcon;
#[cfg(target_os = "none")]
pub mod exception;
#[cfg(target_os = "none")]
pub mod gdt;
#[cfg(target_os = "none")]
pub mod idt;
pub mod paging;

/// Loads the descriptor tables; call once, first thing after the PVH entry.
#[cfg(target_os = "none")]
pub fn init() {
    gdt::init();
    idt::init();
}
