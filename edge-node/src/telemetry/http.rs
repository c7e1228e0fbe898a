//! A very small HTTP/1.1 server for `/metrics` (Prometheus text), `/healthz`, `/readyz` and
//! `/status` (JSON). Plain std networking on one thread: requests are tiny and rare (a
//! scraper every few seconds), connections are handled one at a time with a 2 s read
//! timeout and an 8 KiB request limit, and anything but `GET` of a known path gets 404/405.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// Answers a path: `(status, content type, body)`, or `None` for 404.
pub type Handler = Arc<dyn Fn(&str) -> Option<(u16, &'static str, String)> + Send + Sync>;

/// Binds `addr` and serves on a thread of its own; returns the bound address.
pub fn serve(addr: SocketAddr, handler: Handler) -> std::io::Result<SocketAddr> {
    serve_on(TcpListener::bind(addr)?, handler)
}

/// Serves an already bound listener (bind at start, so a taken port stops the node before
/// anything else starts) on a thread of its own; returns the bound address.
pub fn serve_on(listener: TcpListener, handler: Handler) -> std::io::Result<SocketAddr> {
    let bound = listener.local_addr()?;
    std::thread::Builder::new().name("http".into()).spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = answer(stream, &handler);
        }
    })?;
    Ok(bound)
}

fn answer(mut stream: TcpStream, handler: &Handler) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = [0u8; 8192];
    let mut len = 0;
    while len < buf.len() {
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            break;
        }
        len += n;
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, body) = if method != "GET" {
        (405, "text/plain", "only GET\n".to_string())
    } else {
        handler(path).unwrap_or((404, "text/plain", "not found; try /metrics, /healthz, /readyz, /status\n".into()))
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "",
    };
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn routes_and_refusals() {
        let addr = serve(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(|p| (p == "/healthz").then(|| (200, "text/plain", "ok\n".to_string()))),
        )
        .unwrap();
        let r = get(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK") && r.ends_with("ok\n"), "{r}");
        assert!(get(addr, "GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get(addr, "POST /healthz HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        // Garbage and a silent client do not stop the server.
        assert!(get(addr, "\u{0}\u{1}garbage\r\n\r\n").starts_with("HTTP/1.1 405"));
        let silent = TcpStream::connect(addr).unwrap();
        assert!(get(addr, "GET /healthz HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200"));
        drop(silent);
    }
}
