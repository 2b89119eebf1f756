//! Symbolizes crash reports: a guest prints raw addresses (`  at 0x…` for the
//! faulting instruction, `  #N 0x…` for return addresses); this adds the
//! function and source line from the unstripped image, via binutils'
//! `addr2line`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Symbolizes with one image's debug information.
pub struct Symbolizer {
    elf: PathBuf,
    root: String,
}

/// A line of a crash report that carries an address.
#[derive(Debug, PartialEq, Eq)]
struct AddressLine {
    addr: u64,
    /// A return address points after the call; look up the call itself.
    is_return: bool,
}

fn parse(line: &str) -> Option<AddressLine> {
    let t = line.trim_start();
    let (rest, is_return) = if let Some(rest) = t.strip_prefix("at ") {
        (rest, false)
    } else {
        let rest = t.strip_prefix('#')?;
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        (rest[digits..].trim_start(), true)
    };
    let hex = rest.strip_prefix("0x")?;
    if hex.is_empty() || hex.len() > 16 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    Some(AddressLine { addr: u64::from_str_radix(hex, 16).ok()?, is_return })
}

/// One frame as `addr2line -f -i` reports it.
#[derive(Debug, PartialEq, Eq)]
struct Frame {
    function: String,
    location: String,
}

/// Pairs of lines (function, file:line), innermost inlined frame first.
fn parse_addr2line(output: &str, root: &str) -> Vec<Frame> {
    let lines: Vec<&str> = output.lines().collect();
    lines
        .chunks(2)
        .filter(|pair| pair.len() == 2 && pair[0] != "??")
        .map(|pair| Frame {
            function: pair[0].to_owned(),
            location: pair[1].strip_prefix(root).unwrap_or(pair[1]).to_owned(),
        })
        .collect()
}

impl Symbolizer {
    pub fn new(debug_elf: &Path, workspace_root: &Path) -> Symbolizer {
        Symbolizer { elf: debug_elf.to_owned(), root: format!("{}/", workspace_root.display()) }
    }

    /// `line` with the function and source location appended when it is an
    /// address line of a crash report; inlined frames from this workspace
    /// follow on lines of their own. Other lines come back unchanged.
    pub fn annotate(&self, line: &str) -> String {
        let Some(parsed) = parse(line) else { return line.to_owned() };
        let lookup = if parsed.is_return { parsed.addr.saturating_sub(1) } else { parsed.addr };
        let output = Command::new("addr2line")
            .args(["-f", "-C", "-i", "-e"])
            .arg(&self.elf)
            .arg(format!("{lookup:#x}"))
            .output();
        let frames = match output {
            Ok(out) if out.status.success() => {
                parse_addr2line(&String::from_utf8_lossy(&out.stdout), &self.root)
            }
            _ => return format!("{line} (addr2line failed on {})", self.elf.display()),
        };
        let Some((outer, inlined)) = frames.split_last() else { return line.to_owned() };
        let mut text = format!("{line} {} at {}", outer.function, outer.location);
        for frame in inlined.iter().rev().filter(|f| !f.location.starts_with('/')) {
            text.push_str(&format!("\n        inlined {} at {}", frame.function, frame.location));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_address_lines() {
        assert_eq!(parse("  at 0x0000000000100588"), Some(AddressLine { addr: 0x100588, is_return: false }));
        assert_eq!(parse("  #0  0x00000000001046fd"), Some(AddressLine { addr: 0x1046fd, is_return: true }));
        assert_eq!(parse("  #12 0x10"), Some(AddressLine { addr: 0x10, is_return: true }));
        assert_eq!(parse("  RIP=0x0000000000100588 CS=0x0008"), None);
        assert_eq!(parse("#x 0x10"), None);
        assert_eq!(parse("  at 0x"), None);
        assert_eq!(parse("  at 0x00000000001005880"), None);
        assert_eq!(parse("Hello, world!"), None);
    }

    #[test]
    fn reads_inlined_frames_and_trims_the_workspace_root() {
        let out = "core::str::next\n/rustc/abc/library/core/src/str/iter.rs:42\n\
                   mote::cmdline::Cmdline::get\n/work/m/runtime/src/cmdline.rs:31\n";
        assert_eq!(
            parse_addr2line(out, "/work/m/"),
            [
                Frame {
                    function: "core::str::next".into(),
                    location: "/rustc/abc/library/core/src/str/iter.rs:42".into()
                },
                Frame {
                    function: "mote::cmdline::Cmdline::get".into(),
                    location: "runtime/src/cmdline.rs:31".into()
                },
            ]
        );
        assert!(parse_addr2line("??\n??:0\n", "/").is_empty());
    }
}
