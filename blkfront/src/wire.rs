//! The blkif ring entries (`io/blkif.h`), laid out as in the header for
//! x86-64 (`x86_64-abi`).

use mote_xen::io_ring::{ring_size, RingEntry};

/// `BLKIF_MAX_SEGMENTS_PER_REQUEST`: pages one request can carry.
pub const MAX_SEGMENTS: usize = 11;

/// `struct blkif_request_segment`: sectors `first..=last` of a granted page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct Segment {
    pub gref: u32,
    pub first_sect: u8,
    pub last_sect: u8,
    pad: u16,
}

impl Segment {
    pub fn new(gref: u32, first_sect: u8, last_sect: u8) -> Self {
        Segment { gref, first_sect, last_sect, pad: 0 }
    }
}

/// `struct blkif_request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct Request {
    pub operation: u8,
    pub nr_segments: u8,
    pub handle: u16,
    pub id: u64,
    pub sector_number: u64,
    pub seg: [Segment; MAX_SEGMENTS],
}

/// `struct blkif_response`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct Response {
    pub id: u64,
    pub operation: u8,
    pub status: i16,
}

// SAFETY: `#[repr(C)]` structs of integers, valid for any bytes.
unsafe impl RingEntry for Request {}
// SAFETY: as above.
unsafe impl RingEntry for Response {}

/// `BLKIF_OP_*`.
pub const OP_READ: u8 = 0;
pub const OP_WRITE: u8 = 1;
pub const OP_FLUSH_DISKCACHE: u8 = 3;

/// `BLKIF_RSP_*`.
pub const RSP_EOPNOTSUPP: i16 = -2;
pub const RSP_ERROR: i16 = -1;
pub const RSP_OKAY: i16 = 0;

/// `VDISK_READONLY` in the backend's `info`.
pub const VDISK_READONLY: u32 = 0x4;

/// Slots in a one-page ring.
pub const RING_SIZE: u32 = ring_size::<Request, Response>();

const _: () = {
    assert!(core::mem::size_of::<Segment>() == 8);
    assert!(core::mem::size_of::<Request>() == 112);
    assert!(core::mem::size_of::<Response>() == 16);
    assert!(RING_SIZE == 32);
};
