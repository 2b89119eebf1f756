//! An authoritative DNS server: the zones embedded at build time (the sample
//! `zones/example.com.zone`, or the files given to `cargo xtask build dns
//! --zone FILE…`, compiled by build.rs), or with the `disk` feature those on the
//! first disk, answered over UDP and TCP (RFC 7766) on port 53 by `mote-dns`, on
//! every vif, vifs attached while it runs included. A zone that does not load
//! stops the server before it serves anything.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use mote::net::{Stack, TcpListener, TcpOptions, TcpStream, UdpSocket};
use mote_dns::{compiled, try_respond, Catalog, OutOfMemory, Responder, Transport};

mote::main!(main);

mod disk;

const PORT: u16 = 53;
// `ZONES`, written by build.rs.
include!(concat!(env!("OUT_DIR"), "/zones.rs"));
/// A TCP connection with no complete query for this long is closed (RFC 7766 §6.2.3).
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Largest UDP query read; longer ones are cut (and then answered FORMERR).
const UDP_QUERY_MAX: usize = 4096;
/// Bytes of UDP replies remembered, so that a repeated question is answered
/// without allocating (`mote_dns::Responder`).
const UDP_MEMO_BYTES: usize = 64 * 1024;

fn main() -> Result<(), String> {
    let catalog: &'static Catalog = Box::leak(Box::new(load()?));
    mote::block_on(async move {
        // Every vif serves, and so does every vif attached while the domain runs.
        let (stacks, mut attached) = mote::net::up_all_and_watch().map_err(|e| format!("{e}"))?;
        for stack in stacks {
            serve(stack, catalog).await?;
        }
        mote::ready();
        mote::spawn(async move {
            loop {
                match attached.next().await {
                    Ok(stack) => mote::spawn(async move {
                        if let Err(e) = serve(stack, catalog).await {
                            mote::log::warn!("dns: attached vif: {e}");
                        }
                    }),
                    Err(e) => mote::log::warn!("dns: attached vif: {e}"),
                }
            }
        });
        // A content disk attached again is not read: the content is loaded once, at start.
        // (Without the disk reader there is no disk watch: the image refused disks at start.)
        #[cfg(all(target_os = "none", feature = "disk"))]
        mote::disk::log_attached("dns", "zones are loaded at start");
        let request = mote::lifecycle::shutdown_requested().await;
        mote::println!("dns: {request:?} requested, stopping");
        Ok(())
    })
}

/// The zones' origins, each after a space, for the serving line (written straight to the
/// console: no strings to allocate and join).
struct Origins(&'static Catalog);

impl fmt::Display for Origins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.zones().iter().try_for_each(|zone| write!(f, " {}", zone.origin()))
    }
}

/// Loads every zone, from the first disk when there is one, else those built
/// in; all of them load or none does.
fn load() -> Result<Catalog, String> {
    let zones = match disk::zones()? {
        Some(zones) => zones,
        None => ZONES
            .iter()
            .map(|(file, zone)| compiled::read(zone).map_err(|e| format!("{file}: {e}")))
            .collect::<Result<_, _>>()?,
    };
    Catalog::new(zones).map_err(|(zone, e)| format!("zone {zone}: {e}"))
}

/// Serves UDP and TCP on `stack` once it has an IPv4 address.
async fn serve(stack: Stack, catalog: &'static Catalog) -> Result<(), String> {
    let address = stack.wait_ipv4().await;
    serve_udp(&stack, catalog)?;
    serve_tcp(&stack, catalog)?;
    mote::println!("dns: serving on {} (udp/53 tcp/53):{}", address.address(), Origins(catalog));
    Ok(())
}

fn serve_udp(stack: &Stack, catalog: &'static Catalog) -> Result<(), String> {
    let socket = UdpSocket::bind(stack, PORT).map_err(|e| format!("udp/{PORT}: {e}"))?;
    mote::spawn(async move {
        let mut responder = Responder::new(catalog, UDP_MEMO_BYTES);
        let mut buf = vec![0u8; UDP_QUERY_MAX];
        let mut reply = Vec::with_capacity(usize::from(mote_dns::query::MAX_UDP_PAYLOAD));
        loop {
            let (n, from) = socket.recv_from(&mut buf).await;
            match responder.respond_into(&buf[..n], Transport::Udp, &mut reply) {
                Ok(true) => {
                    if let Err(e) = socket.send_to(&reply, from).await {
                        mote::log::debug!("dns: udp reply to {}: {e}", mote::net::ShowAddr(from));
                    }
                }
                Ok(false) => {}
                Err(OutOfMemory) => mote::log::warn!(
                    "dns: no memory to answer a udp query from {}: dropped ({} so far)",
                    mote::net::ShowAddr(from),
                    responder.out_of_memory()
                ),
            }
        }
    });
    Ok(())
}

fn serve_tcp(stack: &Stack, catalog: &'static Catalog) -> Result<(), String> {
    // Queries are small and replies are written as room frees up, so small
    // windows do; 32 pending connections bound what a SYN burst takes.
    let options = TcpOptions { rx_buffer: 2048, tx_buffer: 4096, backlog: 32 };
    let listener = TcpListener::bind_with(stack, PORT, options).map_err(|e| format!("tcp/{PORT}: {e}"))?;
    mote::spawn(async move {
        loop {
            let stream = listener.accept().await;
            mote::spawn(connection(stream, catalog));
        }
    });
    Ok(())
}

/// RFC 7766 §8: each message is preceded by its length in two octets; the
/// queries of a connection are answered in order until the client closes
/// it or takes too long to send the next one (§6.2.3).
async fn connection(stream: TcpStream, catalog: &'static Catalog) {
    let mut query = vec![];
    while let Ok(true) = mote::time::timeout(TCP_IDLE, read_message(&stream, &mut query)).await {
        let reply = match try_respond(catalog, &query, Transport::Tcp) {
            Ok(Some(reply)) => reply,
            Ok(None) => continue,
            Err(OutOfMemory) => {
                out_of_memory(format_args!("the answer to a tcp query"));
                break;
            }
        };
        let mut framed = Vec::new();
        if framed.try_reserve_exact(2 + reply.len()).is_err() {
            out_of_memory(format_args!("a tcp reply of {} bytes", 2 + reply.len()));
            break;
        }
        framed.extend_from_slice(&(reply.len() as u16).to_be_bytes());
        framed.extend_from_slice(&reply);
        if stream.write_all(&framed).await.is_err() {
            break;
        }
    }
    stream.close();
}

/// Reads one length-prefixed message into `buf`; false when the connection ends first.
async fn read_message(stream: &TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut len = [0u8; 2];
    if !read_exact(stream, &mut len).await {
        return false;
    }
    let len = usize::from(u16::from_be_bytes(len));
    buf.clear();
    if buf.try_reserve_exact(len).is_err() {
        out_of_memory(format_args!("a tcp query of {len} bytes"));
        return false;
    }
    buf.resize(len, 0);
    read_exact(stream, buf).await
}

/// TCP connections closed because the heap had no room for a query or a reply.
static REFUSED_FOR_MEMORY: AtomicU64 = AtomicU64::new(0);

/// Counts and logs a connection dropped for want of heap for `what`.
fn out_of_memory(what: core::fmt::Arguments) {
    let refused = REFUSED_FOR_MEMORY.fetch_add(1, Ordering::Relaxed) + 1;
    mote::log::warn!("dns: no memory for {what}: connection closed ({refused} so far)");
}

/// Fills `buf`; false when the connection ends first.
async fn read_exact(stream: &TcpStream, buf: &mut [u8]) -> bool {
    let mut filled = 0;
    while filled < buf.len() {
        match stream.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => filled += n,
        }
    }
    true
}
