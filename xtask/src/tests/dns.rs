//! DNS cases: the dns app answering dig from dom0 and the host, out of memory, bad checksums
//! (its case on a hot-attached vif is with the vifs, in [`super::net`]).

use super::net::bad_checksums;
use super::{
    check_no_panic, forward_from_host, host, shut_down, Case, Check, Driver, DRIVER_WAIT, OOM_SCRIPT_FILE,
};
use crate::build::Image;
use crate::guest::Reason;

/// The DNS app: answering, running out of memory, bad checksums.
pub(super) fn cases() -> Vec<Case> {
    use Check::*;
    vec![
        Case {
            name: "dns_answers_dig_on_host_loopback",
            app: "dns",
            args: &[],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Line("dns: Poweroff requested, stopping")],
            driver: Some(drive_dns_from_host),
        },
        Case {
            name: "dns_answers_from_dom0",
            app: "dns",
            args: &[],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![
                Contains("(udp/53 tcp/53): example.com. test."),
                Custom("ready is logged after main, once serving", ready_after_main),
                Line("dns: Poweroff requested, stopping"),
            ],
            driver: Some(drive_dns),
        },
        Case {
            name: "dns_out_of_memory_closes_a_tcp_connection_and_udp_answers",
            app: "dns",
            args: &["ip=10.0.0.26/24"],
            gdb: false,
            disk: false,
            // A small dns: a dozen large TCP queries fill its heap (at 2 MiB not even one fits;
            // at the default 4 MiB the connections it takes to fill it expire before the last).
            xl: &["memory=3"],
            reason: Reason::Poweroff,
            checks: vec![
                Contains("dns: no memory for a tcp query of 65535 bytes: connection closed (1 so far)"),
                Custom("no panic", check_no_panic),
                Line("dns: Poweroff requested, stopping"),
            ],
            driver: Some(drive_dns_out_of_memory),
        },
        Case {
            name: "dns_answers_after_a_ring_of_bad_checksums",
            app: "dns",
            args: &["ip=10.0.0.28/24"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Custom("no panic", check_no_panic), Line("dns: Poweroff requested, stopping")],
            driver: Some(drive_dns_bad_checksum_burst),
        },
    ]
}

/// The address in `dns: serving on A.B.C.D …`.
pub(super) fn dns_address(d: &mut Driver) -> Result<String, String> {
    let line = d.wait_line("dns: serving on ")?;
    line.split_whitespace().nth(3).map(str::to_owned).ok_or_else(|| format!("no address in {line:?}"))
}

/// `boot: ready N us …` follows the serving line and gives a time no earlier than `boot: main`'s.
fn ready_after_main(console: &str, _: &Image) -> Result<(), String> {
    let us = |prefix: &str| -> Option<(usize, u64)> {
        let at = console.find(prefix)?;
        let rest = &console[at + prefix.len()..];
        Some((at, rest.split(' ').next()?.parse().ok()?))
    };
    let (main_at, main) = us("boot: main ").ok_or("no `boot: main N us` line")?;
    let (ready_at, ready) = us("boot: ready ").ok_or("no `boot: ready N us` line")?;
    let serving_at = console.find(" serving on ").ok_or("no serving line")?;
    if !(main_at < serving_at && serving_at < ready_at && main <= ready) {
        return Err(format!("boot: main {main} us and ready {ready} us out of order with the serving line"));
    }
    println!("    guest: main {main} us, serving {ready} us after the first instruction");
    Ok(())
}

/// One `dig` query from dom0 and what its output must show: the status, whether AA is set,
/// and records (whitespace-normalised, as dig prints them).
pub(super) struct DigCheck {
    pub(super) args: &'static str,
    pub(super) status: &'static str,
    pub(super) authoritative: bool,
    pub(super) records: &'static [&'static str],
}

/// Queries against apps/dns/zones/example.com.zone, each over UDP and over TCP.
pub(super) const DIG_CHECKS: &[DigCheck] = &[
    DigCheck {
        args: "www.example.com A",
        status: "NOERROR",
        authoritative: true,
        records: &["www.example.com. 3600 IN A 192.0.2.80"],
    },
    DigCheck {
        args: "WwW.ExAmPlE.cOm AAAA",
        status: "NOERROR",
        authoritative: true,
        records: &["WwW.ExAmPlE.cOm. 3600 IN AAAA 2001:db8::80"],
    },
    DigCheck {
        args: "nope.example.com A",
        status: "NXDOMAIN",
        authoritative: true,
        records: &["example.com. 300 IN SOA ns1.example.com. hostmaster.example.com. 2024060101 7200 3600 1209600 300"],
    },
    DigCheck {
        args: "blog.example.com A",
        status: "NOERROR",
        authoritative: true,
        records: &[
            "blog.example.com. 3600 IN CNAME web.example.com.",
            "web.example.com. 3600 IN CNAME www.example.com.",
            "www.example.com. 3600 IN A 192.0.2.80",
        ],
    },
    DigCheck {
        args: "host.lab.example.com A",
        status: "NOERROR",
        authoritative: false,
        records: &["lab.example.com. 3600 IN NS ns.lab.example.com.", "ns.lab.example.com. 3600 IN A 192.0.2.53"],
    },
    DigCheck {
        args: "www.example.com TXT",
        status: "NOERROR",
        authoritative: true,
        records: &["www.example.com. 3600 IN TXT \"mote says hello\" \"from a unikernel\""],
    },
    DigCheck {
        args: "alice.users.example.com TXT",
        status: "NOERROR",
        authoritative: true,
        records: &["alice.users.example.com. 3600 IN TXT \"a wildcard answer\""],
    },
    DigCheck { args: "www.example.org A", status: "REFUSED", authoritative: false, records: &[] },
    // dns/tests/zones/test.zone, embedded with `--zone`.
    DigCheck {
        args: "DeEp.TeSt A",
        status: "NOERROR",
        authoritative: true,
        records: &[
            "DeEp.TeSt. 3600 IN CNAME blog.TeSt.",
            "blog.TeSt. 3600 IN CNAME web.TeSt.",
            "web.TeSt. 3600 IN CNAME www.TeSt.",
            "www.TeSt. 600 IN A 192.0.2.80",
        ],
    },
    DigCheck {
        args: "odd.test TYPE65280",
        status: "NOERROR",
        authoritative: true,
        records: &["odd.test. 3600 IN TYPE65280 \\# 4 DEADBEEF"],
    },
    DigCheck {
        args: "a.b.c.ent.test A",
        status: "NOERROR",
        authoritative: true,
        records: &["a.b.c.ent.test. 3600 IN A 192.0.2.7"],
    },
    DigCheck { args: "x.c.ent.test A", status: "NXDOMAIN", authoritative: true, records: &[] },
];

/// Runs one `dig @ip +norec` in dom0 asking every query of `checks` (one dig per check costs
/// seconds under TCG) and checks each answer against its check.
pub(super) fn dig(d: &Driver, ip: &str, transport: &str, checks: &[DigCheck]) -> Result<(), String> {
    let queries: Vec<&str> = checks.iter().map(|c| c.args).collect();
    let command = format!("dig @{ip} +norec +time=5 +tries=2 {transport} {}", queries.join(" "));
    let out = d.dom0(&command)?;
    // Each answer's printout starts with its header line.
    let answers: Vec<&str> = out.split(";; ->>HEADER<<-").skip(1).collect();
    if answers.len() != checks.len() {
        return Err(format!(
            "`{command}`: {} answers for {} queries; dig printed:\n{out}",
            answers.len(),
            checks.len()
        ));
    }
    for (check, answer) in checks.iter().zip(answers) {
        let lines: Vec<String> =
            answer.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
        let fail = |what: String| Err(format!("`{command}`, {}: {what}; dig printed:\n{answer}", check.args));
        if !answer.contains(&format!(" status: {},", check.status)) {
            return fail(format!("status is not {}", check.status));
        }
        // ";; flags: qr aa; QUERY: 1, …"
        let flags = lines.iter().find_map(|l| l.strip_prefix(";; flags:")).and_then(|f| f.split(';').next());
        let aa = flags.is_some_and(|f| f.split_whitespace().any(|w| w == "aa"));
        if aa != check.authoritative {
            return fail(format!("AA is {}", if aa { "set" } else { "clear" }));
        }
        for record in check.records {
            if !lines.iter().any(|l| l == record) {
                return fail(format!("no record {record:?}"));
            }
        }
        println!("    dig {transport} {}: {} ok", check.args, check.status);
    }
    Ok(())
}

/// dig from dom0 over UDP and TCP: answers, CNAME chain, NXDOMAIN, referral, TXT, wildcard,
/// REFUSED; then several queries over one TCP connection.
fn drive_dns(d: &mut Driver) -> Result<(), String> {
    let ip = dns_address(d)?;
    dig(d, &ip, "+notcp", DIG_CHECKS)?;
    dig(d, &ip, "+tcp", DIG_CHECKS)?;
    let command = format!(
        "dig @{ip} +norec +tcp +keepopen +short www.example.com A web.example.com CNAME mail.example.com A"
    );
    let out = d.dom0(&command)?;
    let answers: Vec<&str> = out.lines().collect();
    if answers != ["192.0.2.80", "www.example.com.", "192.0.2.25"] {
        return Err(format!("`{command}` printed {out:?}"));
    }
    println!("    dig +tcp +keepopen: 3 queries on one connection ok");
    shut_down(d)
}

/// Datagrams with a wrong UDP checksum, many times the 64 rx buffers netfront posts, sent at
/// dns from dom0: each is dropped in the guest (dom0 does not vouch for a raw socket's
/// checksums), and dns answers dig after them. Before issue #29's fix the buffers they took
/// were never published again, and dns, which sends nothing of its own, went deaf for good.
fn drive_dns_bad_checksum_burst(d: &mut Driver) -> Result<(), String> {
    let ip = dns_address(d)?;
    dig(d, &ip, "+notcp", &DIG_CHECKS[..1])?;
    let sent = d.dom0(&format!("/mote/agent bad-udp-burst {ip}:53 1000"))?;
    println!("    {}", sent.trim());
    // One query first, so that a deaf guest fails within dig's 10 s.
    dig(d, &ip, "+notcp", &DIG_CHECKS[..1])?;
    dig(d, &ip, "+notcp", DIG_CHECKS)?;
    dig(d, &ip, "+tcp", &DIG_CHECKS[..1])?;
    d.dom0(&format!("xl network-detach {} 0", d.name))?;
    d.wait_line("net: vif 0: closed")?;
    let counts = d.wait_line("net: vif 0: ")?;
    match bad_checksums(&counts) {
        Some(n) if n >= 64 => println!("    vif 0 dropped {n} segments with a bad checksum, then answered"),
        _ => return Err(format!("fewer bad checksums counted than rx buffers posted (64): {counts}")),
    }
    shut_down(d)
}

/// What `cargo xtask run dns` offers: the host's own dig answered through 127.0.0.1:5353.
fn drive_dns_from_host(d: &mut Driver) -> Result<(), String> {
    let _relays = forward_from_host(d, "dns: serving on ")?;
    dns_from_host()?;
    shut_down(d)
}

/// The host's dig gets www.example.com's address from 127.0.0.1:5353, over UDP and TCP.
pub(crate) fn dns_from_host() -> Result<(), String> {
    for transport in ["+notcp", "+tcp"] {
        let answer = host(
            "dig",
            &["@127.0.0.1", "-p", "5353", transport, "+short", "+tries=3", "www.example.com", "A"],
        )?;
        if answer.trim() != "192.0.2.80" {
            return Err(format!("host dig {transport} www.example.com A answered {answer:?}"));
        }
        println!("    host: dig @127.0.0.1 -p 5353 {transport} www.example.com A: 192.0.2.80");
    }
    Ok(())
}

/// Most connections [`drive_dns_out_of_memory`] opens.
const DNS_HOGS_MAX: usize = 60;

/// The dom0 bash script of [`drive_dns_out_of_memory`], run as `bash FILE IP MAX`. `query`
/// sends `www.example.com A` (id 0x1234, no recursion wanted) over UDP and prints the reply in
/// hex, or nothing after 5 s.
const DNS_OOM_SCRIPT: &str = r#"ip=$1
query() {
  exec {u}<>/dev/udp/$ip/53
  printf '\022\064\000\000\000\001\000\000\000\000\000\000\003www\007example\003com\000\000\001\000\001' >&$u
  timeout 5 dd bs=512 count=1 <&$u 2>/dev/null | od -An -tx1 | tr -d ' \n'
  exec {u}>&-
}
echo "before $(query)"
held=0; end='no connection closed'
for i in $(seq "$2"); do
  if ! exec {fd}<>/dev/tcp/$ip/53; then end="connection $i refused"; break; fi
  printf '\377\377\000' >&$fd
  read -t 0.3 -N 1 -u $fd _
  if [ $? -le 128 ]; then end="connection $i closed by the guest"; break; fi
  held=$((held+1))
done
echo "held $held; $end"
echo "during $(query)"
"#;

/// Fills the heap of dns (at `memory=3`) with TCP queries it must hold: connections that each
/// announce a query of 65 535 bytes (the most RFC 7766's two-octet length allows) and send one
/// byte of it, opened one after another (each held until its query is complete or dns's 10 s
/// idle limit passes: the script waits 0.3 s on each) until the guest closes one. The guest must log that it had no memory for
/// the query and closed that connection, answer UDP meanwhile (the question, asked once
/// before, from its memo of replies), and answer over TCP again once the connections are gone.
fn drive_dns_out_of_memory(d: &mut Driver) -> Result<(), String> {
    let ip = dns_address(d)?;
    d.agent.put(OOM_SCRIPT_FILE, DNS_OOM_SCRIPT.as_bytes(), 0o644, DRIVER_WAIT)?;
    // At most DNS_HOGS_MAX waits of 0.3 s, and the UDP queries' 5 s each.
    let out = d.agent.run_ok(&format!("bash {OOM_SCRIPT_FILE} {ip} {DNS_HOGS_MAX}"), DRIVER_WAIT * 3)?;
    let line = |key: &str| out.lines().find_map(|l| l.strip_prefix(key)).unwrap_or("").trim();
    let answered = |hex: &str| hex.starts_with("1234") && hex.contains("c0000250");
    if !answered(line("before ")) {
        return Err(format!("no UDP answer for www.example.com A before the test: {out:?}"));
    }
    let report = line("held ");
    println!("    {DNS_HOGS_MAX} connections at most, each announcing a 65535-byte query: held {report}");
    if !report.contains("closed by the guest") || report.starts_with("0;") {
        return Err(format!("expected connections held, then one closed by the guest: {out:?}"));
    }
    d.wait_line("dns: no memory for a tcp query of 65535 bytes: connection closed")?;
    if !answered(line("during ")) {
        return Err(format!("no UDP answer while the heap was full: {out:?}"));
    }
    println!("    UDP answered www.example.com A while TCP queries filled the heap");
    // The guest frees the connections' memory as it takes in their closes, and listens again
    // on port 53 once a socket fits: until then a SYN is refused. Ask for up to 20 s.
    let tcp = d.agent.run(
        &format!(
            "for i in $(seq 20); do a=$(dig @{ip} +tcp +norec +time=2 +tries=1 +short www.example.com A 2>&1); \
             if [ \"$a\" = 192.0.2.80 ]; then echo \"answer=$a after=$i\"; exit 0; fi; sleep 1; done; echo \"last: $a\"; exit 1"
        ),
        DRIVER_WAIT * 2,
    )?;
    if tcp.0 != 0 {
        return Err(format!("TCP did not answer again within 20 s of the connections closing: {:?}", tcp.1));
    }
    println!("    TCP answered again once they closed ({})", tcp.1.trim());
    shut_down(d)
}
