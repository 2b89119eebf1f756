//! The `log=` command-line value: a default level and per-module levels,
//! `log=info,mote::net=debug,mote_netfront=warn`. A module's level is that of
//! the longest target prefix that names it (at a `::` boundary).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use log::LevelFilter;

/// A parsed `log=` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSpec {
    default: LevelFilter,
    /// `(target prefix, level)`.
    modules: Vec<(String, LevelFilter)>,
}

/// A `log=` entry that is not `LEVEL` or `TARGET=LEVEL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadEntry(pub String);

impl fmt::Display for BadEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad log= entry \"{}\": expected LEVEL or MODULE=LEVEL (levels: off, error, warn, info, debug, trace)", self.0)
    }
}

impl Default for LogSpec {
    fn default() -> Self {
        LogSpec { default: LevelFilter::Info, modules: Vec::new() }
    }
}

impl LogSpec {
    /// Parses `log=`'s value; an error names the first entry that is not a level or
    /// `module=level`, so that a typo is reported rather than silently logging less.
    pub fn parse(value: &str) -> Result<LogSpec, BadEntry> {
        let mut spec = LogSpec::default();
        for entry in value.split(',').filter(|e| !e.is_empty()) {
            let bad = || BadEntry(entry.into());
            match entry.split_once('=') {
                None => spec.default = entry.parse().map_err(|_| bad())?,
                Some((target, level)) if !target.is_empty() => {
                    spec.modules.push((target.into(), level.parse().map_err(|_| bad())?));
                }
                Some(_) => return Err(bad()),
            }
        }
        Ok(spec)
    }

    /// The level for messages of `target`.
    pub fn level(&self, target: &str) -> LevelFilter {
        self.modules
            .iter()
            .filter(|(prefix, _)| {
                target
                    .strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
            })
            .max_by_key(|(prefix, _)| prefix.len())
            .map_or(self.default, |(_, level)| *level)
    }

    /// The most verbose level any module gets.
    pub fn max(&self) -> LevelFilter {
        self.modules.iter().map(|(_, l)| *l).chain([self.default]).max().unwrap_or(self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_module_levels_use_the_longest_prefix() {
        let spec = LogSpec::parse("warn,mote::net=debug,mote::net::stack=error,mote_netfront=trace").unwrap();
        assert_eq!(spec.level("mote::start"), LevelFilter::Warn);
        assert_eq!(spec.level("mote::net"), LevelFilter::Debug);
        assert_eq!(spec.level("mote::net::xen"), LevelFilter::Debug);
        assert_eq!(spec.level("mote::net::stack"), LevelFilter::Error);
        assert_eq!(spec.level("mote::network"), LevelFilter::Warn, "prefixes end at ::");
        assert_eq!(spec.level("mote_netfront::device"), LevelFilter::Trace);
        assert_eq!(spec.max(), LevelFilter::Trace);
    }

    #[test]
    fn plain_levels_and_errors() {
        assert_eq!(LogSpec::parse("debug").unwrap().level("anything"), LevelFilter::Debug);
        assert_eq!(LogSpec::parse("").unwrap(), LogSpec::default());
        assert_eq!(LogSpec::parse("loud"), Err(BadEntry("loud".into())));
        assert_eq!(LogSpec::parse("info,mote=loud"), Err(BadEntry("mote=loud".into())));
        assert_eq!(LogSpec::parse("=debug"), Err(BadEntry("=debug".into())));
    }
}
