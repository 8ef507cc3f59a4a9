//! `tls_config`: the TLS options of a `prober: tcp` module, as
//! prometheus/common's `TLSConfig` spells them in blackbox_exporter.

#![forbid(unsafe_code)]

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::path::PathBuf;

/// A module's `tls_config`, as blackbox_exporter reads it (prometheus/common's
/// `TLSConfig`): where the CA, the client certificate and its key come from
/// (inline PEM or a file), the name to verify, and the versions allowed.
///
/// Reading it checks what prometheus/common checks: at most one source
/// for each of the CA, the certificate and the key, a key with a
/// certificate and the other way round, `max_version` not below
/// `min_version`. The `*_ref` fields, which name secrets in Prometheus'
/// secret manager, are refused: neither exporter has one.
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "TlsFields")]
pub struct TlsOptions {
    /// The CA certificates (PEM) that replace the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// A file of CA certificates (PEM) that replace the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The client certificate (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// A file holding the client certificate (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM); `/config` shows it as
    /// `<secret>`, as prometheus/common does.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "secret"
    )]
    pub key: Option<String>,
    /// A file holding the client certificate's private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// The name sent as SNI and verified, instead of the target's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Whether the server's certificate goes unverified.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// The oldest TLS version offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_version: Option<TlsVersion>,
    /// The newest TLS version offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_version: Option<TlsVersion>,
}

impl TlsOptions {
    /// The files these options name (`ca_file`, `cert_file`, `key_file`),
    /// which a kept TLS setup watches for changes.
    pub(crate) fn files(&self) -> Vec<PathBuf> {
        [&self.ca_file, &self.cert_file, &self.key_file]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }
}

/// A TLS version, spelled as Go's config does: `TLS10` to `TLS13`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
pub enum TlsVersion {
    /// TLS 1.0.
    #[serde(rename = "TLS10")]
    Tls10,
    /// TLS 1.1.
    #[serde(rename = "TLS11")]
    Tls11,
    /// TLS 1.2.
    #[serde(rename = "TLS12")]
    Tls12,
    /// TLS 1.3.
    #[serde(rename = "TLS13")]
    Tls13,
}

impl TlsVersion {
    /// The version Go's config spells `name`, such as `TLS12`.
    pub(crate) fn from_go_name(name: &str) -> Option<Self> {
        [Self::Tls10, Self::Tls11, Self::Tls12, Self::Tls13]
            .into_iter()
            .find(|version| version.as_str() == name)
    }

    /// As the config spells it: `TLS12`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tls10 => "TLS10",
            Self::Tls11 => "TLS11",
            Self::Tls12 => "TLS12",
            Self::Tls13 => "TLS13",
        }
    }
}

/// `(Go's name, rustls' suite)` for the suites listed: Go names those of
/// TLS 1.2 as rustls does, and those of TLS 1.3 without rustls' `13`.
macro_rules! go_named {
    ($($tls12:ident),*; $($go:literal = $tls13:ident),*) => {
        [
            $((stringify!($tls12), rustls::CipherSuite::$tls12),)*
            $(($go, rustls::CipherSuite::$tls13),)*
        ]
    };
}

/// The suites rustls (with ring) implements, by their Go names: those of
/// TLS 1.2, then those of TLS 1.3 (which are all on in Go, and may be
/// listed in `web.yml`'s `cipher_suites`).
pub(crate) const GO_CIPHER_SUITES: [(&str, rustls::CipherSuite); 9] = go_named![
    TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256;
    "TLS_AES_128_GCM_SHA256" = TLS13_AES_128_GCM_SHA256,
    "TLS_AES_256_GCM_SHA384" = TLS13_AES_256_GCM_SHA384,
    "TLS_CHACHA20_POLY1305_SHA256" = TLS13_CHACHA20_POLY1305_SHA256
];

/// Go's name of a negotiated suite (`TLS_AES_128_GCM_SHA256`), as
/// blackbox_exporter writes it in `probe_tls_cipher_info`; rustls' name
/// for one Go has no name for here.
pub(crate) fn go_cipher_name(suite: rustls::CipherSuite) -> &'static str {
    GO_CIPHER_SUITES
        .iter()
        .find(|(_, known)| *known == suite)
        .map_or_else(|| suite.as_str().unwrap_or("unknown"), |(name, _)| name)
}

/// Writes a secret as prometheus/common does: `<secret>`.
fn secret<S: Serializer>(_: &Option<String>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str("<secret>")
}

/// Refuses a `*_ref` field where it is written.
fn no_secret_manager<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<()>, D::Error> {
    IgnoredAny::deserialize(deserializer)?;
    Err(serde::de::Error::custom(
        "the *_ref fields name a secret in Prometheus' secret manager, which neither \
         blackbox_exporter nor synack_exporter has (blackbox fails every probe of such a module): \
         use ca_file, cert_file or key_file",
    ))
}

/// `tls_config` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFields {
    #[serde(default)]
    ca: Option<String>,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default, rename = "ca_ref", deserialize_with = "no_secret_manager")]
    _ca_ref: Option<()>,
    #[serde(default)]
    cert: Option<String>,
    #[serde(default)]
    cert_file: Option<PathBuf>,
    #[serde(default, rename = "cert_ref", deserialize_with = "no_secret_manager")]
    _cert_ref: Option<()>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    key_file: Option<PathBuf>,
    #[serde(default, rename = "key_ref", deserialize_with = "no_secret_manager")]
    _key_ref: Option<()>,
    #[serde(default)]
    server_name: Option<String>,
    #[serde(default)]
    insecure_skip_verify: bool,
    #[serde(default)]
    min_version: Option<TlsVersion>,
    #[serde(default)]
    max_version: Option<TlsVersion>,
}

impl TryFrom<TlsFields> for TlsOptions {
    type Error = String;

    fn try_from(fields: TlsFields) -> Result<Self, String> {
        let options = Self {
            ca: fields.ca,
            ca_file: fields.ca_file,
            cert: fields.cert,
            cert_file: fields.cert_file,
            key: fields.key,
            key_file: fields.key_file,
            server_name: fields.server_name,
            insecure_skip_verify: fields.insecure_skip_verify,
            min_version: fields.min_version,
            max_version: fields.max_version,
        };
        let Self {
            ca,
            ca_file,
            cert,
            cert_file,
            key,
            key_file,
            ..
        } = &options;
        for (what, both) in [
            ("ca and ca_file", ca.is_some() && ca_file.is_some()),
            ("cert and cert_file", cert.is_some() && cert_file.is_some()),
            ("key and key_file", key.is_some() && key_file.is_some()),
        ] {
            if both {
                return Err(format!(
                    "{what} are two sources of the same thing: keep one"
                ));
            }
        }
        match (
            cert.is_some() || cert_file.is_some(),
            key.is_some() || key_file.is_some(),
        ) {
            (true, false) => {
                return Err("a client certificate needs its key: add key_file".to_owned());
            }
            (false, true) => {
                return Err("a client key needs its certificate: add cert_file".to_owned());
            }
            _ => {}
        }
        if let (Some(min), Some(max)) = (options.min_version, options.max_version)
            && max < min
        {
            return Err(format!(
                "max_version {} is below min_version {}: no version could be spoken",
                max.as_str(),
                min.as_str()
            ));
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every suite rustls (with ring) can negotiate has Go's name: that of
    /// rustls, but for TLS 1.3's `13`, as blackbox_exporter writes it.
    #[test]
    fn a_negotiated_suite_has_go_s_name() {
        let provider = rustls::ClientConfig::builder().crypto_provider().clone();
        for suite in &provider.cipher_suites {
            let suite = suite.suite();
            let go = suite.as_str().unwrap().replacen("TLS13_", "TLS_", 1);
            assert_eq!(go_cipher_name(suite), go, "{suite:?}");
        }
        assert_eq!(
            go_cipher_name(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256),
            "TLS_AES_128_GCM_SHA256"
        );
    }
}
