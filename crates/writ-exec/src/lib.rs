//! The local half of `writ exec`: measure the executable through the one
//! descriptor that will be executed, confine the program with Landlock, and
//! execute that very descriptor.
//!
//! The runner opens the executable once ([`Executable::open`]) and hashes
//! the open file. A [`Launcher`] builds the Landlock ruleset of the scope
//! ([`Confinement`]) on a thread of its own while the authority decides,
//! restricts that thread with the ruleset of the granted scope and from it
//! starts `/proc/self/fd/N`: the kernel opens the file behind the
//! descriptor, not a path, so replacing the file at its path after the
//! measurement cannot change what runs (no time-of-check to time-of-use
//! window), and the program inherits the thread's confinement. It runs
//! nothing without a [`Grant`], which only a verified writ gives, and
//! confines the program to the grant's scope whatever was asked for.
//!
//! **API boundary:** no network, no policy; the runner (writ-cli) asks the
//! authority and verifies the writ.
#![deny(unsafe_code)]

pub mod guard;
pub mod peer;

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use landlock::{
    Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use writ_artifact::Grant;

/// Environment variables a governed program gets (and the writ binds) by
/// default; `--env-allow` adds more. Everything else is dropped, so an
/// unmeasured `LD_PRELOAD` cannot change what runs.
pub const DEFAULT_ENV_ALLOW: &[&str] = &["HOME", "LANG", "LC_ALL", "PATH", "TERM", "TZ", "USER"];

/// Read-only system trees a program needs to load (libraries, locale,
/// `/etc`), granted besides the writ's read paths. Missing ones are skipped.
pub const DEFAULT_SYSTEM_READ: &[&str] = &[
    "/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc", "/opt", "/proc", "/dev",
];
/// Device files every program may write.
pub const DEFAULT_SYSTEM_WRITE: &[&str] = &["/dev/null", "/dev/zero", "/dev/full", "/dev/tty"];

/// Why the runner cannot go on. Each maps to a reason code in the runner.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The command does not name an executable regular file.
    #[error("{0}")]
    NotExecutable(String),
    /// The kernel cannot give the confinement asked for, or applying it failed.
    #[error("{0}")]
    Confinement(String),
    #[error("{0}")]
    Io(String),
    /// The executable's file was written to after it was hashed: what would
    /// run is not what was measured.
    #[error("{0}")]
    Changed(String),
}

/// The executable, open once: what is hashed is what runs.
pub struct Executable {
    file: File,
    /// Canonical absolute path at the time it was opened.
    pub path: PathBuf,
    /// `sha256:<hex>` of the open file's bytes.
    pub sha256: String,
    /// The file's identity and change times, read before it was hashed.
    stamp: Stamp,
}

/// What changes when a file is written to in place (same inode): its size,
/// its modification time and its change time, which no caller can set back
/// (and which Linux makes fine-grained once read, so a write right after
/// the reading is seen).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// `file` still has this stamp, else [`ExecError::Changed`].
    fn check(&self, file: &File, path: &std::path::Path) -> Result<(), ExecError> {
        let now = file.metadata().map_err(|e| ExecError::Io(e.to_string()))?;
        if Stamp::of(&now) == *self {
            Ok(())
        } else {
            Err(ExecError::Changed(format!(
                "{} was written to after it was measured",
                path.display()
            )))
        }
    }
}

impl Executable {
    /// Resolve `cmd` (a path, or a name looked up in `path_var` like a
    /// shell does), open it, check it is an executable regular file, and
    /// hash it through the open descriptor.
    pub fn open(cmd: &str, path_var: Option<&OsStr>) -> Result<Executable, ExecError> {
        let found = resolve(cmd, path_var)?;
        let path = std::fs::canonicalize(&found).map_err(|e| {
            ExecError::NotExecutable(format!("cannot resolve {}: {e}", found.display()))
        })?;
        let mut file = File::open(&path).map_err(|e| {
            ExecError::NotExecutable(format!("cannot open {}: {e}", path.display()))
        })?;
        let meta = file.metadata().map_err(|e| ExecError::Io(e.to_string()))?;
        if !meta.is_file() || meta.mode() & 0o111 == 0 {
            return Err(ExecError::NotExecutable(format!(
                "{} is not an executable file",
                path.display()
            )));
        }
        let mut hasher = Sha256::new();
        // A buffer no larger than the file (plus one byte, so the end is
        // seen in one more read), at most 64 KiB: zeroing a fixed 256 KiB
        // buffer cost 64 page faults per run, most of a small program's
        // hashing time on a VM where a fault is expensive.
        const MAX_BUF: u64 = 64 * 1024;
        let mut buf = vec![0u8; (meta.len().saturating_add(1)).clamp(4096, MAX_BUF) as usize];
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| ExecError::Io(e.to_string()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let sha256 = format!("sha256:{}", hex(&hasher.finalize()));
        let stamp = Stamp::of(&meta);
        Ok(Executable {
            file,
            path,
            sha256,
            stamp,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

fn resolve(cmd: &str, path_var: Option<&OsStr>) -> Result<PathBuf, ExecError> {
    if cmd.is_empty() {
        return Err(ExecError::NotExecutable("no command given".into()));
    }
    if cmd.contains('/') {
        return Ok(PathBuf::from(cmd));
    }
    for dir in std::env::split_paths(path_var.unwrap_or_default()) {
        let candidate = dir.join(cmd);
        if let Ok(m) = std::fs::metadata(&candidate) {
            if m.is_file() && m.mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    Err(ExecError::NotExecutable(format!(
        "{cmd}: command not found in PATH"
    )))
}

/// Make this process the reaper of its orphaned descendants: a process the
/// program starts stays a descendant of the runner even if it leaves the
/// program's process group or session (`setsid`) or outlives its parent,
/// so [`descendants`] still finds it and the runner can still end it.
pub fn become_subreaper() -> Result<(), ExecError> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .map_err(|e| ExecError::Io(format!("cannot become a child subreaper: {e}")))
}

/// The live (not yet exited) descendants of this process, parents before
/// their children, read from `/proc/*/task/*/children`.
pub fn descendants() -> Vec<u32> {
    fn children_of(pid: u32, out: &mut Vec<u32>) {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return;
        };
        for task in tasks.flatten() {
            let Ok(list) = std::fs::read_to_string(task.path().join("children")) else {
                continue;
            };
            out.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    let mut out = Vec::new();
    children_of(std::process::id(), &mut out);
    let mut i = 0;
    while let Some(&pid) = out.get(i) {
        i += 1;
        children_of(pid, &mut out);
    }
    out.retain(|&pid| alive(pid));
    out
}

/// Whether `pid` runs (exists and is not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
    })
}

/// Send `signal` to every live descendant of this process; how many there
/// were.
pub fn signal_descendants(signal: i32) -> usize {
    let Some(sig) = rustix::process::Signal::from_named_raw(signal) else {
        return 0;
    };
    let all = descendants();
    for &pid in &all {
        if let Some(p) = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(p, sig);
        }
    }
    all.len()
}

/// Send `signal` (a signal number such as 15) to the process group `pgid`.
/// `Ok(false)` if the group no longer exists.
pub fn signal_group(pgid: u32, signal: i32) -> Result<bool, ExecError> {
    let pid = i32::try_from(pgid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| ExecError::Io(format!("{pgid} is not a process group id")))?;
    let sig = rustix::process::Signal::from_named_raw(signal)
        .ok_or_else(|| ExecError::Io(format!("{signal} is not a signal")))?;
    match rustix::process::kill_process_group(pid, sig) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::SRCH) => Ok(false),
        Err(e) => Err(ExecError::Io(format!(
            "cannot signal process group {pgid}: {e}"
        ))),
    }
}

/// The host name, as the kernel reports it.
pub fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// The environment facts a writ for this run binds.
pub fn measure(
    exe: &Executable,
    cwd: &Path,
    env: &[(String, String)],
    enforcement: Enforcement,
) -> Map<String, Value> {
    let vars: Map<String, Value> = env
        .iter()
        .map(|(k, v)| {
            let bound = if is_secret_name(k) {
                format!("sha256:{}", hex(&Sha256::digest(v.as_bytes())))
            } else {
                v.clone()
            };
            (k.clone(), Value::from(bound))
        })
        .collect();
    let Value::Object(m) = json!({
        "host": host_name(),
        "executable": exe.path.to_string_lossy(),
        "executable_sha256": exe.sha256,
        "cwd": cwd.to_string_lossy(),
        "env": vars,
        "enforcement": enforcement.as_str(),
    }) else {
        return Map::new();
    };
    m
}

/// A variable whose value is a credential (`*TOKEN*`, `*SECRET*`,
/// `*PASSWORD*`, `*KEY*`, `*CREDENTIAL*`): the writ (and so the log) binds
/// its SHA-256, never the value, while the program still gets the value.
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    ["TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL"]
        .iter()
        .any(|w| n.contains(w))
}

/// How much of a scope the kernel enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Enforcement {
    /// Landlock is unavailable: nothing is enforced by the kernel.
    None,
    /// Landlock enforces part (an older ABI: some rights, e.g. network or
    /// truncation, are not handled).
    Partial,
    /// Every filesystem right, without `--net` TCP bind and connect, and
    /// Landlock's signal scope (the program cannot signal a process outside
    /// its domain, its runner among them).
    Full,
}

impl Enforcement {
    pub fn as_str(self) -> &'static str {
        match self {
            Enforcement::None => "none",
            Enforcement::Partial => "partial",
            Enforcement::Full => "full",
        }
    }
    pub fn parse(s: &str) -> Option<Enforcement> {
        match s {
            "none" => Some(Enforcement::None),
            "partial" => Some(Enforcement::Partial),
            "full" => Some(Enforcement::Full),
            _ => None,
        }
    }
}

/// The newest ABI whose file and network rights a full confinement asks for
/// (the signal scope is ABI 6).
const ABI_FULL: ABI = ABI::V5;

/// What the program may touch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confinement {
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
    pub net: bool,
    pub system_read: Vec<PathBuf>,
    pub system_write: Vec<PathBuf>,
}

fn landlock_err(e: impl std::fmt::Display) -> ExecError {
    ExecError::Confinement(e.to_string())
}

impl Confinement {
    /// This confinement with the scope `grant` grants in place of the one
    /// asked for: read, write and network are the verified writ's, whatever
    /// flags the run was given; the system trees stay.
    pub fn granted(&self, grant: &Grant) -> Confinement {
        let scope = grant.scope();
        Confinement {
            read: scope.read.iter().map(PathBuf::from).collect(),
            write: scope.write.iter().map(PathBuf::from).collect(),
            net: scope.net,
            system_read: self.system_read.clone(),
            system_write: self.system_write.clone(),
        }
    }

    /// The level this kernel can give (probed, nothing restricted).
    pub fn available(&self) -> Enforcement {
        let full = Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_all(ABI_FULL))
            .and_then(|r| r.handle_access(AccessNet::from_all(ABI_FULL)))
            .and_then(|r| r.scope(Scope::Signal))
            .and_then(Ruleset::create);
        if full.is_ok() {
            return Enforcement::Full;
        }
        let some = Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_all(ABI::V1))
            .and_then(Ruleset::create);
        if some.is_ok() {
            Enforcement::Partial
        } else {
            Enforcement::None
        }
    }

    /// The user's paths must exist (Landlock grants rights on open files).
    pub fn check_paths(&self) -> Result<(), ExecError> {
        for p in self.read.iter().chain(&self.write) {
            if !p.is_absolute() {
                return Err(ExecError::Confinement(format!(
                    "scope path {} is not absolute",
                    p.display()
                )));
            }
            if !p.exists() {
                return Err(ExecError::Confinement(format!(
                    "scope path {} does not exist",
                    p.display()
                )));
            }
        }
        Ok(())
    }

    fn ruleset(&self, exe: &Path, level: CompatLevel) -> Result<RulesetCreated, ExecError> {
        let mut rs = Ruleset::default()
            .set_compatibility(level)
            .handle_access(AccessFs::from_all(ABI_FULL))
            .map_err(landlock_err)?;
        if !self.net {
            rs = rs
                .handle_access(AccessNet::from_all(ABI_FULL))
                .map_err(landlock_err)?;
        }
        // The program cannot signal (kill) its runner, nor anything else
        // outside its domain (Landlock ABI 6).
        rs = rs.scope(Scope::Signal).map_err(landlock_err)?;
        let mut c = rs.create().map_err(landlock_err)?;
        let grant = |c: RulesetCreated, p: &Path, write: bool, must: bool| {
            let fd = match PathFd::new(p) {
                Ok(fd) => fd,
                Err(_) if !must => return Ok(c),
                Err(e) => return Err(landlock_err(format!("{}: {e}", p.display()))),
            };
            let is_dir = p.is_dir();
            let mut access = if write {
                AccessFs::from_all(ABI_FULL)
            } else {
                AccessFs::from_read(ABI_FULL)
            };
            if !is_dir {
                access &= AccessFs::from_file(ABI_FULL);
            }
            c.add_rule(PathBeneath::new(fd, access))
                .map_err(landlock_err)
        };
        for p in &self.system_read {
            c = grant(c, p, false, false)?;
        }
        for p in &self.system_write {
            c = grant(c, p, true, false)?;
        }
        for p in &self.read {
            c = grant(c, p, false, true)?;
        }
        for p in &self.write {
            c = grant(c, p, true, true)?;
        }
        grant(c, exe, false, true)
    }
}

/// Whether the open file starts with `#!`.
pub fn is_script(exe: &Executable) -> bool {
    use std::os::unix::fs::FileExt;
    let mut head = [0u8; 2];
    exe.file.read_exact_at(&mut head, 0).is_ok() && &head == b"#!"
}

/// What [`Launcher::launch`] hands the confining thread.
struct Launch {
    cmd: std::process::Command,
    /// `None`: no Landlock ruleset (the seccomp filter and the parent-death
    /// signal still apply).
    confinement: Option<Confinement>,
    exe: PathBuf,
    /// The measured file and its stamp, checked right before it runs.
    measured: (File, Stamp),
    /// The descriptor `cmd` starts (`/proc/self/fd/N`), which stays open
    /// in the program for a script's interpreter.
    program_fd: std::os::fd::RawFd,
    required: Enforcement,
    on_exit: Box<dyn FnOnce(std::io::Result<std::process::ExitStatus>) + Send>,
}

/// What the prepared thread built ahead of the launch.
type Prepared = (Option<Confinement>, PathBuf, Enforcement);

/// A started program: its process id (also its process group's) and, when
/// asked for, the pipes to its standard input and output.
#[derive(Debug)]
pub struct Launched {
    pub pid: u32,
    pub stdin: Option<std::process::ChildStdin>,
    pub stdout: Option<std::process::ChildStdout>,
}

/// A thread made for one run, which builds the Landlock ruleset of a scope
/// ahead of time (the runner prepares it while the authority decides), on
/// [`Launcher::launch`] restricts itself and starts the program, and then
/// waits for it to end.
///
/// Landlock and `no_new_privs` hold for the thread that asks for them and
/// for every process it starts, so this thread restricts itself with the
/// ruleset, starts `/proc/self/fd/N` of the open descriptor, and waits; the
/// runner's other threads stay unconfined. Between fork and exec the child
/// adds its own guards ([`guard::harden_child`]): the parent-death signal
/// (this thread lives as long as the program, and when it dies, with its
/// process, the kernel kills the program), a nested Landlock layer with the
/// signal scope (so the program cannot signal or ptrace this thread, which
/// would otherwise share its domain) and the seccomp filter of
/// [`guard::child_filter`]. An
/// ELF file keeps its close-on-exec flag (the kernel opens it before
/// close-on-exec descriptors close, so the program does not inherit it); a
/// `#!` script's interpreter reads it through that descriptor, so it stays
/// open for a script. Dropped without a launch, the thread ends and nothing
/// runs.
pub struct Launcher {
    go: std::sync::mpsc::Sender<Launch>,
    started: std::sync::mpsc::Receiver<Result<Launched, ExecError>>,
}

impl Launcher {
    /// Start the thread and have it build the ruleset of `confinement` for
    /// `exe` (at least `required`); `None`: no Landlock ruleset.
    pub fn prepare(
        exe: &Executable,
        confinement: Option<&Confinement>,
        required: Enforcement,
    ) -> Result<Launcher, ExecError> {
        let (go, start) = std::sync::mpsc::channel::<Launch>();
        let (tell, started) = std::sync::mpsc::channel();
        let prepared: Prepared = (confinement.cloned(), exe.path.clone(), required);
        std::thread::Builder::new()
            .name("writ-confine".into())
            .spawn(move || {
                let ruleset = prepared
                    .0
                    .as_ref()
                    .map(|c| c.ruleset(&prepared.1, compat_level(prepared.2)));
                let Ok(mut launch) = start.recv() else {
                    return;
                };
                let on_exit = std::mem::replace(&mut launch.on_exit, Box::new(|_| {}));
                match launch.run(prepared, ruleset) {
                    Ok(mut child) => {
                        let launched = Launched {
                            pid: child.id(),
                            stdin: child.stdin.take(),
                            stdout: child.stdout.take(),
                        };
                        let _ = tell.send(Ok(launched));
                        on_exit(child.wait());
                    }
                    Err(e) => {
                        let _ = tell.send(Err(e));
                    }
                }
            })
            .map_err(|e| ExecError::Io(format!("cannot start the confining thread: {e}")))?;
        Ok(Launcher { go, started })
    }

    /// Run the measured file as `argv` with exactly `env`, in a new process
    /// group, under `grant`: with `base`, confined to
    /// [`base.granted(grant)`](Confinement::granted) (the one prepared, or,
    /// if the writ granted another scope, a ruleset built now for that one;
    /// at least `required`, else [`ExecError::Confinement`] and nothing
    /// runs); without, no Landlock ruleset. With `piped`, its standard input
    /// and output are pipes returned in [`Launched`]; otherwise it shares the
    /// runner's. Hands its exit status to `on_exit` when it ends, from the
    /// thread that waited for it.
    #[allow(clippy::too_many_arguments)]
    pub fn launch(
        self,
        exe: &Executable,
        grant: &Grant,
        base: Option<&Confinement>,
        required: Enforcement,
        argv: &[String],
        env: &[(String, String)],
        piped: bool,
        on_exit: impl FnOnce(std::io::Result<std::process::ExitStatus>) + Send + 'static,
    ) -> Result<Launched, ExecError> {
        let Some((arg0, rest)) = argv.split_first() else {
            return Err(ExecError::NotExecutable("no command".into()));
        };
        if is_script(exe) {
            rustix::io::fcntl_setfd(&exe.file, rustix::io::FdFlags::empty())
                .map_err(|e| ExecError::Io(format!("cannot pass the script on: {e}")))?;
        }
        let mut cmd = std::process::Command::new(format!("/proc/self/fd/{}", exe.file.as_raw_fd()));
        cmd.arg0(arg0)
            .args(rest)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .process_group(0);
        if piped {
            cmd.stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped());
        }
        let measured = exe
            .file
            .try_clone()
            .map_err(|e| ExecError::Io(format!("cannot keep the measured file: {e}")))?;
        let launch = Launch {
            cmd,
            confinement: base.map(|c| c.granted(grant)),
            exe: exe.path.clone(),
            measured: (measured, exe.stamp.clone()),
            program_fd: exe.file.as_raw_fd(),
            required,
            on_exit: Box::new(on_exit),
        };
        let gone = || ExecError::Io("the confining thread failed".into());
        self.go.send(launch).map_err(|_| gone())?;
        match self.started.recv().map_err(|_| gone())? {
            Err(ExecError::Io(e)) => Err(ExecError::Io(format!(
                "cannot execute {}: {e}",
                exe.path.display()
            ))),
            other => other,
        }
    }
}

impl Launch {
    /// On the confining thread: restrict it, then start the program.
    fn run(
        mut self,
        prepared: Prepared,
        ruleset: Option<Result<RulesetCreated, ExecError>>,
    ) -> Result<std::process::Child, ExecError> {
        let same = prepared == (self.confinement.clone(), self.exe.clone(), self.required);
        let ruleset = match (&self.confinement, ruleset) {
            (None, _) => None,
            (Some(_), Some(prepared)) if same => Some(prepared?),
            (Some(c), _) => Some(c.ruleset(&self.exe, compat_level(self.required))?),
        };
        match ruleset {
            Some(r) => {
                restrict(r, self.required)?;
            }
            None if self.required > Enforcement::None => {
                return Err(ExecError::Confinement(format!(
                    "{} confinement is required but no scope was given to enforce",
                    self.required.as_str()
                )))
            }
            None => {}
        }
        // The program's own guards, applied in it between fork and exec: no
        // thread of the runner shares its Landlock domain or its filter.
        let scope = guard::scope_layer(
            self.confinement.is_some(),
            self.required == Enforcement::Full,
        )?;
        guard::harden_child(
            &mut self.cmd,
            std::process::id(),
            scope,
            guard::child_filter()?,
            self.program_fd,
        );
        // The last moment before the kernel takes the file: once it runs, a
        // write to it fails (ETXTBSY) for a binary. (A script's interpreter
        // reads it later, and the window from here to the exec remains.)
        let (file, stamp) = &self.measured;
        stamp.check(file, &self.exe)?;
        self.cmd.spawn().map_err(|e| ExecError::Io(e.to_string()))
    }
}

fn compat_level(required: Enforcement) -> CompatLevel {
    if required == Enforcement::Full {
        CompatLevel::HardRequirement
    } else {
        CompatLevel::BestEffort
    }
}

/// Restrict the calling thread with `ruleset`; at least `required`, else an
/// error.
fn restrict(ruleset: RulesetCreated, required: Enforcement) -> Result<Enforcement, ExecError> {
    let status = ruleset.restrict_self().map_err(landlock_err)?;
    let got = enforcement_of(status.ruleset);
    if got < required {
        return Err(ExecError::Confinement(format!(
            "the kernel enforced {} confinement where {} is required",
            got.as_str(),
            required.as_str()
        )));
    }
    Ok(got)
}

fn enforcement_of(status: RulesetStatus) -> Enforcement {
    match status {
        RulesetStatus::FullyEnforced => Enforcement::Full,
        RulesetStatus::PartiallyEnforced => Enforcement::Partial,
        _ => Enforcement::None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn credentials_are_bound_by_digest_never_by_value() {
        let exe = Executable::open("/bin/sh", None).unwrap();
        let env = vec![
            ("WRIT_TOKEN".to_string(), "s3cret".to_string()),
            ("LANG".to_string(), "C.UTF-8".to_string()),
        ];
        let facts = measure(&exe, Path::new("/"), &env, Enforcement::None);
        let text = serde_json::to_string(&facts).unwrap();
        assert!(!text.contains("s3cret"), "{text}");
        assert_eq!(
            facts["env"]["WRIT_TOKEN"],
            format!("sha256:{}", hex(&Sha256::digest(b"s3cret")))
        );
        assert_eq!(facts["env"]["LANG"], "C.UTF-8");
        assert!(is_secret_name("aws_secret_access_key") && !is_secret_name("PATH"));
    }

    #[test]
    fn commands_resolve_through_path_and_hash_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("tool");
        std::fs::write(&tool, b"#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let path = std::env::join_paths([Path::new("/nonexistent"), dir.path()]).unwrap();
        let exe = Executable::open("tool", Some(&path)).unwrap();
        assert_eq!(exe.path, std::fs::canonicalize(&tool).unwrap());
        assert_eq!(
            exe.sha256,
            format!("sha256:{}", hex(&Sha256::digest(b"#!/bin/sh\nexit 0\n")))
        );
        assert!(is_script(&exe));
        // Larger than the hashing buffer: read in several pieces, hashed whole.
        let big = dir.path().join("big");
        let bytes: Vec<u8> = (0..200_003u32).map(|i| (i * 7 + i / 251) as u8).collect();
        std::fs::write(&big, &bytes).unwrap();
        std::fs::set_permissions(&big, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let exe = Executable::open(big.to_str().unwrap(), None).unwrap();
        assert_eq!(
            exe.sha256,
            format!("sha256:{}", hex(&Sha256::digest(&bytes)))
        );
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"data").unwrap();
        assert!(matches!(
            Executable::open(plain.to_str().unwrap(), None),
            Err(ExecError::NotExecutable(_))
        ));
        assert!(matches!(
            Executable::open("no-such-tool", Some(&path)),
            Err(ExecError::NotExecutable(_))
        ));
    }
}
