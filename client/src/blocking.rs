//! The client for plain threads: each call blocks until it is answered.

use crate::{Client, ClientError, ClientOptions, Target};
use concoord_proto::wire::StatusInfo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// The same client for plain threads: each call blocks until it is answered.
/// Clones share the connection (and its command-id space).
#[derive(Clone)]
pub struct BlockingClient {
    runtime: Arc<tokio::runtime::Runtime>,
    client: Client,
}

impl BlockingClient {
    pub fn new(bootstrap: &str, options: ClientOptions) -> Result<BlockingClient, ClientError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| ClientError::Invalid(format!("cannot start a runtime: {e}")))?;
        let client = {
            let _guard = runtime.enter();
            Client::new(bootstrap, options)?
        };
        Ok(BlockingClient {
            runtime: Arc::new(runtime),
            client,
        })
    }

    /// The runtime its connection task runs on, for blocking proxies that
    /// share this client (`Lock::named(&client, "orders-db")`).
    pub fn runtime(&self) -> &Arc<tokio::runtime::Runtime> {
        &self.runtime
    }

    /// The async client underneath, sharing this one's connection.
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn call<A: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        args: A,
    ) -> Result<R, ClientError> {
        self.runtime.block_on(self.client.call(method, args))
    }

    pub fn call_raw(&self, method: &str, args: Vec<u8>) -> Result<Vec<u8>, ClientError> {
        self.runtime.block_on(self.client.call_raw(method, args))
    }

    pub fn call_raw_with(
        &self,
        method: &str,
        args: Vec<u8>,
        deadline: Duration,
        cancel_at_deadline: bool,
    ) -> Result<Vec<u8>, ClientError> {
        self.runtime.block_on(
            self.client
                .call_raw_with(method, args, deadline, cancel_at_deadline),
        )
    }

    /// [`Client::call_on`]: a call on the object `target` names.
    pub fn call_on<A: Serialize, R: DeserializeOwned>(
        &self,
        target: &Target,
        method: &str,
        args: A,
    ) -> Result<R, ClientError> {
        self.runtime
            .block_on(self.client.call_on(target, method, args))
    }

    /// [`Client::call_raw_on`].
    pub fn call_raw_on(
        &self,
        target: &Target,
        method: &str,
        args: Vec<u8>,
        deadline: Duration,
        cancel_at_deadline: bool,
    ) -> Result<Vec<u8>, ClientError> {
        self.runtime.block_on(self.client.call_raw_on(
            target,
            method,
            args,
            deadline,
            cancel_at_deadline,
        ))
    }

    /// [`Client::call_raw_stale`]: a read allowed to be stale.
    pub fn call_raw_stale(
        &self,
        target: &Target,
        method: &str,
        args: Vec<u8>,
    ) -> Result<Vec<u8>, ClientError> {
        self.runtime
            .block_on(self.client.call_raw_stale(target, method, args))
    }

    pub fn status(&self) -> Result<StatusInfo, ClientError> {
        self.runtime.block_on(self.client.status())
    }
}
