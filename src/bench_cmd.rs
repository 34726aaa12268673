//! `concoord bench`: closed-loop load, ops/s and latency percentiles.

use crate::{error_json, fail, DEFAULT_SESSION_TTL_S};
use clap::Parser;
use concoord::json::{encode_args, parse_each};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
pub(crate) struct BenchArgs {
    #[command(flatten)]
    pub(crate) connect: crate::ConnectArgs,
    /// Send log records to a network logger at HOST:PORT.
    #[arg(short = 'l', long = "logger")]
    pub(crate) logger: Option<String>,
    /// Concurrent closed-loop clients.
    #[arg(long = "clients", default_value_t = 1)]
    pub(crate) clients: usize,
    /// Connections the clients share, as etcd's benchmark spreads its clients
    /// over gRPC connections (default: one per client).
    #[arg(long = "conns")]
    pub(crate) conns: Option<usize>,
    /// Total operations (split over the clients).
    #[arg(long = "ops", conflicts_with = "duration")]
    pub(crate) ops: Option<u64>,
    /// Run for this many seconds instead of a number of operations.
    #[arg(long = "duration")]
    pub(crate) duration: Option<f64>,
    /// Calls each client keeps outstanding.
    #[arg(long = "pipeline", default_value_t = 1)]
    pub(crate) pipeline: usize,
    /// Print one JSON object instead of text.
    #[arg(long = "json")]
    pub(crate) json: bool,
    /// Each connection polls for replies this many µs before it sleeps; 0 never spins.
    #[arg(long = "spin-us", default_value_t = 0)]
    pub(crate) spin_us: u64,
    /// Spread the calls over N named objects (bench/0 ... bench/N-1), created
    /// by their first call with --type; 0 calls the default object.
    #[arg(long = "objects", value_name = "N", default_value_t = 0)]
    pub(crate) objects: u64,
    /// Each client's session TTL in seconds (0: no sessions).
    #[arg(long = "session-ttl", default_value_t = DEFAULT_SESSION_TTL_S)]
    pub(crate) session_ttl: f64,
    /// The type of the named objects --objects creates.
    #[arg(long = "type", value_name = "TYPE", default_value = "Counter")]
    pub(crate) type_name: String,
    /// The method to call.
    #[arg(long = "method", default_value = "increment")]
    pub(crate) method: String,
    /// The fraction of calls (0..1) that read: they call --read-method
    /// (read-only, no arguments) instead of --method, spread evenly.
    #[arg(long = "read-ratio", value_name = "R", default_value_t = 0.0)]
    pub(crate) read_ratio: f64,
    /// The read-only method --read-ratio calls.
    #[arg(long = "read-method", default_value = "getvalue")]
    pub(crate) read_method: String,
    /// Allow stale reads: the reads are answered by the replica reached,
    /// from its own state, without a read-index round.
    #[arg(long = "stale")]
    pub(crate) stale: bool,
    /// Arguments, each a JSON value.
    #[arg(allow_hyphen_values = true)]
    pub(crate) args: Vec<String>,
}

pub(crate) fn run_bench(args: BenchArgs) -> ExitCode {
    if args.clients == 0 || args.pipeline == 0 || args.conns == Some(0) {
        return fail("--clients, --conns and --pipeline must be at least 1");
    }
    let duration = match (args.ops, args.duration) {
        (Some(_), _) => None,
        (None, Some(d)) if d.is_finite() && d > 0.0 => Some(Duration::from_secs_f64(d)),
        (None, Some(d)) => {
            return fail(format!(
                "--duration must be a positive number of seconds, got {d}"
            ))
        }
        (None, None) => Some(Duration::from_secs(10)),
    };
    if !(0.0..=1.0).contains(&args.read_ratio) {
        return fail(format!(
            "--read-ratio must be between 0 and 1, got {}",
            args.read_ratio
        ));
    }
    let mix = concoord::bench::ReadMix {
        ratio: args.read_ratio,
        method: args.read_method,
        stale: args.stale,
    };
    let values = match parse_each(&args.args) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    if let Err(e) = concoord::client::parse_addresses(&args.connect.replicas) {
        return fail(format!("-r: {}", e.message()));
    }
    let long_run = duration.is_some_and(|d| d > Duration::from_secs(3))
        || args.ops.is_some_and(|o| o > 200_000);
    let tls = match args.connect.tls.client_tls() {
        Ok(tls) => tls,
        Err(e) => return fail(e),
    };
    let config = concoord::bench::BenchConfig {
        replicas: args.connect.replicas,
        token: args.connect.token,
        clients: args.clients,
        conns: args.conns,
        pipeline: args.pipeline,
        ops: args.ops,
        duration,
        method: args.method,
        args: encode_args(&values),
        progress: long_run,
        spin: Duration::from_micros(args.spin_us),
        objects: args.objects,
        object_type: args.type_name,
        session_ttl: (args.session_ttl > 0.0 && args.session_ttl.is_finite())
            .then(|| Duration::from_secs_f64(args.session_ttl)),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot start a runtime: {e}")),
    };
    match runtime.block_on(concoord::bench::run_with(config, mix, tls)) {
        Ok(report) => {
            if args.json {
                println!("{}", report.to_json());
            } else {
                println!("{}", report.to_text());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}", error_json(&e));
            ExitCode::from(1)
        }
    }
}
