//! `concoord replica --concoord-port PORT`: ConCoord 1.1's client protocol,
//! so ConCoord's own Python 2 proxies (`concoord.proxy.counter.Counter`,
//! `concoord.proxy.lock.Lock`, ...) work unchanged against a concoord group.
//!
//! ConCoord 1.1's wire (concoord/connection.py, message.py, enums.py of the
//! 1.1.0 package): a frame is a 4-byte little-endian length (`struct.pack("I")`
//! on x86) and a msgpack map keyed by small integer field ids. A client sends
//! CLIENTREQUEST {ID, TYPE=0, SRC=[addr, port, 0], PROPOSAL=[[addr, port, 0],
//! commandnumber, [method, args...]], TOKEN, CLIENTBATCH, SENDCOUNT} and gets
//! CLIENTREPLY {ID, TYPE=1, SRC, REPLY, REPLYCODE, INRESPONSETO=commandnumber}.
//!
//! Each ConCoord connection becomes a concoord client connection to this
//! replica (following redirects to the leader). The command id is a hash of
//! the client's Peer (fixed for the proxy's life, whatever socket it uses)
//! and its command number, so a resend through any member is the same call.
//! A call that parks answers BLOCK, and its reply later UNBLOCK; an error
//! answers EXCEPTION with the Python exception pickled (protocol 0, as
//! cPickle.dumps), which ConCoord's proxy raises.

use concoord::objects::{CommandId, ObjectError, Target};
use concoord::proto::wire::{Frame, FrameCodec, HelloRole, PROTOCOL_VERSION};
use futures::{SinkExt, StreamExt};
use rmpv::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::bytes::Bytes;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

// Message types, fields and reply codes of concoord/enums.py (1.1.0).
const MSG_CLIENTREQUEST: i64 = 0;
const MSG_CLIENTREPLY: i64 = 1;
const FLD_ID: i64 = 0;
const FLD_TYPE: i64 = 1;
const FLD_SRC: i64 = 2;
const FLD_PROPOSAL: i64 = 5;
const FLD_REPLY: i64 = 7;
const FLD_REPLYCODE: i64 = 8;
const FLD_INRESPONSETO: i64 = 9;
const FLD_TOKEN: i64 = 13;
const FLD_CLIENTBATCH: i64 = 14;
const NODE_REPLICA: i64 = 1;
const CR_OK: i64 = 0;
const CR_REJECTED: i64 = 3;
const CR_EXCEPTION: i64 = 4;
const CR_BLOCK: i64 = 5;
const CR_UNBLOCK: i64 = 6;

/// ConCoord frames larger than this close the connection.
const MAX_FRAME: usize = 1 << 20;
/// How long the upstream connection to this replica (or its leader) may
/// take to say hello.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Upstream connects that may fail in a row (100 ms apart) before the
/// ConCoord connection is closed.
const GIVE_UP_CONNECTS: u32 = 100;
/// Replies a client may still ask again for: the group forgets the replies
/// more than this many command numbers below the oldest call in progress.
/// ConCoord's threaded proxy may have a call per thread in flight, and this
/// endpoint cannot see which replies reached it.
const ACK_LAG: u64 = 64;
/// A call not answered and not parked for this long goes to another member.
const RESEND_AFTER: Duration = Duration::from_secs(1);

/// What one endpoint needs: where this replica's clients connect, its token.
#[derive(Clone)]
struct Endpoint {
    replica: String,
    token: String,
    /// The replica serves TLS: connect to it by these settings.
    tls: Option<concoord::client::ClientTls>,
    /// This replica's address as ConCoord's replies name their source.
    host: String,
    port: u16,
}

/// Binds `listen` now (so a taken port fails the start) and serves ConCoord
/// clients on a thread of its own, forwarding to the replica at `replica`.
pub fn spawn(
    listen: SocketAddr,
    replica: String,
    token: String,
    tls: Option<concoord::client::ClientTls>,
) -> std::io::Result<SocketAddr> {
    let std_listener = std::net::TcpListener::bind(listen)?;
    std_listener.set_nonblocking(true)?;
    let bound = std_listener.local_addr()?;
    let (host, port) = match replica.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().unwrap_or(0)),
        None => (replica.clone(), 0),
    };
    let endpoint = Endpoint {
        replica,
        token,
        tls,
        host,
        port,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("concoord11".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match TcpListener::from_std(std_listener) {
                    Ok(l) => l,
                    Err(e) => return log::error!("concoord 1.1 endpoint: {e}"),
                };
                loop {
                    match listener.accept().await {
                        Ok((stream, peer)) => {
                            let _ = stream.set_nodelay(true);
                            tokio::spawn(serve(stream, peer, endpoint.clone()));
                        }
                        Err(e) => {
                            log::warn!("concoord 1.1 endpoint: accept: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            })
        })?;
    Ok(bound)
}

/// One ConCoord request, decoded.
#[derive(Debug)]
struct Request {
    client: u64,
    number: u64,
    method: String,
    args: Vec<Value>,
    token: Option<String>,
}

/// Why a ConCoord frame is refused (the connection is closed).
#[derive(Debug)]
struct BadFrame(String);

fn field(map: &[(Value, Value)], id: i64) -> Option<&Value> {
    map.iter()
        .find(|(k, _)| k.as_i64() == Some(id))
        .map(|(_, v)| v)
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        Value::Binary(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

/// Command numbers per concoord client id: a ConCoord client's numbers start
/// at random in [1, 2^63) and grow by one, so the window a number falls in
/// tells a later process that reuses the same address and port (and starts
/// elsewhere) from the earlier one.
const NUMBERS_PER_ID: u32 = 20;

/// A stable 64-bit client id for a ConCoord client's Peer and command
/// number (FNV-1a: every member derives the same id, so a resend through
/// another member is the same call).
fn client_id(peer: &Value, number: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let window = (number >> NUMBERS_PER_ID).to_le_bytes();
    for &b in peer.to_string().as_bytes().iter().chain(&window) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h | 1
}

fn decode_request(payload: &[u8]) -> Result<Request, BadFrame> {
    let value = rmpv::decode::read_value(&mut &payload[..])
        .map_err(|e| BadFrame(format!("not msgpack: {e}")))?;
    let Value::Map(map) = value else {
        return Err(BadFrame("a message must be a msgpack map".into()));
    };
    let kind = field(&map, FLD_TYPE).and_then(Value::as_i64);
    if kind != Some(MSG_CLIENTREQUEST) {
        return Err(BadFrame(format!(
            "unknown message type {kind:?} (this endpoint takes CLIENTREQUEST, 0)"
        )));
    }
    if field(&map, FLD_CLIENTBATCH).and_then(Value::as_bool) == Some(true) {
        return Err(BadFrame("client-side batches are not supported".into()));
    }
    let Some(Value::Array(proposal)) = field(&map, FLD_PROPOSAL) else {
        return Err(BadFrame("CLIENTREQUEST without a proposal".into()));
    };
    let [peer, number, command] = proposal.as_slice() else {
        return Err(BadFrame(
            "a proposal is [client, commandnumber, command]".into(),
        ));
    };
    let number = number
        .as_u64()
        .ok_or_else(|| BadFrame("the command number is not a non-negative integer".into()))?;
    // ConCoord sends a bare method name or (name, args...).
    let (method, args) = match command {
        Value::Array(items) if !items.is_empty() => (text(&items[0]), items[1..].to_vec()),
        other => (text(other), Vec::new()),
    };
    let method = method.ok_or_else(|| BadFrame("the command has no method name".into()))?;
    Ok(Request {
        client: client_id(peer, number),
        number,
        method,
        args,
        token: field(&map, FLD_TOKEN).and_then(text),
    })
}

/// ConCoord's special methods under concoord's names.
fn method_name(method: &str) -> &str {
    match method {
        "__init__" => concoord::objects::INIT_METHOD,
        "__str__" | "__repr__" => concoord::objects::STR_METHOD,
        other => other,
    }
}

/// The Python 2 exception an error kind raises at ConCoord's client.
fn python_exception(e: &ObjectError) -> (&'static str, &'static str, String) {
    let builtin = |name| ("exceptions", name, e.message.clone());
    match e.kind.as_str() {
        "RuntimeError" => builtin("RuntimeError"),
        "ValueError" => builtin("ValueError"),
        "KeyError" => builtin("KeyError"),
        "IndexError" => builtin("IndexError"),
        "TypeError" | ObjectError::BAD_ARGUMENTS => builtin("TypeError"),
        "OverflowError" => builtin("OverflowError"),
        ObjectError::UNKNOWN_METHOD => builtin("AttributeError"),
        "Empty" => ("Queue", "Empty", e.message.clone()),
        "Full" => ("Queue", "Full", e.message.clone()),
        _ => (
            "exceptions",
            "Exception",
            format!("{}: {}", e.kind, e.message),
        ),
    }
}

/// `cPickle.dumps(module.name(message))` in protocol 0: GLOBAL, MARK,
/// STRING (a Python 2 string literal), TUPLE, REDUCE, STOP.
fn pickle_exception(module: &str, name: &str, message: &str) -> Vec<u8> {
    let mut out = format!("c{module}\n{name}\n(S'").into_bytes();
    for &b in message.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\'' => out.extend_from_slice(b"\\'"),
            0x20..=0x7e => out.push(b),
            _ => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
        }
    }
    out.extend_from_slice(b"'\ntR.");
    out
}

/// A CLIENTREPLY frame's payload.
fn reply(endpoint: &Endpoint, id: u64, number: u64, code: i64, value: Value) -> Bytes {
    let map = Value::Map(vec![
        (Value::from(FLD_ID), Value::from(id)),
        (Value::from(FLD_TYPE), Value::from(MSG_CLIENTREPLY)),
        (
            Value::from(FLD_SRC),
            Value::Array(vec![
                Value::from(endpoint.host.as_str()),
                Value::from(endpoint.port),
                Value::from(NODE_REPLICA),
            ]),
        ),
        (Value::from(FLD_REPLY), value),
        (Value::from(FLD_REPLYCODE), Value::from(code)),
        (Value::from(FLD_INRESPONSETO), Value::from(number)),
    ]);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &map).expect("writing to a Vec cannot fail");
    Bytes::from(out)
}

/// One call on its way through the group.
struct Pending {
    /// The ConCoord command number the reply answers.
    number: u64,
    method: String,
    args: Vec<u8>,
    /// BLOCK was sent: the reply goes out as UNBLOCK.
    blocked: bool,
    sent_at: Option<tokio::time::Instant>,
}

type Upstream = Framed<
    tokio::io::Join<concoord::client::tls::LinkRead, concoord::client::tls::LinkWrite>,
    FrameCodec,
>;

/// Connects to `addr` as client `client`; the members it names on success.
async fn connect(
    addr: &str,
    client: u64,
    token: &str,
    tls: Option<&concoord::client::ClientTls>,
) -> Result<(Upstream, Vec<String>), String> {
    let (read, write) = concoord::client::tls::connect(addr, tls, CONNECT_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let mut up = Framed::new(tokio::io::join(read, write), FrameCodec::default());
    up.send(Frame::Hello {
        version: PROTOCOL_VERSION,
        role: HelloRole::Client(client),
        token: token.to_string(),
    })
    .await
    .map_err(|e| format!("{addr}: {e}"))?;
    match tokio::time::timeout(CONNECT_TIMEOUT, up.next()).await {
        Ok(Some(Ok(Frame::Welcome { members, .. }))) => Ok((up, members)),
        Ok(Some(Ok(Frame::Refused { kind, message }))) => Err(format!("{kind}: {message}")),
        _ => Err(format!("{addr}: no welcome")),
    }
}

/// Serves one ConCoord client connection until it closes.
async fn serve(stream: TcpStream, peer: SocketAddr, endpoint: Endpoint) {
    let codec = LengthDelimitedCodec::builder()
        .little_endian()
        .length_field_length(4)
        .max_frame_length(MAX_FRAME)
        .new_codec();
    let mut down = Framed::new(stream, codec);
    let mut up: Option<Upstream> = None;
    let mut members = vec![endpoint.replica.clone()];
    let mut next_member = 0usize;
    let mut preferred: Option<String> = None;
    // The id the upstream connection says hello with (its first client's);
    // each call carries its own.
    let mut hello: Option<u64> = None;
    // By (client id, command number).
    let mut pending: BTreeMap<(u64, u64), Pending> = BTreeMap::new();
    let mut reply_id: u64 = 0;
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    let mut failed_connects = 0u32;
    loop {
        // (Re)connect upstream when calls wait and no connection is up.
        if up.is_none() && !pending.is_empty() {
            let cid = hello.expect("calls come with a client");
            let addr = preferred.take().unwrap_or_else(|| {
                next_member += 1;
                members[next_member % members.len()].clone()
            });
            match connect(&addr, cid, &endpoint.token, endpoint.tls.as_ref()).await {
                Ok((conn, known)) => {
                    for m in known {
                        if !members.contains(&m) {
                            members.push(m);
                        }
                    }
                    up = Some(conn);
                    failed_connects = 0;
                    for p in pending.values_mut() {
                        p.sent_at = None;
                    }
                }
                Err(why) => {
                    log::debug!("concoord 1.1 endpoint: upstream {why}");
                    failed_connects += 1;
                    if failed_connects >= GIVE_UP_CONNECTS {
                        // The client resends elsewhere once this connection closes.
                        log::warn!("concoord 1.1 client {peer}: no member reachable; closing");
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        if let Some(conn) = &mut up {
            let oldest: BTreeMap<u64, u64> = pending.keys().rev().copied().collect();
            let mut failed = false;
            for (&(client, seq), p) in pending.iter_mut().filter(|(_, p)| p.sent_at.is_none()) {
                p.sent_at = Some(tokio::time::Instant::now());
                let ack_below = oldest.get(&client).map_or(0, |o| o.saturating_sub(ACK_LAG));
                let call = Frame::Call {
                    id: CommandId::new(client, seq),
                    target: Target::default(),
                    method: p.method.clone(),
                    args: p.args.clone(),
                    ack_below,
                };
                if conn.feed(call).await.is_err() {
                    failed = true;
                    break;
                }
            }
            if failed || conn.flush().await.is_err() {
                up = None;
                continue;
            }
        }
        let from_up = async {
            match &mut up {
                Some(conn) => conn.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            frame = down.next() => {
                let bytes = match frame {
                    None => return,
                    Some(Err(e)) => {
                        log::warn!("concoord 1.1 client {peer}: {e}; closing");
                        return;
                    }
                    Some(Ok(bytes)) => bytes,
                };
                let request = match decode_request(&bytes) {
                    Ok(r) => r,
                    Err(BadFrame(why)) => {
                        log::warn!("concoord 1.1 client {peer}: {why}; closing");
                        return;
                    }
                };
                reply_id += 1;
                if !endpoint.token.is_empty() && request.token.as_deref() != Some(endpoint.token.as_str()) {
                    // As ConCoord's replicas answer a wrong token.
                    let out = reply(&endpoint, reply_id, request.number, CR_REJECTED, Value::from(""));
                    if down.send(out).await.is_err() {
                        return;
                    }
                    continue;
                }
                hello.get_or_insert(request.client);
                let mut args = Vec::new();
                rmpv::encode::write_value(&mut args, &Value::Array(request.args))
                    .expect("writing to a Vec cannot fail");
                pending.entry((request.client, request.number)).or_insert(Pending {
                    number: request.number,
                    method: method_name(&request.method).to_string(),
                    args,
                    blocked: false,
                    sent_at: None,
                });
            }
            frame = from_up => {
                match frame {
                    Some(Ok(Frame::Reply { id, reply: result })) => {
                        let Some(p) = pending.remove(&(id.client, id.seq)) else { continue };
                        reply_id += 1;
                        let (code, value) = match result {
                            Ok(bytes) => {
                                let value = rmpv::decode::read_value(&mut &bytes[..]).unwrap_or(Value::Nil);
                                (if p.blocked { CR_UNBLOCK } else { CR_OK }, value)
                            }
                            Err(e) => {
                                let (module, name, message) = python_exception(&e);
                                (CR_EXCEPTION, Value::Binary(pickle_exception(module, name, &message)))
                            }
                        };
                        if down.send(reply(&endpoint, reply_id, p.number, code, value)).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(Frame::Parked { id })) => {
                        let Some(p) = pending.get_mut(&(id.client, id.seq)) else { continue };
                        if !p.blocked {
                            p.blocked = true;
                            reply_id += 1;
                            let out = reply(&endpoint, reply_id, p.number, CR_BLOCK, Value::Nil);
                            if down.send(out).await.is_err() {
                                return;
                            }
                        }
                    }
                    Some(Ok(Frame::Redirect { leader, members: known, .. })) => {
                        for m in known {
                            if !members.contains(&m) {
                                members.push(m);
                            }
                        }
                        preferred = leader;
                        up = None;
                    }
                    Some(Ok(Frame::Refused { kind, message })) if kind == "Busy" => {
                        log::debug!("concoord 1.1 endpoint: {message}");
                    }
                    Some(Ok(Frame::Refused { kind, message })) => {
                        log::warn!("concoord 1.1 endpoint: refused upstream: {kind}: {message}");
                        up = None;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => up = None,
                }
            }
            _ = ticker.tick() => {
                // A call neither answered nor parked: the member may have lost
                // its quorum or leader; try another with the same id.
                let stale = pending.values().any(|p| {
                    !p.blocked && p.sent_at.is_some_and(|t| t.elapsed() >= RESEND_AFTER)
                });
                if stale && up.is_some() {
                    up = None;
                    preferred = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pickles_as_cpickle_protocol_0() {
        assert_eq!(
            pickle_exception("exceptions", "RuntimeError", "it's \\ \n"),
            b"cexceptions\nRuntimeError\n(S'it\\'s \\\\ \\x0a'\ntR.".to_vec()
        );
    }

    #[test]
    fn decodes_a_clientrequest() {
        let peer = Value::Array(vec!["10.0.0.1".into(), 5000.into(), 0.into()]);
        let map = Value::Map(vec![
            (0.into(), 7.into()),
            (1.into(), 0.into()),
            (2.into(), peer.clone()),
            (
                5.into(),
                Value::Array(vec![
                    peer.clone(),
                    42.into(),
                    Value::Array(vec!["put".into(), 3.into()]),
                ]),
            ),
            (13.into(), Value::Nil),
            (14.into(), false.into()),
            (16.into(), 0.into()),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &map).unwrap();
        let r = decode_request(&bytes).unwrap();
        assert_eq!((r.number, r.method.as_str(), r.args.len()), (42, "put", 1));
        assert_eq!(r.client, client_id(&peer, 42));
        // The same address and port later, from another command-number window:
        // another client.
        assert_ne!(
            client_id(&peer, 42),
            client_id(&peer, 42 + (1 << NUMBERS_PER_ID))
        );
        assert!(r.token.is_none());
        let mut other = Vec::new();
        rmpv::encode::write_value(&mut other, &Value::Map(vec![(1.into(), 9.into())])).unwrap();
        assert!(decode_request(&other)
            .unwrap_err()
            .0
            .contains("unknown message type"));
    }
}
