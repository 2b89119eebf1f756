//! Requests with the backend, by id, and checking responses against them.

use crate::wire::{Response, RSP_EOPNOTSUPP, RSP_ERROR, RSP_OKAY};
use alloc::vec::Vec;
use core::fmt;

/// A response that does not match a request we made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseError {
    /// The id is not that of a request in flight.
    UnknownId(u64),
    /// The operation differs from the request's.
    WrongOperation { id: u64, sent: u8, got: u8 },
    /// A status the protocol does not define.
    BadStatus { id: u64, status: i16 },
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::UnknownId(id) => write!(f, "blkif response for id {id}, which is not in flight"),
            ResponseError::WrongOperation { id, sent, got } => {
                write!(f, "blkif response {id} is for operation {got}, the request was {sent}")
            }
            ResponseError::BadStatus { id, status } => {
                write!(f, "blkif response {id} has unknown status {status}")
            }
        }
    }
}

/// How the backend answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Okay,
    Error,
    NotSupported,
}

/// Ids `0..n`, each free or carrying a request: its operation (for an
/// indirect request, the operation inside) and what the frontend keeps
/// with it (`T`: the pages it holds, where its data goes).
pub struct InFlight<T> {
    ops: Vec<Option<(u8, T)>>,
    free: Vec<u64>,
}

impl<T> InFlight<T> {
    pub fn new(n: u32) -> Self {
        InFlight { ops: (0..n).map(|_| None).collect(), free: (0..u64::from(n)).rev().collect() }
    }

    /// An id for a request of `operation` about to be posted, carrying `value`.
    pub fn take(&mut self, operation: u8, value: T) -> Option<u64> {
        let id = self.free.pop()?;
        self.ops[id as usize] = Some((operation, value));
        Some(id)
    }

    pub fn in_flight(&self) -> usize {
        self.ops.len() - self.free.len()
    }

    /// The id [`InFlight::take`] hands out next.
    pub fn peek_free(&self) -> Option<u64> {
        self.free.last().copied()
    }

    pub fn has_free(&self) -> bool {
        !self.free.is_empty()
    }

    /// Checks a response and frees its id, giving back what the request
    /// carried. A refused response changes nothing.
    pub fn complete(&mut self, rsp: Response) -> Result<(Outcome, T), ResponseError> {
        let slot = usize::try_from(rsp.id).ok().and_then(|i| self.ops.get_mut(i));
        let Some(slot) = slot else { return Err(ResponseError::UnknownId(rsp.id)) };
        let Some((sent, _)) = *slot else { return Err(ResponseError::UnknownId(rsp.id)) };
        if sent != rsp.operation {
            return Err(ResponseError::WrongOperation { id: rsp.id, sent, got: rsp.operation });
        }
        let outcome = match rsp.status {
            RSP_OKAY => Outcome::Okay,
            RSP_ERROR => Outcome::Error,
            RSP_EOPNOTSUPP => Outcome::NotSupported,
            status => return Err(ResponseError::BadStatus { id: rsp.id, status }),
        };
        let (_, value) = slot.take().expect("checked above");
        self.free.push(rsp.id);
        Ok((outcome, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{OP_READ, OP_WRITE};

    fn rsp(id: u64, operation: u8, status: i16) -> Response {
        Response { id, operation, status, ..Response::default() }
    }

    #[test]
    fn responses_free_their_ids() {
        let mut f = InFlight::new(2);
        let a = f.take(OP_READ, 'a').unwrap();
        let b = f.take(OP_WRITE, 'b').unwrap();
        assert_eq!(f.take(OP_READ, 'c'), None);
        assert_eq!(f.complete(rsp(b, OP_WRITE, RSP_ERROR)), Ok((Outcome::Error, 'b')));
        assert_eq!(f.complete(rsp(a, OP_READ, RSP_OKAY)), Ok((Outcome::Okay, 'a')));
        assert_eq!(f.in_flight(), 0);
    }

    #[test]
    fn hostile_responses_are_refused_and_change_nothing() {
        let mut f = InFlight::<()>::new(4);
        let id = f.take(OP_READ, ()).unwrap();
        assert_eq!(f.complete(rsp(3, OP_READ, 0)), Err(ResponseError::UnknownId(3)));
        assert_eq!(f.complete(rsp(u64::MAX, OP_READ, 0)), Err(ResponseError::UnknownId(u64::MAX)));
        assert_eq!(
            f.complete(rsp(id, OP_WRITE, 0)),
            Err(ResponseError::WrongOperation { id, sent: OP_READ, got: OP_WRITE })
        );
        assert_eq!(f.complete(rsp(id, OP_READ, 9)), Err(ResponseError::BadStatus { id, status: 9 }));
        assert_eq!(f.in_flight(), 1);
        assert_eq!(f.complete(rsp(id, OP_READ, 0)), Ok((Outcome::Okay, ())));
        assert_eq!(f.complete(rsp(id, OP_READ, 0)), Err(ResponseError::UnknownId(id)));
    }
}
