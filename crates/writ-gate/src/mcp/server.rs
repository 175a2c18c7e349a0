//! The MCP server `writ mcp-proxy` governs: the confinement asked for it,
//! what its session's writ binds of that, its environment, and its process,
//! started only under the session's [`Grant`].

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use writ_artifact::Grant;
use writ_exec::{Confinement, Enforcement};

/// The MCP server, started by [`spawn_server`].
pub(crate) struct ServerProcess {
    pub(crate) pid: u32,
    pub(crate) stdin: Option<tokio::process::ChildStdin>,
    pub(crate) stdout: Option<tokio::process::ChildStdout>,
    pub(crate) exited: tokio::sync::oneshot::Receiver<std::io::Result<std::process::ExitStatus>>,
}

impl ServerProcess {
    /// Pass `sig` on to the server (it runs in a process group of its own,
    /// and a supervisor's SIGTERM is sent to the proxy alone).
    pub(crate) fn pass_on(&self, sig: i32) {
        let _ = writ_exec::signal_group(self.pid, sig);
    }

    /// SIGKILL to the server's process group.
    pub(crate) fn kill(&self) {
        let _ = writ_exec::signal_group(self.pid, 9);
    }
}

/// What `--confine`, `--read`, `--write` and `--net` ask of the server.
pub(crate) struct Asked<'a> {
    pub(crate) confine: bool,
    pub(crate) read: &'a [PathBuf],
    pub(crate) write: &'a [PathBuf],
    pub(crate) net: bool,
}

/// The confinement asked for the server, if any (`--confine`, `--read`,
/// `--write`): the paths as `writ exec` takes them, the default read-only
/// system trees.
pub(crate) fn server_confinement(a: Asked<'_>) -> Result<Option<Confinement>> {
    if !(a.confine || !a.read.is_empty() || !a.write.is_empty()) {
        if a.net {
            bail!("--net applies to a confined server: give --confine (or --read/--write) too");
        }
        return Ok(None);
    }
    let abs = |v: &[PathBuf]| -> Result<Vec<PathBuf>> {
        v.iter()
            .map(|p| {
                crate::exec::scope_path(p)
                    .with_context(|| format!("--read/--write {}", p.display()))
            })
            .collect()
    };
    let c = Confinement {
        read: abs(a.read)?,
        write: abs(a.write)?,
        net: a.net,
        system_read: writ_exec::DEFAULT_SYSTEM_READ
            .iter()
            .map(PathBuf::from)
            .collect(),
        system_write: writ_exec::DEFAULT_SYSTEM_WRITE
            .iter()
            .map(PathBuf::from)
            .collect(),
    };
    c.check_paths().map_err(anyhow::Error::msg)?;
    Ok(Some(c))
}

/// What the session's writ binds of the server's confinement: nothing for
/// an unconfined server; else the level the kernel enforces, and whether
/// less than full was accepted (a policy can refuse either).
pub(crate) fn session_facts(
    confined: bool,
    level: Enforcement,
    partial: bool,
) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    if confined {
        m.insert("enforcement".into(), json!(level.as_str()));
        if partial {
            m.insert("allow_partial_enforcement".into(), json!(true));
        }
    }
    m
}

/// The scope a confinement asks for, as a writ binds it.
pub(crate) fn scope_of(c: &Confinement) -> writ_artifact::Scope {
    let strings = |v: &[PathBuf]| v.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    writ_artifact::Scope {
        read: strings(&c.read),
        write: strings(&c.write),
        net: c.net,
    }
}

/// The server's environment: the allow-listed variables of the proxy's
/// (the defaults and `env_allow`), and the session's writ, the authority's
/// address `server` and the session's credential, never the agent's token.
pub(crate) fn server_env(
    env_allow: &[String],
    server: &str,
    writ: &str,
    credential: Option<String>,
) -> Vec<(String, String)> {
    let mut allow: Vec<&str> = writ_exec::DEFAULT_ENV_ALLOW.to_vec();
    allow.extend(env_allow.iter().map(String::as_str));
    allow.sort_unstable();
    allow.dedup();
    let mut env: Vec<(String, String)> = allow
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
        .collect();
    env.push(("WRIT_PARENT".into(), writ.to_owned()));
    env.push(("WRIT_SERVER".into(), server.to_owned()));
    if let Some(c) = credential {
        env.push(("WRIT_TOKEN".into(), c));
    }
    env
}

/// Start the server under the session's `grant`: the measured executable,
/// with `env` only, in its own process group, with pipes for its standard
/// input and output, under the terminal-injection filter and the
/// parent-death signal, and, when `asked` is given, confined to the scope
/// the grant grants with the system trees of `asked`.
pub(crate) fn spawn_server(
    exe: &writ_exec::Executable,
    grant: &Grant,
    asked: Option<&Confinement>,
    required: Enforcement,
    argv: &[String],
    env: &[(String, String)],
) -> Result<ServerProcess, writ_exec::ExecError> {
    let granted = asked.map(|c| c.granted(grant));
    let launcher = writ_exec::Launcher::prepare(exe, granted.as_ref(), required)?;
    let (tell, exited) = tokio::sync::oneshot::channel();
    let launched = launcher.launch(exe, grant, asked, required, argv, env, true, move |s| {
        let _ = tell.send(s);
    })?;
    let io = |e: std::io::Error| writ_exec::ExecError::Io(e.to_string());
    Ok(ServerProcess {
        pid: launched.pid,
        stdin: launched
            .stdin
            .map(tokio::process::ChildStdin::from_std)
            .transpose()
            .map_err(io)?,
        stdout: launched
            .stdout
            .map(tokio::process::ChildStdout::from_std)
            .transpose()
            .map_err(io)?,
        exited,
    })
}
