//! `mote-agent disk-bench DEVICE BYTES READS`: the Linux benchmark guest's half of
//! `cargo xtask bench disk`, the same measurements as the selftest mote's `test=disk-bench`:
//! write the first BYTES of DEVICE in 1 MiB blocks and flush (fsync), read them back in 1 MiB
//! blocks, then READS reads of 4 KiB at pseudo-random 4 KiB-aligned offsets below BYTES, one
//! at a time. `O_DIRECT`, so the guest's page cache plays no part. Prints `disk-bench: start`
//! as it starts, then `disk-bench: seq-write W MB/s, seq-read R MB/s, rand-read I IOPS in T s`
//! (T: the three measurements together, by this guest's clock, which the benchmark checks
//! against the host's).

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::time::Instant;

const STEP: usize = 1 << 20;
const BLOCK: usize = 4096;

/// A page-aligned buffer, as `O_DIRECT` wants.
struct Aligned {
    ptr: *mut u8,
    layout: Layout,
}

impl Aligned {
    fn new(len: usize) -> Aligned {
        let layout = Layout::from_size_align(len, BLOCK).expect("layout");
        // SAFETY: non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "out of memory");
        Aligned { ptr, layout }
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the allocation is `layout.size()` bytes, ours.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout.
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

/// The offsets of the random reads: a 64-bit LCG (Knuth's MMIX constants), the same sequence
/// the mote uses.
pub fn random_blocks(count: u64, blocks: u64) -> impl Iterator<Item = u64> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..count).map(move |_| {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (x >> 33) % blocks
    })
}

pub fn main(args: &[String]) -> i32 {
    let [device, bytes, reads] = args else {
        eprintln!("usage: mote-agent disk-bench DEVICE BYTES READS");
        return 2;
    };
    let (Ok(bytes), Ok(reads)) = (bytes.parse::<u64>(), reads.parse::<u64>()) else {
        eprintln!("mote-agent disk-bench: BYTES and READS are numbers");
        return 2;
    };
    match run(device, bytes, reads) {
        Ok(line) => {
            println!("{line}");
            0
        }
        Err(e) => {
            eprintln!("mote-agent disk-bench: {device}: {e}");
            1
        }
    }
}

fn run(device: &str, bytes: u64, reads: u64) -> std::io::Result<String> {
    let disk = OpenOptions::new().read(true).write(true).custom_flags(libc::O_DIRECT).open(device)?;
    let mut buf = Aligned::new(STEP);
    println!("disk-bench: start");
    let all = Instant::now();
    let steps = bytes / STEP as u64;
    let mb = (steps * STEP as u64) as f64 / 1e6;
    let start = Instant::now();
    for n in 0..steps {
        buf.bytes().fill(n as u8);
        disk.write_all_at(buf.bytes(), n * STEP as u64)?;
    }
    disk.sync_all()?;
    let write = mb / start.elapsed().as_secs_f64();
    let start = Instant::now();
    for n in 0..steps {
        disk.read_exact_at(buf.bytes(), n * STEP as u64)?;
    }
    let read = mb / start.elapsed().as_secs_f64();
    let mut block = Aligned::new(BLOCK);
    let start = Instant::now();
    for b in random_blocks(reads, bytes / BLOCK as u64) {
        disk.read_exact_at(block.bytes(), b * BLOCK as u64)?;
    }
    let iops = reads as f64 / start.elapsed().as_secs_f64();
    let total = all.elapsed().as_secs_f64();
    Ok(format!(
        "disk-bench: seq-write {write:.2} MB/s, seq-read {read:.2} MB/s, rand-read {iops:.0} IOPS in {total:.2} s"
    ))
}
