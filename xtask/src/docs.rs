//! `cargo xtask docs [--serve]`: the guide in `docs/` (an mdBook) and the API docs. The book's
//! links are checked first, by our own checker, since mdBook leaves a broken relative link or
//! `#anchor` as it is; then the book is built into `target/book` and `cargo doc` runs with
//! warnings as errors. `--serve` serves the book on 127.0.0.1 instead.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The mdBook release the book is built with, the one place it is named; `cargo xtask docs`
/// installs it when `mdbook --version` says otherwise.
pub const MDBOOK_VERSION: &str = "0.5.4";

/// Checks the links, builds the book and the API docs; `serve` serves the book instead.
pub fn run(serve: bool) -> Result<(), String> {
    let root = crate::workspace_root();
    let book = crate::target_dir().join("book");
    if serve {
        ensure_mdbook()?;
        let mut mdbook = Command::new("mdbook");
        mdbook.current_dir(&root).args(["serve", "docs", "--hostname", "127.0.0.1", "--dest-dir"]);
        return crate::run_status(mdbook.arg(&book));
    }
    let broken = check_links(&markdown_files(&root)?)?;
    if !broken.is_empty() {
        return Err(format!("{} broken links:\n  {}", broken.len(), broken.join("\n  ")));
    }
    println!("docs: every relative link and #anchor in README.md and docs/ resolves");
    ensure_mdbook()?;
    let mut mdbook = Command::new("mdbook");
    crate::run_status(mdbook.current_dir(&root).args(["build", "docs", "--dest-dir"]).arg(&book))?;
    println!("docs: the book is in {}", book.join("index.html").display());
    let mut cargo = crate::cargo();
    cargo.args(["doc", "--workspace", "--no-deps"]).env("RUSTDOCFLAGS", "-D warnings");
    // mote-arch builds only its page-table builder for the host: its docs are the target's.
    for package in crate::tests::target_only_packages()?.iter().map(String::as_str).chain(["mote-arch"]) {
        cargo.args(["--exclude", package]);
    }
    crate::run_status(&mut cargo)?;
    let mut arch = crate::cargo();
    arch.args(["doc", "--no-deps", "-p", "mote-arch", "--target", "x86_64-unknown-none"]);
    crate::run_status(arch.env("RUSTDOCFLAGS", "-D warnings"))?;
    println!("docs: the API docs are in {}", crate::target_dir().join("doc").display());
    Ok(())
}

/// Installs the pinned mdBook unless it is the one on the path.
fn ensure_mdbook() -> Result<(), String> {
    let installed = Command::new("mdbook").arg("--version").stderr(Stdio::null()).output();
    let wanted = format!("mdbook v{MDBOOK_VERSION}");
    if installed.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == wanted) {
        return Ok(());
    }
    println!("xtask: installing {wanted} (cargo install mdbook --locked --version {MDBOOK_VERSION})");
    let mut install = crate::cargo();
    install.args(["install", "mdbook", "--locked", "--version", MDBOOK_VERSION]);
    crate::run_status(&mut install).map_err(|e| {
        format!("cannot install mdbook ({e}); install it by hand with `cargo install mdbook --version {MDBOOK_VERSION}`")
    })
}

/// README.md and every `*.md` below `docs/`, sorted.
fn markdown_files(root: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files = vec![root.join("README.md")];
    let mut dirs = vec![root.join("docs")];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for path in entries.flatten().map(|e| e.path()) {
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Every relative link of `files` whose file does not exist, or whose `#anchor` names no heading
/// of the Markdown file it points to, as `FILE:LINE: TARGET: why`.
pub fn check_links(files: &[PathBuf]) -> Result<Vec<String>, String> {
    let read = |path: &Path| std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()));
    let mut broken = Vec::new();
    for file in files {
        let text = read(file)?;
        for (line, target) in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let linked = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap_or(Path::new(".")).join(path)
            };
            let anchored = !anchor.is_empty() && linked.extension().is_some_and(|e| e == "md");
            let why = if !linked.exists() {
                Some("no such file".to_owned())
            } else if anchored && !anchors(&read(&linked)?).contains(anchor) {
                Some(format!("no heading with anchor #{anchor}"))
            } else {
                None
            };
            if let Some(why) = why {
                broken.push(format!("{}:{line}: {target}: {why}", file.display()));
            }
        }
    }
    Ok(broken)
}

/// The lines of Markdown outside fenced code blocks, numbered from 1.
fn prose(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut fence: Option<&str> = None;
    text.lines().enumerate().filter_map(move |(i, line)| {
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(open), Some(m)) if open == m && trimmed.trim_start_matches(&m[..1]).trim().is_empty() => {
                fence = None
            }
            (None, None) => return Some((i + 1, line)),
            _ => {}
        }
        None
    })
}

/// `line` without its code spans (`` `…` ``), whose brackets are code, not links.
fn without_code(line: &str) -> String {
    let mut out = String::new();
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
        } else if !in_code {
            out.push(c);
        }
    }
    out
}

/// The targets of a text's inline links (`[text](target)`, `![alt](target)`) and reference
/// definitions (`[name]: target`), with their line numbers.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (number, line) in prose(text) {
        let line = without_code(line);
        if let Some(rest) = line.trim_start().strip_prefix('[') {
            if let Some((_, target)) = rest.split_once("]:") {
                found.push((number, target.split_whitespace().next().unwrap_or("").to_owned()));
                continue;
            }
        }
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let end = rest.find([')', ' ']).unwrap_or(rest.len());
            let target = rest[..end].trim_start_matches('<').trim_end_matches('>');
            found.push((number, target.to_owned()));
            rest = &rest[end..];
        }
    }
    found
}

/// The anchors of a Markdown text's headings, as GitHub and mdBook make them: the heading's
/// text without markup, lower-cased, spaces to hyphens, only letters, digits, `-` and `_`
/// kept; a repeated one gets `-1`, `-2`, … .
pub fn anchors(text: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    for (_, line) in prose(text) {
        let Some(title) = line.strip_prefix('#').map(|t| t.trim_start_matches('#')) else {
            continue;
        };
        if !title.starts_with(' ') {
            continue;
        }
        let slug = slug(title.trim());
        let mut anchor = slug.clone();
        let mut n = 0;
        while !seen.insert(anchor.clone()) {
            n += 1;
            anchor = format!("{slug}-{n}");
        }
    }
    seen
}

/// A heading's anchor: link targets dropped (`[text](url)` counts as `text`), then as
/// [`anchors`] says.
fn slug(title: &str) -> String {
    let mut text = String::new();
    let mut rest = title;
    while let Some(at) = rest.find("](") {
        text.push_str(&rest[..at]);
        rest = rest[at..].split_once(')').map_or("", |(_, after)| after);
    }
    text.push_str(rest);
    text.chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_follow_github_and_mdbook() {
        let text = "# Measurements\n## Cutting the shared layers (issue #8)\n### A web server: apps/web\n\
                    ## `cargo xtask bench` report\n## Soak\n## Soak\n#not a heading\n\
                    ## [Linked](x.md) heading\n```sh\n# a shell comment\n```\n";
        let found = anchors(text);
        let mut found: Vec<_> = found.iter().map(String::as_str).collect();
        found.sort();
        assert_eq!(
            found,
            [
                "a-web-server-appsweb",
                "cargo-xtask-bench-report",
                "cutting-the-shared-layers-issue-8",
                "linked-heading",
                "measurements",
                "soak",
                "soak-1",
            ]
        );
    }

    #[test]
    fn links_are_found_outside_code_only() {
        let text = "See [the book](docs/a.md#x) and [b](b.md).\n`[not](a-link.md)` in code\n\
                    ```rust\nlet x = f[0](y);\n```\n[ref]: c.md#y \"title\"\n![pic](img/p.png)\n";
        assert_eq!(
            links(text),
            [
                (1, "docs/a.md#x".to_owned()),
                (1, "b.md".to_owned()),
                (6, "c.md#y".to_owned()),
                (7, "img/p.png".to_owned()),
            ]
        );
    }

    #[test]
    fn broken_files_and_anchors_are_reported_and_good_ones_pass() {
        let dir = std::env::temp_dir().join(format!("xtask-docs-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("docs")).unwrap();
        let readme = dir.join("README.md");
        std::fs::write(
            &readme,
            "# Top\n[ok](docs/page.md#two-words) [self](#top) [web](https://example.com/#nothing)\n\
             [gone](docs/missing.md) [bad anchor](docs/page.md#three) [dir](docs)\n",
        )
        .unwrap();
        std::fs::write(dir.join("docs/page.md"), "# Page\n## Two words\n[back](../README.md#nope)\n")
            .unwrap();
        let broken = check_links(&[readme.clone(), dir.join("docs/page.md")]).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let r = readme.display();
        let p = dir.join("docs/page.md");
        assert_eq!(
            broken,
            [
                format!("{r}:3: docs/missing.md: no such file"),
                format!("{r}:3: docs/page.md#three: no heading with anchor #three"),
                format!("{}:3: ../README.md#nope: no heading with anchor #nope", p.display()),
            ]
        );
    }

    #[test]
    fn the_repository_has_no_broken_links() {
        let broken = check_links(&markdown_files(&crate::workspace_root()).unwrap()).unwrap();
        assert!(broken.is_empty(), "{broken:#?}");
    }
}
