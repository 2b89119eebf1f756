//! `cargo xtask build <app>`: compiles an app for `x86_64-unknown-none`, keeps the unstripped
//! ELF for symbolizing, strips a copy for booting and writes the app's `xl` config and libvirt
//! domain XML. With `--gdb` the runtime's `gdb` feature (the gdb stub) is on and the files go to
//! `target/mote/gdb/` instead, so a gdb image never stands in for a normal one. With
//! `--disk-support` an app that reads content disks gets its `disk` feature (blkfront and the
//! ext4 reader) and its files are named `<app>-disk.*`: the image without it is smaller and
//! refuses a disk, so each name says which one an operator has.

use crate::{mote_dir, run_status, target_dir, workspace_root};
use std::ffi::OsString;
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
    /// What the app reads from a content disk when one is attached (`content = "the site"`):
    /// the xl config then says how to attach one.
    pub content: Option<String>,
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
            content: None,
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
    pub flavor: Flavor,
    /// Stripped ELF, the one booted.
    pub elf: PathBuf,
    /// Unstripped ELF, for symbolizing.
    pub debug_elf: PathBuf,
    /// `xl` config pointing at `elf`.
    pub cfg: PathBuf,
}

impl Image {
    /// The name its files get where images of every flavor sit side by side (dom0's image
    /// directory): [`Flavor::file_stem`], then `-gdb` with the stub. The domain is named
    /// `<app>` either way.
    pub fn stem(&self) -> String {
        let stem = self.flavor.file_stem(&self.app);
        if self.flavor.gdb {
            format!("{stem}-gdb")
        } else {
            stem
        }
    }
}

/// Escapes text for an XML attribute or element.
fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

/// The libvirt domain XML (libxl driver) of an app whose stripped image is at `kernel`: the
/// same guest as [`xl_cfg`], a Xen PVH domain (`<os><type>xenpvh</type>`).
pub fn libvirt_xml(app: &str, kernel: &str, meta: &AppMeta, disk: Option<&str>) -> String {
    let mut devices = String::new();
    match (disk, &meta.content) {
        // Read-only as xvda, as `run --disk` attaches it; libxl picks the backend as xl does.
        (Some(image), _) => devices.push_str(&format!(
            "    <disk type='file' device='disk'>\n      <driver type='raw'/>\n      \
             <source file='{}'/>\n      <target dev='xvda' bus='xen'/>\n      <readonly/>\n    </disk>\n",
            xml_escape(image)
        )),
        (None, Some(content)) => devices.push_str(&format!(
            "    <!-- Content disk: {app} reads {} from its first disk when it has one;\n         \
             `cargo xtask build {app}` given a disk image writes this file with a disk element for it. -->\n",
            xml_escape(content)
        )),
        (None, None) => {}
    }
    if meta.network {
        devices
            .push_str("    <interface type='bridge'>\n      <source bridge='xenbr0'/>\n    </interface>\n");
    }
    devices.push_str("    <console type='pty'>\n      <target type='xen' port='0'/>\n    </console>\n");
    format!(
        "<!-- Generated by `cargo xtask build {app}`. -->\n\
         <domain type='xen'>\n  \
           <name>{name}</name>\n  \
           <memory unit='MiB'>{memory}</memory>\n  \
           <vcpu>1</vcpu>\n  \
           <os>\n    \
             <type arch='x86_64' machine='xenpvh'>xenpvh</type>\n    \
             <kernel>{kernel}</kernel>\n  \
           </os>\n  \
           <on_poweroff>destroy</on_poweroff>\n  \
           <on_reboot>restart</on_reboot>\n  \
           <on_crash>destroy</on_crash>\n  \
           <devices>\n{devices}  </devices>\n\
         </domain>\n",
        name = xml_escape(app),
        memory = meta.memory_mib,
        kernel = xml_escape(kernel),
    )
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
            "content" => {
                meta.content = Some(
                    value
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .filter(|v| !v.contains(['"', '\n']))
                        .ok_or_else(|| format!("line {}: content must be a quoted description, not {value:?}", number + 1))?
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
                "line {}: unknown key {key:?} in [package.metadata.mote] (known: memory, network, forward, try, content, site)",
                number + 1
            ))
            }
        }
    }
    Ok(meta)
}

/// The `xl` config of an app whose stripped image is at `kernel`; `disk`: the image reads a
/// content disk (`--disk-support`).
pub fn xl_cfg(app: &str, kernel: &str, meta: &AppMeta, disk: bool) -> String {
    let mut cfg = format!(
        "# Generated by `cargo xtask build {app}`.\n\
         name = \"{app}\"\n\
         type = \"pvh\"\n\
         kernel = \"{kernel}\"\n\
         memory = {}\n",
        meta.memory_mib
    );
    if meta.network {
        cfg.push_str(
            "# With host/vif-mote (`cargo xtask build vif-mote`) installed in dom0's /etc/xen/scripts, `xl create` takes seconds less:\n\
             # vif = [ \"bridge=xenbr0,script=vif-mote\" ]\n\
             vif = [ \"bridge=xenbr0\" ]\n",
        );
    }
    if meta.memory_mib < 256 {
        // libxl sizes the HAP paging pool at about 1/256 of the guest's memory, but Xen 4.17
        // starts every HVM/PVH domain with a 1 MiB pool that is already in use when libxl
        // shrinks it: "Failed to set paging mempool size to 16kB: Cannot allocate memory".
        // Asking for (at least) that 1 MiB avoids the shrink.
        cfg.push_str("shadow_memory = 1\n");
    }
    cfg.push_str("on_poweroff = \"destroy\"\non_crash = \"destroy\"\non_reboot = \"restart\"\n");
    match &meta.content {
        Some(content) if disk => cfg.push_str(&format!(
            "# Content disk: {app} reads {content} from its first disk when it has one\n\
             # (else it uses what is built into the image). `cargo xtask disk DIR -o {app}.img`\n\
             # makes an ext4 image of DIR; attach it read-only (or `cargo xtask run {app} --disk {app}.img`):\n\
             # disk = [ \"format=raw,vdev=xvda,access=ro,target=/path/to/{app}.img\" ]\n"
        )),
        Some(content) => cfg.push_str(&format!(
            "# This image serves what is built into it and refuses to start with a disk attached.\n\
             # The image that reads {content} from a disk instead\n\
             # (swapped without a rebuild) is {app}-disk.elf, config {app}-disk.cfg:\n\
             # `cargo xtask build {app} --disk-support` writes both.\n"
        )),
        None => {}
    }
    cfg
}

/// The xl config line attaching `image` read-only as the guest's first disk (xvda).
pub fn xl_disk(image: &str) -> String {
    format!("disk = [ \"format=raw,vdev=xvda,access=ro,target={image}\" ]\n")
}

/// Writes the image's xl config and libvirt XML, with `disk` (an absolute path) attached
/// read-only as xvda when given.
pub fn write_configs(image: &Image, disk: Option<&str>) -> Result<PathBuf, String> {
    if let Some(bad) = disk.filter(|d| d.contains(['"', '\n', '\''])) {
        return Err(format!("--disk {bad:?}: a path with quotes or a newline cannot go in an xl config"));
    }
    let kernel = path_str(&image.elf)?;
    let mut cfg = xl_cfg(&image.app, kernel, &image.meta, image.flavor.disk);
    if let Some(disk) = disk {
        cfg.push_str(&xl_disk(disk));
    }
    fs::write(&image.cfg, cfg).map_err(|e| format!("write {}: {e}", image.cfg.display()))?;
    let xml = image.cfg.with_extension("xml");
    fs::write(&xml, libvirt_xml(&image.app, kernel, &image.meta, disk))
        .map_err(|e| format!("write {}: {e}", xml.display()))?;
    Ok(xml)
}

/// Every app under `apps/`, sorted.
pub fn apps() -> Result<Vec<String>, String> {
    let dir = workspace_root().join("apps");
    let mut apps: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| format!("read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    apps.sort();
    Ok(apps)
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

/// How an image is built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Flavor {
    /// Cargo's dev profile instead of release (`--debug`).
    pub debug: bool,
    /// With the runtime's gdb stub (`--gdb`, the `mote/gdb` feature).
    pub gdb: bool,
    /// With the app's content-disk reader (`--disk-support`, the app's `disk` feature; implied
    /// by `run --disk`).
    pub disk: bool,
}

impl Flavor {
    pub const RELEASE: Flavor = Flavor { debug: false, gdb: false, disk: false };
    /// The release image that reads content disks.
    pub const DISK: Flavor = Flavor { disk: true, ..Flavor::RELEASE };

    /// The name of `app`'s files in [`out_dir`]: `<app>`, or `<app>-disk` with the disk reader.
    pub fn file_stem(&self, app: &str) -> String {
        if self.disk {
            format!("{app}-disk")
        } else {
            app.to_owned()
        }
    }
}

/// Where the files of a `flavor` build go: `target/mote`, or `target/mote/gdb` with the stub.
pub fn out_dir(flavor: Flavor) -> PathBuf {
    if flavor.gdb {
        mote_dir().join("gdb")
    } else {
        mote_dir()
    }
}

/// The cargo arguments that build `app` as `flavor`.
fn cargo_args(app: &str, flavor: Flavor) -> Vec<&str> {
    let mut args = vec!["build", "-p", app, "--target", TARGET];
    if !flavor.debug {
        args.push("--release");
    }
    if flavor.gdb {
        // Apps depend on `mote`; the feature is turned on from here so they declare nothing.
        args.extend(["--features", "mote/gdb"]);
    }
    if flavor.disk {
        // The app's own feature: its code differs with the reader (see `check_disk_support`).
        args.extend(["--features", "disk"]);
    }
    args
}

/// Extra rustflags for the target, added to those of `.cargo/config.toml`.
const TARGET_RUSTFLAGS: &str = "CARGO_TARGET_X86_64_UNKNOWN_NONE_RUSTFLAGS";

/// `--remap-path-prefix` flags that cut the crates.io source directories
/// (`$CARGO_HOME/registry/src/<index>/`) from the paths an image carries in its panic
/// locations (3 KiB of dns); the workspace's own paths are relative already. Not for `--gdb`
/// images, whose debugger wants the full paths to find the sources.
fn remap_registry() -> Vec<String> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    let Some(Ok(entries)) = home.map(|home| fs::read_dir(home.join("registry").join("src"))) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.path().to_str().map(str::to_owned))
        // The variable is split at spaces.
        .filter(|dir| !dir.contains(char::is_whitespace))
        .map(|dir| format!("--remap-path-prefix={dir}/="))
        .collect()
}

/// An error unless `app` reads content disks (`content = ...` in its metadata), the apps that
/// have the `disk` feature `--disk-support` turns on.
pub fn check_disk_support(app: &str, meta: &AppMeta) -> Result<(), String> {
    match meta.content {
        Some(_) => Ok(()),
        None => Err(format!(
            "--disk-support: {app} reads no content disk (no `content` in its [package.metadata.mote])"
        )),
    }
}

/// Builds `app` and writes `<app>{.elf,.debug.elf,.cfg,.xml}` (`<app>-disk.*` with the disk
/// reader) in [`out_dir`].
pub fn build(app: &str, flavor: Flavor) -> Result<Image, String> {
    build_with(app, flavor, &[])
}

/// [`build`] with variables set for the app's build script (the dns app's zone files).
pub fn build_with(app: &str, flavor: Flavor, env: &[(&str, OsString)]) -> Result<Image, String> {
    let meta = app_meta(app)?;
    if flavor.disk {
        check_disk_support(app, &meta)?;
    }
    let mut cargo = crate::cargo();
    cargo.args(cargo_args(app, flavor));
    if !flavor.gdb {
        let mut flags = std::env::var(TARGET_RUSTFLAGS).unwrap_or_default();
        for flag in remap_registry() {
            flags = format!("{flags} {flag}");
        }
        cargo.env(TARGET_RUSTFLAGS, flags.trim_start());
    }
    // Only what the command line says reaches the build script: an inherited value does not.
    cargo.env_remove(SITE_ENV);
    cargo.envs(env.iter().map(|(k, v)| (k, v)));
    run_status(&mut cargo).map_err(|e| format!("building {app}: {e}"))?;

    // Cargo keeps one copy per feature set in deps/ and links the one just built here.
    let profile = if flavor.debug { "debug" } else { "release" };
    let built = target_dir().join(TARGET).join(profile).join(app);
    let out = out_dir(flavor);
    fs::create_dir_all(&out).map_err(|e| format!("create {}: {e}", out.display()))?;
    let stem = flavor.file_stem(app);
    let image = Image {
        app: app.to_owned(),
        meta: meta.clone(),
        flavor,
        elf: out.join(format!("{stem}.elf")),
        debug_elf: out.join(format!("{stem}.debug.elf")),
        cfg: out.join(format!("{stem}.cfg")),
    };
    fs::copy(&built, &image.debug_elf)
        .map_err(|e| format!("copy {} to {}: {e}", built.display(), image.debug_elf.display()))?;
    run_status(Command::new("objcopy").arg("--strip-all").arg(&image.debug_elf).arg(&image.elf))
        .map_err(|e| format!("stripping {app}: {e}"))?;
    let xml = write_configs(&image, None)?;

    let size = fs::metadata(&image.elf).map_err(|e| format!("{}: {e}", image.elf.display()))?.len();
    let debug_size = fs::metadata(&image.debug_elf).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "mote: {stem}: {} ({size} bytes, {:.1} KiB; unstripped {:.1} KiB), config {}, libvirt {}",
        image.elf.display(),
        size as f64 / 1024.0,
        debug_size as f64 / 1024.0,
        image.cfg.display(),
        xml.display()
    );
    Ok(image)
}

/// The build-script variable of `--site DIR` for `app`: DIR made absolute, for an app that
/// serves a site (`site = true`).
pub fn site_env(app: &str, site: &Path) -> Result<(&'static str, OsString), String> {
    if !app_meta(app)?.site {
        return Err(format!(
            "--site: {app} serves no site (no `site = true` in its [package.metadata.mote])"
        ));
    }
    let dir = site.canonicalize().map_err(|e| format!("--site {}: {e}", site.display()))?;
    if !dir.is_dir() {
        return Err(format!("--site {}: not a directory", site.display()));
    }
    eprintln!("mote: {app}: embedding the site {}", dir.display());
    Ok((SITE_ENV, dir.into_os_string()))
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
    fn gdb_builds_turn_the_feature_on_and_go_elsewhere() {
        assert_eq!(
            cargo_args("web", Flavor::RELEASE),
            ["build", "-p", "web", "--target", TARGET, "--release"]
        );
        assert_eq!(
            cargo_args("web", Flavor { debug: true, gdb: true, disk: false }),
            ["build", "-p", "web", "--target", TARGET, "--features", "mote/gdb"]
        );
        assert_eq!(out_dir(Flavor::RELEASE), mote_dir());
        assert_eq!(out_dir(Flavor { gdb: true, ..Flavor::RELEASE }), mote_dir().join("gdb"));
    }

    #[test]
    fn disk_support_builds_the_apps_feature_under_its_own_name() {
        assert_eq!(
            cargo_args("dns", Flavor::DISK),
            ["build", "-p", "dns", "--target", TARGET, "--release", "--features", "disk"]
        );
        assert_eq!(Flavor::DISK.file_stem("dns"), "dns-disk");
        assert_eq!(Flavor::RELEASE.file_stem("dns"), "dns");
        let web = parse_meta("[package.metadata.mote]\ncontent = \"the site\"\n").unwrap();
        assert!(check_disk_support("web", &web).is_ok());
        assert!(check_disk_support("echo", &AppMeta::default())
            .unwrap_err()
            .contains("reads no content disk"));
    }

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
        let cfg = xl_cfg("hello", "/w/target/mote/hello.elf", &AppMeta::default(), false);
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
    fn cfg_says_how_to_attach_a_content_disk() {
        let meta = parse_meta("[package.metadata.mote]\ncontent = \"the site to serve\"\n").unwrap();
        assert_eq!(meta.content.as_deref(), Some("the site to serve"));
        let cfg = xl_cfg("web", "/k.elf", &meta, true);
        assert!(cfg.contains("# Content disk: web reads the site to serve from its first disk"));
        assert!(cfg.contains("# disk = [ \"format=raw,vdev=xvda,access=ro,target=/path/to/web.img\" ]\n"));
        let embedded = xl_cfg("web", "/k.elf", &meta, false);
        assert!(embedded.contains("# This image serves what is built into it and refuses"), "{embedded}");
        assert!(embedded.contains("reads the site to serve from a disk"), "{embedded}");
        assert!(embedded.contains("is web-disk.elf, config web-disk.cfg"), "{embedded}");
        assert!(!embedded.contains("disk = ["), "{embedded}");
        assert!(!xl_cfg("hello", "/k.elf", &AppMeta::default(), false).contains("disk"));
        assert!(parse_meta("[package.metadata.mote]\ncontent = site\n").is_err());
    }

    #[test]
    fn cfg_with_network() {
        let cfg =
            xl_cfg("web", "/k.elf", &AppMeta { memory_mib: 16, network: true, ..AppMeta::default() }, false);
        assert!(cfg.contains("memory = 16\n"));
        assert!(cfg.contains("vif = [ \"bridge=xenbr0\" ]\n"));
        let big = xl_cfg("big", "/k.elf", &AppMeta { memory_mib: 512, ..AppMeta::default() }, false);
        assert!(!big.contains("shadow_memory"));
    }

    #[test]
    fn libvirt_xml_is_a_pvh_domain() {
        let meta = AppMeta { memory_mib: 2, network: true, ..AppMeta::default() };
        let xml = libvirt_xml("dns", "/w/t&t/dns.elf", &meta, None);
        assert!(xml.contains("<domain type='xen'>"), "{xml}");
        assert!(xml.contains("<type arch='x86_64' machine='xenpvh'>xenpvh</type>"), "{xml}");
        assert!(xml.contains("<kernel>/w/t&amp;t/dns.elf</kernel>"), "{xml}");
        assert!(xml.contains("<memory unit='MiB'>2</memory>"), "{xml}");
        assert!(xml.contains("<source bridge='xenbr0'/>"), "{xml}");
        let plain = libvirt_xml("hello", "/k.elf", &AppMeta::default(), None);
        assert!(!plain.contains("<interface"), "{plain}");
        assert!(!plain.contains("disk"), "{plain}");
    }

    #[test]
    fn libvirt_xml_attaches_a_given_disk_read_only_as_xvda() {
        let meta = AppMeta { content: Some("the site to serve".into()), ..AppMeta::default() };
        let xml = libvirt_xml("web", "/k.elf", &meta, Some("/srv/a&b.img"));
        assert!(xml.contains("<source file='/srv/a&amp;b.img'/>"), "{xml}");
        assert!(xml.contains("<target dev='xvda' bus='xen'/>\n      <readonly/>"), "{xml}");
        assert!(!xml.contains("<!-- Content disk"), "{xml}");
        let without = libvirt_xml("web", "/k.elf", &meta, None);
        assert!(without.contains("<!-- Content disk: web reads the site to serve"), "{without}");
        assert!(!without.contains("<disk"), "{without}");
        // XML comments may not hold a double hyphen.
        let comment = without.split("<!-- Content disk").nth(1).unwrap().split("-->").next().unwrap();
        assert!(!comment.contains("--"), "{comment}");
        let cfg = xl_cfg("web", "/k.elf", &meta, true) + &xl_disk("/srv/site.img");
        assert!(
            cfg.ends_with("disk = [ \"format=raw,vdev=xvda,access=ro,target=/srv/site.img\" ]\n"),
            "{cfg}"
        );
    }

    /// libvirt's own schema check (`virt-xml-validate`, Debian's libvirt-clients, which
    /// ci/install-host-deps.sh installs) accepts what `cargo xtask build` writes.
    #[test]
    fn libvirt_xml_validates_against_libvirts_schema() {
        let dir = std::env::temp_dir().join(format!("mote-libvirt-xml-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let content =
            AppMeta { memory_mib: 8, network: true, content: Some("the site".into()), ..AppMeta::default() };
        for (name, app, meta, disk) in [
            ("hello", "hello", AppMeta::default(), None),
            ("web", "web", AppMeta { memory_mib: 4, network: true, ..AppMeta::default() }, None),
            // A content app: with the comment on how to attach its disk, and with a disk.
            ("web-content", "web", content.clone(), None),
            ("web-disk", "web", content.clone(), Some("/images/site.img")),
            ("hello-disk", "hello", AppMeta::default(), Some("/images/a&b.img")),
        ] {
            let path = dir.join(format!("{name}.xml"));
            fs::write(&path, libvirt_xml(app, &format!("/images/{app}.elf"), &meta, disk)).unwrap();
            let out = Command::new("virt-xml-validate")
                .arg(&path)
                .arg("domain")
                .output()
                .expect("virt-xml-validate runs (install libvirt-clients: ci/install-host-deps.sh)");
            assert!(
                out.status.success(),
                "{name}.xml: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let _ = fs::remove_dir_all(&dir);
    }
}
