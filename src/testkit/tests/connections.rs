//! Connections: stop and resume, TLS, shutdown, IPv6 and `Connection: close`.

use super::*;

#[test]
fn stop_and_resume_listening_keeps_state() {
    let server = FakeApiServer::start().expect("start");
    let rv = server.set_endpoints("prod", "echo", &[("grpc", 8080)], &pods());
    let mut c = Client::new(&server);
    c.watch(&format!("{EP}?watch=1&resourceVersion={rv}"));
    assert!(server.wait_for_watches(1, Duration::from_secs(1)));
    let ((), took) = timed(|| server.stop_listening());
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(c.chunk().is_err());
    assert_eq!(server.open_watches(), 0);
    assert!(TcpStream::connect(server.addr()).is_err());
    server.resume_listening().expect("resume");
    let (status, list) = Client::new(&server).get_json(EP);
    assert_eq!(status, 200);
    assert_eq!(list["metadata"]["resourceVersion"], rv.as_str());
}

fn client_config(
    ca_pem: &str,
) -> rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("pem")).expect("root");
    }
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
}

fn tls_list(server: &FakeApiServer, config: ClientConfig) -> io::Result<u16> {
    let mut c = Client::tls(server, config);
    c.send(EP, &[("Connection", "close")])?;
    Ok(c.head()?.status)
}

#[test]
fn tls_handshake_and_verification() {
    let server = FakeApiServer::builder()
        .tls(TlsIdentity::test_server())
        .start()
        .expect("start");
    assert!(server.url().starts_with("https://127.0.0.1:"));
    let config = || client_config(TEST_CA_PEM).with_no_client_auth();
    assert_eq!(tls_list(&server, config()).ok(), Some(200));
    // A watch over TLS, ended by a fault.
    let mut c = Client::tls(&server, config());
    c.watch(&format!("{EP}?watch=1"));
    assert!(server.wait_for_watches(1, Duration::from_secs(1)));
    server.inject(Fault::EndCleanly);
    assert_eq!(c.chunk().expect("chunk"), None);
    // All certificates of a bundle are trusted; an unrelated CA is not.
    assert_eq!(
        tls_list(&server, client_config(BUNDLE_PEM).with_no_client_auth()).ok(),
        Some(200)
    );
    assert!(tls_list(&server, client_config(OTHER_CA_PEM).with_no_client_auth()).is_err());
    // A client closing a TLS watch is noticed.
    let mut c = Client::tls(&server, config());
    c.watch(&format!("{EP}?watch=1"));
    assert!(server.wait_for_watches(1, Duration::from_secs(1)));
    drop(c);
    assert!(server.wait_for_watches(0, Duration::from_secs(1)));

    for bad in [TlsIdentity::wrong_san(), TlsIdentity::expired()] {
        let server = FakeApiServer::builder().tls(bad).start().expect("start");
        assert!(tls_list(&server, config()).is_err());
    }
}

#[test]
fn tls_client_certificates() {
    let server = FakeApiServer::builder()
        .tls(TlsIdentity::test_server())
        .client_ca(CLIENT_CA_PEM)
        .start()
        .expect("start");
    assert!(tls_list(&server, client_config(TEST_CA_PEM).with_no_client_auth()).is_err());
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(CLIENT_CERT_PEM.as_bytes())
            .collect::<Result<_, _>>()
            .expect("cert");
    let key = PrivateKeyDer::from_pem_slice(CLIENT_KEY_PEM.as_bytes()).expect("key");
    let config = client_config(TEST_CA_PEM)
        .with_client_auth_cert(certs, key)
        .expect("client auth");
    assert_eq!(tls_list(&server, config).ok(), Some(200));
}

#[test]
fn shutdown_is_prompt_with_everything_open() {
    let server = FakeApiServer::builder()
        .tls(TlsIdentity::test_server())
        .start()
        .expect("start");
    let config = client_config(TEST_CA_PEM).with_no_client_auth();
    let mut watch = Client::tls(&server, config.clone());
    watch.watch(&format!("{EP}?watch=1"));
    let mut idle = Client::tls(&server, config);
    assert_eq!(idle.get_json(EP).0, 200);
    let _half_open = TcpStream::connect(server.addr()).expect("connect"); // no handshake
    assert!(server.wait_for_watches(1, Duration::from_secs(1)));
    let ((), took) = timed(|| drop(server));
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(watch.chunk().is_err());
}

#[test]
fn ipv6_and_connection_close_on_watches() {
    let Ok(server) = FakeApiServer::builder()
        .bind("[::1]:0".parse().expect("addr"))
        .max_watch_timeout(Duration::from_millis(100))
        .start()
    else {
        // Under CI a missing prerequisite fails the test; locally it is skipped, loudly.
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        assert!(!ci, "no IPv6 loopback address (::1), and CI is set");
        // Not `eprintln!`, which the harness captures and hides for a passing test.
        let _ = writeln!(io::stderr(), "skipped: no IPv6 loopback address (::1)");
        return;
    };
    assert!(
        server.url().starts_with("http://[::1]:"),
        "{}",
        server.url()
    );
    let mut c = Client::new(&server);
    assert_eq!(c.get_json(EP).0, 200);
    c.send(&format!("{EP}?watch=1"), &[("Connection", "close")])
        .expect("send");
    let head = c.head().expect("head");
    assert_eq!(head.header("connection"), Some("close"));
    assert_eq!(c.chunk().expect("clean end"), None);
    assert!(c.rest().is_empty());
}
