//! Peers: the outbound links behind [`Transport`] ([`TcpTransport`], one
//! link and queue per member, reconnecting with backoff) and the frames a
//! peer sends in on a connection it opened.

use crate::config::Member;
use crate::message::PeerMsg;
use crate::node::{NodeHandle, Transport};
use crate::wire::{Frame, FrameCodec, HelloRole, WireError, PROTOCOL_VERSION};
use crate::NodeId;
use concoord_client::tls::{LinkError, LinkRead};
use concoord_client::ClientTls;
use futures::{SinkExt, StreamExt};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};

/// Messages queued for one peer; beyond this they are dropped (Paxos resends).
pub const PEER_QUEUE_MAX: usize = 65_536;
/// Links a hello alone may create, beyond which only decided members get one.
pub const PEER_LINKS_FROM_HELLO_MAX: usize = 64;
const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(20);
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_millis(1_000);
/// The TCP connect and the TLS handshake of a peer link each take this long at most.
const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Hands the frames of a peer that said hello to the node until it
/// closes, then tells the node the peer is gone (a thrifty leader stops
/// waiting for its Accepted at once).
pub(super) async fn serve_peer(
    reader: FramedRead<LinkRead, FrameCodec>,
    node: NodeHandle,
    member: Member,
) {
    deliver_until_closed(reader, &node, &member).await;
    node.peer_lost(member.id);
}

async fn deliver_until_closed(
    mut reader: FramedRead<LinkRead, FrameCodec>,
    node: &NodeHandle,
    member: &Member,
) {
    while let Some(frame) = reader.next().await {
        crate::spin::note_activity();
        match frame {
            Ok(Frame::Peer { from, to, msg }) => {
                if to == node.id() {
                    node.deliver(from, msg);
                }
            }
            Ok(other) => {
                log::warn!(
                    "peer {} sent a non-peer frame {other:?}; closing",
                    member.addr
                );
                return;
            }
            // A peer (TLS) that died without close_notify: a close like any other.
            Err(WireError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                log::debug!("peer {}: {e}; closing", member.addr);
                return;
            }
            Err(e) => {
                log::warn!("peer {}: {e}; closing", member.addr);
                return;
            }
        }
    }
}

/// Outbound links to peers, one per member, each with its own queue.
pub struct TcpTransport {
    me: Member,
    token: String,
    tls: Option<ClientTls>,
    links: Mutex<Links>,
}

#[derive(Default)]
struct Links {
    by_id: BTreeMap<NodeId, Link>,
    learned: u64,
}

struct Link {
    addr: String,
    tx: mpsc::Sender<Frame>,
    /// Order of learning: at one address, a later link is a later incarnation.
    learned: u64,
}

impl TcpTransport {
    pub fn new(me: Member, token: String) -> Self {
        TcpTransport {
            me,
            token,
            tls: None,
            links: Mutex::new(Links::default()),
        }
    }

    /// Peer links speak TLS, trusting peers and presenting this replica's
    /// certificate by `tls`.
    pub fn with_tls(mut self, tls: ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// A peer said hello: link back to it so replies reach it before the
    /// group's membership names it. Bounded: hellos from made-up peers (a
    /// token holder can send any) must not make this node dial without end;
    /// members the group decides on are always linked by `learn`.
    pub fn learn_from_hello(&self, member: &Member) {
        let known = {
            let links = self.links.lock().expect("links lock");
            links.by_id.contains_key(&member.id) || links.by_id.len() < PEER_LINKS_FROM_HELLO_MAX
        };
        if known {
            self.learn(std::slice::from_ref(member));
        } else {
            log::warn!(
                "not linking back to {} ({:x}): {PEER_LINKS_FROM_HELLO_MAX} peer links already",
                member.addr,
                member.id
            );
        }
    }

    /// The peers this node keeps links to (for tests and status).
    pub fn linked(&self) -> Vec<Member> {
        let links = self.links.lock().expect("links lock");
        links
            .by_id
            .iter()
            .map(|(id, link)| Member {
                id: *id,
                addr: link.addr.clone(),
            })
            .collect()
    }
}

impl Transport for TcpTransport {
    fn send(&self, from: NodeId, to: NodeId, msg: PeerMsg) {
        let links = self.links.lock().expect("links lock");
        if let Some(link) = links.by_id.get(&to) {
            // A full queue means the peer is down or slow: dropping is safe, Paxos resends.
            let _ = link.tx.try_send(Frame::Peer { from, to, msg });
        }
    }

    fn learn(&self, members: &[Member]) {
        let mut links = self.links.lock().expect("links lock");
        for member in members {
            if member.id == self.me.id {
                continue;
            }
            if links
                .by_id
                .get(&member.id)
                .is_some_and(|link| link.addr == member.addr)
            {
                continue;
            }
            let (tx, rx) = mpsc::channel(PEER_QUEUE_MAX);
            links.learned += 1;
            let learned = links.learned;
            links.by_id.insert(
                member.id,
                Link {
                    addr: member.addr.clone(),
                    tx,
                    learned,
                },
            );
            actix::spawn(peer_link(
                self.me.clone(),
                self.token.clone(),
                self.tls.clone(),
                member.addr.clone(),
                rx,
            ));
        }
    }

    fn forget_superseded(&self, members: &[Member]) {
        let mut links = self.links.lock().expect("links lock");
        // Called after every execution: the usual case (every link a member) is cheap.
        if links
            .by_id
            .keys()
            .all(|id| members.iter().any(|m| m.id == *id))
        {
            return;
        }
        let newest_at: BTreeMap<String, u64> =
            links
                .by_id
                .values()
                .fold(BTreeMap::new(), |mut newest, link| {
                    let n = newest.entry(link.addr.clone()).or_insert(0);
                    *n = (*n).max(link.learned);
                    newest
                });
        // Dropping a link's sender ends its task and closes its connection.
        links.by_id.retain(|id, link| {
            members.iter().any(|m| m.id == *id) || newest_at[&link.addr] == link.learned
        });
    }
}

/// Keeps one connection to a peer, reconnecting with backoff; messages queued
/// while it is down are dropped (they would be stale).
async fn peer_link(
    me: Member,
    token: String,
    tls: Option<ClientTls>,
    addr: String,
    mut rx: mpsc::Receiver<Frame>,
) {
    let mut backoff = RECONNECT_BACKOFF_MIN;
    // A TLS failure is logged once per link as an error, then at debug level.
    let mut tls_failure_logged = false;
    loop {
        let (read, write) =
            match concoord_client::tls::connect(&addr, tls.as_ref(), PEER_CONNECT_TIMEOUT).await {
                Ok(halves) => halves,
                Err(e) => {
                    if let LinkError::Tls(why) = &e {
                        log_tls_failure(&mut tls_failure_logged, why);
                        backoff = RECONNECT_BACKOFF_MAX;
                    }
                    while rx.try_recv().is_ok() {}
                    if rx.is_closed() {
                        return;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
                    continue;
                }
            };
        backoff = RECONNECT_BACKOFF_MIN;
        let mut writer = FramedWrite::new(write, FrameCodec::default());
        let hello = Frame::Hello {
            version: PROTOCOL_VERSION,
            role: HelloRole::Peer(me.clone()),
            token: token.clone(),
        };
        if writer.send(hello).await.is_err() {
            continue;
        }
        // The peer only ever writes to us to refuse; watch for that and for close.
        let mut reader = FramedRead::new(read, FrameCodec::default());
        loop {
            tokio::select! {
                frame = rx.recv() => {
                    let Some(frame) = frame else { return };
                    if writer.feed(frame).await.is_err() { break; }
                    while let Ok(frame) = rx.try_recv() {
                        if writer.feed(frame).await.is_err() { break; }
                    }
                    if writer.flush().await.is_err() { break; }
                }
                answer = reader.next() => {
                    match answer {
                        Some(Ok(Frame::Refused { kind, message })) => {
                            log::error!("peer {addr} refused us: {kind}: {message}");
                            tokio::time::sleep(RECONNECT_BACKOFF_MAX).await;
                        }
                        // TLS 1.3: a peer that rejects our certificate says so after the handshake.
                        Some(Err(WireError::Io(e))) => {
                            if let Some(why) = concoord_client::tls::tls_failure(&addr, &e) {
                                log_tls_failure(&mut tls_failure_logged, &why);
                                tokio::time::sleep(RECONNECT_BACKOFF_MAX).await;
                            }
                        }
                        _ => {}
                    }
                    break;
                }
            }
        }
    }
}

fn log_tls_failure(logged: &mut bool, why: &str) {
    if *logged {
        log::debug!("peer link: {why}");
    } else {
        log::error!("peer link: {why}");
        *logged = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: NodeId, addr: &str) -> Member {
        Member {
            id,
            addr: addr.into(),
        }
    }

    #[test]
    fn links_to_an_earlier_incarnation_go_once_it_has_left_the_group() {
        actix::System::new().block_on(async {
            let transport = TcpTransport::new(member(1, "127.0.0.1:1"), String::new());
            let old = member(2, "127.0.0.1:9");
            let restarted = member(3, "127.0.0.1:9");
            let other = member(4, "127.0.0.1:8");
            transport.learn(&[old.clone(), other.clone()]);
            // The restarted replica says hello before the group has replaced the old one.
            transport.learn(std::slice::from_ref(&restarted));
            transport.forget_superseded(&[old.clone(), other.clone()]);
            let ids = |t: &TcpTransport| t.linked().iter().map(|m| m.id).collect::<Vec<_>>();
            assert_eq!(
                ids(&transport),
                vec![2, 3, 4],
                "both incarnations while both may be members"
            );
            // The replacement is decided and the window has passed: only the new one is a member.
            transport.forget_superseded(&[restarted.clone(), other.clone()]);
            assert_eq!(ids(&transport), vec![3, 4]);
            // A member that is not superseded is never dropped, member or not.
            transport.forget_superseded(std::slice::from_ref(&restarted));
            assert_eq!(ids(&transport), vec![3, 4]);
        });
    }

    #[test]
    fn hellos_from_made_up_peers_create_a_bounded_number_of_links() {
        actix::System::new().block_on(async {
            let transport = TcpTransport::new(member(1, "127.0.0.1:1"), String::new());
            for id in 10..10 + 3 * PEER_LINKS_FROM_HELLO_MAX as u64 {
                transport.learn_from_hello(&member(id, &format!("127.0.0.2:{id}")));
            }
            assert_eq!(transport.linked().len(), PEER_LINKS_FROM_HELLO_MAX);
            // Members the group decides on are linked whatever the count.
            let decided = member(5, "127.0.0.1:5");
            transport.learn(std::slice::from_ref(&decided));
            assert!(transport.linked().contains(&decided));
            // A peer already linked may say hello again.
            transport.learn_from_hello(&decided);
            assert_eq!(transport.linked().len(), PEER_LINKS_FROM_HELLO_MAX + 1);
        });
    }
}
