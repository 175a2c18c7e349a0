//! The PostgreSQL store shared by several nodes: one total order, one tree,
//! nonces spent mesh-wide, change notification, one checkpoint leader, and
//! failing closed while the database is down. Each "node" here is its own
//! `PgStore` (its own connections) on one throwaway cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::pg::Cluster;
use writ_store::*;

fn leaf(node: u64, n: u64) -> Op {
    Op::Append {
        leaf: format!("{{\"node\":{node},\"n\":{n}}}").into_bytes(),
    }
}

#[test]
fn nodes_sharing_one_database_behave_as_one_store() {
    let pg = Cluster::start();
    let url = pg.database();
    let a: Arc<PgStore> = Arc::new(PgStore::connect(&url).unwrap());
    let b: Arc<PgStore> = Arc::new(PgStore::connect(&url).unwrap());

    // Concurrent appends from both nodes: one dense order, one tree.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut all: Vec<u64> = rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..32u64 {
            let s = if t % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for i in 0..10 {
                    got.extend(
                        s.submit(Tx::new(vec![leaf(t % 2, t * 100 + i)]))
                            .await
                            .unwrap(),
                    );
                }
                got
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    all.sort();
    assert_eq!(all, (0..320).collect::<Vec<u64>>());
    assert_eq!(a.log_size().unwrap(), 320);
    assert_eq!(b.log_size().unwrap(), 320);
    let leaves: Vec<Vec<u8>> = b
        .entries(0, 320)
        .unwrap()
        .into_iter()
        .map(|l| l.leaf)
        .collect();
    let mem = writ_log::merkle::MemoryTree::from_leaves(leaves.iter().map(Vec::as_slice));
    let root = writ_log::merkle::root(&mem, 320).unwrap();
    assert_eq!(a.tree_root(320).unwrap(), root);
    assert_eq!(b.tree_root(320).unwrap(), root);
    let p = b.consistency_proof(17, 320).unwrap();
    assert!(writ_log::merkle::verify_consistency(
        17,
        320,
        &a.tree_root(17).unwrap(),
        &root,
        &p
    ));

    // A nonce spent through one node is spent for the other.
    let spend = Op::Spend {
        jti: "j1".into(),
        time_ms: 1,
        credential_hash: None,
    };
    a.submit(Tx::new(vec![spend.clone(), leaf(0, 999)]))
        .wait()
        .unwrap();
    let err = b
        .submit(Tx::new(vec![leaf(1, 999), spend]))
        .wait()
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(ref m) if m.contains("already spent")),
        "{err:?}"
    );
    assert_eq!(
        b.log_size().unwrap(),
        321,
        "the refused append left no entry"
    );

    // A state change through one node is announced to the other.
    let mut changes = b.changes().expect("a shared store announces changes");
    let seq = b.state_seq().unwrap();
    changes.borrow_and_update();
    a.submit(Tx::new(vec![Op::Revoke(RevocationRecord {
        target: "j1".into(),
        kind: "writ".into(),
        time_ms: 2,
        by: "test".into(),
        reason: "test".into(),
    })]))
    .wait()
    .unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), changes.changed())
            .await
            .expect("notified within 5 s")
            .unwrap();
    });
    assert_eq!(b.state_seq().unwrap(), seq + 1);
    assert_eq!(b.revocations().unwrap().len(), 1);

    // One leader; it passes on when the leader's session ends.
    assert!(a.lead().unwrap());
    assert!(a.lead().unwrap(), "the leader keeps leading");
    assert!(!b.lead().unwrap());
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b.lead().unwrap() {
        assert!(Instant::now() < deadline, "leadership did not pass on");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn with_the_database_down_the_store_fails_closed_and_recovers_after() {
    let pg = Cluster::start();
    if !pg.owned() {
        eprintln!("WRIT_TEST_DATABASE_URL is set: this test needs a cluster it can stop; skipped");
        return;
    }
    let url = pg.database();
    let s = PgStore::connect(&url).unwrap();
    s.submit(Tx::new(vec![leaf(0, 0)])).wait().unwrap();
    assert!(s.lead().unwrap());
    pg.stop();
    let err = s.submit(Tx::new(vec![leaf(0, 1)])).wait().unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(matches!(s.log_size(), Err(StoreError::Unavailable(_))));
    assert!(s.lead().is_err(), "no leader while the database is down");
    pg.restart();
    // Unaided recovery: the next transactions commit, nothing duplicated.
    let deadline = Instant::now() + Duration::from_secs(10);
    let got = loop {
        match s.submit(Tx::new(vec![leaf(0, 2)])).wait() {
            Ok(i) => break i,
            Err(e) => {
                assert!(Instant::now() < deadline, "no recovery: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    assert_eq!(got, vec![1]);
    assert_eq!(s.log_size().unwrap(), 2);
    assert!(s.lead().unwrap());
}
