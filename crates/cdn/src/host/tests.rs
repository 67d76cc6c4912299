#![allow(clippy::unwrap_used)] // a case that does not parse should fail the test

use axum::http::HeaderMap;

use super::*;

const ID: &str = "000102030405060708090a0b0c0d0e0f";

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            axum::http::HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn host_of(pairs: &[(&str, &str)], uri: &str) -> Option<String> {
    host_value(&headers(pairs), &uri.parse().unwrap())
}

#[test]
fn forwarded_wins_and_is_unquoted() {
    let h = [
        (
            "Forwarded",
            "for=1.2.3.4; HOST = \"a.example\" ;proto=http, host=b",
        ),
        ("X-Forwarded-Host", "x.example"),
        ("Host", "h.example"),
    ];
    assert_eq!(host_of(&h, "/").as_deref(), Some("a.example"));
    // Only the first element counts, even when it has no host.
    let h = [("Forwarded", "for=1.2.3.4, host=b.example"), ("Host", "h")];
    assert_eq!(host_of(&h, "/").as_deref(), Some("h"));
    // Only the first header instance counts.
    let h = [
        ("Forwarded", "for=x"),
        ("Forwarded", "host=c"),
        ("Host", "h"),
    ];
    assert_eq!(host_of(&h, "/").as_deref(), Some("h"));
}

#[test]
fn x_forwarded_host_is_taken_whole_then_host_then_the_target() {
    let h = [("X-Forwarded-Host", "a.example, b.example"), ("Host", "h")];
    assert_eq!(host_of(&h, "/").as_deref(), Some("a.example, b.example"));
    assert_eq!(
        host_of(&[("Host", "h.example:81")], "/").as_deref(),
        Some("h.example:81")
    );
    assert_eq!(
        host_of(&[], "http://user:pw@t.example:8080/").as_deref(),
        Some("t.example:8080")
    );
    assert_eq!(host_of(&[], "/"), None);
}

#[test]
fn headers_that_are_not_visible_ascii_are_passed_over() {
    let mut h = HeaderMap::new();
    h.insert(
        "x-forwarded-host",
        axum::http::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
    );
    h.insert("host", axum::http::HeaderValue::from_static("h.example"));
    assert_eq!(
        host_value(&h, &"/".parse().unwrap()).as_deref(),
        Some("h.example")
    );
}

#[test]
fn the_first_label_is_the_id_and_the_rest_the_registry() {
    let t = parse_target(&format!("{ID}.127.0.0.1:8080")).unwrap();
    assert_eq!(t.id, core::array::from_fn(|i| i as u8));
    assert_eq!(t.registry, "127.0.0.1:8080");
    let t = parse_target(&ID.to_uppercase()).unwrap();
    assert_eq!(t.registry, "", "no dot: no registry");
}

#[test]
fn ids_that_are_not_32_hex_digits_are_refused() {
    for bad in [
        &ID[..31],
        &format!("{ID}0"),
        &ID.replace('0', "g"),
        "",
        ".cdn.example",
    ] {
        let host = format!("{bad}.cdn.example");
        assert_eq!(parse_target(&host), Err(InputError::BadId), "{host}");
    }
}

#[test]
fn the_key_parameter_is_optional_and_strict() {
    let key = "00112233445566778899aabbccddeeff";
    let want: [u8; 16] = hex::decode(key).unwrap().try_into().unwrap();
    assert_eq!(parse_key(None), Ok(None));
    assert_eq!(parse_key(Some("other=1")), Ok(None));
    assert_eq!(parse_key(Some(&format!("key={key}"))), Ok(Some(want)));
    assert_eq!(
        parse_key(Some(&format!("a=b&key={}", key.to_uppercase()))),
        Ok(Some(want))
    );
    // Further digits are ignored (an even number of them).
    assert_eq!(parse_key(Some(&format!("key={key}abcd"))), Ok(Some(want)));
    // Percent-encoded digits decode.
    assert_eq!(
        parse_key(Some(&format!("key=%30{}", &key[1..]))),
        Ok(Some(want))
    );
    for bad in [
        "key=".to_owned(),
        "key".to_owned(),
        format!("key={}", &key[..31]),
        format!("key={key}a"),
        format!("key={}x", &key[..31]),
        format!("key={key}&key={key}"),
    ] {
        assert_eq!(parse_key(Some(&bad)), Err(InputError::BadKey), "{bad}");
    }
    assert_eq!(parse_key(Some("x=%ff")), Err(InputError::BadQuery));
}

#[test]
fn registry_hosts_default_to_port_80_and_ignore_case() {
    let r = RegistryHost::parse("CDN.Mycelium.grid.tf").unwrap();
    assert_eq!((r.host.as_str(), r.port), ("cdn.mycelium.grid.tf", 80));
    assert_eq!(RegistryHost::parse("cdn.mycelium.grid.tf:80"), Some(r));
    let r = RegistryHost::parse("[::1]:8080").unwrap();
    assert_eq!((r.host.as_str(), r.port), ("[::1]", 8080));
    assert_eq!(r.base_url(), "http://[::1]:8080");
    for bad in [
        "", ":80", "a:b", "a:70000", "[::1", "[nope]:1", "a/b", "a@b", "a b",
    ] {
        assert_eq!(RegistryHost::parse(bad), None, "{bad}");
    }
}

#[test]
fn only_a_registry_on_this_machine_is_local() {
    for local in ["localhost", "127.0.0.1:8080", "[::1]:8081", "cdn.localhost"] {
        assert!(RegistryHost::parse(local).unwrap().is_local(), "{local}");
    }
    for remote in [
        "cdn.mycelium.grid.tf",
        "10.0.0.1:8080",
        "[fd00::1]",
        "localhost.example",
    ] {
        assert!(!RegistryHost::parse(remote).unwrap().is_local(), "{remote}");
    }
}

#[test]
fn loopback_link_local_and_multicast_shard_hosts_are_local_scope() {
    for local in [
        "127.0.0.1",
        "127.8.9.1",
        "0.0.0.0",
        "169.254.1.1",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "febf::1",
        "ff02::1",
        "::ffff:127.0.0.1",
    ] {
        assert!(local_scope(local.parse().unwrap()), "{local}");
    }
    for remote in [
        "192.0.2.7",
        "10.1.2.3",
        "2001:db8::1",
        "fd00::1",
        "fec0::1",
        "::ffff:192.0.2.7",
    ] {
        assert!(!local_scope(remote.parse().unwrap()), "{remote}");
    }
}
