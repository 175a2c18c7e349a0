//! The audit log checked by implementations that were not written here:
//! every inclusion and consistency proof writ serves is verified with two
//! independent RFC 6962 / RFC 9162 verifiers from PyPI (`tlog-scales`, a
//! line-by-line translation of RFC 9162, and `rekor-verifier`, a port of
//! transparency-dev/merkle), and writ's checkpoints are parsed as the C2SP
//! `tlog-checkpoint` and `signed-note` specifications describe them, their
//! Ed25519 signatures verified against the served verifier key (with the
//! `cryptography` package directly, and with tlog-scales' own checkpoint
//! verifier).
//!
//! The two peers cannot share a venv (tlog-scales needs `cryptography>=48`,
//! rekor-verifier pins `cryptography<47`), so each gets its own under
//! `target/` (`pyenv-tlog-scales`, `pyenv-rekor`), made when missing. Needs
//! python3 (>= 3.11 for tlog-scales) and PyPI. Set `WRIT_SKIP_PY=1` to skip;
//! otherwise a failed install fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::common::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};

/// One independent verifier: its PyPI requirement, and the venv it lives in.
struct Peer {
    /// What the script is told to use (`tlog-scales` or `rekor-verifier`).
    name: &'static str,
    /// The distribution and version pip installs.
    dist: &'static str,
    version: &'static str,
    /// The module the script imports.
    module: &'static str,
    /// `target/<venv>`.
    venv: &'static str,
}

const PEERS: [Peer; 2] = [
    Peer {
        name: "tlog-scales",
        dist: "tlog-scales",
        version: "0.0.3",
        module: "tlog_scales.tlog",
        venv: "pyenv-tlog-scales",
    },
    Peer {
        name: "rekor-verifier",
        dist: "rekor-verifier",
        version: "4.0.0",
        module: "rekor_verifier.merkle_proof",
        venv: "pyenv-rekor",
    },
];

/// `target/<venv>/bin/python` with exactly `peer.dist==peer.version` (and
/// `cryptography`) importable; the venv is created when needed.
fn python(peer: &Peer) -> PathBuf {
    let ready = format!(
        "import importlib.metadata as m, cryptography, {module}\n\
         assert m.version({dist:?}) == {version:?}, m.version({dist:?})",
        module = peer.module,
        dist = peer.dist,
        version = peer.version,
    );
    python_venv(
        peer.venv,
        &format!("{}=={}", peer.dist, peer.version),
        &ready,
    )
}

/// Reads the job file (argv[1]) and checks it with the peer named in argv[2].
/// Everything it computes itself follows the specifications: C2SP
/// tlog-checkpoint and signed-note for the notes and the key, RFC 6962 2.1
/// for leaf hashes and tree heads. Proofs are verified only by the peer.
/// Prints one JSON summary; any unexpected exception fails the script.
const SCRIPT: &str = include_str!("fixtures/log_interop.py");

/// `POST /v1/log/checkpoint`: the note.
fn publish(s: &Server, token: &str) -> String {
    let r = s.post("/v1/log/checkpoint", Some(token), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain")),
        "{:?}",
        r.headers
    );
    r.text()
}

/// Size and base64 root, read the plain way (for cross-checking the script).
fn size_root(note: &str) -> (u64, String) {
    let mut lines = note.lines();
    let _origin = lines.next().unwrap();
    let size = lines.next().unwrap().parse().unwrap();
    let root = lines.next().unwrap().to_owned();
    assert_eq!(
        STANDARD.decode(&root).map(|r| r.len()).ok(),
        Some(32),
        "{note:?}"
    );
    (size, root)
}

/// `n` decisions by `token`, every third one denied; returns (allows, denies).
fn decisions(s: &Server, token: &str, n: usize, round: usize) -> (usize, usize) {
    let (mut allow, mut deny) = (0, 0);
    for i in 0..n {
        let arg = format!("round-{round}-{i}");
        let argv: Vec<&str> = if i % 3 == 2 {
            vec!["/usr/bin/rm", "-rf", &arg]
        } else {
            vec!["/usr/bin/true", &arg]
        };
        let r = s.authorize(token, &exec_req(&argv, AUD));
        let v = r.json();
        match (r.status, v["decision"].as_str()) {
            (200, Some("allow")) => allow += 1,
            (403, Some("deny")) => deny += 1,
            other => panic!("{argv:?}: unexpected answer {other:?}: {v}"),
        }
    }
    (allow, deny)
}

/// What one peer must have reported, given the job it was sent.
fn check_summary(peer: &Peer, job: &Value, sum: &Value, cps: &[(u64, String)]) {
    let what = peer.name;
    assert_eq!(sum["peer"], peer.name, "{what}: {sum}");
    assert_eq!(sum["peer_version"], peer.version, "{what}: {sum}");

    // Checkpoints: parsed as C2SP says, to the same size and root, each signed.
    let got: Vec<(u64, String)> = sum["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["signature_verified"], true, "{what}: {c}");
            assert_eq!(c["extensions"], json!([]), "{what}: {c}");
            (
                c["size"].as_u64().unwrap(),
                c["root"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(got, cps, "{what}: checkpoints as the script read them");
    let n_cp = cps.len();
    let sn = &sum["signature_negatives"];
    assert_eq!(
        (sn["tried"].as_u64(), sn["rejected"].as_u64()),
        (Some(5 * n_cp as u64), Some(5 * n_cp as u64)),
        "{what}: changed notes must not verify: {sn}"
    );
    let ps = &sum["peer_signature"];
    if peer.name == "tlog-scales" {
        assert_eq!(
            (
                ps["verified"].as_u64(),
                ps["tried_negative"].as_u64(),
                ps["rejected_negative"].as_u64()
            ),
            (
                Some(n_cp as u64),
                Some(2 * n_cp as u64),
                Some(2 * n_cp as u64)
            ),
            "{what}: tlog-scales' checkpoint verifier: {ps}"
        );
    }

    // Leaves and tree heads.
    let n_entries = job["entries"].as_array().unwrap().len() as u64;
    assert_eq!(sum["leaves_hashed"].as_u64(), Some(n_entries), "{what}");
    assert_eq!(
        sum["leaf_hash_mismatches"],
        json!([]),
        "{what}: served leaf_hash is not SHA-256(0x00 || leaf)"
    );
    let distinct_sizes: BTreeSet<u64> = cps.iter().map(|c| c.0).collect();
    assert_eq!(
        sum["roots_not_recomputed"],
        json!([]),
        "{what}: checkpoint roots that are not the RFC 6962 MTH of the served leaves"
    );
    assert_eq!(
        sum["roots_recomputed"].as_u64(),
        Some(distinct_sizes.len() as u64),
        "{what}"
    );

    // Proofs.
    let inc = job["inclusion"].as_array().unwrap();
    let con = job["consistency"].as_array().unwrap();
    assert_eq!(
        sum["inclusion"]["failed"],
        json!([]),
        "{what} rejects served inclusion proofs"
    );
    assert_eq!(
        sum["inclusion"]["verified"].as_u64(),
        Some(inc.len() as u64),
        "{what}"
    );
    assert_eq!(
        sum["consistency"]["failed"],
        json!([]),
        "{what} rejects served consistency proofs"
    );
    assert_eq!(
        sum["consistency"]["verified"].as_u64(),
        Some(con.len() as u64),
        "{what}"
    );

    // Every altered proof is rejected, and as many were tried as expected.
    let hashes = |p: &Value| p["hashes"].as_array().unwrap().len() as u64;
    let nonempty = |v: &[Value]| v.iter().filter(|p| hashes(p) > 0).count() as u64;
    let (ni, nc) = (inc.len() as u64, con.len() as u64);
    let want: BTreeMap<&str, u64> = [
        (
            "inclusion_flipped_hash",
            inc.iter().map(hashes).sum::<u64>(),
        ),
        ("inclusion_wrong_index", ni),
        ("inclusion_wrong_root", ni),
        ("inclusion_changed_leaf", ni),
        ("inclusion_extra_hash", ni),
        ("inclusion_dropped_hash", nonempty(inc)),
        (
            "consistency_flipped_hash",
            con.iter().map(hashes).sum::<u64>(),
        ),
        ("consistency_wrong_old_root", nc),
        ("consistency_wrong_new_root", nc),
        ("consistency_wrong_old_size", nc),
        ("consistency_swapped_roots", nc),
        ("consistency_dropped_hash", nonempty(con)),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .collect();
    let neg = sum["negatives"].as_object().unwrap();
    assert_eq!(
        neg.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        want.keys().copied().collect::<BTreeSet<_>>(),
        "{what}: negative cases"
    );
    for (kind, n) in &want {
        let d = &neg[*kind];
        assert_eq!(
            d["accepted"],
            json!([]),
            "{what} accepted altered proofs ({kind})"
        );
        assert_eq!(
            (d["tried"].as_u64(), d["rejected"].as_u64()),
            (Some(*n), Some(*n)),
            "{what}: {kind}: {d}"
        );
    }
}

#[test]
fn independent_rfc6962_verifiers_accept_writs_proofs_and_c2sp_checkpoints() {
    if skip_python("the RFC 6962 / C2SP interop test") {
        return;
    }
    let pythons: Vec<PathBuf> = PEERS.iter().map(python).collect();

    // No background checkpoints: the ones signed here are all there are
    // (besides the one serve signs at start).
    let s = Server::start_with(&["--checkpoint-interval-ms", "3600000"]);
    let agent = s.add_principal("Agent::\"auditor\"");
    let key = s.get("/v1/log/key", None);
    assert_eq!(key.status, 200, "{}", key.text());
    let key = key.json();
    let vkey = key["vkey"].as_str().unwrap().to_owned();
    let origin = key["origin"].as_str().unwrap().to_owned();
    assert_eq!(origin, s.init["origin"].as_str().unwrap());

    // Four rounds of decisions, a checkpoint after each.
    let mut published = Vec::new();
    let (mut allows, mut denies) = (0, 0);
    for (round, n) in [7usize, 12, 5, 17].into_iter().enumerate() {
        let (a, d) = decisions(&s, &agent, n, round);
        allows += a;
        denies += d;
        published.push(publish(&s, &s.admin_token));
    }
    assert!(
        allows > 20 && denies > 10,
        "{allows} allowed, {denies} denied"
    );
    let sizes: Vec<u64> = published.iter().map(|n| size_root(n).0).collect();
    assert!(
        sizes.windows(2).all(|w| w[0] < w[1]),
        "each round grows the log: {sizes:?}"
    );
    let size = *sizes.last().unwrap();
    assert!(
        (40..=200).contains(&size),
        "the log has {size} entries after {} decisions",
        allows + denies
    );

    // Every stored checkpoint up to the last one published (serve's first
    // one too); the published notes are among them, byte for byte.
    let r = s.get("/v1/log/checkpoints", None);
    assert_eq!(r.status, 200, "{}", r.text());
    let mut notes: Vec<String> = Vec::new();
    for c in r.json().as_array().unwrap() {
        let note = c["note"].as_str().unwrap().to_owned();
        let (n, _) = size_root(&note);
        assert_eq!(c["size"].as_u64(), Some(n), "{c}");
        if n <= size && !notes.contains(&note) {
            notes.push(note);
        }
    }
    for p in &published {
        assert!(
            notes.contains(p),
            "published {p:?} is not stored: {notes:?}"
        );
    }
    let cps: Vec<(u64, String)> = notes.iter().map(|n| size_root(n)).collect();
    let cp_sizes: BTreeSet<u64> = cps.iter().map(|c| c.0).collect();
    assert_eq!(cp_sizes.len(), cps.len(), "one note per size: {notes:?}");
    assert!(cps.len() >= 4, "{cps:?}");

    // The leaves under the largest checkpoint.
    let r = s.get(&format!("/v1/log/entries?start=0&end={size}"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    let entries: Vec<Value> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| json!({"index": e["index"], "leaf": e["leaf"], "leaf_hash": e["leaf_hash"]}))
        .collect();
    assert_eq!(entries.len() as u64, size);

    // An inclusion proof for every entry under every checkpoint that covers it.
    let mut inclusion = Vec::new();
    for &n in &cp_sizes {
        for i in 0..n {
            let r = s.get(&format!("/v1/log/proof/inclusion?index={i}&size={n}"), None);
            assert_eq!(r.status, 200, "inclusion {i} in {n}: {}", r.text());
            let p = r.json();
            assert_eq!(
                (p["index"].as_u64(), p["size"].as_u64()),
                (Some(i), Some(n))
            );
            assert_eq!(
                p["leaf_hash"], entries[i as usize]["leaf_hash"],
                "the proof names the entry's leaf hash"
            );
            inclusion.push(p);
        }
    }
    assert!(inclusion.len() as u64 >= size, "{}", inclusion.len());

    // A consistency proof between every two checkpointed sizes.
    let mut consistency = Vec::new();
    let list: Vec<u64> = cp_sizes.iter().copied().filter(|&n| n > 0).collect();
    for (k, &m) in list.iter().enumerate() {
        for &n in &list[k + 1..] {
            let r = s.get(
                &format!("/v1/log/proof/consistency?first={m}&second={n}"),
                None,
            );
            assert_eq!(r.status, 200, "consistency {m} -> {n}: {}", r.text());
            let p = r.json();
            assert_eq!(
                (p["first"].as_u64(), p["second"].as_u64()),
                (Some(m), Some(n))
            );
            consistency.push(p);
        }
    }
    assert!(consistency.len() >= 6, "{}", consistency.len());

    let job = json!({
        "origin": origin,
        "vkey": vkey,
        "notes": notes,
        "entries": entries,
        "inclusion": inclusion,
        "consistency": consistency,
    });
    let job_path = s.tmp.path().join("log_interop_job.json");
    std::fs::write(&job_path, serde_json::to_vec_pretty(&job).unwrap()).unwrap();
    let script_path = s.tmp.path().join("log_interop.py");
    std::fs::write(&script_path, SCRIPT).unwrap();

    for (peer, py) in PEERS.iter().zip(&pythons) {
        let out = Command::new(py)
            .arg(&script_path)
            .arg(&job_path)
            .arg(peer.name)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the {} check failed: {}\n{}",
            peer.name,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        let sum: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{}: not JSON ({e}): {}",
                peer.name,
                String::from_utf8_lossy(&out.stdout)
            )
        });
        check_summary(peer, &job, &sum, &cps);
        let neg: u64 = sum["negatives"]
            .as_object()
            .unwrap()
            .values()
            .map(|d| d["rejected"].as_u64().unwrap())
            .sum();
        eprintln!(
            "{} {}: {} checkpoints (sizes {:?}) signed, {} leaves hashed, {} inclusion and {} consistency proofs verified, {} altered proofs and {} altered notes rejected",
            peer.name,
            peer.version,
            cps.len(),
            cp_sizes,
            sum["leaves_hashed"],
            sum["inclusion"]["verified"],
            sum["consistency"]["verified"],
            neg,
            sum["signature_negatives"]["rejected"],
        );
    }
}
