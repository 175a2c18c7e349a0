//! The enforcement points as commands: `writ exec` (the governed process
//! runner) and `writ mcp-proxy` (the MCP tool-call gate), their own argument
//! parser, and the small HTTP client they (and the rest of the CLI) use to
//! reach the authority.
//!
//! **Boundary:** nothing here links Cedar, the store or the server. The
//! `writ` binary is this crate plus a dispatch: a line it does not accept
//! goes to `writ-full`, the whole command line. A governed run pays for
//! starting a process before its program starts, and a binary a fifth the
//! size starts in a third of the page faults (BENCHMARKS.md, issue 4); the
//! enforcement point's code is also the code of this crate and the crates it
//! names, not of the authority.
#![forbid(unsafe_code)]

pub mod client;
pub mod exec;
pub mod holder;
pub mod lease;
pub mod mcp;
pub mod signals;
mod step;

use std::ffi::OsString;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use writ_artifact::ReasonCode;

/// The options every command takes (flattened into the full command line too).
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Data directory (store, keys, config).
    #[arg(long, global = true, env = "WRIT_DIR", default_value = ".writ")]
    pub dir: PathBuf,
    /// Server URL for client commands.
    #[arg(
        long,
        global = true,
        env = "WRIT_SERVER",
        default_value = DEFAULT_SERVER
    )]
    pub server: String,
    /// Bearer token for client commands.
    #[arg(long, global = true, env = "WRIT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print a machine-readable JSON answer on standard output.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The server `--server` names by default.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7070";

impl Global {
    /// What an enforcement point (`writ exec`, `writ mcp-proxy`) reaches:
    /// with no token and the default server, the data dir's Unix socket
    /// (`writ.sock`) when a server listens there, where the kernel names
    /// the caller and no token is needed in any environment variable
    /// (docs/spec/identity.md).
    pub fn local_default(&self) -> Global {
        let mut g = self.clone();
        if g.token.is_none() && g.server == DEFAULT_SERVER {
            if let Some(sock) = client::local_socket(&g.dir) {
                g.server = sock;
            }
        }
        g
    }

    /// Whether requests can name their caller: a token, or the Unix socket.
    pub fn can_authenticate(&self) -> bool {
        self.token.is_some() || self.server.starts_with(client::UNIX_SCHEME)
    }
}

/// How a command ended, when it did not fail.
pub enum Exit {
    Ok,
    Denied(ReasonCode),
    /// Ran, but found problems (e.g. policy test mismatches).
    Failed,
    /// A governed program's own exit status, passed through.
    Code(u8),
}

/// The enforcement points' own parser: the global options and the two gate
/// commands, nothing of the others. A line it does not accept (another
/// command, `--help`, a mistake) is parsed by the full command line, which
/// also writes every help and error text, so both read an accepted line
/// alike (a test in `writ-cli` holds them to it).
#[derive(Parser, Debug)]
#[command(name = "writ", version, propagate_version = true, max_term_width = 100)]
pub struct GateCli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: GateCommand,
}

#[derive(Subcommand, Debug)]
pub enum GateCommand {
    /// Run a command under a writ.
    Exec(exec::ExecArgs),
    /// An MCP stdio proxy.
    McpProxy(mcp::McpProxyArgs),
}

/// `args` read as a gate line, or `None` when it is not one (the full command
/// line then parses it). Only a line that names `exec` or `mcp-proxy` before
/// any `--` is tried.
pub fn parse_gate_line(args: &[OsString]) -> Option<GateCli> {
    let mentions = args
        .iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "exec" || a == "mcp-proxy");
    if !mentions {
        return None;
    }
    GateCli::try_parse_from(args).ok()
}

/// The `writ` binary's own work: run a gate line and return its status, or
/// `None` when the line is not one.
pub fn try_main() -> Option<ExitCode> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let cli = parse_gate_line(&args)?;
    quiet_on_closed_stdout();
    init_tracing();
    let exit_at_once = matches!(cli.command, GateCommand::Exec(_));
    Some(block_on(true, exit_at_once, run(cli)))
}

/// Run a parsed gate line.
pub async fn run(cli: GateCli) -> anyhow::Result<Exit> {
    match cli.command {
        GateCommand::Exec(a) => exec::exec(&cli.global, a).await,
        GateCommand::McpProxy(a) => mcp::mcp_proxy(&cli.global, a).await,
    }
}

/// Log to stderr, filtered by `WRIT_LOG` (see [`log_filter`]). A value
/// that does not parse is reported and the default used.
pub fn init_tracing() {
    use tracing_subscriber::prelude::*;
    let spec = std::env::var("WRIT_LOG").ok();
    let filter = log_filter(spec.as_deref()).unwrap_or_else(|e| {
        eprintln!(
            "warning: WRIT_LOG={spec:?} is not `target=level,...` ({e}); logging {LOG_DEFAULT}"
        );
        default_log_filter()
    });
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // Colour only for a person at a terminal, not into log files.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(filter)
        .init();
}

/// What is logged when `WRIT_LOG` is unset or empty.
pub const LOG_DEFAULT: &str = "writ=info,warn";

fn default_log_filter() -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    Targets::new()
        .with_target("writ", LevelFilter::INFO)
        .with_default(LevelFilter::WARN)
}

/// Why a `WRIT_LOG` value names no filter.
#[derive(Debug)]
pub enum LogFilterError {
    /// An item `=level` with no target before the `=`.
    NoTarget(String),
    /// tracing-subscriber refused it (a level it does not know).
    Parse(tracing_subscriber::filter::ParseError),
}

impl std::fmt::Display for LogFilterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogFilterError::NoTarget(item) => write!(f, "`{item}` names no target"),
            LogFilterError::Parse(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for LogFilterError {}

/// The filter a `WRIT_LOG` value names: comma-separated `target=level`
/// (a target is a module path prefix, e.g. `writ_server`) and at most one
/// bare level for everything else. Blanks around items and empty items are
/// ignored (an empty item would otherwise be the target `""`, a prefix of
/// every target, at TRACE); unset or blank means [`LOG_DEFAULT`].
pub fn log_filter(
    spec: Option<&str>,
) -> Result<tracing_subscriber::filter::Targets, LogFilterError> {
    let items: Vec<String> = spec
        .unwrap_or_default()
        .split(',')
        .map(|item| match item.split_once('=') {
            Some((target, level)) => format!("{}={}", target.trim(), level.trim()),
            None => item.trim().to_owned(),
        })
        .filter(|item| !item.is_empty())
        .collect();
    if items.is_empty() {
        return Ok(default_log_filter());
    }
    if let Some(bad) = items.iter().find(|i| i.starts_with('=')) {
        return Err(LogFilterError::NoTarget(bad.clone()));
    }
    items.join(",").parse().map_err(LogFilterError::Parse)
}

/// Run a command to its status. `one_thread`: the enforcement points do
/// their waiting on one thread (no worker threads to start and stop, no
/// hand-over between threads on the path of a message). `exit_at_once`: a
/// governed run exits as soon as its outcome is recorded; what is left
/// (idle connections, the revocation stream, the runtime) needs no orderly
/// shutdown.
pub fn block_on(
    one_thread: bool,
    exit_at_once: bool,
    command: impl Future<Output = anyhow::Result<Exit>>,
) -> ExitCode {
    let built = if one_thread {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    let rt = match built {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = match rt.block_on(command) {
        Ok(Exit::Ok) => 0,
        Ok(Exit::Denied(r)) => r.exit_status(),
        Ok(Exit::Failed) => 1,
        Ok(Exit::Code(c)) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    if exit_at_once {
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        std::process::exit(i32::from(code));
    }
    ExitCode::from(code)
}

/// The status of a command whose standard output was closed under it, as
/// if SIGPIPE had ended it.
pub const CLOSED_STDOUT: u8 = 128 + 13;

/// `writ ... | head -1`: Rust ignores SIGPIPE, so printing to a closed pipe
/// panics ("failed printing to stdout: Broken pipe"). Exit as a program
/// killed by SIGPIPE would, quietly, instead of with a panic and backtrace.
pub fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(i32::from(CLOSED_STDOUT));
        }
        default(info);
    }));
}

/// Print a denial the way every command does: reason code first, on stderr.
pub fn print_denial(reason: ReasonCode, message: &str) {
    eprintln!("denied: {reason}: {message}");
}

/// Whether this process has printed a JSON answer on stdout: a command
/// that failed after printing its answer adds no second one.
static PRINTED_JSON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Print a JSON answer (`--json`), pretty, on stdout.
pub fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    PRINTED_JSON.store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// Print a JSON answer on one line and flush it at once (for a command
/// that goes on running after it: a server says where it listens).
pub fn print_json_line(v: &impl serde::Serialize) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string(v)?)?;
    out.flush()?;
    PRINTED_JSON.store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// Whether [`print_json`] or [`print_json_line`] printed anything yet.
pub fn printed_json() -> bool {
    PRINTED_JSON.load(std::sync::atomic::Ordering::Relaxed)
}

/// The jti of the writ this process runs under (`WRIT_PARENT`, set by a
/// governing `writ exec`), which makes what it asks for a child.
pub fn parent_from_env() -> Option<String> {
    let w = std::env::var("WRIT_PARENT").ok()?;
    writ_artifact::decode_unverified(&w)
        .ok()
        .map(|(_, c)| c.jti)
}

#[cfg(test)]
mod tests {
    use super::log_filter;
    use tracing_subscriber::filter::LevelFilter;

    #[test]
    fn log_filters_ignore_blanks_and_never_widen_to_everything() {
        use tracing::Level;
        let enabled = |spec: &str, target: &str, level: Level| {
            log_filter(Some(spec))
                .unwrap_or_else(|e| panic!("{spec:?}: {e}"))
                .would_enable(target, &level)
        };
        for spec in ["", " ", ",", " , "] {
            assert!(enabled(spec, "writ_server", Level::INFO), "{spec:?}");
            assert!(!enabled(spec, "writ_server", Level::DEBUG), "{spec:?}");
            assert!(!enabled(spec, "hyper", Level::INFO), "{spec:?}");
            assert!(enabled(spec, "hyper", Level::WARN), "{spec:?}");
        }
        // A trailing comma does not turn everything else on at TRACE.
        assert!(enabled("writ=debug,", "writ_gate", Level::DEBUG));
        assert!(!enabled("writ=debug,", "hyper", Level::ERROR));
        // Blanks around items and around `=` are the user's spacing.
        assert!(enabled("writ = info , warn", "writ_mcp", Level::INFO));
        assert!(enabled("writ = info , warn", "h2", Level::WARN));
        assert!(!enabled("writ = info , warn", "h2", Level::INFO));
        assert!(enabled("debug", "anything", Level::DEBUG));
        for bad in ["writ=loud", "=debug", "writ=info,warn=x=y"] {
            assert!(log_filter(Some(bad)).is_err(), "{bad:?}");
        }
        assert_eq!(
            log_filter(None).unwrap().default_level(),
            Some(LevelFilter::WARN)
        );
    }
}
