//! Log output: tracing events to stdout, filtered by `-d`, `--silent`
//! and `RUST_LOG`, written in one of three formats.
//!
//! * `compact`: tracing-subscriber's compact format, coloured only when stdout is a
//!   terminal (and `NO_COLOR` is not set);
//! * `logfmt`: one `ts=… level=… target=… message="…" key=value …` line per event,
//!   the level coloured under the same condition;
//! * `plain`: logfmt, never coloured.
//!
//! Upstream panics on an unparsable `RUST_LOG`; we report it and exit with status 2,
//! like any other bad input from the user.

use std::env;
use std::fmt;
use std::io::{self, IsTerminal};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use crate::args::LogFormat;

/// The variable whose directives are added to the level `-d`/`--silent` choose.
const FILTER_VAR: &str = "RUST_LOG";

/// The level `-d` and `--silent` ask for: ERROR if silent (silent wins), DEBUG if
/// debug, INFO otherwise.
pub(crate) fn level(debug: bool, silent: bool) -> LevelFilter {
    if silent {
        LevelFilter::ERROR
    } else if debug {
        LevelFilter::DEBUG
    } else {
        LevelFilter::INFO
    }
}

/// The filter: `level` for everything, then the directives of `extra` (the value
/// of `RUST_LOG`) on top. A directive for a target refines the level for that
/// target; a bare level in `extra` replaces `level`.
pub(crate) fn filter(level: LevelFilter, extra: Option<&str>) -> anyhow::Result<EnvFilter> {
    let mut directives = level.to_string();
    if let Some(extra) = extra.filter(|e| !e.trim().is_empty()) {
        // Directives are parsed in order and a later one for the same target
        // replaces an earlier one, so RUST_LOG goes last.
        directives.push(',');
        directives.push_str(extra);
    }
    EnvFilter::builder().parse(&directives).map_err(|e| {
        let e = e.to_string();
        anyhow::anyhow!(
            "invalid {FILTER_VAR} value {:?}: {}",
            extra.unwrap_or(""),
            undoubled(&e)
        )
    })
}

/// `text` without its second half when it reads `X: X`, as some of
/// tracing-subscriber's filter errors do (the level error repeats its own cause).
fn undoubled(text: &str) -> &str {
    text.match_indices(": ")
        .map(|(i, _)| (&text[..i], &text[i + 2..]))
        .find(|(head, tail)| head == tail)
        .map_or(text, |(head, _)| head)
}

/// Installs the global subscriber writing to stdout. Fails on an unusable
/// `RUST_LOG` (not Unicode, or a directive that does not parse), which the caller
/// should treat as a usage error.
pub(crate) fn init(debug: bool, silent: bool, format: LogFormat) -> anyhow::Result<()> {
    let extra = match env::var(FILTER_VAR) {
        Ok(v) => Some(v),
        Err(env::VarError::NotPresent) => None,
        Err(env::VarError::NotUnicode(v)) => {
            anyhow::bail!("invalid {FILTER_VAR} value {v:?}: not valid Unicode")
        }
    };
    let filter = filter(level(debug, silent), extra.as_deref())?;
    let no_colour = env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let colour = io::stdout().is_terminal() && !no_colour;
    let builder = tracing_subscriber::fmt()
        .with_writer(io::stdout)
        .with_env_filter(filter);
    let installed = match format {
        LogFormat::Compact => builder.compact().with_ansi(colour).try_init(),
        LogFormat::Logfmt | LogFormat::Plain => {
            let colour = colour && format == LogFormat::Logfmt;
            builder
                .with_ansi(colour)
                .fmt_fields(LogfmtFields)
                .event_format(Logfmt { colour })
                .try_init()
        }
    };
    installed.map_err(|e| anyhow::anyhow!("installing the logger: {e}"))
}

/// The logfmt event format: `ts`, `level`, `target`, `message`, the event's other
/// fields, then `span` (the names of the spans the event is in, outermost first,
/// joined by `:`) and the spans' fields.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Logfmt {
    /// Colour the level with ANSI escapes.
    pub(crate) colour: bool,
}

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        writer.write_str("ts=")?;
        SystemTime.format_time(&mut writer)?;
        writer.write_str(" level=")?;
        write_level(&mut writer, *meta.level(), self.colour)?;
        writer.write_str(" target=")?;
        write_value(&mut writer, meta.target())?;

        let mut fields = Pairs::default();
        event.record(&mut fields);
        if let Some(message) = &fields.message {
            writer.write_str(" message=")?;
            write_value(&mut writer, message)?;
        }
        if !fields.rest.is_empty() {
            write!(writer, " {}", fields.rest)?;
        }

        if let Some(scope) = ctx.event_scope() {
            let mut names = String::new();
            let mut span_fields = String::new();
            for span in scope.from_root() {
                if !names.is_empty() {
                    names.push(':');
                }
                names.push_str(span.name());
                let ext = span.extensions();
                if let Some(f) = ext.get::<FormattedFields<N>>().filter(|f| !f.is_empty()) {
                    span_fields.push(' ');
                    span_fields.push_str(f);
                }
            }
            if !names.is_empty() {
                writer.write_str(" span=")?;
                write_value(&mut writer, &names)?;
                writer.write_str(&span_fields)?;
            }
        }
        writeln!(writer)
    }
}

/// Formats span fields as logfmt pairs, so [`Logfmt`] can append them as they are.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LogfmtFields;

impl<'writer> FormatFields<'writer> for LogfmtFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut pairs = Pairs::default();
        fields.record(&mut pairs);
        if let Some(message) = &pairs.message {
            writer.write_str("message=")?;
            write_value(&mut writer, message)?;
            if !pairs.rest.is_empty() {
                writer.write_char(' ')?;
            }
        }
        writer.write_str(&pairs.rest)
    }
}

/// Collects fields: `message` apart, the others as `key=value` pairs.
#[derive(Default)]
struct Pairs {
    message: Option<String>,
    rest: String,
}

impl Pairs {
    fn push(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_owned());
            return;
        }
        if !self.rest.is_empty() {
            self.rest.push(' ');
        }
        self.rest.push_str(field.name());
        self.rest.push('=');
        // Writing to a String cannot fail.
        let _ = write_value(&mut self.rest, value);
    }
}

impl Visit for Pairs {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, &format!("{value:?}"));
    }
}

/// Writes a value bare when it is a plain word, else quoted with `"`, `\` and
/// control characters escaped.
fn write_value(w: &mut impl fmt::Write, value: &str) -> fmt::Result {
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '=' || c == '\\');
    if plain {
        w.write_str(value)
    } else {
        write!(w, "{value:?}")
    }
}

fn write_level(w: &mut Writer<'_>, level: Level, colour: bool) -> fmt::Result {
    let (name, ansi) = match level {
        Level::ERROR => ("error", "31"),
        Level::WARN => ("warn", "33"),
        Level::INFO => ("info", "32"),
        Level::DEBUG => ("debug", "34"),
        Level::TRACE => ("trace", "35"),
    };
    if colour {
        write!(w, "\x1b[{ansi}m{name}\x1b[0m")
    } else {
        w.write_str(name)
    }
}

#[cfg(test)]
mod tests;
