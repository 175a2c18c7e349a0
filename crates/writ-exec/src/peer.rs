//! The process at the other end of a Unix socket, as the kernel names it,
//! and whether it is *sandboxed* the way every program writ governs is.
//!
//! Used both ways: the authority asks it of a local caller (a governed
//! program is not its user; docs/spec/identity.md), and an enforcement
//! point asks it of the server behind a data dir's socket before trusting
//! it (a governed program could have put a socket there).
//!
//! A governed program runs with `no_new_privs` and a seccomp filter
//! ([`crate::guard::harden_child`]); the kernel lets neither be undone, by
//! it or by anything it starts, across every `execve`. So a process that
//! shows either in `/proc/<pid>/status` may be a governed program, and is
//! never taken for its user.

use std::os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd};

/// Why the process behind a socket could not be identified.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// `SO_PEERCRED` failed.
    #[error("SO_PEERCRED: {0}")]
    Credentials(std::io::Error),
    /// The peer lives in another pid namespace.
    #[error("the kernel names no process for the peer (another pid namespace)")]
    NoProcess,
    /// `SO_PEERPIDFD` failed (a kernel before Linux 6.5).
    #[error("SO_PEERPIDFD (Linux 6.5 or later): {0}")]
    Pidfd(std::io::Error),
    /// `SO_PEERPIDFD` succeeded with no descriptor.
    #[error("SO_PEERPIDFD returned no descriptor")]
    NoPidfd,
    /// The peer exited before its pid could be read.
    #[error("the peer exited before it could be identified")]
    ExitedBefore,
    /// The peer exited while `/proc` was read.
    #[error("the peer exited while it was being identified")]
    ExitedDuring,
    /// `/proc/<pid>/status` could not be read.
    #[error("cannot read the status of process {pid}: {error}")]
    Status { pid: i32, error: std::io::Error },
    /// `/proc/<pid>/status` does not say whether the process is sandboxed.
    #[error("the status of process {pid} has no NoNewPrivs or Seccomp field")]
    StatusFields { pid: i32 },
}

/// What the kernel says of the process that connected (or listened).
#[derive(Debug)]
pub struct PeerProcess {
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
    /// Runs with `no_new_privs` or under a seccomp filter.
    pub sandboxed: bool,
    pidfd: OwnedFd,
}

impl PeerProcess {
    /// The peer of `sock`: its credentials (`SO_PEERCRED`), a pidfd of that
    /// very process (`SO_PEERPIDFD`, Linux 6.5), and whether it is
    /// sandboxed, read through `/proc` while the pidfd shows it running.
    pub fn of(sock: BorrowedFd<'_>) -> Result<PeerProcess, PeerError> {
        let cred: libc::ucred =
            getsockopt(sock, libc::SO_PEERCRED).map_err(PeerError::Credentials)?;
        if cred.pid <= 0 {
            return Err(PeerError::NoProcess);
        }
        let fd: libc::c_int = getsockopt(sock, libc::SO_PEERPIDFD).map_err(PeerError::Pidfd)?;
        if fd < 0 {
            return Err(PeerError::NoPidfd);
        }
        // SAFETY: on success the kernel made `fd` a new descriptor of this
        // process, owned by nothing else.
        #[allow(unsafe_code)]
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd) };
        let peer = PeerProcess {
            uid: cred.uid,
            gid: cred.gid,
            pid: cred.pid,
            sandboxed: false,
            pidfd,
        };
        if !peer.still_running() {
            return Err(PeerError::ExitedBefore);
        }
        let sandboxed = sandboxed(peer.pid)?;
        if !peer.still_running() {
            return Err(PeerError::ExitedDuring);
        }
        Ok(PeerProcess { sandboxed, ..peer })
    }

    /// Whether the process is still the one running under `pid`: what was
    /// read of `/proc/<pid>` before this returned true was read of it, not
    /// of another process that took its pid.
    pub fn still_running(&self) -> bool {
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", self.pidfd.as_raw_fd()));
        info.ok()
            .and_then(|i| {
                i.lines()
                    .find_map(|l| l.strip_prefix("Pid:"))
                    .and_then(|v| v.trim().parse::<i32>().ok())
            })
            .is_some_and(|p| p == self.pid)
    }
}

/// `getsockopt(SOL_SOCKET, opt)` into a `T` the kernel fills whole.
#[allow(unsafe_code)]
fn getsockopt<T: Copy>(sock: BorrowedFd<'_>, opt: libc::c_int) -> std::io::Result<T> {
    let mut value = std::mem::MaybeUninit::<T>::zeroed();
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `value`, which is
    // that large, and sets `len` to what it wrote.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            value.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if len as usize != std::mem::size_of::<T>() {
        return Err(std::io::Error::other("the kernel returned a short option"));
    }
    // SAFETY: zero-initialised, and the kernel wrote all of it (checked
    // above); `T` is a plain C type (`ucred`, `c_int`).
    Ok(unsafe { value.assume_init() })
}

/// Whether process `pid` runs with `no_new_privs` or a seccomp filter.
pub fn sandboxed(pid: i32) -> Result<bool, PeerError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|error| PeerError::Status { pid, error })?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    match (field("NoNewPrivs:"), field("Seccomp:")) {
        (Some(nnp), Some(seccomp)) => Ok(nnp != "0" || seccomp != "0"),
        // A kernel that does not say is not trusted to have nothing to say.
        _ => Err(PeerError::StatusFields { pid }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::fd::AsFd as _;

    #[test]
    fn a_socket_pair_names_this_process_and_a_sandboxed_child_says_so() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let me = PeerProcess::of(a.as_fd()).unwrap();
        assert_eq!(me.pid, std::process::id() as i32);
        assert!(me.still_running());
        assert_eq!(me.sandboxed, sandboxed(me.pid).unwrap());
        // A child under no_new_privs (setpriv), asked through /proc.
        let child = std::process::Command::new("setpriv")
            .args(["--no-new-privs", "sleep", "5"])
            .spawn();
        if let Ok(mut c) = child {
            std::thread::sleep(std::time::Duration::from_millis(200));
            assert!(sandboxed(c.id() as i32).unwrap());
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
