//! `tls_server_config`: from exporter-toolkit's fields to a rustls
//! server config, with ring as the crypto provider (see
//! [`TlsFields::provider`] for how it is reached).
//!
//! Go's `crypto/tls` and rustls do not offer the same things. What maps
//! is mapped: versions 1.2 and 1.3, the ECDHE AES-GCM and ChaCha20 suites
//! of TLS 1.2, the curves X25519, P-256 and P-384, the server's order of
//! preference. What rustls lacks (TLS 1.0 and 1.1, CBC and RSA key
//! exchange suites, P-521) is an error naming the field and what can be
//! used instead.

#![forbid(unsafe_code)]

use crate::config::{GO_CIPHER_SUITES, TlsVersion, pem_certificates, pem_private_key};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use serde::{Deserialize, Deserializer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A field's name and what is wrong with it.
pub(super) type FieldError = (&'static str, String);

/// `tls_server_config` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsFields {
    #[serde(default)]
    cert: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    client_ca: Option<String>,
    #[serde(default)]
    cert_file: Option<PathBuf>,
    #[serde(default)]
    key_file: Option<PathBuf>,
    #[serde(default)]
    client_ca_file: Option<PathBuf>,
    #[serde(default)]
    client_auth_type: ClientAuthType,
    #[serde(default)]
    client_allowed_sans: Vec<String>,
    #[serde(default = "tls12", deserialize_with = "server_version")]
    min_version: TlsVersion,
    #[serde(default = "tls13", deserialize_with = "server_version")]
    max_version: TlsVersion,
    #[serde(default)]
    cipher_suites: Vec<CipherSuite>,
    #[serde(default = "yes")]
    prefer_server_cipher_suites: bool,
    #[serde(default)]
    curve_preferences: Vec<Curve>,
}

fn tls12() -> TlsVersion {
    TlsVersion::Tls12
}

fn tls13() -> TlsVersion {
    TlsVersion::Tls13
}

fn yes() -> bool {
    true
}

/// `client_auth_type`: whether a client certificate is asked for, needed,
/// and checked against `client_ca_file`, as Go's `tls.ClientAuthType`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub(super) enum ClientAuthType {
    /// No certificate is asked for.
    #[default]
    NoClientCert,
    /// One is asked for, not needed, and not checked against the CA.
    RequestClientCert,
    /// One is needed, and not checked against the CA.
    #[serde(alias = "RequireClientCert")]
    RequireAnyClientCert,
    /// One is not needed; if given, it must be signed by the CA.
    VerifyClientCertIfGiven,
    /// One is needed and must be signed by the CA: the one mode that
    /// authenticates clients.
    RequireAndVerifyClientCert,
}

/// `min_version` and `max_version`: Go's names of the versions, less
/// those rustls lacks.
fn server_version<'de, D: Deserializer<'de>>(deserializer: D) -> Result<TlsVersion, D::Error> {
    let text = String::deserialize(deserializer)?;
    match TlsVersion::from_go_name(&text) {
        Some(version @ (TlsVersion::Tls12 | TlsVersion::Tls13)) => Ok(version),
        Some(TlsVersion::Tls10 | TlsVersion::Tls11) => Err(serde::de::Error::custom(format!(
            "{text} is not supported: rustls implements only TLS 1.2 and 1.3, which every \
             current Prometheus speaks; use TLS12 or TLS13"
        ))),
        None => Err(serde::de::Error::custom(format!(
            "unknown TLS version {text:?}: use TLS12 or TLS13"
        ))),
    }
}

/// A `cipher_suites` entry rustls implements.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(try_from = "String")]
struct CipherSuite(rustls::CipherSuite);

impl TryFrom<String> for CipherSuite {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        // Go's short aliases of the ChaCha20 suites.
        let canonical = match name.as_str() {
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" => {
                format!("{name}_SHA256")
            }
            _ => name.clone(),
        };
        GO_CIPHER_SUITES
            .iter()
            .find(|(known, _)| *known == canonical)
            .map(|(_, suite)| Self(*suite))
            .ok_or_else(|| {
                format!(
                    "cipher suite {name:?} is not supported: rustls implements only ECDHE with \
                     AES-GCM or ChaCha20-Poly1305 (no CBC, no RSA key exchange); use some of {}, \
                     or leave cipher_suites out for rustls' defaults",
                    GO_CIPHER_SUITES.map(|(known, _)| known).join(", ")
                )
            })
    }
}

/// A `curve_preferences` entry rustls (with ring) implements.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(try_from = "String")]
struct Curve(rustls::NamedGroup);

impl TryFrom<String> for Curve {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        match name.as_str() {
            "X25519" => Ok(Self(rustls::NamedGroup::X25519)),
            "CurveP256" => Ok(Self(rustls::NamedGroup::secp256r1)),
            "CurveP384" => Ok(Self(rustls::NamedGroup::secp384r1)),
            "CurveP521" => Err(
                "CurveP521 is not supported by rustls' ring provider: use X25519, CurveP256 or CurveP384"
                    .to_owned(),
            ),
            _ => Err(format!(
                "unknown curve {name:?}: use X25519, CurveP256 or CurveP384"
            )),
        }
    }
}

/// Reads a file the config names, relative to the config's directory as
/// in exporter-toolkit, within the limits of [`super::file::read_file`], and
/// adds it to the files watched for changes.
fn read(
    dir: &Path,
    field: &'static str,
    path: &Path,
    watched: &mut Vec<PathBuf>,
) -> Result<Vec<u8>, FieldError> {
    let full = dir.join(path);
    watched.push(full.clone());
    super::file::read_file(&full, field, "a PEM file")
        .map_err(|message| (field, format!("{}: {message}", full.display())))
}

/// The PEM text of an inline field or of its `_file` twin, but not both.
fn pem_source(
    dir: &Path,
    (inline_field, inline): (&'static str, Option<&String>),
    (file_field, file): (&'static str, Option<&PathBuf>),
    watched: &mut Vec<PathBuf>,
) -> Result<Option<(&'static str, Vec<u8>)>, FieldError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err((
            inline_field,
            format!("give either {inline_field} or {file_field}, not both"),
        )),
        (Some(text), None) => Ok(Some((inline_field, text.as_bytes().to_vec()))),
        (None, Some(path)) => Ok(Some((file_field, read(dir, file_field, path, watched)?))),
        (None, None) => Ok(None),
    }
}

impl TlsFields {
    /// The rustls server config these fields describe. Files are read
    /// relative to `dir` and added to `watched`.
    pub(super) fn server_config(
        &self,
        dir: &Path,
        watched: &mut Vec<PathBuf>,
    ) -> Result<ServerConfig, FieldError> {
        let cert = pem_source(
            dir,
            ("cert", self.cert.as_ref()),
            ("cert_file", self.cert_file.as_ref()),
            watched,
        )?
        .ok_or((
            "cert_file",
            "TLS needs a certificate: set cert_file (or cert)".to_owned(),
        ))?;
        let key = pem_source(
            dir,
            ("key", self.key.as_ref()),
            ("key_file", self.key_file.as_ref()),
            watched,
        )?
        .ok_or((
            "key_file",
            "TLS needs a private key: set key_file (or key)".to_owned(),
        ))?;
        let chain = pem_certificates(&cert.1).map_err(|message| (cert.0, message))?;
        let key_der = pem_private_key(&key.1).map_err(|message| (key.0, message))?;
        let provider = Arc::new(self.provider()?);
        let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
            (TlsVersion::Tls12, &rustls::version::TLS12),
            (TlsVersion::Tls13, &rustls::version::TLS13),
        ]
        .into_iter()
        .filter(|(version, _)| (self.min_version..=self.max_version).contains(version))
        .map(|(_, version)| version)
        .collect();
        if versions.is_empty() {
            return Err((
                "min_version",
                "min_version is above max_version: no TLS version is left".to_owned(),
            ));
        }
        let verifier = self.client_verifier(dir, watched, &provider)?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .map_err(|error| ("cipher_suites", error.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key_der)
            .map_err(|error| {
                (
                    key.0,
                    format!("the key does not go with the certificate: {error}"),
                )
            })?;
        config.ignore_client_order = self.prefer_server_cipher_suites;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// ring, with the suites and curves the fields choose, in their order.
    ///
    /// ring is reached as the process's default provider, which rustls
    /// takes from its crate features (synack_exporter turns on `ring` and
    /// no other provider) unless the program embedding this library
    /// installed one with [`CryptoProvider::install_default`]. Naming it
    /// directly, `rustls::crypto::ring::default_provider()`, is deprecated
    /// since rustls 0.23.48; the default is reached the same way in every
    /// 0.23 release.
    fn provider(&self) -> Result<CryptoProvider, FieldError> {
        let mut provider = ServerConfig::builder().crypto_provider().as_ref().clone();
        if !self.cipher_suites.is_empty() {
            let listed = |suite: rustls::CipherSuite| {
                self.cipher_suites
                    .iter()
                    .position(|wanted| wanted.0 == suite)
            };
            // TLS 1.3's suites stay on whatever the list says, as in Go;
            // TLS 1.2's are those listed, in the list's order.
            let (tls13, tls12): (Vec<_>, Vec<_>) = provider
                .cipher_suites
                .into_iter()
                .partition(|suite| suite.tls13().is_some());
            let mut chosen: Vec<_> = tls12
                .into_iter()
                .filter_map(|suite| listed(suite.suite()).map(|at| (at, suite)))
                .collect();
            chosen.sort_by_key(|(at, _)| *at);
            provider.cipher_suites = tls13
                .into_iter()
                .chain(chosen.into_iter().map(|(_, suite)| suite))
                .collect();
            if self.min_version == TlsVersion::Tls12
                && provider
                    .cipher_suites
                    .iter()
                    .all(|suite| suite.tls13().is_some())
            {
                return Err((
                    "cipher_suites",
                    "lists no TLS 1.2 suite, so TLS 1.2 clients could not connect: add one or set min_version: TLS13".to_owned(),
                ));
            }
        }
        if !self.curve_preferences.is_empty() {
            let all = std::mem::take(&mut provider.kx_groups);
            provider.kx_groups = self
                .curve_preferences
                .iter()
                .filter_map(|curve| all.iter().find(|group| group.name() == curve.0).copied())
                .collect();
        }
        Ok(provider)
    }

    fn client_verifier(
        &self,
        dir: &Path,
        watched: &mut Vec<PathBuf>,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Arc<dyn ClientCertVerifier>, FieldError> {
        use ClientAuthType as Mode;
        let ca = pem_source(
            dir,
            ("client_ca", self.client_ca.as_ref()),
            ("client_ca_file", self.client_ca_file.as_ref()),
            watched,
        )?;
        let mode = self.client_auth_type;
        if mode == Mode::NoClientCert {
            if let Some((field, _)) = ca {
                return Err((
                    field,
                    "a client CA is set but client_auth_type is NoClientCert: set client_auth_type: RequireAndVerifyClientCert to check client certificates".to_owned(),
                ));
            }
            if !self.client_allowed_sans.is_empty() {
                return Err((
                    "client_allowed_sans",
                    "client_allowed_sans needs client certificates: set client_auth_type: RequireAndVerifyClientCert and client_ca_file".to_owned(),
                ));
            }
            return Ok(WebPkiClientVerifier::no_client_auth());
        }
        // rustls asks the verifier only about certificates that come, so
        // under a mode where a client may send none, the SAN check would
        // let every anonymous client in; exporter-toolkit refuses this too.
        if !self.client_allowed_sans.is_empty()
            && !matches!(
                mode,
                Mode::RequireAnyClientCert | Mode::RequireAndVerifyClientCert
            )
        {
            return Err((
                "client_allowed_sans",
                "client_allowed_sans requires client_auth_type RequireAndVerifyClientCert (or RequireAnyClientCert): under a mode where certificates are optional, a client without one would pass".to_owned(),
            ));
        }
        let verifying = matches!(
            mode,
            Mode::VerifyClientCertIfGiven | Mode::RequireAndVerifyClientCert
        );
        let webpki = match (verifying, ca) {
            (true, None) => {
                return Err((
                    "client_ca_file",
                    format!(
                        "client_auth_type {mode:?} checks client certificates against a CA: set client_ca_file (or client_ca)"
                    ),
                ));
            }
            (true, Some((field, pem))) => {
                let mut roots = RootCertStore::empty();
                for cert in pem_certificates(&pem).map_err(|message| (field, message))? {
                    roots.add(cert).map_err(|error| {
                        (field, format!("not a usable CA certificate: {error}"))
                    })?;
                }
                let builder = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::clone(provider),
                );
                let builder = if mode == Mode::VerifyClientCertIfGiven {
                    builder.allow_unauthenticated()
                } else {
                    builder
                };
                Some(
                    builder.build().map_err(|error| {
                        (field, format!("cannot check clients with it: {error}"))
                    })?,
                )
            }
            // Go ignores the CA in these modes; so do we.
            (false, _) => None,
        };
        Ok(Arc::new(ClientVerifier {
            webpki,
            mandatory: matches!(
                mode,
                Mode::RequireAnyClientCert | Mode::RequireAndVerifyClientCert
            ),
            allowed_sans: self.client_allowed_sans.clone(),
            algorithms: provider.signature_verification_algorithms,
        }))
    }
}

/// Client certificates as `client_auth_type` and `client_allowed_sans`
/// ask: checked by webpki against the CA in the verifying modes, taken as
/// they come in the others, and then, if `client_allowed_sans` is set,
/// refused unless one of their SANs is in that list.
#[derive(Debug)]
struct ClientVerifier {
    webpki: Option<Arc<dyn ClientCertVerifier>>,
    mandatory: bool,
    allowed_sans: Vec<String>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for ClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki
            .as_ref()
            .map_or(&[], |webpki| webpki.root_hint_subjects())
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if let Some(webpki) = &self.webpki {
            webpki.verify_client_cert(end_entity, intermediates, now)?;
        }
        if !self.allowed_sans.is_empty() {
            let sans = subject_alt_names(end_entity).map_err(|error| {
                rustls::Error::General(format!("cannot read the client certificate: {error}"))
            })?;
            if !sans.iter().any(|san| self.allowed_sans.contains(san)) {
                return Err(rustls::Error::General(format!(
                    "no SAN of the client certificate ({}) is in client_allowed_sans",
                    sans.join(", ")
                )));
            }
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The certificate's subject alternative names as Go's `crypto/x509`
/// writes them, which `client_allowed_sans` is compared with: DNS names,
/// e-mail addresses, IP addresses and URIs.
fn subject_alt_names(der: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|error| error.to_string())?;
    let Some(extension) = cert
        .subject_alternative_name()
        .map_err(|error| error.to_string())?
    else {
        return Ok(Vec::new());
    };
    Ok(extension
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(text) | GeneralName::RFC822Name(text) | GeneralName::URI(text) => {
                Some((*text).to_owned())
            }
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes)
                    .ok()
                    .map(|octets| std::net::IpAddr::from(octets).to_string()),
                16 => <[u8; 16]>::try_from(*bytes)
                    .ok()
                    .map(|octets| std::net::IpAddr::from(octets).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every suite of rustls' ring provider is taken by its Go name (that
    /// of rustls but for TLS 1.3's `13`), the ChaCha20 ones of TLS 1.2
    /// also by Go's short aliases; the error lists the names in order.
    #[test]
    fn cipher_suites_are_taken_by_their_go_names() {
        // The provider as `provider` reaches it (see there why not by name).
        let provider = ServerConfig::builder().crypto_provider().clone();
        for suite in &provider.cipher_suites {
            let suite = suite.suite();
            let name = suite.as_str().unwrap().replacen("TLS13_", "TLS_", 1);
            let mut names = vec![name.clone()];
            names.extend(
                name.strip_suffix("_WITH_CHACHA20_POLY1305_SHA256")
                    .map(|short| format!("{short}_WITH_CHACHA20_POLY1305")),
            );
            for name in names {
                let taken = CipherSuite::try_from(name.clone()).expect(&name);
                assert_eq!(taken.0, suite, "{name}");
            }
        }
        let error = CipherSuite::try_from("TLS_RSA_WITH_AES_128_CBC_SHA".to_owned()).unwrap_err();
        assert!(
            error.ends_with(
                "use some of TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, \
                 TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, \
                 TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, \
                 TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, \
                 TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, TLS_AES_128_GCM_SHA256, \
                 TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256, or leave cipher_suites \
                 out for rustls' defaults"
            ),
            "{error}"
        );
    }
}
