//! Length-prefixed frames and the connection handshake.
//!
//! Frame layout:
//!
//! ```text
//! +----------------+----------------------------------+
//! | length: u32 BE | body: `length` bytes              |
//! +----------------+----------------------------------+
//! ```
//!
//! The body is the message encoded with bincode 2.0 (serde mode, standard configuration:
//! little-endian, variable-length integers). bincode's maintainers stopped at 2.0.1 and 3.0.0
//! is a deliberate compile error, so this crate pins 2.0.x; the encoding is stable within it.
//! Decoding is bounded by the frame size, so a length field inside a body cannot make the
//! decoder allocate more than one frame's worth.
//!
//! The first frame each side sends is the handshake. Its body starts with a fixed layout that
//! never changes between versions (magic `b"RRFT"`, then the protocol version as u16 BE), so
//! a peer of another version is recognised and rejected with a clear reason instead of
//! failing somewhere inside bincode.
//!
//! Invariants: a frame longer than the receiver's maximum is rejected before its body is read;
//! a connection that ends in the middle of a frame is an error (`Truncated`), one that ends
//! between frames is a clean end of stream.

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::{NodeId, PROTOCOL_VERSION};

/// Default maximum frame size: 16 MiB, far above the largest AppendRequest the server builds
/// (its byte cap per request defaults to well under 1 MiB).
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// First four bytes of every handshake body.
pub const HANDSHAKE_MAGIC: [u8; 4] = *b"RRFT";

const LENGTH_PREFIX: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("frame of {length} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge { length: usize, max: usize },
    #[error("connection closed in the middle of a frame ({have} of {need} bytes received)")]
    Truncated { have: usize, need: usize },
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("not a ringraft handshake (magic {found:02x?}, expected {HANDSHAKE_MAGIC:02x?})")]
    BadMagic { found: [u8; 4] },
    #[error("protocol version {found} is not supported (this build speaks version {PROTOCOL_VERSION}); run the same ringraft version on every node and client")]
    VersionMismatch { found: u16 },
    #[error("message could not be encoded: {0}")]
    Encode(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Append one frame holding `message` to `out`.
pub fn encode_frame<T: Serialize>(message: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let start = out.len();
    out.extend_from_slice(&[0; LENGTH_PREFIX]);

    let mut body = std::mem::take(out);
    let written = bincode::serde::encode_into_std_write(message, &mut body, bincode_config())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    *out = body;

    let length = u32::try_from(written).map_err(|_| CodecError::FrameTooLarge {
        length: written,
        max: u32::MAX as usize,
    })?;
    out[start..start + LENGTH_PREFIX].copy_from_slice(&length.to_be_bytes());
    Ok(())
}

/// Decode one frame from the front of `buf`. Returns the message and the bytes consumed, or
/// `None` when `buf` does not hold a whole frame yet.
pub fn decode_frame<T: DeserializeOwned>(
    buf: &[u8],
    max_frame: usize,
) -> Result<Option<(T, usize)>, CodecError> {
    let Some(length) = frame_length(buf, max_frame)? else {
        return Ok(None);
    };
    if buf.len() < LENGTH_PREFIX + length {
        return Ok(None);
    }

    let body = &buf[LENGTH_PREFIX..LENGTH_PREFIX + length];
    let message = decode_body(body)?;
    Ok(Some((message, LENGTH_PREFIX + length)))
}

fn frame_length(buf: &[u8], max_frame: usize) -> Result<Option<usize>, CodecError> {
    if buf.len() < LENGTH_PREFIX {
        return Ok(None);
    }
    let length = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if length > max_frame {
        return Err(CodecError::FrameTooLarge {
            length,
            max: max_frame,
        });
    }
    Ok(Some(length))
}

fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, CodecError> {
    let (message, used) = bincode::serde::decode_from_slice(body, bincode_config())
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if used != body.len() {
        return Err(CodecError::Malformed(format!(
            "{} trailing bytes after the message",
            body.len() - used
        )));
    }
    Ok(message)
}

/// Encode a value with the frame body encoding, without a length prefix (used for log entry
/// payloads stored on disk).
pub fn encode_value<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, bincode_config())
        .map_err(|e| CodecError::Encode(e.to_string()))
}

/// Decode a value written by [`encode_value`]; trailing bytes are an error.
pub fn decode_value<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    decode_body(bytes)
}

/// Buffered reader of frames from an async byte stream (a glommio `TcpStream`, for example).
pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    max_frame: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R, max_frame: usize) -> Self {
        FrameReader {
            inner,
            buf: Vec::with_capacity(64 * 1024),
            start: 0,
            max_frame,
        }
    }

    /// Read the next frame. `Ok(None)` means the peer closed the connection between frames.
    pub async fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, CodecError> {
        loop {
            if let Some((message, used)) = decode_frame(&self.buf[self.start..], self.max_frame)? {
                self.start += used;
                return Ok(Some(message));
            }
            if !self.fill().await? {
                let have = self.buf.len() - self.start;
                if have == 0 {
                    return Ok(None);
                }
                let need = frame_length(&self.buf[self.start..], self.max_frame)?
                    .map_or(LENGTH_PREFIX, |length| LENGTH_PREFIX + length);
                return Err(CodecError::Truncated { have, need });
            }
        }
    }

    /// Read more bytes into the buffer; returns false at end of stream.
    async fn fill(&mut self) -> Result<bool, CodecError> {
        // Move the unread tail to the front before growing, so the buffer stays about one
        // frame long however many frames pass through it.
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let old_len = self.buf.len();
        let want = (old_len + 64 * 1024).max(self.buf.capacity());
        self.buf.resize(want, 0);
        let read = self.inner.read(&mut self.buf[old_len..]).await;
        let read = match read {
            Ok(n) => n,
            Err(e) => {
                self.buf.truncate(old_len);
                return Err(e.into());
            }
        };
        self.buf.truncate(old_len + read);
        Ok(read > 0)
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Give back the stream. Bytes read ahead of the last frame are lost, so call this only
    /// where the peer sends nothing more until it gets a reply (after a handshake).
    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// Encode `message` as one frame and write it.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    writer: &mut W,
    message: &T,
) -> Result<(), CodecError> {
    let mut out = Vec::new();
    encode_frame(message, &mut out)?;
    writer.write_all(&out).await?;
    Ok(())
}

/// Side that opened a connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Dialer {
    /// Another server of the cluster.
    Node(NodeId),
    /// A client (load generator, `ringraft status`, ...).
    Client,
}

/// First frame sent by the side that opened the connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub cluster_id: String,
    pub dialer: Dialer,
}

/// Reply of the listener to a [`Hello`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloReply {
    Accepted { node: NodeId },
    Rejected { reason: String },
}

/// Append a handshake frame (magic, version, then the bincode body) to `out`.
pub fn encode_handshake<T: Serialize>(message: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let mut body = Vec::with_capacity(64);
    body.extend_from_slice(&HANDSHAKE_MAGIC);
    body.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    bincode::serde::encode_into_std_write(message, &mut body, bincode_config())
        .map_err(|e| CodecError::Encode(e.to_string()))?;

    let length = body.len() as u32;
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(())
}

/// Decode a handshake body, checking magic and version before anything else.
pub fn decode_handshake_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, CodecError> {
    if body.len() < 6 {
        return Err(CodecError::Malformed(format!(
            "handshake of {} bytes is shorter than its 6-byte header",
            body.len()
        )));
    }
    let found = [body[0], body[1], body[2], body[3]];
    if found != HANDSHAKE_MAGIC {
        return Err(CodecError::BadMagic { found });
    }
    let version = u16::from_be_bytes([body[4], body[5]]);
    if version != PROTOCOL_VERSION {
        return Err(CodecError::VersionMismatch { found: version });
    }
    decode_body(&body[6..])
}

/// Handshake frames are small; anything larger is not a ringraft peer.
pub const MAX_HANDSHAKE_FRAME: usize = 4096;

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Read the handshake frame that opens a connection.
    pub async fn next_handshake<T: DeserializeOwned>(&mut self) -> Result<Option<T>, CodecError> {
        loop {
            let avail = &self.buf[self.start..];
            if let Some(length) = frame_length(avail, MAX_HANDSHAKE_FRAME.min(self.max_frame))? {
                if avail.len() >= LENGTH_PREFIX + length {
                    let message =
                        decode_handshake_body(&avail[LENGTH_PREFIX..LENGTH_PREFIX + length])?;
                    self.start += LENGTH_PREFIX + length;
                    return Ok(Some(message));
                }
            }
            if !self.fill().await? {
                let have = self.buf.len() - self.start;
                if have == 0 {
                    return Ok(None);
                }
                return Err(CodecError::Truncated {
                    have,
                    need: LENGTH_PREFIX,
                });
            }
        }
    }
}

/// Write a handshake frame.
pub async fn write_handshake<W: AsyncWrite + Unpin, T: Serialize>(
    writer: &mut W,
    message: &T,
) -> Result<(), CodecError> {
    let mut out = Vec::new();
    encode_handshake(message, &mut out)?;
    writer.write_all(&out).await?;
    Ok(())
}

#[cfg(test)]
mod tests;
