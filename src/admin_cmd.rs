//! `concoord admin`: operations on the group itself rather than its objects.

use concoord::client::{parse_addresses, remove_member, take_snapshot};
use concoord::proto::config::MemberRef;
use concoord::ClientError;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Parser)]
pub struct AdminArgs {
    #[command(subcommand)]
    command: AdminCmd,
}

#[derive(clap::Subcommand)]
enum AdminCmd {
    /// Remove a member from the group (a replicated RemoveMember). Prints
    /// the member removed and the membership as JSON once it is decided.
    /// The removed replica stops serving and exits 0; to add it back, start
    /// a new replica with -b.
    Remove(RemoveArgs),
    /// Make each named durable replica (-w) write a snapshot to its data dir
    /// now, deleting the log below it. Prints one JSON object per replica:
    /// its address and the slot of the snapshot, or the error.
    Snapshot(SnapshotArgs),
}

#[derive(clap::Parser)]
struct SnapshotArgs {
    #[command(flatten)]
    connect: crate::ConnectArgs,
    /// Give up on a replica after this many seconds.
    #[arg(long = "timeout", default_value_t = 30.0)]
    timeout: f64,
}

#[derive(clap::Parser)]
struct RemoveArgs {
    #[command(flatten)]
    connect: crate::ConnectArgs,
    /// Give up after this many seconds.
    #[arg(long = "timeout", default_value_t = 30.0)]
    timeout: f64,
    /// The member to remove: its address as `concoord status` lists it in
    /// `members` (e.g. 127.0.0.1:14001), or its `id` from `concoord status`
    /// (hexadecimal).
    #[arg(value_name = "MEMBER")]
    member: String,
}

pub fn run(args: AdminArgs) -> ExitCode {
    match args.command {
        AdminCmd::Remove(args) => run_remove(args),
        AdminCmd::Snapshot(args) => run_snapshot(args),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| super::fail(format!("cannot start a runtime: {e}")))
}

fn positive_seconds(secs: f64) -> Result<Duration, ExitCode> {
    if secs.is_finite() && secs > 0.0 {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(error(&ClientError::Invalid(format!(
            "--timeout must be a positive number of seconds, got {secs}"
        ))))
    }
}

/// Exit 0 when every replica wrote its snapshot, 1 otherwise.
fn run_snapshot(args: SnapshotArgs) -> ExitCode {
    let addrs = match parse_addresses(&args.connect.replicas) {
        Ok(a) => a,
        Err(e) => return error(&ClientError::Invalid(format!("-r: {}", e.message()))),
    };
    let timeout = match positive_seconds(args.timeout) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let tls = match args.connect.tls.client_tls() {
        Ok(tls) => tls,
        Err(e) => return error(&ClientError::Invalid(e)),
    };
    let access = concoord::client::Access {
        token: &args.connect.token,
        tls: tls.as_ref(),
    };
    let mut all_ok = true;
    for addr in &addrs {
        let line = match runtime.block_on(take_snapshot(addr, access, timeout)) {
            Ok(slot) => serde_json::json!({"address": addr, "slot": slot}),
            Err(e) => {
                all_ok = false;
                serde_json::json!({"address": addr, "error": super::error_json(&e)["error"]})
            }
        };
        println!("{line}");
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Errors as the other client commands print them: JSON on stderr; exit 2
/// for input refused before asking the group, 1 for what the group said.
fn error(e: &ClientError) -> ExitCode {
    eprintln!("{}", super::error_json(e));
    match e {
        ClientError::Invalid(_) => ExitCode::from(2),
        _ => ExitCode::from(1),
    }
}

fn run_remove(args: RemoveArgs) -> ExitCode {
    let addrs = match parse_addresses(&args.connect.replicas) {
        Ok(a) => a,
        Err(e) => return error(&ClientError::Invalid(format!("-r: {}", e.message()))),
    };
    let member = match MemberRef::parse(&args.member) {
        Ok(m) => m,
        Err(why) => return error(&ClientError::Invalid(format!("MEMBER: {why}"))),
    };
    let timeout = match positive_seconds(args.timeout) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let tls = match args.connect.tls.client_tls() {
        Ok(tls) => tls,
        Err(e) => return error(&ClientError::Invalid(e)),
    };
    let access = concoord::client::Access {
        token: &args.connect.token,
        tls: tls.as_ref(),
    };
    match runtime.block_on(remove_member(&addrs, access, &member, timeout)) {
        Ok((removed, members)) => {
            let out = serde_json::json!({
                "removed": {"address": removed.addr, "id": format!("{:x}", removed.id)},
                "members": members,
            });
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => error(&e),
    }
}
