//! A TLV value behind a valid control header: first byte the type, the rest the
//! value. What decodes must round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mycelium_proto::wire::Tlv;

fuzz_target!(|data: &[u8]| {
    let Some((&ty, value)) = data.split_first() else {
        return;
    };
    if let Ok(tlv) = Tlv::decode(ty, value) {
        let mut again = Vec::new();
        tlv.encode_value(&mut again);
        assert_eq!(again.len(), tlv.value_len());
        assert_eq!(Tlv::decode(tlv.tlv_type(), &again), Ok(tlv));
    }
});
