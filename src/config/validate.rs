//! Checking a configuration at spawn: the URL parsed, the CA and client certificate files
//! read and parsed, the token source started. What comes out, a [`ServerAccess`], is all the
//! API client needs.

use std::sync::Arc;

use super::{Config, PemSource, TokenSpec};
use crate::credentials::TokenSource;
use crate::Error;

impl PemSource {
    fn read(&self, what: &str) -> Result<(Vec<u8>, String), Error> {
        match self {
            PemSource::Pem(pem) => Ok((pem.clone(), format!("the {what} PEM"))),
            PemSource::File(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    Error::config(format!("cannot read {what} file {}: {e}", path.display()))
                })?;
                Ok((pem, format!("{what} file {}", path.display())))
            }
        }
    }
}

impl Config {
    /// Check the URL, read the files, start the token source: everything that can fail
    /// before the watcher starts.
    pub(crate) fn access(&self) -> Result<ServerAccess, Error> {
        let server = parse_server(&self.server)?;
        let ca = match &self.ca {
            None => None,
            Some(source) => {
                let (pem, what) = source.read("CA")?;
                Some(parse_certificates(&pem, &what)?)
            }
        };
        let client = match &self.client {
            None => None,
            Some((cert, key)) => {
                let (pem, what) = cert.read("client certificate")?;
                let chain = parse_certificates(&pem, &what)?;
                let (pem, what) = key.read("client key")?;
                let key = ureq::tls::PrivateKey::from_pem(&pem)
                    .map_err(|_| Error::config(format!("{what} holds no private key")))?;
                Some(ureq::tls::ClientCert::new_with_certs(&chain, key))
            }
        };
        let tls_used =
            ca.is_some() || client.is_some() || self.tls_server_name.is_some() || self.insecure;
        if tls_used && !server.https {
            return Err(Error::config(format!(
                "TLS settings are configured but the server URL {:?} is not https",
                self.server
            )));
        }
        let token = match &self.token {
            None => None,
            Some(TokenSpec::Value(secret)) => Some(Arc::new(TokenSource::fixed(secret)?)),
            Some(TokenSpec::File(path)) => Some(Arc::new(TokenSource::file(path.clone())?)),
            Some(TokenSpec::Exec(spec)) => Some(Arc::new(TokenSource::exec(spec.clone())?)),
        };
        let (base, connect_to, host_header) = match &self.tls_server_name {
            None => (server.base, None, None),
            Some(name) => {
                if name.is_empty() || name.contains(['/', ':', '@', ' ', '?', '#']) {
                    return Err(Error::config(format!("bad tls-server-name {name:?}")));
                }
                // As client-go: connect to the URL's host and send it as `Host` (a proxy or
                // load balancer in front of the API server may route on it), and use `name`
                // only for SNI and to verify the certificate. ureq takes both SNI and the
                // verified name from the URL, so the URL names `name`, a resolver maps it
                // back to the real host, and the request carries an explicit `Host`.
                let real = server.authority_with_port.clone();
                (
                    format!("https://{name}:{}{}", server.port, server.path),
                    Some((name.clone(), real)),
                    Some(server.authority.clone()),
                )
            }
        };
        // Without the webpki roots, such a client would trust nothing: every handshake
        // would fail later with a less useful error. Say what to do now instead.
        if cfg!(not(feature = "webpki-roots")) && server.https && ca.is_none() && !self.insecure {
            return Err(Error::config(format!(
                "no CA is configured for the https server {:?}, and this build trusts no \
                 public roots (the `webpki-roots` feature of kuberesolver is off): set the \
                 cluster CA with Config::ca_file or Config::ca_pem, or enable the feature",
                self.server
            )));
        }
        if self.insecure {
            log::warn!(
                "TLS verification of {} is OFF (insecure-skip-tls-verify in the kubeconfig): \
                 anyone in the path can read the token and forge the endpoints",
                self.server
            );
        }
        Ok(ServerAccess {
            base,
            ca,
            client,
            insecure: self.insecure,
            connect_to,
            host_header,
            token,
        })
    }
}

/// A checked configuration with its files read: how to reach the API server, what to trust
/// and how to authenticate.
#[derive(Debug)]
pub(crate) struct ServerAccess {
    /// `scheme://host[:port][/prefix]`, no trailing slash.
    pub base: String,
    /// The CA certificates to trust; `None` means the webpki roots.
    pub ca: Option<Vec<ureq::tls::Certificate<'static>>>,
    pub client: Option<ureq::tls::ClientCert>,
    pub insecure: bool,
    /// With a tls-server-name: (the name in `base`, the real `host:port` to connect to).
    pub connect_to: Option<(String, String)>,
    /// With a tls-server-name: the `Host` header, the server URL's authority as written.
    pub host_header: Option<String>,
    pub token: Option<Arc<TokenSource>>,
}

struct Server {
    base: String,
    https: bool,
    /// `host[:port]` as written in the URL.
    authority: String,
    /// `host:port` with the default port filled in.
    authority_with_port: String,
    port: u16,
    path: String,
}

fn parse_server(url: &str) -> Result<Server, Error> {
    let bad = |why: &str| Error::config(format!("bad server URL {url:?}: {why}"));
    let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(bad("it must start with http:// or https://"));
    };
    if rest.contains(['?', '#']) {
        return Err(bad("no query or fragment allowed"));
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.is_empty() {
        return Err(bad("no host"));
    }
    if authority.contains('@') {
        return Err(bad("credentials in the URL are not supported; use a token"));
    }
    if authority
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad("whitespace in the host"));
    }
    let port = if let Some(v6) = authority.strip_prefix('[') {
        let Some((ip, after)) = v6.split_once(']') else {
            return Err(bad("unclosed '[' in an IPv6 host"));
        };
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("the bracketed host is not an IPv6 address"));
        }
        match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| bad("junk after the IPv6 host"))?,
            ),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => {
                if host.is_empty() {
                    return Err(bad("no host"));
                }
                if port.contains(':') {
                    return Err(bad("an IPv6 host must be in brackets"));
                }
                Some(port)
            }
            None => None,
        }
    };
    let port = match port {
        Some(port) => match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(bad("the port is not a number from 1 to 65535")),
        },
        None if https => 443,
        None => 80,
    };
    let host = match authority.rfind(':') {
        Some(i) if !authority.ends_with(']') => &authority[..i],
        _ => authority,
    };
    let path = path.trim_end_matches('/');
    Ok(Server {
        base: format!(
            "{}://{authority}{path}",
            if https { "https" } else { "http" }
        ),
        https,
        authority: authority.to_string(),
        authority_with_port: format!("{host}:{port}"),
        port,
        path: path.to_string(),
    })
}

fn parse_certificates(
    pem: &[u8],
    what: &str,
) -> Result<Vec<ureq::tls::Certificate<'static>>, Error> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => certs.push(cert),
            Ok(_) => {}
            Err(e) => return Err(Error::config(format!("{what} is not valid PEM: {e}"))),
        }
    }
    if certs.is_empty() {
        return Err(Error::config(format!("{what} holds no certificate")));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(url: &str) -> Result<String, String> {
        parse_server(url).map(|s| s.base).map_err(|e| e.to_string())
    }

    #[test]
    fn server_urls_are_normalized() {
        assert_eq!(
            base("http://127.0.0.1:8001"),
            Ok("http://127.0.0.1:8001".into())
        );
        assert_eq!(
            base("https://10.96.0.1:443/"),
            Ok("https://10.96.0.1:443".into())
        );
        assert_eq!(
            base("https://[fd00::1]:6443"),
            Ok("https://[fd00::1]:6443".into())
        );
        assert_eq!(
            base("https://api.example/k8s/"),
            Ok("https://api.example/k8s".into())
        );
    }

    #[test]
    fn bad_server_urls_say_why() {
        for (url, why) in [
            ("10.96.0.1:443", "http:// or https://"),
            ("https://", "no host"),
            ("https://:443", "no host"),
            ("https://user:pw@host", "credentials"),
            ("https://host:0", "port"),
            ("https://host:99999", "port"),
            ("https://fd00::1:443", "brackets"),
            ("https://[fd00::1", "unclosed"),
            ("https://[nope]:1", "IPv6"),
            ("https://host?x=1", "query"),
        ] {
            let err = base(url).unwrap_err();
            assert!(err.contains(why), "{url}: {err}");
        }
    }

    #[test]
    fn unreadable_files_fail_at_spawn_naming_the_file() {
        let err = Config::new("https://h")
            .token_file("/nonexistent/token")
            .access();
        assert!(err.unwrap_err().to_string().contains("/nonexistent/token"));
        let err = Config::new("https://h")
            .ca_file("/nonexistent/ca.crt")
            .access();
        assert!(err.unwrap_err().to_string().contains("/nonexistent/ca.crt"));
        let err = Config::new("https://h").ca_pem("not pem").access();
        assert!(err.unwrap_err().to_string().contains("no certificate"));
    }

    #[test]
    fn the_token_never_shows_in_debug() {
        let config = Config::new("http://h").token("s3cr3t-token-value");
        let access = config.access().expect("access");
        let shown = format!("{config:?} {access:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    #[test]
    fn an_https_server_without_a_ca_needs_the_webpki_roots() {
        let result = Config::new("https://10.96.0.1").access();
        if cfg!(feature = "webpki-roots") {
            assert!(result.expect("trusts the webpki roots").ca.is_none());
        } else {
            let err = result.unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Config);
            assert!(err.to_string().contains("`webpki-roots` feature"), "{err}");
        }
        // A CA, plain http, or no verification at all need no roots either way.
        let ca = include_str!("../testkit/certs/ca.pem");
        assert!(Config::new("https://10.96.0.1").ca_pem(ca).access().is_ok());
        assert!(Config::new("http://127.0.0.1:8001").access().is_ok());
    }

    #[test]
    fn tls_settings_need_an_https_server() {
        let err = Config::new("http://h")
            .tls_server_name("api")
            .access()
            .unwrap_err();
        assert!(err.to_string().contains("not https"));
    }
}
