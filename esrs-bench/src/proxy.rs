//! A TCP proxy in front of PostgreSQL that counts round trips: the client's `Sync` and
//! simple `Query` messages, each of which ends a batch of messages the client sends before
//! it waits for the server's answer. A `Sync` sent alone is a liveness ping (sqlx's pool
//! pings every connection returned to it) and is counted apart from statements.
//!
//! Only used to count, never to time: every connection's traffic passes through it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::workloads::BoxError;

/// The counting proxy; dropping it stops accepting connections.
#[derive(Debug)]
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    counters: Arc<Counters>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Proxy {
    /// Listens on a free local port and forwards every connection to `upstream`.
    pub(crate) async fn start(upstream: SocketAddr) -> Result<Self, BoxError> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let counter = counters.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        let _ = forward(client, server, counter).await;
                    }
                });
            }
        });
        Ok(Self {
            addr,
            counters,
            accept,
        })
    }

    /// Round trips counted so far: (statements, pings).
    pub(crate) fn round_trips(&self) -> (u64, u64) {
        (
            self.counters.statements.load(Ordering::SeqCst),
            self.counters.pings.load(Ordering::SeqCst),
        )
    }
}

#[derive(Debug, Default)]
struct Counters {
    statements: AtomicU64,
    pings: AtomicU64,
}

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;

async fn forward(
    client: TcpStream,
    server: TcpStream,
    counter: Arc<Counters>,
) -> Result<(), BoxError> {
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let back = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    });
    // Start-up messages have no type byte; an SSL or GSS request is followed by another.
    loop {
        let len = client_read.read_u32().await?;
        let mut body = vec![0; (len as usize).saturating_sub(4)];
        client_read.read_exact(&mut body).await?;
        server_write.write_u32(len).await?;
        server_write.write_all(&body).await?;
        let code = body
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        if code != Some(SSL_REQUEST) && code != Some(GSSENC_REQUEST) {
            break;
        }
    }
    // Then typed messages: a type byte, a length that counts itself, a body.
    let mut body = Vec::new();
    let mut since_sync = 0;
    while let Ok(kind) = client_read.read_u8().await {
        let len = client_read.read_u32().await?;
        body.resize((len as usize).saturating_sub(4), 0);
        client_read.read_exact(&mut body).await?;
        let mut message = Vec::with_capacity(body.len() + 5);
        message.push(kind);
        message.extend_from_slice(&len.to_be_bytes());
        message.extend_from_slice(&body);
        server_write.write_all(&message).await?;
        match kind {
            b'Q' => {
                counter.statements.fetch_add(1, Ordering::SeqCst);
            }
            b'S' if since_sync == 0 => {
                counter.pings.fetch_add(1, Ordering::SeqCst);
            }
            b'S' => {
                counter.statements.fetch_add(1, Ordering::SeqCst);
                since_sync = 0;
            }
            _ => since_sync += 1,
        }
    }
    back.abort();
    Ok(())
}
