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

use crate::events::{self, Instant, Wake};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;
use mote_blkfront::connect::{self, ConnectError};
use mote_blkfront::device::{self, Signal};
use mote_xen::event::{self, Port};
use mote_xen::xenbus::{BackendEvent, Frontend, XenbusState};
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
                Wake::Deadline => return false,
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
        let Some(frontend) = self.frontend.take() else { return };
        disk.retire();
        match crate::xenstore::with(|xs| frontend.close(xs)) {
            Some(Ok(state)) => log::info!("disk: vbd {id}: closed (backend {state:?})"),
            Some(Err(e)) => log::warn!("disk: vbd {id}: closing: {e}"),
            None => {}
        }
        crate::executor::xen::stop_waking_on(disk.port());
        match crate::grants::with(|gt| connect::release(disk, gt)).flatten() {
            Some(r) if r.still_mapped > 0 => log::warn!(
                "disk: vbd {id}: the backend still maps {} of {} pages; keeping them",
                r.still_mapped,
                r.grants
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
}

/// Why the disks could not be opened.
#[derive(Debug)]
pub enum OpenError {
    NoXen(&'static str),
    Xenstore(XsError),
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

/// Opens every disk the domain has, in device-id order.
pub fn open_all() -> Result<Vec<Disk>, OpenError> {
    let ids =
        crate::xenstore::with(connect::devices).ok_or(OpenError::NoXen("xenstore"))?.or_else(
            |e| match e {
                // No device/vbd directory: no disks.
                XsError::Xen(mote_xen::xenstore::Errno::NoEnt) => Ok(Vec::new()),
                e => Err(OpenError::Xenstore(e)),
            },
        )?;
    ids.into_iter()
        .map(|id| {
            let (inner, frontend) = crate::xenstore::with(|xs| {
                crate::grants::with(|gt| connect::connect(xs, gt, id, connect::Config::DEFAULT))
                    .ok_or(OpenError::NoXen("grant table"))
            })
            .ok_or(OpenError::NoXen("xenstore"))??
            .map_err(|e| OpenError::Disk(id, e))?;
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
            Ok(Disk { link: Some(Link { disk: inner, events }), id })
        })
        .collect()
}
