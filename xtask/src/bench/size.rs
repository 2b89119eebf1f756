//! `cargo xtask bench size` and `repro`: what the images weigh and what takes the space, and
//! whether two builds from clean give the same bytes.

use super::{Better, Ctx, Row, Section};
use crate::build::{self, TARGET};
use crate::run_status;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Issue #8's targets for the stripped images, KiB.
const TARGETS_KIB: [(&str, f64); 2] = [("dns", 200.0), ("web", 256.0)];
/// Crates shown per app in the breakdown.
const TOP: usize = 6;
/// The app built twice by `repro`.
const REPRO_APP: &str = "dns";

fn file_len(path: &Path) -> Result<u64, String> {
    std::fs::metadata(path).map(|m| m.len()).map_err(|e| format!("{}: {e}", path.display()))
}

/// The size section: each app's stripped image (and the one with the content-disk reader of
/// an app that has one), then its largest crates.
pub fn size(_: &mut Ctx) -> Result<Section, String> {
    let mut rows = Vec::new();
    let mut breakdown = Vec::new();
    let mut failures = Vec::new();
    let mut checksec = Vec::new();
    let empty_site = super::report::dir().join("empty-site");
    std::fs::create_dir_all(&empty_site).map_err(|e| format!("create {}: {e}", empty_site.display()))?;
    for app in build::apps()? {
        let meta = build::app_meta(&app)?;
        let target = TARGETS_KIB.iter().find(|(a, _)| *a == app).map(|(_, kib)| *kib);
        let kib = |image: &build::Image| Ok::<f64, String>(file_len(&image.elf)? as f64 / 1024.0);
        if meta.content.is_some() {
            match build::build(&app, build::Flavor::DISK) {
                Ok(image) => rows.push(
                    Row::new(
                        format!("{app}-disk image (--disk-support: reads a content disk), stripped"),
                        kib(&image)?,
                        "KiB",
                        Better::Lower,
                    )
                    .decimals(1),
                ),
                Err(e) => failures.push(format!("{app}-disk: {e}")),
            }
        }
        // Issue #6's target is for the image without site content.
        if meta.site {
            let env = [build::site_env(&app, &empty_site)?];
            match build::build_with(&app, build::Flavor::RELEASE, &env) {
                Ok(image) => {
                    let row = Row::new(
                        format!("{app} image without site content (--site an empty directory), stripped"),
                        kib(&image)?,
                        "KiB",
                        Better::Lower,
                    );
                    rows.push(with_target(row.decimals(1), target));
                }
                Err(e) => failures.push(format!("{app} without a site: {e}")),
            }
        }
        let image = match build::build(&app, build::Flavor::RELEASE) {
            Ok(image) => image,
            Err(e) => {
                failures.push(format!("{app}: {e}"));
                continue;
            }
        };
        let bytes = file_len(&image.elf)?;
        match crate::checksec::image(&image.elf, &image.debug_elf) {
            Ok(findings) => checksec
                .extend(crate::checksec::lines(&findings).iter().map(|l| format!("checksec {app}: {l}"))),
            Err(e) => failures.push(format!("checksec {app}: {e}")),
        }
        let name = if meta.site {
            format!("{app} image with its sample site, stripped")
        } else {
            format!("{app} image, stripped")
        };
        let row = Row::new(name, bytes as f64 / 1024.0, "KiB", Better::Lower).decimals(1);
        rows.push(if meta.site { row } else { with_target(row, target) });
        match crate_sizes(&image.debug_elf) {
            Ok(crates) => {
                let mut crates: Vec<(String, u64)> = crates.into_iter().collect();
                crates.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                let named: u64 = crates.iter().map(|c| c.1).sum();
                for (name, size) in crates.iter().take(TOP) {
                    breakdown.push(
                        Row::new(format!("{app}: {name}"), *size as f64 / 1024.0, "KiB", Better::Lower)
                            .decimals(1),
                    );
                }
                breakdown.push(
                    Row::new(
                        format!("{app}: not named by a symbol (strings, tables, headers)"),
                        bytes.saturating_sub(named) as f64 / 1024.0,
                        "KiB",
                        Better::Lower,
                    )
                    .decimals(1),
                );
            }
            Err(e) => failures.push(format!("{app} breakdown: {e}")),
        }
    }
    rows.extend(breakdown);
    Ok(Section {
        title: "stripped image size of every app (target/mote/<app>.elf; <app>-disk.elf with the content-disk \
                reader), then each app's largest crates, then checksec's findings on each"
            .into(),
        baseline: "issue #8's target (dns 200 KiB, web 256 KiB) for the images without the reader".into(),
        notes: vec![
            format!(
                "breakdown: code and read-only data symbols of <app>.debug.elf (nm --size-sort) by crate, top {TOP}; \
                 generic code counts for the crate whose path the instance carries, code inlined into another function \
                 for that function's crate, `main` for what is inlined into the app's entry"
            ),
        ]
        .into_iter()
        .chain(checksec)
        .collect(),
        rows,
        failures,
        ..Section::default()
    })
}

/// `row` against the app's target, when it has one.
fn with_target(row: Row, target: Option<f64>) -> Row {
    match target {
        Some(kib) => row.baseline(kib),
        None => row,
    }
}

/// Bytes of code and read-only data per crate in an unstripped image.
fn crate_sizes(debug_elf: &Path) -> Result<BTreeMap<String, u64>, String> {
    let out = Command::new("nm")
        .args(["--demangle", "--print-size", "--size-sort"])
        .arg(debug_elf)
        .output()
        .map_err(|e| format!("cannot run nm: {e}"))?;
    if !out.status.success() {
        return Err(format!("nm {} failed: {}", debug_elf.display(), String::from_utf8_lossy(&out.stderr)));
    }
    Ok(sum_by_crate(&String::from_utf8_lossy(&out.stdout)))
}

/// Sums `nm --print-size` lines of code (`t`/`T`) and read-only data (`r`/`R`) by crate.
fn sum_by_crate(nm: &str) -> BTreeMap<String, u64> {
    let mut sizes = BTreeMap::new();
    for line in nm.lines() {
        let mut parts = line.splitn(4, ' ');
        let (Some(_), Some(size), Some(kind), Some(name)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if !matches!(kind, "t" | "T" | "r" | "R") {
            continue;
        }
        let Ok(size) = u64::from_str_radix(size, 16) else { continue };
        *sizes.entry(crate_of(name)).or_default() += size;
    }
    sizes
}

/// The crate a demangled symbol belongs to: the first path segment, the trait's crate for
/// `<T as Trait>` of a type parameter, `core` for primitive types, `main` for the app's entry.
fn crate_of(symbol: &str) -> String {
    if symbol == "__mote_app_main" {
        return "main (the app, with what is inlined into it)".into();
    }
    if symbol == "mote_start" {
        return "mote".into();
    }
    let mut s = symbol.trim_start_matches(['<', '&', '*']);
    for prefix in ["mut ", "const ", "dyn "] {
        s = s.strip_prefix(prefix).unwrap_or(s);
    }
    let s = s.trim_start_matches(['<', '&', '(', '[']);
    let first: String = s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    let rest = &s[first.len()..];
    let is_type_param = first.len() == 1 && first.chars().all(|c| c.is_ascii_uppercase());
    if is_type_param {
        if let Some(after) = rest.strip_prefix(" as ") {
            return crate_of(after);
        }
    }
    const PRIMITIVES: [&str; 17] = [
        "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize", "f32", "f64",
        "bool", "char", "str",
    ];
    if PRIMITIVES.contains(&first.as_str()) {
        return "core".into();
    }
    if !rest.starts_with("::") || first.is_empty() {
        return "no crate (C symbols, compiler intrinsics, statics)".into();
    }
    first
}

/// The repro section: `REPRO_APP` built twice, each in a fresh target directory.
pub fn repro(_: &mut Ctx) -> Result<Section, String> {
    let mut hashes = Vec::new();
    let mut rows = Vec::new();
    for n in 1..=2 {
        let dir = super::report::dir().join(format!("repro-{n}"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| format!("remove {}: {e}", dir.display()))?;
        }
        let mut cargo = crate::cargo();
        cargo.env("CARGO_TARGET_DIR", &dir).args(["build", "--release", "-p", REPRO_APP, "--target", TARGET]);
        run_status(&mut cargo).map_err(|e| format!("build {n}: {e}"))?;
        let built = dir.join(TARGET).join("release").join(REPRO_APP);
        let stripped = dir.join(format!("{REPRO_APP}.elf"));
        run_status(Command::new("objcopy").arg("--strip-all").arg(&built).arg(&stripped))?;
        let (hash, len) = (sha256(&stripped)?, file_len(&stripped)?);
        rows.push(
            Row::new(format!("{REPRO_APP} build {n}, stripped"), len as f64 / 1024.0, "KiB", Better::Lower)
                .decimals(1),
        );
        hashes.push((hash, sha256(&built)?));
        std::fs::remove_dir_all(&dir).map_err(|e| format!("remove {}: {e}", dir.display()))?;
    }
    let yes = |equal: bool| if equal { 1.0 } else { 0.0 };
    let (stripped, unstripped) = (hashes[0].0 == hashes[1].0, hashes[0].1 == hashes[1].1);
    rows.push(Row::new("stripped images equal", yes(stripped), "1 = yes", Better::Neither).decimals(0));
    rows.push(Row::new("unstripped images equal", yes(unstripped), "1 = yes", Better::Neither).decimals(0));
    Ok(Section {
        title: format!("apps/{REPRO_APP} built twice from clean, each in a new target directory"),
        notes: vec![
            format!("sha256 of the stripped images: {} and {}", hashes[0].0, hashes[1].0),
            format!("sha256 of the unstripped images: {} and {}", hashes[0].1, hashes[1].1),
        ],
        rows,
        ..Section::default()
    })
}

fn sha256(path: &Path) -> Result<String, String> {
    let out =
        Command::new("sha256sum").arg(path).output().map_err(|e| format!("cannot run sha256sum: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .filter(|h| out.status.success() && h.len() == 64)
        .map(str::to_owned)
        .ok_or_else(|| format!("sha256sum {} failed", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_are_counted_by_crate() {
        let nm = "\
0000000000100000 0000000000000010 T mote_start
0000000000100010 0000000000000020 t smoltcp::wire::tcp::Repr::parse
0000000000100030 0000000000000005 t <smoltcp::wire::ip::Address as core::fmt::Display>::fmt
0000000000100040 0000000000000100 t <&T as core::fmt::Display>::fmt
0000000000100140 0000000000000003 t <u32 as core::fmt::Debug>::fmt
0000000000100150 0000000000000007 r anon.0
0000000000200000 0000000000001000 b mote_arch::gdt::STACK
0000000000100160 0000000000000002 T __mote_app_main
0000000000100170 0000000000000001 t <alloc::vec::Vec<T> as core::ops::drop::Drop>::drop
";
        let sizes = sum_by_crate(nm);
        assert_eq!(sizes["mote"], 0x10);
        assert_eq!(sizes["smoltcp"], 0x25);
        assert_eq!(sizes["core"], 0x103);
        assert_eq!(sizes["alloc"], 1);
        assert_eq!(sizes["no crate (C symbols, compiler intrinsics, statics)"], 7);
        assert_eq!(sizes["main (the app, with what is inlined into it)"], 2);
        assert!(!sizes.contains_key("mote_arch"), "bss takes no room in the file");
    }
}
