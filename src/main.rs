//! The `concoord` command: run a replica, call it, inspect it.

mod admin_cmd;
#[cfg(feature = "server")]
mod concoord11;

use clap::{Parser, Subcommand};
use concoord::client::{fetch_status, SessionState};
use concoord::json::{encode_args, parse_each, parse_json_args, result_to_json};
use concoord::objects::Target;
use concoord::{BlockingClient, ClientError, ClientOptions};

use std::io::{BufRead, Write};
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
    Replica(ReplicaArgs),
    /// Make one call and print its result as JSON.
    Call(CallArgs),
    /// Read `METHOD [ARG...]` lines from stdin; print one JSON reply per line.
    Shell(ShellArgs),
    /// Print each replica's view of the group as a JSON array.
    Status(StatusArgs),
    /// Change the group itself: `admin remove -r ADDRS MEMBER` removes a member.
    Admin(admin_cmd::AdminArgs),
    /// List the group's named objects as JSON: name, type, parked calls.
    Objects(ObjectsArgs),
    /// Closed-loop load: ops/s and latency percentiles.
    Bench(BenchArgs),
    /// Generate a typed proxy module for a type (ConCoord's `concoord object`).
    Object(concoord::object_cmd::ObjectArgs),
    /// Receive log records from replicas and clients started with -l; print them tagged by node.
    Logdaemon(LogdaemonArgs),
}

#[derive(Parser)]
struct LogdaemonArgs {
    /// Address to listen on.
    #[arg(short = 'a', long = "addr", default_value = "127.0.0.1")]
    addr: String,
    /// Port to listen on; 0 lets the OS pick one (printed as `listening on HOST:PORT`).
    #[arg(short = 'p', long = "port", default_value_t = 14500)]
    port: u16,
}

#[derive(Parser)]
struct BenchArgs {
    #[arg(short = 'r', long = "replicas")]
    replicas: String,
    /// Send log records to a network logger at HOST:PORT.
    #[arg(short = 'l', long = "logger")]
    logger: Option<String>,
    #[arg(short = 't', long = "token", default_value = "")]
    token: String,
    /// Concurrent closed-loop clients.
    #[arg(long = "clients", default_value_t = 1)]
    clients: usize,
    /// Connections the clients share, as etcd's benchmark spreads its clients
    /// over gRPC connections (default: one per client).
    #[arg(long = "conns")]
    conns: Option<usize>,
    /// Total operations (split over the clients).
    #[arg(long = "ops", conflicts_with = "duration")]
    ops: Option<u64>,
    /// Run for this many seconds instead of a number of operations.
    #[arg(long = "duration")]
    duration: Option<f64>,
    /// Calls each client keeps outstanding.
    #[arg(long = "pipeline", default_value_t = 1)]
    pipeline: usize,
    /// Print one JSON object instead of text.
    #[arg(long = "json")]
    json: bool,
    /// Each connection polls for replies this many µs before it sleeps; 0 never spins.
    #[arg(long = "spin-us", default_value_t = 0)]
    spin_us: u64,
    /// Spread the calls over N named objects (bench/0 ... bench/N-1), created
    /// by their first call with --type; 0 calls the default object.
    #[arg(long = "objects", value_name = "N", default_value_t = 0)]
    objects: u64,
    /// Each client's session TTL in seconds (0: no sessions).
    #[arg(long = "session-ttl", default_value_t = DEFAULT_SESSION_TTL_S)]
    session_ttl: f64,
    /// The type of the named objects --objects creates.
    #[arg(long = "type", value_name = "TYPE", default_value = "Counter")]
    type_name: String,
    /// The method to call.
    #[arg(long = "method", default_value = "increment")]
    method: String,
    /// Arguments, each a JSON value.
    #[arg(allow_hyphen_values = true)]
    args: Vec<String>,
}

#[cfg(feature = "server")]
#[derive(Parser)]
struct ReplicaArgs {
    /// The object: a built-in short name (Counter, Lock, Semaphore, ...) or
    /// ConCoord's dotted path (concoord.object.counter.Counter).
    #[arg(short = 'o', long = "object")]
    object: String,
    /// Also serve ConCoord 1.1's client protocol on this port (same -a), so
    /// ConCoord's own Python proxies work against the group. Needs a fixed -p.
    #[arg(long = "concoord-port")]
    concoord_port: Option<u16>,
    #[command(flatten)]
    common: concoord::serve::ServeArgs,
}

#[derive(Parser)]
struct CallArgs {
    /// Replica addresses, HOST:PORT[,HOST:PORT...]; one live member is enough.
    #[arg(short = 'r', long = "replicas")]
    replicas: String,
    /// Send log records to a network logger at HOST:PORT.
    #[arg(short = 'l', long = "logger")]
    logger: Option<String>,
    #[arg(short = 't', long = "token", default_value = "")]
    token: String,
    /// Give up after this many seconds.
    #[arg(long = "timeout", default_value_t = 30.0)]
    timeout: f64,
    /// The client's session TTL in seconds (0: no session).
    #[arg(long = "session-ttl", default_value_t = DEFAULT_SESSION_TTL_S)]
    session_ttl: f64,
    /// Call the named object NAME instead of the group's default one.
    #[arg(long = "object", value_name = "NAME")]
    object: Option<String>,
    /// The object's type (Lock, Counter, ...): creates NAME if it does not
    /// exist yet; a name of another type fails with kind WrongType.
    #[arg(long = "type", value_name = "TYPE", requires = "object")]
    type_name: Option<String>,
    /// The method to call.
    method: String,
    /// Arguments, each a JSON value (strings in quotes: '"text"').
    #[arg(allow_hyphen_values = true)]
    args: Vec<String>,
}

#[derive(Parser)]
struct ShellArgs {
    #[arg(short = 'r', long = "replicas")]
    replicas: String,
    /// Send log records to a network logger at HOST:PORT.
    #[arg(short = 'l', long = "logger")]
    logger: Option<String>,
    #[arg(short = 't', long = "token", default_value = "")]
    token: String,
    /// Give up on one call after this many seconds.
    #[arg(long = "timeout", default_value_t = 30.0)]
    timeout: f64,
    /// The session's TTL in seconds: the shell holds one session for its
    /// life; what it holds is released this long after it dies (0: none).
    #[arg(long = "session-ttl", default_value_t = DEFAULT_SESSION_TTL_S)]
    session_ttl: f64,
}

#[derive(Parser)]
struct ObjectsArgs {
    /// Replica addresses; the first that answers lists what it holds.
    #[arg(short = 'r', long = "replicas")]
    replicas: String,
    /// Send log records to a network logger at HOST:PORT.
    #[arg(short = 'l', long = "logger")]
    logger: Option<String>,
    #[arg(short = 't', long = "token", default_value = "")]
    token: String,
    #[arg(long = "timeout", default_value_t = 10.0)]
    timeout: f64,
}

#[derive(Parser)]
struct StatusArgs {
    #[arg(short = 'r', long = "replicas")]
    replicas: String,
    /// Send log records to a network logger at HOST:PORT.
    #[arg(short = 'l', long = "logger")]
    logger: Option<String>,
    #[arg(short = 't', long = "token", default_value = "")]
    token: String,
    #[arg(long = "timeout", default_value_t = 2.0)]
    timeout: f64,
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
        Cmd::Replica(args) => run_replica(args),
        Cmd::Call(args) => run_call(args),
        Cmd::Shell(args) => run_shell(args),
        Cmd::Status(args) => run_status(args),
        Cmd::Objects(args) => run_objects(args),
        Cmd::Admin(args) => admin_cmd::run(args),
        Cmd::Bench(args) => run_bench(args),
        Cmd::Logdaemon(args) => run_logdaemon(args),
        Cmd::Object(args) => concoord::object_cmd::run(args),
    }
}

fn run_logdaemon(args: LogdaemonArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot start a runtime: {e}")),
    };
    runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind((args.addr.as_str(), args.port)).await {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                return fail(format!(
                    "port {} is in use; pick another with -p, or -p 0 to let the OS choose",
                    args.port
                ))
            }
            Err(e) => return fail(format!("cannot listen on {}:{}: {e}", args.addr, args.port)),
        };
        match listener.local_addr() {
            Ok(a) => println!("listening on {a}"),
            Err(e) => return fail(e),
        }
        let _ = std::io::stdout().flush();
        tokio::select! {
            _ = concoord::netlog::run_daemon(listener) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        ExitCode::SUCCESS
    })
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("concoord: {message}");
    ExitCode::from(2)
}

#[cfg(feature = "server")]
fn run_replica(args: ReplicaArgs) -> ExitCode {
    let Some(object) = concoord::builtin(&args.object) else {
        return fail(format!(
            "unknown object {:?}; built-in objects: {}",
            args.object,
            concoord::objects::builtin_names().join(", ")
        ));
    };
    if let Some(port) = args.concoord_port {
        if args.common.port == 0 {
            return fail("--concoord-port needs a fixed -p: its endpoint forwards to that port");
        }
        let listen =
            match std::net::ToSocketAddrs::to_socket_addrs(&(args.common.addr.as_str(), port))
                .ok()
                .and_then(|mut a| a.next())
            {
                Some(a) => a,
                None => {
                    return fail(format!(
                        "--concoord-port: cannot resolve {}",
                        args.common.addr
                    ))
                }
            };
        let replica = format!("{}:{}", args.common.addr, args.common.port);
        match concoord11::spawn(listen, replica, args.common.token.clone()) {
            Ok(bound) => log::info!("ConCoord 1.1 clients on {bound}"),
            Err(e) => return fail(format!("--concoord-port {port}: {e}")),
        }
    }
    concoord::serve::run_replica(object, args.common)
}

/// `--session-ttl`'s default, in seconds.
const DEFAULT_SESSION_TTL_S: f64 = 10.0;

fn client_options(
    token: &str,
    timeout_s: f64,
    session_ttl_s: f64,
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
        ..ClientOptions::default()
    })
}

fn error_json(e: &ClientError) -> serde_json::Value {
    serde_json::json!({"error": {"kind": e.kind(), "message": e.message()}})
}

/// The timeout a threading call carries as an argument (Python's
/// `acquire(blocking, timeout)`, `wait(timeout)`), if it has one.
fn call_timeout_arg(method: &str, values: &[serde_json::Value]) -> Option<f64> {
    let timeout = match method {
        "acquire" | "acquire_fenced" if values.first().and_then(|b| b.as_bool()) != Some(false) => {
            values.get(1)
        }
        "wait" => values.first(),
        "wait_change" => values.get(1),
        _ => None,
    };
    timeout.and_then(|t| t.as_f64()).filter(|t| *t >= 0.0)
}

/// Calls `method`; when the call's own timeout or `--timeout` passes, it is
/// cancelled by a replicated command rather than abandoned, so a timed-out
/// acquire never takes the lock later. A cancel ordered first makes a timed
/// acquire return false, as in Python.
fn call_cancelling(
    client: &BlockingClient,
    target: &Target,
    method: &str,
    values: &[serde_json::Value],
    timeout_s: f64,
) -> Result<Vec<u8>, ClientError> {
    let own = call_timeout_arg(method, values);
    let deadline = own.map_or(timeout_s, |t| t.min(timeout_s));
    let result = client.call_raw_on(
        target,
        method,
        encode_args(values),
        Duration::from_secs_f64(deadline),
        true,
    );
    match result {
        Err(ClientError::Object(e))
            if e.kind == concoord::proto::message::CANCELLED_KIND && method == "acquire" =>
        {
            Ok(concoord::objects::encode_value(&false))
        }
        Err(ClientError::Object(e))
            if e.kind == concoord::proto::message::CANCELLED_KIND && method == "acquire_fenced" =>
        {
            Ok(concoord::objects::encode_value(&()))
        }
        other => other,
    }
}

fn run_call(args: CallArgs) -> ExitCode {
    let options = match client_options(&args.token, args.timeout, args.session_ttl) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let values = match parse_each(&args.args) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let client = match BlockingClient::new(&args.replicas, options) {
        Ok(c) => c,
        Err(e) => return fail(format!("-r: {}", e.message())),
    };
    let target = Target {
        name: args.object.unwrap_or_default(),
        type_name: args.type_name.unwrap_or_default(),
    };
    match call_cancelling(&client, &target, &args.method, &values, args.timeout) {
        Ok(bytes) => match result_to_json(&bytes) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Err(e) => {
            eprintln!("{}", error_json(&e));
            ExitCode::from(1)
        }
    }
}

fn run_shell(args: ShellArgs) -> ExitCode {
    let options = match client_options(&args.token, args.timeout, args.session_ttl) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let client = match BlockingClient::new(&args.replicas, options) {
        Ok(c) => c,
        Err(e) => return fail(format!("-r: {}", e.message())),
    };
    // Say at once, on stderr, when the group ends or refuses the session:
    // whatever the shell held is gone, whether or not a command is typed.
    let mut session = client.client().session();
    client.runtime().spawn(async move {
        while session.changed().await.is_ok() {
            let event = match &*session.borrow() {
                SessionState::Expired => serde_json::json!({"event": {"kind": "SessionExpired",
                    "message": "the group ended this shell's session: its locks and permits are released"}}),
                SessionState::Refused(why) => serde_json::json!({"event": {"kind": "SessionRefused",
                    "message": why}}),
                _ => continue,
            };
            eprintln!("{event}");
        }
    });
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (target, line) = match shell_target(line) {
            Ok(found) => found,
            Err(e) => {
                let out = serde_json::json!({"error": {"kind": "BadArguments", "message": e}});
                if writeln!(stdout, "{out}")
                    .and_then(|_| stdout.flush())
                    .is_err()
                {
                    break;
                }
                continue;
            }
        };
        let (method, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let out = match parse_json_args(rest) {
            Err(e) => serde_json::json!({"error": {"kind": "BadArguments", "message": e}}),
            Ok(values) => match call_cancelling(&client, &target, method, &values, args.timeout) {
                Ok(bytes) => result_to_json(&bytes).unwrap_or_else(
                    |e| serde_json::json!({"error": {"kind": "Invalid", "message": e}}),
                ),
                Err(e) => error_json(&e),
            },
        };
        if writeln!(stdout, "{out}")
            .and_then(|_| stdout.flush())
            .is_err()
        {
            break;
        }
    }
    ExitCode::SUCCESS
}

/// A shell line's object: `@NAME[:TYPE] METHOD ARGS` names one (the type
/// creates it if new); a plain line calls the default object. A name holding
/// ':' is written with its type (`@a:b:Lock`: name `a:b`).
fn shell_target(line: &str) -> Result<(Target, &str), String> {
    let Some(rest) = line.strip_prefix('@') else {
        return Ok((Target::default(), line));
    };
    let (spec, call) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let call = call.trim_start();
    if call.is_empty() {
        return Err(format!(
            "@{spec}: a method must follow the object (@NAME[:TYPE] METHOD ARGS)"
        ));
    }
    let looks_like_type = |t: &str| {
        !t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    };
    let (name, type_name) = match spec.rsplit_once(':') {
        Some((name, t)) if looks_like_type(t) => (name, t),
        _ => (spec, ""),
    };
    if name.is_empty() {
        return Err("@: an object name must follow the @".into());
    }
    Ok((Target::named(name, type_name), call))
}

/// What `status` and `objects` share: the addresses, the per-replica
/// timeout, and a runtime to ask on; a bad flag is exit 2 with a message.
fn admin_setup(
    replicas: &str,
    timeout_s: f64,
) -> Result<(Vec<String>, Duration, tokio::runtime::Runtime), ExitCode> {
    let addrs = concoord::client::parse_addresses(replicas)
        .map_err(|e| fail(format!("-r: {}", e.message())))?;
    if !(timeout_s.is_finite() && timeout_s > 0.0) {
        return Err(fail("--timeout must be a positive number of seconds"));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(format!("cannot start a runtime: {e}")))?;
    Ok((addrs, Duration::from_secs_f64(timeout_s), runtime))
}

fn run_objects(args: ObjectsArgs) -> ExitCode {
    let (addrs, timeout, runtime) = match admin_setup(&args.replicas, args.timeout) {
        Ok(setup) => setup,
        Err(code) => return code,
    };
    let mut last_error = None;
    for addr in &addrs {
        match runtime.block_on(concoord::client::fetch_objects(addr, &args.token, timeout)) {
            Ok(objects) => {
                let json = serde_json::to_string(&objects).expect("object lists serialize");
                println!("{json}");
                return ExitCode::SUCCESS;
            }
            Err(e) => last_error = Some(e),
        }
    }
    let e = last_error.expect("parse_addresses gives at least one address");
    eprintln!("{}", error_json(&e));
    ExitCode::from(1)
}

fn run_status(args: StatusArgs) -> ExitCode {
    let (addrs, timeout, runtime) = match admin_setup(&args.replicas, args.timeout) {
        Ok(setup) => setup,
        Err(code) => return code,
    };
    let entries: Vec<serde_json::Value> = runtime.block_on(async {
        let mut out = Vec::new();
        for addr in &addrs {
            out.push(match fetch_status(addr, &args.token, timeout).await {
                Ok(s) => serde_json::json!({
                    "address": addr,
                    "id": format!("{:x}", s.id),
                    "role": s.role,
                    "leader": s.leader,
                    "ballot": [s.ballot.round, format!("{:x}", s.ballot.node)],
                    "members": s.members,
                    "next_slot": s.next_slot,
                    "executed_slot": s.executed_slot,
                    "snapshot_slot": s.snapshot_slot,
                    "clients": s.clients,
                    "parked": s.parked,
                    "uptime_s": s.uptime_s,
                    "object": s.object,
                    "sessions": s.sessions,
                }),
                Err(e) => serde_json::json!({"address": addr, "error": e.to_string()}),
            });
        }
        out
    });
    println!("{}", serde_json::Value::Array(entries));
    ExitCode::SUCCESS
}

fn run_bench(args: BenchArgs) -> ExitCode {
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
    let values = match parse_each(&args.args) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    if let Err(e) = concoord::client::parse_addresses(&args.replicas) {
        return fail(format!("-r: {}", e.message()));
    }
    let long_run = duration.is_some_and(|d| d > Duration::from_secs(3))
        || args.ops.is_some_and(|o| o > 200_000);
    let config = concoord::bench::BenchConfig {
        replicas: args.replicas,
        token: args.token,
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
    match runtime.block_on(concoord::bench::run(config)) {
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
