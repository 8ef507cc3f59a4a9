//! The one writer of metrics text, in either format, and content
//! negotiation.
//!
//! Every exposition the exporter serves (`/probe`, its own series on
//! `/metrics`, and the scheduled targets) is written by [`Writer`]. It
//! knows the three ways in which the Prometheus text format 0.0.4 differs
//! from OpenMetrics 1.0 for what we export, and writes each format
//! directly, with no second pass over the text:
//!
//! - a counter family is declared under its sample name (`foo_total`) in
//!   0.0.4, where a TYPE line names the samples it types, and under its
//!   own name (`foo`) in OpenMetrics;
//! - an info family is a gauge named `foo_info` in 0.0.4;
//! - only OpenMetrics ends with `# EOF`.
//!
//! prometheus-client writes OpenMetrics only, so it could serve one of
//! the two formats and the other would need a rewrite of its output,
//! which is what this replaces. `tests/integration/openmetrics.rs` checks every
//! exposition with a real parser in both formats.

#![forbid(unsafe_code)]

use std::fmt::{self, Write as _};

/// `Content-Type` of OpenMetrics 1.0 text.
pub(crate) const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// `Content-Type` of the Prometheus text format 0.0.4.
pub(crate) const PROMETHEUS_TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A text exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// OpenMetrics 1.0, what Prometheus asks for first.
    OpenMetrics,
    /// Prometheus text 0.0.4, for everything else (curl, old scrapers).
    PrometheusText,
}

impl Format {
    /// Picks the format from an `Accept` header value.
    pub(crate) fn negotiate(accept: Option<&str>) -> Self {
        let wants_openmetrics = accept.is_some_and(|accept| {
            accept.split(',').any(|choice| {
                let mut parts = choice.split(';').map(str::trim);
                let media = parts.next().unwrap_or_default();
                media.eq_ignore_ascii_case("application/openmetrics-text") && !parts.any(refuses)
            })
        });
        if wants_openmetrics {
            Self::OpenMetrics
        } else {
            Self::PrometheusText
        }
    }

    /// What closes an exposition: `# EOF` in OpenMetrics, nothing in 0.0.4.
    pub(crate) fn end(self) -> &'static str {
        match self {
            Self::OpenMetrics => "# EOF\n",
            Self::PrometheusText => "",
        }
    }

    /// The `Content-Type` to answer with.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Self::PrometheusText => PROMETHEUS_TEXT_CONTENT_TYPE,
        }
    }
}

/// Whether an `Accept` parameter is a weight of zero (`q=0`, `q = 0.0`):
/// the client refuses that media type.
fn refuses(param: &str) -> bool {
    param.split_once('=').is_some_and(|(name, weight)| {
        name.trim().eq_ignore_ascii_case("q") && weight.trim().parse::<f64>() == Ok(0.0)
    })
}

/// The type of a metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Gauge,
    Counter,
    Histogram,
    /// A constant 1 whose labels carry the information.
    Info,
}

/// A sample's value: an integer, or a float written as Prometheus reads it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Value {
    Int(u64),
    Float(f64),
}

/// `Value::Int` from the types that convert into `u64` without loss.
macro_rules! int_from {
    ($($from:ty),*) => {
        $(impl From<$from> for Value {
            fn from(value: $from) -> Self {
                Self::Int(u64::from(value))
            }
        })*
    };
}

int_from!(u64, u32, u8, bool);

impl From<usize> for Value {
    fn from(value: usize) -> Self {
        Self::Int(u64::try_from(value).unwrap_or(u64::MAX))
    }
}

impl From<f64> for Value {
    fn from(value: f64) -> Self {
        Self::Float(value)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Int(value) => write!(f, "{value}"),
            // Rust writes infinities as "inf", which neither format reads.
            Self::Float(value) if value == f64::INFINITY => f.write_str("+Inf"),
            Self::Float(value) if value == f64::NEG_INFINITY => f.write_str("-Inf"),
            Self::Float(value) => write!(f, "{value}"),
        }
    }
}

/// Writes families and samples into a string in one format.
#[derive(Debug)]
pub(crate) struct Writer<'a> {
    out: &'a mut String,
    format: Format,
}

impl<'a> Writer<'a> {
    /// A writer appending to `out` in `format`.
    pub(crate) fn new(out: &'a mut String, format: Format) -> Self {
        Self { out, format }
    }

    /// How long the text written so far is, in bytes.
    pub(crate) fn len(&self) -> usize {
        self.out.len()
    }

    /// The HELP and TYPE lines of a family. `name` is the family's own
    /// name: without `_total` for a counter, without `_info` for an info.
    pub(crate) fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let (suffix, kind) = match (self.format, kind) {
            (Format::OpenMetrics, Kind::Info) => ("", "info"),
            (Format::PrometheusText, Kind::Info) => ("_info", "gauge"),
            (Format::OpenMetrics, Kind::Counter) => ("", "counter"),
            (Format::PrometheusText, Kind::Counter) => ("_total", "counter"),
            (_, Kind::Gauge) => ("", "gauge"),
            (_, Kind::Histogram) => ("", "histogram"),
        };
        // Writing to a String cannot fail.
        let _ = writeln!(self.out, "# HELP {name}{suffix} {help}");
        let _ = writeln!(self.out, "# TYPE {name}{suffix} {kind}");
    }

    /// One sample, `{name}{suffix}{labels} value`. `labels` are pieces of
    /// escaped `name="value"` text, written one after the other inside the
    /// braces (a piece brings its own commas); no braces when all are empty.
    pub(crate) fn sample(&mut self, name: &str, suffix: &str, labels: &[&str], value: Value) {
        self.out.push_str(name);
        self.out.push_str(suffix);
        if labels.iter().any(|piece| !piece.is_empty()) {
            self.out.push('{');
            for piece in labels {
                self.out.push_str(piece);
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family with one unlabelled gauge sample.
    pub(crate) fn gauge(&mut self, name: &str, help: &str, value: impl Into<Value>) {
        self.family(name, Kind::Gauge, help);
        self.sample(name, "", &[], value.into());
    }

    /// The samples of a histogram with `labels` (pieces as in
    /// [`sample`](Self::sample)): `cumulative[i]` observations at or
    /// below `bounds[i]`, `count` in all, summing to `sum`.
    pub(crate) fn histogram(
        &mut self,
        name: &str,
        labels: &[&str],
        buckets: (&[f64], &[u64]),
        count: u64,
        sum: f64,
    ) {
        let (bounds, cumulative) = buckets;
        let mut with_bound: String = labels.concat();
        if !with_bound.is_empty() {
            with_bound.push(',');
        }
        let prefix = with_bound.len();
        for (bound, in_bucket) in bounds.iter().zip(cumulative) {
            with_bound.truncate(prefix);
            // `{:?}` keeps a whole bound's `.0` (`le="1.0"`), as the
            // series have always been named.
            let _ = write!(with_bound, "le=\"{bound:?}\"");
            self.sample(name, "_bucket", &[&with_bound], Value::Int(*in_bucket));
        }
        with_bound.truncate(prefix);
        with_bound.push_str("le=\"+Inf\"");
        self.sample(name, "_bucket", &[&with_bound], Value::Int(count));
        self.sample(name, "_sum", labels, Value::Float(sum));
        self.sample(name, "_count", labels, Value::Int(count));
    }

    /// Closes the exposition: `# EOF` in OpenMetrics.
    pub(crate) fn end(self) {
        self.out.push_str(self.format.end());
    }
}

/// Appends `value` escaped for a label value: `\`, `"` and newlines.
pub(crate) fn push_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            other => out.push(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_accept() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("*/*")), Format::PrometheusText);
        assert_eq!(Format::negotiate(None), Format::PrometheusText);
        for refused in ["q=0", "q = 0", "Q=0.0", "q=0.000"] {
            assert_eq!(
                Format::negotiate(Some(&format!("application/openmetrics-text; {refused}"))),
                Format::PrometheusText,
                "{refused}"
            );
        }
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text; q=0.1")),
            Format::OpenMetrics
        );
    }

    fn sample_families(format: Format) -> String {
        let mut out = String::new();
        let mut writer = Writer::new(&mut out, format);
        writer.gauge("a_seconds", "A.", 1.5);
        writer.family("c", Kind::Counter, "Count.");
        writer.sample("c", "_total", &["x=\"y\""], Value::Int(3));
        writer.family("b", Kind::Info, "Build.");
        writer.sample("b", "_info", &["v=\"1\""], Value::Int(1));
        writer.family("h", Kind::Histogram, "Lag.");
        writer.histogram("h", &[], (&[0.5], &[1]), 2, 1.25);
        writer.end();
        out
    }

    #[test]
    fn each_format_is_written_directly() {
        let histogram = "# HELP h Lag.\n# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1.25\nh_count 2\n";
        assert_eq!(
            sample_families(Format::OpenMetrics),
            format!(
                "# HELP a_seconds A.\n# TYPE a_seconds gauge\na_seconds 1.5\n# HELP c Count.\n# TYPE c counter\nc_total{{x=\"y\"}} 3\n# HELP b Build.\n# TYPE b info\nb_info{{v=\"1\"}} 1\n{histogram}# EOF\n"
            )
        );
        assert_eq!(
            sample_families(Format::PrometheusText),
            format!(
                "# HELP a_seconds A.\n# TYPE a_seconds gauge\na_seconds 1.5\n# HELP c_total Count.\n# TYPE c_total counter\nc_total{{x=\"y\"}} 3\n# HELP b_info Build.\n# TYPE b_info gauge\nb_info{{v=\"1\"}} 1\n{histogram}"
            )
        );
    }

    #[test]
    fn values_are_written_as_prometheus_reads_them() {
        let text = |value: Value| value.to_string();
        assert_eq!(text(Value::Float(f64::INFINITY)), "+Inf");
        assert_eq!(text(Value::Float(0.000_012)), "0.000012");
        assert_eq!(text(Value::Float(1.0)), "1");
        assert_eq!(text(Value::Int(u64::MAX)), "18446744073709551615");
        let mut escaped = String::new();
        push_label_value(&mut escaped, "a\"b\\c\nd");
        assert_eq!(escaped, r#"a\"b\\c\nd"#);
    }

    /// Lines in a form where two equivalent expositions are equal: sample
    /// values as numbers (prometheus-client writes a float gauge's `1` as
    /// `1.0`), samples in any order (it writes a histogram's sum first).
    fn normalised(text: &str) -> std::collections::BTreeSet<String> {
        text.lines()
            .map(|line| match line.rsplit_once(' ') {
                Some((series, value)) if !line.starts_with('#') => {
                    format!("{series} {}", value.parse::<f64>().unwrap())
                }
                _ => line.to_owned(),
            })
            .collect()
    }

    /// prometheus-client, the Rust client the project started with, is the
    /// reference for OpenMetrics: the same families through both writers
    /// must give the same exposition.
    #[test]
    fn openmetrics_matches_prometheus_client() {
        use prometheus_client::encoding::text::encode;
        use prometheus_client::metrics::counter::Counter;
        use prometheus_client::metrics::family::Family;
        use prometheus_client::metrics::gauge::Gauge;
        use prometheus_client::metrics::histogram::Histogram;
        use prometheus_client::metrics::info::Info;
        use prometheus_client::registry::Registry;

        let mut registry = Registry::default();
        // prometheus-client ends each help with a period of its own.
        registry.register("b", "Build", Info::new(vec![("v", "1")]));
        let counters = Family::<Vec<(&str, &str)>, Counter>::default();
        counters.get_or_create(&vec![("x", "y")]).inc_by(3);
        registry.register("c", "Count", counters);
        let gauge = Gauge::<i64>::default();
        gauge.set(7);
        registry.register("g", "Gauge", gauge);
        let histogram = Histogram::new([0.5, 1.0]);
        histogram.observe(0.25);
        histogram.observe(2.0);
        registry.register("h", "Lag", histogram);
        let mut reference = String::new();
        encode(&mut reference, &registry).unwrap();

        let mut ours = String::new();
        let mut writer = Writer::new(&mut ours, Format::OpenMetrics);
        writer.family("b", Kind::Info, "Build.");
        writer.sample("b", "_info", &["v=\"1\""], Value::Int(1));
        writer.family("c", Kind::Counter, "Count.");
        writer.sample("c", "_total", &["x=\"y\""], Value::Int(3));
        writer.gauge("g", "Gauge.", 7_u64);
        writer.family("h", Kind::Histogram, "Lag.");
        writer.histogram("h", &[], (&[0.5, 1.0], &[1, 1]), 2, 2.25);
        writer.end();
        assert_eq!(
            normalised(&ours),
            normalised(&reference),
            "{ours}\n{reference}"
        );
    }
}
