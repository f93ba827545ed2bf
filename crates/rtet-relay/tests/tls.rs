//! `--tls-cert`/`--tls-key`: the relay serves wss:// itself.

mod common;

use std::sync::Arc;

use common::*;
use rtet_relay::config::TlsFiles;
use serde_json::json;
use tokio_rustls::rustls;

#[tokio::test]
async fn wss_subscriber_subscribes_over_tls() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = std::env::temp_dir().join(format!("rtet-relay-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    let mut cfg = config();
    cfg.tls = Some(TlsFiles {
        cert: cert_file,
        key: key_file,
    });
    let relay = start(cfg).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .expect("TLS handshake with the relay's certificate");
    let (mut ws, _) = tokio_tungstenite::client_async("wss://localhost/ws", tls)
        .await
        .expect("wss upgrade");
    use futures_util::{SinkExt, StreamExt};
    ws.send(
        json!({"type":"subscribe","channel":"public"})
            .to_string()
            .into(),
    )
    .await
    .unwrap();
    let subscribed = ws.next().await.unwrap().unwrap();
    assert!(subscribed.to_text().unwrap().contains("\"subscribed\""));

    // A plain-text client gets nothing useful from a TLS port.
    assert!(tokio_tungstenite::connect_async(relay.ws_url("/ws"))
        .await
        .is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
