//! Counts heap allocations per query, with a counting global allocator: what `respond` costs,
//! and that `Responder` answers a query it has answered before without allocating (the UDP
//! path of apps/dns). The same allocator fails allocations on demand: a heap with no room
//! gives a counted `OutOfMemory`, never a panic. The counts are printed (`cargo test -p
//! mote-dns --test allocations -- --nocapture`). Counting and failing are per thread, so the
//! tests may run in parallel.

use mote_dns::{master, respond, try_respond, Catalog, OutOfMemory, Responder, Transport};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    /// Allocations (and reallocations) made by this thread.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    /// Allocations this thread may still make before they fail; `usize::MAX`: no limit.
    static ROOM: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Counts an allocation; false when it must fail.
fn allowed() -> bool {
    ALLOCATIONS.with(|a| a.set(a.get() + 1));
    ROOM.with(|room| match room.get() {
        0 => false,
        usize::MAX => true,
        n => {
            room.set(n - 1);
            true
        }
    })
}

// SAFETY: forwards to the system allocator unchanged, or returns null (an allocation failure,
// which `GlobalAlloc` allows); only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !allowed() {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !allowed() {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

/// Runs `f` with room for `room` more allocations in this thread, the rest failing.
fn with_room<T>(room: usize, f: impl FnOnce() -> T) -> T {
    ROOM.with(|r| r.set(room));
    let out = f();
    ROOM.with(|r| r.set(usize::MAX));
    out
}

/// A query as dnsperf sends it: RD clear, an OPT with payload 1232, or none.
fn query(id: u16, name: &str, qtype: u16, edns: bool) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, (qtype >> 8) as u8, qtype as u8, 0, 1]);
    if edns {
        q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    }
    q
}

/// Queries of every kind of answer in the test zone, in the case given.
const QUERIES: &[(&str, u16)] = &[
    ("www.test", 1),
    ("WwW.TeSt", 28),
    ("deep.test", 1),
    ("alice.users.test", 16),
    ("host.lab.test", 1),
    ("nope.test", 1),
    ("www.test", 15),
    ("test", 2),
    ("big.test", 1),
    ("www.example.org", 1),
];

fn catalog() -> Catalog {
    let text = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/zones/test.zone")).unwrap();
    Catalog::new(vec![master::parse_bytes("test.zone", &text, None).unwrap()]).unwrap()
}

/// Every query of [`QUERIES`], with and without EDNS.
fn queries() -> Vec<Vec<u8>> {
    QUERIES
        .iter()
        .enumerate()
        .flat_map(|(i, (name, qtype))| {
            [query(i as u16, name, *qtype, true), query(i as u16, name, *qtype, false)]
        })
        .collect()
}

#[test]
fn remembered_answers_allocate_nothing() {
    let catalog = catalog();
    let queries = queries();

    let before = allocations();
    for q in &queries {
        respond(&catalog, q, Transport::Udp).unwrap();
    }
    let fresh = allocations() - before;

    let mut responder = Responder::new(&catalog, 64 * 1024);
    let mut out = Vec::with_capacity(1232);
    for q in &queries {
        assert_eq!(responder.respond_into(q, Transport::Udp, &mut out), Ok(true));
    }
    let mut remembered = 0;
    for round in 0..100u16 {
        for q in &queries {
            let mut q = q.clone();
            q[..2].copy_from_slice(&round.to_be_bytes());
            let start = allocations();
            assert_eq!(responder.respond_into(&q, Transport::Udp, &mut out), Ok(true));
            remembered += allocations() - start;
        }
    }
    println!(
        "allocations per query: respond {:.1}; Responder, answered before: {} in {} queries ({} bytes remembered)",
        fresh as f64 / queries.len() as f64,
        remembered,
        100 * queries.len(),
        responder.remembered()
    );
    assert_eq!(remembered, 0, "a query answered before allocated");
}

/// However few allocations the heap has room for, `try_respond` gives the reply `respond`
/// gives with room, or `OutOfMemory`; it never panics.
#[test]
fn try_respond_fails_cleanly_at_every_allocation() {
    let catalog = catalog();
    for q in queries() {
        for transport in [Transport::Udp, Transport::Tcp] {
            let full = respond(&catalog, &q, transport).unwrap();
            let start = allocations();
            try_respond(&catalog, &q, transport).unwrap();
            let needed = allocations() - start;
            for room in 0..needed {
                let out = with_room(room, || try_respond(&catalog, &q, transport));
                assert_eq!(out, Err(OutOfMemory), "room for {room} of {needed} allocations: {q:?}");
            }
            assert_eq!(with_room(needed, || try_respond(&catalog, &q, transport)), Ok(Some(full)));
        }
    }
}

/// On the UDP path a query the heap has no room to answer is dropped and counted, a reply
/// it has no room to remember still goes out, and remembered replies are still answered
/// with the heap full.
#[test]
fn a_full_heap_drops_new_answers_counted_and_keeps_remembered_ones() {
    let catalog = catalog();
    let queries = queries();
    let (remembered, new) = queries.split_at(queries.len() / 2);
    let mut responder = Responder::new(&catalog, 64 * 1024);
    let mut out = Vec::with_capacity(1232);
    for q in remembered {
        assert_eq!(responder.respond_into(q, Transport::Udp, &mut out), Ok(true));
    }
    let mut dropped = 0;
    for q in new {
        let fresh = respond(&catalog, q, Transport::Udp).unwrap();
        for room in 0.. {
            let mut copy = Responder::new(&catalog, 64 * 1024);
            for q in remembered {
                copy.respond_into(q, Transport::Udp, &mut out).unwrap();
            }
            let answered = with_room(room, || copy.respond_into(q, Transport::Udp, &mut out));
            match answered {
                Err(OutOfMemory) => {
                    dropped += 1;
                    assert_eq!(copy.out_of_memory(), 1, "room for {room}: the drop is counted");
                    assert!(copy.remembered() > 0, "room for {room}: answering nothing forgets nothing");
                }
                Ok(answered) => {
                    assert!(answered);
                    assert_eq!(out, fresh, "room for {room}");
                    assert_eq!(copy.out_of_memory(), 0);
                    if copy.remembered() > responder.remembered() {
                        break;
                    }
                    // No room to remember it: the reply went out, and the memory was emptied.
                    assert_eq!(copy.remembered(), 0, "room for {room}");
                }
            }
        }
    }
    assert!(dropped >= new.len(), "every new query was dropped at least once ({dropped})");
    for q in remembered {
        let answered = with_room(0, || responder.respond_into(q, Transport::Udp, &mut out));
        assert_eq!(answered, Ok(true), "a remembered reply with no room in the heap");
        assert_eq!(out, respond(&catalog, q, Transport::Udp).unwrap());
    }
    assert_eq!(responder.out_of_memory(), 0);
    assert_eq!(with_room(0, || responder.respond_into(&new[0], Transport::Udp, &mut out)), Err(OutOfMemory));
    assert_eq!(responder.out_of_memory(), 1);
}
