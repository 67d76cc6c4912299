//! REST behaviour beyond the documents: axum's framework errors as upstream returns
//! them, upstream's quirks, the bearer token, h2c, and long-polls that do not hold
//! up other requests.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{client, enc, http, start, start_on, Kind};
use mycelium_api::ApiConfig;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn text_of(resp: reqwest::Response) -> (StatusCode, String, String) {
    let status = resp.status();
    let ctype = resp
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ctype, resp.text().await.unwrap())
}

#[tokio::test]
async fn framework_errors_match_axum_as_upstream_uses_it() {
    let srv = http().await;
    let c = client();
    let peers = format!("{}/api/v1/admin/peers", srv.base);

    let (s, ct, body) = text_of(c.post(&peers).body("{}").send().await.unwrap()).await;
    assert_eq!(s, 415);
    assert!(ct.starts_with("text/plain"));
    assert_eq!(
        body,
        "Expected request with `Content-Type: application/json`"
    );

    let bad_json = c
        .post(&peers)
        .header(CONTENT_TYPE, "application/json")
        .body("{");
    assert_eq!(bad_json.send().await.unwrap().status(), 400);

    let (s, ct, body) = text_of(c.post(&peers).json(&json!({"x": 1})).send().await.unwrap()).await;
    assert_eq!(s, 422);
    assert!(ct.starts_with("text/plain"));
    assert!(
        body.starts_with("Failed to deserialize the JSON body into the target type: "),
        "{body}"
    );

    let (s, _, body) = text_of(
        c.get(format!("{}/api/v1/nowhere", srv.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s.as_u16(), body.as_str()), (404, ""));

    let resp = c
        .put(format!("{}/api/v1/admin", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);

    let resp = c
        .get(format!("{}/api/v1/messages?peek=maybe", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = c
        .get(format!("{}/api/v1/messages?timeout=-1", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn endpoint_errors_are_upstreams_texts() {
    let srv = http().await;
    let c = client();
    let peers = format!("{}/api/v1/admin/peers", srv.base);
    let (s, _, body) = text_of(
        c.post(&peers)
            .json(&json!({"endpoint": "1.2.3.4:9651"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s.as_u16(), body.as_str()),
        (400, "missing leading protocol identifier")
    );
    let (s, _, body) = text_of(
        c.post(&peers)
            .json(&json!({"endpoint": "tcp://192.0.2.1:9651"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s.as_u16(), body.as_str()),
        (409, "A peer identified by that endpoint already exists")
    );
    let url = format!("{peers}/{}", enc("tcp://192.0.2.1:9651"));
    assert_eq!(c.delete(&url).send().await.unwrap().status(), 204);
    let (s, _, body) = text_of(c.delete(&url).send().await.unwrap()).await;
    assert_eq!(
        (s.as_u16(), body.as_str()),
        (404, "A peer identified by that endpoint does not exist")
    );
    // The peer list reflects both changes.
    let list: Value = c.get(&peers).send().await.unwrap().json().await.unwrap();
    assert!(!list.to_string().contains("192.0.2.1:9651"));
}

#[tokio::test]
async fn messages_loop_back_and_report_status() {
    let srv = http().await;
    let c = client();
    let b = &srv.base;
    let own = srv.fake.address().to_string();
    let resp = c
        .post(format!("{b}/api/v1/messages"))
        .json(&json!({"dst": {"ip": own}, "topic": "dGVzdA==", "payload": "aGVsbG8="}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let status: Value = c
        .get(format!("{b}/api/v1/messages/status/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["state"], "received");
    assert_eq!(status["msgLen"], 5);
    assert_eq!(
        status["deadline"].as_i64().unwrap() - status["created"].as_i64().unwrap(),
        300
    );
    // A topic filter that does not match leaves it; a peek shows it and keeps it.
    let miss = c
        .get(format!("{b}/api/v1/messages?topic=b3RoZXI%3D"))
        .send()
        .await
        .unwrap();
    assert_eq!(miss.status(), 204);
    for _ in 0..2 {
        let m: Value = c
            .get(format!("{b}/api/v1/messages?peek=true&topic=dGVzdA%3D%3D"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(m["id"], id.as_str());
    }
    let m: Value = c
        .get(format!("{b}/api/v1/messages"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["payload"], "aGVsbG8=");
    assert_eq!(m["topic"], "dGVzdA==");
    let empty = c.get(format!("{b}/api/v1/messages")).send().await.unwrap();
    assert_eq!(empty.status(), 204);
    // Ids in paths are exactly 16 hex characters.
    for bad in ["0123456789abcdef00", "0123456789abcdeg"] {
        let r = c
            .get(format!("{b}/api/v1/messages/status/{bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn a_long_poll_does_not_hold_up_other_requests() {
    let srv = http().await;
    let c = client();
    let base = srv.base.clone();
    let poll = tokio::spawn({
        let c = c.clone();
        async move {
            let started = Instant::now();
            let r = c
                .get(format!("{base}/api/v1/messages?timeout=2"))
                .send()
                .await
                .unwrap();
            (r.status(), started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let r = c
        .get(format!("{}/api/v1/admin", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(1));
    let (status, waited) = poll.await.unwrap();
    assert_eq!(status, 204);
    assert!(waited >= Duration::from_millis(1900), "{waited:?}");
}

#[tokio::test]
async fn a_long_poll_returns_when_a_message_arrives() {
    let srv = http().await;
    let c = client();
    let url = format!("{}/api/v1/messages?timeout=10", srv.base);
    let poll = tokio::spawn(async move { c.get(url).send().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let own = srv.fake.address().to_string();
    let pushed = client()
        .post(format!("{}/api/v1/messages", srv.base))
        .json(&json!({"dst": {"ip": own}, "payload": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 201);
    let got = tokio::time::timeout(Duration::from_secs(3), poll)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.status(), 200);
    let m: Value = got.json().await.unwrap();
    assert!(m.get("topic").is_none(), "empty topic is left out: {m}");
}

#[tokio::test]
async fn topics_take_byte_arrays_and_base64_paths() {
    let srv = http().await;
    let c = client();
    let b = &srv.base;
    let topics = format!("{b}/api/v1/messages/topics");
    for _ in 0..2 {
        let r = c
            .post(&topics)
            .json(&json!([104, 105]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let r = c.post(&topics).json(&json!([256])).send().await.unwrap();
    assert_eq!(r.status(), 422);
    let list: Value = c.get(&topics).send().await.unwrap().json().await.unwrap();
    assert_eq!(list, json!(["aGk="]));
    let sources = format!("{topics}/aGk=/sources");
    for subnet in ["400::/7", "10.0.0.1"] {
        let r = c
            .post(&sources)
            .json(&json!({"subnet": subnet}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let list: Value = c.get(&sources).send().await.unwrap().json().await.unwrap();
    assert_eq!(list, json!(["400::/7", "10.0.0.1/32"]));
    let r = c
        .delete(format!("{sources}/{}", enc("400::/7")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let forward = format!("{topics}/aGk=/forward");
    let r = c
        .put(&forward)
        .json(&json!({"socketPath": "/run/app.sock"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let f: Value = c.get(&forward).send().await.unwrap().json().await.unwrap();
    assert_eq!(f, "/run/app.sock");
    // Setting the socket of a topic that is not whitelisted is ignored.
    let r = c
        .put(format!("{topics}/bm9uZQ==/forward"))
        .json(&json!({"socketPath": "/x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let f: Value = c
        .get(format!("{topics}/bm9uZQ==/forward"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(f, Value::Null);
    // Non-canonical base64 in the path is a 400.
    let r = c.delete(format!("{topics}/aGl")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = c.delete(format!("{topics}/aGk=")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = c.get(&sources).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn the_token_guards_every_request_but_the_page() {
    let cfg = ApiConfig {
        token: Some("s3cret".into()),
        ..ApiConfig::default()
    };
    let srv = start(Kind::Http, cfg).await;
    let c = client();
    let admin = format!("{}/api/v1/admin", srv.base);
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Basic s3cret"),
        Some("Bearer s3cre"),
    ] {
        let mut req = c.get(&admin);
        if let Some(a) = auth {
            req = req.header(AUTHORIZATION, a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{auth:?}");
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        let body: Value = resp.json().await.unwrap();
        assert!(body["error"].is_string());
    }
    let resp = c
        .get(&admin)
        .header(AUTHORIZATION, "Bearer s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = c
        .get(format!("{}/api/v1/nowhere", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let page = c.get(format!("{}/", srv.base)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page
        .text()
        .await
        .unwrap()
        .to_lowercase()
        .starts_with("<!doctype html"));
}

#[tokio::test]
async fn without_a_token_nothing_is_asked() {
    let srv = http().await;
    let resp = client()
        .get(format!("{}/api/v1/admin", srv.base))
        .header(AUTHORIZATION, "Bearer anything")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn http2_cleartext_is_served() {
    let srv = http().await;
    let c = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = c
        .get(format!("{}/api/v1/admin", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused() {
    let cfg = ApiConfig {
        max_body_bytes: 1024,
        ..ApiConfig::default()
    };
    let srv = start(Kind::Http, cfg).await;
    let resp = client()
        .post(format!("{}/api/v1/admin/peers", srv.base))
        .header(CONTENT_TYPE, "application/json")
        .body(format!(r#"{{"endpoint":"{}"}}"#, "x".repeat(2000)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
}

#[tokio::test]
async fn shutdown_ends_waiting_requests() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(mycelium_api::serve_http(
        listener,
        std::sync::Arc::new(mycelium_api::FakeBackend::new()),
        ApiConfig::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    let poll = tokio::spawn(async move {
        client()
            .get(format!("http://{addr}/api/v1/messages?timeout=60"))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    let answer = tokio::time::timeout(Duration::from_secs(3), poll)
        .await
        .unwrap()
        .unwrap();
    if let Ok(resp) = answer {
        assert_eq!(resp.status(), 204);
    }
}

#[tokio::test]
async fn connections_past_the_cap_wait_for_one_to_close() {
    let cfg = ApiConfig {
        max_connections: 1,
        ..ApiConfig::default()
    };
    let srv = start(Kind::Http, cfg).await;
    let addr = srv.base.trim_start_matches("http://").to_owned();
    let idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let url = format!("{}/api/v1/admin", srv.base);
    let blocked = client()
        .get(&url)
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert!(blocked.is_err(), "served past the cap");
    drop(idle);
    let resp = client()
        .get(&url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// Reads from `stream` until the server closes it; how long that took.
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> Duration {
    use tokio::io::AsyncReadExt;
    let started = Instant::now();
    let mut buf = [0; 1024];
    loop {
        match tokio::time::timeout_at((started + limit).into(), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("the server kept the connection open past {limit:?}"),
        }
    }
}

/// A REST server with one connection's place and a 300 ms read timeout, and its
/// `host:port`.
async fn one_place_300ms() -> (common::Server, String) {
    let cfg = ApiConfig {
        max_connections: 1,
        read_timeout: Duration::from_millis(300),
        ..ApiConfig::default()
    };
    let srv = start(Kind::Http, cfg).await;
    let addr = srv.base.trim_start_matches("http://").to_owned();
    (srv, addr)
}

#[tokio::test]
async fn a_connection_that_sends_no_request_is_closed_and_its_place_freed() {
    let (srv, addr) = one_place_300ms().await;
    // Silent from the start.
    let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let took = closed_within(&mut idle, Duration::from_secs(5)).await;
    assert!(took >= Duration::from_millis(250), "closed after {took:?}");
    // A client that trickles its request's head a byte at a time.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let trickle = async {
        use tokio::io::AsyncWriteExt;
        for b in b"GET /api/v1/admin HTTP/1.1\r\nHost: localhost\r\n"
            .iter()
            .cycle()
        {
            if slow.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), trickle)
        .await
        .expect("the server kept taking a head that never ends");
    // Kept alive after a response, then silent.
    let mut kept = tokio::net::TcpStream::connect(&addr).await.unwrap();
    {
        use tokio::io::AsyncWriteExt;
        kept.write_all(b"GET /api/v1/admin HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
    }
    closed_within(&mut kept, Duration::from_secs(5)).await;
    // The place is free again.
    let resp = client()
        .get(format!("{}/api/v1/admin", srv.base))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_body_that_stops_coming_is_given_up_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_srv, addr) = one_place_300ms().await;
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(
            b"POST /api/v1/messages HTTP/1.1\r\nHost: localhost\r\n\
              Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"dst\":",
        )
        .await
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stalled.read_to_end(&mut answer))
        .await
        .expect("the server kept waiting for the body")
        .ok();
    assert!(started.elapsed() >= Duration::from_millis(250));
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "{answer}"
    );
    // A body that comes slowly but steadily is taken.
    let body = br#"{"dst":{"ip":"400::1"},"payload":"aGk="}"#;
    let mut steady = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/v1/messages HTTP/1.1\r\nHost: localhost\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    steady.write_all(head.as_bytes()).await.unwrap();
    for piece in body.chunks(8) {
        tokio::time::sleep(Duration::from_millis(150)).await;
        steady.write_all(piece).await.unwrap();
    }
    let mut answer = Vec::new();
    steady.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 2"), "{answer}");
}

#[tokio::test]
async fn a_long_poll_outlasts_the_read_timeout() {
    let cfg = ApiConfig {
        read_timeout: Duration::from_millis(200),
        ..ApiConfig::default()
    };
    let srv = start(Kind::Http, cfg).await;
    let started = Instant::now();
    let resp = client()
        .get(format!("{}/api/v1/messages?timeout=1", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn the_page_carries_its_security_headers() {
    let srv = http().await;
    let resp = client().get(format!("{}/", srv.base)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    let get = |name: &str| h.get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        get("content-security-policy").as_deref(),
        Some(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'"
        )
    );
    assert_eq!(get("x-content-type-options").as_deref(), Some("nosniff"));
    assert_eq!(get("referrer-policy").as_deref(), Some("no-referrer"));
    assert_eq!(get("cache-control").as_deref(), Some("no-cache"));
    assert!(get("content-type").unwrap().starts_with("text/html"));
}

/// The requests a DNS-rebinding page could make, and the names local clients use.
const FOREIGN_HOSTS: &[&str] = &[
    "evil.example",
    "evil.example:8989",
    "localhost.evil.example",
    "127.0.0.1.evil.example",
    "10.0.0.1",
    "[2001:db8::1]:8989",
    "",
];
const LOCAL_HOSTS: &[&str] = &[
    "127.0.0.1",
    "127.0.0.1:8989",
    "127.9.9.9",
    "localhost",
    "LOCALHOST:1",
    "[::1]",
    "[::1]:8989",
];

#[tokio::test]
async fn a_loopback_server_answers_only_loopback_host_names() {
    for kind in [Kind::Http, Kind::Rpc] {
        let srv = start(kind, ApiConfig::default()).await;
        let send = |host: &str| {
            let req = match kind {
                Kind::Http => client().get(format!("{}/api/v1/admin", srv.base)),
                Kind::Rpc => client()
                    .post(&srv.base)
                    .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "getInfo"})),
            };
            req.header(HOST, host).send()
        };
        for host in FOREIGN_HOSTS {
            let resp = send(host).await.unwrap();
            assert_eq!(resp.status(), 421, "Host {host:?}");
            let body: Value = resp.json().await.unwrap();
            assert!(body["error"].as_str().unwrap().contains("Host"), "{body}");
        }
        for host in LOCAL_HOSTS {
            assert_eq!(send(host).await.unwrap().status(), 200, "Host {host:?}");
        }
        // The page too: a rebinding page must not even load it.
        if let Kind::Http = kind {
            let resp = client()
                .get(format!("{}/", srv.base))
                .header(HOST, "evil.example")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 421);
        }
    }
}

#[tokio::test]
async fn a_loopback_server_answers_only_local_origins() {
    for kind in [Kind::Http, Kind::Rpc] {
        let srv = start(kind, ApiConfig::default()).await;
        let send = |origin: &str| {
            let req = match kind {
                Kind::Http => client().get(format!("{}/api/v1/admin", srv.base)),
                Kind::Rpc => client()
                    .post(&srv.base)
                    .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "getInfo"})),
            };
            req.header(reqwest::header::ORIGIN, origin).send()
        };
        for origin in ["https://evil.example", "null", "http://10.0.0.1:8989"] {
            assert_eq!(send(origin).await.unwrap().status(), 421, "{origin}");
        }
        let own = srv.base.clone();
        for origin in [own.as_str(), "http://localhost:8989", "http://[::1]"] {
            assert_eq!(send(origin).await.unwrap().status(), 200, "{origin}");
        }
    }
}

#[tokio::test]
async fn h2_authority_is_checked_too() {
    let srv = http().await;
    let c = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = c
        .get(format!("{}/api/v1/admin", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let resp = c
        .get(format!("{}/api/v1/admin", srv.base))
        .header(HOST, "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 421);
}

/// A server on a non-loopback address demands a token instead, and takes any host.
#[tokio::test]
async fn a_server_on_other_addresses_accepts_any_host() {
    let cfg = ApiConfig {
        token: Some("t0ken".into()),
        ..ApiConfig::default()
    };
    for kind in [Kind::Http, Kind::Rpc] {
        let srv = start_on(kind, cfg.clone(), "0.0.0.0:0").await;
        for host in FOREIGN_HOSTS.iter().chain(LOCAL_HOSTS) {
            let req = match kind {
                Kind::Http => client().get(format!("{}/api/v1/admin", srv.base)),
                Kind::Rpc => client()
                    .post(&srv.base)
                    .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "getInfo"})),
            };
            let resp = req
                .header(HOST, *host)
                .bearer_auth("t0ken")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "Host {host:?}");
        }
    }
}
