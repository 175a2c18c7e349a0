//! `writ bench`.

use anyhow::Result;
use clap::Subcommand;

use crate::{Exit, Global};

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Ceiling vs governed in-process decisions vs HTTP decisions; verification cost.
    Authorize(AuthorizeBench),
}

#[derive(clap::Args, Debug)]
pub struct AuthorizeBench {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
}

pub async fn bench(_g: &Global, c: BenchCmd) -> Result<Exit> {
    let BenchCmd::Authorize(_a) = c;
    anyhow::bail!("not built yet")
}
