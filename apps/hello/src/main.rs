//! The smallest useful mote: says hello, shows what it booted with, and
//! powers off.
#![no_std]
#![no_main]

mote::main!(main);

fn main() {
    let boot = mote::boot_info();
    mote::println!("mote {} on {}", env!("CARGO_PKG_VERSION"), boot.xen);
    mote::println!("Hello, world!");
    mote::println!("cmdline: {}", mote::cmdline().as_str());
    mote::println!("memory map: {} entries", boot.memory.regions().len());
    for region in boot.memory.regions() {
        mote::println!("  {region}");
    }
    mote::println!(
        "image: {:#x}-{:#x} ({} KiB)",
        boot.image.0,
        boot.image.1,
        (boot.image.1 - boot.image.0) / 1024
    );
    mote::println!("heap: {} bytes in {} spans", boot.heap_bytes, boot.heap_spans);
}
