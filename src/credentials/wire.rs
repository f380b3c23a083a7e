//! The bearer token on the wire, and nowhere else.
//!
//! ureq's protocol layer dumps every request it writes at TRACE level (`ureq_proto`), headers
//! included, 16 bytes a line. So the token never enters ureq: requests carry a fixed
//! placeholder, and [`TokenConnector`], the last link of ureq's connector chain, wraps each
//! connection in a [`TokenTransport`] that swaps the placeholder for the current token as the
//! bytes leave for the socket (or for TLS, below it). The log shows the placeholder. The
//! wrapper has no buffers of its own: ureq writes into the connection's, and reads from them.

use std::fmt;
use std::sync::Arc;

use ureq::unversioned::transport::{Buffers, ConnectionDetails, Connector, NextTimeout, Transport};

use super::token::TokenSource;

/// What the `Authorization` header says until the transport replaces it.
pub(crate) const PLACEHOLDER: &str = "kuberesolver-token-placeholder-f8d2c61a";

/// Wraps every connection of an agent in a [`TokenTransport`].
pub(crate) struct TokenConnector {
    pub token: Arc<TokenSource>,
}

impl fmt::Debug for TokenConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenConnector")
    }
}

impl<In: Transport> Connector<In> for TokenConnector {
    type Out = TokenTransport;

    fn connect(
        &self,
        _: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<TokenTransport>, ureq::Error> {
        Ok(chained.map(|inner| TokenTransport {
            inner: Box::new(inner),
            token: self.token.clone(),
        }))
    }
}

/// A connection whose outgoing bytes get the token put in place of [`PLACEHOLDER`].
pub(crate) struct TokenTransport {
    inner: Box<dyn Transport>,
    token: Arc<TokenSource>,
}

impl fmt::Debug for TokenTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenTransport")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// `bytes` with every `from` replaced by `to`.
pub(crate) fn replace(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + to.len());
    let mut rest = bytes;
    while let Some(at) = rest.windows(from.len()).position(|w| w == from) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

impl Transport for TokenTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    /// ureq wrote whole lines of the request into the connection's output buffer (it never
    /// splits one across writes, so the placeholder arrives whole); the lines go out with the
    /// token in place, through the same buffer, as many times as the longer text needs.
    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let written = &self.inner.buffers().output()[..amount];
        let token = self.token.current();
        let bytes = replace(written, PLACEHOLDER.as_bytes(), token.expose().as_bytes());
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let out = self.inner.buffers().output();
            let n = out.len().min(rest.len());
            if n == 0 {
                return Err(ureq::Error::Io(std::io::Error::other(
                    "the connection has no output buffer",
                )));
            }
            out[..n].copy_from_slice(&rest[..n]);
            self.inner.transmit_output(n, timeout)?;
            rest = &rest[n..];
        }
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.inner.await_input(timeout)
    }

    fn is_open(&mut self) -> bool {
        self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_swaps_every_placeholder_and_keeps_the_rest() {
        let head = format!("GET / HTTP/1.1\r\nauthorization: Bearer {PLACEHOLDER}\r\n\r\n");
        let out = replace(head.as_bytes(), PLACEHOLDER.as_bytes(), b"tok");
        assert_eq!(out, b"GET / HTTP/1.1\r\nauthorization: Bearer tok\r\n\r\n");
        assert_eq!(replace(b"none here", b"xx", b"y"), b"none here");
    }

    #[test]
    fn ureq_is_pinned_to_one_minor_release_because_its_unversioned_traits_are_implemented() {
        let manifest = include_str!("../../Cargo.toml");
        let ureq = manifest
            .lines()
            .find(|line| line.starts_with("ureq ="))
            .unwrap_or_default();
        assert!(ureq.contains(r#"version = "~3.5""#), "{ureq:?}");
    }
}
