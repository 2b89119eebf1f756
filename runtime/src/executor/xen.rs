//! The executor on Xen: time from the PV clock; idle is [`events::block_any`]
//! on the devices' event channels, which halts the vCPU in the hypervisor
//! until one fires, the one-shot timer is due, or the runtime has work
//! (xenstore, a shutdown request).

use super::{Executor, Platform};
use crate::events;
use crate::heap::Published;
use crate::time::Instant;
use core::future::Future;
use mote_xen::event::Port;

/// The most event channels that can end the executor's idle.
pub const MAX_WAKE_PORTS: usize = 8;

static WAKE_PORTS: spin::Mutex<heapless::Vec<Port, MAX_WAKE_PORTS>> = spin::Mutex::new(heapless::Vec::new());

/// Makes `port` (a device's event channel) end the executor's idle, so the
/// driver polling that device runs when it fires.
///
/// # Panics
/// Beyond [`MAX_WAKE_PORTS`] ports.
pub fn wake_on(port: Port) {
    let mut ports = WAKE_PORTS.lock();
    if !ports.contains(&port) {
        ports.push(port).expect("too many event channels wake the executor");
    }
}

/// Undoes [`wake_on`], for a device whose event channel is closed.
pub fn stop_waking_on(port: Port) {
    WAKE_PORTS.lock().retain(|&p| p != port);
}

/// The Xen platform: PV clock and blocking in the hypervisor.
pub struct Xen;

impl Platform for Xen {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn idle(&mut self, deadline: Option<Instant>) {
        let deadline = match crate::heap::publish(Instant::now()) {
            Published::Talked => return,
            Published::Due(due) => Some(deadline.map_or(due, |d| d.min(due))),
            Published::Nothing => deadline,
        };
        let ports = WAKE_PORTS.lock().clone();
        events::block_any(&ports, deadline);
    }
}

/// Runs `future`, and the tasks it spawns, on the Xen platform until
/// `future` completes; tasks still pending then are dropped. An app calls it once, from
/// `main`, and serves inside it (see the crate's example).
pub fn block_on<F: Future>(future: F) -> F::Output {
    Executor::new(Xen).block_on(future)
}
