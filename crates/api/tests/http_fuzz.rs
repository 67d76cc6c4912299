//! Arbitrary requests to the REST router (no network: `tower::ServiceExt::oneshot`)
//! never panic and always get an answer from the documented families.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request};
use mycelium_api::http::OPERATIONS;
use mycelium_api::{http_router, ApiConfig, FakeBackend};
use proptest::prelude::*;
use tower::ServiceExt;

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9%=+/:._-]{0,24}",
        Just("tcp%3A%2F%2F1.2.3.4%3A9651".to_owned()),
        Just("aGk=".to_owned()),
        Just("0123456789abcdef".to_owned()),
        Just("400::%2F7".to_owned()),
        Just("%ff%fe".to_owned()),
    ]
}

fn request() -> impl Strategy<Value = (String, String, String, Vec<u8>, bool)> {
    (
        prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH"]),
        (0..OPERATIONS.len(), segment(), segment()),
        "[a-z_=&0-9%+]{0,30}",
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            Just(br#"{"dst":{"ip":"::1"},"payload":"aGk="}"#.to_vec()),
            Just(b"[1,2,3]".to_vec()),
            Just(br#"{"endpoint":"tcp://1.2.3.4:1","subnet":"::/0","socketPath":"/x","accept":true}"#.to_vec()),
        ],
        any::<bool>(),
    )
        .prop_map(|(method, (op, a, b), query, body, json)| {
            // The subnet gets `b`; every other parameter gets `a`.
            let mut path = OPERATIONS[op].path.replace("{subnet}", &b);
            for name in ["{endpoint}", "{id}", "{topic}", "{ip}"] {
                path = path.replace(name, &a);
            }
            (method.to_owned(), path, query, body, json)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_requests_get_an_answer((method, path, query, body, json) in request()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let status = rt.block_on(async {
            let router = http_router(Arc::new(FakeBackend::new()), ApiConfig::default());
            let uri = if query.is_empty() { path.clone() } else { format!("{path}?{query}") };
            let Ok(method) = Method::from_bytes(method.as_bytes()) else { return 400 };
            let mut req = Request::builder().method(method).uri(uri);
            if json {
                req = req.header("content-type", "application/json");
            }
            let Ok(req) = req.body(Body::from(body)) else { return 400 };
            router.oneshot(req).await.unwrap().status().as_u16()
        });
        prop_assert!(
            [200, 201, 204, 400, 404, 405, 408, 409, 413, 415, 422, 503, 507].contains(&status),
            "{path}?{query}: {status}"
        );
    }
}
