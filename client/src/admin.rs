//! One-off requests to one replica over a connection of their own (no
//! redirects): its status, and the objects it holds.

use crate::ClientError;
use concoord_objects::ObjectInfo;
use concoord_proto::fresh_id;
use concoord_proto::wire::{Frame, FrameCodec, HelloRole, StatusInfo, WireError, PROTOCOL_VERSION};
use futures::{SinkExt, StreamExt};
use std::future::Future;
use std::time::Duration;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_util::codec::{FramedRead, FramedWrite};

/// A client connection to one replica that has said hello.
struct Link<'a> {
    addr: &'a str,
    reader: FramedRead<OwnedReadHalf, FrameCodec>,
    writer: FramedWrite<OwnedWriteHalf, FrameCodec>,
}

impl<'a> Link<'a> {
    async fn open(addr: &'a str, token: &str) -> Result<Link<'a>, ClientError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| ClientError::Unavailable(format!("cannot reach {addr}: {e}")))?;
        let (read, write) = stream.into_split();
        let mut link = Link {
            addr,
            reader: FramedRead::new(read, FrameCodec::default()),
            writer: FramedWrite::new(write, FrameCodec::default()),
        };
        let hello = Frame::Hello {
            version: PROTOCOL_VERSION,
            role: HelloRole::Client(fresh_id()),
            token: token.to_string(),
        };
        link.writer.send(hello).await.map_err(|e| link.io(e))?;
        Ok(link)
    }

    fn io(&self, e: WireError) -> ClientError {
        ClientError::Unavailable(format!("{}: {e}", self.addr))
    }

    /// Sends `request` and returns the first answer `pick` takes; a refusal
    /// or a closed connection is an error.
    async fn ask<T>(
        &mut self,
        request: Frame,
        mut pick: impl FnMut(Frame) -> Option<T>,
    ) -> Result<T, ClientError> {
        self.writer.send(request).await.map_err(|e| self.io(e))?;
        while let Some(frame) = self.reader.next().await {
            match frame.map_err(|e| self.io(e))? {
                Frame::Refused { kind, message } => {
                    return Err(ClientError::Refused(format!("{kind}: {message}")))
                }
                other => {
                    if let Some(answer) = pick(other) {
                        return Ok(answer);
                    }
                }
            }
        }
        Err(ClientError::Unavailable(format!(
            "{} closed the connection",
            self.addr
        )))
    }
}

/// `exchange`, given up after `timeout`.
async fn within<T>(
    addr: &str,
    timeout: Duration,
    exchange: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    tokio::time::timeout(timeout, exchange).await.map_err(|_| {
        ClientError::Unavailable(format!("{addr} did not answer within {timeout:?}"))
    })?
}

/// Asks one replica for its status over a connection of its own (no redirects).
pub async fn fetch_status(
    addr: &str,
    token: &str,
    timeout: Duration,
) -> Result<StatusInfo, ClientError> {
    within(addr, timeout, async {
        let mut link = Link::open(addr, token).await?;
        link.ask(Frame::StatusRequest, |frame| match frame {
            Frame::Status(status) => Some(*status),
            _ => None,
        })
        .await
    })
    .await
}

/// Every named object one replica holds, in name order, paging through them
/// (`concoord objects`): name, type and parked calls of each.
pub async fn fetch_objects(
    addr: &str,
    token: &str,
    timeout: Duration,
) -> Result<Vec<ObjectInfo>, ClientError> {
    const PAGE: u32 = 10_000;
    within(addr, timeout, async {
        let mut link = Link::open(addr, token).await?;
        let mut all: Vec<ObjectInfo> = Vec::new();
        loop {
            let after = all.last().map(|o| o.name.clone()).unwrap_or_default();
            let request = Frame::ObjectsRequest { after, limit: PAGE };
            let (objects, more) = link
                .ask(request, |frame| match frame {
                    Frame::Objects { objects, more } => Some((objects, more)),
                    _ => None,
                })
                .await?;
            all.extend(objects);
            if !more {
                return Ok(all);
            }
        }
    })
    .await
}
