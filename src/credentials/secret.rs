//! [`Secret`]: a token that never shows.

use std::fmt;

use crate::Error;

/// A string that never shows in `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    /// A bearer token, checked for characters an HTTP header cannot carry.
    pub(crate) fn new(token: String) -> Result<Secret, Error> {
        let token = token.trim();
        if token.is_empty() {
            return Err(Error::config("the bearer token is empty"));
        }
        if token
            .chars()
            .any(|c| c.is_control() || c == ' ' || !c.is_ascii())
        {
            return Err(Error::config(
                "the bearer token holds characters a token cannot have",
            ));
        }
        Ok(Secret(token.to_string()))
    }

    /// Any text, kept out of `Debug` until [`TokenSource::fixed`] checks it at spawn.
    pub(crate) fn unchecked(text: String) -> Secret {
        Secret(text)
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}
