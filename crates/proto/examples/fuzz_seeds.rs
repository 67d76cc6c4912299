//! Writes the fuzz corpora seeds from the recorded upstream session
//! (`tests/fixtures/interop`): every recorded packet, TLV value, decrypted payload and
//! message frame becomes one corpus file.
//!
//! `cargo run -p mycelium-proto --example fuzz_seeds -- fuzz/corpus`

use std::fs;
use std::path::{Path, PathBuf};

use mycelium_proto::crypto::SharedSecret;
use mycelium_proto::wire::beacon::Beacon;
use mycelium_proto::wire::{self, payload, Packet};
use mycelium_proto::{RouterId, SecretKey};

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/interop")
        .join(name);
    fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn key(name: &str) -> SecretKey {
    let mut k = [0u8; 32];
    let text = String::from_utf8(fixture(name)).expect("key fixture is text");
    hex::decode_to_slice(text.trim(), &mut k).expect("key fixture is hex");
    SecretKey::from_bytes(k)
}

fn put(root: &Path, target: &str, bytes: &[u8]) {
    let dir = root.join(target);
    fs::create_dir_all(&dir).expect("corpus directory can be created");
    let name = blake3::hash(bytes).to_hex();
    fs::write(dir.join(&name[..16]), bytes).expect("corpus file can be written");
}

fn main() {
    let root: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| "fuzz/corpus".into());
    let dialer = key("tcp-session/dialer.key.hex");
    let listener = key("tcp-session/listener.key.hex");
    let secret = SharedSecret::new(&dialer, &listener.public_key());

    // router scripts (see fuzz/fuzz_targets/router.rs): setup byte, start time, then
    // operations. Each recorded direction's TLVs come from one peer, with clock steps
    // between them; the last seed plays both directions from two peers.
    let mut both = vec![0u8, 0, 0, 0, 0, 0, 1, 1];
    for (i, name) in [
        "tcp-session/dialer_to_listener.bin",
        "tcp-session/listener_to_dialer.bin",
    ]
    .into_iter()
    .enumerate()
    {
        let mut script = vec![0u8, 0, 0, 0, 0];
        let stream = fixture(name);
        let mut at = 0;
        while let Ok(d) = wire::decode(&stream[at..]) {
            let bytes = &stream[at..at + d.len];
            if let (Packet::Control(_), Ok(len)) = (&d.packet, u8::try_from(bytes.len() - 10)) {
                // Operation 2: a raw TLV (type, value length, value) from a peer.
                let op = [&[2, i as u8, bytes[8], len][..], &bytes[10..]].concat();
                script.extend_from_slice(&op);
                script.extend_from_slice(&[8, 10]);
                both.extend_from_slice(&op);
            }
            at += d.len;
        }
        script.extend_from_slice(&[9, 9, 10, 0]);
        put(&root, "router", &script);
    }
    both.extend_from_slice(&[13, 0, 100, 9, 1, 0]);
    put(&root, "router", &both);

    for name in [
        "tcp-session/dialer_to_listener.bin",
        "tcp-session/listener_to_dialer.bin",
    ] {
        let stream = fixture(name);
        put(&root, "packet_stream", &stream[..stream.len().min(4096)]);
        let mut at = 0;
        while let Ok(d) = wire::decode(&stream[at..]) {
            let bytes = &stream[at..at + d.len];
            put(&root, "packet_stream", bytes);
            match d.packet {
                Packet::Control(_) => put(
                    &root,
                    "control_tlv",
                    &bytes[8..9]
                        .iter()
                        .chain(&bytes[10..])
                        .copied()
                        .collect::<Vec<_>>(),
                ),
                Packet::Data(p) => {
                    put(&root, "sealed_payload", p.payload);
                    let mut buf = p.payload.to_vec();
                    if let Ok(n) = secret.open_in_place(&mut buf) {
                        put(&root, "plaintext_payload", &buf[..n]);
                        if let Ok((payload::PayloadType::Message, frame)) =
                            payload::decode(&buf[..n])
                        {
                            put(&root, "message_frame", frame);
                        }
                    }
                }
                Packet::Ignored(_) => {}
            }
            at += d.len;
        }
    }
    let mut beacon = Vec::new();
    Beacon {
        tcp_port: 9651,
        router_id: RouterId::new(dialer.public_key(), [1, 2, 3, 4, 5, 6]),
    }
    .encode(&mut beacon);
    put(&root, "beacon", &beacon);
}
