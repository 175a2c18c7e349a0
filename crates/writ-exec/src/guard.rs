//! What keeps a governed program inside its run besides Landlock's file and
//! network rules, all applied in the child between fork and exec
//! ([`harden_child`]), so that no thread of the runner shares anything with
//! the program:
//!
//! - the parent-death signal: the program is killed by the kernel (SIGKILL)
//!   when the runner's thread that started it ends, so a runner killed with
//!   SIGKILL does not leave its program running, unwatched;
//! - a Landlock layer of its own with the signal scope (and, for a confined
//!   program, the abstract Unix socket scope): the program is in a domain
//!   nested in any its launching thread has, so it can neither signal nor
//!   ptrace (nor read `/proc/PID/environ` of) its runner or anything else
//!   outside its domain, nor reach an X server's abstract socket;
//! - a seccomp filter refusing (`EPERM`) the two ioctls that write into a
//!   terminal's input queue, `TIOCSTI` and `TIOCLINUX` (a program holding
//!   the caller's terminal could otherwise type a command into the caller's
//!   shell, to run after the governed run, ungoverned; Linux 6.2 and later
//!   can refuse `TIOCSTI` itself, `dev.tty.legacy_tiocsti=0`, but where it
//!   is 1 only a filter stops it), and `prctl(PR_SET_PDEATHSIG)` with any
//!   signal but SIGKILL, so the program cannot clear or weaken the
//!   parent-death signal.
//!
//! The runner itself is made not dumpable ([`undumpable`]), and the program
//! never holds `CAP_SYS_PTRACE` (dropped from its bounding set when it runs
//! as root): it cannot read its runner's environment or memory, where the
//! caller's token is.

use std::os::fd::{AsRawFd, OwnedFd};

use landlock::{Compatible, Ruleset, RulesetAttr, Scope};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::ExecError;

/// `ioctl` request numbers (asm-generic, the same on x86-64 and arm64).
const TIOCSTI: u64 = 0x5412;
const TIOCLINUX: u64 = 0x541C;
/// `prctl` option.
const PR_SET_PDEATHSIG: u64 = 1;
/// `close_range` flag (Linux 5.11): mark close-on-exec instead of closing.
const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
/// The capability that reads another process's memory whatever its owner.
const CAP_SYS_PTRACE: libc::c_ulong = 19;
/// The x32 bit of a system call number: a 64-bit process can make x32
/// system calls where the kernel allows them, and they carry the x86-64
/// architecture tag, so the filter names their numbers too (`ioctl` is 514
/// in x32's table, `prctl` the common 157).
#[cfg(target_arch = "x86_64")]
const X32: i64 = 0x4000_0000;

fn filter_err(e: impl std::fmt::Display) -> ExecError {
    ExecError::Confinement(format!("cannot build the seccomp filter: {e}"))
}

/// Rules that match when argument `arg` (compared on its low 32 bits, as
/// the kernel reads an `int` or `unsigned int`: high bits set do not get
/// past it) is one of `values`.
fn any_of(arg: u8, values: &[u64]) -> Result<Vec<SeccompRule>, ExecError> {
    values
        .iter()
        .map(|v| {
            SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, *v)
                .and_then(|c| SeccompRule::new(vec![c]))
                .map_err(filter_err)
        })
        .collect()
}

/// `prctl(PR_SET_PDEATHSIG, s)` for any `s` but SIGKILL: the program may
/// not clear or weaken its parent-death signal (a `writ exec` inside it
/// sets SIGKILL for its own program, which stays allowed).
fn pdeathsig_change() -> Result<Vec<SeccompRule>, ExecError> {
    let option = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        PR_SET_PDEATHSIG,
    )
    .map_err(filter_err)?;
    let not_kill = SeccompCondition::new(
        1,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Ne,
        libc::SIGKILL as u64,
    )
    .map_err(filter_err)?;
    Ok(vec![
        SeccompRule::new(vec![option, not_kill]).map_err(filter_err)?
    ])
}

/// The seccomp program: `ioctl(_, TIOCSTI | TIOCLINUX, ...)` and
/// `prctl(PR_SET_PDEATHSIG, s)` with `s` other than SIGKILL fail with
/// `EPERM`, everything else is allowed. A system call of another architecture (32-bit `int 0x80` from
/// an x86-64 process) is not covered by these numbers, so it kills the
/// process, as seccompiler's architecture check does: a 32-bit program
/// cannot run under writ.
pub fn child_filter() -> Result<BpfProgram, ExecError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(filter_err)?;
    let mut rules = std::collections::BTreeMap::new();
    rules.insert(libc::SYS_ioctl, any_of(1, &[TIOCSTI, TIOCLINUX])?);
    rules.insert(libc::SYS_prctl, pdeathsig_change()?);
    #[cfg(target_arch = "x86_64")]
    {
        rules.insert(X32 | 514, any_of(1, &[TIOCSTI, TIOCLINUX])?);
        rules.insert(X32 | libc::SYS_prctl, pdeathsig_change()?);
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(filter_err)?;
    BpfProgram::try_from(filter).map_err(filter_err)
}

/// A Landlock ruleset that handles no file or network right, only scopes:
/// signals (and abstract Unix sockets when `sockets`). `None` where the
/// kernel has no scopes (Landlock ABI 5 or older) and `required` is false;
/// an error where it is true.
pub fn scope_layer(sockets: bool, required: bool) -> Result<Option<OwnedFd>, ExecError> {
    let err = |e: landlock::RulesetError| {
        ExecError::Confinement(format!("cannot build the program's Landlock scope: {e}"))
    };
    let level = if required {
        landlock::CompatLevel::HardRequirement
    } else {
        landlock::CompatLevel::BestEffort
    };
    let mut rs = Ruleset::default()
        .set_compatibility(level)
        .scope(Scope::Signal)
        .map_err(err)?;
    if sockets {
        rs = rs.scope(Scope::AbstractUnixSocket).map_err(err)?;
    }
    let created = rs.create().map_err(err)?;
    Ok(created.into())
}

/// Make this process not dumpable: no process of the same user without
/// `CAP_SYS_PTRACE` can read its environment, command line or memory
/// through `/proc` or ptrace it. (What it executes becomes dumpable again.)
pub fn undumpable() -> Result<(), ExecError> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|e| ExecError::Io(format!("cannot make this process undumpable: {e}")))
}

/// Between fork and exec, in the child of `cmd`: ask for the parent-death
/// signal (SIGKILL when the spawning thread ends) and check the parent is
/// still `runner`; enter the Landlock layer `scope` (after
/// `no_new_privs`); install `filter`. Any failure fails the spawn: nothing
/// runs half guarded.
#[allow(unsafe_code)]
pub fn harden_child(
    cmd: &mut std::process::Command,
    runner: u32,
    scope: Option<OwnedFd>,
    filter: BpfProgram,
    program: std::os::fd::RawFd,
) {
    use std::os::unix::process::CommandExt as _;
    let runner = i32::try_from(runner).ok();
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe operations are allowed. Everything it uses was made
    // before the fork (the ruleset's descriptor, the filter's instructions);
    // it makes raw system calls only (prctl, getppid, landlock_restrict_self, close_range
    // and seccomp, through rustix, libc and seccompiler's `apply_filter`,
    // which builds its `sock_fprog` on the stack), and its errors are
    // `io::Error`s made from OS error codes, which do not allocate. It
    // touches no memory shared with other threads and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            let parent = rustix::process::getppid().map(|p| p.as_raw_nonzero().get());
            if parent != runner {
                // The runner is already gone: the signal it would have sent
                // will never come.
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            // Run as root, the program would hold CAP_SYS_PTRACE, which
            // reads an undumpable runner's memory and environment (the
            // caller's token) all the same: drop it from the bounding set,
            // so the program never has it. Without CAP_SETPCAP (not root)
            // this fails, and there is nothing to drop.
            let _ = libc::prctl(libc::PR_CAPBSET_DROP, CAP_SYS_PTRACE, 0, 0, 0);
            if let Some(fd) = &scope {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::syscall(libc::SYS_landlock_restrict_self, fd.as_raw_fd(), 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // Only stdin, stdout and stderr pass to the program, and the
            // measured file it is started from (a script's interpreter
            // reads it as /proc/self/fd/N; a binary's is close-on-exec
            // already): a descriptor the runner inherited (a connection
            // its caller opened to the authority's Unix socket, which the
            // kernel named as the caller) must not reach it.
            let program = u32::try_from(program).unwrap_or(u32::MAX);
            for (first, last) in [
                (3, program.saturating_sub(1)),
                (program.saturating_add(1), u32::MAX),
            ] {
                if first <= last
                    && libc::syscall(libc::SYS_close_range, first, last, CLOSE_RANGE_CLOEXEC) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            seccompiler::apply_filter(&filter).map_err(|e| match e {
                seccompiler::Error::Seccomp(io) | seccompiler::Error::Prctl(io) => io,
                _ => std::io::Error::from_raw_os_error(libc::EINVAL),
            })?;
            Ok(())
        });
    }
}
