//! The `writ` command line. Two stages, as in ripgrep: clap parses what the
//! user typed ([`Cli`]), then each command resolves it into library objects
//! and calls the library crates. Nothing here decides anything.
#![forbid(unsafe_code)]

mod commands;
mod datadir;
mod listen;
mod logsource;
mod output;
mod remote;
pub mod server;

use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use commands::{
    authorize, demo, execution, init, issuer, key, log, pins, policy, principal, revoke, verify,
    witness,
};
// What `writ bench` (crates/writ-bench) sets up its measurements with.
pub use commands::init::init_quiet;
pub use commands::log::verify_store;
pub use datadir::{write_atomic, DataDir};
use writ_gate::{client, exec, mcp};
pub use writ_gate::{print_denial, print_json, Exit, Global, CLOSED_STDOUT};

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
/// 26 integrity_failure, 27 holder_mismatch, 28 definition_changed
/// (docs/spec/reason-codes.md).
#[derive(Parser, Debug)]
#[command(name = "writ", version, propagate_version = true, max_term_width = 100)]
pub struct Cli<X: Extension = NoExtension> {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command<X>,
}

#[derive(Subcommand, Debug)]
pub enum Command<X: Extension = NoExtension> {
    /// Create a data dir: keys, store, the default policy bundle, the first admin.
    Init(init::InitArgs),
    /// Run the authority's HTTP server.
    Serve(server::ServeArgs),
    /// Play the scripted scenario on a throwaway server, then keep serving.
    ///
    /// The demo makes its own temporary data dir, server and tokens, so
    /// `--dir`, `--server` and `--token` are refused here; `writ init` and
    /// `writ serve` make a lasting one.
    Demo(demo::DemoArgs),
    /// Ask the authority for a writ.
    Authorize(authorize::AuthorizeArgs),
    /// Verify a writ, offline (data dir or JWKS) or against a server.
    Verify(verify::VerifyArgs),
    /// Run a command under a writ: authorize this exact command, verify,
    /// spend the nonce, run the measured file confined to the scope.
    Exec(exec::ExecArgs),
    /// An MCP stdio proxy a client launches in place of the server: every
    /// request that makes the server act or disclose (tools/call,
    /// resources/read, prompts/get, ...) is authorized and logged first.
    McpProxy(mcp::McpProxyArgs),
    /// MCP tools' pinned definitions: list them, approve a changed one.
    #[command(subcommand)]
    Mcp(pins::McpCmd),
    /// Revoke a writ (and so its whole subtree) or a principal, for good.
    Revoke(revoke::RevokeArgs),
    /// Policy bundles: check, test, bundle, activate; an MCP server's schema (mcp-schema).
    #[command(subcommand)]
    Policy(policy::PolicyCmd),
    /// Principals: add, list, rotate a token, disable, enable.
    #[command(subcommand)]
    Principal(principal::PrincipalCmd),
    /// External identity issuers (OIDC, SPIFFE, Kubernetes) whose JWTs authenticate callers.
    #[command(subcommand)]
    Issuer(issuer::IssuerCmd),
    /// Signing keys: rotate.
    #[command(subcommand)]
    Key(key::KeyCmd),
    /// Spend a writ's nonce, renew its lease, or record its end (what gateways call).
    #[command(subcommand)]
    Execution(execution::ExecutionCmd),
    /// Print the lineage tree of an execution.
    Lineage(execution::LineageArgs),
    /// The audit log: verify it (offline, remote, or an evidence bundle),
    /// print proofs, export evidence bundles, publish a checkpoint.
    #[command(subcommand)]
    Log(log::LogCmd),
    /// Run a witness that cosigns a log's checkpoints after checking each is
    /// consistent with the last one it saw (C2SP tlog-witness).
    Witness(witness::WitnessArgs),
    /// Report the Execution Governance Maturity level (EGMM 0-5) this
    /// deployment demonstrates, each criterion with the evidence checked.
    Assess(log::AssessArgs),
    /// The commands the binary adds (`writ-full` adds `writ bench`).
    #[command(flatten)]
    Extension(X),
}

/// Commands a binary adds to this command line, listed after the others:
/// the `writ-full` binary adds `writ bench` (crates/writ-bench), which
/// this library does not hold.
pub trait Extension: Subcommand + std::fmt::Debug {
    /// Run the command.
    fn run(self, g: &Global) -> impl std::future::Future<Output = anyhow::Result<Exit>>;
}

/// No commands added.
#[derive(Debug)]
pub enum NoExtension {}

impl FromArgMatches for NoExtension {
    fn from_arg_matches(_: &clap::ArgMatches) -> Result<Self, clap::Error> {
        Err(clap::Error::new(clap::error::ErrorKind::InvalidSubcommand))
    }
    fn update_from_arg_matches(&mut self, _: &clap::ArgMatches) -> Result<(), clap::Error> {
        match *self {}
    }
}

impl Subcommand for NoExtension {
    fn augment_subcommands(cmd: clap::Command) -> clap::Command {
        cmd
    }
    fn augment_subcommands_for_update(cmd: clap::Command) -> clap::Command {
        cmd
    }
    fn has_subcommand(_: &str) -> bool {
        false
    }
}

impl Extension for NoExtension {
    async fn run(self, _: &Global) -> anyhow::Result<Exit> {
        match self {}
    }
}

/// Parse the full command line (a gate line was tried by
/// [`writ_gate::try_main`] first).
fn parse<X: Extension>() -> Cli<X> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let matches = Cli::<X>::command().get_matches_from(args);
    if let Some(("demo", m)) = matches.subcommand() {
        // Global flags show under every command; the demo would ignore these.
        let ignored = ["dir", "server", "token"]
            .into_iter()
            .find(|f| m.value_source(f) == Some(ValueSource::CommandLine));
        let mut cli = Cli::<X>::command();
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
    Cli::<X>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Entry point of the `writ-full` binary (which `writ` runs for every line
/// that is not a gate line), with the commands `X` it adds.
pub fn main<X: Extension>() -> ExitCode {
    // A gate line (exec, mcp-proxy) runs as the `writ` binary runs it.
    if let Some(code) = writ_gate::try_main() {
        return code;
    }
    name_process_as_invoked();
    writ_gate::quiet_on_closed_stdout();
    let cli = parse::<X>();
    writ_gate::init_tracing();
    // What the gate's parser refused and the full one accepted still runs
    // as an enforcement point does.
    let gate = matches!(cli.command, Command::Exec(_) | Command::McpProxy(_));
    let exit_at_once = matches!(cli.command, Command::Exec(_));
    writ_gate::block_on(gate, exit_at_once, run(cli))
}

/// `writ` ran this binary for a `writ ...` line and passed its own name as
/// argv[0]: the process is named `writ` too (`ps`, `pgrep -x writ`, `pkill
/// -x writ` find a `writ serve` as before), not `writ-full`.
fn name_process_as_invoked() {
    let invoked = std::env::args_os().next();
    let as_writ = invoked
        .as_deref()
        .and_then(|a| std::path::Path::new(a).file_name())
        .is_some_and(|n| n == "writ");
    if as_writ {
        // Only a name for people and tools to read; nothing depends on it.
        let _ = rustix::thread::set_name(c"writ");
    }
}

async fn run<X: Extension>(cli: Cli<X>) -> anyhow::Result<Exit> {
    let g = cli.global;
    // With `--json` a failure is an answer too: `{"error", "message"}` on
    // standard output (the text goes to standard error as without it),
    // unless the command printed its answer before it failed. The
    // enforcement points' standard output is their program's.
    let json_failure = g.json && !matches!(cli.command, Command::Exec(_) | Command::McpProxy(_));
    let result = match cli.command {
        Command::Init(a) => init::init(&g, a).await,
        Command::Serve(a) => server::serve(&g, a).await,
        Command::Demo(a) => demo::demo(&g, a).await,
        Command::Authorize(a) => authorize::authorize(&g, a).await,
        Command::Verify(a) => verify::verify(&g, a).await,
        Command::Exec(a) => exec::exec(&g, a).await,
        Command::McpProxy(a) => mcp::mcp_proxy(&g, a).await,
        Command::Revoke(a) => revoke::revoke(&g, a).await,
        Command::Mcp(c) => pins::mcp(&g, c).await,
        Command::Policy(c) => policy::policy(&g, c).await,
        Command::Principal(c) => principal::principal(&g, c).await,
        Command::Issuer(c) => issuer::issuer(&g, c).await,
        Command::Key(c) => key::key(&g, c).await,
        Command::Execution(c) => execution::execution(&g, c).await,
        Command::Lineage(a) => execution::lineage(&g, a).await,
        Command::Log(c) => log::log(&g, c).await,
        Command::Witness(a) => witness::witness(&g, a).await,
        Command::Assess(a) => log::assess(&g, a).await,
        Command::Extension(x) => x.run(&g).await,
    };
    output::print_failure(json_failure, &result)?;
    result
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    #[test]
    fn the_gate_parser_reads_a_gate_line_as_the_full_one_does() {
        writ_gate::GateCli::command().debug_assert();
        exec_lines_parse_alike();
        mcp_proxy_lines_parse_alike();
        what_the_gate_refuses_the_full_parser_reads();
    }

    /// `writ exec` lines: the same global flags and arguments from both parsers.
    fn exec_lines_parse_alike() {
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
                "--allow-partial-enforcement",
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
            let fast = writ_gate::GateCli::try_parse_from(*line).unwrap();
            let full = <super::Cli>::try_parse_from(*line).unwrap();
            let writ_gate::GateCommand::Exec(e) = fast.command else {
                panic!("{line:?} is not an exec line")
            };
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
    }

    /// `writ mcp-proxy` lines: the same from both parsers.
    fn mcp_proxy_lines_parse_alike() {
        for line in [
            &[
                "writ",
                "mcp-proxy",
                "--name",
                "fs",
                "--",
                "npx",
                "server",
                "/data",
            ][..],
            &[
                "writ",
                "--server",
                "http://h:1",
                "mcp-proxy",
                "--name",
                "fs",
                "--lifetime",
                "60",
                "--unreachable-grace",
                "2",
                "--",
                "srv",
                "--",
                "exec",
            ],
        ] {
            let fast = writ_gate::GateCli::try_parse_from(line).unwrap();
            let full = <super::Cli>::try_parse_from(line).unwrap();
            let writ_gate::GateCommand::McpProxy(m) = fast.command else {
                panic!("{line:?} is not an mcp-proxy line")
            };
            let super::Command::McpProxy(n) = full.command else {
                panic!("{line:?} is not an mcp-proxy line to the full parser")
            };
            assert_eq!(
                format!("{:?} {m:?}", fast.global),
                format!("{:?} {n:?}", full.global),
                "{line:?}"
            );
        }
    }

    /// What the gate's parser refuses, the full one parses or explains.
    fn what_the_gate_refuses_the_full_parser_reads() {
        for line in [
            &["writ", "lineage", "exec"][..],
            &["writ", "exec", "--help"],
            &["writ", "exec"],
            &["writ", "exec", "--bogus", "--", "x"],
            &["writ", "mcp-proxy", "--", "srv"],
            &["writ", "policy", "mcp-schema", "--name", "x", "--", "srv"],
        ] {
            let args: Vec<std::ffi::OsString> = line.iter().map(Into::into).collect();
            assert!(writ_gate::parse_gate_line(&args).is_none(), "{line:?}");
        }
        assert!(<super::Cli>::try_parse_from(["writ", "lineage", "exec"]).is_ok());
    }

    #[test]
    fn help_lists_every_reason_codes_exit_status() {
        let help = <super::Cli>::command()
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
