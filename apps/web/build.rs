//! Embeds the site in the image: writes `$OUT_DIR/site.rs`, a table of every file under it
//! (sorted by path, as `StaticSite` wants), each with `include_bytes!`, its modification time,
//! its entity tag and, when compressing makes it smaller, a gzip-compressed copy with its own
//! tag. The site is `site/` unless `MOTE_SITE` names another directory (`cargo xtask build
//! web --site DIR` sets it).

use flate2::write::GzEncoder;
use flate2::Compression;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

fn main() {
    println!("cargo:rerun-if-env-changed=MOTE_SITE");
    let root = match std::env::var_os("MOTE_SITE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("site"),
    };
    if !root.is_dir() {
        panic!("the site {} is not a directory", root.display());
    }
    println!("cargo:rerun-if-changed={}", root.display());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
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
    for (i, (path, file)) in entries.iter().enumerate() {
        let body = fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let modified = fs::metadata(file).unwrap().modified().unwrap();
        let modified = modified.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let etag = mote_http::etag(&body);
        let gzip = match gzip(&body) {
            Some(compressed) => {
                let copy = out.join(format!("site-{i}.gz"));
                fs::write(&copy, &compressed).unwrap();
                format!(
                    "Some(mote_http::Encoded {{ body: include_bytes!({:?}), etag: {:?} }})",
                    copy.display().to_string(),
                    mote_http::etag(&compressed)
                )
            }
            None => "None".into(),
        };
        writeln!(
            table,
            "    mote_http::StaticFile {{ path: {path:?}, body: include_bytes!({:?}), modified: {modified}, etag: {etag:?}, gzip: {gzip} }},",
            file.display().to_string()
        )
        .unwrap();
    }
    table.push_str("];\n");
    fs::write(out.join("site.rs"), table).unwrap();
}

/// `body` gzip-compressed (RFC 1952, no name, no time: the same bytes every build), if that is
/// smaller.
fn gzip(body: &[u8]) -> Option<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(body).unwrap();
    let compressed = encoder.finish().unwrap();
    (compressed.len() < body.len()).then_some(compressed)
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
