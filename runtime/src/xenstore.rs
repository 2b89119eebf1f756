//! The domain's xenstore connection, shared by the runtime (lifecycle) and
//! apps ([`with`]).

use crate::events::{self, Instant, Wake};
use alloc::boxed::Box;
use core::fmt;
use core::time::Duration;
use mote_xen::event::{self, Port};
use mote_xen::xenbus::{Frontend, XenbusError};
use mote_xen::xenstore::{Client, Interface, RingTransport};
use spin::{Mutex, Once};

pub use mote_xen::xenstore::{Errno, Permission, Reply, Request, Store, WatchId, XsError};

/// How the ring transport notifies xenstored and waits for it.
type Hook = Box<dyn FnMut() + Send>;

/// The xenstore client type apps get in [`with`].
pub type Xenstore = Client<RingTransport<'static, Hook, Hook>>;

static STORE: Mutex<Option<Xenstore>> = Mutex::new(None);
static PORT: Once<Port> = Once::new();

/// Connects to xenstored through the ring Xen set up (`HVM_PARAM_STORE_*`).
pub(crate) fn init() -> Result<(), mote_xen::hvm::RingPageError> {
    let (page, port) = Interface::from_hvm_params()?;
    PORT.call_once(|| port);
    let notify: Hook = Box::new(move || {
        if let Err(e) = event::send(port) {
            log::error!("notifying xenstored on {port}: {e}");
        }
    });
    // Replies and watch events raise the store port: sleep until it fires.
    let wait: Hook = Box::new(move || events::wait_for(port));
    *STORE.lock() = Some(Client::new(RingTransport::new(page, notify, wait)));
    Ok(())
}

/// The store's event-channel port, once connected.
pub(crate) fn port() -> Option<Port> {
    PORT.get().copied()
}

/// Runs `f` with the xenstore client; `None` when the domain has no
/// xenstore connection. Calls from inside `f` to `with` would deadlock.
///
/// Paths without a leading `/` are the domain's own (`/local/domain/<id>/…`); a guest may
/// write under `data/`, which dom0 reads with `xenstore-read`:
///
/// ```no_run
/// use mote::xenstore::Store;
///
/// let name = mote::xenstore::with(|xs| xs.read_string("name"));
/// if let Some(Ok(name)) = name {
///     mote::println!("domain {name}");
/// }
/// mote::xenstore::with(|xs| xs.write("data/status", b"serving"));
/// ```
pub fn with<R>(f: impl FnOnce(&mut Xenstore) -> R) -> Option<R> {
    STORE.lock().as_mut().map(f)
}

/// Like [`with`], but gives up at once when the client is busy (the
/// runtime's background work must not wait on an app's request).
pub(crate) fn try_with<R>(f: impl FnOnce(&mut Xenstore) -> R) -> Option<R> {
    STORE.try_lock()?.as_mut().map(f)
}

/// How long closing a PV device waits for its backend to follow: a backend that never answers
/// does not hold the guest (the caller keeps whatever the backend may still map). libxl forces
/// a detach the frontend does not answer after 10 s too.
pub(crate) const CLOSE_LIMIT: Duration = Duration::from_secs(10);

/// Walks `frontend` to Closed, waiting at most [`CLOSE_LIMIT`] for the backend to follow
/// (sleeping until xenstore traffic or the deadline, on the PV clock's one-shot timer); stops
/// watching it either way. Logs the outcome as `<device>: closed (backend <state>)` or why
/// not, under the caller's log `target` (its module path).
pub(crate) fn close_frontend(frontend: Frontend, target: &str, device: fmt::Arguments<'_>) {
    let deadline = Instant::now().checked_add(CLOSE_LIMIT);
    let wait = || loop {
        match events::block(None, deadline) {
            Wake::Store => return true,
            Wake::Deadline => return false,
            Wake::Event | Wake::Shutdown => {}
        }
    };
    match with(|xs| frontend.close_within(xs, wait)) {
        Some(Ok(state)) => log::info!(target: target, "{device}: closed (backend {state:?})"),
        Some(Err(XenbusError::NoAnswer(state))) => log::error!(
            target: target,
            "{device}: the backend did not answer our closing within {} s (it stayed {state:?}); giving up on it",
            CLOSE_LIMIT.as_secs()
        ),
        Some(Err(e)) => log::warn!(target: target, "{device}: closing: {e}"),
        None => {}
    }
}
