//! Metrics in the Prometheus text format (version 0.0.4), with no dependencies: atomic
//! counters and fixed-bucket histograms, labelled families behind a read-mostly lock, and the
//! process-wide calls to the database and the secret store ([`dependency_call`]), which the
//! `store` and `secrets` crates record and `/metrics` renders.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(index) = BUCKETS.iter().position(|bound| seconds <= *bound)
            && let Some(bucket) = self.buckets.get(index)
        {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The `_bucket`, `_sum` and `_count` lines of `name` with `labels` (`a="b",c="d"` or
    /// empty).
    pub fn render(&self, name: &str, labels: &str, out: &mut String) {
        let separator = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{separator}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count();
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{separator}le=\"+Inf\"}} {count}"
        );
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let braces = |text: &str| {
            if text.is_empty() {
                String::new()
            } else {
                format!("{{{text}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {count}", braces(labels));
    }
}

/// A value set, not accumulated.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Metrics of one kind by label values; the lock is taken for writing only the first time a
/// label set is seen.
#[derive(Debug)]
pub struct Family<K, M> {
    members: RwLock<BTreeMap<K, Arc<M>>>,
}

impl<K, M> Default for Family<K, M> {
    fn default() -> Self {
        Self {
            members: RwLock::new(BTreeMap::new()),
        }
    }
}

impl<K: Ord + Clone, M: Default> Family<K, M> {
    /// The member for `key`, made on first use.
    pub fn get(&self, key: &K) -> Arc<M> {
        if let Some(member) = self
            .members
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
        {
            return Arc::clone(member);
        }
        Arc::clone(
            self.members
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(key.clone())
                .or_default(),
        )
    }

    /// Runs `use_member` on the member for `key` (made on first use) without taking a
    /// reference count: the hot path's way in.
    pub fn with<R>(&self, key: &K, use_member: impl FnOnce(&M) -> R) -> R {
        if let Some(member) = self
            .members
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
        {
            return use_member(member);
        }
        use_member(&self.get(key))
    }

    /// Every member, in key order.
    pub fn snapshot(&self) -> Vec<(K, Arc<M>)> {
        self.members
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(key, member)| (key.clone(), Arc::clone(member)))
            .collect()
    }
}

/// Escapes a label value (backslash, double quote, newline).
pub fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `# HELP` and `# TYPE` lines.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Calls to the database and the secret store: latency by (dependency, operation), errors.
#[derive(Debug, Default)]
struct Dependencies {
    latency: Family<(&'static str, &'static str), Histogram>,
    errors: Family<(&'static str, &'static str), Counter>,
}

fn dependencies() -> &'static Dependencies {
    static DEPENDENCIES: OnceLock<Dependencies> = OnceLock::new();
    DEPENDENCIES.get_or_init(Dependencies::default)
}

/// Records one call to `dependency` (`database` or `secret_store`).
pub fn dependency_call(
    dependency: &'static str,
    operation: &'static str,
    elapsed: Duration,
    ok: bool,
) {
    let metrics = dependencies();
    metrics
        .latency
        .get(&(dependency, operation))
        .observe(elapsed);
    let errors = metrics.errors.get(&(dependency, operation));
    if !ok {
        errors.add(1);
    }
}

/// Times `call` and records it as a call to `dependency`.
pub async fn timed<T, E>(
    dependency: &'static str,
    operation: &'static str,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = std::time::Instant::now();
    let result = call.await;
    dependency_call(dependency, operation, started.elapsed(), result.is_ok());
    result
}

/// The dependency metrics, rendered.
pub fn render_dependencies(out: &mut String) {
    let metrics = dependencies();
    header(
        out,
        "mtls_dependency_call_duration_seconds",
        "histogram",
        "Calls to the database and the secret store.",
    );
    for ((dependency, operation), histogram) in metrics.latency.snapshot() {
        histogram.render(
            "mtls_dependency_call_duration_seconds",
            &format!("dependency=\"{dependency}\",operation=\"{operation}\""),
            out,
        );
    }
    header(
        out,
        "mtls_dependency_call_errors_total",
        "counter",
        "Calls to the database and the secret store that failed.",
    );
    for ((dependency, operation), errors) in metrics.errors.snapshot() {
        let _ = writeln!(
            out,
            "mtls_dependency_call_errors_total{{dependency=\"{dependency}\",operation=\"{operation}\"}} {}",
            errors.get()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_render_cumulative_buckets() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(300));
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_secs(60));
        let mut out = String::new();
        histogram.render("x_seconds", "a=\"b\"", &mut out);
        assert!(out.contains("x_seconds_bucket{a=\"b\",le=\"0.0005\"} 1\n"));
        assert!(out.contains("x_seconds_bucket{a=\"b\",le=\"0.005\"} 2\n"));
        assert!(out.contains("x_seconds_bucket{a=\"b\",le=\"10\"} 2\n"));
        assert!(out.contains("x_seconds_bucket{a=\"b\",le=\"+Inf\"} 3\n"));
        assert!(out.contains("x_seconds_count{a=\"b\"} 3\n"));
        let mut bare = String::new();
        histogram.render("y", "", &mut bare);
        assert!(bare.contains("y_bucket{le=\"+Inf\"} 3\n"));
        assert!(bare.contains("y_count 3\n"));
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
