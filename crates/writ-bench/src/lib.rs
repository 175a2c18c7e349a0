//! `writ bench`: the benchmarks, apart from the product crates (they run
//! Python, hyperfine and wrk). The `writ-full` binary adds them to the
//! command line as [`Bench`]; the enforcement-point binary `writ` holds
//! none of this.
#![forbid(unsafe_code)]

mod authorize;
mod child;
mod exec;
mod load;
mod log;
mod readers;
mod soak;
mod stats;

use anyhow::Result;
use clap::Subcommand;
use writ_cli::{Exit, Extension, Global};

/// `writ bench ...`, as the command line lists it.
#[derive(Subcommand, Debug)]
pub enum Bench {
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCmd),
}

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Ceiling vs governed in-process decisions vs HTTP decisions; verification cost.
    ///
    /// Runs its own server on a fresh data dir under the system's temporary
    /// directory (removed at the end), not on `--dir`.
    Authorize(authorize::AuthorizeBench),
    /// The audit log at ten million entries: durable append, inclusion
    /// proofs, full verification, `writ serve` RSS, and the Agent Governance
    /// Toolkit's AuditLog on the same entries.
    Log(log::LogBench),
    /// What `writ exec` adds to running a program (against a real server on
    /// loopback), and the time from `writ revoke` to a governed process's
    /// death.
    Exec(exec::ExecBench),
    /// A steady offered rate (authorize + verify) for a long time: errors,
    /// latency percentiles and `writ serve` RSS over the run.
    Soak(soak::SoakBench),
    /// Authorize latency (open loop) alone and while clients hammer the
    /// heaviest reads (lineage trees, console scans, the assessment, 4 MiB
    /// log pages), alternating on one server: does reading move deciding?
    Readers(readers::ReadersBench),
}

impl Extension for Bench {
    async fn run(self, g: &Global) -> Result<Exit> {
        let Bench::Bench(c) = self;
        match c {
            BenchCmd::Authorize(a) => authorize::bench_authorize(g, a).await,
            BenchCmd::Log(l) => log::bench_log(g, l).await,
            BenchCmd::Exec(e) => exec::bench_exec(g, e).await,
            BenchCmd::Soak(s) => soak::bench_soak(g, s).await,
            BenchCmd::Readers(r) => readers::bench_readers(g, r).await,
        }
    }
}
