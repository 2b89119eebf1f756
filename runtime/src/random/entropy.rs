//! Entropy for the generator's seed: the CPU's RDSEED, else RDRAND, and always timing
//! jitter, each behind health checks that turn a broken source into an error rather than
//! a predictable seed. The checks take any [`Source`] or clock, so the host tests feed them
//! fakes.

use core::fmt;
use sha2::{Digest, Sha256};

/// What the seed came from, strongest first; shown in the boot log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The CPU's RDSEED (conditioned entropy), with timing jitter.
    Rdseed,
    /// The CPU's RDRAND (a DRBG the CPU reseeds), with timing jitter.
    Rdrand,
    /// Timing jitter alone: the CPU has neither instruction, or both failed their checks.
    Jitter,
    /// The operating system's generator (hosted, and the host tests).
    Os,
    /// Nothing passed its checks: the seed is the clock's readings only, which an attacker
    /// may guess. Logged as an error.
    None,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Rdseed => "RDSEED",
            Kind::Rdrand => "RDRAND",
            Kind::Jitter => "jitter",
            Kind::Os => "the OS",
            Kind::None => "none (predictable)",
        })
    }
}

/// Why a source gave no word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No word after the retries: the instruction kept clearing the carry flag.
    Exhausted,
    /// The same word twice in a row, or all zeros or all ones: a stuck source (what AMD's
    /// RDRAND returned after some resumes from suspend).
    Stuck,
    /// The clock did not move, or moved by the same step every time: no jitter to gather.
    NoJitter,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Failure::Exhausted => "no output after the retries",
            Failure::Stuck => "stuck output",
            Failure::NoJitter => "no timing jitter",
        })
    }
}

/// A hardware source of 64-bit words.
pub trait Source {
    /// One attempt: `None` when the source had no word ready (RDRAND/RDSEED cleared CF).
    fn try_next(&mut self) -> Option<u64>;
    /// Attempts before the source is given up, per word.
    const RETRIES: u32;
}

/// A source behind the health checks: bounded retries, and a word equal to the one before
/// it, or all zeros or all ones, rejected (the repetition test of NIST SP 800-90B §4.4.1,
/// at its strictest cut-off, and the two values a stuck DRNG returns).
pub struct Checked<S> {
    source: S,
    last: Option<u64>,
}

impl<S: Source> Checked<S> {
    pub fn new(source: S) -> Checked<S> {
        Checked { source, last: None }
    }

    pub fn next(&mut self) -> Result<u64, Failure> {
        for _ in 0..S::RETRIES {
            let Some(word) = self.source.try_next() else {
                core::hint::spin_loop();
                continue;
            };
            if word == 0 || word == u64::MAX || self.last == Some(word) {
                return Err(Failure::Stuck);
            }
            self.last = Some(word);
            return Ok(word);
        }
        Err(Failure::Exhausted)
    }

    /// Hashes `words` checked words into `hash`.
    pub fn feed(&mut self, hash: &mut Sha256, words: usize) -> Result<(), Failure> {
        for _ in 0..words {
            hash.update(self.next()?.to_le_bytes());
        }
        Ok(())
    }
}

/// Hashes `samples` timing samples into `hash`: the clock read around a short busy loop,
/// whose length varies with caches, pipelines, interrupts and the hypervisor's scheduling.
/// Each delta carries little entropy; many, conditioned by SHA-256, make the seed. Fails if
/// the clock does not move or every delta is the same (an emulated or coarse counter).
pub fn jitter(hash: &mut Sha256, samples: usize, mut clock: impl FnMut() -> u64) -> Result<(), Failure> {
    let mut first = None;
    let mut varied = false;
    let mut spin = 0u64;
    for i in 0..samples {
        let before = clock();
        // The loop's length depends on the last delta, so that samples do not fall into step.
        for _ in 0..(16 + (spin & 15)) {
            spin = core::hint::black_box(spin.rotate_left(5) ^ before);
        }
        let delta = clock().wrapping_sub(before);
        spin ^= delta;
        hash.update(delta.to_le_bytes());
        match first {
            None => first = Some(delta),
            Some(d) => varied |= d != delta,
        }
        if i == 0 && delta == 0 {
            return Err(Failure::NoJitter);
        }
    }
    if varied {
        Ok(())
    } else {
        Err(Failure::NoJitter)
    }
}

/// RDSEED and RDRAND, when CPUID has them.
#[cfg(target_os = "none")]
pub mod cpu {
    use super::Source;
    use core::arch::x86_64::{__cpuid, __cpuid_count, _rdrand64_step, _rdseed64_step};

    /// CPUID.1:ECX bit 30.
    pub fn has_rdrand() -> bool {
        __cpuid(1).ecx & (1 << 30) != 0
    }

    /// CPUID.(EAX=7,ECX=0):EBX bit 18.
    pub fn has_rdseed() -> bool {
        // Leaf 7 is asked for only if the CPU has it.
        __cpuid(0).eax >= 7 && __cpuid_count(7, 0).ebx & (1 << 18) != 0
    }

    /// RDSEED: full-entropy words from the conditioner, which runs dry under load; Intel's
    /// DRNG guide retries with a pause.
    pub struct Rdseed(());
    /// RDRAND: words of the CPU's DRBG; Intel's DRNG guide gives up after 10 tries.
    pub struct Rdrand(());

    impl Rdseed {
        pub fn new() -> Option<Rdseed> {
            has_rdseed().then_some(Rdseed(()))
        }
    }

    impl Rdrand {
        pub fn new() -> Option<Rdrand> {
            has_rdrand().then_some(Rdrand(()))
        }
    }

    impl Source for Rdseed {
        const RETRIES: u32 = 128;
        fn try_next(&mut self) -> Option<u64> {
            let mut word = 0;
            // SAFETY: `Rdseed` exists only when CPUID reports the instruction.
            (unsafe { rdseed(&mut word) } == 1).then_some(word)
        }
    }

    impl Source for Rdrand {
        const RETRIES: u32 = 10;
        fn try_next(&mut self) -> Option<u64> {
            let mut word = 0;
            // SAFETY: `Rdrand` exists only when CPUID reports the instruction.
            (unsafe { rdrand(&mut word) } == 1).then_some(word)
        }
    }

    /// The carry flag, as the intrinsic returns it: 1 if `word` is valid.
    #[target_feature(enable = "rdseed")]
    unsafe fn rdseed(word: &mut u64) -> i32 {
        _rdseed64_step(word)
    }

    #[target_feature(enable = "rdrand")]
    unsafe fn rdrand(word: &mut u64) -> i32 {
        _rdrand64_step(word)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that returns its script, `None` standing for a cleared carry flag.
    struct Scripted(std::collections::VecDeque<Option<u64>>);

    impl Source for Scripted {
        const RETRIES: u32 = 10;
        fn try_next(&mut self) -> Option<u64> {
            self.0.pop_front().flatten()
        }
    }

    fn checked(script: &[Option<u64>]) -> Checked<Scripted> {
        Checked::new(Scripted(script.iter().copied().collect()))
    }

    #[test]
    fn a_healthy_source_gives_its_words_after_cleared_carries() {
        let mut source = checked(&[None, Some(7), None, None, Some(9)]);
        assert_eq!(source.next(), Ok(7));
        assert_eq!(source.next(), Ok(9));
    }

    #[test]
    fn a_source_that_never_sets_carry_is_given_up_after_its_retries() {
        let mut source = checked(&[None; 10]);
        assert_eq!(source.next(), Err(Failure::Exhausted));
        // The eleventh try would have given a word: it is never made.
        let mut source = checked(&[None, None, None, None, None, None, None, None, None, None, Some(5)]);
        assert_eq!(source.next(), Err(Failure::Exhausted));
    }

    #[test]
    fn the_same_word_twice_in_a_row_is_rejected_as_stuck() {
        let mut source = checked(&[Some(42), Some(42)]);
        assert_eq!(source.next(), Ok(42));
        assert_eq!(source.next(), Err(Failure::Stuck));
    }

    #[test]
    fn all_zeros_and_all_ones_are_rejected_as_stuck() {
        assert_eq!(checked(&[Some(0)]).next(), Err(Failure::Stuck));
        assert_eq!(checked(&[Some(u64::MAX)]).next(), Err(Failure::Stuck));
    }

    #[test]
    fn a_stuck_source_fails_the_whole_feed() {
        let mut hash = Sha256::new();
        assert_eq!(checked(&[Some(1), Some(2), Some(2), Some(3)]).feed(&mut hash, 4), Err(Failure::Stuck));
        assert_eq!(checked(&[Some(1), Some(2), Some(3)]).feed(&mut hash, 3), Ok(()));
    }

    #[test]
    fn a_clock_that_does_not_move_gives_no_jitter() {
        assert_eq!(jitter(&mut Sha256::new(), 64, || 1000), Err(Failure::NoJitter));
    }

    #[test]
    fn a_clock_that_moves_in_equal_steps_gives_no_jitter() {
        let mut t = 0;
        let clock = || {
            t += 40;
            t
        };
        assert_eq!(jitter(&mut Sha256::new(), 64, clock), Err(Failure::NoJitter));
    }

    #[test]
    fn a_clock_with_varying_steps_gives_jitter_that_changes_the_hash() {
        let run = |steps: &[u64]| {
            let mut steps = steps.iter().cycle();
            let mut t = 0;
            let mut hash = Sha256::new();
            jitter(&mut hash, 64, || {
                t += steps.next().unwrap();
                t
            })
            .map(|()| hash.finalize())
        };
        let a = run(&[40, 41, 47, 40, 52]).unwrap();
        let b = run(&[40, 41, 47, 40, 53]).unwrap();
        assert_ne!(a, b);
    }
}
