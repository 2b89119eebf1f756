//! Disk cases: the selftest's blkfront against an image in dom0, read-only, discard,
//! detached and attached again. Content disks are in [`super::content`].

use super::{host_sha256, shut_down, Case, Check, Driver, DRIVER_WAIT, SHUTDOWN_LIMIT};
use crate::build::Image;
use crate::guest::Reason;
use std::thread;
use std::time::{Duration, Instant};

/// The memory of the cases that write, read and verify the whole disk in 1 MiB steps: their two
/// 1 MiB buffers, beside the disk's pool, no longer fit the 2.6 MiB heap of a 4 MiB domain since
/// the page tables of W^X took 80 KiB of `.bss` (docs/memory-protection.md).
const DISK_MEMORY: &str = "memory=6";

/// The disk cases: blkfront against a dom0 image, detached and attached again.
pub(super) fn cases() -> Vec<Case> {
    use Check::*;
    vec![
        Case {
            name: "disk_written_flushed_and_hashed_by_dom0",
            app: "selftest",
            // Under the driver's wait: a stalled transfer is reported by the guest too.
            args: &["test=disk", "disk_timeout_s=15"],
            gdb: false,
            disk: false,
            xl: &[DISK_RW, DISK_MEMORY],
            reason: Reason::Poweroff,
            checks: vec![
                Contains("disk: wrote and flushed 67108864 bytes"),
                Contains("disk: vbd 51712: ring 4 pages, indirect 32 segments, persistent grants, discard"),
                Custom("indirect requests, 4 or more in flight", check_disk_stats),
            ],
            driver: Some(drive_disk_hash),
        },
        Case {
            name: "disk_read_back_on_a_second_boot",
            app: "selftest",
            args: &["test=disk-verify"],
            gdb: false,
            disk: false,
            xl: &[DISK_RW, DISK_MEMORY],
            reason: Reason::Poweroff,
            checks: vec![Contains("disk: read and verified 67108864 bytes")],
            driver: None,
        },
        Case {
            name: "disk_discard_punches_a_hole_dom0_sees",
            app: "selftest",
            args: &["test=disk-discard"],
            gdb: false,
            disk: false,
            xl: &[DISK_DISCARD, DISK_MEMORY],
            reason: Reason::Poweroff,
            checks: vec![
                Contains("disk: vbd 51712: ring 4 pages, indirect 32 segments, persistent grants, discard"),
                Contains("disk: discarded 4194304 bytes at byte 2097152"),
                Contains("disk: read and verified 8388608 bytes"),
                Custom("indirect requests, 4 or more in flight", check_disk_stats),
            ],
            driver: Some(drive_disk_discard),
        },
        Case {
            name: "disk_async_tasks_keep_many_requests_in_flight",
            app: "selftest",
            args: &["test=disk-async", "tasks=64", "reads=16"],
            gdb: false,
            disk: false,
            xl: &[DISK_ASYNC],
            reason: Reason::Poweroff,
            checks: vec![
                Contains("disk-async: 1024 reads of 4 KiB by 64 tasks verified"),
                Custom("more requests in flight than a one-page ring holds", check_disk_async),
            ],
            driver: None,
        },
        Case {
            name: "disk_read_only_refuses_writes",
            app: "selftest",
            args: &["test=disk-ro"],
            gdb: false,
            disk: false,
            xl: &[DISK_RO],
            reason: Reason::Poweroff,
            checks: vec![Line("disk: write refused: the disk is read-only")],
            driver: None,
        },
        Case {
            name: "disk_detached_while_read_fails_the_reads_and_the_guest_runs_on",
            app: "selftest",
            args: &["test=disk-detach"],
            gdb: false,
            disk: false,
            xl: &[DISK_ASYNC],
            reason: Reason::Poweroff,
            checks: detach_checks(
                "a later read failed (the disk was detached (its backend went to Closing))",
            ),
            driver: Some(drive_disk_detach),
        },
        Case {
            name: "disk_detached_and_attached_again_is_offered_to_the_app",
            app: "selftest",
            args: &["test=disk-reattach"],
            gdb: false,
            disk: false,
            xl: &[DISK_REATTACH],
            reason: Reason::Poweroff,
            checks: vec![
                Contains("disk-reattach: vbd 51712 reads: disk-a"),
                Contains("disk: vbd 51712: closed (backend "),
                Contains("disk: xvda (vbd 51712) attached"),
                Contains("disk-reattach: xvda (vbd 51712) connected, reads: disk-b"),
                Contains("disk: xvdb (vbd 51728) attached"),
                Contains("disk-reattach: xvdb (vbd 51728) connected, reads: disk-c"),
            ],
            driver: Some(drive_disk_reattach),
        },
        Case {
            name: "disk_detached_under_a_blocking_read_fails_it_and_the_guest_runs_on",
            app: "selftest",
            args: &["test=disk-detach-blocking"],
            gdb: false,
            disk: false,
            xl: &[DISK_ASYNC],
            reason: Reason::Poweroff,
            checks: detach_checks(
                "reads: the disk was detached (its backend went to Closing); a later read failed (the disk was detached (its backend went to Closing))",
            ),
            driver: Some(drive_disk_detach),
        },
    ]
}

/// The console checks of the disk-detach cases: blkfront's detach, close and give-back lines,
/// then the selftest's own report `last`.
fn detach_checks(last: &'static str) -> Vec<Check> {
    vec![
        Check::Contains("blkfront: the disk was detached (backend Closing);"),
        Check::Contains("disk: vbd 51712: closed (backend "),
        Check::Contains("disk: vbd 51712: gave back 136 granted pages and the event channel"),
        Check::Contains(last),
    ]
}

/// The disk images the disk cases attach, made in dom0 once per harness.
/// They live on a tmpfs of their own: dom0's root file system has little room.
pub(super) const DISK_SETUP: &str = "mkdir -p /mnt/disks && (mountpoint -q /mnt/disks || \
                          mount -t tmpfs -o size=84m tmpfs /mnt/disks) && \
                          dd if=/dev/zero of=/mnt/disks/rw.img bs=1M count=64 && \
                          dd if=/dev/zero of=/mnt/disks/ro.img bs=1M count=1 && \
                          dd if=/dev/zero of=/mnt/disks/discard.img bs=1M count=8 && \
                          dd if=/dev/zero of=/mnt/disks/async.img bs=1M count=4 && \
                          for d in a b c; do dd if=/dev/zero of=/mnt/disks/reattach-$d.img bs=1M count=1 && \
                          echo disk-$d | dd of=/mnt/disks/reattach-$d.img conv=notrunc || exit 1; done";
const DISK_RW: &str = r#"disk=["format=raw,vdev=xvda,access=rw,target=/mnt/disks/rw.img"]"#;
const DISK_RO: &str = r#"disk=["format=raw,vdev=xvda,access=ro,target=/mnt/disks/ro.img"]"#;
const DISK_ASYNC: &str = r#"disk=["format=raw,vdev=xvda,access=rw,target=/mnt/disks/async.img"]"#;
const DISK_REATTACH: &str = r#"disk=["format=raw,vdev=xvda,access=ro,target=/mnt/disks/reattach-a.img"]"#;
const DISK_DISCARD: &str = r#"disk=["format=raw,vdev=xvda,access=rw,target=/mnt/disks/discard.img"]"#;

/// `xl block-detach` while 8 tasks read (or one blocking reader): every read fails with a clear
/// error instead of waiting for answers that never come, the guest answers the backend's
/// closing at once (libxl would otherwise wait 10 s and force it), the vbd is gone from dom0,
/// and the domain keeps running until asked to stop.
fn drive_disk_detach(d: &mut Driver) -> Result<(), String> {
    d.wait_first_line("disk-detach: reading")?;
    let domid = d.domid()?;
    // dom0 times, by its uptime, when the backend leaves Connected (xl got to the detach: under
    // load xl itself takes seconds to start) and when the guest's frontend is Closed.
    let script = format!(
        "b=/local/domain/0/backend/vbd/{domid}/51712/state; f=/local/domain/{domid}/device/vbd/51712/state; \
         up() {{ cut -d' ' -f1 /proc/uptime; }}; start=$(up); \
         xl block-detach {name} xvda > /tmp/block-detach.out 2>&1 & \
         while [ \"$(xenstore-read $b 2>/dev/null)\" = 4 ]; do :; done; closing=$(up); \
         while s=$(xenstore-read $f 2>/dev/null) && [ \"$s\" != 6 ]; do :; done; closed=$(up); \
         wait $!; rc=$?; echo \"start $start closing $closing closed $closed frontend ${{s:-gone}} xl $rc\"; \
         cat /tmp/block-detach.out",
        name = d.name
    );
    let out = d.agent.run_ok(&script, DRIVER_WAIT * 2)?;
    let words: Vec<&str> = out.split_whitespace().collect();
    let at = |key: &str| -> Option<f64> {
        words.iter().position(|w| *w == key).and_then(|i| words.get(i + 1)?.parse().ok())
    };
    let (Some(start), Some(closing), Some(closed)) = (at("start"), at("closing"), at("closed")) else {
        return Err(format!("dom0's detach timing printed {out:?}"));
    };
    if !out.contains("frontend 6 xl 0") {
        return Err(format!(
            "the frontend did not reach Closed before libxl removed it, or xl failed: {out:?}"
        ));
    }
    let answered = closed - closing;
    // libxl forces a detach the frontend does not answer after 10 s.
    if answered > SHUTDOWN_LIMIT.as_secs_f64() {
        return Err(format!("the guest took {answered:.1} s to close its end after the backend's Closing"));
    }
    println!(
        "    dom0: backend Closing {:.1} s after `xl block-detach` began; guest's frontend Closed {answered:.1} s later",
        closing - start
    );
    println!("    guest: {}", d.wait_line("; a later read")?);
    let vbds = d.dom0(&format!("xl block-list {}", d.name))?;
    if vbds.lines().count() != 1 {
        return Err(format!("the vbd is still listed after the detach: {vbds:?}"));
    }
    d.wait_line("disk: waiting for shutdown")?;
    d.dom0(&format!("xl list {}", d.name))
        .map_err(|e| format!("the domain is gone after the detach: {e}"))?;
    shut_down(d)
}

/// `xl block-detach` of the guest's only disk, then `xl block-attach` of another image under
/// the same name (xvda) and of a third under a new one (xvdb): the guest's `mote::disk::watch`
/// offers each, and it connects them and reads their first lines.
fn drive_disk_reattach(d: &mut Driver) -> Result<(), String> {
    d.wait_first_line("disk-reattach: watching")?;
    d.dom0(&format!("xl block-detach {} xvda", d.name))?;
    d.wait_line("disk: vbd 51712: closed")?;
    for (vdev, image) in [("xvda", "b"), ("xvdb", "c")] {
        let started = Instant::now();
        // xl runs dom0's block hotplug script (a loop device for the file), which has taken
        // over 30 s on a loaded host.
        let attach = format!(
            "xl block-attach {} format=raw,vdev={vdev},access=ro,target=/mnt/disks/reattach-{image}.img",
            d.name
        );
        d.agent.run_ok(&attach, DRIVER_WAIT * 4)?;
        let line = d.wait_line(&format!("disk-reattach: {vdev} "))?;
        println!(
            "    guest: {} ({:.1} s after `xl block-attach` began)",
            line.trim(),
            started.elapsed().as_secs_f64()
        );
    }
    d.wait_line("disk: waiting for shutdown")?;
    shut_down(d)
}

/// The selftest's disk pattern (apps/selftest: `disk_pattern`).
fn disk_pattern(offset: u64) -> u8 {
    ((offset as u32).wrapping_mul(2_654_435_761) >> 24) as u8
}

/// After the guest wrote the pattern, flushed and powered off, dom0 hashes the image file: it
/// must be the pattern, byte for byte.
fn drive_disk_hash(d: &mut Driver) -> Result<(), String> {
    // The guest's report of a stalled transfer (`disk_timeout_s`) ends the wait too, while the
    // domain and its backend are still there to look at.
    const STALLED: &str = "no event from the backend";
    for marker in ["disk: wrote and flushed", "disk: read and verified"] {
        match d.wait_line_of(marker, &[marker, STALLED]).and_then(|line| match line.contains(STALLED) {
            true => Err(format!("the guest reported a stalled transfer: {line}")),
            false => Ok(line),
        }) {
            Ok(line) => println!("    guest: {line}"),
            Err(e) => {
                // What dom0 and Xen saw, for the transfer that now and then stalls
                // (docs/measurements.md, "Closing with a time limit"): blkback's
                // counters twice, 2 s apart (moving or not), its and the loop
                // device's kernel threads, and Xen's view of the guest's vCPU and
                // event channels (pending/masked per port).
                let domid = d.domid().map_or_else(|e| e, |id| id.to_string());
                let seen = d.dom0(&format!(
                    "dmesg | tail -n 12; xenstore-ls -f /local/domain/0/backend/vbd 2>&1 | grep -E '/state|/sectors'; \
                     free -m; stats() {{ for f in /sys/bus/xen-backend/devices/vbd-*/statistics/*; do \
                     printf '%s=%s ' ${{f##*/}} $(cat $f); done; echo; }}; stats; sleep 2; stats; \
                     for p in /proc/[0-9]*; do case $(cat $p/comm) in *blkback*|*xvda*|*loop*) \
                     echo \"$(cat $p/comm) $(awk '{{print $3}}' $p/stat) $(cat $p/wchan)\"; cat $p/stack;; esac; done; \
                     echo w >/proc/sysrq-trigger; dmesg | grep -A14 'blocked state' | tail -n 40; \
                     xl debug-keys q; xl debug-keys e; xl dmesg | awk '/Event channel information for domain/ {{ on = $0 ~ / {domid}:/ }} on' | head -n 24; \
                     xl dmesg | grep -A6 'VCPU information and callbacks for d{domid}' | head -n 8; true"
                ));
                for line in seen.unwrap_or_else(|e| e).lines() {
                    println!("    dom0| {line}");
                }
                // The guest's report goes on with the ring's indices.
                if let Ok(line) = d.wait_line("blkfront:") {
                    println!("    guest: {line}");
                }
                return Err(e);
            }
        }
    }
    let deadline = Instant::now() + DRIVER_WAIT;
    while d.agent.run(&format!("xl domid {}", d.name), DRIVER_WAIT)?.0 == 0 {
        if Instant::now() > deadline {
            return Err("the guest did not go away after the disk test".into());
        }
        thread::sleep(Duration::from_millis(200));
    }
    let pattern: Vec<u8> = (0..64u64 << 20).map(disk_pattern).collect();
    let expected = host_sha256(&pattern)?;
    let out = d.dom0("sha256sum /mnt/disks/rw.img")?;
    let got = out.split_whitespace().next().unwrap_or_default();
    if got != expected {
        return Err(format!("dom0 hashed the image as {got}, the pattern is {expected}"));
    }
    println!("    dom0: sha256 of the 64 MiB image matches the pattern ({})", &got[..16]);
    Ok(())
}

/// The selftest's line `disk: N requests, M indirect, at most K in flight`: the 1 MiB
/// transfers went out as indirect requests of 128 KiB, four at a time (what the default
/// buffer pool holds; small requests could fill the 128-slot ring, see the host tests).
fn check_disk_stats(console: &str, _: &Image) -> Result<(), String> {
    let line = console
        .lines()
        .find(|l| l.contains(" indirect, at most "))
        .ok_or("no `disk: N requests, M indirect, at most K in flight` line")?;
    let numbers: Vec<u64> =
        line.split_whitespace().filter_map(|w| w.trim_end_matches(',').parse().ok()).collect();
    match numbers[..] {
        [requests, indirect, peak] if indirect > 0 && indirect <= requests && peak >= 4 => Ok(()),
        _ => Err(format!("{line:?}: expected indirect requests, 4 or more in flight")),
    }
}

/// `disk-async: … at most K in flight`: the tasks' reads were with the backend together,
/// more of them than a one-page ring (32 slots) holds.
fn check_disk_async(console: &str, _: &Image) -> Result<(), String> {
    let line = console.lines().find(|l| l.contains("disk-async:")).ok_or("no `disk-async:` line")?;
    println!("    guest: {}", line.trim());
    let peak: Option<u64> =
        line.split("at most ").nth(1).and_then(|r| r.split_whitespace().next()?.parse().ok());
    match peak {
        Some(k) if k > 32 => Ok(()),
        _ => Err(format!("{line:?}: expected more than 32 requests in flight")),
    }
}

/// While the guest waits after its discard, dom0 checks that blkback counted a discard
/// request and uses persistent grants and a 4-page ring with it; after the guest is gone,
/// the image must be the pattern with zeros in the middle half, and that half a hole in the
/// file (tmpfs frees discarded pages).
fn drive_disk_discard(d: &mut Driver) -> Result<(), String> {
    d.wait_first_line("disk: waiting for shutdown")?;
    let domid = d.domid()?;
    let stats = format!("/sys/bus/xen-backend/devices/vbd-{domid}-51712/statistics");
    let discards = d.dom0(&format!("cat {stats}/ds_req"))?;
    if discards.trim().parse::<u64>().unwrap_or(0) == 0 {
        return Err(format!("blkback counted {discards:?} discard requests"));
    }
    let backend = format!("/local/domain/0/backend/vbd/{domid}/51712");
    let frontend = format!("/local/domain/{domid}/device/vbd/51712");
    let persistent =
        d.dom0(&format!("xenstore-read {backend}/feature-persistent {frontend}/feature-persistent"))?;
    if persistent.split_whitespace().collect::<Vec<_>>() != ["1", "1"] {
        return Err(format!("feature-persistent of backend and frontend: {persistent:?}"));
    }
    let order = d.dom0(&format!("xenstore-read {frontend}/ring-page-order {frontend}/ring-ref3"))?;
    println!(
        "    dom0: blkback counted {} discard(s); persistent grants; ring-page-order {}",
        discards.trim(),
        order.lines().next().unwrap_or_default()
    );
    let log = d.dom0("dmesg")?;
    let used = log.lines().filter(|l| l.contains(&format!("vbd/{domid}/51712: using"))).collect::<Vec<_>>();
    if !used.iter().any(|l| l.contains("persistent grants")) {
        return Err(format!("dom0's log does not show blkback using persistent grants: {used:?}"));
    }
    shut_down(d)?;
    const MIB: u64 = 1 << 20;
    let image: Vec<u8> =
        (0..8 * MIB).map(|i| if (2 * MIB..6 * MIB).contains(&i) { 0 } else { disk_pattern(i) }).collect();
    let expected = host_sha256(&image)?;
    let out = d.dom0("sha256sum /mnt/disks/discard.img && stat -c '%b %B' /mnt/disks/discard.img")?;
    let words: Vec<&str> = out.split_whitespace().collect();
    if words.first() != Some(&expected.as_str()) {
        return Err(format!("dom0 hashed the image as {:?}, expected {expected}", words.first()));
    }
    let allocated = match words[..] {
        [_, _, blocks, size] => blocks.parse::<u64>().unwrap_or(u64::MAX) * size.parse::<u64>().unwrap_or(1),
        _ => return Err(format!("dom0's stat printed {out:?}")),
    };
    if allocated > 4 * MIB {
        return Err(format!("the image still occupies {allocated} bytes: no hole where the guest discarded"));
    }
    println!("    dom0: image matches pattern-with-hole, {} KiB allocated of 8192", allocated / 1024);
    Ok(())
}

#[cfg(test)]
mod unit {
    use super::*;
    use crate::tests::unit::image;

    #[test]
    fn disk_figures_are_read_from_the_guests_lines() {
        let img = image(4);
        let line = "disk: 1025 requests, 1024 indirect, at most 4 in flight";
        assert!(check_disk_stats(line, &img).is_ok());
        assert!(check_disk_stats("disk: 1025 requests, 0 indirect, at most 4 in flight", &img).is_err());
        assert!(check_disk_stats("disk: 40 requests, 8 indirect, at most 1 in flight", &img).is_err());
        assert!(check_disk_stats("nothing", &img).is_err());
        let line = "disk-async: 1024 reads of 4 KiB by 64 tasks verified in 4584 ms (223 IOPS), at most 64 in flight";
        assert!(check_disk_async(line, &img).is_ok());
        assert!(check_disk_async(&line.replace("most 64", "most 32"), &img).is_err());
    }
}
