//! `writ witness`: co-sign a log's checkpoints after checking each is
//! consistent with the last one this witness saw (C2SP tlog-witness).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use writ_artifact::{OsEntropy, SystemClock, WritKey};
use writ_gate::{Exit, Global};
use writ_log::note::{NoteSigner, NoteVerifier, ALG_COSIGNATURE_V1, ALG_ED25519};
use writ_log::witness::WitnessState;

use crate::datadir::{write_atomic, DataDir};
use crate::output::print_json;

#[derive(Args, Debug)]
pub struct WitnessArgs {
    /// The witness's own directory (its key `keys/witness.pem` and the
    /// checkpoint it last cosigned per log, `state.json`).
    #[arg(long, env = "WRIT_WITNESS_DIR", default_value = ".writ-witness")]
    pub witness_dir: PathBuf,
    /// Address to listen on; logs POST to `https://ADDR/add-checkpoint`
    /// (`http://` on loopback without `--tls-cert`).
    #[arg(long, default_value = "127.0.0.1:7071")]
    pub listen: String,
    /// The witness's key name (a schema-less URL identifying it).
    #[arg(long, default_value = "localhost/writ-witness")]
    pub name: String,
    /// A log this witness serves, by its verifier key (`writ` prints it as
    /// `vkey` at `GET /v1/log/key`). Repeatable.
    #[arg(
        long = "log-key",
        value_name = "VKEY",
        required_unless_present = "print_key"
    )]
    pub log_keys: Vec<String>,
    /// Print this witness's verifier key and exit.
    #[arg(long)]
    pub print_key: bool,
    #[command(flatten)]
    pub net: crate::listen::ListenArgs,
}

pub async fn witness(g: &Global, a: WitnessArgs) -> Result<Exit> {
    let dir = DataDir::new(&a.witness_dir);
    std::fs::create_dir_all(&a.witness_dir)
        .with_context(|| format!("creating {}", a.witness_dir.display()))?;
    if !dir.keys().join("witness.pem").exists() {
        dir.save_key("witness", &WritKey::generate(&OsEntropy)?)?;
    }
    let signer = NoteSigner::new(&a.name, ALG_COSIGNATURE_V1, dir.load_key("witness")?)
        .map_err(|e| anyhow::anyhow!("--name: {e}"))?;
    let vkey = signer.verifier.vkey();
    if a.print_key {
        if g.json {
            print_json(&serde_json::json!({"vkey": vkey}))?;
        } else {
            println!("{vkey}");
        }
        return Ok(Exit::Ok);
    }
    let logs = a
        .log_keys
        .iter()
        .map(|k| NoteVerifier::parse(k).map_err(|e| anyhow::anyhow!("--log-key: {e}")))
        .collect::<Result<Vec<_>>>()?;
    if logs.iter().any(|k| k.alg != ALG_ED25519) {
        bail!("a --log-key is not a log (Ed25519 note) key");
    }
    let state_path = a.witness_dir.join("state.json");
    let state: WitnessState = match std::fs::read_to_string(&state_path) {
        Ok(t) => {
            serde_json::from_str(&t).with_context(|| format!("parsing {}", state_path.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => WitnessState::default(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", state_path.display())),
    };
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .with_context(|| format!("cannot listen on {}", a.listen))?;
    let addr = listener.local_addr()?;
    let listen = a.net.listen(addr)?;
    let scheme = crate::listen::scheme(&listen);
    crate::listen::reload_on_sighup(&listen);
    let w = Arc::new(writ_server::Witness {
        logs,
        signer,
        state: tokio::sync::Mutex::new(state),
        save: Box::new(move |s| {
            let bytes = serde_json::to_vec_pretty(s).map_err(std::io::Error::other)?;
            write_atomic(&state_path, &bytes, 0o644)
                .map_err(|e| std::io::Error::other(format!("{e:#}")))
        }),
        clock: Arc::new(SystemClock),
    });
    if g.json {
        // One line, flushed: it goes on serving (as `writ serve --json`).
        writ_gate::print_json_line(
            &serde_json::json!({"vkey": vkey, "url": format!("{scheme}://{addr}")}),
        )?;
    } else {
        println!("witness {vkey}");
        println!(
            "listening on {scheme}://{addr} (logs: writ serve --witness {scheme}://{addr}={vkey})"
        );
    }
    writ_server::serve_witness(w, listener, listen, crate::server::wait_for_signal()).await?;
    Ok(Exit::Ok)
}
