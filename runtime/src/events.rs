//! The event loop's core: event-channel upcalls, the clock, and blocking.
//!
//! The upcall handler only records which ports fired ([`Demux`]); waiting
//! code takes its own ports. Blocking arms the one-shot timer for the
//! deadline, then halts until an interrupt (see
//! [`mote_arch::cpu::idle_unless`]): an idle mote uses no CPU.

pub use crate::time::Instant;
use core::time::Duration;
use mote_xen::event::{self, Demux, Port, Virq};
use mote_xen::shared_info::{self, SharedInfo};
use mote_xen::time::{self, Clock, OneShot};
use mote_xen::XenError;
use spin::Once;

static SHARED: Once<&'static SharedInfo> = Once::new();
static CLOCK: Once<Clock> = Once::new();
static TIMER_PORT: Once<Port> = Once::new();
static DEMUX: Demux = Demux::new();
static TIMER: OneShot = OneShot::new();

fn upcall(frame: &mut mote_arch::exception::ExceptionFrame) {
    crate::random::stir();
    if let Some(shared) = SHARED.get() {
        DEMUX.scan(shared);
    }
    crate::gdb::on_upcall(frame);
}

/// Takes `port`'s event if it fired (for the gdb stub's Ctrl-C, looked at
/// from the upcall itself).
#[cfg(feature = "gdb")]
pub(crate) fn take_fired(port: Port) -> bool {
    DEMUX.take(port)
}

/// `port`'s delivery state, for the report of a peer that went quiet:
/// Xen's pending and mask bits, and whether the upcall recorded the event
/// (`(pending, masked, fired)`).
#[cfg(feature = "disk")]
pub(crate) fn delivery(port: Port) -> (bool, bool, bool) {
    let (pending, masked) = SHARED.get().map_or((false, false), |shared| event::flags(shared, port));
    (pending, masked, DEMUX.is_fired(port))
}

/// Maps shared info, routes upcalls to [`mote_arch::idt::EXTERNAL_VECTOR`],
/// binds the timer VIRQ and turns interrupts on.
pub(crate) fn init() -> Result<(), XenError> {
    let shared = *SHARED.try_call_once(shared_info::map)?;
    CLOCK.call_once(|| Clock::new(shared));
    mote_arch::idt::set_external_handler(upcall);
    mote_xen::hvm::set_callback_vector(mote_arch::idt::EXTERNAL_VECTOR)?;
    TIMER_PORT.try_call_once(|| event::bind_virq(Virq::Timer))?;
    mote_arch::cpu::enable_interrupts();
    Ok(())
}

/// Nanoseconds of the PV clock (0 before [`init`]).
pub(crate) fn now_ns() -> u64 {
    CLOCK.get().map_or(0, Clock::now_ns)
}

impl Instant {
    /// Now, from the PV clock.
    pub fn now() -> Instant {
        Instant::from_nanos(now_ns())
    }

    /// Time since `self`, on the PV clock.
    pub fn elapsed(self) -> Duration {
        Instant::now().duration_since(self)
    }
}

/// The PV clock's time at an earlier reading `tsc` of the time-stamp counter.
pub(crate) fn instant_at_tsc(tsc: u64) -> Instant {
    Instant::from_nanos(CLOCK.get().map_or(0, |clock| clock.ns_at_past_tsc(tsc)))
}

/// Wall-clock time as (seconds, nanoseconds) since the Unix epoch, from
/// Xen's wall clock.
pub fn wallclock() -> (u64, u32) {
    CLOCK.get().map_or((0, 0), Clock::wallclock)
}

/// Why [`block`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// One of the ports waited on fired.
    Event,
    /// The deadline passed first.
    Deadline,
    /// A shutdown request arrived (and woke whoever awaits it).
    Shutdown,
    /// xenstore traffic arrived (a watch may have fired: a backend's state,
    /// a configuration change); the caller may want to look.
    Store,
}

/// Blocks until `port` fires (taking its event) or `deadline` passes;
/// with neither, until any interrupt. Every wake-up also runs the runtime's
/// background work (a shutdown request arriving through xenstore), and
/// xenstore traffic returns [`Wake::Store`] so that the caller can look at its
/// watches.
pub fn block(port: Option<Port>, deadline: Option<Instant>) -> Wake {
    block_any(port.as_slice(), deadline)
}

/// [`block`] for several ports: returns when any of them fires, taking the
/// events of all that did.
pub fn block_any(ports: &[Port], deadline: Option<Instant>) -> Wake {
    let timer = TIMER_PORT.get().copied();
    let store = crate::xenstore::port().filter(|s| !ports.contains(s));
    loop {
        if timer.is_some_and(|t| DEMUX.take(t)) {
            TIMER.fired();
        }
        let store_fired = store.is_some_and(|s| DEMUX.take(s));
        if crate::lifecycle::poll() {
            return Wake::Shutdown;
        }
        if store_fired {
            return Wake::Store;
        }
        if ports.iter().fold(false, |fired, &p| DEMUX.take(p) | fired) {
            return Wake::Event;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Wake::Deadline;
        }
        let wake_at = match (deadline, crate::lifecycle::force_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(at) = wake_at {
            if let Err(e) = TIMER.arm(at.as_nanos(), time::set_singleshot_timer) {
                log::error!("arming the one-shot timer failed: {e}");
            }
        }
        mote_arch::cpu::idle_unless(|| {
            ports.iter().chain(&timer).chain(&store).any(|&p| DEMUX.is_fired(p))
                || wake_at.is_some_and(|d| Instant::now() >= d)
        });
        if ports.is_empty() && deadline.is_none() {
            return Wake::Event;
        }
    }
}

/// Takes the pending bit of `port` while interrupts are off and the port is
/// polled (see [`mote_xen::sched::poll`]); true if it was set.
#[cfg(feature = "gdb")]
pub(crate) fn take_pending(port: Port) -> bool {
    SHARED.get().is_some_and(|shared| event::take_pending(shared, port))
}

/// Waits until `port` fires.
pub fn wait_for(port: Port) {
    while block(Some(port), None) != Wake::Event {}
}

/// Sleeps for `duration`, halted in the hypervisor meanwhile.
pub fn sleep(duration: Duration) {
    let deadline = Instant::now().checked_add(duration);
    if deadline.is_none() {
        log::warn!("sleep of {} s is beyond the clock's range; sleeping until woken", duration.as_secs());
    }
    loop {
        match block(None, deadline) {
            Wake::Deadline => return,
            Wake::Event if deadline.is_none() => return,
            _ => {}
        }
    }
}
