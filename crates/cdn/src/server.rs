//! The helper's HTTP side: one route, `/`, for GET and HEAD. The host value names
//! a metadata id and a registry, the `key` parameter the metadata key; a file is
//! answered with its content, a directory with an HTML listing.
//!
//! Statuses follow upstream's where it has one (400 for unusable input, 404, 405,
//! 422 for metadata or content that does not decode or verify, 500 for shard
//! failures); where upstream's would be misleading we answer 403 (registry not
//! allowed), 502 (registry answered another status than 200 or 404) and 504
//! (registry timed out). A file's first block is fetched before the status is
//! sent, so a failing block answers with its status; later blocks are streamed
//! one at a time, and a failure among them ends the connection mid-body.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::block::{BlockError, Blocks};
use crate::host::{host_value, parse_key, parse_target, RegistryHost};
use crate::meta::{self, Directory, File, Metadata};
use crate::registry::{FetchError, Registries};

/// The most entries a directory listing shows (each is a registry request).
pub(crate) const MAX_DIR_ENTRIES: usize = 1024;

/// What every request shares.
#[derive(Debug)]
pub(crate) struct Helper {
    pub(crate) registries: Registries,
    pub(crate) blocks: Blocks,
}

/// A refusal: a status and a short plain-text reason (empty for upstream's
/// empty bodies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal(StatusCode, &'static str);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

/// The router: everything goes to [`handle`].
pub(crate) fn router(helper: Arc<Helper>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(helper)
}

async fn handle(State(helper): State<Arc<Helper>>, req: Request) -> Response {
    if req.uri().path() != "/" {
        return StatusCode::NOT_FOUND.into_response();
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET,HEAD")],
        )
            .into_response();
    }
    // Only the head is read: the body is ignored (and is not `Sync`).
    let (head, _) = req.into_parts();
    match serve(&helper, &head).await {
        Ok(resp) => resp,
        Err(refusal) => refusal.into_response(),
    }
}

async fn serve(helper: &Helper, req: &axum::http::request::Parts) -> Result<Response, Refusal> {
    let host = host_value(&req.headers, &req.uri)
        .ok_or(Refusal(StatusCode::BAD_REQUEST, "No host found in request"))?;
    let target = parse_target(&host).map_err(|_| {
        Refusal(
            StatusCode::BAD_REQUEST,
            "The host does not start with a 32-digit hex id",
        )
    })?;
    let key = parse_key(req.uri.query())
        .map_err(|_| Refusal(StatusCode::BAD_REQUEST, "Bad key parameter"))?;
    let registry = match helper.registries.allowed(&target.registry) {
        Ok(r) => r,
        Err(_) if RegistryHost::parse(&target.registry).is_none() => {
            return Err(Refusal(StatusCode::INTERNAL_SERVER_ERROR, ""))
        }
        Err(_) => {
            tracing::info!(
                "CDN: refused request for registry {:?} (not allowed)",
                target.registry
            );
            return Err(Refusal(
                StatusCode::FORBIDDEN,
                "This registry is not on the node's allow-list",
            ));
        }
    };
    match metadata(helper, &registry, &target.id, key).await? {
        Metadata::File(file) => {
            if !registry.is_local() && names_local_shards(&file) {
                tracing::warn!(
                    "CDN: refused a file from {registry} whose shards are on this machine's own addresses"
                );
                return Err(Refusal(
                    StatusCode::FORBIDDEN,
                    "Shard servers on loopback or link-local addresses are used only for a registry on this machine",
                ));
            }
            serve_file(helper, file).await
        }
        Metadata::Directory(dir) => listing(helper, &registry, &target.registry, &dir).await,
    }
}

/// Fetches, opens and decodes one metadata blob.
async fn metadata(
    helper: &Helper,
    registry: &RegistryHost,
    id: &[u8; 16],
    key: Option<[u8; 16]>,
) -> Result<Metadata, Refusal> {
    let blob = helper.registries.fetch(registry, id).await.map_err(|e| {
        tracing::debug!("CDN metadata {} from {registry}: {e}", hex::encode(id));
        match e {
            FetchError::Status(404) => Refusal(StatusCode::NOT_FOUND, ""),
            FetchError::Status(_) => Refusal(StatusCode::BAD_GATEWAY, "The registry failed"),
            FetchError::TooLarge => Refusal(StatusCode::UNPROCESSABLE_ENTITY, "Metadata too large"),
            FetchError::Timeout => Refusal(
                StatusCode::GATEWAY_TIMEOUT,
                "The registry did not answer in time",
            ),
            FetchError::NotAllowed(_) | FetchError::Transport(_) => {
                Refusal(StatusCode::INTERNAL_SERVER_ERROR, "")
            }
        }
    })?;
    let plain = match key {
        Some(key) => crate::crypto::open_metadata(&key, &blob).map_err(|_| {
            Refusal(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Metadata does not open with this key",
            )
        })?,
        None => blob,
    };
    let decoded = meta::decode(&plain).map_err(|e| {
        tracing::debug!("CDN metadata {}: {e}", hex::encode(id));
        Refusal(StatusCode::UNPROCESSABLE_ENTITY, "Metadata does not decode")
    })?;
    if decoded.trailing > 0 {
        tracing::warn!(
            "CDN metadata {}: {} bytes after the value, ignored",
            hex::encode(id),
            decoded.trailing
        );
    }
    Ok(decoded.metadata)
}

/// Whether any block of `file` names a shard server reachable only on this
/// machine or its links.
fn names_local_shards(file: &File) -> bool {
    file.blocks
        .iter()
        .flat_map(|b| &b.shards)
        .any(|s| crate::host::local_scope(s.host.ip()))
}

fn block_refusal(e: &BlockError) -> Refusal {
    tracing::warn!("CDN block: {e}");
    match e {
        BlockError::Content(_) => Refusal(StatusCode::UNPROCESSABLE_ENTITY, ""),
        BlockError::Shape(_) | BlockError::Shards { .. } => {
            Refusal(StatusCode::INTERNAL_SERVER_ERROR, "")
        }
    }
}

async fn serve_file(helper: &Helper, file: File) -> Result<Response, Refusal> {
    let mime = match &file.mime {
        Some(m) => HeaderValue::from_bytes(m.as_bytes())
            .map_err(|_| Refusal(StatusCode::UNPROCESSABLE_ENTITY, "Unusable media type"))?,
        None => HeaderValue::from_static("application/octet-stream"),
    };
    // Every block's code is checked before anything is sent, so a bad later
    // block cannot cut a stream short.
    for b in &file.blocks {
        crate::erasure::check_shape(usize::from(b.required_shards), b.shards.len())
            .map_err(|_| Refusal(StatusCode::INTERNAL_SERVER_ERROR, ""))?;
    }
    let mut blocks = file.blocks.into_iter();
    let Some(first) = blocks.next() else {
        return Ok(([(header::CONTENT_TYPE, mime)], Bytes::new()).into_response());
    };
    let first = helper
        .blocks
        .get(&first)
        .await
        .map_err(|e| block_refusal(&e))?;
    let rest: Vec<_> = blocks.collect();
    if rest.is_empty() {
        return Ok(([(header::CONTENT_TYPE, mime)], first).into_response());
    }
    let fetcher = helper.blocks.clone();
    let tail = futures_util::stream::unfold(
        (fetcher, rest.into_iter()),
        |(fetcher, mut rest)| async move {
            let block = rest.next()?;
            let item = fetcher.get(&block).await.map_err(|e| {
                tracing::warn!("CDN: ending a download mid-file: {e}");
                std::io::Error::other(e.to_string())
            });
            Some((item, (fetcher, rest)))
        },
    );
    let body = futures_util::StreamExt::chain(
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(first) }),
        tail,
    );
    Ok(([(header::CONTENT_TYPE, mime)], Body::from_stream(body)).into_response())
}

async fn listing(
    helper: &Helper,
    registry: &RegistryHost,
    registry_text: &str,
    dir: &Directory,
) -> Result<Response, Refusal> {
    if dir.files.len() > MAX_DIR_ENTRIES {
        return Err(Refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Directory too large to list",
        ));
    }
    let mut html = String::from(
        "\n<!DOCTYPE html>\n\n<html i18n-values=\"dir:textdirection;lang:language\">\n<head>\n<meta charset=\"utf-8\">\n</head>\n<body>\n<ul>",
    );
    for entry in &dir.files {
        let meta = metadata(helper, registry, &entry.meta_id, entry.meta_key).await?;
        let mut href = format!("http://{}.{registry_text}/", hex::encode(entry.meta_id));
        if let Some(key) = entry.meta_key {
            href.push_str("?key=");
            href.push_str(&hex::encode(key));
        }
        html.push_str(&format!(
            "<li><a href=\"{}\">{}</a></li>\n",
            escape(&href),
            escape(meta.name())
        ));
    }
    html.push_str("</ul></body></html>");
    Ok(([(header::CONTENT_TYPE, "text/html")], html).into_response())
}

/// `s` with the characters that mean something in HTML text and attributes escaped.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
