//! Memory operations (`memory.h`): placing pages Xen owns into this domain's
//! guest-physical address space.

use crate::hypercall::op_with;
use crate::types::{DomId, Gfn};
use crate::XenError;

const XENMEM_ADD_TO_PHYSMAP: u32 = 7;

/// Which of Xen's pages [`add_to_physmap`] maps (`XENMAPSPACE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum MapSpace {
    /// The shared info page (`idx` 0).
    SharedInfo = 0,
    /// Frame `idx` of this domain's grant table.
    GrantTable = 1,
}

/// `struct xen_add_to_physmap`.
#[repr(C)]
struct AddToPhysmap {
    domid: u16,
    /// Only for `XENMAPSPACE_gmfn_range`.
    size: u16,
    space: u32,
    idx: u64,
    gpfn: u64,
}

/// Makes page `idx` of `space` appear at `gfn`. Whatever RAM was at `gfn` is
/// given back to Xen, so that memory must never be used as RAM again.
pub fn add_to_physmap(space: MapSpace, idx: u64, gfn: Gfn) -> Result<(), XenError> {
    let mut arg = AddToPhysmap { domid: DomId::SELF.0, size: 0, space: space as u32, idx, gpfn: gfn.0 };
    // SAFETY: XENMEM_add_to_physmap takes a `struct xen_add_to_physmap`.
    unsafe { op_with(xen_sys::__HYPERVISOR_memory_op, XENMEM_ADD_TO_PHYSMAP, &mut arg)? };
    Ok(())
}
