//! Targets the grammar refuses, each with the problem named.

use super::*;

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
