#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::FakeBackend;

fn state() -> AppState {
    AppState::new(
        Arc::new(FakeBackend::new()),
        ApiConfig::default(),
        CancellationToken::new(),
    )
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(f)
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        ".{0,40}".prop_map(Value::String),
        Just(json!("4ca::1")),
        Just(json!("aGk=")),
        Just(json!("tcp://1.2.3.4:9651")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..200)) {
        let answer = run(handle_text(&state(), &body));
        if let Some(a) = answer {
            prop_assert!(serde_json::from_str::<Value>(&a).is_ok());
        }
    }

    #[test]
    fn arbitrary_params_never_panic(m in 0..METHODS.len(), params in any_json()) {
        let (method, _) = METHODS[m];
        // Keep waits short: popMessage and pushMessage take seconds from params.
        let params = match params {
            Value::Array(mut a) if method == "popMessage" && a.len() > 1 => { a[1] = json!(0); Value::Array(a) }
            Value::Object(mut o) if method == "popMessage" => { o.remove("timeout"); Value::Object(o) }
            Value::Array(mut a) if method == "pushMessage" && a.len() > 1 => { a.truncate(1); Value::Array(a) }
            Value::Object(mut o) if method == "pushMessage" => { o.remove("reply_timeout"); o.remove("replyTimeout"); Value::Object(o) }
            other => other,
        };
        let request = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let answer = run(handle_text(&state(), request.to_string().as_bytes())).unwrap();
        let answer: Value = serde_json::from_str(&answer).unwrap();
        prop_assert!(answer.get("result").is_some() || answer["error"]["code"].is_i64());
    }
}
