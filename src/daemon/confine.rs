//! What jamd gives up once it runs (jamd.8, CONFINEMENT): root, when
//! `server.user` names a user to become; the low soft open-file limit; and,
//! with `server.sandbox`, every system call it does not need from then on.
//!
//! Start-up (`daemon/startup.rs`) resolves the user early (an unknown name is
//! a configuration error before anything is bound), raises the open-file
//! limit, and changes the user once every socket is open. The control loop
//! (`daemon/supervise.rs`) installs the filter once the threads are running.

use std::fs::File;
use std::io;
use std::path::Path;

use crate::config::ServerConfig;
use crate::sys;

/// The user and group jamd runs as from start-up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    user: String,
    uid: u32,
    group: String,
    gid: u32,
}

impl std::fmt::Display for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.user, self.group)
    }
}

/// Who jamd is to be once its sockets are open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Keep the user jamd was started as.
    Stay,
    /// Started as root: become this user.
    Become(Account),
}

/// Looks `server.user` and `server.group` up in the user and group
/// databases: `None` when `server.user` is empty. An `Err` is a
/// configuration error (78) that names the key.
pub fn account(server: &ServerConfig) -> Result<Option<Account>, String> {
    if server.user.is_empty() {
        if !server.group.is_empty() {
            return Err(format!(
                "server.group = {:?} needs server.user: name the user to become as well",
                server.group
            ));
        }
        return Ok(None);
    }
    let lookup = |e: io::Error, key: &str| format!("{key}: cannot look up the name: {e}");
    let passwd = sys::user_by_name(&server.user)
        .map_err(|e| lookup(e, "server.user"))?
        .ok_or_else(|| {
            format!(
                "server.user: no user named {:?} on this host (getent passwd {} finds none): \
                 create it, or name another",
                server.user, server.user
            )
        })?;
    let (group, gid) = if server.group.is_empty() {
        let name = sys::group_name(passwd.gid).unwrap_or_else(|| passwd.gid.to_string());
        (name, passwd.gid)
    } else {
        let gid = sys::group_by_name(&server.group)
            .map_err(|e| lookup(e, "server.group"))?
            .ok_or_else(|| {
                format!(
                    "server.group: no group named {:?} on this host (getent group {} finds none): \
                     create it, name another, or leave it \"\" for the user's own group",
                    server.group, server.group
                )
            })?;
        (server.group.clone(), gid)
    };
    Ok(Some(Account {
        user: server.user.clone(),
        uid: passwd.uid,
        group,
        gid,
    }))
}

/// Who jamd is to be, from [`account`] and the user it was started as. An
/// `Err` is a configuration error (78) that names the key; `warnings` gets
/// the warning for root without `server.user`.
pub fn identity(server: &ServerConfig, warnings: &mut Vec<String>) -> Result<Identity, String> {
    let (euid, egid) = sys::effective_ids();
    let Some(account) = account(server)? else {
        if euid == 0 {
            warnings.push(
                "running as root: set server.user (such as \"nobody\", or a user of jamd's own) \
                 so that jamd gives up root once its sockets are open"
                    .to_owned(),
            );
        }
        return Ok(Identity::Stay);
    };
    if euid != 0 {
        if account.uid == euid && account.gid == egid {
            return Ok(Identity::Stay);
        }
        let me = sys::user_name(euid).unwrap_or_else(|| euid.to_string());
        let key = if account.uid == euid {
            "server.group"
        } else {
            "server.user"
        };
        return Err(format!(
            "{key}: jamd runs as {me}, not root, and only root can become {account}: \
             start jamd as root, or leave server.user and server.group \"\""
        ));
    }
    if account.uid == 0 {
        return Err(format!(
            "server.user: {:?} is root: name an unprivileged user such as \"nobody\", \
             or leave it \"\"",
            account.user
        ));
    }
    Ok(Identity::Become(account))
}

/// Becomes `account` for good: its group, no supplementary groups, its user
/// (real, effective and saved), then proves that root cannot be had back.
pub fn become_user(account: &Account) -> Result<(), String> {
    let fail =
        |what: &str, e: io::Error| format!("cannot {what} (server.user = {:?}): {e}", account.user);
    sys::set_gid(account.gid)
        .map_err(|e| fail(&format!("set the group to {}", account.group), e))?;
    sys::clear_supplementary_groups().map_err(|e| fail("clear the supplementary groups", e))?;
    sys::set_uid(account.uid).map_err(|e| fail(&format!("become {}", account.user), e))?;
    if sys::set_uid(0).is_ok() {
        return Err(format!(
            "became {} but could become root again: stopping rather than run so",
            account.user
        ));
    }
    let (uids, gids) = sys::all_ids().map_err(|e| fail("read back the user ids", e))?;
    let groups = sys::supplementary_group_count().map_err(|e| fail("read back the groups", e))?;
    if uids != [account.uid; 3] || gids != [account.gid; 3] || groups != 0 {
        return Err(format!(
            "became {account} but the process still holds user ids {uids:?}, group ids {gids:?} \
             and {groups} supplementary group(s): stopping rather than run so"
        ));
    }
    Ok(())
}

/// After the user changed: a warning when that user cannot read the
/// configuration file, as a reload would then fail.
pub fn unreadable_config(path: &Path, account: &Account) -> Option<String> {
    match File::open(path) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Some(format!(
            "{} cannot read {} ({e}): a reload (SIGHUP) would fail; make the file and its \
             directories readable by user {} or group {}",
            account.user,
            path.display(),
            account.user,
            account.group
        )),
        Ok(_) | Err(_) => None,
    }
}

/// The soft open-file limit after start-up raised it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// `None`: unlimited.
    pub soft: Option<u64>,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (to `fs.nr_open` when
/// the hard limit is unlimited, as the kernel allows no more). A failure
/// keeps the limit as it was; only the warning below can tell.
pub fn raise_open_file_limit() -> OpenFiles {
    let Ok((soft, hard)) = sys::open_file_limit() else {
        return OpenFiles { soft: None };
    };
    let ceiling = hard.or_else(|| {
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
    });
    match ceiling {
        Some(target) if soft.is_some_and(|s| s < target) => {
            match sys::set_open_file_soft_limit(target, hard) {
                Ok(()) => OpenFiles { soft: Some(target) },
                Err(_) => OpenFiles { soft },
            }
        }
        Some(_) | None => OpenFiles { soft },
    }
}

/// Descriptors jamd may need besides its clients and what it holds at the
/// moment of the check: a reload's file, the syslog socket reconnecting,
/// the metrics clients (at most 8 at once), the service manager's socket.
const SPARE_DESCRIPTORS: u64 = 16;

/// The warning when `server.max_connections` clients and jamd's own
/// descriptors would not fit under the soft open-file limit: `open_now`
/// descriptors held now, and each worker's event loop (epoll, its waker,
/// a duplicate of each listener).
pub fn open_file_warning(
    limit: OpenFiles,
    max_connections: usize,
    open_now: u64,
    workers: usize,
    listeners: usize,
) -> Option<String> {
    let soft = limit.soft?;
    let per_worker = 2 + listeners as u64;
    let own = open_now + workers as u64 * per_worker + SPARE_DESCRIPTORS;
    let need = max_connections as u64 + own;
    (need > soft).then(|| {
        format!(
            "server.max_connections ({max_connections}) plus jamd's own {own} descriptors need \
             {need} open files, above the open-file limit ({soft}): clients past it are refused; \
             raise the limit (LimitNOFILE= in the systemd unit, ulimit -n in the shell or script \
             that starts jamd) or lower server.max_connections"
        )
    })
}

/// Descriptors this process holds now (`/proc/self/fd`), if it can tell.
pub fn open_descriptors() -> Option<u64> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    // The directory's own descriptor is one of the entries.
    Some((dir.count() as u64).saturating_sub(1))
}

/// Debug builds only, for the tests of the filter: with
/// `JAMD_TEST_PROBE=PATH` in the environment, each reload tries two things
/// jamd never needs, creating PATH and running `/bin/true`, and logs what
/// became of each. Under the filter both fail with EPERM and jamd goes on.
#[cfg(debug_assertions)]
pub fn debug_probe(log: &crate::log::Logger) {
    let Some(path) = std::env::var_os("JAMD_TEST_PROBE") else {
        return;
    };
    let path = Path::new(&path);
    match File::create(path) {
        Ok(_) => log.info(format!("debug probe: created {}", path.display())),
        Err(e) => log.warn(format!(
            "debug probe: cannot create {}: {e}",
            path.display()
        )),
    }
    match std::process::Command::new("/bin/true").status() {
        Ok(status) => log.info(format!("debug probe: ran /bin/true: {status}")),
        Err(e) => log.warn(format!("debug probe: cannot run /bin/true: {e}")),
    }
}

/// Installs the system-call filter on every thread of the process: from
/// now on a system call outside [`filter::allowed`] fails with EPERM.
#[cfg(target_os = "linux")]
pub fn sandbox() -> Result<(), String> {
    let program =
        filter::program().map_err(|e| format!("cannot build the system-call filter: {e}"))?;
    seccompiler::apply_filter_all_threads(&program).map_err(|e| {
        format!(
            "cannot install the system-call filter (server.sandbox): {e}; under systemd the unit \
             must allow the seccomp system call (SystemCallFilter=seccomp); or set \
             server.sandbox = false"
        )
    })
}

/// No system-call filter off Linux: `server.sandbox` is refused here.
#[cfg(not(target_os = "linux"))]
pub fn sandbox() -> Result<(), String> {
    Err("server.sandbox is only available on Linux: set server.sandbox = false".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_file_warning_counts_the_clients_and_jamds_own_descriptors() {
        let limit = OpenFiles { soft: Some(1024) };
        // 10 open now, 2 workers with 2 listeners each (epoll, waker, 2
        // duplicates), 16 spare: 34 of jamd's own.
        assert_eq!(open_file_warning(limit, 990, 10, 2, 2), None);
        let w = open_file_warning(limit, 991, 10, 2, 2).expect("a warning");
        assert!(
            w.starts_with(
                "server.max_connections (991) plus jamd's own 34 descriptors need 1025 open \
                 files, above the open-file limit (1024)"
            ),
            "{w}"
        );
        assert!(w.contains("LimitNOFILE=") && w.contains("ulimit -n"), "{w}");
        // No limit, no warning.
        assert_eq!(
            open_file_warning(OpenFiles { soft: None }, 10_000_000, 10, 1, 1),
            None
        );
    }

    #[test]
    fn group_without_user_is_refused_naming_the_key() {
        let server = ServerConfig {
            group: "daemon".into(),
            ..ServerConfig::default()
        };
        let why = account(&server).unwrap_err();
        assert!(
            why.starts_with("server.group = \"daemon\" needs server.user"),
            "{why}"
        );
        assert_eq!(account(&ServerConfig::default()), Ok(None));
    }
}

#[cfg(target_os = "linux")]
pub mod filter {
    //! The system calls jamd may make once start-up is done, in groups that
    //! say why. Everything else fails with EPERM (never a kill), so a call
    //! missing here shows as an error jamd reports and survives, and
    //! `strace -f -p PID` shows the call that returned `EPERM`.
    //!
    //! A new code path that needs a new call adds it to the group it belongs
    //! to (or a new group saying why), and to the list in jamd.8 (a unit
    //! test below fails until the page names it).
    //!
    //! Every integration test (tests/*.rs) runs jamd with the filter on, so
    //! the suite is the proof that the list is complete for what it covers;
    //! `strace -f -Z` over a test binary lists the calls that failed, and a
    //! filtered jamd's EPERM among them is a call missing here. Some calls
    //! are here for paths the tests reach only in part: UDP syslog (bind,
    //! uname for the host name, a name lookup), threads still starting when
    //! the filter comes (set_robust_list, rseq, prctl, sigaltstack), abort().
    //!
    //! What the filter costs. The calls of the serving path (accept4,
    //! read/recvfrom, write/sendto, epoll_wait, epoll_ctl, close, futex; the
    //! UDP calls) are allowed whatever their arguments, so the kernel (5.11
    //! and later) caches "allowed" by call number and never runs this
    //! program for them; a unit test below replays the kernel's check. What
    //! is left is the slower system-call entry of any filtered task, some
    //! tens of nanoseconds a call: about 1 % of jamd's CPU time under load
    //! (BENCHMARKS.md, "Confinement"). A JAM connection makes only those
    //! calls: accept4 (the client is non-blocking and close-on-exec from
    //! the start, no ioctl or fcntl after it), epoll_ctl, a recvfrom and a
    //! sendto per request, close.
    //!
    //! The calls checked by argument run the program each time, but none of
    //! them is made per client, and each check is worth its few hundred
    //! instructions: mmap and mprotect without PROT_EXEC (when the allocator
    //! grows or a thread starts) keep code that got in from making memory
    //! executable; openat and open read-only (reload, metrics) keep it from
    //! creating or writing a file; socket (syslog reconnecting) allows no raw,
    //! packet or netlink socket; ioctl (std's set_nonblocking on a socket made
    //! after start-up) keeps terminal and device requests out; prctl only
    //! names a thread; tgkill signals only jamd itself (abort()).
    //!
    //! Installing it sets no SECCOMP_FILTER_FLAG_SPEC_ALLOW: kernels before
    //! 5.16 (or booted with spec_store_bypass_disable=seccomp) then turn on
    //! the Speculative Store Bypass mitigation for jamd's threads, which
    //! costs on every load and store; from 5.16 on the kernel leaves it to
    //! the process.

    use std::collections::BTreeMap;

    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch,
    };

    /// A system call, allowed always or only when one of its rules holds.
    pub struct Allowed {
        /// Its number on this architecture.
        pub nr: i64,
        /// Its name, as jamd.8 lists it: the test that holds the page to
        /// the filter reads it.
        #[cfg_attr(not(test), allow(dead_code))]
        pub name: &'static str,
        /// Empty: always; otherwise any one of these.
        pub rules: Vec<SeccompRule>,
    }

    /// A system call's number and name: `sys!(SYS_read)`.
    macro_rules! sys {
        ($nr:ident) => {
            (libc::$nr, &stringify!($nr)[4..])
        };
    }

    fn any((nr, name): (i64, &'static str)) -> Allowed {
        Allowed {
            nr,
            name,
            rules: Vec::new(),
        }
    }

    /// Allowed when argument `arg` masked with `mask` equals `value`.
    fn masked((nr, name): (i64, &'static str), arg: u8, mask: u64, value: u64) -> Allowed {
        let cond = SeccompCondition::new(
            arg,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(mask),
            value,
        )
        .expect("argument index below 6");
        Allowed {
            nr,
            name,
            rules: vec![SeccompRule::new(vec![cond]).expect("one condition")],
        }
    }

    /// Allowed when argument `arg` is one of `values`.
    fn one_of((nr, name): (i64, &'static str), arg: u8, values: &[u64]) -> Allowed {
        let rules = values
            .iter()
            .map(|&v| {
                let cond = SeccompCondition::new(arg, SeccompCmpArgLen::Qword, SeccompCmpOp::Eq, v)
                    .expect("argument index below 6");
                SeccompRule::new(vec![cond]).expect("one condition")
            })
            .collect();
        Allowed { nr, name, rules }
    }

    /// socket(2) for these families and types only (SOCK_NONBLOCK and
    /// SOCK_CLOEXEC may be added to the type).
    fn sockets(families: &[libc::c_int], types: &[libc::c_int]) -> Allowed {
        let mut rules = Vec::new();
        for &family in families {
            for &kind in types {
                let conditions = vec![
                    SeccompCondition::new(
                        0,
                        SeccompCmpArgLen::Dword,
                        SeccompCmpOp::Eq,
                        flag(family),
                    )
                    .expect("argument index below 6"),
                    SeccompCondition::new(
                        1,
                        SeccompCmpArgLen::Dword,
                        SeccompCmpOp::MaskedEq(SOCK_TYPE_MASK),
                        flag(kind),
                    )
                    .expect("argument index below 6"),
                ];
                rules.push(SeccompRule::new(conditions).expect("two conditions"));
            }
        }
        let (nr, name) = sys!(SYS_socket);
        Allowed { nr, name, rules }
    }

    /// The ioctl(2) requests jamd makes after start-up: non-blocking mode
    /// (std's set_nonblocking), close-on-exec, bytes waiting.
    #[allow(
        clippy::unnecessary_cast,
        reason = "the request's type differs between C libraries (an unsigned long in glibc)"
    )]
    fn ioctl_requests() -> [u64; 3] {
        [
            libc::FIONBIO as u64,
            libc::FIOCLEX as u64,
            libc::FIONREAD as u64,
        ]
    }

    /// The bits of socket(2)'s type argument that give the type.
    const SOCK_TYPE_MASK: u64 = 0xf;

    fn flag(v: libc::c_int) -> u64 {
        u64::from(v.unsigned_abs())
    }

    /// The allow-list.
    pub fn allowed() -> Vec<Allowed> {
        use libc::*;
        let no_exec = flag(PROT_EXEC);
        // Opening only to read: not for writing, creating or truncating.
        let read_only = flag(O_ACCMODE | O_CREAT | O_TRUNC);
        let mut list = vec![
            // Serving TCP and UDP: accepting, moving bytes, closing.
            any(sys!(SYS_accept4)),
            any(sys!(SYS_accept)),
            any(sys!(SYS_read)),
            any(sys!(SYS_readv)),
            any(sys!(SYS_write)),
            any(sys!(SYS_writev)),
            any(sys!(SYS_recvfrom)),
            any(sys!(SYS_recvmsg)),
            any(sys!(SYS_recvmmsg)),
            any(sys!(SYS_sendto)),
            any(sys!(SYS_sendmsg)),
            any(sys!(SYS_sendmmsg)),
            any(sys!(SYS_shutdown)),
            any(sys!(SYS_close)),
            any(sys!(SYS_getsockname)),
            any(sys!(SYS_getpeername)),
            any(sys!(SYS_getsockopt)),
            any(sys!(SYS_setsockopt)),
            // Non-blocking mode and close-on-exec of a new descriptor.
            any(sys!(SYS_fcntl)),
            one_of(sys!(SYS_ioctl), 1, &ioctl_requests()),
            // The event loops (mio: epoll, eventfd wakers) and blocking waits.
            any(sys!(SYS_epoll_pwait)),
            any(sys!(SYS_epoll_ctl)),
            any(sys!(SYS_epoll_create1)),
            any(sys!(SYS_eventfd2)),
            any(sys!(SYS_ppoll)),
            // The clock (the vDSO answers most reads without a system call)
            // and sleeping.
            any(sys!(SYS_clock_gettime)),
            any(sys!(SYS_clock_getres)),
            any(sys!(SYS_gettimeofday)),
            any(sys!(SYS_clock_nanosleep)),
            any(sys!(SYS_nanosleep)),
            // Memory, for the allocator and thread stacks; never executable.
            any(sys!(SYS_brk)),
            masked(sys!(SYS_mmap), 2, no_exec, 0),
            masked(sys!(SYS_mprotect), 2, no_exec, 0),
            any(sys!(SYS_munmap)),
            any(sys!(SYS_mremap)),
            any(sys!(SYS_madvise)),
            // Threads: locks, a thread that is still starting when the filter
            // comes (its name, signal stack, robust list), and ending.
            any(sys!(SYS_futex)),
            any(sys!(SYS_sched_yield)),
            any(sys!(SYS_sched_getaffinity)),
            any(sys!(SYS_set_robust_list)),
            any(sys!(SYS_rseq)),
            any(sys!(SYS_sigaltstack)),
            one_of(
                sys!(SYS_prctl),
                0,
                &[PR_SET_NAME as u64, PR_GET_NAME as u64],
            ),
            any(sys!(SYS_gettid)),
            any(sys!(SYS_getpid)),
            any(sys!(SYS_exit)),
            any(sys!(SYS_exit_group)),
            // Signals: handlers, masks, and abort() after a panic that
            // cannot unwind (to this process only).
            any(sys!(SYS_rt_sigaction)),
            any(sys!(SYS_rt_sigprocmask)),
            any(sys!(SYS_rt_sigreturn)),
            any(sys!(SYS_restart_syscall)),
            one_of(sys!(SYS_tgkill), 0, &[u64::from(std::process::id())]),
            // Reload: the configuration file and the zone files (read only);
            // a relative path is resolved from the working directory;
            // /proc/self for the process metrics; the CPU count for
            // `workers = 0` (cgroup files).
            masked(sys!(SYS_openat), 2, read_only, flag(O_RDONLY)),
            any(sys!(SYS_newfstatat)),
            any(sys!(SYS_fstat)),
            any(sys!(SYS_statx)),
            any(sys!(SYS_lseek)),
            any(sys!(SYS_pread64)),
            any(sys!(SYS_readlinkat)),
            any(sys!(SYS_getdents64)),
            any(sys!(SYS_faccessat)),
            any(sys!(SYS_faccessat2)),
            any(sys!(SYS_getcwd)),
            // Logging: (re)connecting to syslog over a unix datagram socket
            // or UDP (name lookup included), the service manager's socket;
            // no raw or packet sockets.
            sockets(&[AF_UNIX, AF_INET, AF_INET6], &[SOCK_DGRAM, SOCK_STREAM]),
            any(sys!(SYS_connect)),
            any(sys!(SYS_bind)),
            any(sys!(SYS_uname)),
            // Hash maps' random keys.
            any(sys!(SYS_getrandom)),
        ];
        list.extend(older_calls());
        list
    }

    /// The older calls x86_64 still has beside the *at and p* ones, which
    /// glibc and std may use there.
    #[cfg(target_arch = "x86_64")]
    fn older_calls() -> Vec<Allowed> {
        use libc::*;
        let read_only = flag(O_ACCMODE | O_CREAT | O_TRUNC);
        vec![
            masked(sys!(SYS_open), 1, read_only, flag(O_RDONLY)),
            any(sys!(SYS_stat)),
            any(sys!(SYS_lstat)),
            any(sys!(SYS_readlink)),
            any(sys!(SYS_access)),
            any(sys!(SYS_poll)),
            any(sys!(SYS_epoll_wait)),
        ]
    }

    /// Newer architectures have only the *at and p* calls.
    #[cfg(not(target_arch = "x86_64"))]
    fn older_calls() -> Vec<Allowed> {
        Vec::new()
    }

    /// The filter as a BPF program: allow-listed calls pass, anything else
    /// returns EPERM, also a call made for another architecture (which the
    /// generated program would answer with a kill).
    pub fn program() -> Result<BpfProgram, seccompiler::Error> {
        let arch = TargetArch::try_from(std::env::consts::ARCH)?;
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
        for a in allowed() {
            rules.entry(a.nr).or_default().extend(a.rules);
        }
        let eperm = SeccompAction::Errno(libc::EPERM.unsigned_abs());
        let filter = SeccompFilter::new(rules, eperm.clone(), SeccompAction::Allow, arch)?;
        let mut program: BpfProgram = filter.try_into()?;
        for insn in &mut program {
            if insn.k == libc::SECCOMP_RET_KILL_PROCESS && insn.code == RET_K {
                insn.k = u32::from(eperm.clone());
            }
        }
        Ok(program)
    }

    /// BPF_RET | BPF_K: return a constant.
    const RET_K: u16 = 0x06;

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_program_never_kills_and_answers_eperm_by_default() {
            let program = program().unwrap();
            let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM.unsigned_abs();
            let returns: Vec<u32> = program
                .iter()
                .filter(|i| i.code == RET_K)
                .map(|i| i.k)
                .collect();
            assert!(returns.contains(&eperm), "{returns:x?}");
            assert!(returns.contains(&libc::SECCOMP_RET_ALLOW), "{returns:x?}");
            for k in returns {
                assert!(
                    k == eperm || k == libc::SECCOMP_RET_ALLOW,
                    "the program returns {k:#x}"
                );
            }
        }

        #[test]
        fn jamd_8_names_every_allowed_call() {
            let page = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/man/jamd.8"));
            let section = page
                .split(".Sh ")
                .find(|s| s.starts_with("CONFINEMENT"))
                .expect("jamd.8 has a CONFINEMENT section");
            let words: std::collections::BTreeSet<&str> = section
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .collect();
            for a in allowed() {
                assert!(
                    words.contains(a.name),
                    "{} is allowed but jamd.8 (CONFINEMENT) does not list it",
                    a.name
                );
            }
        }

        /// `AUDIT_ARCH_*` of this architecture (linux/audit.h).
        fn audit_arch() -> u32 {
            let machine = match std::env::consts::ARCH {
                "x86_64" => 62,
                "aarch64" => 183,
                "riscv64" => 243,
                other => panic!("no filter for {other}"),
            };
            // __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
            machine | 0x8000_0000 | 0x4000_0000
        }

        /// The kernel's test for caching a call as always allowed
        /// (seccomp_is_const_allow in kernel/seccomp.c): run the program
        /// knowing only the call number and the architecture; loading an
        /// argument, or any instruction it does not emulate, means "no".
        fn always_allowed(program: &[seccompiler::sock_filter], nr: i64, arch: u32) -> bool {
            let nr = u32::try_from(nr).expect("a system call number");
            // BPF_LD | BPF_W | BPF_ABS, BPF_JMP | BPF_JA, BPF_ALU | BPF_AND | BPF_K.
            const LD_W_ABS: u16 = 0x20;
            const JMP_JA: u16 = 0x05;
            const ALU_AND_K: u16 = 0x54;
            let mut reg = 0u32;
            let mut pc = 0usize;
            while let Some(insn) = program.get(pc) {
                match insn.code {
                    LD_W_ABS => match insn.k {
                        0 => reg = nr,
                        4 => reg = arch,
                        _ => return false,
                    },
                    RET_K => return insn.k == libc::SECCOMP_RET_ALLOW,
                    JMP_JA => pc += insn.k as usize,
                    ALU_AND_K => reg &= insn.k,
                    code if code & 0x07 == 0x05 && code & 0x08 == 0 => {
                        let taken = match code & 0xf0 {
                            0x10 => reg == insn.k,
                            0x20 => reg > insn.k,
                            0x30 => reg >= insn.k,
                            0x40 => reg & insn.k != 0,
                            _ => return false,
                        };
                        pc += usize::from(if taken { insn.jt } else { insn.jf });
                    }
                    _ => return false,
                }
                pc += 1;
            }
            false
        }

        #[test]
        fn the_serving_calls_never_run_the_filter() {
            let program = program().unwrap();
            let serving = [
                libc::SYS_accept4,
                libc::SYS_read,
                libc::SYS_recvfrom,
                libc::SYS_recvmsg,
                libc::SYS_recvmmsg,
                libc::SYS_write,
                libc::SYS_sendto,
                libc::SYS_sendmsg,
                libc::SYS_sendmmsg,
                libc::SYS_epoll_pwait,
                libc::SYS_epoll_ctl,
                libc::SYS_close,
                libc::SYS_shutdown,
                libc::SYS_futex,
                libc::SYS_clock_gettime,
            ];
            for nr in serving {
                assert!(
                    always_allowed(&program, nr, audit_arch()),
                    "system call {nr} is checked by argument: every client would run the filter"
                );
            }
            // The replay can tell: a call checked by argument, one not
            // allowed, and another architecture are not cached as allowed.
            for nr in [libc::SYS_ioctl, libc::SYS_openat, libc::SYS_execve] {
                assert!(!always_allowed(&program, nr, audit_arch()), "{nr}");
            }
            assert!(!always_allowed(&program, libc::SYS_read, 0x4000_0003));
        }

        #[test]
        fn nothing_that_starts_a_program_or_writes_a_file_is_allowed() {
            let nrs: Vec<i64> = allowed().iter().map(|a| a.nr).collect();
            for forbidden in [
                libc::SYS_execve,
                libc::SYS_execveat,
                libc::SYS_clone,
                libc::SYS_clone3,
                libc::SYS_ptrace,
                libc::SYS_setuid,
                libc::SYS_unlinkat,
                libc::SYS_mount,
            ] {
                assert!(!nrs.contains(&forbidden), "{forbidden} is allowed");
            }
        }
    }
}
