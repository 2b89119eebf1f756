//! Stands in for the gdb stub (`gdb.rs`) in an image built without the
//! `gdb` feature: no stub code is linked, and `gdb=` on the command line is
//! bad configuration for this image, so it gets a clear error and the app
//! runs as if it were not there.

use mote_arch::exception::ExceptionFrame;

/// Says that `gdb=` cannot be served by this image.
pub(crate) fn init(value: Option<&'static str>) {
    if let Some(value) = value {
        log::error!(
            "gdb={value}: this image has no gdb stub: build it with `cargo xtask build <app> --gdb` \
             or use `cargo xtask debug <app>`; running without a debugger"
        );
    }
}

/// No stub: the stopped state never happens.
pub(crate) fn stopped() -> bool {
    false
}

/// No stub to stop in.
pub(crate) fn stop_on_panic() {}

/// No stub to hand a Ctrl-C to.
pub(crate) fn on_upcall(_frame: &mut ExceptionFrame) {}
