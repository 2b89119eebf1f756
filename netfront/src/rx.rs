//! Receive bookkeeping: which rx buffers are posted to the backend, and
//! turning its responses into checked (id, offset, length) triples.

use crate::wire::{RxResponse, NETRXF_EXTRA_INFO, NETRXF_GSO_PREFIX, NETRXF_MORE_DATA};
use alloc::vec::Vec;
use core::fmt;

/// Size of each rx buffer: one page.
pub const BUFFER_SIZE: usize = 4096;

/// A frame the backend copied into buffer `id`, at `offset`, `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxFrame {
    pub id: u16,
    pub offset: usize,
    pub len: usize,
    /// The backend vouches for the checksums (`NETRXF_data_validated`).
    pub validated: bool,
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
    /// A multi-buffer frame or extra-info slot: features we did not ask for.
    Unnegotiated { id: u16, flags: u16 },
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
        }
    }
}

/// Buffers `0..n`, each posted or not.
pub struct RxSlots {
    posted: Vec<bool>,
}

impl RxSlots {
    pub fn new(n: u16) -> Self {
        RxSlots { posted: alloc::vec![false; usize::from(n)] }
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
    /// is no longer posted: the caller copies the frame out (on `Ok`) and
    /// posts the buffer again.
    pub fn complete(&mut self, rsp: RxResponse) -> Result<RxFrame, RxError> {
        let slot =
            self.posted.get_mut(usize::from(rsp.id)).filter(|s| **s).ok_or(RxError::UnknownId(rsp.id))?;
        *slot = false;
        if rsp.flags & (NETRXF_MORE_DATA | NETRXF_EXTRA_INFO | NETRXF_GSO_PREFIX) != 0 {
            return Err(RxError::Unnegotiated { id: rsp.id, flags: rsp.flags });
        }
        if rsp.status < 0 {
            return Err(RxError::Backend { id: rsp.id, status: rsp.status });
        }
        let (offset, len) = (usize::from(rsp.offset), rsp.status as usize);
        if len == 0 || offset + len > BUFFER_SIZE {
            return Err(RxError::OutOfBounds { id: rsp.id, offset: rsp.offset, len: rsp.status });
        }
        Ok(RxFrame {
            id: rsp.id,
            offset,
            len,
            validated: rsp.flags & crate::wire::NETRXF_DATA_VALIDATED != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rsp(id: u16, offset: u16, flags: u16, status: i16) -> RxResponse {
        RxResponse { id, offset, flags, status }
    }

    #[test]
    fn good_frames_come_out_and_free_their_buffer() {
        let mut slots = RxSlots::new(8);
        (0..8).for_each(|id| slots.post(id));
        assert_eq!(
            slots.complete(rsp(3, 0, 1, 60)),
            Ok(RxFrame { id: 3, offset: 0, len: 60, validated: true })
        );
        assert_eq!(slots.complete(rsp(4, 100, 0, 1514)).map(|f| (f.offset, f.len)), Ok((100, 1514)));
        assert_eq!(slots.posted_count(), 6);
    }

    #[test]
    fn hostile_responses_are_errors() {
        let mut slots = RxSlots::new(8);
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
        assert_eq!(slots.posted_count(), 3);
    }
}
