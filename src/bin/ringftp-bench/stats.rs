//! What a run measured, merged from every session, and its two renderings: a human table and
//! one JSON object.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::client::Error;

/// Counters the progress bar reads while sessions run (atomics: sessions are on many threads).
#[derive(Default)]
pub struct Live {
    pub ops: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
}

/// One session's (or, merged, the whole run's) results.
#[derive(Debug, Default)]
pub struct Stats {
    pub ops: u64,
    pub bytes: u64,
    pub bytes_verified: u64,
    /// Latency of each operation, in nanoseconds.
    pub latencies: Vec<u64>,
    pub errors: BTreeMap<String, u64>,
    /// The first error's text, for the report.
    pub first_error: Option<String>,
    /// Idle sessions still answering at the end.
    pub held: u64,
    /// Lines of listings received.
    pub entries: u64,
    /// When the session finished its last operation.
    pub end: Option<Instant>,
}

impl Stats {
    /// Records a completed operation.
    pub fn op(&mut self, live: &Live, started: Instant, bytes: u64) {
        let now = Instant::now();
        self.ops += 1;
        self.bytes += bytes;
        self.latencies.push(u64::try_from((now - started).as_nanos()).unwrap_or(u64::MAX));
        self.end = Some(now);
        live.ops.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a failed operation under its reply code or kind.
    pub fn error(&mut self, live: &Live, e: &Error) {
        *self.errors.entry(e.key()).or_default() += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
        self.end = Some(Instant::now());
        live.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn merge(&mut self, other: Stats) {
        self.ops += other.ops;
        self.bytes += other.bytes;
        self.bytes_verified += other.bytes_verified;
        self.latencies.extend(other.latencies);
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.held += other.held;
        self.entries += other.entries;
        self.end = self.end.max(other.end);
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// The run as reported.
pub struct Report {
    pub workload: String,
    pub target: String,
    pub mode: &'static str,
    pub host: String,
    pub port: u16,
    pub sessions: usize,
    pub threads: usize,
    pub elapsed: Duration,
    pub stats: Stats,
    /// Whether `held` means something (idle) and `entries` (list).
    pub idle: bool,
    pub list: bool,
}

struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    mean: f64,
}

fn latency(samples: &mut [u64]) -> Option<Latency> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let ms = |ns: u64| ns as f64 / 1e6;
    // Nearest rank: the smallest sample with at least p of the samples at or below it.
    let pct = |p: f64| {
        let rank = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        ms(samples[rank - 1])
    };
    let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
    Some(Latency {
        p50: pct(0.50),
        p90: pct(0.90),
        p99: pct(0.99),
        max: ms(samples[samples.len() - 1]),
        mean: sum as f64 / samples.len() as f64 / 1e6,
    })
}

/// Bytes with a decimal unit (1 MB = 1e6 bytes, as throughput is reported).
fn human_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= 1e9 {
        format!("{:.3} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.3} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.3} kB", b / 1e3)
    } else {
        format!("{b} B")
    }
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A finite JSON number (NaN and infinities are not JSON).
fn json_f64(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "null".into()
    }
}

impl Report {
    fn secs(&self) -> f64 {
        self.elapsed.as_secs_f64()
    }

    fn ops_per_s(&self) -> f64 {
        if self.secs() > 0.0 {
            self.stats.ops as f64 / self.secs()
        } else {
            0.0
        }
    }

    fn mb_per_s(&self) -> f64 {
        if self.secs() > 0.0 {
            self.stats.bytes as f64 / 1e6 / self.secs()
        } else {
            0.0
        }
    }

    pub fn json(&mut self) -> String {
        let lat = latency(&mut self.stats.latencies);
        let mut o = String::from("{");
        o.push_str("\"workload\":");
        json_str(&mut o, &self.workload);
        o.push_str(",\"target\":");
        json_str(&mut o, &self.target);
        o.push_str(",\"mode\":");
        json_str(&mut o, self.mode);
        o.push_str(",\"host\":");
        json_str(&mut o, &self.host);
        let _ = write!(
            o,
            ",\"port\":{},\"sessions\":{},\"threads\":{},\"elapsed_s\":{},\"ops\":{},\"ops_per_s\":{},\"bytes\":{},\"bytes_verified\":{},\"mb_per_s\":{}",
            self.port,
            self.sessions,
            self.threads,
            json_f64(self.secs()),
            self.stats.ops,
            json_f64(self.ops_per_s()),
            self.stats.bytes,
            self.stats.bytes_verified,
            json_f64(self.mb_per_s()),
        );
        match lat {
            Some(l) => {
                let _ = write!(
                    o,
                    ",\"latency_ms\":{{\"p50\":{},\"p90\":{},\"p99\":{},\"max\":{},\"mean\":{}}}",
                    json_f64(l.p50),
                    json_f64(l.p90),
                    json_f64(l.p99),
                    json_f64(l.max),
                    json_f64(l.mean)
                );
            }
            None => o.push_str(",\"latency_ms\":null"),
        }
        o.push_str(",\"errors\":{");
        for (i, (k, v)) in self.stats.errors.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            json_str(&mut o, k);
            let _ = write!(o, ":{v}");
        }
        let _ = write!(o, "}},\"error_count\":{}", self.stats.error_count());
        o.push_str(",\"first_error\":");
        match &self.stats.first_error {
            Some(e) => json_str(&mut o, e),
            None => o.push_str("null"),
        }
        if self.idle {
            let _ = write!(o, ",\"held\":{}", self.stats.held);
        }
        if self.list {
            let _ = write!(o, ",\"entries\":{}", self.stats.entries);
        }
        o.push('}');
        o
    }

    pub fn table(&mut self) -> String {
        let lat = latency(&mut self.stats.latencies);
        let mut o = String::new();
        let _ = writeln!(
            o,
            "{} {} on {}:{} ({}, {} sessions on {} threads)",
            self.workload, self.target, self.host, self.port, self.mode, self.sessions, self.threads
        );
        let _ = writeln!(o, "  elapsed      {:.3} s", self.secs());
        let _ = writeln!(o, "  operations   {} ({:.1}/s)", self.stats.ops, self.ops_per_s());
        let _ = writeln!(o, "  transferred  {} ({:.1} MB/s)", human_bytes(self.stats.bytes), self.mb_per_s());
        let _ = writeln!(o, "  verified     {}", human_bytes(self.stats.bytes_verified));
        if let Some(l) = lat {
            let _ = writeln!(
                o,
                "  latency ms   p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}  mean {:.3}",
                l.p50, l.p90, l.p99, l.max, l.mean
            );
        }
        if self.idle {
            let _ = writeln!(o, "  held         {} of {}", self.stats.held, self.sessions);
        }
        if self.list {
            let _ = writeln!(o, "  entries      {}", self.stats.entries);
        }
        if self.stats.errors.is_empty() {
            let _ = writeln!(o, "  errors       none");
        } else {
            let list: Vec<String> = self.stats.errors.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            let _ = writeln!(o, "  errors       {}", list.join(", "));
            if let Some(e) = &self.stats.first_error {
                let _ = writeln!(o, "  first error  {e}");
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_json() {
        let mut v: Vec<u64> = (1..=100).map(|i| i * 1_000_000).collect();
        let l = latency(&mut v).unwrap();
        assert_eq!((l.p50, l.p90, l.p99, l.max), (50.0, 90.0, 99.0, 100.0));
        let mut s = String::new();
        json_str(&mut s, "a\"b\n\u{1}");
        assert_eq!(s, r#""a\"b\n\u0001""#);
        assert_eq!(json_f64(f64::NAN), "null");
    }
}
