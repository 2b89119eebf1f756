//! TCP: listeners that keep accepting while earlier connections are open,
//! and streams.
//!
//! smoltcp hands a SYN to a socket in the LISTEN state and answers RST when
//! none is. A listener therefore always keeps one listening socket: after
//! every frame the stack takes in, a socket that left LISTEN joins the
//! listener's backlog of connections and a fresh one takes its place, so a
//! burst of SYNs is absorbed up to [`TcpOptions::backlog`] connections not
//! accepted yet. [`TcpListener::accept`] hands out the established ones in
//! arrival order.

use super::stack::{Inner, SocketTable, Stack};
use super::{endpoint, Error};
use crate::time::Instant;
use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::Cell;
use core::future::poll_fn;
use core::net::SocketAddr;
use core::sync::atomic::{AtomicU64, Ordering};
use core::task::{Poll, Waker};
use core::time::Duration;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::{self, RecvError, SendError, State};

/// How long a dropped stream may take to finish closing before it is reset.
const LINGER: Duration = Duration::from_secs(60);

/// Per-connection buffers, and how many connections may wait to be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpOptions {
    /// Receive buffer (the window offered to the peer), bytes.
    pub rx_buffer: usize,
    /// Transmit buffer, bytes.
    pub tx_buffer: usize,
    /// Connections past their SYN and not accepted yet; beyond this, SYNs are
    /// answered with RST. Each holds its buffers.
    pub backlog: usize,
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions { rx_buffer: 8192, tx_buffer: 8192, backlog: 256 }
    }
}

fn new_socket(options: &TcpOptions) -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; options.rx_buffer]),
        tcp::SocketBuffer::new(vec![0; options.tx_buffer]),
    )
}

/// [`new_socket`], or `None` when the heap has no room for its buffers.
fn try_new_socket(options: &TcpOptions) -> Option<tcp::Socket<'static>> {
    let buffer = |len: usize| {
        let mut bytes = Vec::new();
        bytes.try_reserve_exact(len).ok()?;
        bytes.resize(len, 0);
        Some(tcp::SocketBuffer::new(bytes))
    };
    Some(tcp::Socket::new(buffer(options.rx_buffer)?, buffer(options.tx_buffer)?))
}

/// Times a listener found no memory for its next listening socket.
static STARVED: AtomicU64 = AtomicU64::new(0);

/// A listening port's sockets.
pub(super) struct Backlog {
    port: u16,
    options: TcpOptions,
    /// The socket waiting for the next SYN.
    listening: Option<SocketHandle>,
    /// Connections past their SYN, in arrival order, not accepted yet.
    pending: VecDeque<SocketHandle>,
    /// The task in [`TcpListener::accept`].
    waker: Option<Waker>,
    /// The heap had no room for a listening socket the last time one was needed.
    starved: bool,
}

impl Backlog {
    /// Moves a socket that left LISTEN to the backlog, drops connections
    /// reset before they were accepted, keeps a socket listening while the
    /// backlog has room, and wakes `accept` when a connection is established.
    fn tend(&mut self, sockets: &mut SocketTable) {
        if let Some(handle) = self.listening {
            if !sockets.get::<tcp::Socket>(handle).is_listening() {
                self.pending.push_back(handle);
                self.listening = None;
            }
        }
        self.pending.retain(|&handle| {
            // A handshake reset by the peer puts the socket back in LISTEN.
            let gone = matches!(sockets.get::<tcp::Socket>(handle).state(), State::Listen | State::Closed);
            if gone {
                sockets.remove(handle);
            }
            !gone
        });
        if self.listening.is_none() && self.pending.len() < self.options.backlog {
            // Out of memory, SYNs are answered with RST (refused) until a socket fits again.
            let added = try_new_socket(&self.options).and_then(|mut socket| {
                socket.listen(self.port).expect("a new socket listens on a non-zero port");
                sockets.try_add(socket)
            });
            match added {
                Some(handle) => {
                    self.listening = Some(handle);
                    self.starved = false;
                }
                None if !self.starved => {
                    self.starved = true;
                    let n = STARVED.fetch_add(1, Ordering::Relaxed) + 1;
                    log::warn!(
                        "tcp: port {}: no memory for a listening socket ({} bytes): new connections refused until there is ({n} so far)",
                        self.port,
                        self.options.rx_buffer + self.options.tx_buffer
                    );
                }
                None => {}
            }
        }
        if self.pending.iter().any(|&h| is_established(sockets.get(h))) {
            if let Some(waker) = self.waker.take() {
                waker.wake();
            }
        }
    }

    /// The first established connection, if any.
    fn take(&mut self, sockets: &mut SocketTable) -> Option<SocketHandle> {
        let i = self.pending.iter().position(|&h| is_established(sockets.get(h)))?;
        let handle = self.pending.remove(i);
        self.tend(sockets);
        handle
    }
}

fn is_established(socket: &tcp::Socket) -> bool {
    !matches!(socket.state(), State::Listen | State::SynReceived | State::Closed)
}

impl Inner {
    /// Runs after every frame taken in, and once per turn (so that a listener
    /// starved of memory listens again once some is freed): see [`Backlog::tend`].
    pub(super) fn tend_listeners(&mut self) {
        for backlog in self.listeners.iter_mut().map(|(_, b)| b) {
            backlog.tend(&mut self.sockets);
        }
    }

    /// Removes the sockets of dropped streams once their connection is over,
    /// resetting those that take longer than [`LINGER`]; returns when to look
    /// again at the latest.
    pub(super) fn reap_closed(&mut self, now: Instant) -> Option<Instant> {
        let sockets = &mut self.sockets;
        let mut next = None::<Instant>;
        self.closing.retain_mut(|(handle, deadline)| {
            let socket = sockets.get_mut::<tcp::Socket>(*handle);
            // A reset socket keeps its peer until its RST is out.
            let over = match socket.state() {
                State::TimeWait => true,
                State::Closed => socket.remote_endpoint().is_none(),
                _ => false,
            };
            if over {
                sockets.remove(*handle);
                return false;
            }
            let at = *deadline.get_or_insert(now.saturating_add(LINGER));
            if now >= at {
                socket.abort();
            }
            next = Some(next.map_or(at, |n| n.min(at)));
            true
        });
        next
    }

    /// Counts a new stream, with room kept in `closing` for its close; false,
    /// counting nothing, when the heap has no room for that.
    fn count_stream(&mut self) -> bool {
        if self.closing.try_reserve(self.streams + 1).is_err() {
            return false;
        }
        self.streams += 1;
        true
    }

    /// Keeps `handle` until its connection is over. A stream's room was kept
    /// when it was counted; another socket (a listener's) takes room beyond
    /// the streams', or with no memory for it is removed at once (the
    /// peer's next segment gets a reset).
    fn close_later(&mut self, handle: SocketHandle) {
        if self.closing.try_reserve(self.streams + 1).is_ok() {
            self.closing.push((handle, None));
        } else {
            log::warn!("tcp: no memory to close a connection gracefully: dropped");
            self.sockets.remove(handle);
        }
    }
}

/// A TCP port accepting connections.
pub struct TcpListener {
    stack: Stack,
    id: u64,
    port: u16,
}

impl TcpListener {
    /// Listens on `port` with [`TcpOptions::default`].
    pub fn bind(stack: &Stack, port: u16) -> Result<TcpListener, Error> {
        TcpListener::bind_with(stack, port, TcpOptions::default())
    }

    /// Listens on `port` with `options`: larger windows for bulk transfers, a backlog for
    /// bursts of connections. Port 0 is refused ([`Error::Unaddressable`]): a listener's
    /// port must be known to its clients.
    pub fn bind_with(stack: &Stack, port: u16, options: TcpOptions) -> Result<TcpListener, Error> {
        if port == 0 {
            return Err(Error::Unaddressable);
        }
        let id = stack.with(|inner| {
            if inner.listeners.values().any(|b| b.port == port) {
                return Err(Error::AddrInUse);
            }
            // Reserved now: a connection joins the backlog while frames come in.
            let mut pending = VecDeque::new();
            pending.try_reserve_exact(options.backlog).map_err(|_| Error::NoMemory)?;
            let mut backlog =
                Backlog { port, options, listening: None, pending, waker: None, starved: false };
            backlog.tend(&mut inner.sockets);
            Ok(inner.add_listener(backlog))
        })?;
        Ok(TcpListener { stack: stack.clone(), id, port })
    }

    /// The port listened on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The next established connection.
    pub async fn accept(&self) -> TcpStream {
        let handle = poll_fn(|cx| {
            self.stack.with(|inner| loop {
                let backlog =
                    inner.listeners.get_mut(&self.id).expect("a listener's backlog lives as long as it");
                let Some(handle) = backlog.take(&mut inner.sockets) else {
                    backlog.waker = Some(cx.waker().clone());
                    return Poll::Pending;
                };
                if inner.count_stream() {
                    return Poll::Ready(handle);
                }
                log::warn!("tcp: port {}: no memory to keep a connection: reset", self.port);
                inner.sockets.get_mut::<tcp::Socket>(handle).abort();
                inner.close_later(handle);
            })
        })
        .await;
        TcpStream::new(&self.stack, handle)
    }
}

impl Drop for TcpListener {
    /// Stops listening and resets the connections not accepted yet.
    fn drop(&mut self) {
        self.stack.with(|inner| {
            let Some(backlog) = inner.listeners.remove(&self.id) else { return };
            for handle in backlog.listening.into_iter().chain(backlog.pending) {
                inner.sockets.get_mut::<tcp::Socket>(handle).abort();
                inner.close_later(handle);
            }
        });
    }
}

/// A TCP connection. Methods take `&self`: one task may read while another
/// writes (share the stream in an `Rc`); two concurrent readers, or
/// writers, would steal each other's wake-ups. Dropping the stream closes it
/// gracefully in the background.
pub struct TcpStream {
    stack: Stack,
    handle: SocketHandle,
    closed: Cell<bool>,
}

impl TcpStream {
    fn new(stack: &Stack, handle: SocketHandle) -> TcpStream {
        TcpStream { stack: stack.clone(), handle, closed: Cell::new(false) }
    }

    /// Connects from an ephemeral port to `remote`, with
    /// [`TcpOptions::default`] buffers.
    pub async fn connect(stack: &Stack, remote: SocketAddr) -> Result<TcpStream, Error> {
        let handle = stack.with(|inner| {
            let mut socket = new_socket(&TcpOptions::default());
            let port = inner.ephemeral_port().ok_or(Error::AddrInUse)?;
            socket
                .connect(inner.iface.context(), endpoint(remote)?, port)
                .map_err(|_| Error::Unaddressable)?;
            let handle = inner.sockets.try_add(socket).ok_or(Error::NoMemory)?;
            if !inner.count_stream() {
                inner.sockets.remove(handle);
                return Err(Error::NoMemory);
            }
            Ok(handle)
        })?;
        let stream = TcpStream::new(stack, handle);
        poll_fn(|cx| {
            stream.with(|socket| match socket.state() {
                State::SynSent | State::SynReceived => {
                    socket.register_send_waker(cx.waker());
                    Poll::Pending
                }
                State::Closed | State::TimeWait => Poll::Ready(Err(Error::ConnectionRefused)),
                _ => Poll::Ready(Ok(())),
            })
        })
        .await?;
        Ok(stream)
    }

    fn with<R>(&self, f: impl FnOnce(&mut tcp::Socket<'static>) -> R) -> R {
        self.stack.with(|inner| f(inner.sockets.get_mut(self.handle)))
    }

    /// The remote end; `None` once the connection is over.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.with(|socket| socket.remote_endpoint().map(SocketAddr::from))
    }

    /// Reads what has arrived, at least one byte; `Ok(0)` once the peer has
    /// closed its side and everything before has been read.
    pub async fn read(&self, buf: &mut [u8]) -> Result<usize, Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        poll_fn(|cx| {
            self.with(|socket| match socket.recv_slice(buf) {
                Ok(0) => {
                    socket.register_recv_waker(cx.waker());
                    Poll::Pending
                }
                Ok(n) => Poll::Ready(Ok(n)),
                Err(RecvError::Finished) => Poll::Ready(Ok(0)),
                Err(RecvError::InvalidState) => Poll::Ready(Err(Error::ConnectionReset)),
            })
        })
        .await
    }

    /// Queues some of `data` for sending, at least one byte, waiting for
    /// room in the transmit buffer.
    pub async fn write(&self, data: &[u8]) -> Result<usize, Error> {
        if data.is_empty() {
            return Ok(0);
        }
        poll_fn(|cx| {
            self.with(|socket| match socket.send_slice(data) {
                Ok(0) => {
                    socket.register_send_waker(cx.waker());
                    Poll::Pending
                }
                Ok(n) => Poll::Ready(Ok(n)),
                Err(SendError::InvalidState) if self.closed.get() => Poll::Ready(Err(Error::Closed)),
                Err(SendError::InvalidState) => Poll::Ready(Err(Error::ConnectionReset)),
            })
        })
        .await
    }

    /// Queues all of `data` for sending.
    pub async fn write_all(&self, mut data: &[u8]) -> Result<(), Error> {
        while !data.is_empty() {
            let n = self.write(data).await?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Closes the sending side once the queued data is out (FIN); reading
    /// goes on until the peer closes its side.
    pub fn close(&self) {
        self.closed.set(true);
        self.with(tcp::Socket::close);
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        self.stack.with(|inner| {
            inner.sockets.get_mut::<tcp::Socket>(self.handle).close();
            inner.streams -= 1;
            inner.close_later(self.handle);
        });
    }
}
