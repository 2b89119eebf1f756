//! `cargo xtask checksec [<app>]`: what an image's ELF file says about its hardening — the
//! rights of each loadable segment, W^X, whether it could be loaded at a random address, the
//! guard pages below its stacks and whether it links the boot-time entropy source.
//!
//! The segments and the ELF type come from the stripped image Xen loads (`<app>.elf`), the
//! symbols from its unstripped twin (`<app>.debug.elf`, the same link). A small reader of
//! ELF64 little-endian headers and the symbol table does the parsing.

use crate::build::{self, Flavor};
use std::fmt::Write as _;
use std::path::Path;

/// `e_type` of a position-independent executable (ELF gABI, "ELF Header").
const ET_DYN: u16 = 3;
const PT_LOAD: u32 = 1;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;
const SHT_SYMTAB: u32 = 2;
const SHT_NOBITS: u32 = 8;
const PAGE: u64 = 4096;

/// A program header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub kind: u32,
    pub flags: u32,
    pub vaddr: u64,
    pub memsz: u64,
}

/// A section header, with its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionHeader {
    pub name: String,
    pub kind: u32,
}

/// A symbol, with its name demangled to a Rust path where it is a legacy-mangled one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    pub name: String,
    pub value: u64,
    pub size: u64,
    /// Index of the section it is defined in.
    pub section: u16,
}

/// What the reader takes from an ELF file.
#[derive(Debug, Default)]
pub struct Elf {
    pub kind: u16,
    pub segments: Vec<Segment>,
    pub sections: Vec<SectionHeader>,
    pub symbols: Vec<Symbol>,
}

/// Bounds-checked little-endian reads.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn get<const N: usize>(&self, at: u64) -> Result<[u8; N], String> {
        let start = usize::try_from(at).map_err(|_| format!("offset {at:#x} out of range"))?;
        self.0
            .get(start..start.checked_add(N).ok_or("offset overflows")?)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format!("truncated: {N} bytes at {at:#x} past the end ({:#x})", self.0.len()))
    }
    fn u16(&self, at: u64) -> Result<u16, String> {
        self.get(at).map(u16::from_le_bytes)
    }
    fn u32(&self, at: u64) -> Result<u32, String> {
        self.get(at).map(u32::from_le_bytes)
    }
    fn u64(&self, at: u64) -> Result<u64, String> {
        self.get(at).map(u64::from_le_bytes)
    }
    /// The NUL-terminated string at `at`.
    fn str(&self, at: u64) -> Result<String, String> {
        let tail = usize::try_from(at).ok().and_then(|at| self.0.get(at..)).ok_or("string past the end")?;
        let len = tail.iter().position(|&b| b == 0).ok_or("unterminated string")?;
        Ok(String::from_utf8_lossy(&tail[..len]).into_owned())
    }
}

impl Elf {
    /// Parses an ELF64 little-endian file; an error says what is malformed.
    pub fn parse(data: &[u8]) -> Result<Elf, String> {
        let b = Bytes(data);
        if b.get::<4>(0)? != *b"\x7fELF" {
            return Err("not an ELF file".into());
        }
        // EI_CLASS 2 = ELFCLASS64, EI_DATA 1 = ELFDATA2LSB.
        if b.get::<2>(4)? != [2, 1] {
            return Err("not a 64-bit little-endian ELF file".into());
        }
        let kind = b.u16(16)?;
        let (phoff, shoff) = (b.u64(32)?, b.u64(40)?);
        let (phentsize, phnum) = (u64::from(b.u16(54)?), b.u16(56)?);
        let (shentsize, shnum, shstrndx) = (u64::from(b.u16(58)?), b.u16(60)?, b.u16(62)?);
        let at = |base: u64, size: u64, i: u16| {
            size.checked_mul(u64::from(i))
                .and_then(|off| base.checked_add(off))
                .ok_or_else(|| format!("header {i} overflows"))
        };
        let mut segments = Vec::new();
        for i in 0..phnum {
            let h = at(phoff, phentsize, i)?;
            segments.push(Segment {
                kind: b.u32(h)?,
                flags: b.u32(h + 4)?,
                vaddr: b.u64(h + 16)?,
                memsz: b.u64(h + 40)?,
            });
        }
        // (name offset, type, file offset, size, link, entry size) of each section.
        let mut raw = Vec::new();
        for i in 0..shnum {
            let h = at(shoff, shentsize, i)?;
            raw.push((
                b.u32(h)?,
                b.u32(h + 4)?,
                b.u64(h + 24)?,
                b.u64(h + 32)?,
                b.u32(h + 40)?,
                b.u64(h + 56)?,
            ));
        }
        let names = match raw.get(usize::from(shstrndx)) {
            Some(&(_, _, offset, ..)) if shnum > 0 => Some(offset),
            _ if shnum == 0 => None,
            _ => return Err(format!("section name table {shstrndx} of {shnum} sections")),
        };
        let mut sections = Vec::new();
        for &(name, kind, ..) in &raw {
            let name = match names {
                Some(table) => b.str(table + u64::from(name))?,
                None => String::new(),
            };
            sections.push(SectionHeader { name, kind });
        }
        let mut symbols = Vec::new();
        for &(_, _, offset, size, link, entsize) in raw.iter().filter(|s| s.1 == SHT_SYMTAB) {
            let strings = raw.get(link as usize).ok_or_else(|| format!("symbol names in section {link}"))?.2;
            if entsize < 24 {
                return Err(format!("symbol entry size {entsize}"));
            }
            for n in 0..size / entsize {
                let s = offset + n * entsize;
                symbols.push(Symbol {
                    name: demangle(&b.str(strings + u64::from(b.u32(s)?))?),
                    section: b.u16(s + 6)?,
                    value: b.u64(s + 8)?,
                    size: b.u64(s + 16)?,
                });
            }
        }
        Ok(Elf { kind, segments, sections, symbols })
    }

    fn symbol(&self, name: &str) -> Option<&Symbol> {
        self.symbols.iter().find(|s| s.name == name)
    }

    /// Whether `symbol` lies in a section that takes no bytes in the file (`.bss`).
    fn in_nobits(&self, symbol: &Symbol) -> bool {
        self.sections.get(usize::from(symbol.section)).is_some_and(|s| s.kind == SHT_NOBITS)
    }
}

/// `_ZN4mote6random6source17h0123456789abcdefE` as `mote::random::source`: the legacy Rust
/// mangling's length-prefixed path, its hash dropped. Other names come back as they are.
pub fn demangle(name: &str) -> String {
    let Some(mut rest) = name.strip_prefix("_ZN") else { return name.to_owned() };
    let mut parts = Vec::new();
    while let Some(digits) = rest.find(|c: char| !c.is_ascii_digit()).filter(|&d| d > 0) {
        let Ok(len) = rest[..digits].parse::<usize>() else { return name.to_owned() };
        let Some(part) = rest.get(digits..digits + len) else { return name.to_owned() };
        parts.push(part);
        rest = &rest[digits + len..];
    }
    if rest != "E" || parts.is_empty() {
        return name.to_owned();
    }
    let is_hash =
        |p: &str| p.len() == 17 && p.starts_with('h') && p[1..].chars().all(|c| c.is_ascii_hexdigit());
    if parts.last().is_some_and(|p| is_hash(p)) {
        parts.pop();
    }
    parts.join("::")
}

/// The boot stack's guard page and the stack above it (arch/src/boot.rs).
const BOOT_GUARD: &str = "mote_boot_stack_guard";
const BOOT_STACK: &str = "mote_boot_stack_bottom";
/// The exception (IST) stack, its first page the guard (arch/src/gdt.rs).
const IST_STACK: &str = "mote_arch::gdt::FATAL_STACK";
/// The page tables built from the image's layout at boot (arch/src/paging.rs).
const PAGE_TABLES: &str = "mote_arch::paging::installed::LAYOUT";
/// A function only the boot-time entropy code has (runtime/src/random/entropy.rs).
const ENTROPY: &str = "mote::random::entropy::cpu::rdseed";

/// What checksec found in one image.
#[derive(Debug)]
pub struct Findings {
    pub segments: Vec<Segment>,
    pub pie: bool,
    /// The lowest loadable address: where a non-PIE image is linked.
    pub base: u64,
    /// `Ok` with what proves the guard pages, `Err` with what is missing.
    pub guards: Result<String, String>,
    pub entropy: bool,
}

impl Findings {
    /// No loadable segment both writable and executable.
    pub fn wx(&self) -> bool {
        self.segments.iter().all(|s| s.flags & (PF_W | PF_X) != PF_W | PF_X)
    }
}

/// Checks `image` (the loaded ELF's headers) with the symbols of `symbols` (its unstripped twin).
pub fn check(image: &Elf, symbols: &Elf) -> Findings {
    let segments: Vec<Segment> = image.segments.iter().filter(|s| s.kind == PT_LOAD).cloned().collect();
    Findings {
        base: segments.iter().map(|s| s.vaddr).min().unwrap_or(0),
        segments,
        pie: image.kind == ET_DYN,
        guards: guards(symbols),
        entropy: symbols.symbol(ENTROPY).is_some(),
    }
}

/// The guard pages: the boot stack's guard a page-aligned page of `.bss` right below the
/// stack, the exception stack a page-aligned `.bss` object larger than its guard page, and the
/// page tables that leave both unmapped linked in.
fn guards(elf: &Elf) -> Result<String, String> {
    let find = |name: &str| elf.symbol(name).ok_or_else(|| format!("no symbol {name}"));
    let (guard, stack, ist) = (find(BOOT_GUARD)?, find(BOOT_STACK)?, find(IST_STACK)?);
    find(PAGE_TABLES)?;
    if guard.value % PAGE != 0 || stack.value != guard.value + PAGE || !elf.in_nobits(guard) {
        return Err(format!("{BOOT_GUARD} at {:#x} is not the .bss page below {BOOT_STACK}", guard.value));
    }
    if ist.value % PAGE != 0 || ist.size <= PAGE || !elf.in_nobits(ist) {
        return Err(format!("{IST_STACK} at {:#x} is not a .bss stack above a guard page", ist.value));
    }
    Ok(format!(
        "boot stack: {BOOT_GUARD} {:#x}, the page below {BOOT_STACK}; IST stack: first page of {IST_STACK} \
         {:#x}; unmapped by {PAGE_TABLES}",
        guard.value, ist.value
    ))
}

fn flags(f: u32) -> String {
    [(PF_R, 'R'), (PF_W, 'W'), (PF_X, 'X')]
        .iter()
        .map(|&(bit, c)| if f & bit != 0 { c } else { '-' })
        .collect()
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The findings as lines of text, one fact a line.
pub fn lines(f: &Findings) -> Vec<String> {
    let mut lines: Vec<String> = f
        .segments
        .iter()
        .map(|s| format!("LOAD {} {:#x} {} bytes", flags(s.flags), s.vaddr, s.memsz))
        .collect();
    lines.push(format!("W^X: {} (no LOAD segment both W and X)", yes(f.wx())));
    lines.push(if f.pie {
        "PIE/KASLR: yes (ET_DYN)".into()
    } else {
        format!("PIE/KASLR: no (linked at {:#x})", f.base)
    });
    lines.push(match &f.guards {
        Ok(proof) => format!("stack guards: yes ({proof})"),
        Err(missing) => format!("stack guards: no ({missing})"),
    });
    lines.push(if f.entropy {
        format!("entropy: RDSEED, else RDRAND, else jitter, chosen at boot ({ENTROPY} linked)")
    } else {
        format!("entropy: no boot-time source ({ENTROPY} not linked)")
    });
    lines
}

fn read(path: &Path) -> Result<Elf, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Elf::parse(&data).map_err(|e| format!("{}: {e}", path.display()))
}

/// The findings of `app`'s release image, built first when it is missing.
pub fn app(app: &str) -> Result<Findings, String> {
    build::app_meta(app)?;
    let dir = build::out_dir(Flavor::RELEASE);
    let (elf, debug_elf) = (dir.join(format!("{app}.elf")), dir.join(format!("{app}.debug.elf")));
    let (elf, debug_elf) = if elf.is_file() && debug_elf.is_file() {
        (elf, debug_elf)
    } else {
        let image = build::build(app, Flavor::RELEASE)?;
        (image.elf, image.debug_elf)
    };
    image(&elf, &debug_elf)
}

/// The findings of a stripped image and its unstripped twin.
pub fn image(elf: &Path, debug_elf: &Path) -> Result<Findings, String> {
    Ok(check(&read(elf)?, &read(debug_elf)?))
}

/// `cargo xtask checksec [<app>]`: prints each app's findings; an app that cannot be checked
/// is reported and the others still are. False when one could not be checked.
pub fn run(apps: &[String]) -> bool {
    let mut ok = true;
    for app in apps {
        let mut text = String::new();
        match self::app(app) {
            Ok(f) => {
                let _ = writeln!(text, "{app}:");
                for line in lines(&f) {
                    let _ = writeln!(text, "  {line}");
                }
            }
            Err(e) => {
                ok = false;
                let _ = writeln!(text, "{app}: error: {e}");
            }
        }
        print!("{text}");
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A section of the fixture: name, type, address, and for a symbol table nothing else.
    const NULL: u32 = 0;
    const PROGBITS: u32 = 1;
    const STRTAB: u32 = 3;

    /// An ELF64 file with these LOAD segments (flags, address, size), a `.text` and a `.bss`,
    /// and these symbols (name, address, size, section: 1 `.text`, 2 `.bss`).
    fn fixture(kind: u16, segments: &[(u32, u64, u64)], symbols: &[(&str, u64, u64, u16)]) -> Vec<u8> {
        let mut strtab = vec![0u8];
        let mut symtab = vec![0u8; 24];
        for &(name, value, size, section) in symbols {
            symtab.extend((strtab.len() as u32).to_le_bytes());
            symtab.extend([0, 0]);
            symtab.extend(section.to_le_bytes());
            symtab.extend(value.to_le_bytes());
            symtab.extend(size.to_le_bytes());
            strtab.extend(name.as_bytes());
            strtab.push(0);
        }
        let shstrtab = b"\0.text\0.bss\0.symtab\0.strtab\0.shstrtab\0".to_vec();
        let phoff = 64u64;
        let data_off = phoff + 56 * segments.len() as u64;
        let (symtab_off, strtab_off) = (data_off, data_off + symtab.len() as u64);
        let shstrtab_off = strtab_off + strtab.len() as u64;
        let shoff = shstrtab_off + shstrtab.len() as u64;
        let mut f = Vec::new();
        f.extend(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
        f.extend(kind.to_le_bytes());
        f.extend(62u16.to_le_bytes());
        f.extend(1u32.to_le_bytes());
        f.extend(0x100000u64.to_le_bytes());
        f.extend(phoff.to_le_bytes());
        f.extend(shoff.to_le_bytes());
        f.extend(0u32.to_le_bytes());
        for half in [64u16, 56, segments.len() as u16, 64, 6, 5] {
            f.extend(half.to_le_bytes());
        }
        for &(flags, vaddr, size) in segments {
            f.extend(PT_LOAD.to_le_bytes());
            f.extend(flags.to_le_bytes());
            for word in [0, vaddr, vaddr, size, size, PAGE] {
                f.extend(word.to_le_bytes());
            }
        }
        f.extend(&symtab);
        f.extend(&strtab);
        f.extend(&shstrtab);
        // (name, type, offset, size, link, entry size)
        let sections = [
            (0u32, NULL, 0, 0, 0u32, 0),
            (1, PROGBITS, 0, 0, 0, 0),
            (7, SHT_NOBITS, 0, 0, 0, 0),
            (12, SHT_SYMTAB, symtab_off, symtab.len() as u64, 4, 24),
            (20, STRTAB, strtab_off, strtab.len() as u64, 0, 0),
            (28, STRTAB, shstrtab_off, shstrtab.len() as u64, 0, 0),
        ];
        for (name, kind, offset, size, link, entsize) in sections {
            f.extend(name.to_le_bytes());
            f.extend(kind.to_le_bytes());
            f.extend([0u64, 0, offset, size].iter().flat_map(|w| w.to_le_bytes()));
            f.extend(link.to_le_bytes());
            f.extend(0u32.to_le_bytes());
            f.extend([0u64, entsize].iter().flat_map(|w| w.to_le_bytes()));
        }
        f
    }

    const SEGMENTS: [(u32, u64, u64); 4] = [
        (PF_R | PF_X, 0x100000, 0x2e2da),
        (PF_R, 0x12f000, 0x97f8),
        (PF_R | PF_W, 0x139000, 0x178),
        (PF_R | PF_W, 0x13a000, 0x34000),
    ];

    /// The symbols of a mote image, as `arch` and `mote::random` name them.
    fn mote_symbols() -> Vec<(&'static str, u64, u64, u16)> {
        vec![
            ("mote_boot_stack_guard", 0x140000, 0, 2),
            ("mote_boot_stack_bottom", 0x141000, 0, 2),
            ("_ZN9mote_arch3gdt11FATAL_STACK17h1eb605ae32c1b1cbE", 0x153000, 0x5000, 2),
            ("_ZN9mote_arch6paging9installed6LAYOUT17h5e80727b867975d3E", 0x16a000, 0xc90, 2),
            ("_ZN4mote6random7entropy3cpu6rdseed17hf9b58353169147b8E", 0x11dd24, 12, 1),
        ]
    }

    fn findings(kind: u16, segments: &[(u32, u64, u64)], symbols: &[(&str, u64, u64, u16)]) -> Findings {
        let elf = Elf::parse(&fixture(kind, segments, symbols)).unwrap();
        check(&elf, &elf)
    }

    #[test]
    fn a_mote_image_has_w_xor_x_guards_and_entropy_but_no_pie() {
        let f = findings(2, &SEGMENTS, &mote_symbols());
        assert_eq!(
            lines(&f)[..6],
            [
                "LOAD R-X 0x100000 189146 bytes",
                "LOAD R-- 0x12f000 38904 bytes",
                "LOAD RW- 0x139000 376 bytes",
                "LOAD RW- 0x13a000 212992 bytes",
                "W^X: yes (no LOAD segment both W and X)",
                "PIE/KASLR: no (linked at 0x100000)",
            ]
        );
        assert!(
            f.guards.as_ref().is_ok_and(|g| g.contains("0x140000") && g.contains("0x153000")),
            "{:?}",
            f.guards
        );
        assert!(f.entropy);
    }

    #[test]
    fn a_segment_both_writable_and_executable_breaks_w_xor_x() {
        let f = findings(2, &[(PF_R | PF_W | PF_X, 0x100000, 0x1000)], &[]);
        assert!(!f.wx());
        assert_eq!(lines(&f)[1], "W^X: no (no LOAD segment both W and X)");
    }

    #[test]
    fn a_position_independent_image_is_reported_as_pie() {
        assert!(findings(ET_DYN, &SEGMENTS, &[]).pie);
        assert!(!findings(2, &SEGMENTS, &[]).pie);
    }

    #[test]
    fn a_guard_that_is_not_the_page_below_the_stack_is_no_guard() {
        let mut symbols = mote_symbols();
        symbols[1].1 = 0x140800;
        assert!(findings(2, &SEGMENTS, &symbols).guards.is_err());
        let mut symbols = mote_symbols();
        symbols[0].3 = 1;
        assert!(findings(2, &SEGMENTS, &symbols).guards.is_err(), "a guard in .text is no unmapped page");
        let mut symbols = mote_symbols();
        symbols[2].2 = PAGE;
        assert!(findings(2, &SEGMENTS, &symbols).guards.is_err(), "an IST object of only its guard page");
        let mut symbols = mote_symbols();
        symbols.remove(3);
        let f = findings(2, &SEGMENTS, &symbols);
        assert_eq!(f.guards, Err(format!("no symbol {PAGE_TABLES}")));
        assert!(lines(&f)[6].starts_with("stack guards: no"));
    }

    #[test]
    fn an_image_without_mote_random_has_no_entropy_source() {
        let mut symbols = mote_symbols();
        symbols.pop();
        let f = findings(2, &SEGMENTS, &symbols);
        assert!(!f.entropy);
        assert!(lines(&f)[7].starts_with("entropy: no"));
    }

    #[test]
    fn truncated_or_foreign_files_are_errors_not_panics() {
        let whole = fixture(2, &SEGMENTS, &mote_symbols());
        for len in 0..whole.len() {
            let _ = Elf::parse(&whole[..len]);
        }
        assert!(Elf::parse(&whole[..100]).is_err());
        assert_eq!(Elf::parse(b"#!/bin/sh\n").unwrap_err(), "not an ELF file");
        let mut elf32 = whole.clone();
        elf32[4] = 1;
        assert!(Elf::parse(&elf32).is_err());
    }

    #[test]
    fn legacy_mangled_names_read_as_paths() {
        assert_eq!(
            demangle("_ZN9mote_arch3gdt11FATAL_STACK17h1eb605ae32c1b1cbE"),
            "mote_arch::gdt::FATAL_STACK"
        );
        assert_eq!(demangle("mote_boot_stack_guard"), "mote_boot_stack_guard");
        assert_eq!(demangle("_ZN9mote_arch3gdtE"), "mote_arch::gdt");
        assert_eq!(demangle("_ZN99tooshortE"), "_ZN99tooshortE");
    }
}
