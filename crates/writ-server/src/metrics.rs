//! Prometheus metrics: decisions by outcome and reason, decision latency,
//! log size; connections open, refused over the limit, timed out, failed
//! TLS handshakes; requests refused by a principal's rate limit.

use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub outcome: String,
    pub reason: String,
}

pub struct Metrics {
    registry: Registry,
    pub decisions: Family<DecisionLabels, Counter>,
    pub latency: Histogram,
    pub log_size: Gauge<u64, AtomicU64>,
    pub connections: ConnMetrics,
    /// Requests refused by their principal's rate limit.
    pub rate_limited: Counter,
}

/// What the accept loop counts (`listen::run`).
#[derive(Clone, Debug, Default)]
pub struct ConnMetrics {
    pub open: Gauge,
    pub refused: Counter,
    pub timed_out: Counter,
    pub tls_failed: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("writ");
        let decisions = Family::<DecisionLabels, Counter>::default();
        // 50 us .. ~1.6 s
        let latency = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        let log_size = Gauge::<u64, AtomicU64>::default();
        registry.register(
            "decisions",
            "Authorization decisions by outcome and reason code",
            decisions.clone(),
        );
        registry.register(
            "decision_latency_seconds",
            "Time to decide, log durably and sign",
            latency.clone(),
        );
        registry.register("log_entries", "Entries in the audit log", log_size.clone());
        let connections = ConnMetrics::default();
        registry.register(
            "connections_open",
            "Client connections open now",
            connections.open.clone(),
        );
        let rate_limited = Counter::default();
        for (name, help, counter) in [
            (
                "connections_refused",
                "Connections closed at once because the server had its maximum open",
                &connections.refused,
            ),
            (
                "connections_timed_out",
                "Connections closed because a request head or TLS handshake did not arrive in time",
                &connections.timed_out,
            ),
            (
                "tls_handshakes_failed",
                "TLS handshakes that failed (a certificate that does not verify, not TLS at all)",
                &connections.tls_failed,
            ),
            (
                "rate_limited",
                "Decision requests refused (429) by their principal's rate limit",
                &rate_limited,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        Metrics {
            registry,
            decisions,
            latency,
            log_size,
            connections,
            rate_limited,
        }
    }

    pub fn record(&self, outcome: &str, reason: &str, seconds: f64) {
        self.decisions
            .get_or_create(&DecisionLabels {
                outcome: outcome.into(),
                reason: reason.into(),
            })
            .inc();
        self.latency.observe(seconds);
    }

    pub fn render(&self, log_size: u64) -> String {
        self.log_size.set(log_size);
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}
