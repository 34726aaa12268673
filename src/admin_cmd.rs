//! `concoord admin`: operations on the group itself rather than its objects.

use concoord::client::{parse_addresses, remove_member};
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
}

#[derive(clap::Parser)]
struct RemoveArgs {
    /// Replica addresses, HOST:PORT[,HOST:PORT...]; one live member is enough.
    #[arg(short = 'r', long = "replicas")]
    replicas: String,
    #[arg(short = 't', long = "token", default_value = "")]
    token: String,
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
    let addrs = match parse_addresses(&args.replicas) {
        Ok(a) => a,
        Err(e) => return error(&ClientError::Invalid(format!("-r: {}", e.message()))),
    };
    let member = match MemberRef::parse(&args.member) {
        Ok(m) => m,
        Err(why) => return error(&ClientError::Invalid(format!("MEMBER: {why}"))),
    };
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        return error(&ClientError::Invalid(format!(
            "--timeout must be a positive number of seconds, got {}",
            args.timeout
        )));
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return super::fail(format!("cannot start a runtime: {e}")),
    };
    let timeout = Duration::from_secs_f64(args.timeout);
    match runtime.block_on(remove_member(&addrs, &args.token, &member, timeout)) {
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
