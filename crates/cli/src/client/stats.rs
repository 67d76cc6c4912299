//! `stats packets` over `GET /api/v1/admin/stats/packets`.

use serde::Deserialize;

use super::http::Api;
use super::table::Table;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PacketStatistics {
    by_source: Vec<IpCounters>,
    by_destination: Vec<IpCounters>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IpCounters {
    ip: String,
    packet_count: u64,
    byte_count: u64,
}

/// `stats packets [--json]`.
pub(crate) fn packets(api: &Api, json: bool) -> anyhow::Result<String> {
    const WHAT: &str = "reading packet statistics";
    let answer = api.get("admin/stats/packets")?.expect(&[200], WHAT)?;
    if json {
        return Ok(answer.text() + "\n");
    }
    Ok(render(&answer.json(WHAT)?))
}

fn render(stats: &PacketStatistics) -> String {
    let table = |title: &str, counters: &[IpCounters]| {
        let mut t = Table::new(&[title, "Packets", "Bytes"]);
        for c in counters {
            t.row(vec![
                c.ip.clone(),
                c.packet_count.to_string(),
                c.byte_count.to_string(),
            ]);
        }
        t.render()
    };
    format!(
        "Statistics by Source IP:\n{}\nStatistics by Destination IP:\n{}",
        table("Source IP", &stats.by_source),
        table("Destination IP", &stats.by_destination)
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn two_tables_under_their_titles() {
        let stats: PacketStatistics = serde_json::from_str(
            r#"{"bySource":[{"ip":"54f:3b2d:c56e:1588::","packetCount":3,"byteCount":380}],
                "byDestination":[]}"#,
        )
        .unwrap();
        assert_eq!(
            render(&stats),
            "Statistics by Source IP:\n\
             +----------------------+---------+-------+\n\
             | Source IP            | Packets | Bytes |\n\
             +----------------------+---------+-------+\n\
             | 54f:3b2d:c56e:1588:: | 3       | 380   |\n\
             +----------------------+---------+-------+\n\
             \n\
             Statistics by Destination IP:\n\
             +----------------+---------+-------+\n\
             | Destination IP | Packets | Bytes |\n\
             +----------------+---------+-------+\n"
        );
    }
}
