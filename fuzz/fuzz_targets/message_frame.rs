//! A decrypted message-subsystem frame. What decodes must round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mycelium_proto::wire::message::Frame;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = Frame::decode(data) {
        let mut again = Vec::new();
        frame.encode(&mut again);
        assert_eq!(again.len(), frame.encoded_len());
        assert_eq!(Frame::decode(&again), Ok(frame));
    }
});
