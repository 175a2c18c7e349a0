//! One run of `writ exec`, in its steps: measure, obtain the writ, verify
//! it into a grant, start it, run the program under the grant, record how
//! it ended.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};
use writ_api::{AuthorizeRequest, AuthorizeResponse, FinishRequest};
use writ_artifact::pop::PopUse;
use writ_artifact::{
    canonical, Clock, EnvironmentBinding, Grant, Jwks, KeyRing, NoStatus, ReasonCode, Scope,
    SystemClock, VerifyOptions,
};
use writ_exec::{Confinement, Enforcement, ExecError, Executable, Launcher};

use super::args::{scope_path, ExecArgs};
use super::ending::{end_descendants, supervise};
use crate::client::Client;
use crate::holder::Holder;
use crate::lease::Stop;
use crate::step::{proceed, Step};
use crate::{print_denial, Exit, Global};

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

/// A denial as the exit of a step.
fn deny<T>(reason: ReasonCode, message: impl Into<String>) -> Step<T> {
    denied(reason, message).map(Err)
}

/// What a run asked for and measured, before any writ.
struct Run {
    a: ExecArgs,
    /// The scope asked for and the system trees; the program runs confined
    /// to the scope its writ grants instead, with these system trees.
    confinement: Confinement,
    /// What the kernel gives here.
    available: Enforcement,
    /// What the run needs the kernel to give.
    required: Enforcement,
    /// The allow-listed variables of this process, which the program gets.
    env: Vec<(String, String)>,
    /// The environment facts the writ binds.
    facts: Map<String, Value>,
    /// The request the writ binds: `{"argv": [...]}`.
    request: Value,
    audience: String,
}

/// The writ a run goes with: given with `--writ`, or asked for.
struct Obtained {
    writ: String,
    /// The jti of a writ asked for here, which was started on issue (its
    /// nonce spent in the decision's commit); `None` for a given one.
    issued: Option<String>,
    /// What `writ authorize --json` prints, for `--authorize-only --json`.
    answer: Option<AuthorizeResponse>,
    /// The program's own credential, for what it asks in turn.
    credential: Option<String>,
}

/// `writ exec`: the run's steps, in order; a denial on the way ends it with
/// the reason's exit.
pub async fn exec(g: &Global, a: ExecArgs) -> Result<Exit> {
    let g = &g.local_default();
    JSON_DENIALS.store(g.json, Ordering::Relaxed);
    // The caller's token is in this process: nothing of the same user (the
    // program cannot anyway, being in a Landlock domain of its own) may
    // read it from /proc.
    writ_exec::guard::undumpable()?;
    let (run, exe) = proceed!(Run::measure(a));
    // The confining thread builds the ruleset of the scope asked for while
    // the authority decides; it is used only if the writ grants exactly
    // that scope (otherwise one is built for what was granted).
    let launcher = Launcher::prepare(&exe, Some(&run.confinement), run.required)?;
    let client = Client::new(&g.server, g.token.clone()).answering_within(
        crate::lease::answer_limit(Duration::from_secs(run.a.unreachable_grace)),
    );
    // The run's holder key: the writ asked for is bound to it, so that a
    // copy of it (the program gets one, in WRIT_PARENT) is useless to
    // anyone but this runner. A writ asked for only to be printed is for
    // another run to use, and is not bound.
    let holder = if run.a.authorize_only {
        Holder::none(&run.audience)
    } else {
        Holder::generate(&run.audience)?
    };
    // The authority's published keys, fetched while the writ is asked for.
    let jwks = {
        let c = client.clone();
        tokio::spawn(async move { c.get("/.well-known/jwks.json").await })
    };
    let mut got = proceed!(run.obtain(g, &client, &holder, &exe).await);
    if run.a.authorize_only {
        match got.answer {
            Some(answer) if g.json => crate::print_json(&answer)?,
            _ => println!("{}", got.writ),
        }
        return Ok(Exit::Ok);
    }
    let started = Instant::now();
    let ring = match keyring(jwks).await? {
        Ok(ring) => ring,
        Err(e) => {
            if let Some(jti) = &got.issued {
                record_not_started(&client, &holder, jti, started, &e).await;
            }
            return denied(ReasonCode::AuthorityUnavailable, e);
        }
    };
    let grant = proceed!(run.verify(&got, &ring, &client, &holder, started).await);
    // A writ given with --writ is started now, after verification.
    if got.issued.is_none() {
        got.credential = proceed!(
            run.start_given(&got.writ, grant.jti(), &client, &holder)
                .await
        );
    }
    run.execute(g, exe, launcher, &got, &grant, client, holder, started)
        .await
}

/// The authority's key ring from its published keys, or why not.
async fn keyring(
    jwks: tokio::task::JoinHandle<Result<crate::client::Reply>>,
) -> Result<Result<KeyRing, String>> {
    Ok(match jwks.await? {
        Ok(r) if r.ok() => r
            .parse::<Jwks>()
            .map_err(|e| e.to_string())
            .and_then(|j| KeyRing::from_jwks(&j).map_err(|e| e.to_string()))
            .map_err(|e| format!("the authority's keys: {e}")),
        Ok(r) => Err(r.message()),
        Err(e) => Err(e.to_string()),
    })
}

impl Run {
    /// Open the executable, and measure what the writ will bind: the scope
    /// asked for, the kernel's enforcement, the environment.
    fn measure(mut a: ExecArgs) -> Step<(Run, Executable)> {
        // The scope the writ binds is absolute and normal: `--read .` means
        // this directory, `--read src/` and `--read ../data` what the shell
        // means.
        for p in a.scope.read.iter_mut().chain(a.scope.write.iter_mut()) {
            *p = scope_path(p).with_context(|| format!("--read/--write {}", p.display()))?;
        }
        let path_var = std::env::var_os("PATH");
        let exe = match Executable::open(&a.argv[0], path_var.as_deref()) {
            Ok(e) => e,
            // A writ obtained earlier named a file that is no longer there.
            Err(e) if a.writ.is_some() => {
                return deny(ReasonCode::EnvironmentMismatch, e.to_string())
            }
            // Nothing to ask a writ for: a usage error, not a denial.
            Err(e) => anyhow::bail!("{e}"),
        };
        let confinement = asked_confinement(&a);
        if let Err(e) = confinement.check_paths() {
            anyhow::bail!("{e}");
        }
        let available = confinement.available();
        if !a.allow_partial_enforcement && available != Enforcement::Full {
            return deny(
                ReasonCode::IntegrityFailure,
                format!(
                    "full enforcement is required but this kernel gives {} (Landlock ABI 6 or \
                     later enforces the whole scope); --allow-partial-enforcement runs with what \
                     it gives",
                    available.as_str()
                ),
            );
        }
        let cwd = std::env::current_dir().context("the working directory")?;
        let env = allowed_env(&a.env_allow);
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
        let run = Run {
            a,
            confinement,
            available,
            required,
            env,
            facts,
            request,
            audience,
        };
        Ok(Ok((run, exe)))
    }

    /// The writ: given, or asked for (and then started on issue: its nonce
    /// is spent in the decision's commit, and `issued` is its jti).
    async fn obtain(
        &self,
        g: &Global,
        client: &Client,
        holder: &Holder,
        exe: &Executable,
    ) -> Step<Obtained> {
        if let Some(f) = &self.a.writ {
            return Ok(Ok(Obtained {
                writ: read_writ(f)?,
                issued: None,
                answer: None,
                credential: None,
            }));
        }
        if !g.can_authenticate() {
            anyhow::bail!(
                "writ exec needs a token (WRIT_TOKEN or --token), or a server on the data dir's \
                 Unix socket (writ serve --unix)"
            );
        }
        let req = self.authorize_request(holder, exe)?;
        // An enforcement point that cannot reach its authority runs
        // nothing: a denial, as for every other failure on the way.
        let reply = match client.post("/v1/authorize", &req).await {
            Ok(r) => r,
            Err(e) => return deny(ReasonCode::AuthorityUnavailable, format!("{e:#}")),
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
                ..
            }) => {
                let answer = AuthorizeResponse::Allow {
                    writ: writ.clone(),
                    jti: jti.clone(),
                    log_index,
                    exp,
                    credential: None,
                    screen_result: false,
                };
                Ok(Ok(Obtained {
                    writ,
                    issued: Some(jti),
                    answer: Some(answer),
                    credential,
                }))
            }
            Ok(AuthorizeResponse::Deny {
                reason, message, ..
            }) => deny(reason, message),
            Err(_) => deny(
                reply.reason().unwrap_or(ReasonCode::AuthorityUnavailable),
                reply.message(),
            ),
        }
    }

    /// What the run asks the authority: this command, this environment and
    /// the scope of the flags, bound to the run's holder key.
    fn authorize_request(&self, holder: &Holder, exe: &Executable) -> Result<AuthorizeRequest> {
        let a = &self.a;
        let resource = format!(
            "Command::{}",
            serde_json::to_string(&exe.path.to_string_lossy())?
        );
        Ok(AuthorizeRequest {
            environment: self.facts.clone(),
            scope: Scope {
                read: path_strings(&a.scope.read),
                write: path_strings(&a.scope.write),
                net: a.scope.net,
            },
            parent: crate::parent_from_env(),
            lifetime_secs: a.lifetime,
            start: !a.authorize_only,
            // The program's own credential, for what it asks in turn.
            credential: !a.authorize_only,
            cnf: holder.cnf(),
            ..AuthorizeRequest::new(
                "Action::\"exec\"",
                resource,
                self.request.clone(),
                self.audience.clone(),
            )
        })
    }

    /// Verify the writ offline against the authority's published keys,
    /// and check the paths of the scope it grants. What it grants is what
    /// the program gets, whatever flags this run was given.
    async fn verify(
        &self,
        got: &Obtained,
        ring: &KeyRing,
        client: &Client,
        holder: &Holder,
        started: Instant,
    ) -> Step<Grant> {
        let env_digest = EnvironmentBinding::bind(self.facts.clone())
            .map_err(anyhow::Error::msg)?
            .digest;
        let now = SystemClock.now_unix_secs();
        let request_digest = canonical::digest_json(&self.request).map_err(anyhow::Error::msg)?;
        // A writ given with --writ that is bound to another holder fails
        // here: this run cannot prove it holds that key.
        let holder_check = holder.check(&got.issued.clone().unwrap_or_else(|| {
            writ_artifact::decode_unverified(&got.writ)
                .map(|(_, c)| c.jti)
                .unwrap_or_default()
        }));
        let mut opts =
            VerifyOptions::enforcing(now, self.audience.clone(), request_digest, holder_check);
        opts.environment_digest = Some(env_digest);
        let grant = match writ_artifact::verify(&got.writ, ring, &opts, &NoStatus)
            .and_then(|v| v.grant())
        {
            Ok(g) => g,
            Err(d) => {
                if let Some(jti) = &got.issued {
                    record_not_started(client, holder, jti, started, &d.message).await;
                }
                return deny(d.reason, d.message);
            }
        };
        if let Err(e) = self.confinement.granted(&grant).check_paths() {
            if got.issued.is_some() {
                record_not_started(client, holder, grant.jti(), started, &e.to_string()).await;
            }
            return deny(ReasonCode::IntegrityFailure, e.to_string());
        }
        Ok(Ok(grant))
    }

    /// Spend the nonce of a given writ: the authority re-verifies it and
    /// checks revocation and replay. The program's credential, if any.
    async fn start_given(
        &self,
        writ: &str,
        jti: &str,
        client: &Client,
        holder: &Holder,
    ) -> Step<Option<String>> {
        let reply = match client
            .post(
                &format!("/v1/executions/{jti}/start"),
                &json!({"writ": writ, "request": self.request, "environment": self.facts,
                        "audience": self.audience, "credential": true,
                        "pop": holder.proof(jti, PopUse::Start)}),
            )
            .await
        {
            Ok(r) => r,
            Err(e) => return deny(ReasonCode::AuthorityUnavailable, e.to_string()),
        };
        if !reply.ok() {
            return deny(
                reply.reason().unwrap_or(ReasonCode::AuthorityUnavailable),
                reply.message(),
            );
        }
        Ok(Ok(reply
            .body
            .get("credential")
            .and_then(Value::as_str)
            .map(str::to_owned)))
    }

    /// Run the measured file, confined to what `grant` grants, in its own
    /// process group; govern it while it runs; record how it ended.
    #[allow(clippy::too_many_arguments)]
    async fn execute(
        &self,
        g: &Global,
        exe: Executable,
        launcher: Launcher,
        got: &Obtained,
        grant: &Grant,
        client: Client,
        holder: Holder,
        started: Instant,
    ) -> Result<Exit> {
        let jti = grant.jti();
        let child_env = self.child_env(g, got);
        // The confining thread waits for the program and reports its status.
        let (exited, mut waiter) = tokio::sync::oneshot::channel();
        // Catch SIGTERM, SIGINT and SIGHUP before the program exists: one
        // that came between the launch and a later set-up killed this runner
        // and left the program (in its own process group) running,
        // unwatched. Caught now, it is passed on to the program once it runs.
        let mut forward = crate::signals::Forwarder::new()?;
        // Whatever the program starts stays this runner's descendant, even in
        // another process group or session, or after its parent exits:
        // found, it can be ended with the run.
        if let Err(e) = writ_exec::become_subreaper() {
            eprintln!("writ: warning: {e}; a process the program detaches could outlive the run");
        }
        let pgid = match launcher.launch(
            &exe,
            grant,
            Some(&self.confinement),
            self.required,
            &self.a.argv,
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
            Err(e) => return finish_denied(&client, &holder, jti, started, e).await,
        };
        drop(exe);
        let governor = crate::lease::govern(
            client.clone(),
            holder.clone(),
            grant.clone(),
            Duration::from_secs(self.a.unreachable_grace),
        );
        let kill_grace = Duration::from_secs(self.a.kill_grace);
        let (status, stop) =
            supervise(pgid, kill_grace, &mut waiter, governor, &mut forward).await?;
        // What the program left running (in the background, in a session of
        // its own) would run on ungoverned once this runner exits: end it too.
        let left = end_descendants(kill_grace).await;
        self.finish(&client, &holder, jti, started, status, stop, left)
            .await
    }

    /// The program's environment: the allow-listed variables, and what a
    /// runner inside it asks the authority with. What the program asks in
    /// turn is a child of this run: it gets this run's credential, never
    /// the token this runner holds.
    fn child_env(&self, g: &Global, got: &Obtained) -> Vec<(String, String)> {
        let mut child_env = self.env.clone();
        child_env.push(("WRIT_PARENT".into(), got.writ.clone()));
        child_env.push(("WRIT_SERVER".into(), g.server.clone()));
        if let Some(c) = &got.credential {
            child_env.push(("WRIT_TOKEN".into(), c.clone()));
        }
        child_env
    }

    /// Record how the program ended, and exit with its status or the
    /// reason it was stopped for.
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        client: &Client,
        holder: &Holder,
        jti: &str,
        started: Instant,
        status: std::process::ExitStatus,
        stop: Option<Stop>,
        left: usize,
    ) -> Result<Exit> {
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
            "enforcement": self.available.as_str(),
            "pop": holder.proof(jti, PopUse::Finish),
            // Answered once queued for the log, not once durable: the exit
            // waits for no disk (docs/spec/api.md, "Finishing before the
            // commit", says what a crash of the authority then loses).
            "durable": false,
        });
        // The finish answers whether the writ was revoked by then: a script
        // whose nested runner heard a subtree revocation first can exit 0
        // before this runner's governor has read the same event. The log
        // records the revocation then, and so does this exit. The answer is
        // decided when the finish is queued, which fixes its place in the
        // log, so it is the same whether or not the commit was waited for.
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
}

/// The scope the flags ask for, with the read-only system trees (the
/// default ones unless `--system-read` names others) and the writable
/// device files.
fn asked_confinement(a: &ExecArgs) -> Confinement {
    Confinement {
        read: a.scope.read.clone(),
        write: a.scope.write.clone(),
        net: a.scope.net,
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
    }
}

/// The variables of this process the program gets: the default allow list
/// and `--env-allow`, sorted.
fn allowed_env(env_allow: &[String]) -> Vec<(String, String)> {
    let mut allow: Vec<String> = writ_exec::DEFAULT_ENV_ALLOW
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    allow.extend(env_allow.iter().cloned());
    allow.sort();
    allow.dedup();
    allow
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), v)))
        .collect()
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
