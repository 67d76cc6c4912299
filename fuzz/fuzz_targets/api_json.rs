//! The JSON bodies the APIs read and the answers they write, decoded
//! with serde_json: the first byte picks the type, the rest is the JSON. What
//! decodes must encode and decode back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mycelium_api::model::{
    AddPeerRequest, ConnectProxyRequest, DefaultTopicAction, Info, MessageInfo, MessageReceiveInfo,
    MessageSendInfo, Metric, PacketStatistics, PeerStats, PushMessageResponse,
    PushMessageResponseId, QueriedSubnet, Route, TopicForwardSocketRequest, TopicSourceRequest,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

fn round_trip<T>(json: &[u8])
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let Ok(value) = serde_json::from_slice::<T>(json) else {
        return;
    };
    let again = serde_json::to_vec(&value).expect("a decoded value encodes");
    let back: T = serde_json::from_slice(&again).unwrap_or_else(|e| {
        panic!(
            "{} does not decode again: {e}",
            String::from_utf8_lossy(&again)
        )
    });
    assert_eq!(back, value);
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, json)) = data.split_first() else {
        return;
    };
    match sel % 16 {
        // Request bodies.
        0 => round_trip::<MessageSendInfo>(json),
        1 => round_trip::<AddPeerRequest>(json),
        2 => round_trip::<TopicForwardSocketRequest>(json),
        3 => round_trip::<TopicSourceRequest>(json),
        4 => round_trip::<DefaultTopicAction>(json),
        5 => round_trip::<ConnectProxyRequest>(json),
        // Answers (the client decodes them).
        6 => round_trip::<MessageReceiveInfo>(json),
        7 => round_trip::<PushMessageResponse>(json),
        8 => round_trip::<PushMessageResponseId>(json),
        9 => round_trip::<MessageInfo>(json),
        10 => round_trip::<Vec<PeerStats>>(json),
        11 => round_trip::<Vec<Route>>(json),
        12 => round_trip::<Vec<QueriedSubnet>>(json),
        13 => round_trip::<PacketStatistics>(json),
        14 => round_trip::<Info>(json),
        _ => round_trip::<Vec<Metric>>(json),
    }
});
