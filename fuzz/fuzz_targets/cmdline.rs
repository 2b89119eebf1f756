//! The kernel command line (xl's `extra=`, written by whoever configures the domain): the
//! `key=value` splitter, the network keys of every vif (`ip=`, `gw=`, `ip6=`, `gw6=`,
//! `netfront=`, and `vifN.`-prefixed) and `log=`. Nothing may panic; a configuration accepted
//! is coherent (a gateway on its address's link, the offloads the words named); an error
//! names a key and value the line really gave for that vif, never one made up by splitting a
//! quoted value again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mote::cmdline::Cmdline;
use mote::logspec::LogSpec;
use mote::net::smoltcp::wire::IpCidr;
use mote::net::{Config, ConfigError, Ipv4Config};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else { return };
    let line = Cmdline::new(text);
    let args: Vec<(&str, &str)> = line.args().collect();
    assert!(args.len() <= text.len());
    for (key, _) in &args {
        let last = args.iter().rev().find(|(k, _)| k == key).map(|(_, v)| *v);
        assert_eq!(line.get(key), last, "get({key:?}) is not the last value given");
    }
    for vif in 0..3u32 {
        let prefix = if vif == 0 { String::new() } else { format!("vif{vif}.") };
        let given = |key: &str| line.get(&format!("{prefix}{key}"));
        match Config::for_vif(&line, vif) {
            Ok(config) => {
                if let Ipv4Config::Static { address, gateway: Some(gw) } = config.ipv4 {
                    assert!(address.contains_addr(&gw), "gateway {gw} off {address}");
                }
                if let Some(v6) = &config.ipv6 {
                    if let Some(gw) = v6.gateway {
                        assert!(
                            v6.address.contains_addr(&gw) || gw.is_unicast_link_local(),
                            "gateway {gw} off {}",
                            v6.address
                        );
                    }
                }
                assert_eq!(config.ipv4 == Ipv4Config::Dhcp, matches!(given("ip"), None | Some("dhcp")));
                assert_eq!(config.ipv6.is_some(), given("ip6").is_some());
                let off = |word: &str| given("netfront").is_some_and(|v| v.split(',').any(|w| w == word));
                assert_eq!(
                    (config.offload.csum, config.offload.sg),
                    (!off("no-csum-offload"), !off("no-sg"))
                );
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                match &e {
                    ConfigError::Malformed { key, value, .. } => {
                        assert_eq!(given(key), Some(value.as_str()), "vif {vif}: {e}")
                    }
                    ConfigError::GatewayWithoutAddress { key, .. } => {
                        assert!(given(key).is_some(), "vif {vif}: {e}")
                    }
                    ConfigError::GatewayOffLink { key, subnet, .. } => {
                        assert!(given(key).is_some(), "vif {vif}: {e}");
                        assert!(matches!(subnet, IpCidr::Ipv4(_) | IpCidr::Ipv6(_)));
                    }
                }
            }
        }
    }
    if let Some(value) = line.get("log") {
        match LogSpec::parse(value) {
            Ok(spec) => {
                for (target, _) in &args {
                    assert!(spec.level(target) <= spec.max());
                }
            }
            Err(e) => assert!(value.split(',').any(|entry| entry == e.0), "{e}"),
        }
    }
});
