//! Echo services (RFC 862, 863, 864): UDP and TCP echo on port 7, a TCP
//! discard sink on 9 and a chargen source on 19, for testing and measuring
//! the network path, on every vif the domain has, including vifs attached while it runs.
//! Serves until `xl shutdown`.
#![no_std]
#![no_main]

use mote::net::{Stack, TcpListener, TcpOptions, TcpStream, UdpSocket, UpError};

mote::main!(main);

const ECHO: u16 = 7;
const DISCARD: u16 = 9;
const CHARGEN: u16 = 19;

fn main() -> Result<(), UpError> {
    mote::block_on(async {
        // Every vif serves, each with its own stack and address, and so does every vif
        // attached while the domain runs.
        let (stacks, mut attached) = mote::net::up_all_and_watch()?;
        for stack in stacks {
            serve_vif(stack).await;
        }
        mote::ready();
        mote::spawn(async move {
            loop {
                match attached.next().await {
                    Ok(stack) => mote::spawn(serve_vif(stack)),
                    Err(e) => mote::log::warn!("echo: attached vif: {e}"),
                }
            }
        });
        let request = mote::lifecycle::shutdown_requested().await;
        mote::println!("echo: {request:?} requested, stopping");
        Ok(())
    })
}

/// Serves every service on `stack` once it has an IPv4 address.
async fn serve_vif(stack: Stack) {
    let address = stack.wait_ipv4().await;
    let udp = UdpSocket::bind(&stack, ECHO).expect("port 7 is free on a new stack");
    mote::spawn(async move {
        let mut buf = [0u8; 1500];
        loop {
            let (n, from) = udp.recv_from(&mut buf).await;
            if let Err(e) = udp.send_to(&buf[..n], from).await {
                mote::log::warn!("udp echo to {from}: {e:?}");
            }
        }
    });
    serve(&stack, ECHO, echo);
    serve(&stack, DISCARD, discard);
    serve(&stack, CHARGEN, chargen);
    mote::println!("echo: serving on {} (udp/7 tcp/7 tcp/9 tcp/19)", address.address());
}

/// Accepts connections on `port` forever, each handled by its own task.
fn serve<F: core::future::Future<Output = ()> + 'static>(
    stack: &Stack,
    port: u16,
    handle: fn(TcpStream) -> F,
) {
    // Windows of 64 KiB keep a bulk transfer moving; 64 pending connections cap what a burst
    // of SYNs can take (8 MiB).
    let options = TcpOptions { rx_buffer: 64 * 1024, tx_buffer: 64 * 1024, backlog: 64 };
    let listener = TcpListener::bind_with(stack, port, options).expect("well-known ports are free at start");
    mote::spawn(async move {
        loop {
            let stream = listener.accept().await;
            mote::spawn(handle(stream));
        }
    });
}

async fn echo(stream: TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = stream.read(&mut buf).await {
        if stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn discard(stream: TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(1..) = stream.read(&mut buf).await {}
}

async fn chargen(stream: TcpStream) {
    // RFC 864's rotating 72-character lines of printable ASCII.
    let mut line = [0u8; 74];
    let mut first = 0u8;
    loop {
        for (i, b) in line[..72].iter_mut().enumerate() {
            *b = b' ' + (first + i as u8) % 95;
        }
        line[72..].copy_from_slice(b"\r\n");
        if stream.write_all(&line).await.is_err() {
            return;
        }
        first = (first + 1) % 95;
    }
}
