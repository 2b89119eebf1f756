//! The network configuration, from the kernel command line (xl's `extra=`):
//!
//! | key | value | default |
//! |---|---|---|
//! | `ip=` | `dhcp`, or a static IPv4 address with its prefix length: `10.0.0.2/24` | `dhcp` |
//! | `gw=` | the IPv4 default gateway, inside the static `ip=` subnet | none |
//! | `ip6=` | a static IPv6 address with its prefix length: `2001:db8::2/64` | none |
//! | `gw6=` | the IPv6 default gateway, inside the `ip6=` prefix or link-local | none |
//! | `netfront=` | offloads turned off: `no-csum-offload`, `no-sg`, or both, comma-separated | all on |
//!
//! `ip6=` and `gw6=` need the `ipv6` feature; an image built without it refuses them.
//!
//! These configure vif 0; vif N takes the same keys prefixed `vifN.` (`vif1.ip=10.0.1.2/24`).

use crate::cmdline::Cmdline;
use alloc::string::{String, ToString};
use core::fmt;
use core::net::Ipv4Addr;
#[cfg(feature = "ipv6")]
use core::net::Ipv6Addr;
#[cfg(feature = "ipv6")]
use smoltcp::wire::Ipv6Cidr;
use smoltcp::wire::{IpAddress, IpCidr, Ipv4Cidr};

/// The offloads a vif offers its backend: both on unless `netfront=` turns them off
/// (netfront's `connect::Offload` says what each does). A hosted process has no netfront and
/// takes no notice of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offload {
    /// Checksum offload.
    pub csum: bool,
    /// rx scatter-gather.
    pub sg: bool,
}

impl Default for Offload {
    fn default() -> Self {
        Offload { csum: true, sg: true }
    }
}

/// How the stack gets its addresses, and what its vif asks of the backend.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// DHCP unless `ip=` gives a static address.
    pub ipv4: Ipv4Config,
    /// A static IPv6 address, if any.
    #[cfg(feature = "ipv6")]
    pub ipv6: Option<Ipv6Config>,
    /// The offloads to ask the backend for.
    pub offload: Offload,
}

/// Where the IPv4 address comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Ipv4Config {
    /// Ask a DHCP server (the address, gateway and their changes).
    #[default]
    Dhcp,
    /// `ip=ADDRESS/PREFIX`, and `gw=` if given: no DHCP traffic at all.
    Static {
        /// The address and its subnet.
        address: Ipv4Cidr,
        /// The default route, if any; without one only the subnet is reached.
        gateway: Option<Ipv4Addr>,
    },
}

/// A static IPv6 address (`ip6=`), and its gateway (`gw6=`).
#[cfg(feature = "ipv6")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Config {
    /// The address and its subnet.
    pub address: Ipv6Cidr,
    /// The default route, if any.
    pub gateway: Option<Ipv6Addr>,
}

/// A command-line network argument that cannot be used; its message names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `key=value` does not parse as what `key` takes.
    Malformed {
        /// The argument's key.
        key: &'static str,
        /// Its value, as given.
        value: String,
        /// What the key takes, for the message.
        expected: &'static str,
    },
    /// A gateway without the static address it belongs with.
    GatewayWithoutAddress {
        /// The gateway's key (`gw` or `gw6`).
        key: &'static str,
        /// The address key it needs (`ip` or `ip6`).
        needs: &'static str,
    },
    /// A gateway that is not on the address's link.
    GatewayOffLink {
        /// The gateway's key.
        key: &'static str,
        /// The gateway given.
        gateway: IpAddress,
        /// The subnet of the address, which it is not on.
        subnet: IpCidr,
    },
    /// `ip6=` or `gw6=` given to an image built without the `ipv6` feature.
    #[cfg(not(feature = "ipv6"))]
    NoIpv6 {
        /// `ip6` or `gw6`.
        key: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Malformed { key, value, expected } => {
                write!(f, "bad {key}={value}: expected {expected}")
            }
            ConfigError::GatewayWithoutAddress { key, needs } => {
                write!(f, "{key}= needs a static {needs}= as well")
            }
            ConfigError::GatewayOffLink { key, gateway, subnet } => {
                write!(f, "bad {key}={gateway}: not inside {subnet}")
            }
            #[cfg(not(feature = "ipv6"))]
            ConfigError::NoIpv6 { key } => {
                write!(
                    f,
                    "{key}= needs IPv6, and this image is built without it (the runtime's ipv6 feature)"
                )
            }
        }
    }
}

const IP_EXPECTED: &str = "dhcp or an IPv4 address with prefix length, like ip=10.0.0.2/24";
const GW_EXPECTED: &str = "an IPv4 address, like gw=10.0.0.1";
#[cfg(feature = "ipv6")]
const IP6_EXPECTED: &str = "an IPv6 address with prefix length, like ip6=2001:db8::2/64";
#[cfg(feature = "ipv6")]
const GW6_EXPECTED: &str = "an IPv6 address, like gw6=2001:db8::1";
const NETFRONT_EXPECTED: &str = "no-csum-offload, no-sg or both, like netfront=no-csum-offload,no-sg";

impl Config {
    /// Reads `ip=`, `gw=`, `ip6=` and `gw6=`; without them, DHCPv4 only.
    pub fn from_cmdline(cmdline: &Cmdline<'_>) -> Result<Config, ConfigError> {
        Config::from_keys(|key| cmdline.get(key))
    }

    /// The configuration of vif `index`: the plain keys for vif 0, the keys
    /// prefixed `vif<index>.` for the others.
    pub fn for_vif(cmdline: &Cmdline<'_>, index: u32) -> Result<Config, ConfigError> {
        if index == 0 {
            return Config::from_cmdline(cmdline);
        }
        // Looked up one by one, never joined into a line and split again:
        // a quoted value with spaces must not turn into keys of its own.
        Config::from_keys(|key| cmdline.get(&alloc::format!("vif{index}.{key}")))
    }

    /// The configuration from the values `get` gives for `ip`, `gw`, `ip6`
    /// and `gw6`.
    fn from_keys<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Config, ConfigError> {
        let ipv4 = match get("ip") {
            None | Some("dhcp") => {
                if get("gw").is_some() {
                    return Err(ConfigError::GatewayWithoutAddress { key: "gw", needs: "ip" });
                }
                Ipv4Config::Dhcp
            }
            Some(value) => {
                let address = parse_ipv4_cidr(value).ok_or_else(|| malformed("ip", value, IP_EXPECTED))?;
                let gateway = get("gw").map(|gw| parse_gateway_v4(gw, address)).transpose()?;
                Ipv4Config::Static { address, gateway }
            }
        };
        #[cfg(not(feature = "ipv6"))]
        if let Some(key) = ["ip6", "gw6"].into_iter().find(|key| get(key).is_some()) {
            return Err(ConfigError::NoIpv6 { key });
        }
        #[cfg(feature = "ipv6")]
        let ipv6 = match get("ip6") {
            None => {
                if get("gw6").is_some() {
                    return Err(ConfigError::GatewayWithoutAddress { key: "gw6", needs: "ip6" });
                }
                None
            }
            Some(value) => {
                let address = parse_ipv6_cidr(value).ok_or_else(|| malformed("ip6", value, IP6_EXPECTED))?;
                let gateway = get("gw6").map(|gw| parse_gateway_v6(gw, address)).transpose()?;
                Some(Ipv6Config { address, gateway })
            }
        };
        let mut offload = Offload::default();
        if let Some(value) = get("netfront") {
            for word in value.split(',') {
                match word {
                    "no-csum-offload" => offload.csum = false,
                    "no-sg" => offload.sg = false,
                    _ => return Err(malformed("netfront", value, NETFRONT_EXPECTED)),
                }
            }
        }
        Ok(Config {
            ipv4,
            #[cfg(feature = "ipv6")]
            ipv6,
            offload,
        })
    }
}

fn malformed(key: &'static str, value: &str, expected: &'static str) -> ConfigError {
    ConfigError::Malformed { key, value: value.to_string(), expected }
}

/// `A.B.C.D/NN`: a unicast address and a prefix of 1 to 32 bits.
fn parse_ipv4_cidr(value: &str) -> Option<Ipv4Cidr> {
    let (addr, len) = value.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    let unicast = !(addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast());
    (unicast && (1..=32).contains(&len)).then(|| Ipv4Cidr::new(addr, len))
}

/// `ADDR/NN`: a unicast address and a prefix of 1 to 128 bits.
#[cfg(feature = "ipv6")]
fn parse_ipv6_cidr(value: &str) -> Option<Ipv6Cidr> {
    let (addr, len) = value.split_once('/')?;
    let addr: Ipv6Addr = addr.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    let unicast = !(addr.is_unspecified() || addr.is_multicast());
    (unicast && (1..=128).contains(&len)).then(|| Ipv6Cidr::new(addr, len))
}

fn parse_gateway_v4(value: &str, subnet: Ipv4Cidr) -> Result<Ipv4Addr, ConfigError> {
    let gateway: Ipv4Addr = value.parse().map_err(|_| malformed("gw", value, GW_EXPECTED))?;
    if !subnet.contains_addr(&gateway) {
        let (gateway, subnet) = (gateway.into(), subnet.into());
        return Err(ConfigError::GatewayOffLink { key: "gw", gateway, subnet });
    }
    Ok(gateway)
}

#[cfg(feature = "ipv6")]
fn parse_gateway_v6(value: &str, prefix: Ipv6Cidr) -> Result<Ipv6Addr, ConfigError> {
    let gateway: Ipv6Addr = value.parse().map_err(|_| malformed("gw6", value, GW6_EXPECTED))?;
    if !(prefix.contains_addr(&gateway) || gateway.is_unicast_link_local()) {
        let (gateway, subnet) = (gateway.into(), prefix.into());
        return Err(ConfigError::GatewayOffLink { key: "gw6", gateway, subnet });
    }
    Ok(gateway)
}

#[cfg(test)]
mod tests {
    #[test]
    fn other_vifs_take_prefixed_keys() {
        let line = Cmdline::new("ip=10.0.0.2/24 vif1.ip=10.0.1.2/24 vif1.gw=10.0.1.1 vif2.ip=dhcp");
        assert_eq!(Config::for_vif(&line, 0).unwrap().ipv4, Config::from_cmdline(&line).unwrap().ipv4);
        match Config::for_vif(&line, 1).unwrap().ipv4 {
            Ipv4Config::Static { address, gateway } => {
                assert_eq!(address.to_string(), "10.0.1.2/24");
                assert_eq!(gateway, Some(Ipv4Addr::new(10, 0, 1, 1)));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(Config::for_vif(&line, 2).unwrap().ipv4, Ipv4Config::Dhcp);
        assert_eq!(Config::for_vif(&line, 3).unwrap(), Config::default());
        assert!(Config::for_vif(&Cmdline::new("vif1.ip=nonsense"), 1).is_err());
        // A quoted value is one value, not more keys (found by the cmdline fuzz target).
        let quoted = Cmdline::new(r#"vif1.ip="dhcp gw=10.0.0.1""#);
        assert_eq!(
            Config::for_vif(&quoted, 1).unwrap_err().to_string(),
            "bad ip=dhcp gw=10.0.0.1: expected dhcp or an IPv4 address with prefix length, like ip=10.0.0.2/24"
        );
    }

    use super::*;

    fn parse(line: &str) -> Result<Config, ConfigError> {
        Config::from_cmdline(&Cmdline::new(line))
    }

    fn message(line: &str) -> String {
        parse(line).unwrap_err().to_string()
    }

    #[test]
    fn dhcp_by_default_and_on_request() {
        let config = parse("name=x").unwrap();
        assert_eq!(config.ipv4, Ipv4Config::Dhcp);
        #[cfg(feature = "ipv6")]
        assert_eq!(config.ipv6, None);
        assert_eq!(config.offload, Offload { csum: true, sg: true });
        assert_eq!(parse("ip=dhcp").unwrap(), Config::default());
    }

    #[test]
    fn static_ipv4_with_and_without_gateway() {
        let address = Ipv4Cidr::new(Ipv4Addr::new(10, 0, 0, 2), 24);
        let gateway = Some(Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(
            parse("ip=10.0.0.2/24 gw=10.0.0.1").unwrap().ipv4,
            Ipv4Config::Static { address, gateway }
        );
        assert_eq!(parse("ip=10.0.0.2/24").unwrap().ipv4, Ipv4Config::Static { address, gateway: None });
    }

    #[test]
    #[cfg(feature = "ipv6")]
    fn static_ipv6_next_to_dhcp() {
        let config = parse("ip6=2001:db8::2/64 gw6=fe80::1").unwrap();
        assert_eq!(config.ipv4, Ipv4Config::Dhcp);
        let address = Ipv6Cidr::new("2001:db8::2".parse().unwrap(), 64);
        assert_eq!(config.ipv6, Some(Ipv6Config { address, gateway: Some("fe80::1".parse().unwrap()) }));
        let config = parse("ip6=2001:db8::2/64 gw6=2001:db8::1").unwrap();
        assert_eq!(config.ipv6.unwrap().gateway, Some("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn malformed_values_name_the_argument() {
        for line in
            ["ip=10.0.0.300/24", "ip=10.0.0.2", "ip=10.0.0.2/33", "ip=10.0.0.2/0", "ip=224.0.0.1/4", "ip="]
        {
            let e = message(line);
            assert!(e.starts_with(&alloc::format!("bad {line}: expected dhcp or an IPv4")), "{line}: {e}");
        }
        assert_eq!(
            message("ip=10.0.0.2/24 gw=router"),
            "bad gw=router: expected an IPv4 address, like gw=10.0.0.1"
        );
        #[cfg(feature = "ipv6")]
        assert!(message("ip6=2001:db8::2").starts_with("bad ip6=2001:db8::2: expected an IPv6 address"));
        #[cfg(feature = "ipv6")]
        assert!(message("ip6=ff02::1/64").starts_with("bad ip6=ff02::1/64: expected"));
        #[cfg(feature = "ipv6")]
        assert!(message("ip6=::2/64 gw6=x").starts_with("bad gw6=x: expected an IPv6 address"));
    }

    #[test]
    fn gateways_need_their_address_on_the_same_link() {
        assert_eq!(message("gw=10.0.0.1"), "gw= needs a static ip= as well");
        assert_eq!(message("ip=dhcp gw=10.0.0.1"), "gw= needs a static ip= as well");
        assert_eq!(message("ip=10.0.0.2/24 gw=10.0.1.1"), "bad gw=10.0.1.1: not inside 10.0.0.2/24");
        #[cfg(feature = "ipv6")]
        assert_eq!(message("gw6=fe80::1"), "gw6= needs a static ip6= as well");
        #[cfg(feature = "ipv6")]
        assert_eq!(
            message("ip6=2001:db8::2/64 gw6=2001:db9::1"),
            "bad gw6=2001:db9::1: not inside 2001:db8::2/64"
        );
    }

    #[test]
    fn offloads_are_turned_off_by_name() {
        assert_eq!(parse("netfront=no-sg").unwrap().offload, Offload { csum: true, sg: false });
        assert_eq!(
            parse("netfront=no-csum-offload,no-sg").unwrap().offload,
            Offload { csum: false, sg: false }
        );
        let line = Cmdline::new("vif1.netfront=no-csum-offload");
        assert_eq!(Config::for_vif(&line, 0).unwrap().offload, Offload::default());
        assert!(!Config::for_vif(&line, 1).unwrap().offload.csum);
        for bad in ["netfront=", "netfront=no-gso", "netfront=no-sg,", "netfront=NO-SG"] {
            let e = message(bad);
            assert!(e.starts_with(&alloc::format!("bad {bad}: expected no-csum-offload")), "{bad}: {e}");
        }
    }

    #[test]
    fn later_arguments_win() {
        assert_eq!(parse("ip=10.0.0.2/24 ip=dhcp").unwrap().ipv4, Ipv4Config::Dhcp);
    }
}
