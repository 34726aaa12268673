//! `concoord logdaemon`: collect the log records of replicas and clients started with -l.

use crate::fail;
use clap::Parser;
use std::io::Write;
use std::process::ExitCode;

#[derive(Parser)]
pub(crate) struct LogdaemonArgs {
    /// Address to listen on.
    #[arg(short = 'a', long = "addr", default_value = "127.0.0.1")]
    pub(crate) addr: String,
    /// Port to listen on; 0 lets the OS pick one (printed as `listening on HOST:PORT`).
    #[arg(short = 'p', long = "port", default_value_t = 14500)]
    pub(crate) port: u16,
}

pub(crate) fn run_logdaemon(args: LogdaemonArgs) -> ExitCode {
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
