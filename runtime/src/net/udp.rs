//! UDP sockets.

use super::stack::Stack;
use super::{endpoint, Error};
use alloc::vec;
use core::future::poll_fn;
use core::net::SocketAddr;
use core::task::Poll;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::udp::{self, SendError};

/// Datagrams each direction can queue: as many as the stack takes from the device in one
/// turn of the run loop (its ingress budget), so that a burst arriving while the guest was
/// not running fits a drained socket instead of being dropped before the app sees it.
const QUEUED_DATAGRAMS: usize = super::stack::INGRESS_BUDGET;
/// Payload bytes each direction can queue.
const BUFFER_BYTES: usize = 16 * 1024;

/// A UDP socket bound to a local port.
pub struct UdpSocket {
    stack: Stack,
    handle: SocketHandle,
    port: u16,
}

impl UdpSocket {
    /// Binds `port` on all the stack's addresses; port 0 picks a free
    /// ephemeral port.
    pub fn bind(stack: &Stack, port: u16) -> Result<UdpSocket, Error> {
        let (handle, port) = stack.with(|inner| {
            let port = match port {
                0 => inner.ephemeral_port().ok_or(Error::AddrInUse)?,
                p if inner.udp_bound(p) => return Err(Error::AddrInUse),
                p => p,
            };
            let buffer = || {
                udp::PacketBuffer::new(
                    vec![udp::PacketMetadata::EMPTY; QUEUED_DATAGRAMS],
                    vec![0; BUFFER_BYTES],
                )
            };
            let mut socket = udp::Socket::new(buffer(), buffer());
            socket.bind(port).map_err(|_| Error::Unaddressable)?;
            Ok((inner.sockets.try_add(socket).ok_or(Error::NoMemory)?, port))
        })?;
        Ok(UdpSocket { stack: stack.clone(), handle, port })
    }

    /// The bound port: the one picked, after binding port 0.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn with<R>(&self, f: impl FnOnce(&mut udp::Socket<'static>) -> R) -> R {
        self.stack.with(|inner| f(inner.sockets.get_mut(self.handle)))
    }

    /// The next datagram: its length and sender. A datagram longer than
    /// `buf` is cut to fit.
    pub async fn recv_from(&self, buf: &mut [u8]) -> (usize, SocketAddr) {
        poll_fn(|cx| {
            self.with(|socket| match socket.recv() {
                Ok((data, meta)) => {
                    let n = data.len().min(buf.len());
                    buf[..n].copy_from_slice(&data[..n]);
                    Poll::Ready((n, meta.endpoint.into()))
                }
                Err(_) => {
                    socket.register_recv_waker(cx.waker());
                    Poll::Pending
                }
            })
        })
        .await
    }

    /// Queues `data` as one datagram to `to`, waiting for room.
    pub async fn send_to(&self, data: &[u8], to: SocketAddr) -> Result<(), Error> {
        let to = endpoint(to)?;
        if data.len() > self.with(|socket| socket.payload_send_capacity()) {
            return Err(Error::TooLarge);
        }
        poll_fn(|cx| {
            self.with(|socket| match socket.send_slice(data, to) {
                Ok(()) => Poll::Ready(Ok(())),
                Err(SendError::BufferFull) => {
                    socket.register_send_waker(cx.waker());
                    Poll::Pending
                }
                Err(SendError::Unaddressable) => Poll::Ready(Err(Error::Unaddressable)),
            })
        })
        .await
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        self.stack.with(|inner| inner.sockets.remove(self.handle));
    }
}
