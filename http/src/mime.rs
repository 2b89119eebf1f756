//! `Content-Type` from a file's extension (the types nginx's default `mime.types` gives them).

const TYPES: &[(&str, &str)] = &[
    ("html", "text/html; charset=utf-8"),
    ("htm", "text/html; charset=utf-8"),
    ("css", "text/css; charset=utf-8"),
    ("js", "text/javascript; charset=utf-8"),
    ("mjs", "text/javascript; charset=utf-8"),
    ("json", "application/json"),
    ("txt", "text/plain; charset=utf-8"),
    ("xml", "application/xml"),
    ("svg", "image/svg+xml"),
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("webp", "image/webp"),
    ("ico", "image/x-icon"),
    ("woff", "font/woff"),
    ("woff2", "font/woff2"),
    ("pdf", "application/pdf"),
    ("wasm", "application/wasm"),
];

/// What a file named `path` is served as; `application/octet-stream` when unknown.
pub fn content_type(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.rsplit_once('.')
        .and_then(|(_, extension)| TYPES.iter().find(|(e, _)| e.eq_ignore_ascii_case(extension)))
        .map_or("application/octet-stream", |(_, t)| t)
}

#[cfg(test)]
mod tests {
    use super::content_type;

    #[test]
    fn by_extension_case_insensitive() {
        assert_eq!(content_type("/index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("/a/STYLE.CSS"), "text/css; charset=utf-8");
        assert_eq!(content_type("/img/logo.svg"), "image/svg+xml");
        assert_eq!(content_type("/archive.tar.gz"), "application/octet-stream");
    }

    #[test]
    fn no_extension_or_dot_in_directory() {
        assert_eq!(content_type("/README"), "application/octet-stream");
        assert_eq!(content_type("/v1.2/README"), "application/octet-stream");
    }
}
