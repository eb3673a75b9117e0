//! TLS session resumption against the real binary: a client that kept its ticket resumes
//! (no certificate signature), and a ticket from before a restart is simply not honoured (a
//! full handshake, never a failure): ticket keys live in the process, shared with nothing.
#![allow(clippy::unwrap_used)]

mod common;

use std::{io::Write, net::TcpStream, sync::Arc, time::Duration};

use common::{Server, client_config, post_token};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, StreamOwned};

/// One connection: handshake, the seed request, its answer read whole; how it was made.
fn one_request(server: &Server, config: &Arc<ClientConfig>) -> (HandshakeKind, String) {
    let tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = StreamOwned::new(ClientConnection::new(config.clone(), name).unwrap(), tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    let kind = tls.conn.handshake_kind().unwrap();
    let mut raw = post_token(
        &[("Authorization", common::SEED_AUTH), common::FORM],
        "grant_type=client_credentials",
    );
    // Close after this answer, so reading to the end reads it all (and the tickets before it).
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    raw.splice(at + 2..at + 2, b"Connection: close\r\n".iter().copied());
    tls.write_all(&raw).unwrap();
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut tls, &mut answer);
    (kind, String::from_utf8_lossy(&answer).into_owned())
}

#[test]
fn a_client_with_a_ticket_resumes_and_a_restart_falls_back_to_a_full_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let config = client_config(&dir.path().join("tls.crt"));
    let (first, answer) = one_request(&server, &config);
    assert_eq!(first, HandshakeKind::Full);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    for _ in 0..3 {
        let (kind, answer) = one_request(&server, &config);
        assert_eq!(kind, HandshakeKind::Resumed);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    // A client that does not resume still gets in.
    let mut fresh = (*config).clone();
    fresh.resumption = rustls::client::Resumption::disabled();
    let (kind, _) = one_request(&server, &Arc::new(fresh));
    assert_eq!(kind, HandshakeKind::Full);
    // After a restart the old ticket key is gone: the client's ticket is refused quietly and
    // the handshake is a full one.
    server.terminate();
    let server = Server::start(dir.path(), &[]);
    let (kind, answer) = one_request(&server, &config);
    assert_eq!(kind, HandshakeKind::Full);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
