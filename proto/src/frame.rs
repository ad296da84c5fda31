//! BEP framing: the Hello exchange and the message frames that follow it,
//! with LZ4 compression. Sans-IO: callers feed bytes into a `BytesMut` and
//! take whole messages out, so the same code serves TCP, QUIC and relays,
//! and tests can drive it byte by byte.
//!
//! Every length is checked against its bound before anything is allocated:
//! a peer cannot make us reserve more than [`MAX_MESSAGE_LEN`].

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message as _;

use crate::convert::MessageError;
use crate::message::{Compression, Hello, Message};
use crate::wire;

/// Magic number in front of a Hello.
pub const HELLO_MAGIC: u32 = 0x2EA7_D90B;
/// Largest Hello body.
pub const MAX_HELLO_LEN: usize = 32767;
/// Largest message body, compressed or not (Syncthing's `MaxMessageLen`).
pub const MAX_MESSAGE_LEN: usize = 500_000_000;
/// Messages shorter than this are never compressed.
const COMPRESSION_THRESHOLD: usize = 128;
/// Magics of pre-v0.14 protocols, refused with a clearer error.
const OLD_MAGICS: [u32; 3] = [0x0001_0001, 0x0001_0000, 0x9F79_BC40];

/// Why a byte stream was refused. Any of these ends the connection.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// A pre-v0.14 Syncthing.
    #[error("the peer speaks an old, incompatible protocol (magic {0:#010x})")]
    OldProtocol(u32),
    /// Not BEP at all.
    #[error("unknown magic {0:#010x}: not a BEP peer")]
    UnknownMagic(u32),
    /// Hello longer than allowed.
    #[error("hello of {0} bytes is too long (max {MAX_HELLO_LEN})")]
    HelloTooLong(usize),
    /// The Hello body did not decode.
    #[error("undecodable hello: {0}")]
    Hello(prost::DecodeError),
    /// A negative header length.
    #[error("negative header length {0}")]
    NegativeHeaderLength(i16),
    /// The frame header did not decode.
    #[error("undecodable frame header: {0}")]
    Header(prost::DecodeError),
    /// A body (or its uncompressed size) above the bound.
    #[error("message of {0} bytes exceeds the {MAX_MESSAGE_LEN}-byte limit")]
    MessageTooLong(i64),
    /// A compression scheme we do not know.
    #[error("unknown compression {0}")]
    UnknownCompression(i32),
    /// LZ4 data that does not decompress to its stated size.
    #[error("bad LZ4 data: {0}")]
    Lz4(String),
    /// The message itself is malformed.
    #[error(transparent)]
    Message(#[from] MessageError),
}

// ---- Hello -----------------------------------------------------------------

/// Encodes a Hello with its magic and length.
pub fn encode_hello(hello: &Hello) -> Vec<u8> {
    let body = wire::Hello::from(hello).encode_to_vec();
    let mut out = Vec::with_capacity(6 + body.len());
    out.put_u32(HELLO_MAGIC);
    // Our own Hello is a few names long; truncating would be a bug, and
    // the peer would refuse it anyway.
    out.put_u16(body.len().min(MAX_HELLO_LEN) as u16);
    out.extend_from_slice(&body);
    out
}

/// Takes a Hello from the front of `buf`, or `None` if more bytes are needed.
pub fn decode_hello(buf: &mut BytesMut) -> Result<Option<Hello>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let magic = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if OLD_MAGICS.contains(&magic) {
        return Err(FrameError::OldProtocol(magic));
    }
    if magic != HELLO_MAGIC {
        return Err(FrameError::UnknownMagic(magic));
    }
    if buf.len() < 6 {
        return Ok(None);
    }
    let len = usize::from(u16::from_be_bytes([buf[4], buf[5]]));
    if len > MAX_HELLO_LEN {
        return Err(FrameError::HelloTooLong(len));
    }
    if buf.len() < 6 + len {
        buf.reserve(6 + len - buf.len());
        return Ok(None);
    }
    buf.advance(6);
    let body = buf.split_to(len);
    let hello = wire::Hello::decode(body).map_err(FrameError::Hello)?;
    Ok(Some(hello.into()))
}

// ---- Messages --------------------------------------------------------------

/// Whether a message of this type and encoded length goes out compressed,
/// given the receiving device's preference (before trying LZ4).
fn wants_compression(msg: &Message, len: usize, pref: Compression) -> bool {
    let by_pref = match pref {
        Compression::Never => false,
        Compression::Always => true,
        Compression::Metadata => !matches!(msg, Message::Response(_)),
    };
    by_pref && len >= COMPRESSION_THRESHOLD
}

/// Encodes one message as a frame, compressing it when `pref` and the size
/// rule say so and LZ4 saves at least 1/32 of it.
pub fn encode_message(msg: &Message, pref: Compression) -> Vec<u8> {
    let mut out = Vec::new();
    encode_message_into(msg, pref, &mut out);
    out
}

/// Like [`encode_message`], appending to `out` (lets a writer batch frames).
pub fn encode_message_into(msg: &Message, pref: Compression, out: &mut Vec<u8>) {
    match msg {
        Message::ClusterConfig(m) => frame(msg, &wire::ClusterConfig::from(m), pref, out),
        Message::Index(m) | Message::IndexUpdate(m) => frame(msg, &wire::Index::from(m), pref, out),
        Message::Request(m) => frame(msg, &wire::Request::from(m), pref, out),
        Message::Response(m) => frame(msg, &wire::Response::from(m), pref, out),
        Message::DownloadProgress(m) => frame(msg, &wire::DownloadProgress::from(m), pref, out),
        Message::Ping => frame(msg, &wire::Ping {}, pref, out),
        Message::Close(m) => frame(
            msg,
            &wire::Close {
                reason: m.reason.clone(),
            },
            pref,
            out,
        ),
    }
}

fn frame(msg: &Message, body: &impl prost::Message, pref: Compression, out: &mut Vec<u8>) {
    let len = body.encoded_len();
    if wants_compression(msg, len, pref) {
        let plain = body.encode_to_vec();
        let mut packed = vec![0u8; 4 + lz4_flex::block::get_maximum_output_size(len)];
        packed[..4].copy_from_slice(&(len as u32).to_be_bytes());
        if let Ok(n) = lz4_flex::block::compress_into(&plain, &mut packed[4..]) {
            if 4 + n <= len - len / 32 {
                packed.truncate(4 + n);
                put_header(out, msg, wire::MessageCompression::Lz4, packed.len());
                out.extend_from_slice(&packed);
                return;
            }
        }
        put_header(out, msg, wire::MessageCompression::None, len);
        out.extend_from_slice(&plain);
        return;
    }
    put_header(out, msg, wire::MessageCompression::None, len);
    out.reserve(len);
    // Encoding into a Vec cannot run out of space.
    let _ = body.encode(out);
}

fn put_header(out: &mut Vec<u8>, msg: &Message, compression: wire::MessageCompression, len: usize) {
    let header = wire::Header {
        r#type: msg.message_type().into(),
        compression: compression.into(),
    };
    let hlen = header.encoded_len();
    out.reserve(2 + hlen + 4 + len);
    out.put_u16(hlen as u16);
    let _ = header.encode(out);
    out.put_u32(len as u32);
}

/// Takes the next message from the front of `buf`. Returns `None` when more
/// bytes are needed; frames of unknown type are consumed and skipped, as
/// Syncthing does, for forward compatibility.
pub fn decode_message(buf: &mut BytesMut) -> Result<Option<Message>, FrameError> {
    loop {
        let Some((header, body)) = split_frame(buf)? else {
            return Ok(None);
        };
        let body = match wire::MessageCompression::try_from(header.compression) {
            Ok(wire::MessageCompression::None) => body,
            Ok(wire::MessageCompression::Lz4) => decompress(&body)?,
            Err(_) => return Err(FrameError::UnknownCompression(header.compression)),
        };
        if let Some(msg) = decode_body(header.r#type, body)? {
            return Ok(Some(msg));
        }
    }
}

/// Splits one whole frame off `buf`: its header and (still compressed) body.
fn split_frame(buf: &mut BytesMut) -> Result<Option<(wire::Header, Bytes)>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let hlen = i16::from_be_bytes([buf[0], buf[1]]);
    let hlen = usize::try_from(hlen).map_err(|_| FrameError::NegativeHeaderLength(hlen))?;
    if buf.len() < 2 + hlen + 4 {
        return Ok(None);
    }
    let at = 2 + hlen;
    let mlen = i32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    let mlen = usize::try_from(mlen)
        .ok()
        .filter(|&l| l <= MAX_MESSAGE_LEN)
        .ok_or(FrameError::MessageTooLong(i64::from(mlen)))?;
    let total = at + 4 + mlen;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let header = wire::Header::decode(&buf[2..at]).map_err(FrameError::Header)?;
    buf.advance(at + 4);
    Ok(Some((header, buf.split_to(mlen).freeze())))
}

fn decompress(body: &[u8]) -> Result<Bytes, FrameError> {
    let Some((len, block)) = body.split_first_chunk::<4>() else {
        return Err(FrameError::Lz4("shorter than its length prefix".into()));
    };
    let len = u32::from_be_bytes(*len);
    let len = usize::try_from(len)
        .ok()
        .filter(|&l| l <= MAX_MESSAGE_LEN)
        .ok_or(FrameError::MessageTooLong(i64::from(len)))?;
    let mut out = vec![0u8; len];
    let n = lz4_flex::block::decompress_into(block, &mut out)
        .map_err(|e| FrameError::Lz4(e.to_string()))?;
    if n != len {
        return Err(FrameError::Lz4(format!("{n} bytes, {len} announced")));
    }
    Ok(out.into())
}

fn decode_body(kind: i32, body: Bytes) -> Result<Option<Message>, FrameError> {
    use wire::MessageType as T;
    fn de<M: prost::Message + Default>(kind: &'static str, b: Bytes) -> Result<M, MessageError> {
        M::decode(b).map_err(|source| MessageError::Decode { kind, source })
    }
    let msg = match T::try_from(kind) {
        Ok(T::ClusterConfig) => {
            Message::ClusterConfig(de::<wire::ClusterConfig>("ClusterConfig", body)?.try_into()?)
        }
        Ok(T::Index) => Message::Index(de::<wire::Index>("Index", body)?.try_into()?),
        Ok(T::IndexUpdate) => {
            Message::IndexUpdate(de::<wire::Index>("IndexUpdate", body)?.try_into()?)
        }
        Ok(T::Request) => Message::Request(de::<wire::Request>("Request", body)?.try_into()?),
        Ok(T::Response) => Message::Response(de::<wire::Response>("Response", body)?.into()),
        Ok(T::DownloadProgress) => Message::DownloadProgress(
            de::<wire::DownloadProgress>("DownloadProgress", body)?.try_into()?,
        ),
        Ok(T::Ping) => {
            de::<wire::Ping>("Ping", body)?;
            Message::Ping
        }
        Ok(T::Close) => Message::Close(crate::message::Close {
            reason: de::<wire::Close>("Close", body)?.reason,
        }),
        Err(_) => return Ok(None),
    };
    Ok(Some(msg))
}
