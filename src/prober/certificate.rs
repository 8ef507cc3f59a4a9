//! What the TLS series say of a certificate, in Go's words: blackbox's
//! `probe_ssl_last_chain_info` labels and the expiry.

#![forbid(unsafe_code)]

/// A certificate as blackbox_exporter's series show it.
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertFacts {
    /// SHA-256 of the DER, lower-case hex.
    pub fingerprint_sha256: String,
    /// The subject as Go prints a name: `CN=…,O=…,C=…`.
    pub subject: String,
    /// The issuer, printed as the subject.
    pub issuer: String,
    /// The DNS names of the certificate, joined by commas.
    pub subjectalternative: String,
    /// The serial number, lower-case hex without leading zeros.
    pub serialnumber: String,
    /// The end of validity (`notAfter`), Unix seconds.
    pub not_after: i64,
}
