//! UDP listeners, read by the workers like TCP ones: every datagram
//! (whatever it holds) is answered with one datagram to its source, in
//! batches (`recvmmsg(2)` / `sendmmsg(2)`), so that a datagram costs about
//! what the kernel makes it cost.
//!
//! A datagram gets no answer, and is counted (and logged like a refused
//! connection), when its source is a bad one ([`bad_source`]), when
//! `[access]` denies it, or when its source's rate bucket has no token (the
//! bucket its TCP connections take from). Answering never blocks: when the
//! send buffer is full the reply is dropped and counted `send_failed`.
//! jamd.toml(5), `[daytime]` and `[rfc868]`, says what an operator sees.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use mio::net::UdpSocket;

use super::{Runtime, Shared};
use crate::clock::{unix_now, ClockCache};
use crate::listener::{Protocol, Transport};
use crate::metrics::DatagramRefused;

/// The most bytes of a datagram read (the rest is discarded: nothing in a
/// request is looked at).
const READ_BYTES: usize = 512;
/// Datagrams moved by one system call.
#[cfg(any(target_os = "linux", target_os = "android"))]
const BATCH: usize = crate::sys::DATAGRAM_BATCH;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const BATCH: usize = 32;
/// Batches one socket may take per turn before the others get theirs.
const BATCHES_PER_TURN: usize = 8;

/// One UDP listener as a worker holds it (a duplicate of the shared socket).
pub(crate) struct Datagrams {
    socket: UdpSocket,
    protocol: Protocol,
}

/// What serving a socket for one turn left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Served {
    /// The socket is empty: wait for its next event.
    Drained,
    /// The turn ended with datagrams possibly still queued: serve it again
    /// after the others.
    More,
}

/// A worker's buffers for datagrams, reused for every batch.
pub(crate) struct Batch {
    bufs: Box<[[u8; READ_BYTES]]>,
    got: Vec<(usize, Option<SocketAddr>)>,
    /// The sources to answer in this batch.
    to: Vec<SocketAddr>,
    /// The reply, the same for every datagram of a batch.
    reply: Vec<u8>,
    /// The daytime line, rendered once per second (or whatever the format
    /// shows) whichever datagram asks.
    cache: ClockCache,
}

impl Batch {
    pub(crate) fn new() -> Batch {
        Batch {
            bufs: vec![[0u8; READ_BYTES]; BATCH].into_boxed_slice(),
            got: vec![(0, None); BATCH],
            to: Vec::with_capacity(BATCH),
            reply: Vec::with_capacity(64),
            cache: ClockCache::new(),
        }
    }
}

/// Whether a datagram from `from` must not be answered: from port 0 or a
/// port below 1024 (another service's: two UDP services answering each
/// other would loop for ever), or from an unspecified, multicast or
/// broadcast address (a forged source aiming the reply at a network).
pub(crate) fn bad_source(from: &SocketAddr) -> bool {
    if from.port() < 1024 {
        return true;
    }
    match from.ip().to_canonical() {
        IpAddr::V4(ip) => ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast(),
        IpAddr::V6(ip) => ip.is_unspecified() || ip.is_multicast(),
    }
}

impl Datagrams {
    pub(crate) fn new(socket: std::net::UdpSocket, protocol: Protocol) -> io::Result<Datagrams> {
        socket.set_nonblocking(true)?;
        Ok(Datagrams {
            socket: UdpSocket::from_std(socket),
            protocol,
        })
    }

    pub(crate) fn socket_mut(&mut self) -> &mut UdpSocket {
        &mut self.socket
    }

    /// Answers what is queued on the socket, a batch at a time, for one
    /// turn at most. `worker` is the id of the worker's metrics shard.
    pub(crate) fn serve(
        &mut self,
        b: &mut Batch,
        shared: &Shared,
        rt: &Arc<Runtime>,
        worker: usize,
    ) -> Served {
        let metrics = shared.metrics.worker(worker);
        for _ in 0..BATCHES_PER_TURN {
            let n = match recv(&self.socket, &mut b.bufs, &mut b.got) {
                Ok(0) => return Served::Drained,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Served::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // An ICMP error reported for an earlier reply, or the like:
                // nothing to do about it here, and the queue may hold more.
                Err(_) => continue,
            };
            metrics.datagrams(self.protocol, n as u64);
            b.to.clear();
            for &(_, from) in &b.got[..n] {
                let Some(from) = from else { continue };
                let verdict = if bad_source(&from) {
                    Err(DatagramRefused::BadSource)
                } else {
                    shared.admission.datagram(rt, from.ip())
                };
                match verdict {
                    Ok(()) => b.to.push(from),
                    Err(why) => {
                        metrics.datagrams_refused(why, 1);
                        shared.log_refused_datagram(&from, why, self.protocol);
                    }
                }
            }
            if !b.to.is_empty() {
                // Rendered after the batch arrived: no reply shows a second
                // already past when its datagram came.
                b.reply.clear();
                match self.protocol {
                    Protocol::Daytime => {
                        crate::daytime::write_reply(&mut b.reply, &mut b.cache, &rt.daytime_clock)
                    }
                    Protocol::Rfc868 => b
                        .reply
                        .extend_from_slice(&crate::rfc868::reply_at(unix_now().0)),
                    // A JAM listener is never a UDP one (jamd.toml(5)).
                    Protocol::Jam => {}
                }
                let (sent, failed) = send_all(&self.socket, &b.to, &b.reply);
                metrics.replies(self.protocol, Transport::Udp, sent);
                metrics.datagrams_refused(DatagramRefused::SendFailed, failed);
            }
            if n < BATCH {
                return Served::Drained;
            }
        }
        Served::More
    }
}

/// One batch of datagrams: how many, each's length and source in `got`.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn recv(
    socket: &UdpSocket,
    bufs: &mut [[u8; READ_BYTES]],
    got: &mut [(usize, Option<SocketAddr>)],
) -> io::Result<usize> {
    crate::sys::recv_datagrams(socket, bufs, got)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn recv(
    socket: &UdpSocket,
    bufs: &mut [[u8; READ_BYTES]],
    got: &mut [(usize, Option<SocketAddr>)],
) -> io::Result<usize> {
    let mut n = 0;
    while n < bufs.len().min(got.len()) {
        match socket.recv_from(&mut bufs[n]) {
            Ok((len, from)) => got[n] = (len, Some(from)),
            Err(e) if n > 0 && e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
        n += 1;
    }
    Ok(n)
}

/// Sends `reply` to each of `to`, never waiting: returns how many were
/// sent and how many were dropped (a full send buffer drops the rest of the
/// batch; another failure drops the one it happened to).
fn send_all(socket: &UdpSocket, to: &[SocketAddr], reply: &[u8]) -> (u64, u64) {
    let (mut sent, mut failed) = (0u64, 0u64);
    let mut next = 0;
    while next < to.len() {
        match send(socket, &to[next..], reply) {
            Ok(0) => {
                failed += (to.len() - next) as u64;
                break;
            }
            Ok(n) => {
                sent += n as u64;
                next += n;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                failed += (to.len() - next) as u64;
                break;
            }
            Err(_) => {
                failed += 1;
                next += 1;
            }
        }
    }
    (sent, failed)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn send(socket: &UdpSocket, to: &[SocketAddr], reply: &[u8]) -> io::Result<usize> {
    let n = to.len().min(BATCH);
    let messages: [(SocketAddr, &[u8]); BATCH] =
        std::array::from_fn(|i| (to.get(i).copied().unwrap_or(to[0]), reply));
    crate::sys::send_datagrams(socket, &messages[..n])
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn send(socket: &UdpSocket, to: &[SocketAddr], reply: &[u8]) -> io::Result<usize> {
    socket.send_to(reply, to[0]).map(|_| 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn sources_that_could_loop_or_amplify_are_bad() {
        for bad in [
            "192.0.2.7:0",
            "192.0.2.7:37",
            "192.0.2.7:1023",
            "0.0.0.0:40000",
            "224.0.0.1:40000",
            "255.255.255.255:40000",
            "[::]:40000",
            "[ff02::1]:40000",
            "[::ffff:255.255.255.255]:40000",
            "[::1]:123",
        ] {
            assert!(bad_source(&addr(bad)), "{bad} should be refused");
        }
        for good in [
            "192.0.2.7:1024",
            "127.0.0.1:54321",
            "[::1]:40000",
            "[::ffff:10.0.0.1]:5000",
        ] {
            assert!(!bad_source(&addr(good)), "{good} should be answered");
        }
    }

    #[test]
    fn a_batch_is_answered_in_one_go_and_a_full_buffer_never_blocks() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_nonblocking(true).unwrap();
        let server = UdpSocket::from_std(server);
        let clients: Vec<std::net::UdpSocket> = (0..3)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let to: Vec<SocketAddr> = clients.iter().map(|c| c.local_addr().unwrap()).collect();
        assert_eq!(send_all(&server, &to, b"abcd"), (3, 0));
        for c in &clients {
            c.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let mut buf = [0u8; 8];
            let (n, from) = c.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"abcd");
            assert_eq!(from, server.local_addr().unwrap());
        }
    }

    #[test]
    fn datagrams_are_received_in_batches_with_their_sources() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_nonblocking(true).unwrap();
        let at = server.local_addr().unwrap();
        let server = UdpSocket::from_std(server);
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut b = Batch::new();
        assert_eq!(
            recv(&server, &mut b.bufs, &mut b.got).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        for i in 0..5u8 {
            client.send_to(&vec![i; 600], at).unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut seen = Vec::new();
        while seen.len() < 5 && std::time::Instant::now() < deadline {
            match recv(&server, &mut b.bufs, &mut b.got) {
                Ok(n) => seen.extend(b.got[..n].iter().copied()),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
        assert_eq!(seen.len(), 5);
        for (len, from) in seen {
            assert_eq!(len, READ_BYTES, "a long datagram is cut to what is read");
            assert_eq!(from, Some(client.local_addr().unwrap()));
        }
    }
}
