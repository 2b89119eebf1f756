//! The executor as a Linux process: time from the monotonic clock; idle is poll(2) on the
//! network devices' descriptors and the shutdown signals' ([`crate::lifecycle`]), with the
//! earliest deadline as its timeout.

use super::{earliest, Executor, Platform};
use crate::time::Instant;
use core::future::Future;
use std::os::fd::RawFd;
use std::sync::Mutex;

static WAKE_FDS: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());

/// Makes `fd` (a device's) end the executor's idle when it becomes readable.
pub fn wake_on(fd: RawFd) {
    let mut fds = WAKE_FDS.lock().unwrap_or_else(|p| p.into_inner());
    if !fds.contains(&fd) {
        fds.push(fd);
    }
}

/// The hosted platform: Linux's clock, and sleeping in poll(2).
pub struct Hosted;

impl Platform for Hosted {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn idle(&mut self, deadline: Option<Instant>) {
        let deadline = earliest(deadline, crate::lifecycle::force_deadline());
        let mut fds: Vec<libc::pollfd> = WAKE_FDS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .chain(crate::lifecycle::signal_fd())
            .map(|fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 })
            .collect();
        // Rounded up to whole milliseconds, so that a deadline is never missed by waking early.
        let timeout = deadline.map_or(-1, |d| {
            let ns = d.as_nanos().saturating_sub(Instant::now().as_nanos());
            i32::try_from(ns.div_ceil(1_000_000)).unwrap_or(i32::MAX)
        });
        // SAFETY: `fds` is an initialised array of `fds.len()` pollfd structures that lives
        // across the call; poll(2) only writes their `revents`.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                log::error!("poll: {e}");
            }
        }
        crate::lifecycle::poll();
    }
}

/// Runs `future`, and the tasks it spawns, on the hosted platform until `future` completes;
/// tasks still pending then are dropped. An app calls it once, from `main`, and serves
/// inside it.
///
/// ```
/// let answer = mote::block_on(async { 6 * 7 });
/// assert_eq!(answer, 42);
/// ```
pub fn block_on<F: Future>(future: F) -> F::Output {
    Executor::new(Hosted).block_on(future)
}
