//! Hostile and malformed input over TCP: each gets a clear error to that one
//! connection, and the replica keeps serving everyone else with its state unchanged.

use concoord::actors::wire::{
    decode_frame, Frame, FrameCodec, HelloRole, MAX_FRAME_BYTES, PROTOCOL_VERSION,
};
use concoord::{BlockingClient, ClientError, ClientOptions, LocalReplica};
use proptest::prelude::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const TOKEN: &str = "s3cret";

fn replica() -> LocalReplica {
    LocalReplica::start(
        concoord::builtin("Counter").expect("built in"),
        Vec::new(),
        TOKEN,
    )
    .expect("a loopback replica starts")
}

fn client(addr: &str) -> BlockingClient {
    let options = ClientOptions {
        token: TOKEN.into(),
        deadline: Duration::from_secs(10),
        ..ClientOptions::default()
    };
    BlockingClient::new(addr, options).expect("valid address")
}

fn frame_bytes(frame: &Frame) -> Vec<u8> {
    let payload = concoord::actors::wire::encode_frame(frame);
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend(payload);
    out
}

/// Sends raw bytes on a fresh connection and returns the first frame the
/// replica answers with, if any, before it closes the connection.
fn exchange(addr: &str, bytes: &[u8]) -> Option<Frame> {
    let mut stream = TcpStream::connect(addr).expect("the replica listens");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(bytes);
    // Closing our side makes a truncated frame visible at once.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    if answer.len() < 4 {
        return None;
    }
    let len = u32::from_be_bytes(answer[..4].try_into().unwrap()) as usize;
    decode_frame(answer.get(4..4 + len)?).ok()
}

fn refused_kind(frame: Option<Frame>) -> String {
    match frame {
        Some(Frame::Refused { kind, .. }) => kind,
        other => panic!("expected a Refused frame, got {other:?}"),
    }
}

fn hello(version: u32, token: &str) -> Frame {
    Frame::Hello {
        version,
        role: HelloRole::Client(77),
        token: token.into(),
    }
}

#[test]
fn malformed_frames_are_refused_and_the_replica_keeps_serving() {
    let r = replica();
    let c = client(r.addr());
    c.call::<_, ()>("increment", ()).expect("a first increment");

    // Random bytes: a length prefix followed by garbage that is not MessagePack.
    let mut garbage = 8u32.to_be_bytes().to_vec();
    garbage.extend([0xc1, 0xc1, 0xff, 0x00, 0x13, 0x37, 0xc1, 0xc1]);
    assert_eq!(refused_kind(exchange(r.addr(), &garbage)), "Malformed");

    // A frame over the limit is refused without reading it.
    let huge = ((MAX_FRAME_BYTES + 1) as u32).to_be_bytes();
    assert_eq!(refused_kind(exchange(r.addr(), &huge)), "FrameTooLarge");

    // A truncated frame: the peer closes mid-frame; nothing to answer, nothing breaks.
    let mut truncated = 100u32.to_be_bytes().to_vec();
    truncated.extend([0x92, 0x01]);
    let _ = exchange(r.addr(), &truncated);

    // The first frame must be a Hello.
    assert_eq!(
        refused_kind(exchange(r.addr(), &frame_bytes(&Frame::StatusRequest))),
        "ProtocolError"
    );

    // A client may not speak for a peer.
    let mut bytes = frame_bytes(&hello(PROTOCOL_VERSION, TOKEN));
    bytes.extend(frame_bytes(&Frame::Joined { members: vec![] }));
    let mut stream = TcpStream::connect(r.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(&bytes).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let mut codec_input = bytes::BytesMut::from(&answer[..]);
    let mut frames = Vec::new();
    use tokio_util::codec::Decoder;
    let mut codec = FrameCodec::default();
    while let Ok(Some(f)) = codec.decode(&mut codec_input) {
        frames.push(f);
    }
    assert!(
        frames
            .iter()
            .any(|f| matches!(f, Frame::Refused { kind, .. } if kind == "ProtocolError")),
        "expected a ProtocolError refusal, got {frames:?}"
    );

    // Still serving, and nothing above changed the state.
    assert_eq!(c.call::<_, i64>("getvalue", ()), Ok(1));
}

#[test]
fn wrong_version_and_wrong_token_are_refused_with_the_reason() {
    let r = replica();
    assert_eq!(
        refused_kind(exchange(
            r.addr(),
            &frame_bytes(&hello(PROTOCOL_VERSION + 1, TOKEN))
        )),
        "VersionMismatch"
    );
    match exchange(r.addr(), &frame_bytes(&hello(PROTOCOL_VERSION, "wrong"))) {
        Some(Frame::Refused { kind, message }) => {
            assert_eq!(kind, "Refused");
            assert!(message.contains("token"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // The client API reports it as Refused, not as a timeout.
    let wrong = BlockingClient::new(
        r.addr(),
        ClientOptions {
            token: "wrong".into(),
            deadline: Duration::from_secs(10),
            ..ClientOptions::default()
        },
    )
    .unwrap();
    match wrong.call::<_, ()>("increment", ()) {
        Err(ClientError::Refused(m)) => assert!(m.contains("token"), "{m}"),
        other => panic!("expected Refused, got {other:?}"),
    }
    assert_eq!(client(r.addr()).call::<_, i64>("getvalue", ()), Ok(0));
}

#[test]
fn unknown_methods_and_wrong_arguments_are_typed_errors() {
    let r = replica();
    let c = client(r.addr());
    match c.call::<_, ()>("no_such_method", ()) {
        Err(ClientError::UnknownMethod(m)) => assert!(m.contains("no_such_method"), "{m}"),
        other => panic!("expected UnknownMethod, got {other:?}"),
    }
    match c.call::<_, ()>("increment", ("five",)) {
        Err(ClientError::BadArguments(_)) => {}
        other => panic!("expected BadArguments, got {other:?}"),
    }
    // An array header promising two elements, followed by one.
    match c.call_raw("increment", vec![0x92, 0x01]) {
        Err(ClientError::BadArguments(m)) => assert!(m.contains("undecodable"), "{m}"),
        other => panic!("expected BadArguments, got {other:?}"),
    }
    match c.call_raw("increment", vec![0xc1]) {
        Err(ClientError::BadArguments(_)) => {}
        other => panic!("expected BadArguments, got {other:?}"),
    }
    assert_eq!(c.call::<_, i64>("getvalue", ()), Ok(0));
}

#[test]
fn a_bad_address_is_a_clear_error() {
    for bad in ["", "localhost", "127.0.0.1:notaport", ":14000"] {
        match BlockingClient::new(bad, ClientOptions::default()) {
            Err(ClientError::Invalid(m)) => assert!(!m.is_empty()),
            Err(other) => panic!("{bad:?}: expected Invalid, got {other:?}"),
            Ok(_) => panic!("{bad:?} was accepted"),
        }
    }
}

#[test]
fn oversized_arguments_and_names_are_refused_before_the_log() {
    let replica = replica();
    let c = client(replica.addr());
    let big = vec![0u8; concoord::actors::tcp::CALL_ARGS_MAX + 1];
    let e = c
        .call::<_, ()>("setvalue", (serde_bytes_like(big),))
        .unwrap_err();
    assert!(
        matches!(&e, ClientError::Object(o) if o.kind == "LimitExceeded"),
        "{e:?}"
    );
    let long = concoord::objects::Target::named("n".repeat(5000), "Counter");
    let e = c.call_on::<_, ()>(&long, "increment", ()).unwrap_err();
    assert!(
        matches!(&e, ClientError::Object(o) if o.kind == "LimitExceeded"),
        "{e:?}"
    );
    // The group serves on; a name under the transport limit but over the
    // group's 256 bytes is refused in order, just as clearly.
    let named = concoord::objects::Target::named("n".repeat(300), "Counter");
    let e = c.call_on::<_, ()>(&named, "increment", ()).unwrap_err();
    assert!(
        matches!(&e, ClientError::Object(o) if o.kind == "LimitExceeded"),
        "{e:?}"
    );
    c.call::<_, ()>("increment", ()).expect("still serving");
}

/// Bytes as MessagePack bin (a `Vec<u8>` would serialize as an array of integers).
fn serde_bytes_like(bytes: Vec<u8>) -> concoord::objects::rmpv::Value {
    concoord::objects::rmpv::Value::Binary(bytes)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever bytes arrive, the frame decoder returns frames or an error, never panics.
    #[test]
    fn frame_decoder_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8)) {
        use tokio_util::codec::Decoder;
        let mut codec = FrameCodec::default();
        let mut buf = bytes::BytesMut::new();
        for chunk in chunks {
            buf.extend_from_slice(&chunk);
            while let Ok(Some(_)) = codec.decode(&mut buf) {}
        }
    }

    /// Payloads that are valid-looking MessagePack of the wrong shape are errors too.
    #[test]
    fn payload_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_frame(&bytes);
    }

    /// Every frame survives encoding and decoding.
    #[test]
    fn calls_round_trip(client in any::<u64>(), seq in any::<u64>(), method in "[a-z_]{0,20}", args in proptest::collection::vec(any::<u8>(), 0..64)) {
        let frame = Frame::Call { id: concoord::CommandId::new(client, seq), target: Default::default(), method, args, ack_below: seq };
        let bytes = concoord::actors::wire::encode_frame(&frame);
        prop_assert_eq!(decode_frame(&bytes).unwrap(), frame);
    }
}
