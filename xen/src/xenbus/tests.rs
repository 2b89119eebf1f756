//! The frontend against the fake xenstored, with the fake playing netback.

use super::*;
use crate::xenstore::fake::{connect, Fake, FakeXenstored, TestClient};
use alloc::vec;
use alloc::vec::Vec;
use XenbusState::*;

const DEVICE: &str = "device/vif/0";
const FRONT: &str = "/local/domain/7/device/vif/0";
const BACKEND: &str = "/local/domain/0/backend/vif/7/0";
const BACK_STATE: &str = "/local/domain/0/backend/vif/7/0/state";

/// A guest whose `device/vif/0` the toolstack set up, with the backend in
/// `backend_state`.
fn device(backend_state: &str) -> (TestClient, Fake) {
    let (mut xs, fake, _) = connect(0);
    for (key, value) in [("backend", BACKEND), ("backend-id", "0"), ("state", "1")] {
        xs.write(&format!("{DEVICE}/{key}"), value.as_bytes()).unwrap();
    }
    fake.borrow_mut().put(BACK_STATE, backend_state);
    (xs, fake)
}

/// A backend that follows the frontend like Linux netback: it connects
/// once the frontend is Initialised with its ring published, and closes
/// after it.
fn netback(fake: &FakeXenstored, changed: &str) -> Vec<(String, String)> {
    if changed != format!("{FRONT}/state") {
        return vec![];
    }
    let next = match fake.value(changed) {
        Some(b"3") => {
            assert_eq!(fake.value(&format!("{FRONT}/tx-ring-ref")), Some(&b"8"[..]), "state before ring");
            "4"
        }
        Some(b"5") => "5",
        Some(b"6") => "6",
        _ => return vec![],
    };
    vec![(BACK_STATE.into(), next.into())]
}

#[test]
fn states_parse_exactly_as_the_header_numbers_them() {
    for (n, state) in [
        Unknown,
        Initialising,
        InitWait,
        Initialised,
        Connected,
        Closing,
        Closed,
        Reconfiguring,
        Reconfigured,
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(state as usize, n);
        assert_eq!(state.text(), n.to_string());
        assert_eq!(XenbusState::parse(state.text().as_bytes()), Ok(state));
    }
    for garbage in [&b""[..], b"9", b"10", b"04", b" 4", b"4\n", b"-1", b"Connected", b"4\0"] {
        assert_eq!(XenbusState::parse(garbage), Err(XenbusError::BadState), "{garbage:?}");
    }
}

#[test]
fn backend_paths_and_ids_are_checked() {
    assert_eq!(check_backend("/local/domain/0/backend/vif/7/0", "0"), Ok(DomId(0)));
    assert_eq!(check_backend("/local/domain/12/backend/vbd/7/51712", "12"), Ok(DomId(12)));
    for path in [
        "local/domain/0/backend/vif/7/0",
        "/local/domain/0/frontend/vif/7/0",
        "/local/domain//backend/vif/7/0",
        "/local/domain/x/backend/vif/7/0",
        "/local/domain/00/backend/vif/7/0",
        "/local/domain/32752/backend/vif/7/0",
        "/local/domain/0/backend/",
        "/local/domain/0/backend/vif//0",
        "/local/domain/0/backend/vif/7/0/",
    ] {
        assert_eq!(check_backend(path, "0"), Err(XenbusError::BadBackendPath), "{path}");
    }
    for id in ["1", "", "00", "0x0", "-0", "65536"] {
        assert_eq!(
            check_backend("/local/domain/0/backend/vif/7/0", id),
            Err(XenbusError::BadBackendId),
            "{id}"
        );
    }
}

#[test]
fn handshake_reaches_connected_and_closes() {
    let (mut xs, fake) = device("2");
    fake.borrow_mut().peer = Some(Box::new(netback));
    let steps = fake.borrow().steps();
    let mut front = Frontend::open(&mut xs, DEVICE).unwrap();
    // The backend's path and id, then its state read under the new watch.
    assert_eq!(fake.borrow().steps() - steps, 2);
    assert_eq!((front.path(), front.backend(), front.backend_id()), (DEVICE, BACKEND, DomId(0)));
    assert_eq!(front.backend_state(), InitWait);
    assert_eq!(front.poll(&mut xs), Ok(None));

    // The ring and the state land together even when the commit is retried,
    // each attempt in three round trips: start, the writes, the commit.
    fake.borrow_mut().conflicts = 2;
    let (started, steps) = (fake.borrow().started, fake.borrow().steps());
    front
        .publish(&mut xs, Initialised, |keys| {
            keys.write("tx-ring-ref", "8");
            keys.write("event-channel", "5");
        })
        .unwrap();
    assert_eq!(fake.borrow().started - started, 3);
    assert_eq!(fake.borrow().steps() - steps, 9);
    assert_eq!(front.wait_backend(&mut xs, |s| s == Connected), Ok(Connected));
    front.switch(&mut xs, Connected).unwrap();
    assert_eq!(xs.read(&format!("{DEVICE}/event-channel")).unwrap(), b"5");
    assert_eq!(xs.read(&format!("{DEVICE}/state")).unwrap(), b"4");

    let watches = fake.borrow().watch_count();
    assert_eq!(front.close(&mut xs), Ok(Closed));
    assert_eq!(xs.read(&format!("{DEVICE}/state")).unwrap(), b"6");
    assert_eq!(fake.borrow().watch_count(), watches - 1);
}

#[test]
fn a_backend_closing_while_connected_is_reported() {
    let (mut xs, fake) = device("4");
    fake.borrow_mut().peer = Some(Box::new(netback));
    let mut front = Frontend::open(&mut xs, DEVICE).unwrap();
    assert_eq!(front.backend_state(), Connected);

    fake.borrow_mut().put(BACK_STATE, "5");
    assert_eq!(front.poll(&mut xs), Ok(Some(BackendEvent::Closing(Closing))));
    assert_eq!(front.poll(&mut xs), Ok(None));
    assert_eq!(front.wait_backend(&mut xs, |s| s == Connected), Err(XenbusError::BackendClosed(Closing)));
    // The backend is already Closing; it goes Closed after us.
    assert_eq!(front.close(&mut xs), Ok(Closed));
    assert_eq!(xs.read(&format!("{DEVICE}/state")).unwrap(), b"6");
}

#[test]
fn a_garbage_backend_state_is_an_error_not_a_state() {
    let (mut xs, fake) = device("banana");
    assert_eq!(Frontend::open(&mut xs, DEVICE).unwrap_err(), XenbusError::BadState);

    fake.borrow_mut().put(BACK_STATE, "2");
    let mut front = Frontend::open(&mut xs, DEVICE).unwrap();
    fake.borrow_mut().put(BACK_STATE, "99");
    assert_eq!(front.wait_backend(&mut xs, |s| s == Connected), Err(XenbusError::BadState));
    assert_eq!(front.backend_state(), InitWait);
    fake.borrow_mut().put(BACK_STATE, "4");
    assert_eq!(front.poll(&mut xs), Ok(Some(BackendEvent::State(Connected))));
}

#[test]
fn a_missing_or_forged_backend_is_refused() {
    let (mut xs, _) = device("2");
    xs.rm(&format!("{DEVICE}/backend")).unwrap();
    assert_eq!(Frontend::open(&mut xs, DEVICE).unwrap_err(), XenbusError::Missing("backend"));
    assert_eq!(Frontend::open(&mut xs, "device/vif/9").unwrap_err(), XenbusError::Missing("backend"));

    xs.write(&format!("{DEVICE}/backend"), b"/local/domain/7/secret").unwrap();
    assert_eq!(Frontend::open(&mut xs, DEVICE).unwrap_err(), XenbusError::BadBackendPath);
    xs.write(&format!("{DEVICE}/backend"), BACKEND.as_bytes()).unwrap();
    xs.write(&format!("{DEVICE}/backend-id"), b"3").unwrap();
    assert_eq!(Frontend::open(&mut xs, DEVICE).unwrap_err(), XenbusError::BadBackendId);
    xs.rm(&format!("{DEVICE}/backend-id")).unwrap();
    assert_eq!(Frontend::open(&mut xs, DEVICE).unwrap_err(), XenbusError::Missing("backend-id"));
}

#[test]
fn a_handshake_starts_from_initialising_without_rewriting_it() {
    let (mut xs, fake) = device("2");
    fake.borrow_mut().peer = Some(Box::new(netback));
    let mut front = Frontend::open(&mut xs, DEVICE).unwrap();
    assert_eq!(front.state(), Initialising);
    let steps = fake.borrow().steps();
    front.initialise(&mut xs).unwrap();
    assert_eq!(fake.borrow().steps(), steps, "the toolstack's Initialising is rewritten");

    // A device we closed starts over from Closed.
    assert_eq!(front.close(&mut xs), Ok(Closed));
    let mut front = Frontend::open(&mut xs, DEVICE).unwrap();
    assert_eq!(front.state(), Closed);
    front.initialise(&mut xs).unwrap();
    assert_eq!((front.state(), xs.read(&format!("{DEVICE}/state")).unwrap()), (Initialising, b"1".to_vec()));
}

#[test]
fn a_removed_device_is_not_recreated() {
    let (mut xs, _) = device("2");
    let mut front = Frontend::open(&mut xs, DEVICE).unwrap();
    xs.rm(DEVICE).unwrap();
    assert_eq!(front.switch(&mut xs, Initialised), Err(XenbusError::Missing("state")));
    assert_eq!(xs.read(DEVICE), Err(XsError::Xen(Errno::NoEnt)));
}

#[test]
fn a_vanished_backend_counts_as_closed() {
    let (mut xs, fake) = device("4");
    let mut front = Frontend::open(&mut xs, DEVICE).unwrap();
    // The toolstack removes the backend; nobody answers our Closing.
    fake.borrow_mut().remove(BACKEND);
    assert_eq!(front.poll(&mut xs), Ok(Some(BackendEvent::State(Unknown))));
    assert_eq!(front.close(&mut xs), Ok(Unknown));
    assert_eq!(xs.read(&format!("{DEVICE}/state")).unwrap(), b"6");
}

#[test]
fn a_backend_removed_with_its_parents_counts_as_closed() {
    let (mut xs, fake) = device("4");
    let mut front = Frontend::open(&mut xs, DEVICE).unwrap();
    // libxl removes the backend's directory and its empty parents: what is left, dom0's
    // `backend`, we may not read, so xenstored answers EACCES, not ENOENT.
    fake.borrow_mut().remove("/local/domain/0/backend/vif");
    assert_eq!(xs.read(BACK_STATE), Err(XsError::Xen(Errno::Acces)));
    assert_eq!(front.poll(&mut xs), Ok(Some(BackendEvent::State(Unknown))));
    assert_eq!(front.close_within(&mut xs, || true), Ok(Unknown));
    assert_eq!(xs.read(&format!("{DEVICE}/state")).unwrap(), b"6");
}

#[test]
fn a_silent_backend_does_not_hold_the_close_forever() {
    // The backend stays Connected whatever we write: nothing answers our Closing.
    let (mut xs, fake) = device("4");
    let front = Frontend::open(&mut xs, DEVICE).unwrap();
    let watches = fake.borrow().watch_count();
    let mut waits = 0;
    let result = front.close_within(&mut xs, || {
        waits += 1;
        waits < 3
    });
    assert_eq!(result, Err(XenbusError::NoAnswer(Connected)));
    assert_eq!(waits, 3, "waited until the caller's time was up, no longer");
    assert_eq!(xs.read(&format!("{DEVICE}/state")).unwrap(), b"5", "left at Closing");
    assert_eq!(fake.borrow().watch_count(), watches - 1, "the backend is no longer watched");
    assert_eq!(
        XenbusError::NoAnswer(Connected).to_string(),
        "xenbus: the backend did not answer our closing (it stayed Connected)"
    );
}

#[test]
fn an_answer_already_received_is_not_waited_for() {
    // The backend's answers come in one batch with the reply to our next read of its state:
    // the client queues the watch event while reading the reply (one notification for both),
    // so the close must look at the queue before it waits for another notification.
    let (mut xs, fake) = device("4");
    fake.borrow_mut().peer = Some(Box::new(netback));
    fake.borrow_mut().answers_after_replies = true;
    let front = Frontend::open(&mut xs, DEVICE).unwrap();
    // A notification comes only while the backend has something left to say; otherwise the
    // wait runs into the deadline.
    let wait = || {
        let coming = fake.borrow().answers_pending();
        if coming {
            fake.borrow_mut().step();
        }
        coming
    };
    assert_eq!(front.close_within(&mut xs, wait), Ok(Closed));
}

#[test]
fn a_backend_that_answers_in_time_closes_within_the_limit() {
    let (mut xs, fake) = device("4");
    fake.borrow_mut().peer = Some(Box::new(netback));
    let front = Frontend::open(&mut xs, DEVICE).unwrap();
    assert_eq!(front.close_within(&mut xs, || true), Ok(Closed));
    assert_eq!(xs.read(&format!("{DEVICE}/state")).unwrap(), b"6");
}
