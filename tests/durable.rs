//! Durable mode (`concoord replica -w --data-dir DIR`) with the real binary:
//! whole-group kill -9 and restart from the data dirs, kill -9 during writes
//! in a loop, damaged data dirs refused, and data dirs that stay bounded.

mod support;

use concoord::objects::Target;
use concoord::BlockingClient;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::{run_cli, spawn_replica, Cluster, TempDir};

/// How long one client call may take, a whole-group restart included.
const CALL_DEADLINE: Duration = Duration::from_secs(60);

fn client(cluster: &Cluster) -> BlockingClient {
    BlockingClient::new(&cluster.addrs(), cluster.client_options(CALL_DEADLINE))
        .expect("valid addresses")
}

/// Threads incrementing the default Counter; every call is retried by the
/// client runtime (same command id) until it is answered.
struct Load {
    acked: Arc<AtomicU64>,
    failed: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(cluster: &Cluster, threads: usize, quota: u64) -> Load {
        let acked = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handles = (0..threads)
            .map(|_| {
                let client = client(cluster);
                let (acked, failed, stop) = (acked.clone(), failed.clone(), stop.clone());
                std::thread::spawn(move || {
                    for _ in 0..quota {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        match client.call::<_, ()>("increment", ()) {
                            Ok(()) => acked.fetch_add(1, Ordering::SeqCst),
                            Err(e) => {
                                failed.lock().unwrap().push(format!("{e:?}"));
                                return;
                            }
                        };
                    }
                })
            })
            .collect();
        Load {
            acked,
            failed,
            stop,
            handles,
        }
    }

    fn acked(&self) -> u64 {
        self.acked.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until `n` increments are acknowledged.
    fn wait_acked(&self, n: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.acked() < n {
            assert!(
                self.failed.lock().unwrap().is_empty(),
                "a call failed: {:?}",
                self.failed.lock().unwrap()
            );
            assert!(
                Instant::now() < deadline,
                "only {} of {n} increments acknowledged after {timeout:?}",
                self.acked()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Lets each thread finish the call it is in, then stop.
    fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Joins every thread; returns the acknowledged count.
    fn finish(self) -> u64 {
        for h in self.handles {
            h.join().expect("a load thread");
        }
        let failed = self.failed.lock().unwrap();
        assert!(failed.is_empty(), "calls failed: {failed:?}");
        self.acked.load(Ordering::SeqCst)
    }
}

fn getvalue(client: &BlockingClient) -> i64 {
    client
        .call::<_, i64>("getvalue", ())
        .expect("getvalue answers")
}

#[test]
fn whole_group_restart_keeps_counts_held_locks_and_parked_waiters() {
    let dir = TempDir::new("durable-whole-group");
    let mut cluster = Cluster::start_durable(3, "Counter", dir.path(), &[]);
    let lock = Target::named("door", "Lock");
    let owner = client(&cluster);
    assert!(owner
        .call_on::<_, bool>(&lock, "acquire", ())
        .expect("acquire answers"));
    // A waiter parks behind the owner.
    let waiter = client(&cluster);
    let waiting = std::thread::spawn({
        let lock = lock.clone();
        move || waiter.call_on::<_, bool>(&lock, "acquire", ())
    });
    cluster.poll("the waiter to park", Duration::from_secs(10), |ok| {
        ok.iter().all(|(_, s)| s.parked == 1).then_some(())
    });

    let load = Load::start(&cluster, 4, 150);
    load.wait_acked(100, Duration::from_secs(30));
    cluster.kill9_all();
    let acked_before_crash = load.acked();
    for i in 0..3 {
        cluster.restart_from_disk(i);
    }
    let acked = load.finish();
    assert_eq!(acked, 600, "every increment is eventually acknowledged");
    assert!(acked_before_crash >= 100);

    let reader = client(&cluster);
    assert_eq!(
        getvalue(&reader),
        600,
        "each acknowledged increment counted exactly once across the restart"
    );
    // The lock is still the owner's: it is locked, and the owner's release
    // (an error from anyone else) succeeds and hands it to the parked waiter.
    assert!(reader
        .call_on::<_, bool>(&lock, "locked", ())
        .expect("locked answers"));
    cluster.poll("the waiter still parked", Duration::from_secs(10), |ok| {
        ok.iter().all(|(_, s)| s.parked == 1).then_some(())
    });
    owner
        .call_on::<_, ()>(&lock, "release", ())
        .expect("the owner still holds the lock after the restart");
    let granted = waiting.join().expect("the waiter thread");
    assert!(
        matches!(granted, Ok(true)),
        "the parked waiter is granted the lock: {granted:?}"
    );
}

#[test]
fn kill9_during_writes_loses_nothing_acknowledged() {
    let rounds: u64 = std::env::var("CONCOORD_DURABLE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    let dir = TempDir::new("durable-kill-loop");
    let mut cluster = Cluster::start_durable(3, "Counter", dir.path(), &["--snapshot-every", "64"]);
    let load = Load::start(&cluster, 3, u64::MAX);
    let mut target = 0;
    for round in 0..rounds {
        // A different amount of progress before each crash, so the kill
        // lands at a different point of the write path every time.
        target += 5 + (round * 7) % 23;
        load.wait_acked(target, Duration::from_secs(30));
        cluster.kill9_all();
        for i in 0..3 {
            cluster.restart_from_disk(i);
        }
    }
    load.stop();
    let acked = load.finish();
    let value = getvalue(&client(&cluster)) as u64;
    // Every call was answered, so nothing is in doubt: exactly once.
    assert_eq!(
        value, acked,
        "{rounds} whole-group kill -9s: the counter must equal the acknowledged increments"
    );
}

/// Starts a group of one in `dir`, makes `n` increments, and kills it.
fn make_data_dir(dir: &Path, n: usize) -> PathBuf {
    let data = dir.join("r0");
    let mut cluster = Cluster::start_durable(1, "Counter", dir, &[]);
    let c = client(&cluster);
    for _ in 0..n {
        c.call::<_, ()>("increment", ()).expect("increment");
    }
    cluster.kill9_all();
    data
}

fn files_of(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in walk(dir) {
        let bytes = std::fs::read(&entry).expect("read a data file");
        out.push((entry, bytes));
    }
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read a dir") {
        let path = entry.expect("a dir entry").path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn only_segment(data: &Path) -> PathBuf {
    let segments = walk(&data.join("wal"));
    assert_eq!(segments.len(), 1, "one log segment: {segments:?}");
    segments[0].clone()
}

/// A segment's header: magic, format, node id, CRC32 of the three.
const SEGMENT_HEADER: usize = 24;
/// A (format 2) record's header: length, CRC32 of the payload, CRC32 of those 8 bytes.
const RECORD_HEADER: usize = 12;

/// Offsets of the records of a (format 2) segment: (start, end) of each.
fn record_bounds(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut at = SEGMENT_HEADER;
    let mut out = Vec::new();
    while at + RECORD_HEADER <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        out.push((at, at + RECORD_HEADER + len));
        at += RECORD_HEADER + len;
    }
    out
}

/// Rewrites a data dir as the previous release (storage format 1) wrote
/// it: segments framed `length | CRC32(payload) | payload`, every file's
/// header naming format 1 (the member and snapshot frames are unchanged).
fn downgrade_to_format_1(data: &Path) {
    for path in walk(data) {
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        if path.extension().is_some_and(|e| e == "wal") {
            let crc = crc32fast::hash(&bytes[..20]);
            let mut old = bytes[..20].to_vec();
            old.extend_from_slice(&crc.to_le_bytes());
            for (start, end) in record_bounds(&bytes) {
                old.extend_from_slice(&bytes[start..start + 8]);
                old.extend_from_slice(&bytes[start + RECORD_HEADER..end]);
            }
            bytes = old;
        }
        std::fs::write(&path, bytes).unwrap();
    }
}

fn start_from(data: &Path) -> support::Proc {
    spawn_replica(&[
        "-o".into(),
        "Counter".into(),
        "-p".into(),
        port_of(data).to_string(),
        "-w".into(),
        "--data-dir".into(),
        data.display().to_string(),
    ])
    .unwrap_or_else(|f| {
        panic!(
            "the replica must start from {}: {}",
            data.display(),
            f.stderr
        )
    })
}

/// Starting from a damaged dir must fail, say why naming `file`, and change nothing.
fn assert_refused(data: &Path, file: &Path, why: &str) {
    let before = files_of(data);
    let failure = match spawn_replica(&[
        "-o".into(),
        "Counter".into(),
        "-p".into(),
        port_of(data).to_string(),
        "-w".into(),
        "--data-dir".into(),
        data.display().to_string(),
    ]) {
        Ok(mut p) => {
            p.kill_and_reap();
            panic!("a replica started from a damaged data dir ({why})")
        }
        Err(f) => f,
    };
    assert!(
        failure.status.is_some_and(|s| !s.success()),
        "exits non-zero: {:?}",
        failure.status
    );
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        failure.stderr.contains(&name) && failure.stderr.contains(why),
        "the error names {name} and says {why:?}: {}",
        failure.stderr
    );
    assert!(before == files_of(data), "the data dir was changed");
}

/// The port the data dir's member listened on (its member file names it).
fn port_of(data: &Path) -> u16 {
    let bytes = std::fs::read(data.join("member")).expect("the member file");
    let text = String::from_utf8_lossy(&bytes);
    let at = text
        .find("127.0.0.1:")
        .expect("an address in the member file")
        + 10;
    text[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .expect("a port")
}

#[test]
fn damaged_foreign_and_unknown_data_dirs_refuse_to_start() {
    let dir = TempDir::new("durable-damage");

    // A record in the middle of the log.
    let data = make_data_dir(&dir.path().join("mid"), 10);
    let segment = only_segment(&data);
    let mut bytes = std::fs::read(&segment).unwrap();
    let records = record_bounds(&bytes);
    assert!(records.len() > 3, "enough records: {}", records.len());
    let (start, end) = records[1];
    bytes[(start + RECORD_HEADER + end) / 2] ^= 0x5a;
    std::fs::write(&segment, &bytes).unwrap();
    assert_refused(&data, &segment, "checksum mismatch");

    // The length field of a record followed by others, in the newest
    // segment, damaged to point past the end of the file: not a torn write.
    let data = make_data_dir(&dir.path().join("length"), 10);
    let segment = only_segment(&data);
    let mut bytes = std::fs::read(&segment).unwrap();
    let records = record_bounds(&bytes);
    assert!(records.len() > 3, "enough records: {}", records.len());
    bytes[records[1].0 + 3] ^= 0x01;
    std::fs::write(&segment, &bytes).unwrap();
    assert_refused(&data, &segment, "header checksum mismatch");

    // A format this build does not know.
    let data = make_data_dir(&dir.path().join("version"), 1);
    let member = data.join("member");
    let mut bytes = std::fs::read(&member).unwrap();
    bytes[8..12].copy_from_slice(&99u32.to_le_bytes());
    std::fs::write(&member, &bytes).unwrap();
    assert_refused(&data, &member, "storage format 99");

    // Another group's snapshot in this data dir.
    let mine = make_data_dir(&dir.path().join("mine"), 1);
    let theirs = make_data_dir(&dir.path().join("theirs"), 1);
    let foreign = walk(&theirs.join("snap")).pop().expect("a snapshot");
    let planted = mine.join("snap").join("09999999999999999999.snap");
    std::fs::copy(&foreign, &planted).unwrap();
    assert_refused(&mine, &planted, "this data dir is member");

    // Not a data dir: files but no member file.
    let stray = dir.path().join("stray");
    std::fs::create_dir_all(&stray).unwrap();
    std::fs::write(stray.join("notes.txt"), b"mine").unwrap();
    let out = run_cli(
        &[
            "replica",
            "-o",
            "Counter",
            "-p",
            "0",
            "-w",
            "--data-dir",
            &stray.display().to_string(),
        ],
        None,
        Duration::from_secs(10),
    );
    assert_ne!(out.code(), Some(0));
    assert!(out.stderr.contains("not empty"), "{}", out.stderr);
}

#[test]
fn a_torn_last_write_is_dropped_and_the_replica_serves() {
    let dir = TempDir::new("durable-torn");
    for (name, cut) in [("header", 7), ("payload", RECORD_HEADER + 3)] {
        let data = make_data_dir(&dir.path().join(name), 7);
        let segment = only_segment(&data);
        let mut bytes = std::fs::read(&segment).unwrap();
        // A copy of the last record, cut short as a torn write leaves it.
        let (start, end) = *record_bounds(&bytes).last().unwrap();
        assert!(end - start > cut, "{name}: a record longer than the cut");
        bytes.extend_from_within(start..start + cut);
        std::fs::write(&segment, &bytes).unwrap();
        let mut proc = start_from(&data);
        let c = BlockingClient::new(&proc.addr, Default::default()).unwrap();
        assert_eq!(
            getvalue(&c),
            7,
            "{name}: everything before the torn write is there"
        );
        let log = proc.stderr_tail();
        proc.kill_and_reap();
        assert!(
            log.contains("cut short"),
            "{name}: a warning says so: {log}"
        );
    }
}

#[test]
fn a_data_dir_of_the_previous_format_restarts_and_goes_on() {
    let dir = TempDir::new("durable-format-1");
    let data = make_data_dir(dir.path(), 5);
    downgrade_to_format_1(&data);
    let old = only_segment(&data);
    let old_bytes = std::fs::read(&old).unwrap();
    assert_eq!(old_bytes[8..12], 1u32.to_le_bytes());

    let mut proc = start_from(&data);
    let c = BlockingClient::new(&proc.addr, Default::default()).unwrap();
    assert_eq!(getvalue(&c), 5, "the format-1 records are read");
    for _ in 0..3 {
        c.call::<_, ()>("increment", ()).expect("increment");
    }
    proc.kill_and_reap();
    // The old segment is left as it was; new records went to a format-2 one.
    assert_eq!(std::fs::read(&old).unwrap(), old_bytes);
    let newer: Vec<_> = walk(&data.join("wal"))
        .into_iter()
        .filter(|p| *p != old)
        .collect();
    assert_eq!(newer.len(), 1, "one new segment: {newer:?}");
    assert_eq!(std::fs::read(&newer[0]).unwrap()[8..12], 2u32.to_le_bytes());

    let mut proc = start_from(&data);
    let c = BlockingClient::new(&proc.addr, Default::default()).unwrap();
    assert_eq!(getvalue(&c), 8, "old and new records are read back");
    proc.kill_and_reap();
}

#[test]
fn snapshots_keep_the_data_dir_bounded() {
    let dir = TempDir::new("durable-bounded");
    let cluster = Cluster::start_durable(
        1,
        "Counter",
        dir.path(),
        &["--snapshot-every", "50", "--segment-bytes", "8192"],
    );
    let c = client(&cluster);
    let size = |p: &Path| {
        walk(p)
            .iter()
            // A segment compacted away between the listing and its stat is gone.
            .map(|f| f.metadata().map_or(0, |m| m.len()))
            .sum::<u64>()
    };
    let mut largest = 0;
    for round in 0..10 {
        for _ in 0..200 {
            c.call::<_, ()>("increment", ()).expect("increment");
        }
        let wal = size(&cluster.data_dir(0).join("wal"));
        if round > 0 {
            largest = largest.max(wal);
        }
    }
    assert_eq!(getvalue(&c), 2000);
    // 2,000 increments write far more than this; without compaction the
    // log would only grow.
    assert!(
        largest < 64 * 1024,
        "the log stays bounded: {largest} bytes at most"
    );
    // A snapshot on demand answers once it and every earlier one are
    // written and the older files gone: count then.
    let out = run_cli(
        &["admin", "snapshot", "-r", &cluster.addrs()],
        None,
        Duration::from_secs(30),
    );
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let snapshots = walk(&cluster.data_dir(0).join("snap"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .count();
    assert!(snapshots <= 2, "{snapshots} snapshots kept");
}

/// Waits (bounded) until replica `i`'s stderr holds `text`.
fn wait_logged(cluster: &Cluster, i: usize, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cluster.procs[i].stderr_tail().contains(text) {
        assert!(
            Instant::now() < deadline,
            "replica {i} never logged {text:?}; stderr:\n{}",
            cluster.procs[i].stderr_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn admin_snapshot_sigterm_restart_and_a_removed_member_that_cannot_return() {
    let dir = TempDir::new("durable-lifecycle");
    let mut cluster = Cluster::start_durable(3, "Counter", dir.path(), &[]);
    let c = client(&cluster);
    for _ in 0..5 {
        c.call::<_, ()>("increment", ()).expect("increment");
    }

    // A snapshot on demand, on every replica named.
    let out = run_cli(
        &["admin", "snapshot", "-r", &cluster.addrs()],
        None,
        Duration::from_secs(30),
    );
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    for (i, line) in out.stdout.lines().enumerate() {
        let answer: serde_json::Value = serde_json::from_str(line).expect("JSON");
        let slot = answer["slot"]
            .as_u64()
            .unwrap_or_else(|| panic!("{answer}"));
        let file = cluster
            .data_dir(i)
            .join("snap")
            .join(format!("{slot:020}.snap"));
        assert!(
            file.exists(),
            "{} holds the snapshot at slot {slot}",
            file.display()
        );
    }

    // SIGTERM is not a leave: the member comes back from its data dir.
    let status = cluster.terminate(2, Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    cluster.restart_from_disk(2);
    cluster.wait_formed(Duration::from_secs(20));
    c.call::<_, ()>("increment", ()).expect("increment");
    assert_eq!(getvalue(&c), 6);

    // Removed, it may not come back from its data dir.
    let gone = cluster.addr(2).to_string();
    let out = run_cli(
        &["admin", "remove", "-r", &cluster.addrs(), &gone],
        None,
        Duration::from_secs(30),
    );
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    wait_logged(&cluster, 2, "removed from the group");
    cluster.terminate(2, Duration::from_secs(10));
    let port = gone.rsplit_once(':').unwrap().1.to_string();
    let refused = spawn_replica(&[
        "-o".into(),
        "Counter".into(),
        "-p".into(),
        port,
        "-w".into(),
        "--data-dir".into(),
        cluster.data_dir(2).display().to_string(),
    ]);
    match refused {
        Ok(mut p) => {
            p.kill_and_reap();
            panic!("a removed member restarted from its data dir");
        }
        Err(f) => assert!(
            f.stderr.contains("was removed from the group"),
            "{}",
            f.stderr
        ),
    }
    c.call::<_, ()>("increment", ())
        .expect("the two members serve");
    assert_eq!(getvalue(&c), 7);
}

fn port_from(addr: &str) -> String {
    addr.rsplit_once(':').expect("HOST:PORT").1.to_string()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// `concoord status --json` of one address, the members it lists.
fn members_seen(addr: &str) -> Option<Vec<String>> {
    let out = run_cli(
        &["status", "--json", "-r", addr],
        None,
        Duration::from_secs(10),
    );
    let entries: serde_json::Value = serde_json::from_str(out.stdout.trim()).ok()?;
    let members = entries.get(0)?.get("members")?.as_array()?;
    Some(
        members
            .iter()
            .filter_map(|m| m.as_str().map(str::to_string))
            .collect(),
    )
}

/// A member known by a name (`--advertise`) keeps it, and its data dir, when
/// it comes back listening on another address: a Kubernetes pod whose IP
/// changed but whose DNS name did not.
#[test]
fn an_advertised_name_outlives_the_address_it_listens_on() {
    let dir = TempDir::new("durable-advertise");
    let (p, q) = (
        port_from(&support::unused_addr()),
        port_from(&support::unused_addr()),
    );
    let (name_p, name_q) = (format!("localhost:{p}"), format!("localhost:{q}"));
    let (data_p, data_q) = (dir.path().join("p"), dir.path().join("q"));
    let data = |d: &Path| d.display().to_string();

    // Bad input first: a name without a port, or port 0.
    for bad in ["localhost", "localhost:0", ":14000"] {
        let failure = spawn_replica(&args(&["-o", "Counter", "-p", "0", "--advertise", bad]))
            .map(|mut p| {
                p.kill_and_reap();
                panic!("started with --advertise {bad}")
            })
            .unwrap_err();
        assert!(
            failure.stderr.contains("--advertise") && failure.stderr.contains("HOST:PORT"),
            "{bad}: {}",
            failure.stderr
        );
    }

    let mut first = spawn_replica(&args(&[
        "-o",
        "Counter",
        "-p",
        &p,
        "--advertise",
        &name_p,
        "-w",
        "--data-dir",
        &data(&data_p),
    ]))
    .expect("the founder starts");
    let mut second = spawn_replica(&args(&[
        "-o",
        "Counter",
        "-p",
        &q,
        "--advertise",
        &name_q,
        "-b",
        &name_p,
        "-w",
        "--data-dir",
        &data(&data_q),
    ]))
    .expect("the second member starts");
    let both = format!("{name_p},{name_q}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut want = vec![name_p.clone(), name_q.clone()];
    want.sort();
    loop {
        let mut seen = members_seen(&name_q).unwrap_or_default();
        seen.sort();
        if seen == want {
            break;
        }
        assert!(Instant::now() < deadline, "members by name: {seen:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let call = |method: &str| run_cli(&["call", "-r", &both, method], None, CALL_DEADLINE);
    for _ in 0..3 {
        let out = call("increment");
        assert_eq!(out.code(), Some(0), "{}", out.stderr);
    }

    // The founder dies and comes back on another listening address.
    first.kill_and_reap();
    let elsewhere = [
        "-o",
        "Counter",
        "-a",
        "0.0.0.0",
        "-p",
        &p,
        "-w",
        "--data-dir",
    ];
    let mut without_name = args(&elsewhere);
    without_name.push(data(&data_p));
    let failure = spawn_replica(&without_name)
        .map(|mut p| {
            p.kill_and_reap();
            panic!("a data dir started as another address")
        })
        .unwrap_err();
    assert!(
        failure.stderr.contains(&format!("the member at {name_p}"))
            && failure.stderr.contains("--advertise"),
        "{}",
        failure.stderr
    );
    let mut with_name = without_name.clone();
    with_name.extend(args(&["--advertise", &name_p]));
    first = spawn_replica(&with_name).expect("the same member, by its name");
    // The same two members, and every increment.
    let out = call("getvalue");
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "3");
    let mut seen = members_seen(&name_p).expect("the restarted member answers");
    seen.sort();
    assert_eq!(seen, want);
    first.kill_and_reap();
    second.kill_and_reap();
}
