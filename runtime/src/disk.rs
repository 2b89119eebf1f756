//! Disks: the domain's virtual block devices (`disk = [...]` in xl), through
//! blkfront. Calls block the caller until the backend answers (the vCPU
//! sleeps in the hypervisor meanwhile); [`Disk::into_async`] makes them
//! futures instead.
//!
//! Each disk watches its backend: when the backend closes (`xl
//! block-detach`, a backend shutting down), the disk fails every request it
//! has and every later one with [`DiskError::Gone`], answers the handshake
//! down to Closed and gives back its grants, event channel and pages; the
//! rest of the domain goes on. A disk dropped is closed the same way.
//!
//! Closing waits at most 10 s (the PV clock's timer) for the backend to
//! follow. A backend silent that long is given up on, with an error logged:
//! the event channel is closed and every grant it no longer maps is ended,
//! but a page it still maps stays granted and the disk's pages (one
//! allocation) are never freed or reused, so a late write by that backend
//! lands in memory nothing else uses.

use crate::devices::Appeared;
use crate::events::{self, Instant, Wake};
use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;
use core::task::{Poll, Waker};
use core::time::Duration;
use mote_blkfront::connect::{self, ConnectError};
use mote_blkfront::device::{self, Signal};
use mote_xen::event::{self, Port};
use mote_xen::xenbus::{BackendEvent, Frontend, XenbusError, XenbusState};
use mote_xen::xenstore::XsError;

pub use crate::disk_async::AsyncDisk;
pub use mote_blkfront::device::{Discard, DiskError, DiskInfo, Features, Stats};

/// The event channel both ways, through the runtime's event loop, and the
/// backend's state, through the xenbus frontend's watch.
struct Events {
    id: u32,
    /// `None` once closed.
    frontend: Option<Frontend>,
    /// The backend's state once it went to Closing or Closed.
    gone: Option<XenbusState>,
}

impl Events {
    /// Takes the backend's state changes, if the store is free.
    fn look(&mut self) {
        let Some(frontend) = self.frontend.as_mut() else { return };
        if self.gone.is_some() {
            return;
        }
        match crate::xenstore::try_with(|xs| frontend.poll(xs)) {
            Some(Ok(Some(BackendEvent::Closing(state)))) => self.gone = Some(state),
            Some(Err(e)) => log::warn!("disk: vbd {}: backend state: {e}", self.id),
            _ => {}
        }
    }

    /// Walks the frontend to Closed, waiting at most [`crate::xenstore::CLOSE_LIMIT`] for
    /// the backend to follow; stops watching it either way.
    fn close_frontend(&mut self) {
        let id = self.id;
        let Some(frontend) = self.frontend.take() else { return };
        crate::xenstore::close_frontend(frontend, module_path!(), format_args!("disk: vbd {id}"));
    }
}

impl Signal for Events {
    fn notify(&mut self, port: Port) {
        if let Err(e) = event::send(port) {
            log::error!("blkfront: notifying the backend on {port}: {e}");
        }
    }

    fn wait(&mut self, port: Port, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            match events::block(Some(port), deadline) {
                Wake::Event => return true,
                Wake::Deadline => {
                    let (pending, masked, fired) = events::delivery(port);
                    log::warn!(
                        "disk: vbd {}: no event from the backend in {} s ({port}: pending {pending}, \
                         masked {masked}, taken in {fired})",
                        self.id,
                        timeout.as_secs()
                    );
                    return false;
                }
                Wake::Store => {
                    self.look();
                    if self.gone.is_some() {
                        return false;
                    }
                }
                Wake::Shutdown => {}
            }
        }
    }

    fn gone(&mut self) -> Option<XenbusState> {
        self.look();
        self.gone
    }

    fn close(&mut self, disk: &mut device::Disk) {
        let id = self.id;
        if self.frontend.is_none() {
            return;
        }
        disk.retire();
        self.close_frontend();
        crate::executor::xen::stop_waking_on(disk.port());
        match crate::grants::with(|gt| connect::release(disk, gt)).flatten() {
            Some(r) if r.still_mapped > 0 => log::warn!(
                "disk: vbd {id}: the backend still maps {} of {} granted pages: those stay granted, \
                 and the disk's {} KiB of ring and buffers stay allocated for good",
                r.still_mapped,
                r.grants,
                r.grants * 4
            ),
            Some(r) => {
                log::info!("disk: vbd {id}: gave back {} granted pages and the event channel", r.grants)
            }
            None => {}
        }
    }
}

/// A connected disk. Dropping it closes it: the backend is told, and the
/// grants, event channel and pages go back.
pub struct Disk {
    /// `None` only once [`Disk::into_async`] took it.
    link: Option<Link>,
    id: u32,
}

/// The data path and its way to the backend.
struct Link {
    disk: device::Disk,
    events: Events,
}

impl Link {
    /// After a call: once the backend went away, closes the disk's end.
    fn closed_if_gone<T>(&mut self, result: Result<T, DiskError>) -> Result<T, DiskError> {
        if let Err(DiskError::Gone(_)) = result {
            self.events.close(&mut self.disk);
        }
        result
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        if let Some(Link { disk, events }) = &mut self.link {
            events.close(disk);
        }
    }
}

impl Disk {
    fn link(&self) -> &Link {
        self.link.as_ref().expect("only into_async takes the link, and it takes the disk")
    }

    fn link_mut(&mut self) -> &mut Link {
        self.link.as_mut().expect("only into_async takes the link, and it takes the disk")
    }

    /// Size, sector size, read-only and flush support, as the backend says.
    pub fn info(&self) -> DiskInfo {
        self.link().disk.info()
    }

    /// The virtual device id (`device/vbd/<id>`; 51712 is xvda).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Reads `buf.len()` bytes (whole sectors) from `sector` on.
    pub fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        let link = self.link_mut();
        let result = link.disk.read(sector, buf, &mut link.events);
        link.closed_if_gone(result)
    }

    /// Writes `data` (whole sectors) from `sector` on.
    pub fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), DiskError> {
        let link = self.link_mut();
        let result = link.disk.write(sector, data, &mut link.events);
        link.closed_if_gone(result)
    }

    /// Makes written data durable.
    pub fn flush(&mut self) -> Result<(), DiskError> {
        let link = self.link_mut();
        let result = link.disk.flush(&mut link.events);
        link.closed_if_gone(result)
    }

    /// What was negotiated with the backend: ring pages, indirect
    /// segments, persistent grants, discard.
    pub fn features(&self) -> Features {
        self.link().disk.features()
    }

    /// Tells the backend `count` sectors from `sector` on are unused (they
    /// may read back as zeros); [`DiskError::DiscardUnsupported`] when the
    /// backend offers no discard. Only whole extents of the backend's
    /// `discard-granularity` (at its `discard-alignment`) go out, the ends
    /// are left as they are; returns the sectors discarded.
    pub fn discard(&mut self, sector: u64, count: u64) -> Result<u64, DiskError> {
        let link = self.link_mut();
        let result = link.disk.discard(sector, count, &mut link.events);
        link.closed_if_gone(result)
    }

    /// The disk as futures on the executor ([`crate::disk_async::AsyncDisk`]):
    /// several tasks can then keep many requests with the backend at once.
    /// Dropping the last clone closes the disk.
    ///
    /// # Panics
    /// Outside [`crate::block_on`] (the disk's driver joins the running
    /// executor).
    pub fn into_async(mut self) -> AsyncDisk {
        let Link { disk, events } = self.link.take().expect("a disk is made with its link");
        let port = disk.port();
        let (disk, driver) = AsyncDisk::new(disk, Box::new(events), Box::new(crate::time::now));
        crate::executor::xen::wake_on(port);
        crate::executor::add_driver(driver);
        disk
    }

    /// Requests sent so far, how many were indirect, and the most that
    /// were with the backend at once.
    pub fn stats(&self) -> Stats {
        self.link().disk.stats()
    }

    /// How long the backend may leave requests unanswered before the disk
    /// fails for good ([`DiskError::Timeout`], with the ring's state logged);
    /// 30 s unless set.
    pub fn set_timeout(&mut self, timeout: core::time::Duration) {
        self.link_mut().disk.set_timeout(timeout);
    }
}

/// Why the disks could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// The domain has no xenstore connection or no grant table (what is missing).
    NoXen(&'static str),
    /// Listing the domain's disks (`device/vbd`) failed.
    Xenstore(XsError),
    /// The handshake with disk `.0`'s backend failed.
    Disk(u32, ConnectError),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::NoXen(what) => write!(f, "no {what}: cannot open disks"),
            OpenError::Xenstore(e) => write!(f, "listing disks: {e}"),
            OpenError::Disk(id, e) => write!(f, "disk {id}: {e}"),
        }
    }
}

/// A disk connected: logged, with its way to the backend.
fn opened(id: u32, inner: device::Disk, frontend: Frontend) -> Disk {
    let info = inner.info();
    log::info!(
        "disk: vbd {id}: {} sectors of {} bytes ({} MiB){}{}",
        info.sectors,
        info.sector_size,
        info.bytes() >> 20,
        if info.read_only { ", read-only" } else { "" },
        if info.flush { ", flush" } else { "" }
    );
    log::info!("disk: vbd {id}: {}", inner.features());
    let events = Events { id, frontend: Some(frontend), gone: None };
    Disk { link: Some(Link { disk: inner, events }), id }
}

/// The ids in `device/vbd`, in order; none without the directory.
fn disk_ids() -> Result<Vec<u32>, OpenError> {
    crate::devices::numbers("device/vbd").ok_or(OpenError::NoXen("xenstore"))?.map_err(OpenError::Xenstore)
}

/// Opens every disk the domain has, in device-id order.
pub fn open_all() -> Result<Vec<Disk>, OpenError> {
    disk_ids()?
        .into_iter()
        .map(|id| {
            let (inner, frontend) = crate::xenstore::with(|xs| {
                crate::grants::with(|gt| connect::connect(xs, gt, id, connect::Config::DEFAULT))
                    .ok_or(OpenError::NoXen("grant table"))
            })
            .ok_or(OpenError::NoXen("xenstore"))??
            .map_err(|e| OpenError::Disk(id, e))?;
            Ok(opened(id, inner, frontend))
        })
        .collect()
}

/// Watches `device/vbd` for disks attached while the domain runs (`xl
/// block-attach`, under a new name or under the name of one detached
/// before): [`Attached::next`] offers each, and the app decides whether to
/// [`Offer::connect`] it. The disks there already are not offered. Call
/// inside [`crate::block_on`].
pub fn watch() -> Result<Attached, OpenError> {
    let (appeared, _) =
        Appeared::watch("device/vbd").ok_or(OpenError::NoXen("xenstore"))?.map_err(OpenError::Xenstore)?;
    let shared = Rc::new(RefCell::new(Watcher { pending: Vec::new() }));
    crate::executor::add_driver(WatchDriver(shared.clone()));
    Ok(Attached { appeared, watcher: shared })
}

/// For an app that reads its disks at start only: logs each disk attached
/// later (also one detached and attached again) on the console, `<app>:
/// disk xvda (vbd 51712) attached while serving: not read (<why>); restart
/// the domain to use it`, and leaves it unconnected. Call inside
/// [`crate::block_on`].
pub fn log_attached(app: &'static str, why: &'static str) {
    let mut attached = match watch() {
        Ok(attached) => attached,
        Err(e) => return log::warn!("{app}: not watching for disks attached later: {e}"),
    };
    crate::spawn(async move {
        loop {
            match attached.next().await {
                Ok(disk) => crate::println!(
                    "{app}: disk {} attached while serving: not read ({why}); restart the domain to use it",
                    disk.name()
                ),
                Err(e) => log::warn!("{app}: watching for disks attached later: {e}"),
            }
        }
    });
}

/// Disks attached while the domain runs: see [`watch`].
pub struct Attached {
    appeared: Appeared,
    watcher: Rc<RefCell<Watcher>>,
}

struct Watcher {
    /// Disks being connected ([`Offer::connect`]), by id: their frontends,
    /// polled for the backend's state.
    pending: Vec<(u32, Pending)>,
}

impl Watcher {
    /// The disk being connected under `id`.
    fn pending(&mut self, id: u32) -> &mut Pending {
        let found = self.pending.iter_mut().find(|(i, _)| *i == id);
        &mut found.expect("a disk being connected is pending").1
    }

    /// Takes the disk being connected under `id` out of the pending ones.
    fn take(&mut self, id: u32) -> Option<Pending> {
        let at = self.pending.iter().position(|(i, _)| *i == id)?;
        Some(self.pending.swap_remove(at).1)
    }
}

struct Pending {
    frontend: Frontend,
    waker: Option<Waker>,
    error: Option<XenbusError>,
}

/// On every turn of the run loop, if the store is free: follows the
/// backends of the disks being connected.
struct WatchDriver(Rc<RefCell<Watcher>>);

impl crate::executor::Driver for WatchDriver {
    fn poll(&mut self, _now: crate::time::Instant) -> Option<crate::time::Instant> {
        let mut w = self.0.borrow_mut();
        if w.pending.is_empty() {
            return None;
        }
        crate::xenstore::try_with(|xs| {
            for (_, p) in w.pending.iter_mut() {
                let woken = match p.frontend.poll(xs) {
                    Ok(None) => false,
                    Ok(Some(_)) => true,
                    Err(e) => {
                        p.error = Some(e);
                        true
                    }
                };
                if woken {
                    if let Some(waker) = p.waker.take() {
                        waker.wake();
                    }
                }
            }
        });
        None
    }
}

impl Attached {
    /// The next disk attached: as soon as its directory appears in
    /// `device/vbd`, before its backend is ready. An error is reading that
    /// directory; call again for the next.
    pub async fn next(&mut self) -> Result<Offer, OpenError> {
        let id = self.appeared.next().await.map_err(OpenError::Xenstore)?;
        let offer = Offer { id, watcher: self.watcher.clone() };
        log::info!("disk: {} attached", offer.name());
        Ok(offer)
    }
}

/// A disk attached while the domain runs, not connected yet: left alone
/// when dropped (its backend waits, as for a disk never opened).
pub struct Offer {
    id: u32,
    watcher: Rc<RefCell<Watcher>>,
}

impl Offer {
    /// The virtual device id (`device/vbd/<id>`; 51712 is xvda).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// `xvda (vbd 51712)`, or `vbd <id>` for an id with no xvd name.
    pub fn name(&self) -> alloc::string::String {
        match crate::fs::vdev::name(self.id) {
            Some(vdev) => alloc::format!("{vdev} (vbd {})", self.id),
            None => alloc::format!("vbd {}", self.id),
        }
    }

    /// Connects the disk once its backend is ready (blkback waits for
    /// dom0's hotplug script), without holding up the other tasks
    /// meanwhile. A backend that closes instead is an error, and what was
    /// shared with it is given back.
    pub async fn connect(self) -> Result<Disk, OpenError> {
        let id = self.id;
        let failed = |e: ConnectError| OpenError::Disk(id, e);
        let frontend = crate::xenstore::with(|xs| {
            let mut frontend = Frontend::open(xs, &alloc::format!("device/vbd/{id}"))?;
            frontend.initialise(xs)?;
            Ok(frontend)
        })
        .ok_or(OpenError::NoXen("xenstore"))?
        .map_err(|e: XenbusError| failed(e.into()))?;
        let guard = PendingGuard { watcher: &self.watcher, id };
        self.watcher.borrow_mut().pending.push((id, Pending { frontend, waker: None, error: None }));
        let result = self.handshake().await;
        let frontend = guard.take();
        match result {
            Ok(inner) => Ok(opened(id, inner, frontend)),
            Err(e) => {
                let mut events = Events { id, frontend: Some(frontend), gone: None };
                events.close_frontend();
                Err(failed(e))
            }
        }
    }

    async fn handshake(&self) -> Result<device::Disk, ConnectError> {
        let id = self.id;
        self.backend(XenbusState::InitWait).await?;
        let handshake = self.with_frontend(|xs, gt, frontend| {
            connect::begin(xs, gt, frontend, id, connect::Config::DEFAULT)
        })?;
        if let Err(e) = self.backend(XenbusState::Connected).await {
            crate::grants::with(|gt| handshake.abandon(gt));
            return Err(e);
        }
        self.with_frontend(|xs, gt, frontend| handshake.finish(xs, gt, frontend))
    }

    /// Runs `f` with the store, the grant table and the disk's frontend.
    fn with_frontend<R>(
        &self,
        f: impl FnOnce(
            &mut crate::xenstore::Xenstore,
            &mut mote_xen::gnttab::GrantTable<'_>,
            &mut Frontend,
        ) -> Result<R, ConnectError>,
    ) -> Result<R, ConnectError> {
        let mut w = self.watcher.borrow_mut();
        let frontend = &mut w.pending(self.id).frontend;
        crate::xenstore::with(|xs| crate::grants::with(|gt| f(xs, gt, frontend)))
            .flatten()
            .ok_or(ConnectError::BadConfig("no xenstore or grant table"))?
    }

    /// Until the backend is in `want`; an error if it closes instead.
    async fn backend(&self, want: XenbusState) -> Result<(), ConnectError> {
        core::future::poll_fn(|cx| {
            let mut w = self.watcher.borrow_mut();
            let p = w.pending(self.id);
            if let Some(e) = p.error.take() {
                return Poll::Ready(Err(e.into()));
            }
            match p.frontend.backend_state() {
                state if state == want => Poll::Ready(Ok(())),
                state if state.is_closing() => Poll::Ready(Err(XenbusError::BackendClosed(state).into())),
                _ => {
                    p.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }
}

/// Takes a disk's frontend out of the pending ones when its connect ends
/// (or is dropped half-way: then it stops watching the backend).
struct PendingGuard<'a> {
    watcher: &'a Rc<RefCell<Watcher>>,
    id: u32,
}

impl PendingGuard<'_> {
    fn take(self) -> Frontend {
        let pending = self.watcher.borrow_mut().take(self.id);
        core::mem::forget(self);
        pending.expect("a disk being connected is pending").frontend
    }
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.watcher.borrow_mut().take(self.id) {
            crate::xenstore::with(|xs| p.frontend.forget(xs));
        }
    }
}
