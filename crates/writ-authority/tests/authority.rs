//! The authority in-process, on a real SQLite store, with a clock it controls.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use serde_json::json;
use writ_artifact::{FixedClock, OsEntropy, ReasonCode, Scope, WritKey};
use writ_authority::*;
use writ_log::{Entry, Outcome};
use writ_policy::{Bundle, DecisionInput};
use writ_store::{SqliteStore, Store};

const T0_MS: u64 = 1_800_000_000_000;

struct Fixture {
    _dir: tempfile::TempDir,
    clock: Arc<FixedClock>,
    authority: Authority,
    admin: Principal,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("writ.db")).unwrap());
    let clock = Arc::new(FixedClock::new(T0_MS));
    let writ_key = WritKey::generate(&OsEntropy).unwrap();
    let policy_key = WritKey::generate(&OsEntropy).unwrap();
    let signed = writ_policy::default_bundle().sign(&policy_key).unwrap();
    let out = Authority::bootstrap(
        store.clone(),
        clock.as_ref(),
        &OsEntropy,
        &writ_key,
        &policy_key,
        signed,
        "User::\"admin\"",
    )
    .await
    .unwrap();
    let authority = Authority::open(
        store,
        clock.clone(),
        Arc::new(OsEntropy),
        vec![writ_key],
        AuthorityConfig::default(),
    )
    .unwrap();
    let admin = authority.authenticate(&out.admin_token).unwrap();
    Fixture {
        _dir: dir,
        clock,
        authority,
        admin,
    }
}

fn exec(argv: &[&str]) -> AuthorizeRequest {
    AuthorizeRequest {
        action: "Action::\"exec\"".into(),
        resource: format!("Command::{}", serde_json::to_string(argv[0]).unwrap()),
        context: Default::default(),
        request: json!({"argv": argv}),
        environment: json!({"host": "h"}).as_object().unwrap().clone(),
        scope: Scope::default(),
        audience: "exec@h".into(),
        parent: None,
        lifetime_secs: Some(30),
        start: false,
        credential: false,
        delegates: Vec::new(),
        cnf: None,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_writ_from_the_future_is_not_yet_valid_and_one_from_the_past_expired() {
    let f = fixture().await;
    let AuthorizeResponse::Allow { writ, .. } = f
        .authority
        .authorize(&f.admin, exec(&["/usr/bin/true"]))
        .await
        .unwrap()
    else {
        panic!("expected allow");
    };
    let check = |w: &str| {
        f.authority.verify(&VerifyRequest {
            writ: w.into(),
            ..Default::default()
        })
    };
    assert!(check(&writ).is_ok());
    // The verifier's clock is behind the issuer's by more than the 5 s skew.
    f.clock.set(T0_MS - 6_000);
    assert_eq!(check(&writ).unwrap_err().reason, ReasonCode::NotYetValid);
    f.clock.set(T0_MS - 5_000);
    assert!(check(&writ).is_ok(), "within the skew");
    f.clock.set(T0_MS + 35_000);
    assert_eq!(check(&writ).unwrap_err().reason, ReasonCode::Expired);
}

/// A sealed decision opened with the content the store keeps for it.
fn opened(
    store: &dyn writ_store::StoreRead,
    index: u64,
    mut d: writ_log::DecisionEntry,
) -> writ_log::DecisionEntry {
    let c = store.contents(index, index + 1).unwrap().pop().unwrap();
    d.open(&writ_log::content::Content {
        salt: c.salt,
        bytes: c.content,
    })
    .unwrap();
    d
}

#[tokio::test]
async fn every_logged_decision_replays_to_the_same_answer() {
    let f = fixture().await;
    for argv in [
        &["/usr/bin/true"][..],
        &["/usr/bin/rm", "-rf", "/"],
        &["/usr/bin/echo", "hi"],
    ] {
        f.authority.authorize(&f.admin, exec(argv)).await.unwrap();
    }
    let mut net = exec(&["/usr/bin/true"]);
    net.scope.net = true;
    f.authority.authorize(&f.admin, net).await.unwrap();

    let bundle: Arc<Bundle> = f.authority.active_bundle();
    let store = f.authority.reads();
    let mut decisions = 0;
    for leaf in store.entries(0, store.log_size().unwrap()).unwrap() {
        let Entry::Decision(d) = Entry::from_leaf(&leaf.leaf).unwrap() else {
            continue;
        };
        let d = opened(store.as_ref(), leaf.index, *d);
        decisions += 1;
        assert_eq!(
            d.policy,
            bundle.hash(),
            "entry {} names the bundle that decided",
            leaf.index
        );
        let again = bundle
            .decide(DecisionInput {
                principal: &d.principal,
                action: &d.action,
                resource: &d.resource,
                context: &d.context,
            })
            .unwrap();
        assert_eq!(
            again.allow,
            d.decision == Outcome::Allow,
            "entry {} replays differently",
            leaf.index
        );
        if !again.allow {
            assert_eq!(d.reason, Some(ReasonCode::PolicyDenied));
            assert_eq!(
                again.message(),
                d.message,
                "entry {}: the logged message is the policy's",
                leaf.index
            );
        }
    }
    assert_eq!(decisions, 4);
}

#[tokio::test]
async fn the_log_index_in_a_writ_is_its_decision_entry() {
    let f = fixture().await;
    let AuthorizeResponse::Allow {
        writ,
        log_index,
        jti,
        ..
    } = f
        .authority
        .authorize(&f.admin, exec(&["/usr/bin/true"]))
        .await
        .unwrap()
    else {
        panic!("expected allow");
    };
    let v = f
        .authority
        .verify(&VerifyRequest {
            writ,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(v.claims().writ.log.index, log_index);
    let leaf = &f
        .authority
        .reads()
        .entries(log_index, log_index + 1)
        .unwrap()[0];
    let Entry::Decision(d) = Entry::from_leaf(&leaf.leaf).unwrap() else {
        panic!("not a decision")
    };
    assert_eq!(d.jti.as_deref(), Some(jti.as_str()));
    // The leaf commits to the request; the content kept beside it opens it.
    assert!(d.request.is_empty() && d.content.is_some());
    let d = opened(f.authority.reads().as_ref(), log_index, *d);
    assert_eq!(d.request, v.claims().writ.request);
    assert_eq!(
        f.authority.reads().writ(&jti).unwrap().unwrap().log_index,
        log_index
    );
}

#[tokio::test]
async fn a_writ_started_on_issue_is_spent_in_the_decisions_commit() {
    let f = fixture().await;
    let mut req = exec(&["/usr/bin/true"]);
    req.start = true;
    let AuthorizeResponse::Allow { log_index, jti, .. } =
        f.authority.authorize(&f.admin, req).await.unwrap()
    else {
        panic!("expected allow");
    };
    // The start entry follows the decision, and the execution is running.
    let store = f.authority.reads();
    let leaves = store.entries(log_index, log_index + 2).unwrap();
    assert!(matches!(
        Entry::from_leaf(&leaves[0].leaf).unwrap(),
        Entry::Decision(d) if d.jti.as_deref() == Some(jti.as_str())
    ));
    assert!(matches!(
        Entry::from_leaf(&leaves[1].leaf).unwrap(),
        Entry::ExecutionStart { jti: j, .. } if j == jti
    ));
    let running = store.execution(&jti).unwrap().expect("started");
    assert_eq!(running.finished_ms, None);
    assert_eq!(running.lease_exp, Some(T0_MS / 1000 + 30));
    // It can never be started again, here or by anyone.
    match f
        .authority
        .start(&f.admin, &jti, &StartRequest::default())
        .await
    {
        Err(CallError::Denied(d)) => assert_eq!(d.reason, ReasonCode::Replayed),
        other => panic!("a second start must be replayed, got {other:?}"),
    }
    // A denial starts nothing.
    let mut denied = exec(&["/usr/bin/rm", "-rf", "/"]);
    denied.start = true;
    let size = store.log_size().unwrap();
    let AuthorizeResponse::Deny { log_index, .. } =
        f.authority.authorize(&f.admin, denied).await.unwrap()
    else {
        panic!("rm -rf / must be denied by the default bundle");
    };
    assert_eq!(log_index, Some(size));
    assert_eq!(
        store.log_size().unwrap(),
        size + 1,
        "only the denial is logged"
    );
}

#[tokio::test]
async fn jtis_start_with_the_issue_time_and_end_random() {
    let f = fixture().await;
    let mut jtis = Vec::new();
    for step in [0, 0, 1] {
        f.clock.advance_secs(step);
        let AuthorizeResponse::Allow { jti, .. } = f
            .authority
            .authorize(&f.admin, exec(&["/usr/bin/true"]))
            .await
            .unwrap()
        else {
            panic!("expected allow");
        };
        assert_eq!(jti.len(), 32);
        assert!(jti
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        jtis.push(jti);
    }
    let ms = |j: &str| u64::from_str_radix(&j[..12], 16).unwrap();
    assert_eq!(ms(&jtis[0]), T0_MS);
    assert_eq!(ms(&jtis[1]), T0_MS);
    assert_eq!(ms(&jtis[2]), T0_MS + 1000);
    // Same millisecond, different nonces: the 80 bits after the time differ.
    assert_ne!(jtis[0][12..], jtis[1][12..]);
    // Later writs sort after earlier ones (what keeps the jti indexes appending).
    assert!(jtis[2] > jtis[0] && jtis[2] > jtis[1]);
}

/// A revocation bounds the log: no allow for a revoked principal is logged
/// after the revocation's entry, however the decisions in flight interleave
/// with it. 32 tasks decide for one principal on two worker threads while it
/// is revoked; before the revocation took effect when its entry was queued,
/// decisions read the old state during the revocation's commit and were
/// logged after it as allows.
/// Wait (up to 30 s) until the log holds more than `size` entries: the
/// racing tasks have decided something since.
async fn logged_beyond(authority: &Authority, size: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while authority.reads().log_size().unwrap() <= size {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing was logged beyond entry {size} in 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_allow_is_logged_after_the_revocation_of_its_principal() {
    let f = Arc::new(fixture().await);
    let added = f
        .authority
        .add_principal(
            &f.admin,
            &PrincipalRequest {
                uid: "User::\"racer\"".into(),
                admin: false,
                auditor: false,
            },
        )
        .await
        .unwrap();
    let racer = f.authority.authenticate(&added.token).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (f, racer, stop) = (f.clone(), racer.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                f.authority
                    .authorize(&racer, exec(&["/usr/bin/true"]))
                    .await
                    .unwrap();
            }
        }));
    }
    // Some of them decided before the revocation, some after it.
    let size = f.authority.reads().log_size().unwrap();
    logged_beyond(&f.authority, size + 8).await;
    let revoked = f
        .authority
        .revoke(
            &f.admin,
            &RevokeRequest {
                jti: None,
                principal: Some(racer.uid.clone()),
                reason: Some("race".into()),
            },
        )
        .await
        .unwrap();
    logged_beyond(&f.authority, revoked.log_index + 8).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }

    let store = f.authority.reads();
    let (mut before, mut after_denied) = (0, 0);
    for leaf in store.entries(0, store.log_size().unwrap()).unwrap() {
        let Entry::Decision(d) = Entry::from_leaf(&leaf.leaf).unwrap() else {
            continue;
        };
        if d.principal != racer.uid {
            continue;
        }
        if leaf.index < revoked.log_index {
            before += usize::from(d.decision == Outcome::Allow);
            continue;
        }
        assert_eq!(
            (d.decision, d.reason),
            (Outcome::Deny, Some(ReasonCode::Revoked)),
            "entry {} follows the revocation at {} and was not denied as revoked",
            leaf.index,
            revoked.log_index
        );
        after_denied += 1;
    }
    assert!(before > 0, "no allow was logged before the revocation");
    assert!(
        after_denied > 0,
        "no decision was logged after the revocation"
    );
}

/// A writ's revocation reaches its whole subtree, children issued while it
/// was being made included, though it names only its target (a child is
/// revoked through its ancestor). 32 tasks ask for children of one running
/// parent while the parent is revoked; every child allowed before the
/// revocation's entry must be revoked by it (`revoked_status`, which the
/// revocation stream and verification use), every decision after it denied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_every_child_issued_before_its_entry() {
    let f = Arc::new(fixture().await);
    let mut parent = exec(&["/usr/bin/sleep", "600"]);
    parent.start = true;
    let AuthorizeResponse::Allow { jti: parent, .. } =
        f.authority.authorize(&f.admin, parent).await.unwrap()
    else {
        panic!("the parent was denied");
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (f, parent, stop) = (f.clone(), parent.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut child = exec(&["/usr/bin/true"]);
                child.parent = Some(parent.clone());
                child.lifetime_secs = None;
                f.authority.authorize(&f.admin, child).await.unwrap();
            }
        }));
    }
    let size = f.authority.reads().log_size().unwrap();
    logged_beyond(&f.authority, size + 8).await;
    let revoked = f
        .authority
        .revoke(
            &f.admin,
            &RevokeRequest {
                jti: Some(parent.clone()),
                principal: None,
                reason: Some("race".into()),
            },
        )
        .await
        .unwrap();
    logged_beyond(&f.authority, revoked.log_index + 8).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }

    let store = f.authority.reads();
    let (mut children, mut after) = (0, 0);
    for leaf in store.entries(0, store.log_size().unwrap()).unwrap() {
        let Entry::Decision(d) = Entry::from_leaf(&leaf.leaf).unwrap() else {
            continue;
        };
        if d.parent.as_deref() != Some(parent.as_str()) {
            continue;
        }
        if leaf.index > revoked.log_index {
            assert_eq!(d.decision, Outcome::Deny, "entry {}", leaf.index);
            after += 1;
        } else if d.decision == Outcome::Allow {
            let jti = d.jti.unwrap();
            assert!(
                f.authority.revoked_status(&jti).is_some(),
                "child {jti} (entry {}, before the revocation at {}) is not revoked by it",
                leaf.index,
                revoked.log_index
            );
            children += 1;
        }
    }
    assert!(
        children > 0 && after > 0,
        "{children} children, {after} after"
    );
    assert_eq!(revoked.revoked, vec![parent.clone()]);
    // The lineage tree says the same of every one of them.
    let tree = f.authority.lineage(&parent).unwrap().tree;
    assert_eq!(tree.status, "revoked");
    assert_eq!(tree.children.len(), children);
    for c in &tree.children {
        assert_eq!(c.status, "revoked", "child {} in the lineage tree", c.jti);
    }
}

#[tokio::test]
async fn a_finish_after_a_revocation_names_it_beside_the_runners_own_account() {
    let f = fixture().await;
    let allow = |req: AuthorizeRequest| {
        let a = &f.authority;
        let who = f.admin.clone();
        async move {
            match a.authorize(&who, req).await.unwrap() {
                AuthorizeResponse::Allow { jti, .. } => jti,
                other => panic!("expected allow, got {other:?}"),
            }
        }
    };
    let mut root = exec(&["/usr/bin/true"]);
    root.start = true;
    let root = allow(root).await;
    let child = |parent: &str| {
        let mut c = exec(&["/usr/bin/true"]);
        c.parent = Some(parent.to_owned());
        c.lifetime_secs = None;
        c.start = true;
        c
    };
    let (a, b, c) = (
        allow(child(&root)).await,
        allow(child(&root)).await,
        allow(child(&root)).await,
    );
    f.authority
        .revoke(
            &f.admin,
            &RevokeRequest {
                jti: Some(root.clone()),
                reason: Some("compromised".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let finish = |jti: String, terminated: Option<&str>| {
        let a = &f.authority;
        let who = f.admin.clone();
        let req = FinishRequest {
            exit_status: Some(143),
            terminated: terminated.map(str::to_owned),
            ..Default::default()
        };
        async move {
            let r = a.finish(&who, &jti, &req).await.unwrap();
            assert!(r.revoked.is_some(), "{r:?}");
            let leaf = &a.reads().entries(r.log_index, r.log_index + 1).unwrap()[0].leaf;
            match Entry::from_leaf(leaf).unwrap() {
                Entry::ExecutionFinish { terminated, .. } => terminated.unwrap(),
                other => panic!("{other:?}"),
            }
        }
    };
    // Killed by a signal an ancestor's runner sent before this run's own
    // runner heard of the revocation: both are recorded.
    let t = finish(a, Some("signal 15")).await;
    assert!(
        t.starts_with("revoked: ") && t.ends_with("(the run ended: signal 15)"),
        "{t}"
    );
    // Ended on its own: the revocation, and that it came first.
    let t = finish(b, None).await;
    assert!(
        t.starts_with("revoked: ") && t.ends_with("(the program ended before it was stopped)"),
        "{t}"
    );
    // The runner's own account of the revocation stands as it is.
    let t = finish(c, Some("revoked: by its own stream")).await;
    assert_eq!(t, "revoked: by its own stream");
}

/// Lifecycle changes are serialized: disabling and revoking every
/// administrator at once, from many tasks and each in its own name, leaves
/// one that can act (each change checks the others under one lock), and
/// two rotations of one principal at once leave exactly one working token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lifecycle_changes_keep_an_administrator_and_one_token() {
    let f = Arc::new(fixture().await);
    let mut admins = vec![f.admin.clone()];
    for n in 0..3 {
        let uid = format!("User::\"admin{n}\"");
        let r = f
            .authority
            .add_principal(
                &f.admin,
                &PrincipalRequest {
                    uid: uid.clone(),
                    admin: true,
                    auditor: false,
                },
            )
            .await
            .unwrap();
        admins.push(f.authority.authenticate(&r.token).unwrap());
    }
    let mut tasks = Vec::new();
    for (i, who) in admins.iter().enumerate() {
        // Each administrator takes out the next one, by disabling or
        // revoking it.
        let (f, who, target) = (
            f.clone(),
            who.clone(),
            admins[(i + 1) % admins.len()].uid.clone(),
        );
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                f.authority
                    .set_principal_disabled(&who, &target, true)
                    .await
                    .map(|_| ())
            } else {
                f.authority
                    .revoke(
                        &who,
                        &RevokeRequest {
                            jti: None,
                            principal: Some(target),
                            reason: None,
                        },
                    )
                    .await
                    .map(|_| ())
            }
        }));
    }
    for t in tasks {
        let _ = t.await.unwrap();
    }
    let able = admins
        .iter()
        .filter(|a| f.authority.list_principals(a).is_ok())
        .count();
    assert!(able >= 1, "no administrator can act any more");

    let agent = f
        .authority
        .add_principal(
            admins
                .iter()
                .find(|a| f.authority.list_principals(a).is_ok())
                .unwrap(),
            &PrincipalRequest {
                uid: "Agent::\"twice\"".into(),
                admin: false,
                auditor: false,
            },
        )
        .await
        .unwrap();
    let admin = admins
        .iter()
        .find(|a| f.authority.list_principals(a).is_ok())
        .unwrap()
        .clone();
    let (a, b) = tokio::join!(
        f.authority.rotate_principal(&admin, "Agent::\"twice\""),
        f.authority.rotate_principal(&admin, "Agent::\"twice\"")
    );
    let tokens = [a.unwrap().token, b.unwrap().token, agent.token];
    let working = tokens
        .iter()
        .filter(|t| f.authority.authenticate(t).is_ok())
        .count();
    assert_eq!(working, 1, "exactly the last token works");
}
