//! Typed proxies for ConCoord's data objects, plus Counter and Value.
//! Items are arbitrary values ([`Item`]); convert with
//! `concoord::objects::rmpv::ext::{to_value, from_value}`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), concoord::ClientError> {
//! use concoord::data::Queue;
//! let jobs = Queue::new("127.0.0.1:14000", Default::default())?;
//! jobs.put("build #42".into()).await?;
//! let next = jobs.get().await?;
//! # Ok(()) }
//! ```

use crate::threading::proxy_type;
use crate::{Client, ClientError, ClientOptions};
use concoord_objects::Target;

/// An item stored in an object: any MessagePack value.
pub type Item = concoord_objects::rmpv::Value;

async fn call<A: serde::Serialize, R: serde::de::DeserializeOwned>(
    client: &Client,
    target: &Target,
    method: &str,
    args: A,
) -> Result<R, ClientError> {
    client.call_on(target, method, args).await
}

proxy_type!(
    /// ConCoord's Counter.
    Counter
);

impl Counter {
    pub async fn increment(&self) -> Result<(), ClientError> {
        call(&self.client, &self.target, "increment", ()).await
    }
    pub async fn decrement(&self) -> Result<(), ClientError> {
        call(&self.client, &self.target, "decrement", ()).await
    }
    pub async fn getvalue(&self) -> Result<i64, ClientError> {
        call(&self.client, &self.target, "getvalue", ()).await
    }
}

proxy_type!(
    /// A register holding one value.
    Value
);

impl Value {
    pub async fn getvalue(&self) -> Result<Item, ClientError> {
        call(&self.client, &self.target, "getvalue", ()).await
    }
    pub async fn setvalue(&self, value: Item) -> Result<(), ClientError> {
        call(&self.client, &self.target, "setvalue", (value,)).await
    }
    /// Writes `value` if `token` is at least the highest token a fenced
    /// write here carried; an older one fails with kind `StaleToken`.
    pub async fn set_fenced(&self, token: u64, value: Item) -> Result<(), ClientError> {
        call(&self.client, &self.target, "set_fenced", (token, value)).await
    }
    /// Grows by one on every successful write.
    pub async fn version(&self) -> Result<u64, ClientError> {
        call(&self.client, &self.target, "version", ()).await
    }
    /// Writes `new` if the value is `expected`; whether it did.
    pub async fn compare_and_set(&self, expected: Item, new: Item) -> Result<bool, ClientError> {
        call(
            &self.client,
            &self.target,
            "compare_and_set",
            (expected, new),
        )
        .await
    }
    /// A watch: waits until the version is above `version` and returns the
    /// value and version then; `None` if `timeout` runs out first. A client
    /// that reconnects is attached to the same wait.
    pub async fn wait_change(
        &self,
        version: u64,
        timeout: Option<std::time::Duration>,
    ) -> Result<Option<(Item, u64)>, ClientError> {
        use crate::threading::{call_parking, secs, Timed};
        let args = (version, timeout.map(secs));
        match call_parking(&self.client, &self.target, "wait_change", args, timeout).await? {
            Timed::Done(seen) => Ok(seen),
            Timed::TimedOut => Ok(None),
        }
    }
}

proxy_type!(
    /// ConCoord's Queue (FIFO); `get` on empty raises `Empty`.
    Queue
);

impl Queue {
    pub async fn put(&self, item: Item) -> Result<(), ClientError> {
        call(&self.client, &self.target, "put", (item,)).await
    }
    pub async fn get(&self) -> Result<Item, ClientError> {
        call(&self.client, &self.target, "get", ()).await
    }
    pub async fn qsize(&self) -> Result<u64, ClientError> {
        call(&self.client, &self.target, "qsize", ()).await
    }
    pub async fn empty(&self) -> Result<bool, ClientError> {
        call(&self.client, &self.target, "empty", ()).await
    }
    pub async fn full(&self) -> Result<bool, ClientError> {
        call(&self.client, &self.target, "full", ()).await
    }
}

proxy_type!(
    /// ConCoord's Stack; `pop` on empty raises `IndexError`.
    Stack
);

impl Stack {
    pub async fn append(&self, item: Item) -> Result<(), ClientError> {
        call(&self.client, &self.target, "append", (item,)).await
    }
    pub async fn pop(&self) -> Result<Item, ClientError> {
        call(&self.client, &self.target, "pop", ()).await
    }
    pub async fn get_size(&self) -> Result<u64, ClientError> {
        call(&self.client, &self.target, "get_size", ()).await
    }
    pub async fn get_stack(&self) -> Result<Vec<Item>, ClientError> {
        call(&self.client, &self.target, "get_stack", ()).await
    }
}

proxy_type!(
    /// ConCoord's Log.
    Log
);

impl Log {
    /// Replaces the log with one entry.
    pub async fn write(&self, entry: Item) -> Result<(), ClientError> {
        call(&self.client, &self.target, "write", (entry,)).await
    }
    pub async fn append(&self, entry: Item) -> Result<(), ClientError> {
        call(&self.client, &self.target, "append", (entry,)).await
    }
    /// The entries joined by spaces, as ConCoord returns them.
    pub async fn read(&self) -> Result<String, ClientError> {
        call(&self.client, &self.target, "read", ()).await
    }
}

proxy_type!(
    /// ConCoord's Bank; unknown accounts raise `KeyError`.
    Bank
);

impl Bank {
    /// False if the account exists already.
    pub async fn open(&self, account: &str) -> Result<bool, ClientError> {
        call(&self.client, &self.target, "open", (account,)).await
    }
    pub async fn close(&self, account: &str) -> Result<bool, ClientError> {
        call(&self.client, &self.target, "close", (account,)).await
    }
    /// The new balance, or `false` on an overdraft (as ConCoord).
    pub async fn debit(&self, account: &str, amount: f64) -> Result<Item, ClientError> {
        call(&self.client, &self.target, "debit", (account, amount)).await
    }
    pub async fn deposit(&self, account: &str, amount: f64) -> Result<Item, ClientError> {
        call(&self.client, &self.target, "deposit", (account, amount)).await
    }
    pub async fn balance(&self, account: &str) -> Result<Item, ClientError> {
        call(&self.client, &self.target, "balance", (account,)).await
    }
}

proxy_type!(
    /// ConCoord's Membership; removing a non-member raises `KeyError`.
    Membership
);

impl Membership {
    pub async fn add(&self, member: Item) -> Result<(), ClientError> {
        call(&self.client, &self.target, "add", (member,)).await
    }
    pub async fn remove(&self, member: Item) -> Result<(), ClientError> {
        call(&self.client, &self.target, "remove", (member,)).await
    }
    /// Adds `member` for as long as this client's session lives.
    pub async fn add_ephemeral(&self, member: Item) -> Result<(), ClientError> {
        call(&self.client, &self.target, "add_ephemeral", (member,)).await
    }
    pub async fn get_members(&self) -> Result<Vec<Item>, ClientError> {
        call(&self.client, &self.target, "get_members", ()).await
    }
}

proxy_type!(
    /// ConCoord's JobManager.
    JobManager
);

impl JobManager {
    pub async fn schedule(&self, job: Item) -> Result<(), ClientError> {
        call(&self.client, &self.target, "schedule", (job,)).await
    }
    pub async fn deschedule(&self, job: Item) -> Result<(), ClientError> {
        call(&self.client, &self.target, "deschedule", (job,)).await
    }
    pub async fn update(&self, job: Item, key: Item, value: Item) -> Result<Item, ClientError> {
        call(&self.client, &self.target, "update", (job, key, value)).await
    }
    pub async fn list_jobs(&self) -> Result<Vec<Item>, ClientError> {
        call(&self.client, &self.target, "list_jobs", ()).await
    }
}

proxy_type!(
    /// ConCoord's BinaryTree (the object keeps the root).
    BinaryTree
);

impl BinaryTree {
    pub async fn insert(&self, value: Item) -> Result<(), ClientError> {
        call(&self.client, &self.target, "insert", (value,)).await
    }
    pub async fn find(&self, value: Item) -> Result<bool, ClientError> {
        call(&self.client, &self.target, "find", (value,)).await
    }
    pub async fn delete(&self, value: Item) -> Result<bool, ClientError> {
        call(&self.client, &self.target, "delete", (value,)).await
    }
    pub async fn get_min(&self) -> Result<Item, ClientError> {
        call(&self.client, &self.target, "get_min", ()).await
    }
    pub async fn get_max(&self) -> Result<Item, ClientError> {
        call(&self.client, &self.target, "get_max", ()).await
    }
    pub async fn get_depth(&self) -> Result<u64, ClientError> {
        call(&self.client, &self.target, "get_depth", ()).await
    }
    pub async fn get_size(&self) -> Result<u64, ClientError> {
        call(&self.client, &self.target, "get_size", ()).await
    }
}

proxy_type!(
    /// ConCoord's MeshMembership; `wait` blocks until the group changes.
    MeshMembership
);

impl MeshMembership {
    pub async fn add_group(&self, group: &str, minsize: u64) -> Result<(), ClientError> {
        call(&self.client, &self.target, "add_group", (group, minsize)).await
    }
    pub async fn remove_group(&self, group: &str) -> Result<(), ClientError> {
        call(&self.client, &self.target, "remove_group", (group,)).await
    }
    pub async fn get_group_members(&self, group: &str) -> Result<Vec<Item>, ClientError> {
        call(&self.client, &self.target, "get_group_members", (group,)).await
    }
    pub async fn get_group_epoch(&self, group: &str) -> Result<u64, ClientError> {
        call(&self.client, &self.target, "get_group_epoch", (group,)).await
    }
    pub async fn get_group_state(&self, group: &str) -> Result<Item, ClientError> {
        call(&self.client, &self.target, "get_group_state", (group,)).await
    }
    pub async fn approve_join(
        &self,
        group: &str,
        node: Item,
        epoch: u64,
    ) -> Result<Item, ClientError> {
        call(
            &self.client,
            &self.target,
            "approve_join",
            (group, node, epoch),
        )
        .await
    }
    pub async fn check_member(&self, group: &str, node: Item) -> Result<Item, ClientError> {
        call(&self.client, &self.target, "check_member", (group, node)).await
    }
    pub async fn notify_failure(
        &self,
        group: &str,
        epoch: u64,
        node: Item,
    ) -> Result<Item, ClientError> {
        call(
            &self.client,
            &self.target,
            "notify_failure",
            (group, epoch, node),
        )
        .await
    }
    /// Blocks until the group changes.
    pub async fn wait(&self, group: &str) -> Result<Item, ClientError> {
        let args = concoord_client::encode_positional(&(group,))?;
        // On this proxy's object (a named MeshMembership too), not the default one.
        let bytes = self
            .client
            .call_raw_on(
                &self.target,
                "wait",
                args,
                std::time::Duration::from_secs(365 * 24 * 3600),
                false,
            )
            .await?;
        concoord_client::decode_result(&bytes)
    }
}

proxy_type!(
    /// ConCoord's NameserverCoord.
    NameserverCoord
);

impl NameserverCoord {
    pub async fn addnodetosubdomain(
        &self,
        subdomain: &str,
        nodetype: Item,
        node: &str,
    ) -> Result<(), ClientError> {
        call(
            &self.client,
            &self.target,
            "addnodetosubdomain",
            (subdomain, nodetype, node),
        )
        .await
    }
    pub async fn delnodefromsubdomain(
        &self,
        subdomain: &str,
        nodetype: Item,
        node: &str,
    ) -> Result<Item, ClientError> {
        call(
            &self.client,
            &self.target,
            "delnodefromsubdomain",
            (subdomain, nodetype, node),
        )
        .await
    }
    pub async fn updatesubdomain(&self, subdomain: &str, nodes: Item) -> Result<(), ClientError> {
        call(
            &self.client,
            &self.target,
            "updatesubdomain",
            (subdomain, nodes),
        )
        .await
    }
    pub async fn delsubdomain(&self, subdomain: &str) -> Result<bool, ClientError> {
        call(&self.client, &self.target, "delsubdomain", (subdomain,)).await
    }
    pub async fn getnodes(&self, subdomain: &str) -> Result<Item, ClientError> {
        call(&self.client, &self.target, "getnodes", (subdomain,)).await
    }
    pub async fn getsubdomains(&self) -> Result<Item, ClientError> {
        call(&self.client, &self.target, "getsubdomains", ()).await
    }
    pub async fn getdomains(&self) -> Result<Item, ClientError> {
        call(&self.client, &self.target, "getdomains", ()).await
    }
}

/// The same proxies for plain threads.
pub mod blocking {
    use super::Item;
    use crate::threading::blocking::blocking_proxy;
    use crate::threading::blocking::runtime;
    use crate::{ClientError, ClientOptions};
    use serde::Serialize;

    blocking_proxy!(Counter {
        fn increment() -> Result<(), ClientError>;
        fn decrement() -> Result<(), ClientError>;
        fn getvalue() -> Result<i64, ClientError>;
    });

    blocking_proxy!(Value {
        fn getvalue() -> Result<Item, ClientError>;
        fn setvalue(value: Item) -> Result<(), ClientError>;
        fn set_fenced(token: u64, value: Item) -> Result<(), ClientError>;
        fn version() -> Result<u64, ClientError>;
        fn compare_and_set(expected: Item, new: Item) -> Result<bool, ClientError>;
        fn wait_change(version: u64, timeout: Option<std::time::Duration>) -> Result<Option<(Item, u64)>, ClientError>;
    });

    blocking_proxy!(Queue {
        fn put(item: Item) -> Result<(), ClientError>;
        fn get() -> Result<Item, ClientError>;
        fn qsize() -> Result<u64, ClientError>;
        fn empty() -> Result<bool, ClientError>;
        fn full() -> Result<bool, ClientError>;
    });

    blocking_proxy!(Stack {
        fn append(item: Item) -> Result<(), ClientError>;
        fn pop() -> Result<Item, ClientError>;
        fn get_size() -> Result<u64, ClientError>;
        fn get_stack() -> Result<Vec<Item>, ClientError>;
    });

    blocking_proxy!(Log {
        fn write(entry: Item) -> Result<(), ClientError>;
        fn append(entry: Item) -> Result<(), ClientError>;
        fn read() -> Result<String, ClientError>;
    });

    blocking_proxy!(Membership {
        fn add(member: Item) -> Result<(), ClientError>;
        fn add_ephemeral(member: Item) -> Result<(), ClientError>;
        fn remove(member: Item) -> Result<(), ClientError>;
        fn get_members() -> Result<Vec<Item>, ClientError>;
    });

    blocking_proxy!(JobManager {
        fn schedule(job: Item) -> Result<(), ClientError>;
        fn deschedule(job: Item) -> Result<(), ClientError>;
        fn update(job: Item, key: Item, value: Item) -> Result<Item, ClientError>;
        fn list_jobs() -> Result<Vec<Item>, ClientError>;
    });

    blocking_proxy!(BinaryTree {
        fn insert(value: Item) -> Result<(), ClientError>;
        fn find(value: Item) -> Result<bool, ClientError>;
        fn delete(value: Item) -> Result<bool, ClientError>;
        fn get_min() -> Result<Item, ClientError>;
        fn get_max() -> Result<Item, ClientError>;
        fn get_depth() -> Result<u64, ClientError>;
        fn get_size() -> Result<u64, ClientError>;
    });
}
