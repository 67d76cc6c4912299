//! The node's management APIs: HTTP REST under `/api/v1`, JSON-RPC 2.0, the
//! project's OpenAPI document and the web view (API.md).
