//! Strict parsing of a URL query string.
//!
//! Lenient decoders pass `%zz` through as text; a target then silently
//! differs from what the user meant. Here a broken escape or invalid UTF-8
//! is an error that the handler turns into a 400.
//!
//! Parts without escapes, which is what Prometheus sends, are borrowed
//! from the request rather than copied.

#![forbid(unsafe_code)]

use std::borrow::Cow;
use std::fmt;

/// Decoded `name=value` pairs, in order of appearance.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Query<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

/// Why a query string could not be decoded, or a parameter is unusable.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum QueryError {
    /// `%` not followed by two hex digits.
    BadEscape(String),
    /// Decoded bytes are not UTF-8.
    NotUtf8(String),
    /// A parameter that must appear once appears again.
    Repeated(String),
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadEscape(part) => write!(
                f,
                "query has bad percent-encoding in {part:?}: '%' must be followed by two hex digits"
            ),
            Self::NotUtf8(part) => {
                write!(f, "query parameter {part:?} does not decode to UTF-8 text")
            }
            Self::Repeated(name) => write!(f, "query parameter {name:?} is given more than once"),
        }
    }
}

impl std::error::Error for QueryError {}

impl<'a> Query<'a> {
    /// Decodes `a=1&b=%20x`; `+` stands for a space as in HTML forms.
    ///
    /// # Errors
    /// A [`QueryError`] for a broken escape or non-UTF-8 text.
    pub(crate) fn parse(raw: Option<&'a str>) -> Result<Self, QueryError> {
        // `/probe` takes target, module and debug.
        let mut pairs = Vec::with_capacity(4);
        for part in raw
            .unwrap_or_default()
            .split('&')
            .filter(|part| !part.is_empty())
        {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            pairs.push((decode(name)?, decode(value)?));
        }
        Ok(Self(pairs))
    }

    /// The value of `name` when it appears at most once.
    ///
    /// # Errors
    /// [`QueryError::Repeated`] when it appears more than once.
    pub(crate) fn single(&self, name: &str) -> Result<Option<&str>, QueryError> {
        let mut values = self
            .0
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_ref());
        let first = values.next();
        if values.next().is_some() {
            return Err(QueryError::Repeated(name.to_owned()));
        }
        Ok(first)
    }
}

fn decode(part: &str) -> Result<Cow<'_, str>, QueryError> {
    if !part.contains(['%', '+']) {
        return Ok(Cow::Borrowed(part));
    }
    let bytes = part.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => decoded.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(index + 1..index + 3)
                    .filter(|pair| pair.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
                    .ok_or_else(|| QueryError::BadEscape(part.to_owned()))?;
                decoded.push(hex);
                index += 2;
            }
            byte => decoded.push(byte),
        }
        index += 1;
    }
    String::from_utf8(decoded)
        .map(Cow::Owned)
        .map_err(|_| QueryError::NotUtf8(part.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_and_plus() {
        let query = Query::parse(Some("target=%5B%3A%3A1%5D%3A80&x=a+b&&flag")).unwrap();
        assert_eq!(query.single("target"), Ok(Some("[::1]:80")));
        assert_eq!(query.single("x"), Ok(Some("a b")));
        assert_eq!(query.single("flag"), Ok(Some("")));
        assert_eq!(query.single("missing"), Ok(None));
    }

    #[test]
    fn rejects_broken_escapes_bad_utf8_and_repeats() {
        for raw in ["target=%", "target=%4", "target=%zz", "target=%+1", "t%g=1"] {
            assert!(
                matches!(Query::parse(Some(raw)), Err(QueryError::BadEscape(_))),
                "{raw}"
            );
        }
        assert!(matches!(
            Query::parse(Some("target=%ff")),
            Err(QueryError::NotUtf8(_))
        ));
        let query = Query::parse(Some("target=a:1&target=b:2")).unwrap();
        assert_eq!(
            query.single("target"),
            Err(QueryError::Repeated("target".into()))
        );
    }
}

#[cfg(test)]
#[path = "query_proptest.rs"]
mod proptests;
