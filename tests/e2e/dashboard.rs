//! The queries of dashboards/synack_exporter.json, and Grafana's variable
//! substitution, so the test can run them against Prometheus.

use serde_json::Value;

/// Every `expr` of the dashboard, with where it is (panel title and refId).
pub fn expressions(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(json: &Value, title: &str, out: &mut Vec<(String, String)>) {
        match json {
            Value::Object(entries) => {
                let title = json["title"].as_str().unwrap_or(title);
                for (key, value) in entries {
                    match (key.as_str(), value) {
                        ("expr", Value::String(expr)) => {
                            let ref_id = json["refId"].as_str().unwrap_or("?");
                            out.push((format!("panel {title:?} query {ref_id}"), expr.clone()));
                        }
                        _ => walk(value, title, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, title, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, "", &mut out);
    out
}

/// The dashboard's template variables.
pub fn variables(dashboard: &Value) -> &[Value] {
    dashboard["templating"]["list"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// Query variables: `(name, definition)`.
pub fn variable_queries(dashboard: &Value) -> Vec<(String, String)> {
    variables(dashboard)
        .iter()
        .filter(|variable| variable["type"] == "query")
        .map(|variable| {
            let name = variable["name"].as_str().unwrap_or("?");
            let definition = [
                &variable["definition"],
                &variable["query"],
                &variable["query"]["query"],
            ]
            .into_iter()
            .find_map(Value::as_str)
            .unwrap_or("");
            (name.to_owned(), definition.to_owned())
        })
        .collect()
}

/// The panels, and those inside rows.
pub fn all_panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in items(&dashboard["panels"]) {
        out.push(panel);
        out.extend(items(&panel["panels"]));
    }
    out
}

/// The query of the panel titled `title`, when it has exactly one.
pub fn panel_query<'a>(dashboard: &'a Value, title: &str) -> Option<&'a str> {
    let panel = all_panels(dashboard)
        .into_iter()
        .find(|panel| panel["title"] == title)?;
    match items(&panel["targets"]) {
        [target] => target["expr"].as_str(),
        _ => None,
    }
}

/// The items of an array; none for anything else.
pub fn items(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// The dashboard's own variables plus Grafana's built-in ones.
pub fn substitutions(values: &[(&str, &str)]) -> Vec<(String, String)> {
    let builtin = [
        ("datasource", ""),
        ("__rate_interval", "1m"),
        ("__interval", "15s"),
        ("__interval_ms", "15000"),
        ("__range", "5m"),
        ("__range_s", "300"),
        ("__range_ms", "300000"),
    ];
    builtin
        .iter()
        .chain(values)
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

/// [`substitutions`] with every variable of the dashboard at "All" (`.*`).
pub fn all_selected() -> Vec<(String, String)> {
    substitutions(&[
        ("job", ".*"),
        ("instance", ".*"),
        ("target", ".*"),
        ("module", ".*"),
        ("exporter", ".*"),
    ])
}

/// Replaces `$name`, `${name}` and `${name:format}`; `$1` (label_replace)
/// stays. An unknown variable is an error.
pub fn substitute(expr: &str, values: &[(String, String)]) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        let (name, after) = if let Some(braced) = rest.strip_prefix('{') {
            let end = braced.find('}').ok_or("unclosed ${")?;
            let name = braced[..end].split(':').next().unwrap_or("");
            (name, &braced[end + 1..])
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        if name.is_empty() || name.chars().all(|c| c.is_ascii_digit()) {
            out.push('$');
            continue;
        }
        let value = values
            .iter()
            .find(|(known, _)| known == name)
            .map(|(_, value)| value)
            .ok_or_else(|| format!("unknown variable ${name}"))?;
        out.push_str(value);
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

#[test]
fn substitution_keeps_label_replace_groups() {
    let values = substitutions(&[("job", ".*")]);
    assert_eq!(
        substitute(
            "rate(x{job=~\"$job\",j=~\"${job:regex}\"}[$__rate_interval]) and label_replace(y, \"a\", \"$1\", \"b\", \"(.*)\")",
            &values
        )
        .unwrap(),
        "rate(x{job=~\".*\",j=~\".*\"}[1m]) and label_replace(y, \"a\", \"$1\", \"b\", \"(.*)\")"
    );
    assert!(substitute("x{a=\"$nope\"}", &values).is_err());
}

#[test]
fn expressions_and_variables_are_found_at_any_depth() {
    let dashboard = serde_json::json!({
        "templating": {"list": [
            {"name": "ds", "type": "datasource", "query": "prometheus"},
            {"name": "job", "type": "query", "definition": "label_values(up, job)"},
            {"name": "old", "type": "query", "query": {"query": "label_values(x, y)"}},
        ]},
        "panels": [
            {"type": "row", "title": "R", "panels": [
                {"title": "A", "targets": [{"refId": "A", "expr": "up"}]},
            ]},
        ],
    });
    assert_eq!(
        expressions(&dashboard),
        [("panel \"A\" query A".to_owned(), "up".to_owned())]
    );
    assert_eq!(
        variable_queries(&dashboard),
        [
            ("job".to_owned(), "label_values(up, job)".to_owned()),
            ("old".to_owned(), "label_values(x, y)".to_owned()),
        ]
    );
    assert_eq!(all_panels(&dashboard).len(), 2);
}
