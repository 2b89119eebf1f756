//! `--zone FILE` of `cargo xtask build/run dns`: the master files the dns app embeds instead of
//! its sample zone. Each is loaded here with `mote-dns` first, so that a zone error stops the
//! build with the file, line and problem rather than the guest at boot.

use mote_dns::{master, Catalog};
use std::ffi::OsString;
use std::path::PathBuf;

/// The environment variable apps/dns/build.rs reads the zone files from.
pub const ENV: &str = "MOTE_DNS_ZONES";

/// Splits `--zone FILE` pairs off `args`; the other arguments, in order, and the files.
/// Arguments after `--` (the guest's) are left alone.
pub fn take(args: &[String]) -> Result<(Vec<String>, Vec<PathBuf>), String> {
    crate::take_paths(args, "--zone", "a master file")
}

/// Loads every zone as the server will (all of them together, so a zone given twice is an
/// error too) and returns the value of [`ENV`]: their absolute paths.
pub fn check(zones: &[PathBuf]) -> Result<OsString, String> {
    let mut loaded = Vec::new();
    let mut paths = Vec::new();
    for file in zones {
        let name = file.display().to_string();
        let text = std::fs::read(file).map_err(|e| format!("zone {name}: {e}"))?;
        loaded.push(master::parse_bytes(&name, &text, None).map_err(|e| e.to_string())?);
        paths.push(std::fs::canonicalize(file).map_err(|e| format!("zone {name}: {e}"))?);
    }
    Catalog::new(loaded).map_err(|(zone, e)| format!("zone {zone}: {e}"))?;
    std::env::join_paths(&paths).map_err(|e| format!("zone paths: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn zone_options_are_taken_out() {
        let (rest, zones) =
            take(&strings(&["dns", "--zone", "a.zone", "--debug", "--zone=b.zone", "--", "--zone", "x"]))
                .unwrap();
        assert_eq!(rest, strings(&["dns", "--debug", "--", "--zone", "x"]));
        assert_eq!(zones, [PathBuf::from("a.zone"), PathBuf::from("b.zone")]);
        assert!(take(&strings(&["dns", "--zone"])).is_err());
    }

    #[test]
    fn zone_errors_name_file_and_line() {
        let dir = std::env::temp_dir().join(format!("mote-dns-zones-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.zone");
        std::fs::write(&good, "example. 60 IN SOA ns hostmaster 1 2 3 4 5\nwww A 192.0.2.1\n").unwrap();
        let bad = dir.join("bad.zone");
        std::fs::write(&bad, "other. 60 IN SOA ns hostmaster 1 2 3 4 5\n\nwww A 192.0.2.300\n").unwrap();
        let value = check(std::slice::from_ref(&good)).unwrap();
        assert_eq!(
            std::env::split_paths(&value).collect::<Vec<_>>(),
            [std::fs::canonicalize(&good).unwrap()]
        );
        let err = check(&[good.clone(), bad.clone()]).unwrap_err();
        assert_eq!(err, format!("{}:3: A: bad IPv4 address \"192.0.2.300\"", bad.display()));
        assert_eq!(
            check(&[good.clone(), good.clone()]).unwrap_err(),
            "zone example.: zone example. is loaded twice"
        );
        assert!(check(&[dir.join("missing.zone")]).unwrap_err().contains("missing.zone"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
