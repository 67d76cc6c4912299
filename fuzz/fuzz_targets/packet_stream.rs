//! Bytes from a peer link: split into packets as the link reader does. Every packet
//! that decodes must re-encode to the bytes it came from, except where the decoder
//! documents a normalisation (ignored header bits, skipped packets).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mycelium_proto::wire::{self, FrameError, Packet};

fuzz_target!(|data: &[u8]| {
    let mut at = 0;
    while at < data.len() {
        match wire::decode(&data[at..]) {
            Ok(d) => {
                assert!(d.len > 0 && at + d.len <= data.len());
                if let Some(len) = d.packet.encoded_len() {
                    assert_eq!(len, d.len);
                    let mut again = Vec::with_capacity(len);
                    assert!(d.packet.encode(&mut again));
                    let re = wire::decode(&again).expect("our own encoding decodes");
                    assert_eq!(re.packet, d.packet);
                }
                if let Packet::Data(p) = d.packet {
                    assert!(p.payload.len() <= usize::from(u16::MAX));
                }
                at += d.len;
            }
            Err(FrameError::Incomplete { needed }) => {
                assert!(needed > 0 && needed <= wire::packet::MAX_PACKET_LEN);
                break;
            }
            Err(_) => break,
        }
    }
});
