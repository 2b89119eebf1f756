//! Memory operations (`memory.h`): placing Xen-owned pages (shared info,
//! grant-table frames) into our physical address space.

use crate::hypercall::op_with;
use crate::XenError;

const XENMEM_ADD_TO_PHYSMAP: u32 = 7;
const DOMID_SELF: u16 = 0x7FF0;

/// `XENMAPSPACE_*`: what `add_to_physmap` maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum MapSpace {
    SharedInfo = 0,
    GrantTable = 1,
}

/// `struct xen_add_to_physmap`.
#[repr(C)]
struct AddToPhysmap {
    domid: u16,
    size: u16,
    space: u32,
    idx: u64,
    gpfn: u64,
}

/// Makes frame `idx` of `space` appear at guest frame `gfn`. The RAM page
/// that was there (if any) goes back to Xen.
pub fn add_to_physmap(space: MapSpace, idx: u64, gfn: u64) -> Result<(), XenError> {
    let mut arg = AddToPhysmap { domid: DOMID_SELF, size: 0, space: space as u32, idx, gpfn: gfn };
    // SAFETY: XENMEM_add_to_physmap takes a `struct xen_add_to_physmap`.
    unsafe { op_with(xen_sys::__HYPERVISOR_memory_op, XENMEM_ADD_TO_PHYSMAP, &mut arg)? };
    Ok(())
}
