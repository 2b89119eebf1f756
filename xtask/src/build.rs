//! `cargo xtask build <app>`: compiles an app for `x86_64-unknown-none`, keeps the unstripped
//! ELF for symbolizing, strips a copy for booting and writes the app's `xl` config.

use crate::{mote_dir, run_status, target_dir, workspace_root};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target every image is built for.
pub const TARGET: &str = "x86_64-unknown-none";
/// Guest memory when the app's Cargo.toml does not say.
const DEFAULT_MEMORY_MIB: u32 = 4;

/// Per-app settings from `[package.metadata.mote]` in `apps/<app>/Cargo.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppMeta {
    /// Guest memory in MiB (`memory = N`).
    pub memory_mib: u32,
    /// Whether the guest gets a network interface (`network = true`).
    pub network: bool,
    /// Guest ports `cargo xtask run` makes reachable on 127.0.0.1
    /// (`forward = ["tcp:7007:7", "udp:7007:7"]`: protocol, host port, guest port).
    pub forward: Vec<Forward>,
    /// A command line `cargo xtask run` suggests once the forwards are up
    /// (`try = "dig @127.0.0.1 -p 5353 www.example.com"`).
    pub try_command: Option<String>,
    /// The app embeds a site directory at build time, which `--site DIR` chooses
    /// (`site = true`; its build script reads [`SITE_ENV`]).
    pub site: bool,
}

impl Default for AppMeta {
    fn default() -> Self {
        AppMeta {
            memory_mib: DEFAULT_MEMORY_MIB,
            network: false,
            forward: Vec::new(),
            try_command: None,
            site: false,
        }
    }
}

/// The environment variable that hands `--site DIR` (absolute) to an app's build script.
pub const SITE_ENV: &str = "MOTE_SITE";

/// One forwarded port: 127.0.0.1:`host` on the host, the same port in dom0, `guest` in the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    pub udp: bool,
    pub host: u16,
    pub guest: u16,
}

impl Forward {
    /// Parses `tcp:HOST:GUEST` or `udp:HOST:GUEST`.
    pub fn parse(text: &str) -> Option<Forward> {
        let mut parts = text.split(':');
        let udp = match parts.next()? {
            "tcp" => false,
            "udp" => true,
            _ => return None,
        };
        let host = parts.next()?.parse().ok().filter(|p| *p != 0)?;
        let guest = parts.next()?.parse().ok().filter(|p| *p != 0)?;
        parts.next().is_none().then_some(Forward { udp, host, guest })
    }

    pub fn proto(&self) -> &'static str {
        if self.udp {
            "udp"
        } else {
            "tcp"
        }
    }
}

/// Parses a one-line array of strings: `["a", "b"]`.
fn parse_string_array(value: &str) -> Option<Vec<&str>> {
    let inner = value.strip_prefix('[')?.strip_suffix(']')?.trim();
    if inner.is_empty() {
        return Some(Vec::new());
    }
    inner.split(',').map(|item| item.trim().strip_prefix('"')?.strip_suffix('"')).collect()
}

/// A built image and where its pieces are.
#[derive(Debug, Clone)]
pub struct Image {
    pub app: String,
    pub meta: AppMeta,
    /// Stripped ELF, the one booted.
    pub elf: PathBuf,
    /// Unstripped ELF, for symbolizing.
    pub debug_elf: PathBuf,
    /// `xl` config pointing at `elf`.
    pub cfg: PathBuf,
}

/// Parses the `[package.metadata.mote]` table of a Cargo.toml. Only this flat form is read:
///
/// ```toml
/// [package.metadata.mote]
/// memory = 16      # MiB
/// network = true
/// forward = ["tcp:7007:7"]
/// ```
pub fn parse_meta(manifest: &str) -> Result<AppMeta, String> {
    let mut meta = AppMeta::default();
    let mut in_table = false;
    for (number, raw) in manifest.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') {
            in_table = line == "[package.metadata.mote]";
            continue;
        }
        if !in_table || line.is_empty() {
            continue;
        }
        let (key, value) = line.split_once('=').map(|(k, v)| (k.trim(), v.trim())).ok_or_else(|| {
            format!("line {}: expected `key = value` in [package.metadata.mote]: {raw:?}", number + 1)
        })?;
        match key {
            "memory" => {
                meta.memory_mib = value.parse().ok().filter(|m| *m > 0).ok_or_else(|| {
                    format!("line {}: memory must be a positive number of MiB, not {value:?}", number + 1)
                })?
            }
            "network" | "site" => {
                let flag = match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(format!("line {}: {key} must be true or false, not {value:?}", number + 1)),
                };
                if key == "site" {
                    meta.site = flag;
                } else {
                    meta.network = flag;
                }
            }
            "try" => {
                meta.try_command = Some(
                    value
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .filter(|v| !v.contains('"'))
                        .ok_or_else(|| format!("line {}: try must be a quoted command line, not {value:?}", number + 1))?
                        .to_owned(),
                )
            }
            "forward" => {
                meta.forward = parse_string_array(value)
                    .and_then(|items| items.into_iter().map(Forward::parse).collect::<Option<Vec<_>>>())
                    .ok_or_else(|| {
                        format!(
                            "line {}: forward must be like [\"tcp:7007:7\", \"udp:7007:7\"], not {value:?}",
                            number + 1
                        )
                    })?
            }
            _ => {
                return Err(format!(
                "line {}: unknown key {key:?} in [package.metadata.mote] (known: memory, network, forward, try, site)",
                number + 1
            ))
            }
        }
    }
    Ok(meta)
}

/// The `xl` config of an app whose stripped image is at `kernel`.
pub fn xl_cfg(app: &str, kernel: &str, meta: &AppMeta) -> String {
    let mut cfg = format!(
        "# Generated by `cargo xtask build {app}`.\n\
         name = \"{app}\"\n\
         type = \"pvh\"\n\
         kernel = \"{kernel}\"\n\
         memory = {}\n",
        meta.memory_mib
    );
    if meta.network {
        cfg.push_str("vif = [ \"bridge=xenbr0\" ]\n");
    }
    if meta.memory_mib < 256 {
        // libxl sizes the HAP paging pool at about 1/256 of the guest's memory, but Xen 4.17
        // starts every HVM/PVH domain with a 1 MiB pool that is already in use when libxl
        // shrinks it: "Failed to set paging mempool size to 16kB: Cannot allocate memory".
        // Asking for (at least) that 1 MiB avoids the shrink.
        cfg.push_str("shadow_memory = 1\n");
    }
    cfg.push_str("on_poweroff = \"destroy\"\non_crash = \"destroy\"\non_reboot = \"restart\"\n");
    cfg
}

/// Reads the app's metadata; fails with a clear message when `apps/<app>` is not an app.
pub fn app_meta(app: &str) -> Result<AppMeta, String> {
    let valid = !app.is_empty() && app.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(format!("bad app name {app:?}"));
    }
    let manifest = workspace_root().join("apps").join(app).join("Cargo.toml");
    let text = fs::read_to_string(&manifest)
        .map_err(|e| format!("no app {app:?}: cannot read {}: {e}", manifest.display()))?;
    parse_meta(&text).map_err(|e| format!("{}: {e}", manifest.display()))
}

/// Builds `app` and writes `target/mote/<app>{.elf,.debug.elf,.cfg}`.
pub fn build(app: &str, debug: bool) -> Result<Image, String> {
    build_with(app, debug, None)
}

/// [`build`], embedding `site` (a directory) in an app that serves one instead of its own.
pub fn build_with(app: &str, debug: bool, site: Option<&Path>) -> Result<Image, String> {
    let meta = app_meta(app)?;
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo.current_dir(workspace_root()).args(["build", "-p", app, "--target", TARGET]);
    // Only what the command line says reaches the build script: an inherited value does not.
    cargo.env_remove(SITE_ENV);
    if let Some(site) = site {
        if !meta.site {
            return Err(format!(
                "--site: {app} serves no site (no `site = true` in its [package.metadata.mote])"
            ));
        }
        let dir = site.canonicalize().map_err(|e| format!("--site {}: {e}", site.display()))?;
        if !dir.is_dir() {
            return Err(format!("--site {}: not a directory", site.display()));
        }
        eprintln!("mote: {app}: embedding the site {}", dir.display());
        cargo.env(SITE_ENV, dir);
    }
    if !debug {
        cargo.arg("--release");
    }
    run_status(&mut cargo).map_err(|e| format!("building {app}: {e}"))?;

    let profile = if debug { "debug" } else { "release" };
    let built = target_dir().join(TARGET).join(profile).join(app);
    let out = mote_dir();
    fs::create_dir_all(&out).map_err(|e| format!("create {}: {e}", out.display()))?;
    let image = Image {
        app: app.to_owned(),
        meta: meta.clone(),
        elf: out.join(format!("{app}.elf")),
        debug_elf: out.join(format!("{app}.debug.elf")),
        cfg: out.join(format!("{app}.cfg")),
    };
    fs::copy(&built, &image.debug_elf)
        .map_err(|e| format!("copy {} to {}: {e}", built.display(), image.debug_elf.display()))?;
    run_status(Command::new("objcopy").arg("--strip-all").arg(&image.debug_elf).arg(&image.elf))
        .map_err(|e| format!("stripping {app}: {e}"))?;
    let kernel = path_str(&image.elf)?;
    fs::write(&image.cfg, xl_cfg(app, kernel, &meta))
        .map_err(|e| format!("write {}: {e}", image.cfg.display()))?;

    let size = fs::metadata(&image.elf).map_err(|e| format!("{}: {e}", image.elf.display()))?.len();
    let debug_size = fs::metadata(&image.debug_elf).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "mote: {app}: {} ({size} bytes, {:.1} KiB; unstripped {:.1} KiB), config {}",
        image.elf.display(),
        size as f64 / 1024.0,
        debug_size as f64 / 1024.0,
        image.cfg.display()
    );
    Ok(image)
}

fn path_str(path: &Path) -> Result<&str, String> {
    let s = path.to_str().ok_or_else(|| format!("path is not UTF-8: {}", path.display()))?;
    if s.contains('"') {
        return Err(format!("path cannot go into an xl config (it has a double quote): {s}"));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_defaults_without_table() {
        let manifest = "[package]\nname = \"hello\"\n\n[dependencies]\nmote.workspace = true\n";
        assert_eq!(parse_meta(manifest).unwrap(), AppMeta { memory_mib: 4, ..AppMeta::default() });
    }

    #[test]
    fn meta_reads_table_only() {
        let manifest = "[package]\nname = \"web\"\nmemory = \"not ours\"\n\n\
                        [package.metadata.mote]\nmemory = 32 # MiB\nnetwork = true\n\n\
                        [dependencies]\nnetwork = 3\n";
        assert_eq!(
            parse_meta(manifest).unwrap(),
            AppMeta { memory_mib: 32, network: true, ..AppMeta::default() }
        );
    }

    #[test]
    fn meta_rejects_bad_values() {
        assert!(parse_meta("[package.metadata.mote]\nmemory = 0\n").is_err());
        assert!(parse_meta("[package.metadata.mote]\nmemory = \"8\"\n").is_err());
        assert!(parse_meta("[package.metadata.mote]\nnetwork = yes\n").is_err());
        assert!(parse_meta("[package.metadata.mote]\nmemroy = 8\n").is_err());
        assert!(parse_meta("[package.metadata.mote]\nsite = \"site\"\n").is_err());
    }

    #[test]
    fn site_flag() {
        assert!(parse_meta("[package.metadata.mote]\nsite = true\n").unwrap().site);
        assert!(!parse_meta("[package.metadata.mote]\nnetwork = true\n").unwrap().site);
    }

    #[test]
    fn forwards_parse() {
        let meta =
            parse_meta("[package.metadata.mote]\nforward = [\"tcp:7007:7\", \"udp:7007:7\"]\n").unwrap();
        assert_eq!(
            meta.forward,
            [Forward { udp: false, host: 7007, guest: 7 }, Forward { udp: true, host: 7007, guest: 7 }]
        );
        for bad in ["[\"sctp:1:2\"]", "[\"tcp:0:7\"]", "[\"tcp:1\"]", "\"tcp:1:2\"", "[tcp:1:2]"] {
            assert!(parse_meta(&format!("[package.metadata.mote]\nforward = {bad}\n")).is_err(), "{bad}");
        }
    }

    #[test]
    fn cfg_without_network() {
        let cfg = xl_cfg("hello", "/w/target/mote/hello.elf", &AppMeta::default());
        let lines: Vec<&str> = cfg.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "name = \"hello\"",
                "type = \"pvh\"",
                "kernel = \"/w/target/mote/hello.elf\"",
                "memory = 4",
                "shadow_memory = 1",
                "on_poweroff = \"destroy\"",
                "on_crash = \"destroy\"",
                "on_reboot = \"restart\"",
            ]
        );
    }

    #[test]
    fn cfg_with_network() {
        let cfg = xl_cfg("web", "/k.elf", &AppMeta { memory_mib: 16, network: true, ..AppMeta::default() });
        assert!(cfg.contains("memory = 16\n"));
        assert!(cfg.contains("vif = [ \"bridge=xenbr0\" ]\n"));
        let big = xl_cfg("big", "/k.elf", &AppMeta { memory_mib: 512, ..AppMeta::default() });
        assert!(!big.contains("shadow_memory"));
    }
}
