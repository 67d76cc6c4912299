//! The JSON-RPC server: every method (results checked against our openrpc.json),
//! upstream's error codes, params by position and by name (snake_case and
//! camelCase), batches, the transport rules and WebSocket sessions.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::{
    client, our_openrpc, result_schema, rpc_call, schema_errors, start, upstream_file, Kind,
    Server, UPSTREAM_RPC_EXCEPTIONS,
};
use futures_util::{SinkExt, StreamExt};
use mycelium_api::model::encode_base64;
use mycelium_api::rpc::METHODS;
use mycelium_api::{ApiConfig, Backend, PushOutcome};
use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};

async fn rpc() -> Server {
    start(Kind::Rpc, ApiConfig::default()).await
}

/// Valid params for every method (positional), set up on the fake where needed.
async fn valid_params(method: &str, srv: &Server) -> Value {
    let fake = &srv.fake;
    let own = fake.address().to_string();
    let topic = encode_base64(b"chat");
    let message = json!({"dst": {"ip": "4ca::1"}, "topic": "dGVzdA==", "payload": "aGk="});
    match method {
        "getPublicKeyFromIp" => json!([fake.remote_key().address().to_string()]),
        "addPeer" => json!(["tcp://[2001:db8::9]:9651"]),
        "deletePeer" => json!(["tcp://192.0.2.1:9651"]),
        "connectProxy" => json!([null]),
        "popMessage" => {
            let pushed = fake
                .push_message(own.parse().unwrap(), b"chat".to_vec(), b"x".to_vec(), None)
                .await
                .unwrap();
            assert!(matches!(pushed, PushOutcome::Sent(_)));
            json!([false, 0, topic])
        }
        "pushMessage" => json!([message]),
        "pushMessageReply" => json!(["0123456789abcdef", message]),
        "getMessageInfo" => {
            let PushOutcome::Sent(id) = fake
                .push_message("4ca::1".parse().unwrap(), vec![], vec![0; 10], None)
                .await
                .unwrap()
            else {
                panic!()
            };
            json!([id.to_string()])
        }
        "setDefaultTopicAction" => json!([false]),
        "addTopic" | "removeTopic" | "getTopicForwardSocket" | "removeTopicForwardSocket" => {
            json!([topic])
        }
        "getTopicSources" => {
            fake.add_topic(b"chat".to_vec()).await.unwrap();
            json!([topic])
        }
        "addTopicSource" | "removeTopicSource" => json!([topic, "400::/7"]),
        "setTopicForwardSocket" => json!([topic, "/run/chat.sock"]),
        _ => json!([]),
    }
}

#[tokio::test]
async fn every_method_answers_as_documented() {
    let doc = our_openrpc();
    let upstream: Value = serde_json::from_str(&upstream_file("openrpc.json")).unwrap();
    for (method, _) in METHODS {
        let srv = rpc().await;
        let params = valid_params(method, &srv).await;
        let answer = rpc_call(&srv.base, method, params).await;
        assert_eq!(answer["jsonrpc"], "2.0");
        assert_eq!(answer["id"], 1);
        let result = answer
            .get("result")
            .unwrap_or_else(|| panic!("{method}: {answer}"));
        if *method == "rpc.discover" {
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

#[test]
fn the_method_table_matches_the_documents() {
    let names = |doc: &Value| -> BTreeSet<String> {
        doc["methods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let served: BTreeSet<String> = METHODS
        .iter()
        .map(|(m, _)| (*m).to_owned())
        .filter(|m| m != "rpc.discover")
        .collect();
    let ours = our_openrpc();
    assert_eq!(names(&ours), served);
    for m in ours["methods"].as_array().unwrap() {
        let documented: Vec<&str> = m["params"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        let name = m["name"].as_str().unwrap();
        let table = METHODS.iter().find(|(n, _)| *n == name).unwrap().1;
        assert_eq!(documented, table, "{name}");
    }
    {
        let text = upstream_file("openrpc.json");
        let up: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(names(&up), served);
    }
}

#[tokio::test]
async fn application_errors_have_upstreams_codes() {
    let srv = rpc().await;
    let big_topic = encode_base64(&[b'x'; 256]);
    let msg = |topic: &str| json!({"dst": {"ip": "4ca::1"}, "topic": topic, "payload": ""});
    let cases: Vec<(&str, Value, i64)> = vec![
        ("getPublicKeyFromIp", json!(["nonsense"]), -32007),
        ("getPublicKeyFromIp", json!(["5ff::1"]), -32008),
        ("getPublicKeyFromIp", json!(["10.0.0.1"]), -32008),
        ("addPeer", json!(["1.2.3.4:9651"]), -32009),
        ("addPeer", json!(["tcp://192.0.2.1:9651"]), -32010),
        ("deletePeer", json!(["quic://192.0.2.1:1"]), -32011),
        ("deletePeer", json!(["nope"]), -32012),
        ("popMessage", json!([false, 0, "abc"]), -32013),
        ("pushMessage", json!([msg(&big_topic)]), -32015),
        ("pushMessageReply", json!(["0123", msg("")]), -32018),
        ("getMessageInfo", json!(["0000000000000000"]), -32019),
        ("getMessageInfo", json!(["0123"]), -32020),
        ("getMessageInfo", json!(["0123456789abcdef0"]), -32020),
        ("addTopic", json!(["abc"]), -32021),
        ("removeTopic", json!(["abc"]), -32021),
        ("getTopicSources", json!(["abc"]), -32021),
        ("getTopicSources", json!(["bm9uZQ=="]), -32030),
        ("addTopicSource", json!(["bm9uZQ==", "400::/300"]), -32023),
        ("removeTopicSource", json!(["bm9uZQ==", "x"]), -32023),
        ("getTopicForwardSocket", json!(["%%"]), -32021),
        ("setTopicForwardSocket", json!(["%%", "/x"]), -32021),
        ("removeTopicForwardSocket", json!(["%%"]), -32021),
    ];
    for (method, params, code) in cases {
        let answer = rpc_call(&srv.base, method, params.clone()).await;
        assert_eq!(
            answer["error"],
            json!({"code": code, "message": "Server error"}),
            "{method} {params}: {answer}"
        );
    }
}

/// A message to an IPv4 address is the caller's mistake: -32602 with a reason.
#[tokio::test]
async fn an_ipv4_destination_is_invalid_params() {
    let srv = rpc().await;
    let msg = json!({"dst": {"ip": "10.0.0.1"}, "payload": "aGk="});
    for (method, params) in [
        ("pushMessage", json!([msg])),
        ("pushMessageReply", json!(["0123456789abcdef", msg])),
    ] {
        let answer = rpc_call(&srv.base, method, params).await;
        assert_eq!(answer["error"]["code"], -32602, "{method}: {answer}");
        assert_eq!(answer["error"]["message"], "Invalid params");
        let data = answer["error"]["data"].as_str().unwrap();
        assert!(data.contains("10.0.0.1"), "{data}");
    }
}

#[tokio::test]
async fn message_ids_use_the_first_16_hex_characters() {
    let srv = rpc().await;
    let PushOutcome::Sent(id) = srv
        .fake
        .push_message("4ca::1".parse().unwrap(), vec![], vec![1], None)
        .await
        .unwrap()
    else {
        panic!()
    };
    let long = format!("{id}00");
    let answer = rpc_call(&srv.base, "getMessageInfo", json!([long])).await;
    assert_eq!(answer["result"]["dst"], "4ca::1", "{answer}");
}

#[tokio::test]
async fn params_by_name_in_either_case_or_by_position() {
    let srv = rpc().await;
    let message = json!({"dst": {"ip": "4ca::1"}, "payload": "aGk="});
    // reply_timeout / replyTimeout: both wait, and time out into an id.
    for params in [
        json!({"message": message, "reply_timeout": 0}),
        json!({"message": message, "replyTimeout": 0}),
        json!([message, 0]),
        json!([message]),
    ] {
        let answer = rpc_call(&srv.base, "pushMessage", params.clone()).await;
        assert!(answer["result"]["id"].is_string(), "{params}: {answer}");
    }
    for params in [
        json!({"topic": "Y2hhdA==", "socket_path": "/a"}),
        json!({"topic": "Y2hhdA==", "socketPath": "/a"}),
    ] {
        srv.fake.add_topic(b"chat".to_vec()).await.unwrap();
        let answer = rpc_call(&srv.base, "setTopicForwardSocket", params).await;
        assert_eq!(answer["result"], true);
        let got = rpc_call(
            &srv.base,
            "getTopicForwardSocket",
            json!({"topic": "Y2hhdA=="}),
        )
        .await;
        assert_eq!(got["result"], "/a");
        srv.fake.remove_topic(b"chat".to_vec()).await;
    }
    // Trailing optional params may be left out; null counts as absent.
    let answer = rpc_call(&srv.base, "popMessage", json!([])).await;
    assert_eq!(answer["result"], Value::Null);
    let answer = rpc_call(
        &srv.base,
        "popMessage",
        json!({"peek": true, "timeout": null}),
    )
    .await;
    assert_eq!(answer["result"], Value::Null);
    let answer = rpc_call(&srv.base, "getInfo", Value::Null).await;
    assert!(answer["result"]["nodeIp"].is_string());
}

#[tokio::test]
async fn standard_errors() {
    let srv = rpc().await;
    let answer = rpc_call(&srv.base, "noSuchMethod", json!([])).await;
    assert_eq!(
        answer["error"],
        json!({"code": -32601, "message": "Method not found"})
    );
    let answer = rpc_call(&srv.base, "addPeer", json!([])).await;
    assert_eq!(answer["error"]["code"], -32602);
    assert_eq!(answer["error"]["message"], "Invalid params");
    assert!(answer["error"]["data"].is_string());
    let answer = rpc_call(&srv.base, "setDefaultTopicAction", json!(["yes"])).await;
    assert_eq!(answer["error"]["code"], -32602);

    let c = client();
    let raw = |body: &'static str| {
        c.post(&srv.base)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
    };
    let v: Value = raw("{").await.unwrap().json().await.unwrap();
    assert_eq!(
        v,
        json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "Parse error"}})
    );
    for bad in [
        r#"{"jsonrpc":"1.0","id":1,"method":"getInfo"}"#,
        r#"{"jsonrpc":"2.0","id":1}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"getInfo","params":3}"#,
        r#"{"jsonrpc":"2.0","id":[1],"method":"getInfo"}"#,
        "[]",
        "5",
    ] {
        let v: Value = raw(bad).await.unwrap().json().await.unwrap();
        assert_eq!(v["error"]["code"], -32600, "{bad}: {v}");
    }
}

#[tokio::test]
async fn batches_and_notifications() {
    let srv = rpc().await;
    let body = json!([
        {"jsonrpc": "2.0", "id": "a", "method": "getDefaultTopicAction"},
        {"jsonrpc": "2.0", "method": "setDefaultTopicAction", "params": [false]},
        {"jsonrpc": "2.0", "id": 2, "method": "nope"},
        7,
    ]);
    let answers: Vec<Value> = client()
        .post(&srv.base)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answers.len(), 3);
    assert!(answers
        .iter()
        .any(|a| a["id"] == "a" && a["result"].is_boolean()));
    assert!(answers
        .iter()
        .any(|a| a["id"] == 2 && a["error"]["code"] == -32601));
    assert!(answers.iter().any(|a| a["error"]["code"] == -32600));
    // The notification ran.
    assert!(!srv.fake.default_topic_accept().await);
    // Only notifications: an empty answer.
    let resp = client()
        .post(&srv.base)
        .json(&json!({"jsonrpc": "2.0", "method": "setDefaultTopicAction", "params": [true]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "");
    assert!(srv.fake.default_topic_accept().await);
}

#[tokio::test]
async fn transport_rules() {
    let srv = rpc().await;
    let c = client();
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"getInfo"}"#;
    for ct in [
        "application/json",
        "application/json; charset=utf-8",
        "application/json-rpc",
        "Application/JSON",
    ] {
        for path in ["/", "/rpc", "/any/path"] {
            let resp = c
                .post(format!("{}{path}", srv.base))
                .header(CONTENT_TYPE, ct)
                .body(call)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{ct} {path}");
            assert!(resp.json::<Value>().await.unwrap()["result"].is_object());
        }
    }
    let resp = c
        .post(&srv.base)
        .header(CONTENT_TYPE, "text/plain")
        .body(call)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let resp = c.post(&srv.base).body(call).send().await.unwrap();
    assert_eq!(resp.status(), 415);
    let resp = c.get(&srv.base).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    let resp = c.put(&srv.base).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    // Results keep upstream's key order.
    let text = c
        .post(&srv.base)
        .header(CONTENT_TYPE, "application/json")
        .body(call)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.starts_with(r#"{"jsonrpc":"2.0","id":1,"result":{"nodeSubnet":"#),
        "{text}"
    );
}

#[tokio::test]
async fn oversized_requests_are_refused() {
    let cfg = ApiConfig {
        max_rpc_request_bytes: 1000,
        ..ApiConfig::default()
    };
    let srv = start(Kind::Rpc, cfg).await;
    let resp = client()
        .post(&srv.base)
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "addTopic", "params": ["x".repeat(2000)]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
}

#[tokio::test]
async fn the_token_guards_rpc() {
    let cfg = ApiConfig {
        token: Some("t0ken".into()),
        ..ApiConfig::default()
    };
    let srv = start(Kind::Rpc, cfg).await;
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "getInfo"});
    let resp = client().post(&srv.base).json(&call).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = client()
        .post(&srv.base)
        .bearer_auth("t0ken")
        .json(&call)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// A page elsewhere cannot open a WebSocket to a loopback node: its browser names
/// the page's origin, and the upgrade is refused.
#[tokio::test]
async fn websockets_from_foreign_origins_are_refused() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let srv = rpc().await;
    let url = srv.base.replace("http://", "ws://");
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    let refused = tokio_tungstenite::connect_async(req).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 421)
        }
        other => panic!("upgrade not refused: {:?}", other.map(|(_, r)| r.status())),
    }
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("origin", srv.base.parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_ok());
}

#[tokio::test]
async fn websocket_sessions_answer_concurrently() {
    use tokio_tungstenite::tungstenite::Message;
    let srv = rpc().await;
    let url = srv.base.replace("http://", "ws://");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    // A long poll first, then a quick call: the quick one must come back first.
    let poll = json!({"jsonrpc": "2.0", "id": 1, "method": "popMessage", "params": [false, 2]});
    let info = json!({"jsonrpc": "2.0", "id": 2, "method": "getInfo"});
    ws.send(Message::text(poll.to_string())).await.unwrap();
    ws.send(Message::text(info.to_string())).await.unwrap();
    let first: Value = match ws.next().await.unwrap().unwrap() {
        Message::Text(t) => serde_json::from_str(t.as_str()).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(first["id"], 2);
    let second: Value = match ws.next().await.unwrap().unwrap() {
        Message::Text(t) => serde_json::from_str(t.as_str()).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(second, json!({"jsonrpc": "2.0", "id": 1, "result": null}));
}
