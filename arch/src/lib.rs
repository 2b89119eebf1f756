//! x86-64 CPU support for mote.
//!
//! Owns what the processor needs to run Rust: the PVH entry and the switch from
//! 32-bit protected mode to long mode ([`boot`]), descriptor tables ([`gdt`],
//! [`idt`]), CPU exception reports ([`exception`]) and the debug port
//! ([`debugcon`]). It knows nothing of Xen's devices: whoever boots on top
//! installs a [`exception::FatalHandler`] that prints and ends the domain.
#![no_std]

pub mod boot;
pub mod cpu;
pub mod debugcon;
pub mod exception;
pub mod gdt;
pub mod idt;

/// Loads the descriptor tables; call once, first thing after the PVH entry.
pub fn init() {
    gdt::init();
    idt::init();
}
