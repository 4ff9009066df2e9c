//! The little of RFC 6455 a load generator needs: the client upgrade, masked client frames,
//! and splitting the server's (unmasked) frames out of a byte stream.

use std::io::{self, Read, Write};
use std::net::TcpStream;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Connects and upgrades; returns the stream (non-blocking) and any bytes read past the
/// upgrade response.
pub fn connect(host: &str, port: u16, path: &str) -> io::Result<(TcpStream, Vec<u8>)> {
    let mut stream = TcpStream::connect((host, port))?;
    stream.set_nodelay(true)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed during upgrade"));
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = find(&head, b"\r\n\r\n") {
            if !head[..head.len().min(16)].windows(4).any(|w| w == b" 101") {
                return Err(io::Error::other("upgrade refused"));
            }
            stream.set_nonblocking(true)?;
            return Ok((stream, head[end + 4..].to_vec()));
        }
        if head.len() > 16 * 1024 {
            return Err(io::Error::other("upgrade response too long"));
        }
    }
}

/// Appends one final, masked client frame (`opcode` 0x1 text, 0xA pong…) carrying `payload`.
pub fn push_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    let len = payload.len();
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
}

/// Calls `f(opcode, payload)` for each complete server frame at the start of `buf`; returns
/// the bytes consumed (the rest is an unfinished frame).
pub fn frames(buf: &[u8], mut f: impl FnMut(u8, &[u8])) -> usize {
    let mut off = 0;
    while buf.len() - off >= 2 {
        let op = buf[off] & 0x0f;
        let mut len = (buf[off + 1] & 0x7f) as usize;
        let mut h = 2;
        if len == 126 {
            if buf.len() - off < 4 {
                break;
            }
            len = u16::from_be_bytes([buf[off + 2], buf[off + 3]]) as usize;
            h = 4;
        } else if len == 127 {
            if buf.len() - off < 10 {
                break;
            }
            len = u64::from_be_bytes(buf[off + 2..off + 10].try_into().unwrap()) as usize;
            h = 10;
        }
        if buf.len() - off < h + len {
            break;
        }
        f(op, &buf[off + h..off + h + len]);
        off += h + len;
    }
    off
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_frame_round_trips() {
        for len in [0usize, 5, 125, 126, 300, 65535, 65536] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let mut out = Vec::new();
            push_frame(&mut out, 0x1, &payload, [1, 2, 3, 4]);
            assert_eq!(out[0], 0x81);
            assert_eq!(out[1] & 0x80, 0x80, "client frames are masked");
            // Unmask and strip the mask bit: a server frame parser must then see the payload.
            let h = out.len() - len - 4;
            let mut server = out[..h].to_vec();
            server[1] &= 0x7f;
            server.extend(out[h + 4..].iter().enumerate().map(|(i, b)| b ^ [1, 2, 3, 4][i & 3]));
            let mut seen = Vec::new();
            let used = frames(&server, |op, p| seen.push((op, p.to_vec())));
            assert_eq!(used, server.len());
            assert_eq!(seen, vec![(0x1, payload.clone())]);
            // An unfinished frame is left alone.
            assert_eq!(frames(&server[..server.len() - 1], |_, _| panic!("partial frame parsed")), 0);
        }
    }
}
