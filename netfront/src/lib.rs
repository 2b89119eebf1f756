//! Xen PV network frontend, exposed as a `smoltcp` device. Arrives with issue #4.
#![no_std]
