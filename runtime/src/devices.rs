//! The domain's device directories (`device/vif`, `device/vbd`): the device
//! numbers in one, and a watch for numbers that appear while the domain runs
//! (`xl network-attach`, `xl block-attach`). The vif and disk watchers share it.

use crate::xenstore::{Errno, Reply, Request, Store, WatchId, Xenstore, XsError};
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::task::{Poll, Waker};

/// The device numbers in `dir` (`device/vif`, `device/vbd`), in order; none
/// without the directory. `None` without xenstore.
pub(crate) fn numbers(dir: &str) -> Option<Result<Vec<u32>, XsError>> {
    crate::xenstore::with(|xs| read(xs, dir))
}

fn read(xs: &mut Xenstore, dir: &str) -> Result<Vec<u32>, XsError> {
    parse(xs.call(&Request::Directory(dir)))
}

/// The numbers a directory listing gives, in order.
fn parse(listing: Result<Reply, XsError>) -> Result<Vec<u32>, XsError> {
    let names = match listing {
        Err(XsError::Xen(Errno::NoEnt)) => return Ok(Vec::new()),
        listing => listing?.directory()?,
    };
    // Each put in its place as it comes (a domain has a few devices): no sort
    // routine in the image, 2.3 KiB of it.
    let mut numbers = Vec::new();
    for n in names.iter().filter_map(|name| name.parse::<u32>().ok()) {
        numbers.insert(numbers.partition_point(|&i| i < n), n);
    }
    Ok(numbers)
}

/// Numbers that appear in a device directory while the domain runs, one
/// [`Appeared::next`] each. A device removed and added again between two
/// looks at the directory is missed: it never left it.
pub(crate) struct Appeared(Rc<RefCell<State>>);

struct State {
    dir: &'static str,
    watch: WatchId,
    /// The numbers in the directory when last read.
    present: Vec<u32>,
    /// Numbers that appeared since, not taken yet.
    fresh: Vec<u32>,
    /// Reading the directory failed.
    error: Option<XsError>,
    /// The task waiting in [`Appeared::next`].
    waker: Option<Waker>,
}

impl Appeared {
    /// Watches `dir` (`device/vif`, `device/vbd`) and returns the numbers there now, which
    /// [`Appeared::next`] does not give. The watch comes first, so that a
    /// device added meanwhile is not missed. `None` without xenstore; call
    /// inside [`crate::block_on`].
    pub(crate) fn watch(dir: &'static str) -> Option<Result<(Appeared, Vec<u32>), XsError>> {
        let watched = crate::xenstore::with(|xs| {
            // The directory is the token: the devices' own watches are on their own paths.
            let (watch, mut listing) = xs.watch_then(dir, dir, &[Request::Directory(dir)])?;
            match parse(listing.next_reply()) {
                Ok(present) => Ok((watch, present)),
                Err(e) => {
                    // Best effort: the read's error is the one to report.
                    let _ = xs.unwatch(watch);
                    Err(e)
                }
            }
        })?;
        let (watch, present) = match watched {
            Ok(watched) => watched,
            Err(e) => return Some(Err(e)),
        };
        let state =
            State { dir, watch, present: present.clone(), fresh: Vec::new(), error: None, waker: None };
        let shared = Rc::new(RefCell::new(state));
        crate::executor::add_driver(Driver(shared.clone()));
        Some(Ok((Appeared(shared), present)))
    }

    /// The next number that appeared; an error is reading the directory
    /// (call again for the next).
    pub(crate) async fn next(&self) -> Result<u32, XsError> {
        core::future::poll_fn(|cx| {
            let mut s = self.0.borrow_mut();
            if let Some(e) = s.error.take() {
                return Poll::Ready(Err(e));
            }
            if !s.fresh.is_empty() {
                return Poll::Ready(Ok(s.fresh.remove(0)));
            }
            s.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

/// On every turn of the run loop, if the store is free: takes the watch's
/// events and, when there were some, reads the directory again.
struct Driver(Rc<RefCell<State>>);

impl crate::executor::Driver for Driver {
    fn poll(&mut self, _now: crate::time::Instant) -> Option<crate::time::Instant> {
        let mut s = self.0.borrow_mut();
        let s = &mut *s;
        crate::xenstore::try_with(|xs| {
            let mut fired = false;
            while let Ok(Some(_)) = xs.next_event(s.watch) {
                fired = true;
            }
            if !fired {
                return;
            }
            match read(xs, s.dir) {
                Ok(now) => {
                    for &n in &now {
                        if !s.present.contains(&n) && !s.fresh.contains(&n) {
                            s.fresh.push(n);
                        }
                    }
                    s.present = now;
                }
                Err(e) => s.error = Some(e),
            }
            if !s.fresh.is_empty() || s.error.is_some() {
                if let Some(waker) = s.waker.take() {
                    waker.wake();
                }
            }
        });
        None
    }
}
