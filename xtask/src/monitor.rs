//! The harness's QEMU monitor, and the watch it keeps for a fault of QEMU's TCG: now and then
//! the emulated CPU stays halted although its local APIC holds a deliverable interrupt (Xen's
//! timer, in IRR, with interrupts enabled), and the whole machine sleeps until some other
//! interrupt comes, for minutes at times (docs/measurements.md, "The emulated machine stalls
//! with a timer interrupt pending"). The watch looks once a second; when two looks in a row find
//! the CPU so, it presses a key on the emulated keyboard (an interrupt of its own, which makes
//! QEMU look at the pending one), and says so on stderr and in the harness log.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

/// How often the watch looks.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// How long QEMU may take to create the monitor's socket.
const SOCKET_WAIT: Duration = Duration::from_secs(10);

/// Where a harness's monitor listens: in the temporary directory, as a Unix socket's path is
/// short (108 bytes) and a checkout's may be long.
pub fn socket_path(qemu_port: u16) -> PathBuf {
    std::env::temp_dir().join(format!("mote-qemu-{qemu_port}.sock"))
}

/// A connection to QEMU's human monitor.
struct Monitor {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Monitor {
    fn connect(path: &Path) -> io::Result<Monitor> {
        let deadline = Instant::now() + SOCKET_WAIT;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(stream) => break stream,
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => thread::sleep(Duration::from_millis(100)),
            }
        };
        let mut monitor = Monitor { reader: BufReader::new(stream.try_clone()?), writer: stream };
        monitor.until_prompt()?;
        Ok(monitor)
    }

    /// Reads up to the next `(qemu) ` prompt; returns what came before it.
    fn until_prompt(&mut self) -> io::Result<String> {
        let mut text = Vec::new();
        loop {
            let mut chunk = Vec::new();
            if self.reader.read_until(b' ', &mut chunk)? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the monitor closed"));
            }
            text.extend_from_slice(&chunk);
            if text.ends_with(b"(qemu) ") {
                return Ok(String::from_utf8_lossy(&text).into_owned());
            }
        }
    }

    fn command(&mut self, command: &str) -> io::Result<String> {
        self.writer.write_all(format!("{command}\n").as_bytes())?;
        self.until_prompt()
    }
}

/// The vector a halted CPU with interrupts enabled has pending in its local APIC, from the
/// monitor's `info registers` and `info lapic`; `None` when the CPU runs, has interrupts off,
/// or has nothing pending.
pub fn halted_with_pending(registers: &str, lapic: &str) -> Option<u8> {
    let field =
        |name: &str| registers.split_whitespace().find_map(|w| w.strip_prefix(name)).map(str::to_owned);
    let halted = field("HLT=")? == "1";
    let rflags = u64::from_str_radix(&field("RFL=")?, 16).ok()?;
    let interrupts_on = rflags & (1 << 9) != 0;
    let irr = lapic.lines().find_map(|l| l.trim_start().strip_prefix("IRR"))?;
    let vector = irr.split_whitespace().find_map(|w| w.parse::<u8>().ok())?;
    (halted && interrupts_on).then_some(vector)
}

/// Watches the harness's CPU until QEMU goes away; see the module documentation. `log` gets
/// one line per wake-up, with the time since `started` (QEMU's start).
pub fn watch(path: PathBuf, started: Instant, log: impl Fn(&str) + Send + 'static) {
    thread::spawn(move || {
        let Ok(mut monitor) = Monitor::connect(&path) else { return };
        let mut previous = None;
        let mut woken = 0u32;
        loop {
            thread::sleep(LOOK_EVERY);
            let look = monitor
                .command("info registers")
                .and_then(|registers| Ok(halted_with_pending(&registers, &monitor.command("info lapic")?)));
            let Ok(now) = look else { return };
            if let Some(vector) = now.filter(|_| now == previous) {
                woken += 1;
                let line = format!(
                    "harness: at {:.1}s the emulated CPU had slept {}s with interrupt vector {vector} pending \
                     (a QEMU TCG fault): woken with a key press ({woken} so far)",
                    started.elapsed().as_secs_f64(),
                    LOOK_EVERY.as_secs(),
                );
                eprintln!("{line}");
                log(&line);
                if monitor.command("sendkey shift").is_err() {
                    return;
                }
                previous = None;
            } else {
                previous = now;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the monitor printed during a stall (2026-11-28), trimmed.
    const REGISTERS: &str = "CPU#0\nRAX=0000000000000000 RBX=ffff83003ffd7ef8\n\
        RIP=ffff82d0402f9c06 RFL=00000202 [-------] CPL=0 II=0 A20=1 SMM=0 HLT=1\n";
    const LAPIC: &str = "dumping local APIC state for CPU 0 \n\n\
        LVTT\t 0x000000fa active-hi edge                 one-shot     Fixed  (vec 250)\n\
        Timer\t DCR=0xb (divide by 1) initial_count = 90206 current_count = 0\n\
        ISR\t (none)\nIRR\t 250 \n\nAPR 0x00 TPR 0x10 DFR 0x0f LDR 0x01 PPR 0x10\n";

    #[test]
    fn a_halted_cpu_with_a_pending_interrupt_is_found() {
        assert_eq!(halted_with_pending(REGISTERS, LAPIC), Some(250));
    }

    #[test]
    fn a_running_cpu_interrupts_off_or_an_empty_irr_is_not() {
        assert_eq!(halted_with_pending(&REGISTERS.replace("HLT=1", "HLT=0"), LAPIC), None);
        assert_eq!(halted_with_pending(&REGISTERS.replace("RFL=00000202", "RFL=00000002"), LAPIC), None);
        assert_eq!(halted_with_pending(REGISTERS, &LAPIC.replace("IRR\t 250 ", "IRR\t (none)")), None);
        assert_eq!(halted_with_pending("", LAPIC), None);
    }
}
