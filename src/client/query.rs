//! Asking the time: one conversation ([`query`]), and `-P` clients at once ([`parallel`]).

use std::net::SocketAddr;
use std::sync::RwLock;
use std::thread;
use std::time::Instant;

use super::cli::{Settings, Target};
use super::error::{ClientError, ClientErrorKind};
use super::net::{connect_from, Connection, Reply};
use super::output::Output;

/// Stack size of each `-P` client thread: they only do blocking socket I/O.
const CLIENT_STACK_BYTES: usize = 256 * 1024;

/// Whether a conversation goes on after a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Ask again if `-n` says so.
    Continue,
    /// Say QUIT now.
    Stop,
}

/// Judges a reply line: a JAM line is fine, anything else is an error.
pub fn judge(server: &str, reply: &Reply) -> Result<(), ClientError> {
    if reply.jam_time().is_some() {
        return Ok(());
    }
    let line = String::from_utf8_lossy(&reply.line).into_owned();
    let kind = if line.starts_with("ERROR") {
        ClientErrorKind::ServerSaid { line }
    } else {
        ClientErrorKind::NotJam { line }
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
