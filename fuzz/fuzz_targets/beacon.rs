//! A link-local discovery datagram. What decodes must round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mycelium_proto::wire::beacon::Beacon;

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = Beacon::decode(data) {
        let mut again = Vec::new();
        b.encode(&mut again);
        assert_eq!(again, data);
    }
});
