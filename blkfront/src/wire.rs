//! The blkif ring entries (`io/blkif.h`), laid out as in the header for
//! x86-64 (`x86_64-abi`). Every padding byte is an explicit field, so that
//! nothing of the guest's stack reaches the shared ring.

use core::mem::{offset_of, size_of};
use mote_xen::io_ring::{ring_size, RingEntry};

/// `BLKIF_MAX_SEGMENTS_PER_REQUEST`: pages a direct request can carry.
pub const MAX_SEGMENTS: usize = 11;
/// `BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST`.
pub const MAX_INDIRECT_PAGES: usize = 8;
/// Segments one indirect page holds.
pub const SEGMENTS_PER_INDIRECT_PAGE: usize = 4096 / size_of::<Segment>();
/// Requests and segments count sectors of 512 bytes, whatever the disk's
/// `sector-size`.
pub const SECTOR: usize = 512;

/// `struct blkif_request_segment`: sectors `first..=last` of a granted page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct Segment {
    pub gref: u32,
    pub first_sect: u8,
    pub last_sect: u8,
    pub pad: u16,
}

impl Segment {
    pub fn new(gref: u32, first_sect: u8, last_sect: u8) -> Self {
        Segment { gref, first_sect, last_sect, pad: 0 }
    }
}

/// `struct blkif_request`: read, write, flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct Request {
    pub operation: u8,
    pub nr_segments: u8,
    pub handle: u16,
    pub pad: u32,
    pub id: u64,
    pub sector_number: u64,
    pub seg: [Segment; MAX_SEGMENTS],
}

/// `struct blkif_request_indirect`: a read or write whose segments are in
/// granted pages (`indirect_grefs`) rather than in the ring slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct IndirectRequest {
    pub operation: u8,
    pub indirect_op: u8,
    pub nr_segments: u16,
    pub pad1: u32,
    pub id: u64,
    pub sector_number: u64,
    pub handle: u16,
    pub pad2: u16,
    pub indirect_grefs: [u32; MAX_INDIRECT_PAGES],
    pub pad3: u32,
}

/// `struct blkif_request_discard`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct DiscardRequest {
    pub operation: u8,
    pub flag: u8,
    pub handle: u16,
    pub pad: u32,
    pub id: u64,
    pub sector_number: u64,
    pub nr_sectors: u64,
}

/// One request slot of the ring: the union `DEFINE_RING_TYPES` makes of
/// the request shapes, as raw bytes so that the bytes a shorter shape leaves
/// are zeros, never stale memory.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub struct RequestSlot([u8; size_of::<Request>()]);

impl RequestSlot {
    fn from<T: Copy>(value: &T) -> Self {
        const { assert!(size_of::<T>() <= size_of::<Request>()) };
        let mut slot = RequestSlot([0; size_of::<Request>()]);
        // SAFETY: `T` is one of this module's `#[repr(C)]` request structs,
        // integers with explicit padding, so all its bytes are initialised;
        // it fits in the slot (checked above).
        unsafe {
            core::ptr::copy_nonoverlapping(
                (value as *const T).cast::<u8>(),
                slot.0.as_mut_ptr(),
                size_of::<T>(),
            )
        };
        slot
    }

    /// The bytes as the backend reads them.
    pub fn bytes(&self) -> &[u8; size_of::<Request>()] {
        &self.0
    }

    /// `BLKIF_OP_*` of the request in the slot.
    pub fn operation(&self) -> u8 {
        self.0[0]
    }

    /// Reads the slot as `T` (for a backend looking at it).
    pub fn read<T: RingEntry>(&self) -> T {
        const { assert!(size_of::<T>() <= size_of::<Request>()) };
        // SAFETY: in bounds (checked above); `T: RingEntry` accepts any bytes.
        unsafe { self.0.as_ptr().cast::<T>().read_unaligned() }
    }
}

impl From<Request> for RequestSlot {
    fn from(r: Request) -> Self {
        RequestSlot::from(&r)
    }
}

impl From<IndirectRequest> for RequestSlot {
    fn from(r: IndirectRequest) -> Self {
        RequestSlot::from(&r)
    }
}

impl From<DiscardRequest> for RequestSlot {
    fn from(r: DiscardRequest) -> Self {
        RequestSlot::from(&r)
    }
}

/// `struct blkif_response`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct Response {
    pub id: u64,
    pub operation: u8,
    pub pad1: u8,
    pub status: i16,
    pub pad2: u32,
}

// SAFETY: `#[repr(C)]` structs of integers (or bytes), valid for any bytes.
unsafe impl RingEntry for Request {}
// SAFETY: as above.
unsafe impl RingEntry for IndirectRequest {}
// SAFETY: as above.
unsafe impl RingEntry for DiscardRequest {}
// SAFETY: as above.
unsafe impl RingEntry for RequestSlot {}
// SAFETY: as above.
unsafe impl RingEntry for Response {}

/// `BLKIF_OP_*`.
pub const OP_READ: u8 = 0;
pub const OP_WRITE: u8 = 1;
pub const OP_FLUSH_DISKCACHE: u8 = 3;
pub const OP_DISCARD: u8 = 5;
pub const OP_INDIRECT: u8 = 6;

/// `BLKIF_RSP_*`.
pub const RSP_EOPNOTSUPP: i16 = -2;
pub const RSP_ERROR: i16 = -1;
pub const RSP_OKAY: i16 = 0;

/// `VDISK_READONLY` in the backend's `info`.
pub const VDISK_READONLY: u32 = 0x4;

/// Slots in a one-page ring.
pub const RING_SIZE: u32 = ring_size::<RequestSlot, Response>();

const _: () = {
    assert!(size_of::<Segment>() == 8);
    assert!(size_of::<Request>() == 112);
    assert!(size_of::<RequestSlot>() == 112);
    assert!(offset_of!(Request, id) == 8 && offset_of!(Request, seg) == 24);
    assert!(size_of::<IndirectRequest>() == 64);
    assert!(offset_of!(IndirectRequest, handle) == 24 && offset_of!(IndirectRequest, indirect_grefs) == 28);
    assert!(size_of::<DiscardRequest>() == 32 && offset_of!(DiscardRequest, nr_sectors) == 24);
    assert!(size_of::<Response>() == 16 && offset_of!(Response, status) == 10);
    assert!(RING_SIZE == 32);
};
