//! A TCP proxy in front of the local RabbitMQ that reads the AMQP 0-9-1 frames going by, to
//! play a broker in trouble without raising an alarm on the shared broker (a
//! `rabbitmqctl` alarm would block every other test):
//! - [`Fault::StallAtPublish`]: from the client's first `basic.publish` on, forwards
//!   nothing more to the broker, as a broker under a memory or disk alarm stops reading a
//!   publishing connection: nothing is confirmed, no close is answered. The proxy keeps
//!   reading (and dropping) what the client sends, to see when the client's socket ends;
//! - [`Fault::Block`]: sends the client `connection.blocked` with a reason (between two of
//!   the broker's frames, just before `confirm.select-ok`), and `connection.unblocked` when
//!   told to.
//!
//! A new connection takes the fault set at the time it is accepted.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    StallAtPublish,
    Block,
}

pub struct AmqpProxy {
    pub port: u16,
    fault: Arc<Mutex<Fault>>,
    unblock: Arc<Notify>,
    /// A connection reached a `basic.publish` the proxy did not forward.
    pub stalled: Arc<Notify>,
    /// A stalled connection's client ended its socket.
    pub client_gone: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AmqpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The `connection.blocked` reason the proxy sends.
pub const BLOCKED_REASON: &str = "low on memory (test proxy 7f3a)";

const FRAME_METHOD: u8 = 1;
const FRAME_END: u8 = 0xCE;

fn method_frame(class: u16, method: u16, args: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&class.to_be_bytes());
    payload.extend_from_slice(&method.to_be_bytes());
    payload.extend_from_slice(args);
    let mut frame = vec![FRAME_METHOD, 0, 0];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    frame.push(FRAME_END);
    frame
}

/// One whole frame, and its (class, method) when it is a method frame.
async fn read_frame(r: &mut (impl AsyncReadExt + Unpin)) -> Option<(Vec<u8>, Option<(u16, u16)>)> {
    let mut header = [0u8; 7];
    r.read_exact(&mut header).await.ok()?;
    let size = u32::from_be_bytes(header[3..7].try_into().unwrap()) as usize;
    // Bounded: the broker negotiates frames of 32 KiB with us.
    if size > 1 << 20 {
        return None;
    }
    let mut rest = vec![0u8; size + 1];
    r.read_exact(&mut rest).await.ok()?;
    let method = (header[0] == FRAME_METHOD && size >= 4).then(|| {
        (
            u16::from_be_bytes([rest[0], rest[1]]),
            u16::from_be_bytes([rest[2], rest[3]]),
        )
    });
    let mut frame = header.to_vec();
    frame.extend_from_slice(&rest);
    Some((frame, method))
}

impl AmqpProxy {
    pub async fn start(fault: Fault) -> AmqpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let fault = Arc::new(Mutex::new(fault));
        let unblock = Arc::new(Notify::new());
        let stalled = Arc::new(Notify::new());
        let client_gone = Arc::new(Notify::new());
        let (f, u, s, g) = (
            fault.clone(),
            unblock.clone(),
            stalled.clone(),
            client_gone.clone(),
        );
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mode = *f.lock().unwrap();
                tokio::spawn(serve(client, mode, u.clone(), s.clone(), g.clone()));
            }
        });
        AmqpProxy {
            port,
            fault,
            unblock,
            stalled,
            client_gone,
            task,
        }
    }

    /// The fault of the connections accepted from now on.
    pub fn set_fault(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }

    /// Sends `connection.unblocked` to the blocked connection.
    pub fn unblock(&self) {
        self.unblock.notify_one();
    }
}

async fn serve(
    client: TcpStream,
    fault: Fault,
    unblock: Arc<Notify>,
    stalled: Arc<Notify>,
    client_gone: Arc<Notify>,
) {
    let Ok(broker) = TcpStream::connect("127.0.0.1:5672").await else {
        return;
    };
    let (mut client_r, mut client_w) = client.into_split();
    let (mut broker_r, mut broker_w) = broker.into_split();
    // Everything written to the client goes through one writer, so an injected frame always
    // falls between two of the broker's.
    let (to_client, mut frames) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(async move {
        while let Some(f) = frames.recv().await {
            if client_w.write_all(&f).await.is_err() {
                return;
            }
        }
    });
    let inject = to_client.clone();
    let down = tokio::spawn(async move {
        while let Some((frame, method)) = read_frame(&mut broker_r).await {
            // Just before confirm.select-ok: the client knows it is blocked before it can
            // publish anything (after it, the client's first publishes could beat the news).
            if fault == Fault::Block && method == Some((85, 11)) {
                let mut reason = vec![BLOCKED_REASON.len() as u8];
                reason.extend_from_slice(BLOCKED_REASON.as_bytes());
                let _ = to_client.send(method_frame(10, 60, &reason));
                let (inject, unblock) = (inject.clone(), unblock.clone());
                tokio::spawn(async move {
                    unblock.notified().await;
                    let _ = inject.send(method_frame(10, 61, &[]));
                });
            }
            if to_client.send(frame).is_err() {
                return;
            }
        }
    });
    // The protocol header, then frames.
    let mut header = [0u8; 8];
    if client_r.read_exact(&mut header).await.is_ok() && broker_w.write_all(&header).await.is_ok() {
        while let Some((frame, method)) = read_frame(&mut client_r).await {
            if fault == Fault::StallAtPublish && method == Some((60, 40)) {
                stalled.notify_one();
                let mut sink = [0u8; 4096];
                while matches!(client_r.read(&mut sink).await, Ok(n) if n > 0) {}
                client_gone.notify_one();
                // The broker's side stays open: only the client may end this connection.
                std::future::pending::<()>().await;
            }
            if broker_w.write_all(&frame).await.is_err() {
                break;
            }
        }
    }
    down.abort();
    writer.abort();
}
