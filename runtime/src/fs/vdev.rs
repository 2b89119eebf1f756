//! Disk names as xl and Linux use them (`vdev=xvdb`) and the virtual device ids the frontend
//! sees under `device/vbd/`: `xvd` disks below 16 are major 202 with 16 minors each, later
//! ones use the extended form `1 << 28 | disk << 8` (xen docs/misc/vbd-interface.txt).
//! Partitions are not disks here.

use alloc::string::String;

const XVD_MAJOR: u32 = 202;
const EXTENDED: u32 = 1 << 28;
/// Disks the extended form can number (its disk field is 20 bits).
const MAX_DISKS: u32 = 1 << 20;

/// The device id of `xvd<letters>` (`xvda` is 51712).
pub fn id(name: &str) -> Option<u32> {
    let letters = name.strip_prefix("xvd")?;
    if letters.is_empty() || letters.len() > 4 || !letters.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    // Bijective base 26: a = 0, z = 25, aa = 26.
    let disk = letters.bytes().fold(0u32, |n, b| n * 26 + u32::from(b - b'a') + 1) - 1;
    if disk < 16 {
        Some(XVD_MAJOR << 8 | disk << 4)
    } else {
        (disk < MAX_DISKS).then_some(EXTENDED | disk << 8)
    }
}

/// The name of a whole-disk device id; `None` for partitions and other schemes.
pub fn name(id: u32) -> Option<String> {
    let disk = if id & EXTENDED != 0 {
        (id & 0xff == 0).then_some((id & !EXTENDED) >> 8)?
    } else {
        (id >> 8 == XVD_MAJOR && id & 0xf == 0).then_some((id & 0xff) >> 4)?
    };
    let mut letters = alloc::vec::Vec::new();
    let mut n = disk + 1;
    while n > 0 {
        n -= 1;
        letters.push(b'a' + (n % 26) as u8);
        n /= 26;
    }
    letters.reverse();
    let mut name = String::from("xvd");
    name.extend(letters.into_iter().map(char::from));
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_agree() {
        assert_eq!(id("xvda"), Some(51712));
        assert_eq!(id("xvdb"), Some(51728));
        assert_eq!(id("xvdp"), Some(202 << 8 | 15 << 4));
        assert_eq!(id("xvdq"), Some(1 << 28 | 16 << 8));
        assert_eq!(id("xvdaa"), Some(1 << 28 | 26 << 8));
        assert_eq!(name(51712).as_deref(), Some("xvda"));
        assert_eq!(name(51728).as_deref(), Some("xvdb"));
        assert_eq!(name(1 << 28 | 16 << 8).as_deref(), Some("xvdq"));
        for disk in ["xvda", "xvdz", "xvdaa", "xvdaz", "xvdba", "xvdzz", "xvdaaa"] {
            assert_eq!(name(id(disk).unwrap()).as_deref(), Some(disk), "{disk}");
        }
    }

    #[test]
    fn other_names_and_partitions_are_not_disks() {
        for bad in ["", "xvd", "sda", "xvdA", "xvda1", "hda", "xvdzzzzz"] {
            assert_eq!(id(bad), None, "{bad}");
        }
        assert_eq!(name(51713), None, "xvda1 is a partition");
        assert_eq!(name(1 << 28 | 16 << 8 | 1), None);
        assert_eq!(name(768), None, "hda");
    }
}
