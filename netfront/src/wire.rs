//! The netif ring entries (`io/netif.h`), laid out as in the header.

use mote_xen::io_ring::{ring_size, RingEntry};

/// `struct netif_tx_request`: one frame (or fragment) for the backend to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct TxRequest {
    pub gref: u32,
    pub offset: u16,
    pub flags: u16,
    pub id: u16,
    pub size: u16,
}

/// `struct netif_tx_response`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct TxResponse {
    pub id: u16,
    pub status: i16,
}

/// `struct netif_rx_request`: a granted page the backend may copy a frame into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct RxRequest {
    pub id: u16,
    pub pad: u16,
    pub gref: u32,
}

/// `struct netif_rx_response`: `status` is the frame's length, or an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct RxResponse {
    pub id: u16,
    pub offset: u16,
    pub flags: u16,
    pub status: i16,
}

// SAFETY: all four are `#[repr(C)]` structs of integers, valid for any bytes.
unsafe impl RingEntry for TxRequest {}
// SAFETY: as above.
unsafe impl RingEntry for TxResponse {}
// SAFETY: as above.
unsafe impl RingEntry for RxRequest {}
// SAFETY: as above.
unsafe impl RingEntry for RxResponse {}

/// `NETTXF_*`: the frame's checksum is not filled in (`csum_blank`) /
/// already verified (`data_validated`); more fragments follow; an extra-info
/// slot follows.
pub const NETTXF_CSUM_BLANK: u16 = 1 << 0;
pub const NETTXF_DATA_VALIDATED: u16 = 1 << 1;
pub const NETTXF_MORE_DATA: u16 = 1 << 2;
pub const NETTXF_EXTRA_INFO: u16 = 1 << 3;

/// `NETRXF_*`, the same meanings for received frames, plus a GSO prefix.
pub const NETRXF_DATA_VALIDATED: u16 = 1 << 0;
pub const NETRXF_CSUM_BLANK: u16 = 1 << 1;
pub const NETRXF_MORE_DATA: u16 = 1 << 2;
pub const NETRXF_EXTRA_INFO: u16 = 1 << 3;
pub const NETRXF_GSO_PREFIX: u16 = 1 << 4;

/// `struct netif_extra_info`'s `flags`: another extra-info slot follows
/// (`XEN_NETIF_EXTRA_FLAG_MORE`).
pub const XEN_NETIF_EXTRA_FLAG_MORE: u8 = 1 << 0;

/// The `flags` byte of a `struct netif_extra_info` that the backend wrote into an rx response
/// slot (after a response with [`NETRXF_EXTRA_INFO`]): the slot's second byte, which
/// [`RxResponse::id`] holds with the first (`type`) in memory order. The rest (the GSO type
/// and segment size) the mote does not need: the packet goes up whole.
pub fn extra_info_flags(slot: &RxResponse) -> u8 {
    slot.id.to_ne_bytes()[1]
}

/// `XEN_NETIF_EXTRA_TYPE_GSO` and `XEN_NETIF_GSO_TYPE_TCPV4`.
pub const XEN_NETIF_EXTRA_TYPE_GSO: u8 = 1;
pub const XEN_NETIF_GSO_TYPE_TCPV4: u8 = 1;

/// The tx ring slot after a request with [`NETTXF_EXTRA_INFO`]: a `struct netif_extra_info`
/// of type GSO, TCP/IPv4, cutting the packet into segments of `seg_size` payload bytes
/// ("Guest transmit" in `netif.h`), laid out in the slot's first 8 bytes as the header
/// draws it (type, flags, size, GSO type, pad, features), the rest zero.
pub fn gso_extra_info(seg_size: u16) -> TxRequest {
    let [s0, s1] = seg_size.to_ne_bytes();
    let b = [XEN_NETIF_EXTRA_TYPE_GSO, 0, s0, s1, XEN_NETIF_GSO_TYPE_TCPV4, 0, 0, 0];
    TxRequest {
        gref: u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        offset: u16::from_ne_bytes([b[4], b[5]]),
        flags: u16::from_ne_bytes([b[6], b[7]]),
        id: 0,
        size: 0,
    }
}

/// `NETIF_RSP_*`.
pub const NETIF_RSP_DROPPED: i16 = -2;
pub const NETIF_RSP_ERROR: i16 = -1;
pub const NETIF_RSP_OKAY: i16 = 0;
pub const NETIF_RSP_NULL: i16 = 1;

/// Slots in the tx and rx rings (256 each with one page per ring).
pub const TX_RING_SIZE: u32 = ring_size::<TxRequest, TxResponse>();
pub const RX_RING_SIZE: u32 = ring_size::<RxRequest, RxResponse>();

const _: () = {
    assert!(core::mem::size_of::<TxRequest>() == 12);
    assert!(core::mem::size_of::<TxResponse>() == 4);
    assert!(core::mem::size_of::<RxRequest>() == 8);
    assert!(core::mem::size_of::<RxResponse>() == 8);
    assert!(TX_RING_SIZE == 256 && RX_RING_SIZE == 256);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gso_extra_info_is_laid_out_as_netif_h_draws_it() {
        let slot = gso_extra_info(1460);
        // SAFETY: TxRequest is a repr(C) struct of 12 bytes without padding.
        let bytes: [u8; 12] = unsafe { core::mem::transmute(slot) };
        assert_eq!(bytes, [1, 0, 0xb4, 0x05, 1, 0, 0, 0, 0, 0, 0, 0]);
    }
}
