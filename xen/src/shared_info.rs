//! The shared info page (`struct shared_info` in `xen.h`): event-channel
//! bitmaps, per-vCPU upcall flags and time, and the wall clock.
//!
//! Xen writes it at any time, so every field is an atomic.

use crate::memory::{add_to_physmap, MapSpace};
use crate::{Gfn, XenError};
use core::mem::offset_of;
use core::sync::atomic::{AtomicI8, AtomicU32, AtomicU64, AtomicU8};

/// `XEN_LEGACY_MAX_VCPUS` on x86.
const LEGACY_MAX_VCPUS: usize = 32;
/// Words in each 2-level event bitmap: 64 × 64 = 4096 ports.
pub const EVTCHN_WORDS: usize = 64;

/// `struct vcpu_time_info`: the PV clock of one vCPU.
#[repr(C)]
pub struct VcpuTimeInfo {
    pub version: AtomicU32,
    pad0: u32,
    pub tsc_timestamp: AtomicU64,
    pub system_time: AtomicU64,
    pub tsc_to_system_mul: AtomicU32,
    pub tsc_shift: AtomicI8,
    pub flags: AtomicU8,
    pad1: [u8; 2],
}

/// `struct vcpu_info` (with x86-64's `struct arch_vcpu_info`).
#[repr(C)]
pub struct VcpuInfo {
    pub evtchn_upcall_pending: AtomicU8,
    pub evtchn_upcall_mask: AtomicU8,
    pub evtchn_pending_sel: AtomicU64,
    arch_cr2: u64,
    arch_pad: u64,
    pub time: VcpuTimeInfo,
}

/// `struct shared_info`, up to the wall clock (the arch part is unused).
#[repr(C)]
pub struct SharedInfo {
    pub vcpu_info: [VcpuInfo; LEGACY_MAX_VCPUS],
    pub evtchn_pending: [AtomicU64; EVTCHN_WORDS],
    pub evtchn_mask: [AtomicU64; EVTCHN_WORDS],
    pub wc_version: AtomicU32,
    pub wc_sec: AtomicU32,
    pub wc_nsec: AtomicU32,
    pub wc_sec_hi: AtomicU32,
}

const _: () = {
    assert!(core::mem::size_of::<VcpuTimeInfo>() == 32);
    assert!(core::mem::size_of::<VcpuInfo>() == 64);
    assert!(offset_of!(VcpuInfo, evtchn_pending_sel) == 8);
    assert!(offset_of!(SharedInfo, evtchn_pending) == 2048);
    assert!(offset_of!(SharedInfo, evtchn_mask) == 2560);
    assert!(offset_of!(SharedInfo, wc_version) == 3072);
};

impl SharedInfo {
    /// An all-zero page, as before Xen fills it (host tests use it).
    pub fn zeroed() -> Self {
        // SAFETY: every field is an atomic integer or plain integer, for
        // which all-zero bytes are a valid value.
        unsafe { core::mem::zeroed() }
    }
}

/// A page-aligned page the shared info is mapped over.
#[repr(C, align(4096))]
struct Page([u8; 4096]);

static mut SHARED_INFO_PAGE: Page = Page([0; 4096]);

/// Maps the shared info page over a static page of ours. Call once.
pub fn map() -> Result<&'static SharedInfo, XenError> {
    let addr = core::ptr::addr_of!(SHARED_INFO_PAGE) as u64;
    add_to_physmap(MapSpace::SharedInfo, 0, Gfn::containing(addr))?;
    // SAFETY: Xen now backs this identity-mapped, page-aligned static with
    // the shared info page; it is only accessed through atomics from here on.
    Ok(unsafe { &*(addr as *const SharedInfo) })
}
