//! One-off requests to one replica over a connection of their own: its
//! status, the objects it holds; and the removal of a member, which follows
//! redirects to the leader.

use crate::tls::{LinkError, LinkRead, LinkWrite};
use crate::ClientError;
use crate::{ClientOptions, ClientTls};
use concoord_objects::ObjectInfo;
use concoord_proto::config::{Member, MemberRef};
use concoord_proto::fresh_id;
use concoord_proto::wire::{Frame, FrameCodec, HelloRole, StatusInfo, WireError, PROTOCOL_VERSION};
use futures::{SinkExt, StreamExt};
use std::future::Future;
use std::time::Duration;
use tokio_util::codec::{FramedRead, FramedWrite};

/// What a one-off request presents to a replica: the group's token and,
/// for a group serving TLS, what to trust it by. A plain `&str` is a token
/// over plain TCP.
#[derive(Clone, Copy, Debug, Default)]
pub struct Access<'a> {
    pub token: &'a str,
    pub tls: Option<&'a ClientTls>,
}

impl<'a> From<&'a str> for Access<'a> {
    fn from(token: &'a str) -> Self {
        Access { token, tls: None }
    }
}

impl<'a> From<&'a String> for Access<'a> {
    fn from(token: &'a String) -> Self {
        Access {
            token: token.as_str(),
            tls: None,
        }
    }
}

impl<'a> From<&'a ClientOptions> for Access<'a> {
    fn from(options: &'a ClientOptions) -> Self {
        Access {
            token: &options.token,
            tls: options.tls.as_ref(),
        }
    }
}

/// How long the TCP connect and the TLS handshake of a one-off request may
/// each take (the caller's timeout bounds the whole exchange too).
const LINK_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A client connection to one replica that has said hello.
struct Link<'a> {
    addr: &'a str,
    reader: FramedRead<LinkRead, FrameCodec>,
    writer: FramedWrite<LinkWrite, FrameCodec>,
}

impl<'a> Link<'a> {
    async fn open(addr: &'a str, access: Access<'_>) -> Result<Link<'a>, ClientError> {
        let token = access.token;
        let (read, write) = crate::tls::connect(addr, access.tls, LINK_CONNECT_TIMEOUT)
            .await
            .map_err(|e| match e {
                LinkError::Tls(why) => ClientError::Refused(why),
                LinkError::Unreachable(why) => ClientError::Unavailable(why),
            })?;
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
        if let WireError::Io(io) = &e {
            if let Some(why) = crate::tls::tls_failure(self.addr, io) {
                return ClientError::Refused(why);
            }
        }
        ClientError::Unavailable(format!("{}: {e}", self.addr))
    }

    /// Sends `request` and returns the first answer `pick` takes; a refusal
    /// or a closed connection is an error.
    async fn ask<T>(
        &mut self,
        request: Frame,
        pick: impl FnMut(Frame) -> Option<T>,
    ) -> Result<T, ClientError> {
        self.writer.send(request).await.map_err(|e| self.io(e))?;
        self.answer(pick).await
    }

    /// The first frame `pick` takes; a refusal or a closed connection is an error.
    async fn answer<T>(
        &mut self,
        mut pick: impl FnMut(Frame) -> Option<T>,
    ) -> Result<T, ClientError> {
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
pub async fn fetch_status<'a>(
    addr: &str,
    access: impl Into<Access<'a>>,
    timeout: Duration,
) -> Result<StatusInfo, ClientError> {
    let access = access.into();
    within(addr, timeout, async {
        let mut link = Link::open(addr, access).await?;
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
pub async fn fetch_objects<'a>(
    addr: &str,
    access: impl Into<Access<'a>>,
    timeout: Duration,
) -> Result<Vec<ObjectInfo>, ClientError> {
    const PAGE: u32 = 10_000;
    let access = access.into();
    within(addr, timeout, async {
        let mut link = Link::open(addr, access).await?;
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

/// Asks one durable replica to write a snapshot to its data dir now
/// (`concoord admin snapshot`); returns the slot it was taken at. A replica
/// without -w answers [`ClientError::Object`] of kind `NotDurable`.
pub async fn take_snapshot<'a>(
    addr: &str,
    access: impl Into<Access<'a>>,
    timeout: Duration,
) -> Result<u64, ClientError> {
    let access = access.into();
    within(addr, timeout, async {
        let mut link = Link::open(addr, access).await?;
        link.ask(Frame::TakeSnapshot, |frame| match frame {
            Frame::SnapshotTaken { result } => Some(result),
            _ => None,
        })
        .await?
        .map_err(ClientError::Object)
    })
    .await
}

/// How long a replica may take to welcome a connection before the next
/// address is tried (a paused or dead one never does).
const WELCOME_TIMEOUT: Duration = Duration::from_secs(2);

/// One replica's answer to a removal request.
enum RemovalAnswer {
    Done(Result<(Member, Vec<String>), ClientError>),
    Redirect(Option<String>, Vec<String>),
}

/// Asks the group that `addrs` belong to to remove `member` (`concoord
/// admin remove`; a replica leaving with `--leave`), following redirects to
/// the leader. Returns the member removed and the membership once the
/// removal is decided. A member that does not exist is an
/// [`ClientError::Object`] of kind `NoSuchMember`, the group's only member
/// one of kind `LastMember`; no leader within `timeout` is `Unavailable`.
pub async fn remove_member<'a>(
    addrs: &[String],
    access: impl Into<Access<'a>>,
    member: &MemberRef,
    timeout: Duration,
) -> Result<(Member, Vec<String>), ClientError> {
    let access = access.into();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut targets: Vec<String> = addrs.to_vec();
    let mut next = 0;
    let mut last_error = ClientError::Unavailable("no replica address given".into());
    while tokio::time::Instant::now() < deadline && !targets.is_empty() {
        let target = targets[next % targets.len()].clone();
        next += 1;
        let attempt = ask_removal(&target, access, member, deadline);
        match attempt.await {
            Ok(RemovalAnswer::Done(result)) => return result,
            Ok(RemovalAnswer::Redirect(leader, members)) => {
                for m in members {
                    if !targets.contains(&m) {
                        targets.push(m);
                    }
                }
                if let Some(leader) = leader.filter(|l| *l != target) {
                    next = targets.iter().position(|t| *t == leader).unwrap_or(0);
                    continue;
                }
                // Nobody leads yet: an election is under way.
                last_error = ClientError::Unavailable(format!("{target} knows no leader"));
            }
            Err(e) => last_error = e,
        }
        if next % targets.len() == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Err(match last_error {
        ClientError::Unavailable(why) => ClientError::Unavailable(format!(
            "no leader removed the member within {timeout:?}: {why}"
        )),
        other => other,
    })
}

async fn ask_removal(
    addr: &str,
    access: Access<'_>,
    member: &MemberRef,
    deadline: tokio::time::Instant,
) -> Result<RemovalAnswer, ClientError> {
    let welcome_by = deadline.min(tokio::time::Instant::now() + WELCOME_TIMEOUT);
    let timed_out = || ClientError::Unavailable(format!("{addr} did not answer in time"));
    let mut link = tokio::time::timeout_at(welcome_by, async {
        let mut link = Link::open(addr, access).await?;
        link.answer(|frame| matches!(frame, Frame::Welcome { .. }).then_some(()))
            .await
            .map(|()| link)
    })
    .await
    .map_err(|_| timed_out())??;
    let answer = link.ask(Frame::RemoveMember(member.clone()), |frame| match frame {
        Frame::MemberRemoved { result } => Some(RemovalAnswer::Done(
            result.map_err(ClientError::from_reply_error),
        )),
        Frame::Redirect {
            leader, members, ..
        } => Some(RemovalAnswer::Redirect(leader, members)),
        _ => None,
    });
    tokio::time::timeout_at(deadline, answer)
        .await
        .map_err(|_| timed_out())?
}
