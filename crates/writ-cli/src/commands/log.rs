//! `writ log verify | proof | export | checkpoint`, and the log sources they
//! read: a data dir's store (offline) or a server's public log routes.

use std::path::PathBuf;
use std::sync::Arc;

use crate::logsource::{HttpSource, StoreSource};
use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use clap::{Args, Subcommand};
use serde_json::json;
use writ_artifact::{Jwk, Jwks, KeyRing};
use writ_audit::evidence::{self, Evidence, ProofSource};
use writ_audit::{Options, Report};

use writ_log::note::{NoteVerifier, ALG_COSIGNATURE_V1, ALG_ED25519};
use writ_log::Hash;
use writ_store::Store;

use writ_gate::client::Client;
use writ_gate::{Exit, Global};

use crate::datadir::{write_atomic, DataDir};
use crate::output::{print_denial, print_json, refused};

#[derive(Subcommand, Debug)]
pub enum LogCmd {
    /// Recompute the whole tree and check every entry, stored subtree hash and
    /// signed checkpoint; `--replay` re-evaluates every decision.
    ///
    /// Reads the data dir (offline, the default), a server (`--remote`), or an
    /// evidence bundle (`--bundle FILE`, needing neither). Exit status 0 when
    /// everything verifies, 26 (integrity_failure) when anything does not;
    /// each problem is printed with the entry index it concerns.
    Verify(VerifyLogArgs),
    /// Print an inclusion proof (`--index I [--size N]`) or a consistency
    /// proof (`--first M [--second N]`); sizes default to the latest
    /// checkpoint's.
    Proof(ProofArgs),
    /// Write an evidence bundle: entries FROM..TO (TO exclusive) with their
    /// inclusion proofs, signed checkpoints, public keys and the policy
    /// bundles the decisions name (format: docs/log-formats.md, "Evidence bundles").
    Export(ExportArgs),
    /// Publish a signed checkpoint now (server) and print it.
    Checkpoint,
    /// Erase what a decision entry holds of its request (an administrator's
    /// call, on the server): the content kept beside the log, or the bytes
    /// of a leaf logged before decisions were sealed. The leaf hash, every
    /// checkpoint and proof stay valid (`writ log verify` still passes);
    /// the decision can no longer be replayed, nor its execution renewed.
    /// Logged as a `content_erased` entry naming the index and the reason.
    Erase(EraseArgs),
}

#[derive(Args, Debug)]
pub struct VerifyLogArgs {
    /// Verify the log of the server (`--server`/WRIT_SERVER) instead of the data dir.
    #[arg(long, conflicts_with = "bundle")]
    pub remote: bool,
    /// Verify an evidence bundle file, with no server and no data dir.
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// Re-evaluate every logged decision against the bundle it names.
    #[arg(long)]
    pub replay: bool,
    /// The log's verifier key (`name+id+key`); default: the data dir's, or
    /// for `--remote`/`--bundle` the key the server or file presents.
    #[arg(long)]
    pub log_key: Option<String>,
    /// Require a cosignature by this witness on the latest checkpoint (repeatable).
    #[arg(long = "witness-key", value_name = "VKEY")]
    pub witness_keys: Vec<String>,
    /// Count the leaves a server withholds from the public (decisions logged
    /// before sealing) by their hashes alone. Without it each is a finding,
    /// since a server could withhold any entry; an auditor's token reads
    /// their bytes instead.
    #[arg(long)]
    pub accept_withheld: bool,
}

#[derive(Args, Debug)]
pub struct ProofArgs {
    #[arg(long, conflicts_with_all = ["first", "second"])]
    pub index: Option<u64>,
    #[arg(long, requires = "index")]
    pub size: Option<u64>,
    #[arg(long)]
    pub first: Option<u64>,
    #[arg(long, requires = "first")]
    pub second: Option<u64>,
    /// Ask the server instead of reading the data dir.
    #[arg(long)]
    pub remote: bool,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// First entry, inclusive.
    #[arg(long)]
    pub from: u64,
    /// End, exclusive (default: the latest checkpoint's size).
    #[arg(long)]
    pub to: Option<u64>,
    /// Where to write the bundle (`-`: standard output).
    #[arg(long)]
    pub out: PathBuf,
    /// Export from the server instead of the data dir.
    #[arg(long)]
    pub remote: bool,
    /// Include what each sealed decision commits to (its Cedar context,
    /// request and environment, with the salt), so that the bundle can be
    /// replayed. These are the requests' contents (argv, paths, arguments):
    /// hand such a bundle only to whom may read them. From a server this
    /// needs an auditor's token.
    #[arg(long)]
    pub with_content: bool,
}

#[derive(Args, Debug)]
pub struct EraseArgs {
    /// The decision entry whose content to erase.
    #[arg(long, value_name = "INDEX")]
    pub entry: u64,
    /// Why (logged in the `content_erased` entry; at most 1024 bytes).
    #[arg(long)]
    pub reason: String,
}

pub async fn log(g: &Global, c: LogCmd) -> Result<Exit> {
    match c {
        LogCmd::Verify(a) => verify(g, a).await,
        LogCmd::Proof(a) => proof(g, a).await,
        LogCmd::Export(a) => export(g, a).await,
        LogCmd::Erase(a) => {
            let reply = Client::new(&g.server, g.token.clone())
                .post(
                    "/v1/log/erase",
                    &json!({"index": a.entry, "reason": a.reason}),
                )
                .await?;
            if !reply.ok() {
                return refused(g, "the erasure", &reply);
            }
            if g.json {
                print_json(&reply.body)?;
            } else {
                println!(
                    "erased the content of entry {} (logged at {}); its leaf hash and every proof stay",
                    a.entry,
                    reply.body["log_index"]
                );
            }
            Ok(Exit::Ok)
        }
        LogCmd::Checkpoint => {
            let reply = Client::new(&g.server, g.token.clone())
                .post("/v1/log/checkpoint", &json!({}))
                .await?;
            if !reply.ok() {
                return refused(g, "the checkpoint", &reply);
            }
            let note = reply.body.as_str().unwrap_or_default().to_owned();
            if g.json {
                print_json(&json!({"checkpoint": note}))?;
            } else {
                print!("{note}");
            }
            Ok(Exit::Ok)
        }
    }
}

fn parse_keys(
    log_key: &Option<String>,
    witnesses: &[String],
) -> Result<(Option<NoteVerifier>, Vec<NoteVerifier>)> {
    let log = log_key
        .as_deref()
        .map(NoteVerifier::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--log-key: {e}"))?;
    if log.as_ref().is_some_and(|k| k.alg != ALG_ED25519) {
        bail!("--log-key is not a log (Ed25519 note) key");
    }
    let ws = witnesses
        .iter()
        .map(|w| NoteVerifier::parse(w).map_err(|e| anyhow::anyhow!("--witness-key: {e}")))
        .collect::<Result<Vec<_>>>()?;
    if ws.iter().any(|w| w.alg != ALG_COSIGNATURE_V1) {
        bail!("a --witness-key is not a cosigner (cosignature/v1) key");
    }
    Ok((log, ws))
}

fn jwks_of(store: &dyn Store, role: &str) -> Result<Jwks> {
    let keys = store
        .keys()
        .map_err(anyhow::Error::msg)?
        .into_iter()
        .filter(|k| k.role.as_str() == role)
        .map(|k| serde_json::from_str::<Jwk>(&k.public_jwk))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Jwks { keys })
}

fn print_report(g: &Global, r: &Report, what: &str) -> Result<Exit> {
    if g.json {
        print_json(&json!({"ok": r.ok(), "report": r}))?;
    } else {
        println!(
            "{what}: {} entries, root {}, {} checkpoints (largest {}){}{}{}{}",
            r.entries,
            r.root,
            r.checkpoints,
            r.largest_checkpoint
                .map_or("none".into(), |s| s.to_string()),
            if r.stored_nodes_checked > 0 {
                format!(", {} stored subtree hashes", r.stored_nodes_checked)
            } else {
                String::new()
            },
            if r.cosigned_checkpoints > 0 {
                format!(", {} witnessed", r.cosigned_checkpoints)
            } else {
                String::new()
            },
            if r.policy_bundles_checked > 0 {
                format!(", {} policy bundles signed", r.policy_bundles_checked)
            } else {
                String::new()
            },
            if r.decisions_replayed + r.decisions_not_replayable > 0 {
                format!(
                    ", {} decisions replayed identically ({} decided before policy)",
                    r.decisions_replayed, r.decisions_not_replayable
                )
            } else {
                String::new()
            },
        );
        if r.leaves_without_bytes > 0 {
            println!(
                "{} entries were given as their hash alone (erased, or withheld from this reader): they count in the tree; their bytes were not checked",
                r.leaves_without_bytes
            );
        }
        if r.decisions_content_unavailable > 0 {
            println!(
                "{} decisions were not replayed: what they commit to is not at hand (erased, or it needs an auditor's token):",
                r.decisions_content_unavailable
            );
            for i in r.content_unavailable.iter().take(20) {
                println!("  entry {i}: content not available, not replayed");
            }
            if r.decisions_content_unavailable > 20 {
                println!("  ... (--json lists the first 1000)");
            }
        }
    }
    if r.ok() {
        if !g.json {
            println!("ok");
        }
        return Ok(Exit::Ok);
    }
    // The denial line first, as every command prints it; then each problem.
    print_denial(
        writ_artifact::ReasonCode::IntegrityFailure,
        &format!("{} problem(s) found", r.problems.len()),
    );
    for p in &r.problems {
        match p.index {
            Some(i) => eprintln!("problem at entry {i}: {}", p.message),
            None => eprintln!("problem: {}", p.message),
        }
    }
    Ok(Exit::Denied(writ_artifact::ReasonCode::IntegrityFailure))
}

/// Where a log command reads: the data dir's store (offline) or a server's
/// public log routes, with the keys that go with it.
struct Site {
    src: Box<dyn ProofSource + Send + Sync>,
    /// Checks checkpoints: the pinned key, else the data dir's or the server's.
    log_key: NoteVerifier,
    /// The other nodes' log keys (a mesh read from its store).
    other_log_keys: Vec<NoteVerifier>,
    /// Witnesses the server asks (none for a data dir).
    witness_keys: Vec<NoteVerifier>,
    writ_keys: Jwks,
    policy_keys: Jwks,
}

/// `with_contents`: read what decisions hold of their requests too (a
/// server gives it to an auditor's token; a data dir has it).
async fn open_site(
    g: &Global,
    remote: bool,
    pinned: Option<NoteVerifier>,
    with_contents: bool,
) -> Result<Site> {
    let pinned_given = pinned.is_some();
    if !remote {
        let dir = DataDir::new(&g.dir);
        let log_key = match pinned {
            Some(k) => k,
            None => dir.log_verifier()?,
        };
        let store = dir.open_store()?;
        // A mesh's checkpoints are signed by whichever node led: every log
        // key the store records (pinning one key checks that key only).
        let other_log_keys = if pinned_given {
            Vec::new()
        } else {
            let mut all = writ_authority::stored_log_verifiers(store.as_ref(), &log_key)
                .map_err(anyhow::Error::msg)?;
            all.split_off(1)
        };
        return Ok(Site {
            writ_keys: jwks_of(store.as_ref(), "writ")?,
            policy_keys: jwks_of(store.as_ref(), "policy")?,
            src: Box::new(StoreSource(store)),
            log_key,
            other_log_keys,
            witness_keys: vec![],
        });
    }
    let client = Client::new(&g.server, g.token.clone());
    let info = client.get("/v1/log/key").await?;
    if !info.ok() {
        bail!("{}", info.message());
    }
    let served = NoteVerifier::parse(info.body["vkey"].as_str().unwrap_or_default())
        .map_err(anyhow::Error::msg)?;
    let log_key = match pinned {
        Some(k) => k,
        None => {
            if !g.json {
                eprintln!(
                    "note: trusting the log key the server presents ({}); pass --log-key to pin it",
                    served.vkey()
                );
            }
            served
        }
    };
    // The mesh's other log keys, unless one key is pinned.
    let other_log_keys: Vec<NoteVerifier> = if pinned_given {
        Vec::new()
    } else {
        info.body["log_keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w.as_str().and_then(|s| NoteVerifier::parse(s).ok()))
            .filter(|k| k.key != log_key.key)
            .collect()
    };
    let witness_keys = info.body["witnesses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w.as_str().and_then(|s| NoteVerifier::parse(s).ok()))
        .collect();
    let policy_keys = serde_json::from_value(info.body["policy_keys"].clone())
        .context("the server's policy_keys")?;
    let writ_keys = client.get("/.well-known/jwks.json").await?.parse()?;
    Ok(Site {
        src: Box::new(HttpSource {
            client,
            handle: tokio::runtime::Handle::current(),
            with_contents,
        }),
        log_key,
        other_log_keys,
        witness_keys,
        writ_keys,
        policy_keys,
    })
}

/// Run `f` on a blocking thread: sources block (SQLite, or HTTP driven from
/// that thread). `Err` from `f` is the source failing.
async fn blocking<T: Send + 'static>(
    site: Site,
    f: impl FnOnce(&Site) -> Result<T, String> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(move || f(&site))
        .await?
        .map_err(anyhow::Error::msg)
}

/// The latest checkpoint's size, or why there is none.
fn latest_size(src: &dyn ProofSource) -> Result<u64, String> {
    src.latest_checkpoint()?.map(|c| c.0).ok_or_else(|| {
        "no checkpoint yet: give the size explicitly, or let `writ serve` publish one".into()
    })
}

async fn verify(g: &Global, a: VerifyLogArgs) -> Result<Exit> {
    let (pinned, witnesses) = parse_keys(&a.log_key, &a.witness_keys)?;
    if let Some(path) = &a.bundle {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let ev: Evidence = serde_json::from_str(&text)
            .with_context(|| format!("{} is not an evidence bundle", path.display()))?;
        if pinned.is_none() && !g.json {
            eprintln!(
                "note: trusting the log key inside the bundle ({}); pass --log-key to pin it",
                ev.log_key
            );
        }
        let r = evidence::verify(&ev, pinned.as_ref(), &witnesses, a.replay)
            .map_err(anyhow::Error::msg)?;
        return print_report(g, &r, "evidence bundle");
    }
    let quiet = g.json;
    // A replay needs what sealed decisions commit to, and leaves a server
    // withholds from the public need reading too: a server gives both to an
    // auditor's token; without one, sealed decisions are reported as not
    // replayed and withheld leaves as findings (or, --accept-withheld,
    // counted by hash).
    let with_contents = !a.remote || g.token.is_some();
    let accept_withheld = a.accept_withheld;
    let site = open_site(g, a.remote, pinned, with_contents).await?;
    let replay = a
        .replay
        .then(|| KeyRing::from_jwks(&site.policy_keys))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let r = blocking(site, move |site| {
        let progress = move |done: u64, total: u64| {
            if !quiet && total >= 100_000 && (done % 1_048_576 < writ_audit::CHUNK || done == total)
            {
                eprintln!("  verified {done}/{total} entries");
            }
        };
        let opts = Options {
            log_key: site.log_key.clone(),
            other_log_keys: site.other_log_keys.clone(),
            witnesses,
            replay,
            progress: Some(&progress),
            accept_withheld,
        };
        writ_audit::verify_log(site.src.as_ref(), &opts).map_err(|e| e.to_string())
    })
    .await?;
    print_report(g, &r, "log")
}

fn b64s(v: &[Hash]) -> Vec<String> {
    v.iter().map(|h| STANDARD.encode(h)).collect()
}

async fn proof(g: &Global, a: ProofArgs) -> Result<Exit> {
    if a.index.is_none() && a.first.is_none() {
        bail!("give --index I (inclusion) or --first M (consistency)");
    }
    let site = open_site(g, a.remote, None, false).await?;
    let out = blocking(site, move |site| {
        let src = site.src.as_ref();
        if let Some(i) = a.index {
            let size = match a.size {
                Some(n) => n,
                None => latest_size(src)?,
            };
            let hashes = src.inclusion_proof(i, size)?;
            let leaf = src
                .leaves(i, i + 1)?
                .into_iter()
                .next()
                .ok_or("no such entry")?;
            let lh = leaf
                .stored_hash
                .unwrap_or_else(|| writ_log::leaf_hash(&leaf.bytes));
            return Ok(
                json!({"index": i, "size": size, "leaf_hash": STANDARD.encode(lh), "hashes": b64s(&hashes)}),
            );
        }
        let m = a.first.unwrap_or_default();
        let n = match a.second {
            Some(n) => n,
            None => latest_size(src)?,
        };
        let hashes = src.consistency_proof(m, n)?;
        Ok(json!({"first": m, "second": n, "hashes": b64s(&hashes)}))
    })
    .await?;
    if g.json {
        print_json(&out)?;
        return Ok(Exit::Ok);
    }
    match out.get("index") {
        Some(i) => {
            println!(
                "inclusion proof of entry {i} in the tree of size {}",
                out["size"]
            );
            println!(
                "leaf hash {}",
                out["leaf_hash"].as_str().unwrap_or_default()
            );
        }
        None => println!(
            "consistency proof from size {} to size {}",
            out["first"], out["second"]
        ),
    }
    for h in out["hashes"].as_array().into_iter().flatten() {
        println!("  {}", h.as_str().unwrap_or_default());
    }
    Ok(Exit::Ok)
}

async fn export(g: &Global, a: ExportArgs) -> Result<Exit> {
    let site = open_site(g, a.remote, None, a.with_content).await?;
    let (from, to, with_content) = (a.from, a.to, a.with_content);
    let ev = blocking(site, move |site| {
        let to = match to {
            Some(t) => t,
            None => latest_size(site.src.as_ref())?,
        };
        let keys = evidence::Keys {
            log_key: site.log_key.clone(),
            witness_keys: site.witness_keys.clone(),
            writ_keys: site.writ_keys.clone(),
            policy_keys: site.policy_keys.clone(),
        };
        evidence::build(site.src.as_ref(), keys, from, to, with_content).map_err(|e| e.to_string())
    })
    .await?;
    let bytes = serde_json::to_vec_pretty(&ev)?;
    if a.out.as_os_str() == "-" {
        // The bundle itself is the output (`verify --bundle -` reads it back).
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let written = out
            .write_all(&bytes)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush());
        return match written {
            Ok(()) => Ok(Exit::Ok),
            // `| head`: end as a program killed by SIGPIPE would, quietly.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                Ok(Exit::Code(writ_gate::CLOSED_STDOUT))
            }
            // Part of the bundle may be out: nothing more goes to stdout.
            Err(e) => {
                eprintln!("error: writing the bundle to standard output: {e}");
                Ok(Exit::Failed)
            }
        };
    }
    write_atomic(&a.out, &bytes, 0o644)?;
    if g.json {
        print_json(&json!({"out": a.out, "from": ev.from, "to": ev.to, "bytes": bytes.len()}))?;
    } else {
        println!(
            "wrote {} ({} entries {}..{}, {} bytes); check it with `writ log verify --bundle {}`",
            a.out.display(),
            ev.entries.len(),
            ev.from,
            ev.to,
            bytes.len(),
            a.out.display()
        );
    }
    Ok(Exit::Ok)
}

/// `writ verify --proof`: the writ's decision entry is in the log, included
/// under a signed checkpoint (and cosigned by each required witness).
/// Returns a one-line description, or why not; `Err` when the log cannot be
/// read at all.
pub(crate) async fn prove_writ(
    g: &Global,
    claims: &writ_artifact::Claims,
    remote: bool,
    log_key: &Option<String>,
    witness_keys: &[String],
) -> Result<std::result::Result<String, String>> {
    let (pinned, witnesses) = parse_keys(log_key, witness_keys)?;
    let site = open_site(g, remote, pinned, false).await?;
    let index = claims.writ.log.index;
    let origin = claims.writ.log.origin.clone();
    let jti = claims.jti.clone();
    blocking(site, move |site| {
        let src = site.src.as_ref();
        let Some((_, note)) = src.latest_checkpoint()? else {
            return Ok(Err("the log has no checkpoint yet".into()));
        };
        let sc = match writ_log::note::SignedCheckpoint::verify(&note, &site.log_key) {
            Ok(sc) => sc,
            Err(e) => return Ok(Err(format!("the log's checkpoint fails verification: {e}"))),
        };
        if let Err(e) = sc.require_cosigners(&witnesses) {
            return Ok(Err(format!("the checkpoint lacks a required cosignature: {e}")));
        }
        if sc.checkpoint.origin != origin {
            return Ok(Err(format!(
                "the writ names log {origin:?}, the checkpoint is of {:?}",
                sc.checkpoint.origin
            )));
        }
        let size = sc.checkpoint.size;
        if index >= size {
            return Ok(Err(format!(
                "entry {index} is not under the latest checkpoint yet (size {size}); retry in a second"
            )));
        }
        let leaf = src
            .leaves(index, index + 1)?
            .into_iter()
            .next()
            .map(|l| l.bytes)
            .unwrap_or_default();
        let proof = src.inclusion_proof(index, size)?;
        let root = &sc.checkpoint.root;
        if !writ_log::merkle::verify_inclusion(index, size, &writ_log::leaf_hash(&leaf), &proof, root) {
            return Ok(Err(format!(
                "entry {index} is not included in the signed checkpoint of size {size}"
            )));
        }
        Ok(match writ_log::Entry::from_leaf(&leaf) {
            Ok(writ_log::Entry::Decision(d))
                if d.decision == writ_log::Outcome::Allow && d.jti.as_deref() == Some(jti.as_str()) =>
            {
                Ok(format!(
                    "logged: entry {index} (allow, jti {jti}) is included in the signed checkpoint of size {size}{}",
                    if witnesses.is_empty() {
                        String::new()
                    } else {
                        format!(", cosigned by {} witness(es)", witnesses.len())
                    }
                ))
            }
            Ok(_) => Err(format!("entry {index} is not the allow decision of writ {jti}")),
            Err(e) => Err(format!("entry {index}: {e}")),
        })
    })
    .await
}

#[derive(Args, Debug)]
pub struct AssessArgs {
    /// Assess the data dir's store instead of the server (`--server`/WRIT_SERVER).
    #[arg(long)]
    pub local: bool,
    /// Exit with status 1 when the level reached is below this one.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=5))]
    pub require: Option<u8>,
}

/// `writ assess`: gather the evidence from the log (every entry tallied, the
/// log verified with replay and the server's witnesses required), then let
/// `writ_assess::assess` judge it.
pub async fn assess(g: &Global, a: AssessArgs) -> Result<Exit> {
    // The replay needs what decisions commit to: the data dir has it; a
    // server gives it to an auditor's token.
    let with_contents = a.local || g.token.is_some();
    let site = open_site(g, !a.local, None, with_contents).await?;
    let keys = KeyRing::from_jwks(&site.policy_keys).map_err(anyhow::Error::msg)?;
    let evidence = blocking(site, move |site| {
        let mut log_keys = vec![site.log_key.clone()];
        log_keys.extend(site.other_log_keys.iter().cloned());
        writ_assess::gather(site.src.as_ref(), log_keys, site.witness_keys.clone(), keys)
            .map_err(|e| e.to_string())
    })
    .await?;
    let r = writ_assess::assess(&evidence);
    if g.json {
        print_json(
            &json!({"level": r.level, "name": r.name, "criteria": r.criteria, "evidence": evidence}),
        )?;
    } else {
        println!("EGMM level {}: {}", r.level, r.name);
        for c in &r.criteria {
            println!(
                "  [{}] level {} {}: {}",
                if c.met { "x" } else { " " },
                c.level,
                c.name,
                c.evidence
            );
        }
    }
    match a.require {
        Some(want) if r.level < want => {
            eprintln!("error: level {} is below the required {want}", r.level);
            Ok(Exit::Failed)
        }
        _ => Ok(Exit::Ok),
    }
}

/// `writ log verify` of `store`, in process (`writ bench log` times it).
pub fn verify_store(store: Arc<dyn Store>, opts: &Options) -> Result<Report> {
    writ_audit::verify_log(&StoreSource(store), opts).map_err(anyhow::Error::msg)
}
