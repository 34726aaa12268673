//! The seed's blocking-object walk-through in Rust: a user-written
//! Semaphore around the threading library's semaphore (semaphore.rs), its
//! blocking proxy generated with `-p 1` (semaphore_proxy.rs), a replica
//! serving it by ConCoord's dotted name, and two clients where the second
//! blocks until the first releases.
//!
//! ```text
//! cargo run --example semaphore -- replica -o concoord.object.semaphore.Semaphore -a 127.0.0.1 -p 14000
//! cargo run --example semaphore -- replica -o concoord.object.semaphore.Semaphore -p 14001 -b 127.0.0.1:14000
//! cargo run --example semaphore -- replica -o concoord.object.semaphore.Semaphore -p 14002 -b 127.0.0.1:14000
//! cargo run --example semaphore -- client 127.0.0.1:14000
//! ```

mod semaphore;
mod semaphore_proxy;

use semaphore::Semaphore;
use semaphore_proxy::SemaphoreBlockingProxy;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("replica") => concoord::serve::<Semaphore>(),
        Some("client") => match args.get(2) {
            Some(addrs) => match walk_through(addrs) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("semaphore: {e}");
                    ExitCode::from(1)
                }
            },
            None => usage(),
        },
        _ => usage(),
    }
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: semaphore replica [-o concoord.object.semaphore.Semaphore] [-a ADDR] [-p PORT] [-b HOST:PORT,...]\n       \
         semaphore client HOST:PORT[,HOST:PORT...]"
    );
    ExitCode::from(2)
}

/// The seed's session, with a second client that blocks.
fn walk_through(addrs: &str) -> Result<(), concoord::ClientError> {
    // >>> s = Semaphore("127.0.0.1:14000")
    let s = SemaphoreBlockingProxy::new(addrs)?;
    // >>> s.acquire()
    println!(">>> s.acquire()\n{}", s.acquire(None)?);
    // >>> s
    println!(">>> s\n{}", s.concoord_str()?);
    // A second client: its acquire parks in the semaphore's wait queue.
    let addrs_for_second = addrs.to_string();
    let second = std::thread::spawn(move || {
        let s2 = SemaphoreBlockingProxy::new(&addrs_for_second)?;
        s2.acquire(None)
    });
    let waiting = wait_for_waiter(&s)?;
    println!("second client waits: {waiting}");
    // >>> s.release()
    s.release()?;
    println!(">>> s.release()");
    let granted = second.join().expect("the second client's thread")?;
    println!("second client's acquire returned {granted}");
    println!(">>> s\n{}", s.concoord_str()?);
    Ok(())
}

/// Polls the description until the second client is queued (or 10 s pass).
fn wait_for_waiter(s: &SemaphoreBlockingProxy) -> Result<String, concoord::ClientError> {
    let mut text = s.concoord_str()?;
    for _ in 0..200 {
        if text.contains("waiting=1") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        text = s.concoord_str()?;
    }
    Ok(text)
}
