use super::*;
use crate::testing::{Count, FakePlatform};
use crate::time::{self, Elapsed};
use std::rc::Rc;
use std::time::Duration;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn at_ms(n: u64) -> Instant {
    Instant::from_nanos(n * 1_000_000)
}

#[test]
fn block_on_returns_the_output_without_sleeping() {
    let platform = FakePlatform::default();
    let mut executor = Executor::new(platform.clone());
    assert_eq!(executor.block_on(async { 6 * 7 }), 42);
    assert!(platform.sleeps().is_empty());
}

#[test]
fn spawned_tasks_run_and_timers_wake_in_deadline_order() {
    let platform = FakePlatform::default();
    let mut executor = Executor::new(platform.clone());
    let woke = Rc::new(RefCell::new(Vec::new()));
    let now = executor.block_on({
        let woke = woke.clone();
        async move {
            for delay in [30, 10, 20, 10] {
                let woke = woke.clone();
                spawn(async move {
                    time::sleep(ms(delay)).await;
                    woke.borrow_mut().push((delay, time::now()));
                });
            }
            time::sleep(ms(50)).await;
            time::now()
        }
    });
    assert_eq!(*woke.borrow(), [(10, at_ms(10)), (10, at_ms(10)), (20, at_ms(20)), (30, at_ms(30))]);
    assert_eq!(now, at_ms(50));
    // Idle means one sleep to each distinct deadline, nothing else.
    assert_eq!(platform.sleeps(), [ms(10), ms(10), ms(10), ms(20)]);
}

#[test]
fn a_task_wakes_the_task_waiting_for_it() {
    let mut executor = Executor::new(FakePlatform::default());
    let done = Count::default();
    executor.block_on({
        let done = done.clone();
        async move {
            for _ in 0..3 {
                let done = done.clone();
                spawn(async move { done.add() });
            }
            done.reach(3).await;
        }
    });
    assert_eq!(done.get(), 3);
}

#[test]
fn timeout_gives_the_output_or_elapsed_and_forgets_its_timer() {
    let platform = FakePlatform::default();
    let mut executor = Executor::new(platform.clone());
    executor.block_on(async {
        assert_eq!(time::timeout(ms(20), async { 7 }).await, Ok(7));
        assert_eq!(time::timeout(ms(20), time::sleep(ms(5))).await, Ok(()));
        assert_eq!(time::timeout(ms(10), time::sleep(Duration::from_secs(3600))).await, Err(Elapsed));
        time::sleep(ms(1)).await;
    });
    // The hour-long sleep was dropped with its timeout: nobody waits for it.
    assert_eq!(platform.sleeps(), [ms(5), ms(10), ms(1)]);
}

/// Wants to run every 5 ms.
struct Ticker(Rc<Cell<u32>>);

impl Driver for Ticker {
    fn poll(&mut self, now: Instant) -> Option<Instant> {
        self.0.set(self.0.get() + 1);
        Some(now.saturating_add(ms(5)))
    }
}

#[test]
fn drivers_run_every_turn_and_bound_the_sleep() {
    let platform = FakePlatform::default();
    let mut executor = Executor::new(platform.clone());
    let polls = Rc::new(Cell::new(0));
    executor.block_on({
        let polls = polls.clone();
        async move {
            add_driver(Ticker(polls));
            time::sleep(ms(12)).await;
        }
    });
    assert_eq!(platform.sleeps(), [ms(5), ms(5), ms(2)]);
    assert_eq!(polls.get(), 4);
}

/// Time passing by 1 ms on every turn of the run loop.
struct Clock(FakePlatform);

impl Driver for Clock {
    fn poll(&mut self, _: Instant) -> Option<Instant> {
        self.0.advance(ms(1));
        None
    }
}

#[test]
fn a_timer_the_heap_has_no_room_for_is_polled_until_its_deadline() {
    let platform = FakePlatform::default();
    let mut executor = Executor::new(platform.clone());
    let refused = UNREGISTERED_TIMERS.load(Ordering::Relaxed);
    let woke = executor.block_on({
        let platform = platform.clone();
        async move {
            add_driver(Clock(platform));
            // The timer list's first growth: four (key, waker) entries.
            let heap_full = crate::testing::refuse_size(4 * size_of::<(TimerKey, Waker)>());
            time::sleep(ms(10)).await;
            drop(heap_full);
            let woke = time::now();
            // With room again, a timer is registered and the executor sleeps.
            time::sleep(ms(10)).await;
            woke
        }
    });
    // Neither early nor lost, and no sleep while nothing would have woken it.
    assert!(woke >= at_ms(10) && woke <= at_ms(11), "woke at {woke:?}");
    assert_eq!(platform.sleeps().len(), 1);
    assert_eq!(UNREGISTERED_TIMERS.load(Ordering::Relaxed), refused + 1, "logged once");
}

#[test]
fn a_task_the_heap_has_no_room_for_is_dropped_and_the_rest_run() {
    let mut executor = Executor::new(FakePlatform::default());
    let done = Count::default();
    let dropped = Count::default();
    let unstarted = UNSTARTED.load(Ordering::Relaxed);
    executor.block_on({
        let done = done.clone();
        let dropped = dropped.clone();
        async move {
            /// Counts its own drop.
            struct Witness(Count);
            impl Drop for Witness {
                fn drop(&mut self) {
                    self.0.add();
                }
            }
            // The task list's first growth: four entries.
            let heap_full = crate::testing::refuse_size(4 * size_of::<(TaskId, Task)>());
            let witness = Witness(dropped.clone());
            let unstarted = done.clone();
            spawn(async move {
                let _witness = witness;
                unstarted.add();
            });
            time::sleep(ms(1)).await;
            assert_eq!(dropped.get(), 1, "the task was dropped when it could not be listed");
            drop(heap_full);
            let started = done.clone();
            spawn(async move { started.add() });
            done.reach(1).await;
        }
    });
    assert_eq!((done.get(), dropped.get()), (1, 1));
    assert_eq!(UNSTARTED.load(Ordering::Relaxed), unstarted + 1);
}

#[test]
fn pending_tasks_outlive_block_on_and_run_in_the_next() {
    let mut executor = Executor::new(FakePlatform::default());
    let done = Count::default();
    executor.block_on({
        let done = done.clone();
        async move {
            spawn(async move {
                time::sleep(ms(10)).await;
                done.add();
            });
        }
    });
    assert_eq!(done.get(), 0);
    executor.block_on(done.reach(1));
}

#[test]
#[should_panic(expected = "block_on called inside block_on")]
fn nested_block_on_panics() {
    let mut executor = Executor::new(FakePlatform::default());
    executor.block_on(async { Executor::new(FakePlatform::default()).block_on(async {}) });
}

#[test]
#[should_panic(expected = "no executor is running")]
fn spawn_outside_an_executor_panics() {
    spawn(async {});
}
