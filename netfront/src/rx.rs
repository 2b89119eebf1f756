//! Receive bookkeeping: which rx buffers are posted to the backend, turning
//! its responses into checked (id, offset, length) pieces, and gathering
//! the pieces of a packet that spans several buffers (`NETRXF_more_data`,
//! with `feature-sg`).

use crate::wire::{
    RxResponse, NETRXF_CSUM_BLANK, NETRXF_DATA_VALIDATED, NETRXF_EXTRA_INFO, NETRXF_GSO_PREFIX,
    NETRXF_MORE_DATA,
};
use alloc::vec::Vec;
use core::fmt;

/// Size of each rx buffer: one page.
pub const BUFFER_SIZE: usize = 4096;
/// Longest packet taken over several buffers: `io/netif.h`'s `XEN_NETIF_MAX_TX_SIZE`, the
/// largest packet the protocol carries.
pub const MAX_RX_FRAME: usize = 0xffff;
/// Most buffers one packet may take: `XEN_NETIF_NR_SLOTS_MIN`, what a 64 KiB packet needs at
/// worst (and what a backend must take from a frontend).
pub const MAX_RX_SLOTS: usize = 18;

/// What we told the backend we take on rx.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RxFeatures {
    /// Packets over several buffers (`feature-sg`).
    pub sg: bool,
    /// Packets with blank checksums (`feature-no-csum-offload` = 0).
    pub csum_blank: bool,
    /// TCP/IPv4 packets of up to 64 KiB, which the sender's stack would otherwise have cut
    /// into segments of one MSS each (`feature-gso-tcpv4`; needs both of the above): one
    /// extra-info slot follows the packet's first response.
    pub gso: bool,
}

impl RxFeatures {
    /// The longest packet taken: over several buffers with `sg`, else what one buffer holds
    /// ([`RxSlots::complete`] refuses a piece past its page).
    pub fn max_frame(self) -> usize {
        if self.sg {
            MAX_RX_FRAME
        } else {
            BUFFER_SIZE
        }
    }
}

/// What the backend says of a packet's TCP or UDP checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxCsum {
    /// Nothing: the checksum must be verified.
    Unchecked,
    /// Verified by the backend (`NETRXF_data_validated`).
    Validated,
    /// Not filled in, from a sender that left it to offload (`NETRXF_csum_blank`); the data
    /// never crossed a wire that could corrupt it.
    Blank,
}

impl RxCsum {
    fn of(flags: u16) -> RxCsum {
        if flags & NETRXF_CSUM_BLANK != 0 {
            RxCsum::Blank
        } else if flags & NETRXF_DATA_VALIDATED != 0 {
            RxCsum::Validated
        } else {
            RxCsum::Unchecked
        }
    }
}

/// A piece of a packet the backend copied into buffer `id`, at `offset`, `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxFrame {
    pub id: u16,
    pub offset: usize,
    pub len: usize,
    /// The packet's checksum state (as the first piece's flags say; later pieces' are
    /// ignored).
    pub csum: RxCsum,
}

/// An rx response that does not match what we posted, or that we cannot take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxError {
    /// The id is out of range or its buffer was not posted.
    UnknownId(u16),
    /// The backend reported an error for this buffer (it is free again).
    Backend { id: u16, status: i16 },
    /// The frame would run past the end of its page.
    OutOfBounds { id: u16, offset: u16, len: i16 },
    /// Flags for features we did not ask for: more data without `feature-sg`, a blank
    /// checksum without checksum offload, extra-info slots or a GSO prefix.
    Unnegotiated { id: u16, flags: u16 },
    /// A packet over more than [`MAX_RX_SLOTS`] buffers.
    TooManySlots,
    /// A packet longer than [`MAX_RX_FRAME`] bytes.
    TooLong,
    /// The heap had no room for a packet of this many bytes (so far).
    NoMemory(usize),
}

impl fmt::Display for RxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RxError::UnknownId(id) => write!(f, "rx response for buffer {id}, which is not posted"),
            RxError::Backend { id, status } => write!(f, "backend error {status} on rx buffer {id}"),
            RxError::OutOfBounds { id, offset, len } => {
                write!(f, "rx response {id}: {len} bytes at offset {offset} run past the page")
            }
            RxError::Unnegotiated { id, flags } => {
                write!(f, "rx response {id} has flags {flags:#x} for features we did not negotiate")
            }
            RxError::TooManySlots => write!(f, "rx packet over more than {MAX_RX_SLOTS} buffers"),
            RxError::TooLong => write!(f, "rx packet longer than {MAX_RX_FRAME} bytes"),
            RxError::NoMemory(len) => write!(f, "no memory to receive a packet of {len} bytes; dropped"),
        }
    }
}

/// Buffers `0..n`, each posted or not.
pub struct RxSlots {
    posted: Vec<bool>,
    /// Flags a response may carry.
    allowed: u16,
}

impl RxSlots {
    pub fn new(n: u16, features: RxFeatures) -> Self {
        let mut allowed = NETRXF_DATA_VALIDATED;
        if features.sg {
            allowed |= NETRXF_MORE_DATA;
        }
        if features.csum_blank {
            allowed |= NETRXF_CSUM_BLANK;
        }
        if features.gso {
            allowed |= NETRXF_EXTRA_INFO;
        }
        RxSlots { posted: alloc::vec![false; usize::from(n)], allowed }
    }

    /// Takes back buffer `id` if it is posted (the backend consumed its request without
    /// answering for it: an extra-info slot took its place); true if it was.
    pub fn reclaim(&mut self, id: u16) -> bool {
        self.posted.get_mut(usize::from(id)).is_some_and(|posted| core::mem::replace(posted, false))
    }

    /// Records buffer `id` as handed to the backend.
    pub fn post(&mut self, id: u16) {
        if let Some(slot) = self.posted.get_mut(usize::from(id)) {
            *slot = true;
        }
    }

    pub fn posted_count(&self) -> usize {
        self.posted.iter().filter(|p| **p).count()
    }

    /// Checks a response. Whatever the verdict, a posted buffer named by it
    /// is no longer posted: the caller copies the piece out (on `Ok`) and
    /// posts the buffer again.
    pub fn complete(&mut self, rsp: RxResponse) -> Result<RxFrame, RxError> {
        let slot =
            self.posted.get_mut(usize::from(rsp.id)).filter(|s| **s).ok_or(RxError::UnknownId(rsp.id))?;
        *slot = false;
        let known = NETRXF_DATA_VALIDATED | NETRXF_CSUM_BLANK | NETRXF_MORE_DATA | NETRXF_EXTRA_INFO;
        if rsp.flags & (known | NETRXF_GSO_PREFIX) & !self.allowed != 0 {
            return Err(RxError::Unnegotiated { id: rsp.id, flags: rsp.flags });
        }
        if rsp.status < 0 {
            return Err(RxError::Backend { id: rsp.id, status: rsp.status });
        }
        let (offset, len) = (usize::from(rsp.offset), rsp.status as usize);
        if len == 0 || offset + len > BUFFER_SIZE {
            return Err(RxError::OutOfBounds { id: rsp.id, offset: rsp.offset, len: rsp.status });
        }
        Ok(RxFrame { id: rsp.id, offset, len, csum: RxCsum::of(rsp.flags) })
    }
}

/// What to do with one response of a packet (see [`Gather::step`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Append the piece's bytes to the packet, after clearing it if `first`. With `last`,
    /// the packet is whole and goes up with that checksum state.
    Append { frame: RxFrame, first: bool, last: Option<RxCsum> },
    /// A piece of a packet already refused: take nothing.
    Skip,
    /// The packet is refused, for this reason (its one report); any pieces left are skipped.
    Refuse(RxError),
}

/// Follows the responses of one packet after another: a packet is the responses up to and
/// including the first without `NETRXF_more_data`. The flag delimits packets even on
/// responses that are refused, so one bad piece drops its packet, never the next.
#[derive(Debug, Default)]
pub struct Gather {
    packet: Option<Packet>,
}

#[derive(Debug)]
struct Packet {
    slots: usize,
    len: usize,
    csum: RxCsum,
    refused: bool,
}

impl Gather {
    /// The next piece, as [`RxSlots::complete`] judged it, and whether the response had
    /// `NETRXF_more_data`.
    pub fn step(&mut self, piece: Result<RxFrame, RxError>, more: bool) -> Step {
        let first = self.packet.is_none();
        let packet =
            self.packet.get_or_insert(Packet { slots: 0, len: 0, csum: RxCsum::Unchecked, refused: false });
        packet.slots += 1;
        let step = if packet.refused {
            Step::Skip
        } else {
            match piece {
                Err(e) => Step::Refuse(e),
                Ok(_) if packet.slots > MAX_RX_SLOTS => Step::Refuse(RxError::TooManySlots),
                Ok(frame) if packet.len + frame.len > MAX_RX_FRAME => Step::Refuse(RxError::TooLong),
                Ok(frame) => {
                    packet.len += frame.len;
                    if first {
                        packet.csum = frame.csum;
                    }
                    Step::Append { frame, first, last: (!more).then_some(packet.csum) }
                }
            }
        };
        if let Step::Refuse(_) = step {
            packet.refused = true;
        }
        if !more {
            self.packet = None;
        }
        step
    }

    /// Refuses the packet of the piece last stepped (it could not be taken after all): its
    /// pieces left are skipped.
    pub fn refuse(&mut self, e: RxError) -> Step {
        if let Some(packet) = &mut self.packet {
            packet.refused = true;
        }
        Step::Refuse(e)
    }

    /// Whether a packet is part way through.
    pub fn in_packet(&self) -> bool {
        self.packet.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rsp(id: u16, offset: u16, flags: u16, status: i16) -> RxResponse {
        RxResponse { id, offset, flags, status }
    }

    const ALL: RxFeatures = RxFeatures { sg: true, csum_blank: true, gso: true };

    #[test]
    fn good_frames_come_out_and_free_their_buffer() {
        let mut slots = RxSlots::new(8, RxFeatures::default());
        (0..8).for_each(|id| slots.post(id));
        assert_eq!(
            slots.complete(rsp(3, 0, 1, 60)),
            Ok(RxFrame { id: 3, offset: 0, len: 60, csum: RxCsum::Validated })
        );
        assert_eq!(slots.complete(rsp(4, 100, 0, 1514)).map(|f| (f.offset, f.len)), Ok((100, 1514)));
        assert_eq!(slots.posted_count(), 6);
    }

    #[test]
    fn hostile_responses_are_errors() {
        let mut slots = RxSlots::new(8, RxFeatures::default());
        (0..8).for_each(|id| slots.post(id));
        assert_eq!(slots.complete(rsp(9, 0, 0, 60)), Err(RxError::UnknownId(9)));
        assert_eq!(
            slots.complete(rsp(1, 4000, 0, 200)),
            Err(RxError::OutOfBounds { id: 1, offset: 4000, len: 200 })
        );
        // Answered twice: the first answer freed it.
        assert_eq!(slots.complete(rsp(1, 0, 0, 60)), Err(RxError::UnknownId(1)));
        assert_eq!(slots.complete(rsp(2, 0, 0, 0)), Err(RxError::OutOfBounds { id: 2, offset: 0, len: 0 }));
        assert_eq!(slots.complete(rsp(3, 0, 0, -1)), Err(RxError::Backend { id: 3, status: -1 }));
        assert_eq!(
            slots.complete(rsp(4, 0, NETRXF_MORE_DATA, 1000)),
            Err(RxError::Unnegotiated { id: 4, flags: NETRXF_MORE_DATA })
        );
        assert_eq!(
            slots.complete(rsp(5, u16::MAX, 0, i16::MAX)).unwrap_err(),
            RxError::OutOfBounds { id: 5, offset: u16::MAX, len: i16::MAX }
        );
        assert_eq!(
            slots.complete(rsp(6, 0, NETRXF_CSUM_BLANK, 60)),
            Err(RxError::Unnegotiated { id: 6, flags: NETRXF_CSUM_BLANK }),
            "a blank checksum we did not agree to"
        );
        assert_eq!(slots.posted_count(), 2);
    }

    #[test]
    fn negotiated_flags_are_taken_and_others_still_refused() {
        let mut slots = RxSlots::new(8, ALL);
        (0..8).for_each(|id| slots.post(id));
        let blank = NETRXF_CSUM_BLANK | NETRXF_DATA_VALIDATED;
        assert_eq!(
            slots.complete(rsp(0, 0, blank | NETRXF_MORE_DATA, 4096)).map(|f| f.csum),
            Ok(RxCsum::Blank)
        );
        assert_eq!(slots.complete(rsp(1, 0, 0, 60)).map(|f| f.csum), Ok(RxCsum::Unchecked));
        assert!(slots.complete(rsp(2, 0, NETRXF_EXTRA_INFO, 60)).is_ok(), "GSO's extra-info slot");
        for (id, flags) in [(3, NETRXF_GSO_PREFIX), (4, 0x8000 | NETRXF_GSO_PREFIX)] {
            assert_eq!(slots.complete(rsp(id, 0, flags, 60)), Err(RxError::Unnegotiated { id, flags }));
        }
        let mut no_gso = RxSlots::new(1, RxFeatures { gso: false, ..ALL });
        no_gso.post(0);
        let flags = NETRXF_EXTRA_INFO;
        assert_eq!(no_gso.complete(rsp(0, 0, flags, 60)), Err(RxError::Unnegotiated { id: 0, flags }));
    }

    fn piece(id: u16, len: usize, csum: RxCsum) -> Result<RxFrame, RxError> {
        Ok(RxFrame { id, offset: 0, len, csum })
    }

    #[test]
    fn a_packet_over_several_buffers_is_gathered() {
        let mut g = Gather::default();
        assert_eq!(
            g.step(piece(0, 4096, RxCsum::Blank), true),
            Step::Append { frame: piece(0, 4096, RxCsum::Blank).unwrap(), first: true, last: None }
        );
        assert!(g.in_packet());
        // A later piece's flags say nothing of the packet's checksum.
        assert_eq!(
            g.step(piece(1, 100, RxCsum::Unchecked), false),
            Step::Append {
                frame: piece(1, 100, RxCsum::Unchecked).unwrap(),
                first: false,
                last: Some(RxCsum::Blank)
            }
        );
        assert!(!g.in_packet());
        assert!(matches!(
            g.step(piece(2, 60, RxCsum::Unchecked), false),
            Step::Append { first: true, last: Some(RxCsum::Unchecked), .. }
        ));
    }

    #[test]
    fn a_bad_piece_drops_its_packet_only() {
        let mut g = Gather::default();
        assert!(matches!(g.step(piece(0, 4096, RxCsum::Unchecked), true), Step::Append { .. }));
        assert_eq!(g.step(Err(RxError::UnknownId(9)), true), Step::Refuse(RxError::UnknownId(9)));
        assert_eq!(g.step(piece(2, 100, RxCsum::Unchecked), true), Step::Skip);
        assert_eq!(g.step(piece(3, 100, RxCsum::Unchecked), false), Step::Skip);
        assert!(matches!(
            g.step(piece(4, 60, RxCsum::Unchecked), false),
            Step::Append { first: true, last: Some(_), .. }
        ));
    }

    #[test]
    fn packets_too_long_or_over_too_many_buffers_are_refused() {
        let mut g = Gather::default();
        for i in 0..MAX_RX_SLOTS {
            assert!(matches!(g.step(piece(i as u16, 1, RxCsum::Unchecked), true), Step::Append { .. }));
        }
        assert_eq!(g.step(piece(99, 1, RxCsum::Unchecked), true), Step::Refuse(RxError::TooManySlots));
        // A backend that never ends the packet: every piece after is skipped, nothing grows.
        for _ in 0..1000 {
            assert_eq!(g.step(piece(98, 4096, RxCsum::Unchecked), true), Step::Skip);
        }
        assert_eq!(g.step(piece(97, 4096, RxCsum::Unchecked), false), Step::Skip);
        let mut g = Gather::default();
        for i in 0..15 {
            assert!(matches!(g.step(piece(i, 4096, RxCsum::Unchecked), true), Step::Append { .. }));
        }
        assert!(matches!(
            g.step(piece(15, MAX_RX_FRAME - 15 * 4096, RxCsum::Unchecked), true),
            Step::Append { .. }
        ));
        assert_eq!(g.step(piece(16, 1, RxCsum::Unchecked), false), Step::Refuse(RxError::TooLong));
        assert!(!g.in_packet());
    }
}
