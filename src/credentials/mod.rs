//! Credentials for the API server: where the bearer token comes from, how it is kept fresh,
//! and how it reaches the wire without passing through anything that logs.
//!
//! - [`Secret`] holds a token and never shows it.
//! - [`TokenSource`] gives the token to send now: fixed, a file re-read as it rotates, or a
//!   kubeconfig exec plugin ([`exec`]) run again before its token expires and after a 401.
//! - [`wire`] puts it into the request bytes below ureq's TRACE wire dump.
//!
//! This module knows nothing of [`Config`](crate::Config) or the API client: the
//! configuration builds a `TokenSource` at spawn, and the client hands it to the wire. This
//! file only lists the parts; each is one concept, and they depend on each other in one
//! direction: `wire` → `token` → `exec` → `secret`.

pub(crate) mod exec;
mod secret;
mod token;
mod wire;

pub(crate) use secret::Secret;
pub(crate) use token::TokenSource;
pub(crate) use wire::{TokenConnector, PLACEHOLDER};
