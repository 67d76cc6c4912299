//! The HTTP side of the client subcommands: one blocking request at a time to
//! `http://<api addr>/api/v1/…`, answers read whole into memory.
//!
//! The node's answer, whatever its status, is handed back to the caller, who knows
//! what each status means for its endpoint; [`Answer::expect`] turns an unexpected
//! one into a one-line error quoting the node's text.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

/// Variable holding a bearer token sent with every request, for nodes whose API
/// sits behind something that checks one.
pub(crate) const TOKEN_VAR: &str = "MYCELIUM_API_TOKEN";

/// The largest answer read; the API's biggest lists (peers, routes) stay far below.
const MAX_BODY: u64 = 64 * 1024 * 1024;

/// How much of an error answer goes into the error message.
const MAX_ERROR_TEXT: usize = 512;

/// A client of one node's REST API.
pub(crate) struct Api {
    agent: ureq::Agent,
    addr: SocketAddr,
    authorization: Option<String>,
}

/// What the node answered.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The HTTP status code.
    pub(crate) status: u16,
    /// The body, as sent.
    pub(crate) body: Vec<u8>,
}

impl Api {
    /// A client for the API at `addr`, with the token from [`TOKEN_VAR`] if set.
    pub(crate) fn new(addr: SocketAddr) -> anyhow::Result<Self> {
        let token = match std::env::var(TOKEN_VAR) {
            // A token read from a file with $(cat …) keeps no trailing newline.
            Ok(t) if !t.trim().is_empty() => Some(t.trim().to_owned()),
            Ok(_) | Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(_)) => bail!("{TOKEN_VAR} is not valid UTF-8"),
        };
        Self::with_token(addr, token.as_deref())
    }

    fn with_token(addr: SocketAddr, token: Option<&str>) -> anyhow::Result<Self> {
        let authorization = match token {
            // Header values are visible ASCII and spaces; anything else would be
            // refused by the HTTP library with a less helpful message.
            Some(t) if !t.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) => {
                bail!("{TOKEN_VAR} holds characters that cannot go into an HTTP header")
            }
            Some(t) => Some(format!("Bearer {t}")),
            None => None,
        };
        let agent = ureq::Agent::config_builder()
            // Statuses are the caller's business: an error status still has a body
            // worth showing.
            .http_status_as_error(false)
            // The API is local; a system proxy (HTTP_PROXY, …) must not reroute it.
            .proxy(None)
            .max_redirects(0)
            // A dead address fails fast; the answer itself may take as long as the
            // long-poll the caller asked for.
            .timeout_connect(Some(Duration::from_secs(10)))
            .build()
            .new_agent();
        Ok(Self {
            agent,
            addr,
            authorization,
        })
    }

    /// The address requests go to.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("http://{}/api/v1/{path_and_query}", self.addr)
    }

    /// `GET /api/v1/<path_and_query>`.
    pub(crate) fn get(&self, path_and_query: &str) -> anyhow::Result<Answer> {
        let mut req = self.agent.get(self.url(path_and_query));
        if let Some(auth) = &self.authorization {
            req = req.header("Authorization", auth);
        }
        self.finish(req.call(), "GET", path_and_query)
    }

    /// `DELETE /api/v1/<path_and_query>`.
    pub(crate) fn delete(&self, path_and_query: &str) -> anyhow::Result<Answer> {
        let mut req = self.agent.delete(self.url(path_and_query));
        if let Some(auth) = &self.authorization {
            req = req.header("Authorization", auth);
        }
        self.finish(req.call(), "DELETE", path_and_query)
    }

    /// `POST /api/v1/<path_and_query>` with `body` as JSON.
    pub(crate) fn post_json(
        &self,
        path_and_query: &str,
        body: &impl serde::Serialize,
    ) -> anyhow::Result<Answer> {
        let json = serde_json::to_vec(body).context("encoding the request as JSON")?;
        let mut req = self
            .agent
            .post(self.url(path_and_query))
            .header("Content-Type", "application/json");
        if let Some(auth) = &self.authorization {
            req = req.header("Authorization", auth);
        }
        self.finish(req.send(&json[..]), "POST", path_and_query)
    }

    fn finish(
        &self,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        method: &str,
        path: &str,
    ) -> anyhow::Result<Answer> {
        let failed = |e: ureq::Error| {
            let cause = match e {
                ureq::Error::Io(io) => io.to_string(),
                other => other.to_string(),
            };
            anyhow!(
                "cannot reach the node's API at {} ({method} /api/v1/{path}): {cause}; is the \
                 node running with --api-addr {}?",
                self.addr,
                self.addr
            )
        };
        let mut response = result.map_err(failed)?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| {
                anyhow!(
                    "reading the node's answer to {method} /api/v1/{path} from {}: {e}",
                    self.addr
                )
            })?;
        tracing::debug!(method, path, status, len = body.len(), "API answer");
        Ok(Answer { status, body })
    }
}

impl Answer {
    /// `Ok` if the status is one of `ok`; otherwise an error naming `what` was
    /// being done, the status and the node's text.
    pub(crate) fn expect(self, ok: &[u16], what: &str) -> anyhow::Result<Self> {
        if ok.contains(&self.status) {
            Ok(self)
        } else {
            Err(self.error(what))
        }
    }

    /// An error for an answer its caller did not want.
    pub(crate) fn error(&self, what: &str) -> anyhow::Error {
        let reason = ureq::http::StatusCode::from_u16(self.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        let mut text = one_line(&self.body);
        if self.status == 401 {
            let hint = format!("set {TOKEN_VAR} to the node's API token");
            text = if text.is_empty() {
                hint
            } else {
                format!("{text} ({hint})")
            };
        }
        if text.is_empty() {
            anyhow!("{what}: the node answered {} {reason}", self.status)
        } else {
            anyhow!("{what}: the node answered {} {reason}: {text}", self.status)
        }
    }

    /// The body parsed as JSON of type `T`.
    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> anyhow::Result<T> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("{what}: the node's answer is not the expected JSON"))
    }

    /// The body as text (invalid UTF-8 replaced), for printing it unchanged.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `body` as one line of bounded length: whitespace runs become one space.
fn one_line(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.len() > MAX_ERROR_TEXT {
        let mut cut = MAX_ERROR_TEXT;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push('…');
    }
    line
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn error_answers_become_one_line() {
        let answer = Answer {
            status: 409,
            body: b"A peer identified by that endpoint\n already exists".to_vec(),
        };
        assert_eq!(
            answer.error("adding peer tcp://1.2.3.4:9651").to_string(),
            "adding peer tcp://1.2.3.4:9651: the node answered 409 Conflict: A peer identified \
             by that endpoint already exists"
        );
        let empty = Answer {
            status: 404,
            body: Vec::new(),
        };
        assert_eq!(
            empty.error("x").to_string(),
            "x: the node answered 404 Not Found"
        );
        let unauthorized = Answer {
            status: 401,
            body: Vec::new(),
        };
        assert_eq!(
            unauthorized.error("x").to_string(),
            "x: the node answered 401 Unauthorized: set MYCELIUM_API_TOKEN to the node's API \
             token"
        );
    }

    #[test]
    fn long_error_texts_are_cut() {
        let line = one_line("é".repeat(1000).as_bytes());
        assert!(line.len() <= MAX_ERROR_TEXT + '…'.len_utf8());
        assert!(line.ends_with('…'));
    }

    #[test]
    fn tokens_must_fit_in_a_header() {
        let addr = "127.0.0.1:1".parse().unwrap();
        assert!(Api::with_token(addr, Some("a\nb")).is_err());
        let api = Api::with_token(addr, Some("s3cret")).unwrap();
        assert_eq!(api.authorization.as_deref(), Some("Bearer s3cret"));
        assert!(Api::with_token(addr, None).unwrap().authorization.is_none());
    }
}
