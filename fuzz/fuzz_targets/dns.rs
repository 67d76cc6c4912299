//! The DNS forwarder's message path: a client's message (the input's first part,
//! its length in the first two bytes) and a resolver's reply (the rest) through
//! the forwarder's checks and encoding. Nothing may panic; every answer carries
//! the client's id and fits the transport it is for (checked inside).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let len = usize::from(u16::from_be_bytes([data[0], data[1]]));
    let rest = &data[2..];
    let (client, reply) = rest.split_at(len.min(rest.len()));
    let _ = mycelium_node::dns_message_path(client, reply);
});
