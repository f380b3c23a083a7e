//! The resolver target (`kubernetes:///service.namespace:port`): parsing, validation, display.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// The scheme of a target when none is chosen, as in Go's kuberesolver.
pub(crate) const DEFAULT_SCHEME: &str = "kubernetes";

/// The longest Kubernetes name label (RFC 1123 label), in characters.
const MAX_LABEL_LEN: usize = 63;

/// A port of a Kubernetes Service: a number, or the name of one of its ports.
///
/// A number is always in `1..=65535`; a name follows Kubernetes' rules for the name of a
/// Service port (and of the endpoint port that carries it): a DNS label of 1 to 63 characters
/// of `a-z`, `0-9` and `-`, starting and ending with a letter or digit, such as `grpc`,
/// `grpc--web` or `tcp-prometheus-servicemonitor`. (The 15-character `IANA_SVC_NAME` rule is
/// for container ports, which a target never names.) A name of digits only would read back as
/// a number, so it is refused. [`Target`] only holds ports that follow these rules.
/// `Display` writes the number or the name, as it appears after the `:` of a target.
///
/// ```
/// use kuberesolver::{Port, Target};
///
/// let target: Target = "kubernetes:///api.prod:grpc".parse()?;
/// assert_eq!(target.port(), Some(&Port::Name("grpc".to_string())));
/// assert_eq!(Port::Number(8080).to_string(), "8080");
/// # Ok::<(), kuberesolver::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Port {
    /// A port number, from 1 to 65535.
    Number(u16),
    /// A port name, such as `grpc` or `http-metrics`, matched against the names of the
    /// Service's endpoint ports.
    Name(String),
}

impl fmt::Display for Port {
    /// Writes the port as it appears in a target: `8080` or `grpc`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Port::Number(number) => write!(f, "{number}"),
            Port::Name(name) => f.write_str(name),
        }
    }
}

/// A validated resolver target: which Service, in which namespace, on which port.
///
/// A `Target` is parsed from a string in any of the forms Go's kuberesolver accepts, or built
/// with [`Target::new`] and the `with_` methods. All of these name the Service `api` in the
/// namespace `prod` on port `8080`:
///
/// ```text
/// kubernetes:///api.prod:8080                    kubernetes://prod/api:8080
/// kubernetes://api.prod:8080                     kubernetes://api.prod:8080/
/// kubernetes:///api.prod.svc.cluster.local:8080  kubernetes://api.prod.svc.cluster.local:8080
/// kubernetes:///api.prod.svc.cluster.local.:8080 kubernetes:api.prod:8080
/// ```
///
/// The namespace may be left out (`kubernetes:///api:8080`): the resolver then uses the
/// default namespace of its [`Config`](crate::Config) (the pod's own namespace in a cluster,
/// the context's namespace from a kubeconfig, else `default`). The port may be left out too
/// (`kubernetes:///api.prod`): the resolver then uses the Service's only port. The port is a
/// number or a port name (`kubernetes:///api.prod:grpc`). After the namespace, the third
/// dotted label must be `svc`; the cluster domain after it (`cluster.local`) is accepted and
/// ignored, and so is the final dot of such a fully qualified name
/// (`api.prod.svc.cluster.local.`). As in Go's kuberesolver, the slashes may be left out
/// (`kubernetes:api.prod:8080`, or `kubernetes:/api.prod:8080`): the rest is read like the
/// part after `kubernetes:///`.
///
/// Service and namespace names are RFC 1123 labels, as Kubernetes requires: 1 to 63 lowercase
/// letters, digits and `-`, starting and ending with a letter or digit. Anything else (a
/// query, a fragment, user info, an extra path segment or colon, uppercase letters, a port
/// out of range) is an [`ErrorKind::InvalidTarget`](crate::ErrorKind::InvalidTarget) error
/// that names the problem. So is a final dot anywhere but after a cluster domain
/// (`kubernetes:///api.prod.`).
///
/// `Display` writes the canonical form `{scheme}:///{service}[.{namespace}][:{port}]`, which
/// parses back to the same `Target`: every spelling of a target prints the same way.
///
/// ```
/// use kuberesolver::{Port, Target};
///
/// let target: Target = "kubernetes://prod/api:8080".parse()?;
/// assert_eq!(target.service(), "api");
/// assert_eq!(target.namespace(), Some("prod"));
/// assert_eq!(target.port(), Some(&Port::Number(8080)));
/// assert_eq!(target.to_string(), "kubernetes:///api.prod:8080");
///
/// let err = "kubernetes:///api.prod:70000".parse::<Target>().unwrap_err();
/// assert_eq!(err.to_string(), r#"port 70000 out of range in "kubernetes:///api.prod:70000""#);
/// # Ok::<(), kuberesolver::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// The URI scheme, lowercase and valid.
    scheme: String,
    /// `None` means the default namespace of the resolver's configuration.
    namespace: Option<String>,
    service: String,
    port: Option<Port>,
}

impl Target {
    /// Creates a target for the Service `service`, with no namespace (the configuration's
    /// default is used at spawn) and no port.
    ///
    /// The scheme is `kubernetes`. `service` must be an RFC 1123 label (1 to 63 lowercase
    /// letters, digits and `-`, starting and ending with a letter or digit); otherwise the
    /// error is an [`ErrorKind::InvalidTarget`](crate::ErrorKind::InvalidTarget) naming the
    /// problem.
    ///
    /// ```
    /// use kuberesolver::{Port, Target};
    ///
    /// let target = Target::new("api")?
    ///     .with_namespace("prod")?
    ///     .with_port(Port::Name("grpc".to_string()))?;
    /// assert_eq!(target.to_string(), "kubernetes:///api.prod:grpc");
    ///
    /// assert!(Target::new("my_api").is_err());
    /// # Ok::<(), kuberesolver::Error>(())
    /// ```
    pub fn new(service: &str) -> Result<Target, Error> {
        check_label(service, "service name").map_err(|p| Error::invalid_target(service, p))?;
        Ok(Target {
            scheme: DEFAULT_SCHEME.to_string(),
            namespace: None,
            service: service.to_string(),
            port: None,
        })
    }

    /// Parses a target whose scheme must be `scheme`, like Go's `RegisterInClusterWithSchema`.
    ///
    /// `scheme` must be a valid URI scheme (a letter, then letters, digits, `+`, `-` or `.`);
    /// it is compared with the input's scheme ignoring ASCII case and kept in lowercase. The
    /// rest of `input` follows the forms described on [`Target`]. `"...".parse::<Target>()` is
    /// the same as `Target::parse_with_scheme("...", "kubernetes")`.
    ///
    /// ```
    /// use kuberesolver::Target;
    ///
    /// let target = Target::parse_with_scheme("k8s:///api.prod:8080", "k8s")?;
    /// assert_eq!(target.scheme(), "k8s");
    /// assert_eq!(target.to_string(), "k8s:///api.prod:8080");
    ///
    /// assert!(Target::parse_with_scheme("kubernetes:///api.prod:8080", "k8s").is_err());
    /// # Ok::<(), kuberesolver::Error>(())
    /// ```
    pub fn parse_with_scheme(input: &str, scheme: &str) -> Result<Target, Error> {
        let scheme = check_scheme(scheme).map_err(|p| Error::invalid_target(scheme, p))?;
        parse(input, scheme).map_err(|p| Error::invalid_target(input, p))
    }

    /// Returns this target with the namespace `namespace` instead of the configuration's
    /// default.
    ///
    /// `namespace` must be an RFC 1123 label, like a service name; otherwise the error is an
    /// [`ErrorKind::InvalidTarget`](crate::ErrorKind::InvalidTarget) naming the problem.
    ///
    /// ```
    /// use kuberesolver::Target;
    ///
    /// let target = Target::new("api")?.with_namespace("prod")?;
    /// assert_eq!(target.namespace(), Some("prod"));
    ///
    /// assert!(Target::new("api")?.with_namespace("Prod").is_err());
    /// # Ok::<(), kuberesolver::Error>(())
    /// ```
    pub fn with_namespace(self, namespace: &str) -> Result<Target, Error> {
        check_label(namespace, "namespace").map_err(|p| Error::invalid_target(namespace, p))?;
        Ok(Target {
            namespace: Some(namespace.to_string()),
            ..self
        })
    }

    /// Returns this target with the port `port`.
    ///
    /// A [`Port::Number`] must be in `1..=65535`; a [`Port::Name`] must be a valid Service port
    /// name (a DNS label: 1 to 63 characters of `a-z`, `0-9` and `-`, starting and ending with
    /// a letter or digit) and not only digits. Otherwise the error is an
    /// [`ErrorKind::InvalidTarget`](crate::ErrorKind::InvalidTarget) naming the problem.
    ///
    /// ```
    /// use kuberesolver::{Port, Target};
    ///
    /// let target = Target::new("api")?.with_port(Port::Number(8080))?;
    /// assert_eq!(target.port(), Some(&Port::Number(8080)));
    ///
    /// assert!(Target::new("api")?.with_port(Port::Number(0)).is_err());
    /// assert!(Target::new("api")?.with_port(Port::Name("GRPC".to_string())).is_err());
    /// assert!(Target::new("api")?.with_port(Port::Name("80".to_string())).is_err());
    /// # Ok::<(), kuberesolver::Error>(())
    /// ```
    pub fn with_port(self, port: Port) -> Result<Target, Error> {
        let checked = match &port {
            Port::Number(0) => Err(format!("port {} out of range", 0)),
            Port::Number(_) => Ok(()),
            Port::Name(name) => check_port_name(name),
        };
        checked.map_err(|p| Error::invalid_target(&port.to_string(), p))?;
        Ok(Target {
            port: Some(port),
            ..self
        })
    }

    /// Returns this target with the scheme `scheme` instead of `kubernetes`.
    ///
    /// `scheme` must be a valid URI scheme (a letter, then letters, digits, `+`, `-` or `.`);
    /// it is kept in lowercase. The scheme only shows in `Display`.
    ///
    /// ```
    /// use kuberesolver::Target;
    ///
    /// let target = Target::new("api")?.with_scheme("K8s")?;
    /// assert_eq!(target.to_string(), "k8s:///api");
    ///
    /// assert!(Target::new("api")?.with_scheme("8s").is_err());
    /// # Ok::<(), kuberesolver::Error>(())
    /// ```
    pub fn with_scheme(self, scheme: &str) -> Result<Target, Error> {
        let scheme = check_scheme(scheme).map_err(|p| Error::invalid_target(scheme, p))?;
        Ok(Target { scheme, ..self })
    }

    /// The scheme of the target, in lowercase: `kubernetes` unless chosen otherwise.
    ///
    /// ```
    /// use kuberesolver::Target;
    ///
    /// assert_eq!(Target::new("api")?.scheme(), "kubernetes");
    /// # Ok::<(), kuberesolver::Error>(())
    /// ```
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The namespace of the Service, or `None` for the default namespace of the resolver's
    /// [`Config`](crate::Config). [`Resolver::target`](crate::Resolver::target) always has
    /// one: the resolver fills it in at spawn.
    ///
    /// ```
    /// use kuberesolver::Target;
    ///
    /// assert_eq!("kubernetes:///api.prod".parse::<Target>()?.namespace(), Some("prod"));
    /// assert_eq!("kubernetes:///api".parse::<Target>()?.namespace(), None);
    /// # Ok::<(), kuberesolver::Error>(())
    /// ```
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// The name of the Service.
    ///
    /// ```
    /// use kuberesolver::Target;
    ///
    /// assert_eq!("kubernetes:///api.prod:8080".parse::<Target>()?.service(), "api");
    /// # Ok::<(), kuberesolver::Error>(())
    /// ```
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The port to resolve, or `None` to use the Service's only port.
    ///
    /// ```
    /// use kuberesolver::{Port, Target};
    ///
    /// let target: Target = "kubernetes:///api.prod:8080".parse()?;
    /// assert_eq!(target.port(), Some(&Port::Number(8080)));
    /// assert_eq!("kubernetes:///api.prod".parse::<Target>()?.port(), None);
    /// # Ok::<(), kuberesolver::Error>(())
    /// ```
    pub fn port(&self) -> Option<&Port> {
        self.port.as_ref()
    }

    /// The name to verify the servers' TLS certificates against: `service.namespace`.
    ///
    /// This is the authority Go's kuberesolver gives gRPC. When the namespace is `None` (not
    /// given), it is just `service`.
    ///
    /// ```
    /// use kuberesolver::Target;
    ///
    /// let target: Target = "kubernetes://prod/api:8080".parse()?;
    /// assert_eq!(target.tls_server_name(), "api.prod");
    /// assert_eq!("kubernetes:///api".parse::<Target>()?.tls_server_name(), "api");
    /// # Ok::<(), kuberesolver::Error>(())
    /// ```
    pub fn tls_server_name(&self) -> String {
        match &self.namespace {
            Some(namespace) => format!("{}.{namespace}", self.service),
            None => self.service.clone(),
        }
    }

    /// The namespace of the Service, or `default` (the configuration's namespace) when it is
    /// `None`.
    pub(crate) fn namespace_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.namespace.as_deref().unwrap_or(default)
    }
}

impl FromStr for Target {
    type Err = Error;

    /// Parses a target with the scheme `kubernetes`; see [`Target::parse_with_scheme`].
    fn from_str(input: &str) -> Result<Target, Error> {
        Target::parse_with_scheme(input, DEFAULT_SCHEME)
    }
}

impl fmt::Display for Target {
    /// Writes the canonical form `{scheme}:///{service}[.{namespace}][:{port}]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:///{}", self.scheme, self.service)?;
        if let Some(namespace) = &self.namespace {
            write!(f, ".{namespace}")?;
        }
        if let Some(port) = &self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// Parses `input` with the (already checked, lowercase) `scheme`; the error is the problem.
///
/// Every split is at an ASCII character found in the string, so no slicing can land inside a
/// multibyte character.
fn parse(input: &str, scheme: String) -> Result<Target, String> {
    if input.is_empty() {
        return Err("empty target".to_string());
    }
    let missing_slashes =
        || format!("missing \"://\" (expected \"{scheme}:///service[.namespace][:port]\")");
    // `Some(rest)` after "scheme://"; `None` for Go's spellings without the authority
    // ("scheme:service..." and "scheme:/service..."), whose rest is the path alone.
    let (given_scheme, hierarchical, rest) = match input.split_once("://") {
        Some((given, rest)) => (given, true, rest),
        None => match input.split_once(':') {
            Some((given, rest)) if given.eq_ignore_ascii_case(&scheme) => {
                (given, false, rest.strip_prefix('/').unwrap_or(rest))
            }
            _ => return Err(missing_slashes()),
        },
    };
    if !given_scheme.eq_ignore_ascii_case(&scheme) {
        return Err(format!("scheme {given_scheme:?} is not {scheme:?}"));
    }
    if rest.contains('@') {
        return Err("user info (\"@\") is not allowed".to_string());
    }
    if rest.contains('?') {
        return Err("query (\"?\") is not allowed".to_string());
    }
    if rest.contains('#') {
        return Err("fragment (\"#\") is not allowed".to_string());
    }
    let (authority, path) = if hierarchical {
        rest.split_once('/').unwrap_or((rest, ""))
    } else {
        ("", rest)
    };

    let (service, namespace, port) = if authority.is_empty() {
        // kubernetes:///service[.namespace[.svc[.domain]]][:port]
        check_single_segment(path)?;
        let (name, port) = split_port(path)?;
        let (service, namespace) = split_dotted(name)?;
        (service, namespace, port)
    } else if !authority.contains(':') && !path.is_empty() {
        // kubernetes://namespace/service[:port]
        check_single_segment(path)?;
        check_label(authority, "namespace")?;
        let (name, port) = split_port(path)?;
        if name.trim_end_matches('.').contains('.') {
            return Err(format!(
                "namespace given twice (\"{authority}/\" before {name:?})"
            ));
        }
        check_label(name, "service name")?;
        (name, Some(authority), port)
    } else {
        // kubernetes://service[.namespace[.svc[.domain]]][:port][/]
        if !path.is_empty() {
            let path = format!("/{path}");
            return Err(format!(
                "path {path:?} after an authority with a port (use \"{scheme}:///service.namespace:port\")"
            ));
        }
        let (name, port) = split_port(authority)?;
        let (service, namespace) = split_dotted(name)?;
        (service, namespace, port)
    };

    Ok(Target {
        scheme,
        namespace: namespace.map(str::to_string),
        service: service.to_string(),
        port,
    })
}

/// Checks that `path` (after the slash that ends the authority) has no further slash.
fn check_single_segment(path: &str) -> Result<(), String> {
    match path.split_once('/') {
        None => Ok(()),
        Some((segment, "")) => Err(format!("trailing \"/\" after {segment:?}")),
        Some(_) => Err(format!(
            "more than one path segment ({:?})",
            format!("/{path}")
        )),
    }
}

/// Splits `name[:port]` at its last colon and parses the port.
fn split_port(text: &str) -> Result<(&str, Option<Port>), String> {
    match text.rsplit_once(':') {
        None => Ok((text, None)),
        Some((name, _)) if name.contains(':') => Err(format!("more than one \":\" ({text:?})")),
        Some((name, port)) => Ok((name, Some(parse_port(port)?))),
    }
}

/// Parses the text after the colon: a number in `1..=65535`, or a port name.
fn parse_port(port: &str) -> Result<Port, String> {
    if port.is_empty() {
        return Err("empty port".to_string());
    }
    if port.bytes().all(|b| b.is_ascii_digit()) {
        return match port.parse::<u16>() {
            Ok(number) if number != 0 => Ok(Port::Number(number)),
            // Too large for a u16 (the text is all digits, so that is the only parse error),
            // or zero.
            _ => Err(format!("port {port} out of range")),
        };
    }
    check_port_name(port)?;
    Ok(Port::Name(port.to_string()))
}

/// Splits `service[.namespace[.svc[.cluster.domain[.]]]]`, checking every label.
///
/// A final dot marks a fully qualified DNS name, so it is accepted only after a cluster domain:
/// `echo.prod.svc.cluster.local.` is a name the cluster DNS answers; `echo.prod.` is not.
fn split_dotted(name: &str) -> Result<(&str, Option<&str>), String> {
    let (labels_text, fully_qualified) = match name.strip_suffix('.') {
        Some(without_dot) => (without_dot, true),
        None => (name, false),
    };
    let mut labels = labels_text.split('.');
    // `split` always yields at least one item, so the default is never used.
    let service = labels.next().unwrap_or_default();
    check_label(service, "service name")?;
    let trailing_dot = || {
        format!(
            "trailing \".\" in {name:?} (only a full name such as \"service.namespace.svc.cluster.local.\" may end with a dot)"
        )
    };
    let Some(namespace) = labels.next() else {
        return if fully_qualified {
            Err(trailing_dot())
        } else {
            Ok((service, None))
        };
    };
    check_label(namespace, "namespace")?;
    match labels.next() {
        None | Some("svc") => {}
        Some(other) => {
            return Err(format!(
                "expected \"svc\" after the namespace, found {other:?}"
            ))
        }
    }
    let mut domain_labels = 0;
    for label in labels {
        check_label(label, "cluster domain label")?;
        domain_labels += 1;
    }
    if fully_qualified && domain_labels == 0 {
        return Err(trailing_dot());
    }
    Ok((service, Some(namespace)))
}

/// Checks that `label` is an RFC 1123 label, the form of Kubernetes service and namespace
/// names; `what` names it in the error ("service name", "namespace", ...).
fn check_label(label: &str, what: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err(format!("empty {what}"));
    }
    for c in label.chars() {
        if c.is_ascii_uppercase() {
            return Err(format!(
                "uppercase letter {c:?} in {what} {label:?} (Kubernetes names are lowercase)"
            ));
        }
        if !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
            return Err(format!("invalid character {c:?} in {what} {label:?}"));
        }
    }
    // All characters are ASCII here, so the length in bytes is the length in characters.
    if label.len() > MAX_LABEL_LEN {
        return Err(format!(
            "{what} {label:?} is longer than {MAX_LABEL_LEN} characters"
        ));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(format!(
            "{what} {label:?} does not start and end with a letter or digit"
        ));
    }
    Ok(())
}

/// Checks that `name` is a Service port name: a DNS label, as Kubernetes validates
/// `ServicePort.name` and `EndpointPort.name`, and not only digits, which would read back as a
/// port number.
fn check_port_name(name: &str) -> Result<(), String> {
    check_label(name, "port name")?;
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "port name {name:?} is only digits (it would read as a port number; use Port::Number)"
        ));
    }
    Ok(())
}

/// Checks that `scheme` is a URI scheme (RFC 3986: `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`)
/// and returns it in lowercase.
fn check_scheme(scheme: &str) -> Result<String, String> {
    let mut chars = scheme.chars();
    match chars.next() {
        None => return Err("empty scheme".to_string()),
        Some(first) if !first.is_ascii_alphabetic() => {
            return Err(format!("scheme {scheme:?} does not start with a letter"))
        }
        Some(_) => {}
    }
    if let Some(c) = chars.find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))) {
        return Err(format!("invalid character {c:?} in scheme {scheme:?}"));
    }
    Ok(scheme.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::Rng;
    use crate::ErrorKind;

    // ---- helpers ------------------------------------------------------------------------

    /// Parses `input` with the default scheme, failing the test with the error if it is rejected.
    fn parses(input: &str) -> Target {
        match input.parse::<Target>() {
            Ok(target) => target,
            Err(err) => panic!("{input:?} should parse, but: {err}"),
        }
    }

    /// Asserts that `input` is rejected with an `InvalidTarget` error whose message contains
    /// `needle`, and that the message quotes the input.
    fn rejects(input: &str, needle: &str) {
        rejects_with_scheme(input, DEFAULT_SCHEME, needle);
    }

    fn rejects_with_scheme(input: &str, scheme: &str, needle: &str) {
        match Target::parse_with_scheme(input, scheme) {
            Ok(target) => panic!("{input:?} should be rejected, but parsed as {target:?}"),
            Err(err) => {
                let message = err.to_string();
                assert_eq!(err.kind(), ErrorKind::InvalidTarget, "{message}");
                assert!(
                    message.contains(needle),
                    "error for {input:?} should contain {needle:?}: {message}"
                );
                assert!(
                    message.ends_with(&format!(" in {input:?}")),
                    "error for {input:?} should quote it: {message}"
                );
            }
        }
    }

    /// Asserts that a builder result is an `InvalidTarget` error containing `needle`.
    fn builder_fails(result: Result<Target, Error>, needle: &str) {
        match result {
            Ok(target) => panic!("should be rejected, but built {target:?}"),
            Err(err) => {
                assert_eq!(err.kind(), ErrorKind::InvalidTarget, "{err}");
                assert!(err.to_string().contains(needle), "{err} lacks {needle:?}");
            }
        }
    }

    /// Asserts that `target` names `service` in `namespace` on `port`, with scheme "kubernetes".
    fn is(target: &Target, service: &str, namespace: Option<&str>, port: Option<Port>) {
        assert_eq!(target.scheme(), "kubernetes", "{target:?}");
        assert_eq!(target.service(), service, "{target:?}");
        assert_eq!(target.namespace(), namespace, "{target:?}");
        assert_eq!(target.port(), port.as_ref(), "{target:?}");
    }

    fn number(n: u16) -> Option<Port> {
        Some(Port::Number(n))
    }

    fn name(s: &str) -> Option<Port> {
        Some(Port::Name(s.to_string()))
    }

    /// Asserts that the canonical form of `target` parses back to `target`, and that
    /// `parse_with_scheme` agrees with `FromStr` for the default scheme.
    fn round_trips(target: &Target) {
        let text = target.to_string();
        match Target::parse_with_scheme(&text, target.scheme()) {
            Ok(back) => assert_eq!(&back, target, "{text}"),
            Err(err) => panic!("{text:?} (from {target:?}) does not parse back: {err}"),
        }
        if target.scheme() == DEFAULT_SCHEME {
            assert_eq!(text.parse::<Target>().as_ref(), Ok(target), "{text}");
        }
    }

    /// Every valid example in these tests, for the round-trip test.
    const VALID: &[&str] = &[
        "kubernetes:///service:8080",
        "kubernetes:///service:portname",
        "kubernetes:///service.namespace:8080",
        "kubernetes:///service.namespace.svc.cluster.local:8080",
        "kubernetes:///service.namespace.svc.cluster.local",
        "kubernetes:///service.namespace.svc:8080",
        "kubernetes:///service.namespace.svc",
        "kubernetes://service.namespace.svc.cluster.local:8080",
        "kubernetes://service.namespace.svc.cluster.local",
        "kubernetes://service.namespace.svc.cluster.local/",
        "kubernetes:///service",
        "kubernetes:///service.namespace",
        "kubernetes://namespace/service:8080",
        "kubernetes://namespace/service:portname",
        "kubernetes://namespace/service",
        "kubernetes://service:8080/",
        "kubernetes://service:8080",
        "kubernetes://service.namespace:8080/",
        "kubernetes://service.namespace:8080",
        "kubernetes://service/",
        "kubernetes://service",
        "kubernetes://service.namespace/",
        "kubernetes://service.namespace",
        "KUBERNETES:///service.namespace:8080",
        "Kubernetes://namespace/service:http",
        "kubernetes:///a:1",
        "kubernetes:///a.b:65535",
        "kubernetes:///a.b:080",
        "kubernetes:///0.9:h",
        "kubernetes:///my-service-1.my-ns-2:grpc-web",
        "kubernetes:///a.b.svc.example-cluster.internal.corp:x",
        "kubernetes:///service.namespace.svc.cluster.local.:8080",
        "kubernetes://service.namespace.svc.cluster.local.:8080",
        "kubernetes://service.namespace.svc.cluster.local./",
        "kubernetes:service.namespace:8080",
        "kubernetes:service",
        "kubernetes:service.namespace.svc.cluster.local.:grpc",
        "kubernetes:/service.namespace:8080",
        "kubernetes:///cert-manager.cert-manager:tcp-prometheus-servicemonitor",
        "kubernetes:///a.b:grpc--web",
        "kubernetes:///a:1-2",
    ];

    // ---- every documented form ----------------------------------------------------------

    #[test]
    fn a_service_with_a_port_number_is_in_the_pods_own_namespace() {
        is(
            &parses("kubernetes:///service:8080"),
            "service",
            None,
            number(8080),
        );
    }

    #[test]
    fn a_port_can_be_named() {
        is(
            &parses("kubernetes:///service:portname"),
            "service",
            None,
            name("portname"),
        );
    }

    #[test]
    fn a_dotted_path_names_service_and_namespace() {
        is(
            &parses("kubernetes:///service.namespace:8080"),
            "service",
            Some("namespace"),
            number(8080),
        );
        is(
            &parses("kubernetes:///service.namespace"),
            "service",
            Some("namespace"),
            None,
        );
    }

    #[test]
    fn a_full_service_dns_name_in_the_path_ignores_the_cluster_domain() {
        for (input, port) in [
            (
                "kubernetes:///service.namespace.svc.cluster.local:8080",
                number(8080),
            ),
            ("kubernetes:///service.namespace.svc.cluster.local", None),
            ("kubernetes:///service.namespace.svc:8080", number(8080)),
            ("kubernetes:///service.namespace.svc", None),
            (
                "kubernetes:///service.namespace.svc.example-cluster.internal.corp:x",
                name("x"),
            ),
        ] {
            is(&parses(input), "service", Some("namespace"), port);
        }
    }

    #[test]
    fn a_full_service_dns_name_in_the_authority_ignores_the_cluster_domain() {
        for (input, port) in [
            (
                "kubernetes://service.namespace.svc.cluster.local:8080",
                number(8080),
            ),
            ("kubernetes://service.namespace.svc.cluster.local", None),
            ("kubernetes://service.namespace.svc.cluster.local/", None),
            (
                "kubernetes://service.namespace.svc.cluster.local:grpc/",
                name("grpc"),
            ),
        ] {
            is(&parses(input), "service", Some("namespace"), port);
        }
    }

    #[test]
    fn a_final_dot_after_the_cluster_domain_is_accepted_as_in_go() {
        for (input, port) in [
            (
                "kubernetes:///service.namespace.svc.cluster.local.:8080",
                number(8080),
            ),
            ("kubernetes:///service.namespace.svc.cluster.local.", None),
            (
                "kubernetes://service.namespace.svc.cluster.local.:grpc",
                name("grpc"),
            ),
            ("kubernetes://service.namespace.svc.cluster.local./", None),
            ("kubernetes://service.namespace.svc.example.", None),
        ] {
            is(&parses(input), "service", Some("namespace"), port);
        }
    }

    #[test]
    fn go_spellings_without_slashes_read_like_the_path_form() {
        for (input, namespace, port) in [
            (
                "kubernetes:service.namespace:8080",
                Some("namespace"),
                number(8080),
            ),
            ("kubernetes:service:grpc", None, name("grpc")),
            ("kubernetes:service", None, None),
            (
                "kubernetes:service.namespace.svc.cluster.local.:8080",
                Some("namespace"),
                number(8080),
            ),
            ("Kubernetes:service.namespace", Some("namespace"), None),
            (
                "kubernetes:/service.namespace:8080",
                Some("namespace"),
                number(8080),
            ),
            ("kubernetes:/service", None, None),
        ] {
            is(&parses(input), "service", namespace, port);
        }
        let custom = Target::parse_with_scheme("k8s:api.prod:80", "k8s");
        assert_eq!(
            custom,
            Target::parse_with_scheme("k8s:///api.prod:80", "k8s")
        );
        assert!(custom.is_ok());
    }

    #[test]
    fn go_spellings_without_slashes_keep_every_other_rule() {
        rejects("kubernetes:", "empty service name");
        rejects("kubernetes:/", "empty service name");
        rejects("kubernetes:ns/svc:80", "more than one path segment");
        rejects("kubernetes:svc/", "trailing \"/\" after \"svc\"");
        rejects("kubernetes:/svc/", "trailing \"/\" after \"svc\"");
        rejects("kubernetes:svc:80:90", "more than one \":\"");
        rejects("kubernetes:svc?x=1", "query (\"?\")");
        rejects("kubernetes:svc#x", "fragment (\"#\")");
        rejects("kubernetes:user@svc", "user info (\"@\")");
        rejects("kubernetes:Svc", "uppercase letter 'S' in service name");
        rejects("kubernetes:svc.ns.", "trailing \".\"");
        rejects("kubernetes:a.b.c:80", "expected \"svc\"");
        rejects("kubernetes:svc:0", "port 0 out of range");
        rejects_with_scheme(
            "kubernetes:svc",
            "k8s",
            "missing \"://\" (expected \"k8s:///service",
        );
    }

    #[test]
    fn a_service_alone_has_no_port_and_no_namespace() {
        is(&parses("kubernetes:///service"), "service", None, None);
    }

    #[test]
    fn an_authority_followed_by_a_path_is_the_namespace() {
        is(
            &parses("kubernetes://namespace/service:8080"),
            "service",
            Some("namespace"),
            number(8080),
        );
        is(
            &parses("kubernetes://namespace/service:portname"),
            "service",
            Some("namespace"),
            name("portname"),
        );
        is(
            &parses("kubernetes://namespace/service"),
            "service",
            Some("namespace"),
            None,
        );
    }

    #[test]
    fn an_authority_with_a_port_is_the_service() {
        for input in ["kubernetes://service:8080/", "kubernetes://service:8080"] {
            is(&parses(input), "service", None, number(8080));
        }
        for input in [
            "kubernetes://service.namespace:8080/",
            "kubernetes://service.namespace:8080",
        ] {
            is(&parses(input), "service", Some("namespace"), number(8080));
        }
    }

    #[test]
    fn an_authority_without_a_path_is_the_service() {
        for input in ["kubernetes://service/", "kubernetes://service"] {
            is(&parses(input), "service", None, None);
        }
        for input in [
            "kubernetes://service.namespace/",
            "kubernetes://service.namespace",
        ] {
            is(&parses(input), "service", Some("namespace"), None);
        }
    }

    #[test]
    fn the_scheme_is_matched_ignoring_case_and_kept_lowercase() {
        let target = parses("KUBERNETES:///service.namespace:8080");
        is(&target, "service", Some("namespace"), number(8080));
        assert_eq!(target.to_string(), "kubernetes:///service.namespace:8080");
    }

    #[test]
    fn port_numbers_cover_one_to_65535_and_may_have_leading_zeros() {
        is(&parses("kubernetes:///a:1"), "a", None, number(1));
        is(&parses("kubernetes:///a:65535"), "a", None, number(65535));
        is(&parses("kubernetes:///a:080"), "a", None, number(80));
    }

    #[test]
    fn names_may_be_digits_and_hyphens_inside() {
        is(&parses("kubernetes:///0.9:h"), "0", Some("9"), name("h"));
        is(
            &parses("kubernetes:///my-service-1.my-ns-2:grpc-web"),
            "my-service-1",
            Some("my-ns-2"),
            name("grpc-web"),
        );
        let longest = "a".repeat(63);
        let port = "p".repeat(63);
        is(
            &parses(&format!("kubernetes:///{longest}.{longest}:{port}")),
            &longest,
            Some(&longest),
            name(&port),
        );
    }

    // ---- custom schemes -----------------------------------------------------------------

    #[test]
    fn a_custom_scheme_is_required_and_kept() {
        let target = match Target::parse_with_scheme("k8s:///api.prod:8080", "k8s") {
            Ok(target) => target,
            Err(err) => panic!("{err}"),
        };
        assert_eq!(target.scheme(), "k8s");
        assert_eq!(target.service(), "api");
        assert_eq!(target.namespace(), Some("prod"));
        assert_eq!(target.port(), Some(&Port::Number(8080)));
        assert_eq!(target.to_string(), "k8s:///api.prod:8080");
        round_trips(&target);
    }

    #[test]
    fn a_custom_scheme_is_matched_ignoring_case_and_kept_lowercase() {
        for (input, scheme) in [
            ("MyScheme://prod/api", "myscheme"),
            ("myscheme://prod/api", "MySchEme"),
            ("grpc+k8s.v1-x://prod/api", "GRPC+K8S.V1-X"),
        ] {
            match Target::parse_with_scheme(input, scheme) {
                Ok(target) => {
                    assert_eq!(target.scheme(), scheme.to_ascii_lowercase());
                    assert_eq!(target.tls_server_name(), "api.prod");
                    round_trips(&target);
                }
                Err(err) => panic!("{input:?} with {scheme:?}: {err}"),
            }
        }
    }

    #[test]
    fn another_scheme_than_the_one_asked_for_is_rejected() {
        rejects_with_scheme(
            "kubernetes:///api",
            "k8s",
            "scheme \"kubernetes\" is not \"k8s\"",
        );
        rejects_with_scheme(
            "k8s:///api",
            "kubernetes",
            "scheme \"k8s\" is not \"kubernetes\"",
        );
        rejects_with_scheme("k8s", "k8s", "missing \"://\"");
    }

    #[test]
    fn an_invalid_scheme_to_match_is_an_error_about_the_scheme() {
        for (scheme, needle) in [
            ("", "empty scheme"),
            ("1k8s", "does not start with a letter"),
            ("+k8s", "does not start with a letter"),
            ("k 8s", "invalid character ' ' in scheme"),
            ("k8s:", "invalid character ':' in scheme"),
            ("k8s/", "invalid character '/' in scheme"),
            ("kübernetes", "invalid character 'ü' in scheme"),
        ] {
            match Target::parse_with_scheme("kubernetes:///api", scheme) {
                Ok(target) => panic!("scheme {scheme:?} accepted: {target:?}"),
                Err(err) => {
                    let message = err.to_string();
                    assert_eq!(err.kind(), ErrorKind::InvalidTarget);
                    assert!(message.contains(needle), "{message} lacks {needle:?}");
                    assert!(message.ends_with(&format!(" in {scheme:?}")), "{message}");
                }
            }
        }
    }

    // ---- bad targets --------------------------------------------------------------------

    #[test]
    fn a_port_out_of_range_is_reported_exactly() {
        match "kubernetes:///a:70000".parse::<Target>() {
            Ok(target) => panic!("accepted {target:?}"),
            Err(err) => assert_eq!(
                err.to_string(),
                r#"port 70000 out of range in "kubernetes:///a:70000""#
            ),
        }
        rejects("kubernetes:///a:0", "port 0 out of range");
        rejects("kubernetes:///a:65536", "port 65536 out of range");
        rejects(
            "kubernetes:///a:99999999999999999999999",
            "port 99999999999999999999999 out of range",
        );
        rejects("kubernetes://a:0/", "port 0 out of range");
        rejects("kubernetes://ns/a:000", "port 000 out of range");
    }

    #[test]
    fn empty_inputs_and_parts_are_rejected() {
        rejects("", "empty target");
        rejects("kubernetes:///", "empty service name");
        rejects("kubernetes://", "empty service name");
        rejects("kubernetes://:80", "empty service name");
        rejects("kubernetes:///:80", "empty service name");
        rejects("kubernetes:///.ns", "empty service name");
        rejects("kubernetes:///svc..svc", "empty namespace");
        rejects("kubernetes:///a:", "empty port");
        rejects("kubernetes://a:/", "empty port");
        rejects("kubernetes://ns/a:", "empty port");
    }

    #[test]
    fn a_missing_or_wrong_scheme_is_rejected() {
        rejects("svc", "missing \"://\"");
        rejects("svc.ns:80", "missing \"://\"");
        rejects("kubernete:svc.ns:80", "missing \"://\"");
        rejects("dns:///svc:80", "scheme \"dns\" is not \"kubernetes\"");
        rejects("://svc", "scheme \"\" is not \"kubernetes\"");
        rejects("kubernetes ://svc", "scheme \"kubernetes \"");
    }

    #[test]
    fn url_parts_a_target_cannot_have_are_rejected() {
        rejects("kubernetes:///a?x=1", "query (\"?\")");
        rejects("kubernetes://ns/a:80?x", "query (\"?\")");
        rejects("kubernetes:///a#frag", "fragment (\"#\")");
        rejects("kubernetes://user@svc:80", "user info (\"@\")");
        rejects("kubernetes://user:pw@svc/", "user info (\"@\")");
    }

    #[test]
    fn extra_colons_are_rejected() {
        rejects("kubernetes:///a:b:80", "more than one \":\"");
        rejects("kubernetes://a:b:80", "more than one \":\"");
        rejects("kubernetes:///[::1]:80", "more than one \":\"");
        rejects("kubernetes://ns/a::80", "more than one \":\"");
    }

    #[test]
    fn extra_path_segments_are_rejected() {
        rejects("kubernetes://ns/svc/extra", "more than one path segment");
        rejects("kubernetes:///svc/extra", "more than one path segment");
        rejects("kubernetes://ns//svc", "more than one path segment");
        rejects("kubernetes:///svc/", "trailing \"/\" after \"svc\"");
        rejects("kubernetes://ns/svc:80/", "trailing \"/\" after \"svc:80\"");
        rejects(
            "kubernetes://svc:80/extra",
            "path \"/extra\" after an authority with a port",
        );
        rejects(
            "kubernetes://svc:80//",
            "path \"//\" after an authority with a port",
        );
    }

    #[test]
    fn a_namespace_given_twice_is_rejected() {
        rejects("kubernetes://ns/svc.other:80", "namespace given twice");
        rejects("kubernetes://ns/svc.ns", "namespace given twice");
        rejects(
            "kubernetes://ns/svc.ns.svc.cluster.local",
            "namespace given twice",
        );
    }

    #[test]
    fn a_namespace_in_the_authority_must_be_a_single_label() {
        rejects(
            "kubernetes://a.b/c",
            "invalid character '.' in namespace \"a.b\"",
        );
    }

    #[test]
    fn uppercase_names_are_rejected() {
        rejects("kubernetes:///Svc", "uppercase letter 'S' in service name");
        rejects("kubernetes:///svc.NS", "uppercase letter 'N' in namespace");
        rejects("kubernetes://NS/svc", "uppercase letter 'N' in namespace");
        rejects(
            "kubernetes://SVC:80",
            "uppercase letter 'S' in service name",
        );
        rejects("kubernetes:///a:HTTP", "uppercase letter 'H' in port name");
        rejects(
            "kubernetes:///a.b.svc.Cluster.local",
            "uppercase letter 'C' in cluster domain label",
        );
    }

    #[test]
    fn invalid_characters_are_named() {
        rejects(
            "kubernetes:///my_svc",
            "invalid character '_' in service name",
        );
        rejects(
            "kubernetes:///my%20svc",
            "invalid character '%' in service name",
        );
        rejects(
            "kubernetes:///my svc",
            "invalid character ' ' in service name",
        );
        rejects(
            "kubernetes:///svc.my ns",
            "invalid character ' ' in namespace",
        );
        rejects(
            "kubernetes:///svc\t",
            "invalid character '\\t' in service name",
        );
        rejects(
            "kubernetes:///a:http_",
            "invalid character '_' in port name",
        );
        rejects(
            "kubernetes:///a:ht tp",
            "invalid character ' ' in port name",
        );
        rejects(
            "kubernetes:///a.b.svc.clus_ter",
            "invalid character '_' in cluster",
        );
    }

    #[test]
    fn non_ascii_characters_are_named_without_panicking() {
        rejects(
            "kubernetes:///sérvice",
            "invalid character 'é' in service name",
        );
        rejects(
            "kubernetes:///日本.ns:80",
            "invalid character '日' in service name",
        );
        rejects(
            "kubernetes:///svc.ns:🦀",
            "invalid character '🦀' in port name",
        );
        rejects(
            "kubernetes://名前/svc",
            "invalid character '名' in namespace",
        );
        rejects(
            "kübernetes:///svc",
            "scheme \"kübernetes\" is not \"kubernetes\"",
        );
        rejects(
            "kubernetes:///svc:８０",
            "invalid character '８' in port name",
        );
    }

    #[test]
    fn a_third_label_other_than_svc_is_rejected() {
        rejects(
            "kubernetes:///a.b.c",
            "expected \"svc\" after the namespace, found \"c\"",
        );
        rejects("kubernetes:///a.b.SVC", "expected \"svc\"");
        rejects("kubernetes://a.b.cluster.local:80", "expected \"svc\"");
    }

    #[test]
    fn a_final_dot_anywhere_but_after_a_cluster_domain_is_rejected() {
        let only_after_a_domain =
            "only a full name such as \"service.namespace.svc.cluster.local.\" may end with a dot";
        rejects("kubernetes:///svc.", "trailing \".\" in \"svc.\"");
        rejects("kubernetes:///svc.", only_after_a_domain);
        rejects("kubernetes:///a.b.", "trailing \".\" in \"a.b.\"");
        rejects("kubernetes:///a.b.svc.", "trailing \".\" in \"a.b.svc.\"");
        rejects("kubernetes://a.b.svc.:80", "trailing \".\"");
        rejects(
            "kubernetes:///a.b.svc.cluster.local..",
            "empty cluster domain label",
        );
        rejects("kubernetes:///a.b.svc..local", "empty cluster domain label");
        rejects("kubernetes:///.", "empty service name");
        rejects(
            "kubernetes://ns/svc.",
            "invalid character '.' in service name",
        );
        rejects(
            "kubernetes://ns/svc.:80",
            "invalid character '.' in service name",
        );
    }

    #[test]
    fn names_must_be_short_and_start_and_end_with_a_letter_or_digit() {
        rejects(
            "kubernetes:///-svc",
            "does not start and end with a letter or digit",
        );
        rejects(
            "kubernetes:///svc-",
            "does not start and end with a letter or digit",
        );
        rejects(
            "kubernetes:///svc.-ns",
            "namespace \"-ns\" does not start and end",
        );
        let long = "a".repeat(64);
        rejects(
            &format!("kubernetes:///{long}"),
            "is longer than 63 characters",
        );
        rejects(&format!("kubernetes:///a.{long}"), "namespace \"aaaa");
    }

    #[test]
    fn service_port_names_are_dns_labels_of_up_to_63_characters() {
        for port in [
            "tcp-prometheus-servicemonitor",
            "grpc--web",
            "http-metrics-and-a-much-longer-name-than-iana-allows",
            "1-2",
            "9p",
            "x",
        ] {
            is(
                &parses(&format!("kubernetes:///a:{port}")),
                "a",
                None,
                name(port),
            );
        }
        is(
            &parses("kubernetes:///cert-manager.cert-manager:tcp-prometheus-servicemonitor"),
            "cert-manager",
            Some("cert-manager"),
            name("tcp-prometheus-servicemonitor"),
        );
        let longest = "p".repeat(63);
        is(
            &parses(&format!("kubernetes://ns/a:{longest}")),
            "a",
            Some("ns"),
            name(&longest),
        );
    }

    #[test]
    fn port_names_that_are_not_dns_labels_are_rejected_naming_the_rule() {
        let edge = "does not start and end with a letter or digit";
        rejects(
            "kubernetes:///a:http-",
            &format!("port name \"http-\" {edge}"),
        );
        rejects(
            "kubernetes:///a:-http",
            &format!("port name \"-http\" {edge}"),
        );
        rejects("kubernetes:///a:-80", &format!("port name \"-80\" {edge}"));
        rejects("kubernetes:///a:--", &format!("port name \"--\" {edge}"));
        rejects(
            &format!("kubernetes:///a:{}", "p".repeat(64)),
            "is longer than 63 characters",
        );
        rejects("kubernetes:///a:+80", "invalid character '+' in port name");
        rejects(
            "kubernetes:///a:my.port",
            "invalid character '.' in port name",
        );
        rejects("kubernetes:///a:Grpc", "uppercase letter 'G' in port name");
    }

    // ---- display, round trip, server name -----------------------------------------------

    #[test]
    fn display_writes_the_canonical_form() {
        for (input, canonical) in [
            (
                "kubernetes://namespace/service:8080",
                "kubernetes:///service.namespace:8080",
            ),
            (
                "kubernetes://service.namespace.svc.cluster.local/",
                "kubernetes:///service.namespace",
            ),
            ("kubernetes://service:http/", "kubernetes:///service:http"),
            ("KUBERNETES:///service", "kubernetes:///service"),
            ("kubernetes:///a:080", "kubernetes:///a:80"),
        ] {
            assert_eq!(parses(input).to_string(), canonical);
        }
        assert_eq!(Port::Number(443).to_string(), "443");
        assert_eq!(Port::Name("https".to_string()).to_string(), "https");
    }

    #[test]
    fn every_valid_example_round_trips_through_display() {
        for input in VALID {
            let target = parses(input);
            round_trips(&target);
            // The canonical form is a fixed point.
            let canonical = target.to_string();
            assert_eq!(parses(&canonical).to_string(), canonical);
        }
    }

    #[test]
    fn every_form_of_the_same_target_is_equal() {
        let canonical = parses("kubernetes:///api.prod:8080");
        for input in [
            "kubernetes://prod/api:8080",
            "kubernetes://api.prod:8080",
            "kubernetes://api.prod:8080/",
            "kubernetes:///api.prod.svc.cluster.local:8080",
            "kubernetes://api.prod.svc.cluster.local:8080",
            "kubernetes://api.prod.svc:8080/",
            "Kubernetes:///api.prod:08080",
            "kubernetes:///api.prod.svc.cluster.local.:8080",
            "kubernetes://api.prod.svc.cluster.local.:8080",
            "kubernetes:api.prod:8080",
            "kubernetes:/api.prod:8080",
            "kubernetes:api.prod.svc.cluster.local.:8080",
        ] {
            assert_eq!(parses(input), canonical, "{input}");
        }
    }

    #[test]
    fn the_tls_server_name_is_service_dot_namespace() {
        assert_eq!(
            parses("kubernetes://prod/api:8080").tls_server_name(),
            "api.prod"
        );
        assert_eq!(
            parses("kubernetes:///api.prod.svc.cluster.local").tls_server_name(),
            "api.prod"
        );
        assert_eq!(parses("kubernetes:///api:grpc").tls_server_name(), "api");
    }

    #[test]
    fn namespace_or_falls_back_only_without_a_namespace() {
        assert_eq!(
            parses("kubernetes:///api.prod").namespace_or("default"),
            "prod"
        );
        assert_eq!(
            parses("kubernetes:///api").namespace_or("default"),
            "default"
        );
    }

    // ---- builders -----------------------------------------------------------------------

    #[test]
    fn builders_make_the_same_target_as_parsing() {
        let built = Target::new("api")
            .and_then(|t| t.with_namespace("prod"))
            .and_then(|t| t.with_port(Port::Number(8080)));
        assert_eq!(built, Ok(parses("kubernetes:///api.prod:8080")));

        let built = Target::new("api")
            .and_then(|t| t.with_port(Port::Name("grpc".to_string())))
            .and_then(|t| t.with_scheme("K8s"));
        let expected = Target::parse_with_scheme("k8s:///api:grpc", "k8s");
        assert_eq!(built, expected);
        assert!(built.is_ok());

        let plain = Target::new("api");
        assert_eq!(plain, Ok(parses("kubernetes:///api")));
    }

    #[test]
    fn builders_replace_what_was_set_before() {
        let built = Target::new("api")
            .and_then(|t| t.with_namespace("a"))
            .and_then(|t| t.with_namespace("b"))
            .and_then(|t| t.with_port(Port::Number(1)))
            .and_then(|t| t.with_port(Port::Number(2)));
        assert_eq!(built, Ok(parses("kubernetes:///api.b:2")));
    }

    #[test]
    fn builders_reject_invalid_values_naming_them() {
        let api = || Target::new("api");
        builder_fails(Target::new(""), "empty service name in \"\"");
        builder_fails(Target::new("Api"), "uppercase letter 'A' in service name");
        builder_fails(
            Target::new("api.prod"),
            "invalid character '.' in service name",
        );
        builder_fails(Target::new("a:80"), "invalid character ':' in service name");
        builder_fails(Target::new(&"a".repeat(64)), "longer than 63");
        builder_fails(
            api().and_then(|t| t.with_namespace("")),
            "empty namespace in \"\"",
        );
        builder_fails(
            api().and_then(|t| t.with_namespace("pr_od")),
            "invalid character '_' in namespace \"pr_od\" in \"pr_od\"",
        );
        builder_fails(
            api().and_then(|t| t.with_port(Port::Number(0))),
            "port 0 out of range in \"0\"",
        );
        builder_fails(
            api().and_then(|t| t.with_port(Port::Name("80".to_string()))),
            "port name \"80\" is only digits",
        );
        builder_fails(
            api().and_then(|t| t.with_port(Port::Name(String::new()))),
            "empty port name",
        );
        builder_fails(
            api().and_then(|t| t.with_port(Port::Name("GRPC".to_string()))),
            "uppercase letter 'G' in port name",
        );
        builder_fails(
            api().and_then(|t| t.with_port(Port::Name("a-".to_string()))),
            "port name \"a-\" does not start and end with a letter or digit",
        );
        builder_fails(
            api().and_then(|t| t.with_port(Port::Name("p".repeat(64)))),
            "longer than 63",
        );
        builder_fails(api().and_then(|t| t.with_scheme("")), "empty scheme");
        builder_fails(
            api().and_then(|t| t.with_scheme("8s")),
            "does not start with a letter in \"8s\"",
        );
        builder_fails(
            api().and_then(|t| t.with_scheme("k8s://")),
            "invalid character ':' in scheme",
        );
    }

    // ---- pseudo-random properties -------------------------------------------------------

    /// True once in `n` draws, on average.
    fn one_in(rng: &mut Rng, n: usize) -> bool {
        rng.below(n) == 0
    }

    /// `len` characters from `alphabet`.
    fn string(rng: &mut Rng, alphabet: &[char], len: usize) -> String {
        (0..len).map(|_| *rng.pick(alphabet)).collect()
    }

    const ALNUM: &[char] = &['a', 'b', 'c', 'k', 'm', 's', 'v', 'z', '0', '1', '5', '9'];
    const LABEL: &[char] = &['a', 'b', 'c', 'k', 's', 'v', 'z', '0', '7', '9', '-', '-'];
    const LETTERS: &[char] = &['a', 'b', 'g', 'h', 'p', 'r', 'z'];

    /// A random RFC 1123 label of 1 to 63 characters.
    fn random_label(rng: &mut Rng) -> String {
        let len = if one_in(rng, 8) {
            63
        } else {
            1 + rng.below(12)
        };
        let mut label = string(rng, ALNUM, 1);
        if len > 1 {
            label.push_str(&string(rng, LABEL, len - 2));
            label.push_str(&string(rng, ALNUM, 1));
        }
        label
    }

    /// A random valid Service port name: an RFC 1123 label that is not only digits.
    fn random_port_name(rng: &mut Rng) -> String {
        let mut name = random_label(rng);
        if name.bytes().all(|b| b.is_ascii_digit()) {
            let at = rng.below(name.len());
            name.replace_range(at..=at, &string(rng, LETTERS, 1));
        }
        name
    }

    fn random_port(rng: &mut Rng) -> Port {
        match rng.below(4) {
            0 => Port::Number(1),
            1 => Port::Number(u16::MAX),
            2 => {
                // `below` returns less than 65535, so the sum fits in a u16.
                Port::Number(u16::try_from(1 + rng.below(65535)).unwrap_or(1))
            }
            _ => Port::Name(random_port_name(rng)),
        }
    }

    fn random_scheme(rng: &mut Rng) -> String {
        let mut scheme = string(rng, &['k', 'X', 'g'], 1);
        let len = rng.below(6);
        scheme.push_str(&string(rng, &['a', 'Z', '8', '+', '-', '.'], len));
        scheme
    }

    /// A random valid target, built with the builders.
    fn random_target(rng: &mut Rng) -> Target {
        let mut built = Target::new(&random_label(rng));
        if one_in(rng, 2) {
            let namespace = random_label(rng);
            built = built.and_then(|t| t.with_namespace(&namespace));
        }
        if !one_in(rng, 4) {
            let port = random_port(rng);
            built = built.and_then(|t| t.with_port(port));
        }
        if one_in(rng, 4) {
            let scheme = random_scheme(rng);
            built = built.and_then(|t| t.with_scheme(&scheme));
        }
        match built {
            Ok(target) => target,
            Err(err) => panic!("the generator made an invalid target: {err}"),
        }
    }

    #[test]
    fn random_valid_targets_round_trip_and_parse_in_every_documented_form() {
        let mut rng = Rng::new(0x0123_4567_89AB_CDEF);
        for _ in 0..3000 {
            let target = random_target(&mut rng);
            round_trips(&target);
            let scheme = target.scheme();
            let service = target.service();
            let port = match target.port() {
                Some(port) => format!(":{port}"),
                None => String::new(),
            };
            let canonical = target.to_string();
            let mut forms = vec![
                // The scheme in uppercase; it is ASCII, so slicing after it is on a boundary.
                format!(
                    "{}{}",
                    scheme.to_ascii_uppercase(),
                    &canonical[scheme.len()..]
                ),
                format!("{scheme}://{service}{}{port}", dotted_ns(&target)),
                format!("{scheme}://{service}{}{port}/", dotted_ns(&target)),
            ];
            forms.push(format!("{scheme}:{service}{}{port}", dotted_ns(&target)));
            forms.push(format!("{scheme}:/{service}{}{port}", dotted_ns(&target)));
            if let Some(ns) = target.namespace() {
                forms.push(format!("{scheme}:///{service}.{ns}.svc{port}"));
                forms.push(format!(
                    "{scheme}:///{service}.{ns}.svc.cluster.local.{port}"
                ));
                forms.push(format!(
                    "{scheme}://{service}.{ns}.svc.cluster.local.{port}/"
                ));
                forms.push(format!(
                    "{scheme}:///{service}.{ns}.svc.cluster.local{port}"
                ));
                forms.push(format!(
                    "{scheme}://{service}.{ns}.svc.cluster.local{port}/"
                ));
                forms.push(format!("{scheme}://{ns}/{service}{port}"));
            }
            for form in forms {
                match Target::parse_with_scheme(&form, scheme) {
                    Ok(parsed) => assert_eq!(parsed, target, "{form}"),
                    Err(err) => panic!("{form:?} should parse as {target:?}: {err}"),
                }
            }
        }
    }

    fn dotted_ns(target: &Target) -> String {
        match target.namespace() {
            Some(ns) => format!(".{ns}"),
            None => String::new(),
        }
    }

    /// Parses `input` with both schemes; any success must round-trip. Returns whether it parsed.
    fn parse_never_panics(input: &str) -> bool {
        let mut parsed = false;
        for scheme in [DEFAULT_SCHEME, "k8s"] {
            match Target::parse_with_scheme(input, scheme) {
                Ok(target) => {
                    round_trips(&target);
                    parsed = true;
                }
                Err(err) => {
                    assert_eq!(err.kind(), ErrorKind::InvalidTarget);
                    assert!(!err.to_string().is_empty());
                }
            }
        }
        parsed
    }

    #[test]
    fn random_bytes_never_panic_the_parser() {
        let mut rng = Rng::new(0xDEAD_BEEF_CAFE_F00D);
        for _ in 0..5000 {
            let len = rng.below(40);
            let mut bytes: Vec<u8> = (0..len).map(|_| (rng.next_u64() >> 24) as u8).collect();
            if one_in(&mut rng, 2) {
                let mut prefixed = b"kubernetes://".to_vec();
                prefixed.append(&mut bytes);
                bytes = prefixed;
            }
            parse_never_panics(&String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn random_mutations_of_valid_targets_never_panic_the_parser() {
        const NOISE: &[&str] = &[
            ":", "/", "//", ".", "..", "@", "?", "#", "%", " ", "-", "--", "A", "0", "65536",
            "svc", "é", "日本", "🦀", "\u{0}", "\u{301}", "://", ":80", ".svc",
        ];
        let mut rng = Rng::new(0x5EED_0000_0000_0001);
        let mut accepted = 0;
        for _ in 0..5000 {
            let target = random_target(&mut rng);
            let mut text = if one_in(&mut rng, 2) {
                target.to_string()
            } else {
                rng.pick(VALID).to_string()
            };
            for _ in 0..1 + rng.below(3) {
                // Choose a char boundary, so the mutation itself never slices inside a char.
                let boundaries: Vec<usize> = text
                    .char_indices()
                    .map(|(i, _)| i)
                    .chain(std::iter::once(text.len()))
                    .collect();
                let at = *rng.pick(&boundaries);
                let noise = *rng.pick(NOISE);
                match rng.below(3) {
                    0 => text.insert_str(at, noise),
                    1 => {
                        if let Some(c) = text[at..].chars().next() {
                            text.replace_range(at..at + c.len_utf8(), "");
                        }
                    }
                    _ => {
                        if let Some(c) = text[at..].chars().next() {
                            text.replace_range(at..at + c.len_utf8(), noise);
                        }
                    }
                }
            }
            if parse_never_panics(&text) {
                accepted += 1;
            }
        }
        // Some mutations (inserting "0" or "-" inside a name, ...) stay valid.
        assert!(accepted > 0);
    }
}
