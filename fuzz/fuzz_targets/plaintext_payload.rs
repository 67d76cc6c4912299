//! What a peer could make us decrypt: the user header and, for message payloads, the
//! frame behind it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mycelium_proto::wire::message::Frame;
use mycelium_proto::wire::payload::{self, PayloadType};

fuzz_target!(|data: &[u8]| {
    if let Ok((ty, body)) = payload::decode(data) {
        assert_eq!(body.len() + payload::HEADER_LEN, data.len());
        if ty == PayloadType::Message {
            let _ = Frame::decode(body);
        }
    }
});
