//! The event loop's core: event-channel upcalls, the clock, and blocking.
//!
//! The upcall handler only records which ports fired ([`Demux`]); waiting
//! code takes its own ports. Blocking arms the one-shot timer for the
//! deadline, then halts until an interrupt (see
//! [`mote_arch::cpu::idle_unless`]): an idle mote uses no CPU.

use core::time::Duration;
use mote_xen::event::{self, Demux, Port, Virq};
use mote_xen::shared_info::{self, SharedInfo};
use mote_xen::time::{self, Clock};
use mote_xen::XenError;
use spin::Once;

static SHARED: Once<&'static SharedInfo> = Once::new();
static CLOCK: Once<Clock> = Once::new();
static TIMER_PORT: Once<Port> = Once::new();
static DEMUX: Demux = Demux::new();

fn upcall() {
    if let Some(shared) = SHARED.get() {
        DEMUX.scan(shared);
    }
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

/// A point in time: nanoseconds since the domain booted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    pub fn now() -> Instant {
        Instant(CLOCK.get().map_or(0, Clock::now_ns))
    }

    pub(crate) fn from_nanos(ns: u64) -> Instant {
        Instant(ns)
    }

    pub fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time from `earlier` to `self` (zero if `earlier` is later).
    pub fn duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    pub fn elapsed(self) -> Duration {
        Instant::now().duration_since(self)
    }

    pub fn checked_add(self, d: Duration) -> Option<Instant> {
        u64::try_from(d.as_nanos()).ok().and_then(|ns| self.0.checked_add(ns)).map(Instant)
    }
}

/// Wall-clock time as (seconds, nanoseconds) since the Unix epoch, from
/// Xen's wall clock.
pub fn wallclock() -> (u64, u32) {
    CLOCK.get().map_or((0, 0), Clock::wallclock)
}

/// Why [`block`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    Event,
    Deadline,
}

/// Blocks until `port` fires (taking its event) or `deadline` passes;
/// with neither, until any interrupt. Every wake-up also runs the runtime's
/// background work (a shutdown request arriving through xenstore).
pub fn block(port: Option<Port>, deadline: Option<Instant>) -> Wake {
    let timer = TIMER_PORT.get().copied();
    let store = crate::xenstore::port().filter(|&s| Some(s) != port);
    loop {
        if let Some(t) = timer {
            DEMUX.take(t);
        }
        if let Some(s) = store {
            DEMUX.take(s);
        }
        crate::lifecycle::poll();
        if port.is_some_and(|p| DEMUX.take(p)) {
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
            if let Err(e) = time::set_singleshot_timer(at.0) {
                log::error!("arming the one-shot timer failed: {e}");
            }
        }
        mote_arch::cpu::idle_unless(|| {
            [port, timer, store].into_iter().flatten().any(|p| DEMUX.is_fired(p))
                || wake_at.is_some_and(|d| Instant::now() >= d)
        });
        if port.is_none() && deadline.is_none() {
            return Wake::Event;
        }
    }
}

/// Waits until `port` fires.
pub fn wait_for(port: Port) {
    block(Some(port), None);
}

/// Sleeps for `duration`, halted in the hypervisor meanwhile.
pub fn sleep(duration: Duration) {
    let deadline = Instant::now().checked_add(duration);
    if deadline.is_none() {
        log::warn!("sleep of {duration:?} is beyond the clock's range; sleeping until woken");
    }
    block(None, deadline);
}
