//! A static web server: HTTP/1.1 on port 80 for the site on the first disk, or else the one
//! embedded at build time (`site/`, or the directory given to `cargo xtask build web --site`),
//! answered by `mote-http`. Slow or silent clients are cut off by a header-read and an idle
//! timeout; the connections served at once are as many as the heap holds at their largest.
//! Beyond that a new connection takes the place of the one that has waited longest for a
//! request head ([`mote_http::Pool`]), and is refused with 503 only when none is waiting, as
//! is a request the heap has no room for. A site on the disk larger than memory stops the
//! guest at start with an error naming the file and the sizes.
//! Serves until `xl shutdown`.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::rc::Rc;
use alloc::string::{String, ToString};
use core::cell::{Cell, RefCell};
use core::future::{poll_fn, Future};
use core::net::IpAddr;
use core::pin::pin;
use core::sync::atomic::{AtomicU64, Ordering};
use core::task::{Poll, Waker};
use core::time::Duration;
use mote::net::{Stack, TcpListener, TcpOptions, TcpStream, UpError};
use mote::time::timeout;
use mote::Instant;
use mote_http::{Admission, Connection, Id, Response, StaticSite, Timeouts, MAX_HEAD};

mote::main!(main);

mod disk;

mod site {
    include!(concat!(env!("OUT_DIR"), "/site.rs"));
}

const PORT: u16 = 80;
/// Small windows: pages are small, and a thousand connections fit in a few tens of MiB.
const TCP: TcpOptions = TcpOptions { rx_buffer: 4096, tx_buffer: 16 * 1024, backlog: 16 };
/// Bytes taken per read from a connection.
const READ_SIZE: usize = 2048;
/// The most a served connection holds: its TCP buffers, the request bytes kept (below
/// `MAX_HEAD` plus one read), and its task, socket and response head.
const CONNECTION_BYTES: u64 = (TCP.rx_buffer + TCP.tx_buffer + MAX_HEAD + READ_SIZE + 4096) as u64;
/// Heap kept for the rest: the network device's rings and buffers, a full backlog, refused
/// connections, the stack and the executor.
const RESERVED_BYTES: u64 =
    (mote::net::VIF_HEAP_BYTES + TCP.backlog * (TCP.rx_buffer + TCP.tx_buffer) + REST_BYTES) as u64;
/// The stack, the executor, the listener and refused connections in their last moments.
const REST_BYTES: usize = 256 * 1024;
/// A request head must arrive in full within 10 s of the connection's start, of the end of the
/// request before it, or of its first byte after an idle spell (slowloris); a connection with
/// nothing of a request under way after one is answered is closed after 30 s.
const TIMEOUTS: Timeouts = Timeouts { header: Duration::from_secs(10), idle: Duration::from_secs(30) };
/// Sending one response may take this long (a client that stops reading is cut off).
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

fn main() -> Result<(), String> {
    // The first disk's site when the domain has a disk, else the embedded one.
    let (files, site_heap) = match disk::site()? {
        Some(files) => (files, disk::heap_bytes(files)),
        None => (site::FILES, 0),
    };
    let site = StaticSite::new(files);
    mote::block_on(async move {
        // Every vif serves, and so does every vif attached while the domain runs; the
        // connection limit is shared, and a site read from disk lives in the heap too.
        let (stacks, mut attached) = mote::net::up_all_and_watch().map_err(|e: UpError| e.to_string())?;
        let heap_bytes = mote::boot_info().heap_bytes.saturating_sub(site_heap);
        let pool = RefCell::new(Pool::new(max_connections(heap_bytes), TIMEOUTS));
        let limit = Rc::new(Limit { pool, vifs: Cell::new(0), heap_bytes });
        for stack in stacks {
            serve_vif(stack, site, limit.clone()).await;
        }
        mote::ready();
        mote::spawn(async move {
            loop {
                match attached.next().await {
                    Ok(stack) => mote::spawn(serve_vif(stack, site, limit.clone())),
                    Err(e) => mote::log::warn!("web: attached vif: {e}"),
                }
            }
        });
        // A content disk attached again is not read: the content is loaded once, at start.
        // (Without the disk reader there is no disk watch: the image refused disks at start.)
        #[cfg(all(target_os = "none", feature = "disk"))]
        mote::disk::log_attached("web", "the site is read at start");
        let request = mote::lifecycle::shutdown_requested().await;
        mote::println!("web: {request:?} requested, stopping");
        Ok(())
    })
}

/// How many connections a heap of `heap_bytes` serves at once, each at its largest.
fn max_connections(heap_bytes: u64) -> usize {
    (heap_bytes.saturating_sub(RESERVED_BYTES) / CONNECTION_BYTES).max(1) as usize
}

/// Peers' addresses, and what closes a connection put out of the pool.
type Pool = mote_http::Pool<Option<IpAddr>, Rc<Eviction>>;

/// The connections served at once, over every vif.
struct Limit {
    pool: RefCell<Pool>,
    /// Vifs serving; each past the first takes its rings and buffers from the connections'.
    vifs: Cell<u64>,
    /// The heap less what a site read from disk takes.
    heap_bytes: u64,
}

impl Limit {
    fn max(&self) -> usize {
        let more_vifs = self.vifs.get().saturating_sub(1) * mote::net::VIF_HEAP_BYTES as u64;
        max_connections(self.heap_bytes.saturating_sub(more_vifs))
    }
}

/// Serves the site on `stack` once it has an IPv4 address.
async fn serve_vif(stack: Stack, site: StaticSite, limit: Rc<Limit>) {
    limit.vifs.set(limit.vifs.get() + 1);
    limit.pool.borrow_mut().set_max(limit.max());
    let address = stack.wait_ipv4().await;
    let listener = TcpListener::bind_with(&stack, PORT, TCP).expect("port 80 is free on a new stack");
    mote::println!(
        "web: serving {} files on http://{}/ to at most {} connections at once (heap {} KiB)",
        site.files().len(),
        address.address(),
        limit.max(),
        mote::boot_info().heap_bytes / 1024
    );
    mote::spawn(async move {
        loop {
            let stream = listener.accept().await;
            let peer = stream.peer_addr().map(|a| a.ip());
            let eviction = Rc::new(Eviction::default());
            let Admission::In { id, evicted } =
                limit.pool.borrow_mut().admit(peer, clock(), eviction.clone())
            else {
                mote::spawn(async move { refuse(&stream).await });
                continue;
            };
            if let Some(evicted) = evicted {
                evicted.handle.evict(evicted.between_requests);
            }
            let limit = limit.clone();
            mote::spawn(async move {
                serve(&stream, &site, &limit.pool, id, &eviction).await;
                limit.pool.borrow_mut().remove(id);
            });
        }
    });
}

/// Requests refused with 503 because the heap had no room for their bytes.
static REFUSED_FOR_MEMORY: AtomicU64 = AtomicU64::new(0);

/// Seconds since the Unix epoch, for `Date`.
fn now() -> u64 {
    mote::wallclock().0
}

/// Time since boot, the pool's clock.
fn clock() -> Duration {
    Duration::from_nanos(Instant::now().as_nanos())
}

/// Tells a connection's task that the pool gave its place to a newer connection.
#[derive(Default)]
struct Eviction {
    /// Set on eviction: whether the connection was between requests.
    between_requests: Cell<Option<bool>>,
    waker: Cell<Option<Waker>>,
}

impl Eviction {
    fn evict(&self, between_requests: bool) {
        self.between_requests.set(Some(between_requests));
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// `future`'s output, or `Err(between_requests)` once the connection is evicted.
    async fn unless_evicted<F: Future>(&self, future: F) -> Result<F::Output, bool> {
        let mut future = pin!(future);
        poll_fn(|cx| {
            if let Some(between_requests) = self.between_requests.get() {
                return Poll::Ready(Err(between_requests));
            }
            self.waker.set(Some(cx.waker().clone()));
            future.as_mut().poll(cx).map(Ok)
        })
        .await
    }
}

/// Answers requests on one connection until either side closes it, a timeout ends it or the
/// pool evicts it (with a 503 unless it was between requests); the caller drops the stream,
/// which closes it.
async fn serve(stream: &TcpStream, site: &StaticSite, pool: &RefCell<Pool>, id: Id, eviction: &Eviction) {
    let mut conn = Connection::new();
    let mut buf = [0u8; READ_SIZE];
    loop {
        let mut answered = false;
        while let Some(response) = conn.next_response(site, now()) {
            pool.borrow_mut().answering(id);
            answered = true;
            if !matches!(timeout(SEND_TIMEOUT, send(stream, &response)).await, Ok(true)) {
                return;
            }
        }
        if conn.is_closed() {
            return;
        }
        if answered {
            pool.borrow_mut().answered(id, clock(), !conn.is_idle());
        }
        let wait = pool.borrow().deadline(id).map_or(Duration::ZERO, |d| d.saturating_sub(clock()));
        match timeout(wait, eviction.unless_evicted(stream.read(&mut buf))).await {
            Ok(Ok(Ok(n @ 1..))) => {
                pool.borrow_mut().bytes_arrived(id, clock());
                let fed = conn.feed(&buf[..n]);
                if !fed {
                    let refused = REFUSED_FOR_MEMORY.fetch_add(1, Ordering::Relaxed) + 1;
                    mote::log::warn!("web: out of memory for a request: answered 503 ({refused} so far)");
                }
            }
            Ok(Err(false)) => return refuse(stream).await,
            _ => return,
        }
    }
}

/// Queues a response's head and body; `false` if the connection failed.
async fn send(stream: &TcpStream, response: &Response<'_>) -> bool {
    stream.write_all(&response.head).await.is_ok() && stream.write_all(response.body).await.is_ok()
}

/// Tells a client over the limit to come back later.
async fn refuse(stream: &TcpStream) {
    let _ = timeout(SEND_TIMEOUT, stream.write_all(&mote_http::refusal(now()))).await;
}
