//! Fetching a metadata blob from a registry: `GET http://<registry>/api/v1/metadata/<hex id>`,
//! only from registries on the operator's allow-list.
//!
//! Upstream fetches from whatever registry the request's host header names, which
//! lets anyone who can reach the helper make the node send requests to any
//! address. Here a registry that is not on the list is refused before anything
//! is sent, a redirect is followed only to a listed registry (at most ten), the
//! whole exchange has a deadline, and the body is read in pieces up to
//! [`crate::meta::MAX_METADATA_LEN`]. Proxy settings from the environment are
//! honoured, as upstream's client does.

use std::time::Duration;

use reqwest::redirect;

use crate::host::RegistryHost;
use crate::meta::MAX_METADATA_LEN;

/// Why no blob came back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The registry is not on the allow-list; nothing was sent.
    #[error("registry {0} is not allowed")]
    NotAllowed(String),
    /// The registry answered with another status than 200.
    #[error("registry answered {0}")]
    Status(u16),
    /// The body is longer than a blob may be.
    #[error("metadata longer than {MAX_METADATA_LEN} bytes")]
    TooLarge,
    /// The deadline passed.
    #[error("registry did not answer in time")]
    Timeout,
    /// Connecting, sending or reading failed (redirect loops included).
    #[error("registry unreachable: {0}")]
    Transport(reqwest::Error),
}

/// A client for the allowed registries.
#[derive(Debug, Clone)]
pub struct Registries {
    client: reqwest::Client,
    allowed: Vec<RegistryHost>,
}

impl Registries {
    /// A client that fetches only from `allowed`, each exchange within `timeout`.
    pub fn new(allowed: Vec<RegistryHost>, timeout: Duration) -> Result<Self, reqwest::Error> {
        let for_redirects = allowed.clone();
        let policy = redirect::Policy::custom(move |attempt| {
            let url = attempt.url();
            let target = url.host_str().map(|h| RegistryHost {
                host: h.to_ascii_lowercase(),
                port: url.port_or_known_default().unwrap_or(80),
            });
            if attempt.previous().len() >= 10 {
                attempt.error("too many redirects")
            } else if url.scheme() == "http" && target.is_some_and(|t| for_redirects.contains(&t)) {
                attempt.follow()
            } else {
                attempt.stop()
            }
        });
        let client = reqwest::Client::builder()
            .redirect(policy)
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()?;
        Ok(Self { client, allowed })
    }

    /// The registry a request names, if it is allowed.
    pub fn allowed(&self, registry: &str) -> Result<RegistryHost, FetchError> {
        RegistryHost::parse(registry)
            .filter(|r| self.allowed.contains(r))
            .ok_or_else(|| FetchError::NotAllowed(registry.to_owned()))
    }

    /// The blob stored under `id` at `registry` (which [`Registries::allowed`] gave).
    pub async fn fetch(
        &self,
        registry: &RegistryHost,
        id: &[u8; 16],
    ) -> Result<Vec<u8>, FetchError> {
        let url = format!(
            "{}/api/v1/metadata/{}",
            registry.base_url(),
            hex::encode(id)
        );
        let mut resp = self.client.get(url).send().await.map_err(transport)?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(FetchError::Status(resp.status().as_u16()));
        }
        if resp
            .content_length()
            .is_some_and(|l| l > MAX_METADATA_LEN as u64)
        {
            return Err(FetchError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_METADATA_LEN {
                return Err(FetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

fn transport(e: reqwest::Error) -> FetchError {
    if e.is_timeout() {
        FetchError::Timeout
    } else {
        FetchError::Transport(e)
    }
}
