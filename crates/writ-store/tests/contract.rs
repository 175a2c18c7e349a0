//! The store contract: every [`Store`] (the embedded SQLite store and the
//! shared PostgreSQL store) passes these same cases. Each case gets a way to
//! open one fresh store (again, to see what survives a reopen).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;

use support::pg::Cluster;
use writ_store::*;

type Open<'a> = &'a dyn Fn() -> Arc<dyn Store>;

fn leaf(n: u64) -> Op {
    Op::Append {
        leaf: format!("{{\"n\":{n}}}").into_bytes(),
    }
}

fn root_of(leaves: &[Vec<u8>]) -> writ_log::Hash {
    let t = writ_log::merkle::MemoryTree::from_leaves(leaves.iter().map(Vec::as_slice));
    writ_log::merkle::root(&t, leaves.len() as u64).unwrap()
}

type Case = (&'static str, fn(Open));

const CASES: &[Case] = &[
    (
        "appends_get_dense_indices_and_survive_reopen",
        appends_get_dense_indices_and_survive_reopen,
    ),
    (
        "a_conflicting_transaction_applies_nothing_and_leaves_no_gap",
        a_conflicting_transaction_applies_nothing_and_leaves_no_gap,
    ),
    (
        "concurrent_submitters_share_group_commits_and_each_gets_its_index",
        concurrent_submitters_share_group_commits_and_each_gets_its_index,
    ),
    (
        "principals_bundles_activations_and_keys_round_trip",
        principals_bundles_activations_and_keys_round_trip,
    ),
    (
        "the_stored_tree_gives_roots_and_proofs_that_verify",
        the_stored_tree_gives_roots_and_proofs_that_verify,
    ),
    (
        "a_failed_transaction_leaves_the_tree_as_it_was",
        a_failed_transaction_leaves_the_tree_as_it_was,
    ),
    (
        "checkpoints_are_kept_by_size_and_take_cosignatures",
        checkpoints_are_kept_by_size_and_take_cosignatures,
    ),
    (
        "a_lease_is_set_only_on_a_running_execution",
        a_lease_is_set_only_on_a_running_execution,
    ),
    (
        "principals_change_and_delegations_and_credentials_are_kept",
        principals_change_and_delegations_and_credentials_are_kept,
    ),
    (
        "content_is_kept_beside_its_entry_and_erased_leaving_the_tree",
        content_is_kept_beside_its_entry_and_erased_leaving_the_tree,
    ),
    (
        "a_pin_is_kept_on_first_use_and_replaced_only_by_approval",
        a_pin_is_kept_on_first_use_and_replaced_only_by_approval,
    ),
];

fn run_all(open_fresh: &dyn Fn() -> Box<dyn Fn() -> Arc<dyn Store>>) {
    for (name, case) in CASES {
        eprintln!("case {name}");
        let open = open_fresh();
        case(&*open);
    }
}

#[test]
fn the_sqlite_store_keeps_the_store_contract() {
    let dirs = std::sync::Mutex::new(Vec::new());
    run_all(&|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("writ.db");
        dirs.lock().unwrap().push(dir);
        Box::new(move || Arc::new(SqliteStore::open(&path).unwrap()) as Arc<dyn Store>)
    });
}

#[test]
fn the_postgres_store_keeps_the_store_contract() {
    let pg = Cluster::start();
    run_all(&|| {
        let url = pg.database();
        Box::new(move || Arc::new(PgStore::connect(&url).unwrap()) as Arc<dyn Store>)
    });
}

fn appends_get_dense_indices_and_survive_reopen(open: Open) {
    let s = open();
    assert_eq!(
        s.submit(Tx::new(vec![leaf(0), leaf(1)])).wait().unwrap(),
        vec![0, 1]
    );
    assert_eq!(s.submit(Tx::new(vec![leaf(2)])).wait().unwrap(), vec![2]);
    drop(s);
    let s = open();
    assert_eq!(s.log_size().unwrap(), 3);
    assert_eq!(s.submit(Tx::new(vec![leaf(3)])).wait().unwrap(), vec![3]);
    let e = s.entries(1, 3).unwrap();
    assert_eq!(e.iter().map(|l| l.index).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(e[0].leaf_hash, writ_log::leaf_hash(b"{\"n\":1}"));
}

fn a_conflicting_transaction_applies_nothing_and_leaves_no_gap(open: Open) {
    let s = open();
    let spend = |j: &str| Op::Spend {
        jti: j.into(),
        time_ms: 1,
        credential_hash: None,
    };
    assert_eq!(
        s.submit(Tx::new(vec![spend("a"), leaf(0)])).wait().unwrap(),
        vec![0]
    );
    let err = s
        .submit(Tx::new(vec![leaf(1), spend("a")]))
        .wait()
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(ref m) if m.contains("already spent")),
        "{err:?}"
    );
    assert_eq!(
        s.log_size().unwrap(),
        1,
        "the rolled-back append left no entry"
    );
    assert_eq!(s.submit(Tx::new(vec![leaf(2)])).wait().unwrap(), vec![1]);
}

fn concurrent_submitters_share_group_commits_and_each_gets_its_index(open: Open) {
    let s = open();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut tasks = Vec::new();
        for t in 0..64u64 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for i in 0..20u64 {
                    got.extend(s.submit(Tx::new(vec![leaf(t * 1000 + i)])).await.unwrap());
                }
                got
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all.sort();
        assert_eq!(all, (0..1280).collect::<Vec<u64>>());
        assert_eq!(s.log_size().unwrap(), 1280);
    });
}

fn principals_bundles_activations_and_keys_round_trip(open: Open) {
    let s = open();
    let p = PrincipalRecord {
        uid: "User::\"a\"".into(),
        token_hash: [7; 32],
        admin: true,
        created_ms: 5,
        disabled: false,
        auditor: false,
    };
    s.submit(Tx::new(vec![Op::PutPrincipal(p.clone())]))
        .wait()
        .unwrap();
    let dup = s
        .submit(Tx::new(vec![Op::PutPrincipal(p.clone())]))
        .wait()
        .unwrap_err();
    assert!(matches!(dup, StoreError::Conflict(_)));
    assert_eq!(s.principals().unwrap(), vec![p]);
    let missing = s
        .submit(Tx::new(vec![Op::Activate {
            hash: "h".into(),
            time_ms: 1,
            by: "x".into(),
        }]))
        .wait();
    assert!(matches!(missing, Err(StoreError::Conflict(_))));
    s.submit(Tx::new(vec![
        Op::PutBundle {
            hash: "h".into(),
            signed_json: "{}".into(),
        },
        Op::Activate {
            hash: "h".into(),
            time_ms: 1,
            by: "x".into(),
        },
    ]))
    .wait()
    .unwrap();
    assert_eq!(s.activations().unwrap()[0].hash, "h");
    assert_eq!(s.bundle("h").unwrap().as_deref(), Some("{}"));
}

fn the_stored_tree_gives_roots_and_proofs_that_verify(open: Open) {
    let s = open();
    use writ_log::merkle::{verify_consistency, verify_inclusion};
    let leaves: Vec<Vec<u8>> = (0..37u64)
        .map(|n| format!("{{\"n\":{n}}}").into_bytes())
        .collect();
    // Mixed batch shapes: several appends per transaction and one per transaction.
    s.submit(Tx::new((0..5).map(leaf).collect()))
        .wait()
        .unwrap();
    for n in 5..37 {
        s.submit(Tx::new(vec![leaf(n)])).wait().unwrap();
    }
    for size in 1..=37u64 {
        let root = s.tree_root(size).unwrap();
        assert_eq!(root, root_of(&leaves[..size as usize]), "size {size}");
        for index in 0..size {
            let p = s.inclusion_proof(index, size).unwrap();
            let lh = writ_log::leaf_hash(&leaves[index as usize]);
            assert!(verify_inclusion(index, size, &lh, &p, &root));
        }
        for first in 0..=size {
            let p = s.consistency_proof(first, size).unwrap();
            let r1 = s.tree_root(first).unwrap();
            assert!(
                verify_consistency(first, size, &r1, &root, &p),
                "{first}->{size}"
            );
        }
    }
    assert!(matches!(
        s.inclusion_proof(0, 38),
        Err(ProofError::BeyondLog {
            size: 38,
            log_size: 37
        })
    ));
    assert!(matches!(
        s.inclusion_proof(37, 37),
        Err(ProofError::OutOfRange { .. })
    ));
    // Nodes come back in completion order: each level-l node after its children.
    let nodes = s.nodes_after(None, 1000).unwrap();
    assert_eq!(nodes.len(), 37 - 37u64.count_ones() as usize);
    let mut mem = writ_log::merkle::MemoryTree::default();
    let mut seen = 0;
    for l in &leaves {
        for (level, index, h) in writ_log::merkle::nodes_completed_by(
            &mem,
            mem.leaves.len() as u64,
            writ_log::leaf_hash(l),
        )
        .unwrap()
        {
            if level > 0 {
                assert_eq!(nodes[seen], (level, index, h));
                seen += 1;
            }
        }
        mem.leaves.push(writ_log::leaf_hash(l));
    }
    let tail = s.nodes_after(Some((nodes[9].0, nodes[9].1)), 3).unwrap();
    assert_eq!(tail, nodes[10..13].to_vec());
}

fn a_failed_transaction_leaves_the_tree_as_it_was(open: Open) {
    let s = open();
    s.submit(Tx::new(vec![
        leaf(0),
        Op::Spend {
            jti: "a".into(),
            time_ms: 1,
            credential_hash: None,
        },
    ]))
    .wait()
    .unwrap();
    // Appends then conflicts: its nodes must be rolled back with it.
    s.submit(Tx::new(vec![
        leaf(1),
        leaf(2),
        Op::Spend {
            jti: "a".into(),
            time_ms: 1,
            credential_hash: None,
        },
    ]))
    .wait()
    .unwrap_err();
    s.submit(Tx::new(vec![leaf(7)])).wait().unwrap();
    let leaves = [b"{\"n\":0}".to_vec(), b"{\"n\":7}".to_vec()];
    assert_eq!(s.tree_root(2).unwrap(), root_of(&leaves));
}

fn checkpoints_are_kept_by_size_and_take_cosignatures(open: Open) {
    let s = open();
    let cp = |size: u64, note: &str| CheckpointRecord {
        size,
        note: note.into(),
        time_ms: size,
    };
    assert_eq!(s.latest_checkpoint().unwrap(), None);
    s.submit(Tx::new(vec![Op::PutCheckpoint(cp(1, "a"))]))
        .wait()
        .unwrap();
    s.submit(Tx::new(vec![Op::PutCheckpoint(cp(5, "b"))]))
        .wait()
        .unwrap();
    let err = s
        .submit(Tx::new(vec![Op::PutCheckpoint(cp(5, "c"))]))
        .wait()
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)));
    s.submit(Tx::new(vec![Op::Cosign {
        size: 5,
        note: "b+w".into(),
    }]))
    .wait()
    .unwrap();
    assert!(s
        .submit(Tx::new(vec![Op::Cosign {
            size: 6,
            note: "x".into()
        }]))
        .wait()
        .is_err());
    assert_eq!(s.latest_checkpoint().unwrap(), Some(cp(5, "b+w")));
    assert_eq!(s.checkpoints(2, 10).unwrap(), vec![cp(5, "b+w")]);
    assert_eq!(s.checkpoints(0, 1).unwrap(), vec![cp(1, "a")]);
}

fn a_lease_is_set_only_on_a_running_execution(open: Open) {
    let s = open();
    let lease = |j: &str, exp: u64| Op::Lease {
        jti: j.into(),
        lease_exp: exp,
    };
    let err = s.submit(Tx::new(vec![lease("a", 10)])).wait().unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(_)),
        "never started: {err:?}"
    );
    s.submit(Tx::new(vec![
        Op::Spend {
            jti: "a".into(),
            time_ms: 1,
            credential_hash: None,
        },
        lease("a", 10),
    ]))
    .wait()
    .unwrap();
    assert_eq!(s.execution("a").unwrap().unwrap().lease_exp, Some(10));
    s.submit(Tx::new(vec![lease("a", 70)])).wait().unwrap();
    assert_eq!(s.execution("a").unwrap().unwrap().lease_exp, Some(70));
    s.submit(Tx::new(vec![Op::Finish {
        jti: "a".into(),
        time_ms: 2,
        exit_status: Some(0),
        outcome: "exited".into(),
    }]))
    .wait()
    .unwrap();
    let err = s.submit(Tx::new(vec![lease("a", 99)])).wait().unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "finished: {err:?}");
    assert_eq!(s.execution("a").unwrap().unwrap().lease_exp, Some(70));
}

fn principals_change_and_delegations_and_credentials_are_kept(open: Open) {
    let s = open();
    let p = PrincipalRecord {
        uid: "Agent::\"a\"".into(),
        token_hash: [1; 32],
        admin: false,
        created_ms: 5,
        disabled: false,
        auditor: false,
    };
    s.submit(Tx::new(vec![Op::PutPrincipal(p.clone())]))
        .wait()
        .unwrap();
    // A new token, then disabled: each field changes alone.
    s.submit(Tx::new(vec![Op::UpdatePrincipal {
        uid: p.uid.clone(),
        token_hash: Some([2; 32]),
        disabled: None,
    }]))
    .wait()
    .unwrap();
    s.submit(Tx::new(vec![Op::UpdatePrincipal {
        uid: p.uid.clone(),
        token_hash: None,
        disabled: Some(true),
    }]))
    .wait()
    .unwrap();
    let got = &s.principals().unwrap()[0];
    assert_eq!((got.token_hash, got.disabled), ([2; 32], true));
    // A principal that does not exist is a conflict, and nothing of its
    // transaction is applied.
    let err = s
        .submit(Tx::new(vec![
            leaf(0),
            Op::UpdatePrincipal {
                uid: "Agent::\"nobody\"".into(),
                token_hash: None,
                disabled: Some(true),
            },
        ]))
        .wait()
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(s.log_size().unwrap(), 0);
    // Delegations: only the principal named, only on that writ.
    s.submit(Tx::new(vec![Op::Delegate {
        jti: "w".into(),
        principal: "Agent::\"b\"".into(),
    }]))
    .wait()
    .unwrap();
    assert!(s.delegated("w", "Agent::\"b\"").unwrap());
    assert!(!s.delegated("w", "Agent::\"c\"").unwrap());
    assert!(!s.delegated("v", "Agent::\"b\"").unwrap());
    // An execution's credential hash, and none for another.
    s.submit(Tx::new(vec![
        Op::Spend {
            jti: "w".into(),
            time_ms: 1,
            credential_hash: Some([9; 32]),
        },
        Op::Spend {
            jti: "v".into(),
            time_ms: 1,
            credential_hash: None,
        },
    ]))
    .wait()
    .unwrap();
    drop(s);
    let s = open();
    assert_eq!(
        s.execution("w").unwrap().unwrap().credential_hash,
        Some([9; 32])
    );
    assert_eq!(s.execution("v").unwrap().unwrap().credential_hash, None);
    assert!(s.principals().unwrap()[0].disabled);
    assert!(s.delegated("w", "Agent::\"b\"").unwrap());
}

fn content_is_kept_beside_its_entry_and_erased_leaving_the_tree(open: Open) {
    let s = open();
    // Content goes with the entry appended just before it.
    let put = |salt: u8, c: &str| Op::PutContent {
        salt: [salt; 32],
        content: c.as_bytes().to_vec(),
    };
    s.submit(Tx::new(vec![leaf(0), put(1, "zero"), leaf(1)]))
        .wait()
        .unwrap();
    s.submit(Tx::new(vec![leaf(2), put(2, "two")]))
        .wait()
        .unwrap();
    // Content with no entry before it is refused, and nothing is applied.
    let err = s
        .submit(Tx::new(vec![put(3, "orphan"), leaf(3)]))
        .wait()
        .unwrap_err();
    assert!(matches!(err, StoreError::Integrity(_)), "{err:?}");
    assert_eq!(s.log_size().unwrap(), 3);
    let got = s.contents(0, 3).unwrap();
    assert_eq!(
        got.iter()
            .map(|c| (c.index, c.salt[0], c.content.clone()))
            .collect::<Vec<_>>(),
        vec![(0, 1, b"zero".to_vec()), (2, 2, b"two".to_vec())]
    );
    assert_eq!(s.contents(1, 2).unwrap(), vec![]);
    let root = s.tree_root(3).unwrap();
    let proof = s.inclusion_proof(2, 3).unwrap();
    // Erase entry 0's content, and entry 1's leaf bytes: the hashes, the
    // root and every proof stay.
    s.submit(Tx::new(vec![
        Op::EraseContent {
            index: 0,
            leaf_too: false,
        },
        Op::EraseContent {
            index: 1,
            leaf_too: true,
        },
        leaf(3),
    ]))
    .wait()
    .unwrap();
    drop(s);
    let s = open();
    assert_eq!(s.contents(0, 4).unwrap().len(), 1);
    let e = s.entries(0, 3).unwrap();
    assert_eq!(e[0].leaf, b"{\"n\":0}".to_vec());
    assert!(e[1].leaf.is_empty());
    assert_eq!(e[1].leaf_hash, writ_log::leaf_hash(b"{\"n\":1}"));
    assert_eq!(s.tree_root(3).unwrap(), root);
    assert_eq!(s.inclusion_proof(2, 3).unwrap(), proof);
    assert_eq!(s.log_size().unwrap(), 4);
}

fn a_pin_is_kept_on_first_use_and_replaced_only_by_approval(open: Open) {
    let s = open();
    let pin = |digest: &str, approved: bool| Op::Pin {
        resource: "Tool::\"fs/write\"".into(),
        digest: digest.into(),
        time_ms: 5,
        approved,
    };
    assert_eq!(s.pin("Tool::\"fs/write\"").unwrap(), None);
    // A pin with no entry before it in its transaction is refused.
    assert!(s
        .submit(Tx::new(vec![pin("sha256:a", false)]))
        .wait()
        .is_err());
    assert_eq!(
        s.submit(Tx::new(vec![leaf(0), pin("sha256:a", false)]))
            .wait()
            .unwrap(),
        vec![0]
    );
    // The same digest again on first use: kept as it was.
    s.submit(Tx::new(vec![leaf(1), pin("sha256:a", false)]))
        .wait()
        .unwrap();
    let p = s.pin("Tool::\"fs/write\"").unwrap().unwrap();
    assert_eq!(
        (p.digest.as_str(), p.log_index, p.approved),
        ("sha256:a", 0, false)
    );
    // Another digest on first use: a conflict, and nothing of its transaction stays.
    let err = s
        .submit(Tx::new(vec![leaf(2), pin("sha256:b", false)]))
        .wait()
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(s.log_size().unwrap(), 2);
    // An approval replaces it.
    s.submit(Tx::new(vec![leaf(2), pin("sha256:b", true)]))
        .wait()
        .unwrap();
    drop(s);
    let s = open();
    let p = s.pin("Tool::\"fs/write\"").unwrap().unwrap();
    assert_eq!(
        (p.digest.as_str(), p.log_index, p.approved),
        ("sha256:b", 2, true)
    );
    assert_eq!(s.pins().unwrap(), vec![p]);
}
