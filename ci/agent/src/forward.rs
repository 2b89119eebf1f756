//! `mote-agent forward tcp|udp PORT TARGET`: relays connections (TCP) or
//! datagrams (UDP) arriving on dom0's PORT to TARGET (`ip:port`, a guest on
//! xenbr0). With QEMU's `hostfwd` from 127.0.0.1 to the same dom0 port, a
//! guest service is reachable from the host's loopback. Runs until killed.

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::thread;

/// Parses the arguments and runs the relay; the process's exit status.
pub fn main(args: &[String]) -> i32 {
    let usage = "usage: mote-agent forward tcp|udp PORT TARGET_IP:PORT";
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
        "udp" => udp(port, target),
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

/// One upstream socket per client address, so replies find their way back.
fn udp(port: u16, target: SocketAddr) -> io::Result<()> {
    let socket = Arc::new(UdpSocket::bind(("0.0.0.0", port))?);
    println!("forward: udp {port} -> {target}");
    let upstreams: Mutex<HashMap<SocketAddr, Arc<UdpSocket>>> = Mutex::new(HashMap::new());
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, client) = socket.recv_from(&mut buf)?;
        let upstream = {
            let mut map = upstreams.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(&client) {
                Some(u) => Arc::clone(u),
                None => {
                    let u = Arc::new(UdpSocket::bind(("0.0.0.0", 0))?);
                    u.connect(target)?;
                    let (back, down) = (Arc::clone(&u), Arc::clone(&socket));
                    thread::spawn(move || {
                        let mut buf = vec![0u8; 65536];
                        while let Ok(n) = back.recv(&mut buf) {
                            if down.send_to(&buf[..n], client).is_err() {
                                return;
                            }
                        }
                    });
                    map.insert(client, Arc::clone(&u));
                    u
                }
            }
        };
        if let Err(e) = upstream.send(&buf[..n]) {
            eprintln!("forward: udp to {target}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
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
    fn udp_replies_return_to_their_sender() {
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
        thread::spawn(move || udp(port, target));
        thread::sleep(Duration::from_millis(100));
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.send_to(b"ping", ("127.0.0.1", port)).unwrap();
        let mut buf = [0u8; 16];
        let n = c.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"ping");
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        assert_eq!(main(&["tcp".into(), "x".into(), "10.0.0.2:7".into()]), 2);
        assert_eq!(main(&["sctp".into(), "7".into(), "10.0.0.2:7".into()]), 2);
        assert_eq!(main(&[]), 2);
    }
}
