//! The ASCII tables client subcommands print: every cell padded by one
//! space and left-aligned, a `+---+` line above, between and below all rows, the
//! header being the first row. Also the units the tables show sizes and ages in.

use std::fmt::Write as _;

/// A table under construction: a header and rows of the same width.
pub(crate) struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names.
    pub(crate) fn new(header: &[&str]) -> Self {
        Self {
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    /// Adds a row; missing cells are left empty, extra cells get their own columns.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, each line ending in a newline.
    pub(crate) fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut rule = String::from("+");
        for w in &widths {
            rule.push_str(&"-".repeat(w + 2));
            rule.push('+');
        }
        let mut out = String::new();
        out.push_str(&rule);
        out.push('\n');
        for row in &self.rows {
            out.push('|');
            for (i, w) in widths.iter().enumerate() {
                let cell = row.get(i).map_or("", String::as_str);
                let pad = w - cell.chars().count();
                // Writing to a String cannot fail.
                let _ = write!(out, " {cell}{} |", " ".repeat(pad));
            }
            out.push('\n');
            out.push_str(&rule);
            out.push('\n');
        }
        out
    }
}

/// A byte count in binary units with two decimals: `68.00 B`, `2.47 KiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut unit = 0;
    let mut scaled = n;
    while scaled >= 1024 && unit + 1 < UNITS.len() {
        scaled /= 1024;
        unit += 1;
    }
    // Lossy for counts above 2^53, which only matters past the second decimal.
    #[allow(clippy::cast_precision_loss)]
    let value = n as f64 / 1024f64.powi(unit as i32);
    format!("{value:.2} {}", UNITS[unit])
}

/// A number of seconds as `Xd Xh Xm Xs`, dropping leading zero units: `6m 55s`,
/// `1h 0m 3s`, `0s`.
pub(crate) fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h {m}m {s}s")
    } else if h > 0 {
        format!("{h}h {m}m {s}s")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

/// `word` with its first letter in upper case: the API's `linkLocalDiscovery`
/// becomes the table's `LinkLocalDiscovery`, `tcp` becomes `Tcp`.
pub(crate) fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_have_rules_between_all_rows() {
        let mut t = Table::new(&["Subnet", "Metric"]);
        t.row(vec!["5e4:42a4:26f:d028::/64".into(), "0".into()]);
        t.row(vec!["400::/64".into(), "infinite".into()]);
        assert_eq!(
            t.render(),
            "+------------------------+----------+\n\
             | Subnet                 | Metric   |\n\
             +------------------------+----------+\n\
             | 5e4:42a4:26f:d028::/64 | 0        |\n\
             +------------------------+----------+\n\
             | 400::/64               | infinite |\n\
             +------------------------+----------+\n"
        );
    }

    #[test]
    fn an_empty_table_is_its_header() {
        assert_eq!(
            Table::new(&["IPv6 Address"]).render(),
            "+--------------+\n| IPv6 Address |\n+--------------+\n"
        );
    }

    #[test]
    fn byte_counts_use_binary_units() {
        assert_eq!(bytes(0), "0.00 B");
        assert_eq!(bytes(68), "68.00 B");
        assert_eq!(bytes(1023), "1023.00 B");
        assert_eq!(bytes(1024), "1.00 KiB");
        assert_eq!(bytes(2529), "2.47 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 + 512 * 1024), "3.50 MiB");
        assert_eq!(bytes(u64::MAX), "16.00 EiB");
    }

    #[test]
    fn durations_drop_leading_zero_units() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(9), "9s");
        assert_eq!(duration(415), "6m 55s");
        assert_eq!(duration(3603), "1h 0m 3s");
        assert_eq!(duration(90_061), "1d 1h 1m 1s");
    }

    #[test]
    fn api_names_are_capitalised() {
        assert_eq!(capitalised("linkLocalDiscovery"), "LinkLocalDiscovery");
        assert_eq!(capitalised("quic"), "Quic");
        assert_eq!(capitalised(""), "");
    }
}
