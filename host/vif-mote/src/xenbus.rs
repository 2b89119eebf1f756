//! The xenstore client over dom0's `/dev/xen/xenbus` (Linux's xenbus_dev_frontend), which works
//! whether xenstored runs in dom0 or in a stub domain.

use mote_xen::xenstore::wire::{Header, HEADER_LEN};
use mote_xen::xenstore::{Client, Transport, TransportError};
use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

const DEVICE: &str = "/dev/xen/xenbus";

/// Opens the device; reads do not block, so the client can poll it.
pub fn connect() -> io::Result<Client<Xenbus>> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(DEVICE)
        .map_err(|e| io::Error::new(e.kind(), format!("{DEVICE}: {e}")))?;
    Ok(Client::new(Xenbus { file, staged: Vec::new() }))
}

pub struct Xenbus {
    file: File,
    /// Bytes of a message not yet whole: the device takes one message per write and drops
    /// whatever follows it in the same write.
    staged: Vec<u8>,
}

/// The length of the whole message at the start of `bytes`, once all of it is there. A header
/// the wire format refuses (the client never encodes one) counts as one message by itself, so
/// the device's own check refuses it rather than our buffer growing.
fn first_message_len(bytes: &[u8]) -> Option<usize> {
    let header = bytes.first_chunk::<HEADER_LEN>()?;
    let len = Header::parse(header).map_or(HEADER_LEN, |h| HEADER_LEN + h.len as usize);
    (bytes.len() >= len).then_some(len)
}

fn os_error(e: &io::Error) -> TransportError {
    TransportError::Os(e.raw_os_error().unwrap_or(0))
}

impl Transport for Xenbus {
    fn send(&mut self, bytes: &[u8]) -> Result<usize, TransportError> {
        self.staged.extend_from_slice(bytes);
        while let Some(len) = first_message_len(&self.staged) {
            (&self.file).write_all(&self.staged[..len]).map_err(|e| os_error(&e))?;
            self.staged.drain(..len);
        }
        Ok(bytes.len())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, TransportError> {
        match (&self.file).read(buf) {
            Ok(n) => Ok(n),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => Ok(0),
            Err(e) => Err(os_error(&e)),
        }
    }

    /// Every write reaches xenstored at once: nothing to signal.
    fn notify(&mut self) {}

    fn wait(&mut self) {
        let mut fd = libc::pollfd { fd: self.file.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: `fd` is one valid pollfd for the duration of the call. An error or a signal
        // just returns; the client then reads (and reports a failed device) or waits again.
        unsafe { libc::poll(&mut fd, 1, -1) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(ty: u32, payload: &[u8]) -> Vec<u8> {
        let mut msg = Vec::new();
        for field in [ty, 1, 0, payload.len() as u32] {
            msg.extend_from_slice(&field.to_le_bytes());
        }
        msg.extend_from_slice(payload);
        msg
    }

    #[test]
    fn a_message_is_whole_only_with_its_whole_payload() {
        let read = message(2, b"backend/vif/1/0/bridge\0");
        assert_eq!(first_message_len(&read[..HEADER_LEN - 1]), None);
        assert_eq!(first_message_len(&read[..read.len() - 1]), None);
        assert_eq!(first_message_len(&read), Some(read.len()));
    }

    #[test]
    fn two_messages_in_one_buffer_are_cut_at_the_first() {
        let mut both = message(2, b"a\0");
        let first = both.len();
        both.extend(message(11, b"b\0connected"));
        assert_eq!(first_message_len(&both), Some(first));
        assert_eq!(first_message_len(&both[first..]), Some(both.len() - first));
    }

    #[test]
    fn a_header_the_wire_format_refuses_is_sent_alone() {
        let oversized = message(2, &[b'x'; 5000]);
        assert_eq!(first_message_len(&oversized), Some(HEADER_LEN));
        let unknown = message(99, b"x\0");
        assert_eq!(first_message_len(&unknown), Some(HEADER_LEN));
    }
}
