#![allow(clippy::unwrap_used)] // a failed parse in a test should fail it loudly

use super::*;

/// Answers recorded from an upstream v0.7.10 node (tests/fixtures/, copied from the
/// shared interop recordings).
const ADMIN: &str = include_str!("../../tests/fixtures/listener_admin.json");
const PEERS: &str = include_str!("../../tests/fixtures/listener_peers.json");
const ROUTES: &str = include_str!("../../tests/fixtures/listener_routes_selected.json");
const MESSAGES: &str = include_str!("../../tests/fixtures/messages_received_by_listener.jsonl");

fn round_trip<T: Serialize + for<'de> Deserialize<'de>>(json: &str) -> T {
    let value: T = serde_json::from_str(json).unwrap();
    assert_eq!(serde_json::to_string(&value).unwrap(), json.trim());
    value
}

#[test]
fn upstream_info_round_trips() {
    let info: Info = round_trip(ADMIN);
    assert_eq!(info.node_subnet.to_string(), "595:178f:8073:5d22::/64");
    assert_eq!(info.node_start_time, 1795555575);
}

#[test]
fn upstream_peers_round_trip() {
    let peers: Vec<PeerStats> = round_trip(PEERS);
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].peer_type, PeerType::Inbound);
    assert_eq!(peers[0].endpoint.to_string(), "tcp://[fd00:78::2]:60758");
    assert_eq!(peers[0].last_connected, Some(9));
}

#[test]
fn upstream_routes_round_trip() {
    let routes: Vec<Route> = round_trip(ROUTES);
    assert_eq!(routes[0].metric, Metric::Finite(0));
}

#[test]
fn upstream_messages_round_trip() {
    let mut n = 0;
    for line in MESSAGES.lines().filter(|l| !l.trim().is_empty()) {
        let m: MessageReceiveInfo = round_trip(line);
        assert_eq!(m.topic, b"vectors");
        let r: PushMessageResponse = round_trip(line);
        assert!(matches!(r, PushMessageResponse::Reply(_)));
        n += 1;
    }
    assert!(n > 0);
}

#[test]
fn empty_topic_is_left_out() {
    let line = MESSAGES.lines().next().unwrap();
    let mut m: MessageReceiveInfo = serde_json::from_str(line).unwrap();
    m.topic.clear();
    let json = serde_json::to_string(&m).unwrap();
    assert!(!json.contains("topic"));
    assert_eq!(
        serde_json::from_str::<MessageReceiveInfo>(&json).unwrap(),
        m
    );
}

#[test]
fn vsock_endpoint_and_null_last_connected() {
    let json = r#"{"endpoint":{"proto":"vsock","addr":{"vsock":{"cid":3,"port":9651}}},"type":"static","connectionState":"dead","txBytes":0,"rxBytes":0,"discovered":1,"lastConnected":null}"#;
    let p: PeerStats = round_trip(json);
    assert_eq!(p.endpoint.to_string(), "vsock://3:9651");
    // A socket address under vsock, or a vsock address under tcp, is refused.
    let bad = json.replace(
        r#"{"vsock":{"cid":3,"port":9651}}"#,
        r#"{"socket":"1.2.3.4:1"}"#,
    );
    assert!(serde_json::from_str::<PeerStats>(&bad).is_err());
}

#[test]
fn metric_forms() {
    assert_eq!(
        serde_json::to_string(&Metric::Infinite).unwrap(),
        r#""infinite""#
    );
    assert_eq!(serde_json::to_string(&Metric::Finite(7)).unwrap(), "7");
    assert_eq!(
        serde_json::from_str::<Metric>("65535").unwrap(),
        Metric::Infinite
    );
    assert!(serde_json::from_str::<Metric>(r#""big""#).is_err());
}

#[test]
fn queried_subnet_expiration_is_a_string() {
    let q: QueriedSubnet = round_trip(r#"{"subnet":"5ff:1:2:3::/64","expiration":"14"}"#);
    assert_eq!(q.expiration, 14);
}

#[test]
fn transmission_states() {
    for json in [r#""pending""#, r#""received""#, r#""read""#, r#""aborted""#] {
        round_trip::<TransmissionState>(json);
    }
    round_trip::<MessageInfo>(
        r#"{"dst":"4ca:ba1e:3619:318e:5f23:99d1:47a:e72a","state":{"sending":{"pending":0,"sent":0,"acked":2}},"created":1795558915,"deadline":1795559215,"msgLen":2}"#,
    );
}

#[test]
fn send_info_destinations_and_topics() {
    let m: MessageSendInfo =
        serde_json::from_str(r#"{"dst":{"ip":"4ca::1"},"payload":"aGVsbG8=","extra":1}"#).unwrap();
    assert_eq!(m.topic, None);
    assert_eq!(m.payload, b"hello");
    let m: MessageSendInfo =
        serde_json::from_str(r#"{"dst":{"ip":"4ca::1"},"topic":null,"payload":""}"#).unwrap();
    assert_eq!(m.topic, None);
    let pk = "6e7dbb9af5af53a144a5f60c52390cf806f475632dfbada42982747d9f001631";
    let m: MessageSendInfo = serde_json::from_str(&format!(
        r#"{{"dst":{{"pk":"{pk}"}},"topic":"bXl0b3BpYw==","payload":""}}"#
    ))
    .unwrap();
    assert_eq!(m.topic.as_deref(), Some(&b"mytopic"[..]));
    let key: PublicKey = pk.parse().unwrap();
    assert_eq!(m.dst.ip(), IpAddr::V6(key.address()));
}

#[test]
fn base64_needs_canonical_padding() {
    assert!(decode_base64("aGVsbG8").is_err());
    assert!(decode_base64("aGVsbG8=").is_ok());
    assert!(decode_base64("aGVsbG9=").is_err()); // non-zero trailing bits
    assert!(decode_base64("aGVs bG8=").is_err());
}

#[test]
fn push_response_forms() {
    let id: PushMessageResponse = round_trip(r#"{"id":"2bb231c50d01428d"}"#);
    assert!(matches!(id, PushMessageResponse::Id(_)));
}
