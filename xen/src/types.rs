//! Identifiers shared by several Xen interfaces (`xen.h`), as distinct types
//! so that a domain id is never passed where a frame number is expected.

/// Size of a guest page and of a Xen frame.
pub const PAGE_SIZE: usize = 4096;

/// A domain id (`domid_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomId(pub u16);

impl DomId {
    /// `DOMID_SELF`: the calling domain.
    pub const SELF: DomId = DomId(0x7FF0);
}

/// A guest frame number: a guest-physical address divided by the page size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gfn(pub u64);

impl Gfn {
    /// The frame holding guest-physical address `addr`.
    pub const fn containing(addr: u64) -> Gfn {
        Gfn(addr / PAGE_SIZE as u64)
    }
}
