//! The client against the fake xenstored, through a real shared page.

use super::fake::{connect, message, GUEST};
use super::wire::{Access, MsgType, Permission, Request, TxId, WatchEvent, PAYLOAD_MAX};
use super::{Errno, ProtocolError, Reply, Store, TransportError, XsError, TX_ATTEMPTS};
use crate::ring::RingCorrupt;
use crate::DomId;
use core::sync::atomic::Ordering;

fn event(path: &str, token: &str) -> WatchEvent {
    WatchEvent { path: path.into(), token: token.into() }
}

#[test]
fn the_guest_learns_its_domid_and_name() {
    let (mut xs, _, _) = connect(0);
    assert_eq!(xs.domid(), Ok(GUEST));
    assert_eq!(xs.name().as_deref(), Ok("guest"));
}

#[test]
fn node_operations_round_trip() {
    let (mut xs, _, _) = connect(0);
    xs.write("data/a", b"1").unwrap();
    xs.mkdir("data/b/c").unwrap();
    assert_eq!(xs.read("/local/domain/7/data/a").unwrap(), b"1");
    assert_eq!(xs.read("data/b").unwrap(), b"");
    assert_eq!(xs.directory("data").unwrap(), ["a", "b"]);
    let perms = [
        Permission { domid: GUEST, access: Access::None },
        Permission { domid: DomId(0), access: Access::Read },
    ];
    xs.set_perms("data/a", &perms).unwrap();
    assert_eq!(xs.get_perms("data/a").unwrap(), perms);
    xs.rm("data/b").unwrap();
    assert_eq!(xs.directory("data").unwrap(), ["a"]);
    xs.rm("data/b").unwrap();
}

#[test]
fn xenstored_errors_are_typed_and_the_connection_goes_on() {
    let (mut xs, _, _) = connect(0);
    assert_eq!(xs.read("missing"), Err(XsError::Xen(Errno::NoEnt)));
    assert_eq!(xs.read("/local/domain/0/secret"), Err(XsError::Xen(Errno::Acces)));
    assert_eq!(xs.rm("no/parent"), Err(XsError::Xen(Errno::NoEnt)));
    assert_eq!(xs.read("/fault/ENOTCOFFEE"), Err(XsError::UnknownXen("ENOTCOFFEE".into())));
    assert_eq!(xs.domid(), Ok(GUEST));
}

#[test]
fn maximal_messages_split_across_ring_fills_and_wrap_u32() {
    let (mut xs, fake, intf) = connect(u32::MAX - 300);
    fake.borrow_mut().chunk = 100;
    // "big\0" plus the value fills the payload exactly.
    let value: Vec<u8> = (0..PAYLOAD_MAX - 4).map(|i| b'a' + (i % 26) as u8).collect();
    xs.write("big", &value).unwrap();
    assert_eq!(xs.read("big").unwrap(), value);
    assert!(intf.req_prod.load(Ordering::Relaxed) < 10_000, "the request index wrapped");
    assert!(intf.rsp_prod.load(Ordering::Relaxed) < 10_000, "the reply index wrapped");
}

#[test]
fn oversized_requests_are_refused_before_sending() {
    let (mut xs, _, intf) = connect(0);
    let value = vec![b'x'; PAYLOAD_MAX];
    assert_eq!(xs.write("big", &value), Err(XsError::TooLong(PAYLOAD_MAX + 4)));
    assert_eq!(xs.read("bad\0path"), Err(XsError::BadArgument("path")));
    assert_eq!(intf.req_prod.load(Ordering::Relaxed), 0);
    assert_eq!(xs.domid(), Ok(GUEST));
}

#[test]
fn replies_out_of_order_reach_their_requests() {
    let (mut xs, fake, _) = connect(0);
    xs.write("x", b"ex").unwrap();
    fake.borrow_mut().hold_replies = 3;
    let ids = [
        xs.submit(TxId::NONE, &Request::Read("name")).unwrap(),
        xs.submit(TxId::NONE, &Request::Read("missing")).unwrap(),
        xs.submit(TxId::NONE, &Request::Read("x")).unwrap(),
    ];
    assert_eq!(xs.wait_reply(ids[0]).unwrap().into_bytes(), b"guest");
    assert_eq!(xs.wait_reply(ids[1]), Err(XsError::Xen(Errno::NoEnt)));
    assert_eq!(xs.wait_reply(ids[2]).unwrap().into_bytes(), b"ex");
    assert_eq!(xs.wait_reply(ids[2]), Err(XsError::NotInFlight(ids[2])));
}

#[test]
fn a_reply_taken_past_the_last_request_is_no_reply() {
    let (mut xs, _, _) = connect(0);
    let mut replies = xs.call_all(&[Request::Write("data/a", b"1")]);
    assert_eq!(replies.next_reply().map(Reply::into_bytes), Ok(b"OK\0".to_vec()));
    assert_eq!(replies.next_reply(), Err(XsError::NoReply));
}

#[test]
fn requests_sent_together_take_one_round_trip_and_answer_in_order() {
    let (mut xs, fake, _) = connect(0);
    let steps = fake.borrow().steps();
    let too_long = vec![b'x'; PAYLOAD_MAX];
    let replies = xs.call_all(&[
        Request::Write("data/a", b"1"),
        Request::Read("data/a"),
        Request::Read("missing"),
        Request::Write("data/big", &too_long),
        Request::Directory("data"),
    ]);
    assert_eq!(fake.borrow().steps() - steps, 1);
    let replies: Vec<_> = replies.into_iter().map(|r| r.map(|r| r.into_bytes())).collect();
    assert_eq!(
        replies,
        [
            Ok(b"OK\0".to_vec()),
            Ok(b"1".to_vec()),
            Err(XsError::Xen(Errno::NoEnt)),
            Err(XsError::TooLong(PAYLOAD_MAX + 9)),
            Ok(b"a\0".to_vec())
        ]
    );
    // No reply is left over for a later request to trip on.
    assert_eq!(xs.identity(), Ok((GUEST, "guest".into())));
    assert_eq!(fake.borrow().steps() - steps, 2);
}

#[test]
fn a_watch_and_what_follows_it_take_one_round_trip() {
    let (mut xs, fake, _) = connect(0);
    xs.write("device/vif/0", b"").unwrap();
    let steps = fake.borrow().steps();
    let (dev, listing) = xs.watch_then("device/vif", "vifs", &[Request::Directory("device/vif")]).unwrap();
    assert_eq!(fake.borrow().steps() - steps, 1);
    assert_eq!(listing.into_iter().map(|r| r.unwrap().directory().unwrap()).collect::<Vec<_>>(), [["0"]]);
    assert_eq!(xs.next_event(dev), Ok(Some(event("device/vif", "vifs"))));
    // A refused watch is not kept; what followed it was still answered, and
    // taken, so no reply is left over.
    let refused = xs.watch_then("bad\0path", "s", &[Request::Read("name")]);
    assert_eq!(refused.map(drop).unwrap_err(), XsError::BadArgument("path"));
    assert_eq!(xs.watch("/local/domain/7/data", "s").map(drop), Ok(()));
    assert_eq!(xs.identity(), Ok((GUEST, "guest".into())));
    assert_eq!(xs.watch_then("elsewhere", "vifs", &[]).map(drop), Err(XsError::TokenInUse));
}

#[test]
fn watch_events_go_to_their_owners_between_replies() {
    let (mut xs, fake, _) = connect(0);
    let dev = xs.watch("device", "dev").unwrap();
    let root = xs.watch("/local/domain/7/control", "ctl").unwrap();
    assert_eq!(xs.watch("elsewhere", "dev"), Err(XsError::TokenInUse));
    // Events arrive before, between and after the (reordered) replies.
    fake.borrow_mut().hold_replies = 3;
    let writes = [("device/vif/0", b"a"), ("control/shutdown", b"b"), ("device/vbd/1", b"c")];
    let ids: Vec<_> =
        writes.iter().map(|(p, v)| xs.submit(TxId::NONE, &Request::Write(p, &v[..])).unwrap()).collect();
    for id in ids {
        xs.wait_reply(id).unwrap();
    }
    fake.borrow_mut().hold_replies = 0;
    assert_eq!(xs.next_event(dev), Ok(Some(event("device", "dev"))));
    assert_eq!(xs.next_event(dev), Ok(Some(event("device/vif/0", "dev"))));
    assert_eq!(xs.wait_event(dev), Ok(event("device/vbd/1", "dev")));
    assert_eq!(xs.next_event(dev), Ok(None));
    assert_eq!(xs.wait_event(root), Ok(event("/local/domain/7/control", "ctl")));
    assert_eq!(xs.wait_event(root), Ok(event("/local/domain/7/control/shutdown", "ctl")));

    xs.unwatch(dev).unwrap();
    assert_eq!(xs.next_event(dev), Err(XsError::UnknownWatch));
    xs.write("device/vif/1", b"d").unwrap();
    xs.write("control/reboot", b"e").unwrap();
    assert_eq!(xs.wait_event(root), Ok(event("/local/domain/7/control/reboot", "ctl")));
    let again = xs.watch("device", "dev").unwrap();
    assert_eq!(xs.wait_event(again), Ok(event("device", "dev")));
    assert_eq!(xs.unwatch(dev), Err(XsError::UnknownWatch));
}

#[test]
fn transactions_commit_and_retry_on_eagain() {
    let (mut xs, fake, _) = connect(0);
    xs.write("counter", b"0").unwrap();
    let watch = xs.watch("counter", "c").unwrap();
    fake.borrow_mut().conflicts = 2;
    let mut runs = 0;
    let seen = xs
        .transaction(|tx| {
            runs += 1;
            let n: u32 = tx.read_string("counter")?.parse().unwrap();
            tx.write("counter", (n + 1).to_string().as_bytes())?;
            Ok(n)
        })
        .unwrap();
    assert_eq!((runs, seen), (3, 0));
    assert_eq!(xs.read("counter").unwrap(), b"1");
    assert_eq!(fake.borrow().started, 3);
    // The initial event, then one for the commit; none for the attempts.
    assert_eq!(xs.wait_event(watch), Ok(event("counter", "c")));
    assert_eq!(xs.wait_event(watch), Ok(event("counter", "c")));
    assert_eq!(xs.next_event(watch), Ok(None));
}

#[test]
fn transactions_give_up_after_bounded_conflicts() {
    let (mut xs, fake, _) = connect(0);
    fake.borrow_mut().conflicts = u32::MAX;
    let result = xs.transaction(|tx| tx.write("x", b"1"));
    assert_eq!(result, Err(XsError::Conflict { attempts: TX_ATTEMPTS }));
    assert_eq!(fake.borrow().started, TX_ATTEMPTS);
    assert_eq!(xs.read("x"), Err(XsError::Xen(Errno::NoEnt)));
}

#[test]
fn a_failing_body_aborts_the_transaction() {
    let (mut xs, _, _) = connect(0);
    let result: Result<(), _> = xs.transaction(|tx| {
        tx.write("x", b"1")?;
        tx.read("missing").map(drop)
    });
    assert_eq!(result, Err(XsError::Xen(Errno::NoEnt)));
    assert_eq!(xs.read("x"), Err(XsError::Xen(Errno::NoEnt)));
}

#[test]
fn an_oversized_reply_ends_the_connection() {
    let (mut xs, fake, _) = connect(0);
    let mut header = message(MsgType::Read as u32, 1, b"");
    header[12..16].copy_from_slice(&(PAYLOAD_MAX as u32 + 1).to_le_bytes());
    fake.borrow_mut().inject(&header);
    let oversized = XsError::Protocol(ProtocolError::Oversized(PAYLOAD_MAX as u32 + 1));
    assert_eq!(xs.read("name"), Err(oversized.clone()));
    assert_eq!(xs.domid(), Err(oversized));
}

#[test]
fn a_runaway_reply_index_ends_the_connection() {
    let (mut xs, _, intf) = connect(5);
    intf.rsp_prod.store(5 + 2000, Ordering::Relaxed);
    let corrupt = XsError::Transport(TransportError::Corrupt(RingCorrupt { cons: 5, prod: 2005 }));
    assert_eq!(xs.read("name"), Err(corrupt.clone()));
    assert_eq!(xs.write("x", b""), Err(corrupt));
}

#[test]
fn unsolicited_and_mistyped_replies_are_protocol_errors() {
    let (mut xs, fake, _) = connect(0);
    fake.borrow_mut().inject(&message(MsgType::Read as u32, 999, b"x"));
    assert_eq!(xs.read("name"), Err(XsError::Protocol(ProtocolError::Unsolicited(super::ReqId(999)))));

    let (mut xs, fake, _) = connect(0);
    let id = xs.submit(TxId::NONE, &Request::Read("name")).unwrap();
    fake.borrow_mut().inject(&message(MsgType::Write as u32, id.0, b"OK\0"));
    let wrong = ProtocolError::WrongType { req_id: id, ty: MsgType::Write as u32 };
    assert_eq!(xs.wait_reply(id), Err(XsError::Protocol(wrong)));
}

#[test]
fn garbled_payloads_fail_their_request_only() {
    let (mut xs, fake, _) = connect(0);
    xs.mkdir("x").unwrap();
    fake.borrow_mut().garble = Some(b"a\0\xff\0".to_vec());
    assert_eq!(xs.directory("x"), Err(XsError::Protocol(ProtocolError::Malformed("directory"))));
    fake.borrow_mut().garble = Some(b"one\0two\0".to_vec());
    assert!(xs.get_perms("x").is_err());
    fake.borrow_mut().garble = Some(b"\xff".to_vec());
    assert_eq!(xs.name(), Err(XsError::BadValue("is not UTF-8")));
    fake.borrow_mut().garble = Some(b"seven".to_vec());
    assert_eq!(xs.domid(), Err(XsError::BadValue("is not a domain id")));
    assert_eq!(xs.domid(), Ok(GUEST));
}
