//! Network cases: netfront and the echo app (DHCP, static addresses, offloads, vif-mote,
//! TCP), several vifs, vifs detached and attached again, forwarded ports.

use super::dns::{dig, DIG_CHECKS};
use super::{dom0_check, forward_from_host, shut_down, Case, Check, Driver, DRIVER_WAIT, SHUTDOWN_LIMIT};
use crate::guest::Reason;
use std::time::Instant;

/// The echo app over netfront: addressing, offloads, vifs, TCP.
pub(super) fn cases() -> Vec<Case> {
    use Check::*;
    vec![
        Case {
            name: "forwards_reach_echo_from_host_loopback",
            app: "echo",
            args: &[],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Line("echo: Poweroff requested, stopping")],
            driver: Some(drive_forwards),
        },
        Case {
            name: "net_dhcp_ping_and_udp_echo",
            app: "echo",
            args: &[],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Contains("via DHCP, gateway 10.0.0.1"), Line("echo: Poweroff requested, stopping")],
            driver: Some(drive_dhcp_echo),
        },
        Case {
            name: "net_static_ipv4_and_ipv6",
            app: "echo",
            args: &["ip=10.0.0.2/24", "gw=10.0.0.1", "ip6=fd00::2/64"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![
                Contains("net: 10.0.0.2/24 (static), gateway 10.0.0.1"),
                Contains("net: fd00::2/64 (static)"),
                // What Linux's netback offers, taken: checksums left to it both ways.
                Contains(
                    "; rx checksum offload on, tx checksum offload on (IPv4) on (IPv6), rx scatter-gather on, GSO (TCP/IPv4) rx on tx on",
                ),
            ],
            driver: Some(drive_static_echo),
        },
        Case {
            name: "netfront_offloads_off_still_echo_ipv4_and_ipv6",
            app: "echo",
            args: &["ip=10.0.0.12/24", "ip6=fd00::12/64", "netfront=no-csum-offload,no-sg"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Contains(
                "; rx checksum offload off, tx checksum offload off (IPv4) off (IPv6), rx scatter-gather off, GSO (TCP/IPv4) rx off tx off",
            )],
            driver: Some(drive_offloads_off),
        },
        Case {
            name: "vif_mote_hotplug_helper_serves_and_names_a_missing_bridge",
            app: "echo",
            args: &["ip=10.0.0.13/24"],
            gdb: false,
            disk: false,
            xl: &[r#"vif=["bridge=xenbr0,script=vif-mote"]"#],
            reason: Reason::Poweroff,
            checks: vec![Line("echo: Poweroff requested, stopping")],
            driver: Some(drive_vif_mote),
        },
        Case {
            name: "tcp_echo_50mb_byte_for_byte",
            app: "echo",
            args: &["ip=10.0.0.3/24"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Line("echo: Poweroff requested, stopping")],
            driver: Some(drive_bulk_echo),
        },
        Case {
            name: "two_vifs_serve_both_addresses",
            app: "echo",
            args: &["ip=10.0.0.5/24", "vif1.ip=10.0.0.6/24"],
            gdb: false,
            disk: false,
            xl: &[r#"vif=["bridge=xenbr0","bridge=xenbr0"]"#],
            reason: Reason::Poweroff,
            checks: vec![Contains("net: vif 1 connected"), Line("echo: Poweroff requested, stopping")],
            driver: Some(drive_two_vifs),
        },
        Case {
            name: "vif_detached_closes_and_the_other_serves_on",
            app: "echo",
            args: &["ip=10.0.0.7/24", "vif1.ip=10.0.0.8/24"],
            gdb: false,
            disk: false,
            xl: &[r#"vif=["bridge=xenbr0","bridge=xenbr0"]"#],
            reason: Reason::Poweroff,
            checks: vec![Contains("net: vif 1: backend Closing, closing"), Contains("net: vif 1: closed")],
            driver: Some(drive_vif_detach),
        },
        Case {
            name: "tcp_200_concurrent_connections",
            app: "echo",
            args: &["ip=10.0.0.4/24"],
            gdb: false,
            disk: false,
            // All 200 are open at once (the agent makes them before any sends), with 128 KiB
            // of TCP buffers each: more than echo's 16 MiB, where the last would be refused.
            xl: &["memory=32"],
            reason: Reason::Poweroff,
            checks: vec![Line("echo: Poweroff requested, stopping")],
            driver: Some(drive_many_connections),
        },
    ]
}

/// Vifs detached and attached again while an app runs.
pub(super) fn attached_again() -> Vec<Case> {
    use Check::*;
    vec![
        Case {
            name: "vif_detached_and_attached_serves_again",
            app: "echo",
            args: &["ip=10.0.0.9/24"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Contains("net: vif 0: closed"), Line("echo: Poweroff requested, stopping")],
            driver: Some(drive_vif_reattach),
        },
        Case {
            name: "vif_hot_attached_with_a_new_number_serves",
            app: "echo",
            args: &["ip=10.0.0.10/24", "vif1.ip=10.0.0.11/24"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Contains("net: vif 1 attached"), Line("echo: Poweroff requested, stopping")],
            driver: Some(drive_vif_hot_attach),
        },
        Case {
            name: "dns_serves_on_a_hot_attached_vif",
            app: "dns",
            args: &["ip=10.0.0.24/24", "vif1.ip=10.0.0.25/24"],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Contains("net: vif 1 attached"), Line("dns: Poweroff requested, stopping")],
            driver: Some(drive_dns_hot_attach),
        },
        Case {
            name: "vif_reattached_leases_again_by_dhcp",
            app: "echo",
            args: &[],
            gdb: false,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Contains("net: DHCP lease on"), Line("echo: Poweroff requested, stopping")],
            driver: Some(drive_vif_reattach_dhcp),
        },
    ]
}

/// The address in `echo: serving on A.B.C.D …`.
pub(super) fn echo_address(d: &mut Driver) -> Result<String, String> {
    let line = d.wait_line("echo: serving on ")?;
    line.split_whitespace().nth(3).map(str::to_owned).ok_or_else(|| format!("no address in {line:?}"))
}

/// The guest leases an address from dom0's DHCP server, answers ping and echoes UDP.
fn drive_dhcp_echo(d: &mut Driver) -> Result<(), String> {
    let ip = echo_address(d)?;
    let last: u8 =
        ip.strip_prefix("10.0.0.").and_then(|n| n.parse().ok()).ok_or(format!("{ip} is not on xenbr0"))?;
    if !(100..=199).contains(&last) {
        return Err(format!("{ip} is outside dom0's DHCP range 10.0.0.100-199"));
    }
    dom0_check(d, &format!("ping -c 3 -W 5 {ip}"))?;
    dom0_check(d, &format!("/mote/agent udp-check {ip}:7 20"))?;
    shut_down(d)
}

/// Static IPv4 and IPv6 from the command line: ping, ping6, UDP and TCP echo over IPv6.
fn drive_static_echo(d: &mut Driver) -> Result<(), String> {
    let ip = echo_address(d)?;
    if ip != "10.0.0.2" {
        return Err(format!("serving on {ip}, not the static 10.0.0.2"));
    }
    dom0_check(d, "ping -c 3 -W 5 10.0.0.2")?;
    dom0_check(d, "ping6 -c 3 -W 5 fd00::2")?;
    dom0_check(d, "/mote/agent udp-check [fd00::2]:7 10")?;
    dom0_check(d, "/mote/agent tcp-check [fd00::2]:7 100000")?;
    shut_down(d)
}

/// With `netfront=no-csum-offload,no-sg` (smoltcp sums every checksum) echo works over IPv4
/// and IPv6.
fn drive_offloads_off(d: &mut Driver) -> Result<(), String> {
    echo_address(d)?;
    for ip in ["10.0.0.12", "[fd00::12]"] {
        dom0_check(d, &format!("/mote/agent udp-check {ip}:7 10"))?;
        dom0_check(d, &format!("/mote/agent tcp-check {ip}:7 1000000"))?;
    }
    shut_down(d)
}

/// host/vif-mote put the guest's vif on the bridge at the bridge's MTU, up, without an IPv6
/// address of dom0's (echo answers), and a guest whose vif names a bridge dom0 lacks fails
/// `xl create` at once with the helper's reason.
fn drive_vif_mote(d: &mut Driver) -> Result<(), String> {
    let ip = echo_address(d)?;
    dom0_check(d, &format!("/mote/agent udp-check {ip}:7 10"))?;
    dom0_check(d, &format!("/mote/agent tcp-check {ip}:7 100000"))?;
    let vif = format!("vif{}.0", d.domid()?);
    let link = d.dom0(&format!("ip -o link show dev {vif}"))?;
    if !(link.contains("master xenbr0") && link.contains("mtu 1500") && link.contains(",UP")) {
        return Err(format!("{vif} is not up on xenbr0 at MTU 1500: {link}"));
    }
    let ipv6 = d.dom0(&format!("cat /proc/sys/net/ipv6/conf/{vif}/disable_ipv6"))?;
    if ipv6.trim() != "1" {
        return Err(format!("{vif} keeps IPv6 on in dom0: disable_ipv6 is {ipv6:?}"));
    }
    let out = d.dom0(
        r#"xl create /mote/images/echo.cfg 'name="vifbad"' 'vif=["bridge=nobr0,script=vif-mote"]' 2>&1; echo "status=$?"; xl destroy vifbad 2>/dev/null; true"#,
    )?;
    if !out.contains("vif-mote: nobr0 is not a bridge in dom0") || out.contains("status=0") {
        return Err(format!("xl create with a missing bridge did not fail with vif-mote's reason:\n{out}"));
    }
    println!("    xl create with bridge=nobr0: failed with \"vif-mote: nobr0 is not a bridge in dom0\"");
    shut_down(d)
}

/// 50 MB through TCP echo come back byte for byte.
fn drive_bulk_echo(d: &mut Driver) -> Result<(), String> {
    let ip = echo_address(d)?;
    dom0_check(d, &format!("/mote/agent tcp-check {ip}:7 52428800"))?;
    shut_down(d)
}

/// What `cargo xtask run echo` offers: the echo ports on 127.0.0.1:7007, TCP and UDP, from
/// the host through QEMU and dom0.
fn drive_forwards(d: &mut Driver) -> Result<(), String> {
    let relays = forward_from_host(d, "echo: serving on ")?;
    echo_from_host()?;
    drop(relays);
    shut_down(d)
}

/// 127.0.0.1:7007 echoes UDP datagrams and a TCP line (under Xen or hosted).
pub(crate) fn echo_from_host() -> Result<(), String> {
    use std::io::{Read, Write};
    let fail = |what: &str, e: std::io::Error| format!("{what} 127.0.0.1:7007: {e}");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| fail("udp bind for", e))?;
    udp.set_read_timeout(Some(DRIVER_WAIT)).map_err(|e| fail("udp", e))?;
    for i in 0..3 {
        let msg = format!("datagram {i} from the host");
        udp.send_to(msg.as_bytes(), "127.0.0.1:7007").map_err(|e| fail("udp send to", e))?;
        let mut buf = [0u8; 256];
        let n = udp.recv(&mut buf).map_err(|e| fail("udp reply from", e))?;
        if &buf[..n] != msg.as_bytes() {
            return Err(format!("udp echo returned {:?}", String::from_utf8_lossy(&buf[..n])));
        }
    }
    let mut tcp = std::net::TcpStream::connect("127.0.0.1:7007").map_err(|e| fail("tcp connect to", e))?;
    tcp.set_read_timeout(Some(DRIVER_WAIT)).map_err(|e| fail("tcp", e))?;
    let msg = b"a line from the host\n";
    tcp.write_all(msg).map_err(|e| fail("tcp write to", e))?;
    let mut back = vec![0u8; msg.len()];
    tcp.read_exact(&mut back).map_err(|e| fail("tcp read from", e))?;
    if back != msg {
        return Err(format!("tcp echo returned {:?}", String::from_utf8_lossy(&back)));
    }
    println!("    127.0.0.1:7007 echoed 3 UDP datagrams and a TCP line");
    Ok(())
}

/// Each vif has its own stack and address, and both serve.
fn drive_two_vifs(d: &mut Driver) -> Result<(), String> {
    let mut addresses = [echo_address(d)?, echo_address(d)?];
    addresses.sort();
    if addresses != ["10.0.0.5", "10.0.0.6"] {
        return Err(format!("serving on {addresses:?}, not 10.0.0.5 and 10.0.0.6"));
    }
    for ip in addresses {
        dom0_check(d, &format!("ping -c 2 -W 5 {ip}"))?;
        dom0_check(d, &format!("/mote/agent udp-check {ip}:7 5"))?;
        dom0_check(d, &format!("/mote/agent tcp-check {ip}:7 100000"))?;
    }
    shut_down(d)
}

/// `xl network-detach` of one vif: the guest answers the backend's closing at once (libxl
/// would otherwise wait 10 s and force it), and the other vif keeps serving.
fn drive_vif_detach(d: &mut Driver) -> Result<(), String> {
    echo_address(d)?;
    echo_address(d)?;
    let started = Instant::now();
    d.dom0(&format!("xl network-detach {} 1", d.name))?;
    let took = started.elapsed();
    d.wait_line("net: vif 1: closed")?;
    if took > SHUTDOWN_LIMIT {
        return Err(format!("`xl network-detach` took {took:?}: the guest did not answer the backend"));
    }
    println!("    xl network-detach took {:.1} s", took.as_secs_f64());
    dom0_check(d, "/mote/agent udp-check 10.0.0.7:7 5")?;
    dom0_check(d, "/mote/agent tcp-check 10.0.0.7:7 100000")?;
    shut_down(d)
}

/// 200 connections open at once are all echoed.
fn drive_many_connections(d: &mut Driver) -> Result<(), String> {
    let ip = echo_address(d)?;
    dom0_check(d, &format!("/mote/agent tcp-check {ip}:7 2000 200"))?;
    shut_down(d)
}

/// dns serves on a vif attached while it runs, under a number it has not seen, as on its first.
fn drive_dns_hot_attach(d: &mut Driver) -> Result<(), String> {
    for ip in hot_attach(d, "dns: serving on ", ["10.0.0.24", "10.0.0.25"])? {
        dig(d, ip, "+notcp", DIG_CHECKS)?;
        dig(d, ip, "+tcp", DIG_CHECKS)?;
        println!("    {ip}: dig over UDP and TCP ok");
    }
    shut_down(d)
}

/// Detaches vif 0 of the running guest and attaches a new one: the guest closes the old, sees
/// the new one in its `device/vif` directory, connects it and serves on it.
/// `xl network-detach` then `xl network-attach` of vif 0, waiting for the guest to close it and
/// connect it again; the vif's counts line, logged as it went down.
fn reattach_vif0(d: &mut Driver) -> Result<String, String> {
    d.dom0(&format!("xl network-detach {} 0", d.name))?;
    d.wait_line("net: vif 0: closed")?;
    let counts = d.wait_line("net: vif 0: ")?;
    let started = Instant::now();
    d.dom0(&format!("xl network-attach {} bridge=xenbr0", d.name))?;
    d.wait_line("net: vif 0 connected")?;
    println!(
        "    vif 0 detached, attached again and connected {:.1} s after attach",
        started.elapsed().as_secs_f64()
    );
    Ok(counts)
}

/// The GSO packets a vif's counts line says it received (`… received (N over several
/// buffers, G GSO), …`).
fn gso_packets(counts: &str) -> Option<u64> {
    let before = counts.split(" GSO)").next().filter(|b| b.len() < counts.len())?;
    before.rsplit(", ").next()?.parse().ok()
}

/// The segments dropped for a bad checksum in a vif's counts line (`… N bad checksums, …`).
pub(super) fn bad_checksums(counts: &str) -> Option<u64> {
    let (before, _) = counts.split_once(" bad checksums")?;
    before.rsplit(", ").next()?.parse().ok()
}

/// The GSO packets sent in a vif's counts line (`… packets sent (N GSO of S segments) …`):
/// (N, S).
fn tx_gso_packets(counts: &str) -> Option<(u64, u64)> {
    let (before, after) = counts.split_once(" GSO of ")?;
    let packets = before.rsplit('(').next()?.parse().ok()?;
    let segments = after.split(' ').next()?.parse().ok()?;
    Some((packets, segments))
}

/// Echo works on a static address; twice `xl network-detach` then `xl network-attach` of
/// vif 0; echo works again each time on the same address (the stack and its sockets stay).
fn drive_vif_reattach(d: &mut Driver) -> Result<(), String> {
    let ip = echo_address(d)?;
    dom0_check(d, &format!("/mote/agent udp-check {ip}:7 5"))?;
    dom0_check(d, &format!("/mote/agent tcp-check {ip}:7 100000"))?;
    // A TCP stream from dom0 comes in GSO packets (rx GSO), which the vif counts.
    dom0_check(d, &format!("/mote/agent discard-check {ip}:9 2000000"))?;
    for round in 0..2 {
        let counts = reattach_vif0(d)?;
        if round == 0 {
            match gso_packets(&counts) {
                Some(n) if n > 0 => println!("    vif 0 received {n} GSO packets before the detach"),
                _ => return Err(format!("no GSO packet received from dom0's TCP stream: {counts}")),
            }
            // The echo answers each GSO packet with several segments in one turn: joined.
            match tx_gso_packets(&counts) {
                Some((n, segments)) if n > 0 && segments > n => {
                    println!("    vif 0 sent {n} GSO packets of {segments} segments before the detach")
                }
                _ => return Err(format!("no GSO packet sent with the echoed TCP stream: {counts}")),
            }
        }
        dom0_check(d, &format!("ping -c 2 -W 5 {ip}"))?;
        dom0_check(d, &format!("/mote/agent udp-check {ip}:7 5"))?;
        dom0_check(d, &format!("/mote/agent tcp-check {ip}:7 100000"))?;
    }
    shut_down(d)
}

/// The guest boots with one vif; `xl network-attach` gives it a second (vif 1, a number it
/// never had): the guest picks it up, serves echo on its address (`vif1.ip=`), and vif 0
/// serves on.
fn drive_vif_hot_attach(d: &mut Driver) -> Result<(), String> {
    for ip in hot_attach(d, "echo: serving on ", ["10.0.0.10", "10.0.0.11"])? {
        dom0_check(d, &format!("ping -c 2 -W 5 {ip}"))?;
        dom0_check(d, &format!("/mote/agent udp-check {ip}:7 5"))?;
        dom0_check(d, &format!("/mote/agent tcp-check {ip}:7 100000"))?;
    }
    shut_down(d)
}

/// Waits for the app's `serving` line (`<app>: serving on <ip> …`) with the first address,
/// attaches a vif with `xl network-attach` and waits for the guest to connect it (vif 1) and
/// serve on the second; the addresses, the new one first.
fn hot_attach<'a>(
    d: &mut Driver,
    serving: &str,
    [first, second]: [&'a str; 2],
) -> Result<[&'a str; 2], String> {
    let address = |line: &str| line.split_whitespace().nth(3).unwrap_or_default().to_owned();
    let on = address(&d.wait_line(serving)?);
    if on != first {
        return Err(format!("serving on {on}, not {first}"));
    }
    let started = Instant::now();
    d.dom0(&format!("xl network-attach {} bridge=xenbr0", d.name))?;
    // Serving (sockets bound on the new stack) and connected (the handshake done), in
    // whichever order they come.
    let (mut attached, mut connected) = (None, false);
    while attached.is_none() || !connected {
        let line = d.wait_line("")?;
        connected |= line.contains("net: vif 1 connected");
        if line.contains(serving) {
            attached = Some(address(&line));
        }
    }
    let attached = attached.unwrap_or_default();
    if attached != second {
        return Err(format!("the attached vif serves on {attached}, not {second}"));
    }
    println!(
        "    vif 1 attached and serving {:.1} s after xl network-attach",
        started.elapsed().as_secs_f64()
    );
    Ok([second, first])
}

/// The same with DHCP: the new vif has a new MAC, the guest asks for a lease again and serves
/// on the address it gets.
fn drive_vif_reattach_dhcp(d: &mut Driver) -> Result<(), String> {
    let ip = echo_address(d)?;
    dom0_check(d, &format!("/mote/agent udp-check {ip}:7 5"))?;
    reattach_vif0(d)?;
    let line = d.wait_line(" via DHCP")?;
    let ip = line
        .split("net: ")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .ok_or_else(|| format!("no address in {line:?}"))?
        .to_owned();
    println!("    leased {ip} again by DHCP");
    dom0_check(d, &format!("/mote/agent udp-check {ip}:7 5"))?;
    dom0_check(d, &format!("/mote/agent tcp-check {ip}:7 100000"))?;
    shut_down(d)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn gso_packets_are_read_from_the_vifs_counts_line() {
        let line = "[INFO  mote::net::xen] net: vif 0: 7585 packets sent (230 GSO of 2944 segments), 1327 received (1076 over several buffers, 1109 GSO), 0 rx errors, 0 bad checksums, 0 tx dropped by the backend, 0 for want of a slot";
        assert_eq!(gso_packets(line), Some(1109));
        assert_eq!(tx_gso_packets(line), Some((230, 2944)));
        assert_eq!(bad_checksums(line), Some(0));
        assert_eq!(bad_checksums(&line.replace("0 bad checksums", "1000 bad checksums")), Some(1000));
        assert_eq!(bad_checksums("net: vif 0: 3 frames sent, 4 received"), None);
        assert_eq!(tx_gso_packets(&line.replace("230 GSO of 2944", "0 GSO of 0")), Some((0, 0)));
        assert_eq!(tx_gso_packets("net: vif 0: 3 frames sent, 4 received"), None);
        assert_eq!(gso_packets(&line.replace("1109 GSO", "0 GSO")), Some(0));
        assert_eq!(
            gso_packets("net: vif 0: 3 frames sent, 4 received (0 over several buffers), 0 rx errors"),
            None
        );
    }
}
