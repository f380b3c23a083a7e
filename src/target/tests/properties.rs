//! Pseudo-random properties: generated valid targets round-trip and parse in every form,
//! and random bytes or mutations never panic the parser.

use super::*;
use crate::util::Rng;

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
        ":", "/", "//", ".", "..", "@", "?", "#", "%", " ", "-", "--", "A", "0", "65536", "svc",
        "é", "日本", "🦀", "\u{0}", "\u{301}", "://", ":80", ".svc",
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
