//! A `--topic-config` file. What parses must keep the limits the
//! bus relies on, and an error must name a line of the file.
#![no_main]

use std::net::{IpAddr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use mycelium_proto::messages::TopicConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match TopicConfig::from_toml(text) {
        Ok((config, _warnings)) => {
            let probe = IpAddr::V6(Ipv6Addr::new(0x400, 0, 0, 0, 0, 0, 0, 1));
            for topic in config.topics() {
                assert!(topic.len() <= 255, "topic of {} bytes", topic.len());
                let rule = config.rule(topic).expect("a listed topic has a rule");
                for (i, s) in rule.sources.iter().enumerate() {
                    assert!(!rule.sources[..i].contains(s), "source {s} twice");
                }
                assert_eq!(
                    config.allows(topic, probe),
                    rule.sources.iter().any(|s| s.contains_ip(probe))
                );
            }
        }
        Err(e) => {
            let lines = text.matches('\n').count() + 1;
            assert!(
                (1..=lines).contains(&e.line),
                "error on line {} of {lines}: {}",
                e.line,
                e.message
            );
        }
    }
});
