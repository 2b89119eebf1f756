//! `mote-agent gnt-map DOMID REF [--write TEXT] [--hold SECONDS]`: maps grant reference REF of
//! domain DOMID into dom0 through `/dev/xen/gntdev` (Linux's `include/uapi/xen/gntdev.h`), the
//! way a backend would, and holds the mapping while a test looks at the granting guest.
//!
//! It prints the page's text (up to the first NUL) as `gnt-map: read "…"`, and with `--hex N` its
//! first N bytes in hex (`gnt-map: hex …`, e.g. a shared ring's indices); with `--write` it maps
//! the page read-write and writes TEXT and a NUL at its start (`gnt-map: wrote "…"`), else it maps
//! it read-only. Then it prints `gnt-map: holding (pid N)` and keeps the mapping until SIGTERM,
//! SIGINT or SIGHUP (`gnt-map: unmapped`, status 0) or until SECONDS (default 60) pass (unmapped
//! too, but status 1). If the process dies first, the kernel drops the mapping.

use std::fs::{File, OpenOptions};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::time::Duration;

const GNTDEV: &str = "/dev/xen/gntdev";
const PAGE_SIZE: usize = 4096;
const DEFAULT_HOLD: Duration = Duration::from_secs(60);
const USAGE: &str = "usage: mote-agent gnt-map DOMID REF [--write TEXT] [--hex BYTES] [--hold SECONDS]";

/// `struct ioctl_gntdev_grant_ref`.
#[repr(C)]
struct GrantRefArg {
    domid: u32,
    gref: u32,
}

/// `struct ioctl_gntdev_map_grant_ref`, for one reference.
#[repr(C)]
struct MapGrantRef {
    count: u32,
    pad: u32,
    /// Out: the offset to pass to mmap.
    index: u64,
    refs: [GrantRefArg; 1],
}

/// `struct ioctl_gntdev_unmap_grant_ref`.
#[repr(C)]
struct UnmapGrantRef {
    index: u64,
    count: u32,
    pad: u32,
}

/// `_IOC(_IOC_NONE, 'G', nr, size)` (x86: `_IOC_NONE` is 0).
const fn ioc_none_g(nr: u8, size: usize) -> libc::Ioctl {
    ((size as libc::Ioctl) << 16) | ((b'G' as libc::Ioctl) << 8) | nr as libc::Ioctl
}

const IOCTL_GNTDEV_MAP_GRANT_REF: libc::Ioctl = ioc_none_g(0, size_of::<MapGrantRef>());
const IOCTL_GNTDEV_UNMAP_GRANT_REF: libc::Ioctl = ioc_none_g(1, size_of::<UnmapGrantRef>());

/// What `gnt-map` was asked to do.
#[derive(Debug, PartialEq, Eq)]
pub struct MapArgs {
    pub domid: u32,
    pub gref: u32,
    /// Map read-write and write this at the start of the page.
    pub write: Option<String>,
    /// Print this many bytes from the start of the page in hex.
    pub hex: usize,
    pub hold: Duration,
}

/// Parses the arguments after `gnt-map`.
pub fn parse_args(args: &[String]) -> Result<MapArgs, String> {
    let [domid, gref, options @ ..] = args else {
        return Err(USAGE.into());
    };
    let number = |what: &str, v: &str| v.parse::<u32>().map_err(|_| format!("bad {what} {v:?}; {USAGE}"));
    let mut parsed = MapArgs {
        domid: number("DOMID", domid)?,
        gref: number("REF", gref)?,
        write: None,
        hex: 0,
        hold: DEFAULT_HOLD,
    };
    let mut options = options.iter();
    while let Some(option) = options.next() {
        let value = options.next().ok_or_else(|| format!("{option} needs a value; {USAGE}"))?;
        match option.as_str() {
            "--write" => parsed.write = Some(value.clone()),
            "--hex" => parsed.hex = (number("BYTES", value)? as usize).min(PAGE_SIZE),
            "--hold" => parsed.hold = Duration::from_secs(number("SECONDS", value)?.into()),
            _ => return Err(format!("unknown option {option:?}; {USAGE}")),
        }
    }
    Ok(parsed)
}

/// `mote-agent gnt-map …`; returns the exit status.
pub fn main(args: &[String]) -> i32 {
    let result = parse_args(args).and_then(|args| run(&args));
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("gnt-map: {e}");
            1
        }
    }
}

fn run(args: &MapArgs) -> Result<(), String> {
    // Blocked before mapping, so that a signal sent early is waited for rather than fatal.
    let signals = block_signals();
    let mapping = Mapping::new(args.domid, args.gref, args.write.is_some())
        .map_err(|e| format!("mapping grant {} of domain {}: {e}", args.gref, args.domid))?;
    let page = mapping.read();
    println!("gnt-map: read {:?}", text_of(&page));
    if args.hex > 0 {
        let hex: Vec<String> = page[..args.hex].iter().map(|b| format!("{b:02x}")).collect();
        println!("gnt-map: hex {}", hex.join(" "));
    }
    if let Some(text) = &args.write {
        let mut bytes = text.clone().into_bytes();
        bytes.push(0);
        mapping.write(&bytes);
        println!("gnt-map: wrote {text:?}");
    }
    println!("gnt-map: holding (pid {})", std::process::id());
    let signal = wait_for_signal(&signals, args.hold);
    mapping.unmap().map_err(|e| format!("unmapping: {e}"))?;
    println!("gnt-map: unmapped");
    match signal {
        Some(_) => Ok(()),
        None => Err(format!("no signal within {:?}", args.hold)),
    }
}

/// The bytes up to the first NUL, as text.
fn text_of(page: &[u8]) -> String {
    let end = page.iter().position(|&b| b == 0).unwrap_or(page.len());
    String::from_utf8_lossy(&page[..end]).into_owned()
}

/// Blocks SIGTERM, SIGINT and SIGHUP in this (single-threaded) process; returns them as a set
/// for [`wait_for_signal`].
fn block_signals() -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set, sigaddset adds valid signal numbers to it, and
    // pthread_sigmask reads it; all three only touch `set`.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(set.as_mut_ptr(), signal);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, set.as_ptr(), std::ptr::null_mut());
        set.assume_init()
    }
}

/// Waits for one of the blocked `signals`; `None` when `timeout` passes first.
fn wait_for_signal(signals: &libc::sigset_t, timeout: Duration) -> Option<i32> {
    let timeout = libc::timespec {
        tv_sec: timeout.as_secs().try_into().unwrap_or(libc::time_t::MAX),
        tv_nsec: timeout.subsec_nanos().into(),
    };
    loop {
        // SAFETY: both pointers are to live values of the right types; a null siginfo is allowed.
        let signal = unsafe { libc::sigtimedwait(signals, std::ptr::null_mut(), &timeout) };
        if signal > 0 {
            return Some(signal);
        }
        // EINTR (another signal's handler ran) waits again; EAGAIN is the timeout.
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return None;
        }
    }
}

/// One granted page mapped into this process.
struct Mapping {
    dev: File,
    /// The offset gntdev gave the grant, which names it in mmap and the unmap ioctl.
    index: u64,
    addr: *mut u8,
    writable: bool,
}

impl Mapping {
    fn new(domid: u32, gref: u32, writable: bool) -> io::Result<Mapping> {
        let dev = OpenOptions::new().read(true).write(true).open(GNTDEV)?;
        let mut map = MapGrantRef { count: 1, pad: 0, index: 0, refs: [GrantRefArg { domid, gref }] };
        // SAFETY: IOCTL_GNTDEV_MAP_GRANT_REF reads a `struct ioctl_gntdev_map_grant_ref` with
        // `count` (1) references and writes its `index`; `map` is exactly that.
        if unsafe { libc::ioctl(dev.as_raw_fd(), IOCTL_GNTDEV_MAP_GRANT_REF, &mut map) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let prot = if writable { libc::PROT_READ | libc::PROT_WRITE } else { libc::PROT_READ };
        // SAFETY: a new shared mapping at an address of the kernel's choosing, so no existing
        // memory is affected; gntdev maps the grant (read-only without PROT_WRITE) there.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE_SIZE,
                prot,
                libc::MAP_SHARED,
                dev.as_raw_fd(),
                map.index as libc::off_t,
            )
        };
        if addr == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            let _ = unmap_grant_ref(&dev, map.index);
            return Err(e);
        }
        Ok(Mapping { dev, index: map.index, addr: addr.cast(), writable })
    }

    /// A copy of the page.
    fn read(&self) -> Vec<u8> {
        // SAFETY: `addr` is a readable mapping of PAGE_SIZE bytes until `unmap`; volatile, as
        // the guest may change the page meanwhile.
        (0..PAGE_SIZE).map(|i| unsafe { self.addr.add(i).read_volatile() }).collect()
    }

    /// Writes `bytes` at the start of the page.
    fn write(&self, bytes: &[u8]) {
        assert!(self.writable && bytes.len() <= PAGE_SIZE, "write of {} bytes to the mapping", bytes.len());
        for (i, &b) in bytes.iter().enumerate() {
            // SAFETY: the mapping is writable and `i` is within its PAGE_SIZE bytes.
            unsafe { self.addr.add(i).write_volatile(b) };
        }
    }

    /// Unmaps the page, then releases the grant: the guest can end its grant after this.
    fn unmap(self) -> io::Result<()> {
        // SAFETY: `addr` is the PAGE_SIZE mapping made in `new`, and `self` (the only user of
        // it) is consumed.
        if unsafe { libc::munmap(self.addr.cast(), PAGE_SIZE) } < 0 {
            return Err(io::Error::last_os_error());
        }
        unmap_grant_ref(&self.dev, self.index)
    }
}

/// `IOCTL_GNTDEV_UNMAP_GRANT_REF` for the one grant at `index`.
fn unmap_grant_ref(dev: &File, index: u64) -> io::Result<()> {
    let mut unmap = UnmapGrantRef { index, count: 1, pad: 0 };
    // SAFETY: IOCTL_GNTDEV_UNMAP_GRANT_REF reads a `struct ioctl_gntdev_unmap_grant_ref`.
    if unsafe { libc::ioctl(dev.as_raw_fd(), IOCTL_GNTDEV_UNMAP_GRANT_REF, &mut unmap) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn structs_and_ioctl_numbers_match_gntdev_h() {
        assert_eq!(size_of::<GrantRefArg>(), 8);
        assert_eq!(size_of::<MapGrantRef>(), 24);
        assert_eq!(size_of::<UnmapGrantRef>(), 16);
        // From a C program including <xen/gntdev.h>.
        assert_eq!(IOCTL_GNTDEV_MAP_GRANT_REF, 0x18_4700);
        assert_eq!(IOCTL_GNTDEV_UNMAP_GRANT_REF, 0x10_4701);
    }

    #[test]
    fn parses_arguments() {
        assert_eq!(
            parse_args(&args(&["3", "12"])),
            Ok(MapArgs { domid: 3, gref: 12, write: None, hex: 0, hold: DEFAULT_HOLD })
        );
        assert_eq!(
            parse_args(&args(&["3", "12", "--hold", "5", "--write", "hi there", "--hex", "16"])),
            Ok(MapArgs {
                domid: 3,
                gref: 12,
                write: Some("hi there".into()),
                hex: 16,
                hold: Duration::from_secs(5)
            })
        );
        for bad in
            [&[][..], &["3"], &["x", "12"], &["3", "-1"], &["3", "12", "--write"], &["3", "12", "rw", "x"]]
        {
            assert!(parse_args(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn text_stops_at_the_first_nul() {
        assert_eq!(text_of(b"hello\0world"), "hello");
        assert_eq!(text_of(b"no nul"), "no nul");
        assert_eq!(text_of(b"\0"), "");
    }

    #[test]
    fn signals_end_the_wait_and_the_timeout_too() {
        let signals = block_signals();
        assert_eq!(wait_for_signal(&signals, Duration::from_millis(10)), None);
        // SAFETY: raise(3) sends a signal to this thread; it is blocked, so it stays pending.
        unsafe { libc::raise(libc::SIGHUP) };
        assert_eq!(wait_for_signal(&signals, Duration::from_secs(5)), Some(libc::SIGHUP));
    }
}
