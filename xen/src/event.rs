//! Event channels (`event_channel.h`). For now only notification of a
//! backend; binding and delivery come with the event loop.

use crate::hypercall::op_with;
use crate::XenError;

/// An event-channel port number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port(pub u32);

/// `struct evtchn_send`.
#[repr(C)]
struct EvtchnSend {
    port: u32,
}

/// Notifies the other end of `port`.
pub fn send(port: Port) -> Result<(), XenError> {
    let mut arg = EvtchnSend { port: port.0 };
    // SAFETY: EVTCHNOP_send takes a `struct evtchn_send`.
    unsafe { op_with(xen_sys::__HYPERVISOR_event_channel_op, xen_sys::EVTCHNOP_send, &mut arg)? };
    Ok(())
}
