//! The xenbus handshake of a PV device frontend (`io/xenbus.h`,
//! `docs/misc/xenstore-paths` `device/…`).
//!
//! The toolstack creates the frontend directory (e.g. `device/vif/0`) with
//! `backend` (the backend's directory, `/local/domain/<id>/backend/…`),
//! `backend-id` and `state`. Each end publishes its [`XenbusState`] in its
//! own `state` node and watches the other's: the backend reaches InitWait,
//! the frontend publishes its rings and becomes Initialised (or Connected),
//! the backend connects; to close, the frontend walks Closing → Closed as
//! the backend follows.
//!
//! A [`Frontend`] holds no xenstore connection: each call takes the
//! [`Client`], so a driver can share it (the runtime keeps it behind a lock).
//! The backend is another domain and is not trusted: its paths and states
//! are validated, and a state that is not in the header is an error.

use crate::xenstore::{Client, Errno, Reply, Request, Store, Transport, WatchId, XsError};
use crate::DomId;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// `enum xenbus_state` in `io/xenbus.h`; stored in xenstore as its decimal
/// value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum XenbusState {
    Unknown = 0,
    Initialising = 1,
    /// Early initialisation done; waiting for the peer or hotplug scripts.
    InitWait = 2,
    /// Waiting for a connection from the peer.
    Initialised = 3,
    Connected = 4,
    /// Being closed after an error or an unplug.
    Closing = 5,
    Closed = 6,
    Reconfiguring = 7,
    Reconfigured = 8,
}

impl XenbusState {
    /// The state a `state` node holds: exactly one of the header's values in
    /// decimal, nothing around it.
    pub fn parse(text: &[u8]) -> Result<XenbusState, XenbusError> {
        use XenbusState::*;
        Ok(match text {
            b"0" => Unknown,
            b"1" => Initialising,
            b"2" => InitWait,
            b"3" => Initialised,
            b"4" => Connected,
            b"5" => Closing,
            b"6" => Closed,
            b"7" => Reconfiguring,
            b"8" => Reconfigured,
            _ => return Err(XenbusError::BadState),
        })
    }

    /// The text stored in a `state` node.
    pub fn text(self) -> &'static str {
        ["0", "1", "2", "3", "4", "5", "6", "7", "8"][self as usize]
    }

    /// Closing or Closed: the end is going away.
    pub fn is_closing(self) -> bool {
        matches!(self, XenbusState::Closing | XenbusState::Closed)
    }
}

/// What a change of the backend's state means to the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendEvent {
    /// The backend moved to this state (Unknown: its state node is gone).
    State(XenbusState),
    /// The backend went to Closing or Closed (given): the device is going
    /// away, so the driver stops using it and calls [`Frontend::close`].
    Closing(XenbusState),
}

impl BackendEvent {
    fn of(state: XenbusState) -> BackendEvent {
        if state.is_closing() {
            BackendEvent::Closing(state)
        } else {
            BackendEvent::State(state)
        }
    }
}

/// Why a xenbus operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XenbusError {
    Xenstore(XsError),
    /// The frontend directory has no such node (no such device, or it was
    /// removed).
    Missing(&'static str),
    /// `backend` is not `/local/domain/<id>/backend/…`.
    BadBackendPath,
    /// `backend-id` is not a domain id, or not the domain `backend` names.
    BadBackendId,
    /// The backend's `state` is not one of `io/xenbus.h`'s values.
    BadState,
    /// The backend went to Closing or Closed while we waited for another
    /// state.
    BackendClosed(XenbusState),
    /// The backend did not follow our close in the time given
    /// ([`Frontend::close_within`]); its state when we gave up.
    NoAnswer(XenbusState),
}

impl From<XsError> for XenbusError {
    fn from(e: XsError) -> Self {
        XenbusError::Xenstore(e)
    }
}

impl fmt::Display for XenbusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XenbusError::Xenstore(e) => e.fmt(f),
            XenbusError::Missing(node) => write!(f, "xenbus: the frontend has no \"{node}\" node"),
            XenbusError::BadBackendPath => f.write_str("xenbus: backend is not /local/domain/<id>/backend/…"),
            XenbusError::BadBackendId => f.write_str("xenbus: backend-id does not match the backend path"),
            XenbusError::BadState => f.write_str("xenbus: the backend's state is not a XenbusState"),
            XenbusError::BackendClosed(state) => write!(f, "xenbus: the backend went to {state:?}"),
            XenbusError::NoAnswer(state) => {
                write!(f, "xenbus: the backend did not answer our closing (it stayed {state:?})")
            }
        }
    }
}

/// A domain id written as xenstore does: canonical decimal, not one of the
/// reserved ids (`DOMID_FIRST_RESERVED` in `xen.h`).
fn parse_domid(text: &str) -> Option<DomId> {
    const FIRST_RESERVED: u16 = 0x7FF0;
    let canonical = text.bytes().all(|b| b.is_ascii_digit()) && (text == "0" || !text.starts_with('0'));
    let id: u16 = text.parse().ok().filter(|_| canonical)?;
    (id < FIRST_RESERVED).then_some(DomId(id))
}

/// Checks `backend` (`/local/domain/<id>/backend/<rest>`, `<rest>` without
/// empty components) and that `backend_id` names the same domain.
fn check_backend(backend: &str, backend_id: &str) -> Result<DomId, XenbusError> {
    let (id, rest) = backend
        .strip_prefix("/local/domain/")
        .and_then(|p| p.split_once("/backend/"))
        .ok_or(XenbusError::BadBackendPath)?;
    let id = parse_domid(id).ok_or(XenbusError::BadBackendPath)?;
    if rest.split('/').any(str::is_empty) {
        return Err(XenbusError::BadBackendPath);
    }
    match parse_domid(backend_id) {
        Some(named) if named == id => Ok(id),
        _ => Err(XenbusError::BadBackendId),
    }
}

/// Sleeps until the backend's watch may have fired: false when the
/// caller's time is up.
type Waiter<'a, T> = dyn FnMut(&mut Client<T>, WatchId) -> Result<bool, XenbusError> + 'a;

/// The frontend end of one device.
#[derive(Debug)]
pub struct Frontend {
    path: String,
    backend: String,
    backend_id: DomId,
    /// Our state, as read at [`Frontend::open`] and published since.
    state: XenbusState,
    /// The backend's state as last read.
    backend_state: XenbusState,
    watch: WatchId,
}

/// The keys a [`Frontend::publish`] writes in the frontend's directory.
pub struct Keys<'a> {
    dir: &'a str,
    /// Full paths and values, in the order written.
    writes: Vec<(String, String)>,
}

impl Keys<'_> {
    /// Writes `value` at `key` in the frontend's directory.
    pub fn write(&mut self, key: &str, value: &str) {
        self.writes.push((format!("{}/{key}", self.dir), value.into()));
    }
}

impl Frontend {
    /// Opens the device whose frontend directory is `path` (e.g.
    /// `device/vif/0`): reads and checks `backend` and `backend-id`, reads
    /// our state, reads the backend's state and watches it.
    pub fn open<T: Transport>(xs: &mut Client<T>, path: &str) -> Result<Frontend, XenbusError> {
        let nodes = [format!("{path}/backend"), format!("{path}/backend-id"), format!("{path}/state")];
        let mut nodes = xs.call_all(&nodes.each_ref().map(|n| Request::Read(n)));
        let backend = node_text(nodes.next_reply(), "backend")?;
        let backend_id = check_backend(&backend, &node_text(nodes.next_reply(), "backend-id")?)?;
        let state = XenbusState::parse(node_text(nodes.next_reply(), "state")?.as_bytes())?;
        // The backend's state is read after the watch is in place, in the
        // same round trip: no change in between is lost.
        let state_node = format!("{backend}/state");
        let (watch, mut read) = xs.watch_then(&state_node, path, &[Request::Read(&state_node)])?;
        let backend_state = match state_of(read.next_reply()) {
            Ok(state) => state,
            Err(e) => {
                // Best effort: the read's error is the one to report.
                let _ = xs.unwatch(watch);
                return Err(e);
            }
        };
        Ok(Frontend { path: path.into(), backend, backend_id, state, backend_state, watch })
    }

    /// The frontend directory, as given to [`Frontend::open`].
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The backend's directory.
    pub fn backend(&self) -> &str {
        &self.backend
    }

    /// The domain the backend runs in (to grant pages and bind event
    /// channels to).
    pub fn backend_id(&self) -> DomId {
        self.backend_id
    }

    /// The backend's state as last read.
    pub fn backend_state(&self) -> XenbusState {
        self.backend_state
    }

    /// Our state as last read or published.
    pub fn state(&self) -> XenbusState {
        self.state
    }

    /// Publishes our `state`.
    pub fn switch<T: Transport>(
        &mut self,
        xs: &mut Client<T>,
        state: XenbusState,
    ) -> Result<(), XenbusError> {
        self.publish(xs, state, |_| {})
    }

    /// Starts a handshake: our state to Initialising, unless it is already
    /// (as the toolstack creates a device: the transaction's three round
    /// trips saved at boot).
    pub fn initialise<T: Transport>(&mut self, xs: &mut Client<T>) -> Result<(), XenbusError> {
        match self.state {
            XenbusState::Initialising => Ok(()),
            _ => self.switch(xs, XenbusState::Initialising),
        }
    }

    /// Writes the keys `body` writes (ring references, event channel, …)
    /// and our `state` in one transaction, so the backend sees them
    /// together. The transaction's requests go in one round trip
    /// ([`Store::call_all`]). A device whose directory was removed is not
    /// recreated: that is [`XenbusError::Missing`].
    pub fn publish<T: Transport>(
        &mut self,
        xs: &mut Client<T>,
        state: XenbusState,
        body: impl FnOnce(&mut Keys<'_>),
    ) -> Result<(), XenbusError> {
        let dir = self.path.as_str();
        let node = format!("{dir}/state");
        let mut keys = Keys { dir, writes: Vec::new() };
        body(&mut keys);
        // Checked first: writes would recreate a removed directory, but the
        // transaction is then not committed.
        let mut reqs = Vec::with_capacity(keys.writes.len() + 2);
        reqs.push(Request::Read(&node));
        reqs.extend(keys.writes.iter().map(|(path, value)| Request::Write(path, value.as_bytes())));
        reqs.push(Request::Write(&node, state.text().as_bytes()));
        let result = xs.transaction(|tx| tx.call_all(&reqs).try_for_each(|r| r.map(drop)));
        match result {
            Err(XsError::Xen(Errno::NoEnt)) => Err(XenbusError::Missing("state")),
            result => {
                result?;
                self.state = state;
                Ok(())
            }
        }
    }

    /// Takes the backend's pending watch events without blocking: what
    /// changed since the state last read, if anything.
    pub fn poll<T: Transport>(&mut self, xs: &mut Client<T>) -> Result<Option<BackendEvent>, XenbusError> {
        if xs.next_event(self.watch)?.is_none() {
            return Ok(None);
        }
        self.reread(xs)
    }

    /// Blocks until `want` accepts the backend's state, and returns it.
    /// A backend that goes to Closing or Closed instead is
    /// [`XenbusError::BackendClosed`].
    pub fn wait_backend<T: Transport>(
        &mut self,
        xs: &mut Client<T>,
        mut want: impl FnMut(XenbusState) -> bool,
    ) -> Result<XenbusState, XenbusError> {
        let state = self.wait_until(xs, |s| want(s) || s.is_closing())?;
        if want(state) {
            Ok(state)
        } else {
            Err(XenbusError::BackendClosed(state))
        }
    }

    /// Closes the device: Closing, then (once the backend is Closing or
    /// Closed) Closed, then waits for the backend to be Closed; a backend
    /// whose state node is gone (Unknown) counts as closed. Stops watching
    /// the backend; returns its last state. Waits as long as the backend
    /// takes: [`Frontend::close_within`] gives up.
    pub fn close<T: Transport>(self, xs: &mut Client<T>) -> Result<XenbusState, XenbusError> {
        self.close_with(xs, &mut |xs, watch| {
            xs.wait_event(watch)?;
            Ok(true)
        })
    }

    /// [`Frontend::close`] that gives up on a backend that does not follow:
    /// `wait` blocks until xenstore traffic may have arrived (true) or the
    /// caller's time is up (false), then the close fails with
    /// [`XenbusError::NoAnswer`], our state left at Closing or Closed.
    /// Either way the backend is no longer watched.
    pub fn close_within<T: Transport>(
        self,
        xs: &mut Client<T>,
        mut wait: impl FnMut() -> bool,
    ) -> Result<XenbusState, XenbusError> {
        self.close_with(xs, &mut |_, _| Ok(wait()))
    }

    fn close_with<T: Transport>(
        mut self,
        xs: &mut Client<T>,
        wait: &mut Waiter<'_, T>,
    ) -> Result<XenbusState, XenbusError> {
        let result = self.walk_to_closed(xs, wait);
        let unwatched = xs.unwatch(self.watch);
        let state = result?;
        unwatched?;
        Ok(state)
    }

    /// Stops watching the backend, leaving both states as they are (for a
    /// frontend only opened to watch a device that may come back).
    pub fn forget<T: Transport>(self, xs: &mut Client<T>) -> Result<(), XenbusError> {
        Ok(xs.unwatch(self.watch)?)
    }

    fn walk_to_closed<T: Transport>(
        &mut self,
        xs: &mut Client<T>,
        wait: &mut Waiter<'_, T>,
    ) -> Result<XenbusState, XenbusError> {
        use XenbusState::*;
        self.switch(xs, Closing)?;
        self.wait_with(xs, |s| matches!(s, Closing | Closed | Unknown), wait)?;
        self.switch(xs, Closed)?;
        self.wait_with(xs, |s| matches!(s, Closed | Unknown), wait)
    }

    /// Blocks until `want` accepts the backend's state, and returns it.
    fn wait_until<T: Transport>(
        &mut self,
        xs: &mut Client<T>,
        want: impl FnMut(XenbusState) -> bool,
    ) -> Result<XenbusState, XenbusError> {
        self.wait_with(xs, want, &mut |xs, watch| {
            xs.wait_event(watch)?;
            Ok(true)
        })
    }

    /// Until `want` accepts the backend's state, reads it again after each
    /// `wait`; a `wait` that gives up is [`XenbusError::NoAnswer`]. A watch
    /// event the client already holds is not waited for: it may have come in
    /// with the reply to our last read, under that reply's notification.
    fn wait_with<T: Transport>(
        &mut self,
        xs: &mut Client<T>,
        mut want: impl FnMut(XenbusState) -> bool,
        wait: &mut Waiter<'_, T>,
    ) -> Result<XenbusState, XenbusError> {
        self.poll(xs)?;
        while !want(self.backend_state) {
            if !xs.holds_event(self.watch) && !wait(xs, self.watch)? {
                return Err(XenbusError::NoAnswer(self.backend_state));
            }
            self.reread(xs)?;
        }
        Ok(self.backend_state)
    }

    /// Reads the backend's state after watch events (taking any others
    /// pending); the event, if it changed.
    fn reread<T: Transport>(&mut self, xs: &mut Client<T>) -> Result<Option<BackendEvent>, XenbusError> {
        while xs.next_event(self.watch)?.is_some() {}
        let state = read_state(xs, &self.backend)?;
        if state == self.backend_state {
            return Ok(None);
        }
        self.backend_state = state;
        Ok(Some(BackendEvent::of(state)))
    }
}

/// The text a read of node `name` gives; a missing node is
/// [`XenbusError::Missing`].
fn node_text(reply: Result<Reply, XsError>, name: &'static str) -> Result<String, XenbusError> {
    match reply {
        Err(XsError::Xen(Errno::NoEnt)) => Err(XenbusError::Missing(name)),
        reply => Ok(reply?.into_string()?),
    }
}

/// The backend's state; Unknown while (or once) its node does not exist,
/// as Linux reads it. xenstored answers EACCES instead of ENOENT for a missing
/// node whose nearest existing parent we may not read: that is how a backend
/// directory looks once the toolstack removed it with its empty parents
/// (`backend/vif/<domid>`), leaving dom0's `backend/vif`.
fn read_state<T: Transport>(xs: &mut Client<T>, backend: &str) -> Result<XenbusState, XenbusError> {
    state_of(xs.call(&Request::Read(&format!("{backend}/state"))))
}

/// The state a read of a backend's `state` node gives: see [`read_state`].
fn state_of(reply: Result<Reply, XsError>) -> Result<XenbusState, XenbusError> {
    match reply {
        Ok(text) => XenbusState::parse(&text.into_bytes()),
        Err(XsError::Xen(Errno::NoEnt | Errno::Acces)) => Ok(XenbusState::Unknown),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests;
