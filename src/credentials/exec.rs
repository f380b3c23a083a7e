//! Kubeconfig `exec` credential plugins: run the command, read its `ExecCredential`, cache the
//! token until `expirationTimestamp`, run it again after a 401.

use std::fmt;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::secret::Secret;
use crate::util::printable;
use crate::Error;

/// How long a plugin may run.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A token is renewed this long before it expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);

/// The `users[].user.exec` section of a kubeconfig. Equal sections are one credential (so
/// their resolvers may share a watch).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub(crate) struct ExecSpec {
    pub command: String,
    pub args: Option<Vec<String>>,
    pub env: Option<Vec<EnvVar>>,
    #[serde(rename = "apiVersion")]
    pub api_version: Option<String>,
    #[serde(rename = "provideClusterInfo")]
    pub provide_cluster_info: bool,
    /// `spec.cluster` of `KUBERNETES_EXEC_INFO`, set by the kubeconfig loader when
    /// `provideClusterInfo` is true.
    #[serde(skip)]
    pub cluster: Option<ClusterInfo>,
}

/// The cluster an exec plugin authenticates to, as client-go describes it to the plugin.
#[derive(Clone, Default, PartialEq)]
pub(crate) struct ClusterInfo(pub serde_json::Value);

impl fmt::Debug for ClusterInfo {
    // The exec extension may hold anything a plugin is configured with: leave it out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterInfo")
    }
}

/// One `env` entry of an exec section.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub(crate) struct EnvVar {
    pub name: String,
    pub value: String,
}

impl fmt::Debug for EnvVar {
    // Plugin environments often carry secrets: show names only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=<redacted>", self.name)
    }
}

#[derive(Deserialize)]
struct ExecCredential {
    status: Option<CredentialStatus>,
}

#[derive(Deserialize)]
struct CredentialStatus {
    token: Option<String>,
    #[serde(rename = "expirationTimestamp")]
    expiration_timestamp: Option<String>,
}

/// A token from a plugin and when it stops being valid.
#[derive(Debug)]
pub(crate) struct ExecToken {
    pub token: Secret,
    pub expires: Option<SystemTime>,
}

impl ExecToken {
    /// Whether it should be renewed before the next request.
    pub(crate) fn stale(&self) -> bool {
        self.expires
            .is_some_and(|t| SystemTime::now() + EXPIRY_MARGIN >= t)
    }
}

/// Run the plugin and read its token.
pub(crate) fn run(spec: &ExecSpec) -> Result<ExecToken, Error> {
    let fail = |why: String| Error::config(format!("exec plugin {:?}: {why}", spec.command));
    let api_version = spec
        .api_version
        .clone()
        .unwrap_or_else(|| "client.authentication.k8s.io/v1".to_string());
    let mut info_spec = serde_json::json!({"interactive": false});
    if let Some(cluster) = &spec.cluster {
        info_spec["cluster"] = cluster.0.clone();
    }
    let info = serde_json::json!({
        "apiVersion": api_version,
        "kind": "ExecCredential",
        "spec": info_spec,
    });
    // A relative command was made absolute by the kubeconfig loader; a bare name is looked up
    // on PATH.
    let mut cmd = Command::new(&spec.command);
    cmd.args(spec.args.iter().flatten())
        .env("KUBERNETES_EXEC_INFO", info.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in spec.env.iter().flatten() {
        cmd.env(&var.name, &var.value);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| fail(format!("cannot start: {e}")))?;
    // Read both pipes on threads so a chatty plugin cannot block on a full pipe.
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let out = std::thread::spawn(move || read_capped(stdout));
    let err = std::thread::spawn(move || read_capped(stderr));
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > PLUGIN_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!("did not finish within {PLUGIN_TIMEOUT:?}")));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(fail(format!("cannot wait for it: {e}"))),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if !status.success() {
        return Err(fail(format!(
            "exited with {status}; stderr: {}",
            printable(&stderr)
        )));
    }
    let credential: ExecCredential = serde_json::from_slice(&stdout).map_err(|e| {
        fail(format!(
            "did not print an ExecCredential ({e}); stderr: {}",
            printable(&stderr)
        ))
    })?;
    let status = credential
        .status
        .ok_or_else(|| fail("its ExecCredential has no status".into()))?;
    let token = status
        .token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| fail("its ExecCredential has no status.token (client certificates from plugins are not supported)".into()))?;
    let expires = match status.expiration_timestamp {
        None => None,
        Some(ts) => Some(parse_rfc3339(&ts).ok_or_else(|| {
            fail(format!(
                "bad expirationTimestamp {:?}",
                printable(ts.as_bytes())
            ))
        })?),
    };
    Ok(ExecToken {
        token: Secret::new(token)?,
        expires,
    })
}

fn read_capped(pipe: Option<impl Read>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(pipe) = pipe {
        let _ = pipe.take(1024 * 1024).read_to_end(&mut out);
    }
    out
}

/// `2026-11-25T20:15:00Z` or with a fraction and/or an offset (`+01:00`) → a time.
pub(crate) fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let mut n: u64 = 0;
        for c in frac[..digits.min(9)].bytes() {
            n = n * 10 + u64::from(c - b'0');
        }
        for _ in digits.min(9)..9 {
            n *= 10;
        }
        nanos = u32::try_from(n).ok()?;
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            let h: i64 = rest.get(1..3)?.parse().ok()?;
            let m: i64 = rest.get(4..6)?.parse().ok()?;
            sign * (h * 3600 + m * 60)
        }
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(s: &str) -> Option<u64> {
        parse_rfc3339(s)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
    }

    #[test]
    fn rfc3339_timestamps_parse_with_fractions_and_offsets() {
        assert_eq!(unix("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix("2026-11-25T20:15:00Z"), Some(1_795_637_700));
        assert_eq!(unix("2026-11-25T20:15:00.123456789Z"), Some(1_795_637_700));
        assert_eq!(unix("2026-11-25T21:15:00+01:00"), Some(1_795_637_700));
        assert_eq!(unix("2000-02-29T00:00:00Z"), Some(951_782_400));
        for bad in [
            "",
            "2026-11-25",
            "2026-13-01T00:00:00Z",
            "2026-11-25T20:15:00",
            "2026-11-25T20:15:00+0100",
            "２０２６-11-25T20:15:00Z",
            "2026-11-25T20:15:00.Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
