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
