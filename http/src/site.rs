//! Where the served files come from: a [`Site`] maps a resolved path to a file's bytes and
//! metadata. [`StaticSite`] is a table built into the image; a disk-backed site can implement
//! the same trait.

use alloc::format;
use alloc::string::String;

/// A file as served.
#[derive(Debug, Clone, Copy)]
pub struct File<'a> {
    pub body: &'a [u8],
    /// Last modification, seconds since the Unix epoch (`Last-Modified`).
    pub modified: u64,
    /// A strong entity tag, quotes included (`ETag`), like [`etag`] makes.
    pub etag: &'a str,
    /// The same content gzip-compressed, for clients that accept it; only worth having when
    /// smaller than `body`.
    pub gzip: Option<Encoded<'a>>,
}

/// A content-coded representation of a file (RFC 9110 §8.4): its own bytes and its own
/// entity tag, distinct from the unencoded one's.
#[derive(Debug, Clone, Copy)]
pub struct Encoded<'a> {
    pub body: &'a [u8],
    pub etag: &'a str,
}

/// What a path names in a site.
#[derive(Debug, Clone, Copy)]
pub enum Entry<'a> {
    File(File<'a>),
    /// A directory: files exist below it.
    Directory,
    Missing,
}

/// A tree of files addressed by resolved paths (`/` or `/a/b`, never a trailing `/`).
pub trait Site {
    fn lookup(&self, path: &str) -> Entry<'_>;
}

/// One file of a [`StaticSite`].
#[derive(Debug, Clone, Copy)]
pub struct StaticFile {
    pub path: &'static str,
    pub body: &'static [u8],
    pub modified: u64,
    pub etag: &'static str,
    pub gzip: Option<Encoded<'static>>,
}

/// A site held in a table, sorted by path (as bytes).
#[derive(Debug, Clone, Copy)]
pub struct StaticSite {
    files: &'static [StaticFile],
}

impl StaticSite {
    /// `files` must be sorted by path; panics otherwise (a build error, not an input one).
    pub fn new(files: &'static [StaticFile]) -> StaticSite {
        assert!(files.windows(2).all(|w| w[0].path < w[1].path), "site table not sorted by path");
        StaticSite { files }
    }

    pub fn files(&self) -> &'static [StaticFile] {
        self.files
    }
}

impl Site for StaticSite {
    fn lookup(&self, path: &str) -> Entry<'_> {
        let start = self.files.partition_point(|f| f.path < path);
        let mut below = self.files[start..].iter().take_while(|f| f.path.starts_with(path));
        match below.next() {
            Some(f) if f.path == path => {
                Entry::File(File { body: f.body, modified: f.modified, etag: f.etag, gzip: f.gzip })
            }
            _ if path == "/" => Entry::Directory,
            first => {
                let mut below = first.into_iter().chain(below);
                if below.any(|f| f.path[path.len()..].starts_with('/')) {
                    Entry::Directory
                } else {
                    Entry::Missing
                }
            }
        }
    }
}

/// A strong entity tag for `body`: its length and 64-bit FNV-1a hash, quoted.
pub fn etag(body: &[u8]) -> String {
    let hash =
        body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("\"{:x}-{hash:016x}\"", body.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    static FILES: &[StaticFile] = &[
        StaticFile { path: "/a.txt", body: b"a", modified: 1, etag: "\"a\"", gzip: None },
        StaticFile { path: "/docs-old", body: b"x", modified: 1, etag: "\"x\"", gzip: None },
        StaticFile { path: "/docs.txt", body: b"d", modified: 1, etag: "\"d\"", gzip: None },
        StaticFile { path: "/docs/index.html", body: b"i", modified: 2, etag: "\"i\"", gzip: None },
    ];

    #[test]
    fn files_directories_and_missing() {
        let site = StaticSite::new(FILES);
        assert!(matches!(site.lookup("/a.txt"), Entry::File(File { body: b"a", .. })));
        assert!(matches!(site.lookup("/docs/index.html"), Entry::File(File { modified: 2, .. })));
        assert!(matches!(site.lookup("/docs"), Entry::Directory));
        assert!(matches!(site.lookup("/"), Entry::Directory));
        assert!(matches!(site.lookup("/doc"), Entry::Missing));
        assert!(matches!(site.lookup("/a"), Entry::Missing));
        assert!(matches!(site.lookup("/docs/index"), Entry::Missing));
        assert!(matches!(site.lookup("/zzz"), Entry::Missing));
    }

    #[test]
    #[should_panic(expected = "not sorted")]
    fn unsorted_table_is_refused() {
        static UNSORTED: &[StaticFile] = &[
            StaticFile { path: "/b", body: b"", modified: 0, etag: "\"\"", gzip: None },
            StaticFile { path: "/a", body: b"", modified: 0, etag: "\"\"", gzip: None },
        ];
        StaticSite::new(UNSORTED);
    }

    #[test]
    fn etags_differ_by_content_and_are_quoted() {
        assert_eq!(etag(b""), "\"0-cbf29ce484222325\"");
        assert_ne!(etag(b"a"), etag(b"b"));
    }
}
