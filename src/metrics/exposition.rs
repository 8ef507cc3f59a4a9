//! Text formats and content negotiation.
//!
//! prometheus-client writes OpenMetrics 1.0. Scrapers that do not ask for
//! it get the Prometheus text format 0.0.4, which differs in three ways
//! that matter here: no `# EOF`, no `# UNIT`, and counter families are
//! declared under their sample name (`foo_total`), since in 0.0.4 a TYPE
//! line names the samples it types. [`to_prometheus_text`] rewrites those
//! and nothing else.

use prometheus_client::encoding::text;
use prometheus_client::registry::Registry;

/// `Content-Type` of OpenMetrics 1.0 text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// `Content-Type` of the Prometheus text format 0.0.4.
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A text exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0, what Prometheus asks for first.
    OpenMetrics,
    /// Prometheus text 0.0.4, for everything else (curl, old scrapers).
    PrometheusText,
}

impl Format {
    /// Picks the format from an `Accept` header value.
    #[must_use]
    pub fn negotiate(accept: Option<&str>) -> Self {
        let wants_openmetrics = accept.is_some_and(|accept| {
            accept.split(',').any(|choice| {
                let mut parts = choice.split(';').map(str::trim);
                let media = parts.next().unwrap_or_default();
                let refused = parts.any(|param| param.replace(' ', "") == "q=0");
                media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
            })
        });
        if wants_openmetrics {
            Self::OpenMetrics
        } else {
            Self::PrometheusText
        }
    }

    /// What closes an exposition: `# EOF` in OpenMetrics, nothing in 0.0.4.
    #[must_use]
    pub fn end(self) -> &'static str {
        match self {
            Self::OpenMetrics => "# EOF\n",
            Self::PrometheusText => "",
        }
    }

    /// The `Content-Type` to answer with.
    #[must_use]
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Self::PrometheusText => PROMETHEUS_TEXT_CONTENT_TYPE,
        }
    }
}

/// Encodes `registry` in `format`, as a complete exposition.
#[must_use]
pub fn encode_registry(registry: &Registry, format: Format) -> String {
    let mut text = encode_families(registry, format);
    text.push_str(format.end());
    text
}

/// Encodes the families of `registry` without the closing `# EOF`, so
/// that more families can follow.
#[must_use]
pub fn encode_families(registry: &Registry, format: Format) -> String {
    let mut openmetrics = String::with_capacity(2048);
    // Writing into a String cannot fail; an encoder error would only come
    // from a collector, and ours do not fail.
    if text::encode_registry(&mut openmetrics, registry).is_err() {
        tracing::error!("encoding metrics failed; the exposition is truncated");
    }
    match format {
        Format::OpenMetrics => openmetrics,
        Format::PrometheusText => to_prometheus_text(&openmetrics),
    }
}

/// Rewrites OpenMetrics text as Prometheus text 0.0.4 (see the module docs).
#[must_use]
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // prometheus-client writes HELP before TYPE, so a counter's HELP line is
    // only known to need renaming when its TYPE line arrives.
    let mut pending_help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if line.starts_with("# HELP ") {
            flush(&mut out, pending_help.take());
            pending_help = Some(line);
            continue;
        }
        if let Some(declaration) = line.strip_prefix("# TYPE ") {
            let (name, kind) = declaration
                .rsplit_once(' ')
                .unwrap_or((declaration, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "stateset" | "gaugehistogram" | "unknown" => (name.to_owned(), "untyped"),
                other => (name.to_owned(), other),
            };
            if let Some(help) = pending_help.take() {
                let text = help
                    .strip_prefix("# HELP ")
                    .and_then(|rest| rest.split_once(' '));
                match text {
                    Some((_, help_text)) => out.push_str(&format!("# HELP {name} {help_text}\n")),
                    None => out.push_str(&format!("# HELP {name}\n")),
                }
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        flush(&mut out, pending_help.take());
        out.push_str(line);
        out.push('\n');
    }
    flush(&mut out, pending_help);
    out
}

fn flush(out: &mut String, line: Option<&str>) {
    if let Some(line) = line {
        out.push_str(line);
        out.push('\n');
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
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text; q=0")),
            Format::PrometheusText
        );
    }

    #[test]
    fn counters_info_eof_and_units_are_rewritten() {
        let openmetrics = "# HELP a_seconds A.\n# TYPE a_seconds gauge\n# UNIT a_seconds seconds\na_seconds 1.5\n# HELP c Count.\n# TYPE c counter\nc_total{x=\"y\"} 3\n# HELP b Build.\n# TYPE b info\nb_info{v=\"1\"} 1\n# EOF\n";
        let expected = "# HELP a_seconds A.\n# TYPE a_seconds gauge\na_seconds 1.5\n# HELP c_total Count.\n# TYPE c_total counter\nc_total{x=\"y\"} 3\n# HELP b_info Build.\n# TYPE b_info gauge\nb_info{v=\"1\"} 1\n";
        assert_eq!(to_prometheus_text(openmetrics), expected);
    }
}
