//! Disks on the executor: [`AsyncDisk`]'s `read`, `write`, `flush` and
//! `discard` are futures, so several tasks keep many requests with the
//! backend at once (up to the ring's slots and the buffer pool's pages).
//!
//! Requests go out through blkfront's non-blocking interface; a [`Driver`]
//! on the executor takes the backend's answers when its event channel fires,
//! parks them by id and wakes the waiting tasks, each of which collects its
//! own. The driver also keeps the disk's timeout: a backend silent for that
//! long with requests out fails the disk, and every waiting call returns
//! [`DiskError::Timeout`]. And it watches the backend: once it goes away
//! (`xl block-detach`), every waiting and later call returns
//! [`DiskError::Gone`] and the disk's end is closed.
//!
//! A call dropped with requests out (its task dropped, or a
//! [`crate::time::timeout`] around it fired) gives back their buffer pages
//! as they are answered, so that it costs later calls no room.

use crate::executor::Driver;
use crate::time::Instant;
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::future::poll_fn;
use core::task::{Poll, Waker};
use mote_blkfront::device::{Completion, Disk, DiskError, DiskInfo, Features, Signal, Start, Stats};

struct Shared {
    disk: RefCell<Disk>,
    signal: RefCell<Box<dyn Signal>>,
    /// The ticket of each request with the backend, by ring id: a ring id
    /// is free again once answered, while its answer may wait here.
    tickets: RefCell<BTreeMap<u64, u64>>,
    next_ticket: Cell<u64>,
    /// Answered requests not collected yet, by ticket.
    done: RefCell<BTreeMap<u64, Completion>>,
    /// Tickets of requests whose call was dropped: nobody collects their
    /// answers, which are finished as they come.
    abandoned: RefCell<BTreeSet<u64>>,
    /// Tasks waiting for an answer or for room.
    waiting: RefCell<Vec<Waker>>,
    /// When the backend last answered, or requests went out to an idle one.
    progress: Cell<Instant>,
    /// Clock of the executor (for the timeout).
    now: Box<dyn Fn() -> Instant>,
}

impl Drop for Shared {
    /// The last clone and the driver are gone: the disk is closed.
    fn drop(&mut self) {
        self.signal.get_mut().close(self.disk.get_mut());
    }
}

impl Shared {
    /// Takes every answer there is; wakes the waiting tasks if any came (or
    /// the disk failed).
    fn drain(&self) {
        let mut disk = self.disk.borrow_mut();
        let mut woke = false;
        loop {
            match disk.poll_completion() {
                Ok(Some(done)) => {
                    // Validated: only ids we posted come back.
                    let ticket = self.tickets.borrow_mut().remove(&done.id);
                    if let Some(ticket) = ticket {
                        if self.abandoned.borrow_mut().remove(&ticket) {
                            give_back(&mut disk, done);
                        } else {
                            self.done.borrow_mut().insert(ticket, done);
                        }
                    }
                    woke = true;
                }
                Ok(None) => break,
                Err(_) => {
                    woke = true;
                    break;
                }
            }
        }
        if woke {
            self.progress.set((self.now)());
            self.waiting.borrow_mut().drain(..).for_each(Waker::wake);
        }
    }

    /// Requests with the backend.
    fn outstanding(&self) -> usize {
        self.disk.borrow().in_flight()
    }
}

/// Gives back the pages of an answer nobody collects; its call is gone, so
/// a failure of its own (a failed write, say) is only logged.
fn give_back(disk: &mut Disk, done: Completion) {
    if let Err(e @ DiskError::Backend(_)) = disk.finish(done, &mut []) {
        log::warn!("disk: a dropped call's request failed: {e}");
    }
}

/// The requests a call has out: (ticket, offset, len). A call that returns
/// normally has none left; one dropped before that (or ended by the disk's
/// failure) gives back the pages of those answered already, and leaves the
/// others to [`Shared::drain`] to finish as they come.
struct Out<'a> {
    shared: &'a Shared,
    requests: Vec<(u64, usize, usize)>,
}

impl Drop for Out<'_> {
    fn drop(&mut self) {
        if self.requests.is_empty() {
            return;
        }
        let shared = self.shared;
        // No borrow of `shared` is live: a call's future is dropped between its polls, and
        // none of `Shared`'s borrows reaches out to drop a task.
        let mut disk = shared.disk.borrow_mut();
        let mut freed = false;
        for (ticket, _, _) in self.requests.drain(..) {
            let done = shared.done.borrow_mut().remove(&ticket);
            match done {
                Some(done) => {
                    give_back(&mut disk, done);
                    freed = true;
                }
                None => {
                    shared.abandoned.borrow_mut().insert(ticket);
                }
            }
        }
        drop(disk);
        if freed {
            // As for collected answers: a task may wait for these pages.
            shared.waiting.borrow_mut().drain(..).for_each(Waker::wake);
        }
    }
}

/// A disk whose calls are futures, shared by the tasks that clone it.
#[derive(Clone)]
pub struct AsyncDisk {
    shared: Rc<Shared>,
}

/// The executor's side of an [`AsyncDisk`]: takes answers and keeps time.
pub struct DiskDriver {
    shared: Rc<Shared>,
}

impl Driver for DiskDriver {
    fn poll(&mut self, now: Instant) -> Option<Instant> {
        let shared = &self.shared;
        let gone = shared.signal.borrow_mut().gone();
        if let Some(state) = gone {
            let mut disk = shared.disk.borrow_mut();
            if disk.failure() != Some(DiskError::Gone(state)) {
                disk.backend_gone(state);
                shared.signal.borrow_mut().close(&mut disk);
                shared.waiting.borrow_mut().drain(..).for_each(Waker::wake);
            }
            return None;
        }
        shared.drain();
        if shared.outstanding() == 0 || shared.disk.borrow().failure().is_some() {
            return None;
        }
        let deadline = shared.progress.get().saturating_add(shared.disk.borrow().timeout());
        if now < deadline {
            return Some(deadline);
        }
        shared.disk.borrow_mut().time_out();
        shared.waiting.borrow_mut().drain(..).for_each(Waker::wake);
        None
    }
}

/// One call's I/O.
enum Io<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
    Flush,
    Discard(u64),
}

impl AsyncDisk {
    /// Wraps `disk`, reaching its backend through `signal`; `now` is the
    /// executor's clock. The driver must be added to the executor (and the
    /// disk's port made to wake it) for answers to be noticed.
    pub fn new(
        disk: Disk,
        signal: Box<dyn Signal>,
        now: Box<dyn Fn() -> Instant>,
    ) -> (AsyncDisk, DiskDriver) {
        let shared = Rc::new(Shared {
            disk: RefCell::new(disk),
            signal: RefCell::new(signal),
            tickets: RefCell::new(BTreeMap::new()),
            next_ticket: Cell::new(0),
            done: RefCell::new(BTreeMap::new()),
            abandoned: RefCell::new(BTreeSet::new()),
            waiting: RefCell::new(Vec::new()),
            progress: Cell::new(Instant::default()),
            now,
        });
        (AsyncDisk { shared: shared.clone() }, DiskDriver { shared })
    }

    /// The disk's geometry, as its backend announced it.
    pub fn info(&self) -> DiskInfo {
        self.shared.disk.borrow().info()
    }

    /// What the backend offers (flush, barriers, indirect requests, …).
    pub fn features(&self) -> Features {
        self.shared.disk.borrow().features()
    }

    /// The requests made so far, for measuring.
    pub fn stats(&self) -> Stats {
        self.shared.disk.borrow().stats()
    }

    /// Reads `buf.len()` bytes (whole sectors) from `sector` on.
    pub async fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        self.run(sector, Io::Read(buf)).await
    }

    /// Writes `data` (whole sectors) from `sector` on.
    pub async fn write(&self, sector: u64, data: &[u8]) -> Result<(), DiskError> {
        self.run(sector, Io::Write(data)).await
    }

    /// Makes written data durable.
    pub async fn flush(&self) -> Result<(), DiskError> {
        self.run(0, Io::Flush).await
    }

    /// Tells the backend `count` sectors from `sector` on are unused: the
    /// whole discard extents among them (see
    /// [`mote_blkfront::device::Discard::extents`]); returns how many
    /// sectors that was.
    pub async fn discard(&self, sector: u64, count: u64) -> Result<u64, DiskError> {
        let (features, info) = (self.features(), self.info());
        let discard = features.discard.ok_or(DiskError::DiscardUnsupported)?;
        let Some((sector, count)) = discard.extents(sector, count, info.sector_size) else {
            return Ok(0);
        };
        self.run(sector, Io::Discard(count)).await?;
        Ok(count)
    }

    /// Posts the call's requests as room allows, collects their answers,
    /// and returns once all are in (or the disk failed).
    async fn run(&self, sector: u64, mut io: Io<'_>) -> Result<(), DiskError> {
        let shared = &self.shared;
        let (size, max) = {
            let disk = shared.disk.borrow();
            (disk.info().sector_size as usize, disk.max_request())
        };
        let len = match &io {
            Io::Read(b) => b.len(),
            Io::Write(d) => d.len(),
            Io::Flush | Io::Discard(_) => 0,
        };
        if len % size != 0 {
            return Err(DiskError::Unaligned { len });
        }
        let mut out = Out { shared, requests: Vec::new() };
        let mut next = 0;
        let mut posted_all = false;
        let mut failure = None;
        poll_fn(|cx| {
            shared.drain();
            let mut disk = shared.disk.borrow_mut();
            let outstanding = out.requests.len();
            out.requests.retain(|&(ticket, offset, n)| {
                let Some(done) = shared.done.borrow_mut().remove(&ticket) else { return true };
                let result = match &mut io {
                    Io::Read(b) => disk.finish(done, &mut b[offset..offset + n]),
                    _ => disk.finish(done, &mut []),
                };
                if let Err(e) = result {
                    failure.get_or_insert(e);
                }
                false
            });
            let collected = out.requests.len() < outstanding;
            while !posted_all && failure.is_none() {
                let n = (len - next).min(max);
                let at = sector + (next / size) as u64;
                let start = match &io {
                    Io::Read(_) => Start::Read(n),
                    Io::Write(d) => Start::Write(&d[next..next + n]),
                    Io::Flush => Start::Flush,
                    Io::Discard(count) => Start::Discard(*count),
                };
                let idle = disk.in_flight() == 0;
                match disk.start(at, start) {
                    Ok(Some(id)) => {
                        if idle {
                            shared.progress.set((shared.now)());
                        }
                        let ticket = shared.next_ticket.get();
                        shared.next_ticket.set(ticket + 1);
                        shared.tickets.borrow_mut().insert(id, ticket);
                        out.requests.push((ticket, next, n));
                        next += n;
                        posted_all = next >= len;
                    }
                    Ok(None) => break,
                    Err(e) => failure = Some(e),
                }
            }
            disk.push(&mut **shared.signal.borrow_mut());
            if collected {
                // Collected answers gave their pages and ring slots back: a task that found
                // no room may have taken these answers in itself and now waits for them.
                shared.waiting.borrow_mut().drain(..).for_each(Waker::wake);
            }
            if let Some(e) = disk.failure() {
                // Requests still out stay with the backend; their pages are never reused.
                return Poll::Ready(Err(e));
            }
            if out.requests.is_empty() && (posted_all || failure.is_some()) {
                return Poll::Ready(failure.map_or(Ok(()), Err));
            }
            shared.waiting.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::{self, Executor};
    use crate::testing::FakePlatform;
    use core::future::Future;
    use core::time::Duration;
    use mote_blkfront::peer::Peer;
    use mote_xen::event::Port;
    use mote_xen::xenbus::XenbusState;
    use std::rc::Rc as StdRc;

    /// The peer, answering what was published on every turn of the
    /// executor (after the tasks ran, like a backend on another CPU).
    struct Serve(StdRc<RefCell<Peer>>);

    impl Driver for Serve {
        fn poll(&mut self, _: Instant) -> Option<Instant> {
            self.0.borrow_mut().serve();
            None
        }
    }

    /// Notifications go nowhere: the peer is served by [`Serve`], or never.
    struct Silent;

    impl Signal for Silent {
        fn notify(&mut self, _: Port) {}
        fn wait(&mut self, _: Port, _: Duration) -> bool {
            unreachable!("the async path never blocks")
        }
    }

    /// A backend that never answers and goes to Closing once `closing` is set. Closing
    /// releases the disk as the runtime's does, and poisons the ring pages, which the heap
    /// may hand out again from then on; `late` counts the events sent after that.
    struct Detaching {
        peer: StdRc<RefCell<Peer>>,
        closing: StdRc<Cell<bool>>,
        closed: StdRc<Cell<bool>>,
        late: StdRc<Cell<usize>>,
    }

    impl Detaching {
        fn new(peer: Peer) -> Detaching {
            Detaching {
                peer: StdRc::new(RefCell::new(peer)),
                closing: StdRc::default(),
                closed: StdRc::default(),
                late: StdRc::default(),
            }
        }
    }

    const POISON: u8 = 0xA5;

    impl Signal for Detaching {
        fn notify(&mut self, _: Port) {
            if self.closed.get() {
                self.late.set(self.late.get() + 1);
            }
        }
        fn wait(&mut self, _: Port, _: Duration) -> bool {
            unreachable!("the async path never blocks")
        }
        fn gone(&mut self) -> Option<XenbusState> {
            self.closing.get().then_some(XenbusState::Closing)
        }
        fn close(&mut self, disk: &mut Disk) {
            if !self.closed.replace(true) {
                disk.detach();
                self.peer.borrow_mut().poison_ring(POISON);
            }
        }
    }

    fn disk_and_peer() -> (Disk, Peer) {
        let info = DiskInfo { sectors: 2048, sector_size: 512, read_only: false, flush: true };
        let features = Features { ring_pages: 4, indirect_segments: 32, ..Features::BASIC };
        Peer::connect(info, features, 4 * 33)
    }

    /// A disk of 1 MiB with 12 pages of buffer pool (three reads of 16 KiB), over the peer.
    fn twelve_pages(features: Features) -> (AsyncDisk, DiskDriver, StdRc<RefCell<Peer>>) {
        let info = DiskInfo { sectors: 2048, sector_size: 512, read_only: false, flush: true };
        let (disk, peer) = Peer::connect(info, features, 12);
        let (disk, driver) = AsyncDisk::new(disk, Box::new(Silent), Box::new(executor::now));
        (disk, driver, StdRc::new(RefCell::new(peer)))
    }

    #[test]
    fn many_tasks_keep_the_ring_full_and_each_gets_its_data() {
        let (disk, peer) = disk_and_peer();
        let peer = StdRc::new(RefCell::new(peer));
        let (disk, driver) = AsyncDisk::new(disk, Box::new(Silent), Box::new(executor::now));
        for (i, b) in peer.borrow_mut().disk.iter_mut().enumerate() {
            *b = (i / 4096) as u8;
        }
        let mut executor = Executor::new(FakePlatform::default());
        let results = StdRc::new(RefCell::new(Vec::new()));
        executor.block_on(async {
            executor::add_driver(Serve(peer.clone()));
            executor::add_driver(driver);
            for n in 0..128u64 {
                let (disk, results) = (disk.clone(), results.clone());
                executor::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let block = n * 37 % 256;
                    disk.read(block * 8, &mut buf).await.unwrap();
                    results.borrow_mut().push(buf.iter().all(|&b| b == block as u8));
                });
            }
            // Yield once so that every task posts its read before anyone is answered.
            crate::time::sleep(Duration::from_millis(1)).await;
            // A large write and read from the main task meanwhile.
            let data = vec![7u8; 300 * 1024];
            disk.write(1024, &data).await.unwrap();
            let mut back = vec![0u8; data.len()];
            disk.read(1024, &mut back).await.unwrap();
            assert_eq!(back, data);
            disk.flush().await.unwrap();
            while results.borrow().len() < 128 {
                crate::time::sleep(Duration::from_millis(1)).await;
            }
        });
        assert!(results.borrow().iter().all(|&ok| ok), "a task read the wrong block");
        assert_eq!(disk.stats().peak_in_flight, 128, "the 128 small reads were out together: the whole ring");
        assert_eq!(peer.borrow().peak_outstanding, 128);
    }

    #[test]
    fn a_task_waiting_for_room_is_woken_when_another_frees_it() {
        // 12 pages of pool, taken by three reads of 4 pages. The backend answers them after
        // the driver looked (the driver is added before the peer), so the late reader is the
        // one that takes the answers in, finds no room yet (the owners have not collected
        // them) and waits: it must be woken when the owners give their pages back.
        let (disk, driver, peer) = twelve_pages(Features::BASIC);
        let mut executor = Executor::new(FakePlatform::default());
        let results = StdRc::new(RefCell::new(Vec::new()));
        let turns = executor.block_on(async {
            executor::add_driver(driver);
            executor::add_driver(Serve(peer.clone()));
            for n in 0..4u64 {
                let (disk, results) = (disk.clone(), results.clone());
                executor::spawn(async move {
                    if n == 3 {
                        crate::time::sleep(Duration::from_millis(1)).await;
                    }
                    let r = disk.read(n * 64, &mut [0u8; 16 * 1024]).await;
                    results.borrow_mut().push((n, r));
                });
            }
            let mut turns = 0;
            while results.borrow().len() < 4 && turns < 1000 {
                crate::time::sleep(Duration::from_millis(1)).await;
                turns += 1;
            }
            turns
        });
        let results = results.borrow();
        assert_eq!(results.len(), 4, "a task waiting for room was never woken ({turns} turns): {results:?}");
        assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    }

    #[test]
    fn dropped_calls_give_their_pages_back_answered_or_not() {
        // 12 pages of pool, taken by three reads of 4 pages: one is dropped once its answer is
        // parked, one collects its own, one is dropped by a timeout before the backend answers.
        // Then a read of 11 pages (one request) needs all but one of them back.
        let (disk, driver, peer) = twelve_pages(Features::BASIC);
        let mut executor = Executor::new(FakePlatform::default());
        let result = StdRc::new(RefCell::new(None));
        let turns = executor.block_on(async {
            executor::add_driver(driver);
            let (mut a, mut b, mut c) = ([0u8; 16 * 1024], [0u8; 16 * 1024], [0u8; 16 * 1024]);
            let mut parked = Box::pin(disk.read(0, &mut a));
            let mut collected = Box::pin(disk.read(32, &mut b));
            poll_fn(|cx| {
                assert!(parked.as_mut().poll(cx).is_pending() && collected.as_mut().poll(cx).is_pending());
                Poll::Ready(())
            })
            .await;
            let abandoned = crate::time::timeout(Duration::from_millis(1), disk.read(64, &mut c));
            assert_eq!(abandoned.await, Err(crate::time::Elapsed), "the backend has not answered yet");
            assert_eq!(disk.stats().requests, 3, "the pool is taken");
            peer.borrow_mut().serve();
            crate::time::sleep(Duration::from_millis(1)).await;
            assert!(disk.shared.done.borrow().contains_key(&0), "the driver parked the first read's answer");
            drop(parked);
            collected.await.unwrap();
            executor::add_driver(Serve(peer.clone()));
            let (reader, out) = (disk.clone(), result.clone());
            executor::spawn(async move {
                *out.borrow_mut() = Some(reader.read(0, &mut [0u8; 44 * 1024]).await);
            });
            let mut turns = 0;
            while result.borrow().is_none() && turns < 100 {
                crate::time::sleep(Duration::from_millis(1)).await;
                turns += 1;
            }
            turns
        });
        assert_eq!(
            *result.borrow(),
            Some(Ok(())),
            "the pages of the dropped calls never came back ({turns} turns)"
        );
    }

    #[test]
    fn a_silent_backend_times_out_every_waiting_call() {
        let (disk, _peer) = disk_and_peer();
        let (disk, driver) = AsyncDisk::new(disk, Box::new(Silent), Box::new(executor::now));
        let platform = FakePlatform::default();
        let mut executor = Executor::new(platform.clone());
        let other = StdRc::new(RefCell::new(None));
        let (read, write) = executor.block_on(async {
            executor::add_driver(driver);
            let (reader, result) = (disk.clone(), other.clone());
            executor::spawn(async move {
                *result.borrow_mut() = Some(reader.read(0, &mut [0u8; 512]).await);
            });
            let write = disk.write(8, &[1u8; 512]).await;
            while other.borrow().is_none() {
                crate::time::sleep(Duration::from_millis(1)).await;
            }
            (other.borrow_mut().take().unwrap(), write)
        });
        let timeout = DiskError::Timeout(Duration::from_secs(30));
        assert_eq!((read, write), (Err(timeout), Err(timeout)));
        assert_eq!(platform.sleeps()[0], Duration::from_secs(30));
        // The disk stays failed.
        let mut executor = Executor::new(FakePlatform::default());
        assert_eq!(executor.block_on(disk.flush()), Err(timeout));
    }

    /// Four tasks read `len` bytes each, one after the other on the disk; once `out` of the
    /// reads are with the backend, it goes to Closing. The four results, and that of a
    /// write made afterwards.
    fn reads_when_detached(
        disk: Disk,
        signal: Detaching,
        len: usize,
        out: u64,
        platform: FakePlatform,
    ) -> (Vec<Result<(), DiskError>>, Result<(), DiskError>) {
        let closing = signal.closing.clone();
        let (disk, driver) = AsyncDisk::new(disk, Box::new(signal), Box::new(executor::now));
        Executor::new(platform).block_on(async {
            executor::add_driver(driver);
            let results = StdRc::new(RefCell::new(Vec::new()));
            for n in 0..4u64 {
                let (disk, results) = (disk.clone(), results.clone());
                executor::spawn(async move {
                    let r = disk.read(n * (len / 512) as u64, &mut vec![0u8; len]).await;
                    results.borrow_mut().push(r);
                });
            }
            crate::time::sleep(Duration::from_millis(1)).await;
            assert_eq!(disk.stats().requests, out, "the reads with the backend");
            closing.set(true);
            while results.borrow().len() < 4 {
                crate::time::sleep(Duration::from_millis(1)).await;
            }
            let later = disk.write(0, &[0u8; 512]).await;
            let all = results.borrow().clone();
            (all, later)
        })
    }

    #[test]
    fn a_detached_backend_fails_every_waiting_call_and_the_disk_is_closed() {
        let (disk, peer) = disk_and_peer();
        let signal = Detaching::new(peer);
        let closed = signal.closed.clone();
        let platform = FakePlatform::default();
        let results = reads_when_detached(disk, signal, 4096, 4, platform.clone());
        let gone = DiskError::Gone(XenbusState::Closing);
        assert_eq!(results, (vec![Err(gone); 4], Err(gone)));
        assert!(closed.get(), "the disk's end was closed");
        assert!(platform.sleeps().iter().all(|&s| s < Duration::from_secs(1)), "no wait for the timeout");
    }

    #[test]
    fn tasks_woken_by_a_detach_never_touch_the_released_ring() {
        // 12 pages of pool: three reads of 4 pages go out, a fourth waits for room, when the
        // backend closes. The tasks wake after the disk was released.
        let info = DiskInfo { sectors: 2048, sector_size: 512, read_only: false, flush: true };
        let (disk, peer) = Peer::connect(info, Features::BASIC, 12);
        let signal = Detaching::new(peer);
        let (late, peer) = (signal.late.clone(), signal.peer.clone());
        let results = reads_when_detached(disk, signal, 16 * 1024, 3, FakePlatform::default());
        let gone = DiskError::Gone(XenbusState::Closing);
        assert_eq!(results, (vec![Err(gone); 4], Err(gone)));
        assert!(peer.borrow().ring_poisoned(POISON), "a task wrote the released ring pages");
        assert_eq!(late.get(), 0, "a task signalled the released event channel");
    }

    #[test]
    fn the_largest_request_goes_out_when_it_needs_several_indirect_pages() {
        // `buffer_pages = 600`, `indirect_segments = 1024`, a backend offering 1024: the
        // largest request is as many pages as leave room for its indirect pages.
        let info = DiskInfo { sectors: 16 * 1024, sector_size: 512, read_only: false, flush: true };
        let (disk, mut peer) =
            Peer::connect(info, Features { indirect_segments: 1024, ..Features::BASIC }, 600);
        for (i, b) in peer.disk.iter_mut().enumerate() {
            *b = (i / 4096) as u8;
        }
        let peer = StdRc::new(RefCell::new(peer));
        let (disk, driver) = AsyncDisk::new(disk, Box::new(Silent), Box::new(executor::now));
        let mut executor = Executor::new(FakePlatform::default());
        let result = StdRc::new(RefCell::new(None));
        let turns = executor.block_on(async {
            executor::add_driver(Serve(peer.clone()));
            executor::add_driver(driver);
            let (reader, out) = (disk.clone(), result.clone());
            executor::spawn(async move {
                let mut buf = vec![0u8; 4 * 1024 * 1024];
                let read = reader.read(0, &mut buf).await;
                let right = buf.iter().enumerate().all(|(i, &b)| b == (i / 4096) as u8);
                *out.borrow_mut() = Some(read.map(|()| right));
            });
            let mut turns = 0;
            while result.borrow().is_none() && turns < 100 {
                crate::time::sleep(Duration::from_millis(1)).await;
                turns += 1;
            }
            turns
        });
        assert_eq!(*result.borrow(), Some(Ok(true)), "the read never went out ({turns} turns)");
        assert!(peer.borrow().seen.iter().any(|s| s.segments > 512), "{:?}", peer.borrow().seen);
    }

    #[test]
    fn discards_go_out_as_whole_extents() {
        let discard = mote_blkfront::device::Discard { granularity: 4096, alignment: 0, secure: false };
        let features = Features { discard: Some(discard), ..Features::BASIC };
        let (disk, driver, peer) = twelve_pages(features);
        let mut executor = Executor::new(FakePlatform::default());
        let (partial, none) = executor.block_on(async {
            executor::add_driver(Serve(peer.clone()));
            executor::add_driver(driver);
            (disk.discard(3, 20).await, disk.discard(1, 14).await)
        });
        assert_eq!((partial, none), (Ok(8), Ok(0)));
        let seen: Vec<(u64, u64)> = peer.borrow().seen.iter().map(|s| (s.sector, s.sectors)).collect();
        assert_eq!(seen, [(8, 8)], "one request, for the one whole extent");
    }
}
