//! What `cargo xtask run` does for an app's `forward = [...]`: TCP ports are
//! plain QEMU port forwards to dom0, where the agent relays them to the
//! guest; UDP goes through a TCP tunnel (QEMU's restricted user network does
//! not return UDP replies to the host): this side receives datagrams on
//! 127.0.0.1 and frames them into a TCP connection per client, the agent's
//! `forward udp-over-tcp` unframes them towards the guest.

use crate::agent::{Agent, Event, Exec};
use crate::build::Forward;
use std::collections::hash_map::{Entry, HashMap};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

/// How long a dom0 relay may take to listen.
const RELAY_START: Duration = Duration::from_secs(10);

/// One forward, with what carries it.
pub struct Plan {
    forward: Forward,
    /// The TCP port forwarded from the host to dom0 (for UDP: the tunnel's).
    tcp_port: u16,
    /// For UDP: the host socket that receives the datagrams, bound up front
    /// so that a busy port is an error before the harness boots.
    udp: Option<UdpSocket>,
}

impl Plan {
    /// The TCP port forwarded from the host to dom0.
    pub fn tcp_port(&self) -> u16 {
        self.tcp_port
    }
}

/// Prepares `forwards`: the TCP ports the harness must forward, and sockets.
pub fn plan(forwards: &[Forward]) -> Result<Vec<Plan>, String> {
    forwards
        .iter()
        .map(|&forward| {
            if !forward.udp {
                // QEMU would fail to start on a port already taken: find out now.
                std::net::TcpListener::bind(("127.0.0.1", forward.host))
                    .map_err(|e| format!("cannot listen on 127.0.0.1:{}/tcp: {e}", forward.host))?;
                return Ok(Plan { forward, tcp_port: forward.host, udp: None });
            }
            let udp = UdpSocket::bind(("127.0.0.1", forward.host))
                .map_err(|e| format!("cannot listen on 127.0.0.1:{}/udp: {e}", forward.host))?;
            Ok(Plan { forward, tcp_port: crate::harness::free_port()?, udp: Some(udp) })
        })
        .collect()
}

/// The TCP ports the harness forwards to dom0 for `plans`.
pub fn tcp_ports(plans: &[Plan]) -> Vec<u16> {
    plans.iter().map(|p| p.tcp_port).collect()
}

/// The relays [`start`] started: the dom0 side, and this side's UDP tunnels. Dropping it
/// ends both and frees the UDP ports before it returns (a later run in the same process, such
/// as the hosted cases after the Xen ones, binds them again).
#[derive(Default)]
pub struct Relays {
    dom0: Vec<Exec>,
    stop: Arc<AtomicBool>,
    tunnels: Vec<thread::JoinHandle<()>>,
}

impl Relays {
    /// How many forwards run.
    pub fn len(&self) -> usize {
        self.dom0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dom0.is_empty()
    }
}

impl Drop for Relays {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.dom0.clear();
        for tunnel in self.tunnels.drain(..) {
            let _ = tunnel.join();
        }
    }
}

/// Starts the relays to the guest at `ip`; they run until the returned [`Relays`] is dropped.
pub fn start(agent: &Agent, plans: &mut [Plan], app: &str, ip: Ipv4Addr) -> Relays {
    let mut relays = Relays::default();
    for plan in plans {
        let f = plan.forward;
        let mode = if f.udp { "udp-over-tcp" } else { "tcp" };
        let command = format!("exec /mote/agent forward {mode} {} {ip}:{}", plan.tcp_port, f.guest);
        let (tx, events) = mpsc::channel();
        let started = agent.spawn(&command, (), tx).and_then(|relay| {
            // The relay prints a line once it listens: only then may traffic come.
            match events.recv_timeout(RELAY_START) {
                Ok(((), Event::Output(_))) => Ok(relay),
                Ok(((), Event::Exit(status))) => Err(format!("the dom0 relay exited with status {status}")),
                Ok(((), Event::Failed(e))) => Err(e),
                Err(_) => Err(format!("the dom0 relay did not start within {RELAY_START:?}")),
            }
        });
        match started {
            Ok(relay) => relays.dom0.push(relay),
            Err(e) => {
                eprintln!("mote: cannot forward port {}/{}: {e}", f.host, f.proto());
                continue;
            }
        }
        if let Some(udp) = plan.udp.take() {
            let (tunnel, stop) = (plan.tcp_port, relays.stop.clone());
            relays.tunnels.push(thread::spawn(move || {
                if let Err(e) = tunnel_datagrams(udp, tunnel, &stop) {
                    eprintln!("mote: udp forward {}: {e}", f.host);
                }
            }));
        }
        eprintln!("mote: 127.0.0.1:{}/{} -> {app} {ip}:{}", f.host, f.proto(), f.guest);
    }
    relays
}

/// How often a UDP tunnel looks whether it should stop.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// Each client address gets its own tunnel connection; replies come back to it. Returns once
/// `stop` is set, with the socket and its reply threads gone.
fn tunnel_datagrams(udp: UdpSocket, tunnel: u16, stop: &AtomicBool) -> io::Result<()> {
    udp.set_read_timeout(Some(STOP_CHECK))?;
    let udp = Arc::new(udp);
    let mut tunnels: HashMap<SocketAddr, TcpStream> = HashMap::new();
    let mut replies = Vec::new();
    let mut buf = vec![0u8; 65535];
    let result = loop {
        if stop.load(Ordering::SeqCst) {
            break Ok(());
        }
        let (n, client) = match udp.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => continue,
            Err(e) => break Err(e),
        };
        let stream = match tunnels.entry(client) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let stream = match connect(tunnel) {
                    Ok(stream) => stream,
                    Err(err) => break Err(err),
                };
                let (back, mut from) = (Arc::clone(&udp), stream.try_clone()?);
                replies.push(thread::spawn(move || {
                    let mut buf = vec![0u8; 65535];
                    while let Ok(Some(n)) = read_datagram(&mut from, &mut buf) {
                        if back.send_to(&buf[..n], client).is_err() {
                            return;
                        }
                    }
                }));
                e.insert(stream)
            }
        };
        if let Err(e) = write_datagram(stream, &buf[..n]) {
            break Err(e);
        }
    };
    // Ends the reply threads' reads, so that the last reference to the socket goes with them.
    for stream in tunnels.values() {
        let _ = stream.shutdown(Shutdown::Both);
    }
    for reply in replies {
        let _ = reply.join();
    }
    result
}

/// Connects to the tunnel, giving the agent's relay a moment to listen.
fn connect(port: u16) -> io::Result<TcpStream> {
    let mut last = None;
    for _ in 0..50 {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
        thread::sleep(Duration::from_millis(100));
    }
    Err(last.unwrap_or_else(|| io::Error::other("no connection")))
}

/// The tunnel's framing: a big-endian `u16` length, then the datagram.
fn write_datagram(stream: &mut impl Write, datagram: &[u8]) -> io::Result<()> {
    let len = u16::try_from(datagram.len()).map_err(|_| io::Error::other("datagram over 64 KiB"))?;
    let mut frame = Vec::with_capacity(2 + datagram.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(datagram);
    stream.write_all(&frame)
}

fn read_datagram(stream: &mut impl Read, buf: &mut [u8]) -> io::Result<Option<usize>> {
    let mut len = [0u8; 2];
    if stream.read_exact(&mut len).is_err() {
        return Ok(None);
    }
    let len = usize::from(u16::from_be_bytes(len));
    stream.read_exact(&mut buf[..len])?;
    Ok(Some(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn datagrams_are_framed_through_the_tunnel_and_replies_come_back() {
        // Plays the agent: a tunnel endpoint that answers each datagram reversed.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let tunnel = listener.local_addr().unwrap().port();
        thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = vec![0u8; 65535];
            while let Ok(Some(n)) = read_datagram(&mut s, &mut buf) {
                buf[..n].reverse();
                write_datagram(&mut s, &buf[..n]).unwrap();
            }
        });
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = udp.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let relay = {
            let stop = stop.clone();
            thread::spawn(move || tunnel_datagrams(udp, tunnel, &stop))
        };
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        client.send_to(b"abc", addr).unwrap();
        let mut buf = [0u8; 16];
        let n = client.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"cba");
        // Stopped, the tunnel gives its port back.
        stop.store(true, Ordering::SeqCst);
        relay.join().unwrap().unwrap();
        UdpSocket::bind(addr).expect("the stopped tunnel's port is free again");
    }
}
