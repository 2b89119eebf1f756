//! Puts the linker script where the final link finds it: `-Tmote.ld` (in
//! `.cargo/config.toml`) is looked up in the library search path this adds.

use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    fs::copy("mote.ld", out.join("mote.ld")).expect("copy mote.ld");
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rerun-if-changed=mote.ld");
}
