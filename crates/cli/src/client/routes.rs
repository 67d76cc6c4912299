//! `routes selected|fallback|queried|no-route` over
//! `/api/v1/admin/routes/…`.

use anyhow::bail;
use serde::Deserialize;

use super::args::RoutesCommand;
use super::http::Api;
use super::table::Table;

/// One route.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Route {
    subnet: String,
    next_hop: String,
    metric: Metric,
    seqno: u16,
}

/// A metric: a number, or `"infinite"` for a retracted route.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Metric {
    Finite(u64),
    Word(String),
}

/// A subnet being looked for; the expiration is a string of seconds.
#[derive(Debug, Deserialize)]
struct QueriedSubnet {
    subnet: String,
    expiration: String,
}

/// Runs one `routes` subcommand and returns what to print.
pub(crate) fn run(api: &Api, command: RoutesCommand) -> anyhow::Result<String> {
    let (path, json, what) = match command {
        RoutesCommand::Selected { json } => {
            ("admin/routes/selected", json, "listing selected routes")
        }
        RoutesCommand::Fallback { json } => {
            ("admin/routes/fallback", json, "listing fallback routes")
        }
        RoutesCommand::Queried { json } => {
            ("admin/routes/queried", json, "listing queried subnets")
        }
        RoutesCommand::NoRoute { .. } => bail!(
            "the node's API has no list of subnets without a route (upstream removed it); \
             `routes queried` lists the subnets still being looked for"
        ),
    };
    let answer = api.get(path)?.expect(&[200], what)?;
    if json {
        // The body unchanged, as upstream prints it.
        return Ok(answer.text() + "\n");
    }
    if path.ends_with("queried") {
        let queried: Vec<QueriedSubnet> = answer.json(what)?;
        Ok(render_queried(&queried))
    } else {
        let routes: Vec<Route> = answer.json(what)?;
        Ok(render_routes(&routes))
    }
}

fn render_routes(routes: &[Route]) -> String {
    let mut table = Table::new(&["Subnet", "Next Hop", "Metric", "Seq No"]);
    for r in routes {
        let metric = match &r.metric {
            Metric::Finite(m) => m.to_string(),
            Metric::Word(w) => w.clone(),
        };
        table.row(vec![
            r.subnet.clone(),
            r.next_hop.clone(),
            metric,
            r.seqno.to_string(),
        ]);
    }
    table.render()
}

fn render_queried(queried: &[QueriedSubnet]) -> String {
    let mut table = Table::new(&["Subnet", "Query expiration"]);
    for q in queried {
        table.row(vec![q.subnet.clone(), q.expiration.clone()]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn metrics_are_numbers_or_infinite() {
        let routes: Vec<Route> = serde_json::from_str(
            r#"[{"subnet":"5e4:42a4:26f:d028::/64","nextHop":"QUIC -> [::1]:9651","metric":0,"seqno":3},
                {"subnet":"400::/64","nextHop":"QUIC -> [::1]:9651","metric":"infinite","seqno":65535}]"#,
        )
        .unwrap();
        let text = render_routes(&routes);
        assert!(text.contains("| 0        | 3      |"), "{text}");
        assert!(text.contains("| infinite | 65535  |"), "{text}");
    }

    #[test]
    fn queried_subnets_show_their_expiration() {
        let q: Vec<QueriedSubnet> =
            serde_json::from_str(r#"[{"subnet":"5ff:1:2:3::/64","expiration":"14"}]"#).unwrap();
        assert_eq!(
            render_queried(&q),
            "+----------------+------------------+\n\
             | Subnet         | Query expiration |\n\
             +----------------+------------------+\n\
             | 5ff:1:2:3::/64 | 14               |\n\
             +----------------+------------------+\n"
        );
    }
}
