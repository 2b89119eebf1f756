//! Setting the grant table up: asking Xen how large it may grow
//! (`GNTTABOP_query_size`) and mapping its frames into our guest-physical
//! address space (`XENMEM_add_to_physmap` with `XENMAPSPACE_grant_table`).

use super::{Entry, GrantTable, ENTRIES_PER_FRAME};
use crate::hypercall::hypercall_3;
use crate::memory::{self, MapSpace};
use crate::types::{DomId, Gfn, PAGE_SIZE};
use crate::XenError;
use core::alloc::Layout;
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

const GNTTABOP_QUERY_SIZE: u64 = 6;
/// `GNTST_okay`.
const GNTST_OKAY: i16 = 0;

/// `struct gnttab_query_size`.
#[repr(C)]
struct QuerySize {
    dom: u16,
    nr_frames: u32,
    max_nr_frames: u32,
    status: i16,
}

/// The grant table's size in frames, as Xen reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    /// Frames the table has now.
    pub frames: u32,
    /// Frames it may grow to (Xen's `max_grant_frames` for this domain).
    pub max_frames: u32,
}

/// Why the grant table could not be set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitError {
    /// [`GrantTable::init`] already ran: a second table would map the same
    /// frames elsewhere and hand out the same references.
    AlreadyInitialised,
    /// `GNTTABOP_query_size` failed as a hypercall.
    Query(XenError),
    /// `GNTTABOP_query_size` returned this `GNTST_*` status.
    QueryStatus(i16),
    /// Zero frames were asked for, or Xen allows none.
    NoFrames,
    /// The heap had no room for the table.
    NoMemory,
    /// Xen refused to map frame `frame` of the table.
    Map { frame: u32, error: XenError },
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::AlreadyInitialised => f.write_str("grant table already set up"),
            InitError::Query(e) => write!(f, "querying the grant table size: {e}"),
            InitError::QueryStatus(s) => write!(f, "querying the grant table size: status {s}"),
            InitError::NoFrames => f.write_str("no grant table frames to map"),
            InitError::NoMemory => f.write_str("no memory for the grant table"),
            InitError::Map { frame, error } => {
                write!(f, "mapping grant table frame {frame}: {error}")
            }
        }
    }
}

/// Asks Xen for the size of this domain's grant table.
pub fn query_size() -> Result<Size, InitError> {
    let mut arg = QuerySize { dom: DomId::SELF.0, nr_frames: 0, max_nr_frames: 0, status: 0 };
    let op = xen_sys::__HYPERVISOR_grant_table_op;
    // SAFETY: GNTTABOP_query_size takes an array of `count` (here 1)
    // `struct gnttab_query_size`.
    let ret = unsafe { hypercall_3(op, GNTTABOP_QUERY_SIZE, &mut arg as *mut QuerySize as u64, 1) };
    XenError::check(ret).map_err(InitError::Query)?;
    if arg.status != GNTST_OKAY {
        return Err(InitError::QueryStatus(arg.status));
    }
    Ok(Size { frames: arg.nr_frames, max_frames: arg.max_nr_frames })
}

static INITIALISED: AtomicBool = AtomicBool::new(false);

impl GrantTable<'static> {
    /// Maps `wanted_frames` frames of the grant table, or as many as Xen
    /// allows if fewer, and takes charge of them. Call once, with the heap up:
    /// later calls fail even if the first did, as it may have mapped frames.
    ///
    /// The frames go where heap pages were (their RAM is given back to Xen),
    /// so they are never freed. On a mapping error the pages are leaked too:
    /// some may already be grant frames.
    pub fn init(wanted_frames: u32) -> Result<Self, InitError> {
        if INITIALISED.swap(true, Ordering::AcqRel) {
            return Err(InitError::AlreadyInitialised);
        }
        let frames = wanted_frames.min(query_size()?.max_frames);
        if frames == 0 {
            return Err(InitError::NoFrames);
        }
        let layout = Layout::from_size_align(frames as usize * PAGE_SIZE, PAGE_SIZE)
            .map_err(|_| InitError::NoMemory)?;
        // SAFETY: `layout` has a non-zero size.
        let base = unsafe { alloc::alloc::alloc(layout) };
        if base.is_null() {
            return Err(InitError::NoMemory);
        }
        // Highest frame first, so that Xen grows the table only once.
        for frame in (0..frames).rev() {
            // The heap is identity-mapped: a page's address is its
            // guest-physical address.
            let gfn = Gfn::containing(base as u64 + u64::from(frame) * PAGE_SIZE as u64);
            memory::add_to_physmap(MapSpace::GrantTable, frame.into(), gfn)
                .map_err(|error| InitError::Map { frame, error })?;
        }
        // SAFETY: the allocation now holds the table's frames in order, is
        // page-aligned, never freed, and only accessed through `Entry`'s
        // atomics; `INITIALISED` makes this the only view of it.
        let entries =
            unsafe { core::slice::from_raw_parts(base.cast::<Entry>(), frames as usize * ENTRIES_PER_FRAME) };
        Ok(GrantTable::new(entries))
    }
}
