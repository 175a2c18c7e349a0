//! A finish answered before its commit (`"durable": false`,
//! docs/spec/api.md, "Finishing before the commit"), against a store whose
//! commits the test holds back: what holds while the commit is pending,
//! and what a commit that fails after the answer loses (the loss window).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use writ_artifact::{FixedClock, OsEntropy, Scope, WritKey};
use writ_authority::*;
use writ_log::Hash;
use writ_store::*;

/// A SQLite store whose commits are held while `hold` is set: each held
/// transaction waits in `held` for the test to pass it on or fail it.
struct Held {
    inner: SqliteStore,
    hold: Mutex<bool>,
    held: Mutex<Vec<(Tx, tokio::sync::oneshot::Sender<TxResult>)>>,
}

impl Held {
    fn hold(&self, on: bool) {
        *self.hold.lock().unwrap() = on;
    }

    /// Answer every held transaction with `result` (`None`: commit it).
    async fn release(&self, result: Option<StoreError>) -> usize {
        let held: Vec<_> = self.held.lock().unwrap().drain(..).collect();
        let n = held.len();
        for (tx, reply) in held {
            let r = match &result {
                None => self.inner.submit(tx).await,
                Some(e) => Err(e.clone()),
            };
            let _ = reply.send(r);
        }
        n
    }
}

impl Submit for Held {
    fn submit(&self, tx: Tx) -> Ticket {
        if !*self.hold.lock().unwrap() {
            return self.inner.submit(tx);
        }
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.held.lock().unwrap().push((tx, reply));
        Ticket::pending(rx)
    }
}

impl LogRead for Held {
    fn log_size(&self) -> Result<u64, StoreError> {
        self.inner.log_size()
    }
    fn entries(&self, start: u64, end: u64) -> Result<Vec<StoredLeaf>, StoreError> {
        self.inner.entries(start, end)
    }
    fn contents(&self, start: u64, end: u64) -> Result<Vec<StoredContent>, StoreError> {
        self.inner.contents(start, end)
    }
    fn tree_root(&self, size: u64) -> Result<Hash, ProofError> {
        self.inner.tree_root(size)
    }
    fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        self.inner.inclusion_proof(index, size)
    }
    fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, ProofError> {
        self.inner.consistency_proof(first, second)
    }
    fn nodes_after(
        &self,
        after: Option<(u8, u64)>,
        limit: usize,
    ) -> Result<Vec<(u8, u64, Hash)>, StoreError> {
        self.inner.nodes_after(after, limit)
    }
    fn checkpoints(&self, from: u64, limit: usize) -> Result<Vec<CheckpointRecord>, StoreError> {
        self.inner.checkpoints(from, limit)
    }
    fn latest_checkpoint(&self) -> Result<Option<CheckpointRecord>, StoreError> {
        self.inner.latest_checkpoint()
    }
}

impl StateRead for Held {
    fn principals(&self) -> Result<Vec<PrincipalRecord>, StoreError> {
        self.inner.principals()
    }
    fn issuers(&self) -> Result<Vec<IssuerRecord>, StoreError> {
        self.inner.issuers()
    }
    fn writ(&self, jti: &str) -> Result<Option<WritRecord>, StoreError> {
        self.inner.writ(jti)
    }
    fn children(&self, jti: &str) -> Result<Vec<WritRecord>, StoreError> {
        self.inner.children(jti)
    }
    fn execution(&self, jti: &str) -> Result<Option<ExecutionRecord>, StoreError> {
        self.inner.execution(jti)
    }
    fn delegated(&self, jti: &str, principal: &str) -> Result<bool, StoreError> {
        self.inner.delegated(jti, principal)
    }
    fn revocations(&self) -> Result<Vec<RevocationRecord>, StoreError> {
        self.inner.revocations()
    }
    fn bundle(&self, hash: &str) -> Result<Option<String>, StoreError> {
        self.inner.bundle(hash)
    }
    fn activations(&self) -> Result<Vec<ActivationRecord>, StoreError> {
        self.inner.activations()
    }
    fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.inner.keys()
    }
    fn pin(&self, resource: &str) -> Result<Option<PinRecord>, StoreError> {
        self.inner.pin(resource)
    }
    fn pins(&self) -> Result<Vec<PinRecord>, StoreError> {
        self.inner.pins()
    }
}

impl Store for Held {
    fn mesh(&self) -> Option<&dyn Mesh> {
        None
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<Held>,
    authority: Arc<Authority>,
    admin: Principal,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Held {
        inner: SqliteStore::open(&dir.path().join("writ.db")).unwrap(),
        hold: Mutex::new(false),
        held: Mutex::new(Vec::new()),
    });
    let clock = Arc::new(FixedClock::new(1_700_000_000_000));
    let writ_key = WritKey::generate(&OsEntropy).unwrap();
    let policy_key = WritKey::generate(&OsEntropy).unwrap();
    let signed = writ_policy::default_bundle().sign(&policy_key).unwrap();
    let dyn_store: Arc<dyn Store> = store.clone();
    let out = Authority::bootstrap(
        dyn_store.clone(),
        clock.as_ref(),
        &OsEntropy,
        &writ_key,
        &policy_key,
        signed,
        "User::\"admin\"",
    )
    .await
    .unwrap();
    let authority = Arc::new(
        Authority::open(
            dyn_store,
            clock,
            Arc::new(OsEntropy),
            vec![writ_key],
            AuthorityConfig::default(),
        )
        .unwrap(),
    );
    let admin = authority.authenticate(&out.admin_token).unwrap();
    Fixture {
        _dir: dir,
        store,
        authority,
        admin,
    }
}

/// A started run of `/usr/bin/true`: its jti and credential.
async fn started(f: &Fixture) -> (String, String) {
    let req = AuthorizeRequest {
        environment: json!({"host": "h"}).as_object().unwrap().clone(),
        scope: Scope::default(),
        lifetime_secs: Some(30),
        start: true,
        credential: true,
        ..AuthorizeRequest::new(
            "Action::\"exec\"",
            "Command::\"/usr/bin/true\"",
            json!({"argv": ["/usr/bin/true"]}),
            "exec@h",
        )
    };
    match f.authority.authorize(&f.admin, req).await.unwrap() {
        AuthorizeResponse::Allow {
            jti,
            credential: Some(c),
            ..
        } => (jti, c),
        other => panic!("expected an allow with a credential, got {other:?}"),
    }
}

fn queued() -> FinishRequest {
    FinishRequest {
        exit_status: Some(0),
        durable: Some(false),
        ..Default::default()
    }
}

fn finished(f: &Fixture, jti: &str) -> bool {
    f.store
        .execution(jti)
        .unwrap()
        .unwrap()
        .finished_ms
        .is_some()
}

/// Not ready within a moment.
async fn pending(fut: impl std::future::Future<Output = ()>) -> bool {
    tokio::time::timeout(Duration::from_millis(100), fut)
        .await
        .is_err()
}

#[tokio::test]
async fn a_queued_finish_counts_as_finished_until_its_commit_and_reads_wait_for_it() {
    let f = fixture().await;
    let (jti, credential) = started(&f).await;
    assert!(f.authority.authenticate(&credential).is_ok());
    f.store.hold(true);
    let (answer, pending_finish) = f
        .authority
        .finish_queued(&f.admin, &jti, &queued())
        .await
        .unwrap();
    assert_eq!((answer.jti.as_str(), answer.durable), (jti.as_str(), false));
    assert_eq!(answer.revoked, None);
    // Answered, not committed: the store does not have it yet ...
    assert!(!finished(&f, &jti));
    // ... but the execution counts as finished here.
    let e = f.authority.authenticate(&credential).unwrap_err();
    assert!(e.message.contains("has finished"), "{}", e.message);
    for again in [queued(), FinishRequest::default()] {
        let r = if again.durable == Some(false) {
            f.authority
                .finish_queued(&f.admin, &jti, &again)
                .await
                .map(|_| ())
        } else {
            f.authority.finish(&f.admin, &jti, &again).await.map(|_| ())
        };
        assert!(matches!(r, Err(CallError::Conflict(_))), "{again:?}");
    }
    // A read waits for the commit.
    assert!(pending(f.authority.settled()).await);
    let settling = tokio::spawn({
        let a = f.authority.clone();
        async move { pending_finish.settle(&a).await }
    });
    assert!(pending(f.authority.settled()).await, "still held");
    assert_eq!(f.store.release(None).await, 1);
    settling.await.unwrap();
    f.authority.settled().await;
    assert!(finished(&f, &jti));
    assert!(f.authority.authenticate(&credential).is_err());
}

/// The loss window: the commit fails after the answer. The finish is not
/// in the log, the execution is open again (until its lease ends) and its
/// credential works again; nothing waits for the failed commit any more.
#[tokio::test]
async fn a_queued_finish_whose_commit_fails_leaves_the_execution_open_until_its_lease() {
    let f = fixture().await;
    let (jti, credential) = started(&f).await;
    let size = f.store.log_size().unwrap();
    f.store.hold(true);
    let (_, pending_finish) = f
        .authority
        .finish_queued(&f.admin, &jti, &queued())
        .await
        .unwrap();
    let settling = tokio::spawn({
        let a = f.authority.clone();
        async move { pending_finish.settle(&a).await }
    });
    f.store
        .release(Some(StoreError::Unavailable("disk I/O error".into())))
        .await;
    settling.await.unwrap();
    f.authority.settled().await;
    f.store.hold(false);
    assert_eq!(f.store.log_size().unwrap(), size, "no finish entry");
    assert!(!finished(&f, &jti));
    assert!(f.authority.authenticate(&credential).is_ok());
    // The run can still be finished, durably this time.
    let r = f
        .authority
        .finish(&f.admin, &jti, &FinishRequest::default())
        .await
        .unwrap();
    assert_eq!(r.log_index, size);
    assert!(finished(&f, &jti));
}

/// The answer says a revocation in force when the finish was queued, as a
/// durable finish does.
#[tokio::test]
async fn a_queued_finish_says_the_writ_was_revoked() {
    let f = fixture().await;
    let (jti, _) = started(&f).await;
    f.authority
        .revoke(
            &f.admin,
            &RevokeRequest {
                jti: Some(jti.clone()),
                reason: Some("compromised".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (answer, pending_finish) = f
        .authority
        .finish_queued(&f.admin, &jti, &queued())
        .await
        .unwrap();
    assert!(
        answer
            .revoked
            .as_deref()
            .is_some_and(|r| r.contains("is revoked")),
        "{answer:?}"
    );
    pending_finish.settle(&f.authority).await;
    assert!(finished(&f, &jti));
}
