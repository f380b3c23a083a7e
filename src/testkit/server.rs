//! Accept loop, connections, and request dispatch.

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustls::{ServerConnection, StreamOwned};
use serde_json::{json, Value};

use super::faults::Failure;
use super::http::{read_request, Answer, Conn, ReadError, Request};
use super::record::RequestRecord;
use super::shared::{Flow, ServerCore, TARGET};
use super::store::{object_json, status_json, FailRule, Filter, ServerState};
use super::types::{Resource, Verb};
use super::watch::{self, WatchParams};

/// The `Warning` header the real server adds to every core/v1 Endpoints request (1.33+).
const ENDPOINTS_WARNING: &str =
    "299 - \"v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice\"";

/// Connects to the listener to wake its blocking `accept`.
pub(crate) fn wake(addr: SocketAddr) {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => [127, 0, 0, 1].into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let _ = TcpStream::connect_timeout(&addr, Duration::from_millis(200));
}

/// Accepts connections until the server stops listening.
pub(crate) fn accept_loop(shared: Arc<ServerCore>, listener: TcpListener) {
    for incoming in listener.incoming() {
        {
            let st = shared.lock();
            if st.shutdown || !st.listening {
                break;
            }
        }
        match incoming {
            Ok(stream) => spawn_connection(&shared, stream),
            Err(e) => {
                log::debug!(target: TARGET, "accept failed: {e}");
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
    log::debug!(target: TARGET, "stopped listening");
}

fn spawn_connection(shared: &Arc<ServerCore>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(clone) = stream.try_clone() else {
        return;
    };
    let id = {
        let mut st = shared.lock();
        if st.shutdown || !st.listening {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        let id = st.next_id();
        st.conns.insert(id, clone);
        st.accepted += 1;
        id
    };
    shared.changed();
    let unregister = |shared: &ServerCore| {
        shared.lock().conns.remove(&id);
        shared.changed();
    };
    let conn = match &shared.settings.tls {
        None => Conn::Plain(stream),
        Some(config) => match ServerConnection::new(config.clone()) {
            Ok(tls) => Conn::Tls(Box::new(StreamOwned::new(tls, stream))),
            Err(e) => {
                log::debug!(target: TARGET, "TLS setup failed: {e}");
                unregister(shared);
                return;
            }
        },
    };
    let worker = shared.clone();
    let spawned = thread::Builder::new()
        .name("fake-apiserver-conn".into())
        .spawn(move || serve_connection(&worker, id, conn));
    match spawned {
        Ok(handle) => shared.track(handle),
        Err(e) => {
            log::debug!(target: TARGET, "cannot spawn a connection thread: {e}");
            unregister(shared);
        }
    }
}

fn serve_connection(shared: &ServerCore, id: u64, mut conn: Conn) {
    let mut buf = Vec::new();
    let flow = loop {
        let answer = match read_request(&mut conn, &mut buf) {
            Ok(req) => match handle_request(shared, &mut conn, id, &req) {
                Flow::KeepAlive => continue,
                flow => break flow,
            },
            Err(ReadError::Closed) => break Flow::Close,
            Err(ReadError::TooLarge) => Answer::json(
                431,
                status_json(
                    431,
                    "RequestHeaderFieldsTooLarge",
                    "request header too large",
                    None,
                ),
            ),
            Err(ReadError::Bad(msg)) => {
                Answer::json(400, status_json(400, "BadRequest", &msg, None))
            }
        };
        // A request that could not be parsed: answer, record, and close.
        let record = record_request(shared, id, None, None, None, None);
        break shared.send(&mut conn, record, answer, true).max_close();
    };
    match flow {
        Flow::Abort => conn.abort(),
        _ => conn.close(),
    }
    shared.lock().conns.remove(&id);
    shared.changed();
}

impl Flow {
    fn max_close(self) -> Flow {
        match self {
            Flow::KeepAlive => Flow::Close,
            other => other,
        }
    }
}

/// A routed resource path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    resource: Resource,
    namespace: String,
    name: Option<String>,
}

fn route(path: &str) -> Option<Route> {
    let rest = path.strip_prefix('/')?;
    let segs: Vec<&str> = rest.split('/').collect();
    let (resource, tail) = match segs.as_slice() {
        ["api", "v1", "namespaces", tail @ ..] => (Resource::Endpoints, tail),
        ["apis", "discovery.k8s.io", "v1", "namespaces", tail @ ..] => {
            (Resource::EndpointSlices, tail)
        }
        _ => return None,
    };
    let (ns, plural, name) = match tail {
        [ns, plural] => (*ns, *plural, None),
        [ns, plural, name] => (*ns, *plural, Some(*name)),
        _ => return None,
    };
    if ns.is_empty() || plural != resource.plural() || name == Some("") {
        return None;
    }
    Some(Route {
        resource,
        namespace: ns.to_owned(),
        name: name.map(str::to_owned),
    })
}

/// `true`/`false` the way the apiserver's query decoder reads booleans (an empty value is
/// true).
fn parse_bool(name: &str, v: Option<&str>) -> Result<bool, String> {
    match v {
        None => Ok(false),
        Some("" | "1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(other) => Err(format!("{name}: Invalid value: {other:?}: strconv.ParseBool: parsing {other:?}: invalid syntax")),
    }
}

fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn record_request(
    shared: &ServerCore,
    conn: u64,
    req: Option<&Request>,
    verb: Option<Verb>,
    route: Option<&Route>,
    token: Option<&str>,
) -> u64 {
    let mut st = shared.lock();
    let id = st.next_id();
    st.requests.push(RequestRecord {
        id,
        method: req.map(|r| r.method.clone()).unwrap_or_default(),
        path: req.map(|r| r.path.clone()).unwrap_or_default(),
        query: req.map(|r| r.query.clone()).unwrap_or_default(),
        verb,
        resource: route.map(|r| r.resource),
        namespace: route.map(|r| r.namespace.clone()),
        at: Instant::now(),
        status: 0,
        authorization: req.is_some_and(|r| r.header("authorization").is_some()),
        host: req.and_then(|r| r.header("host")).map(str::to_owned),
        connection: conn,
        failure: None,
        faults: Vec::new(),
        expired: false,
        token: token.map(str::to_owned),
    });
    drop(st);
    shared.changed();
    id
}

fn take_failure(st: &mut ServerState, verb: Option<Verb>) -> Option<Failure> {
    let pos = st
        .failures
        .iter()
        .position(|r| r.remaining > 0 && (r.verb == Verb::Any || Some(r.verb) == verb))?;
    let rule: &mut FailRule = &mut st.failures[pos];
    rule.remaining -= 1;
    let failure = rule.failure.clone();
    if rule.remaining == 0 {
        st.failures.remove(pos);
    }
    Some(failure)
}

fn status_answer(code: u16, reason: &str, message: &str, details: Option<&Value>) -> Answer {
    Answer::json(code, status_json(code, reason, message, details))
}

fn not_found_page() -> Answer {
    Answer::text(404, "404 page not found\n")
}

fn failure_answer(failure: &Failure) -> Option<Answer> {
    Some(match failure {
        Failure::Status {
            code,
            reason,
            message,
        } => {
            let a = status_answer(*code, reason, message, None);
            if matches!(code, 429 | 503) {
                a.header("Retry-After", "1")
            } else {
                a
            }
        }
        Failure::TooManyRequests { retry_after_secs } => {
            Answer::text(429, "Too many requests, please try again later.\n")
                .header("Retry-After", retry_after_secs.to_string())
        }
        Failure::Unavailable => status_answer(
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
            None,
        )
        .header("Retry-After", "1"),
        Failure::InternalError => status_answer(
            500,
            "InternalError",
            "Internal error occurred: injected failure",
            Some(&json!({"causes": [{"message": "injected failure"}]})),
        ),
        Failure::Body { code, body } => Answer::json(*code, body.clone()),
        Failure::CloseWithoutAnswer | Failure::Hang => return None,
    })
}

/// `name` of a list/watch as the apiserver's RequestInfo derives it: from the path, else
/// from an exact `metadata.name` field selector.
fn request_name(route: &Route, req: &Request) -> Option<String> {
    if let Some(n) = &route.name {
        return Some(n.clone());
    }
    req.param("fieldSelector")?.split(',').find_map(|t| {
        let t = t.trim();
        t.strip_prefix("metadata.name==")
            .or_else(|| t.strip_prefix("metadata.name="))
            .map(|v| v.trim().to_owned())
    })
}

fn details(resource: Resource, name: Option<&str>) -> Value {
    let mut d = serde_json::Map::new();
    if let Some(n) = name {
        d.insert("name".into(), Value::String(n.to_owned()));
    }
    if !resource.group().is_empty() {
        d.insert("group".into(), Value::String(resource.group().to_owned()));
    }
    d.insert("kind".into(), Value::String(resource.plural().to_owned()));
    Value::Object(d)
}

fn forbidden_answer(user: &str, verb: Verb, route: &Route, name: Option<&str>) -> Answer {
    let r = route.resource;
    let subject = match name {
        Some(n) => format!("{} \"{n}\" is forbidden", r.qualified()),
        None => format!("{} is forbidden", r.qualified()),
    };
    let message = format!(
        "{subject}: User \"{user}\" cannot {} resource \"{}\" in API group \"{}\" in the namespace \"{}\"",
        verb.as_str(),
        r.plural(),
        r.group(),
        route.namespace
    );
    status_answer(403, "Forbidden", &message, Some(&details(r, name)))
}

fn handle_request(shared: &ServerCore, conn: &mut Conn, conn_id: u64, req: &Request) -> Flow {
    let close = !req.keep_alive();
    let route = route(&req.path);
    let watch = parse_bool("watch", req.param("watch"));
    let verb = route.as_ref().map(|r| match (&watch, &r.name) {
        (Ok(true), _) => Verb::Watch,
        (_, Some(_)) => Verb::Get,
        (_, None) => Verb::List,
    });
    let token = req.header("authorization").and_then(bearer);
    let record = record_request(shared, conn_id, Some(req), verb, route.as_ref(), token);
    log::debug!(target: TARGET, "{} {} {:?}", req.method, req.path, verb);

    let (failure, expected, forbidden, disabled) = {
        let mut st = shared.lock();
        let failure = take_failure(&mut st, verb);
        let resource = route.as_ref().map(|r| r.resource);
        (
            failure,
            st.token.clone(),
            resource.is_some_and(|r| st.forbidden.contains(&r)),
            resource.is_some_and(|r| st.disabled.contains(&r)),
        )
    };

    if let Some(failure) = failure {
        log::debug!(target: TARGET, "injected failure {failure:?}");
        let injected = failure.clone();
        shared.update_record(record, |r| r.failure = Some(injected));
        return match failure_answer(&failure) {
            Some(answer) => shared.send(conn, record, answer, close),
            None => {
                if failure == Failure::Hang {
                    shared.wait_released(conn, conn_id);
                }
                Flow::Abort
            }
        };
    }
    if let Some(expected) = expected {
        if token != Some(expected.as_str()) {
            let answer = status_answer(401, "Unauthorized", "Unauthorized", None);
            return shared.send(conn, record, answer, close);
        }
    }
    let (Some(route), Some(verb)) = (route, verb) else {
        return shared.send(conn, record, not_found_page(), close);
    };
    let name = request_name(&route, req);
    if forbidden {
        let answer = forbidden_answer(&shared.settings.user, verb, &route, name.as_deref());
        return shared.send(conn, record, answer, close);
    }
    if disabled {
        return shared.send(conn, record, not_found_page(), close);
    }
    if req.method != "GET" {
        let answer = status_answer(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
            Some(&json!({})),
        );
        return shared.send(conn, record, answer, close);
    }
    let warn = |a: Answer| match route.resource {
        Resource::Endpoints => a.header("Warning", ENDPOINTS_WARNING),
        Resource::EndpointSlices => a,
    };
    let bad = |msg: &str| status_answer(400, "BadRequest", msg, None);
    if let Err(msg) = &watch {
        return shared.send(conn, record, bad(msg), close);
    }
    let selector = |name: &str| {
        req.param(name)
            .filter(|_| !shared.settings.ignore_selectors)
    };

    match verb {
        Verb::Get => {
            let st = shared.lock();
            let key = (
                route.resource,
                route.namespace.clone(),
                name.clone().unwrap_or_default(),
            );
            let answer = match st.objects.get(&key) {
                Some(obj) => warn(Answer::json(200, object_json(route.resource, obj))),
                None => {
                    let n = name.as_deref().unwrap_or("");
                    status_answer(
                        404,
                        "NotFound",
                        &format!("{} \"{n}\" not found", route.resource.qualified()),
                        Some(&details(route.resource, Some(n))),
                    )
                }
            };
            drop(st);
            shared.send(conn, record, answer, close)
        }
        Verb::List | Verb::Any => {
            let filter = match Filter::parse(
                route.resource,
                &route.namespace,
                None,
                selector("fieldSelector"),
                selector("labelSelector"),
            ) {
                Ok(f) => f,
                Err(msg) => return shared.send(conn, record, bad(&msg), close),
            };
            let st = shared.lock();
            let items: Vec<String> = st.matching(&filter).map(Value::to_string).collect();
            let body = format!(
                "{{\"kind\":\"{}\",\"apiVersion\":\"{}\",\"metadata\":{{\"resourceVersion\":\"{}\"}},\"items\":[{}]}}",
                route.resource.list_kind(),
                route.resource.api_version(),
                st.rv,
                items.join(",")
            );
            drop(st);
            shared.send(conn, record, warn(Answer::json(200, body)), close)
        }
        Verb::Watch => {
            let filter = match Filter::parse(
                route.resource,
                &route.namespace,
                route.name.as_deref(),
                selector("fieldSelector"),
                selector("labelSelector"),
            ) {
                Ok(f) => f,
                Err(msg) => return shared.send(conn, record, bad(&msg), close),
            };
            let bookmarks =
                match parse_bool("allowWatchBookmarks", req.param("allowWatchBookmarks")) {
                    Ok(b) => b,
                    Err(msg) => return shared.send(conn, record, bad(&msg), close),
                };
            let timeout_secs = match req.param("timeoutSeconds").filter(|s| !s.is_empty()) {
                None => None,
                Some(s) => {
                    match s.parse::<u64>() {
                        Ok(n) => Some(n),
                        Err(_) => {
                            let msg = format!("timeoutSeconds: Invalid value: {s:?}: must be a non-negative integer");
                            return shared.send(conn, record, bad(&msg), close);
                        }
                    }
                }
            };
            let rv = match req
                .param("resourceVersion")
                .filter(|s| !s.is_empty() && *s != "0")
            {
                None => None,
                Some(s) => match s.parse::<u64>() {
                    Ok(n) => Some(n),
                    Err(_) => {
                        let msg = format!(
                            "resourceVersion: Invalid value: {s:?}: invalid resource version"
                        );
                        return shared.send(conn, record, bad(&msg), close);
                    }
                },
            };
            let headers = match route.resource {
                Resource::Endpoints => vec![("Warning", ENDPOINTS_WARNING.to_owned())],
                Resource::EndpointSlices => Vec::new(),
            };
            let params = WatchParams {
                rv,
                bookmarks,
                timeout_secs,
                headers,
                close,
            };
            watch::serve(shared, conn, conn_id, record, filter, params)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing() {
        assert_eq!(
            route("/api/v1/namespaces/prod/endpoints"),
            Some(Route {
                resource: Resource::Endpoints,
                namespace: "prod".into(),
                name: None
            })
        );
        assert_eq!(
            route("/apis/discovery.k8s.io/v1/namespaces/prod/endpointslices/x").map(|r| r.name),
            Some(Some("x".into()))
        );
        assert_eq!(route("/api/v1/namespaces/prod/pods"), None);
        assert_eq!(route("/api/v1/namespaces//endpoints"), None);
        assert_eq!(route("/api/v1/namespaces/prod/endpoints/"), None);
        assert_eq!(
            route("/apis/discovery.k8s.io/v1/namespaces/prod/endpoints"),
            None
        );
        assert_eq!(route("/"), None);
    }

    #[test]
    fn bools_and_bearer() {
        assert_eq!(parse_bool("w", Some("")), Ok(true));
        assert_eq!(parse_bool("w", Some("1")), Ok(true));
        assert_eq!(parse_bool("w", Some("true")), Ok(true));
        assert_eq!(parse_bool("w", Some("false")), Ok(false));
        assert_eq!(parse_bool("w", None), Ok(false));
        assert!(parse_bool("w", Some("yes")).is_err());
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
    }
}
