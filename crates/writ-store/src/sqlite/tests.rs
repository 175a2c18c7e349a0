use super::writer::{CAREFUL_RETRIES, WAL_PREALLOCATED_FRAMES};
use crate::*;
use rusqlite::Connection;

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
fn a_conflict_inside_a_batch_fails_only_its_own_transaction() {
    use std::sync::atomic::Ordering;
    let (_dir, s) = store();
    let spend = |j: &str| Op::Spend {
        jti: j.into(),
        time_ms: 1,
        credential_hash: None,
    };
    s.submit(Tx::new(vec![spend("spent")])).wait().unwrap();
    let before = CAREFUL_RETRIES.load(Ordering::Relaxed);
    let mut expected = 0u64;
    // Submitted without waiting, most of each burst lands in one group
    // commit; the replay in its middle sends that batch down the careful
    // path. Repeat until that happened at least once.
    for round in 0..50u64 {
        let tickets: Vec<_> = (0..40u64)
            .map(|i| {
                let ops = if i == 20 {
                    vec![leaf(round * 100 + i), spend("spent")]
                } else {
                    vec![leaf(round * 100 + i), spend(&format!("{round}-{i}"))]
                };
                s.submit(Tx::new(ops))
            })
            .collect();
        for (i, t) in tickets.into_iter().enumerate() {
            match t.wait() {
                Ok(indices) => {
                    assert_ne!(i, 20, "the replay was committed");
                    assert_eq!(indices, vec![expected], "indices stay dense");
                    expected += 1;
                }
                Err(e) => {
                    assert_eq!(i, 20, "transaction {i} failed: {e}");
                    assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
                }
            }
        }
        if CAREFUL_RETRIES.load(Ordering::Relaxed) > before {
            break;
        }
    }
    assert!(
        CAREFUL_RETRIES.load(Ordering::Relaxed) > before,
        "no batch ever held the replay with others"
    );
    assert_eq!(s.log_size().unwrap(), expected);
    let leaves = s.entries(0, expected).unwrap();
    assert!(leaves.iter().all(|l| !l.leaf.is_empty()));
}

#[test]
fn the_wal_starts_over_instead_of_growing() {
    let (dir, s) = store();
    let wal = dir.path().join("writ.db-wal");
    let big = |n: u64| Op::Append {
        leaf: format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(3000)).into_bytes(),
    };
    // About two pages per entry: many times WAL_RESTART_FRAMES in all.
    let mut tickets = std::collections::VecDeque::new();
    for n in 0..20_000u64 {
        tickets.push_back(s.submit(Tx::new(vec![big(n)])));
        if tickets.len() > 256 {
            tickets.pop_front().unwrap().wait().unwrap();
        }
    }
    for t in tickets {
        t.wait().unwrap();
    }
    let wal_bytes = std::fs::metadata(&wal).unwrap().len();
    // Never started over, it would hold every one of the 60 MB of entries.
    assert!(
        wal_bytes < 32 << 20,
        "WAL grew to {wal_bytes} bytes over 40,000 frames of entries"
    );
    assert_eq!(s.log_size().unwrap(), 20_000);
}

#[test]
fn a_crash_image_with_a_preallocated_wal_recovers_every_acknowledged_entry() {
    let (dir, s) = store();
    for n in 0..50 {
        s.submit(Tx::new(vec![leaf(n)])).wait().unwrap();
    }
    let wal = dir.path().join("writ.db-wal");
    let frame = 24 + 4096;
    assert!(
        std::fs::metadata(&wal).unwrap().len() >= WAL_PREALLOCATED_FRAMES * frame,
        "the writer preallocates the WAL"
    );
    // What a crash leaves on disk: the database and its WAL as they are
    // now (acknowledged commits, then the zeroed rest), copied while the
    // store is open, with no checkpoint or clean close after.
    let image = tempfile::tempdir().unwrap();
    for f in ["writ.db", "writ.db-wal"] {
        std::fs::copy(dir.path().join(f), image.path().join(f)).unwrap();
    }
    let recovered = SqliteStore::open(&image.path().join("writ.db")).unwrap();
    assert_eq!(recovered.log_size().unwrap(), 50);
    let leaves: Vec<Vec<u8>> = (0..50)
        .map(|n| format!("{{\"n\":{n}}}").into_bytes())
        .collect();
    assert_eq!(recovered.tree_root(50).unwrap(), root_of(&leaves));
    assert_eq!(
        recovered.submit(Tx::new(vec![leaf(50)])).wait().unwrap(),
        vec![50]
    );
}

fn root_of(leaves: &[Vec<u8>]) -> writ_log::Hash {
    let t = writ_log::merkle::MemoryTree::from_leaves(leaves.iter().map(Vec::as_slice));
    writ_log::merkle::root(&t, leaves.len() as u64).unwrap()
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
        credential_hash: None,
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
                credential_hash: None,
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
fn a_version_2_store_gains_leases_on_open() {
    let (dir, s) = store();
    s.submit(Tx::new(vec![Op::Spend {
        jti: "a".into(),
        time_ms: 1,
        credential_hash: None,
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

#[test]
fn a_version_3_store_gains_credentials_disabled_principals_and_delegations_on_open() {
    let (dir, s) = store();
    s.submit(Tx::new(vec![
        Op::Spend {
            jti: "a".into(),
            time_ms: 1,
            credential_hash: None,
        },
        Op::PutPrincipal(PrincipalRecord {
            uid: "Agent::\"p\"".into(),
            token_hash: [3; 32],
            admin: false,
            created_ms: 1,
            disabled: false,
            auditor: false,
        }),
    ]))
    .wait()
    .unwrap();
    drop(s);
    let path = dir.path().join("writ.db");
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch(
        "ALTER TABLE executions DROP COLUMN cred_hash; ALTER TABLE principals DROP COLUMN disabled;
         DROP TABLE delegations; PRAGMA user_version = 3;",
    )
    .unwrap();
    drop(c);
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.execution("a").unwrap().unwrap().credential_hash, None);
    assert!(!s.principals().unwrap()[0].disabled);
    s.submit(Tx::new(vec![
        Op::UpdatePrincipal {
            uid: "Agent::\"p\"".into(),
            token_hash: None,
            disabled: Some(true),
        },
        Op::Delegate {
            jti: "a".into(),
            principal: "Agent::\"q\"".into(),
        },
    ]))
    .wait()
    .unwrap();
    assert!(s.principals().unwrap()[0].disabled);
    assert!(s.delegated("a", "Agent::\"q\"").unwrap());
}

#[test]
fn a_stored_key_of_an_unknown_role_is_left_out() {
    let (dir, s) = store();
    s.submit(Tx::new(vec![Op::PutKey(KeyRecord {
        kid: "k1".into(),
        role: KeyRole::Policy,
        public_jwk: "{}".into(),
        status: KeyStatus::VerifyOnly,
        created_ms: 1,
        verify_until_ms: Some(2),
    })]))
    .wait()
    .unwrap();
    let c = Connection::open(dir.path().join("writ.db")).unwrap();
    let stored: (String, String) = c
        .query_row("SELECT role, status FROM keys", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(stored, ("policy".into(), "verify_only".into()));
    assert_eq!(s.keys().unwrap()[0].status, KeyStatus::VerifyOnly);
    // A role or status a newer writ may record signs and verifies nothing
    // here, as when they were compared as strings.
    c.execute_batch("UPDATE keys SET role = 'signer'").unwrap();
    assert!(s.keys().unwrap().is_empty());
    c.execute_batch("UPDATE keys SET role = 'policy', status = 'paused'")
        .unwrap();
    assert!(s.keys().unwrap().is_empty());
    c.execute_batch("UPDATE keys SET status = 'active'")
        .unwrap();
    assert_eq!(s.keys().unwrap().len(), 1);
}
