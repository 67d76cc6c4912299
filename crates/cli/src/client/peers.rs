//! `peers list|add|remove` over `/api/v1/admin/peers`.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};

use mycelium_proto::endpoint::Endpoint;

use super::http::Api;
use super::table::{bytes, capitalised, duration, Table};

/// Everything but RFC 3986's unreserved characters is escaped in a path segment,
/// so `tcp://1.2.3.4:9651` becomes `tcp%3A%2F%2F1.2.3.4%3A9651`.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One entry of `GET /api/v1/admin/peers`, kept in the API's field
/// order so `--json` prints it as the node does.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PeerStats {
    endpoint: ApiEndpoint,
    #[serde(rename = "type")]
    peer_type: String,
    connection_state: String,
    tx_bytes: u64,
    rx_bytes: u64,
    discovered: u64,
    last_connected: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ApiEndpoint {
    proto: String,
    addr: ApiAddr,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ApiAddr {
    Socket(String),
    Vsock { cid: u32, port: u32 },
}

/// `peers list [--json]`.
pub(crate) fn list(api: &Api, json: bool) -> anyhow::Result<String> {
    const WHAT: &str = "listing peers";
    let peers: Vec<PeerStats> = api.get("admin/peers")?.expect(&[200], WHAT)?.json(WHAT)?;
    if json {
        Ok(serde_json::to_string_pretty(&peers)? + "\n")
    } else {
        Ok(render(&peers))
    }
}

/// `peers add <EP>…`: one request per endpoint, stopping at the first refusal.
pub(crate) fn add(api: &Api, endpoints: &[Endpoint]) -> anyhow::Result<()> {
    #[derive(Serialize)]
    struct AddPeer {
        endpoint: String,
    }
    for ep in endpoints {
        let body = AddPeer {
            endpoint: ep.to_string(),
        };
        api.post_json("admin/peers", &body)?
            .expect(&[200, 201, 204], &format!("adding peer {ep}"))?;
    }
    Ok(())
}

/// `peers remove <EP>…`: one request per endpoint, stopping at the first failure.
pub(crate) fn remove(api: &Api, endpoints: &[Endpoint]) -> anyhow::Result<()> {
    for ep in endpoints {
        let path = format!("admin/peers/{}", endpoint_segment(ep));
        api.delete(&path)?
            .expect(&[200, 204], &format!("removing peer {ep}"))?;
    }
    Ok(())
}

/// The endpoint URI as one percent-encoded path segment.
pub(crate) fn endpoint_segment(ep: &Endpoint) -> String {
    utf8_percent_encode(&ep.to_string(), PATH_SEGMENT).to_string()
}

fn render(peers: &[PeerStats]) -> String {
    let mut table = Table::new(&[
        "Protocol",
        "Socket",
        "Type",
        "Connection",
        "Rx total",
        "Tx total",
        "Discovered",
        "Last connection",
    ]);
    for p in peers {
        let socket = match &p.endpoint.addr {
            ApiAddr::Socket(s) => s.clone(),
            ApiAddr::Vsock { cid, port } => format!("{cid}:{port}"),
        };
        table.row(vec![
            capitalised(&p.endpoint.proto),
            socket,
            capitalised(&p.peer_type),
            capitalised(&p.connection_state),
            bytes(p.rx_bytes),
            bytes(p.tx_bytes),
            duration(p.discovered),
            p.last_connected
                .map_or_else(|| "Never connected".to_owned(), duration),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn endpoints_are_one_path_segment() {
        let ep: Endpoint = "tcp://1.2.3.4:9651".parse().unwrap();
        assert_eq!(endpoint_segment(&ep), "tcp%3A%2F%2F1.2.3.4%3A9651");
        let ep: Endpoint = "quic://[2001:db8::1]:9651".parse().unwrap();
        assert_eq!(
            endpoint_segment(&ep),
            "quic%3A%2F%2F%5B2001%3Adb8%3A%3A1%5D%3A9651"
        );
    }

    #[test]
    fn peer_rows_read_like_upstreams() {
        let peers: Vec<PeerStats> = serde_json::from_str(
            r#"[{"endpoint":{"proto":"quic","addr":{"socket":"[::ffff:127.0.0.1]:29652"}},
                 "type":"inbound","connectionState":"alive","txBytes":3297,"rxBytes":2529,
                 "discovered":415,"lastConnected":385},
                {"endpoint":{"proto":"vsock","addr":{"vsock":{"cid":3,"port":9651}}},
                 "type":"linkLocalDiscovery","connectionState":"connecting","txBytes":0,
                 "rxBytes":0,"discovered":2,"lastConnected":null}]"#,
        )
        .unwrap();
        let text = render(&peers);
        assert!(
            text.contains(
                "| Quic     | [::ffff:127.0.0.1]:29652 | Inbound            | Alive      | \
                 2.47 KiB | 3.22 KiB | 6m 55s     | 6m 25s          |"
            ),
            "{text}"
        );
        assert!(
            text.contains("| Vsock    | 3:9651 ") && text.contains("| Never connected |"),
            "{text}"
        );
        // The JSON form keeps the API's shape and field order.
        let json = serde_json::to_string(&peers[1]).unwrap();
        assert_eq!(
            json,
            r#"{"endpoint":{"proto":"vsock","addr":{"vsock":{"cid":3,"port":9651}}},"type":"linkLocalDiscovery","connectionState":"connecting","txBytes":0,"rxBytes":0,"discovered":2,"lastConnected":null}"#
        );
    }
}
