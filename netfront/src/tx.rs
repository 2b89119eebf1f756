//! Transmit bookkeeping: which tx ids (each naming one pre-granted buffer)
//! are with the backend, and checking its responses against them.

use crate::wire::{TxResponse, NETIF_RSP_DROPPED, NETIF_RSP_ERROR, NETIF_RSP_NULL, NETIF_RSP_OKAY};
use alloc::vec::Vec;
use core::fmt;

/// A tx response that does not match what we posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxError {
    /// The id is out of range or was not posted.
    UnknownId(u16),
    /// A status no version of the protocol defines.
    BadStatus { id: u16, status: i16 },
}

impl fmt::Display for TxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxError::UnknownId(id) => write!(f, "tx response for id {id}, which is not outstanding"),
            TxError::BadStatus { id, status } => write!(f, "tx response {id} has unknown status {status}"),
        }
    }
}

/// What became of a sent frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxOutcome {
    Sent,
    /// The backend dropped it (e.g. its queue was full).
    Dropped,
    /// The backend found the request malformed.
    Error,
    /// The answer to an extra-info slot (`NETIF_RSP_NULL`), which names no id.
    Null,
}

/// Where a tx id is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Free,
    /// Taken for a request not yet published: the backend cannot answer it.
    Taken,
    /// Published: with the backend.
    Outstanding,
}

/// Ids `0..n`, each free, taken or outstanding; and the extra-info slots published and not
/// yet answered.
pub struct TxIds {
    free: Vec<u16>,
    slots: Vec<Slot>,
    extras_due: u32,
}

impl TxIds {
    pub fn new(n: u16) -> Self {
        TxIds { free: (0..n).rev().collect(), slots: alloc::vec![Slot::Free; usize::from(n)], extras_due: 0 }
    }

    /// Takes a free id for a frame about to be posted.
    pub fn take(&mut self) -> Option<u16> {
        let id = self.free.pop()?;
        self.slots[usize::from(id)] = Slot::Taken;
        Some(id)
    }

    /// Gives back an id taken but never posted.
    pub fn untake(&mut self, id: u16) {
        if let Some(slot @ Slot::Taken) = self.slots.get_mut(usize::from(id)) {
            *slot = Slot::Free;
            self.free.push(id);
        }
    }

    /// Records a taken id's request as published: from now on the backend
    /// may answer it.
    pub fn published(&mut self, id: u16) {
        if let Some(slot @ Slot::Taken) = self.slots.get_mut(usize::from(id)) {
            *slot = Slot::Outstanding;
        }
    }

    /// Records `n` extra-info slots as published: the backend answers each with a
    /// `NETIF_RSP_NULL` response.
    pub fn extras_published(&mut self, n: u32) {
        self.extras_due += n;
    }

    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    /// Checks a response and frees its id.
    pub fn complete(&mut self, rsp: TxResponse) -> Result<TxOutcome, TxError> {
        if rsp.status == NETIF_RSP_NULL {
            // Netback leaves the id of a NULL response as the ring slot held it.
            if self.extras_due == 0 {
                return Err(TxError::BadStatus { id: rsp.id, status: rsp.status });
            }
            self.extras_due -= 1;
            return Ok(TxOutcome::Null);
        }
        let slot = self
            .slots
            .get_mut(usize::from(rsp.id))
            .filter(|s| **s == Slot::Outstanding)
            .ok_or(TxError::UnknownId(rsp.id))?;
        let outcome = match rsp.status {
            NETIF_RSP_OKAY => TxOutcome::Sent,
            NETIF_RSP_DROPPED => TxOutcome::Dropped,
            NETIF_RSP_ERROR => TxOutcome::Error,
            _ => return Err(TxError::BadStatus { id: rsp.id, status: rsp.status }),
        };
        *slot = Slot::Free;
        self.free.push(rsp.id);
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cycle_through_the_backend() {
        let mut ids = TxIds::new(4);
        let taken: Vec<u16> = core::iter::from_fn(|| ids.take()).collect();
        assert_eq!(taken, [0, 1, 2, 3]);
        // Not published yet: no answer is taken.
        assert_eq!(ids.complete(TxResponse { id: 2, status: NETIF_RSP_OKAY }), Err(TxError::UnknownId(2)));
        taken.iter().for_each(|&id| ids.published(id));
        assert_eq!(ids.take(), None);
        assert_eq!(ids.complete(TxResponse { id: 2, status: NETIF_RSP_OKAY }), Ok(TxOutcome::Sent));
        assert_eq!(ids.complete(TxResponse { id: 0, status: NETIF_RSP_DROPPED }), Ok(TxOutcome::Dropped));
        assert_eq!(ids.free_count(), 2);
        assert!(ids.take().is_some() && ids.take().is_some());
    }

    #[test]
    fn hostile_responses_are_rejected_and_change_nothing() {
        let mut ids = TxIds::new(4);
        let id = ids.take().unwrap();
        ids.published(id);
        // Never posted, out of range, or answered twice.
        assert_eq!(ids.complete(TxResponse { id: 3, status: 0 }), Err(TxError::UnknownId(3)));
        assert_eq!(ids.complete(TxResponse { id: 999, status: 0 }), Err(TxError::UnknownId(999)));
        assert_eq!(ids.complete(TxResponse { id, status: 7 }), Err(TxError::BadStatus { id, status: 7 }));
        assert_eq!(
            ids.complete(TxResponse { id, status: NETIF_RSP_NULL }),
            Err(TxError::BadStatus { id, status: 1 })
        );
        assert_eq!(ids.free_count(), 3);
        assert_eq!(ids.complete(TxResponse { id, status: 0 }), Ok(TxOutcome::Sent));
        assert_eq!(ids.complete(TxResponse { id, status: 0 }), Err(TxError::UnknownId(id)));
    }

    #[test]
    fn each_published_extra_info_slot_takes_one_null_response() {
        let mut ids = TxIds::new(4);
        let id = ids.take().unwrap();
        ids.published(id);
        ids.extras_published(1);
        // Its id is whatever the ring slot held: not checked, and no id is freed.
        let null = TxResponse { id: 999, status: NETIF_RSP_NULL };
        assert_eq!(ids.complete(null), Ok(TxOutcome::Null));
        assert_eq!(ids.complete(null), Err(TxError::BadStatus { id: 999, status: NETIF_RSP_NULL }));
        assert_eq!(ids.free_count(), 3);
        assert_eq!(ids.complete(TxResponse { id, status: 0 }), Ok(TxOutcome::Sent));
    }

    #[test]
    fn untake_returns_an_unposted_id_once() {
        let mut ids = TxIds::new(2);
        let id = ids.take().unwrap();
        ids.untake(id);
        ids.untake(id);
        assert_eq!(ids.free_count(), 2);
    }
}
