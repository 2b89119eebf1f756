//! HVM parameters (`hvm/hvm_op.h`, `hvm/params.h`): how a PVH guest learns
//! where Xen put its console and xenstore rings.

use crate::hypercall::op_with;
use crate::types::DomId;
use crate::XenError;

const HVMOP_SET_PARAM: u32 = 0;
const HVMOP_GET_PARAM: u32 = 1;

/// `struct xen_hvm_param` from `hvm/hvm_op.h`.
#[repr(C)]
struct HvmParam {
    domid: u16,
    index: u32,
    value: u64,
}

/// An HVM parameter index (`hvm/params.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Param {
    CallbackIrq = 0,
    StorePfn = 1,
    StoreEvtchn = 2,
    ConsolePfn = 17,
    ConsoleEvtchn = 18,
}

/// Reads one of this domain's HVM parameters.
pub fn get(param: Param) -> Result<u64, XenError> {
    let mut arg = HvmParam { domid: DomId::SELF.0, index: param as u32, value: 0 };
    // SAFETY: HVMOP_get_param takes a `struct xen_hvm_param`.
    unsafe { op_with(xen_sys::__HYPERVISOR_hvm_op, HVMOP_GET_PARAM, &mut arg)? };
    Ok(arg.value)
}

/// Sets one of this domain's HVM parameters.
pub fn set(param: Param, value: u64) -> Result<(), XenError> {
    let mut arg = HvmParam { domid: DomId::SELF.0, index: param as u32, value };
    // SAFETY: HVMOP_set_param takes a `struct xen_hvm_param`.
    unsafe { op_with(xen_sys::__HYPERVISOR_hvm_op, HVMOP_SET_PARAM, &mut arg)? };
    Ok(())
}

/// `HVM_PARAM_CALLBACK_TYPE_VECTOR`, in bits 63:56 of the parameter.
const CALLBACK_TYPE_VECTOR: u64 = 2 << 56;

/// Has Xen raise `vector` on vCPU 0 for event-channel upcalls. Xen keeps
/// raising it while `evtchn_upcall_pending` is set; no APIC EOI is needed.
pub fn set_callback_vector(vector: u8) -> Result<(), XenError> {
    set(Param::CallbackIrq, CALLBACK_TYPE_VECTOR | u64::from(vector))
}
