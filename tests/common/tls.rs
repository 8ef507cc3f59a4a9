//! A TLS server on loopback with a certificate the test makes, for
//! `prober: tcp` modules with `tls: true`.

use std::time::Duration;

/// A TLS server on 127.0.0.1 with a self-signed certificate for
/// localhost and 127.0.0.1 valid until 1 January of `year`: its address
/// and the certificate's PEM. It serves every connection: handshake,
/// then reads until the prober closes.
pub async fn tls_server(year: i32) -> (std::net::SocketAddr, String) {
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
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        // Bounded: a test probes it a few dozen times at most.
        for _ in 0..200 {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt as _;
                let served = async {
                    if let Ok(mut tls) = acceptor.accept(socket).await {
                        let mut rest = Vec::new();
                        let _ = tls.read_to_end(&mut rest).await;
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(5), served).await;
            });
        }
    });
    (address, cert.pem())
}
