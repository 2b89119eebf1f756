//! The `log` facade on the console: `[LEVEL target] message`. The level is
//! `info` unless the command line says `log=error|warn|info|debug|trace`.

use log::{LevelFilter, Log, Metadata, Record};

struct ConsoleLogger;

impl Log for ConsoleLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            crate::println!("[{:<5} {}] {}", record.level(), record.target(), record.args());
        }
    }

    fn flush(&self) {}
}

static LOGGER: ConsoleLogger = ConsoleLogger;

/// Installs the logger; an unknown `log=` value is reported, not ignored.
pub(crate) fn init(level: Option<&str>) {
    let _ = log::set_logger(&LOGGER);
    let filter = match level.map(str::parse::<LevelFilter>) {
        None => LevelFilter::Info,
        Some(Ok(filter)) => filter,
        Some(Err(_)) => {
            log::set_max_level(LevelFilter::Info);
            log::warn!("unknown log level {:?}, using info", level.unwrap_or_default());
            return;
        }
    };
    log::set_max_level(filter);
}
