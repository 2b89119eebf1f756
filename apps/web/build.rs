//! Embeds `site/` in the image: writes `$OUT_DIR/site.rs`, a table of every file under it
//! (sorted by path, as `StaticSite` wants), each with `include_bytes!`, its modification time
//! and its entity tag.

use std::fmt::Write;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

fn main() {
    let root = Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("site");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    walk(&root, &mut files);
    let mut entries: Vec<(String, PathBuf)> = files
        .into_iter()
        .map(|file| {
            let relative = file.strip_prefix(&root).unwrap();
            let parts: Vec<&str> = relative
                .iter()
                .map(|part| part.to_str().unwrap_or_else(|| panic!("{} is not UTF-8", file.display())))
                .collect();
            (format!("/{}", parts.join("/")), file)
        })
        .collect();
    entries.sort();
    let mut table = String::from("pub static FILES: &[mote_http::StaticFile] = &[\n");
    for (path, file) in &entries {
        let body = fs::read(file).unwrap();
        let modified = fs::metadata(file).unwrap().modified().unwrap();
        let modified = modified.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let etag = mote_http::etag(&body);
        writeln!(
            table,
            "    mote_http::StaticFile {{ path: {path:?}, body: include_bytes!({:?}), modified: {modified}, etag: {etag:?} }},",
            file.display().to_string()
        )
        .unwrap();
    }
    table.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("site.rs");
    fs::write(out, table).unwrap();
}

/// Every regular file below `dir`, following no symbolic links.
fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            walk(&entry.path(), files);
        } else if kind.is_file() {
            files.push(entry.path());
        }
    }
}
