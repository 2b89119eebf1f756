//! Counts heap allocations per query, with a counting global allocator: what `respond` costs,
//! and that `Responder` answers a query it has answered before without allocating (the UDP
//! path of apps/dns). The counts are printed (`cargo test -p mote-dns --test allocations --
//! --nocapture`).

use mote_dns::{master, respond, Catalog, Responder, Transport};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

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

#[test]
fn remembered_answers_allocate_nothing() {
    let text = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/zones/test.zone")).unwrap();
    let catalog = Catalog::new(vec![master::parse_bytes("test.zone", &text, None).unwrap()]).unwrap();
    let queries: Vec<Vec<u8>> = QUERIES
        .iter()
        .enumerate()
        .flat_map(|(i, (name, qtype))| {
            [query(i as u16, name, *qtype, true), query(i as u16, name, *qtype, false)]
        })
        .collect();

    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for q in &queries {
        respond(&catalog, q, Transport::Udp).unwrap();
    }
    let fresh = ALLOCATIONS.load(Ordering::Relaxed) - before;

    let mut responder = Responder::new(&catalog, 64 * 1024);
    let mut out = Vec::with_capacity(1232);
    for q in &queries {
        assert!(responder.respond_into(q, Transport::Udp, &mut out));
    }
    let mut remembered = 0;
    for round in 0..100u16 {
        for q in &queries {
            let mut q = q.clone();
            q[..2].copy_from_slice(&round.to_be_bytes());
            let start = ALLOCATIONS.load(Ordering::Relaxed);
            assert!(responder.respond_into(&q, Transport::Udp, &mut out));
            remembered += ALLOCATIONS.load(Ordering::Relaxed) - start;
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
