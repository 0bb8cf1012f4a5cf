//! A raw HTTP/1.1 server that misbehaves on purpose: it can answer 500 MB without holding
//! them (one static block written again and again), redirect, or send any status and body.
//! One request per connection (`Connection: close`), every request counted by path.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server received.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub body: String,
}

/// What the server answers.
#[derive(Debug, Clone)]
pub enum Reply {
    Raw {
        status: u16,
        content_type: &'static str,
        body: String,
    },
    /// `bytes` of JSON-looking filler, generated while writing; `sized` announces the length.
    Huge {
        bytes: u64,
        sized: bool,
    },
    Redirect {
        status: u16,
        location: String,
    },
    /// No answer at all: the connection stays open until the client gives up.
    Hang,
}

impl Reply {
    pub fn json(status: u16, v: serde_json::Value) -> Reply {
        Reply::Raw {
            status,
            content_type: "application/json",
            body: v.to_string(),
        }
    }
}

/// The block the huge answers repeat: static, so the server allocates nothing per byte sent.
static BLOCK: [u8; 64 * 1024] = [b' '; 64 * 1024];

type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

pub struct HostileServer {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HostileServer {
    pub async fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (seen, handler) = (seen.clone(), handler.clone());
                    tokio::spawn(async move {
                        let _ = serve(stream, seen, handler).await;
                    });
                }
            }
        });
        HostileServer { port, seen, task }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Requests whose path contains `part`.
    pub fn count(&self, part: &str) -> usize {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|p| {
                // `getResourceById` must not count `getResourcesByIds`: compare whole segments.
                p.split(['/', '?']).any(|seg| seg == part)
                    || (part.starts_with('/') && p.starts_with(part))
            })
            .count()
    }

    pub fn requests(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

async fn serve(
    mut stream: TcpStream,
    seen: Arc<Mutex<Vec<String>>>,
    handler: Handler,
) -> std::io::Result<()> {
    // Headers (bounded: the clients under test send small ones), then the announced body.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 1 << 20 {
            return Ok(());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let path = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/")
        .to_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
    seen.lock().unwrap().push(path.clone());
    match handler(&Request { path, body }) {
        Reply::Raw {
            status,
            content_type,
            body,
        } => {
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(body.as_bytes()).await?;
        }
        Reply::Redirect { status, location } => {
            let head = format!(
                "HTTP/1.1 {status} X\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await?;
        }
        Reply::Hang => {
            // Returns once the client closes its side (its timeout), so no task outlives it.
            while stream.read(&mut chunk).await? > 0 {}
            return Ok(());
        }
        Reply::Huge { bytes, sized } => {
            let framing = if sized {
                format!("Content-Length: {bytes}")
            } else {
                "Transfer-Encoding: chunked".to_owned()
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{framing}\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await?;
            let mut left = bytes;
            while left > 0 {
                let n = left.min(BLOCK.len() as u64) as usize;
                if !sized {
                    stream.write_all(format!("{n:x}\r\n").as_bytes()).await?;
                }
                // Fails as soon as the client hangs up, which is what a limit does.
                stream.write_all(&BLOCK[..n]).await?;
                if !sized {
                    stream.write_all(b"\r\n").await?;
                }
                left -= n as u64;
            }
            if !sized {
                stream.write_all(b"0\r\n\r\n").await?;
            }
        }
    }
    stream.shutdown().await
}
