//! The `log` facade on the console: `[LEVEL target] message`, at the levels
//! `log=` sets per module (see [`crate::logspec`]; `info` by default).
//!
//! Every message up to `debug` also goes to a small flight recorder, printed
//! by crash reports: the context of a crash, even what the levels kept off
//! the console.

use crate::logspec::LogSpec;
use core::fmt::Write;
use log::{Level, LevelFilter, Log, Metadata, Record};
use spin::{Mutex, Once};

/// Lines kept, and the longest kept line (longer ones are cut).
const RECORDED_LINES: usize = 16;
const RECORDED_WIDTH: usize = 160;
/// What the flight recorder keeps.
const RECORDED_LEVEL: Level = Level::Debug;

type Line = heapless::String<RECORDED_WIDTH>;

static RECENT: Mutex<heapless::Deque<Line, RECORDED_LINES>> = Mutex::new(heapless::Deque::new());
static SPEC: Once<LogSpec> = Once::new();

struct ConsoleLogger;

impl Log for ConsoleLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        // While the gdb stub holds the CPU, the stopped code may hold the
        // console's lock: the stub's own messages (gdbstub's) are dropped.
        #[cfg(target_os = "none")]
        if crate::gdb::stopped() {
            return;
        }
        let (level, target) = (record.level(), record.target());
        if SPEC.get().is_some_and(|spec| level <= spec.level(target)) {
            crate::println!("[{level:<5} {target}] {}", record.args());
        }
        if level <= RECORDED_LEVEL {
            let mut line = Line::new();
            // A line too long for the recorder is kept cut short.
            let _ = write!(line, "[{level:<5} {target}] {}", record.args());
            // Never wait: a crash may have interrupted a writer.
            if let Some(mut recent) = RECENT.try_lock() {
                if recent.is_full() {
                    recent.pop_front();
                }
                let _ = recent.push_back(line);
            }
        }
    }

    fn flush(&self) {}
}

static LOGGER: ConsoleLogger = ConsoleLogger;

/// Installs the logger with the `log=` value; a bad one is reported, and the
/// default used.
pub(crate) fn init(value: Option<&str>) {
    let _ = log::set_logger(&LOGGER);
    let (spec, bad) = match value.map(LogSpec::parse) {
        None => (LogSpec::default(), None),
        Some(Ok(spec)) => (spec, None),
        Some(Err(e)) => (LogSpec::default(), Some(e)),
    };
    log::set_max_level(spec.max().max(LevelFilter::Debug));
    SPEC.call_once(|| spec);
    if let Some(e) = bad {
        log::warn!("{e}; using info");
    }
}

/// Prints the flight recorder's lines, oldest first, through `print`.
pub(crate) fn print_recent(print: impl Fn(core::fmt::Arguments<'_>)) {
    let Some(recent) = RECENT.try_lock() else { return };
    if recent.is_empty() {
        return;
    }
    print(format_args!("last log lines, oldest first:\n"));
    for line in recent.iter() {
        print(format_args!("  {line}\n"));
    }
}
