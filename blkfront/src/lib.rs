//! Xen PV block frontend. Arrives with issue #7.
#![no_std]
