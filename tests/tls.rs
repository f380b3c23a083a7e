//! TLS against the fake API server: verification always on, the CA or nothing.

mod support;

use kuberesolver::testkit::{FakeApiServer, TlsIdentity, BUNDLE_PEM, OTHER_CA_PEM, TEST_CA_PEM};
use kuberesolver::{Config, ErrorKind, Resolver, Source};
use support::*;

fn tls_server(identity: TlsIdentity) -> FakeApiServer {
    let server = FakeApiServer::builder()
        .tls(identity)
        .token(Some("tls-test-token".into()))
        .start()
        .expect("TLS server");
    scale(&server, 2);
    server
}

fn resolver_with(config: Config) -> Resolver {
    spawn_on(
        config.token("tls-test-token"),
        Source::Endpoints,
        "kubernetes:///echo.prod:grpc",
    )
}

/// The resolver fails to connect, says why, and the server never saw an HTTP request.
fn refused(server: &FakeApiServer, config: Config, why: &str) {
    let r = resolver_with(config);
    let err = not_ready(&r);
    let cause = err.cause().expect("a cause");
    assert_eq!(cause.kind(), ErrorKind::Transport, "{err}");
    assert!(cause.to_string().contains(why), "{cause}");
    assert!(
        server.requests().iter().all(|q| q.method.is_empty()),
        "no request got through: {:?}",
        server.requests()
    );
}

#[test]
fn the_cluster_ca_verifies_an_ip_address_server_and_the_token_is_sent() {
    let server = tls_server(TlsIdentity::test_server());
    assert!(server.url().starts_with("https://127.0.0.1:"));
    let r = resolver_with(Config::new(server.url()).ca_pem(TEST_CA_PEM));
    converges_to(&r, &addrs(8080, [1, 2]));
    scale(&server, 3);
    converges_to(&r, &addrs(8080, 1..=3));
    assert!(server
        .requests()
        .iter()
        .all(|q| q.bearer_token() == Some("tls-test-token")));
}

#[test]
fn every_certificate_of_a_pem_bundle_is_trusted() {
    let server = tls_server(TlsIdentity::test_server());
    assert!(
        BUNDLE_PEM.starts_with(OTHER_CA_PEM.trim_end()),
        "the right CA comes second"
    );
    let dir = std::env::temp_dir().join(format!("kuberesolver-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let ca_file = dir.join("ca.crt");
    std::fs::write(&ca_file, BUNDLE_PEM).expect("write");
    let r = resolver_with(Config::new(server.url()).ca_file(&ca_file));
    converges_to(&r, &addrs(8080, [1, 2]));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_ipv6_server_in_brackets_verifies_against_its_ip_san() {
    let Ok(server) = FakeApiServer::builder()
        .bind("[::1]:0".parse().expect("addr"))
        .tls(TlsIdentity::test_server())
        .token(Some("tls-test-token".into()))
        .start()
    else {
        missing_prerequisite("an IPv6 loopback address (::1)");
        return;
    };
    scale(&server, 1);
    let url = format!("https://[::1]:{}", server.addr().port());
    let r = resolver_with(Config::new(url).ca_pem(TEST_CA_PEM));
    converges_to(&r, &addrs(8080, [1]));
}

#[test]
fn a_server_signed_by_another_ca_is_refused() {
    let server = tls_server(TlsIdentity::test_server());
    refused(
        &server,
        Config::new(server.url()).ca_pem(OTHER_CA_PEM),
        "UnknownIssuer",
    );
}

#[test]
#[cfg(feature = "webpki-roots")]
fn without_a_ca_the_webpki_roots_refuse_a_private_ca() {
    let server = tls_server(TlsIdentity::test_server());
    refused(&server, Config::new(server.url()), "UnknownIssuer");
}

#[test]
#[cfg(not(feature = "webpki-roots"))]
fn without_a_ca_or_the_webpki_roots_spawn_fails_and_says_what_to_set() {
    let server = tls_server(TlsIdentity::test_server());
    let err = Resolver::builder("kubernetes:///echo.prod:grpc")
        .config(Config::new(server.url()).token("tls-test-token"))
        .spawn()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("Config::ca_file"), "{err}");
    assert!(server.requests().is_empty(), "{:?}", server.requests());
}

#[test]
fn a_certificate_for_another_name_is_refused() {
    let server = tls_server(TlsIdentity::wrong_san());
    refused(
        &server,
        Config::new(server.url()).ca_pem(TEST_CA_PEM),
        "not valid for name",
    );
}

#[test]
fn a_tls_server_name_is_for_sni_and_verification_only_and_host_stays_the_urls() {
    // Only valid for example.com: verifying 127.0.0.1 would fail.
    let server = tls_server(TlsIdentity::wrong_san());
    let r = resolver_with(
        Config::new(server.url())
            .ca_pem(TEST_CA_PEM)
            .tls_server_name("example.com"),
    );
    converges_to(&r, &addrs(8080, [1, 2]));
    server.wait_for_watches(1, PATIENCE);
    // As client-go sends it: the URL's authority, for proxies that route on `Host`.
    let real = server.addr().to_string();
    let requests = server.requests();
    assert!(requests.len() >= 2, "{requests:?}");
    for request in requests {
        assert_eq!(request.host.as_deref(), Some(real.as_str()), "{request:?}");
    }
}

#[test]
fn an_expired_certificate_is_refused() {
    let server = tls_server(TlsIdentity::expired());
    refused(
        &server,
        Config::new(server.url()).ca_pem(TEST_CA_PEM),
        "certificate expired",
    );
}

#[test]
fn plain_http_to_a_tls_server_fails_without_resolving() {
    // The TLS server cannot read the plain request: no request is logged, and the client
    // sees its connection end without an answer.
    let server = tls_server(TlsIdentity::test_server());
    let url = format!("http://{}", server.addr());
    let r = resolver_with(Config::new(url));
    let err = not_ready(&r);
    let cause = err.cause().expect("a cause");
    assert_eq!(cause.kind(), ErrorKind::Transport, "{err}");
    assert!(
        server.requests().is_empty(),
        "nothing got through: {:?}",
        server.requests()
    );
    assert!(!r.status().resolved);
}

#[test]
fn a_ca_with_an_http_url_is_a_configuration_error_at_spawn() {
    let err = Resolver::builder("kubernetes:///echo.prod:grpc")
        .config(Config::new("http://127.0.0.1:1").ca_pem(TEST_CA_PEM))
        .spawn()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
}
