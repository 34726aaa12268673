//! `concoord bench`: a closed-loop load generator on the async client runtime.

use crate::{Client, ClientError, ClientOptions};
use concoord_objects::Target;
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub replicas: String,
    pub token: String,
    pub clients: usize,
    /// Connections the clients share (as etcd's clients share gRPC
    /// connections); `None` gives each client its own.
    pub conns: Option<usize>,
    /// Commands each client keeps outstanding.
    pub pipeline: usize,
    /// Total operations, split over the clients; or run for `duration`.
    pub ops: Option<u64>,
    pub duration: Option<Duration>,
    pub method: String,
    pub args: Vec<u8>,
    pub progress: bool,
    /// How long each connection polls for replies before it sleeps.
    pub spin: Duration,
    /// Spread the calls over this many named objects (`bench/0`, ...) of
    /// `object_type`, created by their first call; 0 calls the default object.
    pub objects: u64,
    pub object_type: String,
    /// Each connection's session TTL (`None`: no sessions).
    pub session_ttl: Option<Duration>,
}

/// Reads mixed into a run ([`run_mixed`]; `concoord bench --read-ratio`).
#[derive(Clone, Debug, Default)]
pub struct ReadMix {
    /// The fraction of calls (0..=1) that read instead of calling the
    /// configured method, spread evenly over the run.
    pub ratio: f64,
    /// The read-only method they call, without arguments (`getvalue`).
    pub method: String,
    /// Allow stale reads (`--stale`): every call is sent so, and the reads
    /// are answered by the replica reached, without a read-index round.
    pub stale: bool,
}

impl ReadMix {
    /// Whether the `n`-th call of the run reads: `ratio` of them, evenly.
    fn reads(&self, n: u64) -> bool {
        let ratio = self.ratio.clamp(0.0, 1.0);
        ratio > 0.0 && ((n + 1) as f64 * ratio).floor() > (n as f64 * ratio).floor()
    }
}

/// What a run measured.
#[derive(Clone, Debug)]
pub struct BenchReport {
    pub ops: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latency_us: Histogram<u64>,
    /// The reads' share of `latency_us` (empty without `--read-ratio`).
    pub read_latency_us: Histogram<u64>,
    pub first_error: Option<String>,
}

impl BenchReport {
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The calls that were not reads.
    fn write_latency_us(&self) -> Histogram<u64> {
        let mut writes = self.latency_us.clone();
        writes
            .subtract(&self.read_latency_us)
            .expect("reads are a part of all calls");
        writes
    }

    pub fn to_json(&self) -> serde_json::Value {
        let q = |p: f64| self.latency_us.value_at_quantile(p);
        let mut json = serde_json::json!({
            "ops": self.ops,
            "errors": self.errors,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "ops_per_sec": self.ops_per_sec(),
            "latency_us": {
                "p50": q(0.50),
                "p90": q(0.90),
                "p99": q(0.99),
                "p999": q(0.999),
                "max": self.latency_us.max(),
            },
        });
        if !self.read_latency_us.is_empty() {
            let part = |h: &Histogram<u64>| {
                serde_json::json!({
                    "ops": h.len(),
                    "p50": h.value_at_quantile(0.50),
                    "p99": h.value_at_quantile(0.99),
                })
            };
            json["reads"] = part(&self.read_latency_us);
            json["writes"] = part(&self.write_latency_us());
        }
        json
    }

    pub fn to_text(&self) -> String {
        let q = |p: f64| self.latency_us.value_at_quantile(p);
        let mut s = format!(
            "{} ops in {:.2} s: {:.0} ops/s, {} errors\nlatency µs: p50 {} p90 {} p99 {} p999 {} max {}",
            self.ops,
            self.elapsed.as_secs_f64(),
            self.ops_per_sec(),
            self.errors,
            q(0.50),
            q(0.90),
            q(0.99),
            q(0.999),
            self.latency_us.max()
        );
        if !self.read_latency_us.is_empty() {
            let (r, w) = (&self.read_latency_us, self.write_latency_us());
            s.push_str(&format!(
                "\nreads {}: p50 {} p99 {}; writes {}: p50 {} p99 {}",
                r.len(),
                r.value_at_quantile(0.5),
                r.value_at_quantile(0.99),
                w.len(),
                w.value_at_quantile(0.5),
                w.value_at_quantile(0.99)
            ));
        }
        if let Some(e) = &self.first_error {
            s.push_str(&format!("\nfirst error: {e}"));
        }
        s
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static histogram bounds are valid")
}

/// Runs the load and returns the measurements.
pub async fn run(config: BenchConfig) -> Result<BenchReport, ClientError> {
    run_with(config, ReadMix::default(), None).await
}

/// [`run`] with reads mixed in.
pub async fn run_mixed(config: BenchConfig, mix: ReadMix) -> Result<BenchReport, ClientError> {
    run_with(config, mix, None).await
}

/// [`run`] over TLS links trusting replicas by `tls` (plain TCP if `None`).
pub async fn run_with_tls(
    config: BenchConfig,
    tls: Option<crate::client::ClientTls>,
) -> Result<BenchReport, ClientError> {
    run_with(config, ReadMix::default(), tls).await
}

/// [`run`] with reads mixed in, over TLS when `tls` is given.
pub async fn run_with(
    config: BenchConfig,
    mix: ReadMix,
    tls: Option<crate::client::ClientTls>,
) -> Result<BenchReport, ClientError> {
    let options = ClientOptions {
        tls,
        token: config.token.clone(),
        deadline: Duration::from_secs(30),
        spin: config.spin,
        session_ttl: config.session_ttl,
        stale_reads: mix.stale,
        ..ClientOptions::default()
    };
    let mix = Arc::new(mix);
    let no_args = concoord_objects::encode_args::<i64>(&[]);
    let clients = config.clients.max(1);
    let conns = config.conns.unwrap_or(clients).clamp(1, clients);
    let clients: Vec<Client> = (0..conns)
        .map(|_| Client::new(&config.replicas, options.clone()))
        .collect::<Result<_, _>>()?;
    // Connect and find the leader before the clock starts.
    for c in &clients {
        c.status().await?;
    }
    let workers = config.clients.max(1) * config.pipeline.max(1);
    let first_remaining = config.ops.unwrap_or(u64::MAX);
    let remaining = Arc::new(AtomicU64::new(first_remaining));
    let stop = Arc::new(AtomicBool::new(false));
    let done_ops = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let targets: Arc<Vec<Target>> = Arc::new(if config.objects == 0 {
        vec![Target::default()]
    } else {
        (0..config.objects)
            .map(|i| Target::named(format!("bench/{i}"), config.object_type.clone()))
            .collect()
    });
    // One pair of histograms for every worker: a pair each (220 KB apiece)
    // made each record a cache miss, ~10% of the bench's CPU pipelined.
    let latencies = Arc::new(Mutex::new((new_histogram(), new_histogram())));
    let mut tasks = Vec::with_capacity(workers);
    for w in 0..workers {
        let client = clients[w % clients.len()].clone();
        let (remaining, stop, done_ops) = (remaining.clone(), stop.clone(), done_ops.clone());
        let (method, args) = (config.method.clone(), config.args.clone());
        let targets = targets.clone();
        let (mix, no_args) = (mix.clone(), no_args.clone());
        let deadline = client.options().deadline;
        let latencies = latencies.clone();
        tasks.push(tokio::spawn(async move {
            let mut errors = 0u64;
            let mut first_error = None;
            while !stop.load(Ordering::Relaxed) {
                // The n-th call of the run goes to name n mod N: every name in turn.
                let Ok(left) = remaining
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1))
                else {
                    break;
                };
                let n = (first_remaining - left) as usize;
                let t = Instant::now();
                let target = &targets[n % targets.len()];
                let reads = mix.reads(n as u64);
                let (method, args) = if reads {
                    (&mix.method, no_args.clone())
                } else {
                    (&method, args.clone())
                };
                match client
                    .call_raw_on(target, method, args, deadline, false)
                    .await
                {
                    Ok(_) => {
                        let us = (t.elapsed().as_micros() as u64).max(1);
                        let mut latencies = latencies.lock().expect("never held across a panic");
                        let _ = latencies.0.record(us);
                        if reads {
                            let _ = latencies.1.record(us);
                        }
                        done_ops.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            (errors, first_error)
        }));
    }
    let progress = if config.progress {
        let (stop, done_ops) = (stop.clone(), done_ops.clone());
        Some(tokio::spawn(async move {
            let mut last = 0;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let now = done_ops.load(Ordering::Relaxed);
                eprintln!(
                    "[{:>4.0} s] {} ops, {} ops/s",
                    started.elapsed().as_secs_f64(),
                    now,
                    now - last
                );
                last = now;
            }
        }))
    } else {
        None
    };
    if let Some(d) = config.duration {
        tokio::time::sleep(d).await;
        stop.store(true, Ordering::Relaxed);
    }
    let mut errors_seen = 0;
    let mut first_error_seen = None;
    for t in tasks {
        let (errors, first_error) = t
            .await
            .map_err(|e| ClientError::Invalid(format!("a bench worker failed: {e}")))?;
        errors_seen += errors;
        first_error_seen = first_error_seen.or(first_error);
    }
    let (latency_us, read_latency_us) = std::mem::replace(
        &mut *latencies.lock().expect("never held across a panic"),
        (new_histogram(), new_histogram()),
    );
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    if let Some(p) = progress {
        p.abort();
    }
    Ok(BenchReport {
        ops: latency_us.len(),
        errors: errors_seen,
        elapsed,
        latency_us,
        read_latency_us,
        first_error: first_error_seen,
    })
}
