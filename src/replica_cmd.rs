//! `concoord replica`: run a replica of a built-in object.

#![cfg(feature = "server")]

use crate::fail;
use clap::Parser;
use std::process::ExitCode;

#[cfg(feature = "server")]
#[derive(Parser)]
pub(crate) struct ReplicaArgs {
    /// The object: a built-in short name (Counter, Lock, Semaphore, ...) or
    /// ConCoord's dotted path (concoord.object.counter.Counter).
    #[arg(short = 'o', long = "object")]
    pub(crate) object: String,
    /// Also serve ConCoord 1.1's client protocol on this port (same -a), so
    /// ConCoord's own Python proxies work against the group. Needs a fixed -p.
    #[arg(long = "concoord-port")]
    pub(crate) concoord_port: Option<u16>,
    #[command(flatten)]
    pub(crate) common: concoord::serve::ServeArgs,
}

#[cfg(feature = "server")]
pub(crate) fn run_replica(args: ReplicaArgs) -> ExitCode {
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
        let tls = match args.common.tls() {
            Ok(tls) => tls.map(|tls| tls.peer_client().clone()),
            Err(e) => return fail(e),
        };
        match crate::concoord11::spawn(listen, replica, args.common.token.clone(), tls) {
            Ok(bound) => log::info!("ConCoord 1.1 clients on {bound}"),
            Err(e) => return fail(format!("--concoord-port {port}: {e}")),
        }
    }
    concoord::serve::run_replica(object, args.common)
}
