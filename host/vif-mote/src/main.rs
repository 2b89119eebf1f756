//! vif-mote: a lean Xen hotplug helper that puts a guest's vif on a Linux bridge in dom0.
//!
//! Install it as /etc/xen/scripts/vif-mote (mode 0755) in dom0 and name it in the guest's config:
//! `vif = [ "bridge=xenbr0,script=vif-mote" ]`. It does what a mote's vif needs of Xen's stock
//! vif-bridge (the bridge's MTU, on the bridge, up, no IPv6 address of dom0's own on it) in this
//! one process: the stock script starts dozens, and `xl create` waits for it before it unpauses
//! the guest (docs/measurements.md, Boot). It does not do the stock script's iptables rules or
//! locking; use vif-bridge where you rely on those.
//!
//! libxl runs it with `online` or `offline` (`add`/`remove` for an HVM guest's emulated tap
//! device) and the environment variables `vif` (the backend interface, `vif<domid>.<devid>`) and
//! `XENBUS_PATH` (`backend/vif/<domid>/<devid>`). On failure it says why in `hotplug-error`,
//! which `xl create` prints, and sets `hotplug-status` to `error`, so that xl fails at once
//! instead of waiting for its timeout.

mod netdev;
mod xenbus;

use mote_xen::xenstore::{Request, Store};
use netdev::{IfName, Netdev};
use std::path::Path;
use std::process::ExitCode;
use std::{env, fs, io};

#[derive(Debug, PartialEq, Eq)]
enum Action {
    Online,
    Offline,
}

fn action(arg: Option<&str>) -> Result<Action, String> {
    match arg {
        Some("online" | "add") => Ok(Action::Online),
        Some("offline" | "remove") => Ok(Action::Offline),
        other => Err(format!("unknown command '{}' (expected online or offline)", other.unwrap_or(""))),
    }
}

fn main() -> ExitCode {
    let arg = env::args().nth(1);
    let vif = env::var("vif").ok();
    let result = match action(arg.as_deref()) {
        Ok(Action::Online) => match (vif, env::var("XENBUS_PATH").ok()) {
            (Some(vif), Some(path)) => online(&vif, &path),
            _ => Err("vif and XENBUS_PATH must be set (libxl sets them)".to_owned()),
        },
        // The interface goes away with the backend device, and off the bridge with it.
        Ok(Action::Offline) => {
            if let Some(dev) = vif.and_then(|v| IfName::new(&v).ok()) {
                let _ = Netdev::open().and_then(|n| n.set_up(&dev, false));
            }
            Ok(())
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vif-mote: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Attaches the vif and tells netback it may connect, or tells libxl why not.
fn online(vif: &str, path: &str) -> Result<(), String> {
    let mut store = xenbus::connect().map_err(|e| format!("cannot reach xenstore: {e}"))?;
    let status = format!("{path}/hotplug-status");
    match attach(&mut store, vif, path) {
        Ok(()) => store.write(&status, b"connected").map_err(|e| format!("cannot write {status}: {e}")),
        Err(reason) => {
            let error = format!("{path}/hotplug-error");
            let said = format!("vif-mote: {reason}");
            let mut replies =
                store.call_all(&[Request::Write(&error, said.as_bytes()), Request::Write(&status, b"error")]);
            if let Err(e) = replies.next_reply().and_then(|_| replies.next_reply()) {
                eprintln!("vif-mote: cannot report the failure in {path}: {e}");
            }
            Err(reason)
        }
    }
}

fn attach(store: &mut impl Store, vif: &str, path: &str) -> Result<(), String> {
    let port = IfName::new(vif)?;
    let bridge = store
        .read_string(&format!("{path}/bridge"))
        .map_err(|e| format!("no bridge= in the vif's configuration ({e})"))?;
    let bridge = IfName::new(&bridge)?;
    let sys = Path::new("/sys/class/net").join(bridge.to_string());
    if !sys.join("bridge").is_dir() {
        return Err(format!("{bridge} is not a bridge in dom0"));
    }
    let mtu = fs::read_to_string(sys.join("mtu"))
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
        .ok_or_else(|| format!("cannot read the MTU of {bridge}"))?;
    // dom0 has no business on the guest's port: no link-local address, no DAD traffic.
    let ipv6 = format!("/proc/sys/net/ipv6/conf/{port}/disable_ipv6");
    match fs::write(&ipv6, "1") {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(format!("{ipv6}: {e}")),
        _ => {}
    }
    let net = Netdev::open().map_err(|e| format!("cannot open a socket for interface requests: {e}"))?;
    net.set_mtu(&port, mtu).map_err(|e| format!("cannot set the MTU of {port} to {mtu}: {e}"))?;
    net.add_to_bridge(&bridge, &port).map_err(|e| format!("cannot add {port} to {bridge}: {e}"))?;
    net.set_up(&port, true).map_err(|e| format!("cannot bring {port} up: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libxl_commands_map_to_actions() {
        assert_eq!(action(Some("online")), Ok(Action::Online));
        assert_eq!(action(Some("add")), Ok(Action::Online));
        assert_eq!(action(Some("offline")), Ok(Action::Offline));
        assert_eq!(action(Some("remove")), Ok(Action::Offline));
        assert!(action(Some("migrate")).unwrap_err().contains("unknown command 'migrate'"));
        assert!(action(None).unwrap_err().contains("unknown command ''"));
    }
}
