//! The HTTP endpoints (`/metrics`, `/healthz`, `/readyz`, `/status`) on axum, on the
//! node's tokio runtime. Answers are computed by a [`Handler`] on a blocking thread (they
//! read locks and SQLite), so a slow answer never holds up the runtime; anything but `GET`
//! of a known path gets 404 or 405. `/metrics` is OpenMetrics for a scraper that asks for it
//! (Prometheus does) and the classic Prometheus text format otherwise (curl, promtool).

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// What a handler sees of a request.
pub struct Request<'a> {
    pub path: &'a str,
    /// The `Accept` header ("" when absent).
    pub accept: &'a str,
}

/// Answers a path: `(status, content type, body)`, or `None` for 404.
pub type Handler = Arc<dyn Fn(&Request) -> Option<(u16, &'static str, String)> + Send + Sync>;

/// Serves an already bound listener (bind at start, so a taken port stops the node before
/// anything else starts) on the current tokio runtime; returns the bound address.
pub fn serve_on(listener: TcpListener, handler: Handler) -> std::io::Result<SocketAddr> {
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
        let handler = handler.clone();
        async move { answer(handler, method, uri, headers).await }
    });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("http server stopped: {e}");
        }
    });
    Ok(bound)
}

async fn answer(handler: Handler, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    if method != Method::GET {
        return (StatusCode::METHOD_NOT_ALLOWED, "only GET\n").into_response();
    }
    let path = uri.path().to_string();
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let answered = tokio::task::spawn_blocking(move || handler(&Request { path: &path, accept: &accept })).await;
    match answered {
        Ok(Some((status, ctype, body))) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, [(header::CONTENT_TYPE, ctype)], body).into_response()
        }
        Ok(None) => (StatusCode::NOT_FOUND, "not found; try /metrics, /healthz, /readyz, /status\n").into_response(),
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

    fn get(addr: SocketAddr, request: &str) -> String {
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
                Arc::new(|r: &Request| {
                    (r.path == "/healthz").then(|| (200, "text/plain", format!("ok {}\n", r.accept)))
                }),
            )
            .unwrap()
        };
        let r = get(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\nAccept: a/b\r\nConnection: close\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK") && r.ends_with("ok a/b\n"), "{r}");
        assert!(get(addr, "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(
            get(addr, "POST /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").starts_with("HTTP/1.1 405")
        );
        // Garbage and a silent client do not stop the server.
        let _ = get(addr, "\u{0}\u{1}garbage\r\n\r\n");
        let silent = std::net::TcpStream::connect(addr).unwrap();
        assert!(get(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").starts_with("HTTP/1.1 200"));
        drop(silent);
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
