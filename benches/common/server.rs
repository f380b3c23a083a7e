//! A minimal HTTP/1.1 API server for the benches: LIST answers a fixed JSON list, WATCH
//! answers chunked headers and hands the stream to the bench, which writes events itself.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

use crossbeam_channel::Sender;
use kuberesolver::testkit::TEST_CA_PEM;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub type Stream = Box<dyn ReadWrite>;
pub trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn server_config() -> Arc<rustls::ServerConfig> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(kuberesolver::testkit::TEST_SERVER_CERT_PEM.as_bytes())
            .collect::<Result<_, _>>()
            .expect("server certificate");
    let key = PrivateKeyDer::from_pem_slice(kuberesolver::testkit::TEST_SERVER_KEY_PEM.as_bytes())
        .expect("server key");
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

pub fn client_config() -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(TEST_CA_PEM.as_bytes()) {
        roots.add(cert.expect("CA certificate")).expect("CA added");
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

pub fn accept_stream(tcp: TcpStream, tls: bool) -> Stream {
    tcp.set_nodelay(true).expect("nodelay");
    if tls {
        let conn = rustls::ServerConnection::new(server_config()).expect("TLS server");
        Box::new(rustls::StreamOwned::new(conn, tcp))
    } else {
        Box::new(tcp)
    }
}

/// Reads one request head; `None` when the connection closed.
pub fn read_request(stream: &mut Stream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// The fake API server: answers lists with `list`, and hands each watch stream (after its
/// headers) to the bench through `watches`.
pub fn serve(listener: TcpListener, tls: bool, list: Arc<Vec<u8>>, watches: Sender<Stream>) {
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { return };
            let (list, watches) = (list.clone(), watches.clone());
            std::thread::spawn(move || {
                let mut stream = accept_stream(tcp, tls);
                while let Some(head) = read_request(&mut stream) {
                    if head.contains("watch=true") {
                        let headers = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                                       Transfer-Encoding: chunked\r\n\r\n";
                        if stream.write_all(headers.as_bytes()).is_err() || stream.flush().is_err()
                        {
                            return;
                        }
                        let _ = watches.send(stream);
                        return;
                    }
                    let headers = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        list.len()
                    );
                    if stream.write_all(headers.as_bytes()).is_err()
                        || stream.write_all(&list).is_err()
                        || stream.flush().is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
}

pub fn chunk(line: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", line.len()).into_bytes();
    out.extend_from_slice(line);
    out.extend_from_slice(b"\r\n");
    out
}
