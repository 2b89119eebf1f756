//! Page tables: what each page of the address space may do.
//!
//! The boot code's identity map (the first 4 GiB in 2 MiB pages, writable and
//! executable) lasts only until the runtime knows the memory map. Then a
//! [`Layout`] lists what the guest uses on purpose (its RAM, the image's
//! sections, the pages Xen shares, the stacks and their guard pages) and
//! [`Mapper::build`] turns it into tables: `.text` R+X, `.rodata` R, all else
//! RW and never executable, page 0 and the guard pages absent, nothing else
//! mapped. 2 MiB pages where a whole aligned 2 MiB has one access, 4 KiB
//! pages where it has not. [`install`] switches to them; after that every
//! change goes through [`map`] (and [`write_alias`] for the debugger's
//! breakpoints), never through a writable window over code.
//!
//! Addresses are identity-mapped: a virtual address below
//! [`MAPPED_LIMIT`] is its physical address, so a table's address is what its
//! parent entry holds.

use x86_64::structures::paging::page_table::PageTableEntry;
use x86_64::structures::paging::{PageTable, PageTableFlags as Flags};
use x86_64::PhysAddr;

pub const PAGE_SIZE: u64 = 4096;
pub const HUGE_PAGE_SIZE: u64 = 2 << 20;

/// The identity map ends here: the heap and Xen's special pages lie below.
pub const MAPPED_LIMIT: u64 = 1 << 32;

/// What a mapped page allows. No variant is both writable and executable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    ReadExecute,
    ReadOnly,
    ReadWrite,
}

impl Access {
    fn flags(self) -> Flags {
        match self {
            Access::ReadExecute => Flags::PRESENT,
            Access::ReadOnly => Flags::PRESENT | Flags::NO_EXECUTE,
            Access::ReadWrite => Flags::PRESENT | Flags::WRITABLE | Flags::NO_EXECUTE,
        }
    }

    fn of(flags: Flags) -> Option<Access> {
        if !flags.contains(Flags::PRESENT) {
            None
        } else if flags.contains(Flags::WRITABLE) {
            Some(Access::ReadWrite)
        } else if flags.contains(Flags::NO_EXECUTE) {
            Some(Access::ReadOnly)
        } else {
            Some(Access::ReadExecute)
        }
    }
}

/// Pages `[start, end)` with a name for fault reports, and their access;
/// `None` keeps them unmapped (guard pages, page 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: u64,
    pub end: u64,
    pub access: Option<Access>,
    pub name: &'static str,
}

/// Spans a [`Layout`] holds at most: room for a RAM span and a heap span
/// for each of the runtime's 32 memory-map entries, and the image's.
pub const MAX_SPANS: usize = 80;

/// What the address space should look like: spans in order of precedence,
/// a later one overriding earlier ones where they overlap (RAM first, then
/// the image's sections over it, guard pages last).
#[derive(Clone, Debug)]
pub struct Layout {
    spans: [Span; MAX_SPANS],
    len: usize,
}

/// Why page tables could not be built or changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// More than [`MAX_SPANS`] spans.
    LayoutFull,
    /// The pool of page-table pages is used up.
    NoTables,
    /// The address is not below [`MAPPED_LIMIT`] (or the alias window).
    OutOfRange(u64),
    /// Page tables are not installed yet, or busy (a fault inside [`map`]).
    Busy,
}

impl core::fmt::Display for MapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MapError::LayoutFull => write!(f, "more than {MAX_SPANS} memory spans"),
            MapError::NoTables => f.write_str("out of page-table pages"),
            MapError::OutOfRange(addr) => write!(f, "{addr:#x} is outside the mapped range"),
            MapError::Busy => f.write_str("page tables not installed or in use"),
        }
    }
}

const NO_SPAN: Span = Span { start: 0, end: 0, access: None, name: "" };

impl Default for Layout {
    fn default() -> Self {
        Layout { spans: [NO_SPAN; MAX_SPANS], len: 0 }
    }
}

fn page_down(addr: u64) -> u64 {
    addr & !(PAGE_SIZE - 1)
}

fn page_up(addr: u64) -> u64 {
    addr.saturating_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}

impl Layout {
    /// Adds the pages that hold any of `[start, end)`, over what is there.
    pub fn push(
        &mut self,
        start: u64,
        end: u64,
        access: Option<Access>,
        name: &'static str,
    ) -> Result<(), MapError> {
        let slot = self.spans.get_mut(self.len).ok_or(MapError::LayoutFull)?;
        *slot = Span { start: page_down(start), end: page_up(end), access, name };
        self.len += 1;
        Ok(())
    }

    pub fn spans(&self) -> &[Span] {
        &self.spans[..self.len]
    }

    /// The span that decides what `addr` may do, if any.
    pub fn at(&self, addr: u64) -> Option<&Span> {
        self.spans().iter().rev().find(|s| (s.start..s.end).contains(&addr))
    }

    pub fn access_at(&self, addr: u64) -> Option<Access> {
        self.at(addr).and_then(|s| s.access)
    }

    /// Whether every page of `[start, end)` has the same access.
    fn uniform(&self, start: u64, end: u64) -> bool {
        self.spans()
            .iter()
            .all(|s| !(start + 1..end).contains(&s.start) && !(start + 1..end).contains(&s.end))
    }
}

/// Page tables under construction or in use, with the pool their pages come
/// from.
pub struct Mapper {
    root: *mut PageTable,
    pool: *mut PageTable,
    pool_len: usize,
    used: usize,
}

// SAFETY: the tables are reached only through the `Mapper` (behind a lock
// once installed).
unsafe impl Send for Mapper {}

/// The entry of `table` that translates `addr` at `level` (4: the root).
fn slot(table: *mut PageTable, addr: u64, level: u32) -> *mut PageTableEntry {
    let index = ((addr >> (12 + 9 * (level - 1))) & 511) as usize;
    // `PageTable` is `repr(C)` over its 512 entries; `index` is below 512.
    table.cast::<PageTableEntry>().wrapping_add(index)
}

impl Mapper {
    /// Empty tables whose pages come from `pool`.
    ///
    /// # Safety
    /// `pool` points at `len` page tables that nothing else uses for as long
    /// as the `Mapper` lives, at addresses that are also their physical
    /// addresses (the identity map; on the host, tests only walk them).
    pub unsafe fn new(pool: *mut PageTable, len: usize) -> Result<Self, MapError> {
        let mut mapper = Mapper { root: pool, pool, pool_len: len, used: 0 };
        mapper.root = mapper.table()?;
        Ok(mapper)
    }

    /// The top-level table's address, for CR3.
    pub fn root(&self) -> u64 {
        self.root as u64
    }

    /// Page-table pages taken from the pool.
    pub fn tables_used(&self) -> usize {
        self.used
    }

    fn table(&mut self) -> Result<*mut PageTable, MapError> {
        if self.used == self.pool_len {
            return Err(MapError::NoTables);
        }
        // SAFETY: `used < pool_len`: inside the pool, which is ours (`new`).
        let table = unsafe { self.pool.add(self.used) };
        self.used += 1;
        // SAFETY: as above; a page table is valid all-zero.
        unsafe { table.write(PageTable::new()) };
        Ok(table)
    }

    /// The entry for `addr` at `level` (2: a 2 MiB page's, 1: a 4 KiB
    /// page's), making the tables above it; a 2 MiB page in the way is split
    /// into 512 small ones with its access.
    fn entry(&mut self, addr: u64, level: u32) -> Result<*mut PageTableEntry, MapError> {
        let mut table = self.root;
        for l in (level + 1..=4).rev() {
            // SAFETY: `table` is one of the pool's tables (the root or one an
            // entry of ours points at).
            let entry = unsafe { &mut *slot(table, addr, l) };
            let flags = entry.flags();
            if !flags.contains(Flags::PRESENT) {
                let next = self.table()?;
                entry.set_addr(PhysAddr::new_truncate(next as u64), Flags::PRESENT | Flags::WRITABLE);
            } else if flags.contains(Flags::HUGE_PAGE) {
                let next = self.table()?;
                let base = entry.addr().as_u64();
                let small = flags - Flags::HUGE_PAGE;
                // SAFETY: `next` is a fresh table from the pool.
                for (i, e) in (0u64..).zip(unsafe { (*next).iter_mut() }) {
                    e.set_addr(PhysAddr::new_truncate(base + i * PAGE_SIZE), small);
                }
                entry.set_addr(PhysAddr::new_truncate(next as u64), Flags::PRESENT | Flags::WRITABLE);
            }
            table = entry.addr().as_u64() as *mut PageTable;
        }
        Ok(slot(table, addr, level))
    }

    /// Maps the 4 KiB page at `addr` to the physical page `phys` with
    /// `access`, or unmaps it. The caller flushes the TLB.
    pub fn set(&mut self, addr: u64, phys: u64, access: Option<Access>) -> Result<(), MapError> {
        let entry = self.entry(addr, 1)?;
        // SAFETY: `entry` points into one of our tables.
        let entry = unsafe { &mut *entry };
        match access {
            Some(a) => entry.set_addr(PhysAddr::new_truncate(page_down(phys)), a.flags()),
            None => entry.set_unused(),
        }
        Ok(())
    }

    /// Maps everything `layout` gives access to below [`MAPPED_LIMIT`],
    /// identity, into empty tables.
    pub fn build(&mut self, layout: &Layout) -> Result<(), MapError> {
        for chunk in (0..MAPPED_LIMIT).step_by(HUGE_PAGE_SIZE as usize) {
            if layout.uniform(chunk, chunk + HUGE_PAGE_SIZE) {
                if let Some(access) = layout.access_at(chunk) {
                    // SAFETY: `entry` points into one of our tables.
                    let entry = unsafe { &mut *self.entry(chunk, 2)? };
                    entry.set_addr(PhysAddr::new_truncate(chunk), access.flags() | Flags::HUGE_PAGE);
                }
                continue;
            }
            for page in (chunk..chunk + HUGE_PAGE_SIZE).step_by(PAGE_SIZE as usize) {
                if let Some(access) = layout.access_at(page) {
                    self.set(page, page, Some(access))?;
                }
            }
        }
        Ok(())
    }

    /// The physical address `addr` maps to, and its access; `None` if unmapped.
    pub fn translate(&self, addr: u64) -> Option<(u64, Access)> {
        let mut table = self.root;
        for level in (1..=4).rev() {
            // SAFETY: as in `entry`: one of our tables.
            let entry = unsafe { &*slot(table, addr, level) };
            let flags = entry.flags();
            let access = Access::of(flags)?;
            if level == 1 || flags.contains(Flags::HUGE_PAGE) {
                let offset = addr & ((PAGE_SIZE << (9 * (level - 1))) - 1);
                return Some((entry.addr().as_u64() + offset, access));
            }
            table = entry.addr().as_u64() as *mut PageTable;
        }
        None
    }
}

#[cfg(target_os = "none")]
pub use installed::*;

#[cfg(target_os = "none")]
mod installed {
    use super::*;
    use spin::{Mutex, Once};
    use x86_64::instructions::tlb;
    use x86_64::registers::control::{Cr3, Cr3Flags};
    use x86_64::registers::model_specific::{Efer, EferFlags};
    use x86_64::structures::paging::PhysFrame;
    use x86_64::VirtAddr;

    /// Page-table pages: a few tables on top, one per 2 MiB with mixed
    /// access (the image's, RAM's end, Xen's special pages) and the alias's.
    const POOL_TABLES: usize = 16;

    static mut POOL: [PageTable; POOL_TABLES] = [const { PageTable::new() }; POOL_TABLES];

    static MAPPER: Mutex<Option<Mapper>> = Mutex::new(None);
    static LAYOUT: Once<Layout> = Once::new();

    /// Where [`write_alias`] maps a page: just above the identity map.
    const ALIAS: u64 = MAPPED_LIMIT;

    /// Builds tables from `layout`, turns on `EFER.NXE` (and keeps `CR0.WP`
    /// on, as the boot code set it) and switches to them; returns how many
    /// table pages they took. Call once, early: the boot identity map goes.
    pub fn install(layout: Layout) -> Result<usize, MapError> {
        let mut slot = MAPPER.try_lock().ok_or(MapError::Busy)?;
        if slot.is_some() {
            return Err(MapError::Busy);
        }
        // SAFETY: the pool is used by this `Mapper` only (the slot was empty
        // and is locked), and lies in the identity-mapped image.
        let mut mapper = unsafe { Mapper::new(core::ptr::addr_of_mut!(POOL).cast(), POOL_TABLES)? };
        mapper.build(&layout)?;
        let frame = PhysFrame::from_start_address(PhysAddr::new_truncate(mapper.root()))
            .map_err(|_| MapError::Busy)?;
        // SAFETY: NX bits are only valid with EFER.NXE; setting it changes
        // nothing for the boot tables, which have none. The new tables map
        // the code running now (.text), its stack and data, as the layout
        // comes from the image's sections.
        unsafe {
            Efer::update(|f| f.insert(EferFlags::NO_EXECUTE_ENABLE));
            Cr3::write(frame, Cr3Flags::empty());
        }
        let used = mapper.tables_used();
        *slot = Some(mapper);
        LAYOUT.call_once(|| layout);
        Ok(used)
    }

    /// Whether [`install`] has switched to the built tables.
    pub fn installed() -> bool {
        LAYOUT.get().is_some()
    }

    /// The span of the installed layout holding `addr` (for fault reports).
    pub fn span_at(addr: u64) -> Option<Span> {
        LAYOUT.get()?.at(addr).copied()
    }

    /// Maps the pages holding `[start, end)` identity with `access`, or
    /// unmaps them (`None`), splitting 2 MiB pages as needed.
    pub fn map(start: u64, end: u64, access: Option<Access>) -> Result<(), MapError> {
        if page_up(end) > MAPPED_LIMIT {
            return Err(MapError::OutOfRange(end));
        }
        let mut slot = MAPPER.try_lock().ok_or(MapError::Busy)?;
        let mapper = slot.as_mut().ok_or(MapError::Busy)?;
        for page in (page_down(start)..page_up(end)).step_by(PAGE_SIZE as usize) {
            mapper.set(page, page, access)?;
            tlb::flush(VirtAddr::new_truncate(page));
        }
        Ok(())
    }

    /// What `addr` may be used for now; `None` if unmapped, or while the
    /// tables are being changed (a fault inside [`map`]).
    pub fn access(addr: u64) -> Option<Access> {
        let slot = MAPPER.try_lock()?;
        slot.as_ref()?.translate(addr).map(|(_, access)| access)
    }

    /// Writes `byte` at `addr` through a temporary writable, non-executable
    /// alias of its page, so code stays R+X while the debugger plants or
    /// removes a breakpoint (the way Linux's `text_poke` does).
    pub fn write_alias(addr: u64, byte: u8) -> Result<(), MapError> {
        let mut slot = MAPPER.try_lock().ok_or(MapError::Busy)?;
        let mapper = slot.as_mut().ok_or(MapError::Busy)?;
        let (phys, _) = mapper.translate(addr).ok_or(MapError::OutOfRange(addr))?;
        mapper.set(ALIAS, phys, Some(Access::ReadWrite))?;
        tlb::flush(VirtAddr::new_truncate(ALIAS));
        // SAFETY: ALIAS now maps `addr`'s page writable, and nothing else
        // uses ALIAS (the lock is held).
        unsafe { ((ALIAS + (addr & (PAGE_SIZE - 1))) as *mut u8).write_volatile(byte) };
        mapper.set(ALIAS, 0, None)?;
        tlb::flush(VirtAddr::new_truncate(ALIAS));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// A mote's layout as the runtime makes it: 32 MiB of RAM, the image at
    /// 1 MiB, a stack with a guard page in its .bss, a console page in the
    /// reserved area below 4 GiB, page 0 absent.
    fn layout() -> Layout {
        let mut l = Layout::default();
        l.push(0, 0xA0000, Some(Access::ReadWrite), "RAM").unwrap();
        l.push(MIB, 32 * MIB, Some(Access::ReadWrite), "RAM").unwrap();
        l.push(MIB, 0x140000, None, "image").unwrap();
        l.push(MIB, 0x12ac0a, Some(Access::ReadExecute), ".text").unwrap();
        l.push(0x12b000, 0x1321c8, Some(Access::ReadOnly), ".rodata").unwrap();
        l.push(0x133000, 0x140000, Some(Access::ReadWrite), ".data/.bss").unwrap();
        l.push(0x13a000, 0x13b000, None, "guard page of the boot stack").unwrap();
        l.push(0xfeffc000, 0xfeffd000, Some(Access::ReadWrite), "console ring").unwrap();
        l.push(0, PAGE_SIZE, None, "page 0").unwrap();
        l
    }

    fn built(layout: &Layout) -> Mapper {
        let pool: &'static mut [PageTable] = Vec::leak(vec![PageTable::new(); 16]);
        // SAFETY: the pool is leaked, ours alone; the test only walks it.
        let mut mapper = unsafe { Mapper::new(pool.as_mut_ptr(), pool.len()) }.unwrap();
        mapper.build(layout).unwrap();
        mapper
    }

    fn access(m: &Mapper, addr: u64) -> Option<Access> {
        m.translate(addr).map(|(phys, access)| {
            assert_eq!(phys, addr, "identity");
            access
        })
    }

    #[test]
    fn each_section_gets_its_access() {
        let m = built(&layout());
        assert_eq!(access(&m, MIB), Some(Access::ReadExecute));
        assert_eq!(access(&m, 0x12a123), Some(Access::ReadExecute));
        assert_eq!(access(&m, 0x12b000), Some(Access::ReadOnly));
        assert_eq!(access(&m, 0x132fff), Some(Access::ReadOnly), ".rodata's last page");
        assert_eq!(access(&m, 0x133000), Some(Access::ReadWrite));
        assert_eq!(access(&m, 0x200000), Some(Access::ReadWrite), "heap");
        assert_eq!(access(&m, 0xfeffc010), Some(Access::ReadWrite), "console ring");
    }

    #[test]
    fn page_0_guard_pages_and_holes_are_unmapped() {
        let m = built(&layout());
        for addr in
            [0, 8, 0xfff, 0x13a000, 0x13aff8, 0xA0000, 32 * MIB, 0xfeffb000, 0xfeffd000, MAPPED_LIMIT - 1]
        {
            assert_eq!(access(&m, addr), None, "{addr:#x}");
        }
        assert_eq!(access(&m, 0x1000), Some(Access::ReadWrite));
        assert_eq!(access(&m, 0x13b000), Some(Access::ReadWrite), "the stack above its guard");
    }

    #[test]
    fn no_page_is_both_writable_and_executable() {
        let m = built(&layout());
        let mut executable = 0;
        for page in (0..64 * MIB).chain(0xfe00_0000..0xff00_0000).step_by(PAGE_SIZE as usize) {
            if access(&m, page) == Some(Access::ReadExecute) {
                executable += 1;
            }
        }
        // Only .text: 0x100000..0x12b000.
        assert_eq!(executable, 0x2b);
        // And no entry at any level the walk skips: check the raw flags of every leaf.
        assert!(leaves(&m).all(|f| !f.contains(Flags::WRITABLE) || f.contains(Flags::NO_EXECUTE)));
    }

    /// The flags of every present leaf entry (4 KiB and 2 MiB pages).
    fn leaves(m: &Mapper) -> impl Iterator<Item = Flags> + '_ {
        fn walk(table: *const PageTable, level: u32, out: &mut Vec<Flags>) {
            // SAFETY: the tests' tables, from the leaked pool.
            for e in unsafe { (*table).iter() } {
                let f = e.flags();
                if !f.contains(Flags::PRESENT) {
                    continue;
                }
                if level == 1 || f.contains(Flags::HUGE_PAGE) {
                    out.push(f);
                } else {
                    walk(e.addr().as_u64() as *const PageTable, level - 1, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(m.root, 4, &mut out);
        out.into_iter()
    }

    #[test]
    fn uniform_two_mib_spans_take_one_entry() {
        let m = built(&layout());
        // PML4, PDPT, the PDs of GiB 0 and 3, and 4 KiB tables only for the
        // image's 2 MiB, RAM's first (page 0, the hole below 1 MiB) and the
        // console's.
        assert_eq!(m.tables_used(), 1 + 1 + 2 + 2);
        assert!(leaves(&m).filter(|f| f.contains(Flags::HUGE_PAGE)).count() == 15);
    }

    #[test]
    fn remapping_a_page_inside_a_2_mib_page_splits_it() {
        let mut m = built(&layout());
        m.set(0x400000, 0x400000, Some(Access::ReadOnly)).unwrap();
        assert_eq!(access(&m, 0x400000), Some(Access::ReadOnly));
        assert_eq!(access(&m, 0x401000), Some(Access::ReadWrite), "the rest of the 2 MiB keeps its access");
        assert_eq!(access(&m, 0x3ff000), Some(Access::ReadWrite));
        m.set(0x400000, 0, None).unwrap();
        assert_eq!(access(&m, 0x400000), None);
    }

    #[test]
    fn an_alias_maps_another_physical_page() {
        let mut m = built(&layout());
        m.set(MAPPED_LIMIT, 0x101000, Some(Access::ReadWrite)).unwrap();
        assert_eq!(m.translate(MAPPED_LIMIT + 5), Some((0x101005, Access::ReadWrite)));
        assert_eq!(access(&m, 0x101000), Some(Access::ReadExecute), "the code itself stays R+X");
    }

    #[test]
    fn a_full_pool_or_layout_is_an_error_not_a_crash() {
        let pool: &'static mut [PageTable] = Vec::leak(vec![PageTable::new(); 3]);
        // SAFETY: as in `built`.
        let mut m = unsafe { Mapper::new(pool.as_mut_ptr(), pool.len()) }.unwrap();
        assert_eq!(m.build(&layout()), Err(MapError::NoTables));
        let mut l = Layout::default();
        for _ in 0..MAX_SPANS {
            l.push(0, PAGE_SIZE, None, "x").unwrap();
        }
        assert_eq!(l.push(0, PAGE_SIZE, None, "x"), Err(MapError::LayoutFull));
    }

    #[test]
    fn spans_are_widened_to_whole_pages_and_named() {
        let l = layout();
        assert_eq!(l.at(0x12afff).map(|s| s.name), Some(".text"), ".text's last page");
        assert_eq!(l.at(0x12b001).map(|s| s.name), Some(".rodata"));
        assert_eq!(l.at(0x13a010).map(|s| s.name), Some("guard page of the boot stack"));
        assert_eq!(l.at(0x10).map(|s| (s.name, s.access)), Some(("page 0", None)));
    }
}
