//! A hostile blkback: a disk makes reads, writes, flushes and discards while the backend,
//! each time the frontend waits, does one scripted thing: serves honestly, takes a request
//! and sits on its answer, answers late (out of order), forges a response, sets `rsp_prod`
//! to anything, rewrites an answered slot, or stays silent (the wait times out). Nothing
//! may panic (the peer also panics on a malformed request while the backend has been
//! honest), every call must end, a disk that saw a protocol violation or a timeout must
//! refuse everything after, and while the backend has been honest a read returns the
//! disk's bytes.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use mote_blkfront::device::{Discard, DiskError, DiskInfo, Features};
use mote_blkfront::peer::{Peer, Scripted};
use mote_blkfront::wire::Response;

#[derive(Arbitrary, Debug)]
enum Act {
    Serve,
    Hold,
    Answer(u8),
    Forge { id: u64, operation: u8, status: i16 },
    RspProd(u32),
    Rewrite { slot: u8, id: u64, operation: u8, status: i16 },
    Silent,
}

#[derive(Arbitrary, Debug)]
enum Call {
    Read { sector: u16, sectors: u8 },
    Write { sector: u16, sectors: u8, byte: u8 },
    Flush,
    Discard { sector: u16, sectors: u16 },
}

#[derive(Arbitrary, Debug)]
struct Input {
    ring_order: u8,
    indirect: u8,
    pool: u8,
    calls: Vec<Call>,
    acts: Vec<Act>,
}

/// The disk: 2 MiB.
const SECTORS: u64 = 4096;

struct Backend {
    acts: std::vec::IntoIter<Act>,
    held: Vec<Response>,
}

fuzz_target!(|input: Input| {
    let info = DiskInfo { sectors: SECTORS, sector_size: 512, read_only: false, flush: true };
    let features = Features {
        ring_pages: 1 << (input.ring_order % 3),
        indirect_segments: usize::from(input.indirect),
        persistent: true,
        discard: Some(Discard { granularity: 512, alignment: 0, secure: false }),
    };
    let (mut disk, peer) = Peer::connect(info, features, 2 + usize::from(input.pool % 64));
    let mut backend = Backend { acts: input.acts.into_iter(), held: Vec::new() };
    let mut failed: Option<DiskError> = None;
    let mut io = Scripted(peer, move |p: &mut Peer| {
        let Some(act) = backend.acts.next() else { return false };
        match act {
            Act::Serve => p.serve(),
            Act::Hold => {
                if let Some(req) = p.take() {
                    let rsp = p.execute(&req);
                    backend.held.push(rsp);
                }
            }
            Act::Answer(i) => {
                if !backend.held.is_empty() {
                    let rsp = backend.held.remove(usize::from(i) % backend.held.len());
                    p.respond(rsp);
                    p.publish();
                }
            }
            Act::Forge { id, operation, status } => {
                p.strict = false;
                p.respond(Response { id, operation, status, ..Response::default() });
                p.publish();
            }
            Act::RspProd(v) => {
                p.strict = false;
                p.set_rsp_prod(v);
            }
            Act::Rewrite { slot, id, operation, status } => {
                // May land on a request not taken yet, too.
                p.strict = false;
                p.write_response(u32::from(slot), Response { id, operation, status, ..Response::default() });
            }
            Act::Silent => return false,
        }
        true
    });
    for call in input.calls {
        let sector = |s: u16| u64::from(s) % SECTORS;
        let result = match call {
            Call::Read { sector: s, sectors } => {
                let mut buf = vec![0u8; usize::from(sectors) * 512];
                let result = disk.read(sector(s), &mut buf, &mut io);
                if result.is_ok() && io_honest(&io) {
                    let at = sector(s) as usize * 512;
                    assert_eq!(&buf[..], &io.0.disk[at..at + buf.len()], "an honest backend's data");
                }
                result
            }
            Call::Write { sector: s, sectors, byte } => {
                disk.write(sector(s), &vec![byte; usize::from(sectors) * 512], &mut io)
            }
            Call::Flush => disk.flush(&mut io),
            Call::Discard { sector: s, sectors } => {
                disk.discard(sector(s), u64::from(sectors), &mut io).map(drop)
            }
        };
        if let Some(e) = failed {
            assert_eq!(result, Err(e), "a failed disk refuses everything");
        }
        if let Err(e @ (DiskError::Ring(_) | DiskError::Response(_) | DiskError::Timeout(_))) = result {
            failed = Some(e);
        }
    }
});

/// Whether the backend has only served, held and answered (the peer stays strict until a
/// forgery).
fn io_honest<F: FnMut(&mut Peer) -> bool>(io: &Scripted<F>) -> bool {
    io.0.strict
}
