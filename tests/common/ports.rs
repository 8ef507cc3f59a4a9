//! Loopback ports for tests to probe, and servers on them.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

/// How long a server started by [`serve`] serves one connection.
pub const SERVE_LIMIT: Duration = Duration::from_secs(5);
/// How many connections a server started by [`serve`] accepts.
pub const SERVE_CONNECTIONS: usize = 200;

/// A loopback address nothing listens on: bound, then released. A closed
/// port to probe, or a port for a server to take.
pub fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address")
}

/// A listener on 127.0.0.1 and its port: an open port for as long as the
/// listener lives (connections queue up unaccepted).
pub fn open_port() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local address").port();
    (listener, port)
}

/// Accepts every connection waiting on the non-blocking `listener`
/// (at most 10,000), without waiting; how many there were.
pub fn accept_waiting(listener: &TcpListener) -> usize {
    let mut accepted = 0;
    for _ in 0..10_000 {
        match listener.accept() {
            Ok(_) => accepted += 1,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(error) => panic!("accept failed: {error}"),
        }
    }
    accepted
}

/// A server on 127.0.0.1 that runs `on_connection` for each connection
/// (at most [`SERVE_CONNECTIONS`], each for at most [`SERVE_LIMIT`]), on the runtime that
/// calls it; its address.
pub async fn serve<F, Fut>(on_connection: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for _ in 0..SERVE_CONNECTIONS {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let served = on_connection(socket);
            tokio::spawn(async move {
                let _ = tokio::time::timeout(SERVE_LIMIT, served).await;
            });
        }
    });
    address
}
