//! Web cases: the web app serving its site to curl, many connections, its limits.

use super::{
    check_no_panic, forward_from_host, host_sha256, shut_down, Case, Check, Driver, DRIVER_WAIT,
    NET_CHECK_LIMIT, OOM_SCRIPT_FILE, SITE_CHECK,
};
use crate::guest::Reason;
use crate::workspace_root;
use std::process::Command;
use std::time::Duration;

/// The web app: serving, many connections, its limits.
pub(super) fn cases() -> Vec<Case> {
    use Check::*;
    vec![
        Case {
            name: "web_serves_curl_on_host_loopback",
            app: "web",
            args: &[],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Line("web: Poweroff requested, stopping")],
            driver: Some(drive_web_from_host),
        },
        Case {
            name: "web_serves_site_to_curl",
            app: "web",
            args: &[],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Contains("via DHCP, gateway 10.0.0.1"), Line("web: Poweroff requested, stopping")],
            driver: Some(drive_web_site),
        },
        Case {
            name: "web_serves_1000_concurrent_keep_alive_connections",
            app: "web",
            args: &["ip=10.0.0.20/24"],
            gdb: false,
            disk: false,
            // 1000 connections at their largest (34 KiB each) and the rest: see apps/web.
            xl: &["memory=40"],
            reason: Reason::Poweroff,
            checks: vec![Line("web: Poweroff requested, stopping")],
            driver: Some(drive_web_many_connections),
        },
        Case {
            name: "web_refuses_connections_beyond_its_limit_with_503",
            app: "web",
            args: &["ip=10.0.0.20/24"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Line("web: Poweroff requested, stopping")],
            driver: Some(drive_web_over_limit),
        },
        Case {
            name: "web_out_of_memory_answers_503_and_serves_other_connections",
            app: "web",
            args: &["ip=10.0.0.27/24"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![
                Contains(
                    "tcp: port 80: no memory for a listening socket (20480 bytes): new connections refused",
                ),
                Contains("web: out of memory for a request: answered 503 (1 so far)"),
                Custom("no panic", check_no_panic),
                Line("web: Poweroff requested, stopping"),
            ],
            driver: Some(drive_web_out_of_memory),
        },
    ]
}

/// The address and connection limit in `web: serving N files on http://A.B.C.D/ to at most M
/// connections at once`.
pub(super) fn web_address(d: &mut Driver) -> Result<(String, usize), String> {
    let line = d.wait_line("web: serving ")?;
    println!("    guest: {line}");
    let address = line.split("http://").nth(1).and_then(|rest| rest.split('/').next());
    let limit = line.split("at most ").nth(1).and_then(|rest| rest.split(' ').next()?.parse().ok());
    match (address, limit) {
        (Some(address), Some(limit)) => Ok((address.to_owned(), limit)),
        _ => Err(format!("no address and connection limit in {line:?}")),
    }
}

/// A file of the web app's sample site, as the host has it.
pub(super) fn site_file(path: &str) -> Result<Vec<u8>, String> {
    let file = workspace_root().join("apps/web/site").join(path);
    std::fs::read(&file).map_err(|e| format!("read {}: {e}", file.display()))
}

/// FNV-1a, 64 bits, in hex, as `mote-agent http-check` prints it.
fn fnv64(data: &[u8]) -> String {
    let hash =
        data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("{hash:016x}")
}

/// Runs curl in dom0 and checks its output, shown under the case.
fn curl_expect(d: &Driver, args: &str, expected: &str) -> Result<(), String> {
    let out = d.dom0(&format!("curl -s {args}"))?;
    if out.trim_end() != expected {
        return Err(format!("`curl -s {args}` printed {out:?}, expected {expected:?}"));
    }
    println!("    curl {args}: {}", expected.replace('\n', " | "));
    Ok(())
}

/// curl from dom0 against the web app: the page only the `--site` copy has, pages byte for
/// byte, 404, HEAD, a redirect, 304 with If-None-Match, a byte range, the gzip variant, a
/// slowloris client cut off, and several requests on one kept-alive connection.
fn drive_web_site(d: &mut Driver) -> Result<(), String> {
    let (ip, _) = web_address(d)?;
    let url = format!("http://{ip}");
    curl_expect(d, &format!("-f {url}/{}", SITE_CHECK.0), SITE_CHECK.1.trim_end())?;
    for (target, file) in
        [("/", "index.html"), ("/docs/sample.txt", "docs/sample.txt"), ("/img/mote.svg", "img/mote.svg")]
    {
        let hash = host_sha256(&site_file(file)?)?;
        curl_expect(d, &format!("-f {url}{target} | sha256sum"), &format!("{hash}  -"))?;
    }
    curl_expect(d, &format!("-o /dev/null -w '%{{http_code}}' {url}/missing.html"), "404")?;
    curl_expect(d, &format!("--path-as-is -o /dev/null -w '%{{http_code}}' {url}/../etc/passwd"), "400")?;
    curl_expect(
        d,
        &format!("-o /dev/null -w '%{{http_code}} %{{redirect_url}}' {url}/docs"),
        &format!("301 {url}/docs/"),
    )?;

    let sample = site_file("docs/sample.txt")?;
    let head = d.dom0(&format!("curl -sI {url}/docs/sample.txt"))?;
    let field = |name: &str| {
        head.lines()
            .find_map(|l| {
                l.split_once(": ").filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
            })
            .ok_or_else(|| format!("HEAD response without {name}: {head:?}"))
    };
    if !head.starts_with("HTTP/1.1 200 OK") || field("Content-Length")? != sample.len().to_string() {
        return Err(format!("HEAD /docs/sample.txt answered {head:?}"));
    }
    if field("Content-Type")? != "text/plain; charset=utf-8" {
        return Err(format!("HEAD /docs/sample.txt answered {head:?}"));
    }
    println!("    curl -sI {url}/docs/sample.txt: 200, Content-Length {}", sample.len());
    let etag = field("ETag")?;
    curl_expect(
        d,
        &format!("-o /dev/null -w '%{{http_code}}' -H 'If-None-Match: {etag}' {url}/docs/sample.txt"),
        "304",
    )?;

    let part = String::from_utf8_lossy(&sample[1000..1100]);
    curl_expect(
        d,
        &format!("-r 1000-1099 -w '\\n%{{http_code}}' {url}/docs/sample.txt"),
        &format!("{part}\n206"),
    )?;
    curl_expect(
        d,
        &format!("-o /dev/null -w '%{{http_code}}' -r {}- {url}/docs/sample.txt", sample.len()),
        "416",
    )?;

    // gzip: smaller on the wire, the same bytes once decoded; not for a client that says q=0.
    let out = d.dom0(&format!(
        "curl -s --compressed -D /tmp/web-head -o /tmp/web-body {url}/docs/sample.txt && tr -d '\\r' </tmp/web-head && sha256sum </tmp/web-body"
    ))?;
    let has = |field: &str| out.lines().any(|l| l.eq_ignore_ascii_case(field));
    let wire: usize = out
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_owned))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("gzip response without Content-Length: {out:?}"))?;
    let hash = host_sha256(&sample)?;
    if !has("Content-Encoding: gzip") || !has("Vary: Accept-Encoding") || wire >= sample.len() {
        return Err(format!("curl --compressed {url}/docs/sample.txt answered {out:?}"));
    }
    if !out.contains(&format!("{hash}  -")) {
        return Err(format!("the gzip variant of docs/sample.txt does not decode to the file: {out:?}"));
    }
    println!("    curl --compressed {url}/docs/sample.txt: gzip, {wire} bytes on the wire for {}, decoded byte for byte", sample.len());
    curl_expect(
        d,
        &format!(
            "-H 'Accept-Encoding: gzip;q=0, br' -o /dev/null -w '%{{size_download}}' {url}/docs/sample.txt"
        ),
        &sample.len().to_string(),
    )?;

    // Slowloris: a header line every 2 s would take 26 s; the header-read timeout (10 s) ends it.
    let trickle = "printf 'GET / HTTP/1.1\\r\\n'; for i in 1 2 3 4 5 6 7 8; do sleep 2; printf 'X-A: b\\r\\n'; done; sleep 10";
    let out =
        d.dom0(&format!("start=$(date +%s); ({trickle}) | nc {ip} 80; echo $(($(date +%s) - start))"))?;
    let held: u64 = out.trim().parse().map_err(|_| format!("slowloris check printed {out:?}"))?;
    if !(9..=16).contains(&held) {
        return Err(format!(
            "a slowloris client was held {held} s, not cut off after the 10 s header timeout"
        ));
    }
    println!("    slowloris client (a header line every 2 s) cut off after {held} s");

    // num_connects is 0 for a request that reused the connection.
    let urls = ["/", "/missing", "/style.css", "/docs/http.html"].map(|t| format!("{url}{t}")).join(" ");
    curl_expect(
        d,
        &format!("-w '%{{http_code}} %{{num_connects}}\\n' -o /dev/null -o /dev/null -o /dev/null -o /dev/null {urls}"),
        "200 1\n404 0\n200 0\n200 0",
    )?;
    shut_down(d)
}

/// 1000 connections open at once and kept alive, each asked for index.html at least twice, every
/// answer index.html; the guest has the memory for them (the case's `memory=`).
fn drive_web_many_connections(d: &mut Driver) -> Result<(), String> {
    const CONNECTIONS: usize = 1000;
    let (ip, limit) = web_address(d)?;
    if limit < CONNECTIONS {
        return Err(format!("the guest takes only {limit} connections at once"));
    }
    // It took 95 s with five other harnesses sharing the host's two cores.
    let limit = Duration::from_secs(240);
    let out = d.agent.run_ok(&format!("/mote/agent http-check {ip}:80 / {CONNECTIONS} 2"), limit)?;
    println!("    {}", out.trim());
    let index = site_file("index.html")?;
    let kept = format!(", {CONNECTIONS} kept open at once,");
    let body = format!(" x 200; 200 body {} bytes, fnv64 {}", index.len(), fnv64(&index));
    // The statuses are listed between " s: " and ";": one entry, 200.
    let statuses = out.split_once(" s: ").and_then(|(_, rest)| rest.split_once(';')).map(|(s, _)| s);
    let only_200 = statuses.is_some_and(|s| !s.contains(',') && s.ends_with(" x 200"));
    if !out.contains(&kept) || !out.contains(&body) || !only_200 {
        return Err(format!("expected {CONNECTIONS} connections kept, every answer index.html"));
    }
    shut_down(d)
}

/// A byte count as xenstore-read prints the runtime's `data/heap-used` or `data/heap-hwm`.
fn heap_bytes(text: &str) -> Result<u64, String> {
    text.trim().parse().map_err(|_| format!("a heap figure from xenstore is {text:?}"))
}

/// Keep-alive clients web serves at once at its default memory (issue #6).
const WEB_MIN_CONNECTIONS: usize = 10;

/// At the default memory, connections beyond the limit the guest prints get 503 and are
/// closed, while those within it (at least [`WEB_MIN_CONNECTIONS`]) are served (and kept alive
/// for a second request); prints the guest heap's high-water mark after them.
fn drive_web_over_limit(d: &mut Driver) -> Result<(), String> {
    const EXTRA: usize = 10;
    let (ip, limit) = web_address(d)?;
    if limit < WEB_MIN_CONNECTIONS {
        return Err(format!("the guest takes only {limit} connections at once, not {WEB_MIN_CONNECTIONS}"));
    }
    let home = format!("/local/domain/{}/data", d.domid()?);
    // The runtime publishes heap use at most once a second.
    std::thread::sleep(Duration::from_millis(1500));
    let idle = heap_bytes(&d.dom0(&format!("xenstore-read {home}/heap-used"))?)?;
    let out = d
        .agent
        .run_ok(&format!("/mote/agent http-check {ip}:80 /style.css {} 2", limit + EXTRA), NET_CHECK_LIMIT)?;
    println!("    {}", out.trim());
    let expected =
        [format!(", {limit} kept open at once,"), format!(": {} x 200, {EXTRA} x 503;", limit * 2)];
    if !expected.iter().all(|e| out.contains(e)) {
        return Err(format!("expected {limit} connections served twice and {EXTRA} refused ({expected:?})"));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let hwm = heap_bytes(&d.dom0(&format!("xenstore-read {home}/heap-hwm"))?)?;
    println!(
        "    heap: {} KiB in use before, high-water mark {} KiB after {limit} connections served and {EXTRA} refused",
        idle / 1024,
        hwm / 1024
    );
    // The refused clients left nothing behind: the server still answers.
    curl_expect(d, &format!("-o /dev/null -w '%{{http_code}}' http://{ip}/"), "200")?;
    shut_down(d)
}

/// Served connections of [`drive_web_out_of_memory`] that send only small requests.
const WEB_SMALL_ASKERS: usize = 4;

/// The dom0 bash script of [`drive_web_out_of_memory`], run as `bash FILE IP LIMIT SMALL`.
/// `status` reads one response head (HEAD requests: no bodies) and prints its code.
const WEB_OOM_SCRIPT: &str = r#"ip=$1; limit=$2; SMALL=$3
export LC_ALL=C
status() {
  local line code=
  while read -t 20 -u "$1" line; do
    line=${line%$'\r'}
    if [ -z "$code" ]; then code=${line#HTTP/1.1 }; code=${code%% *}; elif [ -z "$line" ]; then break; fi
  done
  echo "${code:-none}"
}
tally() { sort | uniq -c | awk '{ printf "%s%d x %s", sep, $1, $2; sep = ", " }'; }
small() { printf 'HEAD / HTTP/1.1\r\nHost: mote\r\n\r\n' >&$1; }
# Asks every served connection again (they idle out after 30 s), recording the statuses.
refresh() {
  for fd in "${served[@]}"; do small "$fd"; done
  for fd in "${served[@]}"; do status "$fd"; done >> /tmp/web-oom-statuses
  asked=$SECONDS
}
served=(); asked=$SECONDS; : > /tmp/web-oom-statuses
for i in $(seq "$limit"); do
  exec {fd}<>/dev/tcp/$ip/80 || exit 1
  small "$fd"
  status "$fd" >> /tmp/web-oom-statuses
  served+=("$fd")
  [ $((SECONDS - asked)) -ge 10 ] && refresh
done
extra=0; refused=0
for i in $(seq 400); do
  [ $((SECONDS - asked)) -ge 10 ] && refresh
  if exec {fd}<>/dev/tcp/$ip/80 2>/dev/null; then extra=$((extra+1)); refused=0
  else refused=$((refused+1)); [ $refused -ge 3 ] && break; sleep 0.3; fi
done
first=$(tally < /tmp/web-oom-statuses)
flood=$SECONDS
big=("${served[@]:0:limit-SMALL}"); little=("${served[@]:limit-SMALL}")
pad=$(printf '%07000d' 0)
for fd in "${big[@]}"; do printf 'HEAD / HTTP/1.1\r\nHost: mote\r\nX-Pad: %s\r\n\r\n' "$pad" >&$fd; done
for fd in "${little[@]}"; do small "$fd"; done
small=$(for fd in "${little[@]}"; do status "$fd"; done | tally)
large=$(for fd in "${big[@]}"; do status "$fd"; done | tally)
echo "requests before: $first; held $extra more, then refused $refused times (after $flood s); large requests: $large; small requests: $small; $SECONDS s"
"#;

/// Exhausts web's heap (default memory) the way clients that ignore its refusals do: the
/// connections it serves at once (its limit) are opened and asked once (those open asked
/// again every 10 s, so that none idles out), then more, which it answers 503 and closes, and which the client
/// keeps half-open (each holds its 20 KiB of TCP
/// buffers in the guest until the client closes or a minute passes), until the guest has no
/// memory for a listening socket and refuses connections outright. Then the served connections
/// send requests: large ones (7 KB of header fields; the heap has no room for most) must get
/// 503 for want of memory, small ones (their buffer's room kept from the first request) 200;
/// once the client closes, web serves again.
fn drive_web_out_of_memory(d: &mut Driver) -> Result<(), String> {
    let (ip, limit) = web_address(d)?;
    if limit <= WEB_SMALL_ASKERS {
        return Err(format!("the guest takes only {limit} connections at once"));
    }
    d.agent.put(OOM_SCRIPT_FILE, WEB_OOM_SCRIPT.as_bytes(), 0o644, DRIVER_WAIT)?;
    let command = format!("bash {OOM_SCRIPT_FILE} {ip} {limit} {WEB_SMALL_ASKERS}");
    let out = d.agent.run_ok(&command, NET_CHECK_LIMIT)?;
    println!("    {}", out.trim());
    let large = out.split("large requests: ").nth(1).and_then(|r| r.split(';').next()).unwrap_or("");
    let before = out.split("requests before: ").nth(1).and_then(|r| r.split(';').next()).unwrap_or("");
    let asked = before.strip_suffix(" x 200").and_then(|n| n.parse::<usize>().ok());
    let small = format!("small requests: {WEB_SMALL_ASKERS} x 200;");
    if asked.is_none_or(|n| n < limit)
        || !out.contains(&small)
        || !large.contains(" x 503")
        || large.contains("none")
    {
        return Err(format!(
            "expected every request before the large ones answered 200 ({limit} connections), the large ones 503 and the small ones 200"
        ));
    }
    d.wait_line("web: out of memory for a request: answered 503")?;
    curl_expect(d, &format!("-o /dev/null -w '%{{http_code}}' http://{ip}/"), "200")?;
    shut_down(d)
}

/// What `cargo xtask run web` offers: the host's own curl served through 127.0.0.1:8080.
fn drive_web_from_host(d: &mut Driver) -> Result<(), String> {
    let _relays = forward_from_host(d, "web: serving ")?;
    web_from_host()?;
    shut_down(d)
}

/// The host's curl gets the sample site's index.html from 127.0.0.1:8080, byte for byte.
pub(crate) fn web_from_host() -> Result<(), String> {
    let page = Command::new("curl")
        .args(["-sf", "--retry", "3", "http://127.0.0.1:8080/"])
        .output()
        .map_err(|e| format!("curl: {e}"))?;
    if !page.status.success() {
        return Err(format!(
            "host curl http://127.0.0.1:8080/ failed: {}",
            String::from_utf8_lossy(&page.stderr)
        ));
    }
    if page.stdout != site_file("index.html")? {
        return Err("host curl http://127.0.0.1:8080/ returned something else than index.html".into());
    }
    println!("    host: curl http://127.0.0.1:8080/ returned index.html byte for byte");
    Ok(())
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn heap_figures_from_xenstore_read() {
        assert_eq!(heap_bytes("1234567\n"), Ok(1_234_567));
        assert!(heap_bytes("").is_err());
        assert!(heap_bytes("12 KiB").is_err());
    }
}
