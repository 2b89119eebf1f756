//! Scheduler operations (`sched.h`): yielding the CPU, polling an event
//! channel, shutting down.

use crate::event::Port;
use crate::hypercall::{hypercall_2, op_with};
use core::fmt;

/// Why the domain shuts down (`SHUTDOWN_*` in `sched.h`); `xl` acts on it
/// through `on_poweroff`, `on_reboot` and `on_crash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ShutdownReason {
    Poweroff = xen_sys::SHUTDOWN_poweroff,
    Reboot = xen_sys::SHUTDOWN_reboot,
    Crash = xen_sys::SHUTDOWN_crash,
}

impl fmt::Display for ShutdownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ShutdownReason::Poweroff => "poweroff",
            ShutdownReason::Reboot => "reboot",
            ShutdownReason::Crash => "crash",
        })
    }
}

/// `struct sched_shutdown`.
#[repr(C)]
struct SchedShutdown {
    reason: u32,
}

/// `struct sched_poll`.
#[repr(C)]
struct SchedPoll {
    ports: *const u32,
    nr_ports: u32,
    /// Absolute Xen system time in ns; 0: no timeout.
    timeout: u64,
}

/// Blocks until `port` is pending or Xen system time reaches `deadline_ns`
/// (`SCHEDOP_poll`). Unlike `hlt` it works with interrupts disabled and
/// whether or not the port is masked, which is what a debugger stopped
/// inside an exception handler needs.
pub fn poll(port: Port, deadline_ns: u64) {
    let ports = [port.0];
    let mut arg = SchedPoll { ports: ports.as_ptr(), nr_ports: 1, timeout: deadline_ns };
    // SAFETY: SCHEDOP_poll takes a `struct sched_poll` whose handle points
    // at `nr_ports` ports, here a live local array of one.
    let _ = unsafe { op_with(xen_sys::__HYPERVISOR_sched_op, xen_sys::SCHEDOP_poll, &mut arg) };
}

/// Gives the CPU back to Xen for a moment.
pub fn yield_now() {
    // SAFETY: SCHEDOP_yield takes no argument.
    unsafe { hypercall_2(xen_sys::__HYPERVISOR_sched_op, u64::from(xen_sys::SCHEDOP_yield), 0) };
}

/// Ends the domain. Xen does not return from a successful shutdown; if it
/// refuses, the CPU is halted so the domain can still be destroyed.
pub fn shutdown(reason: ShutdownReason) -> ! {
    let mut arg = SchedShutdown { reason: reason as u32 };
    // SAFETY: SCHEDOP_shutdown takes a `struct sched_shutdown`.
    let _ = unsafe { op_with(xen_sys::__HYPERVISOR_sched_op, xen_sys::SCHEDOP_shutdown, &mut arg) };
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
