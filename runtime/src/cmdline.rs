//! The kernel command line: `extra=` in the xl config, split into
//! whitespace-separated `key=value` arguments (a bare `key` has an empty
//! value). A value may be double-quoted to hold spaces.

/// The longest command line kept (`MAX_GUEST_CMDLINE` in `xen.h`).
pub const MAX_LEN: usize = 1024;

/// A parsed view of a command line.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cmdline<'a> {
    raw: &'a str,
}

impl<'a> Cmdline<'a> {
    /// A view of `raw`; nothing is parsed until asked, so a bad argument costs only its own lookup.
    pub const fn new(raw: &'a str) -> Self {
        Cmdline { raw }
    }

    /// The command line as Xen passed it.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// All arguments in order, as `(key, value)`.
    pub fn args(&self) -> Args<'a> {
        Args { rest: self.raw }
    }

    /// The value of the last `key=…` (later arguments override earlier ones).
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.args().filter(|(k, _)| *k == key).last().map(|(_, v)| v)
    }

    /// `key` parsed as a number; `Err` names the bad value.
    pub fn get_parsed<T: core::str::FromStr>(&self, key: &str) -> Option<Result<T, &'a str>> {
        self.get(key).map(|v| v.parse().map_err(|_| v))
    }
}

/// Joins a process's arguments into one command line (the hosted runtime's): an argument
/// holding whitespace has its value (after the first `=`) double-quoted, so that it stays
/// one argument.
pub fn join_args<S: AsRef<str>>(args: impl IntoIterator<Item = S>) -> alloc::string::String {
    let mut line = alloc::string::String::new();
    for arg in args {
        let arg = arg.as_ref();
        if !line.is_empty() {
            line.push(' ');
        }
        match arg.split_once('=') {
            Some((key, value)) if arg.contains(char::is_whitespace) => {
                line.push_str(key);
                line.push_str("=\"");
                line.push_str(value);
                line.push('"');
            }
            _ => line.push_str(arg),
        }
    }
    line
}

/// Iterator over `(key, value)` arguments.
pub struct Args<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Args<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let s = self.rest.trim_start();
        if s.is_empty() {
            self.rest = s;
            return None;
        }
        // `token_end` is a char boundary: the checked split only spares the
        // image core's slicing panic (3 KiB with its char escaping).
        let (token, rest) = s.split_at_checked(token_end(s)).unwrap_or((s, ""));
        self.rest = rest;
        Some(match token.split_once('=') {
            Some((k, v)) => (k, unquote(v)),
            None => (token, ""),
        })
    }
}

/// End of the token at the start of `s`: the first whitespace outside quotes.
fn token_end(s: &str) -> usize {
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return i,
            _ => {}
        }
    }
    s.len()
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_keys_values_and_flags() {
        let c = Cmdline::new("  greeting=hi mode=test  verbose len=10240 ");
        let args: Vec<_> = c.args().collect();
        assert_eq!(args, [("greeting", "hi"), ("mode", "test"), ("verbose", ""), ("len", "10240")]);
        assert_eq!(c.get("mode"), Some("test"));
        assert_eq!(c.get("verbose"), Some(""));
        assert_eq!(c.get("missing"), None);
        assert_eq!(c.get_parsed::<usize>("len"), Some(Ok(10240)));
        assert_eq!(c.get_parsed::<usize>("mode"), Some(Err("test")));
    }

    #[test]
    fn quoted_values_keep_spaces_and_later_keys_win() {
        let c = Cmdline::new(r#"msg="hello world" a=1 a=2 eq=x=y"#);
        assert_eq!(c.get("msg"), Some("hello world"));
        assert_eq!(c.get("a"), Some("2"));
        assert_eq!(c.get("eq"), Some("x=y"));
    }

    #[test]
    fn joined_arguments_parse_back_one_for_one() {
        let line = join_args(["ip=10.0.0.2/24", "msg=hello big world", "verbose", "log=debug"]);
        assert_eq!(line, r#"ip=10.0.0.2/24 msg="hello big world" verbose log=debug"#);
        let args: Vec<_> = Cmdline::new(&line).args().collect();
        assert_eq!(
            args,
            [("ip", "10.0.0.2/24"), ("msg", "hello big world"), ("verbose", ""), ("log", "debug")]
        );
        assert_eq!(join_args(core::iter::empty::<&str>()), "");
    }

    #[test]
    fn empty_line_has_no_args() {
        assert_eq!(Cmdline::new("").args().count(), 0);
        assert_eq!(Cmdline::new("   \t ").args().count(), 0);
    }
}
