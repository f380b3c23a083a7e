//! [`TokenSource`]: the token to send now, kept fresh as files rotate and plugin tokens expire.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::exec::{self, ExecSpec, ExecToken};
use super::secret::Secret;
use crate::util::lock;
use crate::Error;

/// How often the token file is re-read, so rotated projected tokens keep working (client-go
/// does the same).
pub(crate) const TOKEN_REFRESH: Duration = Duration::from_secs(60);

/// The bearer token: fixed, read from a file that may be rotated under us, or from an exec
/// plugin.
pub(crate) struct TokenSource {
    kind: TokenKind,
}

enum TokenKind {
    Fixed(Secret),
    File {
        path: PathBuf,
        cached: Mutex<(Secret, Instant)>,
    },
    Exec {
        spec: ExecSpec,
        cached: Mutex<ExecToken>,
    },
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            TokenKind::Fixed(_) => "fixed".to_string(),
            TokenKind::File { path, .. } => format!("file {}", path.display()),
            TokenKind::Exec { spec, .. } => format!("exec {:?}", spec.command),
        };
        f.debug_struct("TokenSource")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// A fixed token: `secret` checked as a bearer token.
    pub(crate) fn fixed(secret: &Secret) -> Result<TokenSource, Error> {
        Ok(TokenSource {
            kind: TokenKind::Fixed(Secret::new(secret.expose().to_string())?),
        })
    }

    /// A token file, read now and re-read every [`TOKEN_REFRESH`].
    pub(crate) fn file(path: PathBuf) -> Result<TokenSource, Error> {
        let token = read_token(&path)?;
        Ok(TokenSource {
            kind: TokenKind::File {
                path,
                cached: Mutex::new((token, Instant::now())),
            },
        })
    }

    /// An exec plugin, run now and again before its token expires.
    pub(crate) fn exec(spec: ExecSpec) -> Result<TokenSource, Error> {
        let token = exec::run(&spec)?;
        Ok(TokenSource {
            kind: TokenKind::Exec {
                spec,
                cached: Mutex::new(token),
            },
        })
    }

    /// The token to send now: a file is re-read when the copy is older than a minute, a
    /// plugin is run again when its token expires. A failure keeps the last token (and logs
    /// why): the server's 401 then says the rest.
    pub(crate) fn current(&self) -> Secret {
        match &self.kind {
            TokenKind::Fixed(secret) => secret.clone(),
            TokenKind::File { path, cached } => {
                let mut cached = lock(cached);
                if cached.1.elapsed() >= TOKEN_REFRESH {
                    match read_token(path) {
                        Ok(token) => cached.0 = token,
                        Err(e) => log::warn!("{e}; keeping the previous token"),
                    }
                    cached.1 = Instant::now();
                }
                cached.0.clone()
            }
            TokenKind::Exec { spec, cached } => {
                let mut cached = lock(cached);
                if cached.stale() {
                    match exec::run(spec) {
                        Ok(token) => *cached = token,
                        Err(e) => log::warn!("{e}; keeping the previous token"),
                    }
                }
                cached.token.clone()
            }
        }
    }

    /// The server refused the token (401): read or fetch it again now. Returns whether it
    /// changed.
    pub(crate) fn refresh_now(&self) -> bool {
        match &self.kind {
            TokenKind::Fixed(_) => false,
            TokenKind::File { path, cached } => {
                let mut cached = lock(cached);
                match read_token(path) {
                    Ok(token) => {
                        let changed = token != cached.0;
                        *cached = (token, Instant::now());
                        changed
                    }
                    Err(e) => {
                        log::warn!("{e}; keeping the previous token");
                        false
                    }
                }
            }
            TokenKind::Exec { spec, cached } => {
                let mut cached = lock(cached);
                match exec::run(spec) {
                    Ok(token) => {
                        let changed = token.token != cached.token;
                        *cached = token;
                        changed
                    }
                    Err(e) => {
                        log::warn!("{e}; keeping the previous token");
                        false
                    }
                }
            }
        }
    }
}

fn read_token(path: &Path) -> Result<Secret, Error> {
    let raw = std::fs::read_to_string(path)
        .map_err(|e| Error::config(format!("cannot read token file {}: {e}", path.display())))?;
    Secret::new(raw).map_err(|e| Error::config(format!("token file {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::fresh_dir;

    #[test]
    fn a_rotated_token_file_is_picked_up_after_a_401() {
        let dir = fresh_dir("token");
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
