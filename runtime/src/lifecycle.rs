//! Domain lifecycle (`docs/misc/xenstore-paths` `control/…`): the toolstack
//! asks a guest to power off or reboot by writing `control/shutdown`; the
//! guest advertises that it listens with `control/feature-poweroff` and
//! `control/feature-reboot`, and acknowledges a request by clearing the node.
//!
//! A request is noted (apps see it through [`requested`] and
//! [`wait_for_shutdown`]) and the app gets [`GRACE`] to finish: when `main`
//! returns the domain ends as asked; when the grace runs out while the app
//! sleeps, the runtime ends it anyway.

use crate::events::{self, Instant};
use crate::xenstore;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use core::time::Duration;
use mote_xen::sched::{shutdown, ShutdownReason};
use mote_xen::xenstore::{Errno, Store, WatchId, XsError};
use spin::Once;

/// How long an app has to finish after a shutdown request (`shutdown_grace_ms=`
/// on the command line overrides it).
pub const GRACE: Duration = Duration::from_secs(5);

/// What the toolstack asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// `xl shutdown`: end the domain.
    Poweroff,
    /// `xl reboot`: end the domain, which the toolstack then starts again.
    Reboot,
}

impl Request {
    pub(crate) fn reason(self) -> ShutdownReason {
        match self {
            Request::Poweroff => ShutdownReason::Poweroff,
            Request::Reboot => ShutdownReason::Reboot,
        }
    }
}

const NONE: u8 = 0;
static REQUESTED: AtomicU8 = AtomicU8::new(NONE);
/// System time (ns) at which a requested shutdown is forced; 0: none.
static FORCE_AT: AtomicU64 = AtomicU64::new(0);
static WATCH: Once<WatchId> = Once::new();
static GRACE_NS: Once<u64> = Once::new();

/// Advertises the control features and watches `control/shutdown`.
pub(crate) fn init(xs: &mut xenstore::Xenstore, grace: Duration) -> Result<(), XsError> {
    GRACE_NS.call_once(|| u64::try_from(grace.as_nanos()).unwrap_or(u64::MAX));
    let features = [
        xenstore::Request::Write("control/feature-poweroff", b"1"),
        xenstore::Request::Write("control/feature-reboot", b"1"),
    ];
    let (watch, written) = xs.watch_then("control/shutdown", "mote-lifecycle", &features)?;
    WATCH.call_once(|| watch);
    written.into_iter().try_for_each(|w| w.map(drop))
}

/// When a requested shutdown will be forced, if one is pending.
pub(crate) fn force_deadline() -> Option<Instant> {
    match FORCE_AT.load(Ordering::SeqCst) {
        0 => None,
        ns => Some(Instant::from_nanos(ns)),
    }
}

/// The request received so far, if any.
pub fn requested() -> Option<Request> {
    match REQUESTED.load(Ordering::SeqCst) {
        1 => Some(Request::Poweroff),
        2 => Some(Request::Reboot),
        _ => None,
    }
}

/// Wakes the task awaiting [`shutdown_requested`] when a request comes.
static WAITER: spin::Mutex<Option<core::task::Waker>> = spin::Mutex::new(None);

/// Resolves when the toolstack asks the domain to shut down: the async
/// form of [`wait_for_shutdown`], for apps running on the executor.
pub async fn shutdown_requested() -> Request {
    core::future::poll_fn(|cx| match requested() {
        Some(request) => core::task::Poll::Ready(request),
        None => {
            *WAITER.lock() = Some(cx.waker().clone());
            core::task::Poll::Pending
        }
    })
    .await
}

/// Sleeps until the toolstack asks the domain to shut down; blocks the
/// executor, so async apps use [`shutdown_requested`].
pub fn wait_for_shutdown() -> Request {
    loop {
        // Look at xenstore after every wake-up: the store event that woke us may have been
        // taken by a nested wait for a reply.
        poll();
        if let Some(request) = requested() {
            return request;
        }
        events::block(None, None);
    }
}

/// Background work, run whenever the runtime wakes: takes a new request
/// from xenstore, and ends the domain once a request's grace has run out.
/// True when a request arrived just now (a task may have been woken).
pub(crate) fn poll() -> bool {
    let force_at = FORCE_AT.load(Ordering::SeqCst);
    if force_at != 0 && Instant::now().as_nanos() >= force_at {
        if let Some(request) = requested() {
            log::warn!("shutdown ({request:?}) forced: the app did not finish within its grace time");
            crate::console::flush();
            shutdown(request.reason());
        }
    }
    let Some(&watch) = WATCH.get() else { return false };
    // Busy means an app is using xenstore; its next wake-up retries.
    let Some(result) = xenstore::try_with(|xs| take_request(xs, watch)) else { return false };
    match result {
        Ok(None) => false,
        Ok(Some(request)) => {
            log::info!("the toolstack asked for {request:?}");
            REQUESTED.store(request as u8 + 1, Ordering::SeqCst);
            if let Some(waker) = WAITER.lock().take() {
                waker.wake();
            }
            let grace = GRACE_NS.get().copied().unwrap_or(0);
            FORCE_AT.store(Instant::now().as_nanos().saturating_add(grace).max(1), Ordering::SeqCst);
            true
        }
        Err(e) => {
            log::error!("reading control/shutdown: {e}");
            false
        }
    }
}

/// Handles pending watch events; a non-empty `control/shutdown` is a request,
/// acknowledged by writing it empty.
fn take_request(xs: &mut xenstore::Xenstore, watch: WatchId) -> Result<Option<Request>, XsError> {
    let mut request = None;
    while xs.next_event(watch)?.is_some() {
        let value = match xs.read_string("control/shutdown") {
            Ok(v) => v,
            Err(XsError::Xen(Errno::NoEnt)) => continue,
            Err(e) => return Err(e),
        };
        let asked = match value.as_str() {
            "" => continue,
            "poweroff" | "halt" => Request::Poweroff,
            "reboot" => Request::Reboot,
            // Left unacknowledged, so the toolstack reports that the guest did not comply.
            other => {
                log::warn!("unsupported shutdown request \"{other}\" (not acknowledged)");
                continue;
            }
        };
        xs.write("control/shutdown", b"")?;
        request = Some(asked);
    }
    Ok(request)
}
