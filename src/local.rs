//! A replica on a thread of its own, with its own actix system: for examples,
//! tests and programs that want a group inside one process. Killing it closes
//! its sockets, as a crashed process would.

use crate::{ReplicaOptions, StartError};
use concoord_actors::node::NodeOptions;
use concoord_objects::StateMachine;
use std::sync::mpsc;
use std::thread;

/// A replica serving on loopback from a dedicated thread.
pub struct LocalReplica {
    addr: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl LocalReplica {
    /// Starts a replica of `object` on 127.0.0.1 with an OS-chosen port;
    /// `bootstrap` empty founds a group, otherwise it joins the group.
    pub fn start(
        object: Box<dyn StateMachine>,
        bootstrap: Vec<String>,
        token: &str,
    ) -> Result<LocalReplica, StartError> {
        let options = ReplicaOptions {
            advertise: None,
            listen: "127.0.0.1:0".parse().expect("a literal address"),
            bootstrap,
            token: token.to_string(),
            node: NodeOptions::default(),
            durable: None,
        };
        Self::start_with(object, options)
    }

    pub fn start_with(
        object: Box<dyn StateMachine>,
        options: ReplicaOptions,
    ) -> Result<LocalReplica, StartError> {
        let (addr_tx, addr_rx) = mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = thread::Builder::new()
            .name("concoord-replica".into())
            .spawn(move || {
                let system = actix::System::new();
                system.block_on(async move {
                    match crate::start_replica(object, options).await {
                        Ok(replica) => {
                            let _ = addr_tx.send(Ok(replica.local_addr.to_string()));
                            let _ = stop_rx.await;
                            replica.shutdown();
                        }
                        Err(e) => {
                            let _ = addr_tx.send(Err(e));
                        }
                    }
                });
            })
            .map_err(|e| StartError::Join(format!("cannot start a thread: {e}")))?;
        let addr = addr_rx
            .recv()
            .map_err(|_| StartError::Join("the replica thread died while starting".into()))??;
        Ok(LocalReplica {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address clients and new members use.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Stops the replica and waits for its thread: its connections close at once.
    pub fn kill(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    pub fn is_running(&self) -> bool {
        self.thread.is_some()
    }
}

impl Drop for LocalReplica {
    fn drop(&mut self) {
        self.kill();
    }
}
