//! A small harness for the multi-process tests: real `concoord replica`
//! processes on 127.0.0.1, formed into a group with `-b`, observed through the
//! status protocol, and crashed, paused, resumed, restarted or terminated on
//! demand. Every child is killed and reaped when the [`Cluster`] is dropped,
//! also when a test panics; a panicking test also gets each replica's stderr
//! tail and status printed, for diagnosis.

#![allow(dead_code)]

use concoord::actors::client::fetch_status;
use concoord::actors::wire::StatusInfo;
use concoord::{BlockingClient, ClientOptions};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_concoord");

/// How long a replica may take to print `listening on`.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a group may take to form (every member joined and agreeing).
pub const FORM_TIMEOUT: Duration = Duration::from_secs(20);
/// How long live replicas may take to agree on the leader and executed slot.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(20);
/// One status request.
const STATUS_TIMEOUT: Duration = Duration::from_millis(1_000);
/// Stderr lines kept per replica.
const STDERR_TAIL: usize = 200;
/// Between two polls of the group's status.
const POLL: Duration = Duration::from_millis(50);

/// The state of one replica process as the harness drives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Running,
    /// SIGSTOPped; it answers nothing until [`Cluster::cont`].
    Stopped,
    /// Killed or exited, and reaped.
    Dead,
}

/// One `concoord replica` process.
pub struct Proc {
    pub addr: String,
    child: Child,
    stderr: Arc<Mutex<VecDeque<String>>>,
    state: State,
    /// Earlier incarnations' stderr (a restart keeps the history).
    history: Vec<String>,
}

impl Proc {
    pub fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    pub fn stderr_tail(&self) -> String {
        let mut lines = self.history.clone();
        lines.extend(self.stderr.lock().unwrap().iter().cloned());
        lines.join("\n")
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: plain kill(2) on our own child's pid; the child is not reaped
        // until `reap`, so the pid cannot have been reused.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.pid());
    }

    /// Reaps the process if it has exited on its own; its status then.
    pub fn try_exited(&mut self) -> Option<ExitStatus> {
        if self.state == State::Dead {
            return None;
        }
        let status = self.child.try_wait().ok()??;
        self.state = State::Dead;
        Some(status)
    }

    /// Kills (SIGCONT first if stopped) and reaps, unless already dead.
    pub fn kill_and_reap(&mut self) {
        if self.state == State::Dead {
            return;
        }
        if self.state == State::Stopped {
            // SAFETY: see `signal`.
            unsafe { libc::kill(self.pid(), libc::SIGCONT) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.state = State::Dead;
    }
}

/// Why a replica did not start: its exit status (if it exited) and stderr.
#[derive(Debug)]
pub struct StartFailure {
    pub status: Option<ExitStatus>,
    pub stderr: String,
}

/// Spawns `concoord replica ARGS` and waits (bounded) for `listening on HOST:PORT`.
pub fn spawn_replica(args: &[String]) -> Result<Proc, StartFailure> {
    spawn_replica_as(args, None)
}

/// Flags every replica these tests start gets besides its own, from
/// `CONCOORD_TEST_REPLICA_ARGS` (split at whitespace; one it already has
/// is not given twice): e.g. `--thrifty` runs the multi-process tests and
/// the nemesis with thrifty leaders.
fn replica_args_from_env() -> Vec<String> {
    std::env::var("CONCOORD_TEST_REPLICA_ARGS")
        .map(|args| args.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// [`spawn_replica`], running the replica as user (and group) `uid` when
/// given (the caller must be allowed to switch, i.e. root): lets iptables
/// `-m owner --uid-owner` tell one replica's packets from another's.
pub fn spawn_replica_as(args: &[String], uid: Option<u32>) -> Result<Proc, StartFailure> {
    let mut command = Command::new(BIN);
    command
        .arg("replica")
        .args(args)
        .args(
            replica_args_from_env()
                .into_iter()
                .filter(|f| !args.contains(f)),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(uid) = uid {
        use std::os::unix::process::CommandExt;
        command.uid(uid).gid(uid);
    }
    let mut child = command.spawn().expect("the concoord binary runs");
    let stderr = Arc::new(Mutex::new(VecDeque::new()));
    {
        let pipe = child.stderr.take().expect("piped stderr");
        let tail = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut tail = tail.lock().unwrap();
                if tail.len() == STDERR_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
    }
    let (tx, rx) = mpsc::channel();
    {
        let pipe = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            let mut lines = BufReader::new(pipe).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the replica never blocks on a full pipe.
            for _ in lines {}
        });
    }
    let first = rx.recv_timeout(START_TIMEOUT);
    let addr = first
        .ok()
        .and_then(|line| line.strip_prefix("listening on ").map(str::to_string));
    match addr {
        Some(addr) => Ok(Proc {
            addr: addr.trim().to_string(),
            child,
            stderr,
            state: State::Running,
            history: Vec::new(),
        }),
        None => {
            // It exited, printed something else, or said nothing in time.
            let deadline = Instant::now() + Duration::from_secs(2);
            let mut status = None;
            while Instant::now() < deadline {
                if let Ok(Some(s)) = child.try_wait() {
                    status = Some(s);
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if status.is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
            // Give the stderr reader a moment to see the pipe close.
            std::thread::sleep(Duration::from_millis(50));
            let stderr = stderr.lock().unwrap().iter().cloned().collect::<Vec<_>>();
            Err(StartFailure {
                status,
                stderr: stderr.join("\n"),
            })
        }
    }
}

/// A group of real replica processes.
pub struct Cluster {
    pub procs: Vec<Proc>,
    pub token: String,
    object: String,
    rt: tokio::runtime::Runtime,
    /// Per replica index: the address it listens on (none: 127.0.0.1).
    hosts: Vec<String>,
    /// Per replica index: the user it runs as (none: ours).
    uids: Vec<u32>,
    /// Durable mode: replica `i` keeps its data dir in `root/r{i}`.
    data_root: Option<std::path::PathBuf>,
    /// More flags for every replica.
    extra_args: Vec<String>,
    /// What the harness's clients and status requests trust replicas by
    /// (a TLS group); `None` is plain TCP.
    tls: Option<concoord::client::ClientTls>,
}

impl Cluster {
    /// Starts `n` Counter replicas and waits until the group has formed.
    pub fn start(n: usize) -> Cluster {
        Self::start_with(n, "Counter", "")
    }

    /// Starts `n` replicas of `object` (with `token` unless empty): the first
    /// founds the group, the others join it with `-b`; returns once every
    /// replica reports the full member list, a common leader and role != joining.
    pub fn start_with(n: usize, object: &str, token: &str) -> Cluster {
        Self::start_custom(n, object, token, Vec::new(), Vec::new())
    }

    /// [`Cluster::start_with`], replica `i` listening on `hosts[i]` (port 0)
    /// and running as user `uids[i]` (either list may be empty: 127.0.0.1,
    /// and our own user). A replica keeps its host and user across restarts.
    pub fn start_custom(
        n: usize,
        object: &str,
        token: &str,
        hosts: Vec<String>,
        uids: Vec<u32>,
    ) -> Cluster {
        assert!(n >= 1);
        assert!(hosts.is_empty() || hosts.len() == n, "one host per replica");
        assert!(uids.is_empty() || uids.len() == n, "one uid per replica");
        let mut cluster = Cluster::unformed(object);
        cluster.token = token.to_string();
        cluster.hosts = hosts;
        cluster.uids = uids;
        cluster.form(n);
        cluster
    }

    /// `n` Counter replicas, each also given `extra` flags.
    pub fn start_flags(n: usize, extra: &[&str]) -> Cluster {
        let mut cluster = Cluster::unformed("Counter");
        cluster.extra_args = extra.iter().map(|s| s.to_string()).collect();
        cluster.form(n);
        cluster
    }

    /// `n` Counter replicas, each also given `extra` flags (the TLS ones:
    /// every link is TLS), the harness trusting them by `tls`.
    pub fn start_tls(n: usize, extra: &[String], tls: concoord::client::ClientTls) -> Cluster {
        let mut cluster = Cluster::unformed("Counter");
        cluster.extra_args = extra.to_vec();
        cluster.tls = Some(tls);
        cluster.form(n);
        cluster
    }

    /// `n` durable replicas (`-w`), replica `i` with its data dir in
    /// `root/r{i}`, each also given `extra` flags.
    pub fn start_durable(
        n: usize,
        object: &str,
        root: &std::path::Path,
        extra: &[&str],
    ) -> Cluster {
        let mut cluster = Cluster::unformed(object);
        cluster.data_root = Some(root.to_path_buf());
        cluster.extra_args = extra.iter().map(|a| a.to_string()).collect();
        cluster.form(n);
        cluster
    }

    /// No replicas yet: plain TCP, no token, on 127.0.0.1 as our own user.
    fn unformed(object: &str) -> Cluster {
        Cluster {
            procs: Vec::new(),
            token: String::new(),
            object: object.to_string(),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime"),
            hosts: Vec::new(),
            uids: Vec::new(),
            data_root: None,
            extra_args: Vec::new(),
            tls: None,
        }
    }

    /// The data dir of replica `i` (durable clusters only).
    pub fn data_dir(&self, i: usize) -> std::path::PathBuf {
        self.data_root
            .as_ref()
            .expect("a durable cluster")
            .join(format!("r{i}"))
    }

    fn form(&mut self, n: usize) {
        let cluster = self;
        let first = cluster.spawn(0, 0, None);
        cluster.procs.push(first);
        let founder = cluster.procs[0].addr.clone();
        for i in 1..n {
            let p = cluster.spawn(i, 0, Some(&founder));
            cluster.procs.push(p);
        }
        cluster.wait_formed(FORM_TIMEOUT);
    }

    fn replica_args(&self, i: usize, port: u16, bootstrap: Option<&str>) -> Vec<String> {
        let host = self.hosts.get(i).map_or("127.0.0.1", String::as_str);
        let mut args: Vec<String> = vec![
            "-o".into(),
            self.object.clone(),
            "-a".into(),
            host.into(),
            "-p".into(),
            port.to_string(),
        ];
        if let Some(b) = bootstrap {
            args.push("-b".into());
            args.push(b.into());
        }
        if !self.token.is_empty() {
            args.push("-t".into());
            args.push(self.token.clone());
        }
        if self.data_root.is_some() {
            args.push("-w".into());
            args.push("--data-dir".into());
            args.push(self.data_dir(i).display().to_string());
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }

    fn spawn(&self, i: usize, port: u16, bootstrap: Option<&str>) -> Proc {
        let args = self.replica_args(i, port, bootstrap);
        match spawn_replica_as(&args, self.uids.get(i).copied()) {
            Ok(p) => p,
            Err(f) => panic!(
                "replica on port {port} did not start (exit {:?}); stderr:\n{}",
                f.status, f.stderr
            ),
        }
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn addr(&self, i: usize) -> &str {
        &self.procs[i].addr
    }

    pub fn state(&self, i: usize) -> State {
        self.procs[i].state
    }

    /// Every address, comma separated (a client's bootstrap string).
    pub fn addrs(&self) -> String {
        self.procs
            .iter()
            .map(|p| p.addr.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Indexes of replicas that are running (not stopped, not dead).
    pub fn live(&self) -> Vec<usize> {
        (0..self.procs.len())
            .filter(|&i| self.procs[i].state == State::Running)
            .collect()
    }

    pub fn index_of(&self, addr: &str) -> Option<usize> {
        self.procs.iter().position(|p| p.addr == addr)
    }

    /// Client options with this cluster's token and a bounded deadline.
    pub fn client_options(&self, deadline: Duration) -> ClientOptions {
        ClientOptions {
            token: self.token.clone(),
            deadline,
            tls: self.tls.clone(),
            ..ClientOptions::default()
        }
    }

    /// A blocking client that knows every address.
    pub fn client(&self) -> BlockingClient {
        BlockingClient::new(&self.addrs(), self.client_options(Duration::from_secs(20)))
            .expect("valid addresses")
    }

    /// What a one-off request to a replica presents (token, TLS).
    pub fn access(&self) -> concoord::client::Access<'_> {
        concoord::client::Access {
            token: &self.token,
            tls: self.tls.as_ref(),
        }
    }

    /// One replica's status (`Err` if it does not answer within a second).
    pub fn status(&self, i: usize) -> Result<StatusInfo, String> {
        let addr = self.procs[i].addr.clone();
        self.rt
            .block_on(fetch_status(&addr, self.access(), STATUS_TIMEOUT))
            .map_err(|e| e.to_string())
    }

    /// The status of every live replica, in index order.
    pub fn live_statuses(&self) -> Vec<(usize, Result<StatusInfo, String>)> {
        self.live()
            .into_iter()
            .map(|i| (i, self.status(i)))
            .collect()
    }

    /// Polls `check` over the live replicas' statuses until it returns
    /// `Some`, or panics with `what` and the last statuses after `timeout`.
    pub fn poll<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&[(usize, StatusInfo)]) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let statuses = self.live_statuses();
            let ok: Vec<(usize, StatusInfo)> = statuses
                .iter()
                .filter_map(|(i, s)| s.as_ref().ok().map(|s| (*i, s.clone())))
                .collect();
            if ok.len() == statuses.len() {
                if let Some(t) = check(&ok) {
                    return t;
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; last statuses:\n{}",
                    describe(&statuses)
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until every live replica reports the full member list (every
    /// address of this cluster), role != joining, and one common leader.
    pub fn wait_formed(&self, timeout: Duration) {
        let mut want: Vec<String> = self.procs.iter().map(|p| p.addr.clone()).collect();
        want.sort();
        self.poll("the group to form", timeout, |ok| {
            let leader = ok[0].1.leader.clone()?;
            ok.iter()
                .all(|(_, s)| {
                    let mut members = s.members.clone();
                    members.sort();
                    members == want && s.role != "joining" && s.leader.as_ref() == Some(&leader)
                })
                .then_some(())
        })
    }

    /// The index of the active leader: a live replica whose role is
    /// "leader" and whom every live replica names as leader.
    pub fn leader(&self) -> usize {
        self.poll("an agreed leader", CONVERGE_TIMEOUT, |ok| {
            let (i, _) = ok.iter().find(|(_, s)| s.role == "leader")?;
            let addr = &self.procs[*i].addr;
            ok.iter()
                .all(|(_, s)| s.leader.as_deref() == Some(addr.as_str()))
                .then_some(*i)
        })
    }

    /// A live replica that is not the leader.
    pub fn follower(&self) -> usize {
        let leader = self.leader();
        *self
            .live()
            .iter()
            .find(|&&i| i != leader)
            .expect("a live follower")
    }

    /// Waits until every live replica reports the same executed slot and the
    /// same leader, which is one of them; returns their statuses.
    pub fn wait_converged(&self) -> Vec<(usize, StatusInfo)> {
        self.wait_converged_within(CONVERGE_TIMEOUT)
    }

    pub fn wait_converged_within(&self, timeout: Duration) -> Vec<(usize, StatusInfo)> {
        self.poll("live replicas to converge", timeout, |ok| {
            let first = &ok[0].1;
            let leader = first.leader.clone()?;
            let leader_live = ok
                .iter()
                .any(|(i, s)| self.procs[*i].addr == leader && s.role == "leader");
            let same = ok.iter().all(|(_, s)| {
                s.executed_slot == first.executed_slot
                    && s.leader.as_ref() == Some(&leader)
                    && s.role != "joining"
            });
            (leader_live && same).then(|| ok.to_vec())
        })
    }

    /// SIGKILLs replica `i` and reaps it.
    pub fn kill9(&mut self, i: usize) {
        assert_ne!(
            self.procs[i].state,
            State::Dead,
            "replica {i} is already dead"
        );
        self.procs[i].kill_and_reap();
    }

    /// SIGSTOPs replica `i`.
    pub fn stop(&mut self, i: usize) {
        assert_eq!(self.procs[i].state, State::Running);
        self.procs[i].signal(libc::SIGSTOP);
        self.procs[i].state = State::Stopped;
    }

    /// SIGCONTs replica `i`.
    pub fn cont(&mut self, i: usize) {
        assert_eq!(self.procs[i].state, State::Stopped);
        self.procs[i].signal(libc::SIGCONT);
        self.procs[i].state = State::Running;
    }

    /// SIGTERMs replica `i` and waits (at most `timeout`) for it to exit;
    /// returns its exit status, or `None` if it was still running (it is
    /// then killed).
    pub fn terminate(&mut self, i: usize, timeout: Duration) -> Option<ExitStatus> {
        assert_eq!(self.procs[i].state, State::Running);
        self.procs[i].signal(libc::SIGTERM);
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.procs[i].child.try_wait() {
                self.procs[i].state = State::Dead;
                return Some(status);
            }
            if Instant::now() >= deadline {
                self.procs[i].kill_and_reap();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Restarts dead replica `i` on its old address, joining through another
    /// live member with `-b`; does not wait for it to catch up.
    pub fn restart(&mut self, i: usize) {
        assert_eq!(self.procs[i].state, State::Dead, "restart a dead replica");
        let via = self
            .live()
            .into_iter()
            .find(|&j| j != i)
            .map(|j| self.procs[j].addr.clone())
            .expect("a live member to join through");
        self.respawn(i, Some(via));
    }

    /// Restarts dead replica `i` on its old address, joining through
    /// replica `via` with `-b`; does not wait for it to catch up.
    pub fn restart_via(&mut self, i: usize, via: usize) {
        assert_eq!(self.procs[i].state, State::Dead, "restart a dead replica");
        assert_ne!(i, via, "join through another member");
        let via = self.procs[via].addr.clone();
        self.respawn(i, Some(via));
    }

    /// Whether replica `i` has exited on its own (e.g. removed from the
    /// group); if so it is reaped, marked dead, and its status returned.
    pub fn reap_if_exited(&mut self, i: usize) -> Option<ExitStatus> {
        if self.procs[i].state == State::Dead {
            return None;
        }
        let status = self.procs[i].child.try_wait().ok()??;
        self.procs[i].state = State::Dead;
        Some(status)
    }

    /// Restarts dead durable replica `i` from its data dir, on its old
    /// address and without `-b`; does not wait for it to catch up.
    pub fn restart_from_disk(&mut self, i: usize) {
        assert_eq!(self.procs[i].state, State::Dead, "restart a dead replica");
        self.respawn(i, None);
    }

    /// SIGKILLs every live or stopped replica (signals first, then reaps).
    pub fn kill9_all(&mut self) {
        for p in &self.procs {
            if p.state != State::Dead {
                // SAFETY: see `Proc::signal`; not reaped yet.
                unsafe { libc::kill(p.pid(), libc::SIGKILL) };
            }
        }
        for p in &mut self.procs {
            p.kill_and_reap();
        }
    }

    fn respawn(&mut self, i: usize, via: Option<String>) {
        let port: u16 = self.procs[i]
            .addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .expect("HOST:PORT");
        // The old port may be briefly unavailable; retry, bounded.
        let deadline = Instant::now() + Duration::from_secs(10);
        let proc = loop {
            let args = self.replica_args(i, port, via.as_deref());
            match spawn_replica_as(&args, self.uids.get(i).copied()) {
                Ok(p) => break p,
                Err(f) if f.stderr.contains("in use") && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(f) => panic!(
                    "replica {i} did not restart on port {port} (exit {:?}); stderr:\n{}",
                    f.status, f.stderr
                ),
            }
        };
        assert_eq!(
            proc.addr, self.procs[i].addr,
            "restarted on its old address"
        );
        let mut history = std::mem::take(&mut self.procs[i].history);
        history.push(self.procs[i].stderr_tail());
        history.push(match &via {
            Some(via) => format!("---- restarted (joining via {via}) ----"),
            None => "---- restarted from its data dir ----".to_string(),
        });
        self.procs[i] = Proc { history, ..proc };
    }

    /// Every replica's stderr tail and status, for a failure report.
    pub fn diagnostics(&self) -> String {
        let mut out = String::new();
        for (i, p) in self.procs.iter().enumerate() {
            out.push_str(&format!(
                "==== replica {i} {} ({:?}) stderr tail ====\n{}\n",
                p.addr,
                p.state,
                p.stderr_tail()
            ));
        }
        out.push_str("==== statuses of live replicas ====\n");
        out.push_str(&describe(&self.live_statuses()));
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Stopped replicas would not answer; the live ones may.
            eprintln!("{}", self.diagnostics());
        }
        for p in &mut self.procs {
            p.kill_and_reap();
        }
    }
}

fn describe(statuses: &[(usize, Result<StatusInfo, String>)]) -> String {
    statuses
        .iter()
        .map(|(i, s)| match s {
            Ok(s) => format!(
                "  [{i}] {} role={} leader={:?} members={:?} next={} executed={} snapshot={}",
                s.address,
                s.role,
                s.leader,
                s.members,
                s.next_slot,
                s.executed_slot,
                s.snapshot_slot
            ),
            Err(e) => format!("  [{i}] error: {e}"),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What a finished `concoord` command gave.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Runs `concoord ARGS` (with `stdin` fed in, if any) and waits at most
/// `timeout`; a command still running then is killed and the test fails.
pub fn run_cli(args: &[&str], stdin: Option<&str>, timeout: Duration) -> Output {
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the concoord binary runs");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        let input = input.to_string();
        std::thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
            // Dropping the pipe closes stdin: end of input.
        });
    }
    let mut out_pipe = child.stdout.take().expect("piped stdout");
    let mut err_pipe = child.stderr.take().expect("piped stderr");
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out_pipe.read_to_string(&mut s);
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let deadline = started + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err_thread.join().unwrap_or_default();
            panic!(
                "`concoord {}` did not finish within {timeout:?}; stderr:\n{stderr}",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out_thread.join().unwrap_or_default(),
        stderr: err_thread.join().unwrap_or_default(),
        elapsed: started.elapsed(),
    }
}

/// An address nothing listens on (a port the OS gave us and we closed).
pub fn unused_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    let addr = l.local_addr().expect("local addr").to_string();
    drop(l);
    addr
}

/// A directory under the system's temp dir, removed (with its contents) on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("concoord-test-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
