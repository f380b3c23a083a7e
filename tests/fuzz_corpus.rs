//! The fuzz targets on stable: every file of `fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/` goes through the same checks as `fuzz/fuzz_targets/<target>.rs`,
//! so a crash found once by `cargo fuzz` stays fixed under a plain `cargo test`.
//!
//! The structured properties behind the targets are also checked deterministically here: every
//! generated valid target round-trips through `Display` (and its other spellings parse to it),
//! and the event decoder gives the same trace for a stream in any chunking.

use std::fs;
use std::path::{Path, PathBuf};

use kuberesolver::fuzzing::{decode_stream, merge_list, Rng};
use kuberesolver::{Port, Target};

/// The line cap the `event_decoder` target uses.
const MAX_LINE: usize = 4096;

// ---- corpus files -------------------------------------------------------------------------

/// The files of `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` (which may not
/// exist), sorted by path, with their contents.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for folder in ["corpus", "regressions"] {
        let dir = fuzz.join(folder).join(target);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if folder == "regressions" && e.kind() == std::io::ErrorKind::NotFound => {
                continue
            }
            Err(e) => panic!("cannot read {}: {e}", dir.display()),
        };
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    let inputs: Vec<_> = files
        .into_iter()
        .map(|path| {
            let data = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, data)
        })
        .collect();
    assert!(
        !inputs.is_empty(),
        "no corpus files for {target} under {}",
        fuzz.display()
    );
    inputs
}

// ---- the fuzz targets, replayed ------------------------------------------------------------

/// `fuzz_targets/target_parser.rs`.
fn target_parser(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for scheme in ["kubernetes", "k8s"] {
        if let Ok(target) = Target::parse_with_scheme(text, scheme) {
            let again = Target::parse_with_scheme(&target.to_string(), target.scheme());
            assert_eq!(again.as_ref(), Ok(&target), "round trip of {text:?}");
        }
    }
}

/// `fuzz_targets/event_decoder.rs`.
fn event_decoder(data: &[u8]) {
    let (sizes, stream) = data.split_at(data.len().min(4));
    let whole = decode_stream(stream, &[u8::MAX], MAX_LINE);
    let chunked = decode_stream(stream, sizes, MAX_LINE);
    let bytewise = decode_stream(stream, &[1], MAX_LINE);
    if !whole.iter().any(|l| l == "too long") {
        assert_eq!(whole, chunked);
        assert_eq!(whole, bytewise);
    }
}

/// `fuzz_targets/merge.rs` (the sorted, unique check is inside `merge_list`).
fn merge(data: &[u8]) {
    let _ = merge_list(data);
}

/// Runs `check` on every input of `target`, naming the file that fails.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let inputs = inputs(target);
    for (path, data) in &inputs {
        let outcome = std::panic::catch_unwind(|| check(data));
        if let Err(panic) = outcome {
            eprintln!("fuzz input {} failed", path.display());
            std::panic::resume_unwind(panic);
        }
    }
    inputs.len()
}

#[test]
fn target_parser_corpus_replays() {
    assert!(replay("target_parser", target_parser) > 0);
}

#[test]
fn event_decoder_corpus_replays() {
    assert!(replay("event_decoder", event_decoder) > 0);
}

#[test]
fn merge_corpus_replays() {
    assert!(replay("merge", merge) > 0);
}

// ---- targets: parse(display(t)) == t -------------------------------------------------------

const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
const DIGITS: &[u8] = b"0123456789";
const LABEL_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-";

/// A random RFC 1123 label: 1 to 63 of `a-z0-9-`, starting and ending with a letter or digit.
/// Mostly short, sometimes the longest allowed.
fn label(rng: &mut Rng) -> String {
    let len = match rng.range(0, 9) {
        0 => 1,
        1 => 63,
        _ => rng.range(1, 12),
    };
    let mut out: Vec<u8> = (0..len).map(|_| *rng.pick(LABEL_CHARS)).collect();
    let alnum = |rng: &mut Rng| {
        if rng.chance(80) {
            *rng.pick(LOWER)
        } else {
            *rng.pick(DIGITS)
        }
    };
    out[0] = alnum(rng);
    out[len - 1] = alnum(rng);
    String::from_utf8(out).expect("ascii")
}

/// A random valid Service port name: a DNS label (1 to 63 of `a-z0-9-`, `--` allowed, no
/// leading or trailing `-`) that is not only digits.
fn port_name(rng: &mut Rng) -> String {
    loop {
        let name = label(rng);
        if name.bytes().any(|b| b.is_ascii_lowercase()) {
            return name;
        }
    }
}

/// A random valid URI scheme in mixed case: a letter, then letters, digits, `+`, `-`, `.`.
fn scheme(rng: &mut Rng) -> String {
    match rng.range(0, 3) {
        0 => "kubernetes".to_string(),
        1 => "k8s".to_string(),
        _ => {
            let mut s = String::new();
            s.push(char::from(
                *rng.pick(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"),
            ));
            for _ in 0..rng.range(0, 8) {
                s.push(char::from(*rng.pick(
                    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.",
                )));
            }
            s
        }
    }
}

/// Swaps the case of some ASCII letters (schemes compare without case).
fn mixed_case(rng: &mut Rng, text: &str) -> String {
    text.chars()
        .map(|c| {
            if rng.chance(30) {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

/// The other documented spellings of `target` (as the user writes them, with `given` as the
/// scheme); each must parse to `target`.
fn spellings(rng: &mut Rng, target: &Target, given: &str) -> Vec<String> {
    let service = target.service();
    let port = target.port().map(|p| format!(":{p}")).unwrap_or_default();
    let mut out = Vec::new();
    match target.namespace() {
        Some(ns) => {
            let domain = if rng.chance(50) {
                ".cluster.local".to_string()
            } else {
                format!(".{}.{}", label(rng), label(rng))
            };
            out.push(format!("{given}:///{service}.{ns}{port}"));
            out.push(format!("{given}:///{service}.{ns}.svc{port}"));
            out.push(format!("{given}:///{service}.{ns}.svc{domain}{port}"));
            out.push(format!("{given}://{service}.{ns}{port}"));
            out.push(format!("{given}://{service}.{ns}{port}/"));
            out.push(format!("{given}://{service}.{ns}.svc{domain}{port}"));
            out.push(format!("{given}://{ns}/{service}{port}"));
            // Go's kuberesolver also takes a final dot after the domain, and no slashes.
            out.push(format!("{given}:///{service}.{ns}.svc{domain}.{port}"));
            out.push(format!("{given}://{service}.{ns}.svc{domain}.{port}/"));
            out.push(format!("{given}:{service}.{ns}{port}"));
            out.push(format!("{given}:/{service}.{ns}.svc{domain}.{port}"));
        }
        None => {
            out.push(format!("{given}:///{service}{port}"));
            out.push(format!("{given}://{service}{port}"));
            out.push(format!("{given}://{service}{port}/"));
            out.push(format!("{given}:{service}{port}"));
            out.push(format!("{given}:/{service}{port}"));
        }
    }
    out
}

#[test]
fn generated_targets_round_trip_through_display_and_every_spelling() {
    let mut rng = Rng::new(0x6b75_6265_7265_736f);
    for _ in 0..5000 {
        let given = scheme(&mut rng);
        let mut target = Target::new(&label(&mut rng))
            .and_then(|t| t.with_scheme(&given))
            .expect("generated service and scheme are valid");
        if rng.chance(70) {
            target = target
                .with_namespace(&label(&mut rng))
                .expect("generated namespace is valid");
        }
        match rng.range(0, 3) {
            0 => {}
            1 => {
                let name = port_name(&mut rng);
                target = target
                    .with_port(Port::Name(name))
                    .expect("generated port name is valid");
            }
            _ => {
                let number = match rng.range(0, 4) {
                    0 => 1,
                    1 => u16::MAX,
                    _ => rng.range(1, 65535) as u16,
                };
                target = target
                    .with_port(Port::Number(number))
                    .expect("port number in range");
            }
        }
        assert_eq!(target.scheme(), given.to_ascii_lowercase());

        let shown = target.to_string();
        assert_eq!(
            Target::parse_with_scheme(&shown, target.scheme()).as_ref(),
            Ok(&target),
            "round trip of {shown:?}"
        );
        // The scheme given to the parser and the one in the input may differ in case.
        let given_case = mixed_case(&mut rng, &given);
        for input in spellings(&mut rng, &target, &given_case) {
            assert_eq!(
                Target::parse_with_scheme(&input, &given).as_ref(),
                Ok(&target),
                "{input:?} should parse as {shown:?}"
            );
            // And the fuzz target's own property holds for it.
            target_parser(input.as_bytes());
        }
    }
}

#[test]
fn generated_targets_with_one_character_broken_parse_or_fail_without_panicking() {
    // Mutations of valid targets: whatever parses must round-trip (the fuzz target's check).
    let mut rng = Rng::new(0x0123_4567_89ab_cdef);
    let noise = ":/.@?#%-_ A9z\u{e9}";
    for _ in 0..5000 {
        let target = Target::new(&label(&mut rng))
            .and_then(|t| t.with_namespace(&label(&mut rng)))
            .and_then(|t| t.with_port(Port::Name(port_name(&mut rng))))
            .expect("valid");
        let mut chars: Vec<char> = target.to_string().chars().collect();
        let at = rng.range(0, chars.len() - 1);
        let c = noise
            .chars()
            .nth(rng.range(0, noise.chars().count() - 1))
            .expect("in range");
        match rng.range(0, 2) {
            0 => chars[at] = c,
            1 => chars.insert(at, c),
            _ => {
                chars.remove(at);
            }
        }
        let input: String = chars.into_iter().collect();
        target_parser(input.as_bytes());
    }
}

// ---- the decoder: the same events in any chunking ------------------------------------------

/// Random chunk sizes (the decoder treats 0 as 1), cycled by `decode_stream`.
fn random_chunking(rng: &mut Rng) -> Vec<u8> {
    let n = rng.range(1, 16);
    (0..n)
        .map(|_| match rng.range(0, 3) {
            0 => rng.range(0, 3) as u8,
            1 => rng.range(0, 255) as u8,
            _ => rng.range(1, 40) as u8,
        })
        .collect()
}

#[test]
fn corpus_streams_decode_the_same_in_any_chunking() {
    let mut rng = Rng::new(0x7761_7463_6865_7321);
    let inputs = inputs("event_decoder");
    let mut streams = 0;
    for (path, data) in &inputs {
        // The first four bytes of a fuzz input are its chunk sizes; the rest is the stream.
        // The stream is also tried with the sizes left in, as more garbage.
        for stream in [&data[data.len().min(4)..], &data[..]] {
            // A cap the corpus exceeds (4096) and a small one, to exercise dropped lines.
            for max_line in [MAX_LINE, 100] {
                // `decode_stream` takes chunk sizes as bytes: 255 is its largest chunk, and
                // the whole stream when it is shorter than that.
                let reference = decode_stream(stream, &[u8::MAX], max_line);
                assert_eq!(
                    reference.last().map(|l| l.starts_with("partial: ")),
                    Some(true),
                    "{}: the trace ends with the partial-line flag",
                    path.display()
                );
                let bytewise = decode_stream(stream, &[1], max_line);
                assert_eq!(
                    bytewise,
                    reference,
                    "{}: 1-byte chunks, max line {max_line}",
                    path.display()
                );
                for _ in 0..10 {
                    let sizes = random_chunking(&mut rng);
                    assert_eq!(
                        decode_stream(stream, &sizes, max_line),
                        reference,
                        "{}: chunks {sizes:?}, max line {max_line}",
                        path.display()
                    );
                }
            }
            streams += 1;
        }
    }
    assert!(streams > 0);
}

#[test]
fn a_generated_watch_stream_decodes_the_same_in_any_chunking() {
    // Streams assembled from realistic event lines, separators and garbage, so the property
    // does not depend on the corpus alone.
    let lines = [
        r#"{"type":"ADDED","object":{"kind":"Endpoints","apiVersion":"v1","metadata":{"name":"echo","resourceVersion":"1"},"subsets":[{"addresses":[{"ip":"10.0.0.1","targetRef":{"kind":"Pod","name":"echo-1"}}],"notReadyAddresses":[{"ip":"10.0.0.2"}],"ports":[{"name":"grpc","port":8080,"protocol":"TCP"}]}]}}"#,
        r#"{"type":"MODIFIED","object":{"metadata":{"name":"echo-abc","resourceVersion":"2"},"addressType":"IPv6","endpoints":[{"addresses":["fd00::1"],"conditions":{"ready":null,"serving":true,"terminating":false}}],"ports":[{"name":"","port":null}]}}"#,
        r#"{"type":"DELETED","object":{"metadata":{"name":"echo","resourceVersion":"3"}}}"#,
        r#"{"type":"BOOKMARK","object":{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"resourceVersion":"4"},"addressType":"","endpoints":null,"ports":null}}"#,
        r#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 1 (5)","reason":"Expired","code":410}}"#,
        r#"{"type":"SURPRISE"}"#,
        "{garbage",
        "",
        "   ",
        "\u{e9}t\u{e9}",
    ];
    let endings = ["\n", "\r\n", "\r\r\n", "\n\n"];
    let mut rng = Rng::new(0x6368_756e_6b73_2121);
    for _ in 0..200 {
        let mut stream = Vec::new();
        for _ in 0..rng.range(0, 12) {
            stream.extend_from_slice(rng.pick(&lines).as_bytes());
            stream.extend_from_slice(rng.pick(&endings).as_bytes());
        }
        if rng.chance(30) {
            // Cut mid-event.
            stream.extend_from_slice(&lines[0].as_bytes()[..rng.range(1, 60)]);
        }
        let max_line = *rng.pick(&[MAX_LINE, 64, 150]);
        let reference = decode_stream(&stream, &[u8::MAX], max_line);
        assert_eq!(decode_stream(&stream, &[1], max_line), reference);
        for _ in 0..10 {
            let sizes = random_chunking(&mut rng);
            assert_eq!(
                decode_stream(&stream, &sizes, max_line),
                reference,
                "chunks {sizes:?}, max line {max_line}, stream {:?}",
                String::from_utf8_lossy(&stream)
            );
        }
    }
}
