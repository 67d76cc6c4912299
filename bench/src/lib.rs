//! Shared helpers for the benchmark binaries.

/// Peak resident memory of this process in bytes (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// What `/proc/<pid>` says about another process (Linux).
pub mod proc {
    /// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`, ...) in bytes.
    pub fn status_bytes(pid: u32, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status
            .lines()
            .find(|l| l.split(':').next() == Some(field))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// User plus system CPU time of a process (all its threads), in seconds, from
    /// `utime` and `stime` of `/proc/<pid>/stat` (`self` for this process).
    pub fn cpu_seconds(pid: &str) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name is in parentheses and may hold spaces: count fields
        // after its closing one. utime and stime are fields 14 and 15, the 12th and
        // 13th after the name.
        let rest = &stat[stat.rfind(')')? + 1..];
        let mut fields = rest.split_whitespace().skip(11);
        let utime: u64 = fields.next()?.parse().ok()?;
        let stime: u64 = fields.next()?.parse().ok()?;
        Some((utime + stime) as f64 / clock_ticks() as f64)
    }

    /// `USER_HZ`, the unit of the `/proc` CPU times (`getconf CLK_TCK`; 100 on
    /// every common Linux build, used if getconf is missing).
    fn clock_ticks() -> u64 {
        static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        *TICKS.get_or_init(|| {
            std::process::Command::new("getconf")
                .arg("CLK_TCK")
                .output()
                .ok()
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .and_then(|s| s.trim().parse().ok())
                .filter(|&t| t > 0)
                .unwrap_or(100)
        })
    }
}

/// A minimal blocking HTTP/1.1 client for a node's loopback API and metrics
/// listener: one request per connection.
pub mod http {
    use std::io::{self, Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;

    fn bad(what: &str) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
    }

    /// `GET path` at `addr`: the status and the body (chunked bodies are joined).
    pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<(u16, Vec<u8>)> {
        let mut s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        // The API answers only requests naming a loopback host.
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        )?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| bad("no end of headers"))?;
        let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("headers not UTF-8"))?;
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("status line"))?;
        let chunked = lines.any(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with("transfer-encoding:") && l.contains("chunked")
        });
        let body = &raw[end + 4..];
        if !chunked {
            return Ok((status, body.to_vec()));
        }
        let mut out = Vec::with_capacity(body.len());
        let mut rest = body;
        loop {
            let eol = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or_else(|| bad("chunk size line"))?;
            let size = std::str::from_utf8(&rest[..eol])
                .ok()
                .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
                .ok_or_else(|| bad("chunk size"))?;
            rest = &rest[eol + 2..];
            if size == 0 {
                return Ok((status, out));
            }
            if rest.len() < size + 2 {
                return Err(bad("chunk truncated"));
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
    }

    /// The value of the unlabelled sample `name` (or the first sample of `name`
    /// whose labels contain `labels`) in a Prometheus text exposition.
    pub fn metric(text: &str, name: &str, labels: Option<&str>) -> Option<f64> {
        text.lines().find_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let matches = match labels {
                None => key == name,
                Some(want) => key
                    .strip_prefix(name)
                    .and_then(|k| k.strip_prefix('{'))
                    .is_some_and(|k| k.contains(want)),
            };
            if matches {
                value.trim().parse().ok()
            } else {
                None
            }
        })
    }

    #[cfg(test)]
    mod tests {
        use super::metric;

        #[test]
        fn reads_plain_and_labelled_samples() {
            let text = "# HELP x y\nmycelium_routes 12\nmycelium_routes_selected 3\n\
                        mycelium_defences_total{defence=\"control_rate_throttled\"} 7\n";
            assert_eq!(metric(text, "mycelium_routes", None), Some(12.0));
            assert_eq!(metric(text, "mycelium_routes_selected", None), Some(3.0));
            assert_eq!(
                metric(
                    text,
                    "mycelium_defences_total",
                    Some("defence=\"control_rate_throttled\"")
                ),
                Some(7.0)
            );
            assert_eq!(metric(text, "mycelium_subnets", None), None);
        }
    }
}
