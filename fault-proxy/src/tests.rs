//! The proxy against a real echo server on loopback. Real sockets: every wait
//! is on a condition (bytes read, a connect refused), bounded by a timeout.

use std::sync::Arc;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Mutex as AsyncMutex,
};

use super::*;

/// The longest any condition in these tests may take.
const BOUND: Duration = Duration::from_secs(5);

/// An echo server that also keeps every byte it received.
struct Echo {
    addr: SocketAddr,
    received: Arc<AsyncMutex<Vec<u8>>>,
}

async fn echo() -> Echo {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(AsyncMutex::new(Vec::new()));
    let log = received.clone();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = [0; 1024];
                loop {
                    let n = match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    log.lock().await.extend_from_slice(&buf[..n]);
                    if socket.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Echo { addr, received }
}

async fn round_trip(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<Vec<u8>> {
    stream.write_all(bytes).await?;
    let mut back = vec![0; bytes.len()];
    tokio::time::timeout(BOUND, stream.read_exact(&mut back))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no echo"))??;
    Ok(back)
}

async fn connect(proxy: &FaultProxy) -> TcpStream {
    TcpStream::connect(proxy.addr()).await.unwrap()
}

/// Polls `condition` every 5 ms until it holds, failing after [`BOUND`].
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !condition() {
        assert!(start.elapsed() < BOUND, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn forwards_both_ways_and_counts_connections() {
    let echo = echo().await;
    let proxy = FaultProxy::start(echo.addr).await.unwrap();
    assert!(proxy.addr().ip().is_loopback());
    let faults = proxy.handle();
    let mut a = connect(&proxy).await;
    let mut b = connect(&proxy).await;
    assert_eq!(round_trip(&mut a, b"hello").await.unwrap(), b"hello");
    assert_eq!(round_trip(&mut b, b"world").await.unwrap(), b"world");
    assert_eq!(faults.accepted(), 2);
    assert_eq!(faults.open_connections(), 2);
    drop(a);
    eventually("a closed connection is forgotten", || {
        faults.open_connections() == 1
    })
    .await;
}

#[tokio::test]
async fn refuses_anything_but_a_loopback_upstream() {
    let err = FaultProxy::start("192.0.2.1:6379".parse().unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[tokio::test]
async fn cut_resets_open_connections_and_new_ones_still_work() {
    let echo = echo().await;
    let proxy = FaultProxy::start(echo.addr).await.unwrap();
    let faults = proxy.handle();
    let mut old = connect(&proxy).await;
    round_trip(&mut old, b"before").await.unwrap();

    faults.cut().await;
    assert_eq!(faults.open_connections(), 0);
    // The old connection is dead: a read ends (reset or EOF) without data.
    let mut buf = [0; 8];
    let read = tokio::time::timeout(BOUND, old.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

    let mut new = connect(&proxy).await;
    assert_eq!(round_trip(&mut new, b"after").await.unwrap(), b"after");
}

#[tokio::test]
async fn refuse_new_closes_the_port_and_restore_reopens_the_same_one() {
    let echo = echo().await;
    let proxy = FaultProxy::start(echo.addr).await.unwrap();
    let faults = proxy.handle();
    let mut survivor = connect(&proxy).await;
    // Accepted by the proxy, not just queued by the kernel: closing the port
    // resets connections still in its backlog.
    round_trip(&mut survivor, b"in").await.unwrap();

    faults.refuse_new().await.unwrap();
    let refused = TcpStream::connect(proxy.addr()).await.unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    // Refusing new connections leaves the open ones alone.
    assert_eq!(round_trip(&mut survivor, b"still").await.unwrap(), b"still");

    faults.restore().await.unwrap();
    let mut back = connect(&proxy).await;
    assert_eq!(round_trip(&mut back, b"back").await.unwrap(), b"back");
    assert_eq!(faults.accepted(), 2);
}

#[tokio::test]
async fn outage_is_refused_and_cut_together() {
    let echo = echo().await;
    let proxy = FaultProxy::start(echo.addr).await.unwrap();
    let faults = proxy.handle();
    let mut old = connect(&proxy).await;
    round_trip(&mut old, b"x").await.unwrap();

    faults.outage().await.unwrap();
    assert_eq!(faults.open_connections(), 0);
    assert!(round_trip(&mut old, b"y").await.is_err());
    assert_eq!(
        TcpStream::connect(proxy.addr()).await.unwrap_err().kind(),
        io::ErrorKind::ConnectionRefused
    );

    faults.restore().await.unwrap();
    let mut new = connect(&proxy).await;
    assert_eq!(round_trip(&mut new, b"z").await.unwrap(), b"z");
}

#[tokio::test]
async fn black_hole_swallows_bytes_until_restored() {
    let echo = echo().await;
    let proxy = FaultProxy::start(echo.addr).await.unwrap();
    let faults = proxy.handle();
    let mut client = connect(&proxy).await;
    round_trip(&mut client, b"seen;").await.unwrap();

    faults.black_hole();
    client.write_all(b"lost;").await.unwrap();
    // A connection opened during the black hole is accepted and silent too.
    let mut late = connect(&proxy).await;
    late.write_all(b"late-lost;").await.unwrap();
    // The proxy read and dropped them: they will never reach the server.
    eventually("the black hole swallowed both writes", || {
        faults.swallowed_bytes() == 15
    })
    .await;
    assert_eq!(faults.open_connections(), 2, "the connections stay up");

    faults.restore().await.unwrap();
    // The next bytes pass; what the echo sends back is only them, so the
    // swallowed ones never reached the server nor came back.
    assert_eq!(round_trip(&mut client, b"again;").await.unwrap(), b"again;");
    assert_eq!(echo.received.lock().await.as_slice(), b"seen;again;");
}

#[tokio::test(start_paused = true)]
async fn latency_delays_each_direction() {
    let echo = echo().await;
    let proxy = FaultProxy::start(echo.addr).await.unwrap();
    let faults = proxy.handle();
    let mut client = connect(&proxy).await;

    faults.set_latency(Duration::from_millis(250));
    let start = tokio::time::Instant::now();
    // No timeout here: on a paused clock it would fire while bytes are on the wire.
    client.write_all(b"slow").await.unwrap();
    let mut back = [0; 4];
    client.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"slow");
    // 250 ms to the server, 250 ms back (paused clock: no real wait).
    assert!(
        start.elapsed() >= Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );

    faults.restore().await.unwrap();
    let start = tokio::time::Instant::now();
    client.write_all(b"fast").await.unwrap();
    client.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"fast");
    assert!(
        start.elapsed() < Duration::from_millis(250),
        "{:?}",
        start.elapsed()
    );
}
