//! A simulated backend for the host tests: ring pages and buffers on the
//! heap, and the backend's side of each ring (read requests, write
//! responses, and misbehave).

use crate::queues::{GrantedPage, Queues};
use mote_xen::gnttab::{alloc_shared_pages, GrantRef};
use mote_xen::io_ring::FrontRing;
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
    let q = Queues::new(tx, rx, txb.clone(), rxb.clone());
    (q, Back { base: txp, req_cons: 0, rsp_prod: 0 }, Back { base: rxp, req_cons: 0, rsp_prod: 0 }, txb, rxb)
}

/// The bytes of a granted page.
pub fn bytes(page: &GrantedPage) -> &'static mut [u8] {
    // SAFETY: the test's pages are leaked heap pages of 4096 bytes.
    unsafe { core::slice::from_raw_parts_mut(page.addr, 4096) }
}
