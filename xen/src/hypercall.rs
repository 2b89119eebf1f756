//! Finding Xen and installing the hypercall page.
//!
//! Xen advertises itself in the hypervisor CPUID range (`arch-x86/cpuid.h`):
//! leaf `base` carries the signature "XenVMMXenVMM", `base + 1` the version,
//! `base + 2` the MSR through which the guest asks Xen to fill a page of
//! hypercall stubs. `xen-sys`'s `hypercall_N` primitives call into that page
//! through the `HYPERCALL_PAGE` symbol defined here.

use crate::XenError;
use core::arch::x86_64::__cpuid;
use core::fmt;

pub use xen_sys::{hypercall_1, hypercall_2, hypercall_3};

/// Hypercall stubs written by Xen: 32 bytes per hypercall number.
#[repr(C, align(4096))]
pub struct HypercallPage([u8; 4096]);

/// Filled in by Xen at [`init`]; until then calling a hypercall traps on the
/// zero bytes.
#[no_mangle]
static mut HYPERCALL_PAGE: HypercallPage = HypercallPage([0; 4096]);

const SIGNATURE: [u8; 12] = *b"XenVMMXenVMM";

/// What [`init`] found.
#[derive(Debug, Clone, Copy)]
pub struct Xen {
    /// First CPUID leaf of Xen's range.
    pub cpuid_base: u32,
    pub major: u16,
    pub minor: u16,
}

impl fmt::Display for Xen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Xen {}.{} (CPUID leaves at {:#x})", self.major, self.minor, self.cpuid_base)
    }
}

/// Why Xen could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitError {
    /// No "XenVMMXenVMM" signature: not running on Xen.
    NotXen,
    /// Xen's CPUID range lacks the hypercall leaf.
    NoHypercallLeaf,
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::NotXen => f.write_str("no Xen CPUID signature: not running under Xen"),
            InitError::NoHypercallLeaf => f.write_str("Xen CPUID range has no hypercall leaf"),
        }
    }
}

/// Finds Xen's CPUID leaves: the signature is searched in
/// 0x40000000..0x40010000 in steps of 0x100, as other hypervisors may sit at
/// 0x40000000 in front of Xen's Viridian-compatible range.
fn find_cpuid_base() -> Option<(u32, u32)> {
    (0x4000_0000u32..0x4001_0000).step_by(0x100).find_map(|base| {
        let r = __cpuid(base);
        let mut sig = [0u8; 12];
        sig[0..4].copy_from_slice(&r.ebx.to_le_bytes());
        sig[4..8].copy_from_slice(&r.ecx.to_le_bytes());
        sig[8..12].copy_from_slice(&r.edx.to_le_bytes());
        (sig == SIGNATURE).then_some((base, r.eax))
    })
}

/// Detects Xen and has it fill the hypercall page. Call once, early.
pub fn init() -> Result<Xen, InitError> {
    let (base, max_leaf) = find_cpuid_base().ok_or(InitError::NotXen)?;
    if max_leaf < base + 2 {
        return Err(InitError::NoHypercallLeaf);
    }
    let version = __cpuid(base + 1).eax;
    let msr = __cpuid(base + 2).ebx;
    // Identity mapping: the page's address is its guest-physical address.
    let page = core::ptr::addr_of!(HYPERCALL_PAGE) as u64;
    // SAFETY: writing the page's physical address to Xen's hypercall MSR asks
    // Xen to fill that page with stubs; the page is ours, aligned, and only
    // ever executed through xen-sys's primitives.
    unsafe { x86_64::registers::model_specific::Msr::new(msr).write(page) };
    Ok(Xen { cpuid_base: base, major: (version >> 16) as u16, minor: version as u16 })
}

/// The hypercall page's address. Xen writes it; the guest only runs it, so
/// it is mapped read and execute.
pub fn page_addr() -> u64 {
    core::ptr::addr_of!(HYPERCALL_PAGE) as u64
}

/// Issues a two-argument hypercall whose second argument points at `arg`.
///
/// # Safety
/// `op`/`cmd` must be a hypercall whose argument structure is `T`, and the
/// hypercall page must be installed.
pub unsafe fn op_with<T>(op: u32, cmd: u32, arg: &mut T) -> Result<u64, XenError> {
    // SAFETY: the caller guarantees `arg` has the layout Xen expects for
    // `cmd`; Xen reads and writes only within it.
    XenError::check(unsafe { hypercall_2(op, u64::from(cmd), arg as *mut T as u64) })
}
