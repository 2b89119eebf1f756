//! A hostile backend against the queues and the device, over simulated
//! rings (XSA-403's cases: responses naming ids we did not post or posting
//! twice, bytes outside the page, indexes running ahead, responses changed
//! after we read them, a backend that never answers, and stale guest data
//! in the pages we share). Each must be refused, counted and survived.

use crate::connect::{Features, Shared};
use crate::device::Netfront;
use crate::queues::{QueueError, TxReady, MAX_FRAME, TX_SLOT_SIZE, TX_STALL_MS};
use crate::rx::{RxCsum, RxError};
use crate::rx::{RxFeatures, MAX_RX_FRAME, MAX_RX_SLOTS};
use crate::testing::{bytes, queues, queues_with, tcp_v4};
use crate::tx::TxError;
use crate::wire::{
    RxRequest, RxResponse, TxRequest, TxResponse, NETIF_RSP_OKAY, NETRXF_CSUM_BLANK, NETRXF_DATA_VALIDATED,
    NETRXF_MORE_DATA, NETTXF_CSUM_BLANK, NETTXF_DATA_VALIDATED,
};
use mote_xen::event::Port;
use mote_xen::io_ring::RingError;
use smoltcp::phy::{Device, TxToken};
use smoltcp::time::Instant;

const TX: usize = 12;
const RX: usize = 8;

fn rx_rsp(id: u16, offset: u16, len: i16) -> RxResponse {
    RxResponse { id, offset, flags: 0, status: len }
}

#[test]
fn rx_ids_out_of_range_or_answered_twice_are_refused() {
    let (mut q, _, mut back, _, _) = queues(1, 4);
    q.publish();
    let posted: Vec<RxRequest> = back.requests(RX);
    let mut out = Vec::new();
    for id in [4, u16::MAX] {
        back.respond(RX, rx_rsp(id, 0, 60));
        assert_eq!(q.recv(&mut out), Err(QueueError::Rx(RxError::UnknownId(id))));
    }
    // One buffer answered twice in the same batch: the second answer names
    // a buffer reposted but not yet published, which the backend cannot
    // have seen.
    back.respond(RX, rx_rsp(posted[2].id, 0, 60));
    back.respond(RX, rx_rsp(posted[2].id, 0, 70));
    assert_eq!(q.recv(&mut out), Ok(Some(RxCsum::Unchecked)));
    assert_eq!(q.recv(&mut out), Err(QueueError::Rx(RxError::UnknownId(posted[2].id))));
    assert_eq!(out.len(), 60);
    assert_eq!((q.stats.rx_frames, q.stats.rx_errors), (1, 3));
    // And a response beyond what was published is the ring running ahead.
    back.respond(RX, rx_rsp(posted[3].id, 0, 60));
    assert!(matches!(q.recv(&mut out), Err(QueueError::Ring(RingError::RunAhead { .. }))));
}

#[test]
fn rx_lengths_and_offsets_past_the_page_copy_nothing() {
    let (mut q, _, mut back, _, rxb) = queues(1, 8);
    q.publish();
    let posted: Vec<RxRequest> = back.requests(RX);
    bytes(&rxb[0]).fill(0xee);
    let cases =
        [(4000, 97), (0, 4097), (4095, 2), (u16::MAX, 1), (0, i16::MAX), (100, 0), (0, -1), (0, i16::MIN)];
    let mut out = vec![1, 2, 3];
    for (req, (offset, len)) in posted.iter().zip(cases) {
        back.respond(RX, rx_rsp(req.id, offset, len));
        assert!(q.recv(&mut out).is_err(), "offset {offset} len {len} accepted");
        assert_eq!(out, [1, 2, 3], "bytes copied for offset {offset} len {len}");
    }
    assert_eq!(q.stats.rx_errors, 8);
    assert_eq!(q.stats.rx_frames, 0);
    // Every buffer went back to the backend and the ring still works.
    q.publish();
    assert_eq!(back.requests::<RxRequest>(RX).len(), 8);
    back.respond(RX, rx_rsp(posted[0].id, 4096 - 60, 60));
    assert_eq!(q.recv(&mut out), Ok(Some(RxCsum::Unchecked)));
    assert_eq!(out, [0xee; 60]);
}

#[test]
fn producer_index_running_ahead_is_refused_and_reads_nothing() {
    let (mut q, mut txback, mut back, _, _) = queues(1, 4);
    q.publish();
    back.requests::<RxRequest>(RX);
    // Four buffers posted: claiming five answers (or a wrapped index) is a lie.
    for rsp_prod in [5, 100, u32::MAX] {
        back.set_rsp_prod(rsp_prod);
        let mut out = Vec::new();
        assert!(matches!(q.recv(&mut out), Err(QueueError::Ring(RingError::RunAhead { .. }))));
        assert!(out.is_empty());
        assert!(matches!(q.arm_events(), Err(QueueError::Ring(RingError::RunAhead { .. }))));
    }
    // Nothing was sent, so any tx response is ahead too.
    txback.set_rsp_prod(1);
    assert!(matches!(q.reap_tx(), Err(QueueError::Ring(RingError::RunAhead { .. }))));
    assert_eq!(q.stats.rx_frames, 0);
}

#[test]
fn responses_changed_after_they_were_read_change_nothing() {
    let (mut q, mut txback, mut back, _, rxb) = queues(1, 2);
    q.publish();
    let posted: Vec<RxRequest> = back.requests(RX);
    let page = bytes(&rxb[usize::from(posted[0].id)]);
    page[..5].copy_from_slice(b"first");
    back.respond(RX, rx_rsp(posted[0].id, 0, 5));
    let mut out = Vec::new();
    assert_eq!(q.recv(&mut out), Ok(Some(RxCsum::Unchecked)));
    // The backend rewrites the answer and the data once we have read them.
    back.rewrite(0, RX, rx_rsp(posted[1].id, 0, 4000));
    page[..5].copy_from_slice(b"later");
    assert_eq!(out, b"first");
    assert_eq!(q.recv(&mut out), Ok(None), "a rewritten slot is not read again");
    // The same for tx: an answer rewritten to name another id frees nothing more.
    assert!(q.send(&[7; 60], 0) && q.send(&[8; 60], 0));
    q.publish();
    let sent: Vec<TxRequest> = txback.requests(TX);
    txback.respond(TX, TxResponse { id: sent[0].id, status: NETIF_RSP_OKAY });
    q.reap_tx().unwrap();
    txback.rewrite(0, TX, TxResponse { id: sent[1].id, status: NETIF_RSP_OKAY });
    q.reap_tx().unwrap();
    assert!(q.send(&[9; 60], 0), "the answered slot is free again");
    assert!(!q.send(&[10; 60], 0), "the slot still with the backend is not");
}

#[test]
fn duplicated_and_unknown_tx_ids_are_refused() {
    let (mut q, mut txback, _, _, _) = queues(1, 1);
    assert!(q.send(&[1; 60], 0));
    q.publish();
    txback.requests::<TxRequest>(TX);
    txback.respond(TX, TxResponse { id: 40, status: NETIF_RSP_OKAY });
    assert_eq!(q.reap_tx(), Err(QueueError::Tx(TxError::UnknownId(40))));

    let (mut q, mut txback, _, _, _) = queues(1, 1);
    assert!(q.send(&[1; 60], 0) && q.send(&[2; 60], 0));
    q.publish();
    let sent: Vec<TxRequest> = txback.requests(TX);
    // The second request answered with the first's id.
    txback.respond(TX, TxResponse { id: sent[0].id, status: NETIF_RSP_OKAY });
    txback.respond(TX, TxResponse { id: sent[0].id, status: NETIF_RSP_OKAY });
    assert_eq!(q.reap_tx(), Err(QueueError::Tx(TxError::UnknownId(sent[0].id))));
    // Its slot is free once, not twice: one frame fits, the other is still out.
    assert!(q.send(&[3; 60], 0));
    assert!(!q.send(&[4; 60], 0));
}

#[test]
fn a_backend_that_never_answers_gets_frames_dropped_not_a_hang() {
    let (mut q, mut txback, _, _, _) = queues(2, 1);
    let mut sent = 0;
    while q.tx_ready(0) == TxReady::Ready {
        assert!(q.send(&[0xab; 100], 0));
        sent += 1;
    }
    assert_eq!(sent, 4);
    q.publish();
    // Stalled since the first look that found no slot (at 0).
    assert_eq!(q.tx_ready(10), TxReady::Wait);
    assert_eq!(q.tx_ready(TX_STALL_MS - 1), TxReady::Wait);
    assert_eq!(q.tx_ready(TX_STALL_MS), TxReady::Drop);
    for _ in 0..1000 {
        assert!(!q.send(&[0xcd; 100], 0));
    }
    assert_eq!(q.stats.tx_no_slot, 1000);
    assert_eq!(q.stats.tx_frames, 4);
    // Once it answers, frames go out again.
    let reqs: Vec<TxRequest> = txback.requests(TX);
    txback.respond(TX, TxResponse { id: reqs[2].id, status: NETIF_RSP_OKAY });
    q.reap_tx().unwrap();
    assert_eq!(q.tx_ready(5000), TxReady::Ready);
    assert!(q.send(&[0xef; 100], 0));
}

#[test]
fn shared_pages_hold_nothing_but_frames() {
    let (mut q, mut txback, mut back, txb, rxb) = queues(2, 4);
    // Fresh buffers are zero, whatever the heap held before.
    for page in txb.iter().chain(&rxb) {
        assert!(bytes(page).iter().all(|&b| b == 0));
    }
    // A long frame, then a short one in the same slot: no tail of the first.
    let long = vec![0x11; MAX_FRAME];
    let short = vec![0x22; 60];
    for frame in [&long, &short] {
        for _ in 0..4 {
            assert!(q.send(frame, 0));
        }
        q.publish();
        for req in txback.requests::<TxRequest>(TX) {
            txback.respond(TX, TxResponse { id: req.id, status: NETIF_RSP_OKAY });
        }
        q.reap_tx().unwrap();
    }
    for page in &txb {
        let page = bytes(page);
        for slot in page.chunks(TX_SLOT_SIZE) {
            assert_eq!(&slot[..60], &short[..]);
            assert!(slot[60..].iter().all(|&b| b == 0), "stale bytes past the frame");
        }
    }
    // Received frames are copied out; the page keeps only what the backend wrote.
    q.publish();
    let posted: Vec<RxRequest> = back.requests(RX);
    bytes(&rxb[usize::from(posted[0].id)])[..3].copy_from_slice(b"abc");
    back.respond(RX, rx_rsp(posted[0].id, 0, 3));
    let mut out = Vec::new();
    assert_eq!(q.recv(&mut out), Ok(Some(RxCsum::Unchecked)));
    assert!(bytes(&rxb[usize::from(posted[0].id)])[3..].iter().all(|&b| b == 0));
}

#[test]
fn the_device_stops_on_a_broken_ring_instead_of_looping() {
    let (q, _, mut back, _, _) = queues(1, 4);
    let mut dev = Netfront::new(q, Port(0), [0; 6], Shared::none(), Features::default());
    back.set_rsp_prod(1000);
    // Before the fix this looped for ever on the same error.
    assert!(dev.receive(Instant::from_millis(0)).is_none());
    assert!(matches!(dev.broken(), Some(RingError::RunAhead { .. })));
    assert!(dev.receive(Instant::from_millis(1)).is_none());
    assert!(dev.transmit(Instant::from_millis(1)).is_none());
    assert!(!dev.prepare_to_sleep());
}

#[test]
fn the_device_drops_frames_to_a_silent_backend() {
    let (mut q, _, _, _, _) = queues(1, 1);
    // Both slots go to a backend that will never answer (filled here, as
    // the device would notify it through a hypercall).
    assert!(q.send(&[1; 60], 0) && q.send(&[2; 60], 0));
    q.publish();
    let mut dev = Netfront::new(q, Port(0), [0; 6], Shared::none(), Features::default());
    assert!(dev.transmit(Instant::from_millis(0)).is_none(), "waits for the backend at first");
    assert!(dev.transmit(Instant::from_millis(TX_STALL_MS - 1)).is_none());
    for t in 0..3 {
        let token = dev.transmit(Instant::from_millis(TX_STALL_MS + t)).expect("a token that drops");
        token.consume(60, |buf| buf.fill(0xaa));
    }
    assert_eq!(dev.stats().tx_no_slot, 3);
    assert_eq!(dev.stats().tx_frames, 2);
    assert!(dev.receive(Instant::from_millis(TX_STALL_MS)).is_none());
}

const SG: RxFeatures = RxFeatures { sg: true, csum_blank: true, gso: false };

fn piece(id: u16, offset: u16, flags: u16, len: i16) -> RxResponse {
    RxResponse { id, offset, flags, status: len }
}

#[test]
fn a_packet_over_several_buffers_comes_out_whole() {
    let (mut q, _, mut back, _, rxb) = queues_with(1, 4, SG);
    q.publish();
    let posted: Vec<RxRequest> = back.requests(RX);
    let page = |i: usize| bytes(&rxb[usize::from(posted[i].id)]);
    page(0)[100..].fill(1);
    page(1).fill(2);
    page(2)[..500].fill(3);
    let blank = NETRXF_CSUM_BLANK | NETRXF_DATA_VALIDATED;
    back.respond(RX, piece(posted[0].id, 100, blank | NETRXF_MORE_DATA, 3996));
    back.respond(RX, piece(posted[1].id, 0, NETRXF_MORE_DATA, 4096));
    let mut out = Vec::new();
    // Published in part: nothing yet, and the part is kept.
    assert_eq!(q.recv(&mut out), Ok(None));
    back.respond(RX, piece(posted[2].id, 0, 0, 500));
    assert_eq!(q.recv(&mut out), Ok(Some(RxCsum::Blank)));
    assert_eq!(out.len(), 3996 + 4096 + 500);
    assert!(out[..3996].iter().all(|&b| b == 1) && out[3996..8092].iter().all(|&b| b == 2));
    assert!(out[8092..].iter().all(|&b| b == 3));
    assert_eq!((q.stats.rx_frames, q.stats.rx_multi_slot), (1, 1));
    q.publish();
    assert_eq!(back.requests::<RxRequest>(RX).len(), 3, "every piece's buffer went back");
}

#[test]
fn a_bad_piece_drops_its_whole_packet_and_only_it() {
    // The middle piece of three: past its page, naming a buffer not posted, a backend error.
    let middles: [fn(u16) -> RxResponse; 3] = [
        |id| piece(id, 100, NETRXF_MORE_DATA, 4000),
        |_| piece(200, 0, NETRXF_MORE_DATA, 10),
        |id| piece(id, 0, NETRXF_MORE_DATA, -1),
    ];
    for (case, middle) in middles.into_iter().enumerate() {
        let (mut q, _, mut back, _, _) = queues_with(1, 4, SG);
        let mut out = Vec::new();
        q.publish();
        let posted: Vec<u16> = back.requests::<RxRequest>(RX).iter().map(|r| r.id).collect();
        back.respond(RX, piece(posted[0], 0, NETRXF_MORE_DATA, 4096));
        back.respond(RX, middle(posted[1]));
        back.respond(RX, piece(posted[2], 0, 0, 60));
        back.respond(RX, piece(posted[3], 0, 0, 60));
        assert!(matches!(q.recv(&mut out), Err(QueueError::Rx(_))), "case {case}");
        // The packet's last piece is skipped; the next packet is whole.
        assert_eq!(q.recv(&mut out), Ok(Some(RxCsum::Unchecked)), "case {case}");
        assert_eq!(out.len(), 60, "case {case}");
        assert_eq!(q.recv(&mut out), Ok(None), "case {case}");
        assert_eq!((q.stats.rx_errors, q.stats.rx_frames), (1, 1), "case {case}");
        // Every buffer of ours named went back; the one the bad middle did not name (case
        // 1) is still with the backend.
        q.publish();
        let mut reposted: Vec<u16> = back.requests::<RxRequest>(RX).iter().map(|r| r.id).collect();
        reposted.sort_unstable();
        let mut expected = posted.clone();
        if case == 1 {
            expected.retain(|&id| id != posted[1]);
        }
        expected.sort_unstable();
        assert_eq!(reposted, expected, "case {case}");
    }
}

#[test]
fn a_packet_that_never_ends_is_refused_without_growing() {
    let (mut q, _, mut back, _, _) = queues_with(1, 4, SG);
    let mut out = Vec::new();
    let mut refused = 0;
    // A backend answering every buffer with "more data", round after round.
    for _ in 0..20 {
        q.publish();
        for r in back.requests::<RxRequest>(RX) {
            back.respond(RX, piece(r.id, 0, NETRXF_MORE_DATA, 100));
        }
        while let Some(result) = match q.recv(&mut out) {
            Ok(None) => None,
            other => Some(other),
        } {
            assert_eq!(result, Err(QueueError::Rx(RxError::TooManySlots)));
            refused += 1;
        }
    }
    assert_eq!(refused, 1, "reported once");
    assert!(out.len() <= MAX_RX_SLOTS * 4096 && out.len() <= MAX_RX_FRAME);
    // It ends at last; the next packet comes through.
    q.publish();
    let posted: Vec<RxRequest> = back.requests(RX);
    back.respond(RX, piece(posted[0].id, 0, 0, 60));
    back.respond(RX, piece(posted[1].id, 0, 0, 60));
    assert_eq!(q.recv(&mut out), Ok(Some(RxCsum::Unchecked)));
    assert_eq!(out.len(), 60);
}

#[test]
fn offloads_not_negotiated_are_refused() {
    let (mut q, _, mut back, _, _) = queues(1, 4);
    q.publish();
    let posted: Vec<RxRequest> = back.requests(RX);
    let mut out = Vec::new();
    back.respond(RX, piece(posted[0].id, 0, NETRXF_MORE_DATA, 4096));
    back.respond(RX, piece(posted[1].id, 0, 0, 60));
    back.respond(RX, piece(posted[2].id, 0, NETRXF_CSUM_BLANK, 60));
    assert!(matches!(q.recv(&mut out), Err(QueueError::Rx(RxError::Unnegotiated { .. }))));
    assert!(matches!(q.recv(&mut out), Err(QueueError::Rx(RxError::Unnegotiated { .. }))));
    assert_eq!(q.recv(&mut out), Ok(None));
    assert!(out.is_empty());
}

fn offloading(tx_v4: bool) -> Features {
    Features { csum: true, rx: SG, tx_csum_v4: tx_v4, tx_csum_v6: false, tx_gso: false }
}

/// A device with checksum offload but no tx GSO over four rx buffers, the backend's rx side
/// and the buffers.
fn checking_device() -> (Netfront, crate::testing::Back, Vec<crate::queues::GrantedPage>) {
    let (mut q, _, back, _, rxb) = queues_with(1, 4, SG);
    // Published here: the device's first publish would notify through a hypercall (later
    // ones do not cross the simulated backend's event index).
    q.publish();
    (Netfront::new(q, Port(0), [0; 6], Shared::none(), offloading(true)), back, rxb)
}

/// A TCP segment with its checksum, and the same with a byte changed.
fn good_and_bad() -> (Vec<u8>, Vec<u8>) {
    let good = tcp_v4(b"payload", true);
    let mut bad = good.clone();
    *bad.last_mut().unwrap() ^= 0xff;
    (good, bad)
}

#[test]
fn with_checksum_offload_unvouched_frames_are_verified_and_blank_ones_taken() {
    let (mut dev, mut back, rxb) = checking_device();
    let (good, bad) = good_and_bad();
    let blank = tcp_v4(b"payload", false);
    let frames = [
        (&bad, 0),
        (&good, 0),
        (&blank, NETRXF_CSUM_BLANK | NETRXF_DATA_VALIDATED),
        (&bad, NETRXF_DATA_VALIDATED),
    ];
    let posted: Vec<RxRequest> = back.requests(RX);
    for (req, (frame, flags)) in posted.iter().zip(frames) {
        bytes(&rxb[usize::from(req.id)])[..frame.len()].copy_from_slice(frame);
        back.respond(RX, piece(req.id, 0, flags, frame.len() as i16));
    }
    let mut got = Vec::new();
    while let Some((rx, _)) = dev.receive(Instant::from_millis(1)) {
        got.push(smoltcp::phy::RxToken::consume(rx, |f| f.to_vec()));
    }
    // The bad one unvouched for is dropped; the backend's word is taken for the others.
    assert_eq!(got, [good.clone(), blank, bad]);
    assert_eq!(dev.stats().rx_bad_csum, 1);
}

#[test]
fn with_checksum_offload_sent_segments_go_blank_only_to_a_backend_that_completes_them() {
    for tx_v4 in [true, false] {
        let (mut q, mut txback, _, txb, _) = queues_with(1, 1, SG);
        // A first frame sent and answered here, as the first publish would notify through a
        // hypercall.
        assert!(q.send(&[0; 60], 0));
        q.publish();
        let first: Vec<TxRequest> = txback.requests(TX);
        txback.respond(TX, TxResponse { id: first[0].id, status: NETIF_RSP_OKAY });
        q.reap_tx().unwrap();
        let mut dev = Netfront::new(q, Port(0), [0; 6], Shared::none(), offloading(tx_v4));
        let unfilled = tcp_v4(b"payload", false);
        let token = dev.transmit(Instant::from_millis(0)).unwrap();
        token.consume(unfilled.len(), |buf| buf.copy_from_slice(&unfilled));
        let req: Vec<TxRequest> = txback.requests(TX);
        let sent = &bytes(&txb[usize::from(req[0].id) / 2])[usize::from(req[0].offset)..]
            [..usize::from(req[0].size)];
        if tx_v4 {
            assert_eq!(req[0].flags, NETTXF_CSUM_BLANK | NETTXF_DATA_VALIDATED);
            assert_ne!(sent, &unfilled[..], "the pseudo-header sum is in");
            assert!(!crate::csum::verify_rx(sent), "and the backend completes it");
        } else {
            assert_eq!(req[0].flags, 0);
            assert_eq!(sent, &tcp_v4(b"payload", true)[..], "filled in here");
        }
    }
}

#[test]
fn a_ring_of_dropped_packets_leaves_every_buffer_posted_for_the_next() {
    // dns's vif: checksum offload, no tx GSO (nothing sent at the end of a turn of the stack).
    let (mut dev, mut back, rxb) = checking_device();
    let (good, bad) = good_and_bad();
    // Rounds of a ring's worth of packets dropped here: bad checksums, and responses refused.
    for round in 0..3 {
        let posted: Vec<RxRequest> = back.requests(RX);
        assert_eq!(posted.len(), 4, "round {round}: the backend has every buffer");
        for (i, req) in posted.iter().enumerate() {
            bytes(&rxb[usize::from(req.id)])[..bad.len()].copy_from_slice(&bad);
            let len = if i % 2 == 0 { bad.len() as i16 } else { -1 };
            back.respond(RX, piece(req.id, 0, 0, len));
        }
        assert!(dev.receive(Instant::from_millis(round)).is_none());
    }
    assert_eq!((dev.stats().rx_bad_csum, dev.stats().rx_errors), (6, 6));
    // A good packet still has a buffer to come in.
    let posted: Vec<RxRequest> = back.requests(RX);
    assert_eq!(posted.len(), 4);
    bytes(&rxb[usize::from(posted[0].id)])[..good.len()].copy_from_slice(&good);
    back.respond(RX, piece(posted[0].id, 0, 0, good.len() as i16));
    let (rx, _) = dev.receive(Instant::from_millis(9)).expect("the good packet");
    assert_eq!(smoltcp::phy::RxToken::consume(rx, |f| f.to_vec()), good);
}
