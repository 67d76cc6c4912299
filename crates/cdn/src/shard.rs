//! Fetching one shard from a Redis-protocol server: `SELECT db`, then `GET key`
//! with the block's 16-byte encrypted hash as the key, over a fresh TCP
//! connection, in RESP2.
//!
//! The client is ours and does exactly these two commands: the reply parser
//! ([`parse_reply`]) is pure and bounded (a bulk string longer than the caller's
//! limit is refused from its header, before anything is allocated for it), and
//! every wait (connect, each read) has a timeout. The wait is per read, not per
//! reply, so a large shard arriving steadily over a slow link is not cut off
//! (upstream gives the whole reply 500 ms). No `AUTH` is sent: like upstream we
//! do not know how the servers' session tokens are presented.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// The longest status or error line we read.
const MAX_LINE: usize = 4096;

/// One reply, as far as `SELECT` and `GET` need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+text`.
    Simple(String),
    /// `-text`.
    Error(String),
    /// `$len` and the bytes (`None` for the nil bulk string `$-1`).
    Bulk(Option<Vec<u8>>),
    /// Any other type (integer, array, …), which neither command answers with.
    Other(u8),
}

/// Why bytes are not (yet) a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// More bytes are needed; at least this many in all.
    #[error("incomplete reply")]
    Incomplete(usize),
    /// Not RESP, or a line longer than we read.
    #[error("malformed reply")]
    Malformed,
    /// A bulk string longer than the limit.
    #[error("a reply of {0} bytes is longer than a shard may be")]
    TooLong(u64),
}

/// Parses one reply at the start of `buf`; returns it and the bytes it took.
pub fn parse_reply(buf: &[u8], max_bulk: usize) -> Result<(Reply, usize), ParseError> {
    let Some(&kind) = buf.first() else {
        return Err(ParseError::Incomplete(1));
    };
    if !b"+-$:*_%~#,(=!>".contains(&kind) {
        return Err(ParseError::Malformed);
    }
    let window = &buf[..buf.len().min(MAX_LINE + 2)];
    // The line starts after the type byte, so a reply that starts with CR LF
    // is an empty line of type `\r`, not a line ending before it began.
    let Some(eol) = window[1..]
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| p + 1)
    else {
        return if buf.len() > MAX_LINE + 1 {
            Err(ParseError::Malformed)
        } else {
            Err(ParseError::Incomplete(buf.len() + 1))
        };
    };
    let line = &buf[1..eol];
    let head = eol + 2;
    let text = || String::from_utf8_lossy(line).into_owned();
    match kind {
        b'+' => Ok((Reply::Simple(text()), head)),
        b'-' => Ok((Reply::Error(text()), head)),
        b'$' => {
            let len: i64 = std::str::from_utf8(line)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(ParseError::Malformed)?;
            if len == -1 {
                return Ok((Reply::Bulk(None), head));
            }
            let len = u64::try_from(len).map_err(|_| ParseError::Malformed)?;
            let len = usize::try_from(len)
                .ok()
                .filter(|&l| l <= max_bulk)
                .ok_or(ParseError::TooLong(len))?;
            let total = head + len + 2;
            if buf.len() < total {
                return Err(ParseError::Incomplete(total));
            }
            if &buf[head + len..total] != b"\r\n" {
                return Err(ParseError::Malformed);
            }
            Ok((Reply::Bulk(Some(buf[head..head + len].to_vec())), total))
        }
        b':' | b'*' | b'_' | b'%' | b'~' | b'#' | b',' | b'(' | b'=' | b'!' | b'>' => {
            Ok((Reply::Other(kind), head))
        }
        _ => Err(ParseError::Malformed),
    }
}

/// Appends a RESP array of bulk strings (a command) to `out`.
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Why a shard could not be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    /// Connecting, sending or receiving failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Connecting or a read took longer than the timeout.
    #[error("timed out")]
    Timeout,
    /// The server's reply was not RESP or too long.
    #[error("{0}")]
    Parse(ParseError),
    /// The server closed the connection before replying.
    #[error("connection closed before the reply")]
    Closed,
    /// An error reply (`-ERR …`, `-NOAUTH …`).
    #[error("server error: {0}")]
    Server(String),
    /// A reply of a type the command does not give.
    #[error("unexpected reply")]
    Unexpected,
    /// `GET` answered nil: the server does not have the shard.
    #[error("no such shard")]
    Missing,
}

/// How to reach shard servers.
#[derive(Debug, Clone, Copy)]
pub struct ShardFetch {
    /// The longest wait for the connection, and for each read.
    pub timeout: Duration,
    /// The longest shard accepted.
    pub max_len: usize,
}

impl ShardFetch {
    /// `GET key` from database `db` of the server at `addr`.
    pub async fn get(
        &self,
        addr: SocketAddr,
        db: u16,
        key: &[u8; 16],
    ) -> Result<Vec<u8>, ShardError> {
        let mut stream = timeout(self.timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ShardError::Timeout)??;
        let mut request = Vec::with_capacity(64);
        encode_command(&mut request, &[b"SELECT", db.to_string().as_bytes()]);
        encode_command(&mut request, &[b"GET", key]);
        timeout(self.timeout, stream.write_all(&request))
            .await
            .map_err(|_| ShardError::Timeout)??;
        let mut buf = Vec::with_capacity(4096);
        match self.reply(&mut stream, &mut buf).await? {
            Reply::Simple(_) => {}
            Reply::Error(e) => return Err(ShardError::Server(e)),
            _ => return Err(ShardError::Unexpected),
        }
        match self.reply(&mut stream, &mut buf).await? {
            Reply::Bulk(Some(shard)) => Ok(shard),
            Reply::Bulk(None) => Err(ShardError::Missing),
            Reply::Error(e) => Err(ShardError::Server(e)),
            _ => Err(ShardError::Unexpected),
        }
    }

    /// Reads until `buf` starts with a whole reply; takes it off `buf`.
    async fn reply(&self, stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Reply, ShardError> {
        loop {
            match parse_reply(buf, self.max_len) {
                Ok((reply, used)) => {
                    buf.drain(..used);
                    return Ok(reply);
                }
                Err(ParseError::Incomplete(want)) => {
                    // The parser has checked `want` against the limit.
                    buf.reserve(want.saturating_sub(buf.len()));
                }
                Err(e) => return Err(ShardError::Parse(e)),
            }
            let read = timeout(self.timeout, stream.read_buf(buf))
                .await
                .map_err(|_| ShardError::Timeout)??;
            if read == 0 {
                return Err(ShardError::Closed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode_command(&mut out, &[b"SELECT", b"7"]);
        assert_eq!(out, b"*2\r\n$6\r\nSELECT\r\n$1\r\n7\r\n");
    }

    #[test]
    fn replies_parse_with_their_length() {
        assert_eq!(
            parse_reply(b"+OK\r\nrest", 10).unwrap(),
            (Reply::Simple("OK".into()), 5)
        );
        assert_eq!(
            parse_reply(b"-NOAUTH x\r\n", 10).unwrap(),
            (Reply::Error("NOAUTH x".into()), 11)
        );
        assert_eq!(
            parse_reply(b"$3\r\nabc\r\n", 10).unwrap(),
            (Reply::Bulk(Some(b"abc".to_vec())), 9)
        );
        assert_eq!(parse_reply(b"$-1\r\n", 10).unwrap(), (Reply::Bulk(None), 5));
        assert_eq!(parse_reply(b":5\r\n", 10).unwrap(), (Reply::Other(b':'), 4));
    }

    #[test]
    fn partial_replies_ask_for_more() {
        assert_eq!(parse_reply(b"", 10), Err(ParseError::Incomplete(1)));
        assert_eq!(parse_reply(b"+O", 10), Err(ParseError::Incomplete(3)));
        assert_eq!(parse_reply(b"$3\r\nab", 10), Err(ParseError::Incomplete(9)));
    }

    #[test]
    fn a_huge_bulk_length_is_refused_from_its_header() {
        assert_eq!(
            parse_reply(b"$35184372088832\r\n", 1 << 20),
            Err(ParseError::TooLong(35_184_372_088_832))
        );
        assert_eq!(parse_reply(b"$11\r\n", 10), Err(ParseError::TooLong(11)));
    }

    #[test]
    fn malformed_replies_are_refused() {
        for bad in [&b"$x\r\n"[..], b"$-2\r\n", b"$1\r\nab\r\n", b"hello\r\n"] {
            assert_eq!(parse_reply(bad, 10), Err(ParseError::Malformed), "{bad:?}");
        }
        // Found by the cdn_meta fuzz target: a line ending where the type byte is.
        assert_eq!(parse_reply(b"\r\n", 10), Err(ParseError::Malformed));
        assert_eq!(parse_reply(b"\r\nx", 10), Err(ParseError::Malformed));
        let long = vec![b'+'; MAX_LINE + 10];
        assert_eq!(parse_reply(&long, 10), Err(ParseError::Malformed));
    }
}
