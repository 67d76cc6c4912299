//! The management APIs of a live node against the documents: two real nodes (this
//! crate's binary, router-only with `--no-tun`) peered over loopback, so peers,
//! routes and messages are real; every REST operation of our `openapi.yaml` and of
//! upstream's `api.yaml` driven on one of them, each answer checked (status,
//! content type, body schema) against ours and, where upstream's code behaves the
//! same, against upstream's document with our documented differences applied as
//! listed exceptions (crates/api/tests/common/schema.rs); then every JSON-RPC method
//! on its RPC port, results against our `openrpc.json` (and upstream's, but for the
//! listed exceptions), errors against the codes the method documents.
//!
//! Upstream's documents are kept in `crates/api/tests/fixtures/upstream`.
#![allow(clippy::unwrap_used)] // test set-up failures should fail loudly

#[path = "../../api/tests/common/schema.rs"]
mod schema;

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine as _;
use common::node::{pair, Node};
use mycelium_api::rpc::METHODS;
use schema::{
    check, documented_rpc_errors, operation_ids, our_openapi, our_openrpc, result_schema,
    schema_errors, upstream_file, upstream_with_exceptions, UPSTREAM_RPC_EXCEPTIONS,
};
use serde_json::{json, Value};

/// Requests with this test's HTTP client ([`send`]), which keeps the whole answer.
impl Node {
    fn get(&self, path: &str) -> Answer {
        send("GET", &self.url(path), None, &[])
    }

    fn post_json(&self, path: &str, body: &Value) -> Answer {
        send(
            "POST",
            &self.url(path),
            Some(("application/json", body.to_string())),
            &[],
        )
    }

    /// A JSON-RPC call on this node's RPC port; the whole answer object.
    fn rpc(&self, method: &str, params: Value) -> Value {
        let call = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let answer = send(
            "POST",
            &format!("http://{}/", self.rpc),
            Some(("application/json", call.to_string())),
            &[],
        );
        assert_eq!(answer.status, 200, "{method}: {}", answer.text());
        answer.json()
    }
}

/// An HTTP answer.
struct Answer {
    status: u16,
    ctype: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request (every status is an answer, not an error).
fn send(method: &str, url: &str, body: Option<(&str, String)>, headers: &[(&str, &str)]) -> Answer {
    try_send(method, url, body, headers).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// Sends one request; an error only when no answer came.
fn try_send(
    method: &str,
    url: &str,
    body: Option<(&str, String)>,
    headers: &[(&str, &str)],
) -> Result<Answer, ureq::Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let (ctype, body) = body.unwrap_or(("", String::new()));
    if !ctype.is_empty() {
        req = req.header("content-type", ctype);
    }
    let req = req.body(body).unwrap();
    let mut resp = agent.run(req)?;
    let status = resp.status().as_u16();
    let headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()?;
    Ok(Answer {
        status,
        ctype,
        headers,
        body,
    })
}

/// Percent-encodes a path segment (everything but unreserved characters).
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Runs the REST cases against one node and records which were checked.
struct Rest<'a> {
    node: &'a Node,
    ours: Value,
    upstream: Value,
    /// (operationId, checked against upstream's document too)
    covered: Vec<(String, bool)>,
}

impl Rest<'_> {
    /// Sends a request and checks its answer: `status`, and the documents.
    #[allow(clippy::too_many_arguments)] // one case: name, expectation and request
    fn case(
        &mut self,
        name: &str,
        op: &str,
        status: u16,
        upstream: bool,
        method: &str,
        path: &str,
        body: Option<(&str, String)>,
    ) -> Answer {
        let answer = send(method, &self.node.url(path), body, &[]);
        assert_eq!(
            answer.status,
            status,
            "case {name} ({method} {path}): {}",
            answer.text()
        );
        check(
            &self.ours,
            "openapi.yaml",
            name,
            op,
            answer.status,
            &answer.ctype,
            &answer.body,
        );
        if upstream {
            let up = &self.upstream;
            check(
                up,
                "upstream api.yaml",
                name,
                op,
                answer.status,
                &answer.ctype,
                &answer.body,
            );
        }
        self.covered.push((op.to_owned(), upstream));
        answer
    }

    #[allow(clippy::too_many_arguments)]
    fn json(
        &mut self,
        name: &str,
        op: &str,
        status: u16,
        upstream: bool,
        method: &str,
        path: &str,
        body: &Value,
    ) -> Answer {
        let body = Some(("application/json", body.to_string()));
        self.case(name, op, status, upstream, method, path, body)
    }
}

#[test]
fn a_live_node_answers_every_operation_as_documented() {
    let (a, b) = pair(Node::start);
    let ours = our_openapi();
    let upstream = upstream_with_exceptions();
    let mut r = Rest {
        node: &b,
        ours: ours.clone(),
        upstream,
        covered: Vec::new(),
    };
    let (a_ip, b_ip) = (a.ip(), b.ip());
    let a_key = a.info()["nodePubkey"].as_str().unwrap().to_owned();
    let msg = |dst: Value, topic: &[u8], payload: &[u8]| json!({"dst": dst, "topic": b64(topic), "payload": b64(payload)});
    let topic: &[u8] = b"live/topic+"; // base64 "bGl2ZS90b3BpYys=": `/`, `+` and `=`
    let t = enc(&b64(topic));

    // ----- admin: info, peers (B's static peer A is alive), routes -----
    let info = r.case("info", "getInfo", 200, true, "GET", "/api/v1/admin", None);
    assert_eq!(info.json()["nodeIp"], b_ip.as_str());
    let peers = r.case(
        "peers",
        "getPeers",
        200,
        true,
        "GET",
        "/api/v1/admin/peers",
        None,
    );
    let peers = peers.json();
    assert_eq!(peers[0]["connectionState"], "alive", "{peers}");
    let peers_path = "/api/v1/admin/peers";
    let closed = "tcp://127.0.0.1:1"; // nothing listens there: dials fail at once
    let add = json!({ "endpoint": closed });
    r.json("add_peer", "addPeer", 204, true, "POST", peers_path, &add);
    r.json(
        "add_peer_exists",
        "addPeer",
        409,
        true,
        "POST",
        peers_path,
        &add,
    );
    let bad = json!({"endpoint": "1.2.3.4:9651"});
    r.json(
        "add_peer_bad",
        "addPeer",
        400,
        true,
        "POST",
        peers_path,
        &bad,
    );
    let text = Some(("text/plain", add.to_string()));
    r.case(
        "add_peer_not_json",
        "addPeer",
        415,
        false,
        "POST",
        peers_path,
        text,
    );
    let broken = Some(("application/json", r#"{"endpoint":"#.to_owned()));
    r.case(
        "add_peer_bad_json",
        "addPeer",
        400,
        false,
        "POST",
        peers_path,
        broken,
    );
    let shape = json!({"endpoint": 5});
    r.json(
        "add_peer_wrong_shape",
        "addPeer",
        422,
        false,
        "POST",
        peers_path,
        &shape,
    );
    let one = format!("{peers_path}/{}", enc(closed));
    r.case("delete_peer", "deletePeer", 204, true, "DELETE", &one, None);
    r.case(
        "delete_peer_unknown",
        "deletePeer",
        404,
        true,
        "DELETE",
        &one,
        None,
    );
    let nonsense = format!("{peers_path}/nonsense");
    r.case(
        "delete_peer_bad",
        "deletePeer",
        400,
        true,
        "DELETE",
        &nonsense,
        None,
    );
    let selected = r.case(
        "selected_routes",
        "getSelectedRoutes",
        200,
        true,
        "GET",
        "/api/v1/admin/routes/selected",
        None,
    );
    assert!(selected.text().contains(&a.subnet()), "{}", selected.text());
    for (name, op, path) in [
        ("fallback_routes", "getFallbackRoutes", "routes/fallback"),
        ("queried_subnets", "getQueriedSubnets", "routes/queried"),
        ("proxies", "getProxies", "proxy"),
        ("packet_stats", "getPacketStatistics", "stats/packets"),
    ] {
        r.case(
            name,
            op,
            200,
            true,
            "GET",
            &format!("/api/v1/admin/{path}"),
            None,
        );
    }

    // ----- proxy: none is known, so "any proxy" finds none; a named remote is
    // taken as it is (nothing listens on [::1]:1, and nothing is sent there) -----
    let proxy = "/api/v1/admin/proxy";
    r.json(
        "connect_proxy_auto",
        "connectProxy",
        404,
        true,
        "POST",
        proxy,
        &json!({}),
    );
    let remote = json!({"remote": "[::1]:1"});
    let chosen = r.json(
        "connect_proxy_remote",
        "connectProxy",
        200,
        true,
        "POST",
        proxy,
        &remote,
    );
    assert_eq!(chosen.json(), json!("[::1]:1"));
    r.case(
        "disconnect_proxy",
        "disconnectProxy",
        204,
        true,
        "DELETE",
        proxy,
        None,
    );
    let probe = "/api/v1/admin/proxy/probe";
    r.case(
        "start_probe",
        "startProxyProbe",
        204,
        true,
        "GET",
        probe,
        None,
    );
    r.case(
        "stop_probe",
        "stopProxyProbe",
        204,
        true,
        "DELETE",
        probe,
        None,
    );

    // ----- messages: A sends B one on `topic`; B peeks at it, then takes it -----
    let sent = a.post_json(
        "/api/v1/messages",
        &msg(json!({"ip": b_ip}), topic, b"hello B"),
    );
    assert_eq!(sent.status, 201, "{}", sent.text());
    let peek = format!("/api/v1/messages?peek=true&timeout=20&topic={t}");
    let peeked = r.case(
        "pop_peek_topic",
        "popMessage",
        200,
        true,
        "GET",
        &peek,
        None,
    );
    assert_eq!(peeked.json()["payload"], b64(b"hello B"));
    let popped = r.case(
        "pop",
        "popMessage",
        200,
        true,
        "GET",
        "/api/v1/messages?timeout=5",
        None,
    );
    let popped = popped.json();
    assert_eq!(popped["srcIp"], a_ip.as_str());
    assert_eq!(popped["topic"], b64(topic));
    let empty = "/api/v1/messages?timeout=0";
    r.case("pop_empty", "popMessage", 204, true, "GET", empty, None);
    let bad_topic = "/api/v1/messages?topic=abc";
    r.case(
        "pop_bad_topic",
        "popMessage",
        400,
        false,
        "GET",
        bad_topic,
        None,
    );

    let push = "/api/v1/messages";
    let to_a = msg(json!({"ip": a_ip}), b"news", b"hi A");
    let pushed = r.json("push", "pushMessage", 201, true, "POST", push, &to_a);
    let pushed_id = pushed.json()["id"].as_str().unwrap().to_owned();
    let to_key = msg(json!({"pk": a_key}), b"news", b"hi A by key");
    r.json(
        "push_to_key",
        "pushMessage",
        201,
        true,
        "POST",
        push,
        &to_key,
    );
    // A answers the message B waits on (found by its topic).
    let answerer = {
        let (api, b_ip) = (a.api.clone(), b_ip.clone());
        std::thread::spawn(move || {
            let url = format!(
                "http://{api}/api/v1/messages?timeout=30&topic={}",
                enc(&b64(b"ask"))
            );
            let question = send("GET", &url, None, &[]);
            assert_eq!(
                question.status,
                200,
                "A got no question: {}",
                question.text()
            );
            let id = question.json()["id"].as_str().unwrap().to_owned();
            let reply = json!({"dst": {"ip": b_ip}, "payload": b64(b"answer")});
            let url = format!("http://{api}/api/v1/messages/reply/{id}");
            let sent = send(
                "POST",
                &url,
                Some(("application/json", reply.to_string())),
                &[],
            );
            assert_eq!(sent.status, 204, "{}", sent.text());
        })
    };
    let ask = msg(json!({"ip": a_ip}), b"ask", b"question");
    let wait = "/api/v1/messages?reply_timeout=30";
    let reply = r.json(
        "push_with_reply",
        "pushMessage",
        200,
        true,
        "POST",
        wait,
        &ask,
    );
    assert_eq!(reply.json()["payload"], b64(b"answer"));
    answerer.join().unwrap();
    let no_wait = "/api/v1/messages?reply_timeout=0";
    r.json(
        "push_reply_timeout",
        "pushMessage",
        408,
        true,
        "POST",
        no_wait,
        &to_a,
    );
    let long = msg(json!({"ip": a_ip}), &[b'x'; 256], b"");
    r.json(
        "push_long_topic",
        "pushMessage",
        400,
        true,
        "POST",
        push,
        &long,
    );
    let v4 = msg(json!({"ip": "10.0.0.1"}), b"", b"x");
    let refused = r.json("push_ipv4", "pushMessage", 400, false, "POST", push, &v4);
    assert!(
        refused.ctype.starts_with("application/json"),
        "{}",
        refused.ctype
    );
    // Over the 10 MiB body limit.
    // The body is exactly one byte past the limit (JSON padded with trailing
    // spaces): the node must read all of it before it can refuse, so it never
    // closes with bytes unread, which would reset the connection under the
    // client and lose the answer.
    let mut huge = msg(json!({"ip": a_ip}), b"", &vec![0; 7 << 20]).to_string();
    let limit = 10usize << 20;
    assert!(huge.len() <= limit);
    huge.extend(std::iter::repeat_n(' ', limit + 1 - huge.len()));
    r.case(
        "push_body_too_large",
        "pushMessage",
        413,
        false,
        "POST",
        push,
        Some(("application/json", huge)),
    );

    let reply_path = format!("/api/v1/messages/reply/{}", popped["id"].as_str().unwrap());
    let back = msg(json!({"ip": a_ip}), b"", b"thanks");
    r.json(
        "reply",
        "pushMessageReply",
        204,
        true,
        "POST",
        &reply_path,
        &back,
    );
    // A reply that cannot go anywhere yet (no route to 5ff::/64) stays in sending;
    // a second reply to the same id meanwhile is a conflict.
    let stuck = msg(json!({"ip": "5ff::1"}), b"", b"no route yet");
    let pending = "/api/v1/messages/reply/00000000000000aa";
    r.json(
        "reply_pending",
        "pushMessageReply",
        204,
        true,
        "POST",
        pending,
        &stuck,
    );
    r.json(
        "reply_in_progress",
        "pushMessageReply",
        409,
        false,
        "POST",
        pending,
        &stuck,
    );
    let bad_reply = "/api/v1/messages/reply/0123";
    r.json(
        "reply_bad_id",
        "pushMessageReply",
        400,
        false,
        "POST",
        bad_reply,
        &back,
    );
    r.json(
        "reply_ipv4",
        "pushMessageReply",
        400,
        false,
        "POST",
        &reply_path,
        &v4,
    );

    let status = format!("/api/v1/messages/status/{pushed_id}");
    let info = r.case("status", "getMessageInfo", 200, true, "GET", &status, None);
    assert_eq!(info.json()["dst"], a_ip.as_str());
    let unknown = "/api/v1/messages/status/0000000000000000";
    r.case(
        "status_unknown",
        "getMessageInfo",
        404,
        true,
        "GET",
        unknown,
        None,
    );
    let bad_id = "/api/v1/messages/status/xyz";
    r.case(
        "status_bad_id",
        "getMessageInfo",
        400,
        false,
        "GET",
        bad_id,
        None,
    );

    // ----- topic configuration -----
    let default = "/api/v1/messages/topics/default";
    r.case(
        "default_action",
        "getDefaultTopicAction",
        200,
        true,
        "GET",
        default,
        None,
    );
    let accept = json!({"accept": true});
    r.json(
        "set_default_action",
        "setDefaultTopicAction",
        204,
        true,
        "PUT",
        default,
        &accept,
    );
    let topics = "/api/v1/messages/topics";
    let bytes: Vec<u8> = topic.to_vec();
    r.json(
        "add_topic",
        "addTopic",
        201,
        true,
        "POST",
        topics,
        &json!(bytes),
    );
    let listed = r.case("topics", "getTopics", 200, true, "GET", topics, None);
    assert!(listed
        .json()
        .as_array()
        .unwrap()
        .contains(&json!(b64(topic))));
    let string = json!(b64(topic));
    r.json(
        "add_topic_string",
        "addTopic",
        422,
        false,
        "POST",
        topics,
        &string,
    );
    let sources = format!("{topics}/{t}/sources");
    let net = json!({"subnet": "400::/7"});
    r.json(
        "add_topic_source",
        "addTopicSource",
        201,
        true,
        "POST",
        &sources,
        &net,
    );
    let ip = json!({"subnet": a_ip});
    r.json(
        "add_topic_source_ip",
        "addTopicSource",
        201,
        true,
        "POST",
        &sources,
        &ip,
    );
    let bad_net = json!({"subnet": "400::/200"});
    r.json(
        "add_topic_source_bad",
        "addTopicSource",
        400,
        true,
        "POST",
        &sources,
        &bad_net,
    );
    let listed = r.case(
        "topic_sources",
        "getTopicSources",
        200,
        true,
        "GET",
        &sources,
        None,
    );
    assert!(listed.text().contains("400::/7"), "{}", listed.text());
    let other = format!("{topics}/{}/sources", enc(&b64(b"unknown")));
    r.case(
        "topic_sources_unknown",
        "getTopicSources",
        404,
        true,
        "GET",
        &other,
        None,
    );
    let bad_sources = format!("{topics}/a/sources");
    r.case(
        "topic_sources_bad",
        "getTopicSources",
        400,
        true,
        "GET",
        &bad_sources,
        None,
    );
    let one_source = format!("{sources}/{}", enc("400::/7"));
    r.case(
        "remove_topic_source",
        "removeTopicSource",
        204,
        true,
        "DELETE",
        &one_source,
        None,
    );
    let bad_source = format!("{sources}/not-a-subnet");
    r.case(
        "remove_topic_source_bad",
        "removeTopicSource",
        400,
        true,
        "DELETE",
        &bad_source,
        None,
    );
    let forward = format!("{topics}/{t}/forward");
    r.case(
        "forward_unset",
        "getTopicForwardSocket",
        200,
        true,
        "GET",
        &forward,
        None,
    );
    let socket = json!({"socketPath": "/tmp/mycelium-live-test.sock"});
    r.json(
        "set_forward",
        "setTopicForwardSocket",
        204,
        true,
        "PUT",
        &forward,
        &socket,
    );
    let got = r.case(
        "forward",
        "getTopicForwardSocket",
        200,
        true,
        "GET",
        &forward,
        None,
    );
    assert_eq!(got.json(), json!("/tmp/mycelium-live-test.sock"));
    let snake = json!({"socket_path": "/x.sock"});
    r.json(
        "set_forward_snake_case",
        "setTopicForwardSocket",
        422,
        false,
        "PUT",
        &forward,
        &snake,
    );
    r.case(
        "remove_forward",
        "removeTopicForwardSocket",
        204,
        true,
        "DELETE",
        &forward,
        None,
    );
    let one_topic = format!("{topics}/{t}");
    r.case(
        "remove_topic",
        "removeTopic",
        204,
        true,
        "DELETE",
        &one_topic,
        None,
    );
    let bad_one = format!("{topics}/a");
    r.case(
        "remove_topic_bad",
        "removeTopic",
        400,
        true,
        "DELETE",
        &bad_one,
        None,
    );

    // ----- keys and the document -----
    let some_ip = a.subnet().replace("::/64", "::1234");
    let key = r.case(
        "pubkey",
        "getPublicKeyFromIp",
        200,
        true,
        "GET",
        &format!("/api/v1/pubkey/{some_ip}"),
        None,
    );
    assert_eq!(key.json()["publicKey"], a_key.as_str());
    let own = format!("/api/v1/pubkey/{b_ip}");
    r.case(
        "pubkey_own",
        "getPublicKeyFromIp",
        200,
        true,
        "GET",
        &own,
        None,
    );
    let unknown = "/api/v1/pubkey/5ff::1";
    r.case(
        "pubkey_unknown",
        "getPublicKeyFromIp",
        404,
        true,
        "GET",
        unknown,
        None,
    );
    let v4 = "/api/v1/pubkey/10.0.0.1";
    r.case(
        "pubkey_ipv4",
        "getPublicKeyFromIp",
        404,
        false,
        "GET",
        v4,
        None,
    );
    let bad = "/api/v1/pubkey/nonsense";
    r.case(
        "pubkey_bad",
        "getPublicKeyFromIp",
        400,
        false,
        "GET",
        bad,
        None,
    );
    let doc = r.case(
        "openapi",
        "getOpenApi",
        200,
        false,
        "GET",
        "/api/v1/openapi.json",
        None,
    );
    assert_eq!(doc.json(), ours);

    // Every operation of ours, and every one of upstream's with an upstream check.
    let covered: BTreeSet<&str> = r.covered.iter().map(|(op, _)| op.as_str()).collect();
    for id in operation_ids(&ours) {
        assert!(covered.contains(id.as_str()), "no live case for {id}");
    }
    {
        let text = upstream_file("api.yaml");
        let up: Value = serde_yaml::from_str(&text).unwrap();
        let up_ids = operation_ids(&up);
        assert_eq!(up_ids.len(), 29);
        for id in &up_ids {
            let checked = r.covered.iter().any(|(op, u)| op == id && *u);
            assert!(checked, "no upstream-checked live case for {id}");
        }
    }
}

#[test]
fn a_live_node_answers_every_rpc_method_as_documented() {
    let (a, b) = pair(Node::start);
    let doc = our_openrpc();
    let upstream: Value = serde_json::from_str(&upstream_file("openrpc.json")).unwrap();
    let (a_ip, b_ip) = (a.ip(), b.ip());
    let topic = b64(b"rpc/topic");
    let message = json!({"dst": {"ip": a_ip}, "topic": b64(b"news"), "payload": b64(b"hi")});

    // A message for B to pop, and one for B to reply to.
    let sent = a.post_json(
        "/api/v1/messages",
        &json!({"dst": {"ip": b_ip}, "topic": topic, "payload": b64(b"for rpc")}),
    );
    assert_eq!(sent.status, 201, "{}", sent.text());

    let mut seen = BTreeSet::new();
    let mut results: Vec<(String, Value)> = Vec::new();
    let mut call = |method: &str, params: Value| -> Value {
        let answer = b.rpc(method, params.clone());
        assert_eq!(answer["jsonrpc"], "2.0");
        assert_eq!(answer["id"], 1);
        seen.insert(method.to_owned());
        if let Some(error) = answer.get("error") {
            let code = error["code"].as_i64().unwrap();
            let documented = documented_rpc_errors(&doc, method);
            assert!(
                documented.contains(&code),
                "{method} {params}: error {error} is not among the documented {documented:?}"
            );
            return answer;
        }
        let result = answer["result"].clone();
        results.push((method.to_owned(), result.clone()));
        answer
    };
    let pk = call("getPublicKeyFromIp", json!([a_ip]));
    assert_eq!(pk["result"], a.info()["nodePubkey"]);
    call("getInfo", json!([]));
    let peers = call("getPeers", json!([]));
    assert_eq!(peers["result"][0]["connectionState"], "alive");
    call("addPeer", json!(["tcp://127.0.0.1:2"]));
    call("deletePeer", json!(["tcp://127.0.0.1:2"]));
    let routes = call("getSelectedRoutes", json!([]));
    assert!(routes["result"].to_string().contains(&a.subnet()));
    for m in [
        "getFallbackRoutes",
        "getQueriedSubnets",
        "getProxies",
        "disconnectProxy",
        "startProxyProbe",
        "stopProxyProbe",
        "getPacketStatistics",
        "rpc.discover",
        "getDefaultTopicAction",
    ] {
        call(m, json!([]));
    }
    // No proxy is known: the documented error.
    let proxy = call("connectProxy", json!([null]));
    assert_eq!(proxy["error"]["code"], -32032, "{proxy}");
    let popped = call("popMessage", json!([false, 20, topic]));
    assert_eq!(popped["result"]["payload"], b64(b"for rpc"), "{popped}");
    let id = popped["result"]["id"].as_str().unwrap().to_owned();
    call("pushMessageReply", json!([id, message]));
    let stuck = json!({"dst": {"ip": "5ff::1"}, "payload": b64(b"no route yet")});
    call("pushMessageReply", json!(["00000000000000bb", stuck]));
    let again = call("pushMessageReply", json!(["00000000000000bb", stuck]));
    assert_eq!(again["error"]["code"], -32043, "{again}");
    let pushed = call("pushMessage", json!([message]));
    let pushed_id = pushed["result"]["id"].as_str().unwrap().to_owned();
    call("getMessageInfo", json!([pushed_id]));
    let refused = call(
        "pushMessage",
        json!([{"dst": {"ip": "10.0.0.1"}, "payload": ""}]),
    );
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    call("setDefaultTopicAction", json!([true]));
    call("addTopic", json!([topic]));
    call("getTopics", json!([]));
    call("addTopicSource", json!([topic, "400::/7"]));
    let sources = call("getTopicSources", json!([topic]));
    assert_eq!(sources["result"], json!(["400::/7"]));
    call("removeTopicSource", json!([topic, "400::/7"]));
    call(
        "setTopicForwardSocket",
        json!([topic, "/tmp/mycelium-rpc-test.sock"]),
    );
    let forward = call("getTopicForwardSocket", json!([topic]));
    assert_eq!(forward["result"], "/tmp/mycelium-rpc-test.sock");
    call("removeTopicForwardSocket", json!([topic]));
    call("removeTopic", json!([topic]));

    for (method, _) in METHODS {
        assert!(seen.contains(*method), "{method} was not called");
    }
    for (method, result) in &results {
        if method == "rpc.discover" {
            assert_eq!(result, &doc);
            continue;
        }
        let errors = schema_errors(&doc, result_schema(&doc, method), result);
        assert!(errors.is_empty(), "{method}: {result} {errors:?}");
        let excepted = UPSTREAM_RPC_EXCEPTIONS.iter().any(|(m, _)| m == method);
        if !excepted {
            let up = &upstream;
            let errors = schema_errors(up, result_schema(up, method), result);
            assert!(
                errors.is_empty(),
                "upstream doc, {method}: {result} {errors:?}"
            );
        }
    }
}

/// The web view's headers and the DNS-rebinding guard, on a live node's servers.
#[test]
fn a_live_node_guards_its_page_and_its_host_names() {
    let a = Node::start(&[]);
    let page = a.get("/");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-security-policy")
        .is_some_and(|v| v.starts_with("default-src 'none'")));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(page.header("cache-control"), Some("no-cache"));

    let evil = [("host", "rebound.example:8989")];
    let refused = send("GET", &a.url("/api/v1/admin"), None, &evil);
    assert_eq!(refused.status, 421, "{}", refused.text());
    assert!(refused.json()["error"].is_string());
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "getInfo"}).to_string();
    let rpc_url = format!("http://{}/", a.rpc);
    let refused = send(
        "POST",
        &rpc_url,
        Some(("application/json", call.clone())),
        &evil,
    );
    assert_eq!(refused.status, 421, "{}", refused.text());
    // A page elsewhere opening the JSON-RPC WebSocket (or posting) names its origin.
    let foreign = [("origin", "https://elsewhere.example")];
    let refused = send(
        "POST",
        &rpc_url,
        Some(("application/json", call.clone())),
        &foreign,
    );
    assert_eq!(refused.status, 421, "{}", refused.text());
    let local = [("host", "localhost")];
    let fine = send("POST", &rpc_url, Some(("application/json", call)), &local);
    assert_eq!(fine.status, 200, "{}", fine.text());
}
