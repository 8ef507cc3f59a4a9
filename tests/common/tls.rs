//! A TLS server on loopback with a certificate the test makes, for
//! `prober: tcp` modules with `tls: true`.

use std::net::SocketAddr;
use std::sync::Arc;

/// A TLS server on 127.0.0.1 with a self-signed certificate for
/// localhost and 127.0.0.1 valid until 1 January of `year`: its address
/// and the certificate's PEM. It serves as [`serve_tls`] does.
pub async fn tls_server(year: i32) -> (SocketAddr, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(year, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    let der_key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], der_key)
        .unwrap();
    (serve_tls(Arc::new(config)).await, cert.pem())
}

/// A TLS server on 127.0.0.1 with `config`, within the bounds of
/// [`super::serve`]: each connection gets the handshake, then is read
/// until the prober closes. Its address.
pub async fn serve_tls(config: Arc<rustls::ServerConfig>) -> SocketAddr {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    super::serve(move |socket| {
        let acceptor = acceptor.clone();
        async move {
            use tokio::io::AsyncReadExt as _;
            if let Ok(mut tls) = acceptor.accept(socket).await {
                let mut rest = Vec::new();
                let _ = tls.read_to_end(&mut rest).await;
            }
        }
    })
    .await
}
