//! `mote-agent echo-server ECHO_PORT DISCARD_PORT`: the services of `apps/echo` (RFC 862 echo
//! over TCP and UDP, RFC 863 discard over TCP) for the Linux guest `cargo xtask bench` compares
//! the mote with. A thread per TCP connection; serves until killed.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::thread;

/// `echo-server`; the exit status (only a failure to bind returns).
pub fn main(args: &[String]) -> i32 {
    let [echo, discard] = args else {
        eprintln!("usage: mote-agent echo-server ECHO_PORT DISCARD_PORT");
        return 2;
    };
    let (Ok(echo), Ok(discard)) = (echo.parse::<u16>(), discard.parse::<u16>()) else {
        eprintln!("echo-server: bad port in {args:?}");
        return 2;
    };
    let bound = (|| {
        Ok::<_, io::Error>((
            UdpSocket::bind(("0.0.0.0", echo))?,
            TcpListener::bind(("0.0.0.0", echo))?,
            TcpListener::bind(("0.0.0.0", discard))?,
        ))
    })();
    match bound {
        Ok((udp, tcp_echo, tcp_discard)) => {
            serve(udp, tcp_echo, tcp_discard);
            0
        }
        Err(e) => {
            eprintln!("echo-server: cannot bind ports {echo} and {discard}: {e}");
            1
        }
    }
}

/// Serves on the bound sockets forever.
fn serve(udp: UdpSocket, echo: TcpListener, discard: TcpListener) {
    thread::spawn(move || udp_echo(udp));
    thread::spawn(move || accept(discard, |mut s| drop(io::copy(&mut s, &mut io::sink()))));
    accept(echo, tcp_echo);
}

fn udp_echo(socket: UdpSocket) {
    let mut buf = [0u8; 65536];
    loop {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => drop(socket.send_to(&buf[..n], from)),
            Err(e) => eprintln!("echo-server: udp: {e}"),
        }
    }
}

fn accept(listener: TcpListener, handle: fn(TcpStream)) {
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => drop(thread::spawn(move || handle(stream))),
            Err(e) => eprintln!("echo-server: accept: {e}"),
        }
    }
}

/// Echoes until the client closes its side, then closes ours.
fn tcp_echo(stream: TcpStream) {
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = stream;
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n @ 1..) = reader.read(&mut buf) {
        if writer.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Shutdown, SocketAddr};

    /// The server on ephemeral loopback ports: (echo, discard).
    fn start() -> (SocketAddr, SocketAddr) {
        let tcp_echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp_echo.local_addr().unwrap().port();
        let udp = UdpSocket::bind(("127.0.0.1", port)).unwrap();
        let tcp_discard = TcpListener::bind("127.0.0.1:0").unwrap();
        let addrs = (tcp_echo.local_addr().unwrap(), tcp_discard.local_addr().unwrap());
        thread::spawn(move || serve(udp, tcp_echo, tcp_discard));
        addrs
    }

    #[test]
    fn echoes_tcp_on_many_connections_and_udp() {
        let (echo, _) = start();
        let clients: Vec<_> = (0..4u8)
            .map(|i| {
                thread::spawn(move || {
                    let mut s = TcpStream::connect(echo).unwrap();
                    let data = vec![i; 200_000];
                    let mut w = s.try_clone().unwrap();
                    let sent = data.clone();
                    let writer = thread::spawn(move || {
                        w.write_all(&sent).unwrap();
                        w.shutdown(Shutdown::Write).unwrap();
                    });
                    let mut back = Vec::new();
                    s.read_to_end(&mut back).unwrap();
                    writer.join().unwrap();
                    assert_eq!(back, data);
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        u.connect(echo).unwrap();
        u.send(b"ping").unwrap();
        let mut buf = [0u8; 16];
        let n = u.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"ping");
    }

    #[test]
    fn discards_and_closes_after_the_client() {
        let (_, discard) = start();
        let mut s = TcpStream::connect(discard).unwrap();
        s.write_all(&[1u8; 100_000]).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut back = Vec::new();
        s.read_to_end(&mut back).unwrap();
        assert!(back.is_empty());
    }

    #[test]
    fn bad_arguments() {
        assert_eq!(main(&["7".into()]), 2);
        assert_eq!(main(&["7".into(), "x".into()]), 2);
    }
}
