//! The CDN helper: a local HTTP server that turns a host name of the form
//! `<metadata id>.<registry>` into a download. It fetches the (usually sealed)
//! metadata from the registry, the blocks' erasure-coded shards from
//! Redis-protocol servers, rebuilds and decrypts the blocks, caches them on disk
//! and serves the file, or an HTML listing for a directory.
//!
//! The crate owns the whole feature and knows nothing of the node: the binary
//! calls [`bind`] at start-up (so a taken port or an unusable cache directory
//! stops the node before it runs), then serves [`Cdn::into_parts`] until shutdown.
//!
//! Where upstream trusts its input, this one does not: registries come from an
//! allow-list instead of the request's host header, every length read from the
//! network is bounded before allocation, cache entries are checked against their
//! hashes and written atomically, listings are HTML-escaped, and every fetch has
//! a timeout.

pub mod block;
pub mod cache;
pub mod crypto;
pub mod erasure;
pub mod host;
pub mod meta;
pub mod publish;
pub mod registry;
mod server;
pub mod shard;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::block::{Blocks, MAX_BLOCK_LEN};
use crate::cache::Cache;
use crate::host::RegistryHost;
use crate::registry::Registries;
use crate::shard::ShardFetch;

/// Where upstream listens: `localhost` as the system resolves it, port 80.
pub const DEFAULT_LISTEN: &str = "localhost:80";
/// The registry upstream's uploader publishes to: the default allow-list.
pub const DEFAULT_REGISTRY: &str = "cdn.mycelium.grid.tf";
/// The default deadline of one registry exchange.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The default wait for a shard server to accept, and for each read from it
/// (upstream's connect timeout).
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// How the helper runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdnConfig {
    /// The cache directory (created if missing, one level).
    pub cache_dir: PathBuf,
    /// Where to listen: an address, or `host:port` resolved at start-up, the
    /// first address that binds being taken.
    pub listen: String,
    /// Registries requests may name, as `host[:port]` (port 80 if not given).
    pub registries: Vec<String>,
    /// Deadline of one registry exchange (connect, redirects, body).
    pub fetch_timeout: Duration,
    /// Wait for a shard server's connection and for each read from it.
    pub redis_timeout: Duration,
}

impl CdnConfig {
    /// Upstream's settings for the cache directory `cache_dir`.
    pub fn new(cache_dir: PathBuf) -> Self {
        Self {
            cache_dir,
            listen: DEFAULT_LISTEN.to_owned(),
            registries: vec![DEFAULT_REGISTRY.to_owned()],
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            redis_timeout: DEFAULT_REDIS_TIMEOUT,
        }
    }
}

/// Why the helper cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CdnError {
    /// The listen address does not resolve.
    #[error("cannot resolve the CDN listen address {addr}: {source}")]
    Resolve {
        /// As configured.
        addr: String,
        /// Why.
        source: io::Error,
    },
    /// No address of it can be bound.
    #[error("cannot listen for the CDN helper on {addr}: {source}")]
    Bind {
        /// The (last) address tried.
        addr: String,
        /// Why.
        source: io::Error,
    },
    /// The cache directory cannot be created or read.
    #[error("CDN cache directory {path}: {source}")]
    CacheDir {
        /// As configured.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The cache path exists and is not a directory.
    #[error("CDN cache directory {0} is not a directory")]
    NotADirectory(PathBuf),
    /// An allow-list entry is not `host[:port]`.
    #[error("bad CDN registry {0:?}: expected HOST or HOST:PORT")]
    BadRegistry(String),
    /// The HTTP client cannot be built.
    #[error("cannot build the CDN registry client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Parses one allow-list entry (`host[:port]`).
pub fn parse_registry(s: &str) -> Result<RegistryHost, CdnError> {
    RegistryHost::parse(s).ok_or_else(|| CdnError::BadRegistry(s.to_owned()))
}

/// A helper whose socket is bound and cache directory ready.
#[derive(Debug)]
pub struct Cdn {
    listener: TcpListener,
    helper: Arc<server::Helper>,
}

/// Binds the listener and prepares the cache directory, in that order.
pub async fn bind(config: &CdnConfig) -> Result<Cdn, CdnError> {
    let allowed = config
        .registries
        .iter()
        .map(|r| parse_registry(r))
        .collect::<Result<Vec<_>, _>>()?;
    let registries = Registries::new(allowed, config.fetch_timeout)?;
    let listener = listen(&config.listen).await?;
    prepare_dir(&config.cache_dir)?;
    let helper = server::Helper {
        registries,
        blocks: Blocks {
            cache: Cache::new(config.cache_dir.clone(), MAX_BLOCK_LEN as u64),
            shards: ShardFetch {
                timeout: config.redis_timeout,
                max_len: MAX_BLOCK_LEN,
            },
        },
    };
    Ok(Cdn {
        listener,
        helper: Arc::new(helper),
    })
}

/// The first address of `listen` that binds.
async fn listen(listen: &str) -> Result<TcpListener, CdnError> {
    let addrs: Vec<SocketAddr> = match listen.parse::<SocketAddr>() {
        Ok(a) => vec![a],
        Err(_) => tokio::net::lookup_host(listen)
            .await
            .map_err(|source| CdnError::Resolve {
                addr: listen.to_owned(),
                source,
            })?
            .collect(),
    };
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for addr in &addrs {
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) => last = e,
        }
    }
    Err(CdnError::Bind {
        addr: match addrs.as_slice() {
            [one] => one.to_string(),
            _ => listen.to_owned(),
        },
        source: last,
    })
}

/// Creates the directory (one level) unless it exists; refuses anything else.
fn prepare_dir(path: &std::path::Path) -> Result<(), CdnError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(CdnError::NotADirectory(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir(path).map_err(|source| CdnError::CacheDir {
                path: path.to_owned(),
                source,
            })
        }
        Err(source) => Err(CdnError::CacheDir {
            path: path.to_owned(),
            source,
        }),
    }
}

impl Cdn {
    /// The address the helper listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The bound listener and the router to serve on it. The binary serves them
    /// with the same server as its APIs, which bounds connections and the wait for
    /// each request's head.
    pub fn into_parts(self) -> (TcpListener, axum::Router) {
        (self.listener, server::router(self.helper))
    }
}
