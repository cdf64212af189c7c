//! Asking the time: one conversation ([`query`]), and `-P` clients at once ([`parallel`]).

use std::net::SocketAddr;
use std::sync::RwLock;
use std::thread;
use std::time::{Duration, Instant};

use super::answer::{jam_reply, JamReply, Protocol};
use super::cli::{Settings, Target};
use super::error::{ClientError, ClientErrorKind};
use super::net::{connect_from, reading, Connection, Reply};
use super::output::{Flow, Output};

/// Stack size of each `-P` client thread: they only do blocking socket I/O.
const CLIENT_STACK_BYTES: usize = 256 * 1024;

/// Judges a reply in `protocol`: a JAM line; a daytime line; RFC 868's four
/// bytes (a daytime line is judged by what it holds only under `--check`).
pub fn judge_as(protocol: Protocol, server: &str, reply: &Reply) -> Result<(), ClientError> {
    match protocol {
        Protocol::Jam => judge(server, reply),
        Protocol::Daytime if !reply.line.is_empty() => Ok(()),
        Protocol::Rfc868 if reply.line.len() == 4 => Ok(()),
        _ => Err(ClientError::new(
            server,
            ClientErrorKind::NotTime {
                protocol: protocol.name(),
                line: String::from_utf8_lossy(&reply.line).into_owned(),
            },
        )),
    }
}

/// Shortest time between two readings of one client: a server that forks a
/// process a connection (inetd) must not be hammered.
pub const READING_GAP: Duration = Duration::from_millis(20);

/// Judges a reply line: a JAM line is fine, anything else is an error.
pub fn judge(server: &str, reply: &Reply) -> Result<(), ClientError> {
    let line = || String::from_utf8_lossy(&reply.line).into_owned();
    let kind = match jam_reply(&reply.line) {
        JamReply::Time(_) => return Ok(()),
        JamReply::Error => ClientErrorKind::ServerSaid { line: line() },
        JamReply::Other => ClientErrorKind::NotJam { line: line() },
    };
    Err(ClientError::new(server, kind))
}

/// One client's conversation: connect, `count` × TIME, then QUIT.
///
/// `on_reply` sees every reply line (also non-JAM ones, for `--raw` and
/// `--json`) before it is judged; the first failure ends the conversation,
/// and so does `on_reply` returning [`Flow::Stop`] (nobody reads our output).
pub fn query(
    settings: &Settings,
    target: &Target,
    addrs: &[SocketAddr],
    started: Instant,
    on_reply: &mut dyn FnMut(&Reply) -> Flow,
) -> Result<(), ClientError> {
    let server = target.to_string();
    let deadline = started + settings.timeout;
    if settings.protocol != Protocol::Jam {
        return readings(settings, &server, addrs, deadline, on_reply);
    }
    let stream = connect_from(&server, addrs, deadline, settings.timeout, settings.source)?;
    let mut conn = Connection::new(stream, &server, settings.timeout);
    for i in 0..settings.count {
        // The first reply shares the connect deadline; later ones get a timeout of their own.
        let deadline = if i == 0 {
            deadline
        } else {
            Instant::now() + settings.timeout
        };
        let reply = conn.ask(deadline)?;
        let flow = on_reply(&reply);
        judge(&server, &reply)?;
        if flow == Flow::Stop {
            break;
        }
    }
    conn.quit();
    Ok(())
}

/// Daytime and RFC 868: `count` readings, each a connection or a datagram of
/// its own, at least [`READING_GAP`] apart.
fn readings(
    settings: &Settings,
    server: &str,
    addrs: &[SocketAddr],
    deadline: Instant,
    on_reply: &mut dyn FnMut(&Reply) -> Flow,
) -> Result<(), ClientError> {
    let mut last: Option<Instant> = None;
    for i in 0..settings.count {
        if let Some(began) = last {
            thread::sleep((began + READING_GAP).saturating_duration_since(Instant::now()));
        }
        let deadline = if i == 0 {
            deadline
        } else {
            Instant::now() + settings.timeout
        };
        let reply = reading(
            (settings.protocol, settings.transport),
            server,
            addrs,
            (deadline, settings.timeout),
            settings.source,
        )?;
        last = Some(reply.began);
        let flow = on_reply(&reply);
        judge_as(settings.protocol, server, &reply)?;
        if flow == Flow::Stop {
            break;
        }
    }
    Ok(())
}

/// `-P`: runs `clients` conversations at once; returns how many went well.
pub fn parallel(
    settings: &Settings,
    addrs: &[SocketAddr],
    clients: u32,
    output: &Output<'_>,
) -> u32 {
    // The threads wait at this gate until all are spawned, so they connect
    // together; a thread that cannot be spawned counts as a failed client.
    let gate = RwLock::new(());
    let client = |id: u32| {
        drop(gate.read());
        let started = Instant::now();
        let prefix = format!("[{id}] ");
        let mut print =
            |reply: &Reply| output.reply(settings, &settings.target, id, &prefix, reply);
        match query(settings, &settings.target, addrs, started, &mut print) {
            Ok(()) => true,
            Err(e) => {
                output.err(&format!("jamc: [{id}] {e}\n"));
                false
            }
        }
    };
    thread::scope(|scope| {
        let closed = gate.write();
        let mut handles = Vec::new();
        for id in 1..=clients {
            let client = &client;
            match thread::Builder::new()
                .name(format!("jamc-{id}"))
                .stack_size(CLIENT_STACK_BYTES)
                .spawn_scoped(scope, move || client(id))
            {
                Ok(h) => handles.push(h),
                Err(e) => output.err(&format!("jamc: [{id}] cannot start a thread: {e}\n")),
            }
        }
        drop(closed);
        let mut ok = 0;
        for h in handles {
            if h.join().unwrap_or(false) {
                ok += 1;
            }
        }
        ok
    })
}
