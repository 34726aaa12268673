//! What every accepted connection goes through first: TLS (or the refusal
//! of a connection that speaks the other of TLS and plain TCP), the Hello,
//! the version and token checks, a refusal or the Welcome; then it is served
//! as a peer or as a client.

use super::connection;
use super::peer::{self, TcpTransport};
use super::tls::{accept_failure, ReplicaTls, TLS_HANDSHAKE_RECORD};
use crate::node::NodeHandle;
use crate::wire::{Frame, FrameCodec, HelloRole, WireError, PROTOCOL_VERSION};
use concoord_client::tls::{split_plain, split_tls, LinkRead, LinkWrite};
use futures::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_util::codec::{FramedRead, FramedWrite};

/// A connection must say hello (after its TLS handshake, if any) within this long.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

async fn refuse(writer: &mut FramedWrite<LinkWrite, FrameCodec>, kind: &str, message: String) {
    log::warn!("refusing a connection: {kind}: {message}");
    let _ = writer
        .send(Frame::Refused {
            kind: kind.into(),
            message,
        })
        .await;
}

/// Whether `offered` is `token`, in a time that depends only on the lengths.
// `!=` on strings returns at the first differing byte, which leaks how much of a guessed token was right.
fn tokens_match(offered: &str, token: &str) -> bool {
    let (offered, token) = (offered.as_bytes(), token.as_bytes());
    if offered.len() != token.len() {
        return false;
    }
    offered
        .iter()
        .zip(token)
        .fold(0u8, |differ, (a, b)| differ | (a ^ b))
        == 0
}

/// Reads the Hello, checks its version and token, then serves the
/// connection as a peer or (after a Welcome) as a client.
pub(super) async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    node: NodeHandle,
    transport: Arc<TcpTransport>,
    token: String,
    tls: Option<ReplicaTls>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let hello_by = tokio::time::Instant::now() + HELLO_TIMEOUT;
    let Some((read, write, certified)) = open(stream, peer, tls.as_ref(), hello_by).await else {
        return;
    };
    let mut reader = FramedRead::new(read, FrameCodec::default());
    let mut writer = FramedWrite::new(write, FrameCodec::default());
    let hello = match tokio::time::timeout_at(hello_by, reader.next()).await {
        Err(_) => return refuse(&mut writer, "ProtocolError", "no hello within 5 s".into()).await,
        Ok(None) => return,
        Ok(Some(Err(e))) => return refuse(&mut writer, wire_error_kind(&e), e.to_string()).await,
        Ok(Some(Ok(frame))) => frame,
    };
    let Frame::Hello {
        version,
        role,
        token: offered,
    } = hello
    else {
        return refuse(
            &mut writer,
            "ProtocolError",
            "the first frame must be Hello".into(),
        )
        .await;
    };
    if version != PROTOCOL_VERSION {
        return refuse(
            &mut writer,
            "VersionMismatch",
            format!("protocol version {version} is not supported; this replica speaks {PROTOCOL_VERSION}"),
        )
        .await;
    }
    if !tokens_match(&offered, &token) {
        return refuse(&mut writer, "Refused", "wrong security token".into()).await;
    }
    match role {
        HelloRole::Peer(member) if tls.is_some() && !certified => {
            refuse(
                &mut writer,
                "Refused",
                format!(
                    "peer {} presented no certificate: replicas of a TLS group must be started \
                     with --tls-cert, --tls-key and --tls-ca",
                    member.addr
                ),
            )
            .await
        }
        HelloRole::Peer(member) => {
            transport.learn_from_hello(&member);
            peer::serve_peer(reader, node, member).await
        }
        HelloRole::Client(client) => {
            let members = node.status().await.map(|s| s.members).unwrap_or_default();
            if writer
                .send(Frame::Welcome {
                    node: node.id(),
                    members,
                })
                .await
                .is_err()
            {
                return;
            }
            connection::serve_client(client, node, peer, reader, writer, shutdown);
        }
    }
}

/// Sees what the connection speaks first: with `tls`, completes the TLS
/// handshake (bounded); a connection that speaks the other of TLS and plain
/// TCP is refused with a frame saying so. Returns the halves and whether
/// the other side presented a certificate our CA verified.
async fn open(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<&ReplicaTls>,
    hello_by: tokio::time::Instant,
) -> Option<(LinkRead, LinkWrite, bool)> {
    let mut first = [0u8; 1];
    let first = match tokio::time::timeout_at(hello_by, stream.peek(&mut first)).await {
        Ok(Ok(1)) => Some(first[0]),
        Ok(_) => return None,
        // Silent: the hello timeout below refuses it.
        Err(_) => None,
    };
    let Some(tls) = tls else {
        let (read, write) = split_plain(stream);
        if first == Some(TLS_HANDSHAKE_RECORD) {
            let mut writer = FramedWrite::new(write, FrameCodec::default());
            let message = format!(
                "{peer} started a TLS handshake, but this replica serves plain TCP: connect \
                 without --tls-ca, or start the replica with --tls-cert and --tls-key"
            );
            refuse(&mut writer, "TlsNotServed", message).await;
            return None;
        }
        return Some((read, write, false));
    };
    if first.is_some_and(|b| b != TLS_HANDSHAKE_RECORD) {
        let (_, write) = split_plain(stream);
        let mut writer = FramedWrite::new(write, FrameCodec::default());
        let message = format!(
            "this replica serves TLS only and {peer} spoke plain TCP: connect with --tls-ca FILE \
             (the CA that signed the replica's certificate)"
        );
        refuse(&mut writer, "TlsRequired", message).await;
        return None;
    }
    match tokio::time::timeout_at(hello_by, tls.acceptor.accept(stream)).await {
        Err(_) => {
            log::warn!(
                "TLS handshake with {peer} did not finish within {HELLO_TIMEOUT:?}; closing"
            );
            None
        }
        Ok(Err(e)) => {
            log::warn!("TLS handshake with {peer} failed: {}", accept_failure(&e));
            None
        }
        Ok(Ok(stream)) => {
            let certified = stream
                .get_ref()
                .1
                .peer_certificates()
                .is_some_and(|certs| !certs.is_empty());
            let (read, write) = split_tls(tokio_rustls::TlsStream::Server(stream));
            Some((read, write, certified))
        }
    }
}

/// The `Refused` kind for a frame that could not be read.
pub(super) fn wire_error_kind(e: &WireError) -> &'static str {
    match e {
        WireError::FrameTooLarge { .. } => "FrameTooLarge",
        WireError::Malformed(_) => "Malformed",
        WireError::Io(_) => "Io",
    }
}

#[cfg(test)]
mod tests {
    use super::tokens_match;

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(tokens_match("s3cret", "s3cret"));
        assert!(tokens_match("", ""));
        assert!(!tokens_match("s3cres", "s3cret"), "last byte differs");
        assert!(!tokens_match("t3cret", "s3cret"), "first byte differs");
        assert!(!tokens_match("s3cre", "s3cret"), "a prefix");
        assert!(!tokens_match("s3crets", "s3cret"), "longer");
        assert!(!tokens_match("", "s3cret"), "empty offered");
        assert!(!tokens_match("s3cret", ""), "empty token");
    }
}
