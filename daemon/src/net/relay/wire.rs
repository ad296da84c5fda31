//! Relay protocol messages over an async stream. A message is read
//! exactly, never a byte past it: after a session join the same socket
//! carries the relayed TLS, whose first bytes may follow the `Response`
//! in the same segment.

use proto::relay::{decode_header, Message, HEADER_LEN};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Reads one message. Errors say what was wrong with the bytes.
pub(super) async fn read<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Message> {
    let mut header = [0u8; HEADER_LEN];
    r.read_exact(&mut header).await?;
    let (type_id, len) = decode_header(&header).map_err(invalid)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Message::decode(type_id, &payload).map_err(invalid)
}

/// Writes one message and flushes it.
pub(super) async fn write<W: AsyncWrite + Unpin>(w: &mut W, m: &Message) -> std::io::Result<()> {
    let bytes = m.encode().map_err(invalid)?;
    w.write_all(&bytes).await?;
    w.flush().await
}

fn invalid(e: proto::relay::RelayError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_message_is_read_without_taking_the_bytes_after_it() {
        let mut bytes = Message::response(proto::relay::code::SUCCESS)
            .encode()
            .expect("encode");
        bytes.extend_from_slice(b"\x16\x03\x01 TLS follows");
        let mut r = &bytes[..];
        let m = read(&mut r).await.expect("read");
        assert_eq!(m, Message::response(proto::relay::code::SUCCESS));
        assert_eq!(r, b"\x16\x03\x01 TLS follows");
    }

    #[tokio::test]
    async fn garbage_is_an_error_not_a_panic() {
        let mut r = &b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"[..];
        let e = read(&mut r).await.expect_err("bad magic");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        let mut out = Vec::new();
        write(&mut out, &Message::Pong).await.expect("write");
        let mut r = &out[..out.len() - 1];
        let e = read(&mut r).await.expect_err("truncated header");
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
