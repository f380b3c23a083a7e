//! TLS for the API client, built once per distinct setting in the process.
//!
//! ureq's `RustlsConnector` builds its rustls `ClientConfig` (root store, verifier, session
//! cache) on the first TLS connection of the agent it belongs to, and keeps it. Every agent
//! whose CA, client certificate and verification are the same shares one connector here,
//! so a thousand resolvers on one API server build one `ClientConfig` and share its TLS
//! session cache, instead of a thousand.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};

use rustls::crypto::CryptoProvider;
use ureq::tls::{RootCerts, TlsConfig};
use ureq::unversioned::transport::{
    ConnectionDetails, Connector, Either, RustlsConnector, Transport,
};

use crate::config::ServerAccess;
use crate::util::lock;

/// What a TLS configuration is made of: equal keys build equal `ClientConfig`s.
#[derive(PartialEq, Eq, Hash)]
struct TlsKey {
    /// The DER of each CA certificate; `None` for the webpki roots.
    ca: Option<Vec<Vec<u8>>>,
    /// The client certificate chain and key, as DER.
    client: Option<(Vec<Vec<u8>>, Vec<u8>)>,
    insecure: bool,
}

impl TlsKey {
    fn of(access: &ServerAccess) -> TlsKey {
        TlsKey {
            ca: access
                .ca
                .as_ref()
                .map(|certs| certs.iter().map(|c| c.der().to_vec()).collect()),
            client: access.client.as_ref().map(|client| {
                (
                    client.certs().iter().map(|c| c.der().to_vec()).collect(),
                    client.private_key().der().to_vec(),
                )
            }),
            insecure: access.insecure,
        }
    }
}

/// The connectors in use, by setting. An entry outlives its last agent only until the next
/// new setting sweeps it out.
static CONNECTORS: LazyLock<Mutex<HashMap<TlsKey, Weak<RustlsConnector>>>> =
    LazyLock::new(Mutex::default);

/// ring, the one crypto provider of the crate (`rustls` is built with it alone).
static PROVIDER: LazyLock<Arc<CryptoProvider>> =
    LazyLock::new(|| Arc::new(rustls::crypto::ring::default_provider()));

/// The ureq TLS settings of `access`: its CA (or the webpki roots), client certificate and
/// verification, with ring as the provider.
pub(crate) fn tls_config(access: &ServerAccess) -> TlsConfig {
    let roots = match &access.ca {
        Some(certs) => RootCerts::new_with_certs(certs),
        // Config::access refuses an https server without a CA when the webpki roots are
        // left out, so this is only reached with them.
        None => RootCerts::WebPki,
    };
    TlsConfig::builder()
        .root_certs(roots)
        .client_cert(access.client.clone())
        .disable_verification(access.insecure)
        .unversioned_rustls_crypto_provider(PROVIDER.clone())
        .build()
}

/// A link of the connector chain: TLS through the connector shared by every agent with the
/// same TLS settings, or nothing for a plain `http://` server.
#[derive(Debug)]
pub(crate) struct SharedTls(Option<Arc<RustlsConnector>>);

impl SharedTls {
    /// The shared connector for `access`'s TLS settings, or a pass-through for `http://`.
    pub(crate) fn for_access(access: &ServerAccess) -> SharedTls {
        if !access.base.starts_with("https://") {
            return SharedTls(None);
        }
        let key = TlsKey::of(access);
        let mut connectors = lock(&CONNECTORS);
        if let Some(shared) = connectors.get(&key).and_then(Weak::upgrade) {
            return SharedTls(Some(shared));
        }
        connectors.retain(|_, connector| connector.strong_count() > 0);
        let connector = Arc::new(RustlsConnector::default());
        connectors.insert(key, Arc::downgrade(&connector));
        SharedTls(Some(connector))
    }

    /// Whether `self` and `other` build their connections with one `ClientConfig`.
    #[cfg(test)]
    fn same_as(&self, other: &SharedTls) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl<In: Transport> Connector<In> for SharedTls {
    type Out = <RustlsConnector as Connector<In>>::Out;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        match &self.0 {
            Some(tls) => tls.connect(details, chained),
            None => Ok(chained.map(Either::A)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    const CA: &str = include_str!("testkit/certs/ca.pem");
    const OTHER_CA: &str = include_str!("testkit/certs/other-ca.pem");

    fn tls(config: Config) -> SharedTls {
        SharedTls::for_access(&config.access().expect("a valid config"))
    }

    #[test]
    fn agents_with_the_same_tls_settings_share_one_connector() {
        let a = tls(Config::new("https://10.0.0.1").ca_pem(CA));
        let b = tls(Config::new("https://api.example:6443")
            .ca_pem(CA)
            .token("t"));
        assert!(
            a.same_as(&b),
            "the server and the token are not TLS settings"
        );
        let other = tls(Config::new("https://10.0.0.1").ca_pem(OTHER_CA));
        assert!(!a.same_as(&other), "another CA is another ClientConfig");
        let plain = tls(Config::new("http://127.0.0.1:8001"));
        assert!(plain.0.is_none(), "no TLS for http://");
    }

    #[test]
    fn a_connector_no_agent_uses_any_more_is_not_kept() {
        let pem = format!("{OTHER_CA}\n{CA}");
        let first = tls(Config::new("https://10.0.0.2").ca_pem(pem.clone()));
        let weak = Arc::downgrade(first.0.as_ref().expect("https"));
        drop(first);
        assert!(weak.upgrade().is_none());
        let again = tls(Config::new("https://10.0.0.2").ca_pem(pem));
        assert!(again.0.is_some());
    }
}
