//! The nemesis's load: client threads (one `BlockingClient` or `Lock`
//! each) recording every call in a history, and the client nemesis's
//! victims, `concoord call` subprocesses killed mid-call.

use super::support::BIN;
use super::Rng;
use concoord::history::{value, History, Operation, PendingOp};
use concoord::threading::blocking::Lock;
use concoord::{BlockingClient, ClientError, ClientOptions};
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Client call deadline under load.
pub const CALL_DEADLINE: Duration = Duration::from_secs(3);
/// The session TTL of the `concoord call` subprocesses the client nemesis
/// kills: a Lock one of them held comes back this long after its death.
pub const KILLED_SESSION_TTL: &str = "2";

pub fn options(deadline: Duration) -> ClientOptions {
    ClientOptions {
        deadline,
        ..ClientOptions::default()
    }
}

/// Completes `op` from a call's result; whether the outcome is unknown.
pub fn finish<T: serde::Serialize>(op: PendingOp, r: &Result<T, ClientError>) -> bool {
    match r {
        Ok(v) => {
            op.ok(v);
            false
        }
        Err(e) => {
            let info = matches!(e.kind(), "Unavailable" | "Invalid");
            op.finish_error(e.kind(), &e.message());
            info
        }
    }
}

/// A client's name in the history: after an operation with an unknown
/// outcome (still pending, as far as the checkers know) it continues under
/// a new name, as Jepsen does.
struct Name {
    base: String,
    generation: u32,
}

impl Name {
    fn get(&self) -> String {
        format!("{}.{}", self.base, self.generation)
    }
}

/// What a counter client does.
pub struct CounterLoad {
    /// Its process names in the history: `{prefix}{id}`.
    pub prefix: &'static str,
    /// The share of its calls that increment; the rest read.
    pub increments: f64,
    /// Whether it keeps a session (a session's opening call is a write, so
    /// a client with one goes to the leader at once).
    pub session: bool,
}

/// Mostly increments, with reads, on a session: it follows the leader.
pub const COUNTER_LOAD: CounterLoad = CounterLoad {
    prefix: "c",
    increments: 0.7,
    session: true,
};

/// Only reads, with no session: started at the member listed first, it
/// stays on whichever replica it reaches (a follower, most often), so
/// follower reads (a read index asked of the leader) face every fault.
pub const FOLLOWER_READER_LOAD: CounterLoad = CounterLoad {
    prefix: "r",
    increments: 0.0,
    session: false,
};

pub fn counter_client(
    id: usize,
    addrs: String,
    history: History,
    stop: Arc<AtomicBool>,
    seed: u64,
    load: CounterLoad,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut options = options(CALL_DEADLINE);
        if !load.session {
            options.session_ttl = None;
        }
        let client = BlockingClient::new(&addrs, options).expect("valid addresses");
        let mut rng = Rng(seed);
        let mut name = Name {
            base: format!("{}{id}", load.prefix),
            generation: 0,
        };
        while !stop.load(Ordering::SeqCst) {
            let info = if load.increments > 0.0 && rng.chance(load.increments) {
                let op = history.invoke(name.get(), "increment", vec![]);
                finish(op, &client.call::<_, ()>("increment", ()))
            } else {
                let op = history.invoke(name.get(), "getvalue", vec![]);
                finish(op, &client.call::<_, i64>("getvalue", ()))
            };
            if info {
                name.generation += 1;
            }
            std::thread::sleep(Duration::from_millis(rng.below(20)));
        }
    })
}

pub fn lock_client(
    id: usize,
    addrs: String,
    history: History,
    stop: Arc<AtomicBool>,
    last_acquired: Arc<AtomicU64>,
    epoch: Instant,
    seed: u64,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let lock = Lock::new(&addrs, options(CALL_DEADLINE)).expect("valid addresses");
        let mut rng = Rng(seed);
        let mut name = Name {
            base: format!("l{id}"),
            generation: 0,
        };
        let now_ms = || epoch.elapsed().as_millis() as u64;
        let release = |name: &mut Name| {
            let op = history.invoke(name.get(), "release", vec![]);
            if finish(op, &lock.release()) {
                name.generation += 1;
            }
        };
        while !stop.load(Ordering::SeqCst) {
            let timeout = rng.millis(200, 1_000);
            let op = history.invoke(
                name.get(),
                "acquire",
                vec![value(true), value(timeout.as_secs_f64())],
            );
            let r = lock.acquire_timeout(timeout);
            let acquired = matches!(r, Ok(true));
            let info = finish(op, &r);
            if acquired {
                last_acquired.store(now_ms(), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(rng.below(30)));
                release(&mut name);
            } else if info {
                // We may hold it: release (anyone may release a Lock; the
                // checkers know that a release may end anyone's hold).
                name.generation += 1;
                release(&mut name);
            } else {
                // If nobody got the lock for a long time, it may be held by
                // an acquire whose outcome its client never learnt (granted
                // after it gave up), or by a killed client whose session has
                // not expired yet: release it, recorded like any release.
                let last = last_acquired.load(Ordering::SeqCst);
                if now_ms().saturating_sub(last) > 5_000
                    && last_acquired
                        .compare_exchange(last, now_ms(), Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                {
                    release(&mut name);
                }
                std::thread::sleep(Duration::from_millis(rng.below(50)));
            }
        }
    })
}

/// One call made by a `concoord call` subprocess, recorded in a history.
pub struct CliCall {
    child: Child,
    op: Option<PendingOp>,
    history: History,
    client: String,
    /// Whether its end (exit or kill) ends a session that may hold a lock.
    session: bool,
}

/// What became of a call the client nemesis made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CliOutcome {
    /// It finished before the kill and printed its result.
    Done,
    /// It finished before the kill, with an error (recorded as unknown).
    Failed,
    /// Killed mid-call: recorded as unknown (may or may not take effect).
    Killed,
}

impl CliCall {
    /// Starts `concoord call -r ADDRS METHOD` as client `client`, with a
    /// short session TTL; the invocation is recorded before the spawn.
    /// With `session`, its end is recorded as a session end (what it held
    /// may be released from then on: a Lock it acquired comes back when its
    /// session expires, as nobody releases it).
    pub fn spawn(
        addrs: &str,
        history: &History,
        client: &str,
        method: &str,
        session: bool,
    ) -> CliCall {
        let op = history.invoke(client, method, vec![]);
        let child = Command::new(BIN)
            .args(["call", "-r", addrs, "--timeout", "10"])
            .args(["--session-ttl", KILLED_SESSION_TTL, method])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the concoord binary runs");
        CliCall {
            child,
            op: Some(op),
            history: history.clone(),
            client: client.to_string(),
            session,
        }
    }

    /// Records the end of the call; `killed`: by us, mid-call.
    fn record(&mut self, killed: bool, success: bool) -> CliOutcome {
        let op = self.op.take().expect("recorded once");
        let mut out = String::new();
        if let Some(mut pipe) = self.child.stdout.take() {
            let _ = pipe.read_to_string(&mut out);
        }
        let outcome = if killed {
            op.info_because("client killed mid-call");
            CliOutcome::Killed
        } else if let (true, Ok(v)) = (success, serde_json::from_str::<serde_json::Value>(&out)) {
            op.ok(v);
            CliOutcome::Done
        } else {
            op.info_because("concoord call failed");
            CliOutcome::Failed
        };
        if self.session {
            self.history.session_end(&self.client);
        }
        outcome
    }

    /// If the subprocess has exited, reaps it and records how the call
    /// ended (its printed result, or unknown on an error).
    pub fn poll(&mut self) -> Option<CliOutcome> {
        self.op.as_ref()?;
        let status = self.child.try_wait().expect("try_wait")?;
        Some(self.record(false, status.success()))
    }

    /// SIGKILLs the subprocess unless it already exited, reaps it, and
    /// records the call: unknown if it was killed.
    pub fn kill(mut self) -> Option<CliOutcome> {
        if let Some(outcome) = self.poll() {
            return Some(outcome);
        }
        self.op.as_ref()?;
        let _ = self.child.kill();
        let _ = self.child.wait();
        Some(self.record(true, false))
    }
}

impl Drop for CliCall {
    fn drop(&mut self) {
        if self.op.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.record(true, false);
        }
    }
}

/// The Lock history's operations for the linearizability check: each
/// session end (a killed client's session expiring, which releases what it
/// held) becomes a `release` of unknown outcome invoked then, by a client
/// of its own — the Lock model knows no sessions, and an unknown release
/// may take effect at any later time, or never.
pub fn with_session_ends(history: &History) -> Vec<Operation> {
    let mut ops = history.operations();
    for (client, at) in history.session_ends() {
        ops.push(Operation::info(
            format!("{client}.expiry"),
            "release",
            vec![],
            at,
        ));
    }
    History::from_operations(ops).operations()
}
