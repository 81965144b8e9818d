//! The part of SPDY/3.1 a client of containerd's CRI stream server needs: frame encoding and
//! decoding, and header blocks. Hand-written because no maintained Rust crate speaks SPDY (it
//! was superseded by HTTP/2), while the CRI stream server (Go's `moby/spdystream`, as in the
//! kubelet) still requires it for exec and attach with a half-closable stdin.
//!
//! Frames (draft-mbelshe-httpbis-spdy-00, version 3): a control frame is
//! `1|version(15) type(16) flags(8) length(24) payload`, a data frame
//! `0|stream(31) flags(8) length(24) payload`. Header blocks are zlib streams shared by all
//! frames of one direction; ours are written without the preset dictionary (a zlib header
//! without FDICT, which Go's reader accepts), and the server's are never needed, since a client
//! only reads stream ids from SYN_REPLY.

use bytes::{BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, FlushCompress};
use tokio::io::{AsyncRead, AsyncReadExt};

pub const VERSION: u16 = 3;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
pub const FLAG_FIN: u8 = 0x01;
/// Largest payload written in one data frame (the format allows 16 MiB; small frames keep
/// memory per session bounded and interleave streams fairly).
pub const MAX_DATA: usize = 32 * 1024;
/// Largest frame accepted from the peer.
const MAX_FRAME: usize = 1 << 24;

/// A frame read from the peer, as far as a client needs to understand it.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Data {
        stream: u32,
        fin: bool,
        data: Bytes,
    },
    SynReply {
        stream: u32,
        fin: bool,
    },
    RstStream {
        stream: u32,
        status: u32,
    },
    Ping {
        id: u32,
    },
    GoAway,
    /// SETTINGS, WINDOW_UPDATE, HEADERS, SYN_STREAM (a server has no reason to push streams).
    Other,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .unwrap_or(0)
}

/// Reads one frame; `None` at a clean end of the connection.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<Frame>> {
    let mut head = [0u8; 8];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let flags = head[4];
    let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::other(format!("SPDY frame of {len} bytes")));
    }
    let mut payload = BytesMut::zeroed(len);
    r.read_exact(&mut payload).await?;
    let payload = payload.freeze();
    let fin = flags & FLAG_FIN != 0;
    if head[0] & 0x80 == 0 {
        let stream = u32_at(&head, 0) & 0x7fff_ffff;
        return Ok(Some(Frame::Data {
            stream,
            fin,
            data: payload,
        }));
    }
    let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
    if version != VERSION {
        return Err(std::io::Error::other(format!(
            "SPDY version {version} (expected {VERSION})"
        )));
    }
    let kind = u16::from_be_bytes([head[2], head[3]]);
    let stream = u32_at(&payload, 0) & 0x7fff_ffff;
    Ok(Some(match kind {
        SYN_REPLY => Frame::SynReply { stream, fin },
        RST_STREAM => Frame::RstStream {
            stream,
            status: u32_at(&payload, 4),
        },
        PING => Frame::Ping {
            id: u32_at(&payload, 0),
        },
        GOAWAY => Frame::GoAway,
        _ => Frame::Other,
    }))
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(8 + payload.len());
    b.put_u16(0x8000 | VERSION);
    b.put_u16(kind);
    b.put_u32(((flags as u32) << 24) | payload.len() as u32);
    b.put_slice(payload);
    b.freeze()
}

/// A data frame; `data` must not exceed [`MAX_DATA`] (callers chunk).
pub fn data(stream: u32, fin: bool, data: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(8 + data.len());
    b.put_u32(stream & 0x7fff_ffff);
    let flags = if fin { FLAG_FIN } else { 0 };
    b.put_u32(((flags as u32) << 24) | data.len() as u32);
    b.put_slice(data);
    b.freeze()
}

/// The answer to a peer's PING.
pub fn ping(id: u32) -> Bytes {
    control(PING, 0, &id.to_be_bytes())
}

/// Writes header blocks: one zlib stream per connection direction, flushed per block.
pub struct HeaderWriter {
    z: Compress,
}

impl Default for HeaderWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderWriter {
    pub fn new() -> Self {
        Self {
            z: Compress::new(Compression::fast(), true),
        }
    }

    fn block(&mut self, headers: &[(&str, &str)]) -> std::io::Result<Vec<u8>> {
        let mut raw = Vec::new();
        raw.put_u32(headers.len() as u32);
        for (k, v) in headers {
            // SPDY header names are lowercase; Go's framer rejects others.
            let k = k.to_ascii_lowercase();
            raw.put_u32(k.len() as u32);
            raw.put_slice(k.as_bytes());
            raw.put_u32(v.len() as u32);
            raw.put_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input = &raw[..];
        loop {
            let before_in = self.z.total_in();
            out.reserve(256);
            self.z
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(std::io::Error::other)?;
            let used = (self.z.total_in() - before_in) as usize;
            input = &input[used..];
            // Done once all input is taken and the sync flush fit in the spare capacity.
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }

    /// A SYN_STREAM opening client stream `stream` with `headers`.
    pub fn syn_stream(&mut self, stream: u32, headers: &[(&str, &str)]) -> std::io::Result<Bytes> {
        let block = self.block(headers)?;
        let mut p = Vec::with_capacity(10 + block.len());
        p.put_u32(stream & 0x7fff_ffff);
        p.put_u32(0); // associated-to stream
        p.put_u16(0); // priority 0 (highest), slot 0
        p.put_slice(&block);
        Ok(control(SYN_STREAM, 0, &p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    fn inflate(z: &mut Decompress, b: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(4096);
        z.decompress_vec(b, &mut out, FlushDecompress::Sync)
            .expect("inflate");
        out
    }

    #[test]
    fn syn_stream_frames_carry_lowercase_headers_in_one_zlib_stream() {
        let mut w = HeaderWriter::new();
        let f1 = w.syn_stream(1, &[("streamType", "error")]).expect("frame");
        let f3 = w.syn_stream(3, &[("streamType", "stdout")]).expect("frame");
        assert_eq!(&f1[..4], &[0x80, 0x03, 0x00, 0x01]);
        assert_eq!(u32_at(&f3, 8), 3);
        let len = u32::from_be_bytes([0, f1[5], f1[6], f1[7]]) as usize;
        assert_eq!(f1.len(), 8 + len);
        let mut z = Decompress::new(true);
        let h1 = inflate(&mut z, &f1[18..]);
        let h3 = inflate(&mut z, &f3[18..]);
        let mut want = Vec::new();
        want.put_u32(1);
        want.put_u32(10);
        want.put_slice(b"streamtype");
        want.put_u32(5);
        want.put_slice(b"error");
        assert_eq!(h1, want);
        assert!(h3.ends_with(b"stdout"), "{h3:?}");
    }

    #[tokio::test]
    async fn frames_read_back_as_written() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&data(5, false, b"hello"));
        wire.extend_from_slice(&data(5, true, b""));
        wire.extend_from_slice(&control(SYN_REPLY, FLAG_FIN, &7u32.to_be_bytes()));
        wire.extend_from_slice(&ping(2));
        let mut r = &wire[..];
        assert_eq!(
            read_frame(&mut r).await.expect("read"),
            Some(Frame::Data {
                stream: 5,
                fin: false,
                data: Bytes::from_static(b"hello")
            })
        );
        assert_eq!(
            read_frame(&mut r).await.expect("read"),
            Some(Frame::Data {
                stream: 5,
                fin: true,
                data: Bytes::new()
            })
        );
        assert_eq!(
            read_frame(&mut r).await.expect("read"),
            Some(Frame::SynReply {
                stream: 7,
                fin: true
            })
        );
        assert_eq!(
            read_frame(&mut r).await.expect("read"),
            Some(Frame::Ping { id: 2 })
        );
        assert_eq!(read_frame(&mut r).await.expect("eof"), None);
    }
}
