//! The replica `main` of a user's own object: `concoord::serve::<T>()` takes
//! the same flags as `concoord replica` (less `-o`: the object is `T`) and
//! serves `T` over TCP until SIGTERM or Ctrl-C.
//!
//! ```no_run
//! #[derive(Default, serde::Serialize, serde::Deserialize)]
//! struct TenCounter { value: i64 }
//!
//! #[concoord::object]
//! impl TenCounter {
//!     pub fn increment(&mut self) { self.value += 10 }
//!     pub fn getvalue(&self) -> i64 { self.value }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     concoord::serve::<TenCounter>() // my-replica -p 14000 [-b HOST:PORT] ...
//! }
//! ```

use crate::json::{encode_args, parse_each};
use crate::objects::{Limits, ReplicatedObject, StateMachine, Types};
use crate::ReplicaOptions;
use concoord_actors::node::NodeOptions;
use std::ffi::OsString;
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// How long client connections get to flush what they were writing at shutdown.
const SHUTDOWN_FLUSH: Duration = Duration::from_millis(100);

/// The flags of `concoord replica` except `-o`.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(short = 'a', long = "addr", default_value = "127.0.0.1")]
    pub addr: String,
    /// Port to listen on; 0 lets the OS pick one (printed as `listening on HOST:PORT`).
    #[arg(short = 'p', long = "port", default_value_t = 14000)]
    pub port: u16,
    /// The address the group and its clients know this member by, when it
    /// is not the one it listens on: a name that stays when the IP changes
    /// (a Kubernetes pod's DNS name). With -w it names the member's data dir.
    #[arg(long = "advertise", value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// Join the group these replicas belong to (HOST:PORT[,HOST:PORT...]).
    #[arg(short = 'b', long = "bootstrap")]
    pub bootstrap: Option<String>,
    /// Shared security token; peers and clients without it are refused.
    #[arg(short = 't', long = "token", default_value = "")]
    pub token: String,
    /// Send log records to a network logger (`concoord logdaemon`) at HOST:PORT.
    #[arg(short = 'l', long = "logger")]
    pub logger: Option<String>,
    /// The same endpoint as --http (kept for existing scripts).
    #[arg(long = "metrics", value_name = "HOST:PORT")]
    pub metrics: Option<String>,
    /// Serve HTTP on this address (off by default): /metrics (Prometheus),
    /// /health (200 while a member hearing a leader, else 503), /status
    /// (JSON) and / (a status page).
    #[arg(long = "http", value_name = "HOST:PORT")]
    pub http: Option<String>,
    /// Durable mode: promises, accepted values and decisions are on disk
    /// (fdatasync, in groups) before they are acknowledged, so the whole
    /// group can restart; restart with the same --data-dir to come back as
    /// the same member with its state (-b is then not needed).
    #[arg(short = 'w', long = "writetodisk")]
    pub write_to_disk: bool,
    /// The data dir of -w [default: concoord-data-PORT in the current directory].
    #[arg(long = "data-dir", value_name = "DIR")]
    pub data_dir: Option<std::path::PathBuf>,
    /// With -w: executed slots between snapshots written to the data dir
    /// (the log below a snapshot is deleted, so the dir stays bounded).
    #[arg(long = "snapshot-every", value_name = "SLOTS", default_value_t = concoord_actors::storage::SNAPSHOT_EVERY_SLOTS)]
    pub snapshot_every: u64,
    /// With -w: bytes per log segment (tests make it small to see compaction).
    #[arg(long = "segment-bytes", hide = true, default_value_t = concoord_actors::storage::SEGMENT_BYTES)]
    pub segment_bytes: u64,
    /// Verbose logging.
    #[arg(short = 'd', long = "debug")]
    pub debug: bool,
    /// On SIGTERM or Ctrl-C, leave the group: ask it to remove this member
    /// and wait (at most 10 s) until the removal is in force, then exit 0
    /// (1 if the group did not confirm it in time). Without --leave a
    /// stopped replica stays a member, counted as down.
    #[arg(long = "leave")]
    pub leave: bool,
    /// Poll the sockets this many µs after each message before sleeping:
    /// cuts latency and wake-up cost under load, costs CPU only then; 0 never spins.
    #[arg(long = "spin-us", default_value_t = 100)]
    pub spin_us: u64,
    /// While leading, send each Accept to a bare majority (this replica and
    /// the followers that answered first) and decided batches to the other
    /// followers a tick later, together: a third less follower CPU per call
    /// in a group of 3. Each call then waits for one particular follower:
    /// slower where followers share CPUs with busy processes, and a stall
    /// of a retry (100 ms) when that follower fails. Give it to every replica.
    #[arg(long = "thrifty")]
    pub thrifty: bool,
    /// Constructor arguments as JSON values (e.g. `--init 3` for Semaphore(3));
    /// a negative number is written `--init=-1`.
    #[arg(long = "init", num_args = 1..)]
    pub init: Vec<String>,
    /// Named objects the group may hold at most (a founding replica sets it
    /// for the group; joiners take the group's). Calls that would create
    /// more fail with kind LimitExceeded.
    #[arg(long = "max-objects", default_value_t = concoord_objects::Limits::DEFAULT_MAX_OBJECTS)]
    pub max_objects: u64,
    /// The shortest session TTL (seconds) a client may ask for (a founding
    /// replica sets it for the group).
    #[arg(long = "session-ttl-min", default_value_t = 2.0)]
    pub session_ttl_min: f64,
    /// The longest session TTL (seconds) a client may ask for.
    #[arg(long = "session-ttl-max", default_value_t = 300.0)]
    pub session_ttl_max: f64,
    /// Serve TLS on client and peer links with this certificate (PEM, the
    /// leaf first). It must name the replica's address: an IP SAN such as
    /// 127.0.0.1 (clients and peers check the host they dial against it).
    /// Needs --tls-key and --tls-ca.
    #[arg(long = "tls-cert", value_name = "FILE", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long = "tls-key", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// The CA that signed the group's certificates (PEM): peers must present
    /// a certificate it signed, and this replica trusts peers by it.
    #[arg(long = "tls-ca", value_name = "FILE", requires = "tls_cert")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Clients must present a certificate --tls-ca signed too (without it,
    /// clients need only trust the replica's).
    #[arg(long = "tls-client-auth", requires = "tls_cert")]
    pub tls_client_auth: bool,
}

impl ServeArgs {
    /// The TLS settings the flags give; `None` serves plain TCP.
    pub fn tls(&self) -> Result<Option<concoord_actors::tcp::ReplicaTls>, String> {
        match (&self.tls_cert, &self.tls_key, &self.tls_ca) {
            (None, None, None) if !self.tls_client_auth => Ok(None),
            (Some(cert), Some(key), Some(ca)) => {
                concoord_actors::tcp::ReplicaTls::from_files(cert, key, ca, self.tls_client_auth)
                    .map(Some)
                    .map_err(|e| format!("TLS: {e}"))
            }
            _ => Err("TLS needs --tls-cert, --tls-key and --tls-ca together".into()),
        }
    }
}

#[derive(clap::Parser, Debug)]
#[command(
    about = "Serve a replicated object (the flags of `concoord replica`; -o may name the type served)"
)]
struct ServeCli {
    /// The default object's type, as `concoord replica -o` names it: a type
    /// this binary serves (a built-in, or a registered type, by its name or a
    /// dotted path ending in it); the first registered type if left out.
    #[arg(short = 'o', long = "objectname")]
    object: Option<String>,
    #[command(flatten)]
    args: ServeArgs,
}

/// Serves `T` with the flags on this process's command line (a leading
/// `replica` word is accepted, so the binary takes `concoord replica`'s
/// command line). Returns the exit code: 0 after SIGTERM/Ctrl-C.
pub fn serve<T: ReplicatedObject>() -> ExitCode {
    Server::new().object::<T>().run()
}

/// [`serve`] with an explicit command line (the first item is the program name).
pub fn serve_from<T, I, S>(args: I) -> ExitCode
where
    T: ReplicatedObject,
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    Server::new().object::<T>().run_from(args)
}

/// A replica binary serving several object types: the built-ins always,
/// plus every type given to [`Server::object`]. One group then hosts named
/// objects of all of them side by side. The default object (the empty name)
/// is the one `-o` names, or the first type given.
///
/// ```no_run
/// # #[derive(Default, serde::Serialize, serde::Deserialize)] struct Inventory { n: i64 }
/// # #[concoord::object] impl Inventory { pub fn add(&mut self) { self.n += 1 } }
/// # #[derive(Default, serde::Serialize, serde::Deserialize)] struct Ledger { n: i64 }
/// # #[concoord::object] impl Ledger { pub fn post(&mut self) { self.n += 1 } }
/// fn main() -> std::process::ExitCode {
///     concoord::Server::new().object::<Inventory>().object::<Ledger>().run()
/// }
/// ```
#[derive(Clone, Default)]
pub struct Server {
    types: Types,
    first: Option<&'static str>,
}

impl Server {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `T`: named objects of type `T::NAME` can be created.
    pub fn object<T: ReplicatedObject>(mut self) -> Self {
        self.types.register::<T>();
        self.first.get_or_insert(T::NAME);
        self
    }

    /// Serves with this process's command line.
    pub fn run(self) -> ExitCode {
        self.run_from(std::env::args_os())
    }

    /// Serves with an explicit command line (the first item is the program name).
    pub fn run_from<I, S>(self, args: I) -> ExitCode
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut argv: Vec<OsString> = args.into_iter().map(Into::into).collect();
        if argv.get(1).is_some_and(|a| a == "replica") {
            argv.remove(1);
        }
        let cli = match <ServeCli as clap::Parser>::try_parse_from(argv) {
            Ok(cli) => cli,
            Err(e) => e.exit(),
        };
        let default = match (&cli.object, self.first) {
            (Some(name), _) => name.clone(),
            (None, Some(first)) => first.to_string(),
            (None, None) => return fail("no object type to serve: give -o or register a type"),
        };
        let Some(object) = self.types.make(&default) else {
            return fail(format!(
                "-o {default}: this binary serves {} (name one, or by a dotted path ending in it)",
                self.types.names().join(", ")
            ));
        };
        init_logging(cli.args.debug, cli.args.logger.as_deref());
        run_replica_of(object, Arc::new(self.types), cli.args)
    }
}

/// Sets up console logging (`RUST_LOG` overrides the level) and, with
/// `network`, the network logger.
pub fn init_logging(debug: bool, network: Option<&str>) {
    let default_level = if debug {
        "debug"
    } else {
        "warn,concoord_actors=info"
    };
    crate::netlog::set_node_label(format!("replica pid {}", std::process::id()));
    crate::netlog::init(default_level, network);
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("concoord: {message}");
    ExitCode::from(2)
}

/// Runs a replica of `object` with `args` until SIGTERM or Ctrl-C: prints
/// `listening on HOST:PORT`, exits 0 after a clean leave, 2 on a bad flag or
/// a failed start (with a message that says why).
pub fn run_replica(object: Box<dyn StateMachine>, args: ServeArgs) -> ExitCode {
    run_replica_of(object, Arc::new(Types::builtins()), args)
}

/// [`run_replica`] for a binary that can also create the user types in `types`.
pub fn run_replica_of(
    mut object: Box<dyn StateMachine>,
    types: Arc<Types>,
    args: ServeArgs,
) -> ExitCode {
    if args.max_objects == 0 {
        return fail("--max-objects must be at least 1");
    }
    let ttl_ms = |secs: f64| (secs.is_finite() && secs > 0.0).then_some((secs * 1000.0) as u64);
    let (Some(ttl_min_ms), Some(ttl_max_ms)) =
        (ttl_ms(args.session_ttl_min), ttl_ms(args.session_ttl_max))
    else {
        return fail("--session-ttl-min and --session-ttl-max must be positive numbers of seconds");
    };
    if ttl_min_ms > ttl_max_ms {
        return fail("--session-ttl-min must not be above --session-ttl-max");
    }
    let durable = match (args.write_to_disk, &args.data_dir) {
        (false, Some(_)) => {
            return fail("--data-dir needs -w (durable mode); without -w state lives in memory")
        }
        (false, None) => None,
        (true, _) if args.snapshot_every == 0 => {
            return fail("--snapshot-every must be at least 1")
        }
        (true, None) if args.port == 0 => {
            return fail("-w with -p 0: give --data-dir (the default names the port)")
        }
        (true, dir) => Some(crate::DurableOptions {
            data_dir: dir
                .clone()
                .unwrap_or_else(|| format!("concoord-data-{}", args.port).into()),
            snapshot_every: args.snapshot_every,
            segment_bytes: args.segment_bytes,
        }),
    };
    let http_flag = match (&args.http, &args.metrics) {
        (Some(_), Some(_)) => {
            return fail("--http and --metrics name the same endpoint; give one of them")
        }
        (Some(h), None) => Some(("--http", h)),
        (None, Some(m)) => Some(("--metrics", m)),
        (None, None) => None,
    };
    let http_addr: Option<SocketAddr> = match http_flag {
        None => None,
        Some((flag, h)) => match h.to_socket_addrs().ok().and_then(|mut a| a.next()) {
            Some(a) => Some(a),
            None => return fail(format!("{flag}: {h:?} is not HOST:PORT")),
        },
    };
    let listen: SocketAddr = match (args.addr.as_str(), args.port).to_socket_addrs() {
        Ok(mut addrs) => match addrs.next() {
            Some(a) => a,
            None => return fail(format!("cannot resolve {}", args.addr)),
        },
        Err(e) => return fail(format!("bad address {}:{}: {e}", args.addr, args.port)),
    };
    if let Some(advertise) = &args.advertise {
        let valid = advertise.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && !host.contains(',') && port.parse::<u16>().is_ok_and(|p| p != 0)
        });
        if !valid {
            return fail(format!(
                "--advertise: {advertise:?} is not HOST:PORT (a name or an address, and a port other than 0)"
            ));
        }
    }
    let bootstrap = match &args.bootstrap {
        Some(b) => match crate::client::parse_addresses(b) {
            Ok(a) => a,
            Err(e) => return fail(format!("-b: {}", e.message())),
        },
        None => Vec::new(),
    };
    if !args.init.is_empty() {
        let values = match parse_each(&args.init) {
            Ok(v) => v,
            Err(e) => return fail(format!("--init: {e}")),
        };
        let mut wakes = Vec::new();
        let mut ctx = crate::CallContext::new(crate::CommandId::new(0, 0), 0, &mut wakes);
        if let crate::Outcome::Reply(Err(e)) =
            object.apply(crate::objects::INIT_METHOD, &encode_args(&values), &mut ctx)
        {
            return fail(format!("--init: {e}"));
        }
    }
    let tls = match args.tls() {
        Ok(tls) => tls,
        Err(e) => return fail(e),
    };
    let (leave, token) = (args.leave, args.token.clone());
    let system = actix::System::new();
    let result = system.block_on(async move {
        let mut options = ReplicaOptions {
            listen,
            advertise: args.advertise,
            bootstrap,
            token: args.token,
            node: NodeOptions {
                spin: std::time::Duration::from_micros(args.spin_us),
                types,
                limits: Limits {
                    max_objects: args.max_objects,
                    session_ttl_min_ms: ttl_min_ms,
                    session_ttl_max_ms: ttl_max_ms,
                    ..Limits::default()
                },
                ..NodeOptions::default()
            },
            durable,
        };
        options.node.leader.thrifty = args.thrifty;
        let leave_tls = tls.as_ref().map(|tls| tls.peer_client().clone());
        let replica = match tls {
            Some(tls) => concoord_actors::tcp::start_tls_replica(object, options, tls).await?,
            None => crate::start_replica(object, options).await?,
        };
        crate::netlog::set_node_label(format!("replica {}", replica.local_addr));
        println!("listening on {}", replica.local_addr);
        if let Some(addr) = http_addr {
            match crate::http::serve(addr, replica.node.clone()).await {
                Ok(bound) => {
                    println!("metrics on http://{bound}/metrics");
                    println!("status page on http://{bound}/");
                }
                Err(e) => {
                    replica.shutdown();
                    return Err(crate::StartError::Bind(addr.to_string(), e));
                }
            }
        }
        let _ = std::io::stdout().flush();
        let clean = tokio::select! {
            _ = wait_for_termination() => {
                !leave || leave_group(&replica, &token, leave_tls.as_ref()).await
            }
            // Removed: the node logged why, and served until the members
            // that replaced it learned so. An orderly end, so exit 0.
            _ = replica.stopped() => true,
        };
        log::info!("shutting down");
        replica.shutdown();
        tokio::time::sleep(SHUTDOWN_FLUSH).await;
        Ok::<bool, crate::StartError>(clean)
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => fail(e),
    }
}

/// How long `--leave` waits for the group to remove this member.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Asks the group to remove this member and waits (bounded) until the
/// removal is in force; returns whether it is.
async fn leave_group(
    replica: &crate::RunningReplica,
    token: &str,
    tls: Option<&crate::client::ClientTls>,
) -> bool {
    use crate::client::{remove_member, Access, ClientError};
    use crate::proto::config::MemberRef;
    let node = &replica.node;
    let deadline = tokio::time::Instant::now() + LEAVE_TIMEOUT;
    let mut removed = node.removed();
    // Itself first: it answers at once, redirecting to the leader if need be.
    let mut addrs = vec![node.addr().to_string()];
    for m in node.status().await.map(|s| s.members).unwrap_or_default() {
        if !addrs.contains(&m) {
            addrs.push(m);
        }
    }
    log::info!("leaving the group");
    let access = Access { token, tls };
    match remove_member(&addrs, access, &MemberRef::Id(node.id()), LEAVE_TIMEOUT).await {
        Ok(_) => {}
        Err(ClientError::Object(e)) if e.kind == crate::proto::message::LAST_MEMBER_KIND => {
            log::info!("the group's last member has no group to leave");
            return true;
        }
        Err(e) if !*removed.borrow() => {
            log::warn!(
                "could not leave the group: {e}; it still counts this member \
                 (remove it with `concoord admin remove`)"
            );
            return false;
        }
        Err(_) => {} // removed meanwhile
    }
    let in_force = tokio::time::timeout_at(deadline, removed.wait_for(|removed| *removed))
        .await
        .is_ok_and(|r| r.is_ok());
    if in_force {
        // It may hold the only copy of the decisions that put its removal
        // in force: serve until the others have them.
        replica.stopped().await;
        log::info!("left the group");
    } else {
        log::warn!(
            "the group decided this member's removal but it was not in force within {LEAVE_TIMEOUT:?}"
        );
    }
    in_force
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn wait_for_termination() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
