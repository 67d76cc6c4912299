//! Drives every REST operation against a real server over `FakeBackend` and checks
//! each answer (status, content type, body) against our `openapi.yaml` and, where
//! upstream documents the behaviour, against upstream's `api.yaml` with the
//! our documented differences applied as explicit, listed exceptions.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use common::{
    check, client, enc, http, our_openapi, upstream_file, upstream_with_exceptions, Server,
};
use mycelium_api::http::OPERATIONS;
use mycelium_api::model::{encode_base64, MessageReceiveInfo};
use mycelium_api::{Backend, PushOutcome, FAKE_INBOX_LEN, FAKE_MAX_PAYLOAD};
use mycelium_proto::wire::message::MessageId;
use reqwest::header::CONTENT_TYPE;
use reqwest::Method;
use serde_json::{json, Value};

/// One request to make: name, operationId, expected status, and whether upstream's
/// code behaves this way too (then upstream's document is checked as well).
struct Case {
    name: &'static str,
    op: &'static str,
    status: u16,
    upstream: bool,
}

const fn case(name: &'static str, op: &'static str, status: u16, upstream: bool) -> Case {
    Case {
        name,
        op,
        status,
        upstream,
    }
}

const CASES: &[Case] = &[
    case("info", "getInfo", 200, true),
    case("peers", "getPeers", 200, true),
    case("add_peer", "addPeer", 204, true),
    case("add_peer_vsock", "addPeer", 204, true),
    case("add_peer_bad", "addPeer", 400, true),
    case("add_peer_exists", "addPeer", 409, true),
    case("add_peer_not_json", "addPeer", 415, false),
    case("add_peer_bad_json", "addPeer", 400, false),
    case("add_peer_wrong_shape", "addPeer", 422, false),
    case("delete_peer", "deletePeer", 204, true),
    case("delete_peer_bad", "deletePeer", 400, true),
    case("delete_peer_unknown", "deletePeer", 404, true),
    case("selected_routes", "getSelectedRoutes", 200, true),
    case("fallback_routes", "getFallbackRoutes", 200, true),
    case("queried_subnets", "getQueriedSubnets", 200, true),
    case("proxies", "getProxies", 200, true),
    case("connect_proxy_auto", "connectProxy", 200, true),
    case("connect_proxy_null", "connectProxy", 200, true),
    case("connect_proxy_remote", "connectProxy", 200, true),
    case("disconnect_proxy", "disconnectProxy", 204, true),
    case("start_probe", "startProxyProbe", 204, true),
    case("stop_probe", "stopProxyProbe", 204, true),
    case("packet_stats", "getPacketStatistics", 200, true),
    case("pop", "popMessage", 200, true),
    case("pop_peek_topic", "popMessage", 200, true),
    case("pop_empty", "popMessage", 204, true),
    case("pop_bad_topic", "popMessage", 400, false),
    case("push", "pushMessage", 201, true),
    case("push_to_key", "pushMessage", 201, true),
    case("push_with_reply", "pushMessage", 200, true),
    case("push_reply_timeout", "pushMessage", 408, true),
    case("push_long_topic", "pushMessage", 400, true),
    case("push_too_large", "pushMessage", 413, false),
    case("push_queue_full", "pushMessage", 503, false),
    case("push_ipv4", "pushMessage", 400, false),
    case("reply", "pushMessageReply", 204, true),
    case("reply_bad_id", "pushMessageReply", 400, false),
    case("reply_ipv4", "pushMessageReply", 400, false),
    case("status", "getMessageInfo", 200, true),
    case("status_sending", "getMessageInfo", 200, true),
    case("status_unknown", "getMessageInfo", 404, true),
    case("status_bad_id", "getMessageInfo", 400, false),
    case("default_action", "getDefaultTopicAction", 200, true),
    case("set_default_action", "setDefaultTopicAction", 204, true),
    case("topics", "getTopics", 200, true),
    case("add_topic", "addTopic", 201, true),
    case("add_topic_string", "addTopic", 422, false),
    case("remove_topic", "removeTopic", 204, true),
    case("remove_topic_bad", "removeTopic", 400, true),
    case("topic_sources", "getTopicSources", 200, true),
    case("topic_sources_unknown", "getTopicSources", 404, true),
    case("topic_sources_bad", "getTopicSources", 400, true),
    case("add_topic_source", "addTopicSource", 201, true),
    case("add_topic_source_ip", "addTopicSource", 201, true),
    case("add_topic_source_bad", "addTopicSource", 400, true),
    case("remove_topic_source", "removeTopicSource", 204, true),
    case("remove_topic_source_bad", "removeTopicSource", 400, true),
    case("forward", "getTopicForwardSocket", 200, true),
    case("forward_unset", "getTopicForwardSocket", 200, true),
    case("set_forward", "setTopicForwardSocket", 204, true),
    case(
        "set_forward_snake_case",
        "setTopicForwardSocket",
        422,
        false,
    ),
    case("remove_forward", "removeTopicForwardSocket", 204, true),
    case("pubkey", "getPublicKeyFromIp", 200, true),
    case("pubkey_own", "getPublicKeyFromIp", 200, true),
    case("pubkey_unknown", "getPublicKeyFromIp", 404, true),
    case("pubkey_ipv4", "getPublicKeyFromIp", 404, false),
    case("pubkey_bad", "getPublicKeyFromIp", 400, false),
    case("openapi", "getOpenApi", 200, false),
];

const TOPIC: &[u8] = b"my/topic+"; // base64 "bXkvdG9waWMr": exercises `/` and `+`

fn topic_b64() -> String {
    encode_base64(TOPIC)
}

fn inbound(srv: &Server, topic: &[u8]) -> MessageReceiveInfo {
    let key = srv.fake.remote_key();
    MessageReceiveInfo {
        id: MessageId([7; 8]),
        src_ip: IpAddr::V6(key.address()),
        src_pk: key,
        dst_ip: IpAddr::V6(srv.fake.address()),
        dst_pk: srv.fake.public_key(),
        topic: topic.to_vec(),
        payload: b"hello".to_vec(),
    }
}

/// Sets up the fake for `name` and sends its request.
async fn send(name: &str, srv: &Server) -> reqwest::Response {
    let c = client();
    let b = &srv.base;
    let fake = &srv.fake;
    let own = srv.fake.address().to_string();
    let msg = |dst: Value| json!({"dst": dst, "topic": "dGVzdA==", "payload": "aGVsbG8="});
    let t = enc(&topic_b64());
    let req = match name {
        "info" => c.get(format!("{b}/api/v1/admin")),
        "peers" => c.get(format!("{b}/api/v1/admin/peers")),
        "add_peer" => c
            .post(format!("{b}/api/v1/admin/peers"))
            .json(&json!({"endpoint": "tcp://[2001:db8::9]:9651"})),
        "add_peer_vsock" => c
            .post(format!("{b}/api/v1/admin/peers"))
            .json(&json!({"endpoint": "vsock://3:9651"})),
        "add_peer_bad" => c
            .post(format!("{b}/api/v1/admin/peers"))
            .json(&json!({"endpoint": "1.2.3.4:9651"})),
        "add_peer_exists" => c
            .post(format!("{b}/api/v1/admin/peers"))
            .json(&json!({"endpoint": "tcp://192.0.2.1:9651"})),
        "add_peer_not_json" => c
            .post(format!("{b}/api/v1/admin/peers"))
            .header(CONTENT_TYPE, "text/plain")
            .body(r#"{"endpoint":"tcp://1.2.3.4:9651"}"#),
        "add_peer_bad_json" => c
            .post(format!("{b}/api/v1/admin/peers"))
            .header(CONTENT_TYPE, "application/json")
            .body(r#"{"endpoint":"#),
        "add_peer_wrong_shape" => c
            .post(format!("{b}/api/v1/admin/peers"))
            .json(&json!({"endpoint": 5})),
        "delete_peer" => c.delete(format!(
            "{b}/api/v1/admin/peers/{}",
            enc("tcp://192.0.2.1:9651")
        )),
        "delete_peer_bad" => c.delete(format!("{b}/api/v1/admin/peers/nonsense")),
        "delete_peer_unknown" => c.delete(format!(
            "{b}/api/v1/admin/peers/{}",
            enc("quic://192.0.2.99:1")
        )),
        "selected_routes" => c.get(format!("{b}/api/v1/admin/routes/selected")),
        "fallback_routes" => c.get(format!("{b}/api/v1/admin/routes/fallback")),
        "queried_subnets" => c.get(format!("{b}/api/v1/admin/routes/queried")),
        "proxies" => c.get(format!("{b}/api/v1/admin/proxy")),
        "connect_proxy_auto" => c.post(format!("{b}/api/v1/admin/proxy")).json(&json!({})),
        "connect_proxy_null" => c
            .post(format!("{b}/api/v1/admin/proxy"))
            .json(&json!({"remote": null})),
        "connect_proxy_remote" => c
            .post(format!("{b}/api/v1/admin/proxy"))
            .json(&json!({"remote": "[407::1]:1080"})),
        "disconnect_proxy" => c.delete(format!("{b}/api/v1/admin/proxy")),
        "start_probe" => c.get(format!("{b}/api/v1/admin/proxy/probe")),
        "stop_probe" => c.delete(format!("{b}/api/v1/admin/proxy/probe")),
        "packet_stats" => c.get(format!("{b}/api/v1/admin/stats/packets")),
        "pop" => {
            assert!(fake.deliver(inbound(srv, b"")));
            c.get(format!("{b}/api/v1/messages"))
        }
        "pop_peek_topic" => {
            assert!(fake.deliver(inbound(srv, b"other")));
            assert!(fake.deliver(inbound(srv, TOPIC)));
            c.get(format!(
                "{b}/api/v1/messages?peek=true&timeout=1&topic={}",
                enc(&topic_b64())
            ))
        }
        "pop_empty" => c.get(format!("{b}/api/v1/messages?timeout=0")),
        "pop_bad_topic" => c.get(format!("{b}/api/v1/messages?topic=abc")),
        "push" => c
            .post(format!("{b}/api/v1/messages"))
            .json(&msg(json!({"ip": "4ca:ba1e:3619:318e::1"}))),
        "push_to_key" => c
            .post(format!("{b}/api/v1/messages"))
            .json(&msg(json!({"pk": srv.fake.remote_key().to_string()}))),
        "push_with_reply" => {
            let fake = fake.clone();
            tokio::spawn(async move {
                let m = fake
                    .pop_message(false, Duration::from_secs(5), None)
                    .await
                    .unwrap();
                fake.reply_message(m.id, m.src_ip, b"pong".to_vec())
                    .await
                    .unwrap();
            });
            c.post(format!("{b}/api/v1/messages?reply_timeout=5"))
                .json(&msg(json!({"ip": own})))
        }
        "push_reply_timeout" => c
            .post(format!("{b}/api/v1/messages?reply_timeout=0"))
            .json(&msg(json!({"ip": own}))),
        "push_long_topic" => c.post(format!("{b}/api/v1/messages")).json(&json!({
            "dst": {"ip": own}, "topic": encode_base64(&[b'x'; 256]), "payload": ""
        })),
        "push_too_large" => c.post(format!("{b}/api/v1/messages")).json(&json!({
            "dst": {"ip": own}, "payload": encode_base64(&vec![0; FAKE_MAX_PAYLOAD + 1])
        })),
        "push_queue_full" => {
            for _ in 0..FAKE_INBOX_LEN {
                assert!(fake.deliver(inbound(srv, b"")));
            }
            c.post(format!("{b}/api/v1/messages"))
                .json(&msg(json!({"ip": own})))
        }
        "push_ipv4" => c
            .post(format!("{b}/api/v1/messages"))
            .json(&msg(json!({"ip": "10.0.0.1"}))),
        "reply_ipv4" => c
            .post(format!("{b}/api/v1/messages/reply/0123456789abcdef"))
            .json(&msg(json!({"ip": "10.0.0.1"}))),
        "reply" => c
            .post(format!("{b}/api/v1/messages/reply/0123456789abcdef"))
            .json(&msg(json!({"ip": "4ca:ba1e:3619:318e::1"}))),
        "reply_bad_id" => c
            .post(format!("{b}/api/v1/messages/reply/0123"))
            .json(&msg(json!({"ip": "4ca:ba1e:3619:318e::1"}))),
        "status" | "status_sending" => {
            let dst = if name == "status" {
                IpAddr::V6(fake.address())
            } else {
                "4ca::1".parse().unwrap()
            };
            let PushOutcome::Sent(id) = fake
                .push_message(dst, vec![], vec![1; 3000], None)
                .await
                .unwrap()
            else {
                panic!("not sent")
            };
            c.get(format!("{b}/api/v1/messages/status/{id}"))
        }
        "status_unknown" => c.get(format!("{b}/api/v1/messages/status/0000000000000000")),
        "status_bad_id" => c.get(format!("{b}/api/v1/messages/status/xyz")),
        "default_action" => c.get(format!("{b}/api/v1/messages/topics/default")),
        "set_default_action" => c
            .put(format!("{b}/api/v1/messages/topics/default"))
            .json(&json!({"accept": false})),
        "topics" => {
            fake.add_topic(TOPIC.to_vec()).await.unwrap();
            c.get(format!("{b}/api/v1/messages/topics"))
        }
        "add_topic" => c
            .post(format!("{b}/api/v1/messages/topics"))
            .json(&json!([104, 105])),
        "add_topic_string" => c
            .post(format!("{b}/api/v1/messages/topics"))
            .json(&json!("aGk=")),
        "remove_topic" => c.delete(format!("{b}/api/v1/messages/topics/{t}")),
        "remove_topic_bad" => c.delete(format!("{b}/api/v1/messages/topics/a")),
        "topic_sources" => {
            fake.add_topic_source(TOPIC.to_vec(), "400::/7".parse().unwrap())
                .await
                .unwrap();
            c.get(format!("{b}/api/v1/messages/topics/{t}/sources"))
        }
        "topic_sources_unknown" => c.get(format!("{b}/api/v1/messages/topics/{t}/sources")),
        "topic_sources_bad" => c.get(format!("{b}/api/v1/messages/topics/a/sources")),
        "add_topic_source" => c
            .post(format!("{b}/api/v1/messages/topics/{t}/sources"))
            .json(&json!({"subnet": "400::/7"})),
        "add_topic_source_ip" => c
            .post(format!("{b}/api/v1/messages/topics/{t}/sources"))
            .json(&json!({"subnet": "10.0.0.1"})),
        "add_topic_source_bad" => c
            .post(format!("{b}/api/v1/messages/topics/{t}/sources"))
            .json(&json!({"subnet": "400::/200"})),
        "remove_topic_source" => c.delete(format!(
            "{b}/api/v1/messages/topics/{t}/sources/{}",
            enc("400::/7")
        )),
        "remove_topic_source_bad" => c.delete(format!(
            "{b}/api/v1/messages/topics/{t}/sources/not-a-subnet"
        )),
        "forward" => {
            fake.add_topic(TOPIC.to_vec()).await.unwrap();
            fake.set_topic_forward_socket(TOPIC.to_vec(), "/run/app.sock".into())
                .await;
            c.get(format!("{b}/api/v1/messages/topics/{t}/forward"))
        }
        "forward_unset" => c.get(format!("{b}/api/v1/messages/topics/{t}/forward")),
        "set_forward" => c
            .put(format!("{b}/api/v1/messages/topics/{t}/forward"))
            .json(&json!({"socketPath": "/run/app.sock"})),
        "set_forward_snake_case" => c
            .put(format!("{b}/api/v1/messages/topics/{t}/forward"))
            .json(&json!({"socket_path": "/run/app.sock"})),
        "remove_forward" => c.delete(format!("{b}/api/v1/messages/topics/{t}/forward")),
        "pubkey" => {
            let ip = srv.fake.remote_key().subnet().address();
            c.get(format!("{b}/api/v1/pubkey/{ip}"))
        }
        "pubkey_own" => c.get(format!("{b}/api/v1/pubkey/{own}")),
        "pubkey_unknown" => c.get(format!("{b}/api/v1/pubkey/5ff::1")),
        "pubkey_ipv4" => c.get(format!("{b}/api/v1/pubkey/10.0.0.1")),
        "pubkey_bad" => c.get(format!("{b}/api/v1/pubkey/nonsense")),
        "openapi" => c.get(format!("{b}/api/v1/openapi.json")),
        other => panic!("no request for case {other}"),
    };
    req.send().await.unwrap()
}

#[tokio::test]
async fn every_operation_conforms_to_the_documents() {
    let ours = our_openapi();
    let upstream = upstream_with_exceptions();
    for case in CASES {
        let srv = http().await;
        let resp = send(case.name, &srv).await;
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = resp.bytes().await.unwrap();
        assert_eq!(
            status,
            case.status,
            "case {}: body {:?}",
            case.name,
            String::from_utf8_lossy(&body)
        );
        check(
            &ours,
            "openapi.yaml",
            case.name,
            case.op,
            status,
            &ctype,
            &body,
        );
        if case.upstream {
            let up = &upstream;
            check(
                up,
                "upstream api.yaml",
                case.name,
                case.op,
                status,
                &ctype,
                &body,
            );
        }
    }
}

#[test]
fn every_operation_of_both_documents_has_cases() {
    let ours = our_openapi();
    let covered: BTreeSet<&str> = CASES.iter().map(|c| c.op).collect();
    let ids = |doc: &Value| -> BTreeSet<String> {
        doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .map(|op| op["operationId"].as_str().unwrap().to_owned())
            .collect()
    };
    let our_ids = ids(&ours);
    for id in &our_ids {
        assert!(covered.contains(id.as_str()), "no case for {id}");
    }
    {
        let text = upstream_file("api.yaml");
        let up: Value = serde_yaml::from_str(&text).unwrap();
        let up_ids = ids(&up);
        assert_eq!(up_ids.len(), 29);
        for id in &up_ids {
            assert!(our_ids.contains(id), "upstream's {id} is not in ours");
            let up_case = CASES.iter().any(|c| c.op == id && c.upstream);
            assert!(up_case, "no upstream-checked case for {id}");
        }
    }
}

#[test]
fn the_served_document_lists_exactly_the_routes_served() {
    let ours = our_openapi();
    let mut documented = BTreeSet::new();
    for (path, item) in ours["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            documented.insert((
                method.to_uppercase(),
                path.clone(),
                op["operationId"].as_str().unwrap().to_owned(),
            ));
        }
    }
    let served: BTreeSet<_> = OPERATIONS
        .iter()
        .map(|o| (o.method.to_owned(), o.path.to_owned(), o.id.to_owned()))
        .collect();
    assert_eq!(documented, served);
}

/// Each row of the route table is really routed: its method is not 405 and another
/// method on the same path is 405 (not a 404 from the fallback).
#[tokio::test]
async fn every_route_of_the_table_is_routed() {
    let srv = http().await;
    let c = client();
    for op in OPERATIONS {
        let path = op
            .path
            .replace("{endpoint}", &enc("tcp://192.0.2.1:9651"))
            .replace("{id}", "0123456789abcdef")
            .replace("{topic}", "aGk=")
            .replace("{subnet}", &enc("400::/7"))
            .replace("{ip}", "5ff::1");
        let url = format!("{}{path}", srv.base);
        let method = Method::from_bytes(op.method.as_bytes()).unwrap();
        let resp = c
            .request(method, &url)
            .header(CONTENT_TYPE, "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_ne!(resp.status().as_u16(), 405, "{} {}", op.method, op.path);
        let resp = c.patch(&url).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 405, "PATCH {}", op.path);
    }
}

#[test]
fn the_yaml_source_and_the_served_json_agree() {
    let yaml: Value = serde_yaml::from_str(include_str!("../openapi.yaml")).unwrap();
    assert_eq!(
        yaml,
        our_openapi(),
        "openapi.json is stale: regenerate it with \
         python3 -c 'import yaml,json; print(json.dumps(yaml.safe_load(open(\"openapi.yaml\")), indent=2))' > openapi.json"
    );
}
