use super::*;

fn leaf(n: u64) -> Op {
    Op::Append {
        leaf: format!("{{\"n\":{n}}}").into_bytes(),
    }
}

fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("writ.db")).unwrap();
    (dir, s)
}

#[test]
fn appends_get_dense_indices_and_survive_reopen() {
    let (dir, s) = store();
    assert_eq!(
        s.submit(Tx::new(vec![leaf(0), leaf(1)])).wait().unwrap(),
        vec![0, 1]
    );
    assert_eq!(s.submit(Tx::new(vec![leaf(2)])).wait().unwrap(), vec![2]);
    drop(s);
    let s = SqliteStore::open(&dir.path().join("writ.db")).unwrap();
    assert_eq!(s.log_size().unwrap(), 3);
    assert_eq!(s.submit(Tx::new(vec![leaf(3)])).wait().unwrap(), vec![3]);
    let e = s.entries(1, 3).unwrap();
    assert_eq!(e.iter().map(|l| l.index).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(e[0].leaf_hash, writ_log::leaf_hash(b"{\"n\":1}"));
}

#[test]
fn a_conflicting_transaction_applies_nothing_and_leaves_no_gap() {
    let (_d, s) = store();
    let spend = |j: &str| Op::Spend {
        jti: j.into(),
        time_ms: 1,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submitters_share_group_commits_and_each_gets_its_index() {
    let (_d, s) = store();
    let s = std::sync::Arc::new(s);
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
}

#[test]
fn a_read_only_store_refuses_writes_as_unavailable() {
    let (dir, s) = store();
    s.submit(Tx::new(vec![leaf(0)])).wait().unwrap();
    drop(s);
    let path = dir.path().join("writ.db");
    let s = SqliteStore::open(&path).unwrap();
    // Make the database refuse writes from underneath the open store.
    let c = Connection::open(&path).unwrap();
    c.execute_batch("CREATE TRIGGER no_insert BEFORE INSERT ON entries BEGIN SELECT RAISE(FAIL, 'disk refuses'); END;").unwrap();
    let err = s.submit(Tx::new(vec![leaf(1)])).wait().unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert_eq!(s.log_size().unwrap(), 1);
}

#[test]
fn principals_bundles_activations_and_keys_round_trip() {
    let (_d, s) = store();
    let p = PrincipalRecord {
        uid: "User::\"a\"".into(),
        token_hash: [7; 32],
        admin: true,
        created_ms: 5,
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

fn root_of(leaves: &[Vec<u8>]) -> writ_log::Hash {
    let t = writ_log::merkle::MemoryTree::from_leaves(leaves.iter().map(Vec::as_slice));
    writ_log::merkle::root(&t, leaves.len() as u64).unwrap()
}

#[test]
fn the_stored_tree_gives_roots_and_proofs_that_verify() {
    use writ_log::merkle::{verify_consistency, verify_inclusion};
    let (_d, s) = store();
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

#[test]
fn a_failed_transaction_leaves_the_tree_as_it_was() {
    let (_d, s) = store();
    s.submit(Tx::new(vec![
        leaf(0),
        Op::Spend {
            jti: "a".into(),
            time_ms: 1,
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
        },
    ]))
    .wait()
    .unwrap_err();
    s.submit(Tx::new(vec![leaf(7)])).wait().unwrap();
    let leaves = [b"{\"n\":0}".to_vec(), b"{\"n\":7}".to_vec()];
    assert_eq!(s.tree_root(2).unwrap(), root_of(&leaves));
}

#[test]
fn a_version_1_store_gets_its_tree_built_on_open() {
    let (dir, s) = store();
    s.submit(Tx::new((0..11).map(leaf).collect()))
        .wait()
        .unwrap();
    let want = s.tree_root(11).unwrap();
    drop(s);
    let path = dir.path().join("writ.db");
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch(
        "DROP TABLE nodes; DROP TABLE checkpoints; ALTER TABLE executions DROP COLUMN lease_exp; PRAGMA user_version = 1;",
    )
        .unwrap();
    drop(c);
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.tree_root(11).unwrap(), want);
    s.submit(Tx::new(vec![leaf(11)])).wait().unwrap();
    let leaves: Vec<Vec<u8>> = (0..12u64)
        .map(|n| format!("{{\"n\":{n}}}").into_bytes())
        .collect();
    assert_eq!(s.tree_root(12).unwrap(), root_of(&leaves));
}

#[test]
fn a_store_missing_tree_nodes_refuses_to_open() {
    let (dir, s) = store();
    s.submit(Tx::new((0..4).map(leaf).collect()))
        .wait()
        .unwrap();
    drop(s);
    let path = dir.path().join("writ.db");
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch("DELETE FROM nodes").unwrap();
    drop(c);
    let err = SqliteStore::open(&path).err().unwrap();
    assert!(
        matches!(err, StoreError::Integrity(ref m) if m.contains("incomplete")),
        "{err:?}"
    );
}

#[test]
fn checkpoints_are_kept_by_size_and_take_cosignatures() {
    let (_d, s) = store();
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

/// The upper levels kept in memory agree with the stored tree: after rolled
/// back appends that had completed upper nodes, and after a reopen.
#[test]
fn upper_levels_in_memory_match_the_stored_tree() {
    use writ_log::merkle::verify_inclusion;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("writ.db");
    let s = SqliteStore::open(&path).unwrap();
    s.submit(Tx::new(vec![Op::Spend {
        jti: "spent".into(),
        time_ms: 1,
    }]))
    .wait()
    .unwrap();
    let mut leaves: Vec<Vec<u8>> = Vec::new();
    let mut n = 0u64;
    let mut rolled_back = 0;
    while leaves.len() < 700 {
        // Just before a level-8 subtree completes, a transaction appends
        // across it and then conflicts: the nodes it made must vanish.
        if leaves.len() % 256 >= 240 && leaves.len() / 256 == rolled_back {
            rolled_back += 1;
            s.submit(Tx::new(vec![
                leaf(100_000 + n),
                Op::Append {
                    leaf: vec![b'x'; 40],
                },
            ]))
            .wait()
            .unwrap();
            leaves.push(format!("{{\"n\":{}}}", 100_000 + n).into_bytes());
            leaves.push(vec![b'x'; 40]);
            let mut ops: Vec<Op> = (0..20).map(|k| leaf(900_000 + k)).collect();
            ops.push(Op::Spend {
                jti: "spent".into(),
                time_ms: 2,
            });
            s.submit(Tx::new(ops)).wait().unwrap_err();
        }
        // Many transactions per group commit, submitted together.
        let tickets: Vec<Ticket> = (0..7)
            .map(|_| {
                n += 1;
                leaves.push(format!("{{\"n\":{n}}}").into_bytes());
                s.submit(Tx::new(vec![leaf(n)]))
            })
            .collect();
        for t in tickets {
            t.wait().unwrap();
        }
    }
    let check = |s: &SqliteStore| {
        for size in [256u64, 257, 511, 512, 513, 699, leaves.len() as u64] {
            let root = root_of(&leaves[..size as usize]);
            assert_eq!(s.tree_root(size).unwrap(), root, "size {size}");
            for index in (0..size).step_by(13).chain([size - 1]) {
                let p = s.inclusion_proof(index, size).unwrap();
                let lh = writ_log::leaf_hash(&leaves[index as usize]);
                assert!(
                    verify_inclusion(index, size, &lh, &p, &root),
                    "{index} in {size}"
                );
            }
        }
    };
    assert_eq!(
        rolled_back, 2,
        "both level-8 boundaries were crossed by a failed transaction"
    );
    check(&s);
    drop(s);
    check(&SqliteStore::open(&path).unwrap());
}

#[test]
fn a_lease_is_set_only_on_a_running_execution() {
    let (_d, s) = store();
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

#[test]
fn a_version_2_store_gains_leases_on_open() {
    let (dir, s) = store();
    s.submit(Tx::new(vec![Op::Spend {
        jti: "a".into(),
        time_ms: 1,
    }]))
    .wait()
    .unwrap();
    drop(s);
    let path = dir.path().join("writ.db");
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch("ALTER TABLE executions DROP COLUMN lease_exp; PRAGMA user_version = 2;")
        .unwrap();
    drop(c);
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.execution("a").unwrap().unwrap().lease_exp, None);
    s.submit(Tx::new(vec![Op::Lease {
        jti: "a".into(),
        lease_exp: 5,
    }]))
    .wait()
    .unwrap();
    assert_eq!(s.execution("a").unwrap().unwrap().lease_exp, Some(5));
}
