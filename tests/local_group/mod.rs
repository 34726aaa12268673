//! A 3-replica group of one object type inside the test process
//! (`LocalReplica`s on loopback), for tests of user-written objects.

#![allow(dead_code)]

use concoord::actors::node::NodeOptions;
use concoord::client::fetch_status;
use concoord::objects::{Hosted, ReplicatedObject, StateMachine};
use concoord::{ClientError, LocalReplica, ReplicaOptions};
use std::time::{Duration, Instant};

const GROUP_FORM_TIMEOUT: Duration = Duration::from_secs(20);

/// A 3-replica group of `T` in this process.
pub struct Group {
    replicas: Vec<LocalReplica>,
}

impl Group {
    pub fn start<T: ReplicatedObject>(token: &str) -> Group {
        let first = LocalReplica::start(Box::new(Hosted::<T>::default()), Vec::new(), token)
            .expect("the first replica starts");
        let bootstrap = vec![first.addr().to_string()];
        let mut replicas = vec![first];
        for _ in 0..2 {
            replicas.push(
                LocalReplica::start(Box::new(Hosted::<T>::default()), bootstrap.clone(), token)
                    .expect("a joining replica starts"),
            );
        }
        let group = Group { replicas };
        group.wait_formed(token);
        group
    }

    /// A group of `size` whose default object `make` builds, each member
    /// started with `node` (types it can create, limits, snapshot pieces).
    pub fn start_custom(
        size: usize,
        make: impl Fn() -> Box<dyn StateMachine>,
        node: NodeOptions,
    ) -> Group {
        let mut replicas: Vec<LocalReplica> = Vec::new();
        for _ in 0..size {
            replicas.push(Self::member(
                make(),
                replicas.first().map(|r| r.addr()),
                &node,
            ));
        }
        let group = Group { replicas };
        group.wait_formed_of(size, "");
        group
    }

    /// Starts one more member that joins the group through `bootstrap`.
    pub fn join(&mut self, object: Box<dyn StateMachine>, node: &NodeOptions) -> String {
        let bootstrap = self.live().first().cloned();
        let r = Self::member(object, bootstrap.as_deref(), node);
        let addr = r.addr().to_string();
        self.replicas.push(r);
        addr
    }

    fn member(
        object: Box<dyn StateMachine>,
        bootstrap: Option<&str>,
        node: &NodeOptions,
    ) -> LocalReplica {
        let options = ReplicaOptions {
            advertise: None,
            listen: "127.0.0.1:0".parse().expect("a literal address"),
            bootstrap: bootstrap.map(|b| vec![b.to_string()]).unwrap_or_default(),
            token: String::new(),
            node: node.clone(),
            durable: None,
        };
        LocalReplica::start_with(object, options).expect("a replica starts")
    }

    pub fn addrs(&self) -> String {
        self.live().join(",")
    }

    pub fn live(&self) -> Vec<String> {
        self.replicas
            .iter()
            .filter(|r| r.is_running())
            .map(|r| r.addr().to_string())
            .collect()
    }

    pub fn statuses(
        &self,
        token: &str,
    ) -> Vec<Result<concoord::proto::wire::StatusInfo, ClientError>> {
        let rt = runtime();
        rt.block_on(async {
            let mut out = Vec::new();
            for a in self.live() {
                out.push(fetch_status(&a, token, Duration::from_secs(1)).await);
            }
            out
        })
    }

    /// Every member reports 3 members, a leader, and is past joining.
    pub fn wait_formed(&self, token: &str) {
        self.wait_formed_of(3, token)
    }

    /// Every member reports `size` members, a leader, and is past joining.
    pub fn wait_formed_of(&self, size: usize, token: &str) {
        let deadline = Instant::now() + GROUP_FORM_TIMEOUT;
        loop {
            let all = self.statuses(token);
            let formed = all.iter().all(|s| {
                s.as_ref().is_ok_and(|s| {
                    s.members.len() == size && s.role != "joining" && s.leader.is_some()
                })
            });
            if formed {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the group did not form within {GROUP_FORM_TIMEOUT:?}: {all:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The leader's address, as the members report it.
    pub fn leader(&self, token: &str) -> String {
        self.statuses(token)
            .into_iter()
            .flatten()
            .find_map(|s| (s.role == "leader").then_some(s.address))
            .expect("a formed group has a leader")
    }

    pub fn kill(&mut self, addr: &str) {
        let r = self
            .replicas
            .iter_mut()
            .find(|r| r.addr() == addr)
            .expect("a member of this group");
        r.kill();
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}
