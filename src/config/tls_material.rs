//! What a module's `tls_config` names, read and checked: the CA
//! certificates, the client certificate and its key, from inline PEM or
//! from files.
//!
//! Files are read as the config itself is ([`super::read_bounded`]):
//! regular files only, never waited on, at most [`MAX_TLS_FILE_BYTES`]
//! each. A path is taken as written, relative to the working directory,
//! as blackbox_exporter takes it. [`TlsMaterial::load`] runs when the
//! config is loaded (`config/host.rs`): inline PEM that cannot serve is
//! an error, and a missing file, a file without PEM, or a key that is not
//! the certificate's is a located note at start-up, at reload and in
//! `--config.check` (the module loads and its probes fail as `tls`, as
//! blackbox_exporter's do). It runs again when a module's TLS setup is
//! built for its first handshake (`prober/tls.rs`).

#![forbid(unsafe_code)]

use super::{Refusal, TlsOptions, in_mebibytes, read_bounded};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// The largest CA, certificate or key file a `tls_config` may name. A
/// bundle of every CA that browsers trust is about 250 KB.
pub(crate) const MAX_TLS_FILE_BYTES: u64 = 1024 * 1024;

/// A `tls_config`'s certificates and key, read and checked.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub(crate) struct TlsMaterial {
    /// The CA certificates that replace the system roots; `None` to use
    /// the system roots.
    pub(crate) ca: Option<Vec<CertificateDer<'static>>>,
    /// The client certificate (its chain, leaf first) with its key.
    pub(crate) client: Option<Arc<CertifiedKey>>,
}

/// Why a `tls_config` could not be read: the field at fault
/// (`ca_file`, `key`...) and what is wrong, in a sentence.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsMaterialError {
    /// The field of `tls_config` at fault.
    pub(crate) field: &'static str,
    /// What is wrong with it.
    pub(crate) message: String,
}

impl fmt::Display for TlsMaterialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tls_config.{}: {}", self.field, self.message)
    }
}

impl std::error::Error for TlsMaterialError {}

fn error(field: &'static str, message: impl Into<String>) -> TlsMaterialError {
    TlsMaterialError {
        field,
        message: message.into(),
    }
}

/// The PEM text of an inline field or of its `_file` twin (config
/// reading has already refused both at once), with the field it came from.
fn pem_source(
    (inline_field, inline): (&'static str, Option<&String>),
    (file_field, file): (&'static str, Option<&std::path::PathBuf>),
) -> Result<Option<(&'static str, Vec<u8>)>, TlsMaterialError> {
    if let Some(text) = inline {
        return Ok(Some((inline_field, text.as_bytes().to_vec())));
    }
    let Some(path) = file else {
        return Ok(None);
    };
    read_file(path, file_field).map(|bytes| Some((file_field, bytes)))
}

/// Reads a PEM file `field` names, within [`MAX_TLS_FILE_BYTES`].
fn read_file(path: &Path, field: &'static str) -> Result<Vec<u8>, TlsMaterialError> {
    read_bounded(path, MAX_TLS_FILE_BYTES).map_err(|refusal| {
        let advice = match refusal {
            Refusal::NotRegular(_) | Refusal::TooLarge { .. } => format!(
                ": point {field} at a PEM file of at most {}",
                in_mebibytes(MAX_TLS_FILE_BYTES)
            ),
            Refusal::Unreadable(_) => String::new(),
        };
        error(field, format!("{}: {refusal}{advice}", path.display()))
    })
}

/// The certificates of PEM text `pem`, at least one; or what is wrong
/// with it, in words that follow the name of the field it came from. The
/// web config reads its certificates with it too (`web/tls.rs`).
pub(crate) fn pem_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|why| format!("not PEM certificates: {why}"))?;
    if certs.is_empty() {
        return Err("holds no PEM CERTIFICATE block".to_owned());
    }
    Ok(certs)
}

/// The private key of PEM text `pem`; or what is wrong with it, as for
/// [`pem_certificates`].
pub(crate) fn pem_private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|why| match why {
        rustls::pki_types::pem::Error::NoItemsFound => {
            "holds no PEM private key block (BEGIN PRIVATE KEY, BEGIN RSA PRIVATE KEY \
             or BEGIN EC PRIVATE KEY)"
                .to_owned()
        }
        other => format!("is not a readable PEM private key: {other}"),
    })
}

impl TlsMaterial {
    /// Reads and checks what `options` names: the CA certificates, each
    /// usable as a root; the client certificate and a key that is its
    /// own.
    ///
    /// # Errors
    /// The first field at fault and why.
    pub(crate) fn load(options: &TlsOptions) -> Result<Self, TlsMaterialError> {
        let ca = pem_source(
            ("ca", options.ca.as_ref()),
            ("ca_file", options.ca_file.as_ref()),
        )?
        .map(|(field, pem)| {
            let certs = pem_certificates(&pem).map_err(|message| error(field, message))?;
            let mut roots = RootCertStore::empty();
            for (number, cert) in certs.iter().enumerate() {
                roots.add(cert.clone()).map_err(|why| {
                    error(
                        field,
                        format!(
                            "certificate {} of {} cannot be a root: {why}",
                            number + 1,
                            certs.len()
                        ),
                    )
                })?;
            }
            Ok(certs)
        })
        .transpose()?;
        let cert = pem_source(
            ("cert", options.cert.as_ref()),
            ("cert_file", options.cert_file.as_ref()),
        )?;
        let key = pem_source(
            ("key", options.key.as_ref()),
            ("key_file", options.key_file.as_ref()),
        )?;
        let client = match (cert, key) {
            (Some((cert_field, cert)), Some((key_field, key))) => {
                let chain =
                    pem_certificates(&cert).map_err(|message| error(cert_field, message))?;
                let key = pem_private_key(&key).map_err(|message| error(key_field, message))?;
                let provider = rustls::ClientConfig::builder().crypto_provider().clone();
                let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|why| {
                    let message = match why {
                        rustls::Error::InconsistentKeys(_) => format!(
                            "is not the key of the certificate in {cert_field}: give the key \
                             the certificate was made for"
                        ),
                        other => format!("cannot be used: {other}"),
                    };
                    error(key_field, message)
                })?;
                Some(Arc::new(certified))
            }
            // Config reading refuses one without the other.
            _ => None,
        };
        Ok(Self { ca, client })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};

    struct Files {
        dir: std::path::PathBuf,
        cert: String,
        key: String,
        other_key: String,
    }

    fn files(name: &str) -> Files {
        let dir = crate::config::tests::temp_file(name)
            .parent()
            .expect("a directory")
            .to_owned();
        let key = KeyPair::generate().unwrap();
        let other = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["client.test".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        Files {
            dir,
            cert: cert.pem(),
            key: key.serialize_pem(),
            other_key: other.serialize_pem(),
        }
    }

    fn options(yaml: &str) -> TlsOptions {
        serde_saphyr::from_str(yaml).expect(yaml)
    }

    #[test]
    fn inline_pem_and_files_are_read_and_the_key_goes_with_the_certificate() {
        let files = files("tls-material-good");
        let cert_path = files.dir.join("cert.pem");
        let key_path = files.dir.join("key.pem");
        std::fs::write(&cert_path, &files.cert).unwrap();
        std::fs::write(&key_path, &files.key).unwrap();
        let from_files = TlsMaterial::load(&options(&format!(
            "{{ca_file: {ca:?}, cert_file: {ca:?}, key_file: {key:?}}}",
            ca = cert_path.display().to_string(),
            key = key_path.display().to_string()
        )))
        .unwrap();
        assert_eq!(from_files.ca.as_ref().map(Vec::len), Some(1));
        assert!(from_files.client.is_some());
        let inline = TlsMaterial::load(&options(&format!(
            "{{ca: {ca:?}, cert: {ca:?}, key: {key:?}}}",
            ca = files.cert,
            key = files.key
        )))
        .unwrap();
        assert_eq!(inline.ca, from_files.ca);
        let none = TlsMaterial::load(&TlsOptions::default()).unwrap();
        assert!(none.ca.is_none() && none.client.is_none());
        let _ = std::fs::remove_dir_all(&files.dir);
    }

    #[test]
    fn bad_files_are_refused_naming_the_field_and_why() {
        let files = files("tls-material-bad");
        let path = |name: &str| files.dir.join(name).display().to_string();
        std::fs::write(path("cert.pem"), &files.cert).unwrap();
        std::fs::write(path("empty.pem"), "nothing here\n").unwrap();
        std::fs::write(path("other.key"), &files.other_key).unwrap();
        std::fs::write(
            path("big.pem"),
            vec![b'x'; usize::try_from(MAX_TLS_FILE_BYTES).unwrap() + 1],
        )
        .unwrap();
        for (yaml, field, needle) in [
            (
                format!("{{ca_file: {:?}}}", path("missing.pem")),
                "ca_file",
                "cannot read the file: no such file".to_owned(),
            ),
            (
                format!("{{ca_file: {:?}}}", files.dir.display().to_string()),
                "ca_file",
                "is a directory, not a regular file: point ca_file at a PEM file of at most 1 MiB"
                    .to_owned(),
            ),
            (
                "{ca_file: /dev/zero}".to_owned(),
                "ca_file",
                "a device".to_owned(),
            ),
            (
                format!("{{ca_file: {:?}}}", path("big.pem")),
                "ca_file",
                "more than the limit of 1048576 bytes".to_owned(),
            ),
            (
                format!("{{ca_file: {:?}}}", path("empty.pem")),
                "ca_file",
                "holds no PEM CERTIFICATE block".to_owned(),
            ),
            (
                format!(
                    "{{cert_file: {:?}, key_file: {:?}}}",
                    path("empty.pem"),
                    path("other.key")
                ),
                "cert_file",
                "holds no PEM CERTIFICATE block".to_owned(),
            ),
            (
                format!(
                    "{{cert_file: {:?}, key_file: {:?}}}",
                    path("cert.pem"),
                    path("empty.pem")
                ),
                "key_file",
                "holds no PEM private key block".to_owned(),
            ),
            (
                format!(
                    "{{cert_file: {:?}, key_file: {:?}}}",
                    path("cert.pem"),
                    path("other.key")
                ),
                "key_file",
                "is not the key of the certificate in cert_file".to_owned(),
            ),
        ] {
            let refused = TlsMaterial::load(&options(&yaml)).expect_err(&yaml);
            assert_eq!(refused.field, field, "{yaml}: {refused}");
            assert!(refused.message.contains(&needle), "{yaml}: {refused}");
        }
        let _ = std::fs::remove_dir_all(&files.dir);
    }
}
