//! Event channels, 2-level ABI (`event_channel.h`, `xen.h`).
//!
//! Binding, notifying and closing are hypercalls. Delivery: Xen sets the
//! port's bit in `evtchn_pending`, its word's bit in the vCPU's
//! `evtchn_pending_sel` and `evtchn_upcall_pending`, then raises the upcall
//! vector. [`Demux::scan`], run by that interrupt, moves pending and unmasked
//! ports into its own "fired" set, clearing Xen's bits first so an event that
//! arrives meanwhile raises a new upcall instead of being lost. Consumers take
//! their ports from the fired set outside interrupt context.

use crate::hypercall::op_with;
use crate::shared_info::{SharedInfo, EVTCHN_WORDS};
use crate::{DomId, XenError};
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

/// An event-channel port of this domain.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port(pub u32);

/// Ports the 2-level ABI can address on x86-64.
pub const MAX_PORTS: u32 = (EVTCHN_WORDS * 64) as u32;

impl Port {
    fn word_bit(self) -> (usize, u64) {
        ((self.0 / 64) as usize, 1u64 << (self.0 % 64))
    }

    /// A port number Xen returned, checked against the 2-level ABI's range.
    pub(crate) fn checked(port: u32) -> Result<Port, XenError> {
        if port < MAX_PORTS {
            Ok(Port(port))
        } else {
            Err(XenError::EINVAL)
        }
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port {}", self.0)
    }
}

/// As `Display` (a derived `Debug` would bring in the tuple-struct builder for one number).
impl fmt::Debug for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Virtual interrupts (`VIRQ_*` in `xen.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Virq {
    Timer = 0,
    Debug = 1,
    Console = 2,
}

fn evtchn_op<T>(cmd: u32, arg: &mut T) -> Result<u64, XenError> {
    // SAFETY: callers pair each `cmd` with its `struct evtchn_*` argument.
    unsafe { op_with(xen_sys::__HYPERVISOR_event_channel_op, cmd, arg) }
}

const EVTCHNOP_BIND_INTERDOMAIN: u32 = 0;
const EVTCHNOP_BIND_VIRQ: u32 = 1;
const EVTCHNOP_CLOSE: u32 = 3;
const EVTCHNOP_SEND: u32 = 4;
const EVTCHNOP_ALLOC_UNBOUND: u32 = 6;
const EVTCHNOP_UNMASK: u32 = 9;

/// `struct evtchn_bind_virq`.
#[repr(C)]
struct BindVirq {
    virq: u32,
    vcpu: u32,
    port: u32,
}

/// `struct evtchn_alloc_unbound`.
#[repr(C)]
struct AllocUnbound {
    dom: u16,
    remote_dom: u16,
    port: u32,
}

/// `struct evtchn_bind_interdomain`.
#[repr(C)]
struct BindInterdomain {
    remote_dom: u16,
    remote_port: u32,
    local_port: u32,
}

/// `struct evtchn_send`, `struct evtchn_close`, `struct evtchn_unmask`:
/// each is just a port.
#[repr(C)]
struct PortArg {
    port: u32,
}

/// Binds a virtual interrupt of vCPU 0 to a new port.
pub fn bind_virq(virq: Virq) -> Result<Port, XenError> {
    let mut arg = BindVirq { virq: virq as u32, vcpu: 0, port: 0 };
    evtchn_op(EVTCHNOP_BIND_VIRQ, &mut arg)?;
    Port::checked(arg.port)
}

/// Allocates a port that `remote` may bind to (what a frontend offers its
/// backend).
pub fn alloc_unbound(remote: DomId) -> Result<Port, XenError> {
    let mut arg = AllocUnbound { dom: DomId::SELF.0, remote_dom: remote.0, port: 0 };
    evtchn_op(EVTCHNOP_ALLOC_UNBOUND, &mut arg)?;
    Port::checked(arg.port)
}

/// Binds to a port `remote` allocated for us.
pub fn bind_interdomain(remote: DomId, remote_port: Port) -> Result<Port, XenError> {
    let mut arg = BindInterdomain { remote_dom: remote.0, remote_port: remote_port.0, local_port: 0 };
    evtchn_op(EVTCHNOP_BIND_INTERDOMAIN, &mut arg)?;
    Port::checked(arg.local_port)
}

/// Notifies the other end of `port`.
pub fn send(port: Port) -> Result<(), XenError> {
    evtchn_op(EVTCHNOP_SEND, &mut PortArg { port: port.0 }).map(drop)
}

/// Closes `port`; it may be handed out again by a later bind.
pub fn close(port: Port) -> Result<(), XenError> {
    evtchn_op(EVTCHNOP_CLOSE, &mut PortArg { port: port.0 }).map(drop)
}

/// Stops delivery of `port`'s events (they stay pending). A port beyond
/// the 2-level ABI has no mask bit, and no events to stop.
pub fn mask(shared: &SharedInfo, port: Port) {
    let (word, bit) = port.word_bit();
    if let Some(w) = shared.evtchn_mask.get(word) {
        w.fetch_or(bit, Ordering::SeqCst);
    }
}

/// Takes `port`'s pending bit straight from shared info: true if it was
/// set. For a masked port that is polled ([`crate::sched::poll`]) rather than
/// delivered through the upcall.
pub fn take_pending(shared: &SharedInfo, port: Port) -> bool {
    let (word, bit) = port.word_bit();
    shared.evtchn_pending.get(word).is_some_and(|w| w.fetch_and(!bit, Ordering::SeqCst) & bit != 0)
}

/// `port`'s pending and mask bits in shared info, without changing them:
/// `(pending, masked)`.
pub fn flags(shared: &SharedInfo, port: Port) -> (bool, bool) {
    let (word, bit) = port.word_bit();
    let set = |words: &[AtomicU64]| words.get(word).is_some_and(|w| w.load(Ordering::SeqCst) & bit != 0);
    (set(&shared.evtchn_pending), set(&shared.evtchn_mask))
}

/// Resumes delivery; Xen re-raises the upcall if an event came while masked.
pub fn unmask(port: Port) -> Result<(), XenError> {
    evtchn_op(EVTCHNOP_UNMASK, &mut PortArg { port: port.0 }).map(drop)
}

/// The set of ports that fired and have not been taken yet.
pub struct Demux {
    fired: [AtomicU64; EVTCHN_WORDS],
}

impl Demux {
    pub const fn new() -> Self {
        Demux { fired: [const { AtomicU64::new(0) }; EVTCHN_WORDS] }
    }

    /// The upcall: moves every pending, unmasked port of vCPU 0 into the
    /// fired set. Clears before recording, in Xen's order of setting:
    /// upcall flag, selector word, port bit.
    pub fn scan(&self, shared: &SharedInfo) {
        let vcpu = &shared.vcpu_info[0];
        vcpu.evtchn_upcall_pending.store(0, Ordering::SeqCst);
        let mut sel = vcpu.evtchn_pending_sel.swap(0, Ordering::SeqCst);
        while sel != 0 {
            let word = sel.trailing_zeros() as usize;
            sel &= sel - 1;
            let mut ready = shared.evtchn_pending[word].load(Ordering::SeqCst)
                & !shared.evtchn_mask[word].load(Ordering::SeqCst);
            while ready != 0 {
                let bit = 1u64 << ready.trailing_zeros();
                ready &= !bit;
                shared.evtchn_pending[word].fetch_and(!bit, Ordering::SeqCst);
                self.fired[word].fetch_or(bit, Ordering::SeqCst);
            }
        }
    }

    /// Whether `port` fired, without taking it.
    pub fn is_fired(&self, port: Port) -> bool {
        let (word, bit) = port.word_bit();
        self.fired.get(word).is_some_and(|w| w.load(Ordering::SeqCst) & bit != 0)
    }

    /// Takes `port`'s event: true if it had fired since the last take.
    pub fn take(&self, port: Port) -> bool {
        let (word, bit) = port.word_bit();
        self.fired.get(word).is_some_and(|w| w.fetch_and(!bit, Ordering::SeqCst) & bit != 0)
    }
}

impl Default for Demux {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plays Xen raising an event on `port`.
    fn raise(shared: &SharedInfo, port: u32) {
        let (word, bit) = Port(port).word_bit();
        shared.evtchn_pending[word].fetch_or(bit, Ordering::SeqCst);
        if shared.evtchn_mask[word].load(Ordering::SeqCst) & bit == 0 {
            shared.vcpu_info[0].evtchn_pending_sel.fetch_or(1 << word, Ordering::SeqCst);
            shared.vcpu_info[0].evtchn_upcall_pending.store(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn scan_moves_pending_ports_and_clears_xen_bits() {
        let shared = SharedInfo::zeroed();
        let demux = Demux::new();
        for p in [3, 64, 130, 4095] {
            raise(&shared, p);
        }
        demux.scan(&shared);
        assert_eq!(shared.vcpu_info[0].evtchn_upcall_pending.load(Ordering::SeqCst), 0);
        assert_eq!(shared.vcpu_info[0].evtchn_pending_sel.load(Ordering::SeqCst), 0);
        assert!(shared.evtchn_pending.iter().all(|w| w.load(Ordering::SeqCst) == 0));
        for p in [3, 64, 130, 4095] {
            assert!(demux.is_fired(Port(p)));
            assert!(demux.take(Port(p)), "port {p}");
            assert!(!demux.take(Port(p)), "port {p} taken twice");
        }
        assert!(!demux.take(Port(4)));
    }

    #[test]
    fn masked_ports_stay_pending_for_xen() {
        let shared = SharedInfo::zeroed();
        let demux = Demux::new();
        mask(&shared, Port(7));
        raise(&shared, 7);
        // Another port in the same word makes the scan look at word 0.
        raise(&shared, 8);
        demux.scan(&shared);
        assert!(!demux.is_fired(Port(7)));
        assert!(demux.take(Port(8)));
        assert_eq!(shared.evtchn_pending[0].load(Ordering::SeqCst), 1 << 7);
    }

    #[test]
    fn events_between_scans_are_not_lost() {
        let shared = SharedInfo::zeroed();
        let demux = Demux::new();
        raise(&shared, 5);
        demux.scan(&shared);
        raise(&shared, 5);
        // Fired twice before being taken: one take, as with a level.
        demux.scan(&shared);
        assert!(demux.take(Port(5)));
        raise(&shared, 5);
        assert_eq!(shared.vcpu_info[0].evtchn_upcall_pending.load(Ordering::SeqCst), 1);
        demux.scan(&shared);
        assert!(demux.take(Port(5)));
    }

    #[test]
    fn masking_a_port_beyond_the_abi_changes_nothing() {
        let shared = SharedInfo::zeroed();
        mask(&shared, Port(MAX_PORTS));
        mask(&shared, Port(u32::MAX));
        assert!(shared.evtchn_mask.iter().all(|w| w.load(Ordering::SeqCst) == 0));
    }

    #[test]
    fn out_of_range_ports_are_rejected() {
        assert_eq!(Port::checked(MAX_PORTS), Err(XenError::EINVAL));
        assert_eq!(Port::checked(MAX_PORTS - 1), Ok(Port(MAX_PORTS - 1)));
        assert!(!Demux::new().take(Port(u32::MAX)));
    }
}
