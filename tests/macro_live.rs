//! Objects made with `#[concoord::object]` served by a live 3-replica group
//! (in-process `LocalReplica`s on loopback), called through every generated
//! proxy kind: typed arguments and results, errors, client-side batching
//! (counted in frames on the wire), `concoord_init` on every replica, and a
//! wrong baked-in token.

#[path = "../examples/tencounter/tencounter.rs"]
mod tencounter;
// The proxy `concoord object -o tencounter.TenCounter -p 1` wrote (its
// `use super::*` finds TenCounter here).
mod local_group;
#[path = "../examples/tencounter/tencounter_proxy.rs"]
mod tencounter_proxy;
use local_group::{runtime, Group};

use concoord::objects::ReplicatedObject;
use concoord::proto::wire::{decode_frame, Frame};
use concoord::{ClientError, ClientOptions, ObjectError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tencounter::{TenCounter, TenCounterBatchProxy, TenCounterProxy, TenCounterServerBatchProxy};
use tencounter_proxy::TenCounterBlockingProxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn short_deadline(token: &str) -> ClientOptions {
    ClientOptions {
        token: token.to_string(),
        deadline: Duration::from_secs(15),
        ..ClientOptions::default()
    }
}

#[test]
fn tencounter_works_through_every_proxy_kind() {
    let group = Group::start::<TenCounter>("");
    let addrs = group.addrs();

    // Blocking: the proxy `concoord object -p 1` generated.
    let blocking = TenCounterBlockingProxy::new(&addrs).expect("a proxy");
    blocking.increment().expect("increment");
    blocking.increment().expect("increment");
    blocking.decrement().expect("decrement");
    assert_eq!(blocking.getvalue().expect("getvalue"), 10);

    // Async, and server-side batching: concurrent calls the leader batches.
    runtime().block_on(async {
        let basic = TenCounterProxy::new(&addrs).expect("a proxy");
        basic.increment().await.expect("increment");
        assert_eq!(basic.getvalue().await.expect("getvalue"), 20);
        let server_batched = TenCounterServerBatchProxy::new(&addrs).expect("a proxy");
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let p = server_batched.clone();
                tokio::spawn(async move { p.increment().await })
            })
            .collect();
        for t in tasks {
            t.await.expect("the task ran").expect("increment");
        }
        assert_eq!(server_batched.getvalue().await.expect("getvalue"), 100);
    });

    // Client-side batching: buffered, flushed as one request, results in order.
    let mut batch = TenCounterBatchProxy::new(&addrs).expect("a proxy");
    let before = batch.getvalue();
    let incs: Vec<_> = (0..5).map(|_| batch.increment()).collect();
    let after_incs = batch.getvalue();
    let dec = batch.decrement();
    let after_dec = batch.getvalue();
    assert_eq!(batch.pending(), 9);
    let results = batch.flush().expect("the batch went through");
    assert_eq!(batch.pending(), 0);
    assert_eq!(results.len(), 9);
    assert_eq!(results.get(&before).expect("getvalue"), 100);
    for t in &incs {
        results.get(t).expect("increment");
    }
    assert_eq!(results.get(&after_incs).expect("getvalue"), 150);
    results.get(&dec).expect("decrement");
    assert_eq!(results.get(&after_dec).expect("getvalue"), 140);
    // A ticket from an earlier batch is not read from a later one.
    let later = batch.flush().expect("an empty flush");
    assert!(matches!(later.get(&before), Err(ClientError::Invalid(_))));
}

#[test]
fn concoord_init_resets_the_state_on_every_replica() {
    let mut group = Group::start::<TenCounter>("");
    let blocking = TenCounterBlockingProxy::new(&group.addrs()).expect("a proxy");
    for _ in 0..3 {
        blocking.increment().expect("increment");
    }
    assert_eq!(blocking.getvalue().expect("getvalue"), 30);
    blocking
        .concoord_init(Some(7))
        .expect("re-init with an argument");
    assert_eq!(blocking.getvalue().expect("getvalue"), 7);
    blocking.increment().expect("increment");
    drop(blocking);

    // Every replica executed the re-init: kill the leader, then a follower
    // leads and must answer from its own copy of the state.
    let leader = group.leader("");
    group.kill(&leader);
    let survivors = group.addrs();
    let after = TenCounterBlockingProxy::with_options(&survivors, short_deadline(""))
        .expect("a proxy")
        .getvalue()
        .expect("the survivors elect a leader and answer");
    assert_eq!(after, 17, "the new leader's copy was re-initialised too");

    // Without arguments it is the constructor's default (value 0).
    let p = TenCounterBlockingProxy::with_options(&survivors, short_deadline("")).expect("a proxy");
    p.concoord_init(None).expect("re-init without arguments");
    assert_eq!(p.getvalue().expect("getvalue"), 0);
}

/// Counts the `Frame::Call`s a client sends, forwarding everything to `target`.
async fn counting_proxy(target: String, calls: Arc<AtomicUsize>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a port");
    let addr = listener.local_addr().expect("an address").to_string();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = tokio::net::TcpStream::connect(&target)
                .await
                .expect("reach the leader");
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
            });
            let calls = calls.clone();
            tokio::spawn(async move {
                // The codec's frames: a 4-byte big-endian length, then MessagePack.
                loop {
                    let mut header = [0u8; 4];
                    if client_read.read_exact(&mut header).await.is_err() {
                        return;
                    }
                    let mut payload = vec![0u8; u32::from_be_bytes(header) as usize];
                    if client_read.read_exact(&mut payload).await.is_err() {
                        return;
                    }
                    // The runtime's own session-opening call is not one of the test's.
                    let counted = matches!(
                        decode_frame(&payload),
                        Ok(Frame::Call { method, .. })
                            if method != concoord::proto::message::OPEN_SESSION_METHOD
                    );
                    if counted {
                        calls.fetch_add(1, Ordering::SeqCst);
                    }
                    if server_write.write_all(&header).await.is_err()
                        || server_write.write_all(&payload).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn the_batching_proxy_sends_fewer_frames_and_keeps_results_in_order() {
    const CALLS: usize = 20;
    let group = Group::start::<TenCounter>("");
    let leader = group.leader("");
    let rt = runtime();
    let calls = Arc::new(AtomicUsize::new(0));
    let via = rt.block_on(counting_proxy(leader, calls.clone()));

    // One call at a time: one Call frame each.
    let blocking = TenCounterBlockingProxy::new(&via).expect("a proxy");
    for _ in 0..CALLS {
        blocking.increment().expect("increment");
    }
    let one_by_one = calls.swap(0, Ordering::SeqCst);
    assert_eq!(one_by_one, CALLS, "one frame per call");

    // Batched: the same calls in one frame, results in call order.
    let mut batch = TenCounterBatchProxy::new(&via).expect("a proxy");
    let tickets: Vec<_> = (0..CALLS)
        .map(|_| {
            batch.increment();
            batch.getvalue()
        })
        .collect();
    let results = batch.flush().expect("the batch went through");
    let batched = calls.load(Ordering::SeqCst);
    assert_eq!(batched, 1, "{} calls went in one Call frame", 2 * CALLS);
    assert!(batched < one_by_one);
    let values: Vec<i64> = tickets
        .iter()
        .map(|t| results.get(t).expect("getvalue"))
        .collect();
    let expected: Vec<i64> = (1..=CALLS as i64)
        .map(|i| 10 * (CALLS as i64 + i))
        .collect();
    assert_eq!(
        values, expected,
        "each getvalue saw the increments before it"
    );
}

/// An item of the catalog: a struct travelling as an argument and a result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub tags: Vec<String>,
    pub score: Option<i32>,
}

/// An object with many argument and result types.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Catalog {
    entries: BTreeMap<String, Entry>,
    limit: u32,
}

#[concoord::object]
impl Catalog {
    /// A constructor that can refuse its argument.
    pub fn new(limit: u32) -> Result<Self, ObjectError> {
        if limit == 0 {
            return Err(ObjectError::value("limit must be at least 1"));
        }
        Ok(Catalog {
            entries: BTreeMap::new(),
            limit,
        })
    }

    pub fn add(&mut self, entry: Entry) -> Result<usize, ObjectError> {
        if self.limit != 0 && self.entries.len() >= self.limit as usize {
            return Err(ObjectError::new("FullError", "the catalog is full"));
        }
        if self.entries.contains_key(&entry.name) {
            return Err(ObjectError::key(format!("{} exists", entry.name)));
        }
        self.entries.insert(entry.name.clone(), entry);
        Ok(self.entries.len())
    }

    pub fn get(&self, name: &str) -> Option<Entry> {
        self.entries.get(name).cloned()
    }

    pub fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// Adds tags; a plain `String` error reaches the caller as kind "Error".
    pub fn tag(&mut self, name: String, tags: &[String]) -> Result<Vec<String>, String> {
        let entry = self
            .entries
            .get_mut(&name)
            .ok_or_else(|| format!("no entry {name}"))?;
        entry.tags.extend(tags.iter().cloned());
        Ok(entry.tags.clone())
    }

    pub fn find(&self, tag: String, min_score: Option<i32>) -> Vec<Entry> {
        self.entries
            .values()
            .filter(|e| e.tags.contains(&tag))
            .filter(|e| match min_score {
                None => true,
                Some(m) => e.score.is_some_and(|s| s >= m),
            })
            .cloned()
            .collect()
    }

    pub fn parse_score(&self, text: &str) -> Result<i32, std::num::ParseIntError> {
        text.trim().parse()
    }

    pub fn stats(&self) -> (u32, usize, bool) {
        (self.limit, self.entries.len(), self.entries.is_empty())
    }

    /// Not `pub`: not exposed.
    #[allow(dead_code)]
    fn helper(&self) -> usize {
        self.entries.len()
    }
}

fn entry(name: &str, tags: &[&str], score: Option<i32>) -> Entry {
    Entry {
        name: name.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        score,
    }
}

#[test]
fn many_argument_and_result_types_round_trip_through_every_proxy() {
    let group = Group::start::<Catalog>("");
    let addrs = group.addrs();
    let p = CatalogBlockingProxy::new(&addrs).expect("a proxy");
    assert_eq!(p.stats().expect("stats"), (0, 0, true));
    let e = p.concoord_init(0).expect_err("limit 0 is refused");
    assert!(
        matches!(&e, ClientError::Object(o) if o.kind == "ValueError"),
        "{e:?}"
    );
    p.concoord_init(3).expect("re-init with a limit");
    assert_eq!(p.add(entry("a", &["x"], Some(5))).expect("add"), 1);
    assert_eq!(p.add(entry("b", &["x", "y"], None)).expect("add"), 2);
    let e = p.add(entry("a", &[], None)).expect_err("a duplicate");
    assert!(
        matches!(&e, ClientError::Object(o) if o.kind == "KeyError"),
        "{e:?}"
    );
    assert_eq!(p.get("a").expect("get"), Some(entry("a", &["x"], Some(5))));
    assert_eq!(p.get("zz").expect("get"), None);
    assert_eq!(
        p.names().expect("names"),
        vec!["a".to_string(), "b".to_string()]
    );
    assert_eq!(
        p.tag("b".into(), &["z".to_string()]).expect("tag"),
        vec!["x", "y", "z"]
    );
    let e = p.tag("nope".into(), &[]).expect_err("no such entry");
    assert!(
        matches!(&e, ClientError::Object(o) if o.kind == "Error" && o.message == "no entry nope"),
        "{e:?}"
    );
    assert_eq!(p.find("x".into(), None).expect("find").len(), 2);
    assert_eq!(
        p.find("x".into(), Some(4)).expect("find"),
        vec![entry("a", &["x"], Some(5))]
    );
    assert_eq!(p.parse_score(" 42 ").expect("parse"), 42);
    let e = p.parse_score("forty").expect_err("not a number");
    assert!(
        matches!(&e, ClientError::Object(o) if o.kind == "Error"),
        "{e:?}"
    );
    assert_eq!(p.stats().expect("stats"), (3, 2, false));

    // Wrong arguments and unknown methods are typed errors, not crashes.
    let raw = p.client();
    let e = raw
        .call::<_, usize>("add", ("not an entry",))
        .expect_err("a string is no Entry");
    assert!(matches!(e, ClientError::BadArguments(_)), "{e:?}");
    let e = raw.call::<_, ()>("helper", ()).expect_err("not exposed");
    assert!(matches!(e, ClientError::UnknownMethod(_)), "{e:?}");
    let e = raw
        .call::<_, Vec<String>>("names", (1,))
        .expect_err("too many arguments");
    assert!(matches!(e, ClientError::BadArguments(_)), "{e:?}");

    // The async proxy, and the batching proxy with an error in the middle.
    runtime().block_on(async {
        let a = CatalogProxy::new(&addrs).expect("a proxy");
        assert_eq!(
            a.get("b").await.expect("get").map(|e| e.tags.len()),
            Some(3)
        );
        assert_eq!(a.stats().await.expect("stats").1, 2);
    });
    let mut b = CatalogBatchProxy::new(&addrs).expect("a proxy");
    let added = b.add(entry("c", &["y"], Some(1)));
    let full = b.add(entry("d", &[], None));
    let found = b.find("y".into(), None);
    let results = b.flush().expect("the batch went through");
    assert_eq!(results.get(&added).expect("add"), 3);
    let e = results.get(&full).expect_err("limit 3 reached");
    assert!(
        matches!(&e, ClientError::Object(o) if o.kind == "FullError"),
        "{e:?}"
    );
    let names: Vec<String> = results
        .get(&found)
        .expect("find")
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec!["b", "c"]);
    // The read-only flags the dispatcher reports.
    assert!(Catalog::is_read_only("get") && Catalog::is_read_only("stats"));
    assert!(!Catalog::is_read_only("add") && !Catalog::is_read_only("tag"));
}

/// A type whose proxies carry a token baked in by the generator.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Guarded {
    hits: u64,
}

#[concoord::object(token = "not-the-token")]
impl Guarded {
    pub fn hit(&mut self) -> u64 {
        self.hits += 1;
        self.hits
    }
}

#[test]
fn a_wrong_baked_in_token_is_refused_with_a_clear_error() {
    let group = Group::start::<Guarded>("the-token");
    let addrs = group.addrs();
    assert_eq!(GuardedBlockingProxy::TOKEN, "not-the-token");
    let wrong = GuardedBlockingProxy::with_options(
        &addrs,
        ClientOptions {
            token: GuardedBlockingProxy::TOKEN.into(),
            deadline: Duration::from_secs(5),
            ..ClientOptions::default()
        },
    )
    .expect("a proxy");
    let e = wrong.hit().expect_err("the group refuses the token");
    assert!(matches!(e, ClientError::Refused(_)), "{e:?}");
    assert!(e.to_string().contains("refused"), "{e}");
    let e = GuardedBlockingProxy::new(&addrs)
        .expect("a proxy")
        .hit()
        .expect_err("new presents the baked-in token");
    assert!(matches!(e, ClientError::Refused(_)), "{e:?}");
    let right =
        GuardedBlockingProxy::with_options(&addrs, short_deadline("the-token")).expect("a proxy");
    assert_eq!(right.hit().expect("the right token"), 1);
}
