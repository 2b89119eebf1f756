//! The content-disk cases: the web and DNS apps reading their site and zones from an ext4
//! image `cargo xtask disk` made on the host, attached read-only; and a damaged image.

use super::dns::{dig, DigCheck};
use super::web::web_address;
use super::{check_no_panic, shut_down, Case, Check, Driver, DRIVER_WAIT};
use crate::agent::Agent;
use crate::disk;
use crate::guest::Reason;
use crate::mote_dir;
use std::fs;
use std::path::Path;

/// The web and DNS apps with content disks.
pub(super) fn cases() -> Vec<Case> {
    use Check::*;
    vec![
        Case {
            name: "damaged_content_disk_stops_web_at_start",
            app: "web",
            args: &[],
            gdb: false,
            disk: true,
            xl: &[DAMAGED],
            reason: Reason::Crash,
            checks: vec![Contains(
                "main returned an error: web: disk xvda (vbd 51712): no readable ext2/3/4 filesystem: corrupt filesystem:",
            )],
            driver: None,
        },
        Case {
            name: "site_larger_than_memory_stops_web_with_a_clear_error",
            app: "web",
            args: &[],
            gdb: false,
            disk: true,
            xl: &[TOO_BIG],
            reason: Reason::Crash,
            checks: vec![
                Contains(
                    "main returned an error: web: disk xvda (vbd 51712): /files/large.bin: 5242880 bytes do not fit in memory: the heap has ",
                ),
                Custom("no panic", check_no_panic),
            ],
            driver: Some(drive_too_big),
        },
        Case {
            name: "web_serves_a_site_from_disk",
            app: "web",
            args: &[],
            gdb: false,
            disk: true,
            xl: &[WEB_SITE],
            reason: Reason::Poweroff,
            checks: vec![
                Contains("web: site from disk xvda (vbd 51712): 2 files, 1048638 bytes"),
                // The disk, dropped once the site is in memory, is closed and its pages freed.
                Contains("disk: vbd 51712: closed (backend Closed)"),
                Contains("disk: vbd 51712: gave back 136 granted pages and the event channel"),
                Line("web: Poweroff requested, stopping"),
            ],
            driver: Some(drive_web),
        },
        Case {
            name: "web_says_a_content_disk_attached_again_is_not_read",
            app: "web",
            args: &[],
            gdb: false,
            disk: true,
            xl: &[WEB_SITE],
            reason: Reason::Poweroff,
            checks: vec![
                Contains("disk: xvda (vbd 51712) attached"),
                Contains(
                    "web: disk xvda (vbd 51712) attached while serving: not read (the site is read at start); restart the domain to use it",
                ),
                Line("web: Poweroff requested, stopping"),
            ],
            driver: Some(drive_web_reattach),
        },
        Case {
            name: "dns_answers_zones_from_disk",
            app: "dns",
            args: &[],
            gdb: false,
            disk: true,
            xl: &[DNS_ZONES],
            reason: Reason::Poweroff,
            checks: vec![
                Contains("(udp/53 tcp/53): example.net. example.org."),
                Line("dns: Poweroff requested, stopping"),
            ],
            driver: Some(drive_dns),
        },
        Case {
            name: "content_disk_stops_dns_built_without_the_reader",
            app: "dns",
            args: &[],
            gdb: false,
            disk: false,
            xl: &[DNS_ZONES],
            reason: Reason::Crash,
            checks: vec![
                Contains(
                    "main returned an error: dns: the domain has a disk (device/vbd/51712), but this image reads no content disk",
                ),
                Contains("`cargo xtask build dns --disk-support`: dns-disk.elf"),
                Custom("no panic", check_no_panic),
            ],
            driver: None,
        },
    ]
}

/// The xl settings of the cases' disks: loop devices [`setup`] binds to its images (the
/// `/dev/loop7` of `cargo xtask run --disk` stays free).
pub const WEB_SITE: &str = r#"disk=["format=raw,vdev=xvda,access=ro,target=/dev/loop4"]"#;
pub const DNS_ZONES: &str = r#"disk=["format=raw,vdev=xvda,access=ro,target=/dev/loop5"]"#;
pub const DAMAGED: &str = r#"disk=["format=raw,vdev=xvda,access=ro,target=/dev/loop6"]"#;
/// A site with a file larger than the web guest's 4 MiB of memory.
pub const TOO_BIG: &str = r#"disk=["format=raw,vdev=xvda,access=ro,target=/dev/loop3"]"#;
/// The size of that file.
pub const TOO_BIG_BYTES: usize = 5 << 20;

/// Whether a case attaches one of these images.
pub fn uses_content(xl: &[&str]) -> bool {
    xl.iter().any(|o| [WEB_SITE, DNS_ZONES, DAMAGED, TOO_BIG].contains(o))
}

/// The large file of the test site: 1 MiB that no compressor or cache shortcut can fake.
fn big_file() -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

const INDEX: &str = "<!doctype html><title>mote</title><h1>served from a disk</h1>\n";
const ORG_ZONE: &str = "$ORIGIN example.org.\n$TTL 600\n\
                        @ IN SOA ns1 hostmaster 1 7200 3600 1209600 300\n\
                        @ IN NS ns1\nns1 IN A 198.51.100.1\nwww IN A 198.51.100.80\n";
const NET_ZONE: &str =
    "example.net. 900 IN SOA ns1.example.net. hostmaster.example.net. 7 7200 3600 1209600 300\n\
                        example.net. 900 IN NS ns1.example.net.\n\
                        ns1.example.net. 900 IN A 203.0.113.1\n\
                        mail.example.net. 900 IN AAAA 2001:db8::25\n";

/// Writes `files` (path, contents) under `dir`, emptied first.
fn tree(dir: &Path, files: &[(&str, &[u8])]) -> Result<(), String> {
    let _ = fs::remove_dir_all(dir);
    for (path, body) in files {
        let file = dir.join(path);
        fs::create_dir_all(file.parent().expect("under dir"))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        fs::write(&file, body).map_err(|e| format!("{}: {e}", file.display()))?;
    }
    Ok(())
}

/// Makes the cases' images on the host with `cargo xtask disk`'s code, copies them into dom0
/// and binds them to the cases' loop devices.
pub fn setup(agent: &Agent) -> Result<(), String> {
    let work = mote_dir().join("content-cases");
    let site = web_site()?;
    let zones = dns_zones()?;
    let too_big = work.join("too-big-site");
    let large: Vec<u8> = (0..TOO_BIG_BYTES).map(|i| (i % 251) as u8).collect();
    tree(&too_big, &[("index.html", INDEX.as_bytes()), ("files/large.bin", &large)])?;
    for (dir, name, loop_device) in [
        (&site, "web-site.img", "/dev/loop4"),
        (&zones, "dns-zones.img", "/dev/loop5"),
        (&too_big, "too-big-site.img", "/dev/loop3"),
    ] {
        let image = work.join(name);
        disk::make(dir, &image)?;
        disk::upload(agent, &image, name, loop_device)?;
    }
    // The site's image with a byte of its superblock changed: its checksum no longer matches.
    let mut damaged = fs::read(work.join("web-site.img")).map_err(|e| format!("web-site.img: {e}"))?;
    damaged[1024 + 0x78] ^= 0x55;
    let image = work.join("damaged.img");
    fs::write(&image, damaged).map_err(|e| format!("{}: {e}", image.display()))?;
    disk::upload(agent, &image, "damaged.img", "/dev/loop6")?;
    Ok(())
}

/// The web cases' site: an index and the 1 MiB file.
fn web_site() -> Result<std::path::PathBuf, String> {
    let site = mote_dir().join("content-cases/web-site");
    tree(&site, &[("index.html", INDEX.as_bytes()), ("files/big.bin", &big_file())])?;
    Ok(site)
}

/// The dns cases' zones: two zone files and a file that is not a zone.
fn dns_zones() -> Result<std::path::PathBuf, String> {
    let zones = mote_dir().join("content-cases/dns-zones");
    tree(
        &zones,
        &[
            ("example.org.zone", ORG_ZONE.as_bytes()),
            ("example.net.zone", NET_ZONE.as_bytes()),
            ("README", b"not a zone: left alone\n"),
        ],
    )?;
    Ok(zones)
}

/// The dns cases' zones as an ext4 image made on the host, for a hosted app's `--disk`.
pub fn dns_image() -> Result<std::path::PathBuf, String> {
    let image = mote_dir().join("content-cases/hosted-dns-zones.img");
    disk::make(&dns_zones()?, &image)?;
    Ok(image)
}

/// dig from the host through 127.0.0.1:5353 (a hosted dns app given [`dns_image`]), over UDP
/// and TCP: both zones on the disk answer, the embedded example.com is refused.
pub fn dns_from_host() -> Result<(), String> {
    for transport in ["+notcp", "+tcp"] {
        for (question, want) in [
            ("www.example.org A", "www.example.org. 600 IN A 198.51.100.80"),
            ("mail.example.net AAAA", "mail.example.net. 900 IN AAAA 2001:db8::25"),
            ("www.example.com A", "status: REFUSED"),
        ] {
            let mut args = vec!["@127.0.0.1", "-p", "5353", transport, "+tries=3"];
            args.extend(question.split(' '));
            let out = super::host("dig", &args)?;
            let flat = out.split_whitespace().collect::<Vec<_>>().join(" ");
            if !flat.contains(want) {
                return Err(format!("host dig {transport} {question}: no {want:?} in:\n{out}"));
            }
            println!("    host: dig @127.0.0.1 -p 5353 {transport} {question}: {want}");
        }
    }
    Ok(())
}

/// The web cases' site as an ext4 image made on the host, for a hosted app's `--disk`.
pub fn web_image() -> Result<std::path::PathBuf, String> {
    let site = web_site()?;
    let image = mote_dir().join("content-cases/hosted-web-site.img");
    disk::make(&site, &image)?;
    Ok(image)
}

/// curl from the host through 127.0.0.1:8080 (a hosted web app given [`web_image`]): the
/// 1 MiB file and the index come from the disk byte for byte, and a file of the embedded site
/// is not there.
pub fn web_from_host() -> Result<(), String> {
    let site = mote_dir().join("content-cases/web-site");
    for (target, file) in [("/files/big.bin", "files/big.bin"), ("/", "index.html")] {
        let source = fs::read(site.join(file)).map_err(|e| format!("{file}: {e}"))?;
        let url = format!("http://127.0.0.1:8080{target}");
        let out = std::process::Command::new("curl")
            .args(["-sf", &url])
            .output()
            .map_err(|e| format!("curl: {e}"))?;
        if !out.status.success() {
            return Err(format!("host curl {url} failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let got = out.stdout;
        if got != source {
            return Err(format!(
                "GET {url}: {} bytes, not the {} of the source file",
                got.len(),
                source.len()
            ));
        }
        println!("    host: curl {url}: {} bytes, the source file's byte for byte", source.len());
    }
    let code = super::host(
        "curl",
        &["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:8080/docs/sample.txt"],
    )?;
    if code != "404" {
        return Err(format!("GET /docs/sample.txt (only in the embedded site) answered {code}"));
    }
    println!("    host: curl http://127.0.0.1:8080/docs/sample.txt: 404 (the embedded site is not served)");
    Ok(())
}

/// Shows the error the web guest stops with when its site does not fit in memory.
pub fn drive_too_big(d: &mut Driver) -> Result<(), String> {
    println!("    guest: {}", d.wait_first_line("main returned an error")?);
    Ok(())
}

/// curl from dom0: the 1 MiB file and the index come from the disk byte for byte (SHA-256
/// against the source files), and a file of the embedded site is not there.
pub fn drive_web(d: &mut Driver) -> Result<(), String> {
    println!("    guest: {}", d.wait_first_line("web: site from disk xvda")?);
    let (ip, _) = web_address(d)?;
    let site = mote_dir().join("content-cases/web-site");
    for (target, file) in [("/files/big.bin", "files/big.bin"), ("/", "index.html")] {
        let source = fs::read(site.join(file)).map_err(|e| format!("{file}: {e}"))?;
        let want = super::host_sha256(&source)?;
        let out = d.agent.run_ok(&format!("curl -sf http://{ip}{target} | sha256sum"), DRIVER_WAIT)?;
        let got = out.split_whitespace().next().unwrap_or_default();
        if got != want {
            return Err(format!("GET {target}: sha256 {got}, the source file's is {want}"));
        }
        println!("    curl http://{ip}{target}: {} bytes, sha256 {}… matches", source.len(), &want[..16]);
    }
    let code = d.dom0(&format!("curl -s -o /dev/null -w '%{{http_code}}' http://{ip}/docs/sample.txt"))?;
    if code != "404" {
        return Err(format!("GET /docs/sample.txt (only in the embedded site) answered {code}"));
    }
    println!("    curl http://{ip}/docs/sample.txt: 404 (the embedded site is not served)");
    shut_down(d)
}

/// The site's disk detached and attached again while web serves: the guest says it is not
/// read (the site is loaded at start), and the site loaded from it is still served.
pub fn drive_web_reattach(d: &mut Driver) -> Result<(), String> {
    println!("    guest: {}", d.wait_first_line("web: site from disk xvda")?);
    let (ip, _) = web_address(d)?;
    d.dom0(&format!("xl block-detach {} xvda", d.name))?;
    d.dom0(&format!("xl block-attach {} format=raw,vdev=xvda,access=ro,target=/dev/loop4", d.name))?;
    println!("    guest: {}", d.wait_line("web: disk xvda (vbd 51712) attached while serving")?);
    let out = d.agent.run_ok(&format!("curl -sf http://{ip}/ | head -c 200"), DRIVER_WAIT)?;
    if !out.contains("served from a disk") {
        return Err(format!("GET / after the disk came back answered {out:?}"));
    }
    println!("    curl http://{ip}/: still the site read at start");
    shut_down(d)
}

/// dig from dom0: both zones on the disk answer, the embedded example.com does not.
pub fn drive_dns(d: &mut Driver) -> Result<(), String> {
    println!("    guest: {}", d.wait_first_line("dns: 2 zones from disk xvda")?);
    let line = d.wait_line("dns: serving on ")?;
    let ip = line.split_whitespace().nth(3).ok_or_else(|| format!("no address in {line:?}"))?.to_owned();
    const CHECKS: &[DigCheck] = &[
        DigCheck {
            args: "www.example.org A",
            status: "NOERROR",
            authoritative: true,
            records: &["www.example.org. 600 IN A 198.51.100.80"],
        },
        DigCheck {
            args: "mail.example.net AAAA",
            status: "NOERROR",
            authoritative: true,
            records: &["mail.example.net. 900 IN AAAA 2001:db8::25"],
        },
        DigCheck { args: "www.example.com A", status: "REFUSED", authoritative: false, records: &[] },
    ];
    dig(d, &ip, "+notcp", CHECKS)?;
    shut_down(d)
}
