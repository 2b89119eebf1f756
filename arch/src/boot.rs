//! The PVH entry: from Xen's 32-bit protected mode to Rust in long mode.
//!
//! Xen's PVH ABI (`docs/misc/pvh.html`, `arch-x86/hvm/start_info.h`) enters
//! the image at the address in `XEN_ELFNOTE_PHYS32_ENTRY` with paging off,
//! flat 32-bit segments and `ebx` holding the physical address of
//! `hvm_start_info`. The code below checks its magic, identity-maps the first
//! 4 GiB with 2 MiB pages, enables long mode and calls `mote_start(ebx)`,
//! which the runtime defines. That map is writable and executable throughout;
//! the runtime replaces it with [`crate::paging`]'s as soon as it has read the
//! memory map, giving the image's sections what [`push_image`] says.

pub use pvh::start_info::reader::StartInfoReader;
pub use pvh::start_info::{MemmapTableEntry, MemmapType, StartInfo};

use crate::paging::{Access, Layout, MapError};

extern "C" {
    /// The 32-bit entry point, in the assembly below.
    fn pvh_start32() -> !;
}

pvh::xen_elfnote_phys32_entry!(pvh_start32);

/// Size of the boot stack, which stays the stack of the whole (single-CPU)
/// kernel.
pub const STACK_SIZE: usize = 64 * 1024;

core::arch::global_asm!(
    r#"
    .section .text.boot, "ax"
    .code32
    .globl pvh_start32
pvh_start32:
    cli
    cld
    cmpl ${magic}, (%ebx)
    jne 9f

    /* pml4[0] -> pdpt; pdpt[0..4] -> the four page directories. */
    movl $mote_boot_pdpt + 0x3, mote_boot_pml4
    movl $mote_boot_pd + 0x3, %eax
    xorl %ecx, %ecx
1:  movl %eax, mote_boot_pdpt(,%ecx,8)
    addl $0x1000, %eax
    incl %ecx
    cmpl $4, %ecx
    jb 1b

    /* pd[i] = i * 2 MiB | PS | RW | P, for the first 4 GiB. */
    xorl %ecx, %ecx
2:  movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax
    movl %eax, mote_boot_pd(,%ecx,8)
    incl %ecx
    cmpl $2048, %ecx
    jb 2b

    movl %cr4, %eax
    orl $0x20, %eax                 /* CR4.PAE */
    movl %eax, %cr4
    movl $mote_boot_pml4, %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx          /* IA32_EFER */
    rdmsr
    orl $0x100, %eax                /* EFER.LME */
    wrmsr
    movl %cr0, %eax
    orl $0x80010001, %eax           /* CR0.PG | CR0.WP | CR0.PE */
    movl %eax, %cr0

    lgdt mote_boot_gdt_ptr
    ljmp $0x08, $3f

9:  /* Not started by a PVH loader: say so on the debug port and stop. */
    movl $mote_boot_bad_magic, %esi
8:  movb (%esi), %al
    testb %al, %al
    jz 7f
    outb %al, $0xe9
    incl %esi
    jmp 8b
7:  hlt
    jmp 7b

    .code64
3:  movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movabsq $mote_boot_stack_top, %rsp
    xorl %ebp, %ebp                 /* ends the frame-pointer chain */
    movl %ebx, %edi
    call mote_start
    ud2

    .section .rodata.boot, "a"
    .balign 8
mote_boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff        /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff        /* 0x10: data */
mote_boot_gdt_ptr:
    .word mote_boot_gdt_ptr - mote_boot_gdt - 1
    .quad mote_boot_gdt
mote_boot_bad_magic:
    .asciz "mote: not entered through PVH (bad hvm_start_info magic)\n"

    .section .bss.boot, "aw", @nobits
    .balign 4096
mote_boot_pml4: .skip 4096
mote_boot_pdpt: .skip 4096
mote_boot_pd:   .skip 4096 * 4
    /* Never mapped (see `push_image`): an overflow faults here. */
    .balign 4096
mote_boot_stack_guard:
    .skip 4096
mote_boot_stack_bottom:
    .skip {stack_size}
mote_boot_stack_top:
    "#,
    magic = const pvh::start_info::START_MAGIC_VALUE,
    stack_size = const STACK_SIZE,
    options(att_syntax)
);

extern "C" {
    static __image_start: u8;
    static __image_end: u8;
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __data_start: u8;
    static __data_end: u8;
    static mote_boot_stack_guard: u8;
    static mote_boot_stack_bottom: u8;
}

/// The boot stack's guard page, below its lowest address.
pub fn stack_guard() -> u64 {
    core::ptr::addr_of!(mote_boot_stack_guard) as u64
}

/// Adds the image to `layout`: nothing mapped but its sections (arch/mote.ld
/// starts each on a page of its own), `.text` R+X, `.rodata` R, `.data` and
/// `.bss` RW, the stacks named and their guard pages unmapped.
pub fn push_image(layout: &mut Layout) -> Result<(), MapError> {
    use core::ptr::addr_of;
    let image = (addr_of!(__image_start) as u64, addr_of!(__image_end) as u64);
    let text = (addr_of!(__text_start) as u64, addr_of!(__text_end) as u64);
    let rodata = (addr_of!(__rodata_start) as u64, addr_of!(__rodata_end) as u64);
    let data = (addr_of!(__data_start) as u64, addr_of!(__data_end) as u64);
    let (guard, stack) = (addr_of!(mote_boot_stack_guard) as u64, addr_of!(mote_boot_stack_bottom) as u64);
    layout.push(image.0, image.1, None, "image")?;
    layout.push(text.0, text.1, Some(Access::ReadExecute), ".text")?;
    layout.push(rodata.0, rodata.1, Some(Access::ReadOnly), ".rodata")?;
    layout.push(data.0, data.1, Some(Access::ReadWrite), ".data/.bss")?;
    layout.push(stack, stack + STACK_SIZE as u64, Some(Access::ReadWrite), "the boot stack")?;
    layout.push(guard, stack, None, "the boot stack's guard page")?;
    crate::gdt::push_stacks(layout)
}

/// The physical range `[start, end)` the loaded image occupies, `.bss`, page
/// tables and stack included.
pub fn image_range() -> (u64, u64) {
    (core::ptr::addr_of!(__image_start) as u64, core::ptr::addr_of!(__image_end) as u64)
}
