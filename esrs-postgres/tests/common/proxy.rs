//! A TCP proxy between a client and PostgreSQL that records the client's protocol messages,
//! to count statements and round trips, and that can cut every connection.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use esrs_postgres::sqlx::PgPool;
use esrs_postgres::sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct Shared {
    /// The type bytes of the client's messages since the last reset.
    messages: Vec<u8>,
    /// Aborts the connections' tasks.
    tasks: Vec<tokio::task::AbortHandle>,
}

/// A running proxy.
pub struct Proxy {
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// The address of the test server, for a proxy.
pub async fn upstream() -> SocketAddr {
    let options = super::connect_options();
    tokio::net::lookup_host((options.get_host(), options.get_port()))
        .await
        .expect("resolve")
        .next()
        .expect("an address")
}

impl Proxy {
    /// A proxy in front of the test server.
    pub async fn to_test_server() -> Self {
        Self::start(upstream().await).await
    }

    /// Options to connect to the test database through the proxy.
    pub fn connect_options(&self) -> PgConnectOptions {
        super::connect_options()
            .host("127.0.0.1")
            .port(self.addr.port())
            .ssl_mode(PgSslMode::Disable)
    }

    /// A pool of up to `max_connections` connections through the proxy, which does not ping
    /// before handing one out and waits at most a second for one.
    pub async fn pool(&self, max_connections: u32) -> PgPool {
        PgPoolOptions::new()
            .max_connections(max_connections)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(1))
            .connect_with(self.connect_options())
            .await
            .expect("connect through the proxy")
    }

    /// Listens on a free local port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let shared = Arc::new(Mutex::new(Shared::default()));
        let accept = {
            let shared = shared.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        continue;
                    };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let down = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                    });
                    let recorder = shared.clone();
                    let up = tokio::spawn(async move {
                        let _ =
                            forward_client(&mut client_read, &mut server_write, &recorder).await;
                    });
                    let mut s = shared.lock().unwrap();
                    s.tasks.push(down.abort_handle());
                    s.tasks.push(up.abort_handle());
                }
            })
        };
        Self {
            addr,
            shared,
            accept,
        }
    }

    /// How many connections the proxy has accepted.
    pub fn connections(&self) -> usize {
        self.shared.lock().unwrap().tasks.len() / 2
    }

    /// Forgets the messages recorded so far.
    pub fn reset(&self) {
        self.shared.lock().unwrap().messages.clear();
    }

    /// The client's message types since the last reset, e.g. `"BES"`.
    pub fn messages(&self) -> String {
        String::from_utf8_lossy(&self.shared.lock().unwrap().messages).into_owned()
    }

    /// Cuts every connection and refuses new ones, as a crashed server or network would.
    pub fn cut(&self) {
        self.accept.abort();
        for task in self.shared.lock().unwrap().tasks.drain(..) {
            task.abort();
        }
    }
}

/// Copies the client's bytes to the server, recording each message's type byte.
async fn forward_client(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    shared: &Mutex<Shared>,
) -> std::io::Result<()> {
    // Startup-phase messages have no type byte: a length, then a code. SSL and GSS
    // encryption requests are answered with one byte and followed by another untyped one.
    loop {
        let len = from.read_u32().await?;
        let mut body = vec![0; len as usize - 4];
        from.read_exact(&mut body).await?;
        to.write_u32(len).await?;
        to.write_all(&body).await?;
        let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        if code != 80_877_103 && code != 80_877_104 {
            break;
        }
    }
    loop {
        let kind = from.read_u8().await?;
        let len = from.read_u32().await?;
        let mut body = vec![0; len as usize - 4];
        from.read_exact(&mut body).await?;
        shared.lock().unwrap().messages.push(kind);
        to.write_u8(kind).await?;
        to.write_u32(len).await?;
        to.write_all(&body).await?;
    }
}
