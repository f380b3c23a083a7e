//! Lists as the real server answers them: `limit` and `continue` (pages of one consistent
//! snapshot), `resourceVersion` and `resourceVersionMatch` (the latest state, not older
//! than N, or exactly N), and their validation errors.

use std::collections::BTreeMap;

use serde_json::Value;

use super::errors::StatusError;
use super::render::list_json;
use super::select::Filter;
use super::store::{Key, ServerState};
use crate::base64::{decode, encode, Alphabet};

/// The version a continue token carries, as the apiserver writes it.
const TOKEN_VERSION: &str = "meta.k8s.io/v1";

/// The message of a 410 on an expired continue token (the apiserver's, verbatim).
const CONTINUE_EXPIRED: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

/// Which state a list reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadAt {
    /// The current state (`resourceVersion` unset or `0`; a continue token with rv -1).
    Latest,
    /// The current state, which must have reached this resourceVersion.
    NotOlderThan(u64),
    /// The state at exactly this resourceVersion.
    Exact(u64),
}

/// A list request's paging and consistency parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListQuery {
    /// At most this many items; `None`: all.
    limit: Option<usize>,
    /// Continue after this key (relative to the collection, as etcd's start key).
    start: Option<String>,
    at: ReadAt,
}

/// A continue token: base64url (no padding) of
/// `{"v":"meta.k8s.io/v1","rv":<list resourceVersion>,"start":"<next key>\u0000"}`, as
/// the apiserver makes it. `rv` -1 means "continue at the latest state".
pub(crate) fn encode_token(rv: i64, last_key: &str) -> String {
    let json =
        serde_json::json!({"v": TOKEN_VERSION, "rv": rv, "start": format!("{last_key}\u{0}")});
    base64url(json.to_string().as_bytes())
}

/// A continue token's resourceVersion and the key it continues after; `Err` in the
/// apiserver's words.
pub(crate) fn decode_token(token: &str) -> Result<(i64, String), String> {
    let bytes = unbase64url(token).ok_or("continue key is not valid: illegal base64 data")?;
    let v: Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("continue key is not valid: {e}"))?;
    if v["v"] != TOKEN_VERSION {
        return Err(format!(
            "continue key is not valid: server does not recognize this encoded version {}",
            v["v"]
        ));
    }
    let rv = v["rv"].as_i64().filter(|rv| *rv != 0).ok_or(
        "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
    )?;
    let start = v["start"]
        .as_str()
        .and_then(|s| s.strip_suffix('\u{0}'))
        .filter(|s| !s.is_empty())
        .ok_or("continue key is not valid: encoded start key empty (version meta.k8s.io/v1)")?;
    Ok((rv, start.to_owned()))
}

/// base64url without padding, as Go's `base64.RawURLEncoding` writes it.
fn base64url(bytes: &[u8]) -> String {
    encode(bytes, Alphabet::Url)
}

fn unbase64url(text: &str) -> Option<Vec<u8>> {
    decode(text, Alphabet::Url)
}

fn rv_param(value: &str) -> Result<u64, StatusError> {
    value.parse().map_err(|_| {
        StatusError::bad_request(format!(
            "resourceVersion: Invalid value: {value:?}: invalid resource version"
        ))
    })
}

impl ListQuery {
    /// Reads and checks `limit`, `continue`, `resourceVersion`, `resourceVersionMatch`
    /// (and refuses `sendInitialEvents`, which only a watch may carry).
    pub fn parse<'a>(param: impl Fn(&str) -> Option<&'a str>) -> Result<ListQuery, StatusError> {
        let limit = match param("limit").filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => match s.parse::<i64>() {
                Ok(n) => usize::try_from(n).ok().filter(|n| *n > 0),
                Err(_) => {
                    return Err(StatusError::bad_request(format!(
                    "limit: Invalid value: {s:?}: strconv.ParseInt: parsing {s:?}: invalid syntax"
                )))
                }
            },
        };
        let token = param("continue").filter(|s| !s.is_empty());
        let rv = param("resourceVersion").unwrap_or("");
        let matching = param("resourceVersionMatch").unwrap_or("");
        let mut errors = Vec::new();
        if param("sendInitialEvents").is_some() {
            errors.push(
                "sendInitialEvents: Forbidden: sendInitialEvents is forbidden for list".to_owned(),
            );
        }
        if !matching.is_empty() {
            if rv.is_empty() {
                errors.push("resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided".to_owned());
            }
            if token.is_some() {
                errors.push("resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden when continue is provided".to_owned());
            }
            match matching {
                "Exact" if rv == "0" => errors.push("resourceVersionMatch: Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"".to_owned()),
                "Exact" | "NotOlderThan" => {}
                other => errors.push(format!("resourceVersionMatch: Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\", \"\"")),
            }
        }
        if !errors.is_empty() {
            return Err(StatusError::invalid_options(&errors));
        }
        if let Some(token) = token {
            if !matches!(rv, "" | "0") {
                return Err(StatusError::bad_request(
                    "specifying resource version is not allowed when using continue",
                ));
            }
            let (token_rv, start) = decode_token(token)
                .map_err(|e| StatusError::bad_request(format!("invalid continue token: {e}")))?;
            let at = match u64::try_from(token_rv) {
                Ok(rv) => ReadAt::Exact(rv),
                Err(_) => ReadAt::Latest,
            };
            return Ok(ListQuery {
                limit,
                start: Some(start),
                at,
            });
        }
        let at = match (rv, matching) {
            ("" | "0", _) => ReadAt::Latest,
            (rv, "Exact") => ReadAt::Exact(rv_param(rv)?),
            (rv, "NotOlderThan") => ReadAt::NotOlderThan(rv_param(rv)?),
            // Unset match with a limit: the legacy reading, exact.
            (rv, _) if limit.is_some() => ReadAt::Exact(rv_param(rv)?),
            (rv, _) => ReadAt::NotOlderThan(rv_param(rv)?),
        };
        Ok(ListQuery {
            limit,
            start: None,
            at,
        })
    }
}

/// The key an object has within `filter`'s collection, as the start key of a continue
/// token holds it: `name` in a namespace, `namespace/name` across namespaces.
fn relative_key(filter: &Filter, (resource, ns, name): &Key) -> String {
    if filter.namespace.is_some() || !resource.namespaced() {
        name.clone()
    } else {
        format!("{ns}/{name}")
    }
}

/// Answers a list of `filter`'s collection: the list JSON, or the Status of a failure.
pub(crate) fn list(
    st: &ServerState,
    filter: &Filter,
    q: &ListQuery,
) -> Result<String, StatusError> {
    let (rv, snapshot): (u64, Option<BTreeMap<Key, Value>>) = match q.at {
        ReadAt::Latest => (st.rv, None),
        ReadAt::NotOlderThan(rv) if rv > st.rv => return Err(StatusError::too_large(rv, st.rv)),
        ReadAt::NotOlderThan(_) => (st.rv, None),
        ReadAt::Exact(rv) if rv > st.rv => return Err(StatusError::too_large(rv, st.rv)),
        ReadAt::Exact(rv) if rv < st.horizon => {
            return Err(match &q.start {
                Some(start) => StatusError {
                    next: Some(encode_token(-1, start)),
                    ..StatusError::expired(CONTINUE_EXPIRED)
                },
                None => {
                    StatusError::expired("The resourceVersion for the provided list is too old.")
                }
            });
        }
        ReadAt::Exact(rv) => (rv, Some(st.objects_at(filter.resource, rv))),
    };
    let objects = snapshot.as_ref().unwrap_or(&st.objects);
    let mut items: Vec<(String, &Value)> = filter
        .pick(objects)
        .map(|(k, v)| (relative_key(filter, k), v))
        .collect();
    // etcd's order: by key as a string (`a-b/x` before `a/x`).
    items.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(start) = &q.start {
        items.retain(|(k, _)| k > start);
    }
    let total = items.len();
    let page = q.limit.unwrap_or(total).min(total);
    let next = (page < total).then(|| {
        let token = encode_token(i64::try_from(rv).unwrap_or(-1), &items[page - 1].0);
        let remaining = (!filter.selects()).then_some(total - page);
        (token, remaining)
    });
    Ok(list_json(
        filter.resource,
        rv,
        next.as_ref().map(|(t, r)| (t.as_str(), *r)),
        items[..page].iter().map(|(_, v)| *v),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::types::{ChunkMode, Resource};
    use serde_json::json;

    fn query(pairs: &[(&str, &str)]) -> Result<ListQuery, StatusError> {
        ListQuery::parse(|name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v))
    }

    fn run(
        st: &ServerState,
        filter: &Filter,
        pairs: &[(&str, &str)],
    ) -> Result<Value, StatusError> {
        let q = query(pairs)?;
        Ok(serde_json::from_str(&list(st, filter, &q)?).unwrap_or_default())
    }

    fn names(list: &Value) -> Vec<String> {
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| {
                format!(
                    "{}/{}",
                    i["metadata"]["namespace"].as_str().unwrap_or(""),
                    i["metadata"]["name"].as_str().unwrap_or("")
                )
            })
            .collect()
    }

    fn endpoints(ns: Option<&str>, labels: Option<&str>) -> Filter {
        Filter::parse(Resource::Endpoints, ns, None, None, labels).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Five Endpoints: prod/a..d and a-b/x (which sorts before a/... as an etcd key).
    fn five() -> ServerState {
        let mut st = ServerState::new(None, ChunkMode::PerEvent);
        for name in ["a", "b", "c", "d"] {
            st.apply(
                Resource::Endpoints,
                "prod",
                name,
                json!({"metadata": {"labels": {"app": name}}}),
            );
        }
        st.apply(Resource::Endpoints, "a-b", "x", json!({}));
        st
    }

    #[test]
    fn tokens_round_trip_and_look_like_the_apiservers() {
        let token = encode_token(1234, "prod/web");
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{token}"
        );
        let raw = unbase64url(&token).unwrap_or_default();
        assert_eq!(
            String::from_utf8(raw).unwrap_or_default(),
            r#"{"rv":1234,"start":"prod/web\u0000","v":"meta.k8s.io/v1"}"#
        );
        assert_eq!(decode_token(&token), Ok((1234, "prod/web".to_owned())));
        assert_eq!(
            decode_token(&encode_token(-1, "a")),
            Ok((-1, "a".to_owned()))
        );
        for n in 0..40 {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 37 + n) as u8).collect();
            assert_eq!(unbase64url(&base64url(&bytes)), Some(bytes), "{n} bytes");
        }
        assert_eq!(base64url(b"\xfb\xff"), "-_8");
        assert_eq!(base64url(b"Ma"), "TWE");
        assert_eq!(base64url(b"Man"), "TWFu");
    }

    #[test]
    fn bad_tokens_are_refused_with_the_apiservers_reasons() {
        let enc = |v: Value| base64url(v.to_string().as_bytes());
        let err = |t: &str| decode_token(t).err().unwrap_or_default();
        assert!(err("not base64!").contains("illegal base64"));
        assert!(
            err("TWE=").contains("illegal base64"),
            "padding is not base64url"
        );
        assert!(
            err("TWF").contains("illegal base64"),
            "stray bits in the last character"
        );
        assert!(err("TQ").contains("not valid"), "not JSON");
        assert!(err(&enc(json!({"v": "v2", "rv": 1, "start": "a\u{0}"})))
            .contains("does not recognize"));
        assert!(err(&enc(
            json!({"v": TOKEN_VERSION, "rv": 0, "start": "a\u{0}"})
        ))
        .contains("start resourceVersion"));
        assert!(err(&enc(json!({"v": TOKEN_VERSION, "start": "a\u{0}"})))
            .contains("start resourceVersion"));
        assert!(
            err(&enc(json!({"v": TOKEN_VERSION, "rv": 1, "start": "\u{0}"})))
                .contains("start key empty")
        );
        assert!(
            err(&enc(json!({"v": TOKEN_VERSION, "rv": 1, "start": "a"})))
                .contains("start key empty")
        );
    }

    #[test]
    fn pages_follow_continue_at_the_first_pages_resource_version() {
        let mut st = five();
        let all = endpoints(None, None);
        let first = run(&st, &all, &[("limit", "2")]).unwrap_or_default();
        assert_eq!(names(&first), ["a-b/x", "prod/a"]);
        let rv = first["metadata"]["resourceVersion"].clone();
        assert_eq!(rv, st.rv.to_string());
        assert_eq!(first["metadata"]["remainingItemCount"], 3);
        // Changes between pages do not show: every page is the first page's snapshot.
        st.apply(Resource::Endpoints, "prod", "b", json!({"changed": true}));
        st.delete(Resource::Endpoints, "prod", "c");
        st.apply(Resource::Endpoints, "prod", "bb", json!({}));
        let token = first["metadata"]["continue"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let second = run(&st, &all, &[("limit", "2"), ("continue", &token)]).unwrap_or_default();
        assert_eq!(names(&second), ["prod/b", "prod/c"]);
        assert_eq!(second["metadata"]["resourceVersion"], rv);
        assert!(second["items"][0].get("changed").is_none());
        let token = second["metadata"]["continue"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let last = run(&st, &all, &[("limit", "2"), ("continue", &token)]).unwrap_or_default();
        assert_eq!(names(&last), ["prod/d"]);
        assert!(last["metadata"].get("continue").is_none());
        assert!(last["metadata"].get("remainingItemCount").is_none());
        // Without a limit, everything at once, now.
        let now = run(&st, &all, &[]).unwrap_or_default();
        assert_eq!(
            names(&now),
            ["a-b/x", "prod/a", "prod/b", "prod/bb", "prod/d"]
        );
    }

    #[test]
    fn a_namespace_pages_by_name_and_selectors_hide_the_remaining_count() {
        let st = five();
        let prod = endpoints(Some("prod"), None);
        let first = run(&st, &prod, &[("limit", "3")]).unwrap_or_default();
        assert_eq!(names(&first), ["prod/a", "prod/b", "prod/c"]);
        assert_eq!(first["metadata"]["remainingItemCount"], 1);
        let token = first["metadata"]["continue"].as_str().unwrap_or_default();
        assert_eq!(decode_token(token).map(|t| t.1), Ok("c".to_owned()));
        let selected = endpoints(Some("prod"), Some("app!=b"));
        let page = run(&st, &selected, &[("limit", "1")]).unwrap_or_default();
        assert_eq!(names(&page), ["prod/a"]);
        assert!(page["metadata"]["continue"].is_string());
        assert!(page["metadata"].get("remainingItemCount").is_none());
        let exact = run(&st, &prod, &[("limit", "4")]).unwrap_or_default();
        assert!(
            exact["metadata"].get("continue").is_none(),
            "no empty last page"
        );
        assert_eq!(
            run(&st, &prod, &[("limit", "0")]).map(|l| names(&l).len()),
            Ok(4)
        );
    }

    #[test]
    fn exact_and_not_older_than_read_the_state_they_name() {
        let mut st = five();
        let old = st.rv;
        st.delete(Resource::Endpoints, "prod", "a");
        let prod = endpoints(Some("prod"), None);
        let exact = run(
            &st,
            &prod,
            &[
                ("resourceVersion", &old.to_string()),
                ("resourceVersionMatch", "Exact"),
            ],
        )
        .unwrap_or_default();
        assert_eq!(names(&exact).len(), 4);
        assert_eq!(exact["metadata"]["resourceVersion"], old.to_string());
        // An RV with a limit and no match is the legacy Exact.
        let legacy = run(
            &st,
            &prod,
            &[("resourceVersion", &old.to_string()), ("limit", "10")],
        )
        .unwrap_or_default();
        assert_eq!(names(&legacy).len(), 4);
        for pairs in [
            vec![
                ("resourceVersion", old.to_string()),
                ("resourceVersionMatch", "NotOlderThan".into()),
            ],
            vec![("resourceVersion", old.to_string())],
            vec![("resourceVersion", "0".into())],
        ] {
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let latest = run(&st, &prod, &pairs).unwrap_or_default();
            assert_eq!(names(&latest).len(), 3, "{pairs:?}");
            assert_eq!(latest["metadata"]["resourceVersion"], st.rv.to_string());
        }
        let future = (st.rv + 1).to_string();
        for m in ["Exact", "NotOlderThan"] {
            let e = run(
                &st,
                &prod,
                &[("resourceVersion", &future), ("resourceVersionMatch", m)],
            )
            .err();
            assert_eq!(e.map(|e| (e.code, e.reason)), Some((504, "Timeout")), "{m}");
        }
    }

    #[test]
    fn compaction_expires_exact_lists_and_continue_tokens() {
        let mut st = five();
        let old = st.rv;
        let prod = endpoints(Some("prod"), None);
        let first = run(&st, &prod, &[("limit", "2")]).unwrap_or_default();
        let token = first["metadata"]["continue"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        st.apply(Resource::Endpoints, "prod", "e", json!({}));
        st.horizon = st.rv;
        let e = run(
            &st,
            &prod,
            &[
                ("resourceVersion", &old.to_string()),
                ("resourceVersionMatch", "Exact"),
            ],
        )
        .err()
        .unwrap_or_else(|| StatusError::bad_request(""));
        assert_eq!((e.code, e.reason), (410, "Expired"));
        assert_eq!(
            e.message,
            "The resourceVersion for the provided list is too old."
        );
        let e = run(&st, &prod, &[("limit", "2"), ("continue", &token)])
            .err()
            .unwrap_or_else(|| StatusError::bad_request(""));
        assert_eq!((e.code, e.reason), (410, "Expired"));
        assert!(e
            .message
            .starts_with("The provided continue parameter is too old"));
        // The Status carries a token that continues, inconsistently, at the latest state.
        let next = e.next.unwrap_or_default();
        assert_eq!(decode_token(&next), Ok((-1, "b".to_owned())));
        let rest = run(&st, &prod, &[("continue", &next)]).unwrap_or_default();
        assert_eq!(names(&rest), ["prod/c", "prod/d", "prod/e"]);
        assert_eq!(rest["metadata"]["resourceVersion"], st.rv.to_string());
    }

    #[test]
    fn invalid_options_are_refused_as_the_apiserver_refuses_them() {
        let code = |pairs: &[(&str, &str)]| query(pairs).err().map(|e| (e.code, e.message));
        let invalid = |pairs: &[(&str, &str)], part: &str| {
            let got = code(pairs);
            assert!(
                got.as_ref().is_some_and(|(c, m)| *c == 422
                    && m.starts_with("ListOptions.meta.k8s.io \"\" is invalid: ")
                    && m.contains(part)),
                "{pairs:?}: {got:?}"
            );
        };
        invalid(
            &[("resourceVersionMatch", "Exact")],
            "forbidden unless resourceVersion is provided",
        );
        invalid(
            &[("resourceVersion", "1"), ("resourceVersionMatch", "Newest")],
            "Unsupported value: \"Newest\"",
        );
        invalid(
            &[("resourceVersion", "0"), ("resourceVersionMatch", "Exact")],
            "forbidden for resourceVersion \"0\"",
        );
        invalid(
            &[
                ("resourceVersion", "0"),
                ("resourceVersionMatch", "NotOlderThan"),
                ("continue", "x"),
            ],
            "forbidden when continue is provided",
        );
        invalid(
            &[("sendInitialEvents", "true")],
            "sendInitialEvents is forbidden for list",
        );
        let token = encode_token(5, "a");
        let bad = |pairs: &[(&str, &str)], part: &str| {
            let got = code(pairs);
            assert!(
                got.as_ref()
                    .is_some_and(|(c, m)| *c == 400 && m.contains(part)),
                "{pairs:?}: {got:?}"
            );
        };
        bad(
            &[("continue", &token), ("resourceVersion", "5")],
            "not allowed when using continue",
        );
        bad(
            &[("continue", "%%%")],
            "invalid continue token: continue key is not valid",
        );
        bad(&[("limit", "ten")], "limit: Invalid value");
        bad(
            &[
                ("resourceVersion", "abc"),
                ("resourceVersionMatch", "Exact"),
            ],
            "invalid resource version",
        );
        assert!(query(&[("continue", &token), ("resourceVersion", "0")]).is_ok());
        assert!(query(&[("limit", "-3")]).is_ok_and(|q| q.limit.is_none()));
        assert!(query(&[("resourceVersionMatch", "")]).is_ok());
    }
}
