//! What keeps a governed program inside its run besides Landlock's file and
//! network rules:
//!
//! - a seccomp filter refusing (`EPERM`) the two ioctls that write into a
//!   terminal's input queue, `TIOCSTI` and `TIOCLINUX`: a program holding
//!   the caller's terminal (its standard input, or `/dev/tty`) could
//!   otherwise type a command into the caller's shell, to run after the
//!   governed run ends, ungoverned. (Linux 6.2 and later can refuse
//!   `TIOCSTI` to unprivileged callers, `dev.tty.legacy_tiocsti=0`; where
//!   it is 1, as on many hosts, only a filter stops it.)
//! - the parent-death signal: the program is killed by the kernel (SIGKILL)
//!   when the runner's thread that started it ends, so a runner killed with
//!   SIGKILL does not leave its program running, unwatched.
//!
//! Both are applied on the launching thread (the filter) or in the child
//! between fork and exec (the signal), and hold for the program and, for the
//! filter, everything it starts (filters are inherited and cannot be removed).

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::ExecError;

/// `ioctl` request numbers (asm-generic, the same on x86-64 and arm64).
const TIOCSTI: u64 = 0x5412;
const TIOCLINUX: u64 = 0x541C;
/// x32's `ioctl` (system call 514 with the x32 bit): a 64-bit process can
/// make x32 system calls where the kernel allows them, and they carry the
/// x86-64 architecture tag, so the filter must name this number too.
#[cfg(target_arch = "x86_64")]
const X32_IOCTL: i64 = 0x4000_0000 | 514;

fn filter_err(e: impl std::fmt::Display) -> ExecError {
    ExecError::Confinement(format!("cannot build the terminal-injection filter: {e}"))
}

/// The seccomp program: `ioctl(_, TIOCSTI | TIOCLINUX, ...)` fails with
/// `EPERM`, everything else is allowed. The request is compared on its low
/// 32 bits, as the kernel reads it (`unsigned int`): setting high bits does
/// not get past it. A system call of another architecture (32-bit `int
/// 0x80` from an x86-64 process) is not covered by these numbers, so it
/// kills the process, as seccompiler's architecture check does: a 32-bit
/// program cannot run under writ.
pub fn terminal_filter() -> Result<BpfProgram, ExecError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(filter_err)?;
    let injecting = || -> Result<Vec<SeccompRule>, ExecError> {
        [TIOCSTI, TIOCLINUX]
            .into_iter()
            .map(|req| {
                SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, req)
                    .and_then(|c| SeccompRule::new(vec![c]))
                    .map_err(filter_err)
            })
            .collect()
    };
    #[allow(unused_mut)]
    let mut rules = std::collections::BTreeMap::new();
    rules.insert(libc::SYS_ioctl, injecting()?);
    #[cfg(target_arch = "x86_64")]
    rules.insert(X32_IOCTL, injecting()?);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(filter_err)?;
    BpfProgram::try_from(filter).map_err(filter_err)
}

/// Install `filter` on the calling thread (it also sets `no_new_privs`,
/// which Landlock has set already on a confined thread). What the thread
/// starts inherits it.
pub fn apply(filter: &BpfProgram) -> Result<(), ExecError> {
    seccompiler::apply_filter(filter)
        .map_err(|e| ExecError::Confinement(format!("cannot install the seccomp filter: {e}")))
}

/// Have the child of `cmd` killed (SIGKILL) when the thread that spawns it
/// ends: a runner killed outright takes its program with it. The child
/// checks that its parent is still `runner` right after asking, so a runner
/// that died in between does not leave it running either.
#[allow(unsafe_code)]
pub fn die_with_runner(cmd: &mut std::process::Command, runner: u32) {
    use std::os::unix::process::CommandExt as _;
    let runner = i32::try_from(runner).ok();
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe operations are allowed. It makes two raw system calls
    // (rustix's prctl and getppid wrappers, which neither allocate nor take
    // locks) and builds an `io::Error` from a raw OS error code, which does
    // not allocate either. It touches no memory shared with other threads.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            let parent = rustix::process::getppid().map(rustix::process::Pid::as_raw_nonzero);
            if parent.map(|p| p.get()) != runner {
                // The runner is already gone: the signal it would have sent
                // will never come.
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}
