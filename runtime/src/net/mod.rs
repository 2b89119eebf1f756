//! Networking: smoltcp over any [`smoltcp::phy::Device`] (netfront in the
//! kernel, a TAP device hosted, an in-memory wire in the host tests), with
//! async sockets.
//!
//! A [`Stack`] owns the interface and its sockets and is a driver of the
//! running executor: every turn of the run loop polls the interface, and the
//! loop sleeps no longer than the interface asks. Sockets are handles into
//! the stack; their futures register smoltcp's wakers and are woken when the
//! interface moves data or changes a connection's state.
//!
//! In an app, `up` (on Xen, or `hosted`) makes the stack from the command line's
//! configuration; a test or a device of one's own goes through [`Stack::new`] with a
//! [`Config`] of its choosing.
//!
//! ```no_run
//! use mote::net::{TcpListener, UdpSocket};
//!
//! # fn main() -> Result<(), mote::net::UpError> {
//! mote::block_on(async {
//!     let stack = mote::net::up()?;
//!     let address = stack.wait_ipv4().await;
//!     mote::println!("serving on {}", address.address());
//!     let udp = UdpSocket::bind(&stack, 7).expect("port 7 is free on a new stack");
//!     mote::spawn(async move {
//!         let mut buf = [0; 1500];
//!         loop {
//!             let (n, from) = udp.recv_from(&mut buf).await;
//!             if let Err(e) = udp.send_to(&buf[..n], from).await {
//!                 mote::log::warn!("udp echo to {from}: {e}");
//!             }
//!         }
//!     });
//!     let listener = TcpListener::bind(&stack, 7).expect("port 7 is free on a new stack");
//!     loop {
//!         let stream = listener.accept().await;
//!         mote::spawn(async move {
//!             let _ = stream.write_all(b"hello\r\n").await;
//!             // Dropping the stream closes it gracefully, in the background.
//!         });
//!     }
//! })
//! # }
//! ```

mod config;
#[cfg(feature = "hosted")]
mod hosted;
mod isn;
mod stack;
mod tcp;
mod udp;
#[cfg(target_os = "none")]
mod xen;

#[cfg(test)]
mod tests;

#[cfg(feature = "ipv6")]
pub use config::Ipv6Config;
pub use config::{Config, ConfigError, Ipv4Config, Offload};
#[cfg(feature = "hosted")]
pub use hosted::{up, up_all, up_all_and_watch, Attached, UpError, DEFAULT_TAP, VIF_HEAP_BYTES};
pub use smoltcp;
pub use stack::{Nic, Stack};
pub use tcp::{TcpListener, TcpOptions, TcpStream};
pub use udp::UdpSocket;
#[cfg(target_os = "none")]
pub use xen::{up, up_all, up_all_and_watch, up_vif, Attached, UpError, VIF_HEAP_BYTES};

use core::fmt;
use core::net::SocketAddr;
use smoltcp::wire::IpEndpoint;

/// Why a socket operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The peer reset the connection, or it timed out.
    ConnectionReset,
    /// The peer refused the connection.
    ConnectionRefused,
    /// This side closed the connection for writing.
    Closed,
    /// No local address or route reaches the destination.
    Unaddressable,
    /// Another socket already has this port.
    AddrInUse,
    /// A datagram larger than the socket's buffer.
    TooLarge,
    /// The heap has no room for the socket.
    NoMemory,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::ConnectionReset => "connection reset",
            Error::ConnectionRefused => "connection refused",
            Error::Closed => "connection closed for writing",
            Error::Unaddressable => "no address or route for the destination",
            Error::AddrInUse => "port already in use",
            Error::TooLarge => "datagram larger than the socket buffer",
            Error::NoMemory => "no memory for the socket",
        })
    }
}

/// `addr` as smoltcp's endpoint: an IPv6 one reaches no address in an image
/// built without the `ipv6` feature.
fn endpoint(addr: SocketAddr) -> Result<IpEndpoint, Error> {
    match addr {
        SocketAddr::V4(v4) => Ok(IpEndpoint::new((*v4.ip()).into(), v4.port())),
        #[cfg(feature = "ipv6")]
        SocketAddr::V6(v6) => Ok(IpEndpoint::new((*v6.ip()).into(), v6.port())),
        #[cfg(not(feature = "ipv6"))]
        SocketAddr::V6(_) => Err(Error::Unaddressable),
    }
}

/// Shows a socket address as `SocketAddr`'s `Display` does, but links `core`'s IPv6
/// formatting (2.7 KiB) only into images with the `ipv6` feature; without it an IPv6
/// address, which the stack never reports then, is shown as `[IPv6]:PORT`.
pub struct ShowAddr(pub SocketAddr);

impl fmt::Display for ShowAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            SocketAddr::V4(v4) => write!(f, "{}:{}", v4.ip(), v4.port()),
            #[cfg(feature = "ipv6")]
            SocketAddr::V6(v6) => write!(f, "{v6}"),
            #[cfg(not(feature = "ipv6"))]
            SocketAddr::V6(v6) => write!(f, "[IPv6]:{}", v6.port()),
        }
    }
}
