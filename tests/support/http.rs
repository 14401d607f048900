//! A small HTTP/1.1 server on a raw `TcpListener`, the base of every fake
//! upstream (the providers' fakes in [`super::fake_providers`], the streaming
//! benchmark's upstream, the overhead benchmark's `fake_upstream` example).
//!
//! Raw rather than an axum app because several failure modes live below what
//! a conforming server framework will do: closing a connection before any
//! status line, declaring a `Content-Length` and sending less, stalling in
//! the middle of a body. It reads a request's head and `Content-Length` body
//! (no chunked request bodies), keeps connections alive, and writes whole or
//! chunked responses.

use std::future::Future;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Accepts connections until this future is dropped, each handled by
/// `handle` in a task that is aborted with it.
pub async fn accept<F, Fut>(listener: TcpListener, mut handle: F)
where
    F: FnMut(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        connections.spawn(handle(stream));
    }
}

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `POST`.
    pub method: String,
    /// The request target (`/api/chat`).
    pub path: String,
    /// Every header, names lowercased, in the order received.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the request body is JSON")
    }
}

/// Reads one request; `None` when the client closed between requests.
pub async fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<Request>> {
    const MAX_HEAD: usize = 64 * 1024;
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > MAX_HEAD {
            return Err(invalid("request head too large"));
        }
        if !read_more(stream, buf).await? {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(invalid("closed inside a request head"))
            };
        }
        // Not HTTP (a TLS handshake, say): answer 400 and close, as real
        // HTTP servers do, so that the client fails at once.
        if !buf[0].is_ascii_uppercase() {
            let _ = stream
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            return Err(invalid("not an HTTP request"));
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    buf.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_owned();
    let path = request_line.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut request = Request {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    if request.header("transfer-encoding").is_some() {
        return Err(invalid("chunked request bodies are not supported"));
    }
    let length: usize = match request.header("content-length") {
        Some(v) => v.parse().map_err(|_| invalid("bad content-length"))?,
        None => 0,
    };
    while buf.len() < length {
        if !read_more(stream, buf).await? {
            return Err(invalid("closed inside a request body"));
        }
    }
    request.body = buf.drain(..length).collect();
    Ok(Some(request))
}

/// Reads what the peer sent next into `buf`; `false` when it closed.
pub async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut chunk = [0u8; 16 * 1024];
    let n = stream.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

/// Sends each event as one chunk of a chunked body, flushed at once.
pub async fn write_chunks(stream: &mut TcpStream, events: &[String]) -> std::io::Result<()> {
    for event in events {
        let chunk = format!("{:x}\r\n{event}\r\n", event.len());
        stream.write_all(chunk.as_bytes()).await?;
        stream.flush().await?;
    }
    Ok(())
}

/// A response head with `Content-Type`, `Content-Length` and `extra` headers.
pub fn head(status: u16, content_type: &str, length: usize, extra: &[(&str, &str)]) -> String {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n",
        reason(status)
    );
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// A whole JSON response, flushed.
pub async fn write_response(
    stream: &mut TcpStream,
    status: u16,
    extra: &[(&str, &str)],
    body: &str,
) -> std::io::Result<()> {
    let head = head(status, "application/json", body.len(), extra);
    stream.write_all(format!("{head}{body}").as_bytes()).await?;
    stream.flush().await
}

/// The reason phrase of `status`.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        529 => "Overloaded",
        _ => "Other",
    }
}
