//! Time: [`Instant`] (nanoseconds since boot, from the PV clock in the
//! kernel) and the async timers of the executor: [`sleep`], [`sleep_until`],
//! [`timeout`].
//!
//! The timers run on the executor's clock ([`crate::executor::Platform`]),
//! so they must be used inside [`crate::executor::Executor::block_on`]. A
//! task waiting on a timer costs nothing: when no task is ready, the
//! executor sleeps until the earliest deadline.

use crate::executor::{self, TimerEntry};
use core::fmt;
use core::future::{poll_fn, Future};
use core::pin::{pin, Pin};
use core::task::{Context, Poll};
use core::time::Duration;

/// A point in time: nanoseconds since the domain booted (the default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The last representable instant, some 584 years after boot.
    pub const MAX: Instant = Instant(u64::MAX);

    /// The instant `ns` nanoseconds after boot: for clocks and tests that count in nanoseconds.
    pub const fn from_nanos(ns: u64) -> Instant {
        Instant(ns)
    }

    /// Nanoseconds since boot.
    pub fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time from `earlier` to `self` (zero if `earlier` is later).
    pub fn duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, or `None` if that is beyond the clock's range.
    pub fn checked_add(self, d: Duration) -> Option<Instant> {
        u64::try_from(d.as_nanos()).ok().and_then(|ns| self.0.checked_add(ns)).map(Instant)
    }

    /// `self + d`, or [`Instant::MAX`] if that is beyond the clock's range.
    pub fn saturating_add(self, d: Duration) -> Instant {
        self.checked_add(d).unwrap_or(Instant::MAX)
    }
}

/// The executor's clock.
///
/// # Panics
/// Outside [`crate::executor::Executor::block_on`].
pub fn now() -> Instant {
    executor::now()
}

/// Waits for `duration`.
///
/// ```
/// use core::time::Duration;
///
/// mote::block_on(async {
///     let start = mote::time::now();
///     mote::time::sleep(Duration::from_millis(20)).await;
///     assert!(start.elapsed() >= Duration::from_millis(20));
/// });
/// ```
///
/// # Panics
/// Outside [`crate::executor::Executor::block_on`].
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(now().saturating_add(duration))
}

/// Waits until `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep { deadline, entry: None }
}

/// The future of [`sleep`] and [`sleep_until`].
#[derive(Debug)]
pub struct Sleep {
    deadline: Instant,
    entry: Option<TimerEntry>,
}

impl Sleep {
    /// When the sleep ends, e.g. to sleep again from there without drift.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if now() >= self.deadline {
            self.entry = None;
            return Poll::Ready(());
        }
        let deadline = self.deadline;
        let entry = self.entry.get_or_insert_with(|| TimerEntry::new(deadline));
        if !entry.register(cx.waker()) {
            // No room for the timer: poll on every turn until there is, or
            // until the deadline passes.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

/// [`timeout`]'s error: the time ran out first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timed out")
    }
}

/// Runs `future` for at most `duration` (counted from the first poll);
/// `Err(Elapsed)` if it did not finish in time (it is then dropped).
///
/// ```
/// use core::future::pending;
/// use core::time::Duration;
/// use mote::time::{timeout, Elapsed};
///
/// mote::block_on(async {
///     assert_eq!(timeout(Duration::from_millis(10), async { 7 }).await, Ok(7));
///     let never = pending::<()>();
///     assert_eq!(timeout(Duration::from_millis(10), never).await, Err(Elapsed));
/// });
/// ```
pub async fn timeout<F: Future>(duration: Duration, future: F) -> Result<F::Output, Elapsed> {
    let mut future = pin!(future);
    let mut sleep = sleep(duration);
    poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        Pin::new(&mut sleep).poll(cx).map(|()| Err(Elapsed))
    })
    .await
}
