//! Test doubles: a platform with a fake clock that records how the executor
//! sleeps, an Ethernet wire between two in-memory devices, and a counter
//! tasks can wait on.

use crate::executor::Platform;
use crate::time::Instant;
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

/// A clock that only moves when the executor idles; idling with frames on
/// the wire (the "external event") returns at once.
#[derive(Clone, Default)]
pub(crate) struct FakePlatform {
    now: Rc<Cell<Instant>>,
    sleeps: Rc<RefCell<Vec<Duration>>>,
    wire: Option<Wire>,
}

impl FakePlatform {
    /// A platform whose idle ends when `wire` carries frames.
    pub(crate) fn with_wire(wire: &Wire) -> FakePlatform {
        FakePlatform { wire: Some(wire.clone()), ..FakePlatform::default() }
    }

    /// Every sleep so far.
    pub(crate) fn sleeps(&self) -> Vec<Duration> {
        self.sleeps.borrow().clone()
    }

    /// Moves the clock on by `d`, as time passing while the executor works.
    pub(crate) fn advance(&self, d: Duration) {
        self.now.set(self.now.get().saturating_add(d));
    }
}

impl Platform for FakePlatform {
    fn now(&self) -> Instant {
        self.now.get()
    }

    fn idle(&mut self, deadline: Option<Instant>) {
        if self.wire.as_ref().is_some_and(Wire::busy) {
            return;
        }
        let deadline = deadline.expect("idle with no deadline and nothing on the wire: the test would hang");
        self.sleeps.borrow_mut().push(deadline.duration_since(self.now.get()));
        self.now.set(self.now.get().max(deadline));
    }
}

type Queue = Rc<RefCell<VecDeque<Vec<u8>>>>;

/// Two queues of Ethernet frames, one each way.
#[derive(Clone, Default)]
pub(crate) struct Wire {
    a_to_b: Queue,
    b_to_a: Queue,
}

impl Wire {
    /// The devices at the two ends.
    pub(crate) fn ends(&self) -> (End, End) {
        (
            End { rx: self.b_to_a.clone(), tx: self.a_to_b.clone() },
            End { rx: self.a_to_b.clone(), tx: self.b_to_a.clone() },
        )
    }

    fn busy(&self) -> bool {
        !self.a_to_b.borrow().is_empty() || !self.b_to_a.borrow().is_empty()
    }

    /// Frames sent by end A that end B has not taken yet.
    pub(crate) fn sent_by_a(&self) -> Vec<Vec<u8>> {
        self.a_to_b.borrow().iter().cloned().collect()
    }
}

/// One end of a [`Wire`]: what it transmits, the other end receives.
pub(crate) struct End {
    rx: Queue,
    tx: Queue,
}

impl crate::net::Nic for End {}

impl Device for End {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken;

    fn receive(&mut self, _: smoltcp::time::Instant) -> Option<(RxToken, TxToken)> {
        let frame = self.rx.borrow_mut().pop_front()?;
        Some((RxToken(frame), TxToken(self.tx.clone())))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<TxToken> {
        Some(TxToken(self.tx.clone()))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

pub(crate) struct RxToken(Vec<u8>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

pub(crate) struct TxToken(Queue);

impl phy::TxToken for TxToken {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let result = f(&mut frame);
        self.0.borrow_mut().push_back(frame);
        result
    }
}

/// A counter tasks can wait on.
#[derive(Clone, Default)]
pub(crate) struct Count(Rc<RefCell<(usize, Vec<Waker>)>>);

impl Count {
    pub(crate) fn add(&self) {
        let mut count = self.0.borrow_mut();
        count.0 += 1;
        count.1.drain(..).for_each(Waker::wake);
    }

    pub(crate) fn get(&self) -> usize {
        self.0.borrow().0
    }

    /// Waits until the count is at least `n`.
    pub(crate) async fn reach(&self, n: usize) {
        poll_fn(|cx| {
            let mut count = self.0.borrow_mut();
            if count.0 >= n {
                return Poll::Ready(());
            }
            count.1.push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

/// The system allocator, refusing allocations of one size on the thread that
/// asked for it ([`refuse_size`]): the heap running out exactly when a given
/// table grows.
struct Refusing;

std::thread_local! {
    static REFUSED_SIZE: Cell<Option<usize>> = const { Cell::new(None) };
}

// SAFETY: every call goes to the system allocator unchanged, or fails (null)
// before reaching it.
unsafe impl std::alloc::GlobalAlloc for Refusing {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // `try_with`: the thread-local may be gone while the thread exits.
        if REFUSED_SIZE.try_with(Cell::get).ok().flatten() == Some(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from the system allocator (refusals return null).
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static REFUSING: Refusing = Refusing;

/// Makes allocations of exactly `bytes` on this thread fail until the guard
/// is dropped.
pub(crate) fn refuse_size(bytes: usize) -> impl Drop {
    struct Guard;
    impl Drop for Guard {
        fn drop(&mut self) {
            REFUSED_SIZE.with(|r| r.set(None));
        }
    }
    REFUSED_SIZE.with(|r| r.set(Some(bytes)));
    Guard
}
