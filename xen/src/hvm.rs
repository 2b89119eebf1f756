//! HVM parameters (`hvm/hvm_op.h`, `hvm/params.h`): how a PVH guest learns
//! where Xen put its console and xenstore rings.

use crate::event::Port;
use crate::hypercall::op_with;
use crate::types::DomId;
use crate::XenError;
use core::fmt;

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

/// A page Xen shares between this domain and a backend, found through HVM
/// parameters, and the event channel that goes with it.
#[derive(Debug, Clone, Copy)]
pub struct RingPage {
    /// The page's address: frames below 4 GiB are identity-mapped.
    pub addr: usize,
    pub port: Port,
}

/// Why a ring page could not be found.
#[derive(Debug, Clone, Copy)]
pub enum RingPageError {
    Param(Param, XenError),
    /// The page's frame lies outside the identity-mapped first 4 GiB.
    Unmapped(Param, u64),
    /// The event channel is not a port of the 2-level ABI.
    BadPort(Param, u64),
}

impl fmt::Display for RingPageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingPageError::Param(p, e) => write!(f, "reading HVM param {p:?}: {e}"),
            RingPageError::Unmapped(p, pfn) => write!(f, "{p:?} {pfn:#x} is not mapped"),
            RingPageError::BadPort(p, port) => write!(f, "{p:?} {port:#x} is not an event channel"),
        }
    }
}

/// Reads the frame and event-channel parameters of a shared ring page.
pub fn ring_page(pfn: Param, port: Param) -> Result<RingPage, RingPageError> {
    let frame = get(pfn).map_err(|e| RingPageError::Param(pfn, e))?;
    let evtchn = get(port).map_err(|e| RingPageError::Param(port, e))?;
    ring_page_from((pfn, frame), (port, evtchn))
}

/// The ring page the two parameters' values describe, checked.
fn ring_page_from(
    (pfn, frame): (Param, u64),
    (port, evtchn): (Param, u64),
) -> Result<RingPage, RingPageError> {
    if frame == 0 || frame >= 1 << 20 {
        return Err(RingPageError::Unmapped(pfn, frame));
    }
    let checked = u32::try_from(evtchn).ok().and_then(|p| Port::checked(p).ok());
    let Some(evtchn_port) = checked else { return Err(RingPageError::BadPort(port, evtchn)) };
    Ok(RingPage { addr: (frame << 12) as usize, port: evtchn_port })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::MAX_PORTS;

    fn console(frame: u64, evtchn: u64) -> Result<RingPage, RingPageError> {
        ring_page_from((Param::ConsolePfn, frame), (Param::ConsoleEvtchn, evtchn))
    }

    #[test]
    fn a_ring_page_comes_with_its_port() {
        let page = console(0xfeffc, 3).unwrap();
        assert_eq!((page.addr, page.port), (0xfeff_c000, Port(3)));
        assert!(matches!(console(1 << 20, 3), Err(RingPageError::Unmapped(Param::ConsolePfn, _))));
    }

    #[test]
    fn a_port_beyond_the_abi_is_refused_not_truncated() {
        for evtchn in [u64::from(MAX_PORTS), 1 << 32 | 3] {
            let got = console(0xfeffc, evtchn).map(|page| page.port);
            assert!(
                matches!(got, Err(RingPageError::BadPort(Param::ConsoleEvtchn, e)) if e == evtchn),
                "{evtchn:#x}: {got:?}"
            );
        }
    }
}
