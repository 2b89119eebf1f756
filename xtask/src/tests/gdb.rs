//! gdb cases: the stub in a guest; the drivers are in `crate::debug`.

use super::{Case, Check};
use crate::guest::Reason;

/// The gdb stub: breakpoints, faults, interrupts.
pub(super) fn cases() -> Vec<Case> {
    use Check::*;
    vec![
        Case {
            name: "gdb_breaks_in_the_web_handler",
            app: "web",
            args: &["gdb=wait"],
            gdb: true,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Contains(crate::debug::WAITING_LINE), Contains("web: serving")],
            driver: Some(crate::debug::web_case_driver),
        },
        Case {
            name: "gdb_stops_on_a_page_fault",
            app: "selftest",
            args: &["test=pagefault", "gdb=wait"],
            gdb: true,
            disk: false,
            xl: &[],
            reason: Reason::Crash,
            checks: vec![
                Contains("EXCEPTION: page fault"),
                Contains("selftest::main at apps/selftest/src/main.rs"),
            ],
            driver: Some(crate::debug::crash_case_driver),
        },
        Case {
            name: "gdb_interrupts_a_running_guest",
            app: "selftest",
            args: &["test=idle", "secs=20", "gdb=wait"],
            gdb: true,
            disk: false,
            xl: &[],
            reason: Reason::Poweroff,
            checks: vec![Line("idle: done")],
            driver: Some(crate::debug::interrupt_case_driver),
        },
    ]
}
