//! A small xenstored for host tests: it talks through a real
//! `xenstore_domain_interface`, as domain 7 named "guest" sees it, and can
//! be told to split its traffic, reorder replies, fail commits or send
//! arbitrary bytes. A [`Peer`] can play another domain (a backend) that
//! reacts to what the guest writes.

use super::ring::{Interface, RingTransport, RING_SIZE};
use super::wire::{Access, Decoder, Header, Message, MsgType, Permission, TxId};
use super::Client;
use crate::ring::{Consumer, Producer};
use crate::DomId;
use core::cell::RefCell;
use core::sync::atomic::Ordering;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

pub const GUEST: DomId = DomId(7);
const HOME: &str = "/local/domain/7";

#[derive(Clone, PartialEq)]
struct Node {
    value: Vec<u8>,
    perms: Vec<Permission>,
}

type Tree = BTreeMap<String, Node>;

/// Another domain: told of each node that changed (the store already
/// updated), it answers with the nodes it writes, as dom0, at the next step.
pub type Peer = Box<dyn FnMut(&FakeXenstored, &str) -> Vec<(String, String)>>;

pub type Fake = Rc<RefCell<FakeXenstored>>;
pub type Hook = Box<dyn FnMut()>;
pub type TestClient = Client<RingTransport<'static, Hook, Hook>>;

/// A client and the xenstored it talks to, over a page whose indices all
/// start at `start`. Waiting lets xenstored take one step.
pub fn connect(start: u32) -> (TestClient, Fake, &'static Interface) {
    let intf: &'static Interface = Box::leak(Box::new(Interface::new()));
    for idx in [&intf.req_cons, &intf.req_prod, &intf.rsp_cons, &intf.rsp_prod] {
        idx.store(start, Ordering::Relaxed);
    }
    let fake = Rc::new(RefCell::new(FakeXenstored::new(intf)));
    let server = fake.clone();
    let wait: Hook = Box::new(move || server.borrow_mut().step());
    let notify: Hook = Box::new(|| {});
    let client = Client::new(RingTransport::new(intf, notify, wait));
    (client, fake, intf)
}

pub struct FakeXenstored {
    rx: Consumer<'static, RING_SIZE>,
    tx: Producer<'static, RING_SIZE>,
    inbox: Decoder,
    outbox: VecDeque<u8>,
    held: Vec<Vec<u8>>,
    /// Bytes moved per direction per step: small values split messages.
    pub chunk: usize,
    /// Replies are held until this many have accumulated, then sent in
    /// reverse order (0: in order).
    pub hold_replies: usize,
    /// Answer this many commits with EAGAIN.
    pub conflicts: u32,
    /// The payload of the next reply, instead of the right one.
    pub garble: Option<Vec<u8>>,
    /// Transactions started, to count retries.
    pub started: u32,
    pub peer: Option<Peer>,
    /// Write the peer's answers after this step's replies, so that their watch events come
    /// in the same batch as the reply to the client's next request.
    pub answers_after_replies: bool,
    /// The peer's answers, written at the next step.
    answers: Vec<(String, String)>,
    tree: Tree,
    txs: BTreeMap<u32, Tree>,
    watches: Vec<(String, String)>,
    steps: u32,
}

fn perms(owner: DomId, others: Access) -> Vec<Permission> {
    vec![Permission { domid: owner, access: others }]
}

/// The absolute form of a path as domain 7 sent it.
fn absolute(path: &str) -> String {
    if path.starts_with('/') || path.starts_with('@') {
        path.to_string()
    } else {
        format!("{HOME}/{path}")
    }
}

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => path,
    }
}

fn is_child(path: &str, of: &str) -> bool {
    path == of || of == "/" || path.strip_prefix(of).is_some_and(|rest| rest.starts_with('/'))
}

fn allowed(node: &Node, want: Access) -> bool {
    let owner = node.perms[0];
    let access = node.perms[1..].iter().find(|p| p.domid == GUEST).unwrap_or(&owner).access;
    owner.domid == GUEST || access == Access::Both || access == want
}

/// The error for a missing `path`, as xenstored gives it: EACCES when we may
/// not read its nearest existing parent (we may not learn what it holds).
fn missing(tree: &Tree, path: &str) -> String {
    let mut at = parent(path);
    while !tree.contains_key(at) {
        at = parent(at);
    }
    if allowed(&tree[at], Access::Read) { "ENOENT" } else { "EACCES" }.into()
}

/// Encodes a message from xenstored.
pub fn message(ty: u32, req_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut raw = Vec::new();
    for field in [ty, req_id, 0, payload.len() as u32] {
        raw.extend_from_slice(&field.to_le_bytes());
    }
    raw.extend_from_slice(payload);
    raw
}

impl FakeXenstored {
    pub fn new(intf: &'static Interface) -> Self {
        let mut tree = Tree::new();
        let dom0 = perms(DomId(0), Access::None);
        for path in [
            "/",
            "/local",
            "/local/domain",
            "/local/domain/0",
            "/local/domain/0/secret",
            "/local/domain/0/backend",
        ] {
            tree.insert(path.into(), Node { value: Vec::new(), perms: dom0.clone() });
        }
        let mine = perms(GUEST, Access::None);
        for (path, value) in [(HOME, ""), ("/local/domain/7/domid", "7"), ("/local/domain/7/name", "guest")] {
            tree.insert(path.into(), Node { value: value.into(), perms: mine.clone() });
        }
        FakeXenstored {
            rx: Consumer::new(&intf.req, &intf.req_cons, &intf.req_prod),
            tx: Producer::new(&intf.rsp, &intf.rsp_cons, &intf.rsp_prod),
            inbox: Decoder::default(),
            outbox: VecDeque::new(),
            held: Vec::new(),
            chunk: RING_SIZE,
            hold_replies: 0,
            conflicts: 0,
            garble: None,
            started: 0,
            peer: None,
            answers_after_replies: false,
            answers: Vec::new(),
            tree,
            txs: BTreeMap::new(),
            watches: Vec::new(),
            steps: 0,
        }
    }

    /// Queues raw bytes for the client, after what is already queued.
    pub fn inject(&mut self, bytes: &[u8]) {
        self.outbox.extend(bytes);
    }

    /// Writes `value` at `path` as dom0 would for a backend: new nodes are
    /// dom0's, readable by the guest. Fires watches and tells the peer.
    pub fn put(&mut self, path: &str, value: &str) {
        let theirs = vec![
            Permission { domid: DomId(0), access: Access::None },
            Permission { domid: GUEST, access: Access::Read },
        ];
        let mut at = path;
        while !self.tree.contains_key(at) {
            self.tree.insert(at.into(), Node { value: Vec::new(), perms: theirs.clone() });
            at = parent(at);
        }
        self.tree.get_mut(path).unwrap().value = value.into();
        self.fire(path);
    }

    /// Removes `path` and its children as dom0 would. Fires watches.
    pub fn remove(&mut self, path: &str) {
        self.tree.retain(|k, _| !is_child(k, path));
        self.fire(path);
    }

    /// The value at absolute `path`, if the node exists.
    pub fn value(&self, path: &str) -> Option<&[u8]> {
        self.tree.get(path).map(|n| &n.value[..])
    }

    /// Whether the peer has answers not written yet (the next step writes them).
    pub fn answers_pending(&self) -> bool {
        !self.answers.is_empty()
    }

    /// Steps taken so far: the client's round trips, as each waits for one.
    pub fn steps(&self) -> u32 {
        self.steps
    }

    /// How many watches the guest has registered.
    pub fn watch_count(&self) -> usize {
        self.watches.len()
    }

    /// One round of work: take requests, answer them, fill the reply ring.
    pub fn step(&mut self) {
        self.steps += 1;
        assert!(self.steps < 100_000, "the client waits for something that never comes");
        let answers = std::mem::take(&mut self.answers);
        if !self.answers_after_replies {
            for (path, value) in &answers {
                self.put(path, value);
            }
        }
        let mut buf = vec![0; self.chunk];
        let n = self.rx.read_some(&mut buf).expect("the client corrupted the request ring");
        self.inbox.push(&buf[..n]);
        while let Some(msg) = self.inbox.next_message().expect("the client sent a bad header") {
            self.handle(msg);
        }
        if self.answers_after_replies {
            for (path, value) in &answers {
                self.put(path, value);
            }
        }
        let take = self.chunk.min(self.outbox.len());
        let bytes: Vec<u8> = self.outbox.iter().take(take).copied().collect();
        let sent = self.tx.write_some(&bytes).expect("the client corrupted the reply ring");
        self.outbox.drain(..sent);
    }

    fn reply(&mut self, ty: MsgType, header: Header, payload: &[u8]) {
        let payload = self.garble.take().unwrap_or_else(|| payload.to_vec());
        let bytes = message(ty as u32, header.req_id.0, &payload);
        if self.hold_replies == 0 {
            self.outbox.extend(bytes);
            return;
        }
        self.held.push(bytes);
        if self.held.len() == self.hold_replies {
            while let Some(bytes) = self.held.pop() {
                self.outbox.extend(bytes);
            }
        }
    }

    fn event(&mut self, path: &str, token: &str) {
        let payload = [path.as_bytes(), b"\0", token.as_bytes(), b"\0"].concat();
        self.outbox.extend(message(MsgType::WatchEvent as u32, 0, &payload));
    }

    /// Sends an event to every watch of `changed` or a parent, with the
    /// path relative when the watch's was.
    fn fire(&mut self, changed: &str) {
        let matching: Vec<(String, String)> =
            self.watches.iter().filter(|(wpath, _)| is_child(changed, &absolute(wpath))).cloned().collect();
        for (wpath, token) in matching {
            let shown = if wpath.starts_with('/') { changed } else { &changed[HOME.len() + 1..] };
            self.event(shown, &token);
        }
        let Some(mut peer) = self.peer.take() else { return };
        let answers = peer(self, changed);
        self.answers.extend(answers);
        self.peer = Some(peer);
    }

    fn handle(&mut self, msg: Message) {
        let h = msg.header;
        let text = String::from_utf8_lossy(&msg.payload).into_owned();
        let args: Vec<&str> = text.split('\0').collect();
        let result = match h.ty {
            MsgType::Watch => {
                let (wpath, token) = (args[0].to_string(), args[1].to_string());
                self.reply(MsgType::Watch, h, b"OK\0");
                // Like xenstored: a new watch fires once straight away.
                self.event(&wpath, &token);
                self.watches.push((wpath, token));
                return;
            }
            MsgType::Unwatch => {
                let before = self.watches.len();
                self.watches.retain(|(p, t)| (p.as_str(), t.as_str()) != (args[0], args[1]));
                if before == self.watches.len() {
                    Err("ENOENT".into())
                } else {
                    Ok(b"OK\0".to_vec())
                }
            }
            MsgType::TransactionStart => {
                self.started += 1;
                let id = 100 + self.started;
                self.txs.insert(id, self.tree.clone());
                Ok(format!("{id}\0").into_bytes())
            }
            MsgType::TransactionEnd => self.end(h.tx_id, args[0] == "T"),
            _ => self.node_op(h, &absolute(args[0]), &msg.payload),
        };
        match result {
            Ok(payload) => self.reply(h.ty, h, &payload),
            Err(errno) => self.reply(MsgType::Error, h, format!("{errno}\0").as_bytes()),
        }
    }

    fn end(&mut self, tx: TxId, commit: bool) -> Result<Vec<u8>, String> {
        let copy = self.txs.remove(&tx.0).ok_or("ENOENT")?;
        if !commit {
            return Ok(b"OK\0".to_vec());
        }
        if self.conflicts > 0 {
            self.conflicts -= 1;
            return Err("EAGAIN".into());
        }
        let changed: Vec<String> =
            copy.iter().filter(|(k, v)| self.tree.get(*k) != Some(v)).map(|(k, _)| k.clone()).collect();
        self.tree = copy;
        for path in changed {
            self.fire(&path);
        }
        Ok(b"OK\0".to_vec())
    }

    /// Operations on one node, in the transaction's copy if there is one.
    fn node_op(&mut self, h: Header, path: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
        if let Some(errno) = path.strip_prefix("/fault/") {
            return Err(errno.into());
        }
        let in_tx = h.tx_id != TxId::NONE;
        let tree = if in_tx { self.txs.get_mut(&h.tx_id.0).ok_or("ENOENT")? } else { &mut self.tree };
        let rest = &payload[payload.iter().position(|&b| b == 0).map_or(payload.len(), |i| i + 1)..];
        let node = tree.get(path);
        let ok = b"OK\0".to_vec();
        let changed = match h.ty {
            MsgType::Read | MsgType::Directory | MsgType::GetPerms => {
                let node = node.ok_or_else(|| missing(tree, path))?;
                if !allowed(node, Access::Read) {
                    return Err("EACCES".into());
                }
                return Ok(match h.ty {
                    MsgType::Read => node.value.clone(),
                    MsgType::Directory => tree
                        .keys()
                        .filter(|k| *k != path && parent(k) == path)
                        .flat_map(|k| [k.rsplit('/').next().unwrap().as_bytes(), b"\0"].concat())
                        .collect(),
                    _ => node.perms.iter().flat_map(|p| format!("{p}\0").into_bytes()).collect(),
                });
            }
            MsgType::Write | MsgType::Mkdir => {
                if node.is_some_and(|n| !allowed(n, Access::Write)) {
                    return Err("EACCES".into());
                }
                let mut at = path;
                while !tree.contains_key(at) {
                    tree.insert(
                        at.to_string(),
                        Node { value: Vec::new(), perms: perms(GUEST, Access::None) },
                    );
                    at = parent(at);
                }
                if h.ty == MsgType::Write {
                    tree.get_mut(path).unwrap().value = rest.to_vec();
                }
                path
            }
            MsgType::Rm => {
                if node.is_none() {
                    return if tree.contains_key(parent(path)) { Ok(ok) } else { Err("ENOENT".into()) };
                }
                tree.retain(|k, _| !is_child(k, path));
                path
            }
            MsgType::SetPerms => {
                let node = tree.get_mut(path).ok_or("ENOENT")?;
                let text = String::from_utf8_lossy(rest);
                node.perms = text.split_terminator('\0').map(|p| Permission::parse(p).unwrap()).collect();
                path
            }
            _ => return Err("EINVAL".into()),
        };
        if !in_tx {
            let changed = changed.to_string();
            self.fire(&changed);
        }
        Ok(ok)
    }
}
