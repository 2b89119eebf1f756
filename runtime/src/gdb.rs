//! A gdb remote stub inside the guest, on when the command line has
//! `gdb=wait` (stop before the app's `main` until a debugger connects and
//! continues) or `gdb=on` (run, and stop when the app crashes).
//!
//! The stub speaks gdb's remote protocol (the `gdbstub` crate) over a vchan
//! ([`mote_xen::vchan`]) advertised at `data/mote-gdb` in the domain's
//! xenstore directory; `vchan-socket-proxy`, one of Xen's own tools, turns
//! it into a Unix socket in dom0 (`cargo xtask debug` does that and carries
//! it to gdb on the host).
//!
//! The stub runs inside the CPU exception handler with interrupts off, so
//! the whole domain is stopped while gdb looks at it: `int3` (gdb's
//! breakpoints, the `gdb=wait` stop, a panic) and the single-step trap
//! enter it, and so does any other exception, which gdb sees as a signal
//! (SIGSEGV for a page fault…) before the crash report. While stopped it
//! polls the vchan's event channel (`SCHEDOP_poll`), which works with
//! interrupts off. While the code runs, gdb's Ctrl-C raises that event
//! channel, and the upcall ([`on_upcall`]) stops the interrupted code with
//! SIGINT.

use crate::events;
use crate::Instant;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use core::time::Duration;
use gdbstub::common::Signal;
use gdbstub::conn::Connection;
use gdbstub::stub::state_machine::GdbStubStateMachine;
use gdbstub::stub::{DisconnectReason, GdbStub, SingleThreadStopReason};
use gdbstub::target::ext::base::singlethread::{
    SingleThreadBase, SingleThreadResume, SingleThreadResumeOps, SingleThreadSingleStep,
    SingleThreadSingleStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{Breakpoints, BreakpointsOps, SwBreakpoint, SwBreakpointOps};
use gdbstub::target::{Target, TargetError, TargetResult};
use gdbstub_arch::x86::reg::X86_64CoreRegs;
use gdbstub_arch::x86::X86_64_SSE;
use mote_arch::exception::{ExceptionFrame, RFLAGS_TF, VECTOR_BREAKPOINT, VECTOR_DEBUG};
use mote_arch::paging;
use mote_xen::event::{self, Port};
use mote_xen::gnttab::{alloc_shared_pages, Access};
use mote_xen::sched::{self, ShutdownReason};
use mote_xen::vchan::{self, Client, Server};
use mote_xen::DomId;
use spin::Mutex;

/// The vchan's xenstore directory, relative to the domain's.
pub const XENSTORE_PATH: &str = "data/mote-gdb";
/// How long one poll of the event channel sleeps at most; the client's
/// state (connected, gone) is looked at in between.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// `int3`.
const INT3: u8 = 0xCC;

/// What the command line asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Wait,
    On,
}

/// Everything the stub keeps between stops.
struct Stub {
    machine: Option<GdbStubStateMachine<'static, Cpu, Link>>,
    cpu: Cpu,
    /// The vchan's event channel (the machine owns the rest of the link).
    port: Port,
}

static STUB: Mutex<Option<Stub>> = Mutex::new(None);
/// Set while a stub is installed, so that panics know to stop in it.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Set while the stub holds the CPU.
static STOPPED: AtomicBool = AtomicBool::new(false);
/// Breakpoints gdb may set at once. A fixed table: the stub allocates
/// nothing while stopped, as the stopped code may hold the heap's lock.
const MAX_BREAKPOINTS: usize = 64;
/// Room for the largest packet the stub sends (gdbstub's packet buffer is
/// 4096 bytes; a reply of hex-encoded memory fits in it).
const OUT_CAPACITY: usize = 8192;
/// The signal the next `int3` that is not a gdb breakpoint reports (0:
/// SIGTRAP), set by [`stop_for`].
static NEXT_SIGNAL: AtomicU8 = AtomicU8::new(0);

/// Why the stub could not start.
#[derive(Debug)]
enum InitError {
    Mode(&'static str),
    NoMemory,
    Grant(mote_xen::gnttab::GrantError),
    NoGrantTable,
    Event(mote_xen::XenError),
    Store(mote_xen::xenstore::XsError),
    NoStore,
    Stub,
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::Mode(v) => write!(f, "gdb={v:?}: expected gdb=wait or gdb=on"),
            InitError::NoMemory => f.write_str("no memory for the vchan page"),
            InitError::Grant(e) => write!(f, "granting the vchan page: {e}"),
            InitError::NoGrantTable => f.write_str("no grant table"),
            InitError::Event(e) => write!(f, "event channel: {e}"),
            InitError::Store(e) => write!(f, "advertising the vchan in xenstore: {e}"),
            InitError::NoStore => f.write_str("no xenstore connection"),
            InitError::Stub => f.write_str("gdbstub refused the target"),
        }
    }
}

/// Reads `gdb=` and, when asked, sets up the stub; with `gdb=wait` it stops
/// here until a debugger continues. Needs the grant table and xenstore.
pub(crate) fn init(value: Option<&'static str>) {
    let mode = match value {
        None => return,
        Some("wait") => Ok(Mode::Wait),
        Some("on") => Ok(Mode::On),
        Some(other) => Err(InitError::Mode(other)),
    };
    let started = mode.and_then(|mode| start().map(|domid| (mode, domid)));
    match started {
        Ok((mode, domid)) => {
            log::info!(
                "gdb: stub listening on vchan /local/domain/{}/{XENSTORE_PATH} (in dom0: \
                 vchan-socket-proxy {0} /local/domain/{0}/{XENSTORE_PATH} SOCKET)",
                domid.0
            );
            if mode == Mode::Wait {
                crate::println!("gdb: waiting for the debugger");
                stop_for(Signal::SIGTRAP);
            }
        }
        Err(e) => log::error!("gdb: no debugger: {e}"),
    }
}

/// Shares a vchan page with dom0, advertises it and installs the stub.
fn start() -> Result<DomId, InitError> {
    let page = alloc_shared_pages(1).and_then(|p| p.first().copied()).ok_or(InitError::NoMemory)?;
    // SAFETY: the page is fresh, zeroed, page-aligned and never freed (see
    // `alloc_shared_pages`); `vchan::Interface` is one page of atomics and
    // shared bytes, valid for any contents.
    let intf: &'static vchan::Interface = unsafe { &*(page as *const vchan::Interface) };
    let server = Server::new(intf);
    let gfn = mote_xen::Gfn::containing(page as u64);
    let dom0 = DomId(0);
    let grant = crate::grants::with(|gt| gt.grant_access(dom0, gfn, Access::ReadWrite))
        .ok_or(InitError::NoGrantTable)?
        .map_err(InitError::Grant)?;
    let port = event::alloc_unbound(dom0).map_err(InitError::Event)?;
    let domid = crate::xenstore::with(|xs| {
        use mote_xen::xenstore::Store;
        let domid = xs.domid()?;
        xs.write(&alloc::format!("{XENSTORE_PATH}/event-channel"), alloc::format!("{}", port.0).as_bytes())?;
        // Written last: the client starts when it sees the ring reference.
        xs.write(&alloc::format!("{XENSTORE_PATH}/ring-ref"), alloc::format!("{}", grant.0).as_bytes())?;
        Ok(domid)
    })
    .ok_or(InitError::NoStore)?
    .map_err(InitError::Store)?;

    let link = Link { server, port, out: Vec::with_capacity(OUT_CAPACITY) };
    let cpu = Cpu { frame: ExceptionFrame::default(), resume: None, breakpoints: heapless::Vec::new() };
    let mut stub = Stub { machine: None, cpu, port };
    let machine = GdbStub::new(link).run_state_machine(&mut stub.cpu).map_err(|_| InitError::Stub)?;
    stub.machine = Some(machine);
    *STUB.lock() = Some(stub);
    mote_arch::exception::set_debug_handler(on_exception);
    ACTIVE.store(true, Ordering::SeqCst);
    Ok(domid)
}

/// Whether the stub holds the CPU (the rest of the kernel must not take
/// locks then: the stopped code may hold them).
pub(crate) fn stopped() -> bool {
    STOPPED.load(Ordering::Relaxed)
}

/// Whether a debugger stub is installed.
pub(crate) fn active() -> bool {
    ACTIVE.load(Ordering::SeqCst)
}

/// Stops in the debugger (if one is installed) as if `signal` arrived here.
pub(crate) fn stop_for(signal: Signal) {
    if active() {
        NEXT_SIGNAL.store(signal.0, Ordering::SeqCst);
        x86_64::instructions::interrupts::int3();
    }
}

/// Stops in the debugger (if one is installed) where a panic happened.
pub(crate) fn stop_on_panic() {
    stop_for(Signal::SIGABRT);
}

/// What a stop looks like to gdb, and whether the code may go on after it.
fn stop_reason(cpu: &mut Cpu) -> (SingleThreadStopReason<u64>, bool) {
    match cpu.frame.vector {
        VECTOR_BREAKPOINT => {
            // `int3` traps: RIP is past it. One of gdb's breakpoints is
            // reported at its address, where gdb expects the PC.
            let at = cpu.frame.rip.wrapping_sub(1);
            if cpu.breakpoint(at).is_some() {
                cpu.frame.rip = at;
                return (SingleThreadStopReason::SwBreak(()), true);
            }
            let signal = match NEXT_SIGNAL.swap(0, Ordering::SeqCst) {
                0 => Signal::SIGTRAP,
                n => Signal(n),
            };
            (SingleThreadStopReason::Signal(signal), true)
        }
        VECTOR_DEBUG if cpu.frame.rflags & RFLAGS_TF != 0 => {
            cpu.frame.rflags &= !RFLAGS_TF;
            (SingleThreadStopReason::DoneStep, true)
        }
        vector => (SingleThreadStopReason::Signal(signal_of(vector)), false),
    }
}

/// The Unix signal gdb shows for a fatal CPU exception.
fn signal_of(vector: u64) -> Signal {
    match vector {
        0 | 16 | 19 => Signal::SIGFPE,
        6 => Signal::SIGILL,
        17 => Signal::SIGBUS,
        1 | 3 => Signal::SIGTRAP,
        _ => Signal::SIGSEGV,
    }
}

/// The debug handler: every CPU exception comes here first.
fn on_exception(frame: &mut ExceptionFrame) -> bool {
    // A fault inside the stub itself (the lock is held) is left to the
    // crash path rather than deadlocking.
    let Some(mut guard) = STUB.try_lock() else { return false };
    let Some(stub) = guard.as_mut() else { return false };
    stub.cpu.frame = *frame;
    let (reason, resumable) = stop_reason(&mut stub.cpu);
    stop(&mut guard, frame, Some(reason), resumable)
}

/// Called by every event upcall, with the interrupted code's state: bytes
/// gdb sent while the code runs can only be a Ctrl-C, which stops it here.
pub(crate) fn on_upcall(frame: &mut ExceptionFrame) {
    if !active() {
        return;
    }
    let Some(mut guard) = STUB.try_lock() else { return };
    let Some(stub) = guard.as_mut() else { return };
    if !events::take_fired(stub.port) {
        return;
    }
    let Some(GdbStubStateMachine::Running(mut running)) = stub.machine.take() else {
        return;
    };
    let machine = loop {
        running.borrow_conn().server.want_data();
        let byte = match running.borrow_conn().try_read_byte() {
            Ok(Some(byte)) => byte,
            Ok(None) => break Ok(running.into()),
            Err(e) => break Err(SessionError::Link(e)),
        };
        match running.incoming_data(&mut stub.cpu, byte) {
            Ok(GdbStubStateMachine::Running(still)) => running = still,
            other => break other.map_err(SessionError::Stub),
        }
    };
    match machine {
        Ok(machine @ GdbStubStateMachine::CtrlCInterrupt(_)) => {
            stub.machine = Some(machine);
            stub.cpu.frame = *frame;
            stop(&mut guard, frame, None, true);
        }
        Ok(machine) => stub.machine = Some(machine),
        Err(e) => fail(&mut guard, e),
    }
}

/// Holds the CPU while gdb looks at it: `report` (if any) tells a running
/// session why; returns whether the code resumes (with `frame` as gdb left
/// it) rather than going on to the crash report.
fn stop(
    guard: &mut Option<Stub>,
    frame: &mut ExceptionFrame,
    report: Option<SingleThreadStopReason<u64>>,
    resumable: bool,
) -> bool {
    let Some(stub) = guard.as_mut() else { return false };
    stub.cpu.resume = None;
    STOPPED.store(true, Ordering::Relaxed);
    let outcome = session(stub, report, resumable);
    STOPPED.store(false, Ordering::Relaxed);
    match outcome {
        Ok(Outcome::Resume) => {
            *frame = stub.cpu.frame;
            if stub.cpu.resume == Some(Resume::Step) {
                frame.rflags |= RFLAGS_TF;
            }
            true
        }
        Ok(Outcome::Crash) => false,
        Err(e) => {
            fail(guard, e);
            false
        }
    }
}

/// Turns debugging off after the session broke.
fn fail(guard: &mut Option<Stub>, e: SessionError) {
    crate::console::print_fatal(format_args!("gdb: stub failed ({e}); debugging is off\n"));
    ACTIVE.store(false, Ordering::SeqCst);
    *guard = None;
}

/// What happens after a stop.
enum Outcome {
    /// Back to the interrupted code.
    Resume,
    /// The stop was a crash: on to the crash report.
    Crash,
}

type StubError = gdbstub::stub::GdbStubError<&'static str, LinkError>;

/// Why a session ended without resuming.
enum SessionError {
    Stub(StubError),
    Link(LinkError),
}

impl From<StubError> for SessionError {
    fn from(e: StubError) -> Self {
        SessionError::Stub(e)
    }
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Stub(e) => write!(f, "{e}"),
            SessionError::Link(e) => write!(f, "{e}"),
        }
    }
}

/// Talks with gdb until it resumes the CPU (or gives up on a crash).
fn session(
    stub: &mut Stub,
    report: Option<SingleThreadStopReason<u64>>,
    resumable: bool,
) -> Result<Outcome, SessionError> {
    let cpu = &mut stub.cpu;
    // Only a failed session leaves no machine, and that removes the stub.
    let Some(mut machine) = stub.machine.take() else { return Ok(Outcome::Crash) };
    // Tell a running session's gdb why we stopped; a session that is idle
    // (no gdb yet, or after a detach) answers gdb's `?` when it connects.
    if let Some(reason) = report {
        if let GdbStubStateMachine::Running(running) = machine {
            machine = running.report_stop(cpu, reason)?;
        }
    }
    loop {
        machine = match machine {
            GdbStubStateMachine::Idle(mut idle) => {
                let byte = idle.borrow_conn().read_byte().map_err(SessionError::Link)?;
                idle.incoming_data(cpu, byte)?
            }
            GdbStubStateMachine::Running(running) => {
                if resumable {
                    stub.machine = Some(running.into());
                    return Ok(Outcome::Resume);
                }
                // Continuing from a crash cannot run the faulting code
                // again: gdb hears the program ended, the crash report follows.
                let ended = running
                    .report_stop(cpu, SingleThreadStopReason::Terminated(signal_of(cpu.frame.vector)))?;
                stub.machine = Some(ended);
                return Ok(Outcome::Crash);
            }
            GdbStubStateMachine::CtrlCInterrupt(interrupt) => {
                interrupt.interrupt_handled(cpu, Some(SingleThreadStopReason::Signal(Signal::SIGINT)))?
            }
            GdbStubStateMachine::Disconnected(gone) => match gone.get_reason() {
                DisconnectReason::Kill => {
                    crate::console::print_fatal(format_args!("gdb: killed by the debugger\n"));
                    crate::console::flush();
                    sched::shutdown(ShutdownReason::Poweroff)
                }
                _ => {
                    // Detached: run on; gdb may connect again later.
                    cpu.remove_all_breakpoints();
                    stub.machine = Some(gone.return_to_idle());
                    return Ok(if resumable { Outcome::Resume } else { Outcome::Crash });
                }
            },
        };
    }
}

/// How gdb resumed the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resume {
    Continue,
    Step,
}

/// The stopped CPU as gdb sees it: the interrupted code's registers, all of
/// memory that is RAM, and the breakpoints gdb set.
struct Cpu {
    frame: ExceptionFrame,
    resume: Option<Resume>,
    /// Breakpoint addresses and the bytes `int3` replaced there.
    breakpoints: heapless::Vec<(u64, u8), MAX_BREAKPOINTS>,
}

impl Cpu {
    /// The byte under the breakpoint at `addr`, if there is one.
    fn breakpoint(&mut self, addr: u64) -> Option<&mut u8> {
        self.breakpoints.iter_mut().find(|(a, _)| *a == addr).map(|(_, byte)| byte)
    }

    fn remove_all_breakpoints(&mut self) {
        for (addr, byte) in core::mem::take(&mut self.breakpoints) {
            if !poke(addr, byte) {
                log::error!("gdb: could not remove the breakpoint at {addr:#x}");
            }
        }
    }
}

/// Whether every byte of `[addr, addr + len)` is mapped, as the page tables
/// say. Anything else (holes, guard pages, beyond RAM) is refused rather
/// than risking a fault inside the stub.
fn accessible(addr: u64, len: usize) -> bool {
    let Some(end) = addr.checked_add(len as u64) else { return false };
    let first = addr & !(paging::PAGE_SIZE - 1);
    (first..end).step_by(paging::PAGE_SIZE as usize).all(|page| paging::access(page).is_some())
}

fn peek(addr: u64) -> u8 {
    // SAFETY: callers checked `accessible`: the byte is mapped. The
    // interrupted code may be using it, which is why a debugger looks; a
    // volatile byte read cannot tear.
    unsafe { (addr as *const u8).read_volatile() }
}

/// Writes a byte of the interrupted program's memory (`accessible` checked):
/// directly where it is writable, else (code, read-only data) through a
/// temporary alias, so code is never mapped writable. False if the page
/// tables were busy.
fn poke(addr: u64, byte: u8) -> bool {
    if paging::access(addr) == Some(paging::Access::ReadWrite) {
        // SAFETY: the byte is mapped writable; the CPU is stopped in the
        // stub, and writing the program's memory is what gdb asked for.
        unsafe { (addr as *mut u8).write_volatile(byte) };
        return true;
    }
    paging::write_alias(addr, byte).is_ok()
}

impl Target for Cpu {
    type Arch = X86_64_SSE;
    type Error = &'static str;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::SingleThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadBase for Cpu {
    fn read_registers(&mut self, regs: &mut X86_64CoreRegs) -> TargetResult<(), Self> {
        let f = &self.frame;
        regs.regs = [
            f.rax, f.rbx, f.rcx, f.rdx, f.rsi, f.rdi, f.rbp, f.rsp, f.r8, f.r9, f.r10, f.r11, f.r12, f.r13,
            f.r14, f.r15,
        ];
        regs.rip = f.rip;
        regs.eflags = f.rflags as u32;
        regs.segments.cs = f.cs as u32;
        regs.segments.ss = f.ss as u32;
        Ok(())
    }

    fn write_registers(&mut self, regs: &X86_64CoreRegs) -> TargetResult<(), Self> {
        let f = &mut self.frame;
        let r = &regs.regs;
        (f.rax, f.rbx, f.rcx, f.rdx, f.rsi, f.rdi, f.rbp, f.rsp) =
            (r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]);
        (f.r8, f.r9, f.r10, f.r11, f.r12, f.r13, f.r14, f.r15) =
            (r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15]);
        f.rip = regs.rip;
        // Only the flags gdb can see; segments stay as they are.
        f.rflags = (f.rflags & !0xFFFF_FFFF) | u64::from(regs.eflags);
        Ok(())
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8]) -> TargetResult<usize, Self> {
        if !accessible(start, data.len()) {
            return Err(TargetError::Errno(14)); // EFAULT
        }
        for (i, b) in data.iter_mut().enumerate() {
            let addr = start + i as u64;
            // Under a breakpoint gdb sees the original byte.
            *b = self.breakpoint(addr).map_or_else(|| peek(addr), |saved| *saved);
        }
        Ok(data.len())
    }

    fn write_addrs(&mut self, start: u64, data: &[u8]) -> TargetResult<(), Self> {
        if !accessible(start, data.len()) {
            return Err(TargetError::Errno(14));
        }
        for (i, &b) in data.iter().enumerate() {
            let addr = start + i as u64;
            match self.breakpoint(addr) {
                Some(saved) => *saved = b,
                None if poke(addr, b) => {}
                None => return Err(TargetError::Errno(14)),
            }
        }
        Ok(())
    }

    fn support_resume(&mut self) -> Option<SingleThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadResume for Cpu {
    fn resume(&mut self, _signal: Option<Signal>) -> Result<(), Self::Error> {
        self.resume = Some(Resume::Continue);
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<SingleThreadSingleStepOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadSingleStep for Cpu {
    fn step(&mut self, _signal: Option<Signal>) -> Result<(), Self::Error> {
        self.resume = Some(Resume::Step);
        Ok(())
    }
}

impl Breakpoints for Cpu {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }
}

impl SwBreakpoint for Cpu {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        if !accessible(addr, 1) {
            return Ok(false);
        }
        if self.breakpoint(addr).is_none() {
            let saved = peek(addr);
            if self.breakpoints.push((addr, saved)).is_err() {
                return Ok(false);
            }
            if !poke(addr, INT3) {
                self.breakpoints.pop();
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        match self.breakpoints.iter().position(|(a, _)| *a == addr) {
            Some(i) => {
                let (_, byte) = self.breakpoints[i];
                if !poke(addr, byte) {
                    return Ok(false);
                }
                self.breakpoints.swap_remove(i);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// The vchan as gdbstub's connection.
struct Link {
    server: Server<'static>,
    port: Port,
    /// A packet being written; sent on `flush`.
    out: Vec<u8>,
}

/// The vchan broke: the client corrupted its indices or its state.
#[derive(Debug)]
enum LinkError {
    Ring(mote_xen::ring::RingCorrupt),
    ClientState(u8),
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::Ring(e) => write!(f, "vchan: {e}"),
            LinkError::ClientState(v) => write!(f, "vchan: client state {v} is not one of 0, 1, 2"),
        }
    }
}

impl Link {
    /// Sleeps until the client notifies us or a short while passes.
    fn wait(&self) {
        events::take_pending(self.port);
        let deadline = Instant::now().checked_add(POLL_INTERVAL).map_or(0, |d| d.as_nanos());
        sched::poll(self.port, deadline);
    }

    /// A byte gdb sent, if one is there.
    fn try_read_byte(&mut self) -> Result<Option<u8>, LinkError> {
        let mut byte = [0u8];
        let (n, notify) = self.server.read_some(&mut byte).map_err(LinkError::Ring)?;
        if notify {
            self.notify();
        }
        Ok((n == 1).then_some(byte[0]))
    }

    fn notify(&self) {
        let _ = event::send(self.port);
    }

    /// The next byte from gdb, waiting for it (and for a client) as long as
    /// it takes.
    fn read_byte(&mut self) -> Result<u8, LinkError> {
        loop {
            self.server.want_data();
            if let Some(byte) = self.try_read_byte()? {
                return Ok(byte);
            }
            if let Client::Invalid(v) = self.server.client() {
                return Err(LinkError::ClientState(v));
            }
            self.wait();
        }
    }
}

impl Connection for Link {
    type Error = LinkError;

    fn write(&mut self, byte: u8) -> Result<(), LinkError> {
        self.out.push(byte);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), LinkError> {
        let mut sent = 0;
        while sent < self.out.len() {
            // Without a client the bytes are dropped: gdb asks again after connecting.
            if self.server.client() != Client::Connected {
                break;
            }
            let (n, notify) = self.server.write_some(&self.out[sent..]).map_err(LinkError::Ring)?;
            if notify {
                self.notify();
            }
            sent += n;
            if sent < self.out.len() {
                self.wait();
            }
        }
        self.out.clear();
        Ok(())
    }
}
