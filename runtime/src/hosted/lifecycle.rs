//! Shutdown of a hosted app: SIGINT (Ctrl-C) and SIGTERM are what `xl shutdown` is to a
//! domain, a [`Request::Poweroff`]. The app gets [`GRACE`] to finish, as under Xen: when
//! `main` returns the process exits, when the grace runs out while the app sleeps the runtime
//! ends it; a second signal ends it at once.
//!
//! The `ctrlc` crate takes the signals on a thread of its own; its handler writes a byte to a
//! socket pair whose other end is among what the executor's poll(2) waits on, so the request
//! is taken on the app's thread.

use crate::time::Instant;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Mutex, OnceLock};
use std::task::{Poll, Waker};
use std::time::Duration;

/// How long an app has to finish after a shutdown request (`shutdown_grace_ms=` on the
/// command line overrides it).
pub const GRACE: Duration = Duration::from_secs(5);

/// What was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// SIGINT or SIGTERM.
    Poweroff,
}

/// What the app's thread knows of the signals.
struct State {
    requested: Option<Request>,
    /// When a request is forced.
    force_at: Option<Instant>,
    waiter: Option<Waker>,
    grace: Duration,
}

static STATE: Mutex<State> =
    Mutex::new(State { requested: None, force_at: None, waiter: None, grace: GRACE });
/// The socket pair's reading end.
static SIGNALS: OnceLock<UnixStream> = OnceLock::new();

/// Takes SIGINT and SIGTERM from now on.
pub(crate) fn init(grace: Duration) {
    lock().grace = grace;
    let result = UnixStream::pair().and_then(|(rx, tx)| {
        rx.set_nonblocking(true)?;
        ctrlc::set_handler(move || {
            let _ = (&tx).write_all(&[1]);
        })
        .map_err(std::io::Error::other)?;
        Ok(rx)
    });
    match result {
        Ok(rx) => {
            SIGNALS.get_or_init(|| rx);
        }
        Err(e) => {
            log::error!("cannot take SIGINT and SIGTERM ({e}): the process cannot be shut down gracefully")
        }
    }
}

fn lock() -> std::sync::MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

/// The descriptor that becomes readable when a signal arrives.
pub(crate) fn signal_fd() -> Option<RawFd> {
    SIGNALS.get().map(AsRawFd::as_raw_fd)
}

/// When a requested shutdown will be forced, if one is pending.
pub(crate) fn force_deadline() -> Option<Instant> {
    lock().force_at
}

/// The request received so far, if any.
pub fn requested() -> Option<Request> {
    lock().requested
}

/// Resolves when the process is asked to shut down.
pub async fn shutdown_requested() -> Request {
    core::future::poll_fn(|cx| {
        let mut state = lock();
        match state.requested {
            Some(request) => Poll::Ready(request),
            None => {
                state.waiter = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    })
    .await
}

/// Run whenever the executor wakes: takes the signals that arrived, and ends the process
/// once a request's grace has run out.
pub(crate) fn poll() {
    let mut signals = 0;
    if let Some(mut rx) = SIGNALS.get() {
        let mut buf = [0u8; 16];
        while let Ok(n @ 1..) = rx.read(&mut buf) {
            signals += n;
        }
    }
    let mut state = lock();
    let now = Instant::now();
    if signals > 0 && state.requested.is_some() {
        log::warn!("a second signal: exiting at once");
        exit();
    }
    if state.force_at.is_some_and(|at| now >= at) {
        log::warn!("shutdown forced: the app did not finish within its grace time");
        exit();
    }
    if signals > 0 {
        log::info!("a signal asked for Poweroff");
        state.requested = Some(Request::Poweroff);
        state.force_at = Some(now.saturating_add(state.grace));
        if signals > 1 {
            log::warn!("a second signal: exiting at once");
            exit();
        }
        if let Some(waker) = state.waiter.take() {
            waker.wake();
        }
    }
}

fn exit() -> ! {
    crate::flush();
    std::process::exit(0)
}
