//! The CDN helper end to end, in a network namespace of its own: three Redis
//! servers (Debian's `redis-server`) and two stub registries on loopback, content
//! made and stored here as an uploader makes it, and a node serving it on
//! `[::1]:8081` with only `127.0.0.1:8080` allowed. Every request is made with
//! `curl` inside the namespace, so no packet leaves it.
//!
//! Needs what every namespace test needs (`common::netns`), `redis-server`,
//! `redis-cli`, `curl` and `python3` (the registry stub, `tests/fixtures`);
//! without them the test fails.

#![allow(clippy::unwrap_used)] // test set-up failures should fail loudly

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::netns::Net;
use common::{require, runs};
use mycelium_cdn::meta::{Block, DirEntry, Directory, File, Metadata, ShardLocation};
use mycelium_cdn::publish::{prepare_block, seal_meta};
use mycelium_cdn::shard::encode_command;

const REGISTRY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/cdn_registry.py"
);
/// The allowed registry, as requests name it.
const ALLOWED: &str = "127.0.0.1:8080";
/// An allowed registry on an address that is not loopback (a ULA on the
/// namespace's loopback device): its metadata may not send shard fetches to
/// this machine's own addresses.
const ELSEWHERE: &str = "[fd00:cd::1]:8082";
/// A registry that is running but not allowed.
const FORBIDDEN: &str = "127.0.0.1:9090";
const REDIS_PORTS: [u16; 3] = [6381, 6382, 6383];
const LISTEN: &str = "[::1]:8081";

/// The namespace with its servers, and where the registry's blobs go.
struct Setup {
    net: Net,
    ns: String,
    blobs: PathBuf,
    cache: PathBuf,
}

impl Setup {
    fn servers(&self) -> Vec<(SocketAddr, u16)> {
        REDIS_PORTS
            .iter()
            .map(|&p| (SocketAddr::from(([127, 0, 0, 1], p)), 3))
            .collect()
    }

    /// Stores `shard` under `key` on the Redis server at `port`, database 3.
    fn set(&self, port: u16, key: &[u8; 16], shard: &[u8]) {
        let mut resp = Vec::new();
        encode_command(&mut resp, &[b"SELECT", b"3"]);
        encode_command(&mut resp, &[b"SET", key, shard]);
        let file = self.net.file("pipe.resp", &resp);
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "redis-cli",
                "-p",
                &port.to_string(),
                "--pipe",
            ])
            .stdin(std::fs::File::open(file).unwrap())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", common::describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("errors: 0"),
            "{}",
            common::describe(&out)
        );
    }

    /// Cuts `data` into blocks of `chunk` bytes, stores their shards; the file's
    /// metadata.
    fn upload(&self, name: &str, mime: Option<&str>, data: &[u8], chunk: usize) -> Metadata {
        let mut blocks = Vec::new();
        for (i, piece) in data.chunks(chunk).enumerate() {
            let p = prepare_block(
                piece,
                i as u64,
                chunk as u64,
                2,
                &self.servers(),
                [i as u8; 12],
            )
            .unwrap();
            for (shard, port) in p.shards.iter().zip(REDIS_PORTS) {
                self.set(port, &p.block.encrypted_hash, shard);
            }
            blocks.push(p.block);
        }
        Metadata::File(File {
            content_hash: mycelium_cdn::crypto::b16(data),
            name: name.into(),
            mime: mime.map(Into::into),
            blocks,
        })
    }

    /// Puts `metadata` on the allowed registry, sealed; its id and key in hex.
    fn publish(&self, metadata: &Metadata) -> (String, String) {
        let sealed = seal_meta(metadata, [7; 12]);
        let id = hex::encode(sealed.id);
        std::fs::write(self.blobs.join(&id), &sealed.blob).unwrap();
        (id, hex::encode(sealed.key))
    }

    /// Puts raw bytes on the allowed registry under `id`.
    fn publish_raw(&self, id: &str, blob: &[u8]) {
        std::fs::write(self.blobs.join(id), blob).unwrap();
    }

    /// GET (or `extra`'s method) through the helper with this host value and
    /// query: status (0 if the connection broke), response headers, body.
    fn request(&self, host: Option<&str>, query: &str, extra: &[&str]) -> (u16, String, Vec<u8>) {
        let dir = self.net.dir.path();
        let (head, body) = (dir.join("head.txt"), dir.join("body.bin"));
        let _ = std::fs::remove_file(&body);
        // A bare `Host:` makes curl send no Host header at all.
        let host_header = host.map_or_else(|| "Host:".to_owned(), |h| format!("Host: {h}"));
        let url = format!("http://{LISTEN}/{query}");
        let mut args = vec![
            "curl",
            "-s",
            "--max-time",
            "30",
            "-D",
            head.to_str().unwrap(),
            "-o",
            body.to_str().unwrap(),
            "-w",
            "%{http_code}",
            "-H",
            &host_header,
        ];
        args.extend_from_slice(extra);
        args.push(&url);
        let out = self.net.exec(&self.ns, &args);
        let status = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        let status = if out.status.success() { status } else { 0 };
        (
            status,
            std::fs::read_to_string(&head)
                .unwrap_or_default()
                .to_ascii_lowercase(),
            std::fs::read(&body).unwrap_or_default(),
        )
    }

    fn get(&self, id: &str, registry: &str, key: Option<&str>) -> (u16, String, Vec<u8>) {
        let query = key.map(|k| format!("?key={k}")).unwrap_or_default();
        self.request(Some(&format!("{id}.{registry}")), &query, &[])
    }

    fn status(&self, id: &str, key: Option<&str>) -> u16 {
        self.get(id, ALLOWED, key).0
    }

    fn stop(&mut self, name: &str) {
        let (_, child) = self
            .net
            .servers
            .iter_mut()
            .find(|(n, _)| n == name)
            .unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn node_pid(&self) -> u32 {
        self.net.pid_of(&self.ns)
    }
}

/// Pseudo-random bytes (xorshift), so the file has no structure to hide behind.
fn content(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn cache_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn setup() -> Setup {
    let mut net = Net::new("cdn");
    require(
        runs(&["redis-server", "--version"]),
        "redis-server (Debian package redis-server)",
    );
    require(
        runs(&["redis-cli", "--version"]),
        "redis-cli (Debian package redis-tools)",
    );
    require(runs(&["curl", "--version"]), "curl");
    require(runs(&["python3", "--version"]), "python3");
    let ns = net.ns("a");
    for port in REDIS_PORTS {
        let p = port.to_string();
        net.server(
            &ns,
            &format!("redis-{port}"),
            &[
                "redis-server",
                "--save",
                "",
                "--appendonly",
                "no",
                "--port",
                &p,
                "--bind",
                "127.0.0.1",
            ],
        );
    }
    let blobs = net.dir.path().join("registry");
    std::fs::create_dir(&blobs).unwrap();
    let b = blobs.to_str().unwrap().to_owned();
    net.server(
        &ns,
        "registry",
        &["python3", REGISTRY, &b, "127.0.0.1", "8080"],
    );
    common::run_ok(&[
        "ip",
        "-n",
        &ns,
        "addr",
        "add",
        "fd00:cd::1/128",
        "dev",
        "lo",
        "nodad",
    ]);
    net.server(
        &ns,
        "elsewhere-registry",
        &["python3", REGISTRY, &b, "fd00:cd::1", "8082"],
    );
    net.server(
        &ns,
        "forbidden-registry",
        &["python3", REGISTRY, &b, "127.0.0.1", "9090"],
    );
    let cache = net.dir.path().join("cache");
    let c = cache.to_str().unwrap().to_owned();
    net.node_args(
        &ns,
        &[],
        false,
        false,
        &[
            "--cdn-cache",
            &c,
            "--cdn-listen",
            LISTEN,
            "--cdn-registry",
            ALLOWED,
            "--cdn-registry",
            ELSEWHERE,
            "--cdn-redis-timeout-ms",
            "500",
            "--cdn-fetch-timeout-ms",
            "3000",
        ],
    );
    let setup = Setup {
        net,
        ns,
        blobs,
        cache,
    };
    let limit = Duration::from_secs(30);
    for port in REDIS_PORTS {
        let p = port.to_string();
        setup.net.wait_for(&format!("redis on {port}"), limit, || {
            setup
                .net
                .exec(&setup.ns, &["redis-cli", "-p", &p, "ping"])
                .stdout
                .starts_with(b"PONG")
        });
    }
    for (port, url) in [
        ("8080", "http://127.0.0.1:8080/"),
        ("9090", "http://127.0.0.1:9090/"),
        ("8082", "http://[fd00:cd::1]:8082/"),
    ] {
        setup
            .net
            .wait_for(&format!("registry on {port}"), limit, || {
                setup
                    .net
                    .exec(&setup.ns, &["curl", "-s", "-o", "/dev/null", url])
                    .status
                    .success()
            });
    }
    setup.net.wait_for("the CDN helper", limit, || {
        setup.request(Some("x"), "", &[]).0 == 400
    });
    setup
}

#[test]
fn cdn_helper_serves_files_and_listings_caches_uses_parity_and_refuses_what_it_should() {
    let mut s = setup();

    // A file of three 1 MiB blocks (the last shorter) and a one-block file
    // whose name needs escaping.
    let big = content(2 * 1024 * 1024 + 512 * 1024 + 17);
    let big_meta = s.upload("big.bin", Some("application/x-test"), &big, 1024 * 1024);
    let (big_id, big_key) = s.publish(&big_meta);
    let small = b"hello world".to_vec();
    let small_meta = s.upload(
        "<script>alert(1)</script>.txt",
        Some("text/plain"),
        &small,
        1024 * 1024,
    );
    let (small_id, small_key) = s.publish(&small_meta);
    // A file kept for the parity check, and one whose metadata is not sealed.
    let spare = content(300_000);
    let spare_meta = s.upload("spare.bin", None, &spare, 1024 * 1024);
    let (spare_id, spare_key) = s.publish(&spare_meta);
    let plain_meta = s.upload("plain & simple", None, b"unsealed", 1024 * 1024);
    let plain_id = hex::encode([0x5a; 16]);
    s.publish_raw(&plain_id, &plain_meta.to_bytes());

    // The file, byte-identical, with its media type; HEAD gives the same head.
    let (status, head, body) = s.get(&big_id, ALLOWED, Some(&big_key));
    assert_eq!(status, 200, "{head}\n{}", s.net.logs());
    assert!(head.contains("content-type: application/x-test"), "{head}");
    assert!(
        body == big,
        "the file differs: {} bytes of {}",
        body.len(),
        big.len()
    );
    let (status, head, _) = s.request(
        Some(&format!("{big_id}.{ALLOWED}")),
        &format!("?key={big_key}"),
        &["-I"],
    );
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("content-type: application/x-test"), "{head}");
    let (status, head, body) = s.get(&small_id, ALLOWED, Some(&small_key));
    assert_eq!((status, body.as_slice()), (200, &small[..]), "{head}");
    assert!(head.contains("content-type: text/plain"), "{head}");
    assert!(head.contains("content-length: 11"), "{head}");
    let (status, head, body) = s.get(&plain_id, ALLOWED, None);
    assert_eq!((status, body.as_slice()), (200, &b"unsealed"[..]));
    assert!(
        head.contains("content-type: application/octet-stream"),
        "{head}"
    );

    // The cache: one file per block, named by its encrypted hash, holding the
    // block's plaintext.
    let Metadata::File(big_file) = &big_meta else {
        unreachable!()
    };
    for (block, piece) in big_file.blocks.iter().zip(big.chunks(1024 * 1024)) {
        let path = s.cache.join(hex::encode(block.encrypted_hash));
        assert!(std::fs::read(&path).unwrap() == piece, "{}", path.display());
    }
    // A corrupted entry is not served: it is replaced by a fresh fetch.
    let damaged = s.cache.join(hex::encode(big_file.blocks[1].encrypted_hash));
    let mut bytes = std::fs::read(&damaged).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&damaged, &bytes).unwrap();
    let (status, _, body) = s.get(&big_id, ALLOWED, Some(&big_key));
    assert!(
        status == 200 && body == big,
        "status {status}, {} bytes",
        body.len()
    );
    assert!(std::fs::read(&damaged).unwrap() == big[1024 * 1024..2 * 1024 * 1024]);

    // A directory listing: exact HTML, names escaped, a link without a key for
    // the entry that has none.
    let dir = Metadata::Directory(Directory {
        files: vec![
            DirEntry {
                meta_id: hex_id(&big_id),
                meta_key: Some(hex_id(&big_key)),
            },
            DirEntry {
                meta_id: hex_id(&small_id),
                meta_key: Some(hex_id(&small_key)),
            },
            DirEntry {
                meta_id: hex_id(&plain_id),
                meta_key: None,
            },
        ],
        name: "docs".into(),
    });
    let (dir_id, dir_key) = s.publish(&dir);
    let (status, head, body) = s.get(&dir_id, ALLOWED, Some(&dir_key));
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("content-type: text/html\r\n"), "{head}");
    let want = format!(
        "\n<!DOCTYPE html>\n\n<html i18n-values=\"dir:textdirection;lang:language\">\n<head>\n\
         <meta charset=\"utf-8\">\n</head>\n<body>\n<ul>\
         <li><a href=\"http://{big_id}.{ALLOWED}/?key={big_key}\">big.bin</a></li>\n\
         <li><a href=\"http://{small_id}.{ALLOWED}/?key={small_key}\">&lt;script&gt;alert(1)&lt;/script&gt;.txt</a></li>\n\
         <li><a href=\"http://{plain_id}.{ALLOWED}/\">plain &amp; simple</a></li>\n\
         </ul></body></html>"
    );
    assert_eq!(String::from_utf8_lossy(&body), want);

    // Statuses.
    assert_eq!(s.request(None, "", &["--http1.0"]).0, 400, "no host");
    assert_eq!(
        s.request(None, "", &["--http1.0"]).2,
        b"No host found in request"
    );
    assert_eq!(
        s.get(&big_id[..31], ALLOWED, Some(&big_key)).0,
        400,
        "31-digit id"
    );
    assert_eq!(
        s.get(
            &big_id.replace(|c: char| c.is_ascii_digit(), "x"),
            ALLOWED,
            None
        )
        .0,
        400
    );
    assert_eq!(s.status(&big_id, Some(&big_key[..31])), 400, "31-digit key");
    assert_eq!(
        s.request(Some(&format!("{big_id}.{ALLOWED}")), "?key=", &[])
            .0,
        400
    );
    let (status, _, body) = s.request(Some(&format!("{big_id}.{ALLOWED}")), "other", &[]);
    assert_eq!((status, body.len()), (404, 0), "another path");
    let (status, head, _) = s.request(Some(&format!("{big_id}.{ALLOWED}")), "", &["-X", "POST"]);
    assert_eq!(status, 405);
    assert!(head.contains("allow: get,head"), "{head}");
    assert_eq!(
        s.status(&hex::encode([0x99; 16]), None),
        404,
        "registry 404 passed on"
    );
    let failing = hex::encode([0x98; 16]);
    std::fs::write(s.blobs.join(format!("{failing}.status")), "500").unwrap();
    assert_eq!(s.status(&failing, None), 502, "registry 500");
    assert_eq!(s.status(&big_id, Some(&small_key)), 422, "wrong key");
    let garbage = hex::encode([0x97; 16]);
    s.publish_raw(&garbage, b"this is not metadata");
    assert_eq!(s.status(&garbage, None), 422, "undecodable metadata");
    let (bad_mime_id, bad_mime_key) =
        s.publish(&with_file(&small_meta, |f| f.mime = Some("a\u{1}b".into())));
    assert_eq!(
        s.status(&bad_mime_id, Some(&bad_mime_key)),
        422,
        "unusable mime"
    );
    let (k_id, k_key) = s.publish(&with_file(&small_meta, |f| f.blocks[0].required_shards = 5));
    assert_eq!(s.status(&k_id, Some(&k_key)), 500, "k > n");
    let (nil_id, nil_key) = s.publish(&with_file(&small_meta, |f| {
        f.blocks[0].encrypted_hash = [0x42; 16]
    }));
    assert_eq!(s.status(&nil_id, Some(&nil_key)), 500, "nil shards");
    let (gone_id, gone_key) = s.publish(&with_file(&small_meta, |f| {
        f.blocks[0].encrypted_hash = [0x43; 16];
        for loc in &mut f.blocks[0].shards {
            loc.host.set_port(1);
        }
    }));
    assert_eq!(
        s.status(&gone_id, Some(&gone_key)),
        500,
        "unreachable shard servers"
    );

    // A registry that is not on the allow-list is never asked.
    let (status, _, body) = s.get(&big_id, FORBIDDEN, Some(&big_key));
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("allow-list"));
    for forged in [
        vec![
            "-H",
            "X-Forwarded-Host: 00000000000000000000000000000000.127.0.0.1:9090",
        ],
        vec![
            "-H",
            "Forwarded: host=\"00000000000000000000000000000000.127.0.0.1:9090\"",
        ],
    ] {
        let (status, _, _) = s.request(Some(&format!("{big_id}.{ALLOWED}")), "", &forged);
        assert_eq!(status, 403, "{forged:?}");
    }
    // (Its only request is the readiness probe's `GET /`.)
    let log = s.net.log("forbidden-registry");
    assert!(!log.contains("/api/v1/metadata"), "{log}");

    // Metadata from a registry elsewhere that names shard servers on this
    // machine's loopback: refused before any shard is asked for.
    let (fresh_id, fresh_key) =
        s.publish(&s.upload("fresh.bin", None, &content(4096), 1024 * 1024));
    let cached = cache_files(&s.cache);
    let (status, _, body) = s.get(&fresh_id, ELSEWHERE, Some(&fresh_key));
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("loopback"));
    assert!(s.net.log("elsewhere-registry").contains(&fresh_id));
    assert_eq!(cache_files(&s.cache), cached, "nothing fetched");
    // The same file through the registry on this machine is served.
    assert_eq!(s.status(&fresh_id, Some(&fresh_key)), 200);

    // A blob declaring a 2^45-byte name: refused at once, without the memory.
    let pid = s.node_pid();
    let before = vm_hwm_kib(pid);
    let mut huge = small_meta.to_bytes();
    huge[25..33].copy_from_slice(&(1u64 << 45).to_be_bytes());
    let huge_id = hex::encode([0x96; 16]);
    s.publish_raw(&huge_id, &huge);
    let start = Instant::now();
    assert_eq!(s.status(&huge_id, None), 422, "huge declared length");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let grown = vm_hwm_kib(pid).saturating_sub(before);
    assert!(grown < 64 * 1024, "peak memory grew by {grown} KiB");

    // One shard server gone: parity stands in for it.
    s.stop("redis-6381");
    let (status, _, body) = s.get(&spare_id, ALLOWED, Some(&spare_key));
    assert!(
        status == 200 && body == spare,
        "status {status}, {} bytes\n{}",
        body.len(),
        s.net.logs()
    );

    // Every shard server gone: what was fetched before comes from the cache.
    s.stop("redis-6382");
    s.stop("redis-6383");
    let before = cache_files(&s.cache);
    let (status, _, body) = s.get(&big_id, ALLOWED, Some(&big_key));
    assert!(
        status == 200 && body == big,
        "status {status}, {} bytes",
        body.len()
    );
    assert_eq!(cache_files(&s.cache), before);
    assert!(
        before.iter().all(|n| !n.starts_with('.')),
        "no temporary files left: {before:?}"
    );
    // What was not fetched before cannot be, and says so.
    let (never_id, never_key) = s.publish(&s.upload_nothing());
    assert_eq!(
        s.status(&never_id, Some(&never_key)),
        500,
        "no shard server"
    );
}

fn hex_id(s: &str) -> [u8; 16] {
    hex::decode(s).unwrap().try_into().unwrap()
}

/// `meta` (a file) changed by `f`.
fn with_file(meta: &Metadata, f: impl FnOnce(&mut File)) -> Metadata {
    let Metadata::File(mut file) = meta.clone() else {
        unreachable!()
    };
    f(&mut file);
    Metadata::File(file)
}

impl Setup {
    /// A file whose only block was never stored.
    fn upload_nothing(&self) -> Metadata {
        Metadata::File(File {
            content_hash: [0; 16],
            name: "never".into(),
            mime: None,
            blocks: vec![Block {
                shards: self
                    .servers()
                    .into_iter()
                    .map(|(host, db)| ShardLocation {
                        host,
                        db,
                        auth: None,
                    })
                    .collect(),
                required_shards: 2,
                start_offset: 0,
                end_offset: 0,
                content_hash: [1; 16],
                encrypted_hash: [2; 16],
                nonce: [3; 12],
            }],
        })
    }
}
