//! The decoder on real and hostile lines: events, lists, Status bodies, and what is no event.

use super::*;
fn event(line: &str) -> WatchEvent {
    decode_event(line.as_bytes(), Api::Endpoints).expect("decodes")
}

#[test]
fn decodes_added_with_its_ready_addresses() {
    let e = event(
        r#"{"type":"ADDED","object":{"kind":"Endpoints","apiVersion":"v1","metadata":{"name":"echo","resourceVersion":"12"},"subsets":[{"addresses":[{"ip":"10.0.0.1","nodeName":"n1","targetRef":{"kind":"Pod","name":"echo-1"}}],"notReadyAddresses":[{"ip":"10.0.0.2"}],"ports":[{"name":"grpc","port":8080,"protocol":"TCP"}]}]}}"#,
    );
    let WatchEvent::Applied {
        name,
        resource_version,
        object,
    } = e
    else {
        panic!("not applied: {e:?}");
    };
    assert_eq!(name, "echo");
    assert_eq!(resource_version.as_deref(), Some("12"));
    let group = &object.groups[0];
    assert_eq!(group.members.len(), 2);
    assert!(group.members[0].details.conditions.ready);
    assert!(!group.members[1].details.conditions.ready);
    assert_eq!(group.members[0].details.pod.as_deref(), Some("echo-1"));
}

#[test]
fn decodes_bookmarks_deletions_410_and_unknown_types() {
    assert_eq!(
        event(
            r#"{"type":"BOOKMARK","object":{"kind":"Endpoints","apiVersion":"v1","metadata":{"resourceVersion":"12746"}}}"#
        ),
        WatchEvent::Bookmark {
            resource_version: "12746".into()
        }
    );
    assert_eq!(
        event(r#"{"type":"DELETED","object":{"metadata":{"name":"echo","resourceVersion":"13"}}}"#),
        WatchEvent::Deleted {
            name: "echo".into(),
            resource_version: Some("13".into())
        }
    );
    let expired = event(
        r#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 1234 (5678)","reason":"Expired","code":410}}"#,
    );
    assert!(
        matches!(
            expired,
            WatchEvent::Error {
                code: Some(410),
                ..
            }
        ),
        "{expired:?}"
    );
    assert_eq!(
        event(r#"{"type":"SURPRISE","object":{}}"#),
        WatchEvent::Unknown {
            kind: "SURPRISE".into()
        }
    );
}

#[test]
fn slice_bookmarks_with_null_fields_decode() {
    let e = decode_event(
        br#"{"type":"BOOKMARK","object":{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"resourceVersion":"99"},"addressType":"","endpoints":null,"ports":null}}"#,
        Api::EndpointSlices,
    );
    assert_eq!(
        e.ok(),
        Some(WatchEvent::Bookmark {
            resource_version: "99".into()
        })
    );
}

#[test]
fn malformed_lines_are_errors_not_panics() {
    for line in [
        "{not json",
        "null",
        "[]",
        r#"{"type":"ADDED"}"#,
        r#"{"type":"ADDED","object":null}"#,
        r#"{"type":"ADDED","object":{"metadata":{}}}"#,
        r#"{"type":"ADDED","object":{"metadata":{"name":"x"},"subsets":"nope"}}"#,
        r#"{"type":"MODIFIED","object":{"metadata":{"name":"x"},"subsets":[{"ports":[{"port":"80"}]}]}}"#,
        r#"{"type":"BOOKMARK","object":{"metadata":{}}}"#,
        r#"{"type":7}"#,
    ] {
        assert!(
            decode_event(line.as_bytes(), Api::Endpoints).is_err(),
            "{line} should be an error"
        );
    }
}

#[test]
fn nulls_where_collections_are_expected_read_as_empty() {
    let e = event(
        r#"{"type":"MODIFIED","object":{"metadata":{"name":"x"},"subsets":[{"addresses":null,"notReadyAddresses":null,"ports":null}]}}"#,
    );
    assert!(matches!(e, WatchEvent::Applied { .. }));
    let e = event(r#"{"type":"MODIFIED","object":{"metadata":{"name":"x"},"subsets":null}}"#);
    assert!(matches!(e, WatchEvent::Applied { .. }));
}

#[test]
fn lists_carry_their_resource_version_and_items() {
    let listed = decode_list(
        br#"{"kind":"EndpointsList","apiVersion":"v1","metadata":{"resourceVersion":"10245"},"items":[{"metadata":{"name":"echo"},"subsets":[]}]}"#,
        Api::Endpoints,
    )
    .expect("list");
    assert_eq!(listed.resource_version, "10245");
    assert_eq!(listed.items.len(), 1);
    let empty = decode_list(
        br#"{"kind":"EndpointsList","apiVersion":"v1","metadata":{"resourceVersion":"7"},"items":[]}"#,
        Api::Endpoints,
    )
    .expect("empty list");
    assert!(empty.items.is_empty());
    assert!(decode_list(br#"{"items":[]}"#, Api::Endpoints).is_err());
}

#[test]
fn the_one_pass_decoder_agrees_with_the_general_path() {
    let ep = r#"{"metadata":{"name":"echo","resourceVersion":"7","managedFields":[{"f":{}}]},"subsets":[{"addresses":[{"ip":"10.0.0.1","nodeName":"n\u0031","targetRef":{"kind":"Pod","name":"p1","uid":"u"}},{"ip":"bad"}],"notReadyAddresses":[{"ip":"10.0.0.2"}],"ports":[{"name":"grpc","port":8080}]}]}"#;
    let sl = r#"{"metadata":{"name":"echo-x"},"addressType":"IPv4","endpoints":[{"addresses":["10.0.0.1","10.0.0.3"],"conditions":{"ready":null},"zone":"a"},{"addresses":[]},{"addresses":["10.0.0.2"],"conditions":{"terminating":true}},{"addresses":null}],"ports":[{"name":"grpc","port":null}]}"#;
    let mut lines: Vec<String> = Vec::new();
    for kind in [
        "ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR", "SURPRISE",
    ] {
        for object in [
            ep,
            sl,
            "null",
            "{}",
            "[]",
            r#"[{"name":"x"},[]]"#,
            r#"[{"name":"x"},[],5]"#,
            r#"{"metadata":{"name":"x"},"subsets":"nope"}"#,
            r#"{"metadata":{"name":"x"},"endpoints":[{"addresses":"nope"}]}"#,
            r#"{"metadata":{"name":"x","resourceVersion":"1"},"code":"abc"}"#,
            r#"{"code":410,"reason":"Expired","message":"too old"}"#,
            r#"{"metadata":{"name":"x"},"bad":"ÿ"}"#,
        ] {
            lines.push(format!(r#"{{"type":"{kind}","object":{object}}}"#));
            lines.push(format!(r#"{{"object":{object},"type":"{kind}"}}"#));
            lines.push(format!(
                r#"{{"type":"{kind}","x":[1,{{}}],"object":{object},"y":null}}"#
            ));
            lines.push(format!(
                r#"{{"type":"{kind}","object":{object},"type":"ADDED"}}"#
            ));
            lines.push(format!(
                r#"{{"type":"{kind}","object":{object},"object":null}}"#
            ));
            lines.push(format!(r#"{{"type":"{kind}","object":{object}}} x"#));
            lines.push(format!(r#"["{kind}",{object}]"#));
            lines.push(format!(r#"{{"typ\u0065":"{kind}","object":{object}}}"#));
        }
        lines.push(format!(r#"{{"type":"{kind}"}}"#));
    }
    lines.push(r#"{"object":{}}"#.to_string());
    lines.push(r#"{"type":7,"object":{}}"#.to_string());
    let mut bytes: Vec<Vec<u8>> = lines.into_iter().map(String::into_bytes).collect();
    // Invalid UTF-8 inside a field the models skip, and inside one they read.
    let mut bad = br#"{"type":"ADDED","object":{"metadata":{"name":"x","uid":""#.to_vec();
    bad.extend_from_slice(&[0xff, 0xfe]);
    bad.extend_from_slice(br#""}}}"#);
    bytes.push(bad.clone());
    bytes.push(
        bad.iter()
            .map(|b| if *b == b'u' { b'n' } else { *b })
            .collect(),
    );
    for line in &bytes {
        for resource in [Api::Endpoints, Api::EndpointSlices] {
            let fast = format!("{:?}", decode_event(line, resource));
            let general = format!("{:?}", decode_event_general(line, resource));
            assert_eq!(
                fast,
                general,
                "{resource}: {}",
                String::from_utf8_lossy(line)
            );
        }
    }
}

#[test]
fn a_complete_value_that_is_no_event_is_told_from_a_cut_event() {
    let list: &[u8] = br#"{"kind":"EndpointsList","apiVersion":"v1","metadata":{"resourceVersion":"10"},"items":[{"metadata":{"name":"echo"}}]}"#;
    let other_list = Some(NotAnEvent::Other {
        kind: Some("EndpointsList".into()),
    });
    assert_eq!(not_an_event(list), other_list);
    assert_eq!(not_an_event(&[list, b"\r\n"].concat()), other_list);
    let forbidden = br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"endpoints is forbidden","reason":"Forbidden","code":403}"#;
    assert_eq!(
        not_an_event(forbidden),
        Some(NotAnEvent::Status {
            code: Some(403),
            reason: Some("Forbidden".into()),
            message: "endpoints is forbidden".into()
        })
    );
    assert_eq!(
        not_an_event(br#"{"code":500,"message":"boom"}"#),
        Some(NotAnEvent::Status {
            code: Some(500),
            reason: None,
            message: "boom".into()
        })
    );
    assert_eq!(
        not_an_event(br#"{"kind":"Status","code":"x","message":7}"#),
        Some(NotAnEvent::Status {
            code: None,
            reason: None,
            message: String::new()
        })
    );
    for value in [&b"[]"[..], b"42", b"{}", br#"{"kind":7}"#] {
        assert_eq!(
            not_an_event(value),
            Some(NotAnEvent::Other { kind: None }),
            "{}",
            String::from_utf8_lossy(value)
        );
    }
    // Events, even malformed ones, and anything incomplete are not.
    for bytes in [
        &br#"{"type":"ADDED","object":{"metadata":{"name":"x"}}}"#[..],
        br#"{"type":"BOOKMARK"}"#,
        br#"{"type":"ADDED","object":{"meta"#,
        br#"{"kind":"EndpointsList","items":[{"#,
        br#"{"kind":"Status","code":410} {"#,
        b"{not json",
        b"",
    ] {
        assert_eq!(
            not_an_event(bytes),
            None,
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn what_is_not_an_event_reports_the_status_or_the_kind() {
    let status = NotAnEvent::Status {
        code: Some(403),
        reason: Some("Forbidden".into()),
        message: "endpoints is forbidden\nforged".into(),
    }
    .into_error();
    assert_eq!(status.kind(), crate::ErrorKind::Api);
    assert_eq!(status.status(), Some(403));
    assert_eq!(status.reason(), Some("Forbidden"));
    assert!(
        status
            .message()
            .ends_with("a Status instead of a stream of events; relisting: HTTP 403: endpoints is forbidden\\nforged"),
        "{status}"
    );
    let status = NotAnEvent::Status {
        code: None,
        reason: None,
        message: "odd".into(),
    }
    .into_error();
    assert_eq!(status.kind(), crate::ErrorKind::Decode);
    assert!(status.message().ends_with(": odd"), "{status}");
    let list = NotAnEvent::Other {
        kind: Some("EndpointsList".into()),
    }
    .into_error();
    assert_eq!(list.kind(), crate::ErrorKind::Decode);
    assert!(
        list.message().contains("one EndpointsList instead"),
        "{list}"
    );
    let value = NotAnEvent::Other { kind: None }.into_error();
    assert!(
        value.message().contains("one JSON value instead"),
        "{value}"
    );
}

#[test]
fn events_and_list_items_carry_the_service_they_belong_to() {
    let e = decode_event(
        br#"{"type":"MODIFIED","object":{"metadata":{"name":"other-abc","labels":{"kubernetes.io/service-name":"other"}},"addressType":"IPv4"}}"#,
        Api::EndpointSlices,
    );
    let Ok(WatchEvent::Applied { name, object, .. }) = e else {
        panic!("not applied: {e:?}");
    };
    assert_eq!(name, "other-abc");
    assert!(object.belongs_to("other") && !object.belongs_to("echo"));
    let listed = decode_list(
        br#"{"metadata":{"resourceVersion":"3"},"items":[{"metadata":{"name":"echo"}},{"metadata":{"name":"other"}}]}"#,
        Api::Endpoints,
    )
    .expect("list");
    let owners: Vec<bool> = listed
        .items
        .iter()
        .map(|(_, o)| o.belongs_to("echo"))
        .collect();
    assert_eq!(owners, [true, false]);
}

#[test]
fn status_bodies_decode_and_plain_text_does_not() {
    let s = decode_status(br#"{"kind":"Status","code":403,"reason":"Forbidden","message":"no"}"#);
    assert_eq!(s.and_then(|s| s.code), Some(403));
    assert!(decode_status(b"Too many requests, please try again later.").is_none());
    // A code or a message alone is a Status; an object with neither is not.
    let code = decode_status(br#"{"code":500}"#);
    assert_eq!(code.and_then(|s| s.code), Some(500));
    let message = decode_status(br#"{"message":"slow down"}"#);
    assert_eq!(
        message.and_then(|s| s.message).as_deref(),
        Some("slow down")
    );
    assert!(decode_status(br#"{"kind":"Status"}"#).is_none());
}

#[test]
fn a_malformed_line_is_reported_with_where_json_broke() {
    let err = decode_event(b"{not json", Api::Endpoints).unwrap_err();
    assert!(
        err.message().starts_with("malformed watch event: "),
        "{err}"
    );
    assert!(err.message().contains("line 1 column"), "{err}");
    let err = decode_event(
        br#"{"type":"ADDED","object":{"metadata":{"name":"x"},"subsets":"nope"}}"#,
        Api::Endpoints,
    )
    .unwrap_err();
    assert!(
        err.message()
            .contains("malformed endpoints object: invalid type"),
        "{err}"
    );
}

#[test]
fn the_one_pass_decoder_reads_a_typed_object_itself() {
    // The fast path must not fall through to the general one for what servers send; only
    // speed would tell, so look at what it returns.
    let line = r#"{"type":"ADDED","object":{"metadata":{"name":"echo"},"subsets":[]}}"#;
    for (api, typed) in [
        (Api::Endpoints, "Endpoints"),
        (Api::EndpointSlices, "Slice"),
    ] {
        let mut de = serde_json::Deserializer::from_str(line);
        let event = serde::de::DeserializeSeed::deserialize(EventSeed(api), &mut de);
        let shown = match event {
            Ok(FastEvent {
                object: FastObject::Endpoints(Some(_)),
                ..
            }) => "Endpoints",
            Ok(FastEvent {
                object: FastObject::Slice(Some(_)),
                ..
            }) => "Slice",
            Ok(_) => "another object",
            Err(_) => "an error",
        };
        assert_eq!(shown, typed, "{api}");
    }
}
