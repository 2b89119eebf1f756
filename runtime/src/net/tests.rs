//! Two stacks on an in-memory Ethernet wire, under one executor with a fake
//! clock.

use super::*;
use crate::executor::{spawn, Executor};
use crate::testing::{Count, FakePlatform, Wire};
use crate::time;
use smoltcp::socket::icmp;
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, Icmpv4Packet, Icmpv4Repr, IpAddress, IpProtocol, Ipv4Cidr, Ipv4Packet,
    UdpPacket,
};
use std::future::{poll_fn, Future};
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
const IP_B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

/// `ip=` and, with the `ipv6` feature, `ip6=`.
fn config(ip: &str, ip6: &str) -> Config {
    let line = if cfg!(feature = "ipv6") { format!("ip={ip} ip6={ip6}") } else { format!("ip={ip}") };
    Config::from_cmdline(&crate::cmdline::Cmdline::new(&line)).unwrap()
}

/// Runs `test` with stack A (10.0.0.1, fd00::1) and stack B (10.0.0.2,
/// fd00::2) wired together (the IPv6 addresses with the `ipv6` feature).
fn on_wire<F: Future>(test: impl FnOnce(Stack, Stack) -> F) -> F::Output {
    let wire = Wire::default();
    let mut executor = Executor::new(FakePlatform::with_wire(&wire));
    executor.block_on(async {
        let (a, b) = wire.ends();
        let a = Stack::new(a, MAC_A, &config("10.0.0.1/24", "fd00::1/64"));
        let b = Stack::new(b, MAC_B, &config("10.0.0.2/24", "fd00::2/64"));
        test(a, b).await
    })
}

/// Echoes every datagram to `port` back to its sender.
fn udp_echo(stack: &Stack, port: u16) {
    let socket = UdpSocket::bind(stack, port).unwrap();
    spawn(async move {
        let mut buf = [0; 2048];
        loop {
            let (n, from) = socket.recv_from(&mut buf).await;
            socket.send_to(&buf[..n], from).await.unwrap();
        }
    });
}

#[test]
fn udp_echo_round_trip_over_ipv4_and_ipv6() {
    on_wire(|a, b| async move {
        udp_echo(&b, 7);
        let client = UdpSocket::bind(&a, 0).unwrap();
        let servers: &[&str] =
            if cfg!(feature = "ipv6") { &["10.0.0.2:7", "[fd00::2]:7"] } else { &["10.0.0.2:7"] };
        for server in servers {
            let server: SocketAddr = server.parse().unwrap();
            client.send_to(b"hello over the wire", server).await.unwrap();
            let mut buf = [0; 64];
            let (n, from) = client.recv_from(&mut buf).await;
            assert_eq!((&buf[..n], from), (&b"hello over the wire"[..], server));
        }
        assert_eq!(UdpSocket::bind(&b, 7).err(), Some(Error::AddrInUse));
        let too_big = vec![0; 20_000];
        assert_eq!(client.send_to(&too_big, "10.0.0.2:7".parse().unwrap()).await, Err(Error::TooLarge));
    });
}

#[test]
#[cfg(not(feature = "ipv6"))]
fn ipv6_destinations_are_unaddressable_without_the_feature() {
    on_wire(|a, _| async move {
        let client = UdpSocket::bind(&a, 0).unwrap();
        let to = "[fd00::2]:7".parse().unwrap();
        assert_eq!(client.send_to(b"x", to).await, Err(Error::Unaddressable));
        assert_eq!(TcpStream::connect(&a, to).await.err(), Some(Error::Unaddressable));
    });
}

/// Accepts connections on `port` and echoes each until the peer closes.
fn tcp_echo(stack: &Stack, port: u16) {
    let listener = TcpListener::bind(stack, port).unwrap();
    spawn(async move {
        loop {
            let stream = listener.accept().await;
            spawn(async move {
                let mut buf = [0; 4096];
                loop {
                    match stream.read(&mut buf).await.unwrap() {
                        0 => break,
                        n => stream.write_all(&buf[..n]).await.unwrap(),
                    }
                }
                stream.close();
            });
        }
    });
}

/// Bytes that differ at every offset a short pattern would repeat at.
fn pattern(len: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn tcp_echo_of_one_megabyte_byte_for_byte() {
    let sent = pattern(1 << 20);
    let received = on_wire(|a, b| {
        let sent = sent.clone();
        async move {
            tcp_echo(&b, 7);
            let stream = Rc::new(TcpStream::connect(&a, SocketAddr::from((IP_B, 7))).await.unwrap());
            assert_eq!(stream.peer_addr(), Some(SocketAddr::from((IP_B, 7))));
            let writer = stream.clone();
            spawn(async move {
                for chunk in sent.chunks(1000) {
                    writer.write_all(chunk).await.unwrap();
                }
                writer.close();
                assert_eq!(writer.write(b"late").await, Err(Error::Closed));
            });
            let mut received = Vec::new();
            let mut buf = [0; 3000];
            loop {
                match stream.read(&mut buf).await.unwrap() {
                    0 => break received,
                    n => received.extend_from_slice(&buf[..n]),
                }
            }
        }
    });
    assert_eq!(received.len(), sent.len());
    assert!(received == sent, "the echo differs from what was sent");
}

#[test]
fn two_hundred_concurrent_connections_all_served() {
    const CONNECTIONS: usize = 200;
    on_wire(|a, b| async move {
        let listener = TcpListener::bind(&b, 7).unwrap();
        let open = Count::default();
        let server_open = open.clone();
        // Each connection is answered only once all are open at the same time.
        spawn(async move {
            loop {
                let stream = listener.accept().await;
                let open = server_open.clone();
                spawn(async move {
                    let mut id = [0; 2];
                    let mut got = 0;
                    while got < 2 {
                        got += stream.read(&mut id[got..]).await.unwrap();
                    }
                    open.add();
                    open.reach(CONNECTIONS).await;
                    stream.write_all(&[id[1], id[0]]).await.unwrap();
                    stream.close();
                });
            }
        });
        let served = Count::default();
        for i in 0..CONNECTIONS as u16 {
            let (a, served) = (a.clone(), served.clone());
            spawn(async move {
                let stream = TcpStream::connect(&a, SocketAddr::from((IP_B, 7))).await.unwrap();
                stream.write_all(&i.to_be_bytes()).await.unwrap();
                let mut reply = Vec::new();
                let mut buf = [0; 16];
                loop {
                    match stream.read(&mut buf).await.unwrap() {
                        0 => break,
                        n => reply.extend_from_slice(&buf[..n]),
                    }
                }
                assert_eq!(reply, i.to_le_bytes());
                served.add();
            });
        }
        served.reach(CONNECTIONS).await;
        assert_eq!(open.get(), CONNECTIONS);
        // Dropped streams finish closing, and their sockets go: only the
        // listening one stays on B, none on A.
        time::sleep(Duration::from_secs(1)).await;
        assert_eq!(b.inner.borrow().sockets.iter().count(), 1);
        assert_eq!(a.inner.borrow().sockets.iter().count(), 0);
    });
}

#[test]
fn connecting_to_a_closed_port_is_refused() {
    on_wire(|a, _b| async move {
        let result = TcpStream::connect(&a, SocketAddr::from((IP_B, 9))).await;
        assert_eq!(result.err(), Some(Error::ConnectionRefused));
    });
}

#[test]
fn a_listener_without_memory_for_its_socket_refuses_and_the_stack_serves_on() {
    on_wire(|a, b| async move {
        // Buffers no heap holds: the listener has no socket to take a SYN with.
        let huge = TcpOptions { rx_buffer: isize::MAX as usize, tx_buffer: 4096, backlog: 4 };
        let _starved = TcpListener::bind_with(&b, 80, huge).unwrap();
        tcp_echo(&b, 7);
        let result = TcpStream::connect(&a, SocketAddr::from((IP_B, 80))).await;
        assert_eq!(result.err(), Some(Error::ConnectionRefused));
        let stream = TcpStream::connect(&a, SocketAddr::from((IP_B, 7))).await.unwrap();
        stream.write_all(b"still here").await.unwrap();
        let mut buf = [0; 10];
        let mut got = 0;
        while got < buf.len() {
            got += stream.read(&mut buf[got..]).await.unwrap();
        }
        assert_eq!(&buf, b"still here");
    });
}

#[test]
fn ping_gets_an_echo_reply() {
    on_wire(|a, _b| async move {
        let handle = a.with(|inner| {
            let buffer = || icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 256]);
            let mut socket = icmp::Socket::new(buffer(), buffer());
            socket.bind(icmp::Endpoint::Ident(0x22)).unwrap();
            let request = Icmpv4Repr::EchoRequest { ident: 0x22, seq_no: 1, data: b"ping" };
            let mut bytes = vec![0; request.buffer_len()];
            request.emit(&mut Icmpv4Packet::new_unchecked(&mut bytes[..]), &Default::default());
            socket.send_slice(&bytes, IP_B.into()).unwrap();
            inner.sockets.add(socket)
        });
        let (reply, from) = poll_fn(|cx| {
            a.with(|inner| {
                let socket = inner.sockets.get_mut::<icmp::Socket>(handle);
                match socket.recv() {
                    Ok((data, from)) => Poll::Ready((data.to_vec(), from)),
                    Err(_) => {
                        socket.register_recv_waker(cx.waker());
                        Poll::Pending
                    }
                }
            })
        })
        .await;
        assert_eq!(from, IpAddress::from(IP_B));
        let packet = Icmpv4Packet::new_checked(&reply).unwrap();
        let repr = Icmpv4Repr::parse(&packet, &Default::default()).unwrap();
        assert_eq!(repr, Icmpv4Repr::EchoReply { ident: 0x22, seq_no: 1, data: b"ping" });
    });
}

#[test]
fn dhcp_by_default_sends_a_discover_and_waits_for_an_address() {
    let wire = Wire::default();
    let mut executor = Executor::new(FakePlatform::default());
    let stack = executor.block_on(async {
        let stack = Stack::new(wire.ends().0, MAC_A, &Config::default());
        time::sleep(Duration::from_millis(100)).await;
        assert_eq!(time::timeout(Duration::from_secs(1), stack.wait_ipv4()).await, Err(time::Elapsed));
        stack
    });
    assert_eq!(stack.ipv4(), None);
    let to_dhcp_server = |frame: &Vec<u8>| -> Option<bool> {
        let eth = EthernetFrame::new_checked(frame).ok()?;
        let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
        let udp = UdpPacket::new_checked(ip.payload()).ok()?;
        Some(
            eth.ethertype() == EthernetProtocol::Ipv4
                && ip.next_header() == IpProtocol::Udp
                && ip.dst_addr() == Ipv4Addr::BROADCAST
                && udp.dst_port() == 67,
        )
    };
    assert!(wire.sent_by_a().iter().any(|f| to_dhcp_server(f) == Some(true)));
}

#[test]
fn a_static_address_is_there_at_once() {
    on_wire(|a, _b| async move {
        assert_eq!(a.wait_ipv4().await, Ipv4Cidr::new(Ipv4Addr::new(10, 0, 0, 1), 24));
    });
}

/// Whether `frame` is a gratuitous ARP request (sender = target = `ip`) from `mac`.
fn is_announcement(frame: &[u8], mac: [u8; 6], ip: Ipv4Addr) -> bool {
    use smoltcp::wire::{ArpOperation, ArpPacket, ArpRepr, EthernetAddress};
    let Ok(eth) = EthernetFrame::new_checked(frame) else { return false };
    let arp = ArpPacket::new_checked(eth.payload()).and_then(|p| ArpRepr::parse(&p));
    eth.ethertype() == EthernetProtocol::Arp
        && eth.dst_addr() == EthernetAddress::BROADCAST
        && arp
            == Ok(ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Request,
                source_hardware_addr: EthernetAddress(mac),
                source_protocol_addr: ip,
                target_hardware_addr: EthernetAddress([0; 6]),
                target_protocol_addr: ip,
            })
}

#[test]
fn a_static_address_is_announced_once_by_gratuitous_arp() {
    let wire = Wire::default();
    let mut executor = Executor::new(FakePlatform::default());
    executor.block_on(async {
        let _stack = Stack::new(wire.ends().0, MAC_A, &config("10.0.0.1/24", "fd00::1/64"));
        time::sleep(Duration::from_millis(100)).await;
    });
    let announced =
        wire.sent_by_a().iter().filter(|f| is_announcement(f, MAC_A, Ipv4Addr::new(10, 0, 0, 1))).count();
    assert_eq!(announced, 1);
}

#[test]
fn no_announcement_before_dhcp_gives_an_address() {
    let wire = Wire::default();
    let mut executor = Executor::new(FakePlatform::default());
    executor.block_on(async {
        let _stack = Stack::new(wire.ends().0, MAC_A, &Config::default());
        time::sleep(Duration::from_millis(100)).await;
    });
    let arp =
        |f: &Vec<u8>| EthernetFrame::new_checked(f).is_ok_and(|e| e.ethertype() == EthernetProtocol::Arp);
    assert!(!wire.sent_by_a().iter().any(arp));
}

#[test]
fn addresses_show_as_socket_addr_does() {
    let v4: SocketAddr = "10.0.0.2:53".parse().unwrap();
    assert_eq!(ShowAddr(v4).to_string(), "10.0.0.2:53");
    let v6: SocketAddr = "[fd00::2]:53".parse().unwrap();
    // Without IPv6 the stack never reports such a peer, and the image carries no IPv6 formatting.
    let expected = if cfg!(feature = "ipv6") { "[fd00::2]:53" } else { "[IPv6]:53" };
    assert_eq!(ShowAddr(v6).to_string(), expected);
}

#[test]
fn a_socket_the_heap_has_no_room_to_list_is_refused_until_it_has() {
    on_wire(|a, _b| async move {
        // Four sockets: the fifth makes smoltcp grow its table to eight slots.
        let mut sockets: Vec<_> = (1..=4).map(|port| UdpSocket::bind(&a, port).unwrap()).collect();
        {
            let _heap_full = crate::testing::refuse_size(8 * size_of::<smoltcp::iface::SocketStorage>());
            assert!(matches!(UdpSocket::bind(&a, 5), Err(Error::NoMemory)));
            assert!(matches!(
                TcpStream::connect(&a, "10.0.0.2:80".parse().unwrap()).await,
                Err(Error::NoMemory)
            ));
            // A socket's freed slot takes the next one without growing the table.
            sockets.pop();
            sockets.push(UdpSocket::bind(&a, 6).unwrap());
        }
        sockets.push(UdpSocket::bind(&a, 7).unwrap());
        assert_eq!(a.with(|inner| inner.sockets.iter().count()), 5);
    });
}

#[test]
fn a_stream_closes_gracefully_when_the_heap_has_no_room_left() {
    on_wire(|a, b| async move {
        let listener = TcpListener::bind(&b, 80).unwrap();
        spawn(async move {
            let stream = listener.accept().await;
            stream.write_all(b"503 and goodbye").await.unwrap();
            // Closing keeps the socket until its data is out: the room for
            // that was kept when the stream was accepted.
            let _heap_full = crate::testing::refuse_size(
                4 * size_of::<(smoltcp::iface::SocketHandle, Option<time::Instant>)>(),
            );
            drop(stream);
        });
        let client = TcpStream::connect(&a, SocketAddr::from((IP_B, 80))).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0; 64];
        loop {
            match client.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => panic!("the stream was reset after {got:?}: {e:?}"),
            }
        }
        assert_eq!(got, b"503 and goodbye");
        assert_eq!(b.inner.borrow().streams, 0);
    });
}

#[test]
fn ephemeral_ports_are_spread_over_the_dynamic_range() {
    // RFC 6056 §3.3.1: each port drawn at random, so that the next one is not the last plus one.
    let ports: Vec<u16> = on_wire(|a, _b| async move {
        let sockets: Vec<UdpSocket> = (0..64).map(|_| UdpSocket::bind(&a, 0).unwrap()).collect();
        sockets.iter().map(UdpSocket::port).collect()
    });
    assert!(ports.iter().all(|&p| p >= 49152));
    let successors = ports.windows(2).filter(|w| w[1] == w[0].wrapping_add(1)).count();
    assert!(successors < 4, "{successors} of 63 ports were the one before plus one: {ports:?}");
    let (min, max) = (ports.iter().min().unwrap(), ports.iter().max().unwrap());
    assert!(max - min > 8192, "64 ports within {min}..={max}");
}
