//! The command line of `writ exec`.

use std::path::PathBuf;

use clap::Args;

/// The longest `--unreachable-grace` (`writ exec` and `writ mcp-proxy`).
pub const UNREACHABLE_GRACE_MAX: u64 = 300;
/// The longest `--kill-grace`.
const KILL_GRACE_MAX: u64 = 60;

#[derive(Args, Debug)]
#[command(after_long_help = "\
Exit status: the program's own (128 + N if a signal N ended it), or on a \
denial the reason code's status (10-26, see `writ help`), with \
`denied: <reason>: <message>` on standard error. A denial before the run \
means the program never started. With --json, such a denial is also \
printed as JSON on standard output ({decision, reason, message}), and \
--authorize-only prints the authority's answer as JSON ({decision, writ, jti, \
log_index, exp}); the program's own output is never touched. A writ this command asks for is started (its nonce spent) in the same commit as the decision; one given with --writ is started after it is verified here.

While the program runs, its writ is a lease: writ exec renews it before it \
ends (each renewal re-evaluates the policy active then) and, from 20 ms \
after the start, listens to the authority's revocation stream (a revocation \
made before then is reported as the stream opens). A revocation of the writ or an ancestor, a \
denied renewal, or the authority unreachable past --unreachable-grace ends \
the program's process group (SIGTERM, SIGKILL after --kill-grace); writ exec \
then exits with that reason code's status and records why in the log. \
Every process the program started is ended with it, even one in another \
process group or session (writ exec is their subreaper), and when the \
program exits, what it left running is ended too (SIGTERM, SIGKILL after \
--kill-grace): nothing it started runs on ungoverned. \
SIGINT, SIGTERM and SIGHUP sent to writ exec are passed to the program.

The program gets its writ in WRIT_PARENT, the authority's address in \
WRIT_SERVER and, in WRIT_TOKEN, a credential of this execution (never the \
token writ exec itself was given): a writ exec or writ authorize inside it \
is always a child of this run, asks for no more than it holds, and the \
credential stops working when the run ends or is revoked. To reach the \
authority the program needs --net.

The program cannot write into the caller's terminal input (the TIOCSTI \
and TIOCLINUX ioctls are refused), cannot signal writ exec or anything \
else outside its confinement, and is killed by the kernel if writ exec \
itself is killed. By default the kernel must enforce the whole scope \
(Landlock ABI 6 or later); --allow-partial-enforcement runs with what the \
kernel gives, which the writ binds and the policy sees.

Examples:
  writ exec -- /usr/bin/make test
  writ exec --read /srv/data --write /tmp/out -- ./transform /srv/data /tmp/out
  writ exec --authorize-only -- deploy.sh prod > writ.jws   # obtain, run later
  writ exec --writ writ.jws -- deploy.sh prod")]
pub struct ExecArgs {
    #[command(flatten)]
    pub scope: ScopeFlags,
    /// Lifetime of the writ in seconds (default 60, at most 3600).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=writ_artifact::WRIT_LIFETIME_SECS_MAX))]
    pub lifetime: Option<u64>,
    /// This enforcement point's audience (default `exec@<host name>`).
    #[arg(long)]
    pub audience: Option<String>,
    /// Another environment variable the program gets and the writ binds
    /// (repeatable; HOME, LANG, LC_ALL, PATH, TERM, TZ and USER always).
    /// WRIT_TOKEN, WRIT_SERVER and WRIT_PARENT are writ exec's own: it sets
    /// them for the program.
    #[arg(long = "env-allow", value_name = "NAME", value_parser = env_allow_name)]
    pub env_allow: Vec<String>,
    /// Read-only system trees granted besides --read (repeatable; replaces
    /// the default /usr /lib /lib64 /lib32 /bin /sbin /etc /opt /proc /dev).
    /// They are part of the measured environment (`system_read`): the writ
    /// binds them and a policy can refuse them.
    #[arg(long = "system-read", value_name = "PATH")]
    pub system_read: Vec<PathBuf>,
    /// Run even where the kernel enforces only part of the scope, or none of
    /// it (an older kernel, Landlock off). The writ binds the level the
    /// kernel gives (`environment.enforcement`) and this choice
    /// (`environment.allow_partial_enforcement`), so a policy can refuse
    /// either; without this flag such a run is denied with
    /// integrity_failure.
    #[arg(long, conflicts_with = "require_full_enforcement")]
    pub allow_partial_enforcement: bool,
    /// The default (kept for scripts that pass it).
    #[arg(long, hide = true)]
    pub require_full_enforcement: bool,
    /// Run with this writ (a file, or `-` for standard input) instead of
    /// asking for one: it must bind this exact command and environment.
    #[arg(long, value_name = "FILE", conflicts_with = "authorize_only")]
    pub writ: Option<String>,
    /// Obtain the writ for this command and print it; do not run.
    #[arg(long)]
    pub authorize_only: bool,
    /// How long the authority may be unreachable (revocation stream down, or
    /// renewals failing past the lease's end) before the run is ended with
    /// authority_unavailable. An authority that accepts the connection but
    /// does not answer is unreachable too: a request waits for its answer
    /// this long (at least 5 s), then fails.
    /// At most 300: past that a program would run on, ungoverned, for as
    /// long as the caller chose.
    #[arg(long, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(0..=UNREACHABLE_GRACE_MAX))]
    pub unreachable_grace: u64,
    /// After SIGTERM to the program's process group, how long to wait before
    /// SIGKILL; at most 60 (a program that ignores SIGTERM must not outlive
    /// its revocation for long).
    #[arg(long, value_name = "SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(0..=KILL_GRACE_MAX))]
    pub kill_grace: u64,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub argv: Vec<String>,
}

/// The scope flags of both enforcement points: what the program they
/// confine (`writ exec`'s command, `writ mcp-proxy`'s server) may touch.
#[derive(Args, Debug, Clone, Default)]
pub struct ScopeFlags {
    /// A path the confined program may read (repeatable); must exist. A
    /// relative path is taken from the current directory, and `..` is
    /// resolved as the kernel would.
    #[arg(long)]
    pub read: Vec<PathBuf>,
    /// A path the confined program may write (repeatable); must exist. A
    /// relative path is taken from the current directory, and `..` is
    /// resolved as the kernel would.
    #[arg(long)]
    pub write: Vec<PathBuf>,
    /// The confined program may use the network (otherwise TCP bind and
    /// connect are refused by the kernel).
    #[arg(long)]
    pub net: bool,
}

/// Variables writ exec sets for the program itself.
pub const RUNNER_VARS: [&str; 3] = ["WRIT_TOKEN", "WRIT_SERVER", "WRIT_PARENT"];

/// Why an `--env-allow` name is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvAllowError {
    /// One of [`RUNNER_VARS`].
    RunnerVar(String),
    /// Empty, or holding `=` or NUL.
    NotAName(String),
}

impl std::fmt::Display for EnvAllowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvAllowError::RunnerVar(name) => write!(
                f,
                "{name} is set by writ exec itself: the program gets WRIT_PARENT, WRIT_SERVER and, in \
                 WRIT_TOKEN, a credential of its own run, never the caller's token"
            ),
            EnvAllowError::NotAName(name) => {
                write!(f, "{name:?} is not an environment variable name")
            }
        }
    }
}

impl std::error::Error for EnvAllowError {}

/// An `--env-allow` name: not one of [`RUNNER_VARS`] (the program would
/// otherwise get the caller's own token, with which it could ask for writs
/// that are not children of its run).
pub fn env_allow_name(name: &str) -> Result<String, EnvAllowError> {
    if RUNNER_VARS.contains(&name) {
        return Err(EnvAllowError::RunnerVar(name.to_owned()));
    }
    if name.is_empty() || name.contains('=') || name.contains('\0') {
        return Err(EnvAllowError::NotAName(name.to_owned()));
    }
    Ok(name.to_owned())
}

/// `p` as the normal absolute path a scope holds: taken from the current
/// directory when relative, without `.`, doubled or trailing slashes; with
/// `..`, resolved through the file system (a `..` after a symbolic link is
/// the link target's parent, which a lexical cut would get wrong).
pub(crate) fn scope_path(p: &std::path::Path) -> std::io::Result<PathBuf> {
    use std::path::Component;
    let abs = std::path::absolute(p)?;
    if abs.components().any(|c| c == Component::ParentDir) {
        return std::fs::canonicalize(&abs);
    }
    Ok(abs.components().collect())
}
