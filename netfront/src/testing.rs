//! A simulated backend for the host tests: ring pages and buffers on the
//! heap, and the backend's side of each ring (read requests, write
//! responses, and misbehave).

use crate::queues::{GrantedPage, Queues};
use crate::rx::RxFeatures;
use mote_xen::gnttab::{alloc_shared_pages, GrantRef};
use mote_xen::io_ring::FrontRing;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpProtocol, Ipv4Address, Ipv4Packet,
    Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
};
use std::sync::atomic::{AtomicU32, Ordering};

/// `n` pages as the frontend gets them, from a heap whose last blocks of
/// that size were full of unrelated data (0x5a), as a guest's heap is.
pub fn pages(n: usize) -> Vec<*mut u8> {
    let layout = std::alloc::Layout::from_size_align(4096 * n, 4096).unwrap();
    for _ in 0..4 {
        // SAFETY: non-zero size; written and freed at once.
        unsafe {
            let dirty = std::alloc::alloc(layout);
            core::ptr::write_bytes(dirty, 0x5a, layout.size());
            std::alloc::dealloc(dirty, layout);
        }
    }
    alloc_shared_pages(n).unwrap()
}

/// A ring page seen from the backend: indices and entries.
pub struct Back {
    pub base: *mut u8,
    pub req_cons: u32,
    pub rsp_prod: u32,
}

impl Back {
    fn index(&self, i: usize) -> &AtomicU32 {
        // SAFETY: the ring header's four indices, 4-byte aligned in the page.
        unsafe { &*(self.base.add(i * 4) as *const AtomicU32) }
    }

    fn slot(&self, index: u32, entry: usize) -> *mut u8 {
        // SAFETY: 256 slots of at most 12 bytes after the 64-byte header.
        unsafe { self.base.add(64 + (index as usize % 256) * entry) }
    }

    /// Takes every published request.
    pub fn requests<T: Copy>(&mut self, entry: usize) -> Vec<T> {
        let prod = self.index(0).load(Ordering::Acquire);
        let mut out = Vec::new();
        while self.req_cons != prod {
            // SAFETY: a slot of the page; any bytes are a valid `T`.
            out.push(unsafe { self.slot(self.req_cons, entry).cast::<T>().read_unaligned() });
            self.req_cons += 1;
        }
        out
    }

    /// Writes the next response and publishes it.
    pub fn respond<T: Copy>(&mut self, entry: usize, rsp: T) {
        self.rewrite(self.rsp_prod, entry, rsp);
        self.rsp_prod += 1;
        self.set_rsp_prod(self.rsp_prod);
    }

    /// Overwrites the response in slot `index`, published or not.
    pub fn rewrite<T: Copy>(&mut self, index: u32, entry: usize, rsp: T) {
        // SAFETY: a slot of the page.
        unsafe { self.slot(index, entry).cast::<T>().write_unaligned(rsp) };
    }

    /// Publishes `rsp_prod`, whatever it is.
    pub fn set_rsp_prod(&mut self, rsp_prod: u32) {
        self.index(2).store(rsp_prod, Ordering::Release);
    }
}

/// Queues over `tx_pages` tx pages and `rx_pages` rx buffers with both
/// rings' backend sides, and the buffers (tx, rx).
pub fn queues(tx_pages: usize, rx_pages: usize) -> (Queues, Back, Back, Vec<GrantedPage>, Vec<GrantedPage>) {
    queues_with(tx_pages, rx_pages, RxFeatures::default())
}

/// [`queues`] that take on rx what `features` says.
pub fn queues_with(
    tx_pages: usize,
    rx_pages: usize,
    features: RxFeatures,
) -> (Queues, Back, Back, Vec<GrantedPage>, Vec<GrantedPage>) {
    let all = pages(2 + tx_pages + rx_pages);
    let (txp, rxp) = (all[0], all[1]);
    // SAFETY: fresh pages, used only through these rings and `Back`.
    let (tx, rx) = unsafe { (FrontRing::init(txp), FrontRing::init(rxp)) };
    let granted = |pages: &[*mut u8], first: u32| -> Vec<GrantedPage> {
        pages
            .iter()
            .enumerate()
            .map(|(i, &addr)| GrantedPage { addr, gref: GrantRef(first + i as u32) })
            .collect()
    };
    let txb = granted(&all[2..2 + tx_pages], 100);
    let rxb = granted(&all[2 + tx_pages..], 200);
    let q = Queues::new(tx, rx, txb.clone(), rxb.clone(), features);
    (q, Back { base: txp, req_cons: 0, rsp_prod: 0 }, Back { base: rxp, req_cons: 0, rsp_prod: 0 }, txb, rxb)
}

/// The bytes of a granted page.
pub fn bytes(page: &GrantedPage) -> &'static mut [u8] {
    // SAFETY: the test's pages are leaked heap pages of 4096 bytes.
    unsafe { core::slice::from_raw_parts_mut(page.addr, 4096) }
}

/// The addresses of [`tcp_v4`]'s frames.
pub const V4: (Ipv4Address, Ipv4Address) = (Ipv4Address::new(10, 0, 0, 1), Ipv4Address::new(10, 0, 0, 2));

/// An Ethernet frame around `ip`.
pub fn ethernet(ethertype: EthernetProtocol, ip: &[u8]) -> Vec<u8> {
    let repr = EthernetRepr {
        src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
        dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
        ethertype,
    };
    let mut frame = vec![0; repr.buffer_len() + ip.len()];
    repr.emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
    frame[repr.buffer_len()..].copy_from_slice(ip);
    frame
}

/// Checksums filled in, or left zero.
pub fn caps(fill: bool) -> ChecksumCapabilities {
    if fill {
        ChecksumCapabilities::default()
    } else {
        ChecksumCapabilities::ignored()
    }
}

/// An IPv4 TCP frame with `payload`, its checksum filled in or left zero.
pub fn tcp_v4(payload: &[u8], fill: bool) -> Vec<u8> {
    tcp_v4_segment(7, 1234, payload, true, fill)
}

/// An IPv4 TCP frame from port `port`, at sequence number `seq`, with ACK and PSH if `push`.
pub fn tcp_v4_segment(port: u16, seq: i32, payload: &[u8], push: bool, fill: bool) -> Vec<u8> {
    let tcp = TcpRepr {
        src_port: port,
        dst_port: 40000,
        control: if push { TcpControl::Psh } else { TcpControl::None },
        seq_number: TcpSeqNumber(seq),
        ack_number: Some(TcpSeqNumber(99)),
        window_len: 1000,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload,
    };
    let ip = Ipv4Repr {
        src_addr: V4.0,
        dst_addr: V4.1,
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    let mut bytes = vec![0; ip.buffer_len() + tcp.buffer_len()];
    let c = caps(fill);
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut bytes[..]), &ChecksumCapabilities::default());
    tcp.emit(&mut TcpPacket::new_unchecked(&mut bytes[ip.buffer_len()..]), &V4.0.into(), &V4.1.into(), &c);
    ethernet(EthernetProtocol::Ipv4, &bytes)
}
