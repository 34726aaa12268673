//! Reaching a replica: the seed names and the members learned, the
//! connect with its hello, and which failures are fatal.

use super::{Core, Reader, Writer};
use crate::tls::LinkError;
use crate::ClientError;
use concoord_proto::wire::{Frame, FrameCodec, HelloRole, WireError, PROTOCOL_VERSION};
use futures::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_util::codec::{FramedRead, FramedWrite};

impl Core {
    /// Adds the addresses the seed names resolve to now; a name that
    /// resolved is replaced by its addresses.
    async fn resolve_seeds(&mut self) {
        if self
            .seeds
            .iter()
            .all(|s| s.parse::<std::net::SocketAddr>().is_ok())
        {
            return;
        }
        let resolved = crate::resolve_members(&self.seeds).await;
        self.addrs
            .retain(|a| resolved.contains(a) || !self.seeds.contains(a));
        self.learn(&resolved);
        if self.addrs.is_empty() {
            self.addrs = self.seeds.clone();
        }
    }

    pub(super) fn learn(&mut self, members: &[String]) {
        for m in members {
            if !self.addrs.contains(m) {
                self.addrs.push(m.clone());
            }
        }
    }

    /// Connects to the preferred replica or the next one; a refusal is fatal.
    pub(super) async fn connect(&mut self) -> Result<(Reader, Writer, String), ClientError> {
        let mut attempts = 0;
        if !self.seeds_resolved {
            self.seeds_resolved = true;
            self.resolve_seeds().await;
        }
        loop {
            let addr = match self.preferred.take() {
                Some(a) => a,
                None => {
                    let a = self.addrs[self.next_addr % self.addrs.len()].clone();
                    self.next_addr += 1;
                    a
                }
            };
            match self.try_connect(&addr).await {
                Ok((reader, writer, members)) => {
                    self.learn(&members);
                    return Ok((reader, writer, addr));
                }
                Err(ConnectError::Refused(why)) => return Err(ClientError::Refused(why)),
                Err(ConnectError::Failed(why)) => {
                    log::debug!("client: cannot reach {addr}: {why}");
                    attempts += 1;
                    self.expire();
                    if self.pending.is_empty() && self.status_waiters.is_empty() {
                        return Err(ClientError::Unavailable("nothing to do".into()));
                    }
                    if attempts % self.addrs.len() == 0 {
                        // Every known member failed: the names may stand
                        // for other addresses now (pods rescheduled).
                        self.resolve_seeds().await;
                        if !self.status_waiters.is_empty() {
                            let e = ClientError::Unavailable(format!("cannot reach {addr}: {why}"));
                            for w in self.status_waiters.drain(..) {
                                let _ = w.send(Err(e.clone()));
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
    }

    async fn try_connect(&self, addr: &str) -> Result<(Reader, Writer, Vec<String>), ConnectError> {
        let (read, write) = crate::tls::connect(
            addr,
            self.options.tls.as_ref(),
            self.options.connect_timeout,
        )
        .await
        .map_err(|e| match e {
            LinkError::Tls(why) => ConnectError::Refused(why),
            LinkError::Unreachable(why) => ConnectError::Failed(why),
        })?;
        let mut reader = FramedRead::new(read, FrameCodec::default());
        let mut writer = FramedWrite::new(write, FrameCodec::default());
        writer
            .send(Frame::Hello {
                version: PROTOCOL_VERSION,
                role: HelloRole::Client(self.id),
                token: self.options.token.clone(),
            })
            .await
            .map_err(|e| wire_failure(addr, e))?;
        match tokio::time::timeout(self.options.connect_timeout, reader.next()).await {
            Ok(Some(Ok(Frame::Welcome { members, .. }))) => Ok((reader, writer, members)),
            Ok(Some(Ok(Frame::Refused { kind, message }))) => {
                Err(ConnectError::Refused(format!("{kind}: {message}")))
            }
            Ok(Some(Ok(other))) => Err(ConnectError::Failed(format!("unexpected {other:?}"))),
            Ok(Some(Err(e))) => Err(wire_failure(addr, e)),
            Ok(None) => Err(ConnectError::Failed("closed during hello".into())),
            Err(_) => Err(ConnectError::Failed("no welcome".into())),
        }
    }
}

enum ConnectError {
    Refused(String),
    Failed(String),
}

/// A link that failed during the hello: refused for good when TLS itself
/// failed (e.g. the replica wants a client certificate).
fn wire_failure(addr: &str, e: WireError) -> ConnectError {
    match &e {
        WireError::Io(io) => match crate::tls::tls_failure(addr, io) {
            Some(why) => ConnectError::Refused(why),
            None => ConnectError::Failed(e.to_string()),
        },
        _ => ConnectError::Failed(e.to_string()),
    }
}
