//! The file's format: reads and checks the file and everything it names
//! (the certificate, key and CA files), and turns it into a
//! [`WebConfig`]: a rustls server config ready for new connections, the
//! users with their bcrypt hashes, the headers and the rate.
//!
//! The file is parsed by the same machinery as the main config
//! ([`crate::config::parse_yaml`]): unknown fields are errors, and every
//! error names the file, line, column and field. What the file names is
//! checked after parsing, and its errors name the file and the field.
//! The file and every file it names are read as the main config is
//! ([`crate::config::read_bounded`]): regular files only, never waited
//! on, at most [`MAX_WEB_FILE_BYTES`] each.
//!
//! Where rustls cannot do what a field asks (TLS 1.0 and 1.1, CBC cipher
//! suites, the P-521 curve), loading fails with an error that says so and
//! lists what can be used: a silently weaker or different TLS setup than
//! the file states would be worse than no start.

#![forbid(unsafe_code)]

use super::tls;
use crate::config::{ConfigError, located};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_saphyr::{Location, Spanned};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The headers exporter-toolkit allows in `http_server_config.headers`,
/// each with the values it accepts (any, when empty). The set is fixed on
/// purpose, as in exporter-toolkit, so that a web config means the same
/// for every exporter.
pub(super) const ALLOWED_HEADERS: [(&str, &[&str]); 5] = [
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// The largest web config file, and the largest file it names (a
/// certificate, key or CA bundle). A bundle of every CA that browsers
/// trust is about 250 KB; the limit applies before the file is read.
pub(super) const MAX_WEB_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The largest bcrypt cost accepted: 2^18 rounds already take seconds on
/// a fast core, and each wrong password would cost that much CPU.
pub(super) const MAX_BCRYPT_COST: u32 = 18;

/// A web config file, loaded and checked.
#[derive(Debug)]
pub(crate) struct WebConfig {
    /// The file it was read from.
    pub(crate) file: PathBuf,
    /// The TLS server config, when `tls_server_config` is set; plain
    /// HTTP otherwise.
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    /// Users and their bcrypt hashes; no authentication when empty.
    pub(crate) users: BTreeMap<String, String>,
    /// A bcrypt hash of no one's password, at the highest cost among the
    /// users', checked for unknown users so that they take as long as a
    /// wrong password.
    pub(crate) dummy_hash: String,
    /// Headers added to every response, from `http_server_config.headers`.
    pub(crate) headers: Vec<(String, String)>,
    /// The token bucket, when `rate_limit.interval` is not zero.
    pub(crate) rate_limit: Option<RateLimit>,
    /// `http_server_config.http2`, which this exporter cannot honour with
    /// HTTP/2 (it speaks HTTP/1.1 only); kept to be logged.
    pub(crate) http2_asked: bool,
    /// Every file the config depends on, itself first: a change to any
    /// of them calls for a reload.
    pub(crate) watched: Vec<PathBuf>,
}

/// `rate_limit`: on average one request per `interval`, and up to
/// `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RateLimit {
    /// The time between two requests, on average.
    pub(crate) interval: Duration,
    /// How many requests may come at once (at least 1).
    pub(crate) burst: u32,
}

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebConfigFields {
    #[serde(default)]
    tls_server_config: Option<tls::TlsFields>,
    #[serde(default)]
    http_server_config: HttpFields,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, BcryptHash>,
    #[serde(default)]
    rate_limit: Option<RateLimitFields>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFields {
    #[serde(default = "yes")]
    http2: bool,
    #[serde(default)]
    headers: BTreeMap<AllowedHeader, String>,
}

impl Default for HttpFields {
    fn default() -> Self {
        Self {
            http2: true,
            headers: BTreeMap::new(),
        }
    }
}

fn yes() -> bool {
    true
}

/// A header name from [`ALLOWED_HEADERS`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
struct AllowedHeader(String);

impl TryFrom<String> for AllowedHeader {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        ALLOWED_HEADERS
            .iter()
            .find(|(allowed, _)| *allowed == name)
            .map(|(allowed, _)| Self((*allowed).to_owned()))
            .ok_or_else(|| {
                format!(
                    "HTTP header {name:?} can not be configured; the headers that can: {}",
                    ALLOWED_HEADERS.map(|(allowed, _)| allowed).join(", ")
                )
            })
    }
}

/// A bcrypt hash, checked to be one with a cost of at most
/// [`MAX_BCRYPT_COST`].
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "String")]
struct BcryptHash {
    hash: String,
    cost: u32,
}

impl TryFrom<String> for BcryptHash {
    type Error = String;

    fn try_from(hash: String) -> Result<Self, String> {
        let parts: bcrypt::HashParts = hash.parse().map_err(|error| {
            format!(
                "not a bcrypt hash ({error}): make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`"
            )
        })?;
        let cost = parts.get_cost();
        if cost > MAX_BCRYPT_COST {
            return Err(format!(
                "the bcrypt cost {cost} is over {MAX_BCRYPT_COST}: each check would take seconds of CPU; hash the password again with a cost of 10 to 12"
            ));
        }
        Ok(Self { hash, cost })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitFields {
    interval: crate::config::PromDuration,
    #[serde(default)]
    burst: u32,
}

/// Where the fields whose values are checked after the parse are in the
/// text: read again only when one of them is wrong, to locate the error.
#[derive(Debug, Default, Deserialize)]
struct Spots {
    #[serde(default)]
    tls_server_config: BTreeMap<String, Spanned<IgnoredAny>>,
    #[serde(default)]
    http_server_config: HttpSpots,
}

#[derive(Debug, Default, Deserialize)]
struct HttpSpots {
    #[serde(default)]
    headers: BTreeMap<String, Spanned<IgnoredAny>>,
}

impl Spots {
    /// The spots of `text`, or none if it cannot be read so.
    fn of(name: &str, text: &str) -> Self {
        crate::config::parse_yaml(name, text).unwrap_or_default()
    }

    /// Where `tls_server_config.FIELD` is (`client_allowed_sans[0]`: the
    /// field itself).
    fn tls_field(&self, field: &str) -> Option<Location> {
        let name = field.split(['[', '.']).next().unwrap_or(field);
        Some(self.tls_server_config.get(name)?.referenced)
    }

    /// Where the value of header `header` is.
    fn header(&self, header: &str) -> Option<Location> {
        Some(self.http_server_config.headers.get(header)?.referenced)
    }
}

impl WebConfig {
    /// Reads and checks the web config at `path`, and the files it names.
    /// Blocking: bcrypt hashes the dummy password here, and files are read.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file and the field (and the line and
    /// column, for errors in the YAML itself).
    pub(crate) fn load(path: &Path) -> Result<Self, ConfigError> {
        let name = path.display().to_string();
        let text = read_file(path, "--web.config.file", "a YAML file")
            .and_then(crate::config::utf8_text)
            .map_err(|message| ConfigError::about_file(&name, message))?;
        // An empty file (or one of comments) is a valid, empty web config,
        // as in exporter-toolkit.
        let fields: WebConfigFields = if is_blank(&text) {
            WebConfigFields::default()
        } else {
            crate::config::parse_yaml(&name, &text)?
        };
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        let mut watched = vec![path.to_path_buf()];
        let tls = match &fields.tls_server_config {
            Some(tls_fields) => Some(Arc::new(
                tls_fields
                    .server_config(dir, &mut watched)
                    .map_err(|(field, message)| {
                        let at = Spots::of(&name, &text).tls_field(field);
                        located(
                            &name,
                            at.as_ref(),
                            format!("tls_server_config.{field}"),
                            message,
                        )
                    })?,
            )),
            None => None,
        };
        let headers = fields
            .http_server_config
            .headers
            .into_iter()
            .map(|(header, value)| check_header_value(&header.0, value))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|(header, message)| {
                let at = Spots::of(&name, &text).header(&header);
                located(
                    &name,
                    at.as_ref(),
                    format!("http_server_config.headers.{header}"),
                    message,
                )
            })?;
        let max_cost = fields
            .basic_auth_users
            .values()
            .map(|hash| hash.cost)
            .max()
            .unwrap_or(bcrypt::DEFAULT_COST);
        let dummy_hash = bcrypt::hash("synack_exporter: no such user", max_cost)
            .map_err(|error| ConfigError::about_file(&name, format!("bcrypt: {error}")))?;
        let rate_limit = fields
            .rate_limit
            .filter(|limit| !limit.interval.0.is_zero())
            .map(|limit| RateLimit {
                interval: limit.interval.0,
                burst: limit.burst.max(1),
            });
        Ok(Self {
            file: path.to_path_buf(),
            tls,
            users: fields
                .basic_auth_users
                .into_iter()
                .map(|(user, hash)| (user, hash.hash))
                .collect(),
            dummy_hash,
            headers,
            rate_limit,
            http2_asked: fields.http_server_config.http2 && fields.tls_server_config.is_some(),
            watched,
        })
    }
}

/// Reads the web config file or a file it names within the limits of
/// [`crate::config::read_bounded`] and [`MAX_WEB_FILE_BYTES`], or says
/// why not and what to point `setting` (a flag or a field) at instead: a
/// file of `kind`.
pub(super) fn read_file(path: &Path, setting: &str, kind: &str) -> Result<Vec<u8>, String> {
    use crate::config::Refusal;
    crate::config::read_bounded(path, MAX_WEB_FILE_BYTES).map_err(|refusal| match refusal {
        Refusal::NotRegular(_) => format!(
            "{refusal}: point {setting} at {kind} of at most {}",
            crate::config::in_mebibytes(MAX_WEB_FILE_BYTES)
        ),
        Refusal::TooLarge { .. } | Refusal::Unreadable(_) => refusal.to_string(),
    })
}

/// Whether `text` holds no YAML node: only blank lines and comments.
fn is_blank(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .all(|line| line.is_empty() || line.starts_with('#') || line == "---")
}

/// Checks a header's value against those [`ALLOWED_HEADERS`] accepts.
/// An empty value leaves the header unset, as in exporter-toolkit.
fn check_header_value(header: &str, value: String) -> Result<(String, String), (String, String)> {
    let allowed = ALLOWED_HEADERS
        .iter()
        .find(|(name, _)| *name == header)
        .map_or(&[][..], |(_, values)| *values);
    if !value.is_empty() && !allowed.is_empty() && !allowed.contains(&value.as_str()) {
        return Err((
            header.to_owned(),
            format!(
                "{value:?} is not a valid value for {header}: use one of {}",
                allowed.join(", ")
            ),
        ));
    }
    if value.bytes().any(|b| b.is_ascii_control()) {
        return Err((
            header.to_owned(),
            "the value has a control character".to_owned(),
        ));
    }
    Ok((header.to_owned(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<WebConfig, ConfigError> {
        let dir = std::env::temp_dir().join(format!(
            "synack-webconfig-unit-{}-{}",
            std::process::id(),
            crate::clock::unix_seconds().to_bits()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("web.yml");
        std::fs::write(&path, text).unwrap();
        let result = WebConfig::load(&path);
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    const HASH: &str = "$2y$04$2Jv9G4a6T9Zr9b0n5vFZKe0n5Uq0j6x7h8Bq3Z5zYJrWlS7v1G1mK";

    #[test]
    fn a_device_at_the_path_is_refused_naming_the_flag_and_the_limit() {
        let error = WebConfig::load(Path::new("/dev/null")).unwrap_err();
        assert_eq!(
            error.message,
            "the path is a device, not a regular file: point --web.config.file at a YAML file of at most 4 MiB"
        );
    }

    #[test]
    fn an_empty_file_is_an_empty_config() {
        let config = load_text("# nothing here\n").unwrap();
        assert!(config.tls.is_none() && config.users.is_empty() && config.rate_limit.is_none());
    }

    #[test]
    fn unknown_fields_are_located_errors() {
        let error = load_text("basic_auth_users: {}\nrate_limt: {interval: 1s}\n").unwrap_err();
        assert_eq!(error.position.map(|(line, _)| line), Some(2), "{error}");
        assert!(error.message.contains("rate_limt"), "{error}");
    }

    #[test]
    fn headers_outside_the_allowed_set_or_values_are_refused() {
        let error =
            load_text("http_server_config:\n  headers:\n    X-Powered-By: me\n").unwrap_err();
        assert!(
            error.to_string().contains("can not be configured"),
            "{error}"
        );
        let error =
            load_text("http_server_config:\n  headers:\n    X-Frame-Options: allow\n").unwrap_err();
        assert_eq!(
            error.field.as_deref(),
            Some("http_server_config.headers.X-Frame-Options"),
            "{error}"
        );
        let config =
            load_text("http_server_config:\n  headers:\n    X-Frame-Options: deny\n").unwrap();
        assert_eq!(config.headers, [("X-Frame-Options".into(), "deny".into())]);
    }

    #[test]
    fn users_need_bcrypt_hashes() {
        let error = load_text("basic_auth_users:\n  alice: plain\n").unwrap_err();
        assert_eq!(
            error.field.as_deref(),
            Some("basic_auth_users.alice"),
            "{error}"
        );
        let config = load_text(&format!("basic_auth_users:\n  alice: '{HASH}'\n")).unwrap();
        assert_eq!(config.users["alice"], HASH);
        assert!(
            config.dummy_hash.starts_with("$2b$04$"),
            "{}",
            config.dummy_hash
        );
    }

    /// A named file that is missing, or that holds the wrong kind of PEM,
    /// is an error at the line and column of its field, said without the
    /// OS's error numbers or the PEM reader's words.
    #[test]
    fn a_file_that_cannot_serve_is_located_and_said_in_the_users_words() {
        let missing = load_text(
            "# TLS\ntls_server_config:\n  cert_file: /nonexistent/cert.pem\n  key_file: /nonexistent/key.pem\n",
        )
        .unwrap_err();
        assert_eq!(missing.position, Some((3, 14)), "{missing}");
        assert!(missing.message.contains("no such file"), "{missing}");
        assert!(!missing.message.contains("os error"), "{missing}");

        let dir = std::env::temp_dir().join(format!(
            "synack-webconfig-pem-{}-{}",
            std::process::id(),
            crate::clock::unix_seconds().to_bits()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert = dir.join("cert.pem");
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        let swapped = load_text(&format!(
            "tls_server_config:\n  cert_file: {0}\n  key_file: {0}\n",
            cert.display()
        ))
        .unwrap_err();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(swapped.position, Some((3, 13)), "{swapped}");
        assert!(
            swapped.message.contains("PRIVATE KEY"),
            "says which block it wants: {swapped}"
        );
        assert!(!swapped.message.contains("no items found"), "{swapped}");
    }

    #[test]
    fn a_zero_interval_turns_the_rate_limit_off() {
        assert!(
            load_text("rate_limit: {interval: 0s, burst: 3}\n")
                .unwrap()
                .rate_limit
                .is_none()
        );
        assert_eq!(
            load_text("rate_limit: {interval: 1s, burst: 3}\n")
                .unwrap()
                .rate_limit,
            Some(RateLimit {
                interval: Duration::from_secs(1),
                burst: 3
            })
        );
    }
}
