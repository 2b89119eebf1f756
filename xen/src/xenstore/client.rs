//! The xenstore client: requests in flight matched to replies by `req_id`,
//! watch events queued for the watch that owns them, transactions retried
//! when they conflict.
//!
//! Everything xenstored sends is filed as it arrives, whoever is waiting:
//! replies go to a stash until their request's owner takes them, events to
//! their watch's queue. A framing or ring failure ends the connection: the
//! byte stream can no longer be trusted, so every later call reports it.

use super::error::{Errno, ProtocolError, XsError};
use super::transport::Transport;
use super::wire::{
    self, Decoder, Message, MsgType, Permission, ReqId, Request, TxId, WatchEvent, PAYLOAD_MAX,
};
use crate::DomId;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::{self, Vec};
use litemap::LiteMap;

/// How often [`Client::transaction`] runs its body before giving up.
pub const TX_ATTEMPTS: u32 = 16;
/// Bytes taken from the transport per receive.
const CHUNK: usize = 1024;
/// Receives per poll: enough for one maximal message, and a bound so a
/// peer that never stops sending cannot keep us polling.
const POLL_CHUNKS: usize = (PAYLOAD_MAX + wire::HEADER_LEN).div_ceil(CHUNK) + 1;

/// The results of [`Store::call_all`], one per request, in the order sent.
#[derive(Debug)]
pub struct Replies(vec::IntoIter<Result<Reply, XsError>>);

impl Replies {
    /// The next request's result; [`XsError::NoReply`] past the last one.
    pub fn next_reply(&mut self) -> Result<Reply, XsError> {
        self.0.next().unwrap_or(Err(XsError::NoReply))
    }
}

impl Iterator for Replies {
    type Item = Result<Reply, XsError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next()
    }
}

/// A successful reply's payload; its type and errors are already checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply(Vec<u8>);

impl Reply {
    /// The raw payload, e.g. the value of a read.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// The payload, which must be UTF-8 text.
    pub fn into_string(self) -> Result<String, XsError> {
        String::from_utf8(self.0).map_err(|_| XsError::BadValue("is not UTF-8"))
    }

    pub fn directory(&self) -> Result<Vec<String>, XsError> {
        Ok(wire::parse_directory(&self.0)?)
    }

    pub fn perms(&self) -> Result<Vec<Permission>, XsError> {
        Ok(wire::parse_perms(&self.0)?)
    }

    pub fn tx_id(&self) -> Result<TxId, XsError> {
        Ok(wire::parse_tx_id(&self.0)?)
    }
}

/// A registered watch: the handle its owner takes its events with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct WatchId(u32);

struct Watch {
    path: String,
    token: String,
    events: VecDeque<WatchEvent>,
}

/// The node operations, the same inside a transaction and outside one.
pub trait Store {
    /// Sends `req` and waits for its reply.
    fn call(&mut self, req: &Request<'_>) -> Result<Reply, XsError>;

    /// Sends every request before waiting for the first reply: one round
    /// trip to xenstored (which handles them in order) instead of one each.
    /// Each request's result, in order.
    fn call_all(&mut self, reqs: &[Request<'_>]) -> Replies;

    /// The value at `path`.
    fn read(&mut self, path: &str) -> Result<Vec<u8>, XsError> {
        Ok(self.call(&Request::Read(path))?.into_bytes())
    }

    /// The value at `path`, which must be UTF-8 text.
    fn read_string(&mut self, path: &str) -> Result<String, XsError> {
        self.call(&Request::Read(path))?.into_string()
    }

    /// Stores `value` at `path`, creating missing parents.
    fn write(&mut self, path: &str, value: &[u8]) -> Result<(), XsError> {
        self.call(&Request::Write(path, value)).map(drop)
    }

    /// The names of `path`'s children.
    fn directory(&mut self, path: &str) -> Result<Vec<String>, XsError> {
        self.call(&Request::Directory(path))?.directory()
    }

    /// Creates `path` and missing parents; existing values are kept.
    fn mkdir(&mut self, path: &str) -> Result<(), XsError> {
        self.call(&Request::Mkdir(path)).map(drop)
    }

    /// Removes `path` and its children; a missing `path` is not an error.
    fn rm(&mut self, path: &str) -> Result<(), XsError> {
        self.call(&Request::Rm(path)).map(drop)
    }

    fn get_perms(&mut self, path: &str) -> Result<Vec<Permission>, XsError> {
        self.call(&Request::GetPerms(path))?.perms()
    }

    /// Replaces `path`'s permissions; the first entry names the owner and
    /// the access of domains not listed.
    fn set_perms(&mut self, path: &str, perms: &[Permission]) -> Result<(), XsError> {
        self.call(&Request::SetPerms(path, perms)).map(drop)
    }
}

/// A connection to xenstored over transport `T`.
pub struct Client<T> {
    transport: T,
    decoder: Decoder,
    next_req: u32,
    /// Requests sent whose reply has not been taken, with their type.
    in_flight: LiteMap<ReqId, MsgType>,
    /// Replies that arrived before their owner asked for them.
    replies: LiteMap<ReqId, Result<Reply, XsError>>,
    watches: LiteMap<WatchId, Watch>,
    next_watch: u32,
    /// What ended the connection.
    failed: Option<XsError>,
}

impl<T: Transport> Client<T> {
    pub fn new(transport: T) -> Self {
        Client {
            transport,
            decoder: Decoder::default(),
            next_req: 1,
            in_flight: LiteMap::new(),
            replies: LiteMap::new(),
            watches: LiteMap::new(),
            next_watch: 1,
            failed: None,
        }
    }

    /// This domain's id, from its home directory.
    pub fn domid(&mut self) -> Result<DomId, XsError> {
        let text = self.read_string("domid")?;
        text.parse().map(DomId).map_err(|_| XsError::BadValue("is not a domain id"))
    }

    /// This domain's name, from its home directory.
    pub fn name(&mut self) -> Result<String, XsError> {
        self.read_string("name")
    }

    /// [`Client::domid`] and [`Client::name`] in one round trip.
    pub fn identity(&mut self) -> Result<(DomId, String), XsError> {
        let mut replies = self.call_all_in(TxId::NONE, &[Request::Read("domid"), Request::Read("name")]);
        let mut text = || replies.next_reply()?.into_string();
        let domid = text()?.parse().map(DomId).map_err(|_| XsError::BadValue("is not a domain id"))?;
        Ok((domid, text()?))
    }

    /// Sends `req` (in transaction `tx`, or [`TxId::NONE`]) without waiting
    /// for the reply, so that several requests can be in flight. Every id
    /// returned must be passed to [`Client::wait_reply`].
    pub fn submit(&mut self, tx: TxId, req: &Request<'_>) -> Result<ReqId, XsError> {
        self.healthy()?;
        let id = self.fresh_req_id();
        let msg = req.encode(id, tx)?;
        self.in_flight.insert(id, req.msg_type());
        self.send_all(&msg)?;
        Ok(id)
    }

    /// Blocks until the reply to `id` is in, filing whatever else arrives.
    pub fn wait_reply(&mut self, id: ReqId) -> Result<Reply, XsError> {
        if !self.in_flight.contains_key(&id) {
            return Err(XsError::NotInFlight(id));
        }
        loop {
            if let Some(reply) = self.replies.remove(&id) {
                self.in_flight.remove(&id);
                return reply;
            }
            self.poll_or_wait()?;
        }
    }

    /// Watches `path` (and its children) under `token`, which must not be
    /// in use by another watch. xenstored fires a new watch once at once.
    pub fn watch(&mut self, path: &str, token: &str) -> Result<WatchId, XsError> {
        self.watch_then(path, token, &[]).map(|(id, _)| id)
    }

    /// [`Client::watch`], then `then` in the same round trip
    /// ([`Store::call_all`]): xenstored handles them after the watch is in
    /// place, so a read among them misses no change the watch would not
    /// report. The watch's own failure is the error; `then`'s results are
    /// returned in order.
    pub fn watch_then(
        &mut self,
        path: &str,
        token: &str,
        then: &[Request<'_>],
    ) -> Result<(WatchId, Replies), XsError> {
        if self.watches.values().any(|w| w.token == token) {
            return Err(XsError::TokenInUse);
        }
        let id = WatchId(self.next_watch);
        self.next_watch = self.next_watch.wrapping_add(1);
        // Registered before asking: the first event may beat the reply.
        let watch = Watch { path: path.into(), token: token.into(), events: VecDeque::new() };
        self.watches.insert(id, watch);
        let mut reqs = Vec::with_capacity(then.len() + 1);
        reqs.push(Request::Watch { path, token });
        reqs.extend_from_slice(then);
        let mut replies = self.call_all_in(TxId::NONE, &reqs);
        if let Err(e) = replies.next_reply() {
            self.watches.remove(&id);
            return Err(e);
        }
        Ok((id, replies))
    }

    /// Removes a watch; its queued and future events are discarded.
    pub fn unwatch(&mut self, id: WatchId) -> Result<(), XsError> {
        let watch = self.watches.remove(&id).ok_or(XsError::UnknownWatch)?;
        let req = Request::Unwatch { path: &watch.path, token: &watch.token };
        self.call_in(TxId::NONE, &req).map(drop)
    }

    /// The watch's next event if one has arrived, without blocking.
    pub fn next_event(&mut self, id: WatchId) -> Result<Option<WatchEvent>, XsError> {
        if let Some(event) = self.pop_event(id)? {
            return Ok(Some(event));
        }
        self.healthy()?;
        self.poll()?;
        self.pop_event(id)
    }

    /// Whether the client already holds an event of the watch (taken in with
    /// an earlier reply), without looking at the ring.
    pub fn holds_event(&mut self, id: WatchId) -> bool {
        self.watches.get_mut(&id).is_some_and(|w| !w.events.is_empty())
    }

    /// Blocks until the watch has an event.
    pub fn wait_event(&mut self, id: WatchId) -> Result<WatchEvent, XsError> {
        loop {
            if let Some(event) = self.pop_event(id)? {
                return Ok(event);
            }
            self.poll_or_wait()?;
        }
    }

    /// Runs `body` in a transaction and commits it. When the commit
    /// conflicts with another writer (EAGAIN), the whole of `body` runs
    /// again in a fresh transaction, at most [`TX_ATTEMPTS`] times in all.
    /// An error from `body` aborts the transaction and is returned (an
    /// EAGAIN from `body` counts as a conflict too).
    pub fn transaction<R>(
        &mut self,
        mut body: impl FnMut(&mut Transaction<'_, T>) -> Result<R, XsError>,
    ) -> Result<R, XsError> {
        for _ in 0..TX_ATTEMPTS {
            let id = self.call_in(TxId::NONE, &Request::TransactionStart)?.tx_id()?;
            let result = body(&mut Transaction { client: self, id });
            let end = self.call_in(id, &Request::TransactionEnd { commit: result.is_ok() });
            match (result, end) {
                (Ok(value), Ok(_)) => return Ok(value),
                (Err(XsError::Xen(Errno::Again)), _) | (Ok(_), Err(XsError::Xen(Errno::Again))) => {}
                // A failed abort adds nothing to the body's own error.
                (Err(e), _) | (Ok(_), Err(e)) => return Err(e),
            }
        }
        Err(XsError::Conflict { attempts: TX_ATTEMPTS })
    }

    fn call_in(&mut self, tx: TxId, req: &Request<'_>) -> Result<Reply, XsError> {
        let id = self.submit(tx, req)?;
        self.wait_reply(id)
    }

    /// Every reply is waited for, even after an error, so none is left to
    /// arrive for a request nobody owns.
    fn call_all_in(&mut self, tx: TxId, reqs: &[Request<'_>]) -> Replies {
        let ids: Vec<_> = reqs.iter().map(|req| self.submit(tx, req)).collect();
        let replies: Vec<_> = ids.into_iter().map(|id| id.and_then(|id| self.wait_reply(id))).collect();
        Replies(replies.into_iter())
    }

    fn healthy(&self) -> Result<(), XsError> {
        self.failed.clone().map_or(Ok(()), Err)
    }

    /// Records what ended the connection and hands it back.
    fn fail(&mut self, e: XsError) -> XsError {
        self.failed = Some(e.clone());
        e
    }

    fn fresh_req_id(&mut self) -> ReqId {
        loop {
            let id = ReqId(self.next_req);
            self.next_req = self.next_req.wrapping_add(1);
            if !self.in_flight.contains_key(&id) {
                return id;
            }
        }
    }

    fn pop_event(&mut self, id: WatchId) -> Result<Option<WatchEvent>, XsError> {
        Ok(self.watches.get_mut(&id).ok_or(XsError::UnknownWatch)?.events.pop_front())
    }

    /// Writes a whole message, taking in replies while the ring is full
    /// (xenstored may be waiting for room to answer before it reads on).
    /// xenstored is signalled when we wait ([`Client::poll_or_wait`]), so
    /// that requests sent in a row reach it with one signal.
    fn send_all(&mut self, mut msg: &[u8]) -> Result<(), XsError> {
        while !msg.is_empty() {
            let sent = self.transport.send(msg).map_err(|e| self.fail(e.into()))?;
            msg = &msg[sent..];
            if sent == 0 {
                self.poll_or_wait()?;
            }
        }
        Ok(())
    }

    /// Files what has arrived, or signals xenstored and waits for it if
    /// nothing has.
    fn poll_or_wait(&mut self) -> Result<(), XsError> {
        self.healthy()?;
        if !self.poll()? {
            self.transport.notify();
            self.transport.wait();
        }
        Ok(())
    }

    /// Files what has arrived (boundedly); returns whether anything had.
    fn poll(&mut self) -> Result<bool, XsError> {
        let mut buf = [0; CHUNK];
        let mut any = false;
        for _ in 0..POLL_CHUNKS {
            let n = self.transport.recv(&mut buf).map_err(|e| self.fail(e.into()))?;
            if n == 0 {
                break;
            }
            any = true;
            self.transport.notify();
            self.decoder.push(&buf[..n]);
            while let Some(msg) = self.decoder.next_message().map_err(|e| self.fail(e.into()))? {
                self.file(msg).map_err(|e| self.fail(e.into()))?;
            }
        }
        Ok(any)
    }

    /// Queues an event for its watch or stashes a reply for its request.
    fn file(&mut self, msg: Message) -> Result<(), ProtocolError> {
        let (ty, req_id) = (msg.header.ty, msg.header.req_id);
        if ty == MsgType::WatchEvent {
            let event = WatchEvent::parse(&msg.payload)?;
            // No owner means the watch was removed: nobody wants it.
            if let Some(watch) = self.watches.iter_mut().map(|(_, w)| w).find(|w| w.token == event.token) {
                watch.events.push_back(event);
            }
            return Ok(());
        }
        let expected = match self.in_flight.get(&req_id) {
            Some(&t) if !self.replies.contains_key(&req_id) => t,
            _ => return Err(ProtocolError::Unsolicited(req_id)),
        };
        let reply = match ty {
            MsgType::Error => Err(wire::parse_error(&msg.payload)),
            t if t == expected => Ok(Reply(msg.payload)),
            t => return Err(ProtocolError::WrongType { req_id, ty: t as u32 }),
        };
        self.replies.insert(req_id, reply);
        Ok(())
    }
}

impl<T: Transport> Store for Client<T> {
    fn call(&mut self, req: &Request<'_>) -> Result<Reply, XsError> {
        self.call_in(TxId::NONE, req)
    }

    fn call_all(&mut self, reqs: &[Request<'_>]) -> Replies {
        self.call_all_in(TxId::NONE, reqs)
    }
}

/// The view of the store inside [`Client::transaction`]: reads see a
/// snapshot, writes take effect when the transaction commits.
pub struct Transaction<'c, T> {
    client: &'c mut Client<T>,
    id: TxId,
}

impl<T> Transaction<'_, T> {
    pub fn id(&self) -> TxId {
        self.id
    }
}

impl<T: Transport> Store for Transaction<'_, T> {
    fn call(&mut self, req: &Request<'_>) -> Result<Reply, XsError> {
        self.client.call_in(self.id, req)
    }

    fn call_all(&mut self, reqs: &[Request<'_>]) -> Replies {
        self.client.call_all_in(self.id, reqs)
    }
}
