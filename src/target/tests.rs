//! The target grammar by example: every documented form, custom schemes, display and the
//! builders. Rejected targets and pseudo-random properties are in `tests/`.

use super::*;
use crate::ErrorKind;

mod properties;
mod rejects;

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
