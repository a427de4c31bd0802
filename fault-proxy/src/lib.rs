//! A TCP proxy on loopback that injects network faults, for steadfast's
//! reliability tests.
//!
//! Put a [`FaultProxy`] between a client and its server (Redis, PostgreSQL, an
//! HTTP fake) and point the client at [`FaultProxy::addr`]. Bytes pass through
//! unchanged until a [`FaultHandle`] says otherwise:
//!
//! | call | what the client sees |
//! | --- | --- |
//! | [`set_latency`](FaultHandle::set_latency) | every chunk, each way, delayed by that much |
//! | [`cut`](FaultHandle::cut) | every open connection reset at once |
//! | [`refuse_new`](FaultHandle::refuse_new) | new connections refused (`ECONNREFUSED`): the port is closed |
//! | [`black_hole`](FaultHandle::black_hole) | bytes vanish both ways; connections stay open and silent |
//! | [`outage`](FaultHandle::outage) | the server is gone: refused and cut together |
//! | [`restore`](FaultHandle::restore) | everything passes again, on the same port |
//!
//! It listens on `127.0.0.1` only and forwards only to a loopback address: it
//! is a test tool, never a network hop.
//!
//! ```
//! use fault_proxy::FaultProxy;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # #[tokio::main] async fn main() -> std::io::Result<()> {
//! # let server = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! # let upstream = server.local_addr()?;
//! # tokio::spawn(async move { loop { let (mut s, _) = server.accept().await.unwrap();
//! #   tokio::spawn(async move { let (mut r, mut w) = s.split(); let _ = tokio::io::copy(&mut r, &mut w).await; }); } });
//! let proxy = FaultProxy::start(upstream).await?;
//! let faults = proxy.handle();
//!
//! faults.refuse_new().await?;
//! assert!(tokio::net::TcpStream::connect(proxy.addr()).await.is_err());
//!
//! faults.restore().await?;
//! let mut client = tokio::net::TcpStream::connect(proxy.addr()).await?;
//! client.write_all(b"ping").await?;
//! let mut echo = [0; 4];
//! client.read_exact(&mut echo).await?;
//! assert_eq!(&echo, b"ping");
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

use std::{
    collections::HashMap,
    io,
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpSocket, TcpStream, tcp::OwnedReadHalf, tcp::OwnedWriteHalf},
    sync::watch,
    task::JoinHandle,
};

/// How long [`FaultHandle::restore`] tries to bind the port again.
const REBIND_FOR: Duration = Duration::from_secs(5);

/// The faults in force.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Faults {
    latency: Duration,
    black_hole: bool,
    refuse: bool,
}

#[derive(Debug)]
struct Shared {
    addr: SocketAddr,
    upstream: SocketAddr,
    faults: watch::Sender<Faults>,
    /// Whether the port is open, as the accept task last reported it.
    listening: watch::Sender<bool>,
    /// The connections being forwarded, by id, to be reset by a cut.
    connections: Mutex<HashMap<u64, JoinHandle<()>>>,
    next_id: AtomicU64,
    accepted: AtomicU64,
    /// Bytes a black hole has swallowed, both ways.
    swallowed: Arc<AtomicU64>,
}

/// A fault-injecting TCP proxy on `127.0.0.1`, forwarding to one loopback
/// upstream. Dropping it closes the port and resets every connection.
#[derive(Debug)]
pub struct FaultProxy {
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

/// Commands the faults of a [`FaultProxy`]; cheap to clone.
#[derive(Debug, Clone)]
pub struct FaultHandle {
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Starts a proxy on an ephemeral port of `127.0.0.1`, forwarding to
    /// `upstream`, which must be a loopback address.
    pub async fn start(upstream: SocketAddr) -> io::Result<Self> {
        if !upstream.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("fault-proxy forwards to loopback only, not {upstream}"),
            ));
        }
        let listener = bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            addr,
            upstream,
            faults: watch::Sender::new(Faults::default()),
            listening: watch::Sender::new(true),
            connections: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            swallowed: Arc::new(AtomicU64::new(0)),
        });
        let accept = tokio::spawn(accept_loop(shared.clone(), listener));
        Ok(Self { shared, accept })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The handle that injects and lifts faults.
    pub fn handle(&self) -> FaultHandle {
        FaultHandle {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        for (_, task) in self.shared.connections.lock().unwrap().drain() {
            task.abort();
        }
    }
}

impl FaultHandle {
    /// Delays every chunk forwarded, in each direction, by `latency` (zero
    /// lifts it). Applies to open connections from their next chunk on.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.faults.send_modify(|f| f.latency = latency);
    }

    /// Swallows every byte, both ways, on open and new connections alike:
    /// connections stay up and nothing answers, as behind a dead route.
    pub fn black_hole(&self) {
        self.shared.faults.send_modify(|f| f.black_hole = true);
    }

    /// Resets every open connection (new ones are still accepted unless
    /// [`refuse_new`](Self::refuse_new) is in force). Returns once they are closed.
    pub async fn cut(&self) {
        let tasks: Vec<_> = self
            .shared
            .connections
            .lock()
            .unwrap()
            .drain()
            .map(|(_, task)| task)
            .collect();
        for task in tasks {
            task.abort();
            // Aborted: its sockets are dropped, with zero linger, so reset.
            let _ = task.await;
        }
    }

    /// Closes the port: new connections are refused until [`restore`](Self::restore).
    /// Returns once the port is closed.
    pub async fn refuse_new(&self) -> io::Result<()> {
        self.shared.faults.send_modify(|f| f.refuse = true);
        self.wait_listening(false).await
    }

    /// The server is gone: the port closed and every open connection reset.
    pub async fn outage(&self) -> io::Result<()> {
        self.refuse_new().await?;
        self.cut().await;
        Ok(())
    }

    /// Lifts every fault: no latency, no black hole, the port open again (the
    /// same one). Returns once it accepts connections.
    pub async fn restore(&self) -> io::Result<()> {
        self.shared.faults.send_replace(Faults::default());
        tokio::time::timeout(REBIND_FOR, self.wait_listening(true))
            .await
            .unwrap_or_else(|_| {
                Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("could not listen on {} again", self.shared.addr),
                ))
            })
    }

    /// How many connections are being forwarded now.
    pub fn open_connections(&self) -> usize {
        let mut connections = self.shared.connections.lock().unwrap();
        connections.retain(|_, task| !task.is_finished());
        connections.len()
    }

    /// How many bytes black holes have swallowed since the start, both ways.
    pub fn swallowed_bytes(&self) -> u64 {
        self.shared.swallowed.load(Relaxed)
    }

    /// How many connections were accepted since the start.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Relaxed)
    }

    async fn wait_listening(&self, listening: bool) -> io::Result<()> {
        let mut rx = self.shared.listening.subscribe();
        rx.wait_for(|now| *now == listening)
            .await
            .map(|_| ())
            .map_err(|_| io::Error::other("the proxy's accept task stopped"))
    }
}

/// A listener on `addr` that may be bound again as soon as it is closed.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Accepts while the port should be open; closes and reopens it on command.
async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut faults = shared.faults.subscribe();
    let mut listener = Some(listener);
    loop {
        let refuse = faults.borrow_and_update().refuse;
        if refuse && listener.is_some() {
            // Dropping the listener closes the port: connects are refused.
            listener = None;
            shared.listening.send_replace(false);
        } else if !refuse && listener.is_none() {
            match bind(shared.addr) {
                Ok(l) => {
                    listener = Some(l);
                    shared.listening.send_replace(true);
                }
                Err(_) => {
                    // The port is briefly unavailable; try again shortly.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        match &listener {
            Some(l) => tokio::select! {
                accepted = l.accept() => {
                    if let Ok((client, _)) = accepted {
                        spawn_connection(&shared, client);
                    }
                }
                changed = faults.changed() => if changed.is_err() { return },
            },
            None => {
                if faults.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

fn spawn_connection(shared: &Arc<Shared>, client: TcpStream) {
    shared.accepted.fetch_add(1, Relaxed);
    let id = shared.next_id.fetch_add(1, Relaxed);
    let faults = shared.faults.subscribe();
    let upstream = shared.upstream;
    let swallowed = shared.swallowed.clone();
    let weak = Arc::downgrade(shared);
    // Registered before it can finish, so its own removal below always finds it.
    let mut connections = shared.connections.lock().unwrap();
    let task = tokio::spawn(async move {
        let _ = forward(client, upstream, faults, swallowed).await;
        if let Some(shared) = weak.upgrade() {
            shared.connections.lock().unwrap().remove(&id);
        }
    });
    connections.insert(id, task);
}

/// Forwards one connection until either side closes or fails.
async fn forward(
    client: TcpStream,
    upstream: SocketAddr,
    faults: watch::Receiver<Faults>,
    swallowed: Arc<AtomicU64>,
) -> io::Result<()> {
    // Zero linger: a cut (the task dropped) resets the sockets, as a crash would.
    client.set_zero_linger()?;
    let server = TcpStream::connect(upstream).await?;
    server.set_zero_linger()?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        r = pump(client_read, server_write, faults.clone(), &swallowed) => r,
        r = pump(server_read, client_write, faults, &swallowed) => r,
    }
}

/// Copies one direction, chunk by chunk, applying the faults in force.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    faults: watch::Receiver<Faults>,
    swallowed: &AtomicU64,
) -> io::Result<()> {
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        let now = *faults.borrow();
        if now.black_hole {
            swallowed.fetch_add(n as u64, Relaxed);
            continue;
        }
        if !now.latency.is_zero() {
            tokio::time::sleep(now.latency).await;
        }
        to.write_all(&buf[..n]).await?;
    }
}

#[cfg(test)]
mod tests;
