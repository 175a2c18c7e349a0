//! `writ exec`: ask for a writ for this exact command, verify it, spend its
//! nonce, run the very file that was measured under the granted scope, and
//! record how it ended.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use serde_json::{json, Value};
use tokio::signal::unix::SignalKind;
use writ_api::{AuthorizeRequest, AuthorizeResponse, FinishRequest};
use writ_artifact::pop::PopUse;
use writ_artifact::{
    canonical, Clock, EnvironmentBinding, Jwks, KeyRing, NoStatus, ReasonCode, Scope, SystemClock,
    VerifyOptions,
};
use writ_exec::{Confinement, Enforcement, ExecError, Executable, Launcher};

use crate::client::Client;
use crate::holder::Holder;
use crate::{print_denial, Exit, Global};

/// The longest `--unreachable-grace` (`writ exec` and `writ mcp-proxy`).
pub const UNREACHABLE_GRACE_MAX: u64 = 300;
/// The longest `--kill-grace`.
const KILL_GRACE_MAX: u64 = 60;
/// How long to wait, after a SIGTERM passed on ended the program, for the
/// governor to report a reason of its own.
const FORWARDED_STOP_WAIT: Duration = Duration::from_millis(500);

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
    /// A path the program may read (repeatable); must exist. A relative
    /// path is taken from the current directory, and `..` is resolved as the
    /// kernel would.
    #[arg(long)]
    pub read: Vec<PathBuf>,
    /// A path the program may write (repeatable); must exist. A relative
    /// path is taken from the current directory, and `..` is resolved as the
    /// kernel would.
    #[arg(long)]
    pub write: Vec<PathBuf>,
    /// The program may use the network (otherwise TCP bind and connect are
    /// refused by the kernel).
    #[arg(long)]
    pub net: bool,
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

/// Variables writ exec sets for the program itself.
pub const RUNNER_VARS: [&str; 3] = ["WRIT_TOKEN", "WRIT_SERVER", "WRIT_PARENT"];

/// An `--env-allow` name: not one of [`RUNNER_VARS`] (the program would
/// otherwise get the caller's own token, with which it could ask for writs
/// that are not children of its run).
pub fn env_allow_name(name: &str) -> Result<String, String> {
    if RUNNER_VARS.contains(&name) {
        return Err(format!(
            "{name} is set by writ exec itself: the program gets WRIT_PARENT, WRIT_SERVER and, in \
             WRIT_TOKEN, a credential of its own run, never the caller's token"
        ));
    }
    if name.is_empty() || name.contains('=') || name.contains('\0') {
        return Err(format!("{name:?} is not an environment variable name"));
    }
    Ok(name.to_owned())
}

/// With `--json`, a denial before the program starts is also printed as
/// JSON on standard output (which is the program's once it runs: a denial
/// after that is on standard error only).
static JSON_DENIALS: AtomicBool = AtomicBool::new(false);

fn denied(reason: ReasonCode, message: impl Into<String>) -> Result<Exit> {
    let message = message.into();
    print_denial(reason, &message);
    if JSON_DENIALS.load(Ordering::Relaxed) {
        crate::print_json(&json!({"decision": "deny", "reason": reason, "message": message}))?;
    }
    Ok(Exit::Denied(reason))
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

pub async fn exec(g: &Global, mut a: ExecArgs) -> Result<Exit> {
    let g = &g.local_default();
    JSON_DENIALS.store(g.json, Ordering::Relaxed);
    // The caller's token is in this process: nothing of the same user (the
    // program cannot anyway, being in a Landlock domain of its own) may
    // read it from /proc.
    writ_exec::guard::undumpable()?;
    // The scope the writ binds is absolute and normal: `--read .` means this
    // directory, `--read src/` and `--read ../data` what the shell means.
    for p in a.read.iter_mut().chain(a.write.iter_mut()) {
        *p = scope_path(p).with_context(|| format!("--read/--write {}", p.display()))?;
    }
    let path_var = std::env::var_os("PATH");
    let exe = match Executable::open(&a.argv[0], path_var.as_deref()) {
        Ok(e) => e,
        // A writ obtained earlier named a file that is no longer there.
        Err(e) if a.writ.is_some() => {
            return denied(ReasonCode::EnvironmentMismatch, e.to_string())
        }
        // Nothing to ask a writ for: a usage error, not a denial.
        Err(e) => anyhow::bail!("{e}"),
    };
    let mut confinement = Confinement {
        read: a.read.clone(),
        write: a.write.clone(),
        net: a.net,
        system_read: if a.system_read.is_empty() {
            writ_exec::DEFAULT_SYSTEM_READ
                .iter()
                .map(PathBuf::from)
                .collect()
        } else {
            a.system_read.clone()
        },
        system_write: writ_exec::DEFAULT_SYSTEM_WRITE
            .iter()
            .map(PathBuf::from)
            .collect(),
    };
    if let Err(e) = confinement.check_paths() {
        anyhow::bail!("{e}");
    }
    let available = confinement.available();
    if !a.allow_partial_enforcement && available != Enforcement::Full {
        return denied(
            ReasonCode::IntegrityFailure,
            format!(
                "full enforcement is required but this kernel gives {} (Landlock ABI 6 or later \
                 enforces the whole scope); --allow-partial-enforcement runs with what it gives",
                available.as_str()
            ),
        );
    }
    let cwd = std::env::current_dir().context("the working directory")?;
    let mut allow: Vec<String> = writ_exec::DEFAULT_ENV_ALLOW
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    allow.extend(a.env_allow.iter().cloned());
    allow.sort();
    allow.dedup();
    let env: Vec<(String, String)> = allow
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), v)))
        .collect();
    let mut facts = writ_exec::measure(&exe, &cwd, &env, available);
    if a.allow_partial_enforcement {
        // The policy sees that less than full enforcement was accepted.
        facts.insert("allow_partial_enforcement".into(), json!(true));
    }
    // The read-only system trees widen what the kernel lets the program
    // read: the writ binds them and the policy sees them.
    facts.insert(
        "system_read".into(),
        json!(path_strings(&confinement.system_read)),
    );
    let request = json!({"argv": a.argv});
    let audience = a
        .audience
        .clone()
        .unwrap_or_else(|| format!("exec@{}", writ_exec::host_name()));
    let required = if a.allow_partial_enforcement {
        available
    } else {
        Enforcement::Full
    };
    // The confining thread builds the ruleset of the scope asked for while
    // the authority decides; it is used only if the writ grants exactly
    // that scope (otherwise one is built for what was granted).
    let launcher = Launcher::prepare(&exe, Some(&confinement), required)?;
    let client = Client::new(&g.server, g.token.clone()).answering_within(
        crate::lease::answer_limit(Duration::from_secs(a.unreachable_grace)),
    );
    // The run's holder key: the writ asked for is bound to it, so that a
    // copy of it (the program gets one, in WRIT_PARENT) is useless to
    // anyone but this runner. A writ asked for only to be printed is for
    // another run to use, and is not bound.
    let holder = if a.authorize_only {
        Holder::none(&audience)
    } else {
        Holder::generate(&audience)?
    };
    // The authority's published keys, fetched while the writ is asked for.
    let jwks = {
        let c = client.clone();
        tokio::spawn(async move { c.get("/.well-known/jwks.json").await })
    };

    // The writ: given, or asked for (and then started on issue: its nonce is
    // spent in the decision's commit, and `issued` is its jti).
    let (writ, issued, answer, mut credential) = match &a.writ {
        Some(f) => (read_writ(f)?, None, None, None),
        None => {
            if !g.can_authenticate() {
                anyhow::bail!(
                    "writ exec needs a token (WRIT_TOKEN or --token), or a server on the data dir's \
                     Unix socket (writ serve --unix)"
                );
            }
            let req = AuthorizeRequest {
                action: "Action::\"exec\"".into(),
                resource: format!(
                    "Command::{}",
                    serde_json::to_string(&exe.path.to_string_lossy())?
                ),
                context: Default::default(),
                request: request.clone(),
                environment: facts.clone(),
                scope: Scope {
                    read: path_strings(&a.read),
                    write: path_strings(&a.write),
                    net: a.net,
                },
                audience: audience.clone(),
                parent: crate::parent_from_env(),
                lifetime_secs: a.lifetime,
                start: !a.authorize_only,
                // The program's own credential, for what it asks in turn.
                credential: !a.authorize_only,
                delegates: Vec::new(),
                cnf: holder.cnf(),
            };
            // An enforcement point that cannot reach its authority runs
            // nothing: a denial, as for every other failure on the way.
            let reply = match client.post("/v1/authorize", &req).await {
                Ok(r) => r,
                Err(e) => return denied(ReasonCode::AuthorityUnavailable, format!("{e:#}")),
            };
            if reply.status == 400 || reply.status == 413 {
                anyhow::bail!(
                    "server refused the request ({}): {}",
                    reply.status,
                    reply.message()
                );
            }
            match reply.parse::<AuthorizeResponse>() {
                Ok(AuthorizeResponse::Allow {
                    writ,
                    jti,
                    log_index,
                    exp,
                    credential,
                }) => {
                    // What `writ authorize --json` prints, for --authorize-only --json.
                    let answer = AuthorizeResponse::Allow {
                        writ: writ.clone(),
                        jti: jti.clone(),
                        log_index,
                        exp,
                        credential: None,
                    };
                    (writ, Some(jti), Some(answer), credential)
                }
                Ok(AuthorizeResponse::Deny {
                    reason, message, ..
                }) => return denied(reason, message),
                Err(_) => {
                    return denied(
                        reply.reason().unwrap_or(ReasonCode::AuthorityUnavailable),
                        reply.message(),
                    )
                }
            }
        }
    };
    if a.authorize_only {
        match answer {
            Some(answer) if g.json => crate::print_json(&answer)?,
            _ => println!("{writ}"),
        }
        return Ok(Exit::Ok);
    }

    // Verify offline against the authority's published keys.
    let started = Instant::now();
    let ring = match jwks.await? {
        Ok(r) if r.ok() => r
            .parse::<Jwks>()
            .map_err(|e| e.to_string())
            .and_then(|j| KeyRing::from_jwks(&j))
            .map_err(|e| format!("the authority's keys: {e}")),
        Ok(r) => Err(r.message()),
        Err(e) => Err(e.to_string()),
    };
    let ring = match ring {
        Ok(ring) => ring,
        Err(e) => {
            if let Some(jti) = &issued {
                record_not_started(&client, &holder, jti, started, &e).await;
            }
            return denied(ReasonCode::AuthorityUnavailable, e);
        }
    };
    let env_digest = EnvironmentBinding::bind(facts.clone())
        .map_err(anyhow::Error::msg)?
        .digest;
    let opts = VerifyOptions {
        now_unix_secs: SystemClock.now_unix_secs(),
        skew_secs: 5,
        audience: Some(audience.clone()),
        request_digest: Some(canonical::digest_json(&request).map_err(anyhow::Error::msg)?),
        environment_digest: Some(env_digest),
        accepted_policies: None,
        check_spent: false,
        // A writ given with --writ that is bound to another holder fails
        // here: this run cannot prove it holds that key.
        holder: holder.check(&issued.clone().unwrap_or_else(|| {
            writ_artifact::decode_unverified(&writ)
                .map(|(_, c)| c.jti)
                .unwrap_or_default()
        })),
    };
    // A writ given with --writ is started below, after verification.
    let spent_on_issue = issued.is_some();
    let verified = match writ_artifact::verify(&writ, &ring, &opts, &NoStatus) {
        Ok(v) => v,
        Err(d) => {
            if let Some(jti) = &issued {
                record_not_started(&client, &holder, jti, started, &d.message).await;
            }
            return denied(d.reason, d.message);
        }
    };
    let jti = verified.jti().to_owned();
    // The kernel confines the program to what the verified writ grants,
    // whatever flags this run was given.
    let granted = &verified.claims().writ.scope;
    confinement.read = granted.read.iter().map(PathBuf::from).collect();
    confinement.write = granted.write.iter().map(PathBuf::from).collect();
    confinement.net = granted.net;
    if let Err(e) = confinement.check_paths() {
        if spent_on_issue {
            record_not_started(&client, &holder, &jti, started, &e.to_string()).await;
        }
        return denied(ReasonCode::IntegrityFailure, e.to_string());
    }

    // Spend the nonce of a given writ: the authority re-verifies it and checks
    // revocation and replay.
    if !spent_on_issue {
        let reply = match client
            .post(
                &format!("/v1/executions/{jti}/start"),
                &json!({"writ": writ, "request": request, "environment": facts, "audience": audience,
                        "credential": true, "pop": holder.proof(&jti, PopUse::Start)}),
            )
            .await
        {
            Ok(r) => r,
            Err(e) => return denied(ReasonCode::AuthorityUnavailable, e.to_string()),
        };
        if !reply.ok() {
            return denied(
                reply.reason().unwrap_or(ReasonCode::AuthorityUnavailable),
                reply.message(),
            );
        }
        credential = reply
            .body
            .get("credential")
            .and_then(Value::as_str)
            .map(str::to_owned);
    }

    // Run the measured file, confined, in its own process group. What the
    // program asks the authority in turn is a child of this run: it gets
    // this run's credential, never the token this runner holds.
    let mut child_env = env.clone();
    child_env.push(("WRIT_PARENT".into(), writ.clone()));
    child_env.push(("WRIT_SERVER".into(), g.server.clone()));
    if let Some(c) = credential {
        child_env.push(("WRIT_TOKEN".into(), c));
    }
    // The confining thread waits for the program and reports its status.
    let (exited, mut waiter) = tokio::sync::oneshot::channel();
    // Catch SIGTERM, SIGINT and SIGHUP before the program exists: one that
    // came between the launch and a later set-up killed this runner and left
    // the program (in its own process group) running, unwatched. Caught now,
    // it is passed on to the program once it runs.
    let mut forward = crate::signals::Forwarder::new()?;
    // Whatever the program starts stays this runner's descendant, even in
    // another process group or session, or after its parent exits: found,
    // it can be ended with the run.
    if let Err(e) = writ_exec::become_subreaper() {
        eprintln!("writ: warning: {e}; a process the program detaches could outlive the run");
    }
    let pgid = match launcher.launch(
        &exe,
        Some(&confinement),
        required,
        &a.argv,
        &child_env,
        false,
        move |status| {
            let _ = exited.send(status);
        },
    ) {
        Ok(launched) => {
            // From here standard output is the program's.
            JSON_DENIALS.store(false, Ordering::Relaxed);
            launched.pid
        }
        // The program never started: with --json, the denial is JSON too.
        Err(e) => return finish_denied(&client, &holder, &jti, started, e).await,
    };
    drop(exe);
    let governor = crate::lease::govern(
        client.clone(),
        holder.clone(),
        jti.clone(),
        verified.claims().exp,
        Duration::from_secs(a.unreachable_grace),
    );
    tokio::pin!(governor);
    let mut stop = None;
    let mut forwarded_term = false;
    let status = loop {
        tokio::select! {
            r = &mut waiter => break r??,
            s = &mut governor => {
                stop = Some(s);
                break terminate(pgid, Duration::from_secs(a.kill_grace), &mut waiter).await?;
            }
            sig = forward.recv() => {
                forwarded_term |= sig == SignalKind::terminate().as_raw_value();
                let _ = writ_exec::signal_group(pgid, sig);
            }
        }
    };
    // A SIGTERM passed on is most often a parent runner ending its subtree
    // for a reason that concerns this run too (a revocation reaches every
    // descendant's stream at about the same moment): give the governor a
    // moment to say so, so the log records why rather than just "signal 15".
    // (The other way round, a program that is itself a runner hearing of a
    // subtree revocation first and exiting before this runner's stream
    // delivers it, needs no wait: the finish answer says the writ was
    // revoked, below.)
    if forwarded_term && stop.is_none() {
        if let Ok(s) = tokio::time::timeout(FORWARDED_STOP_WAIT, &mut governor).await {
            stop = Some(s);
        }
    }
    // What the program left running (in the background, in a session of its
    // own) would run on ungoverned once this runner exits: end it too.
    let left = end_descendants(Duration::from_secs(a.kill_grace)).await;
    let code = status.code().map(i64::from);
    let signal = std::os::unix::process::ExitStatusExt::signal(&status);
    let terminated = match &stop {
        Some(s) => Some(s.record()),
        None if left > 0 => Some(format!(
            "the program exited{}; the {left} processes it left running were ended",
            signal
                .map(|s| format!(" on signal {s}"))
                .unwrap_or_default()
        )),
        None => signal.map(|s| format!("signal {s}")),
    };
    let outcome = json!({
        "exit_status": code.or(signal.map(|s| 128 + i64::from(s))),
        "duration_ms": started.elapsed().as_millis() as u64,
        "terminated": terminated,
        "enforcement": available.as_str(),
        "pop": holder.proof(&jti, PopUse::Finish),
    });
    // The finish answers whether the writ was revoked by then: a script
    // whose nested runner heard a subtree revocation first can exit 0
    // before this runner's governor has read the same event. The log
    // records the revocation then, and so does this exit.
    let recorded = client
        .post(&format!("/v1/executions/{jti}/finish"), &outcome)
        .await
        .and_then(|r| {
            if r.ok() {
                Ok(r.body
                    .get("revoked")
                    .and_then(Value::as_str)
                    .map(str::to_owned))
            } else {
                Err(anyhow::anyhow!(r.message()))
            }
        });
    let revoked_meanwhile = match (&stop, &recorded) {
        (None, Ok(Some(why))) => Some(why.clone()),
        _ => None,
    };
    // The denial line comes first on standard error, as for every denial.
    let exit = match (stop, revoked_meanwhile) {
        (Some(s), _) => denied(s.reason(), s.denial_message()),
        (None, Some(why)) => denied(
            ReasonCode::Revoked,
            format!("{why} (the program ended before it was stopped)"),
        ),
        (None, None) => Ok(Exit::Code(match (code, signal) {
            (Some(c), _) => c as u8,
            (None, Some(s)) => (128 + s) as u8,
            _ => 1,
        })),
    };
    if let Err(e) = recorded {
        eprintln!("writ: warning: the finish of {jti} was not recorded: {e}");
    }
    exit
}

/// The program's exit status, from the thread that waits for it.
type Waiter = tokio::sync::oneshot::Receiver<std::io::Result<std::process::ExitStatus>>;

/// SIGTERM to the group and every descendant; SIGKILL to whatever still
/// runs after `grace`. A process that outlives the group's leader (one that
/// ends in order on SIGTERM, such as `writ mcp-proxy` finishing its session
/// while the shell that started it is already gone) has the rest of the
/// grace too.
async fn terminate(
    pgid: u32,
    grace: Duration,
    waiter: &mut Waiter,
) -> Result<std::process::ExitStatus> {
    let _ = writ_exec::signal_group(pgid, SIGTERM);
    writ_exec::signal_descendants(SIGTERM);
    let deadline = tokio::time::Instant::now() + grace;
    let status = match tokio::time::timeout_at(deadline, &mut *waiter).await {
        Ok(r) => r??,
        Err(_) => {
            let _ = writ_exec::signal_group(pgid, SIGKILL);
            writ_exec::signal_descendants(SIGKILL);
            waiter.await??
        }
    };
    while tokio::time::Instant::now() < deadline && !writ_exec::descendants().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = writ_exec::signal_group(pgid, SIGKILL);
    kill_descendants().await;
    Ok(status)
}

const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;

/// End every live descendant of the runner (the program is gone): SIGTERM,
/// SIGKILL to those still running after `grace`. How many there were.
async fn end_descendants(grace: Duration) -> usize {
    let n = writ_exec::signal_descendants(SIGTERM);
    if n == 0 {
        return 0;
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && !writ_exec::descendants().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    kill_descendants().await;
    n
}

/// SIGKILL every live descendant until none is left (one may fork between
/// the listing and the signal; a killed one cannot fork again). Gives up
/// after a second of trying.
async fn kill_descendants() {
    for _ in 0..100 {
        if writ_exec::signal_descendants(SIGKILL) == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The run could not start after the nonce was spent: record that, deny.
async fn finish_denied(
    client: &Client,
    holder: &Holder,
    jti: &str,
    started: Instant,
    e: ExecError,
) -> Result<Exit> {
    record_not_started(client, holder, jti, started, &e.to_string()).await;
    let reason = match e {
        ExecError::Changed(_) => ReasonCode::EnvironmentMismatch,
        _ => ReasonCode::IntegrityFailure,
    };
    denied(reason, e.to_string())
}

/// Record, as the finish of a spent writ, that its program never started.
async fn record_not_started(
    client: &Client,
    holder: &Holder,
    jti: &str,
    started: Instant,
    why: &str,
) {
    let outcome = FinishRequest {
        duration_ms: started.elapsed().as_millis() as u64,
        terminated: Some(format!("not started: {why}")),
        pop: holder.proof(jti, PopUse::Finish),
        ..FinishRequest::default()
    };
    let _ = client
        .post(&format!("/v1/executions/{jti}/finish"), &outcome)
        .await;
}

fn path_strings(v: &[PathBuf]) -> Vec<String> {
    v.iter().map(|p| p.to_string_lossy().into_owned()).collect()
}

fn read_writ(f: &str) -> Result<String> {
    let text = if f == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(f).with_context(|| format!("cannot read {f}"))?
    };
    Ok(text.trim().to_owned())
}
