//! The churn soak at full size: `churn_soak --nodes 500 --minutes 30 --seed 1`.
//! Prints the figures of each seed; exits 1 if any seed found a routing loop or
//! lost a message that had time to arrive. See `mycelium_sim::soak` and the crate
//! README.

use std::process::ExitCode;

use mycelium_sim::soak::{self, SoakConfig};

const USAGE: &str = "usage: churn_soak [--nodes N] [--minutes M] [--seed S | --seeds S1,S2,..] \
[--degree D] [--messages-per-sec R] [--link-mtbf SECS] [--node-mtbf SECS] [--leaf-share F] [--leaf-routes N] [--quiet] [--trace] [--retracted-hold SECS] [--wall-limit MINUTES]
defaults: --nodes 500 --minutes 30 --seed 1";

fn main() -> ExitCode {
    match parse(std::env::args().skip(1)) {
        Ok(configs) => {
            let mut ok = true;
            for cfg in configs {
                let report = soak::run(cfg);
                println!("{report}");
                ok &= report.ok();
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Vec<SoakConfig>, String> {
    let mut nodes = 500usize;
    let mut minutes = 30.0f64;
    let mut seeds = vec![1u64];
    let mut degree = None;
    let mut rate = None;
    let mut link_mtbf = None;
    let mut node_mtbf = None;
    let mut progress = true;
    let mut trace = false;
    let mut hold = None;
    let mut wall_limit = None;
    let mut leaf_share = None;
    let mut leaf_routes = None;
    while let Some(flag) = args.next() {
        let mut value = |what: &str| args.next().ok_or_else(|| format!("{flag} needs {what}"));
        match flag.as_str() {
            "--nodes" => nodes = number(&value("a count")?)?,
            "--minutes" => minutes = number(&value("a number of minutes")?)?,
            "--seed" => seeds = vec![number(&value("a seed")?)?],
            "--seeds" => {
                seeds = value("seeds")?
                    .split(',')
                    .map(number)
                    .collect::<Result<_, _>>()?
            }
            "--degree" => degree = Some(number(&value("a degree")?)?),
            "--messages-per-sec" => rate = Some(number(&value("a rate")?)?),
            "--link-mtbf" => link_mtbf = Some(number::<f64>(&value("seconds")?)?),
            "--node-mtbf" => node_mtbf = Some(number::<f64>(&value("seconds")?)?),
            "--leaf-share" => leaf_share = Some(number::<f64>(&value("a share, 0 to 1")?)?),
            "--leaf-routes" => leaf_routes = Some(number::<usize>(&value("a count")?)?),
            "--quiet" => progress = false,
            "--trace" => trace = true,
            "--wall-limit" => wall_limit = Some(number::<f64>(&value("minutes")?)?),
            "--retracted-hold" => hold = Some(number::<f64>(&value("seconds")?)?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if nodes < 2 || !(minutes >= 0.0 && minutes.is_finite()) {
        return Err("need at least 2 nodes and a finite, non-negative time".into());
    }
    let positive = |x: Option<f64>| {
        x.map_or(Ok(()), |v| {
            if v > 0.0 && v.is_finite() {
                Ok(())
            } else {
                Err(format!("{v} is not a positive number"))
            }
        })
    };
    positive(rate)?;
    positive(link_mtbf)?;
    positive(node_mtbf)?;
    positive(hold)?;
    positive(wall_limit)?;
    if leaf_share.is_some_and(|s| !(0.0..1.0).contains(&s)) {
        return Err("--leaf-share must be at least 0 and less than 1".into());
    }
    if leaf_routes == Some(0) {
        return Err("--leaf-routes must be at least 1".into());
    }
    Ok(seeds
        .into_iter()
        .map(|seed| {
            let mut cfg = SoakConfig::new(seed, nodes, minutes);
            cfg.progress = progress;
            cfg.trace = trace;
            cfg.wall_limit = wall_limit.map(|m| std::time::Duration::from_secs_f64(m * 60.0));
            if let Some(s) = hold {
                cfg.router.retracted_hold = std::time::Duration::from_secs_f64(s);
            }
            if let Some(d) = degree {
                cfg.degree = d;
            }
            if let Some(share) = leaf_share {
                cfg.leaf_share = share;
            }
            if let Some(routes) = leaf_routes {
                cfg.leaf_routes = routes;
            }
            if let Some(r) = rate {
                cfg.messages_per_sec = r;
            }
            if let Some(s) = link_mtbf {
                cfg.link_mtbf = std::time::Duration::from_secs_f64(s);
            }
            if let Some(s) = node_mtbf {
                cfg.node_mtbf = std::time::Duration::from_secs_f64(s);
            }
            cfg
        })
        .collect())
}

fn number<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("{s:?} is not a number"))
}
