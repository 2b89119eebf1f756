//! The interrupt descriptor table and its entry stubs: the 32 CPU
//! exceptions and one external interrupt vector.
//!
//! Every stub pushes a uniform frame (error code, vector, the 15 general
//! registers; see [`ExceptionFrame`]) and calls `mote_arch_exception`.
//! Exceptions go to `exception::dispatch`; [`EXTERNAL_VECTOR`] goes
//! to the handler set with [`set_external_handler`] and returns. Double
//! faults, NMIs and machine checks run on the IST stack, so a kernel stack
//! overflow is still reported.

use crate::exception::ExceptionFrame;
use crate::gdt::FATAL_IST;
use core::sync::atomic::{AtomicUsize, Ordering};
use spin::Once;
use x86_64::instructions::segmentation::{Segment, CS};
use x86_64::instructions::tables::lidt;
use x86_64::structures::DescriptorTablePointer;
use x86_64::VirtAddr;

/// One 16-byte long-mode gate descriptor (Intel SDM vol. 3, 6.14.1).
#[derive(Clone, Copy, Default)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    attributes: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

/// Present, DPL 0, 64-bit interrupt gate (interrupts stay off in handlers).
const INTERRUPT_GATE: u8 = 0x8E;

impl Gate {
    fn new(handler: u64, ist: u16) -> Self {
        Gate {
            offset_low: handler as u16,
            selector: CS::get_reg().0,
            ist: ist as u8,
            attributes: INTERRUPT_GATE,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static IDT: Once<Idt> = Once::new();

/// Vectors that get the separate IST stack: NMI, double fault, machine check.
fn ist_for(vector: usize) -> u16 {
    match vector {
        2 | 8 | 18 => FATAL_IST,
        _ => 0,
    }
}

/// Stubs are 16 bytes apart, starting at `mote_isr_base`.
const STUB_STRIDE: u64 = 16;

/// The one vector for interrupts from outside the CPU (the hypervisor's
/// event upcall); above the exceptions and the legacy PIC range.
pub const EXTERNAL_VECTOR: u8 = 0xF0;

extern "C" {
    static mote_isr_base: u8;
    static mote_isr_external: u8;
}

/// The external interrupt handler, as a `fn(&mut ExceptionFrame)` address (0: none).
static EXTERNAL_HANDLER: AtomicUsize = AtomicUsize::new(0);

/// Sets what runs, with interrupts disabled, when [`EXTERNAL_VECTOR`] fires.
/// It gets the interrupted code's state (a debugger may stop it there) and
/// must not block or take locks the interrupted code may hold.
pub fn set_external_handler(handler: fn(&mut ExceptionFrame)) {
    EXTERNAL_HANDLER.store(handler as usize, Ordering::Release);
}

pub(crate) fn init() {
    let idt = IDT.call_once(|| {
        let base = core::ptr::addr_of!(mote_isr_base) as u64;
        let mut gates = [Gate::default(); 256];
        for (vector, gate) in gates.iter_mut().enumerate().take(32) {
            *gate = Gate::new(base + vector as u64 * STUB_STRIDE, ist_for(vector));
        }
        let external = core::ptr::addr_of!(mote_isr_external) as u64;
        gates[usize::from(EXTERNAL_VECTOR)] = Gate::new(external, 0);
        Idt(gates)
    });
    let pointer = DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        // Canonical as it is (the image is in the identity-mapped low 4 GiB), and without
        // `VirtAddr::new`'s panic path.
        base: VirtAddr::new_truncate(core::ptr::from_ref(idt) as u64),
    };
    // SAFETY: the IDT lives in a static and every present gate points at a
    // stub below that saves state and calls `dispatch`.
    unsafe { lidt(&pointer) };
}

/// Called by the stubs with the saved state.
#[no_mangle]
extern "C" fn mote_arch_exception(frame: &mut ExceptionFrame) {
    if frame.vector == u64::from(EXTERNAL_VECTOR) {
        let handler = EXTERNAL_HANDLER.load(Ordering::Acquire);
        if handler != 0 {
            // SAFETY: only `set_external_handler` stores here, from a
            // `fn(&mut ExceptionFrame)`.
            let handler: fn(&mut ExceptionFrame) = unsafe { core::mem::transmute(handler) };
            handler(frame);
        }
        return;
    }
    crate::exception::dispatch(frame);
}

core::arch::global_asm!(
    r#"
    .section .text.mote_isr, "ax"
    .balign 16
    .globl mote_isr_base
mote_isr_base:
    .set mote_isr_vector, 0
    .rept 32
    .balign 16
    /* The CPU pushes an error code only for these vectors; push a zero for the rest. */
    .if (mote_isr_vector == 8) || (mote_isr_vector == 10) || (mote_isr_vector == 11) || (mote_isr_vector == 12) || (mote_isr_vector == 13) || (mote_isr_vector == 14) || (mote_isr_vector == 17) || (mote_isr_vector == 21) || (mote_isr_vector == 29) || (mote_isr_vector == 30)
    .else
    pushq $0
    .endif
    pushq $mote_isr_vector
    jmp mote_isr_common
    .set mote_isr_vector, mote_isr_vector + 1
    .endr

    .balign 16
    .globl mote_isr_external
mote_isr_external:
    pushq $0
    pushq ${external}
    jmp mote_isr_common

mote_isr_common:
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    /* 22 words on a 16-byte aligned stack: still aligned for the call. */
    movq %rsp, %rdi
    call mote_arch_exception
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp
    iretq
    "#,
    external = const EXTERNAL_VECTOR,
    options(att_syntax)
);
