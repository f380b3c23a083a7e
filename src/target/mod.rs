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
mod tests;
