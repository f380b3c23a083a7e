//! Accept loop, connections, and request dispatch.

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustls::{ServerConnection, StreamOwned};
use serde_json::{json, Value};

use super::discovery::Served;
use super::errors::{status_json, StatusError};
use super::faults::Failure;
use super::http::{read_request, Answer, Conn, ReadError, Request};
use super::list::{self, ListQuery};
use super::record::RequestRecord;
use super::render::object_json;
use super::route::{route, ApiPath, Doc, Route};
use super::select::Filter;
use super::shared::{Flow, ServerCore, TARGET};
use super::store::{FailRule, ServerState};
use super::types::{Resource, Verb};
use super::watch::{self, parse_bool, WatchParams};
use super::writes;

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

fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The verb of a request on an API path, as the apiserver's RequestInfo derives it; `None`
/// for a method the path does not serve.
fn verb_of(req: &Request, path: &ApiPath) -> Option<Verb> {
    let named = path.name.is_some();
    let collection_in_scope = path.namespace.is_some() || !path.resource.namespaced();
    match req.method.as_str() {
        "GET" if path.watch => Some(Verb::Watch),
        "GET" if parse_bool("watch", req.param("watch")) == Ok(true) => Some(Verb::Watch),
        "GET" if named => Some(Verb::Get),
        "GET" => Some(Verb::List),
        _ if path.watch => None,
        "POST" if !named && collection_in_scope => Some(Verb::Create),
        "PUT" if named => Some(Verb::Update),
        "PATCH" if named => Some(Verb::Patch),
        "DELETE" if named => Some(Verb::Delete),
        _ => None,
    }
}

fn record_request(
    shared: &ServerCore,
    conn: u64,
    req: Option<&Request>,
    verb: Option<Verb>,
    path: Option<&ApiPath>,
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
        resource: path.map(|r| r.resource),
        namespace: path.and_then(|r| r.namespace.clone()),
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

fn method_not_allowed() -> Answer {
    status_answer(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
        Some(&json!({})),
    )
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
fn request_name(path: &ApiPath, req: &Request) -> Option<String> {
    if let Some(n) = &path.name {
        return Some(n.clone());
    }
    req.param("fieldSelector")?.split(',').find_map(|t| {
        let t = t.trim();
        t.strip_prefix("metadata.name==")
            .or_else(|| t.strip_prefix("metadata.name="))
            .map(|v| v.trim().to_owned())
    })
}

/// Whether a request may go without a token: the anonymous user may read the version and
/// the health checks (`system:public-info-viewer`), nothing else.
fn public(route: Option<&Route>, req: &Request) -> bool {
    matches!(route, Some(Route::Doc(Doc::Version | Doc::Health)))
        && req.header("authorization").is_none()
}

fn handle_request(shared: &ServerCore, conn: &mut Conn, conn_id: u64, req: &Request) -> Flow {
    let close = !req.keep_alive();
    let route = route(&req.path);
    let api = match &route {
        Some(Route::Api(path)) => Some(path),
        _ => None,
    };
    let verb = api.and_then(|p| verb_of(req, p));
    let token = req.header("authorization").and_then(bearer);
    let record = record_request(shared, conn_id, Some(req), verb, api, token);
    log::debug!(target: TARGET, "{} {} {:?}", req.method, req.path, verb);

    let (failure, expected, forbidden, disabled) = {
        let mut st = shared.lock();
        if st.reap(Instant::now()) {
            shared.changed();
        }
        let failure = take_failure(&mut st, verb);
        let resource = api.map(|r| r.resource);
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
        if token != Some(expected.as_str()) && !public(route.as_ref(), req) {
            let answer = status_answer(401, "Unauthorized", "Unauthorized", None);
            return shared.send(conn, record, answer, close);
        }
    }
    let path = match route {
        None => return shared.send(conn, record, not_found_page(), close),
        Some(Route::Doc(doc)) => {
            let answer = document(shared, conn, doc, req);
            return shared.send(conn, record, answer, close);
        }
        Some(Route::Api(path)) => path,
    };
    if let (true, Some(verb)) = (forbidden, verb) {
        let name = request_name(&path, req);
        let e = StatusError::forbidden(
            &shared.settings.user,
            verb.as_str(),
            path.resource,
            path.namespace.as_deref(),
            name.as_deref(),
        );
        return shared.send(conn, record, Answer::error(&e), close);
    }
    if disabled {
        return shared.send(conn, record, not_found_page(), close);
    }
    let Some(verb) = verb else {
        return shared.send(conn, record, method_not_allowed(), close);
    };
    if let Err(msg) = parse_bool("watch", req.param("watch")) {
        return shared.send(
            conn,
            record,
            Answer::error(&StatusError::bad_request(msg)),
            close,
        );
    }
    let warn = |a: Answer| match path.resource {
        Resource::Endpoints => a.header("Warning", ENDPOINTS_WARNING),
        _ => a,
    };
    let reply = |result: Result<Answer, StatusError>| match result {
        Ok(answer) => warn(answer),
        Err(e) => Answer::error(&e),
    };
    let selector = |name: &str| {
        req.param(name)
            .filter(|_| !shared.settings.ignore_selectors)
    };
    let filter = |name: Option<&str>| {
        Filter::parse(
            path.resource,
            path.namespace.as_deref(),
            name,
            selector("fieldSelector"),
            selector("labelSelector"),
        )
        .map_err(StatusError::bad_request)
    };

    let answer = match verb {
        Verb::Watch => {
            let headers = match path.resource {
                Resource::Endpoints => vec![("Warning", ENDPOINTS_WARNING.to_owned())],
                _ => Vec::new(),
            };
            let params = filter(path.name.as_deref())
                .and_then(|f| WatchParams::parse(|n| req.param(n), headers, close).map(|p| (f, p)));
            return match params {
                Ok((filter, params)) => watch::serve(shared, conn, conn_id, record, filter, params),
                Err(e) => shared.send(conn, record, Answer::error(&e), close),
            };
        }
        Verb::Get => {
            let st = shared.lock();
            let name = path.name.clone().unwrap_or_default();
            let key = (
                path.resource,
                path.namespace.clone().unwrap_or_default(),
                name,
            );
            reply(match st.objects.get(&key) {
                Some(obj) => Ok(Answer::json(200, object_json(path.resource, obj))),
                None => Err(StatusError::not_found(path.resource, &key.2)),
            })
        }
        Verb::List => reply(filter(None).and_then(|f| {
            let q = ListQuery::parse(|n| req.param(n))?;
            let st = shared.lock();
            list::list(&st, &f, &q).map(|body| Answer::json(200, body))
        })),
        _ => reply(write(shared, &path, verb, req)),
    };
    shared.send(conn, record, answer, close)
}

/// Carries out a create, update, patch or delete, and wakes the watches it concerns.
fn write(
    shared: &ServerCore,
    path: &ApiPath,
    verb: Verb,
    req: &Request,
) -> Result<Answer, StatusError> {
    let dry_run = match req.param("dryRun") {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            return Err(StatusError::bad_request(format!(
                "dryRun: Unsupported value: {other:?}: supported values: \"All\""
            )))
        }
    };
    let content_type = req.header("content-type").unwrap_or("");
    let mut st = shared.lock();
    let written = match verb {
        Verb::Create => writes::create(&mut st, path, &req.body, dry_run),
        Verb::Update => writes::replace(&mut st, path, &req.body, dry_run),
        Verb::Patch => writes::patch(&mut st, path, content_type, &req.body, dry_run),
        _ => writes::delete(&mut st, path, &req.body, dry_run),
    }?;
    drop(st);
    shared.changed();
    Ok(Answer::json(written.code, written.body))
}

/// A discovery, version, OpenAPI or health document.
fn document(shared: &ServerCore, conn: &Conn, doc: Doc, req: &Request) -> Answer {
    if req.method != "GET" {
        return method_not_allowed();
    }
    let st = shared.lock();
    let served = Served {
        version: shared.settings.version,
        disabled: &st.disabled,
        address: conn.local_addr().map(|a| a.to_string()).unwrap_or_default(),
    };
    match served.document(doc, req.header("accept").unwrap_or("")) {
        Some((content_type, body)) => {
            Answer::typed(200, content_type, body).header("Vary", "Accept")
        }
        None => not_found_page(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
    }
}
