//! A small single-threaded executor: async apps, timers and the network
//! stack on one vCPU.
//!
//! Tasks are boxed futures ([`spawn`]). A waker only puts its task's id on
//! the ready queue; interrupts never get here (they only record events in
//! the runtime's demultiplexer). Each turn of the run loop polls the tasks
//! that were ready when the turn began, fires due timers, and polls the
//! [`Driver`]s (a network stack's interface). When that leaves nothing
//! ready, the loop asks the [`Platform`] to sleep until the earliest
//! deadline — a timer, or a driver's own — or an external event. In the
//! kernel the platform is `xen::Xen`: the PV clock, and blocking in the
//! hypervisor; hosted, `hosted::Hosted`: Linux's clock and poll(2); host
//! tests use a fake clock.

#[cfg(feature = "hosted")]
pub mod hosted;
#[cfg(target_os = "none")]
pub mod xen;

use crate::time::Instant;
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::rc::{Rc, Weak};
use alloc::sync::Arc;
use alloc::task::Wake;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::fmt;
use core::future::Future;
use core::pin::{pin, Pin};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::task::{Context, Poll, Waker};

/// What the executor needs from the machine: a clock, and a way to sleep.
pub trait Platform {
    /// The time timers and deadlines are measured against.
    fn now(&self) -> Instant;

    /// Sleeps until `deadline` passes or an external event arrives (with no
    /// deadline, until an event). Returning early is allowed.
    fn idle(&mut self, deadline: Option<Instant>);
}

/// Work the run loop does on every turn, outside any task.
pub trait Driver {
    /// Does what is due at `now`, waking the tasks it concerns; returns when
    /// it must run again at the latest (`None`: only after an event or a
    /// task's turn).
    fn poll(&mut self, now: Instant) -> Option<Instant>;
}

type TaskId = u64;
type BoxFuture = Pin<Box<dyn Future<Output = ()>>>;

/// The future passed to [`Executor::block_on`]; spawned tasks count from 1.
const MAIN: TaskId = 0;

/// Ids of woken tasks, in the order they woke.
#[derive(Default)]
struct ReadyQueue(spin::Mutex<VecDeque<TaskId>>);

impl ReadyQueue {
    fn push(&self, id: TaskId) {
        self.0.lock().push_back(id);
    }

    fn pop(&self) -> Option<TaskId> {
        self.0.lock().pop_front()
    }

    fn len(&self) -> usize {
        self.0.lock().len()
    }

    fn is_empty(&self) -> bool {
        self.0.lock().is_empty()
    }

    /// Makes room for `ids` more than are queued now (which may include a
    /// finished task's last wake), so that a wake never allocates.
    fn make_room(&self, ids: usize) -> Result<(), alloc::collections::TryReserveError> {
        self.0.lock().try_reserve(ids)
    }
}

/// A task's waker: queues the task once until it is polled again.
struct TaskWaker {
    id: TaskId,
    queued: AtomicBool,
    ready: Arc<ReadyQueue>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.ready.push(self.id);
        }
    }
}

impl TaskWaker {
    fn new(id: TaskId, ready: &Arc<ReadyQueue>) -> (Arc<TaskWaker>, Waker) {
        let state = Arc::new(TaskWaker { id, queued: AtomicBool::new(false), ready: ready.clone() });
        (state.clone(), Waker::from(state))
    }

    /// Polls the task's future once. Clears the queued mark first, so that
    /// a wake during the poll queues the task again.
    fn poll<F: Future + ?Sized>(&self, future: Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
        self.queued.store(false, Ordering::Release);
        future.poll(&mut Context::from_waker(waker))
    }

    /// Marks the task finished: its waker, still held by a socket or a
    /// timer, queues nothing any more (the queue's room is only for live tasks).
    fn retire(&self) {
        self.queued.store(true, Ordering::Release);
    }
}

struct Task {
    future: BoxFuture,
    state: Arc<TaskWaker>,
    waker: Waker,
}

/// What tasks reach while the executor runs them: its clock, timers, new
/// tasks and drivers.
struct Shared {
    platform: RefCell<Box<dyn Platform>>,
    /// Sorted by deadline, then by registration: a plain `Vec`, so that its
    /// growth can be refused when the heap is full (see [`TimerEntry::register`]).
    timers: RefCell<Vec<(TimerKey, Waker)>>,
    next_timer: Cell<u64>,
    spawned: RefCell<Vec<BoxFuture>>,
    drivers: RefCell<Vec<Box<dyn Driver>>>,
}

impl Shared {
    fn now(&self) -> Instant {
        self.platform.borrow().now()
    }

    /// Wakes the timers due at `now`, earliest first; returns the next
    /// deadline.
    fn fire_timers(&self, now: Instant) -> Option<Instant> {
        let mut timers = self.timers.borrow_mut();
        let due = timers.partition_point(|((deadline, _), _)| *deadline <= now);
        for (_, waker) in timers.drain(..due) {
            waker.wake();
        }
        timers.first().map(|((deadline, _), _)| *deadline)
    }
}

/// Tasks dropped unstarted because the heap had no room to run them.
static UNSTARTED: AtomicU64 = AtomicU64::new(0);

/// Timers the heap had no room to register (their tasks polled instead).
static UNREGISTERED_TIMERS: AtomicU64 = AtomicU64::new(0);

/// Runs futures to completion; see the module documentation.
pub struct Executor {
    /// By id, which only grows: new tasks are pushed at the end.
    tasks: Vec<(TaskId, Task)>,
    next_task: TaskId,
    ready: Arc<ReadyQueue>,
    shared: Rc<Shared>,
}

impl Executor {
    /// An executor with no tasks on `platform`: apps get one from `mote::block_on`; tests
    /// bring a fake clock.
    pub fn new(platform: impl Platform + 'static) -> Executor {
        Executor {
            tasks: Vec::new(),
            next_task: MAIN + 1,
            ready: Arc::default(),
            shared: Rc::new(Shared {
                platform: RefCell::new(Box::new(platform)),
                timers: RefCell::default(),
                next_timer: Cell::new(0),
                spawned: RefCell::default(),
                drivers: RefCell::default(),
            }),
        }
    }

    /// Runs `future`, the tasks it [`spawn`]s and the drivers until
    /// `future` completes. Tasks still pending then stay with the executor
    /// (a later `block_on` runs them on; dropping the executor drops them).
    ///
    /// # Panics
    /// When called from inside another `block_on`.
    pub fn block_on<F: Future>(&mut self, future: F) -> F::Output {
        let _current = Current::enter(&self.shared);
        let (main, main_waker) = TaskWaker::new(MAIN, &self.ready);
        let mut future = pin!(future);
        main_waker.wake_by_ref();
        loop {
            for _ in 0..self.ready.len() {
                match self.ready.pop() {
                    Some(MAIN) => {
                        if let Poll::Ready(output) = main.poll(future.as_mut(), &main_waker) {
                            main.retire();
                            return output;
                        }
                    }
                    Some(id) => {
                        let Ok(i) = self.tasks.binary_search_by_key(&id, |(id, _)| *id) else { continue };
                        let task = &mut self.tasks[i].1;
                        if task.state.poll(task.future.as_mut(), &task.waker).is_ready() {
                            task.state.retire();
                            self.tasks.remove(i);
                        }
                    }
                    None => break,
                }
            }
            self.adopt_spawned();
            self.tend();
        }
    }

    /// Takes the tasks spawned since the last look, ready to run. A task the
    /// heap has no room for (in the task list, or in the ready queue, which
    /// keeps room for every live task and `main`) is dropped, and logged.
    fn adopt_spawned(&mut self) {
        let spawned = core::mem::take(&mut *self.shared.spawned.borrow_mut());
        for future in spawned {
            if self.tasks.try_reserve(1).is_err() || self.ready.make_room(self.tasks.len() + 2).is_err() {
                let n = UNSTARTED.fetch_add(1, Ordering::Relaxed) + 1;
                log::warn!("executor: no memory to start a task: dropped ({n} so far)");
                continue;
            }
            let id = self.next_task;
            self.next_task += 1;
            let (state, waker) = TaskWaker::new(id, &self.ready);
            waker.wake_by_ref();
            self.tasks.push((id, Task { future, state, waker }));
        }
    }

    /// Fires due timers and polls the drivers; sleeps if that left no task
    /// ready and no deadline passed.
    fn tend(&self) {
        let now = self.shared.now();
        let mut next = self.shared.fire_timers(now);
        for driver in self.shared.drivers.borrow_mut().iter_mut() {
            next = earliest(next, driver.poll(now));
        }
        if self.ready.is_empty() && next.is_none_or(|d| d > now) {
            self.shared.platform.borrow_mut().idle(next);
        }
    }
}

/// The earlier of two optional deadlines.
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Starts `future` as a task of the running executor; it runs on its own
/// (nothing waits for it unless it says so, through a socket or a shared cell).
/// When the heap has no room to list it, it is dropped unstarted, and logged.
///
/// ```
/// use core::cell::Cell;
/// use core::time::Duration;
/// use std::rc::Rc;
///
/// let done = Rc::new(Cell::new(false));
/// mote::block_on({
///     let done = done.clone();
///     async move {
///         mote::spawn(async move { done.set(true) });
///         // The task runs once this one waits.
///         mote::time::sleep(Duration::from_millis(1)).await;
///     }
/// });
/// assert!(done.get());
/// ```
///
/// # Panics
/// Outside [`Executor::block_on`].
pub fn spawn(future: impl Future<Output = ()> + 'static) {
    current().spawned.borrow_mut().push(Box::pin(future));
}

/// Adds a driver that the running executor polls on every turn, for as long
/// as the executor lives.
///
/// # Panics
/// Outside [`Executor::block_on`].
pub fn add_driver(driver: impl Driver + 'static) {
    current().drivers.borrow_mut().push(Box::new(driver));
}

/// The running executor's clock.
pub(crate) fn now() -> Instant {
    current().now()
}

/// A timer's place in [`Shared::timers`]: its deadline, then a sequence
/// number that keeps equal deadlines apart and in order.
type TimerKey = (Instant, u64);

/// A timer of the running executor; deregistered on drop.
pub(crate) struct TimerEntry {
    shared: Weak<Shared>,
    key: TimerKey,
    /// The heap had no room to register it once (logged then, not again).
    refused: Cell<bool>,
}

impl TimerEntry {
    /// A timer for `deadline`, not yet registered.
    pub(crate) fn new(deadline: Instant) -> TimerEntry {
        let shared = current();
        let seq = shared.next_timer.get();
        shared.next_timer.set(seq.wrapping_add(1));
        TimerEntry { shared: Rc::downgrade(&shared), key: (deadline, seq), refused: Cell::new(false) }
    }

    /// Makes `waker` the one woken at the deadline. False when the heap had
    /// no room to add the timer: nothing wakes it then, so the caller must
    /// poll again (it wakes its own task) rather than wait.
    pub(crate) fn register(&self, waker: &Waker) -> bool {
        let Some(shared) = self.shared.upgrade() else { return true };
        let mut timers = shared.timers.borrow_mut();
        match timers.binary_search_by_key(&self.key, |(key, _)| *key) {
            Ok(i) => timers[i].1.clone_from(waker),
            Err(i) => {
                if timers.try_reserve(1).is_err() {
                    if !self.refused.replace(true) {
                        let n = UNREGISTERED_TIMERS.fetch_add(1, Ordering::Relaxed) + 1;
                        log::warn!(
                            "executor: no memory for a timer: its task polls until there is ({n} so far)"
                        );
                    }
                    return false;
                }
                timers.insert(i, (self.key, waker.clone()));
            }
        }
        true
    }
}

impl Drop for TimerEntry {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            let mut timers = shared.timers.borrow_mut();
            if let Ok(i) = timers.binary_search_by_key(&self.key, |(key, _)| *key) {
                timers.remove(i);
            }
        }
    }
}

impl fmt::Debug for TimerEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerEntry").field("deadline", &self.key.0).finish()
    }
}

type Slot = RefCell<Option<Rc<Shared>>>;

// The executor inside `block_on` on this CPU (on the host: this thread).
#[cfg(not(target_os = "none"))]
std::thread_local! {
    static CURRENT: Slot = const { RefCell::new(None) };
}

#[cfg(target_os = "none")]
static CURRENT: OneCpu<Slot> = OneCpu(RefCell::new(None));

#[cfg(target_os = "none")]
struct OneCpu<T>(T);

// SAFETY: a mote runs on one vCPU without threads, and interrupt handlers
// never reach the executor, so the slot is only ever used from one context.
#[cfg(target_os = "none")]
unsafe impl<T> Sync for OneCpu<T> {}

fn with_slot<R>(f: impl FnOnce(&Slot) -> R) -> R {
    #[cfg(not(target_os = "none"))]
    return CURRENT.with(f);
    #[cfg(target_os = "none")]
    return f(&CURRENT.0);
}

fn current() -> Rc<Shared> {
    with_slot(|slot| slot.borrow().clone()).expect("no executor is running (use it inside block_on)")
}

/// Marks an executor as running until dropped.
struct Current;

impl Current {
    fn enter(shared: &Rc<Shared>) -> Current {
        with_slot(|slot| {
            let mut slot = slot.borrow_mut();
            assert!(slot.is_none(), "block_on called inside block_on");
            *slot = Some(shared.clone());
        });
        Current
    }
}

impl Drop for Current {
    fn drop(&mut self) {
        with_slot(|slot| slot.borrow_mut().take());
    }
}

#[cfg(test)]
mod tests;
