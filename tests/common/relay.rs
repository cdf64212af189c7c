//! A delaying relay on loopback, for links slower than loopback (this
//! kernel has no netem): what a client sends reaches the server `up` later,
//! what the server sends reaches the client `down` later, over TCP (a
//! connection to the server is made `up` after the client's, as its
//! handshake would arrive) or UDP (each datagram and its answer). Every
//! thread ends within a bounded time once the relay is dropped.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

/// Longest a relay or any of its threads lives.
const LIFETIME: Duration = Duration::from_secs(120);
/// How often a waiting thread looks at the stop flag.
const TICK: Duration = Duration::from_millis(20);

/// A relay to one backend; stopped when dropped.
pub struct Relay {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Relay {
    /// `HOST:PORT` of the relay, as jamc takes it.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// A TCP relay to `backend`.
    pub fn tcp(backend: SocketAddr, up: Duration, down: Duration) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("relay addr");
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        thread::spawn(move || {
            let end = Instant::now() + LIFETIME;
            while !s.load(Ordering::SeqCst) && Instant::now() < end {
                match listener.accept() {
                    Ok((client, _)) => {
                        let s = s.clone();
                        thread::spawn(move || connection(client, backend, up, down, &s));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Relay { addr, stop }
    }

    /// A UDP relay to `backend`: each datagram from a client goes out from a
    /// socket of its own, and the answer comes back to that client.
    pub fn udp(backend: SocketAddr, up: Duration, down: Duration) -> Relay {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind relay");
        socket.set_read_timeout(Some(TICK)).expect("timeout");
        let addr = socket.local_addr().expect("relay addr");
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        thread::spawn(move || {
            let end = Instant::now() + LIFETIME;
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::SeqCst) && Instant::now() < end {
                let Ok((n, client)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let arrived = Instant::now();
                let datagram = buf[..n].to_vec();
                let Ok(back) = socket.try_clone() else {
                    continue;
                };
                thread::spawn(move || {
                    sleep_until(arrived + up);
                    let Ok(out) = UdpSocket::bind("127.0.0.1:0") else {
                        return;
                    };
                    let _ = out.set_read_timeout(Some(Duration::from_secs(2)));
                    // Connected: only the backend's answer is taken, never a
                    // stray datagram another test's server sent to a port
                    // this socket now has.
                    if out.connect(backend).is_err() || out.send(&datagram).is_err() {
                        return;
                    }
                    let mut answer = [0u8; 2048];
                    if let Ok(n) = out.recv(&mut answer) {
                        let got = Instant::now();
                        sleep_until(got + down);
                        let _ = back.send_to(&answer[..n], client);
                    }
                });
            }
        });
        Relay { addr, stop }
    }
}

fn sleep_until(t: Instant) {
    thread::sleep(t.saturating_duration_since(Instant::now()));
}

/// One relayed connection: the server is reached `up` after the client came.
fn connection(
    client: TcpStream,
    backend: SocketAddr,
    up: Duration,
    down: Duration,
    stop: &Arc<AtomicBool>,
) {
    sleep_until(Instant::now() + up);
    let Ok(server) = TcpStream::connect_timeout(&backend, Duration::from_secs(2)) else {
        return;
    };
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let s = stop.clone();
    thread::spawn(move || pipe(c2, s2, up, &s));
    pipe(server, client, down, stop);
}

/// Copies `from` to `to`, each chunk `delay` after it arrived; the end of
/// `from` becomes a shutdown of `to`'s sending side.
fn pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration, stop: &Arc<AtomicBool>) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let s = stop.clone();
    thread::spawn(move || {
        let end = Instant::now() + LIFETIME;
        while let Ok((arrived, chunk)) = rx.recv_timeout(LIFETIME) {
            sleep_until(arrived + delay);
            if chunk.is_empty() || s.load(Ordering::SeqCst) || Instant::now() > end {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            if to.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    let _ = from.set_read_timeout(Some(TICK));
    let end = Instant::now() + LIFETIME;
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) && Instant::now() < end {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = tx.send((Instant::now(), Vec::new()));
}
