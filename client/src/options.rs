//! How a client behaves: token, deadlines, resend and connect timeouts, TLS.

use std::time::Duration;

/// How a client behaves.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub token: String,
    /// A call that is not answered by then fails with `Unavailable`.
    pub deadline: Duration,
    /// Without an answer for this long, try another replica with the same id.
    pub resend_after: Duration,
    pub connect_timeout: Duration,
    /// After a deadline, how long a call that is cancelled may take to report
    /// the cancel's outcome before it fails with `Unavailable`.
    pub cancel_grace: Duration,
    /// While calls are outstanding, poll the connection for this long after
    /// the last frame before sleeping: a reply that comes within it skips the
    /// thread's wake-up (tens of µs on a VM). Zero (the default) never spins:
    /// a client that shares its cores with the replicas slows them down.
    pub spin: Duration,
    /// The session this client keeps with the group: what it holds (locks,
    /// permits, ephemeral entries) is released when the group has not heard
    /// from it for this long. `None` opens no session (nothing is released).
    /// The group bounds it (`concoord replica --session-ttl-min/-max`).
    pub session_ttl: Option<Duration>,
    /// Every call is sent allowing a stale read (`--stale`): a read-only
    /// method is answered by whichever replica this client talks to, from
    /// its own state, without a read-index round; that state may be behind
    /// the group's. Other methods go through the log as always. The default
    /// (false) reads are linearizable. [`crate::Client::call_raw_stale`]
    /// asks for it per call.
    pub stale_reads: bool,
    /// TLS on every link, trusting replicas by these settings; `None`
    /// (the default) speaks plain TCP.
    pub tls: Option<crate::ClientTls>,
}

/// The default session TTL: 10 s rides out several leader elections
/// (about half a second each) and a long GC pause, and still hands a dead
/// client's lock to the next waiter within seconds, as ZooKeeper's and
/// etcd's usual settings (a few to tens of seconds) do.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(10);

/// Where a client's session stands, as far as the client knows
/// ([`crate::Client::session`] watches it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// No session: none asked for (`session_ttl: None`), or no call made yet.
    None,
    /// Opening: asked for with the first call, not confirmed yet.
    Opening,
    /// The group confirmed it; keep-alives keep it.
    Open,
    /// The group refused to open it (the TTL outside its bounds); calls fail
    /// with this message.
    Refused(String),
    /// The group ended it: whatever it held is released, and every further
    /// call fails with kind `SessionExpired`. Make a new client to go on.
    Expired,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            token: String::new(),
            deadline: Duration::from_secs(30),
            resend_after: Duration::from_millis(1_000),
            connect_timeout: Duration::from_millis(1_000),
            cancel_grace: Duration::from_secs(2),
            spin: Duration::ZERO,
            session_ttl: Some(DEFAULT_SESSION_TTL),
            stale_reads: false,
            tls: None,
        }
    }
}
