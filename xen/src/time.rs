//! Time from the PV clock (`struct vcpu_time_info` in `xen.h`) and one-shot
//! timers (`VCPUOP_set_singleshot_timer` in `vcpu.h`, firing `VIRQ_TIMER`).
//!
//! Xen publishes, per vCPU, a TSC timestamp, the system time (ns since the
//! domain's boot) at that TSC, and a scale factor; the current time is the
//! system time plus the scaled TSC delta. Updates are versioned like a
//! seqlock: an odd or changed version means the read must be retried.

use crate::hypercall::hypercall_3;
use crate::shared_info::{SharedInfo, VcpuTimeInfo};
use crate::XenError;
use core::sync::atomic::{fence, AtomicU64, Ordering};

/// A consistent copy of one `vcpu_time_info` update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeSnapshot {
    pub tsc_timestamp: u64,
    pub system_time: u64,
    pub tsc_to_system_mul: u32,
    pub tsc_shift: i8,
}

impl TimeSnapshot {
    /// Reads a consistent snapshot, retrying while Xen updates it.
    pub fn read(t: &VcpuTimeInfo) -> Self {
        loop {
            let version = t.version.load(Ordering::Acquire);
            if version & 1 != 0 {
                core::hint::spin_loop();
                continue;
            }
            let snap = TimeSnapshot {
                tsc_timestamp: t.tsc_timestamp.load(Ordering::Relaxed),
                system_time: t.system_time.load(Ordering::Relaxed),
                tsc_to_system_mul: t.tsc_to_system_mul.load(Ordering::Relaxed),
                tsc_shift: t.tsc_shift.load(Ordering::Relaxed),
            };
            fence(Ordering::Acquire);
            if t.version.load(Ordering::Relaxed) == version {
                return snap;
            }
        }
    }

    /// System time in ns at TSC value `tsc`.
    ///
    /// The difference is signed and taken modulo 2^64, as Xen's own
    /// `get_s_time_fixed` does: for an HVM or PVH guest whose TSC Xen
    /// emulates, a timestamp from a calibration older than the vCPU's TSC
    /// reset is "negative" (near 2^64) while the guest's TSC is small. An
    /// unsigned, saturating difference would then stop the clock at
    /// `system_time` until Xen next publishes, up to a second behind.
    pub fn ns_at(&self, tsc: u64) -> u64 {
        let delta = tsc.wrapping_sub(self.tsc_timestamp) as i64;
        let scaled = scale_delta(delta.unsigned_abs(), self.tsc_to_system_mul, self.tsc_shift);
        if delta >= 0 {
            self.system_time.wrapping_add(scaled)
        } else {
            self.system_time.wrapping_sub(scaled)
        }
    }
}

/// Converts TSC ticks to ns: shift, then multiply by a 32.32 fixed-point
/// factor (the formula in `xen.h`'s comment on `vcpu_time_info`).
pub fn scale_delta(delta: u64, mul: u32, shift: i8) -> u64 {
    let shifted = if shift >= 0 { delta << shift } else { delta >> shift.unsigned_abs() };
    ((u128::from(shifted) * u128::from(mul)) >> 32) as u64
}

/// Monotonic nanoseconds since the domain booted.
pub struct Clock {
    shared: &'static SharedInfo,
    /// The latest reading, so time never goes backwards across updates.
    last: AtomicU64,
}

impl Clock {
    pub const fn new(shared: &'static SharedInfo) -> Self {
        Clock { shared, last: AtomicU64::new(0) }
    }

    /// Nanoseconds of system time (vCPU 0's clock; mote runs on one vCPU).
    pub fn now_ns(&self) -> u64 {
        let snap = TimeSnapshot::read(&self.shared.vcpu_info[0].time);
        // SAFETY: RDTSC only reads the time-stamp counter.
        let tsc = unsafe { core::arch::x86_64::_rdtsc() };
        let now = snap.ns_at(tsc);
        let prev = self.last.fetch_max(now, Ordering::Relaxed);
        now.max(prev)
    }

    /// System time in ns at an earlier TSC reading `tsc` of this vCPU: now,
    /// less the ticks since (the published timestamp may be later than `tsc`).
    pub fn ns_at_past_tsc(&self, tsc: u64) -> u64 {
        let snap = TimeSnapshot::read(&self.shared.vcpu_info[0].time);
        // SAFETY: RDTSC only reads the time-stamp counter.
        let now_tsc = unsafe { core::arch::x86_64::_rdtsc() };
        let since = scale_delta(now_tsc.saturating_sub(tsc), snap.tsc_to_system_mul, snap.tsc_shift);
        snap.ns_at(now_tsc).saturating_sub(since)
    }

    /// Wall-clock time now, as (seconds, nanoseconds) since the Unix epoch:
    /// the wall time at system time 0 (`wc_*`) plus the system time.
    pub fn wallclock(&self) -> (u64, u32) {
        let s = self.shared;
        let (sec, nsec) = loop {
            let version = s.wc_version.load(Ordering::Acquire);
            if version & 1 != 0 {
                core::hint::spin_loop();
                continue;
            }
            let sec = u64::from(s.wc_sec_hi.load(Ordering::Relaxed)) << 32
                | u64::from(s.wc_sec.load(Ordering::Relaxed));
            let nsec = s.wc_nsec.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if s.wc_version.load(Ordering::Relaxed) == version {
                break (sec, nsec);
            }
        };
        add_ns((sec, nsec), self.now_ns())
    }
}

/// `(sec, nsec) + ns`, normalised.
fn add_ns((sec, nsec): (u64, u32), ns: u64) -> (u64, u32) {
    let total = u64::from(nsec) + ns % 1_000_000_000;
    (sec + ns / 1_000_000_000 + total / 1_000_000_000, (total % 1_000_000_000) as u32)
}

const VCPUOP_GET_RUNSTATE_INFO: u64 = 4;
const VCPUOP_SET_SINGLESHOT_TIMER: u64 = 8;

/// `struct vcpu_set_singleshot_timer`.
#[repr(C)]
struct SingleshotTimer {
    timeout_abs_ns: u64,
    flags: u32,
}

/// Asks Xen to raise `VIRQ_TIMER` on vCPU 0 at system time `deadline_ns`
/// (at once if it has passed). Replaces any earlier one-shot timer.
pub fn set_singleshot_timer(deadline_ns: u64) -> Result<(), XenError> {
    let mut arg = SingleshotTimer { timeout_abs_ns: deadline_ns, flags: 0 };
    // SAFETY: VCPUOP_set_singleshot_timer takes the vCPU id and a
    // `struct vcpu_set_singleshot_timer`.
    let ret = unsafe {
        hypercall_3(
            xen_sys::__HYPERVISOR_vcpu_op,
            VCPUOP_SET_SINGLESHOT_TIMER,
            0,
            &mut arg as *mut SingleshotTimer as u64,
        )
    };
    XenError::check(ret).map(drop)
}

/// `struct vcpu_runstate_info` (`vcpu.h`).
#[repr(C)]
#[derive(Default)]
struct RunstateInfo {
    state: i32,
    state_entry_time: u64,
    time: [u64; 4],
}
const _: () = assert!(core::mem::size_of::<RunstateInfo>() == 48);

/// Xen's system time (ns) when vCPU 0 entered its current state: for a
/// running vCPU, when Xen last scheduled it, so never later than now.
pub fn running_since_ns() -> Result<u64, XenError> {
    let mut info = RunstateInfo::default();
    // SAFETY: VCPUOP_get_runstate_info takes the vCPU id and writes a
    // `struct vcpu_runstate_info` to the pointer, which is ours.
    let ret = unsafe {
        hypercall_3(
            xen_sys::__HYPERVISOR_vcpu_op,
            VCPUOP_GET_RUNSTATE_INFO,
            0,
            &mut info as *mut RunstateInfo as u64,
        )
    };
    XenError::check(ret)?;
    Ok(info.state_entry_time)
}

/// The one-shot timer as armed: its deadline until it fires. A wait whose deadline is no
/// earlier than the armed one leaves it be (it wakes the waiter early at worst, who then arms
/// the later one): arming is a hypercall, and in Xen a reprogramming of the CPU's timer, while
/// a busy mote waits thousands of times a second, each time until a deadline (a
/// retransmission timer) a little later than the last.
pub struct OneShot {
    /// The armed deadline in ns; 0 when none is armed.
    armed: AtomicU64,
}

impl OneShot {
    pub const fn new() -> Self {
        OneShot { armed: AtomicU64::new(0) }
    }

    /// Makes sure the timer fires at `deadline_ns` or earlier, calling `set` (which arms the
    /// timer for its argument, replacing any earlier) only when it would fire later or not at
    /// all. A failed `set` arms nothing.
    pub fn arm(
        &self,
        deadline_ns: u64,
        set: impl FnOnce(u64) -> Result<(), XenError>,
    ) -> Result<(), XenError> {
        let armed = self.armed.load(Ordering::Relaxed);
        if armed != 0 && armed <= deadline_ns {
            return Ok(());
        }
        set(deadline_ns)?;
        // 0 means none: a deadline of 0 (long past) is kept as 1, as soon.
        self.armed.store(deadline_ns.max(1), Ordering::Relaxed);
        Ok(())
    }

    /// The timer fired (its event was taken): nothing is armed any more.
    pub fn fired(&self) {
        self.armed.store(0, Ordering::Relaxed);
    }
}

impl Default for OneShot {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::RefCell;

    #[test]
    fn a_timer_is_armed_again_only_for_an_earlier_deadline_or_after_it_fired() {
        let timer = OneShot::new();
        let set = RefCell::new(Vec::new());
        let arm = |ns| {
            timer.arm(ns, |ns| {
                set.borrow_mut().push(ns);
                Ok(())
            })
        };
        arm(1_000).unwrap();
        arm(1_000).unwrap();
        arm(5_000).unwrap();
        assert_eq!(*set.borrow(), [1_000], "armed at 1000: fires in time for 5000 too");
        arm(600).unwrap();
        assert_eq!(*set.borrow(), [1_000, 600], "an earlier deadline replaces it");
        timer.fired();
        arm(5_000).unwrap();
        assert_eq!(*set.borrow(), [1_000, 600, 5_000], "fired: the next deadline is armed");
        timer.fired();
        arm(0).unwrap();
        arm(7).unwrap();
        assert_eq!(*set.borrow(), [1_000, 600, 5_000, 0], "a past deadline counts as armed");
    }

    #[test]
    fn a_failed_arming_leaves_nothing_armed() {
        let timer = OneShot::new();
        assert_eq!(timer.arm(1_000, |_| Err(XenError::EINVAL)), Err(XenError::EINVAL));
        let mut set = None;
        timer
            .arm(2_000, |ns| {
                set = Some(ns);
                Ok(())
            })
            .unwrap();
        assert_eq!(set, Some(2_000));
    }

    #[test]
    fn scaling_follows_the_fixed_point_formula() {
        // mul = 2^31 halves; shift doubles or halves first.
        assert_eq!(scale_delta(1000, 1 << 31, 0), 500);
        assert_eq!(scale_delta(1000, 1 << 31, 1), 1000);
        assert_eq!(scale_delta(1000, 1 << 31, -1), 250);
        // A 3 GHz TSC: mul = 2^32 / 3 → 3e9 ticks ≈ 1 s.
        let ns = scale_delta(3_000_000_000, (1u64 << 32).div_ceil(3) as u32, 0);
        assert!((999_999_999..=1_000_000_001).contains(&ns), "{ns}");
        // No overflow for a day of ticks at 4 GHz with shift 1.
        let day = 4_000_000_000u64 * 86_400;
        assert_eq!(scale_delta(day, 1 << 31, 1), day);
    }

    #[test]
    fn snapshot_is_consistent_and_adds_system_time() {
        let shared = SharedInfo::zeroed();
        let t = &shared.vcpu_info[0].time;
        t.version.store(2, Ordering::Relaxed);
        t.tsc_timestamp.store(1_000, Ordering::Relaxed);
        t.system_time.store(5_000_000, Ordering::Relaxed);
        t.tsc_to_system_mul.store(1 << 31, Ordering::Relaxed);
        let snap = TimeSnapshot::read(t);
        assert_eq!(snap.ns_at(3_000), 5_001_000);
        // A TSC behind the timestamp gives a time before system_time.
        assert_eq!(snap.ns_at(10), 4_999_505);
    }

    #[test]
    fn timestamp_before_the_tsc_reset_counts_from_below_zero() {
        // Xen's calibration stamp predates the vCPU's TSC reset: the
        // timestamp is -1000 ticks modulo 2^64 and the guest's TSC reads 3000,
        // 4000 ticks later (figures seen under real Xen, scaled down).
        let snap = TimeSnapshot {
            tsc_timestamp: 1000u64.wrapping_neg(),
            system_time: 9_000_000,
            tsc_to_system_mul: 1 << 31,
            tsc_shift: 0,
        };
        assert_eq!(snap.ns_at(3_000), 9_002_000);
        assert_eq!(snap.ns_at(0), 9_000_500);
    }

    #[test]
    fn wallclock_normalises_nanoseconds() {
        assert_eq!(add_ns((10, 999_999_999), 1), (11, 0));
        assert_eq!(add_ns((10, 500_000_000), 2_700_000_000), (13, 200_000_000));
    }
}
