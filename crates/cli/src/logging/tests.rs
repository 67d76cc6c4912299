#![allow(clippy::unwrap_used)] // a test whose logger cannot be built should fail loudly

use std::io;
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;

use super::*;

/// A writer into a shared buffer, so a test can read what was logged.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Runs `f` under a logfmt subscriber and returns what it logged.
fn logfmt(colour: bool, directives: &str, f: impl FnOnce()) -> String {
    let out = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(out.clone())
        .with_env_filter(EnvFilter::builder().parse(directives).unwrap())
        .with_ansi(colour)
        .fmt_fields(LogfmtFields)
        .event_format(Logfmt { colour })
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    out.text()
}

/// The line without its `ts=… ` prefix, after checking that the prefix is there.
fn after_ts(line: &str) -> &str {
    let rest = line.strip_prefix("ts=").unwrap();
    let (ts, rest) = rest.split_once(' ').unwrap();
    // RFC 3339 in UTC: 2026-11-24T22:16:34.986065Z
    assert!(
        ts.len() >= 20 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
        "{ts}"
    );
    rest
}

#[test]
fn silent_wins_over_debug() {
    assert_eq!(level(false, false), LevelFilter::INFO);
    assert_eq!(level(true, false), LevelFilter::DEBUG);
    assert_eq!(level(false, true), LevelFilter::ERROR);
    assert_eq!(level(true, true), LevelFilter::ERROR);
}

#[test]
fn rust_log_directives_refine_the_chosen_level() {
    let f = filter(LevelFilter::INFO, Some("mycelium::router=trace")).unwrap();
    let text = f.to_string();
    assert!(
        text.contains("info") && text.contains("mycelium::router=trace"),
        "{text}"
    );
    // Empty or blank RUST_LOG is no RUST_LOG.
    assert_eq!(
        filter(LevelFilter::ERROR, Some(" ")).unwrap().to_string(),
        "error"
    );
    assert_eq!(
        filter(LevelFilter::DEBUG, None).unwrap().to_string(),
        "debug"
    );
}

#[test]
fn a_bare_level_in_rust_log_replaces_the_chosen_level() {
    let out = {
        let out = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(out.clone())
            .with_env_filter(filter(LevelFilter::ERROR, Some("debug")).unwrap())
            .finish();
        tracing::subscriber::with_default(subscriber, || tracing::debug!("shown"));
        out.text()
    };
    assert!(out.contains("shown"), "{out}");
}

#[test]
fn invalid_rust_log_is_an_error_naming_the_value() {
    for bad in ["foo=notalevel", "[", "a=b=c"] {
        let err = filter(LevelFilter::INFO, Some(bad)).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("invalid RUST_LOG value") && text.contains(bad),
            "{text}"
        );
    }
}

#[test]
fn logfmt_line_has_ts_level_target_message_and_fields() {
    let out = logfmt(false, "trace", || {
        tracing::info!(peer = "tcp://1.2.3.4:9651", count = 3, "Accepted new peer");
    });
    let line = out.strip_suffix('\n').unwrap();
    assert!(!line.contains('\n'));
    assert_eq!(
        after_ts(line),
        "level=info target=mycelium::logging::tests message=\"Accepted new peer\" \
         peer=tcp://1.2.3.4:9651 count=3"
    );
}

#[test]
fn logfmt_quotes_and_escapes_values_that_need_it() {
    let out = logfmt(false, "trace", || {
        tracing::warn!(
            empty = "",
            eq = "a=b",
            quote = "say \"hi\"",
            newline = "two\nlines",
            word = "plain",
            "x"
        );
    });
    let line = after_ts(out.trim_end());
    assert_eq!(
        line,
        "level=warn target=mycelium::logging::tests message=x empty=\"\" eq=\"a=b\" \
         quote=\"say \\\"hi\\\"\" newline=\"two\\nlines\" word=plain"
    );
}

#[test]
fn logfmt_appends_spans_and_their_fields() {
    let out = logfmt(false, "trace", || {
        let outer = tracing::info_span!("peer", endpoint = "tcp://1.2.3.4:1");
        let _outer = outer.enter();
        let inner = tracing::info_span!("link");
        let _inner = inner.enter();
        tracing::error!("gone");
    });
    assert!(
        out.trim_end().ends_with(
            "level=error target=mycelium::logging::tests message=gone \
             span=peer:link endpoint=tcp://1.2.3.4:1"
        ),
        "{out}"
    );
}

#[test]
fn logfmt_colours_the_level_only_when_asked() {
    let plain = logfmt(false, "trace", || tracing::info!("x"));
    assert!(!plain.contains('\x1b'), "{plain:?}");
    let coloured = logfmt(true, "trace", || tracing::info!("x"));
    assert!(
        coloured.contains("level=\x1b[32minfo\x1b[0m target="),
        "{coloured:?}"
    );
}

#[test]
fn filtered_events_are_not_written() {
    let out = logfmt(false, "warn", || {
        tracing::info!("hidden");
        tracing::warn!("shown");
    });
    assert!(!out.contains("hidden") && out.contains("shown"), "{out}");
}

#[test]
fn a_doubled_error_text_is_said_once() {
    assert_eq!(undoubled("a: b: a: b"), "a: b");
    assert_eq!(undoubled("a: b"), "a: b");
    assert_eq!(undoubled("x: x"), "x");
    assert_eq!(undoubled(""), "");
    let err = filter(LevelFilter::INFO, Some("foo=bar"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err.matches("error parsing level filter").count(),
        1,
        "{err}"
    );
}
