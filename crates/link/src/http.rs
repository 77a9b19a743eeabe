//! The operator's side door: a minimal HTTP/1.1 endpoint serving Prometheus metrics
//! (`GET /metrics`) and a liveness probe (`GET /health`), and address resolution for the
//! addresses written in configs and the directory. They live here because this crate is the only
//! one that opens sockets.
//!
//! The endpoint is for operators on a private interface: it answers `GET` only, reads at most
//! [`MAX_REQUEST_HEAD`] bytes within [`REQUEST_TIMEOUT`], closes every connection after one
//! answer, and serves what the render function returns, which never holds an identifier, address
//! or key (see the node's metrics).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Longest request head read.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// How long a client has to send its request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Most connections served at once; more wait in the kernel's backlog.
const MAX_CONCURRENT: usize = 32;

/// Renders the metrics page (Prometheus text format 0.0.4).
pub type RenderMetrics = Arc<dyn Fn() -> String + Send + Sync>;

/// A running metrics endpoint.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// Binds `addr` and serves `render` until [`MetricsServer::shutdown`].
    pub async fn bind(addr: SocketAddr, render: RenderMetrics) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let (shutdown, mut stop) = watch::channel(false);
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT));
        let task = tokio::spawn(async move {
            loop {
                let permit = tokio::select! {
                    p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                    _ = stop.changed() => break,
                };
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let render = render.clone();
                        tokio::spawn(async move {
                            let _ = tokio::time::timeout(2 * REQUEST_TIMEOUT, answer(stream, &render)).await;
                            drop(permit);
                        });
                    }
                    _ = stop.changed() => break,
                }
            }
        });
        Ok(Self { local_addr, shutdown, task })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops serving.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /metrics`.
    Metrics,
    /// `GET /health`.
    Health,
    /// `GET` of anything else.
    NotFound,
    /// Another method.
    BadMethod,
    /// Not an HTTP/1.x request line.
    BadRequest,
}

/// Parses a request head (pure, fuzzed; the request line is all that matters).
pub fn route(head: &[u8]) -> Route {
    let Some(line) = head.split(|b| *b == b'\n').next() else { return Route::BadRequest };
    let Ok(line) = std::str::from_utf8(line) else { return Route::BadRequest };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return Route::BadRequest;
    };
    if parts.next().is_some() || !version.starts_with("HTTP/1.") {
        return Route::BadRequest;
    }
    if method != "GET" {
        return Route::BadMethod;
    }
    match target.split('?').next() {
        Some("/metrics") => Route::Metrics,
        Some("/health") => Route::Health,
        _ => Route::NotFound,
    }
}

async fn answer(mut stream: TcpStream, render: &RenderMetrics) -> io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let complete = tokio::time::timeout(REQUEST_TIMEOUT, async {
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok::<bool, io::Error>(false);
            }
            head.extend_from_slice(buf.get(..n).unwrap_or_default());
            if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
                return Ok(true);
            }
            if head.len() > MAX_REQUEST_HEAD {
                return Ok(false);
            }
        }
    })
    .await
    .unwrap_or(Ok(false))?;
    let (status, content_type, body) = match if complete { route(&head) } else { Route::BadRequest } {
        Route::Metrics => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", render()),
        Route::Health => ("200 OK", "text/plain; charset=utf-8", "ok\n".to_owned()),
        Route::NotFound => ("404 Not Found", "text/plain; charset=utf-8", "not found\n".to_owned()),
        Route::BadMethod => ("405 Method Not Allowed", "text/plain; charset=utf-8", "GET only\n".to_owned()),
        Route::BadRequest => ("400 Bad Request", "text/plain; charset=utf-8", "bad request\n".to_owned()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Resolves a `host:port` address (an IP literal, or a DNS name through the system resolver) to
/// its first socket address.
pub async fn resolve(host_port: &str) -> io::Result<SocketAddr> {
    if let Ok(a) = host_port.parse::<SocketAddr>() {
        return Ok(a);
    }
    tokio::net::lookup_host(host_port)
        .await?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the name has no address"))
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound and released; another process may
/// take it before the caller does, so callers that can bind port 0 themselves should).
///
/// The port is chosen at random *below* the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`), so that the outgoing connections of the many
/// nodes a devnet runs cannot be given it between now and the caller's `bind`; and it is never
/// handed out twice by one process.
pub fn free_local_port() -> io::Result<u16> {
    use std::collections::HashSet;
    use std::hash::{BuildHasher as _, RandomState};
    use std::sync::{Mutex, OnceLock};
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(|| Mutex::new(HashSet::new()));
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse::<u16>().ok()))
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_start.max(10_001));
    for _ in 0..500 {
        let r = RandomState::new().hash_one(0u8);
        let port = low + (r % u64::from(high - low)) as u16;
        let Ok(mut g) = given.lock() else { break };
        if g.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            g.insert(port);
            return Ok(port);
        }
    }
    // Fall back on the kernel's choice.
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

/// Fetches `path` from an HTTP endpoint on `addr` (for `qanat devnet status` and tests): the
/// status code and body, within `timeout`.
pub async fn get(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<(u16, String)> {
    tokio::time::timeout(timeout, async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut out = Vec::new();
        s.take(16 * 1024 * 1024).read_to_end(&mut out).await?;
        let text = String::from_utf8_lossy(&out).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let code = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an HTTP response"))?;
        Ok((code, body.to_owned()))
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer in time"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), Route::Metrics);
        assert_eq!(route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Route::Metrics);
        assert_eq!(route(b"GET /health HTTP/1.1\r\n\r\n"), Route::Health);
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"POST /metrics HTTP/1.1\r\n\r\n"), Route::BadMethod);
        assert_eq!(route(b"GET /metrics\r\n\r\n"), Route::BadRequest);
        assert_eq!(route(b"\xff\xfe"), Route::BadRequest);
        assert_eq!(route(b""), Route::BadRequest);
    }

    #[tokio::test]
    async fn serves_metrics_and_survives_garbage() {
        let render: RenderMetrics = Arc::new(|| "qanat_up 1\n".to_owned());
        let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap(), render).await.unwrap();
        let addr = server.local_addr();
        // Garbage and an over-long head get an error, and the server goes on.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&vec![b'x'; MAX_REQUEST_HEAD + 10]).await.unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 400"));
        let (code, body) = get(addr, "/metrics", Duration::from_secs(5)).await.unwrap();
        assert_eq!((code, body.as_str()), (200, "qanat_up 1\n"));
        let (code, _) = get(addr, "/nope", Duration::from_secs(5)).await.unwrap();
        assert_eq!(code, 404);
        assert_eq!(get(addr, "/health", Duration::from_secs(5)).await.unwrap(), (200, "ok\n".to_owned()));
        server.shutdown().await;
    }

    #[tokio::test]
    async fn resolves_literals() {
        assert_eq!(resolve("127.0.0.1:80").await.unwrap(), "127.0.0.1:80".parse().unwrap());
        assert_eq!(resolve("[::1]:80").await.unwrap(), "[::1]:80".parse().unwrap());
    }
}
