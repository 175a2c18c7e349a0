//! Local callers identified by the kernel: over a Unix socket
//! (`writ serve --unix PATH`) the caller's uid, gid and pid come from
//! `SO_PEERCRED`, and the executable behind the pid is measured as `writ
//! exec` measures a program (SHA-256 of the file). Rules in the data dir
//! (`peercred.json`) map them to principals; a caller no rule maps is no
//! one (docs/spec/identity.md).
//!
//! **Governed programs are not their user.** A program `writ exec` or
//! `writ mcp-proxy` runs has the uid of the user who ran it, and would be
//! taken for that user. But it runs with `no_new_privs` and a seccomp
//! filter, which it and everything it starts keep for good (the kernel
//! lets neither be undone): a caller that shows either in
//! `/proc/<pid>/status` is *sandboxed*, and only a rule that says
//! `"sandboxed": true` maps it. Such a program calls with its run's
//! credential instead, as a child of its run.
//!
//! The process is the one that connected: its pid comes with a pidfd
//! (`SO_PEERPIDFD`, Linux 6.5), and what is read of it through `/proc` is
//! kept only if the pidfd shows it still running afterwards, so a pid
//! reused meanwhile is never measured in its place
//! (`writ_exec::peer::PeerProcess`). The executable is the one it runs
//! when the connection is accepted: a process that connects and then
//! executes another program (keeping the socket in a child) is measured as
//! that program. A rule that names an executable is therefore a narrowing
//! of what a uid may do, never a barrier between programs of one uid; the
//! sandbox test has no such gap (`no_new_privs` survives every `execve`).
//! The executable is hashed only when a rule names a digest, and only up
//! to [`EXE_HASH_BYTES_MAX`].

use std::collections::HashMap;
use std::fmt;
use std::io::Read as _;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use writ_exec::peer::PeerProcess;

use crate::{Identity, Method};

/// The file in the data dir that holds the rules.
pub const RULES_FILE: &str = "peercred.json";
/// Most rules read.
pub const RULES_MAX: usize = 1024;

/// What the kernel says of a local caller, and what its executable is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPeer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
    /// Runs with `no_new_privs` or under a seccomp filter (as every
    /// program writ governs does).
    pub sandboxed: bool,
    /// The executable's path (`/proc/<pid>/exe`), when it could be read.
    pub exe: Option<String>,
    /// `sha256:<hex>` of that file, when it could be read.
    pub exe_sha256: Option<String>,
}

/// Digests of executables already measured, by file identity (device,
/// inode, size, modification time), so that a connection does not hash
/// its caller's binary again.
#[derive(Default)]
pub struct ExeCache(Mutex<HashMap<FileId, String>>);

/// A file's identity: device, inode, size, modification time (s, ns).
type FileId = (u64, u64, u64, i64, i64);

/// Largest executable hashed for a rule's `exe_sha256` (a caller must not
/// make the server read gigabytes); a larger one has no digest.
pub const EXE_HASH_BYTES_MAX: u64 = 256 << 20;

/// Entries kept in an [`ExeCache`].
const EXE_CACHE_MAX: usize = 256;

impl ExeCache {
    pub fn new() -> ExeCache {
        ExeCache::default()
    }

    /// The digest of `/proc/<pid>/exe` (opened through the link, so the
    /// file the process runs, even if its path was replaced); none for a
    /// file larger than [`EXE_HASH_BYTES_MAX`].
    fn measure(&self, pid: i32) -> Option<String> {
        let link = format!("/proc/{pid}/exe");
        let mut file = std::fs::File::open(&link).ok()?;
        let meta = file.metadata().ok()?;
        if meta.len() > EXE_HASH_BYTES_MAX {
            return None;
        }
        let key = (
            meta.dev(),
            meta.ino(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec(),
        );
        if let Some(d) = self.0.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Some(d);
        }
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut left = EXE_HASH_BYTES_MAX;
        loop {
            let n = file.read(&mut buf).ok()?;
            // A file that grows while it is read is not hashed past the cap.
            left = left.checked_sub(n as u64)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let digest = format!(
            "sha256:{}",
            hasher
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        if let Ok(mut c) = self.0.lock() {
            if c.len() >= EXE_CACHE_MAX {
                c.clear();
            }
            c.insert(key, digest.clone());
        }
        Some(digest)
    }
}

/// What a connection on the Unix socket proved of its caller: the peer,
/// or why it could not be identified (the caller is then no one).
#[derive(Debug, Clone)]
pub struct Peer(pub Result<LocalPeer, PeerError>);

/// Why a local caller is no one.
#[derive(Debug, Clone)]
pub enum PeerError {
    /// The kernel could not name the process that connected.
    Process(Arc<writ_exec::peer::PeerError>),
    /// It exited while it was being identified.
    Exited,
    /// The connection could not be handed over to be identified (why).
    Identifying(String),
    /// No rule maps it; `sandboxed`, it runs as a governed program does,
    /// which only a rule saying `"sandboxed": true` maps.
    Unmapped {
        uid: u32,
        gid: u32,
        exe: Option<String>,
        sandboxed: bool,
    },
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerError::Process(e) => write!(f, "the local caller: {e}"),
            PeerError::Exited => {
                f.write_str("the local caller exited while it was being identified")
            }
            PeerError::Identifying(e) => write!(f, "identifying the local caller: {e}"),
            PeerError::Unmapped {
                uid,
                gid,
                exe,
                sandboxed,
            } => {
                let exe = exe.as_ref().map(|e| format!(", {e}")).unwrap_or_default();
                write!(f, "the local caller (uid {uid}, gid {gid}{exe})")?;
                if *sandboxed {
                    f.write_str(
                        " runs sandboxed (no_new_privs or a seccomp filter), as a program writ \
                         governs does: it is not its user; it calls with its run's credential \
                         (WRIT_TOKEN), or a rule with \"sandboxed\": true maps it",
                    )
                } else {
                    write!(
                        f,
                        " is mapped to no principal ({RULES_FILE} in the data dir)"
                    )
                }
            }
        }
    }
}

impl std::error::Error for PeerError {}

/// Why the rules cannot be read: the file's path and what is wrong.
#[derive(Debug)]
pub enum RulesError {
    /// The file exists but cannot be read.
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// It is not the rules' JSON.
    Parse {
        path: PathBuf,
        error: serde_json::Error,
    },
    /// It holds more than [`RULES_MAX`] rules.
    TooMany { path: PathBuf },
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RulesError::Read { path, error } => write!(f, "{}: {error}", path.display()),
            RulesError::Parse { path, error } => write!(f, "{}: {error}", path.display()),
            RulesError::TooMany { path } => {
                write!(f, "{}: more than {RULES_MAX} rules", path.display())
            }
        }
    }
}

impl std::error::Error for RulesError {}

impl LocalPeer {
    /// The peer of a connected Unix socket: its credentials, whether it is
    /// sandboxed, its executable (hashed when `hash`, for rules that name
    /// a digest); all of the process that connected, or an error.
    pub fn of_socket(
        sock: BorrowedFd<'_>,
        cache: &ExeCache,
        hash: bool,
    ) -> Result<LocalPeer, PeerError> {
        let p = PeerProcess::of(sock).map_err(|e| PeerError::Process(Arc::new(e)))?;
        let exe = std::fs::read_link(format!("/proc/{}/exe", p.pid))
            .ok()
            .map(|e| e.to_string_lossy().into_owned());
        let exe_sha256 = if hash { cache.measure(p.pid) } else { None };
        // Still the process that connected: nothing above was read of
        // another one that took its pid.
        if !p.still_running() {
            return Err(PeerError::Exited);
        }
        Ok(LocalPeer {
            uid: p.uid,
            gid: p.gid,
            pid: Some(p.pid),
            sandboxed: p.sandboxed,
            exe,
            exe_sha256,
        })
    }
}

/// One rule: a caller with this uid (and gid, executable, digest, when
/// given) is this principal.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub uid: u32,
    #[serde(default)]
    pub gid: Option<u32>,
    /// The executable's path, as `/proc/<pid>/exe` names it.
    #[serde(default)]
    pub exe: Option<String>,
    /// `sha256:<hex>` of the executable.
    #[serde(default)]
    pub exe_sha256: Option<String>,
    /// Also map callers that run sandboxed (`no_new_privs` or a seccomp
    /// filter): every program `writ exec` governs is one, so a rule that
    /// says so maps those of this uid too, whatever `exe` says: only for a
    /// uid that runs no governed programs (docs/spec/identity.md).
    #[serde(default)]
    pub sandboxed: bool,
    /// The Cedar UID it maps to, e.g. `User::"alice"`.
    pub principal: String,
}

/// The rules of a data dir (`peercred.json`): the first rule that matches
/// names the principal.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    pub rules: Vec<Rule>,
}

impl Rules {
    /// Read `dir/peercred.json`; no file is no rule (every local caller
    /// then needs a token).
    pub fn load(dir: &Path) -> Result<Rules, RulesError> {
        let path = dir.join(RULES_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Rules::default()),
            Err(error) => return Err(RulesError::Read { path, error }),
        };
        let rules: Rules = match serde_json::from_str(&text) {
            Ok(r) => r,
            Err(error) => return Err(RulesError::Parse { path, error }),
        };
        if rules.rules.len() > RULES_MAX {
            return Err(RulesError::TooMany { path });
        }
        Ok(rules)
    }

    /// Whether a rule names an executable's digest: only then is a local
    /// caller's executable read and hashed.
    pub fn want_digest(&self) -> bool {
        self.rules.iter().any(|r| r.exe_sha256.is_some())
    }

    /// The principal `peer` is, and its identity; or why it is no one.
    pub fn map(&self, peer: &Peer) -> Result<(String, Identity), PeerError> {
        let peer = peer.0.as_ref().map_err(Clone::clone)?;
        let rule = self
            .rules
            .iter()
            .find(|r| {
                (r.sandboxed || !peer.sandboxed)
                    && r.uid == peer.uid
                    && r.gid.is_none_or(|g| g == peer.gid)
                    && r.exe.as_ref().is_none_or(|e| peer.exe.as_ref() == Some(e))
                    && r.exe_sha256
                        .as_ref()
                        .is_none_or(|d| peer.exe_sha256.as_ref() == Some(d))
            })
            .ok_or_else(|| PeerError::Unmapped {
                uid: peer.uid,
                gid: peer.gid,
                exe: peer.exe.clone(),
                sandboxed: peer.sandboxed,
            })?;
        let mut facts = Map::new();
        facts.insert("uid".into(), Value::from(peer.uid));
        facts.insert("gid".into(), Value::from(peer.gid));
        if let Some(pid) = peer.pid {
            facts.insert("pid".into(), Value::from(pid));
        }
        if let Some(e) = &peer.exe {
            facts.insert("exe".into(), Value::String(e.clone()));
        }
        if let Some(d) = &peer.exe_sha256 {
            facts.insert("exe_sha256".into(), Value::String(d.clone()));
        }
        facts.insert("sandboxed".into(), Value::Bool(peer.sandboxed));
        Ok((
            rule.principal.clone(),
            Identity {
                method: Method::Peercred,
                facts,
            },
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::fd::AsFd as _;

    fn me() -> LocalPeer {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        LocalPeer::of_socket(a.as_fd(), &ExeCache::new(), true).unwrap()
    }

    #[test]
    fn the_first_matching_rule_names_the_principal_and_the_executable_is_measured() {
        let me = me();
        assert_eq!(me.pid, Some(std::process::id() as i32));
        assert!(me.exe_sha256.as_deref().unwrap().starts_with("sha256:"));
        let uid = me.uid;
        let rules: Rules = serde_json::from_value(serde_json::json!({"rules": [
            {"uid": uid, "exe": "/nowhere", "principal": "Agent::\"narrow\""},
            {"uid": uid, "principal": "User::\"alice\""}
        ]}))
        .unwrap();
        let (p, id) = rules.map(&Peer(Ok(me.clone()))).unwrap();
        assert_eq!(p, "User::\"alice\"");
        assert_eq!(id.to_context()["method"], "peercred");
        assert_eq!(id.to_context()["uid"], uid);
        let other = LocalPeer {
            uid: uid + 1,
            ..me.clone()
        };
        let e = rules.map(&Peer(Ok(other))).unwrap_err().to_string();
        assert!(e.contains(&format!("uid {}", uid + 1)), "{e}");
        // Sandboxed: mapped only by a rule that says so.
        let boxed = Peer(Ok(LocalPeer {
            sandboxed: true,
            ..me
        }));
        assert!(rules
            .map(&boxed)
            .unwrap_err()
            .to_string()
            .contains("runs sandboxed"));
        let opted: Rules = serde_json::from_value(serde_json::json!({"rules": [
            {"uid": uid, "sandboxed": true, "principal": "Agent::\"boxed\""}
        ]}))
        .unwrap();
        assert_eq!(opted.map(&boxed).unwrap().0, "Agent::\"boxed\"");
        // A peer that could not be identified is no one.
        assert!(rules
            .map(&Peer(Err(PeerError::Identifying("gone".into()))))
            .unwrap_err()
            .to_string()
            .contains("gone"));
    }
}
