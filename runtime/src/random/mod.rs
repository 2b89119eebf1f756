//! Random bytes for the runtime and apps: [`fill`] and [`u64()`](fn@u64), from a ChaCha20 generator.
//!
//! In a mote the generator is seeded once per boot (at start, or by the first call) from the
//! CPU's RDSEED, else RDRAND, plus timing jitter, all conditioned by SHA-256 (`entropy`); the
//! boot log names the strongest source that passed its health checks (`random: entropy from
//! RDSEED`). It is reseeded with the timing of event-channel upcalls, which the upcall folds
//! into a pool (`stir`). Hosted, and in the host tests, the bytes are the OS's
//! (`/dev/urandom`). docs/random.md has the design.
//!
//! With the `getrandom` feature the runtime is also the `getrandom` backend (0.2, 0.3 and
//! 0.4), so that ecosystem crates draw from the same generator.

// Hosted and on the host the OS seeds nothing here: the two are used by the kernel and tests.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
mod entropy;
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
mod generator;

pub use entropy::Kind;

/// Fills `dest` with random bytes. Not from an interrupt handler.
pub fn fill(dest: &mut [u8]) {
    platform::fill(dest);
}

/// A random `u64`.
pub fn u64() -> u64 {
    let mut bytes = [0; 8];
    fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// Where the generator's seed came from (seeding it now if it is not yet).
pub fn source() -> Kind {
    platform::source()
}

/// Seeds the generator at boot, before anything draws from it; the source is logged in the
/// `security:` line, and an error besides when no source passed its checks.
#[cfg(target_os = "none")]
pub(crate) fn init() {
    if source() == Kind::None {
        log::error!("random: entropy from {}: no source passed its health checks", Kind::None);
    }
}

#[cfg(target_os = "none")]
pub(crate) use platform::stir;

#[cfg(target_os = "none")]
mod platform {
    use super::entropy::{self, cpu, Checked, Kind};
    use super::generator::Generator;
    use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
    use sha2::{Digest, Sha256};
    use spin::{Mutex, Once};

    static GENERATOR: Mutex<Option<Generator>> = Mutex::new(None);
    static SOURCE: Once<Kind> = Once::new();
    /// Event timings since the last reseed, folded together, and how many.
    static POOL: AtomicU64 = AtomicU64::new(0);
    static EVENTS: AtomicU32 = AtomicU32::new(0);
    /// Events the pool gathers before a draw mixes it in: a few bits of timing each.
    const RESEED_EVENTS: u32 = 64;
    /// Jitter samples at boot: a few beside a hardware source, many without one.
    const JITTER_BESIDE_HARDWARE: usize = 64;
    const JITTER_ALONE: usize = 4096;

    fn rdtsc() -> u64 {
        // SAFETY: RDTSC only reads the time-stamp counter.
        unsafe { core::arch::x86_64::_rdtsc() }
    }

    /// Folds the timing of an event (the TSC now, in an upcall) into the pool. Safe from the
    /// upcall: a sample lost to a race with a reseed costs a few bits, nothing else.
    pub(crate) fn stir() {
        POOL.store(POOL.load(Ordering::Relaxed).rotate_left(7) ^ rdtsc(), Ordering::Relaxed);
        EVENTS.fetch_add(1, Ordering::Relaxed);
    }

    pub fn fill(dest: &mut [u8]) {
        let mut generator = GENERATOR.lock();
        let generator = generator.get_or_insert_with(|| {
            let (seed, kind) = gather();
            SOURCE.call_once(|| kind);
            Generator::new(seed)
        });
        if EVENTS.load(Ordering::Relaxed) >= RESEED_EVENTS {
            let mut material = [0; 32];
            material[..8].copy_from_slice(&POOL.swap(0, Ordering::Relaxed).to_le_bytes());
            material[8..16].copy_from_slice(&u64::from(EVENTS.swap(0, Ordering::Relaxed)).to_le_bytes());
            material[16..24].copy_from_slice(&rdtsc().to_le_bytes());
            let hardware = cpu::Rdrand::new().and_then(|s| Checked::new(s).next().ok());
            material[24..].copy_from_slice(&hardware.unwrap_or(0).to_le_bytes());
            generator.reseed(&material);
        }
        generator.fill(dest);
    }

    pub fn source() -> Kind {
        if SOURCE.get().is_none() {
            fill(&mut []);
        }
        *SOURCE.get().expect("seeded by the fill above")
    }

    /// The boot seed: 512 bits of RDSEED (else RDRAND) and timing jitter, hashed.
    fn gather() -> ([u8; 32], Kind) {
        let mut hash = Sha256::new();
        let mut kind = Kind::None;
        if let Some(rdseed) = cpu::Rdseed::new() {
            match Checked::new(rdseed).feed(&mut hash, 8) {
                Ok(()) => kind = Kind::Rdseed,
                Err(e) => log::warn!("random: RDSEED failed its health check ({e}); trying RDRAND"),
            }
        }
        if kind == Kind::None {
            if let Some(rdrand) = cpu::Rdrand::new() {
                match Checked::new(rdrand).feed(&mut hash, 8) {
                    Ok(()) => kind = Kind::Rdrand,
                    Err(e) => log::warn!("random: RDRAND failed its health check ({e})"),
                }
            }
        }
        let samples = if kind == Kind::None { JITTER_ALONE } else { JITTER_BESIDE_HARDWARE };
        match entropy::jitter(&mut hash, samples, rdtsc) {
            Ok(()) if kind == Kind::None => kind = Kind::Jitter,
            Ok(()) => {}
            Err(e) => log::warn!("random: timing jitter failed its health check ({e})"),
        }
        hash.update(rdtsc().to_le_bytes());
        (hash.finalize().into(), kind)
    }
}

#[cfg(not(target_os = "none"))]
mod platform {
    use super::Kind;
    use std::fs::File;
    use std::io::Read;
    use std::sync::OnceLock;

    pub fn fill(dest: &mut [u8]) {
        static URANDOM: OnceLock<File> = OnceLock::new();
        let mut urandom = URANDOM.get_or_init(|| File::open("/dev/urandom").expect("opening /dev/urandom"));
        urandom.read_exact(dest).expect("reading /dev/urandom");
    }

    pub fn source() -> Kind {
        Kind::Os
    }
}

/// The backend of `getrandom` 0.3 and 0.4 (`--cfg getrandom_backend="custom"`, which
/// .cargo/config.toml sets for images).
#[cfg(feature = "getrandom")]
#[no_mangle]
unsafe extern "Rust" fn __getrandom_v03_custom(dest: *mut u8, len: usize) -> Result<(), getrandom::Error> {
    // SAFETY: getrandom passes `len` writable bytes, maybe uninitialised: zeroed, they are a
    // valid slice.
    let dest = unsafe {
        core::ptr::write_bytes(dest, 0, len);
        core::slice::from_raw_parts_mut(dest, len)
    };
    fill(dest);
    Ok(())
}

/// The backend of `getrandom` 0.2 (its `custom` feature; rustls's ring asks this version).
#[cfg(feature = "getrandom")]
fn getrandom02_fill(dest: &mut [u8]) -> Result<(), getrandom02::Error> {
    fill(dest);
    Ok(())
}

#[cfg(feature = "getrandom")]
getrandom02::register_custom_getrandom!(getrandom02_fill);

#[cfg(test)]
mod tests {
    #[test]
    fn fill_gives_different_bytes_each_time() {
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        super::fill(&mut a);
        super::fill(&mut b);
        assert_ne!(a, b);
        assert_ne!(a, [0; 32]);
    }

    #[cfg(feature = "getrandom")]
    #[test]
    fn the_getrandom_backends_fill_the_whole_buffer() {
        extern "Rust" {
            fn __getrandom_v03_custom(dest: *mut u8, len: usize) -> Result<(), getrandom::Error>;
            fn __getrandom_custom(dest: *mut u8, len: usize) -> u32;
        }
        let (mut a, mut b) = ([0u8; 64], [0u8; 64]);
        // SAFETY: both write `len` bytes to the buffers given.
        unsafe {
            assert_eq!(__getrandom_v03_custom(a.as_mut_ptr(), a.len()), Ok(()));
            assert_eq!(__getrandom_custom(b.as_mut_ptr(), b.len()), 0);
        }
        // 8 zero bytes in a row at the end would be a 2^-64 event: the tail was written.
        assert_ne!(a[56..], [0; 8]);
        assert_ne!(b[56..], [0; 8]);
        assert_ne!(a, b);
    }
}
