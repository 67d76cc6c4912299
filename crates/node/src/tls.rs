//! TLS 1.3 with an external pre-shared key, the transport of private networks,
//! compatible with upstream's `mycelium-private`.
//!
//! Both ends know the network's name and its 32-byte key. The client offers the
//! name as its PSK identity (no SNI, no certificate on either side); the server
//! accepts only its own name, and the key itself is checked by the TLS 1.3 PSK
//! binder. OpenSSL binds PSKs given through its legacy callbacks to SHA-256, so only
//! the two SHA-256 suites are offered; the key exchange is OpenSSL's default
//! `psk_dhe_ke` (PSK with ECDHE), so past sessions stay secret if the key leaks.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openssl::ex_data::Index;
use openssl::ssl::{Ssl, SslContext, SslContextBuilder, SslMethod, SslVerifyMode, SslVersion};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_openssl::SslStream;

use crate::config::PrivateNetwork;

/// The TLS 1.3 suites that work with a SHA-256-bound PSK.
const CIPHERSUITES: &str = "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256";
/// A handshake that takes longer than this is abandoned, so that a silent peer
/// cannot hold a connection slot.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Client and server contexts of one private network.
pub(crate) struct Tls {
    client: SslContext,
    server: SslContext,
    /// Where the server callback leaves a network name it refused, for the log.
    refused_name: Index<Ssl, String>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

/// Why a handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    /// TLS refused it: wrong network name or key, wrong TLS version, or a peer
    /// that is not TLS at all.
    #[error("{0}")]
    Tls(String),
    /// Nothing came back in time.
    #[error("no handshake within {HANDSHAKE_TIMEOUT:?}")]
    Timeout,
}

/// TLS 1.3 only, the SHA-256 suites only, no peer certificate checked (there is
/// none: the PSK authenticates both ends).
fn base(method: SslMethod) -> Result<SslContextBuilder, openssl::error::ErrorStack> {
    let mut b = SslContextBuilder::new(method)?;
    b.set_min_proto_version(Some(SslVersion::TLS1_3))?;
    b.set_max_proto_version(Some(SslVersion::TLS1_3))?;
    b.set_ciphersuites(CIPHERSUITES)?;
    b.set_verify(SslVerifyMode::NONE);
    Ok(b)
}

impl Tls {
    /// Contexts for the network `net`.
    pub(crate) fn new(net: &PrivateNetwork) -> Result<Self, openssl::error::ErrorStack> {
        let name: Arc<[u8]> = Arc::from(net.name().as_bytes());
        let key = *net.key();

        let mut client = base(SslMethod::tls_client())?;
        let (id, psk) = (name.clone(), key);
        client.set_psk_client_callback(move |_ssl, _hint, identity, out| {
            // The identity goes out as a C string: the name, then NUL.
            if id.len() >= identity.len() || psk.len() > out.len() {
                return Ok(0);
            }
            identity[..id.len()].copy_from_slice(&id);
            identity[id.len()] = 0;
            out[..psk.len()].copy_from_slice(&psk);
            Ok(psk.len())
        });

        let mut server = base(SslMethod::tls_server())?;
        let psk = key;
        let refused_name = Ssl::new_ex_index::<String>()?;
        server.set_psk_server_callback(move |ssl, identity, out| {
            // Another network's name: no key, so OpenSSL refuses the handshake.
            if identity != Some(&name[..]) {
                let id = identity.unwrap_or_default();
                let shown = String::from_utf8_lossy(&id[..id.len().min(64)]).into_owned();
                ssl.set_ex_data(refused_name, shown);
                return Ok(0);
            }
            if psk.len() > out.len() {
                return Ok(0);
            }
            out[..psk.len()].copy_from_slice(&psk);
            Ok(psk.len())
        });

        Ok(Self {
            client: client.build(),
            server: server.build(),
            refused_name,
        })
    }

    /// Runs the client side of a handshake over `stream`.
    pub(crate) async fn connect<S>(&self, stream: S) -> Result<SslStream<S>, HandshakeError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.handshake(&self.client, stream, true).await
    }

    /// Runs the server side of a handshake over `stream`.
    pub(crate) async fn accept<S>(&self, stream: S) -> Result<SslStream<S>, HandshakeError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.handshake(&self.server, stream, false).await
    }

    async fn handshake<S>(
        &self,
        ctx: &SslContext,
        stream: S,
        client: bool,
    ) -> Result<SslStream<S>, HandshakeError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let tls_err = |e: &dyn std::fmt::Display| HandshakeError::Tls(e.to_string());
        let ssl = Ssl::new(ctx).map_err(|e| tls_err(&e))?;
        let mut s = SslStream::new(ssl, stream).map_err(|e| tls_err(&e))?;
        let done = async {
            if client {
                Pin::new(&mut s).connect().await
            } else {
                Pin::new(&mut s).accept().await
            }
        };
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, done).await {
            Ok(Ok(())) => Ok(s),
            Ok(Err(e)) => Err(HandshakeError::Tls(
                match s.ssl().ex_data(self.refused_name) {
                    Some(name) => format!("the peer is in another network ({name:?})"),
                    None => describe(&e),
                },
            )),
            Err(_) => Err(HandshakeError::Timeout),
        }
    }
}

/// An OpenSSL error in one line: the library's reasons when it has them, and what
/// they mean here when that is known.
fn describe(e: &openssl::ssl::Error) -> String {
    let reasons = reasons(e);
    let any = |words: &[&str]| words.iter().any(|w| reasons.contains(w));
    // A server refuses another key with "binder does not verify"; its client is
    // told "illegal parameter".
    let hint = if any(&[
        "binder does not verify",
        "decrypt error",
        "illegal parameter",
    ]) {
        "wrong network key? "
    } else if any(&["handshake failure"]) {
        "wrong network name? "
    } else if any(&["protocol version", "wrong version", "unsupported protocol"]) {
        "not TLS 1.3? "
    } else {
        ""
    };
    format!("{hint}{reasons}")
}

fn reasons(e: &openssl::ssl::Error) -> String {
    match e.ssl_error() {
        Some(stack) => {
            let reasons: Vec<String> = stack
                .errors()
                .iter()
                .map(|e| e.reason().unwrap_or("unknown").to_owned())
                .collect();
            if reasons.is_empty() {
                e.to_string()
            } else {
                reasons.join("; ")
            }
        }
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

    fn net(name: &str, key: u8) -> PrivateNetwork {
        PrivateNetwork::new(name.to_owned(), [key; 32]).unwrap()
    }

    /// Runs a client handshake for `client` against a server of `server` over a
    /// local socket pair; on success, checks bytes flow both ways.
    async fn pair(client: &PrivateNetwork, server: &PrivateNetwork) -> Result<(), String> {
        let (c, s) = tokio::net::UnixStream::pair().unwrap();
        let (ct, st) = (Tls::new(client).unwrap(), Tls::new(server).unwrap());
        let (cr, sr) = tokio::join!(ct.connect(c), st.accept(s));
        let (mut c, mut s) = match (cr, sr) {
            (Ok(c), Ok(s)) => (c, s),
            (c, s) => {
                return Err(format!(
                    "client: {:?}, server: {:?}",
                    c.err().map(|e| e.to_string()),
                    s.err().map(|e| e.to_string())
                ))
            }
        };
        assert_eq!(s.ssl().version_str(), "TLSv1.3");
        let suite = s.ssl().current_cipher().unwrap().standard_name().unwrap();
        assert!(CIPHERSUITES.contains(suite), "{suite}");
        assert!(s.ssl().peer_certificate().is_none());
        assert!(s
            .ssl()
            .servername(openssl::ssl::NameType::HOST_NAME)
            .is_none());
        c.write_all(b"hello").await.unwrap();
        c.flush().await.unwrap();
        let mut buf = [0; 5];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
        s.write_all(b"back").await.unwrap();
        s.flush().await.unwrap();
        let mut buf = [0; 4];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"back");
        Ok(())
    }

    #[tokio::test]
    async fn same_name_and_key_connect() {
        pair(&net("testnet", 7), &net("testnet", 7)).await.unwrap();
    }

    #[tokio::test]
    async fn wrong_name_is_refused() {
        let err = pair(&net("othernet", 7), &net("testnet", 7))
            .await
            .unwrap_err();
        println!("{err}");
        assert!(err.contains(r#"another network (\"othernet\")"#), "{err}");
    }

    #[tokio::test]
    async fn wrong_key_is_refused() {
        let err = pair(&net("testnet", 8), &net("testnet", 7))
            .await
            .unwrap_err();
        println!("{err}");
        assert!(err.contains("wrong network key?"), "{err}");
    }

    #[tokio::test]
    async fn tls_1_2_is_refused() {
        let mut b = SslContextBuilder::new(SslMethod::tls_client()).unwrap();
        b.set_max_proto_version(Some(SslVersion::TLS1_2)).unwrap();
        b.set_cipher_list("PSK-AES128-GCM-SHA256:PSK-CHACHA20-POLY1305")
            .unwrap();
        b.set_psk_client_callback(|_, _, identity, psk| {
            identity[..8].copy_from_slice(b"testnet\0");
            psk[..32].copy_from_slice(&[7; 32]);
            Ok(32)
        });
        let old = b.build();
        let server = Tls::new(&net("testnet", 7)).unwrap();
        let (c, s) = duplex(64 * 1024);
        let client = async {
            let mut c = SslStream::new(Ssl::new(&old).unwrap(), c).unwrap();
            Pin::new(&mut c).connect().await
        };
        let (cr, sr) = tokio::join!(client, server.accept(s));
        assert!(cr.is_err());
        let err = sr.unwrap_err().to_string();
        println!("{err}");
        assert!(err.contains("not TLS 1.3?"), "{err}");
    }
}
