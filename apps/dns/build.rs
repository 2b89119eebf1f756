//! Embeds the zones: writes `$OUT_DIR/zones.rs`, a table of (file name for errors, master-file
//! bytes) with `include_bytes!`. `MOTE_DNS_ZONES` (absolute paths joined as in `PATH`, set by
//! `cargo xtask build dns --zone FILE…`, which checks the files first) chooses them; without
//! it the sample zone is served.

use std::fmt::Write;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=MOTE_DNS_ZONES");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let zones: Vec<(String, PathBuf)> = match std::env::var_os("MOTE_DNS_ZONES").filter(|v| !v.is_empty()) {
        Some(list) => std::env::split_paths(&list).map(|p| (p.display().to_string(), p)).collect(),
        None => vec![("zones/example.com.zone".into(), manifest.join("zones/example.com.zone"))],
    };
    let mut table = String::from("/// The zones served: (file name for errors, master-file text).\n");
    table.push_str("const ZONES: &[(&str, &[u8])] = &[\n");
    for (name, path) in &zones {
        assert!(path.is_absolute(), "MOTE_DNS_ZONES: {} is not an absolute path", path.display());
        println!("cargo:rerun-if-changed={}", path.display());
        writeln!(table, "    ({name:?}, include_bytes!({:?})),", path_str(path)).unwrap();
    }
    table.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("zones.rs");
    std::fs::write(out, table).unwrap();
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap_or_else(|| panic!("{} is not UTF-8", path.display()))
}
