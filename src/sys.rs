//! The few places where the OS forces `unsafe`, each a thin wrapper over one
//! system call: finding out what an inherited descriptor is (fcntl, fstat) and
//! adopting it, pointing standard I/O away from a client connection (dup2),
//! the exclusive epoll registration mio lacks (epoll_ctl), the monotonic clock
//! systemd wants (clock_gettime), the clock tick of /proc's CPU times
//! (sysconf), what a TCP peer has not acknowledged (ioctl SIOCOUTQ, for
//! jamc's conformance check), and giving up root (getpwnam_r and friends,
//! setgid, setgroups, setuid) and raising the open-file limit (getrlimit,
//! setrlimit) for `daemon::confine`. Nothing else in the crate may use
//! `unsafe`, and this module is private to the crate. Also here, with no
//! `unsafe` but as close to the OS: reading a file that must be a regular
//! one (the configuration, a zone file) without blocking on a FIFO.
#![allow(unsafe_code)]

use std::fs::OpenOptions;
use std::io::{self, Read as _};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;

/// Whether `fd` is open in this process.
fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags; any integer is
    // acceptable and an unused one just gives EBADF.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// What an inherited descriptor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdKind {
    /// Not open at all.
    Closed,
    /// Open, but not a socket (a file, a pipe, a terminal).
    NotASocket,
    Socket,
}

/// Finds out what `fd` is without taking it over.
pub fn kind(fd: RawFd) -> FdKind {
    if !is_open(fd) {
        return FdKind::Closed;
    }
    // SAFETY: `stat` is plain data that fstat fills in; the descriptor is open.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes only into `st`, which lives for the call.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return FdKind::NotASocket;
    }
    if st.st_mode & libc::S_IFMT == libc::S_IFSOCK {
        FdKind::Socket
    } else {
        FdKind::NotASocket
    }
}

/// Takes ownership of an inherited descriptor (from `LISTEN_FDS`), marking it
/// close-on-exec. Returns `None` if it is not open.
///
/// The caller promises that nothing else in the process owns `fd` (a
/// descriptor jamd opened itself must never be passed here): that is why
/// this is private to the crate, and why inherited descriptors are taken
/// before jamd creates any of its own.
pub(crate) fn adopt(fd: RawFd) -> Option<OwnedFd> {
    if !is_open(fd) || fd < 3 {
        return None;
    }
    // SAFETY: the service manager passed this descriptor to us for our use,
    // it is open (checked above), and nothing else in the process owns it: it
    // is adopted once, at start, before any other thread exists.
    let owned = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: F_SETFD on a descriptor we own.
    unsafe { libc::fcntl(owned.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    Some(owned)
}

/// Duplicates standard input (inetd's socket) into a new descriptor we own.
pub fn dup_stdin() -> io::Result<OwnedFd> {
    if !is_open(0) {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: descriptor 0 is open (checked above) and stays open for the
    // duration of this borrow.
    let stdin = unsafe { BorrowedFd::borrow_raw(0) };
    stdin.try_clone_to_owned()
}

/// Points every standard descriptor (0, 1, 2) that is a socket at /dev/null,
/// so that closing our own descriptor really ends the client's connection and
/// nothing we print can reach the client.
pub fn detach_stdio_sockets() -> io::Result<()> {
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for fd in 0..=2 {
        if kind(fd) == FdKind::Socket {
            // SAFETY: dup2 atomically replaces descriptor `fd` (a socket that
            // we do not otherwise use through this number) with /dev/null.
            if unsafe { libc::dup2(null.as_raw_fd(), fd) } == -1 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Removes an environment variable of this process (`unsafe` from Rust 2024
/// on). Call it only during start-up, before jamd starts a thread of its own.
#[allow(unused_unsafe)]
pub(crate) fn remove_env(var: &str) {
    // SAFETY: changing the environment races with any other thread reading
    // it; start-up calls this before the log, workers or control thread exist.
    unsafe { std::env::remove_var(var) };
}

/// CLOCK_MONOTONIC in microseconds, as systemd's `MONOTONIC_USEC=` wants it.
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only into `ts`, which lives for the call.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
        return 0;
    }
    // Never negative: the monotonic clock counts up from boot.
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs * 1_000_000 + nanos / 1_000
}

/// Bytes written to a connected TCP socket that the peer has not
/// acknowledged yet (SIOCOUTQ, see tcp(7)): data sent on a connection the
/// server's kernel never took off its listen queue stays here.
pub fn tcp_unacknowledged_bytes(socket: &impl AsRawFd) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: the descriptor is open while borrowed, and SIOCOUTQ (the same
    // request as TIOCOUTQ) writes one int into `n`, which lives for the call.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::TIOCOUTQ, &mut n) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Opens /dev/null on any of descriptors 0, 1 and 2 that is closed, so that a
/// socket can never get one of those numbers and have log lines written to it.
pub fn ensure_stdio_open() {
    for fd in 0..=2 {
        if !is_open(fd) {
            // open(2) returns the lowest free number: this one.
            if let Ok(null) = OpenOptions::new().read(true).write(true).open("/dev/null") {
                if null.as_raw_fd() == fd {
                    std::mem::forget(null);
                }
            }
        }
    }
}

/// Adds a listening socket to an epoll set as an *exclusive* waiter
/// (`EPOLLEXCLUSIVE`, Linux 4.5), edge-triggered, for input.
///
/// When the workers' epoll sets all watch the same listening socket, a new
/// connection then wakes one worker that is waiting instead of every one.
/// mio has no such interest, so this is the one registration done by hand;
/// `token` goes where mio keeps its `Token` (the event's `u64`), which a test
/// in `server::worker` checks against mio itself. The flag can only be given
/// when the descriptor is added, so the caller removes it again with
/// [`epoll_delete`], not through mio.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn epoll_add_exclusive(epoll: &impl AsRawFd, fd: &impl AsRawFd, token: u64) -> io::Result<()> {
    #[allow(
        clippy::cast_sign_loss,
        reason = "libc gives the flags as a C int; EPOLLET is its sign bit"
    )]
    let mut event = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLET | libc::EPOLLEXCLUSIVE) as u32,
        u64: token,
    };
    // SAFETY: both descriptors are open while borrowed, and epoll_ctl only
    // reads `event`, which lives for the call.
    let r = unsafe {
        libc::epoll_ctl(
            epoll.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            fd.as_raw_fd(),
            &mut event,
        )
    };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Removes a descriptor added by [`epoll_add_exclusive`] from an epoll set.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn epoll_delete(epoll: &impl AsRawFd, fd: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: both descriptors are open while borrowed; EPOLL_CTL_DEL ignores
    // the event argument, which may be null since Linux 2.6.9.
    let r = unsafe {
        libc::epoll_ctl(
            epoll.as_raw_fd(),
            libc::EPOLL_CTL_DEL,
            fd.as_raw_fd(),
            std::ptr::null_mut(),
        )
    };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Clock ticks a second (`_SC_CLK_TCK`), the unit of the times in
/// `/proc/self/stat`; `None` if the system does not say.
pub fn clock_ticks_per_second() -> Option<u64> {
    // SAFETY: sysconf only reads a system constant; it has no pointers.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(n).ok().filter(|&n| n > 0)
}

/// A user account from the password database (getpwnam_r): what jamd needs
/// to become it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passwd {
    pub uid: u32,
    /// The user's primary group.
    pub gid: u32,
}

/// Looks a user up by name (`/etc/passwd`, or whatever NSS is set up to
/// ask). `Ok(None)`: there is no such user.
pub fn user_by_name(name: &str) -> io::Result<Option<Passwd>> {
    let cname = c_name(name)?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: `passwd` is plain data that getpwnam_r fills in.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call: the name is a
        // NUL-terminated string, `pwd` and `found` live on this stack, and
        // `buf` is `buf.len()` writable bytes that the strings in `pwd` point
        // into (they are not used after `buf` is dropped).
        let r = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        match r {
            0 if found.is_null() => return Ok(None),
            0 => {
                return Ok(Some(Passwd {
                    uid: pwd.pw_uid,
                    gid: pwd.pw_gid,
                }))
            }
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
            // "Not found" is sometimes reported as one of these (getpwnam_r(3)).
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// Looks a group up by name; `Ok(None)`: there is no such group.
pub fn group_by_name(name: &str) -> io::Result<Option<u32>> {
    let cname = c_name(name)?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: `group` is plain data that getgrnam_r fills in.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: as in `user_by_name`: a NUL-terminated name, and `grp`,
        // `found` and `buf` live for the call.
        let r = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        match r {
            0 if found.is_null() => return Ok(None),
            0 => return Ok(Some(grp.gr_gid)),
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// The name of a group id, if the group database has one.
pub fn group_name(gid: u32) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: `group` is plain data that getgrgid_r fills in.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: `grp`, `found` and `buf` live for the call.
        let r = unsafe {
            libc::getgrgid_r(
                gid,
                &mut grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        match r {
            0 if found.is_null() => return None,
            0 => {
                // SAFETY: on success gr_name points at a NUL-terminated
                // string inside `buf`, which is still alive.
                let name = unsafe { std::ffi::CStr::from_ptr(grp.gr_name) };
                return Some(name.to_string_lossy().into_owned());
            }
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
            _ => return None,
        }
    }
}

/// The name of a user id, if the password database has one.
pub fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: `passwd` is plain data that getpwuid_r fills in.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: `pwd`, `found` and `buf` live for the call.
        let r = unsafe {
            libc::getpwuid_r(
                uid,
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        match r {
            0 if found.is_null() => return None,
            0 => {
                // SAFETY: on success pw_name points at a NUL-terminated
                // string inside `buf`, which is still alive.
                let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
                return Some(name.to_string_lossy().into_owned());
            }
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
            _ => return None,
        }
    }
}

fn c_name(name: &str) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// The effective user and group ids of this process.
pub fn effective_ids() -> (u32, u32) {
    // SAFETY: geteuid and getegid only read the process's credentials.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// The real, effective and saved user ids, and the same for groups.
pub fn all_ids() -> io::Result<([u32; 3], [u32; 3])> {
    let (mut ru, mut eu, mut su) = (0, 0, 0);
    let (mut rg, mut eg, mut sg) = (0, 0, 0);
    // SAFETY: getresuid writes three ids into variables that live for the call.
    if unsafe { libc::getresuid(&mut ru, &mut eu, &mut su) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: getresgid writes three ids into variables that live for the call.
    if unsafe { libc::getresgid(&mut rg, &mut eg, &mut sg) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(([ru, eu, su], [rg, eg, sg]))
}

/// How many supplementary groups this process has.
pub fn supplementary_group_count() -> io::Result<usize> {
    // SAFETY: with a size of 0 getgroups only counts; it writes nothing.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// setgid(2): as root, sets the real, effective and saved group ids (glibc
/// applies it to every thread of the process).
pub fn set_gid(gid: u32) -> io::Result<()> {
    // SAFETY: setgid has no pointers; failure is reported in errno.
    if unsafe { libc::setgid(gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// setgroups(2) with an empty list: no supplementary groups (every thread).
pub fn clear_supplementary_groups() -> io::Result<()> {
    // SAFETY: a size of 0 means the list is not read; null is allowed then.
    if unsafe { libc::setgroups(0, std::ptr::null()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// setuid(2): as root, sets the real, effective and saved user ids (every
/// thread), for good.
pub fn set_uid(uid: u32) -> io::Result<()> {
    // SAFETY: setuid has no pointers; failure is reported in errno.
    if unsafe { libc::setuid(uid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The soft and hard `RLIMIT_NOFILE` (`None`: unlimited).
pub fn open_file_limit() -> io::Result<(Option<u64>, Option<u64>)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into `lim`, which lives for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let finite = |v: libc::rlim_t| (v != libc::RLIM_INFINITY).then_some(v);
    Ok((finite(lim.rlim_cur), finite(lim.rlim_max)))
}

/// Sets the soft `RLIMIT_NOFILE`, keeping the hard limit.
pub fn set_open_file_soft_limit(soft: u64, hard: Option<u64>) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard.unwrap_or(libc::RLIM_INFINITY),
    };
    // SAFETY: setrlimit only reads `lim`, which lives for the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The most datagrams one [`recv_datagrams`] or [`send_datagrams`] call
/// moves.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub const DATAGRAM_BATCH: usize = 32;

/// Receives up to `bufs.len()` datagrams (at most [`DATAGRAM_BATCH`]) from a
/// non-blocking UDP socket in one `recvmmsg(2)`: for each, its length (cut
/// to its buffer) and its source go into `got`, and the count is returned.
/// `WouldBlock` when none is waiting.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn recv_datagrams(
    socket: &impl AsRawFd,
    bufs: &mut [[u8; 512]],
    got: &mut [(usize, Option<std::net::SocketAddr>)],
) -> io::Result<usize> {
    use socket2::{SockAddr, SockAddrStorage};
    let n = bufs.len().min(got.len()).min(DATAGRAM_BATCH);
    let mut names: [SockAddrStorage; DATAGRAM_BATCH] =
        std::array::from_fn(|_| SockAddrStorage::zeroed());
    // SAFETY: iovec and mmsghdr are plain C structs for which all zeroes
    // (null pointers, zero lengths) is a valid value.
    let mut iovs: [libc::iovec; DATAGRAM_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut msgs: [libc::mmsghdr; DATAGRAM_BATCH] = unsafe { std::mem::zeroed() };
    for i in 0..n {
        iovs[i].iov_base = bufs[i].as_mut_ptr().cast();
        iovs[i].iov_len = bufs[i].len();
        let hdr = &mut msgs[i].msg_hdr;
        hdr.msg_name = std::ptr::from_mut(&mut names[i]).cast();
        hdr.msg_namelen = names[i].size_of();
        hdr.msg_iov = &mut iovs[i];
        hdr.msg_iovlen = 1;
    }
    let vlen = libc::c_uint::try_from(n).unwrap_or(0);
    // SAFETY: each of the first `n` headers points at its own buffer, name
    // and iovec, all of which live (and are not otherwise borrowed) until the
    // call returns; the kernel writes at most the lengths given.
    let r = unsafe {
        libc::recvmmsg(
            socket.as_raw_fd(),
            msgs.as_mut_ptr(),
            vlen,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    let Ok(received) = usize::try_from(r) else {
        return Err(io::Error::last_os_error());
    };
    for i in 0..received {
        let len = usize::try_from(msgs[i].msg_len).unwrap_or(0);
        let namelen = msgs[i].msg_hdr.msg_namelen;
        let name = std::mem::replace(&mut names[i], SockAddrStorage::zeroed());
        // SAFETY: the kernel filled `name` with a socket address of
        // `namelen` bytes (at most its size).
        let from = unsafe { SockAddr::new(name, namelen) };
        got[i] = (len.min(bufs[i].len()), from.as_socket());
    }
    Ok(received)
}

/// Sends each `(to, bytes)` on a non-blocking UDP socket in one
/// `sendmmsg(2)`; returns how many were sent, in order (the first one not
/// sent failed: sending it alone gives its error). `WouldBlock` when the
/// socket's send buffer is full.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn send_datagrams(
    socket: &impl AsRawFd,
    messages: &[(std::net::SocketAddr, &[u8])],
) -> io::Result<usize> {
    use socket2::SockAddr;
    let n = messages.len().min(DATAGRAM_BATCH);
    let names: Vec<SockAddr> = messages[..n]
        .iter()
        .map(|(to, _)| SockAddr::from(*to))
        .collect();
    // SAFETY: iovec and mmsghdr are plain C structs for which all zeroes
    // (null pointers, zero lengths) is a valid value.
    let mut iovs: [libc::iovec; DATAGRAM_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut msgs: [libc::mmsghdr; DATAGRAM_BATCH] = unsafe { std::mem::zeroed() };
    for i in 0..n {
        let bytes = messages[i].1;
        // The kernel only reads from it (a send).
        iovs[i].iov_base = bytes.as_ptr().cast_mut().cast();
        iovs[i].iov_len = bytes.len();
        let hdr = &mut msgs[i].msg_hdr;
        hdr.msg_name = names[i].as_ptr().cast_mut().cast();
        hdr.msg_namelen = names[i].len();
        hdr.msg_iov = &mut iovs[i];
        hdr.msg_iovlen = 1;
    }
    let vlen = libc::c_uint::try_from(n).unwrap_or(0);
    // SAFETY: each of the first `n` headers points at an address, an iovec
    // and the bytes of one message, all alive until the call returns; for a
    // send the kernel only reads them (and writes `msg_len`).
    let r = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            msgs.as_mut_ptr(),
            vlen,
            libc::MSG_DONTWAIT,
        )
    };
    usize::try_from(r).map_err(|_| io::Error::last_os_error())
}

/// The file's bytes, refusing anything but a regular file without blocking
/// on it: a FIFO would otherwise hang jamd (also on reload, in the control
/// thread), and a device could be read forever. The configuration and the
/// zone files are read this way.
pub(crate) fn read_regular_file(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_dir() {
            "a directory"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a file"
        };
        return Err(io::Error::other(format!(
            "it is {what}, not a regular file"
        )));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}
