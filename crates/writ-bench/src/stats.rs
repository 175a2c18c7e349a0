//! Small statistics over measured figures.

use std::time::Instant;

/// The median of `v` (the upper one of an even count); 0 when empty.
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Percentile `p` (0..=100) of sorted `v`, nearest rank.
pub(crate) fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v.get(rank.clamp(1, v.len()) - 1).copied().unwrap_or(0.0)
}

/// Nanoseconds per operation of `f`, run for about `secs` on one thread.
pub(crate) fn ns_per_op(secs: f64, mut f: impl FnMut()) -> f64 {
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed().as_secs_f64() < secs {
        for _ in 0..100 {
            f();
        }
        n += 100;
    }
    t0.elapsed().as_nanos() as f64 / n as f64
}
