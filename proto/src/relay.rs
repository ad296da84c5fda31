//! Syncthing's relay protocol v1, sans-IO: the eight XDR messages, their
//! 12-byte frame header (`magic 0x9E79BC40 | type | length`, big-endian)
//! and the 1024-byte payload bound, with a [`Decoder`] that is fed bytes
//! and yields messages. Nothing here panics on any input; the relay server
//! and the daemon's relay client own the sockets.
//!
//! XDR as Syncthing's generated code writes it: `opaque<32>` and `string`
//! are a u32 length, the bytes, and zero padding to a multiple of four; a
//! `u16` and a `bool` take a 4-byte word each. Trailing payload bytes are
//! ignored, as Syncthing's decoder ignores them (a 1.19.2 relay reads the
//! token a newer client adds to `JoinRelayRequest` that way), and an empty
//! `JoinRelayRequest` payload (clients before 1.22.1) means no token.

use std::fmt;

/// The frame magic.
pub const MAGIC: u32 = 0x9E79_BC40;
/// Bytes of a frame header.
pub const HEADER_LEN: usize = 12;
/// The largest payload either side accepts.
pub const MAX_PAYLOAD: usize = 1024;
/// The longest `opaque` field (device IDs, session keys, addresses).
pub const MAX_OPAQUE: usize = 32;
/// The ALPN protocol of the relay's protocol mode.
pub const ALPN: &[u8] = b"bep-relay";

/// `Response` codes.
pub mod code {
    /// Success (also: "you joined").
    pub const SUCCESS: i32 = 0;
    /// No such device or session key.
    pub const NOT_FOUND: i32 = 1;
    /// The device is already joined, or the session already has both ends.
    pub const ALREADY_CONNECTED: i32 = 2;
    /// The join token is wrong.
    pub const WRONG_TOKEN: i32 = 3;
    /// A message that makes no sense at this point.
    pub const UNEXPECTED_MESSAGE: i32 = 100;
}

/// One relay protocol message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Keep-alive from the relay.
    Ping,
    /// The answer to a [`Message::Ping`].
    Pong,
    /// A permanent client asks to be reachable through the relay.
    JoinRelayRequest {
        /// The relay's join token (empty: none).
        token: String,
    },
    /// The first message on a session-mode connection.
    JoinSessionRequest {
        /// The session key from an invitation.
        key: Vec<u8>,
    },
    /// The outcome of a request.
    Response {
        /// See [`code`].
        code: i32,
        /// Human-readable.
        message: String,
    },
    /// A temporary client asks for a session with a joined device.
    ConnectRequest {
        /// The raw 32-byte device ID of the target.
        id: Vec<u8>,
    },
    /// Where and how to meet the other party.
    SessionInvitation {
        /// The other party's raw device ID.
        from: Vec<u8>,
        /// The one-use session key.
        key: Vec<u8>,
        /// The relay's address for session mode (empty or unspecified:
        /// the address used to reach the relay).
        address: Vec<u8>,
        /// The relay's port for session mode.
        port: u16,
        /// Whether this side is the TLS server on the relayed pipe.
        server_socket: bool,
    },
    /// The relay has no room.
    RelayFull,
}

/// Why bytes are not a relay message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    /// The header's magic is wrong (not the relay protocol).
    #[error("magic {0:#010x} is not the relay protocol's")]
    BadMagic(u32),
    /// The payload length is negative or over [`MAX_PAYLOAD`].
    #[error("payload length {0} is out of bounds (0..=1024)")]
    BadLength(i32),
    /// An unknown message type.
    #[error("unknown message type {0}")]
    UnknownType(i32),
    /// The payload ends inside a field.
    #[error("{0}: the payload ends inside it")]
    Truncated(&'static str),
    /// An opaque field is longer than 32 bytes.
    #[error("{field}: {len} bytes, at most 32 allowed")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// A string is not UTF-8.
    #[error("{0}: not UTF-8")]
    NotUtf8(&'static str),
    /// A message too large to send (its payload would exceed 1024 bytes).
    #[error("a {0} of {1} bytes does not fit a frame")]
    Oversized(&'static str, usize),
}

impl Message {
    /// The wire type number.
    pub fn type_id(&self) -> i32 {
        match self {
            Self::Ping => 0,
            Self::Pong => 1,
            Self::JoinRelayRequest { .. } => 2,
            Self::JoinSessionRequest { .. } => 3,
            Self::Response { .. } => 4,
            Self::ConnectRequest { .. } => 5,
            Self::SessionInvitation { .. } => 6,
            Self::RelayFull => 7,
        }
    }

    /// The message's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ping => "Ping",
            Self::Pong => "Pong",
            Self::JoinRelayRequest { .. } => "JoinRelayRequest",
            Self::JoinSessionRequest { .. } => "JoinSessionRequest",
            Self::Response { .. } => "Response",
            Self::ConnectRequest { .. } => "ConnectRequest",
            Self::SessionInvitation { .. } => "SessionInvitation",
            Self::RelayFull => "RelayFull",
        }
    }

    /// A `Response` with Syncthing's message text for `code`.
    pub fn response(code: i32) -> Self {
        let message = match code {
            code::SUCCESS => "success",
            code::NOT_FOUND => "not found",
            code::ALREADY_CONNECTED => "already connected",
            code::WRONG_TOKEN => "wrong token",
            _ => "unexpected message",
        };
        Self::Response {
            code,
            message: message.to_string(),
        }
    }

    /// The whole frame: header and payload. Fails only for fields over
    /// their bounds (an opaque over 32 bytes, a payload over 1024).
    pub fn encode(&self) -> Result<Vec<u8>, RelayError> {
        let mut p = Vec::new();
        match self {
            Self::Ping | Self::Pong | Self::RelayFull => {}
            Self::JoinRelayRequest { token } => put_string(&mut p, token),
            Self::JoinSessionRequest { key } => put_opaque(&mut p, "Key", key)?,
            Self::Response { code, message } => {
                p.extend_from_slice(&code.to_be_bytes());
                put_string(&mut p, message);
            }
            Self::ConnectRequest { id } => put_opaque(&mut p, "ID", id)?,
            Self::SessionInvitation {
                from,
                key,
                address,
                port,
                server_socket,
            } => {
                put_opaque(&mut p, "From", from)?;
                put_opaque(&mut p, "Key", key)?;
                put_opaque(&mut p, "Address", address)?;
                p.extend_from_slice(&u32::from(*port).to_be_bytes());
                p.extend_from_slice(&u32::from(*server_socket).to_be_bytes());
            }
        }
        if p.len() > MAX_PAYLOAD {
            return Err(RelayError::Oversized(self.name(), p.len()));
        }
        let mut out = Vec::with_capacity(HEADER_LEN + p.len());
        out.extend_from_slice(&MAGIC.to_be_bytes());
        out.extend_from_slice(&self.type_id().to_be_bytes());
        out.extend_from_slice(&(p.len() as i32).to_be_bytes());
        out.extend_from_slice(&p);
        Ok(out)
    }

    /// Decodes a payload of message type `type_id`.
    pub fn decode(type_id: i32, payload: &[u8]) -> Result<Self, RelayError> {
        let mut r = Reader(payload);
        Ok(match type_id {
            0 => Self::Ping,
            1 => Self::Pong,
            2 if payload.is_empty() => Self::JoinRelayRequest {
                token: String::new(),
            },
            2 => Self::JoinRelayRequest {
                token: r.string("Token")?,
            },
            3 => Self::JoinSessionRequest {
                key: r.opaque("Key")?,
            },
            4 => Self::Response {
                code: r.u32("Code")? as i32,
                message: r.string("Message")?,
            },
            5 => Self::ConnectRequest {
                id: r.opaque("ID")?,
            },
            6 => Self::SessionInvitation {
                from: r.opaque("From")?,
                key: r.opaque("Key")?,
                address: r.opaque("Address")?,
                // A u16 in a 4-byte word; Syncthing keeps the low half.
                port: r.u32("Port")? as u16,
                server_socket: r.u32("ServerSocket")? != 0,
            },
            7 => Self::RelayFull,
            t => return Err(RelayError::UnknownType(t)),
        })
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A frame header: the message type and payload length, checked.
pub fn decode_header(h: &[u8; HEADER_LEN]) -> Result<(i32, usize), RelayError> {
    let word = |i: usize| [h[i], h[i + 1], h[i + 2], h[i + 3]];
    let magic = u32::from_be_bytes(word(0));
    if magic != MAGIC {
        return Err(RelayError::BadMagic(magic));
    }
    let type_id = i32::from_be_bytes(word(4));
    let len = i32::from_be_bytes(word(8));
    if !(0..=MAX_PAYLOAD as i32).contains(&len) {
        return Err(RelayError::BadLength(len));
    }
    Ok((type_id, len as usize))
}

/// Turns a byte stream into messages: [`Decoder::push`] what was read,
/// then take messages with [`Decoder::next_message`] until it says `None`. It
/// keeps only the bytes not decoded yet; a frame never needs more than
/// 12 + 1024 of them, so a reader bounds its reads by that.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// A decoder with nothing buffered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message, `None` if more bytes are needed. After an
    /// error the stream is not the relay protocol: close it.
    pub fn next_message(&mut self) -> Result<Option<Message>, RelayError> {
        let Some(header) = self.buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let (type_id, len) = decode_header(header)?;
        let Some(frame) = self.buf.get(..HEADER_LEN + len) else {
            return Ok(None);
        };
        let m = Message::decode(type_id, &frame[HEADER_LEN..])?;
        self.buf.drain(..HEADER_LEN + len);
        Ok(Some(m))
    }

    /// Bytes received after the last whole message (on a session-mode
    /// connection, the start of the relayed stream).
    pub fn into_rest(self) -> Vec<u8> {
        self.buf
    }
}

fn pad(len: usize) -> usize {
    (4 - len % 4) % 4
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
    out.extend(std::iter::repeat_n(0, pad(b.len())));
}

fn put_opaque(out: &mut Vec<u8>, field: &'static str, b: &[u8]) -> Result<(), RelayError> {
    if b.len() > MAX_OPAQUE {
        return Err(RelayError::TooLong {
            field,
            len: b.len(),
        });
    }
    put_bytes(out, b);
    Ok(())
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&[u8], RelayError> {
        if self.0.len() < n {
            return Err(RelayError::Truncated(field));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, RelayError> {
        let b = self.take(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn bytes(&mut self, field: &'static str, max: usize) -> Result<Vec<u8>, RelayError> {
        let len = self.u32(field)? as usize;
        if len > max {
            return Err(RelayError::TooLong { field, len });
        }
        let b = self.take(len, field)?.to_vec();
        self.take(pad(len), field)?;
        Ok(b)
    }

    fn opaque(&mut self, field: &'static str) -> Result<Vec<u8>, RelayError> {
        self.bytes(field, MAX_OPAQUE)
    }

    fn string(&mut self, field: &'static str) -> Result<String, RelayError> {
        String::from_utf8(self.bytes(field, MAX_PAYLOAD)?).map_err(|_| RelayError::NotUtf8(field))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Message> {
        vec![
            Message::Ping,
            Message::Pong,
            Message::JoinRelayRequest {
                token: String::new(),
            },
            Message::JoinRelayRequest {
                token: "sesame".into(),
            },
            Message::JoinSessionRequest { key: vec![7; 32] },
            Message::response(code::NOT_FOUND),
            Message::ConnectRequest { id: vec![1; 32] },
            Message::SessionInvitation {
                from: vec![2; 32],
                key: vec![3; 32],
                address: vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1],
                port: 22067,
                server_socket: true,
            },
            Message::RelayFull,
        ]
    }

    #[test]
    fn every_message_round_trips_through_the_decoder_byte_by_byte() {
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for m in all() {
            for b in m.encode().expect("encode") {
                d.push(&[b]);
                while let Some(m) = d.next_message().expect("decode") {
                    got.push(m);
                }
            }
        }
        assert_eq!(got, all());
        assert!(d.into_rest().is_empty());
    }

    #[test]
    fn the_wire_form_is_syncthings() {
        // An invitation with a 16-byte address is 100 payload bytes.
        let inv = &all()[7];
        let f = inv.encode().expect("encode");
        assert_eq!(f.len(), HEADER_LEN + 100);
        assert_eq!(
            &f[..12],
            &[0x9e, 0x79, 0xbc, 0x40, 0, 0, 0, 6, 0, 0, 0, 100]
        );
        assert_eq!(
            &f[f.len() - 8..],
            &[0, 0, 0x56, 0x33, 0, 0, 0, 1],
            "port 22067, true"
        );
        // "not found": code, then a padded string.
        let r = Message::response(code::NOT_FOUND).encode().expect("encode");
        assert_eq!(&r[12..], b"\0\0\0\x01\0\0\0\x09not found\0\0\0");
        // A pre-1.22.1 join: no payload at all.
        let old = [0x9e, 0x79, 0xbc, 0x40, 0, 0, 0, 2, 0, 0, 0, 0];
        let mut d = Decoder::new();
        d.push(&old);
        assert_eq!(
            d.next_message().expect("decode"),
            Some(Message::JoinRelayRequest {
                token: String::new()
            })
        );
    }

    #[test]
    fn bad_frames_are_errors_never_panics() {
        let frame = |magic: u32, t: i32, len: i32, payload: &[u8]| {
            let mut f = Vec::new();
            f.extend_from_slice(&magic.to_be_bytes());
            f.extend_from_slice(&t.to_be_bytes());
            f.extend_from_slice(&len.to_be_bytes());
            f.extend_from_slice(payload);
            f
        };
        let next = |bytes: Vec<u8>| {
            let mut d = Decoder::new();
            d.push(&bytes);
            d.next_message()
        };
        assert_eq!(
            next(frame(0x1603_0100, 0, 0, &[])),
            Err(RelayError::BadMagic(0x1603_0100))
        );
        assert_eq!(
            next(frame(MAGIC, 0, 1025, &[])),
            Err(RelayError::BadLength(1025))
        );
        assert_eq!(
            next(frame(MAGIC, 0, -1, &[])),
            Err(RelayError::BadLength(-1))
        );
        assert_eq!(
            next(frame(MAGIC, 9, 0, &[])),
            Err(RelayError::UnknownType(9))
        );
        assert_eq!(
            next(frame(MAGIC, 5, 4, &[0, 0, 0, 33])),
            Err(RelayError::TooLong {
                field: "ID",
                len: 33
            })
        );
        assert_eq!(
            next(frame(MAGIC, 5, 4, &[0, 0, 0, 8])),
            Err(RelayError::Truncated("ID"))
        );
        assert_eq!(
            next(frame(MAGIC, 4, 2, &[0, 0])),
            Err(RelayError::Truncated("Code"))
        );
        assert_eq!(
            next(frame(
                MAGIC,
                4,
                12,
                &[0, 0, 0, 0, 0, 0, 0, 2, 0xff, 0xfe, 0, 0]
            )),
            Err(RelayError::NotUtf8("Message"))
        );
        // Half a header, half a payload: wait for more.
        assert_eq!(next(frame(MAGIC, 0, 0, &[])[..7].to_vec()), Ok(None));
        assert_eq!(next(frame(MAGIC, 3, 36, &[0, 0, 0, 32])), Ok(None));
        // Trailing bytes inside a payload are ignored, as Syncthing does.
        assert_eq!(
            next(frame(MAGIC, 0, 4, &[1, 2, 3, 4])),
            Ok(Some(Message::Ping))
        );
        // Every prefix and every single-byte corruption of every message
        // decodes or fails, never panics.
        for m in all() {
            let f = m.encode().expect("encode");
            for n in 0..f.len() {
                let _ = next(f[..n].to_vec());
                for bit in 0..8 {
                    let mut g = f.clone();
                    g[n] ^= 1 << bit;
                    let _ = next(g);
                }
            }
        }
        // Encoding refuses what the peer would refuse.
        assert!(Message::ConnectRequest { id: vec![0; 33] }
            .encode()
            .is_err());
        assert!(Message::JoinRelayRequest {
            token: "x".repeat(1100)
        }
        .encode()
        .is_err());
    }
}
