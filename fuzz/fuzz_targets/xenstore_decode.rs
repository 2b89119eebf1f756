//! Any bytes as the stream xenstored sends, pushed into the decoder in reads of the size the
//! first input byte says. The messages must be the same as when the stream arrives in one
//! read, stop at the first framing error, and each payload goes to the decoder of its type.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mote_xen::xenstore::wire::{
    parse_directory, parse_error, parse_perms, parse_tx_id, Decoder, Header, Message, MsgType, PAYLOAD_MAX,
};
use mote_xen::xenstore::{Permission, ProtocolError, WatchEvent};

fuzz_target!(|data: &[u8]| {
    let Some((&step, stream)) = data.split_first() else { return };
    let whole = decode(stream, stream.len().max(1));
    assert_eq!(decode(stream, usize::from(step) + 1), whole, "messages do not depend on how reads split");
    for message in whole.0 {
        check(&message);
    }
});

/// The messages in `stream` read `step` bytes at a time, and the framing error that ended it.
fn decode(stream: &[u8], step: usize) -> (Vec<Message>, Option<ProtocolError>) {
    let mut decoder = Decoder::default();
    let mut messages = Vec::new();
    for read in stream.chunks(step) {
        decoder.push(read);
        loop {
            match decoder.next_message() {
                Ok(Some(message)) => messages.push(message),
                Ok(None) => break,
                Err(e) => return (messages, Some(e)),
            }
        }
    }
    (messages, None)
}

fn check(message: &Message) {
    let header = message.header;
    assert_eq!(message.payload.len(), header.len as usize);
    assert!(message.payload.len() <= PAYLOAD_MAX);
    assert_eq!(Header::parse(&header.encode()), Ok(header));
    let payload = &message.payload[..];
    match header.ty {
        MsgType::Error => drop(parse_error(payload)),
        MsgType::Directory => {
            for name in parse_directory(payload).unwrap_or_default() {
                assert!(!name.is_empty() && !name.contains('/'));
            }
        }
        MsgType::GetPerms => {
            for perm in parse_perms(payload).unwrap_or_default() {
                assert_eq!(Permission::parse(&perm.to_string()), Some(perm));
            }
        }
        MsgType::TransactionStart => {
            if let Ok(tx) = parse_tx_id(payload) {
                assert_ne!(tx.0, 0);
            }
        }
        MsgType::WatchEvent => drop(WatchEvent::parse(payload)),
        _ => {}
    }
}
