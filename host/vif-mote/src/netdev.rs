//! The three link changes a vif needs (MTU, bridge port, up), made with the classic interface
//! ioctls (`linux/sockios.h`, `linux/if.h`) that `ip` and `brctl` also reach.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `SIOCBRADDIF` (`linux/sockios.h`): makes interface `ifr_ifindex` a port of bridge `ifr_name`.
const SIOCBRADDIF: libc::c_ulong = 0x89a2;

/// A network interface's name as the kernel takes it: 1 to 15 bytes, and nothing that would
/// leave its directory when joined to a path under /sys or /proc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfName(String);

impl IfName {
    pub fn new(name: &str) -> Result<IfName, String> {
        let fits = (1..libc::IFNAMSIZ).contains(&name.len());
        let plain = name != "."
            && name != ".."
            && !name.bytes().any(|b| b == b'/' || b.is_ascii_whitespace() || b == 0);
        if fits && plain {
            Ok(IfName(name.to_owned()))
        } else {
            Err(format!("'{}' is not an interface name", name.escape_debug()))
        }
    }

    fn request(&self) -> libc::ifreq {
        // SAFETY: ifreq is plain data (a name and a union of integers, addresses and a pointer
        // the ioctls used here do not read); all zero bytes is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(self.0.bytes()) {
            *dst = src as libc::c_char;
        }
        req
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A socket to send interface ioctls through (no address is ever bound).
pub struct Netdev(OwnedFd);

impl Netdev {
    pub fn open() -> io::Result<Netdev> {
        // SAFETY: socket takes no pointers; a non-negative result is a new descriptor we own.
        let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by socket and is owned by nothing else.
        Ok(Netdev(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn ioctl(&self, op: libc::c_ulong, req: &mut libc::ifreq) -> io::Result<()> {
        // SAFETY: every `op` passed here takes a `struct ifreq`, which `req` is, valid and
        // exclusively ours for the call.
        if unsafe { libc::ioctl(self.0.as_raw_fd(), op, req as *mut libc::ifreq) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub fn set_mtu(&self, dev: &IfName, mtu: i32) -> io::Result<()> {
        let mut req = dev.request();
        req.ifr_ifru.ifru_mtu = mtu;
        self.ioctl(libc::SIOCSIFMTU, &mut req)
    }

    pub fn add_to_bridge(&self, bridge: &IfName, port: &IfName) -> io::Result<()> {
        let mut req = port.request();
        self.ioctl(libc::SIOCGIFINDEX, &mut req)?;
        // SAFETY: SIOCGIFINDEX succeeded, so it wrote the union's ifindex member.
        let index = unsafe { req.ifr_ifru.ifru_ifindex };
        let mut req = bridge.request();
        req.ifr_ifru.ifru_ifindex = index;
        self.ioctl(SIOCBRADDIF, &mut req)
    }

    pub fn set_up(&self, dev: &IfName, up: bool) -> io::Result<()> {
        let mut req = dev.request();
        self.ioctl(libc::SIOCGIFFLAGS, &mut req)?;
        // SAFETY: SIOCGIFFLAGS succeeded, so it wrote the union's flags member.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        let up_flag = libc::IFF_UP as libc::c_short;
        req.ifr_ifru.ifru_flags = if up { flags | up_flag } else { flags & !up_flag };
        self.ioctl(libc::SIOCSIFFLAGS, &mut req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_checked_before_any_path_or_ioctl() {
        for good in ["xenbr0", "vif12.0", "a", "fifteen-bytes-x"] {
            assert_eq!(IfName::new(good).unwrap().to_string(), good);
        }
        for bad in ["", "sixteen-bytes-xx", "..", ".", "a/b", "../../etc", "br 0", "br\n", "br\0"] {
            assert!(IfName::new(bad).is_err(), "{bad:?} was taken");
        }
    }

    #[test]
    fn the_request_carries_the_name_nul_terminated() {
        let req = IfName::new("fifteen-bytes-x").unwrap().request();
        let name: Vec<u8> = req.ifr_name.iter().map(|&c| c as u8).collect();
        assert_eq!(&name[..15], b"fifteen-bytes-x");
        assert_eq!(name[15], 0);
    }
}
