//! The tx and rx rings with their buffers: the data path of a vif.
//!
//! Every buffer is granted to the backend once, when the queues are built,
//! so sending and receiving never touch the grant table: a frame to send is
//! copied into a free pre-granted tx slot (two per page), and a received
//! frame is copied out of its rx page before anything parses it, then the
//! page goes straight back to the backend.

use crate::rx::{Gather, RxCsum, RxError, RxFeatures, RxSlots, Step, BUFFER_SIZE};
use crate::tx::{TxError, TxIds, TxOutcome};
use crate::wire::{
    RxRequest, RxResponse, TxRequest, TxResponse, NETRXF_EXTRA_INFO, NETTXF_EXTRA_INFO, NETTXF_MORE_DATA,
    XEN_NETIF_EXTRA_FLAG_MORE,
};
use alloc::collections::TryReserveError;
use alloc::vec::Vec;
use core::fmt;
use mote_xen::gnttab::GrantRef;
use mote_xen::io_ring::{FrontRing, RingError};

/// Bytes of one tx slot: room for a full Ethernet frame (1514 bytes).
pub const TX_SLOT_SIZE: usize = 2048;
/// Largest frame smoltcp sends: one slot (a 1500-byte MTU).
pub const MAX_FRAME: usize = 1514;
/// Most tx slots one packet may take: Linux's netback drops a packet of more than 18 and
/// takes a frontend that sends 20 for hostile (`XEN_NETBK_LEGACY_SLOTS_MAX`,
/// `fatal_skb_slots`).
pub const MAX_TX_SLOTS_PER_PACKET: usize = 16;
/// Largest packet we send: a GSO one of [`MAX_TX_SLOTS_PER_PACKET`] slots.
pub const MAX_TX_PACKET: usize = MAX_TX_SLOTS_PER_PACKET * TX_SLOT_SIZE;

/// A page shared with the backend: where it is, and its grant.
#[derive(Debug, Clone, Copy)]
pub struct GrantedPage {
    pub addr: *mut u8,
    pub gref: GrantRef,
}

/// Problems on the data path; the queue stays usable after each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    Ring(RingError),
    Tx(TxError),
    Rx(RxError),
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::Ring(e) => write!(f, "netif ring: {e}"),
            QueueError::Tx(e) => write!(f, "netif: {e}"),
            QueueError::Rx(e) => write!(f, "netif: {e}"),
        }
    }
}

/// How long the backend may leave every tx slot unanswered before frames
/// are dropped instead of waited for.
pub const TX_STALL_MS: i64 = 1000;

/// Counters, for logs and benchmarks.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub tx_frames: u64,
    /// Frames the backend answered with an error or a drop.
    pub tx_dropped: u64,
    /// Frames dropped here: no tx slot free after [`TX_STALL_MS`].
    pub tx_no_slot: u64,
    pub rx_frames: u64,
    /// Received packets that took more than one buffer (`feature-sg`).
    pub rx_multi_slot: u64,
    pub rx_errors: u64,
    /// Received TCP or UDP segments with a wrong checksum, dropped (checksum offload).
    pub rx_bad_csum: u64,
    /// Received packets with extra-info slots: GSO packets (`feature-gso-tcpv4`).
    pub rx_gso: u64,
    /// Packets sent as GSO (`feature-gso-tcpv4`): several TCP segments joined, cut again by
    /// the backend; and how many segments they held.
    pub tx_gso: u64,
    pub tx_gso_segments: u64,
}

/// Whether a frame can go out now (see [`Queues::tx_ready`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxReady {
    /// A slot is free.
    Ready,
    /// Every slot is with the backend, which answered recently: wait for it.
    Wait,
    /// Every slot has been with the backend for [`TX_STALL_MS`]: the frame
    /// is dropped (and counted) rather than waited for, so a backend that
    /// stops answering cannot make the stack retry forever.
    Drop,
}

/// One queue pair.
pub struct Queues {
    tx: FrontRing<'static, TxRequest, TxResponse>,
    rx: FrontRing<'static, RxRequest, RxResponse>,
    tx_ids: TxIds,
    /// Slot `id` is half `id / 2` of page `tx_pages[id / 2]`.
    tx_pages: Vec<GrantedPage>,
    /// Bytes of each tx slot that may hold an earlier frame: zeroed past a
    /// shorter frame, so the backend sees nothing but the frame.
    tx_used: Vec<u16>,
    /// Whether each tx slot holds the first fragment of its packet (the one whose response
    /// counts the packet as sent or dropped).
    tx_head: Vec<bool>,
    /// Ids pushed on the rings since the last publish: the backend may
    /// answer them only once published.
    tx_unpublished: Vec<u16>,
    /// Extra-info slots pushed on the tx ring since the last publish.
    tx_extras_unpublished: u32,
    rx_unpublished: Vec<u16>,
    /// When every tx slot became busy (ms, the caller's clock), and whether
    /// the drops since were logged.
    tx_stalled_since: Option<(i64, bool)>,
    rx_slots: RxSlots,
    /// The buffer id of the request pushed at each rx ring index: the buffer to post again
    /// when the backend puts an extra-info slot there instead of a response naming it.
    rx_ring_ids: Vec<u16>,
    /// The next rx response slot holds a `struct netif_extra_info`, not a response.
    rx_extra_next: bool,
    /// The packet being received, which may span several buffers.
    rx_gather: Gather,
    rx_pages: Vec<GrantedPage>,
    pub stats: Stats,
}

// SAFETY: the pages behind the raw pointers belong to the queues alone (and
// the backend); the queues move between contexts as a whole.
unsafe impl Send for Queues {}

impl Queues {
    /// Takes the rings and the granted buffers, and posts every rx buffer.
    pub fn new(
        tx: FrontRing<'static, TxRequest, TxResponse>,
        rx: FrontRing<'static, RxRequest, RxResponse>,
        tx_pages: Vec<GrantedPage>,
        rx_pages: Vec<GrantedPage>,
        rx_features: RxFeatures,
    ) -> Self {
        let tx_slots = (tx_pages.len() * (BUFFER_SIZE / TX_SLOT_SIZE)).min(tx.size() as usize);
        let rx_count = rx_pages.len().min(rx.size() as usize);
        let rx_ring_size = rx.size() as usize;
        let mut queues = Queues {
            tx,
            rx,
            tx_ids: TxIds::new(tx_slots as u16),
            tx_pages,
            tx_used: alloc::vec![0; tx_slots],
            tx_head: alloc::vec![false; tx_slots],
            tx_extras_unpublished: 0,
            tx_stalled_since: None,
            tx_unpublished: Vec::new(),
            rx_unpublished: Vec::new(),
            rx_slots: RxSlots::new(rx_count as u16, rx_features),
            rx_ring_ids: alloc::vec![0; rx_ring_size],
            rx_extra_next: false,
            rx_gather: Gather::default(),
            rx_pages,
            stats: Stats::default(),
        };
        for id in 0..rx_count as u16 {
            queues.post_rx(id);
        }
        queues
    }

    fn post_rx(&mut self, id: u16) {
        let gref = self.rx_pages[usize::from(id)].gref;
        let at = self.rx.next_request_index();
        if self.rx.push(RxRequest { id, pad: 0, gref: gref.0 }).is_ok() {
            *self.rx_ring_id(at) = id;
            self.rx_unpublished.push(id);
        }
    }

    /// The buffer id recorded for rx ring index `index`.
    fn rx_ring_id(&mut self, index: u32) -> &mut u16 {
        let slots = self.rx_ring_ids.len();
        &mut self.rx_ring_ids[index as usize % slots]
    }

    /// Publishes posted requests on both rings; true if the backend must
    /// be notified.
    pub fn publish(&mut self) -> bool {
        let tx = self.tx.publish();
        let rx = self.rx.publish();
        self.tx_unpublished.drain(..).for_each(|id| self.tx_ids.published(id));
        self.tx_ids.extras_published(core::mem::take(&mut self.tx_extras_unpublished));
        self.rx_unpublished.drain(..).for_each(|id| self.rx_slots.post(id));
        tx || rx
    }

    /// Whether a frame can be queued for sending now.
    pub fn can_send(&self) -> bool {
        self.tx_ids.free_count() > 0 && self.tx.free_requests() > 0
    }

    /// Whether a frame can be sent at `now` (ms): a free slot, or wait for
    /// one, or drop the frame because the backend has stalled.
    pub fn tx_ready(&mut self, now: i64) -> TxReady {
        if self.can_send() {
            if self.tx_stalled_since.take().is_some() && self.stats.tx_no_slot > 0 {
                log::warn!(
                    "netfront: the backend takes frames again ({} dropped for want of a tx slot so far)",
                    self.stats.tx_no_slot
                );
            }
            return TxReady::Ready;
        }
        let (since, logged) = self.tx_stalled_since.get_or_insert((now, false));
        if now.saturating_sub(*since) < TX_STALL_MS {
            return TxReady::Wait;
        }
        if !core::mem::replace(logged, true) {
            log::warn!("netfront: the backend has answered no frame for {TX_STALL_MS} ms; dropping frames until it does");
        }
        TxReady::Drop
    }

    /// Copies `frame` into a free slot and queues it (published by
    /// [`Queues::publish`]) with `flags` (`NETTXF_*`). `false` if it is too long, or no slot is
    /// free (the frame is dropped and counted in [`Stats::tx_no_slot`]).
    pub fn send(&mut self, frame: &[u8], flags: u16) -> bool {
        frame.len() <= MAX_FRAME && self.send_packet(frame, flags, None)
    }

    /// Slots a packet of `len` bytes takes: in buffers, and in the ring (with a GSO one's
    /// extra-info slot).
    pub fn tx_slots_for(len: usize, gso: bool) -> (usize, usize) {
        let buffers = len.div_ceil(TX_SLOT_SIZE).max(1);
        (buffers, buffers + usize::from(gso))
    }

    /// Whether packets taking `buffers` tx buffers and `ring` ring slots could be queued now,
    /// and one more frame after them.
    pub fn has_room(&self, buffers: usize, ring: usize) -> bool {
        self.tx_ids.free_count() > buffers && self.tx.free_requests() as usize > ring
    }

    /// Queues a packet of up to [`MAX_TX_PACKET`] bytes across as many slots as it needs
    /// (`NETTXF_more_data`), with `flags` on the first; with `seg_size`, as a GSO TCP/IPv4
    /// packet for the backend to cut into segments of that many payload bytes (an extra-info
    /// slot after the first). `false` if it is too long or the slots are not free (the packet
    /// is dropped and counted in [`Stats::tx_no_slot`]).
    pub fn send_packet(&mut self, packet: &[u8], flags: u16, seg_size: Option<u16>) -> bool {
        if packet.len() > MAX_TX_PACKET {
            return false;
        }
        let (buffers, ring) = Self::tx_slots_for(packet.len(), seg_size.is_some());
        if self.tx_ids.free_count() < buffers || (self.tx.free_requests() as usize) < ring {
            self.stats.tx_no_slot += 1;
            return false;
        }
        for (i, chunk) in packet.chunks(TX_SLOT_SIZE).enumerate() {
            // Free ids counted above.
            let Some(id) = self.tx_ids.take() else { break };
            let page = self.tx_pages[usize::from(id) / 2];
            let offset = (usize::from(id) % 2) * TX_SLOT_SIZE;
            let used = core::mem::replace(&mut self.tx_used[usize::from(id)], chunk.len() as u16);
            // SAFETY: the slot lies within its page, is not with the backend
            // (its id was free), and the page stays allocated while we live.
            unsafe {
                let slot = page.addr.add(offset);
                core::ptr::copy_nonoverlapping(chunk.as_ptr(), slot, chunk.len());
                // The tail of a longer earlier frame: not this frame's to show.
                if usize::from(used) > chunk.len() {
                    core::ptr::write_bytes(slot.add(chunk.len()), 0, usize::from(used) - chunk.len());
                }
            }
            let first = i == 0;
            let more = if i + 1 < buffers { NETTXF_MORE_DATA } else { 0 };
            let (flags, size) = match (first, seg_size) {
                (true, Some(_)) => (flags | more | NETTXF_EXTRA_INFO, packet.len()),
                (true, None) => (flags | more, packet.len()),
                (false, _) => (more, chunk.len()),
            };
            let req = TxRequest { gref: page.gref.0, offset: offset as u16, flags, id, size: size as u16 };
            // The ring has room: counted above (so the results need no look).
            let _ = self.tx.push(req);
            self.tx_head[usize::from(id)] = first;
            self.tx_unpublished.push(id);
            if let (true, Some(seg_size)) = (first, seg_size) {
                let _ = self.tx.push(crate::wire::gso_extra_info(seg_size));
                self.tx_extras_unpublished += 1;
            }
        }
        self.stats.tx_frames += 1;
        true
    }

    /// Takes tx responses, freeing their slots.
    pub fn reap_tx(&mut self) -> Result<(), QueueError> {
        while let Some(rsp) = self.tx.pop_response().map_err(QueueError::Ring)? {
            match self.tx_ids.complete(rsp).map_err(QueueError::Tx)? {
                TxOutcome::Sent | TxOutcome::Null => {}
                // A packet's every fragment is answered with its status: count the first.
                TxOutcome::Dropped | TxOutcome::Error => {
                    self.stats.tx_dropped += u64::from(self.tx_head[usize::from(rsp.id)])
                }
            }
        }
        Ok(())
    }

    /// The next received packet, copied into `out` (cleared first) piece by piece; each
    /// buffer is posted again at once. `Ok(None)`: no whole packet yet (a packet whose first
    /// pieces have come is gathered on the next call). A bad response is an error, once per
    /// packet: the rest of that packet is skipped, and every buffer of ours it named is posted
    /// again too.
    pub fn recv(&mut self, out: &mut Vec<u8>) -> Result<Option<RxCsum>, QueueError> {
        loop {
            let at = self.rx.next_response_index();
            let Some(rsp) = self.rx.pop_response().map_err(QueueError::Ring)? else { return Ok(None) };
            if core::mem::take(&mut self.rx_extra_next) {
                // An extra-info slot (`io/netif.h`, "Guest receive"): nothing we use (the GSO
                // packet goes up whole), but it took the request pushed here, whose buffer
                // the backend left untouched: post it again.
                self.rx_extra_next = crate::wire::extra_info_flags(&rsp) & XEN_NETIF_EXTRA_FLAG_MORE != 0;
                let id = *self.rx_ring_id(at);
                if self.rx_slots.reclaim(id) {
                    self.post_rx(id);
                }
                continue;
            }
            // Whatever we negotiated, the flag says what the next slot holds.
            self.rx_extra_next = rsp.flags & NETRXF_EXTRA_INFO != 0;
            self.stats.rx_gso += u64::from(self.rx_extra_next);
            let more = rsp.flags & crate::wire::NETRXF_MORE_DATA != 0;
            let piece = self.rx_slots.complete(rsp);
            let id = match piece {
                Ok(f) => Some(f.id),
                Err(
                    RxError::Backend { id, .. }
                    | RxError::OutOfBounds { id, .. }
                    | RxError::Unnegotiated { id, .. },
                ) => Some(id),
                Err(
                    RxError::UnknownId(_) | RxError::TooManySlots | RxError::TooLong | RxError::NoMemory(_),
                ) => None,
            };
            let mut step = self.rx_gather.step(piece, more);
            if let Step::Append { frame, first, .. } = step {
                let page = self.rx_pages[usize::from(frame.id)];
                if first {
                    out.clear();
                }
                // SAFETY: `complete` checked offset + len <= the page size, so the piece lies
                // within buffer `frame.id`'s page, which stays allocated while we live.
                let piece = unsafe { page.addr.add(frame.offset) };
                if append_shared(out, piece, frame.len).is_err() {
                    step = self.rx_gather.refuse(RxError::NoMemory(out.len() + frame.len));
                }
            }
            if let Some(id) = id {
                self.post_rx(id);
            }
            match step {
                Step::Append { last: Some(csum), first, .. } => {
                    self.stats.rx_frames += 1;
                    if !first {
                        self.stats.rx_multi_slot += 1;
                    }
                    return Ok(Some(csum));
                }
                Step::Refuse(e) => {
                    self.stats.rx_errors += 1;
                    return Err(QueueError::Rx(e));
                }
                Step::Append { last: None, .. } | Step::Skip => {}
            }
        }
    }

    /// Asks for an event on the next rx or tx response; true if one is
    /// already there (check again instead of sleeping).
    pub fn arm_events(&mut self) -> Result<bool, QueueError> {
        let rx = self.rx.final_check_for_responses().map_err(QueueError::Ring)?;
        let tx = self.tx.final_check_for_responses().map_err(QueueError::Ring)?;
        Ok(rx || tx)
    }
}

/// Appends the `len` bytes at `src`, in a page granted to the backend, to `out`: copied
/// through the raw pointer, never made a reference, since a hostile backend may write the page
/// while we read it. `Err` when the heap has no room for them (nothing appended): the packet is
/// dropped, never the domain.
fn append_shared(out: &mut Vec<u8>, src: *const u8, len: usize) -> Result<(), TryReserveError> {
    out.try_reserve(len)?;
    // SAFETY: `src..src + len` is readable (the caller's word), `out` has room for `len` more
    // bytes (reserved above), and the two cannot overlap: `out` is our own heap memory, never
    // granted. The bytes are initialised once copied.
    unsafe {
        core::ptr::copy_nonoverlapping(src, out.as_mut_ptr().add(out.len()), len);
        out.set_len(out.len() + len);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rx::RxCsum;
    use crate::testing::queues;
    use crate::wire::{NETIF_RSP_OKAY, NETRXF_CSUM_BLANK, NETRXF_MORE_DATA, NETTXF_CSUM_BLANK};

    #[test]
    fn frames_are_sent_from_granted_slots_and_slots_come_back() {
        let (mut q, mut back, _, txb, _) = queues(2, 1);
        let frames: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 60 + usize::from(i)]).collect();
        let sent = frames.iter().take_while(|f| q.send(f, 0)).count();
        assert_eq!(sent, 4, "two pages hold four slots");
        q.publish();
        let reqs: Vec<TxRequest> = back.requests(12);
        for (req, frame) in reqs.iter().zip(&frames) {
            let page = txb.iter().find(|p| p.gref.0 == req.gref).unwrap();
            let bytes = unsafe {
                core::slice::from_raw_parts(page.addr.add(usize::from(req.offset)), usize::from(req.size))
            };
            assert_eq!(bytes, &frame[..]);
            back.respond(12, TxResponse { id: req.id, status: NETIF_RSP_OKAY });
        }
        q.reap_tx().unwrap();
        assert!(q.send(&frames[4], 0));
        q.publish();
        back.requests::<TxRequest>(12);
        // A second response for an id already answered is refused.
        back.respond(12, TxResponse { id: reqs[0].id, status: NETIF_RSP_OKAY });
        assert!(matches!(q.reap_tx(), Err(QueueError::Tx(TxError::UnknownId(_)))));
    }

    #[test]
    fn a_gso_packet_spans_slots_after_its_extra_info_and_nulls_answer_that() {
        let (mut q, mut back, _, txb, _) = queues(4, 1);
        let packet: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
        let room_for = |len| {
            let (buffers, ring) = Queues::tx_slots_for(len, true);
            q.has_room(buffers, ring)
        };
        assert!(!room_for(packet.len() * 3), "eight slots hold no 15000 bytes and a frame");
        assert!(room_for(packet.len()));
        assert!(q.send_packet(&packet, NETTXF_CSUM_BLANK, Some(1448)));
        q.publish();
        let reqs: Vec<TxRequest> = back.requests(12);
        assert_eq!(reqs.len(), 4, "three fragments and the extra-info slot after the first");
        assert_eq!(reqs[0].flags, NETTXF_CSUM_BLANK | NETTXF_MORE_DATA | NETTXF_EXTRA_INFO);
        assert_eq!(usize::from(reqs[0].size), packet.len(), "the first names the whole packet");
        assert_eq!(reqs[1], crate::wire::gso_extra_info(1448));
        assert_eq!((reqs[2].flags, reqs[3].flags), (NETTXF_MORE_DATA, 0));
        let mut gathered = Vec::new();
        for (i, req) in [reqs[0], reqs[2], reqs[3]].iter().enumerate() {
            let page = txb.iter().find(|p| p.gref.0 == req.gref).unwrap();
            let len = if i == 0 { TX_SLOT_SIZE } else { usize::from(req.size) };
            gathered.extend_from_slice(unsafe {
                core::slice::from_raw_parts(page.addr.add(usize::from(req.offset)), len)
            });
        }
        assert_eq!(gathered, packet);
        // As netback answers: the first, a NULL for the extra slot, then the others.
        back.respond(12, TxResponse { id: reqs[0].id, status: NETIF_RSP_OKAY });
        back.respond(12, TxResponse { id: 0xffff, status: crate::wire::NETIF_RSP_NULL });
        for req in &reqs[2..] {
            back.respond(12, TxResponse { id: req.id, status: NETIF_RSP_OKAY });
        }
        q.reap_tx().unwrap();
        assert_eq!(q.tx_ids.free_count(), 8);
        // A NULL for a packet sent without an extra slot answers nothing of ours.
        assert!(q.send(&[1; 60], 0));
        q.publish();
        let req = back.requests::<TxRequest>(12)[0];
        back.respond(12, TxResponse { id: req.id, status: crate::wire::NETIF_RSP_NULL });
        assert!(matches!(q.reap_tx(), Err(QueueError::Tx(TxError::BadStatus { .. }))));
        // Longer than a packet may be: refused, nothing taken.
        assert!(!q.send_packet(&vec![0; MAX_TX_PACKET + 1], 0, Some(1448)));
        assert_eq!(q.tx_ids.free_count(), 7);
    }

    #[test]
    fn a_dropped_packet_is_counted_once_for_all_its_fragments() {
        let (mut q, mut back, _, _, _) = queues(2, 1);
        assert!(q.send_packet(&vec![7; 3000], 0, None));
        q.publish();
        for req in back.requests::<TxRequest>(12) {
            back.respond(12, TxResponse { id: req.id, status: crate::wire::NETIF_RSP_DROPPED });
        }
        q.reap_tx().unwrap();
        assert_eq!(q.stats.tx_dropped, 1);
    }

    /// The bytes of a `struct netif_extra_info` for GSO (`io/netif.h`), as the backend
    /// writes it into an rx response slot.
    fn gso_extra(more: bool) -> RxResponse {
        let flags = if more { XEN_NETIF_EXTRA_FLAG_MORE } else { 0 };
        // type GSO (1), flags; size 1448; GSO type TCPv4 (1), pad; features 0.
        RxResponse {
            id: u16::from_ne_bytes([1, flags]),
            offset: 1448,
            flags: u16::from_ne_bytes([1, 0]),
            status: 0,
        }
    }

    #[test]
    fn a_gso_packets_extra_info_slots_are_skipped_and_their_buffers_posted_again() {
        let gso = RxFeatures { sg: true, csum_blank: true, gso: true };
        let (mut q, _, mut back, _, rxb) = crate::testing::queues_with(1, 6, gso);
        q.publish();
        let posted: Vec<RxRequest> = back.requests(8);
        assert_eq!(posted.len(), 6);
        let page = |id: u16| crate::testing::bytes(&rxb[usize::from(id)]);
        page(posted[0].id).fill(0xaa);
        page(posted[3].id)[..100].fill(0xbb);
        let first = NETRXF_CSUM_BLANK | NETRXF_MORE_DATA | NETRXF_EXTRA_INFO;
        back.respond(8, RxResponse { id: posted[0].id, offset: 0, flags: first, status: 4096 });
        // Two extra-info slots (the first says another follows), in the slots of requests 1 and 2.
        back.respond(8, gso_extra(true));
        back.respond(8, gso_extra(false));
        back.respond(8, RxResponse { id: posted[3].id, offset: 0, flags: 0, status: 100 });
        let mut out = Vec::new();
        assert_eq!(q.recv(&mut out), Ok(Some(RxCsum::Blank)));
        assert_eq!(out.len(), 4196);
        assert!(out[..4096].iter().all(|&b| b == 0xaa) && out[4096..].iter().all(|&b| b == 0xbb));
        assert_eq!((q.stats.rx_frames, q.stats.rx_multi_slot, q.stats.rx_gso), (1, 1, 1));
        q.publish();
        let mut again: Vec<u16> = back.requests::<RxRequest>(8).iter().map(|r| r.id).collect();
        again.sort_unstable();
        let mut used: Vec<u16> = posted[..4].iter().map(|r| r.id).collect();
        used.sort_unstable();
        assert_eq!(again, used, "every buffer of the packet, the extra slots' included, is posted again");
    }

    #[test]
    fn an_extra_info_slot_we_did_not_negotiate_drops_its_packet_not_the_next() {
        let (mut q, _, mut back, _, rxb) =
            crate::testing::queues_with(1, 4, RxFeatures { sg: true, csum_blank: true, gso: false });
        q.publish();
        let posted: Vec<RxRequest> = back.requests(8);
        crate::testing::bytes(&rxb[usize::from(posted[2].id)])[..5].copy_from_slice(b"later");
        back.respond(8, RxResponse { id: posted[0].id, offset: 0, flags: NETRXF_EXTRA_INFO, status: 60 });
        back.respond(8, gso_extra(false));
        back.respond(8, RxResponse { id: posted[2].id, offset: 0, flags: 0, status: 5 });
        let mut out = Vec::new();
        assert!(matches!(q.recv(&mut out), Err(QueueError::Rx(RxError::Unnegotiated { .. }))));
        assert_eq!(q.recv(&mut out), Ok(Some(RxCsum::Unchecked)));
        assert_eq!(out, b"later");
        q.publish();
        assert_eq!(
            back.requests::<RxRequest>(8).len(),
            3,
            "the refused packet's buffer and the extra slot's too"
        );
    }

    #[test]
    fn received_frames_are_copied_out_and_buffers_reposted() {
        let (mut q, _, mut back, _, rxb) = queues(1, 4);
        q.publish();
        let posted: Vec<RxRequest> = back.requests(8);
        assert_eq!(posted.len(), 4);
        let req = posted[2];
        let page = rxb.iter().find(|p| p.gref.0 == req.gref).unwrap();
        unsafe { core::ptr::copy_nonoverlapping(b"hello frame".as_ptr(), page.addr.add(10), 11) };
        back.respond(8, RxResponse { id: req.id, offset: 10, flags: 0, status: 11 });
        let mut out = Vec::new();
        assert_eq!(q.recv(&mut out), Ok(Some(RxCsum::Unchecked)));
        assert_eq!(out, b"hello frame");
        assert_eq!(q.recv(&mut out), Ok(None));
        q.publish();
        let reposted: Vec<RxRequest> = back.requests(8);
        assert_eq!(reposted, [req]);
        // Hostile: bytes past the page end; the buffer is reposted, nothing copied.
        back.respond(8, RxResponse { id: req.id, offset: 4000, flags: 0, status: 200 });
        out.clear();
        assert!(matches!(q.recv(&mut out), Err(QueueError::Rx(RxError::OutOfBounds { .. }))));
        assert!(out.is_empty());
        assert_eq!(q.stats.rx_frames, 1);
        assert_eq!(q.stats.rx_errors, 1);
    }
}
