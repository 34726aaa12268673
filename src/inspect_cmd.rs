//! `concoord status` and `concoord objects`: what each replica says about the group.

use crate::{error_json, fail};
use clap::Parser;
use concoord::client::fetch_status;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
pub(crate) struct ObjectsArgs {
    /// Replica addresses; the first that answers lists what it holds.
    #[arg(short = 'r', long = "replicas")]
    pub(crate) replicas: String,
    /// Send log records to a network logger at HOST:PORT.
    #[arg(short = 'l', long = "logger")]
    pub(crate) logger: Option<String>,
    #[arg(short = 't', long = "token", default_value = "")]
    pub(crate) token: String,
    #[arg(long = "timeout", default_value_t = 10.0)]
    pub(crate) timeout: f64,
    #[command(flatten)]
    pub(crate) tls: crate::ClientTlsArgs,
}

#[derive(Parser)]
pub(crate) struct StatusArgs {
    #[arg(short = 'r', long = "replicas")]
    pub(crate) replicas: String,
    /// Send log records to a network logger at HOST:PORT.
    #[arg(short = 'l', long = "logger")]
    pub(crate) logger: Option<String>,
    #[arg(short = 't', long = "token", default_value = "")]
    pub(crate) token: String,
    #[arg(long = "timeout", default_value_t = 2.0)]
    pub(crate) timeout: f64,
    #[command(flatten)]
    pub(crate) tls: crate::ClientTlsArgs,
}

/// What `status` and `objects` share: the addresses, the per-replica
/// timeout, and a runtime to ask on; a bad flag is exit 2 with a message.
pub(crate) fn admin_setup(
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

pub(crate) fn run_objects(args: ObjectsArgs) -> ExitCode {
    let (addrs, timeout, runtime) = match admin_setup(&args.replicas, args.timeout) {
        Ok(setup) => setup,
        Err(code) => return code,
    };
    let tls = match args.tls.client_tls() {
        Ok(tls) => tls,
        Err(e) => return fail(e),
    };
    let access = concoord::client::Access {
        token: &args.token,
        tls: tls.as_ref(),
    };
    let mut last_error = None;
    for addr in &addrs {
        match runtime.block_on(concoord::client::fetch_objects(addr, access, timeout)) {
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

pub(crate) fn run_status(args: StatusArgs) -> ExitCode {
    let (addrs, timeout, runtime) = match admin_setup(&args.replicas, args.timeout) {
        Ok(setup) => setup,
        Err(code) => return code,
    };
    let tls = match args.tls.client_tls() {
        Ok(tls) => tls,
        Err(e) => return fail(e),
    };
    let access = concoord::client::Access {
        token: &args.token,
        tls: tls.as_ref(),
    };
    let entries: Vec<serde_json::Value> = runtime.block_on(async {
        let mut out = Vec::new();
        for addr in &addrs {
            out.push(match fetch_status(addr, access, timeout).await {
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
