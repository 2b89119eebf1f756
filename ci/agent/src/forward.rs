//! `mote-agent forward tcp|udp-over-tcp PORT TARGET`: relays what reaches
//! dom0's TCP PORT to TARGET (`ip:port`, a guest on xenbr0), so that with
//! QEMU's `hostfwd` from 127.0.0.1 a guest service is reachable from the
//! host's loopback. Runs until killed.
//!
//! `tcp` relays connections. `udp-over-tcp` carries datagrams: QEMU's
//! restricted user network does not return UDP replies to the host, so
//! `cargo xtask run` receives the host's datagrams itself and sends them
//! through a TCP connection, each as a big-endian `u16` length and the bytes;
//! here every connection gets its own UDP socket towards TARGET, and replies
//! go back the same way.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::thread;

/// Parses the arguments and runs the relay; the process's exit status.
pub fn main(args: &[String]) -> i32 {
    let usage = "usage: mote-agent forward tcp|udp-over-tcp PORT TARGET_IP:PORT";
    let [proto, port, target] = args else {
        eprintln!("{usage}");
        return 2;
    };
    let (Ok(port), Ok(target)) = (port.parse::<u16>(), target.parse::<SocketAddr>()) else {
        eprintln!("mote-agent forward: bad port {port:?} or target {target:?}; {usage}");
        return 2;
    };
    let result = match proto.as_str() {
        "tcp" => tcp(port, target),
        "udp-over-tcp" => udp_over_tcp(port, target),
        _ => {
            eprintln!("mote-agent forward: unknown protocol {proto:?}; {usage}");
            return 2;
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("mote-agent forward {proto} {port} {target}: {e}");
            1
        }
    }
}

fn tcp(port: u16, target: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind(("0.0.0.0", port))?;
    println!("forward: tcp {port} -> {target}");
    for client in listener.incoming() {
        let client = client?;
        thread::spawn(move || {
            if let Err(e) = relay_tcp(client, target) {
                eprintln!("forward: tcp connection to {target}: {e}");
            }
        });
    }
    Ok(())
}

/// Copies both ways until each side has closed its sending half.
fn relay_tcp(client: TcpStream, target: SocketAddr) -> io::Result<()> {
    let upstream = TcpStream::connect(target)?;
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (mut c_read, mut u_write) = (client.try_clone()?, upstream.try_clone()?);
    let up = thread::spawn(move || {
        let _ = io::copy(&mut c_read, &mut u_write);
        let _ = u_write.shutdown(Shutdown::Write);
    });
    let (mut u_read, mut c_write) = (upstream, client);
    let _ = io::copy(&mut u_read, &mut c_write);
    let _ = c_write.shutdown(Shutdown::Write);
    let _ = up.join();
    Ok(())
}

fn udp_over_tcp(port: u16, target: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind(("0.0.0.0", port))?;
    println!("forward: udp-over-tcp {port} -> {target}");
    for client in listener.incoming() {
        let client = client?;
        thread::spawn(move || {
            if let Err(e) = relay_datagrams(client, target) {
                eprintln!("forward: udp to {target}: {e}");
            }
        });
    }
    Ok(())
}

/// Reads one framed datagram; `None` at a clean end of the stream.
pub fn read_datagram(stream: &mut impl Read, buf: &mut [u8; 65535]) -> io::Result<Option<usize>> {
    let mut len = [0u8; 2];
    match stream.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = usize::from(u16::from_be_bytes(len));
    stream.read_exact(&mut buf[..len])?;
    Ok(Some(len))
}

/// Writes one framed datagram.
pub fn write_datagram(stream: &mut impl Write, datagram: &[u8]) -> io::Result<()> {
    let len = u16::try_from(datagram.len()).map_err(|_| io::Error::other("datagram over 64 KiB"))?;
    let mut frame = Vec::with_capacity(2 + datagram.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(datagram);
    stream.write_all(&frame)
}

/// Datagrams from `client` go to `target` from a socket of their own; its
/// replies go back framed, until `client` closes.
fn relay_datagrams(client: TcpStream, target: SocketAddr) -> io::Result<()> {
    let socket = UdpSocket::bind(if target.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" })?;
    socket.connect(target)?;
    let (replies, mut back) = (socket.try_clone()?, client.try_clone()?);
    thread::spawn(move || {
        let mut buf = vec![0u8; 65535];
        while let Ok(n) = replies.recv(&mut buf) {
            if write_datagram(&mut back, &buf[..n]).is_err() {
                return;
            }
        }
    });
    let mut client = client;
    let mut buf = Box::new([0u8; 65535]);
    while let Some(n) = read_datagram(&mut client, &mut buf)? {
        socket.send(&buf[..n])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    #[test]
    fn tcp_bytes_and_close_cross_the_relay() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = echo.local_addr().unwrap();
        thread::spawn(move || {
            let (mut s, _) = echo.accept().unwrap();
            let mut data = Vec::new();
            s.read_to_end(&mut data).unwrap();
            s.write_all(&data).unwrap();
        });
        let port = free_port();
        thread::spawn(move || tcp(port, target));
        thread::sleep(Duration::from_millis(100));
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let payload: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        c.write_all(&payload).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).unwrap();
        assert_eq!(back, payload);
    }

    #[test]
    fn datagrams_cross_the_tunnel_and_replies_return() {
        let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
        let target = echo.local_addr().unwrap();
        thread::spawn(move || {
            let mut buf = [0u8; 1500];
            loop {
                let (n, from) = echo.recv_from(&mut buf).unwrap();
                echo.send_to(&buf[..n], from).unwrap();
            }
        });
        let port = free_port();
        thread::spawn(move || udp_over_tcp(port, target));
        thread::sleep(Duration::from_millis(100));
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = Box::new([0u8; 65535]);
        for msg in [&b"ping"[..], &[7u8; 1400][..], b""] {
            write_datagram(&mut c, msg).unwrap();
            let n = read_datagram(&mut c, &mut buf).unwrap().unwrap();
            assert_eq!(&buf[..n], msg);
        }
        c.shutdown(Shutdown::Write).unwrap();
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        assert_eq!(main(&["tcp".into(), "x".into(), "10.0.0.2:7".into()]), 2);
        assert_eq!(main(&["sctp".into(), "7".into(), "10.0.0.2:7".into()]), 2);
        assert_eq!(main(&[]), 2);
    }
}
