//! The guest's memory map (`hvm_memmap_table_entry` in
//! `arch-x86/hvm/start_info.h`) and the spans of it the heap may use.

use core::fmt;

/// Memory map entry types (`XEN_HVM_MEMMAP_TYPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Usable RAM: the only kind the heap takes.
    Ram,
    /// Firmware's or Xen's own.
    Reserved,
    /// ACPI tables, reclaimable once read.
    Acpi,
    /// ACPI non-volatile storage.
    Nvs,
    /// Memory found faulty.
    Unusable,
    /// A type this runtime does not know, kept so that it can be reported.
    Other(u32),
}

impl From<u32> for Kind {
    fn from(ty: u32) -> Self {
        match ty {
            1 => Kind::Ram,
            2 => Kind::Reserved,
            3 => Kind::Acpi,
            4 => Kind::Nvs,
            5 => Kind::Unusable,
            other => Kind::Other(other),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Ram => f.write_str("RAM"),
            Kind::Reserved => f.write_str("reserved"),
            Kind::Acpi => f.write_str("ACPI"),
            Kind::Nvs => f.write_str("ACPI NVS"),
            Kind::Unusable => f.write_str("unusable"),
            Kind::Other(t) => write!(f, "type {t}"),
        }
    }
}

/// One region of guest-physical memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Guest-physical address of the first byte.
    pub start: u64,
    /// Bytes, as Xen reports them (not trusted to stay in range: see [`Region::end`]).
    pub size: u64,
    /// What the region is for.
    pub kind: Kind,
}

impl Region {
    /// One past the last byte (saturating for hostile sizes).
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.size)
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:#018x}-{:#018x}] {} ({} KiB)",
            self.start,
            self.end().saturating_sub(1),
            self.kind,
            self.size / 1024
        )
    }
}

/// How many entries are kept; the rest are counted in [`MemoryMap::dropped`].
pub const MAX_REGIONS: usize = 32;

/// The memory map, copied out of Xen's table before the heap reuses memory.
#[derive(Debug, Clone, Default)]
pub struct MemoryMap {
    regions: heapless::Vec<Region, MAX_REGIONS>,
    dropped: usize,
}

const PAGE: u64 = 4096;

impl MemoryMap {
    /// Copies `(addr, size, type)` entries; zero-sized ones are skipped.
    pub fn new(entries: impl IntoIterator<Item = (u64, u64, u32)>) -> Self {
        let mut map = MemoryMap::default();
        for (start, size, ty) in entries {
            if size == 0 {
                continue;
            }
            if map.regions.push(Region { start, size, kind: Kind::from(ty) }).is_err() {
                map.dropped += 1;
            }
        }
        map
    }

    /// The regions kept, in Xen's order.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// Entries that did not fit in [`MAX_REGIONS`] and were not used.
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    /// Total bytes of RAM.
    pub fn ram_bytes(&self) -> u64 {
        self.regions.iter().filter(|r| r.kind == Kind::Ram).map(|r| r.size).sum()
    }

    /// Page-aligned `[start, end)` spans of RAM that lie at or above
    /// `used_end` (everything below it, the image included, is taken) and
    /// below `limit` (the end of what is mapped).
    pub fn free_spans(&self, used_end: u64, limit: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.regions.iter().filter(|r| r.kind == Kind::Ram).filter_map(move |r| {
            let start = align_up(r.start.max(used_end))?;
            let end = r.end().min(limit) & !(PAGE - 1);
            (start < end).then_some((start, end))
        })
    }
}

fn align_up(x: u64) -> Option<u64> {
    Some(x.checked_add(PAGE - 1)? & !(PAGE - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What xl gives a 4 MiB PVH guest: low RAM, RAM from 1 MiB, a reserved hole.
    fn xl_like() -> MemoryMap {
        MemoryMap::new([(0, 0xA0000, 1), (0x10_0000, 0x30_0000, 1), (0xFC00_0000, 0x100_0000, 2)])
    }

    #[test]
    fn heap_spans_skip_image_and_reserved() {
        let map = xl_like();
        assert_eq!(map.ram_bytes(), 0xA0000 + 0x30_0000);
        let spans: Vec<_> = map.free_spans(0x12_3456, 1 << 32).collect();
        assert_eq!(spans, [(0x12_4000, 0x40_0000)]);
    }

    #[test]
    fn limit_and_unaligned_ends_are_respected() {
        let map = MemoryMap::new([(0x10_0000, 0x1_0000_0800, 1)]);
        let spans: Vec<_> = map.free_spans(0x20_0000, 1 << 32).collect();
        assert_eq!(spans, [(0x20_0000, 1 << 32)]);
    }

    #[test]
    fn hostile_entries_do_not_overflow() {
        let map = MemoryMap::new([(u64::MAX - 10, u64::MAX, 1), (0x1000, 0, 1)]);
        assert_eq!(map.regions().len(), 1);
        assert_eq!(map.free_spans(0, u64::MAX).count(), 0);
    }

    #[test]
    fn too_many_entries_are_counted_not_lost_silently() {
        let map = MemoryMap::new((0..40u64).map(|i| (i << 20, 4096, 1)));
        assert_eq!(map.regions().len(), MAX_REGIONS);
        assert_eq!(map.dropped(), 8);
    }

    #[test]
    fn display_names_range_and_kind() {
        let r = Region { start: 0x10_0000, size: 0x30_0000, kind: Kind::Ram };
        assert_eq!(r.to_string(), "[0x0000000000100000-0x00000000003fffff] RAM (3072 KiB)");
    }
}
