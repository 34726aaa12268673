//! ConCoord's TenCounter walk-through in Rust (the README's walk-through).
//!
//! ```text
//! cargo run --example tencounter -- replica -p 14000
//! cargo run --example tencounter -- replica -p 14001 -b 127.0.0.1:14000
//! cargo run --example tencounter -- replica -p 14002 -b 127.0.0.1:14000
//! cargo run --example tencounter -- client 127.0.0.1:14000,127.0.0.1:14001,127.0.0.1:14002
//! ```
//!
//! `replica` takes the flags of `concoord replica` (without `-o`: the object
//! is TenCounter) and serves it through `concoord::serve`. `client` uses the
//! proxy that `concoord object -o tencounter.TenCounter -p 1` wrote beside the
//! type (tencounter_proxy.rs).

mod tencounter;
mod tencounter_proxy;

use std::process::ExitCode;
use tencounter::TenCounter;
use tencounter_proxy::TenCounterBlockingProxy;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("replica") => concoord::serve::<TenCounter>(),
        Some("client") => match args.get(2) {
            Some(addrs) => client(addrs),
            None => usage(),
        },
        _ => usage(),
    }
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: tencounter replica [-a ADDR] [-p PORT] [-b HOST:PORT,...] [-t TOKEN]\n       \
         tencounter client HOST:PORT[,HOST:PORT...]"
    );
    ExitCode::from(2)
}

fn client(addrs: &str) -> ExitCode {
    match run_client(addrs) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tencounter: {e}");
            ExitCode::from(1)
        }
    }
}

fn run_client(addrs: &str) -> Result<(), concoord::ClientError> {
    // The proxy's constructor connects to the replicas, as in ConCoord.
    let counter = TenCounterBlockingProxy::new(addrs)?;
    counter.increment()?;
    counter.increment()?;
    counter.decrement()?;
    println!("after +10 +10 -10: {}", counter.getvalue()?);
    // ConCoord's __concoordinit__: re-run the constructor on the replicated state.
    counter.concoord_init(Some(100))?;
    println!("after concoord_init(100): {}", counter.getvalue()?);
    counter.concoord_init(None)?;
    println!("after concoord_init(): {}", counter.getvalue()?);
    Ok(())
}
