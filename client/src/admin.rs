//! One-off requests to one replica over a connection of their own (no
//! redirects): its status, and the objects it holds.

use crate::ClientError;
use concoord_objects::ObjectInfo;
use concoord_proto::fresh_id;
use concoord_proto::wire::{Frame, FrameCodec, HelloRole, StatusInfo, PROTOCOL_VERSION};
use futures::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_util::codec::{FramedRead, FramedWrite};

/// Asks one replica for its status over a connection of its own (no redirects).
pub async fn fetch_status(
    addr: &str,
    token: &str,
    timeout: Duration,
) -> Result<StatusInfo, ClientError> {
    let exchange = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| ClientError::Unavailable(format!("cannot reach {addr}: {e}")))?;
        let (read, write) = stream.into_split();
        let mut reader = FramedRead::new(read, FrameCodec::default());
        let mut writer = FramedWrite::new(write, FrameCodec::default());
        let hello = Frame::Hello {
            version: PROTOCOL_VERSION,
            role: HelloRole::Client(fresh_id()),
            token: token.to_string(),
        };
        let io =
            |e: concoord_proto::wire::WireError| ClientError::Unavailable(format!("{addr}: {e}"));
        writer.send(hello).await.map_err(io)?;
        writer.send(Frame::StatusRequest).await.map_err(io)?;
        while let Some(frame) = reader.next().await {
            match frame.map_err(io)? {
                Frame::Status(status) => return Ok(*status),
                Frame::Refused { kind, message } => {
                    return Err(ClientError::Refused(format!("{kind}: {message}")))
                }
                _ => continue,
            }
        }
        Err(ClientError::Unavailable(format!(
            "{addr} closed the connection"
        )))
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| {
        ClientError::Unavailable(format!("{addr} did not answer within {timeout:?}"))
    })?
}

/// Every named object one replica holds, in name order, paging through them
/// (`concoord objects`): name, type and parked calls of each.
pub async fn fetch_objects(
    addr: &str,
    token: &str,
    timeout: Duration,
) -> Result<Vec<ObjectInfo>, ClientError> {
    const PAGE: u32 = 10_000;
    let exchange = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| ClientError::Unavailable(format!("cannot reach {addr}: {e}")))?;
        let (read, write) = stream.into_split();
        let mut reader = FramedRead::new(read, FrameCodec::default());
        let mut writer = FramedWrite::new(write, FrameCodec::default());
        let io =
            |e: concoord_proto::wire::WireError| ClientError::Unavailable(format!("{addr}: {e}"));
        writer
            .send(Frame::Hello {
                version: PROTOCOL_VERSION,
                role: HelloRole::Client(fresh_id()),
                token: token.to_string(),
            })
            .await
            .map_err(io)?;
        let mut all: Vec<ObjectInfo> = Vec::new();
        loop {
            let after = all.last().map(|o| o.name.clone()).unwrap_or_default();
            writer
                .send(Frame::ObjectsRequest { after, limit: PAGE })
                .await
                .map_err(io)?;
            let more = loop {
                match reader.next().await {
                    Some(frame) => match frame.map_err(io)? {
                        Frame::Objects { objects, more } => {
                            all.extend(objects);
                            break more;
                        }
                        Frame::Refused { kind, message } => {
                            return Err(ClientError::Refused(format!("{kind}: {message}")))
                        }
                        _ => continue,
                    },
                    None => {
                        return Err(ClientError::Unavailable(format!(
                            "{addr} closed the connection"
                        )))
                    }
                }
            };
            if !more {
                return Ok(all);
            }
        }
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| {
        ClientError::Unavailable(format!("{addr} did not answer within {timeout:?}"))
    })?
}
