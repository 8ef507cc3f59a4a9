//! The label matchers of PromQL expressions, as far as the job check in
//! `jobs.rs` needs them.

use regex::Regex;

/// A `{...}` regex as Prometheus applies it: fully anchored.
pub fn anchored_regex(pattern: &str) -> Regex {
    Regex::new(&format!("^(?:{pattern})$"))
        .unwrap_or_else(|e| panic!("regex {pattern:?} does not compile: {e}"))
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

#[derive(Debug, PartialEq)]
pub struct LabelMatcher {
    pub label: String,
    pub op: MatchOp,
    pub value: String,
}

impl LabelMatcher {
    pub fn new(label: &str, op: MatchOp, value: &str) -> Self {
        Self {
            label: label.to_owned(),
            op,
            value: value.to_owned(),
        }
    }

    /// `=` and `=~` select series; `!=` and `!~` only exclude some.
    pub fn is_positive(&self) -> bool {
        matches!(self.op, MatchOp::Equal | MatchOp::Regex)
    }

    pub fn matches(&self, label_value: &str) -> bool {
        match self.op {
            MatchOp::Equal => label_value == self.value,
            MatchOp::NotEqual => label_value != self.value,
            MatchOp::Regex => anchored_regex(&self.value).is_match(label_value),
            MatchOp::NotRegex => !anchored_regex(&self.value).is_match(label_value),
        }
    }
}

impl std::fmt::Display for LabelMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match self.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        };
        write!(f, "{}{op}{:?}", self.label, self.value)
    }
}

/// The label matchers of every vector selector (`{...}`) in a PromQL
/// expression. Strings and comments are skipped, so that a `{` inside them
/// is not taken for a selector; anything this scanner does not understand
/// is an error rather than a matcher silently missed.
pub fn label_matchers(expr: &str) -> Result<Vec<LabelMatcher>, String> {
    let mut scanner = PromqlScanner {
        chars: expr.chars().collect(),
        at: 0,
    };
    let mut matchers = Vec::new();
    while let Some(c) = scanner.peek() {
        match c {
            '"' | '\'' | '`' => {
                scanner.string()?;
            }
            '#' => scanner.skip_comment(),
            '{' => {
                scanner.at += 1;
                matchers.extend(scanner.selector_matchers()?);
            }
            _ => scanner.at += 1,
        }
    }
    Ok(matchers)
}

pub struct PromqlScanner {
    pub chars: Vec<char>,
    pub at: usize,
}

impl PromqlScanner {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn next(&mut self) -> Result<char, String> {
        let c = self.peek().ok_or_else(|| self.error("unexpected end"))?;
        self.at += 1;
        Ok(c)
    }

    fn error(&self, message: &str) -> String {
        let text: String = self.chars.iter().collect();
        format!("{message} at character {} of {text:?}", self.at)
    }

    fn skip_comment(&mut self) {
        while self.peek().is_some_and(|c| c != '\n') {
            self.at += 1;
        }
    }

    fn skip_blanks(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                '#' => self.skip_comment(),
                c if c.is_whitespace() => self.at += 1,
                _ => return,
            }
        }
    }

    /// The matchers after a `{`, through the closing `}`.
    fn selector_matchers(&mut self) -> Result<Vec<LabelMatcher>, String> {
        let mut matchers = Vec::new();
        loop {
            self.skip_blanks();
            match self.peek() {
                Some('}') => {
                    self.at += 1;
                    return Ok(matchers);
                }
                None => return Err(self.error("unclosed `{`")),
                Some(_) => {}
            }
            let quoted = matches!(self.peek(), Some('"' | '\'' | '`'));
            let label = if quoted {
                self.string()?
            } else {
                self.identifier()?
            };
            self.skip_blanks();
            // `{"metric.name", ...}` names the metric: no matcher.
            let metric_name = quoted && matches!(self.peek(), Some(',' | '}'));
            if !metric_name {
                let op = self.operator()?;
                self.skip_blanks();
                let value = self.string()?;
                matchers.push(LabelMatcher { label, op, value });
                self.skip_blanks();
            }
            match self.peek() {
                Some(',') => self.at += 1,
                Some('}') => {}
                _ => return Err(self.error("expected `,` or `}`")),
            }
        }
    }

    fn identifier(&mut self) -> Result<String, String> {
        let start = self.at;
        while self
            .peek()
            .is_some_and(|c| c == '_' || c.is_ascii_alphanumeric())
        {
            self.at += 1;
        }
        let name: String = self.chars[start..self.at].iter().collect();
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(self.error("expected a label name"));
        }
        Ok(name)
    }

    fn operator(&mut self) -> Result<MatchOp, String> {
        let (op, length) = match (self.peek(), self.chars.get(self.at + 1)) {
            (Some('='), Some('~')) => (MatchOp::Regex, 2),
            (Some('!'), Some('~')) => (MatchOp::NotRegex, 2),
            (Some('!'), Some('=')) => (MatchOp::NotEqual, 2),
            (Some('='), _) => (MatchOp::Equal, 1),
            _ => return Err(self.error("expected =, !=, =~ or !~")),
        };
        self.at += length;
        Ok(op)
    }

    /// A string literal, unescaped: "..." and '...' with Go escapes, `...` raw.
    fn string(&mut self) -> Result<String, String> {
        let quote = self.next()?;
        let mut value = String::new();
        loop {
            match self.next().map_err(|_| self.error("unterminated string"))? {
                c if c == quote => return Ok(value),
                '\\' if quote != '`' => value.push(self.escape()?),
                '\n' if quote != '`' => return Err(self.error("newline in a string")),
                c => value.push(c),
            }
        }
    }

    fn escape(&mut self) -> Result<char, String> {
        Ok(match self.next()? {
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            'a' => '\x07',
            'b' => '\x08',
            'f' => '\x0c',
            'v' => '\x0b',
            c @ ('\\' | '"' | '\'') => c,
            _ => return Err(self.error("an escape this scanner does not decode")),
        })
    }
}

#[test]
fn label_matchers_are_read_from_promql_past_strings_and_comments() {
    let expr = r#"up{job="a", instance!="b"} # {job="in a comment"}
        or label_replace(x{job=~'sy.*\\.x', job!~`raw\d`}[5m], "job", "{job=\"s\"}", "", "")
        or {"metric.name", job = "c",}"#;
    let matchers = label_matchers(expr).unwrap();
    assert_eq!(
        matchers,
        [
            LabelMatcher::new("job", MatchOp::Equal, "a"),
            LabelMatcher::new("instance", MatchOp::NotEqual, "b"),
            LabelMatcher::new("job", MatchOp::Regex, r"sy.*\.x"),
            LabelMatcher::new("job", MatchOp::NotRegex, r"raw\d"),
            LabelMatcher::new("job", MatchOp::Equal, "c"),
        ]
    );
    for broken in [
        r#"up{job="a"#,
        r#"up{job="a" x="b"}"#,
        r#"up{job="\x41"}"#,
        "up{job}",
    ] {
        assert!(
            label_matchers(broken).is_err(),
            "{broken:?} must be an error"
        );
    }
}
