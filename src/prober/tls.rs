//! The TLS handshake of a `prober: tcp` module (`tls: true` or a
//! `starttls` step): verification as Go does it, and what the TLS series
//! show of it.
//!
//! Verification is webpki's path building (what rustls itself uses),
//! called by [`RecordingVerifier`] so that the verified chain is kept for
//! `probe_ssl_last_chain_expiry_timestamp_seconds`. Where Go and webpki
//! differ, Go's answer is taken, as blackbox_exporter users expect it:
//! - the leaf's dates are checked first, then its name, then the chain,
//!   so an expired certificate for another name says "expired" as Go does;
//! - a leaf that is itself among the CA certificates is accepted (dates
//!   and name still checked), even with `CA:TRUE`, which is how a
//!   self-signed certificate is pinned with `ca_file` in Go;
//! - with `insecure_skip_verify` nothing is verified but the handshake's
//!   signature, and no chain is kept: the last chain expiry is Go's zero
//!   time, [`GO_ZERO_TIME`].
//!
//! One difference is kept: webpki stops at the first chain it can verify,
//! where Go builds every chain and blackbox takes the latest expiry among
//! them. For a certificate with one path to a root they agree; with a
//! cross-signed intermediate ours may name the earlier path's expiry.
//!
//! The system roots are read once per process (`rustls-native-certs`,
//! which reads `SSL_CERT_FILE`, `SSL_CERT_DIR` and the distribution's
//! bundle, as Go does); a module's `ca`/`ca_file` replaces them.
//!
//! rustls speaks TLS 1.2 and 1.3 only: `min_version: TLS10` or `TLS11`
//! offers TLS 1.2 and up, and `max_version: TLS10` or `TLS11` cannot be
//! honoured ([`TlsSetup::new`] says so).

#![forbid(unsafe_code)]

use super::certificate::{self, CertFacts};
use super::{Failure, Reason, StepLog};
use crate::config::{Stamp, TlsMaterial, TlsOptions, TlsVersion, read_stamped, stamp};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, Resumption};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, ProtocolVersion,
    SignatureScheme, SupportedProtocolVersion,
};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Go's zero `time.Time` in Unix seconds (0001-01-01T00:00:00Z): what
/// blackbox writes as the last chain expiry when no chain was verified.
pub(crate) const GO_ZERO_TIME: i64 = -62_135_596_800;

/// What a successful handshake found, for the TLS series.
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFacts {
    /// As Go names it: `TLS 1.2`, `TLS 1.3`.
    pub version: &'static str,
    /// The cipher suite by its Go name, such as `TLS_AES_128_GCM_SHA256`.
    pub cipher: &'static str,
    /// The server's certificate.
    pub leaf: CertFacts,
    /// The earliest `notAfter` of the certificates the server sent, Unix seconds.
    pub earliest_expiry: i64,
    /// The earliest `notAfter` of the verified chain (root included),
    /// Unix seconds; Go's zero time (-62135596800) when nothing was
    /// verified. Go takes the latest over every chain it builds; webpki
    /// builds one (module docs).
    pub last_chain_expiry: i64,
}

/// Trust anchors, each with its certificate and `notAfter`: the chain's
/// expiry counts the root's, as Go's does.
#[derive(Debug)]
struct Roots {
    anchors: Vec<TrustAnchor<'static>>,
    /// Each anchor's certificate and `notAfter`, in the same order.
    certs: Vec<(CertificateDer<'static>, i64)>,
}

impl Roots {
    /// The roots of `certs`; those webpki cannot use as a root are left
    /// out (a module's own were checked when the config loaded).
    fn new(certs: Vec<CertificateDer<'static>>) -> Self {
        let mut anchors = Vec::with_capacity(certs.len());
        let mut kept = Vec::with_capacity(certs.len());
        for cert in certs {
            let Ok(anchor) = webpki::anchor_from_trusted_cert(&cert) else {
                continue;
            };
            anchors.push(anchor.to_owned());
            let not_after = certificate::not_after(&cert).unwrap_or(i64::MAX);
            kept.push((cert, not_after));
        }
        Self {
            anchors,
            certs: kept,
        }
    }

    /// The `notAfter` of `anchor`.
    fn not_after(&self, anchor: &TrustAnchor<'_>) -> Option<i64> {
        self.anchors
            .iter()
            .position(|known| {
                known.subject == anchor.subject
                    && known.subject_public_key_info == anchor.subject_public_key_info
            })
            .map(|at| self.certs[at].1)
    }

    /// The `notAfter` of `leaf` when it is itself one of the roots.
    fn pinned(&self, leaf: &CertificateDer<'_>) -> Option<i64> {
        self.certs
            .iter()
            .find(|(cert, _)| cert.as_ref() == leaf.as_ref())
            .map(|(_, not_after)| *not_after)
    }
}

/// The system's CA certificates, read once per process; why none could
/// be read otherwise.
static SYSTEM_ROOTS: LazyLock<Result<Arc<Roots>, String>> = LazyLock::new(|| {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        let why = found
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        return Err(format!(
            "this host has no CA certificates (install ca-certificates, set SSL_CERT_FILE, or \
             give the module a ca_file){}",
            if why.is_empty() {
                String::new()
            } else {
                format!(": {why}")
            }
        ));
    }
    Ok(Arc::new(Roots::new(found.certs)))
});

/// How a module's handshakes verify and authenticate: built from its
/// `tls_config`.
#[derive(Debug)]
pub(crate) struct TlsSetup {
    roots: Arc<Roots>,
    client: Option<Arc<CertifiedKey>>,
    versions: Vec<&'static SupportedProtocolVersion>,
    insecure: bool,
    server_name: Option<ServerName<'static>>,
}

impl TlsSetup {
    /// The setup `options` describe, their files read again.
    ///
    /// # Errors
    /// `tls` for a CA, certificate or key that cannot serve (a missing
    /// file, no PEM, a key that is not the certificate's: the config
    /// loads with a note, as blackbox's, and the probes fail saying which
    /// file and why); `local` for versions rustls cannot speak or no
    /// system roots when the module names no CA.
    pub(crate) fn new(options: &TlsOptions) -> Result<Self, Failure> {
        let material = TlsMaterial::load(options)
            .map_err(|refused| Failure::new(Reason::Tls, refused.to_string()))?;
        let local = |why: String| Failure::new(Reason::Local, why);
        let roots = match material.ca {
            Some(certs) => Arc::new(Roots::new(certs)),
            None => SYSTEM_ROOTS.clone().map_err(local)?,
        };
        let min = options.min_version.unwrap_or(TlsVersion::Tls12);
        let max = options.max_version.unwrap_or(TlsVersion::Tls13);
        let versions: Vec<&'static SupportedProtocolVersion> = [
            (TlsVersion::Tls12, &rustls::version::TLS12),
            (TlsVersion::Tls13, &rustls::version::TLS13),
        ]
        .into_iter()
        .filter(|(version, _)| *version >= min.max(TlsVersion::Tls12) && *version <= max)
        .map(|(_, version)| version)
        .collect();
        if versions.is_empty() {
            return Err(local(format!(
                "tls_config.max_version {} asks for a TLS version older than 1.2, which rustls \
                 does not speak",
                max.as_str()
            )));
        }
        let server_name = options
            .server_name
            .as_deref()
            .map(|name| {
                ServerName::try_from(name.to_owned()).map_err(|_| {
                    local(format!(
                        "tls_config.server_name {name:?} is not a host name"
                    ))
                })
            })
            .transpose()?;
        Ok(Self {
            roots,
            client: material.client,
            versions,
            insecure: options.insecure_skip_verify,
            server_name,
        })
    }

    /// The name to send as SNI and verify: `server_name`, else the
    /// target's `host` as written (an IP address sends no SNI and is
    /// checked against the certificate's IP addresses).
    ///
    /// # Errors
    /// A host that is neither a DNS name nor an IP address.
    pub(crate) fn server_name(&self, host: &str) -> Result<ServerName<'static>, Failure> {
        if let Some(name) = &self.server_name {
            return Ok(name.clone());
        }
        let bare = host
            .strip_prefix('[')
            .and_then(|inner| inner.strip_suffix(']'))
            .unwrap_or(host);
        ServerName::try_from(bare.to_owned()).map_err(|_| {
            Failure::new(
                Reason::Local,
                format!("{host:?} cannot be a TLS server name: set tls_config.server_name"),
            )
        })
    }
}

/// The most setups [`TlsSetups`] keeps: a config has few TLS modules;
/// those of configs reloaded away are dropped past it, oldest first.
const MAX_SETUPS: usize = 64;

/// A kept setup, and what tells that it must be built again.
#[derive(Debug)]
struct Kept {
    options: TlsOptions,
    setup: Arc<TlsSetup>,
    /// Each file the options name, with its stamp taken before it was read.
    files: Vec<(PathBuf, Stamp)>,
}

impl Kept {
    /// Whether every file is as it was when read: one `stat` each.
    fn is_current(&self) -> bool {
        self.files.iter().all(|(file, seen)| stamp(file) == *seen)
    }
}

/// Each `tls_config`'s setup, built at its first handshake and kept, so
/// that a probe does not read its files and roots again. Keyed by the
/// options themselves: a reload that changes them builds a new one.
///
/// blackbox_exporter reads a module's `ca_file`, `cert_file` and
/// `key_file` at each probe, so a rotated client certificate or CA is
/// used without a reload. So here: each handshake stamps those files
/// (modification time, size, device, inode: a `stat` each, no read), and
/// a kept setup whose files changed is built again from them. A setup
/// that cannot be built is not kept, and one whose rebuild fails is
/// dropped: that probe fails as `tls` naming the file and why (as
/// blackbox's does), rather than the old setup serving on unseen; the
/// next probe tries again, so a file put right is used at once.
#[derive(Debug, Default)]
pub(crate) struct TlsSetups {
    kept: Mutex<Vec<Kept>>,
}

impl TlsSetups {
    /// The setup of `options`, built now if none is kept or one of its
    /// files changed.
    ///
    /// # Errors
    /// Why it cannot be built ([`TlsSetup::new`]).
    pub(crate) fn get(&self, options: &TlsOptions) -> Result<Arc<TlsSetup>, Failure> {
        let lock = || self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(kept) = lock().iter().find(|kept| kept.options == *options)
            && kept.is_current()
        {
            return Ok(Arc::clone(&kept.setup));
        }
        // Stamped before the read: a file rotated during it is read again
        // at the next handshake.
        let files = options.files();
        let built = read_stamped(&files, || {
            TlsSetup::new(options).map(|setup| (setup, files.clone()))
        });
        let mut kept = lock();
        kept.retain(|kept| kept.options != *options);
        let (setup, stamps) = built?;
        let setup = Arc::new(setup);
        if kept.len() >= MAX_SETUPS {
            kept.remove(0);
        }
        kept.push(Kept {
            options: options.clone(),
            setup: Arc::clone(&setup),
            files: files.into_iter().zip(stamps).collect(),
        });
        Ok(setup)
    }

    /// Drops every kept setup: after a config reload, so that the files
    /// are read again at the next handshake.
    pub(crate) fn clear(&self) {
        self.kept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// Sends the module's client certificate whenever the server asks, as
/// Go does with a single certificate.
#[derive(Debug)]
struct ClientCert(Arc<CertifiedKey>);

impl ResolvesClientCert for ClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _schemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Verifies the server's certificate as Go does (module docs) and keeps
/// the verified chain's earliest `notAfter`.
#[derive(Debug)]
struct RecordingVerifier {
    roots: Arc<Roots>,
    insecure: bool,
    algorithms: WebPkiSupportedAlgorithms,
    /// The verified chain's earliest `notAfter`, once verified.
    chain_expiry: Mutex<Option<i64>>,
}

/// A webpki error as rustls reports it, for the failure's detail.
fn pki_error(error: webpki::Error) -> rustls::Error {
    let certificate = match error {
        webpki::Error::CertExpired { time, not_after } => {
            CertificateError::ExpiredContext { time, not_after }
        }
        webpki::Error::CertNotValidYet { time, not_before } => {
            CertificateError::NotValidYetContext { time, not_before }
        }
        webpki::Error::UnknownIssuer => CertificateError::UnknownIssuer,
        webpki::Error::CertNotValidForName(context) => CertificateError::NotValidForNameContext {
            expected: context.expected,
            presented: context.presented,
        },
        webpki::Error::BadDer | webpki::Error::BadDerTime => CertificateError::BadEncoding,
        webpki::Error::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        other => CertificateError::Other(OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(certificate)
}

/// Unix seconds as rustls' time.
fn unix_time(seconds: i64) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(seconds).unwrap_or(0)))
}

impl RecordingVerifier {
    /// The leaf's dates, checked first, as Go's `Verify` does.
    fn check_dates(end_entity: &CertificateDer<'_>, now: UnixTime) -> Result<(), rustls::Error> {
        use x509_parser::prelude::{FromDer as _, X509Certificate};
        let (_, cert) = X509Certificate::from_der(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let validity = cert.validity();
        let seconds = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        if seconds < validity.not_before.timestamp() {
            return Err(pki_error(webpki::Error::CertNotValidYet {
                time: now,
                not_before: unix_time(validity.not_before.timestamp()),
            }));
        }
        if seconds > validity.not_after.timestamp() {
            return Err(pki_error(webpki::Error::CertExpired {
                time: now,
                not_after: unix_time(validity.not_after.timestamp()),
            }));
        }
        Ok(())
    }
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.insecure {
            return Ok(ServerCertVerified::assertion());
        }
        Self::check_dates(end_entity, now)?;
        let leaf = webpki::EndEntityCert::try_from(end_entity).map_err(pki_error)?;
        leaf.verify_is_valid_for_subject_name(server_name)
            .map_err(pki_error)?;
        let expiry = match self.roots.pinned(end_entity) {
            Some(not_after) => not_after,
            None => {
                let path = leaf
                    .verify_for_usage(
                        self.algorithms.all,
                        &self.roots.anchors,
                        intermediates,
                        now,
                        webpki::KeyUsage::server_auth(),
                        None,
                        None,
                    )
                    .map_err(pki_error)?;
                let mut earliest = certificate::not_after(end_entity).unwrap_or(i64::MAX);
                for cert in path.intermediate_certificates() {
                    if let Some(not_after) = certificate::not_after(&cert.der()) {
                        earliest = earliest.min(not_after);
                    }
                }
                if let Some(not_after) = self.roots.not_after(path.anchor()) {
                    earliest = earliest.min(not_after);
                }
                earliest
            }
        };
        *self
            .chain_expiry
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(expiry);
        Ok(ServerCertVerified::assertion())
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

/// The provider every handshake uses: the process's default, which is
/// ring (see `src/web/tls.rs`, `TlsFields::provider`).
fn provider() -> Arc<CryptoProvider> {
    Arc::clone(ClientConfig::builder().crypto_provider())
}

/// Why a handshake failed, from the error tokio-rustls returned.
fn failure(error: &std::io::Error) -> Failure {
    if let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return Failure::new(Reason::Tls, format!("TLS handshake: {tls}"));
    }
    let what = match error.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            "the server closed the connection during the TLS handshake".to_owned()
        }
        std::io::ErrorKind::ConnectionReset => {
            "the server reset the connection during the TLS handshake".to_owned()
        }
        _ => {
            let text = error.to_string();
            let words = text.split(" (os error").next().unwrap_or(&text).to_owned();
            format!("TLS handshake: {words}")
        }
    };
    Failure::new(Reason::Tls, what)
}

/// Shakes hands over `stream` as `name` by `setup`, before `deadline`.
///
/// # Errors
/// `tls` with rustls' words when the handshake failed (a certificate
/// that did not verify, an alert from the server, the connection ended),
/// `timeout` when the deadline came first, `local` when no client
/// config could be built.
pub(super) async fn handshake(
    stream: TcpStream,
    setup: &TlsSetup,
    name: ServerName<'static>,
    deadline: Instant,
    steplog: &mut StepLog,
) -> Result<(TlsStream<TcpStream>, TlsFacts), Failure> {
    // The step log gets the handshake's line from the session prober,
    // which owns the steps' wording.
    let _ = steplog;
    let provider = provider();
    let verifier = Arc::new(RecordingVerifier {
        roots: Arc::clone(&setup.roots),
        insecure: setup.insecure,
        algorithms: provider.signature_verification_algorithms,
        chain_expiry: Mutex::new(None),
    });
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&setup.versions)
        .map_err(|error| Failure::new(Reason::Local, format!("TLS setup: {error}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::clone(&verifier) as Arc<dyn ServerCertVerifier>);
    let mut config = match &setup.client {
        Some(key) => builder.with_client_cert_resolver(Arc::new(ClientCert(Arc::clone(key)))),
        None => builder.with_no_client_auth(),
    };
    // Each probe is a first visit, as blackbox's.
    config.resumption = Resumption::disabled();
    let connector = TlsConnector::from(Arc::new(config));
    let tls = match tokio::time::timeout_at(deadline, connector.connect(name, stream)).await {
        Err(_) => {
            return Err(Failure::new(
                Reason::Timeout,
                "the TLS handshake did not finish before the deadline",
            ));
        }
        Ok(Err(error)) => return Err(failure(&error)),
        Ok(Ok(tls)) => tls,
    };
    let connection = tls.get_ref().1;
    let version = match connection.protocol_version() {
        Some(ProtocolVersion::TLSv1_2) => "TLS 1.2",
        Some(ProtocolVersion::TLSv1_3) => "TLS 1.3",
        _ => "unknown",
    };
    let cipher = connection
        .negotiated_cipher_suite()
        .map_or("unknown", |suite| {
            crate::config::go_cipher_name(suite.suite())
        });
    let sent = connection.peer_certificates().unwrap_or_default();
    let leaf = sent
        .first()
        .and_then(|der| certificate::facts(der))
        .unwrap_or_default();
    let earliest_expiry = sent
        .iter()
        .filter_map(|der| certificate::not_after(der))
        .min()
        .unwrap_or(GO_ZERO_TIME);
    let last_chain_expiry = verifier
        .chain_expiry
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .unwrap_or(GO_ZERO_TIME);
    Ok((
        tls,
        TlsFacts {
            version,
            cipher,
            leaf,
            earliest_expiry,
            last_chain_expiry,
        },
    ))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::config::rotate;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        date_time_ymd,
    };
    use rustls::RootCertStore;
    use rustls::pki_types::PrivateKeyDer;
    use rustls::server::WebPkiClientVerifier;
    use tokio::io::AsyncWriteExt as _;
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;
    use tokio_rustls::TlsAcceptor;

    /// A CA the test makes.
    pub(crate) struct Ca {
        issuer: Issuer<'static, KeyPair>,
        pem: String,
        der: CertificateDer<'static>,
        not_after: i64,
    }

    fn ca(name: &str, year: i32) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(year, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            der: cert.der().clone(),
            not_after: certificate::not_after(cert.der()).unwrap(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate the test makes, with its key.
    pub(crate) struct Leaf {
        pub(crate) der: CertificateDer<'static>,
        pub(crate) key: PrivateKeyDer<'static>,
        pub(crate) pem: String,
        key_pem: String,
        not_after: i64,
    }

    /// A leaf for `names`, valid until 1 January of `year`, signed by `ca`
    /// or self-signed; `is_ca` makes it a CA too.
    pub(crate) fn leaf(ca: Option<&Ca>, names: &[&str], year: i32, is_ca: bool) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(ToString::to_string).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(year, 1, 1);
        if is_ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        let cert = match ca {
            Some(ca) => params.signed_by(&key, &ca.issuer).unwrap(),
            None => params.self_signed(&key).unwrap(),
        };
        Leaf {
            der: cert.der().clone(),
            key: PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            pem: cert.pem(),
            key_pem: key.serialize_pem(),
            not_after: certificate::not_after(cert.der()).unwrap(),
        }
    }

    /// A TLS server on 127.0.0.1 for one connection, presenting `leaf`,
    /// speaking `versions`, and asking for a client certificate signed by
    /// `client_ca` when given. Its task answers the certificates the
    /// client sent.
    async fn serve(
        leaf: &Leaf,
        client_ca: Option<&Ca>,
        versions: &[&'static SupportedProtocolVersion],
    ) -> (
        u16,
        JoinHandle<Result<Vec<CertificateDer<'static>>, String>>,
    ) {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap();
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                roots.add(ca.der.clone()).unwrap();
                builder.with_client_cert_verifier(
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .unwrap(),
                )
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder
            .with_single_cert(vec![leaf.der.clone()], leaf.key.clone_key())
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.map_err(|e| e.to_string())?;
            let mut tls = acceptor.accept(stream).await.map_err(|e| e.to_string())?;
            let sent = tls
                .get_ref()
                .1
                .peer_certificates()
                .map(<[_]>::to_vec)
                .unwrap_or_default();
            let _ = tls.write_all(b"hello\n").await;
            Ok(sent)
        });
        (port, task)
    }

    const BOTH: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

    /// Shakes hands with 127.0.0.1:`port` as `host` by the `tls_config`
    /// written in `yaml`.
    async fn shake(port: u16, host: &str, yaml: &str) -> Result<TlsFacts, Failure> {
        let options: TlsOptions = serde_saphyr::from_str(yaml).expect(yaml);
        let setup = TlsSetup::new(&options).expect(yaml);
        shake_by(port, host, &setup).await
    }

    /// Shakes hands with 127.0.0.1:`port` as `host` by `setup`.
    async fn shake_by(port: u16, host: &str, setup: &TlsSetup) -> Result<TlsFacts, Failure> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let name = setup.server_name(host)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        handshake(stream, setup, name, deadline, &mut StepLog::disabled())
            .await
            .map(|(_, facts)| facts)
    }

    fn trusting(ca_pem: &str) -> String {
        format!("{{ca: {ca_pem:?}}}")
    }

    #[tokio::test]
    async fn a_valid_chain_gives_the_facts_and_the_chain_expiry_counts_the_root() {
        // The root expires before the leaf: the chain's expiry is the root's,
        // the earliest expiry of what the server sent is the leaf's.
        let root = ca("Test Root", 2035);
        let server = leaf(Some(&root), &["localhost", "127.0.0.1"], 2038, false);
        let (port, task) = serve(&server, None, BOTH).await;
        let facts = shake(port, "localhost", &trusting(&root.pem))
            .await
            .expect("a valid chain");
        assert_eq!(facts.version, "TLS 1.3");
        assert!(
            facts.cipher.starts_with("TLS_AES_") || facts.cipher.starts_with("TLS_CHACHA20"),
            "{}",
            facts.cipher
        );
        assert_eq!(facts.leaf.subject, "CN=localhost");
        assert_eq!(facts.leaf.issuer, "CN=Test Root");
        assert_eq!(facts.leaf.subjectalternative, "localhost");
        assert_eq!(facts.earliest_expiry, server.not_after);
        assert_eq!(facts.last_chain_expiry, root.not_after);
        assert!(root.not_after < server.not_after);
        assert_eq!(task.await.unwrap(), Ok(Vec::new()));
        // An IP address as the host: no SNI, the certificate's IP SAN checked.
        let (port, _task) = serve(&server, None, BOTH).await;
        shake(port, "127.0.0.1", &trusting(&root.pem))
            .await
            .expect("the IP address is in the certificate");
    }

    #[tokio::test]
    async fn an_expired_certificate_fails_as_tls_saying_expired() {
        let root = ca("Test Root", 2040);
        // Expired, and for another name: Go says expired first.
        let server = leaf(Some(&root), &["elsewhere.test"], 2021, false);
        let (port, _task) = serve(&server, None, BOTH).await;
        let failure = shake(port, "localhost", &trusting(&root.pem))
            .await
            .expect_err("expired");
        assert_eq!(failure.reason, Reason::Tls, "{failure}");
        assert!(failure.detail.contains("certificate expired"), "{failure}");
    }

    #[tokio::test]
    async fn another_name_fails_as_tls_naming_both() {
        let root = ca("Test Root", 2040);
        let server = leaf(Some(&root), &["localhost"], 2038, false);
        let (port, _task) = serve(&server, None, BOTH).await;
        let failure = shake(
            port,
            "localhost",
            &format!("{{ca: {:?}, server_name: other.example}}", root.pem),
        )
        .await
        .expect_err("another name");
        assert_eq!(failure.reason, Reason::Tls, "{failure}");
        assert!(
            failure
                .detail
                .contains("not valid for name \"other.example\"")
                && failure.detail.contains("localhost"),
            "{failure}"
        );
    }

    #[tokio::test]
    async fn an_unknown_issuer_fails_as_tls() {
        let root = ca("Test Root", 2040);
        let stranger = ca("Someone Else", 2040);
        let server = leaf(Some(&root), &["localhost"], 2038, false);
        let (port, _task) = serve(&server, None, BOTH).await;
        let failure = shake(port, "localhost", &trusting(&stranger.pem))
            .await
            .expect_err("not signed by the CA given");
        assert_eq!(failure.reason, Reason::Tls, "{failure}");
        assert!(failure.detail.contains("UnknownIssuer"), "{failure}");
    }

    #[tokio::test]
    async fn a_self_signed_ca_leaf_pinned_in_the_ca_list_is_accepted_as_go_accepts_it() {
        let pinned = leaf(None, &["localhost"], 2038, true);
        let (port, _task) = serve(&pinned, None, BOTH).await;
        let facts = shake(port, "localhost", &trusting(&pinned.pem))
            .await
            .expect("pinned");
        assert_eq!(facts.last_chain_expiry, pinned.not_after);
        // Not pinned: an unknown issuer, as in Go.
        let (port, _task) = serve(&pinned, None, BOTH).await;
        let other = ca("Test Root", 2040);
        let failure = shake(port, "localhost", &trusting(&other.pem))
            .await
            .expect_err("not pinned");
        assert_eq!(failure.reason, Reason::Tls, "{failure}");
        // Pinned, but for another name: the name is still checked.
        let (port, _task) = serve(&pinned, None, BOTH).await;
        let failure = shake(
            port,
            "localhost",
            &format!("{{ca: {:?}, server_name: other.example}}", pinned.pem),
        )
        .await
        .expect_err("pinned for another name");
        assert!(failure.detail.contains("not valid for name"), "{failure}");
    }

    #[tokio::test]
    async fn a_client_certificate_is_sent_when_the_server_asks() {
        let root = ca("Test Root", 2040);
        let clients = ca("Client CA", 2040);
        let server = leaf(Some(&root), &["localhost"], 2038, false);
        let client = leaf(Some(&clients), &["client.test"], 2038, false);
        let (port, task) = serve(&server, Some(&clients), BOTH).await;
        let yaml = format!(
            "{{ca: {:?}, cert: {:?}, key: {:?}}}",
            root.pem, client.pem, client.key_pem
        );
        shake(port, "localhost", &yaml)
            .await
            .expect("with a client certificate");
        assert_eq!(
            task.await.unwrap(),
            Ok(vec![client.der.clone()]),
            "the server got the certificate"
        );
        // Without one, a TLS 1.2 server refuses the handshake. (In TLS 1.3
        // the client's handshake ends before the server checks, in Go as
        // in rustls; the refusal comes with the first read.)
        let (port, task) = serve(&server, Some(&clients), &[&rustls::version::TLS12]).await;
        let failure = shake(port, "localhost", &trusting(&root.pem))
            .await
            .expect_err("no client certificate");
        assert_eq!(failure.reason, Reason::Tls, "{failure}");
        assert!(task.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn insecure_skip_verify_accepts_anything_and_keeps_no_chain() {
        let expired = leaf(None, &["elsewhere.test"], 2021, false);
        let (port, _task) = serve(&expired, None, BOTH).await;
        let facts = shake(port, "localhost", "{insecure_skip_verify: true}")
            .await
            .expect("nothing is verified");
        assert_eq!(facts.last_chain_expiry, GO_ZERO_TIME);
        assert_eq!(facts.last_chain_expiry, -62_135_596_800);
        assert_eq!(facts.earliest_expiry, expired.not_after);
        assert_eq!(facts.leaf.subject, "CN=elsewhere.test");
    }

    #[tokio::test]
    async fn versions_are_held_to_and_a_refused_version_fails_as_tls() {
        let root = ca("Test Root", 2040);
        let server = leaf(Some(&root), &["localhost"], 2038, false);
        let (port, _task) = serve(&server, None, BOTH).await;
        let yaml = format!("{{ca: {:?}, max_version: TLS12}}", root.pem);
        let facts = shake(port, "localhost", &yaml).await.expect("TLS 1.2");
        assert_eq!(facts.version, "TLS 1.2");
        assert!(facts.cipher.starts_with("TLS_ECDHE_"), "{}", facts.cipher);
        // A server of TLS 1.3 only, a client of TLS 1.2 only.
        let (port, _task) = serve(&server, None, &[&rustls::version::TLS13]).await;
        let failure = shake(port, "localhost", &yaml)
            .await
            .expect_err("no common version");
        assert_eq!(failure.reason, Reason::Tls, "{failure}");
        assert!(failure.detail.contains("ProtocolVersion"), "{failure}");
        // TLS 1.0 and 1.1 are not spoken.
        let options: TlsOptions = serde_saphyr::from_str("{max_version: TLS11}").unwrap();
        let refused = TlsSetup::new(&options).expect_err("rustls has no TLS 1.1");
        assert_eq!(refused.reason, Reason::Local, "{refused}");
        assert!(refused.detail.contains("older than 1.2"), "{refused}");
    }

    /// A setup is built once per `tls_config` and kept until a reload
    /// clears them; one that cannot be built is not kept.
    #[test]
    fn setups_are_kept_per_options_until_cleared() {
        let setups = TlsSetups::default();
        let root = ca("Kept Root", 2040);
        let options: TlsOptions = serde_saphyr::from_str(&trusting(&root.pem)).unwrap();
        let first = setups.get(&options).unwrap();
        assert!(Arc::ptr_eq(&first, &setups.get(&options).unwrap()));
        setups.clear();
        assert!(!Arc::ptr_eq(&first, &setups.get(&options).unwrap()));
        let missing: TlsOptions = serde_saphyr::from_str("{ca_file: /nonexistent/ca.pem}").unwrap();
        let failure = setups.get(&missing).expect_err("no such file");
        assert_eq!(failure.reason, Reason::Tls, "{failure}");
        assert_eq!(
            setups.kept.lock().unwrap().len(),
            1,
            "failures are not kept"
        );
    }

    /// `options` naming files in the form YAML writes them: `fields` are
    /// `(field, value)`, a value a path or PEM.
    fn options_of(fields: &[(&str, &str)]) -> TlsOptions {
        let yaml = fields
            .iter()
            .map(|(field, value)| format!("{field}: {value:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        serde_saphyr::from_str(&format!("{{{yaml}}}")).expect(&yaml)
    }

    /// The client certificate a client-certificate-requiring server on
    /// loopback saw when `setups` shook hands with it by `options`.
    async fn client_sent(
        setups: &TlsSetups,
        options: &TlsOptions,
        server: &Leaf,
        clients: &Ca,
    ) -> CertificateDer<'static> {
        let (port, task) = serve(server, Some(clients), BOTH).await;
        let setup = setups.get(options).expect("the client's pair serves");
        shake_by(port, "localhost", &setup)
            .await
            .expect("with a client certificate");
        let sent = task.await.unwrap().expect("the server took the handshake");
        assert_eq!(sent.len(), 1, "one certificate");
        sent.into_iter().next().unwrap()
    }

    /// A client certificate and key replaced by rename, as certbot and
    /// Kubernetes do, are sent at the next handshake without a reload,
    /// as blackbox_exporter (which reads them at each probe) sends them.
    #[tokio::test]
    async fn a_client_certificate_rotated_by_rename_is_sent_at_the_next_handshake() {
        let root = ca("Test Root", 2040);
        let clients = ca("Client CA", 2040);
        let server = leaf(Some(&root), &["localhost"], 2038, false);
        let first = leaf(Some(&clients), &["first.client.test"], 2038, false);
        let second = leaf(Some(&clients), &["second.client.test"], 2038, false);
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("client.crt"), dir.path().join("client.key"));
        std::fs::write(&cert, &first.pem).unwrap();
        std::fs::write(&key, &first.key_pem).unwrap();
        let options = options_of(&[
            ("ca", &root.pem),
            ("cert_file", cert.to_str().unwrap()),
            ("key_file", key.to_str().unwrap()),
        ]);
        let setups = TlsSetups::default();
        let sent = client_sent(&setups, &options, &server, &clients).await;
        assert_eq!(sent, first.der);
        rotate(&key, &second.key_pem);
        rotate(&cert, &second.pem);
        let sent = client_sent(&setups, &options, &server, &clients).await;
        assert_eq!(
            certificate::facts(&sent).unwrap().subject,
            "CN=second.client.test",
            "the server saw the rotated certificate"
        );
        assert_eq!(sent, second.der);
    }

    /// A CA file put in place, then rotated, is used at the next
    /// handshake without a reload.
    #[tokio::test]
    async fn a_ca_file_put_in_place_or_rotated_is_used_at_the_next_handshake() {
        let root = ca("Test Root", 2040);
        let stranger = ca("Someone Else", 2040);
        let server = leaf(Some(&root), &["localhost"], 2038, false);
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        let options = options_of(&[("ca_file", ca_file.to_str().unwrap())]);
        let setups = TlsSetups::default();
        let missing = setups.get(&options).expect_err("no CA file yet");
        assert_eq!(missing.reason, Reason::Tls, "{missing}");
        assert!(missing.detail.contains("tls_config.ca_file"), "{missing}");
        // The wrong CA first: the server's certificate has an unknown issuer.
        rotate(&ca_file, &stranger.pem);
        let shake_kept = async || {
            let (port, _task) = serve(&server, None, BOTH).await;
            let setup = setups.get(&options)?;
            shake_by(port, "localhost", &setup).await
        };
        let failure = shake_kept().await.expect_err("another CA");
        assert_eq!(failure.reason, Reason::Tls, "{failure}");
        assert!(failure.detail.contains("UnknownIssuer"), "{failure}");
        // The right CA renamed over it: the next handshake verifies.
        rotate(&ca_file, &root.pem);
        let facts = shake_kept().await.expect("the server's CA, rotated in");
        assert_eq!(facts.leaf.issuer, "CN=Test Root");
    }

    /// While no file of a kept setup changed, its files are not read
    /// again (a file rewritten in place with the same size and time looks
    /// unchanged, so a read would find its garbage); once one changes, a
    /// setup that cannot be built fails the probe as `tls` rather than
    /// the stale one serving on.
    #[test]
    fn a_kept_setup_reads_no_file_until_one_changes_and_then_fails_if_it_cannot_serve() {
        let root = ca("Kept Root", 2040);
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &root.pem).unwrap();
        let options = options_of(&[("ca_file", ca_file.to_str().unwrap())]);
        let setups = TlsSetups::default();
        let kept = setups.get(&options).unwrap();
        // Garbage of the same size, written in place, the time put back:
        // device, inode, size and modification time all as they were.
        let modified = std::fs::metadata(&ca_file).unwrap().modified().unwrap();
        std::fs::write(&ca_file, "x".repeat(root.pem.len())).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&ca_file)
            .unwrap()
            .set_modified(modified)
            .unwrap();
        for _ in 0..3 {
            let again = setups.get(&options).expect("no file read");
            assert!(Arc::ptr_eq(&kept, &again), "the kept setup, no rebuild");
        }
        // A time that moves on is a change: the garbage is read, and the
        // probe fails saying so.
        std::fs::File::options()
            .write(true)
            .open(&ca_file)
            .unwrap()
            .set_modified(modified + Duration::from_secs(1))
            .unwrap();
        let failure = setups
            .get(&options)
            .expect_err("the stale setup does not serve");
        assert_eq!(failure.reason, Reason::Tls, "{failure}");
        assert!(
            failure.detail.contains("tls_config.ca_file")
                && failure.detail.contains("no PEM CERTIFICATE block"),
            "{failure}"
        );
        rotate(&ca_file, &root.pem);
        let rebuilt = setups.get(&options).expect("a CA again");
        assert!(!Arc::ptr_eq(&kept, &rebuilt));
        assert!(Arc::ptr_eq(&rebuilt, &setups.get(&options).unwrap()));
    }

    #[tokio::test]
    async fn a_server_that_never_answers_is_a_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let _held = tokio::spawn(async move {
            let accepted = listener.accept().await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(accepted);
        });
        let options: TlsOptions = serde_saphyr::from_str("{insecure_skip_verify: true}").unwrap();
        let setup = TlsSetup::new(&options).unwrap();
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let deadline = Instant::now() + Duration::from_millis(200);
        let name = setup.server_name("localhost").unwrap();
        let failure = handshake(stream, &setup, name, deadline, &mut StepLog::disabled())
            .await
            .expect_err("no answer");
        assert_eq!(failure.reason, Reason::Timeout, "{failure}");
    }
}
