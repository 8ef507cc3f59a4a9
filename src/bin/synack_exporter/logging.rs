//! Log lines on stderr, in logfmt or JSON, shaped like the Prometheus
//! exporters' own: `ts`, `level`, `msg`, then the event's fields, all flat.
//!
//! ```text
//! ts=2026-11-22T05:03:19.756Z level=error msg="cannot load the config" err="synack.yml:4:14: ..."
//! {"ts":"2026-11-22T05:03:19.756Z","level":"error","msg":"cannot load the config","err":"synack.yml:4:14: ..."}
//! ```
//!
//! tracing-subscriber's own formatters nest the fields (`fields.message`)
//! and name the time `timestamp`, so log pipelines built for Prometheus'
//! exporters would not find `msg`. This layer writes each event as one
//! line with a single `write` to stderr, so lines from different threads
//! never interleave. Control characters in values are escaped in both
//! formats: a log line is always one line.

#![forbid(unsafe_code)]

use serde_json::Value;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// `key=value` pairs, values quoted when they need it.
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// Sends every event at `level` or above to stderr in `format`, for the
/// rest of the process.
pub fn init(level: Level, format: LogFormat) {
    // hickory, the resolver, logs every query at debug: at most its
    // warnings, so that --log.level=debug still shows the exporter's own.
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(level)
        .with_target("hickory", level.min(Level::WARN));
    tracing_subscriber::registry()
        .with(filter)
        .with(LineLayer { format })
        .init();
}

struct LineLayer {
    format: LogFormat,
}

impl<S: Subscriber> Layer<S> for LineLayer {
    fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = level_name(*event.metadata().level());
        let line = render(self.format, &timestamp(SystemTime::now()), level, &fields);
        // One write per line: concurrent events cannot interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// The message and the other fields of one event, in the order written.
#[derive(Default)]
struct Fields {
    message: String,
    others: Vec<(&'static str, Value)>,
}

impl Fields {
    fn push(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = match value {
                Value::String(text) => text,
                other => other.to_string(),
            };
        } else {
            self.others.push((field.name(), value));
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, Value::String(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, Value::String(value.to_owned()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, Value::String(value.to_string()));
    }
}

/// One log line, newline included.
fn render(format: LogFormat, ts: &str, level: &str, fields: &Fields) -> String {
    match format {
        LogFormat::Logfmt => {
            let mut line = format!("ts={ts} level={level} msg=");
            push_logfmt_value(&mut line, &fields.message);
            for (key, value) in &fields.others {
                let _ = write!(line, " {key}=");
                match value {
                    Value::String(text) => push_logfmt_value(&mut line, text),
                    other => line.push_str(&other.to_string()),
                }
            }
            line.push('\n');
            line
        }
        LogFormat::Json => {
            // Written key by key: serde_json's map sorts its keys, which
            // would put `ts`, `level` and `msg` among the fields.
            let mut line = String::from("{");
            let first = [
                ("ts", Value::from(ts)),
                ("level", Value::from(level)),
                ("msg", Value::from(fields.message.as_str())),
            ];
            let pairs = first
                .iter()
                .map(|(key, value)| (*key, value))
                .chain(fields.others.iter().map(|(key, value)| (*key, value)));
            for (index, (key, value)) in pairs.enumerate() {
                if index > 0 {
                    line.push(',');
                }
                // Serializing a string or a JSON value cannot fail.
                let _ = write!(line, "{}:{value}", Value::from(key));
            }
            line.push_str("}\n");
            line
        }
    }
}

/// Appends `value` bare when it is a plain word, else quoted with `"`, `\`
/// and control characters escaped.
fn push_logfmt_value(line: &mut String, value: &str) {
    let bare = !value.is_empty()
        && value
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '"' && c != '=' && c != '\\');
    if bare {
        line.push_str(value);
        return;
    }
    line.push('"');
    for c in value.chars() {
        match c {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            '\t' => line.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(line, "\\u{{{:04x}}}", u32::from(c));
            }
            c => line.push(c),
        }
    }
    line.push('"');
}

/// RFC 3339 in UTC with milliseconds, as Go's exporters write `ts`.
fn timestamp(now: SystemTime) -> String {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let (year, month, day) = civil_from_days(seconds / 86_400);
    let of_day = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
        since_epoch.subsec_millis()
    )
}

/// Year, month and day of the `days`th day after 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, for dates on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fields(message: &str, others: Vec<(&'static str, Value)>) -> Fields {
        Fields {
            message: message.to_owned(),
            others,
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        let at = |seconds: u64, millis: u64| {
            timestamp(UNIX_EPOCH + Duration::from_secs(seconds) + Duration::from_millis(millis))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(1_795_324_999, 756), "2026-11-22T05:23:19.756Z");
        assert_eq!(at(4_102_444_799, 999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn logfmt_is_flat_and_quotes_only_what_needs_it() {
        let line = render(
            LogFormat::Logfmt,
            "T",
            "error",
            &fields(
                "cannot load the config",
                vec![
                    ("err", "a.yml:1:2: bad \"x\"\nnext".into()),
                    ("address", "127.0.0.1:9215".into()),
                    ("count", 3.into()),
                    ("escape", "\u{1b}[31m".into()),
                ],
            ),
        );
        assert_eq!(
            line,
            "ts=T level=error msg=\"cannot load the config\" err=\"a.yml:1:2: bad \\\"x\\\"\\nnext\" \
             address=127.0.0.1:9215 count=3 escape=\"\\u{001b}[31m\"\n"
        );
    }

    #[test]
    fn json_is_flat_with_ts_level_msg() {
        let line = render(
            LogFormat::Json,
            "T",
            "info",
            &fields(
                "listening",
                vec![("address", "[::]:9215".into()), ("n", 2.into())],
            ),
        );
        assert!(
            line.starts_with(r#"{"ts":"T","level":"info","msg":"listening","address":"#),
            "{line}"
        );
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({"ts": "T", "level": "info", "msg": "listening", "address": "[::]:9215", "n": 2})
        );
        assert_eq!(line.matches('\n').count(), 1, "{line}");
    }
}
