//! The short strings a node takes from its command line, config file and API paths:
//! peer endpoint URIs, vsock addresses, subnets, public keys and
//! message ids. The first byte picks the parser, the rest is the text. What parses
//! must print in a form that parses back to the same value.
#![no_main]

use std::fmt::Display;
use std::str::FromStr;

use libfuzzer_sys::fuzz_target;
use mycelium_proto::endpoint::{Endpoint, EndpointAddr, VsockAddr};
use mycelium_proto::subnet::Subnet;
use mycelium_proto::wire::message::MessageId;
use mycelium_proto::PublicKey;

fn round_trip<T>(text: &str) -> Option<T>
where
    T: FromStr + Display + PartialEq + std::fmt::Debug,
{
    let value = text.parse::<T>().ok()?;
    let printed = value.to_string();
    match printed.parse::<T>() {
        Ok(again) => assert_eq!(again, value, "{text:?} printed as {printed:?}"),
        Err(_) => panic!("{text:?} printed as {printed:?}, which does not parse"),
    }
    Some(value)
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    match sel % 5 {
        0 => {
            if let Some(ep) = round_trip::<Endpoint>(text) {
                // The protocol and the kind of address always go together.
                assert_eq!(
                    ep.proto().uses_socket_addr(),
                    matches!(ep.addr(), EndpointAddr::Socket(_))
                );
                assert_eq!(ep.socket_addr().is_some(), ep.proto().uses_socket_addr());
                let _ = ep.human().to_string();
            }
        }
        1 => {
            round_trip::<VsockAddr>(text);
        }
        2 => {
            if let Some(s) = round_trip::<Subnet>(text) {
                assert!(s.contains_subnet(&s.network()));
                assert!(s.network().contains_subnet(&s));
            }
        }
        3 => {
            if round_trip::<PublicKey>(text).is_some() {
                assert_eq!(text.len(), 64);
            }
        }
        _ => {
            if let Some(id) = round_trip::<MessageId>(text) {
                assert_eq!(id.to_string(), text.to_ascii_lowercase());
            }
        }
    }
});
