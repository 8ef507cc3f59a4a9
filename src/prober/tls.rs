//! The TLS handshake of a `prober: tcp` module (`tls: true` or a
//! `starttls` step): verification as Go does it, and what the TLS series
//! show of it.

#![forbid(unsafe_code)]

use super::{CertFacts, Failure, Reason, StepLog};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

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
    /// The latest of the verified chains' earliest `notAfter`, Unix
    /// seconds; Go's zero time (-62135596800) when nothing was verified.
    pub last_chain_expiry: i64,
}

/// How a module's handshakes verify and authenticate: built from its
/// `tls_config`.
#[derive(Debug)]
pub(crate) struct TlsSetup {}

/// Shakes hands over `stream` as `name` by `setup`, before `deadline`.
#[allow(
    dead_code,
    reason = "skeleton of issue 20: the session prober calls it"
)]
pub(super) async fn handshake(
    stream: TcpStream,
    setup: &TlsSetup,
    name: ServerName<'static>,
    deadline: Instant,
    steplog: &mut StepLog,
) -> Result<(TlsStream<TcpStream>, TlsFacts), Failure> {
    let _ = (stream, setup, name, deadline, steplog);
    Err(Failure::new(Reason::Local, "TLS is not built yet"))
}
