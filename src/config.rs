//! How to reach the API server: its URL, the bearer token, and the CA to trust.
//!
//! A [`Config`] is plain data and building one never fails; everything fallible (reading the
//! token and CA files, checking the URL) happens in [`Config::prepare`], which
//! [`Resolver::spawn`](crate::Resolver::spawn) calls, so a bad configuration fails at spawn
//! with a clear error.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Error;

/// Where service-account files are mounted in a pod.
pub(crate) const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// How often the token file is re-read, so rotated projected tokens keep working (client-go
/// does the same).
pub(crate) const TOKEN_REFRESH: Duration = Duration::from_secs(60);

/// A string that never shows in `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Clone, Debug)]
enum TokenSpec {
    Value(Secret),
    File(PathBuf),
}

#[derive(Clone, Debug)]
enum CaSpec {
    File(PathBuf),
    Pem(Vec<u8>),
}

/// The connection to the Kubernetes API server.
///
/// ```
/// use kuberesolver::Config;
///
/// // Through `kubectl proxy`: plain HTTP on loopback, no token.
/// let local = Config::new("http://127.0.0.1:8001");
///
/// // Directly, with a service-account token and the cluster CA.
/// let direct = Config::new("https://10.96.0.1:443")
///     .token_file("/var/run/secrets/kubernetes.io/serviceaccount/token")
///     .ca_file("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt");
/// ```
///
/// TLS is always verified: against the configured CA (every certificate of the PEM bundle),
/// or the Mozilla roots of `webpki-roots` when none is configured. An IP-address server
/// (`https://10.96.0.1`, `https://[fd00::1]`) is verified against the certificate's IP SANs.
/// No proxy from the environment (`HTTPS_PROXY`) is used. `Debug` never shows the token.
#[derive(Clone)]
pub struct Config {
    server: String,
    token: Option<TokenSpec>,
    ca: Option<CaSpec>,
    namespace: Option<String>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("server", &self.server)
            .field(
                "token",
                &match &self.token {
                    None => "none".to_string(),
                    Some(TokenSpec::Value(_)) => "<redacted>".to_string(),
                    Some(TokenSpec::File(p)) => format!("file {}", p.display()),
                },
            )
            .field(
                "ca",
                &match &self.ca {
                    None => "webpki roots".to_string(),
                    Some(CaSpec::File(p)) => format!("file {}", p.display()),
                    Some(CaSpec::Pem(_)) => "PEM".to_string(),
                },
            )
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl Config {
    /// A server URL: `http://` (e.g. `kubectl proxy` on `http://127.0.0.1:8001`) or
    /// `https://host[:port]`, optionally with a path prefix. Checked at spawn.
    pub fn new(server: impl Into<String>) -> Config {
        Config {
            server: server.into(),
            token: None,
            ca: None,
            namespace: None,
        }
    }

    /// A fixed bearer token. Prefer [`token_file`](Self::token_file) for tokens that rotate.
    pub fn token(mut self, token: impl Into<String>) -> Config {
        self.token = Some(TokenSpec::Value(Secret(token.into())));
        self
    }

    /// A file holding the bearer token, re-read about once a minute and at once after a 401,
    /// so rotated (projected service-account) tokens keep working. Read first at spawn.
    pub fn token_file(mut self, path: impl Into<PathBuf>) -> Config {
        self.token = Some(TokenSpec::File(path.into()));
        self
    }

    /// A PEM file of CA certificates to trust instead of the webpki roots; every certificate
    /// in it is trusted. Read at spawn.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Config {
        self.ca = Some(CaSpec::File(path.into()));
        self
    }

    /// CA certificates as PEM bytes, like [`ca_file`](Self::ca_file).
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Config {
        self.ca = Some(CaSpec::Pem(pem.into()));
        self
    }

    /// The namespace for targets that name none. Default: the pod's own namespace in a
    /// cluster, else `default`.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Config {
        self.namespace = Some(namespace.into());
        self
    }

    /// The server URL as given.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The default namespace, when one is set.
    pub fn default_namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// The configuration of a pod: `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`
    /// (an IPv6 host is bracketed), with the service-account token, CA and namespace files
    /// under `/var/run/secrets/kubernetes.io/serviceaccount/`.
    ///
    /// Fails when the environment variables are missing (not in a pod). The files are read at
    /// spawn, except the namespace, which is read here (it never changes).
    pub fn in_cluster() -> Result<Config, Error> {
        Config::in_cluster_from(|k| std::env::var(k).ok(), Path::new(SERVICE_ACCOUNT_DIR))
    }

    /// [`in_cluster`](Self::in_cluster) with the environment and the folder given, for tests.
    pub(crate) fn in_cluster_from(
        env: impl Fn(&str) -> Option<String>,
        dir: &Path,
    ) -> Result<Config, Error> {
        let host = env("KUBERNETES_SERVICE_HOST").filter(|h| !h.is_empty());
        let port = env("KUBERNETES_SERVICE_PORT").filter(|p| !p.is_empty());
        let (Some(host), Some(port)) = (host, port) else {
            return Err(Error::config(
                "not running in a Kubernetes pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set",
            ));
        };
        if port.parse::<u16>().is_err() {
            return Err(Error::config(format!(
                "KUBERNETES_SERVICE_PORT is not a port: {port:?}"
            )));
        }
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        };
        let namespace = std::fs::read_to_string(dir.join("namespace"))
            .ok()
            .map(|ns| ns.trim().to_string())
            .filter(|ns| !ns.is_empty());
        let mut config = Config::new(format!("https://{host}:{port}"))
            .token_file(dir.join("token"))
            .ca_file(dir.join("ca.crt"));
        config.namespace = namespace;
        Ok(config)
    }

    /// The configuration for wherever the program runs: [`in_cluster`](Self::in_cluster) when
    /// `KUBERNETES_SERVICE_HOST` is set, else a clear error saying what was tried.
    pub fn infer() -> Result<Config, Error> {
        if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
            return Config::in_cluster();
        }
        Err(Error::config(
            "cannot infer the API server: not in a pod (KUBERNETES_SERVICE_HOST is not set); \
             outside a cluster, run `kubectl proxy` and use Config::new(\"http://127.0.0.1:8001\")",
        ))
    }

    /// Check the URL, read the files: everything that can fail before the watcher starts.
    pub(crate) fn prepare(&self) -> Result<Prepared, Error> {
        let server = parse_server(&self.server)?;
        let ca = match &self.ca {
            None => None,
            Some(CaSpec::Pem(pem)) => Some(parse_certificates(pem, "the CA PEM")?),
            Some(CaSpec::File(path)) => {
                let pem = std::fs::read(path).map_err(|e| {
                    Error::config(format!("cannot read CA file {}: {e}", path.display()))
                })?;
                Some(parse_certificates(
                    &pem,
                    &format!("CA file {}", path.display()),
                )?)
            }
        };
        if ca.is_some() && !server.https {
            return Err(Error::config(format!(
                "a CA is configured but the server URL {:?} is not https",
                self.server
            )));
        }
        let token = match &self.token {
            None => None,
            Some(TokenSpec::Value(secret)) => Some(Arc::new(TokenSource::fixed(secret.clone()))),
            Some(TokenSpec::File(path)) => Some(Arc::new(TokenSource::file(path.clone())?)),
        };
        Ok(Prepared {
            base: server.base,
            ca,
            token,
            namespace: self.namespace.clone(),
        })
    }
}

/// A checked configuration.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// `scheme://host[:port][/prefix]`, no trailing slash.
    pub base: String,
    /// The CA certificates to trust; `None` means the webpki roots.
    pub ca: Option<Vec<ureq::tls::Certificate<'static>>>,
    pub token: Option<Arc<TokenSource>>,
    pub namespace: Option<String>,
}

struct Server {
    base: String,
    https: bool,
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
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err(bad("the port is not a number from 1 to 65535")),
        }
    }
    let path = path.trim_end_matches('/');
    Ok(Server {
        base: format!(
            "{}://{authority}{path}",
            if https { "https" } else { "http" }
        ),
        https,
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

/// The bearer token, fixed or read from a file that may be rotated under us.
pub(crate) struct TokenSource {
    path: Option<PathBuf>,
    cached: Mutex<(Secret, Option<Instant>)>,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    fn fixed(secret: Secret) -> TokenSource {
        TokenSource {
            path: None,
            cached: Mutex::new((secret, None)),
        }
    }

    fn file(path: PathBuf) -> Result<TokenSource, Error> {
        let token = read_token(&path)?;
        Ok(TokenSource {
            path: Some(path),
            cached: Mutex::new((token, Some(Instant::now()))),
        })
    }

    /// The token to send now: re-read from its file when the copy is older than a minute.
    /// A failed re-read keeps the last token (and logs why).
    pub(crate) fn current(&self) -> Secret {
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(path), Some(read_at)) = (&self.path, cached.1) {
            if read_at.elapsed() >= TOKEN_REFRESH {
                match read_token(path) {
                    Ok(token) => *cached = (token, Some(Instant::now())),
                    Err(e) => {
                        log::warn!("{e}; keeping the previous token");
                        cached.1 = Some(Instant::now());
                    }
                }
            }
        }
        cached.0.clone()
    }

    /// The server refused the token (401): re-read the file before the next request.
    /// Returns whether the token changed.
    pub(crate) fn refresh_now(&self) -> bool {
        let Some(path) = &self.path else {
            return false;
        };
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        match read_token(path) {
            Ok(token) => {
                let changed = token != cached.0;
                *cached = (token, Some(Instant::now()));
                changed
            }
            Err(e) => {
                log::warn!("{e}; keeping the previous token");
                false
            }
        }
    }
}

fn read_token(path: &Path) -> Result<Secret, Error> {
    let raw = std::fs::read_to_string(path)
        .map_err(|e| Error::config(format!("cannot read token file {}: {e}", path.display())))?;
    let token = raw.trim();
    if token.is_empty() {
        return Err(Error::config(format!(
            "token file {} is empty",
            path.display()
        )));
    }
    if token.chars().any(|c| c.is_control() || c == ' ') {
        return Err(Error::config(format!(
            "token file {} holds characters a bearer token cannot have",
            path.display()
        )));
    }
    Ok(Secret(token.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(url: &str) -> Result<String, String> {
        parse_server(url).map(|s| s.base).map_err(|e| e.to_string())
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("kuberesolver-config-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
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
    fn in_cluster_brackets_ipv6_and_reads_the_namespace() {
        let dir = temp_dir("incluster");
        std::fs::write(dir.join("namespace"), "prod\n").expect("write");
        let env = |k: &str| match k {
            "KUBERNETES_SERVICE_HOST" => Some("fd00::1".to_string()),
            "KUBERNETES_SERVICE_PORT" => Some("443".to_string()),
            _ => None,
        };
        let config = Config::in_cluster_from(env, &dir).expect("in cluster");
        assert_eq!(config.server(), "https://[fd00::1]:443");
        assert_eq!(config.default_namespace(), Some("prod"));
    }

    #[test]
    fn in_cluster_outside_a_pod_is_a_clear_error() {
        let err = Config::in_cluster_from(|_| None, Path::new("/nonexistent")).unwrap_err();
        assert!(err.to_string().contains("KUBERNETES_SERVICE_HOST"));
    }

    #[test]
    fn unreadable_files_fail_at_prepare_naming_the_file() {
        let err = Config::new("https://h")
            .token_file("/nonexistent/token")
            .prepare();
        assert!(err.unwrap_err().to_string().contains("/nonexistent/token"));
        let err = Config::new("https://h")
            .ca_file("/nonexistent/ca.crt")
            .prepare();
        assert!(err.unwrap_err().to_string().contains("/nonexistent/ca.crt"));
        let err = Config::new("https://h").ca_pem("not pem").prepare();
        assert!(err.unwrap_err().to_string().contains("no certificate"));
    }

    #[test]
    fn the_token_never_shows_in_debug() {
        let config = Config::new("https://h").token("s3cr3t-token-value");
        let prepared = config.prepare().expect("prepare");
        let shown = format!("{config:?} {prepared:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    #[test]
    fn a_rotated_token_file_is_picked_up_after_a_401() {
        let dir = temp_dir("token");
        let path = dir.join("token");
        std::fs::write(&path, "first\n").expect("write");
        let source = TokenSource::file(path.clone()).expect("token");
        assert_eq!(source.current().expose(), "first");
        std::fs::write(&path, "second").expect("write");
        assert_eq!(source.current().expose(), "first", "cached for a minute");
        assert!(source.refresh_now());
        assert_eq!(source.current().expose(), "second");
        std::fs::remove_file(&path).expect("remove");
        assert!(!source.refresh_now());
        assert_eq!(
            source.current().expose(),
            "second",
            "kept when the file vanishes"
        );
    }
}
