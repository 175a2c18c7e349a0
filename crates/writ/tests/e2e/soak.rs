//! The short soak CI runs: `writ bench soak` for 20 s at a steady 50
//! operations per second (each an authorize and a verify) against a real
//! `writ serve`: zero errors, every offered operation completed, and the
//! server's memory bounded. The ten-minute figures are in SECURITY.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use crate::common::*;

/// RSS growth allowed between the early and the late part of a 20 s run.
const RSS_GROWTH_MIB_MAX: f64 = 16.0;

#[test]
fn a_short_soak_has_no_errors_and_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let child = spawn_writ(
        &[
            "--dir",
            tmp.path().join("unused").to_str().unwrap(),
            "bench",
            "soak",
            "--duration-secs",
            "20",
            "--rate",
            "50",
            "--json",
        ],
        &[("TMPDIR", tmp.path().to_str().unwrap())],
        None,
    );
    let out = wait_writ(child, Duration::from_secs(180));
    eprintln!("{}", out.stderr);
    out.expect_code(0, "writ bench soak");
    let v = out.json();
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(v["offered"], 20 * 50, "{v}");
    assert_eq!(v["completed"], v["offered"], "{v}");
    let p50 = v["authorize_ms"]["p50"].as_f64().unwrap();
    let p99 = v["authorize_ms"]["p99"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= p99, "{v}");
    let samples = v["rss_mib"]["samples"].as_array().unwrap();
    assert!(samples.len() >= 15, "RSS sampled every second: {v}");
    let growth = v["rss_mib"]["growth"].as_f64().unwrap();
    assert!(
        growth < RSS_GROWTH_MIB_MAX,
        "serve RSS grew {growth:.1} MiB in 20 s: {}",
        v["rss_mib"]
    );
}
