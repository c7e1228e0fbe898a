//! The HTTP listener of the node and the dispatcher, on axum, on their tokio runtime. Each
//! part declares the routes it serves as an axum router (`clips::routes`, `live::routes`,
//! `telemetry::routes`, …) and the command merges them; answers are computed on a blocking
//! thread ([`get`]: they read locks and SQLite, or encode a JPEG), so a slow answer never
//! holds up the runtime; an unknown path gets 404, a known one asked with another method 405.
//! `/metrics` is OpenMetrics for a scraper that asks for it (Prometheus does) and the classic
//! Prometheus text format otherwise (curl, promtool).
//!
//! Access: with a token (`http.token_file`), every path but `/healthz` and `/readyz` needs
//! `Authorization: Bearer <token>`, or basic auth whose password is the token (a browser
//! asks for it once); anything else gets 401 and nothing of the answer. The token is never
//! logged. Without a token the listener is loopback only (the config refuses otherwise).

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::config::Secret;

/// What a handler sees of a request.
pub struct Request<'a> {
    pub path: &'a str,
    /// The query string without `?` ("" when absent).
    pub query: &'a str,
    /// The `Accept` header ("" when absent).
    pub accept: &'a str,
    /// The `Authorization` header ("" when absent).
    pub authorization: &'a str,
    /// The `Cookie` header ("" when absent): apps whose media and event streams cannot
    /// send an `Authorization` header carry their credential in a cookie.
    pub cookie: &'a str,
    /// `POST` only: the body, its `Content-Type` and who sent it.
    pub post: Option<Post<'a>>,
}

/// A `POST` request's body and sender.
pub struct Post<'a> {
    pub content_type: &'a str,
    pub body: &'a [u8],
    pub peer: std::net::IpAddr,
}

/// The largest `POST` body read; a larger one is refused (413) before it is read.
pub const MAX_BODY: usize = 11 << 20;

/// A handler's answer.
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Further headers (`Set-Cookie`, `Cache-Control` of static files).
    pub headers: Vec<(header::HeaderName, String)>,
}

impl Reply {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Self { status, content_type, body: body.into(), headers: Vec::new() }
    }

    /// The same reply with one more header (a `Cache-Control` here replaces `no-store`).
    pub fn with_header(mut self, name: header::HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

impl From<(u16, &'static str, String)> for Reply {
    fn from((status, content_type, body): (u16, &'static str, String)) -> Self {
        Self::new(status, content_type, body)
    }
}

/// Answers a whole request (`GET` or `POST` with its body), or `None` for 404: for the parts
/// with credentials of their own under one prefix (residents' reports, [`with_body`]).
pub type Handler = Arc<dyn Fn(&Request) -> Option<Reply> + Send + Sync>;

/// What a `GET` route's handler sees: the path's parameters (`/clips/:file` gives
/// `file`), the query string without `?`, and the `Accept` header.
pub struct Get {
    params: Vec<(String, String)>,
    pub query: String,
    pub accept: String,
}

impl Get {
    /// The path parameter `name` ("" when the route has none of that name).
    pub fn param(&self, name: &str) -> &str {
        self.params.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
    }
}

/// A `GET` route answered on a blocking thread (handlers read locks, SQLite or files, or
/// encode a JPEG: a slow answer never holds up the runtime). Other methods get 405.
pub fn get<F>(f: F) -> axum::routing::MethodRouter
where
    F: Fn(&Get) -> Reply + Clone + Send + Sync + 'static,
{
    axum::routing::get(move |params: axum::extract::RawPathParams, uri: Uri, headers: HeaderMap| async move {
        let asked = Get {
            params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            query: uri.query().unwrap_or("").to_string(),
            accept: headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("").to_string(),
        };
        match tokio::task::spawn_blocking(move || f(&asked)).await {
            Ok(r) => r.into_response(),
            Err(e) => {
                tracing::error!("http handler failed: {e}");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
            }
        }
    })
}

/// The routes of a part with credentials of its own under `prefix` (listed in
/// [`Access::own_credentials`]): every method reaches `handler` with the whole request;
/// only these routes take a body.
pub fn with_body(prefix: &'static str, handler: Handler) -> axum::Router {
    let route = axum::routing::any(
        move |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
              method: Method,
              uri: Uri,
              headers: HeaderMap,
              body: axum::body::Body| {
            let handler = handler.clone();
            async move { answer(handler, method, uri, headers, body, peer).await }
        },
    );
    axum::Router::new().route(prefix, route.clone()).route(&format!("{prefix}/*rest"), route)
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response =
            (status, [(header::CONTENT_TYPE, self.content_type), (header::CACHE_CONTROL, "no-store")], self.body)
                .into_response();
        for (name, value) in self.headers {
            if let Ok(v) = header::HeaderValue::from_str(&value) {
                if name == header::CACHE_CONTROL {
                    response.headers_mut().insert(name, v);
                } else {
                    response.headers_mut().append(name, v);
                }
            }
        }
        response
    }
}

/// A JSON answer (pretty, for people reading it with curl).
pub fn json(v: &impl serde::Serialize) -> Reply {
    Reply::new(200, "application/json", serde_json::to_vec_pretty(v).unwrap_or_default())
}

/// Paths anyone may read: the probes of a supervisor (kubelet, load balancer) say nothing
/// about cameras.
const OPEN: [&str; 2] = ["/healthz", "/readyz"];

/// Who may ask what of a listener.
#[derive(Clone, Default)]
pub struct Access {
    /// The listener's token; `None`: anyone (loopback only, the config sees to it).
    pub token: Option<Secret>,
    /// Named credentials with a role (`http.users_file`), replaced on reload.
    pub users: Arc<std::sync::RwLock<Vec<crate::config::User>>>,
    /// Path prefixes that take `POST` bodies and carry a credential of their own instead of
    /// the token (residents' reports, read and rated with the reporter's token). `POST`
    /// anywhere else is 405.
    pub own_credentials: Vec<&'static str>,
}

/// Who asked: put in each request's extensions by the listener's guard. Without any
/// credential configured (loopback only) the caller is `local`, an admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: crate::config::Role,
}

impl Access {
    /// The caller a request's `Authorization` header names; `None`: no credential of this
    /// listener.
    pub fn caller(&self, headers: &HeaderMap) -> Option<Caller> {
        use crate::RwLocked;
        use crate::config::Role;
        let users = self.users.read_locked();
        if self.token.is_none() && users.is_empty() {
            return Some(Caller { name: "local".into(), role: Role::Admin });
        }
        let value = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())?;
        if self.token.as_ref().is_some_and(|t| authorized_by(value, t)) {
            return Some(Caller { name: "admin".into(), role: Role::Admin });
        }
        // Every user is compared, so the time taken says nothing of which one matched.
        let mut found = None;
        for u in users.iter() {
            if authorized_by(value, &u.token) {
                found = Some(Caller { name: u.name.clone(), role: u.role });
            }
        }
        found
    }

    fn own(&self, path: &str) -> bool {
        self.own_credentials.iter().any(|p| path == *p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
    }
}

/// Serves `routes` on an already bound listener (bind at start, so a taken port stops the
/// node before anything else starts) on the current tokio runtime; returns the bound
/// address. With a token, requests must carry it (see the module's note); an unknown path
/// gets 404, a known one asked with another method 405.
pub fn serve_on(listener: TcpListener, routes: axum::Router, access: Access) -> std::io::Result<SocketAddr> {
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let app = routes
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found; try /, /metrics, /healthz, /readyz, /status\n") })
        .layer(axum::middleware::from_fn_with_state(Arc::new(access), guard))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await {
            tracing::error!("http server stopped: {e}");
        }
    });
    Ok(bound)
}

/// Lets a request through when it carries the token, asks for a probe, or goes to a part
/// with credentials of its own; anything else gets 401 and nothing of the answer.
async fn guard(
    axum::extract::State(access): axum::extract::State<Arc<Access>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut request = request;
    let path = request.uri().path();
    match access.caller(request.headers()) {
        Some(caller) => {
            // Changing things is an admin's; the parts with their own credentials judge
            // their own requests.
            if caller.role < crate::config::Role::Admin
                && !matches!(*request.method(), axum::http::Method::GET | axum::http::Method::HEAD)
                && !access.own(path)
            {
                return (
                    StatusCode::FORBIDDEN,
                    format!("{} may look, not change (role {})\n", caller.name, caller.role.name()),
                )
                    .into_response();
            }
            request.extensions_mut().insert(caller);
        }
        None if OPEN.contains(&path) || access.own(path) => {}
        None => return refused(),
    }
    next.run(request).await
}

/// Whether an `Authorization` header's value carries the token (bearer, or basic auth's
/// password): for parts with credentials of their own that also let the listener's
/// holder in.
pub fn authorized_by(value: &str, token: &Secret) -> bool {
    use base64::Engine;
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
    let given = match scheme.to_ascii_lowercase().as_str() {
        "bearer" => rest.trim().as_bytes().to_vec(),
        "basic" => {
            let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest.trim()) else { return false };
            match decoded.iter().position(|&b| b == b':') {
                Some(i) => decoded[i + 1..].to_vec(),
                None => return false,
            }
        }
        _ => return false,
    };
    same(&given, token.expose().as_bytes())
}

/// Compares without stopping at the first difference (no timing hint of the token).
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

fn too_large() -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        [(header::CONNECTION, "close")],
        format!("the body is over {} MiB; a photo may be 8 MiB and an audio clip 2 MiB\n", MAX_BODY >> 20),
    )
        .into_response()
}

fn refused() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::WWW_AUTHENTICATE, "Basic realm=\"gridsight\", charset=\"UTF-8\""),
            (header::CACHE_CONTROL, "no-store"),
        ],
        "credentials required: send Authorization: Bearer <token> (http.token_file)\n",
    )
        .into_response()
}

async fn answer(
    handler: Handler,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
    peer: SocketAddr,
) -> Response {
    let text = |h: header::HeaderName| headers.get(h).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let body = match method {
        Method::GET => None,
        Method::POST => {
            // Refused before reading it whole: the length it says, then what it really sends.
            let said = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
            if said.is_some_and(|n| n > MAX_BODY) {
                return too_large();
            }
            match axum::body::to_bytes(body, MAX_BODY).await {
                Ok(b) => Some(b),
                Err(_) => return too_large(),
            }
        }
        _ => return (StatusCode::METHOD_NOT_ALLOWED, "only GET and POST\n").into_response(),
    };
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    let (accept, authorization, content_type, cookie) =
        (text(header::ACCEPT), text(header::AUTHORIZATION), text(header::CONTENT_TYPE), text(header::COOKIE));
    let answered = tokio::task::spawn_blocking(move || {
        let post = body.as_ref().map(|b| Post { content_type: &content_type, body: b, peer: peer.ip() });
        handler(&Request {
            path: &path,
            query: &query,
            accept: &accept,
            authorization: &authorization,
            cookie: &cookie,
            post,
        })
    })
    .await;
    match answered {
        Ok(Some(r)) => r.into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, "not found; try /, /metrics, /healthz, /readyz, /status\n").into_response(),
        Err(e) => {
            tracing::error!("http handler failed: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
        }
    }
}

/// Whether a scraper's `Accept` header asks for OpenMetrics.
pub fn wants_openmetrics(accept: &str) -> bool {
    accept.contains("application/openmetrics-text")
}

/// The classic Prometheus text format (0.0.4) of an OpenMetrics exposition: counter
/// families are named with their `_total` suffix, `# UNIT` and `# EOF` are dropped.
pub fn openmetrics_to_text(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    let mut help: Option<&str> = None;
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let name = if kind == "counter" { format!("{name}_total") } else { name.to_string() };
            if let Some(h) = help.take() {
                let text = h.split_once(' ').map_or("", |(_, t)| t);
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn ask(addr: SocketAddr, request: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn routes_and_refusals() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let addr = {
            let _e = rt.enter();
            serve_on(
                TcpListener::bind("127.0.0.1:0").unwrap(),
                axum::Router::new()
                    .route("/healthz", get(|g: &Get| (200, "text/plain", format!("ok {}\n", g.accept)).into())),
                Access::default(),
            )
            .unwrap()
        };
        let r = ask(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\nAccept: a/b\r\nConnection: close\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK") && r.ends_with("ok a/b\n"), "{r}");
        assert!(ask(addr, "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(
            ask(addr, "POST /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").starts_with("HTTP/1.1 405")
        );
        // Garbage and a silent client do not stop the server.
        let _ = ask(addr, "\u{0}\u{1}garbage\r\n\r\n");
        let silent = std::net::TcpStream::connect(addr).unwrap();
        assert!(ask(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").starts_with("HTTP/1.1 200"));
        drop(silent);
    }

    #[test]
    fn a_token_guards_everything_but_the_probes() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let token = "0123456789abcdef-token";
        let addr = {
            let _e = rt.enter();
            serve_on(
                TcpListener::bind("127.0.0.1:0").unwrap(),
                {
                    let secret = |path: &'static str| {
                        get(move |_: &Get| (200, "text/plain", format!("secret of {path}\n")).into())
                    };
                    let own: Handler = Arc::new(|r: &Request| {
                        let body =
                            r.post.as_ref().map(|p| String::from_utf8_lossy(p.body).to_string()).unwrap_or_default();
                        Some((200, "text/plain", format!("secret of {}{body}\n", r.path)).into())
                    });
                    let who = axum::routing::get(|axum::Extension(c): axum::Extension<Caller>| async move {
                        format!("{} {}\n", c.name, c.role.name())
                    });
                    axum::Router::new()
                        .route("/whoami", who)
                        .route("/status", secret("/status"))
                        .route("/x.jpg", secret("/x.jpg"))
                        .route("/healthz", secret("/healthz"))
                        .route("/readyz", secret("/readyz"))
                        .merge(with_body("/api/own", own))
                },
                Access {
                    token: Some(Secret::new(token)),
                    users: Arc::new(std::sync::RwLock::new(vec![
                        crate::config::User {
                            name: "wall".into(),
                            role: crate::config::Role::Viewer,
                            token: Secret::new("viewer-token-0123456789"),
                        },
                        crate::config::User {
                            name: "duty-officer".into(),
                            role: crate::config::Role::Live,
                            token: Secret::new("live-token-0123456789"),
                        },
                    ])),
                    own_credentials: vec!["/api/own"],
                },
            )
            .unwrap()
        };
        let with = |path: &str, auth: &str| {
            ask(addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"))
        };
        use base64::Engine;
        let basic = |user_pass: &str| {
            format!("Authorization: Basic {}\r\n", base64::engine::general_purpose::STANDARD.encode(user_pass))
        };
        for auth in [
            String::new(),
            "Authorization: Bearer wrong-token-wrong-token\r\n".into(),
            format!("Authorization: Bearer {token}x\r\n"),
            format!("Authorization: Bearer {}\r\n", &token[..token.len() - 1]),
            basic("operator:nope"),
            basic(token),
            "Authorization: Basic %%%\r\n".into(),
            format!("Authorization: Digest {token}\r\n"),
        ] {
            let r = with("/status", &auth);
            assert!(r.starts_with("HTTP/1.1 401"), "{auth}: {r}");
            assert!(!r.contains("secret of") && !r.contains(token), "{r}");
            assert!(r.contains("www-authenticate: Basic realm=\"gridsight\""), "{r}");
        }
        assert!(with("/status", &format!("Authorization: Bearer {token}\r\n")).ends_with("secret of /status\n"));
        assert!(with("/status", &format!("authorization: bearer {token}\r\n")).starts_with("HTTP/1.1 200"));
        assert!(with("/x.jpg", &basic(&format!("operator:{token}"))).ends_with("secret of /x.jpg\n"));
        // The probes stay open (a kubelet has no token).
        assert!(with("/healthz", "").ends_with("secret of /healthz\n"));
        assert!(with("/readyz", "").starts_with("HTTP/1.1 200"));
        // A path that only looks like a probe is guarded.
        assert!(with("/healthz/../status", "").starts_with("HTTP/1.1 40"));
        // Paths with a credential of their own reach the handler without the token, and
        // only they take a body.
        assert!(with("/api/own/x", "").ends_with("secret of /api/own/x\n"));
        assert!(with("/api/ownother", "").starts_with("HTTP/1.1 401"));
        let post = |path: &str, auth: &str| {
            ask(
                addr,
                &format!("POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 2\r\nConnection: close\r\n\r\nhi"),
            )
        };
        assert!(post("/api/own", "").ends_with("secret of /api/ownhi\n"));
        assert!(post("/status", &format!("Authorization: Bearer {token}\r\n")).starts_with("HTTP/1.1 405"));
        // Named credentials: the handler learns who asked, with which role; only an admin
        // may send anything but GET outside the parts with credentials of their own.
        assert!(with("/whoami", &format!("Authorization: Bearer {token}\r\n")).ends_with("admin admin\n"));
        assert!(with("/whoami", "Authorization: Bearer viewer-token-0123456789\r\n").ends_with("wall viewer\n"));
        assert!(with("/whoami", &basic("x:live-token-0123456789")).ends_with("duty-officer live\n"));
        assert!(with("/whoami", "Authorization: Bearer live-token-012345678\r\n").starts_with("HTTP/1.1 401"));
        let r = post("/status", "Authorization: Bearer live-token-0123456789\r\n");
        assert!(r.starts_with("HTTP/1.1 403") && r.contains("duty-officer may look, not change"), "{r}");
        assert!(
            post("/api/own", "Authorization: Bearer viewer-token-0123456789\r\n").ends_with("secret of /api/ownhi\n")
        );
    }

    #[test]
    fn classic_text_names_counters_with_their_suffix() {
        let om = "# HELP a_b Things.\n# TYPE a_b counter\na_b_total{c=\"d\"} 1.0\n# HELP g Level.\n# TYPE g gauge\n# UNIT g bytes\ng 2.0\n# EOF\n";
        assert_eq!(
            openmetrics_to_text(om),
            "# HELP a_b_total Things.\n# TYPE a_b_total counter\na_b_total{c=\"d\"} 1.0\n# HELP g Level.\n# TYPE g gauge\ng 2.0\n"
        );
        assert!(wants_openmetrics("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"));
        assert!(!wants_openmetrics("*/*"));
    }
}
