//! Measurement: latencies, throughput and the process's peak memory.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The result of one run of one workload by one implementation, printed by the child
/// process that ran it and read back by the parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Report {
    /// The workload, e.g. `W1`.
    pub(crate) workload: String,
    /// Who did the work, e.g. `raw sqlx`, `esrs`, `esrs + cache`.
    pub(crate) implementation: String,
    /// What one operation is: `cmd`, `load`, `event`.
    pub(crate) unit: String,
    /// Operations done.
    pub(crate) operations: u64,
    /// Wall time of the measured phase, in seconds.
    pub(crate) seconds: f64,
    /// Median latency of one timed unit (a command, a load, a batch), in milliseconds.
    pub(crate) p50_ms: Option<f64>,
    /// 99th percentile latency, in milliseconds.
    pub(crate) p99_ms: Option<f64>,
    /// Peak resident memory of the process during the measured phase, in MiB.
    pub(crate) peak_mib: Option<f64>,
    /// Concurrency conflicts retried, where the workload has any.
    pub(crate) conflicts: Option<u64>,
    /// Anything worth printing under the table.
    pub(crate) note: Option<String>,
    /// The lowest and highest throughput of the repeated passes.
    #[serde(default)]
    pub(crate) spread: Option<(f64, f64)>,
}

impl Report {
    /// Operations per second.
    pub(crate) fn throughput(&self) -> f64 {
        if self.seconds > 0.0 {
            self.operations as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Latencies of the timed units of a run.
#[derive(Debug, Default)]
pub(crate) struct Latencies(Vec<Duration>);

impl Latencies {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }

    pub(crate) fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    pub(crate) fn extend(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    /// The nearest-rank percentile `p` (0–100), in milliseconds.
    pub(crate) fn percentile_ms(&mut self, p: f64) -> Option<f64> {
        if self.0.is_empty() {
            return None;
        }
        self.0.sort_unstable();
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        let index = rank.clamp(1, self.0.len()) - 1;
        Some(self.0[index].as_secs_f64() * 1e3)
    }
}

/// Times `f` and records its latency.
pub(crate) async fn timed<T>(latencies: &mut Latencies, f: impl IntoFuture<Output = T>) -> T {
    let start = Instant::now();
    let out = f.await;
    latencies.push(start.elapsed());
    out
}

/// CPU time a task has run, in nanoseconds (Linux: the first field of
/// `/proc/<pid>/schedstat`; `None` for this process's main thread), or `None` where the
/// kernel does not tell.
pub(crate) fn cpu_ns(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/schedstat"),
        None => "/proc/self/schedstat".to_owned(),
    };
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The process's peak resident set size (`VmHWM`), in MiB.
pub(crate) fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Resets the peak resident set size to the current one, so that [`peak_rss_mib`] reports
/// the peak of what follows (Linux: writing `5` to `/proc/self/clear_refs`).
pub(crate) fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// A small deterministic generator (xorshift64*), so that every run picks the same streams.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut l = Latencies::default();
        for ms in (1..=100).rev() {
            l.push(Duration::from_millis(ms));
        }
        assert_eq!(l.percentile_ms(50.0), Some(50.0));
        assert_eq!(l.percentile_ms(99.0), Some(99.0));
        assert_eq!(l.percentile_ms(100.0), Some(100.0));
        assert_eq!(Latencies::default().percentile_ms(50.0), None);
    }

    #[test]
    fn the_generator_is_deterministic_and_in_range() {
        let a: Vec<_> = (0..100)
            .scan(Rng::new(7), |r, _| Some(r.below(10)))
            .collect();
        let b: Vec<_> = (0..100)
            .scan(Rng::new(7), |r, _| Some(r.below(10)))
            .collect();
        assert_eq!(a, b);
        assert!(a.iter().all(|x| *x < 10));
        assert!(a.iter().any(|x| *x != a[0]));
    }

    #[test]
    fn peak_memory_is_readable_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(peak_rss_mib().unwrap() > 0.0);
        }
    }
}
