//! The data path against the in-memory [`Peer`]: request splitting, rings
//! kept full, indirect requests, discard, and hostile backends.

use crate::device::{most_segments, request_pages, Discard, Disk, DiskError, DiskInfo, Features, Start};
use crate::inflight::{Outcome, ResponseError};
use crate::peer::{Peer, Scripted};
use crate::wire::{Response, OP_DISCARD, OP_READ, OP_WRITE, RSP_ERROR};
use mote_xen::io_ring::RingError;
use mote_xen::xenbus::XenbusState;

const MIB: usize = 1 << 20;

fn info(bytes: usize) -> DiskInfo {
    DiskInfo { sectors: (bytes / 512) as u64, sector_size: 512, read_only: false, flush: true }
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 24) as u8).collect()
}

fn indirect(segments: usize) -> Features {
    Features { indirect_segments: segments, ..Features::BASIC }
}

#[test]
fn large_transfers_split_into_direct_requests_and_round_trip() {
    let (mut d, mut be) = Peer::connect(info(MIB), Features::BASIC, 2 * 11);
    let data = pattern(300 * 1024, 1);
    d.write(10, &data, &mut be).unwrap();
    // 300 KiB in 44 KiB requests: 6 full ones and one of 36 KiB, back to back.
    let sizes: Vec<(u64, u64, usize)> = be.seen.iter().map(|s| (s.sector, s.sectors, s.segments)).collect();
    let expected: Vec<(u64, u64, usize)> =
        (0..7).map(|i| (10 + 88 * i, if i < 6 { 88 } else { 72 }, if i < 6 { 11 } else { 9 })).collect();
    assert_eq!(sizes, expected);
    assert!(be.seen.iter().all(|s| s.operation == OP_WRITE && !s.indirect));
    assert_eq!(&be.disk[10 * 512..10 * 512 + data.len()], &data[..]);
    let mut back = vec![0u8; data.len()];
    d.read(10, &mut back, &mut be).unwrap();
    assert_eq!(back, data);
    d.flush(&mut be).unwrap();
}

#[test]
fn a_transfer_smaller_than_a_page_is_one_segment_of_its_sectors() {
    let (mut d, mut be) = Peer::connect(info(MIB), Features::BASIC, 11 + 1);
    be.disk[7 * 512..10 * 512].copy_from_slice(&pattern(3 * 512, 2));
    let mut buf = vec![0u8; 3 * 512];
    d.read(7, &mut buf, &mut be).unwrap();
    assert_eq!(buf, pattern(3 * 512, 2));
    assert_eq!((be.seen[0].sector, be.seen[0].sectors, be.seen[0].segments), (7, 3, 1));
}

#[test]
fn many_requests_fill_a_multi_page_ring() {
    // 4 ring pages hold 128 requests; enough buffers for 128 direct ones.
    let features = Features { ring_pages: 4, ..Features::BASIC };
    let (mut d, mut be) = Peer::connect(info(8 * MIB), features, 128 * 11);
    let data = pattern(128 * 11 * 4096, 3);
    d.write(0, &data, &mut be).unwrap();
    assert_eq!(be.seen.len(), 128);
    assert_eq!(be.peak_outstanding, 128, "the whole ring was in flight at once");
    assert_eq!(d.stats().peak_in_flight, 128);
    let mut back = vec![0u8; data.len()];
    d.read(0, &mut back, &mut be).unwrap();
    assert_eq!(back, data);
}

#[test]
fn the_buffer_pool_bounds_requests_in_flight_not_the_transfer() {
    // Pages for two direct requests: a 1 MiB write still completes.
    let (mut d, mut be) = Peer::connect(info(2 * MIB), Features::BASIC, 22);
    let data = pattern(MIB, 4);
    d.write(1, &data, &mut be).unwrap();
    assert_eq!(be.peak_outstanding, 2);
    assert_eq!(&be.disk[512..512 + MIB], &data[..]);
}

#[test]
fn indirect_requests_carry_many_segments() {
    let (mut d, mut be) = Peer::connect(info(4 * MIB), indirect(32), 4 * 33);
    assert_eq!(d.features().segments(), 32);
    let data = pattern(MIB + 4096 + 1024, 5);
    d.write(3, &data, &mut be).unwrap();
    // 8 requests of 32 pages, one of 2 pages (direct: it fits in the slot).
    let shapes: Vec<(bool, usize)> = be.seen.iter().map(|s| (s.indirect, s.segments)).collect();
    let mut expected = vec![(true, 32); 8];
    expected.push((false, 2));
    assert_eq!(shapes, expected);
    assert_eq!(be.peak_outstanding, 4, "four 33-page requests fit the pool");
    assert_eq!((d.stats().requests, d.stats().indirect), (9, 8));
    let mut back = vec![0u8; data.len()];
    d.read(3, &mut back, &mut be).unwrap();
    assert_eq!(back, data);
    assert!(be.seen.iter().filter(|s| s.operation == OP_READ).all(|s| s.indirect || s.segments <= 11));
}

#[test]
fn indirect_segments_are_capped_by_the_pool() {
    let (d, _) = Peer::connect(info(MIB), indirect(256), 20);
    assert_eq!(d.features().indirect_segments, 19);
    let (d, _) = Peer::connect(info(MIB), indirect(8), 20);
    assert_eq!(d.features().indirect_segments, 0, "fewer than 11 is no use");
}

#[test]
fn requests_count_512_byte_sectors_on_4k_disks() {
    let info = DiskInfo { sectors: 256, sector_size: 4096, read_only: false, flush: false };
    let (mut d, mut be) = Peer::connect(info, Features::BASIC, 12);
    let data = pattern(8192, 6);
    d.write(5, &data, &mut be).unwrap();
    assert_eq!((be.seen[0].sector, be.seen[0].sectors), (40, 16));
    assert_eq!(&be.disk[5 * 4096..7 * 4096], &data[..]);
    assert_eq!(d.flush(&mut be), Err(DiskError::FlushUnsupported));
}

#[test]
fn discard_is_one_request_and_zeroes_on_this_backend() {
    let discard = Discard { granularity: 4096, alignment: 0, secure: false };
    let features = Features { discard: Some(discard), ..Features::BASIC };
    let (mut d, mut be) = Peer::connect(info(MIB), features, 12);
    be.disk.fill(0xEE);
    d.discard(8, 1000, &mut be).unwrap();
    let last = be.seen.last().unwrap();
    assert_eq!((last.operation, last.sector, last.sectors), (OP_DISCARD, 8, 1000));
    assert!(be.disk[8 * 512..1008 * 512].iter().all(|&b| b == 0));
    assert_eq!(be.disk[8 * 512 - 1], 0xEE);
    assert_eq!(be.disk[1008 * 512], 0xEE);
    assert_eq!(d.discard(2000, 100, &mut be), Err(DiskError::OutOfRange { sector: 2000, len: 51200 }));
    assert_eq!(
        d.discard(0, u64::MAX, &mut be).map_err(|e| matches!(e, DiskError::OutOfRange { .. })),
        Err(true)
    );
    let (mut plain, mut be) = Peer::connect(info(MIB), Features::BASIC, 12);
    assert_eq!(plain.discard(0, 8, &mut be), Err(DiskError::DiscardUnsupported));
}

#[test]
fn a_pool_smaller_than_a_request_still_carries_everything() {
    let (mut d, mut be) = Peer::connect(info(MIB), Features::BASIC, 3);
    let data = pattern(64 * 1024, 8);
    d.write(0, &data, &mut be).unwrap();
    assert_eq!(&be.disk[..data.len()], &data[..]);
    assert!(be.seen.iter().all(|s| s.segments <= 3));
}

#[test]
fn bad_ranges_and_read_only_disks_are_refused() {
    let (mut d, mut be) = Peer::connect(info(MIB), Features::BASIC, 12);
    let mut buf = vec![0u8; 1024];
    assert_eq!(d.read(2047, &mut buf, &mut be), Err(DiskError::OutOfRange { sector: 2047, len: 1024 }));
    assert_eq!(
        d.read(u64::MAX, &mut buf, &mut be),
        Err(DiskError::OutOfRange { sector: u64::MAX, len: 1024 })
    );
    assert_eq!(d.read(0, &mut buf[..100], &mut be), Err(DiskError::Unaligned { len: 100 }));
    let ro = DiskInfo { read_only: true, ..info(MIB) };
    let (mut ro, mut be) = Peer::connect(ro, Features::BASIC, 12);
    assert_eq!(ro.write(0, &buf, &mut be), Err(DiskError::ReadOnly));
    assert!(be.seen.is_empty());
}

#[test]
fn granted_pages_hold_nothing_but_the_data_written() {
    let (mut d, mut be) = Peer::connect(info(MIB), indirect(16), 17 * 2);
    // Reads leave disk data in every pool page...
    be.disk.fill(0x5A);
    let mut buf = vec![0u8; 17 * 2 * 4096 - 8192];
    d.read(0, &mut buf, &mut be).unwrap();
    // ...then writes that use parts of pages, directly and indirectly.
    d.write(0, &[1u8; 512], &mut be).unwrap();
    d.write(0, &vec![2u8; 15 * 4096 + 1536], &mut be).unwrap();
    assert_eq!(be.leaked_bytes, 0);
    assert!(be.seen.iter().any(|s| s.indirect && s.operation == OP_WRITE));
}

/// A backend that answers each request with `rsp(request's id)`.
fn answer_with(
    d: &mut Disk,
    be: Peer,
    len: usize,
    mut rsp: impl FnMut(u64) -> Response,
) -> (Result<(), DiskError>, Peer) {
    let mut hostile = Scripted(be, |p: &mut Peer| {
        while let Some(req) = p.take() {
            let done = p.execute(&req);
            p.respond(rsp(done.id));
        }
        p.publish();
        true
    });
    let mut buf = vec![0u8; len];
    let result = d.read(0, &mut buf, &mut hostile);
    (result, hostile.0)
}

#[test]
fn out_of_range_ids_fail_the_disk_for_good() {
    let (mut d, be) = Peer::connect(info(MIB), Features::BASIC, 12);
    let (result, mut be) =
        answer_with(&mut d, be, 512, |_| Response { id: 999, operation: OP_READ, ..Response::default() });
    assert_eq!(result, Err(DiskError::Response(ResponseError::UnknownId(999))));
    // Nothing more goes to that backend.
    let before = be.seen.len();
    assert_eq!(d.read(0, &mut [0; 512], &mut be), Err(DiskError::Response(ResponseError::UnknownId(999))));
    assert_eq!(be.seen.len(), before);
    let (mut d, be) = Peer::connect(info(MIB), Features::BASIC, 12);
    let (result, _) = answer_with(&mut d, be, 512, |_| Response {
        id: u64::MAX,
        operation: OP_READ,
        ..Response::default()
    });
    assert_eq!(result, Err(DiskError::Response(ResponseError::UnknownId(u64::MAX))));
}

#[test]
fn a_duplicated_id_is_refused_and_the_other_request_stays_out() {
    let (mut d, be) = Peer::connect(info(MIB), Features::BASIC, 22);
    // Two requests out; the backend answers the first one twice.
    let mut hostile = Scripted(be, |p: &mut Peer| {
        let a = p.take().unwrap();
        let b = p.take().unwrap();
        let first = p.execute(&a);
        let _ = p.execute(&b);
        p.respond(first);
        p.respond(first);
        p.publish();
        true
    });
    let mut buf = vec![0u8; 2 * 11 * 4096];
    let id = 0;
    assert_eq!(d.read(0, &mut buf, &mut hostile), Err(DiskError::Response(ResponseError::UnknownId(id))));
}

#[test]
fn wrong_operations_and_unknown_statuses_are_refused() {
    let (mut d, be) = Peer::connect(info(MIB), Features::BASIC, 12);
    let (result, _) =
        answer_with(&mut d, be, 512, |id| Response { id, operation: OP_WRITE, ..Response::default() });
    assert_eq!(
        result,
        Err(DiskError::Response(ResponseError::WrongOperation { id: 0, sent: OP_READ, got: OP_WRITE }))
    );
    let (mut d, be) = Peer::connect(info(MIB), Features::BASIC, 12);
    let (result, _) = answer_with(&mut d, be, 512, |id| Response {
        id,
        operation: OP_READ,
        status: 7,
        ..Response::default()
    });
    assert_eq!(result, Err(DiskError::Response(ResponseError::BadStatus { id: 0, status: 7 })));
}

#[test]
fn an_io_error_fails_the_call_not_the_disk() {
    let (mut d, be) = Peer::connect(info(MIB), Features::BASIC, 12);
    let (result, mut be) = answer_with(&mut d, be, 512, |id| Response {
        id,
        operation: OP_READ,
        status: RSP_ERROR,
        ..Response::default()
    });
    assert_eq!(result, Err(DiskError::Backend(Outcome::Error)));
    be.disk[..512].fill(9);
    let mut buf = [0u8; 512];
    d.read(0, &mut buf, &mut be).unwrap();
    assert_eq!(buf, [9; 512]);
}

#[test]
fn a_producer_index_running_ahead_is_refused() {
    let (mut d, be) = Peer::connect(info(MIB), Features::BASIC, 12);
    let mut hostile = Scripted(be, |p: &mut Peer| {
        let req_prod = p.req_prod();
        p.set_rsp_prod(req_prod + 5);
        true
    });
    let result = d.read(0, &mut [0; 512], &mut hostile);
    assert_eq!(result, Err(DiskError::Ring(RingError::RunAhead { rsp_prod: 6, rsp_cons: 0, req_prod: 1 })));
}

#[test]
fn a_response_changed_after_it_was_taken_is_not_looked_at_again() {
    let (mut d, mut be) = Peer::connect(info(MIB), Features::BASIC, 12);
    be.disk[..512].fill(3);
    let mut buf = [0u8; 512];
    d.read(0, &mut buf, &mut be).unwrap();
    // The backend rewrites the answered slot (and the data page) afterwards.
    be.write_response(0, Response { id: 0, operation: OP_WRITE, status: 99, ..Response::default() });
    be.disk[..512].fill(4);
    assert_eq!(buf, [3; 512]);
    d.read(0, &mut buf, &mut be).unwrap();
    assert_eq!(buf, [4; 512]);
    assert_eq!(be.seen.len(), 2);
}

#[test]
fn a_backend_that_never_answers_times_out_instead_of_hanging() {
    let (mut d, be) = Peer::connect(info(MIB), Features::BASIC, 12);
    let mut silent = Scripted(be, |_: &mut Peer| false);
    let timeout = core::time::Duration::from_secs(30);
    assert_eq!(d.read(0, &mut [0; 512], &mut silent), Err(DiskError::Timeout(timeout)));
    // The request's pages stay with the backend; the disk refuses further I/O.
    assert_eq!(d.write(0, &[0; 512], &mut silent), Err(DiskError::Timeout(timeout)));
    assert_eq!(silent.0.pending(), 1);
}

#[test]
fn the_non_blocking_interface_fills_the_ring_with_small_reads() {
    let features = Features { ring_pages: 4, ..indirect(32) };
    let (mut d, mut be) = Peer::connect(info(MIB), features, 4 * 33);
    be.disk.copy_from_slice(&pattern(MIB, 7));
    // 128 reads of 4 KiB at scattered places: every ring slot.
    let block = |n: u64| (n * 37) % 256 * 8;
    let mut ids = Vec::new();
    for n in 0..128 {
        ids.push((d.start(block(n), Start::Read(4096)).unwrap().expect("room"), n));
    }
    assert_eq!(d.start(0, Start::Read(4096)), Ok(None), "the ring is full");
    d.push(&mut be);
    be.serve();
    assert_eq!(be.peak_outstanding, 128);
    let mut finished = 0;
    while let Some(done) = d.poll_completion().unwrap() {
        let n = ids.iter().find(|(id, _)| *id == done.id).unwrap().1;
        let mut buf = [0u8; 4096];
        d.finish(done, &mut buf).unwrap();
        let at = block(n) as usize * 512;
        assert_eq!(&buf[..], &be.disk[at..at + 4096]);
        finished += 1;
    }
    assert_eq!((finished, d.in_flight()), (128, 0));
    // A request larger than one is refused, not split.
    assert_eq!(
        d.start(0, Start::Read(d.max_request() + 512)),
        Err(DiskError::TooLarge { len: 32 * 4096 + 512, max: 32 * 4096 })
    );
    assert!(d.start(0, Start::Write(&[1; 512])).unwrap().is_some());
}

/// The peer, which answers the first `answer` waits and then goes to
/// Closing (`xl block-detach`) without answering again.
struct Detached {
    peer: Peer,
    answer: usize,
}

impl crate::device::Signal for Detached {
    fn notify(&mut self, _: mote_xen::event::Port) {}

    fn wait(&mut self, _: mote_xen::event::Port, _: core::time::Duration) -> bool {
        if self.answer == 0 {
            return false;
        }
        self.answer -= 1;
        self.peer.serve();
        true
    }

    fn gone(&mut self) -> Option<XenbusState> {
        (self.answer == 0).then_some(XenbusState::Closing)
    }
}

#[test]
fn a_detached_backend_fails_the_transfer_in_flight_and_every_later_one() {
    // 1 MiB in 44 KiB requests, two at a time (the pool's 22 pages): the
    // backend answers two rounds, then closes with requests out.
    let (mut d, be) = Peer::connect(info(2 * MIB), Features::BASIC, 2 * 11);
    let mut be = Detached { peer: be, answer: 2 };
    let gone = DiskError::Gone(XenbusState::Closing);
    assert_eq!(d.read(0, &mut vec![0; MIB], &mut be), Err(gone));
    assert_eq!(be.peer.seen.len(), 4, "two answered, two out when the backend closed");
    assert_eq!(d.failure(), Some(gone));
    // Every later call fails at once, without a request or a wait.
    assert_eq!(d.read(0, &mut [0; 512], &mut be), Err(gone));
    assert_eq!(d.write(0, &[0; 512], &mut be), Err(gone));
    assert_eq!(d.flush(&mut be), Err(gone));
    assert_eq!(d.start(0, Start::Read(512)), Err(gone));
    assert_eq!(d.poll_completion().map(|c| c.is_some()), Err(gone));
    assert_eq!(be.peer.seen.len(), 4);
    assert_eq!(gone.to_string(), "the disk was detached (its backend went to Closing)");
}

#[test]
fn a_backend_gone_before_a_call_gets_no_request() {
    let (mut d, be) = Peer::connect(info(MIB), Features::BASIC, 12);
    let mut be = Detached { peer: be, answer: 0 };
    assert_eq!(d.write(0, &[1; 4096], &mut be), Err(DiskError::Gone(XenbusState::Closing)));
    assert!(be.peer.seen.is_empty());
    assert_eq!(be.peer.pending(), 0);
}

#[test]
fn requests_started_without_blocking_fail_when_the_backend_goes_away() {
    let (mut d, mut be) = Peer::connect(info(MIB), indirect(32), 33);
    d.start(0, Start::Read(4096)).unwrap().unwrap();
    d.start(8, Start::Read(4096)).unwrap().unwrap();
    d.push(&mut be);
    be.serve();
    let answered = d.poll_completion().unwrap().expect("an answer");
    assert_eq!(d.backend_gone(XenbusState::Closed), DiskError::Gone(XenbusState::Closed));
    // An answer taken before is not copied out of pages that may be given back by now.
    let mut buf = [7u8; 4096];
    assert_eq!(d.finish(answered, &mut buf), Err(DiskError::Gone(XenbusState::Closed)));
    assert_eq!(buf, [7u8; 4096]);
    // The answer already in the ring is not taken: the disk is gone.
    assert_eq!(d.poll_completion().map(|c| c.is_some()), Err(DiskError::Gone(XenbusState::Closed)));
    assert_eq!(d.start(16, Start::Write(&[0; 512])), Err(DiskError::Gone(XenbusState::Closed)));
}

fn discarding(granularity: u32, alignment: u32) -> Features {
    Features { discard: Some(Discard { granularity, alignment, secure: false }), ..Features::BASIC }
}

#[test]
fn discard_extents_are_whole_granules_from_the_alignment() {
    let d = |granularity, alignment| Discard { granularity, alignment, secure: false };
    // 4 KiB granules on 512-byte sectors: 1536..11776 holds the granule 4096..8192.
    assert_eq!(d(4096, 0).extents(3, 20, 512), Some((8, 8)));
    // Granules from byte 1024 on: 5120..9216.
    assert_eq!(d(4096, 1024).extents(3, 20, 512), Some((10, 8)));
    // An alignment beyond one granule is the same boundaries.
    assert_eq!(d(4096, 1024 + 3 * 4096).extents(3, 20, 512), Some((10, 8)));
    // Already whole granules: unchanged.
    assert_eq!(d(4096, 0).extents(8, 16, 512), Some((8, 16)));
    // Less than one granule, or none whole: nothing.
    assert_eq!(d(4096, 0).extents(0, 7, 512), None);
    assert_eq!(d(4096, 0).extents(1, 14, 512), None);
    assert_eq!(d(4096, 0).extents(5, 0, 512), None);
    // The part before the first boundary is not an extent.
    assert_eq!(d(4096, 1024).extents(0, 8, 512), None);
    assert_eq!(d(4096, 1024).extents(0, 10, 512), Some((2, 8)));
    // A granularity below the sector size (or 0) is a sector.
    assert_eq!(d(0, 0).extents(3, 5, 4096), Some((3, 5)));
    assert_eq!(d(512, 0).extents(3, 5, 4096), Some((3, 5)));
    // Granules not a whole number of sectors: only sectors wholly inside whole ones.
    assert_eq!(d(1536, 0).extents(1, 6, 1024), Some((2, 4)));
    // Huge ranges do not overflow.
    assert_eq!(d(4096, 0).extents(u64::MAX - 16, 16, 4096), Some((u64::MAX - 16, 16)));
}

#[test]
fn discards_reach_the_backend_as_whole_extents_only() {
    let (mut d, mut be) = Peer::connect(info(MIB), discarding(4096, 1024), 12);
    be.disk.fill(0xEE);
    // Bytes 1536..11776: the extent 5120..9216 goes out, the ends stay.
    assert_eq!(d.discard(3, 20, &mut be), Ok(8));
    let last = be.seen.last().unwrap();
    assert_eq!((last.operation, last.sector, last.sectors), (OP_DISCARD, 10, 8));
    assert!(be.disk[5120..9216].iter().all(|&b| b == 0));
    assert!(be.disk[..5120].iter().chain(&be.disk[9216..]).all(|&b| b == 0xEE));
    // No whole extent: no request at all.
    let requests = be.seen.len();
    assert_eq!(d.discard(0, 7, &mut be), Ok(0));
    assert_eq!(be.seen.len(), requests);
    // The non-blocking interface refuses what is not whole extents.
    assert_eq!(d.start(3, Start::Discard(20)), Err(DiskError::DiscardUnaligned { sector: 3, count: 20 }));
    assert!(d.start(10, Start::Discard(8)).unwrap().is_some());
}

#[test]
fn a_released_disk_never_writes_its_ring_pages_or_signals() {
    // Two reads posted and not pushed yet when the backend closes; the disk is then
    // released, and its ring pages may be someone else's.
    let (mut d, mut be) = Peer::connect(info(MIB), indirect(32), 33);
    d.start(0, Start::Read(4096)).unwrap().unwrap();
    d.start(8, Start::Read(4096)).unwrap().unwrap();
    let gone = d.backend_gone(XenbusState::Closed);
    assert!(d.detach().is_none(), "the peer shares nothing to give back");
    be.poison_ring(0xA5);
    d.push(&mut be);
    assert!(be.ring_poisoned(0xA5), "a released disk wrote its ring pages");
    assert_eq!(be.notifications, 0, "a released disk signalled its event channel");
    // Every later call fails without a look at the ring.
    assert_eq!(d.poll_completion().map(|c| c.is_some()), Err(gone));
    assert_eq!(d.read(0, &mut [0; 512], &mut be), Err(gone));
    assert!(be.ring_poisoned(0xA5));
}

#[test]
fn requests_of_more_than_512_segments_leave_room_for_every_indirect_page() {
    // `buffer_pages = 600`, `indirect_segments = 1024`, a backend offering 1024: a request
    // of n pages takes ceil(n / 512) indirect pages more, so 598 and 2 fill the pool.
    let (mut d, mut be) = Peer::connect(info(8 * MIB), indirect(1024), 600);
    let data = pattern(d.max_request() + 4096, 9);
    d.write(8, &data, &mut be).unwrap();
    assert!(be.disk[8 * 512..8 * 512 + data.len()] == data[..], "the write did not reach the disk");
    let shapes: Vec<(bool, usize)> = be.seen.iter().map(|s| (s.indirect, s.segments)).collect();
    assert_eq!(shapes, [(true, 598), (false, 1)]);
    assert_eq!(d.features().indirect_segments, 598);
    // The non-blocking interface posts a request of the largest size at once.
    assert!(d.start(0, Start::Read(d.max_request())).unwrap().is_some());
}

#[test]
fn the_segment_cap_is_the_most_a_pool_carries_with_its_indirect_pages() {
    for pool in 12..=5000 {
        let n = most_segments(pool);
        assert!(request_pages(n) <= pool && request_pages(n + 1) > pool, "a pool of {pool}: {n}");
    }
    assert_eq!((most_segments(513), most_segments(514), most_segments(600)), (512, 512, 598));
}

#[test]
fn a_transfer_that_can_never_be_posted_is_an_error_not_a_success() {
    // A completion taken and never finished keeps 11 of the 12 pages: a read of two pages
    // finds nothing in flight to wait for and too few pages free.
    let (mut d, mut be) = Peer::connect(info(MIB), Features::BASIC, 12);
    d.start(0, Start::Read(11 * 4096)).unwrap().unwrap();
    d.push(&mut be);
    be.serve();
    let kept = d.poll_completion().unwrap().expect("an answer");
    let requests = be.seen.len();
    let mut buf = [0u8; 8192];
    assert_eq!(d.read(0, &mut buf, &mut be), Err(DiskError::NoRoom { pages: 2, free: 1 }));
    assert_eq!(be.seen.len(), requests);
    // Once the pages are back, the same read goes out.
    d.finish(kept, &mut []).unwrap();
    d.read(0, &mut buf, &mut be).unwrap();
}
