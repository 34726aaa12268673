//! The `concoord` command: run a replica, call it, inspect it.

mod admin_cmd;
mod bench_cmd;
mod call_cmd;
#[cfg(feature = "server")]
mod concoord11;
mod inspect_cmd;
mod logdaemon_cmd;
#[cfg(feature = "server")]
mod replica_cmd;

use clap::{Parser, Subcommand};
use concoord::{ClientError, ClientOptions};

use std::process::ExitCode;
use std::time::Duration;

/// glibc malloc took ~13% of a loaded replica's CPU (perf); mimalloc gave ~15%
/// more ops/s in `concoord bench` (pipelined and 64 clients).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "concoord",
    version,
    about = "Fault-tolerant replicated objects and distributed locks over Multi-Paxos",
    long_about = "Fault-tolerant replicated objects and distributed locks over Multi-Paxos.\n\n\
Start a group: `concoord replica -o Counter -p 14000`, then add members with\n\
`concoord replica -o Counter -p 14001 -b 127.0.0.1:14000`. Call it with\n\
`concoord call -r 127.0.0.1:14000 increment`."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a replica of a built-in object.
    #[cfg(feature = "server")]
    Replica(replica_cmd::ReplicaArgs),
    /// Make one call and print its result as JSON.
    Call(call_cmd::CallArgs),
    /// Read `METHOD [ARG...]` lines from stdin; print one JSON reply per line.
    Shell(call_cmd::ShellArgs),
    /// Print each replica's view of the group as a JSON array.
    Status(inspect_cmd::StatusArgs),
    /// Change the group itself: `admin remove -r ADDRS MEMBER` removes a member.
    Admin(admin_cmd::AdminArgs),
    /// List the group's named objects as JSON: name, type, parked calls.
    Objects(inspect_cmd::ObjectsArgs),
    /// Closed-loop load: ops/s and latency percentiles.
    Bench(bench_cmd::BenchArgs),
    /// Generate a typed proxy module for a type (ConCoord's `concoord object`).
    Object(concoord::object_cmd::ObjectArgs),
    /// Receive log records from replicas and clients started with -l; print them tagged by node.
    Logdaemon(logdaemon_cmd::LogdaemonArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (debug, logger, label): (bool, Option<String>, String) = match &cli.command {
        #[cfg(feature = "server")]
        Cmd::Replica(r) => (
            r.common.debug,
            r.common.logger.clone(),
            "replica".to_string(),
        ),
        Cmd::Call(c) => (false, c.logger.clone(), "client call".into()),
        Cmd::Shell(c) => (false, c.logger.clone(), "client shell".into()),
        Cmd::Status(c) => (false, c.logger.clone(), "client status".into()),
        Cmd::Objects(c) => (false, c.logger.clone(), "client objects".into()),
        Cmd::Admin(_) => (false, None, "client admin".into()),
        Cmd::Bench(c) => (false, c.logger.clone(), "client bench".into()),
        Cmd::Logdaemon(_) => (false, None, "logdaemon".into()),
        Cmd::Object(_) => (false, None, "object".into()),
    };
    let default_level = if debug {
        "debug"
    } else {
        "warn,concoord_actors=info"
    };
    concoord::netlog::set_node_label(format!("{label} pid {}", std::process::id()));
    concoord::netlog::init(default_level, logger.as_deref());
    match cli.command {
        #[cfg(feature = "server")]
        Cmd::Replica(args) => replica_cmd::run_replica(args),
        Cmd::Call(args) => call_cmd::run_call(args),
        Cmd::Shell(args) => call_cmd::run_shell(args),
        Cmd::Status(args) => inspect_cmd::run_status(args),
        Cmd::Objects(args) => inspect_cmd::run_objects(args),
        Cmd::Admin(args) => admin_cmd::run(args),
        Cmd::Bench(args) => bench_cmd::run_bench(args),
        Cmd::Logdaemon(args) => logdaemon_cmd::run_logdaemon(args),
        Cmd::Object(args) => concoord::object_cmd::run(args),
    }
}

pub(crate) fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("concoord: {message}");
    ExitCode::from(2)
}

/// `--session-ttl`'s default, in seconds.
pub(crate) const DEFAULT_SESSION_TTL_S: f64 = 10.0;

/// How every client command reaches the group: where, the token, TLS.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ConnectArgs {
    /// Replica addresses, HOST:PORT[,HOST:PORT...] (a host name may stand
    /// for several); one live member is enough unless the command says so.
    #[arg(short = 'r', long = "replicas")]
    pub(crate) replicas: String,
    /// The group's shared security token.
    #[arg(short = 't', long = "token", default_value = "")]
    pub(crate) token: String,
    #[command(flatten)]
    pub(crate) tls: ClientTlsArgs,
}

/// The TLS flags every client command takes.
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct ClientTlsArgs {
    /// Connect with TLS, trusting replicas whose certificate this CA (PEM)
    /// signed. Without it, plain TCP.
    #[arg(long = "tls-ca", value_name = "FILE")]
    pub(crate) tls_ca: Option<std::path::PathBuf>,
    /// Present this certificate (PEM) to replicas that require client
    /// certificates (`replica --tls-client-auth`). Needs --tls-key.
    #[arg(long = "tls-cert", value_name = "FILE", requires_all = ["tls_key", "tls_ca"])]
    pub(crate) tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long = "tls-key", value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<std::path::PathBuf>,
    /// Check replicas' certificates against this DNS name or IP address
    /// instead of the host of each address dialled.
    #[arg(long = "tls-server-name", value_name = "NAME", requires = "tls_ca")]
    pub(crate) tls_server_name: Option<String>,
}

impl ClientTlsArgs {
    /// The TLS settings these flags give; `None` for plain TCP.
    pub(crate) fn client_tls(&self) -> Result<Option<concoord::client::ClientTls>, String> {
        let Some(ca) = &self.tls_ca else {
            return Ok(None);
        };
        let cert = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            (None, None) => None,
            _ => return Err("--tls-cert and --tls-key go together".into()),
        };
        let tls = concoord::client::ClientTls::from_files(ca, cert).map_err(|e| e.to_string())?;
        match &self.tls_server_name {
            Some(name) => tls
                .with_server_name(name)
                .map(Some)
                .map_err(|e| e.to_string()),
            None => Ok(Some(tls)),
        }
    }
}

pub(crate) fn client_options(
    token: &str,
    timeout_s: f64,
    session_ttl_s: f64,
    tls: &ClientTlsArgs,
) -> Result<ClientOptions, String> {
    if !(timeout_s.is_finite() && timeout_s > 0.0) {
        return Err(format!(
            "--timeout must be a positive number of seconds, got {timeout_s}"
        ));
    }
    if !(session_ttl_s.is_finite() && session_ttl_s >= 0.0) {
        return Err(format!(
            "--session-ttl must be a number of seconds (0 for none), got {session_ttl_s}"
        ));
    }
    Ok(ClientOptions {
        token: token.to_string(),
        deadline: Duration::from_secs_f64(timeout_s),
        session_ttl: (session_ttl_s > 0.0).then(|| Duration::from_secs_f64(session_ttl_s)),
        tls: tls.client_tls()?,
        ..ClientOptions::default()
    })
}

pub(crate) fn error_json(e: &ClientError) -> serde_json::Value {
    serde_json::json!({"error": {"kind": e.kind(), "message": e.message()}})
}
