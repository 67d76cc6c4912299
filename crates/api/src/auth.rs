//! The optional bearer-token check in front of both servers.
//!
//! Upstream has no authentication (anyone who can reach the socket can send
//! messages as the node). With [`ApiConfig::token`](crate::ApiConfig) set, every
//! request must carry `Authorization: Bearer <token>`; the only exception is
//! `GET /`, the web view page, which holds no data and asks the user for the token.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use subtle::ConstantTimeEq;

use crate::model::ApiError;
use crate::AppState;

/// Lets a request through if no token is configured or it carries the right one.
pub(crate) async fn require_token(
    State(state): State<AppState>,
    req: Request<Body>,
    next: Next,
) -> Response {
    let Some(token) = state.cfg.token.as_deref() else {
        return next.run(req).await;
    };
    if req.method() == Method::GET && req.uri().path() == "/" {
        return next.run(req).await;
    }
    if carries_token(&req, token) {
        return next.run(req).await;
    }
    unauthorized()
}

fn carries_token(req: &Request<Body>, token: &str) -> bool {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return false;
    };
    let value = value.as_bytes();
    let Some(sep) = value.iter().position(|b| *b == b' ') else {
        return false;
    };
    let (scheme, given) = value.split_at(sep);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return false;
    }
    let given = given.trim_ascii();
    // Constant time over the contents; only the length can leak.
    bool::from(given.ct_eq(token.as_bytes()))
}

pub(crate) fn unauthorized() -> Response {
    let mut resp = (
        StatusCode::UNAUTHORIZED,
        Json(ApiError {
            error: "missing or invalid bearer token".to_owned(),
        }),
    )
        .into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    resp
}
