//! `cargo xtask bench boot`, `memory` and `density`: how fast a mote boots and answers, how
//! little memory it serves with, and how many fit in one host, measured from dom0 with plain
//! `xl create` (no console streaming) so that the path is the same for the Linux baseline.

use super::{field, median, Better, Ctx, Row, Section};
use crate::agent::{sh_quote, Agent};
use crate::build::{self, Image};
use crate::guest;
use std::time::Duration;

/// Rounds of the boot benchmark; each figure is their median.
const ROUNDS: usize = 3;
/// Longest one dom0 script of these benchmarks may run.
const SCRIPT_LIMIT: Duration = Duration::from_secs(600);
/// How long a guest has to answer its first query, in seconds.
const FIRST_ANSWER_LIMIT: u32 = 300;
/// Motes started by the density benchmark.
const DENSITY: u32 = 100;
/// Domain names of the density motes: this prefix and their index.
const DENSITY_NAME: &str = "dens";
/// A vif on the bridge through host/vif-mote, the hotplug helper an operator packing many motes
/// into a host would use (Xen's stock one costs seconds of dom0 per vif); the density motes'.
const VIF_MOTE: &str = "vif=[\"bridge=xenbr0,script=vif-mote\"]";
/// Motes one dom0 script of the density benchmark creates.
const DENSITY_BATCH: u32 = 10;
/// Rounds of dig over the motes that have not answered yet.
const DENSITY_PASSES: u32 = 30;
/// Concurrent queries or requests of the memory benchmark's load, and its rounds.
const LOAD: u32 = 10;
const LOAD_ROUNDS: u32 = 2;
/// Where xenconsoled writes the guests' consoles in dom0.
const CONSOLE_LOG_DIR: &str = "/var/log/xen/console";
/// A dom0 shell function printing milliseconds since dom0 booted (`/proc/uptime`, 10 ms
/// steps): busybox's `date` has no sub-second format.
const MS: &str = "ms() { awk '{ printf \"%d\\n\", $1 * 1000 }' /proc/uptime; }; ";

/// A guest to boot and the dom0 command that succeeds once it answered.
struct Probe {
    /// Domain name = config name in `/mote/images`.
    name: String,
    /// Settings after the config on `xl create`'s command line.
    xl: Vec<String>,
    /// What `mote-agent first-answer` asks until the first answer (kind, address, argument).
    first: String,
    /// One query or request of the memory benchmark's load, as a dom0 command.
    probe: String,
    /// The Linux guest's service (`mote.serve=`), whose console line gives its own time.
    service: Option<&'static str>,
}

fn dns_probe(ip: &str) -> String {
    format!("dig +time=1 +tries=1 @{ip} www.example.com A >/dev/null 2>&1")
}

fn http_probe(ip: &str) -> String {
    format!("curl -s -o /dev/null --max-time 1 http://{ip}/")
}

fn dns_mote(ip: &str) -> Probe {
    mote("dns", ip, dns_first(ip), dns_probe(ip))
}

fn web_mote(ip: &str) -> Probe {
    mote("web", ip, http_first(ip), http_probe(ip))
}

fn mote(app: &str, ip: &str, first: String, probe: String) -> Probe {
    Probe { name: app.into(), xl: vec![format!("extra=\"ip={ip}/24\"")], first, probe, service: None }
}

/// The Linux guest serving only `service` (`mote.serve=`): NSD, asked as the dns mote is, or
/// nginx, as the web mote is.
fn linux(image: &Image, service: &'static str) -> Probe {
    let subject = super::echo::linux_subject(image.clone());
    let mut xl = subject.xl.clone();
    xl.push(format!("extra=\"{} mote.serve={service}\"", subject.args.join(" ")));
    let ip = subject.ip;
    let (first, probe) =
        if service == "nsd" { (dns_first(ip), dns_probe(ip)) } else { (http_first(ip), http_probe(ip)) };
    Probe { name: image.app.clone(), xl, first, probe, service: Some(service) }
}

fn dns_first(ip: &str) -> String {
    format!("dns {ip}:53 www.example.com")
}

fn http_first(ip: &str) -> String {
    format!("http {ip}:80 /")
}

/// A dom0 script: starts `mote-agent first-answer` (one process asking every 50 ms; see
/// ci/agent/src/first.rs), creates the domain (with `extra` settings), prints `create_ms=`
/// (until `xl create` returned) and `first_ms=` (until the first answer), both from before
/// `xl create`, runs `then` if it answered, prints the guest's console and destroys the
/// domain; fails unless the guest answered. The probe stops early when the domain is gone (it
/// stopped or crashed at start, as a guest with too little memory does); that check runs every
/// 2 s, as each `xl` process costs the one emulated CPU that dom0 and the guest share.
fn first_answer_script(p: &Probe, extra: &[String], then: &str) -> String {
    let mut create = format!("xl create -q {}", sh_quote(&format!("/mote/images/{}.cfg", p.name)));
    for setting in p.xl.iter().chain(extra) {
        create.push(' ');
        create.push_str(&sh_quote(setting));
    }
    let name = sh_quote(&p.name);
    let log = sh_quote(&format!("{CONSOLE_LOG_DIR}/guest-{}.log", p.name));
    format!(
        "{MS}if xl domid {name} >/dev/null 2>&1; then xl destroy {name}; fi; rm -f {log}; \
         r=/tmp/bench-first; rm -rf $r; mkdir -p $r; \
         t0=$(ms); /mote/agent first-answer {first} {FIRST_ANSWER_LIMIT} > $r/t 2>/dev/null & probe=$!; \
         {create} || {{ kill $probe; exit 3; }}; echo \"create_ms=$(($(ms) - t0)) \"; \
         while kill -0 $probe 2>/dev/null; do sleep 2; kill -0 $probe 2>/dev/null || break; \
           xl domid {name} >/dev/null 2>&1 || {{ kill $probe; break; }}; done; \
         wait $probe; first=$(sed -n 's/^first_answer_ms=\\([0-9]*\\).*/\\1/p' $r/t); \
         if [ -n \"$first\" ]; then echo \"first_ms=$((first - t0)) \"; {then} fi; \
         sleep 0.3; cat {log} 2>/dev/null; xl destroy {name} 2>/dev/null; [ -n \"$first\" ]",
        first = p.first,
    )
}

/// Destroys `p`'s domain after its script failed midway, so that it does not hold its address
/// for the next guest.
fn destroy(agent: &Agent, p: &Probe) {
    let name = sh_quote(&p.name);
    let _ =
        agent.run(&format!("if xl domid {name} >/dev/null 2>&1; then xl destroy {name}; fi"), SCRIPT_LIMIT);
}

/// One boot as measured: milliseconds from before `xl create` to its return and to the first
/// answer, and the guest's own times from its console: a mote's to `main` and to serving
/// (`boot: main N us after the first instruction`, `boot: ready N us …`), in microseconds, or
/// the Linux guest's to its service serving (`mote-linux: nsd serving N ms …`).
struct Boot {
    create_ms: f64,
    first_ms: f64,
    main_us: Option<f64>,
    ready_us: Option<f64>,
    linux_serving_ms: Option<f64>,
}

fn first_answer(agent: &Agent, p: &Probe, extra: &[String]) -> Result<Boot, String> {
    let out =
        agent.run_ok(&first_answer_script(p, extra, ""), SCRIPT_LIMIT).inspect_err(|_| destroy(agent, p))?;
    let first_ms = field(&out, "first_ms=", " ").ok_or_else(|| format!("no answer: {out}"))?;
    let create_ms = field(&out, "create_ms=", " ").ok_or_else(|| format!("no create_ms: {out}"))?;
    Ok(Boot {
        create_ms,
        first_ms,
        main_us: field(&out, "boot: main ", " us after the first instruction"),
        ready_us: field(&out, "boot: ready ", " us after the first instruction"),
        linux_serving_ms: p.service.and_then(|service| serving_ms(&out, service)),
    })
}

/// Seconds with two decimals, comma-separated: every round's figure beside the median.
fn seconds_list(seconds: &[f64]) -> String {
    seconds.iter().map(|s| format!("{s:.2}")).collect::<Vec<_>>().join(", ")
}

/// The Linux guest's milliseconds to `service` serving, from its init's console line.
fn serving_ms(out: &str, service: &str) -> Option<f64> {
    field(out, &format!("mote-linux: {service} serving "), " ms after the kernel's clock started")
}

/// The vif hotplug scripts the boot benchmark compares: Xen's stock one (the configs' default)
/// and host/vif-mote, named in an `xl create` setting for the vif on the bridge.
const HOTPLUG: [(&str, Option<&str>); 2] = [("vif-bridge", None), ("vif-mote", Some(VIF_MOTE))];

/// The apps of the boot section, each with the Linux guest's service it is compared with.
const APPS: [(&str, &str); 2] = [("dns", "nsd"), ("web", "nginx")];

/// The boot section: the dns and web motes and, as their baselines, the Linux guest serving
/// DNS with NSD and HTTP with nginx; xl create to first answer, with each hotplug script of
/// [`HOTPLUG`].
pub fn boot(ctx: &mut Ctx) -> Result<Section, String> {
    let agent = ctx.agent()?;
    for (app, _) in APPS {
        guest::upload(&agent, &build::build(app, build::Flavor::RELEASE)?)?;
    }
    let linux_image = ctx.linux()?;
    // The motes, then their baselines: probe i + APPS.len() is probe i's.
    let probes = [
        dns_mote("10.0.0.2"),
        web_mote("10.0.0.3"),
        linux(&linux_image, APPS[0].1),
        linux(&linux_image, APPS[1].1),
    ];
    // By hotplug script, then probe: seconds to the first answer and to `xl create`'s return.
    let mut wall: [[Vec<f64>; 4]; 2] = Default::default();
    let mut create: [[Vec<f64>; 4]; 2] = Default::default();
    // By probe: the guest's own milliseconds to main (motes) and to serving.
    let mut inside: [Vec<f64>; 2] = Default::default();
    let mut ready: [Vec<f64>; 4] = Default::default();
    let mut failures = Vec::new();
    let name = |p: &Probe| match p.service {
        Some(service) => format!("Linux {service}"),
        None => p.name.clone(),
    };
    for round in 1..=ROUNDS {
        for (h, (script, setting)) in HOTPLUG.iter().enumerate() {
            let extra: Vec<String> = setting.iter().map(|s| s.to_string()).collect();
            for (i, p) in probes.iter().enumerate() {
                eprintln!("bench: boot round {round}/{ROUNDS}: {} ({script})", name(p));
                match first_answer(&agent, p, &extra) {
                    Ok(Boot { create_ms, first_ms, main_us, ready_us, linux_serving_ms }) => {
                        wall[h][i].push(first_ms / 1e3);
                        create[h][i].push(create_ms / 1e3);
                        match (main_us, ready_us, linux_serving_ms) {
                            (Some(main), Some(serving), _) if i < APPS.len() => {
                                inside[i].push(main / 1e3);
                                ready[i].push(serving / 1e3);
                            }
                            (_, _, Some(serving)) if i >= APPS.len() => ready[i].push(serving),
                            _ => failures.push(format!(
                                "{} round {round} ({script}): no boot lines on its console",
                                name(p)
                            )),
                        }
                    }
                    Err(e) => failures.push(format!("{} round {round} ({script}): {e}", name(p))),
                }
            }
        }
    }
    let mut rows = Vec::new();
    for (h, (script, _)) in HOTPLUG.iter().enumerate() {
        for (what, seconds) in [("xl create to first answer", &wall[h]), ("xl create returns", &create[h])] {
            for (i, (app, service)) in APPS.iter().enumerate() {
                let linux = median(seconds[i + APPS.len()].iter().copied());
                rows.push(
                    Row::new(
                        format!("{app}: {what}, {script} (Linux: {service})"),
                        median(seconds[i].iter().copied()),
                        "s",
                        Better::Lower,
                    )
                    .baseline(linux),
                );
            }
        }
    }
    for (i, (app, service)) in APPS.iter().enumerate() {
        rows.push(
            Row::new(
                format!("{app}: first instruction to main, PV clock"),
                median(inside[i].iter().copied()),
                "ms",
                Better::Lower,
            )
            .decimals(3),
        );
        rows.push(
            Row::new(
                format!("{app}: first instruction to serving, PV clock (Linux: {service})"),
                median(ready[i].iter().copied()),
                "ms",
                Better::Lower,
            )
            .decimals(3)
            .baseline(median(ready[i + APPS.len()].iter().copied())),
        );
    }
    let answered: Vec<String> = HOTPLUG
        .iter()
        .enumerate()
        .map(|(h, (script, _))| {
            let rounds: Vec<String> = probes
                .iter()
                .zip(&wall[h])
                .map(|(p, w)| format!("{} [{}]", name(p), seconds_list(w)))
                .collect();
            format!("{script}: {}", rounds.join(", "))
        })
        .collect();
    Ok(Section {
        title: format!(
            "boot time, median of {ROUNDS} rounds: dns (DNS query) and web (HTTP GET) motes against the Linux guest \
             serving the same with NSD and nginx"
        ),
        baseline: "the Linux PVH guest with the same hotplug script, serving only NSD (dns's baseline) or only nginx \
                   (web's): `xl create` to its first answer; for the guest's own time to serving, its uptime when \
                   that service serves"
            .into(),
        notes: vec![
            "xl create to first answer: in dom0, from before `xl create` to the first correct answer to \
             `mote-agent first-answer`, one process started before `xl create` that asks every 50 ms (an A query \
             for www.example.com, a GET of /; each try waits up to 300 ms); dom0's clock is /proc/uptime (10 ms \
             steps)"
                .into(),
            "xl create returns: from the same start until `xl create -q` returned (domain built, devices \
             added, the vif's hotplug script run, domain unpaused); the guest runs from about then"
                .into(),
            "vif-bridge is Xen's stock hotplug script (what the generated configs use); vif-mote is host/vif-mote, \
             the lean static helper this repository ships (`script=vif-mote` in the vif setting)"
                .into(),
            "first instruction to main / to serving: the runtime reads the TSC first thing and logs the PV-clock \
             time from then to calling the app's main (`boot: main N us after the first instruction`) and to the \
             app's `mote::ready()` once its sockets are bound (`boot: ready N us …`); the Linux guest's \
             baseline is /proc/uptime (10 ms steps) when its init saw the service serve (nginx listening, NSD \
             answering a query; polled every 0.1 s); the kernel's clock starts early in its boot, so the first \
             moments are left out, in Linux's favour"
                .into(),
            format!("xl create to first answer in each round that answered (s): {}", answered.join("; ")),
        ],
        rows,
        failures,
        ..Section::default()
    })
}

/// A dom0 command printing `heap_hwm=N ` (bytes): the guest heap's high-water mark, as the
/// runtime publishes it in xenstore. It publishes at most once a second when idle, hence the wait.
fn heap_hwm_script(name: &str) -> String {
    format!(
        "sleep 1.5; echo \"heap_hwm=$(xenstore-read /local/domain/$(xl domid {})/data/heap-hwm 2>/dev/null) \";",
        sh_quote(name)
    )
}

/// The heap high-water mark from [`heap_hwm_script`]'s output: `None` when the guest published
/// none (the field is empty) or the text is not a byte count.
fn heap_hwm(out: &str) -> Option<u64> {
    let start = out.find("heap_hwm=")? + "heap_hwm=".len();
    let len = out[start..].find(' ')?;
    out[start..start + len].parse().ok()
}

/// The last non-empty line of a script's output: the end of the guest's console, which it
/// prints last.
fn last_line(out: &str) -> &str {
    out.lines().rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or("")
}

/// How a guest did at one `memory=` under the memory benchmark's load.
struct Served {
    /// Booted, answered its first probe and then every query of the load.
    all: bool,
    /// The guest heap's high-water mark after the load, bytes.
    heap_hwm: Option<u64>,
}

/// Whether `app` at `memory` MiB boots, answers and then answers [`LOAD_ROUNDS`] rounds of
/// [`LOAD`] concurrent queries or requests, and its heap's high-water mark after them.
fn serves_with(agent: &Agent, p: &Probe, memory: u32) -> Result<Served, String> {
    let load = format!(
        "ok=0; for round in $(seq {LOAD_ROUNDS}); do pids=''; for q in $(seq {LOAD}); do ( {} ) & pids=\"$pids $!\"; done; \
         for pid in $pids; do wait $pid && ok=$((ok+1)); done; done; echo \"load_ok=$ok \"; {}",
        p.probe,
        heap_hwm_script(&p.name)
    );
    let script = first_answer_script(p, &[format!("memory={memory}")], &load);
    let (status, out) = agent.run(&script, SCRIPT_LIMIT).inspect_err(|_| destroy(agent, p))?;
    let answered = status == 0;
    let load_ok = field(&out, "load_ok=", " ").unwrap_or(0.0) as u32;
    let hwm = heap_hwm(&out);
    eprintln!(
        "bench:   {} memory={memory}: {}, heap high-water mark {}",
        p.name,
        if !answered {
            format!("no answer (the script's last line: {:?})", last_line(&out))
        } else {
            format!("{load_ok}/{} answered under load", LOAD * LOAD_ROUNDS)
        },
        hwm.map_or("not published".to_owned(), |b| format!("{} KiB", b / 1024))
    );
    Ok(Served { all: answered && load_ok == LOAD * LOAD_ROUNDS, heap_hwm: hwm })
}

/// The memory section: the smallest `memory=` with which dns and web serve under load.
pub fn memory(ctx: &mut Ctx) -> Result<Section, String> {
    let agent = ctx.agent()?;
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let mut notes = Vec::new();
    for p in [dns_mote("10.0.0.2"), web_mote("10.0.0.2")] {
        let app = p.name.as_str();
        let image = build::build(app, build::Flavor::RELEASE)?;
        guest::upload(&agent, &image)?;
        // 1 MiB cannot work (the image loads at 1 MiB); count up from 2 to twice the setting.
        let mut floor = None;
        for memory in 2..=image.meta.memory_mib * 2 {
            let served = serves_with(&agent, &p, memory)?;
            if served.all {
                floor = Some((memory, served.heap_hwm));
                break;
            }
        }
        match floor {
            Some((m, hwm)) => {
                rows.push(
                    Row::new(format!("{app}: smallest memory= serving"), f64::from(m), "MiB", Better::Lower)
                        .baseline(f64::from(super::echo::LINUX_MEMORY_MIB))
                        .decimals(0),
                );
                match hwm {
                    Some(bytes) => rows.push(
                        Row::new(
                            format!("{app}: heap high-water mark at memory={m}"),
                            bytes as f64 / 1024.0,
                            "KiB",
                            Better::Lower,
                        )
                        .decimals(0),
                    ),
                    None => failures.push(format!("{app} at memory={m}: no data/heap-hwm in xenstore")),
                }
            }
            None => {
                failures.push(format!("{app} served with no memory= up to {} MiB", image.meta.memory_mib * 2))
            }
        }
        notes.push(format!("{app}: its Cargo.toml sets memory = {}", image.meta.memory_mib));
    }
    notes.push(format!(
        "serving: answers a first probe, then {LOAD_ROUNDS} rounds of {LOAD} concurrent dig queries (dns) or curl \
         requests (web) from dom0, every one answered"
    ));
    notes.push(
        "heap high-water mark: the most the guest's heap held at once since boot, after the load, from \
         xenstore-read /local/domain/<domid>/data/heap-hwm in dom0 (published by the runtime)"
            .into(),
    );
    Ok(Section {
        title: "memory floor: smallest xl memory= (MiB) with which each app boots and serves a short load"
            .into(),
        baseline: format!(
            "the smallest memory the Linux guest boots with ({} MiB)",
            super::echo::LINUX_MEMORY_MIB
        ),
        notes,
        rows,
        failures,
        ..Section::default()
    })
}

/// The density section: [`DENSITY`] dns motes created one after another, in batches of
/// [`DENSITY_BATCH`] so that progress shows and a run cut short by the time limit still reports
/// how far it got, then queried until every one answered.
pub fn density(ctx: &mut Ctx) -> Result<Section, String> {
    let agent = ctx.agent()?;
    let image = build::build("dns", build::Flavor::RELEASE)?;
    guest::upload(&agent, &image)?;
    let n = DENSITY;
    agent.run_ok(
        &format!(
            "for i in $(seq 0 {last}); do if xl domid {DENSITY_NAME}$i >/dev/null 2>&1; then xl destroy {DENSITY_NAME}$i; fi; done; \
             ip addr add 10.0.0.254/16 dev xenbr0 2>/dev/null; true",
            last = n - 1
        ),
        SCRIPT_LIMIT,
    )?;
    let measured = density_run(&agent, n);
    // Every mote goes, whatever happened: the next section wants the memory and the addresses.
    // One after another: a hundred `xl destroy` started at once had not finished after 30
    // minutes in the emulated dom0.
    let _ = agent.run(
        &format!(
            "for i in $(seq 0 {last}); do xl destroy {DENSITY_NAME}$i 2>/dev/null; done; \
             ip addr del 10.0.0.254/16 dev xenbr0",
            last = n - 1
        ),
        Duration::from_secs(1800),
    );
    let d = measured?;
    let mut failures = d.failures;
    if d.created < n || d.answered < d.created {
        failures.push(format!("{} of {n} created, {} of them answered", d.created, d.answered));
    }
    let mut rows =
        vec![Row::new("motes answering", f64::from(d.answered), "motes", Better::Higher).decimals(0)];
    if d.created == n {
        rows.push(Row::new("time to create all", d.create_s, "s", Better::Lower));
    }
    if d.answered == n {
        rows.push(Row::new("time until all answered", d.all_s, "s", Better::Lower));
    }
    if d.created > 0 {
        rows.push(
            Row::new("host memory per mote", d.used_mib / f64::from(d.created), "MiB", Better::Lower)
                .baseline(f64::from(super::echo::LINUX_MEMORY_MIB)),
        );
    }
    Ok(Section {
        title: format!("{n} dns motes (memory = {} MiB each) created one after another in one host", image.meta.memory_mib),
        baseline: format!("the Linux guest's smallest memory ({} MiB)", super::echo::LINUX_MEMORY_MIB),
        notes: vec![
            format!(
                "time: from the first `xl create` to the last mote's first answer to an A query (motes created \
                 {DENSITY_BATCH} per dom0 script with the vif hotplug helper host/vif-mote, then each asked by \
                 `mote-agent first-answer` for up to 1 s, one after another, again until each answered)"
            ),
            "host memory per mote: the drop of `xl info` free_memory over the creations, divided by the motes \
             (guest RAM, paging pool, Xen's structures)"
                .into(),
        ],
        rows,
        failures,
        ..Section::default()
    })
}

/// What a density run got to.
struct Density {
    created: u32,
    answered: u32,
    create_s: f64,
    all_s: f64,
    used_mib: f64,
    failures: Vec<String>,
}

/// The address of density mote `i`: 200 per /24 from 10.0.1.10, all in one /16 with dom0.
fn density_ip(i: u32) -> String {
    format!("10.0.{}.{}", 1 + i / 200, 10 + i % 200)
}

fn free_mib(agent: &Agent) -> Result<f64, String> {
    let out =
        agent.run_ok("xl info | awk -F': *' '/^free_memory/ { print \"free=\" $2 \" \" }'", SCRIPT_LIMIT)?;
    field(&out, "free=", " ").ok_or_else(|| format!("no free_memory in `xl info`: {out:?}"))
}

fn density_run(agent: &Agent, n: u32) -> Result<Density, String> {
    let before = free_mib(agent)?;
    let t0 = std::time::Instant::now();
    let mut d =
        Density { created: 0, answered: 0, create_s: 0.0, all_s: 0.0, used_mib: 0.0, failures: Vec::new() };
    while d.created < n {
        let batch: Vec<u32> = (d.created..n.min(d.created + DENSITY_BATCH)).collect();
        let script: Vec<String> = batch
            .iter()
            .map(|&i| {
                format!(
                    "xl create -q /mote/images/dns.cfg {} {} {} || exit 3",
                    sh_quote(&format!("name=\"{DENSITY_NAME}{i}\"")),
                    sh_quote(&format!("extra=\"ip={}/16\"", density_ip(i))),
                    sh_quote(VIF_MOTE)
                )
            })
            .collect();
        if let Err(e) = agent.run_ok(&script.join("; "), SCRIPT_LIMIT) {
            d.failures.push(format!("creating motes {}..={}: {e}", batch[0], batch[batch.len() - 1]));
            break;
        }
        d.created += batch.len() as u32;
        eprintln!("bench:   density: {} of {n} created after {:.0} s", d.created, t0.elapsed().as_secs_f64());
    }
    d.create_s = t0.elapsed().as_secs_f64();
    d.used_mib = before - free_mib(agent)?;
    let mut pending: Vec<u32> = (0..d.created).collect();
    for _ in 0..DENSITY_PASSES {
        if pending.is_empty() {
            break;
        }
        let script: Vec<String> = pending
            .iter()
            .map(|&i| {
                format!(
                    "/mote/agent first-answer dns {}:53 www.example.com 1 >/dev/null 2>&1 || echo miss={i}",
                    density_ip(i)
                )
            })
            .collect();
        let out = agent.run_ok(&script.join("; "), SCRIPT_LIMIT)?;
        pending = out.lines().filter_map(|l| l.strip_prefix("miss=")?.trim().parse().ok()).collect();
        eprintln!(
            "bench:   density: {} of {} answered after {:.0} s",
            d.created as usize - pending.len(),
            d.created,
            t0.elapsed().as_secs_f64()
        );
    }
    d.answered = d.created - pending.len() as u32;
    d.all_s = t0.elapsed().as_secs_f64();
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_answer_script_creates_probes_and_cleans_up() {
        let p = dns_mote("10.0.0.2");
        let s = first_answer_script(&p, &["memory=3".into()], "echo load;");
        assert!(
            s.contains("xl create -q '/mote/images/dns.cfg' 'extra=\"ip=10.0.0.2/24\"' 'memory=3' || { kill $probe; exit 3; }"),
            "{s}"
        );
        assert!(s.contains("echo \"first_ms=$((first - t0)) \"; echo load; fi"), "{s}");
        assert!(s.contains("|| { kill $probe; exit 3; }; echo \"create_ms=$(($(ms) - t0)) \";"), "{s}");
        assert!(
            s.contains(
                "/mote/agent first-answer dns 10.0.0.2:53 www.example.com 300 > $r/t 2>/dev/null & probe=$!;"
            ),
            "{s}"
        );
        assert!(s.contains("xl domid 'dns' >/dev/null 2>&1 || { kill $probe; break; }; done;"), "{s}");
        assert!(s.contains("first=$(sed -n 's/^first_answer_ms=\\([0-9]*\\).*/\\1/p' $r/t);"), "{s}");
        assert!(
            s.contains("cat '/var/log/xen/console/guest-dns.log'")
                && s.contains("xl destroy 'dns' 2>/dev/null;"),
            "{s}"
        );
    }

    #[test]
    fn the_linux_baselines_serve_only_the_service_they_are_compared_with() {
        let image = Image {
            app: "linux".into(),
            meta: build::AppMeta::default(),
            flavor: build::Flavor::RELEASE,
            elf: "vmlinux".into(),
            debug_elf: "vmlinux".into(),
            cfg: "linux.cfg".into(),
        };
        let nsd = first_answer_script(&linux(&image, "nsd"), &[], "");
        assert!(nsd.contains("mote.ip=10.0.0.50/24 mote.serve=nsd\"'"), "{nsd}");
        assert!(nsd.contains("/mote/agent first-answer dns 10.0.0.50:53 www.example.com 300 "), "{nsd}");
        let nginx = first_answer_script(&linux(&image, "nginx"), &[], "");
        assert!(nginx.contains("mote.ip=10.0.0.50/24 mote.serve=nginx\"'"), "{nginx}");
        assert!(nginx.contains("/mote/agent first-answer http 10.0.0.50:80 / 300 "), "{nginx}");
        let out = "first_ms=30100 \nmote-linux: nginx serving 27310 ms after the kernel's clock started\n";
        assert_eq!(serving_ms(out, "nginx"), Some(27310.0));
        assert_eq!(serving_ms(out, "nsd"), None);
        assert_eq!(seconds_list(&[1.914, 36.3]), "1.91, 36.30");
        assert_eq!(seconds_list(&[]), "");
    }

    #[test]
    fn reads_heap_hwm_after_the_load() {
        let s = heap_hwm_script("web");
        assert!(s.contains("xenstore-read /local/domain/$(xl domid 'web')/data/heap-hwm"), "{s}");
        assert_eq!(heap_hwm("load_ok=20 \nheap_hwm=1234567 \n[INFO  mote] web: ..."), Some(1_234_567));
        // Nothing published, or no line at all.
        assert_eq!(heap_hwm("load_ok=20 \nheap_hwm= \n"), None);
        assert_eq!(heap_hwm("load_ok=20 \n"), None);
        assert_eq!(heap_hwm("heap_hwm=12x4 "), None);
        assert_eq!(last_line("first_ms=9 \n[ERROR mote] out of memory\n\n"), "[ERROR mote] out of memory");
        assert_eq!(last_line(""), "");
    }

    #[test]
    fn density_motes_share_dom0s_16() {
        assert_eq!(density_ip(0), "10.0.1.10");
        assert_eq!(density_ip(199), "10.0.1.209");
        assert_eq!(density_ip(200), "10.0.2.10");
    }

    #[test]
    fn reads_first_answer_and_boot_line() {
        let out = "first_ms=812 \n[INFO  mote] boot: main 2345 us after the first instruction\n[INFO  mote] boot: ready 3456 us after the first instruction\n";
        assert_eq!(field(out, "first_ms=", " "), Some(812.0));
        assert_eq!(field(out, "boot: main ", " us after the first instruction"), Some(2345.0));
        assert_eq!(field(out, "boot: ready ", " us after the first instruction"), Some(3456.0));
    }
}
