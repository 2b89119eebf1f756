//! Compiles the zones into the image: each master file is loaded here, on the host, with
//! `mote-dns`'s parser (a zone error stops the build with the file, line and problem) and
//! written in `mote_dns::compiled` form to `$OUT_DIR`; `$OUT_DIR/zones.rs` is a table of (file
//! name for errors, compiled zone) with `include_bytes!`, so the image carries no master-file
//! parser for them. `MOTE_DNS_ZONES` (absolute paths joined as in `PATH`, set by `cargo xtask
//! build dns --zone FILE…`, which checks the files first) chooses them; without it the sample
//! zone is served.

use mote_dns::{compiled, master};
use std::fmt::Write;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=MOTE_DNS_ZONES");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let zones: Vec<(String, PathBuf)> = match std::env::var_os("MOTE_DNS_ZONES").filter(|v| !v.is_empty()) {
        Some(list) => std::env::split_paths(&list).map(|p| (p.display().to_string(), p)).collect(),
        None => vec![("zones/example.com.zone".into(), manifest.join("zones/example.com.zone"))],
    };
    let mut table = String::from("/// The zones served: (file name for errors, compiled zone).\n");
    table.push_str("const ZONES: &[(&str, &[u8])] = &[\n");
    for (i, (name, path)) in zones.iter().enumerate() {
        assert!(path.is_absolute(), "MOTE_DNS_ZONES: {} is not an absolute path", path.display());
        println!("cargo:rerun-if-changed={}", path.display());
        let text = std::fs::read(path).unwrap_or_else(|e| fail(&format!("zone {name}: {e}")));
        let zone = master::parse_bytes(name, &text, None).unwrap_or_else(|e| fail(&e.to_string()));
        let file = out.join(format!("zone-{i}.bin"));
        std::fs::write(&file, compiled::write(&zone).unwrap_or_else(|e| fail(&format!("zone {name}: {e}"))))
            .unwrap();
        writeln!(table, "    ({name:?}, include_bytes!({:?})),", path_str(&file)).unwrap();
    }
    table.push_str("];\n");
    std::fs::write(out.join("zones.rs"), table).unwrap();
}

/// Ends the build with `message` (cargo shows the script's error output).
fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap_or_else(|| panic!("{} is not UTF-8", path.display()))
}
