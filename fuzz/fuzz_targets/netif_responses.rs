//! A hostile netback: a sequence of rx and tx responses, interleaved with the frontend
//! posting rx buffers and taking, publishing and returning tx ids (and publishing GSO
//! extra-info slots, which NULL responses answer), checked against the trackers
//! ([`RxSlots`], [`TxIds`]) and a model of which ids are with the backend. A response is
//! accepted only for an id that is out, an accepted rx frame lies within its page, every
//! named id comes back exactly once, and the counts always match the model. Accepted rx
//! pieces go through [`Gather`], which must keep every packet within its bounds, carry no
//! flag that was not negotiated, and report at most one refusal per packet.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use mote_netfront::rx::{
    Gather, RxError, RxFeatures, RxSlots, Step, BUFFER_SIZE, MAX_RX_FRAME, MAX_RX_SLOTS,
};
use mote_netfront::tx::{TxError, TxIds, TxOutcome};
use mote_netfront::wire::{RxResponse, TxResponse, NETIF_RSP_NULL};
use mote_netfront::wire::{NETRXF_CSUM_BLANK, NETRXF_EXTRA_INFO, NETRXF_MORE_DATA};

#[derive(Arbitrary, Debug)]
enum Op {
    PostRx(u16),
    /// An extra-info slot took the request of this buffer.
    ReclaimRx(u16),
    Rx { id: u16, offset: u16, flags: u16, status: i16 },
    TakeTx,
    UntakeTx(u16),
    PublishTx(u16),
    /// Extra-info slots (of GSO packets) published, each answered by a NULL response.
    PublishExtras(u8),
    Tx { id: u16, status: i16 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tx {
    Free,
    Taken,
    Out,
}

#[derive(Arbitrary, Debug)]
struct Input {
    rx_slots: u8,
    tx_ids: u8,
    sg: bool,
    csum_blank: bool,
    gso: bool,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let features = RxFeatures { sg: input.sg, csum_blank: input.csum_blank, gso: input.gso };
    let mut rx = RxSlots::new(input.rx_slots.into(), features);
    let mut gather = Gather::default();
    // The packet being gathered: its length and pieces so far, and whether it was refused.
    let (mut len, mut pieces, mut refused) = (0usize, 0usize, false);
    let mut posted = vec![false; input.rx_slots.into()];
    let mut tx = TxIds::new(input.tx_ids.into());
    // Each tx id: free, taken (not yet published), or out with the backend.
    let mut out = vec![Tx::Free; input.tx_ids.into()];
    // Extra-info slots published and not yet answered.
    let mut extras = 0u32;
    for op in input.ops {
        match op {
            Op::PostRx(id) => {
                rx.post(id);
                if let Some(p) = posted.get_mut(usize::from(id)) {
                    *p = true;
                }
            }
            Op::ReclaimRx(id) => {
                let was = posted.get_mut(usize::from(id)).map(core::mem::take).unwrap_or(false);
                assert_eq!(rx.reclaim(id), was, "reclaiming buffer {id}");
            }
            Op::Rx { id, offset, flags, status } => {
                let result = rx.complete(RxResponse { id, offset, flags, status });
                match posted.get_mut(usize::from(id)).filter(|p| **p) {
                    None => assert_eq!(result, Err(RxError::UnknownId(id))),
                    Some(p) => {
                        *p = false;
                        if let Ok(frame) = result {
                            assert_eq!((frame.id, frame.offset), (id, usize::from(offset)));
                            assert!(frame.len > 0 && frame.offset + frame.len <= BUFFER_SIZE);
                            assert!(input.sg || flags & NETRXF_MORE_DATA == 0);
                            assert!(input.csum_blank || flags & NETRXF_CSUM_BLANK == 0);
                            assert!(input.gso || flags & NETRXF_EXTRA_INFO == 0);
                        }
                    }
                }
                let more = flags & NETRXF_MORE_DATA != 0;
                pieces += 1;
                match gather.step(result, more) {
                    Step::Append { frame, first, last } => {
                        assert!(!refused);
                        assert_eq!(first, pieces == 1);
                        len += frame.len;
                        assert!(len <= MAX_RX_FRAME && pieces <= MAX_RX_SLOTS);
                        assert_eq!(last.is_some(), !more);
                    }
                    Step::Skip => assert!(refused, "a piece skipped in a packet not refused"),
                    Step::Refuse(_) => {
                        assert!(!refused, "a packet refused twice");
                        refused = true;
                    }
                }
                if !more {
                    (len, pieces, refused) = (0, 0, false);
                }
                assert_eq!(gather.in_packet(), pieces > 0);
            }
            Op::TakeTx => match tx.take() {
                Some(id) => {
                    let slot = &mut out[usize::from(id)];
                    assert_eq!(*slot, Tx::Free, "tx id {id} handed out twice");
                    *slot = Tx::Taken;
                }
                None => assert!(out.iter().all(|o| *o != Tx::Free), "no tx id free while one is"),
            },
            Op::UntakeTx(id) => {
                tx.untake(id);
                if let Some(o @ Tx::Taken) = out.get_mut(usize::from(id)) {
                    *o = Tx::Free;
                }
            }
            Op::PublishTx(id) => {
                tx.published(id);
                if let Some(o @ Tx::Taken) = out.get_mut(usize::from(id)) {
                    *o = Tx::Out;
                }
            }
            Op::PublishExtras(n) => {
                tx.extras_published(n.into());
                extras += u32::from(n);
            }
            Op::Tx { id, status } if status == NETIF_RSP_NULL => {
                // A NULL response names no id: it answers an extra slot, or nothing of ours.
                let result = tx.complete(TxResponse { id, status });
                if extras > 0 {
                    assert_eq!(result, Ok(TxOutcome::Null));
                    extras -= 1;
                } else {
                    assert_eq!(result, Err(TxError::BadStatus { id, status }));
                }
            }
            Op::Tx { id, status } => {
                let result = tx.complete(TxResponse { id, status });
                match out.get_mut(usize::from(id)).filter(|o| **o == Tx::Out) {
                    None => assert_eq!(result, Err(TxError::UnknownId(id))),
                    Some(o) if result.is_ok() => *o = Tx::Free,
                    Some(_) => {}
                }
            }
        }
        assert_eq!(rx.posted_count(), posted.iter().filter(|p| **p).count());
        assert_eq!(tx.free_count(), out.iter().filter(|o| **o == Tx::Free).count());
    }
});
