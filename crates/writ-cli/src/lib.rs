//! The `writ` command line. Two stages, as in ripgrep: clap parses what the
//! user typed ([`Cli`]), then each command resolves it into library objects
//! and calls the library crates. Nothing here decides anything.
#![forbid(unsafe_code)]

mod bench;
mod benchexec;
mod benchlog;
mod benchsoak;
mod client;
mod cmd;
mod datadir;
mod demo;
mod exec;
mod lease;
mod logcmd;
mod mcp;
mod server;
mod signals;
mod witness;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use writ_artifact::ReasonCode;

pub use datadir::DataDir;

/// writ: nothing runs until it is authorized.
///
/// A Cedar policy decides, the decision is durably appended to a tamper-evident
/// log, and only then is a signed writ (an Ed25519 JWS bound to the exact
/// request) issued. Enforcement points verify it offline and fail closed.
///
/// Exit status: 0 on success or allow; 1 on an operating error; 2 on a usage
/// error; on a denial, one status per reason code (also printed on stderr as
/// `denied: <code>: <message>`): 10 policy_denied, 11 missing_artifact,
/// 12 malformed_artifact, 13 invalid_signature, 14 expired, 15 not_yet_valid,
/// 16 replayed, 17 request_mismatch, 18 environment_mismatch,
/// 19 audience_mismatch, 20 policy_mismatch, 21 revoked, 22 lineage_broken,
/// 23 scope_escalation, 24 unauthenticated, 25 authority_unavailable,
/// 26 integrity_failure.
#[derive(Parser, Debug)]
#[command(name = "writ", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

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
        default_value = "http://127.0.0.1:7070"
    )]
    pub server: String,
    /// Bearer token for client commands.
    #[arg(long, global = true, env = "WRIT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print a machine-readable JSON answer on standard output.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a data dir: keys, store, the default policy bundle, the first admin.
    Init(cmd::InitArgs),
    /// Run the authority's HTTP server.
    Serve(server::ServeArgs),
    /// Play the scripted scenario on a throwaway server, then keep serving.
    ///
    /// The demo makes its own temporary data dir, server and tokens, so
    /// `--dir`, `--server` and `--token` are refused here; `writ init` and
    /// `writ serve` make a lasting one.
    Demo(demo::DemoArgs),
    /// Ask the authority for a writ.
    Authorize(cmd::AuthorizeArgs),
    /// Verify a writ, offline (data dir or JWKS) or against a server.
    Verify(cmd::VerifyArgs),
    /// Run a command under a writ: authorize this exact command, verify,
    /// spend the nonce, run the measured file confined to the scope.
    Exec(exec::ExecArgs),
    /// An MCP stdio proxy a client launches in place of the server: every
    /// tools/call is authorized (and logged) before it reaches the tool.
    McpProxy(mcp::McpProxyArgs),
    /// Revoke a writ (and its whole subtree) or a principal.
    Revoke(cmd::RevokeArgs),
    /// Policy bundles: check, test, bundle, activate; an MCP server's schema (mcp-schema).
    #[command(subcommand)]
    Policy(cmd::PolicyCmd),
    /// Principals: register one and print its token once.
    #[command(subcommand)]
    Principal(cmd::PrincipalCmd),
    /// Signing keys: rotate.
    #[command(subcommand)]
    Key(cmd::KeyCmd),
    /// Spend a writ's nonce, renew its lease, or record its end (what gateways call).
    #[command(subcommand)]
    Execution(cmd::ExecutionCmd),
    /// Print the lineage tree of an execution.
    Lineage(cmd::LineageArgs),
    /// The audit log: verify it (offline, remote, or an evidence bundle),
    /// print proofs, export evidence bundles, publish a checkpoint.
    #[command(subcommand)]
    Log(logcmd::LogCmd),
    /// Run a witness that cosigns a log's checkpoints after checking each is
    /// consistent with the last one it saw (C2SP tlog-witness).
    Witness(witness::WitnessArgs),
    /// Report the Execution Governance Maturity level (EGMM 0-5) this
    /// deployment demonstrates, each criterion with the evidence checked.
    Assess(logcmd::AssessArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
}

/// `writ exec`'s own parser: the global options and exec's arguments, and
/// nothing of the other commands. Building the whole command tree took a
/// third of a millisecond of every governed run (BENCHMARKS.md, issue 4).
#[derive(Parser, Debug)]
#[command(name = "writ", version, propagate_version = true, max_term_width = 100)]
struct ExecCli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: ExecOnly,
}

#[derive(Subcommand, Debug)]
enum ExecOnly {
    Exec(exec::ExecArgs),
}

/// Parse the command line. A line with `exec` before any `--` is tried with
/// [`ExecCli`] first; anything it does not accept (another command, `--help`,
/// a mistake) goes to the full [`Cli`], which also writes every help and
/// error text, so both parse an accepted line alike.
fn parse() -> Cli {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mentions_exec = args
        .iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "exec");
    if mentions_exec {
        if let Ok(ExecCli {
            global,
            command: ExecOnly::Exec(e),
        }) = ExecCli::try_parse_from(&args)
        {
            return Cli {
                global,
                command: Command::Exec(e),
            };
        }
    }
    let matches = Cli::command().get_matches_from(args);
    if let Some(("demo", m)) = matches.subcommand() {
        // Global flags show under every command; the demo would ignore these.
        let ignored = ["dir", "server", "token"]
            .into_iter()
            .find(|f| m.value_source(f) == Some(ValueSource::CommandLine));
        let mut cli = Cli::command();
        cli.build();
        if let (Some(flag), Some(demo)) = (ignored, cli.find_subcommand_mut("demo")) {
            demo.error(
                clap::error::ErrorKind::ArgumentConflict,
                format!(
                    "writ demo makes its own temporary data dir, server and tokens and does not \
                     use --{flag}; for a lasting one run `writ init` and `writ serve`"
                ),
            )
            .exit();
        }
    }
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
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

/// Entry point of the `writ` binary.
pub fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let cli = parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WRIT_LOG")
                .unwrap_or_else(|_| "writ=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, not into log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // `writ exec` stands between a caller and its program, and `writ
    // mcp-proxy` between an agent and its tool server: one thread does their
    // waiting (no worker threads to start and stop, and no hand-over between
    // threads on the path of a message), and an exec exits as soon as the
    // outcome is recorded.
    let runner = matches!(cli.command, Command::Exec(_));
    let one_thread = runner || matches!(cli.command, Command::McpProxy(_));
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
    let code = match rt.block_on(run(cli)) {
        Ok(Exit::Ok) => 0,
        Ok(Exit::Denied(r)) => r.exit_status(),
        Ok(Exit::Failed) => 1,
        Ok(Exit::Code(c)) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    if runner {
        // Everything the run owes the log was acknowledged before `run`
        // returned; what is left (idle connections, the revocation stream,
        // the runtime) needs no orderly shutdown.
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        std::process::exit(i32::from(code));
    }
    ExitCode::from(code)
}

async fn run(cli: Cli) -> anyhow::Result<Exit> {
    let g = cli.global;
    match cli.command {
        Command::Init(a) => cmd::init(&g, a).await,
        Command::Serve(a) => server::serve(&g, a).await,
        Command::Demo(a) => demo::demo(&g, a).await,
        Command::Authorize(a) => cmd::authorize(&g, a).await,
        Command::Verify(a) => cmd::verify(&g, a).await,
        Command::Exec(a) => exec::exec(&g, a).await,
        Command::McpProxy(a) => mcp::mcp_proxy(&g, a).await,
        Command::Revoke(a) => cmd::revoke(&g, a).await,
        Command::Policy(c) => cmd::policy(&g, c).await,
        Command::Principal(c) => cmd::principal(&g, c).await,
        Command::Key(c) => cmd::key(&g, c).await,
        Command::Execution(c) => cmd::execution(&g, c).await,
        Command::Lineage(a) => cmd::lineage(&g, a).await,
        Command::Log(c) => logcmd::log(&g, c).await,
        Command::Witness(a) => witness::witness(&g, a).await,
        Command::Assess(a) => logcmd::assess(&g, a).await,
        Command::Bench(c) => bench::bench(&g, c).await,
    }
}

/// The status of a command whose standard output was closed under it, as
/// if SIGPIPE had ended it.
pub(crate) const CLOSED_STDOUT: u8 = 128 + 13;

/// `writ ... | head -1`: Rust ignores SIGPIPE, so printing to a closed pipe
/// panics ("failed printing to stdout: Broken pipe"). Exit as a program
/// killed by SIGPIPE would, quietly, instead of with a panic and backtrace.
fn quiet_on_closed_stdout() {
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
pub(crate) fn print_denial(reason: ReasonCode, message: &str) {
    eprintln!("denied: {reason}: {message}");
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    #[test]
    fn the_exec_parser_reads_an_exec_line_as_the_full_one_does() {
        super::ExecCli::command().debug_assert();
        let lines: &[&[&str]] = &[
            &["writ", "exec", "--", "/bin/true"],
            &[
                "writ",
                "--server",
                "http://h:1",
                "exec",
                "--net",
                "--",
                "ls",
                "-l",
            ],
            &[
                "writ",
                "exec",
                "--read",
                "/tmp",
                "--write",
                "/var/tmp",
                "--lifetime",
                "30",
                "--json",
                "--",
                "cp",
                "a",
                "b",
            ],
            &[
                "writ",
                "exec",
                "--token",
                "t",
                "--env-allow",
                "X",
                "--system-read",
                "/usr",
                "--require-full-enforcement",
                "--",
                "x",
            ],
            &[
                "writ",
                "--dir",
                "/d",
                "exec",
                "--writ",
                "-",
                "--unreachable-grace",
                "3",
                "--kill-grace",
                "1",
                "--",
                "exec",
                "--",
            ],
        ];
        for line in lines {
            let fast = super::ExecCli::try_parse_from(*line).unwrap();
            let full = super::Cli::try_parse_from(*line).unwrap();
            let super::ExecOnly::Exec(e) = fast.command;
            assert_eq!(
                format!("{:?} {:?}", fast.global, e),
                format!(
                    "{:?} {:?}",
                    full.global,
                    match full.command {
                        super::Command::Exec(e) => e,
                        other => panic!("{other:?}"),
                    }
                ),
                "{line:?}"
            );
        }
        // What the exec parser refuses, the full one parses or explains.
        for line in [
            &["writ", "lineage", "exec"][..],
            &["writ", "exec", "--help"],
            &["writ", "exec"],
            &["writ", "exec", "--bogus", "--", "x"],
        ] {
            assert!(super::ExecCli::try_parse_from(line).is_err(), "{line:?}");
        }
        assert!(super::Cli::try_parse_from(["writ", "lineage", "exec"]).is_ok());
    }

    #[test]
    fn help_lists_every_reason_codes_exit_status() {
        let help = super::Cli::command()
            .render_long_help()
            .to_string()
            .replace('\n', " ");
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        for code in writ_artifact::ReasonCode::ALL {
            let entry = format!("{} {}", code.exit_status(), code.as_str());
            assert!(help.contains(&entry), "`writ --help` lacks {entry:?}");
        }
    }
}
