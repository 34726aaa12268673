//! Property-test versions of the fuzz targets in `fuzz/` (issue 7), sized for CI.
//!
//! `tests/bad_input.rs` already throws raw bytes at the frame decoders; this
//! file adds what it does not cover: decoded frames re-encode identically and
//! the codec's end-of-stream path, mutated valid frames, the handshake of a
//! real replica fed arbitrary first frames, and the argument decoding and
//! dispatch of every built-in object.

use bytes::BytesMut;
use concoord::actors::wire::{
    decode_frame, encode_frame, Frame, FrameCodec, HelloRole, PROTOCOL_VERSION,
};
use concoord::objects::{builtin_names, ObjectError};
use concoord::{builtin, BlockingClient, CallContext, ClientOptions, CommandId, LocalReplica};
use concoord::{objects::StateMachine, Outcome};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;
use tokio_util::codec::Decoder;

const TOKEN: &str = "t0k3n";

/// Every method name the built-in objects answer to, plus the constructor
/// (kept in step with `fuzz/src/object_args.rs`; `method_list_is_real` checks
/// each name is a method of some object).
const METHODS: &[&str] = &[
    "concoord_init",
    "concoord_str",
    "acquire_fenced",
    "add_ephemeral",
    "campaign",
    "compare_and_set",
    "fence",
    "leader",
    "observe",
    "resign",
    "set_fenced",
    "version",
    "wait_change",
    "abort",
    "acquire",
    "add",
    "add_group",
    "add_node",
    "addnodetosubdomain",
    "append",
    "approve_join",
    "balance",
    "broken",
    "check_member",
    "clear",
    "close",
    "debit",
    "decrement",
    "delete",
    "delnodefromsubdomain",
    "delsubdomain",
    "deposit",
    "deschedule",
    "empty",
    "find",
    "full",
    "get",
    "get_depth",
    "get_group_epoch",
    "get_group_members",
    "get_group_state",
    "get_max",
    "get_min",
    "get_members",
    "get_nowait",
    "get_queue",
    "get_size",
    "get_stack",
    "getdomains",
    "getnodes",
    "getsubdomains",
    "getvalue",
    "increment",
    "insert",
    "list_jobs",
    "locked",
    "n_waiting",
    "notify",
    "notify_failure",
    "open",
    "parties",
    "pop",
    "put",
    "put_nowait",
    "qsize",
    "read",
    "release",
    "remove",
    "remove_group",
    "reset",
    "schedule",
    "set",
    "setvalue",
    "update",
    "updatesubdomain",
    "wait",
    "write",
];

fn framed(frame: &Frame) -> Vec<u8> {
    let payload = encode_frame(frame);
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend(payload);
    out
}

fn assert_round_trips(frame: &Frame) -> Result<(), TestCaseError> {
    let again = decode_frame(&encode_frame(frame))
        .map_err(|e| TestCaseError::fail(format!("re-encoded {frame:?} does not decode: {e}")))?;
    // Compare encodings: a NaN inside a frame is not equal to itself.
    prop_assert_eq!(encode_frame(&again), encode_frame(frame));
    Ok(())
}

fn sample_frames() -> Vec<Frame> {
    vec![
        Frame::Hello {
            version: PROTOCOL_VERSION,
            role: HelloRole::Client(7),
            token: TOKEN.into(),
        },
        Frame::StatusRequest,
        Frame::Call {
            id: CommandId::new(7, 1),
            target: Default::default(),
            method: "increment".into(),
            args: vec![0x90],
            ack_below: 1,
        },
        Frame::Cancel {
            id: CommandId::new(7, 2),
        },
        Frame::Refused {
            kind: "Malformed".into(),
            message: "bad".into(),
        },
        Frame::Redirect {
            id: CommandId::new(7, 3),
            leader: Some("127.0.0.1:1".into()),
            members: vec!["127.0.0.1:1".into()],
        },
    ]
}

/// Valid frames on the wire with a few bytes overwritten, inserted or cut off.
fn mutated_stream() -> impl Strategy<Value = Vec<u8>> {
    mutated_stream_of(sample_frames())
}

/// The sample frames with a read-only call: a mutation that leaves a hello
/// and the call intact is a legitimate call, and must not change the state
/// the handshake test watches.
fn read_only_sample_frames() -> Vec<Frame> {
    sample_frames()
        .into_iter()
        .map(|frame| match frame {
            Frame::Call {
                id,
                args,
                ack_below,
                ..
            } => Frame::Call {
                id,
                target: Default::default(),
                method: "getvalue".into(),
                args,
                ack_below,
            },
            other => other,
        })
        .collect()
}

fn mutated_stream_of(frames: Vec<Frame>) -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(0..frames.len(), 1..4),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..6),
        any::<prop::sample::Index>(),
    )
        .prop_map(move |(picks, edits, cut)| {
            let mut bytes: Vec<u8> = picks.iter().flat_map(|&i| framed(&frames[i])).collect();
            for (at, byte, how) in edits {
                let i = at.index(bytes.len());
                match how {
                    0 => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    _ => {
                        bytes.remove(i);
                    }
                }
                if bytes.is_empty() {
                    break;
                }
            }
            let keep = bytes.len() - cut.index(bytes.len().max(1)).min(bytes.len()) / 4;
            bytes.truncate(keep);
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Through the codec as `FramedRead` runs it (chunks, then end of stream):
    /// no panic, and every frame that decodes re-encodes to the same bytes.
    #[test]
    fn codec_frames_round_trip_and_eof_is_clean(
        bytes in prop_oneof![mutated_stream(), proptest::collection::vec(any::<u8>(), 0..128)],
        chunk in 1usize..40,
    ) {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::new();
        let mut failed = false;
        'feed: for piece in bytes.chunks(chunk) {
            buf.extend_from_slice(piece);
            loop {
                match codec.decode(&mut buf) {
                    Ok(Some(frame)) => assert_round_trips(&frame)?,
                    Ok(None) => break,
                    Err(_) => { failed = true; break 'feed; }
                }
            }
        }
        if !failed {
            while let Ok(Some(frame)) = codec.decode_eof(&mut buf) {
                assert_round_trips(&frame)?;
            }
        }
    }

    /// A payload cut from a valid frame, or with a byte changed, decodes to an
    /// error or a frame that round-trips; never a panic.
    #[test]
    fn mutated_payloads_decode_or_fail_cleanly(
        pick in 0usize..6,
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        truncate in any::<bool>(),
    ) {
        let mut payload = encode_frame(&sample_frames()[pick]);
        let i = at.index(payload.len());
        if truncate { payload.truncate(i) } else { payload[i] = byte }
        if let Ok(frame) = decode_frame(&payload) {
            assert_round_trips(&frame)?;
        }
    }
}

/// What a hostile first flight of bytes looks like.
fn handshake_input() -> impl Strategy<Value = Vec<u8>> {
    let role = prop_oneof![any::<u64>().prop_map(HelloRole::Client),];
    let hello = (
        prop_oneof![Just(PROTOCOL_VERSION), any::<u32>()],
        prop_oneof![Just(TOKEN.to_string()), "[a-z0-9]{0,8}"],
        role,
    )
        .prop_map(|(version, token, role)| Frame::Hello {
            version,
            role,
            token,
        });
    let garbage = proptest::collection::vec(any::<u8>(), 0..96);
    prop_oneof![
        // Raw bytes.
        garbage.clone(),
        // A correct length prefix around garbage.
        garbage.clone().prop_map(|g| {
            let mut out = (g.len() as u32).to_be_bytes().to_vec();
            out.extend(g);
            out
        }),
        // A hello (right or wrong version and token), then garbage.
        (hello.clone(), garbage.clone()).prop_map(|(h, g)| {
            let mut out = framed(&h);
            out.extend(g);
            out
        }),
        // A valid hello, then framed garbage.
        (garbage.clone(), any::<u64>()).prop_map(|(g, client)| {
            let mut out = framed(&Frame::Hello {
                version: PROTOCOL_VERSION,
                role: HelloRole::Client(client),
                token: TOKEN.into(),
            });
            out.extend((g.len() as u32).to_be_bytes());
            out.extend(g);
            out
        }),
        // A mutated stream of valid frames.
        mutated_stream_of(read_only_sample_frames()),
    ]
}

/// Sends `bytes` on a fresh connection, closes our side, and reads the answer.
fn exchange(addr: &str, bytes: &[u8]) {
    let mut stream = TcpStream::connect(addr).expect("the replica listens");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(Shutdown::Write);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
}

/// Arbitrary first frames on fresh connections: each gets an answer or a
/// close, and the replica goes on serving calls with its state unchanged.
#[test]
fn handshake_survives_arbitrary_first_frames() {
    let replica = LocalReplica::start(builtin("Counter").expect("built in"), Vec::new(), TOKEN)
        .expect("a loopback replica starts");
    let addr = replica.addr().to_string();
    let client = BlockingClient::new(
        &addr,
        ClientOptions {
            token: TOKEN.into(),
            deadline: Duration::from_secs(10),
            ..ClientOptions::default()
        },
    )
    .expect("valid address");
    client
        .call::<_, ()>("increment", ())
        .expect("a first increment");
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&handshake_input(), |bytes| {
            exchange(&addr, &bytes);
            prop_assert_eq!(client.call::<_, i64>("getvalue", ()), Ok(1));
            Ok(())
        })
        .unwrap();
    client
        .call::<_, ()>("increment", ())
        .expect("still serving");
    assert_eq!(client.call::<_, i64>("getvalue", ()), Ok(2));
}

fn value() -> impl Strategy<Value = rmpv::Value> {
    use rmpv::Value;
    let leaf = prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::Boolean),
        (-3i64..8).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![i64::MAX, i64::MIN, -1, 0, 1 << 53]).prop_map(Value::from),
        prop::sample::select(vec!["a", "b", "alice", "", "x.y", "node"]).prop_map(Value::from),
        "\\PC{0,6}".prop_map(Value::from),
        proptest::collection::vec(any::<u8>(), 0..6).prop_map(Value::Binary),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::vec((inner.clone(), inner), 0..2).prop_map(Value::Map),
        ]
    })
}

/// The plain values most methods take: small numbers, flags, short keys.
fn plain() -> impl Strategy<Value = rmpv::Value> {
    use rmpv::Value;
    prop_oneof![
        3 => (-2i64..5).prop_map(Value::from),
        1 => Just(Value::Nil),
        1 => any::<bool>().prop_map(Value::Boolean),
        1 => (-1.0f64..3.0).prop_map(Value::from),
        1 => prop::sample::select(vec!["a", "b", "node"]).prop_map(Value::from),
    ]
}

fn args() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        5 => proptest::collection::vec(plain(), 0..3).prop_map(|values| {
            let mut out = Vec::new();
            rmpv::encode::write_value(&mut out, &rmpv::Value::Array(values)).unwrap();
            out
        }),
        3 => proptest::collection::vec(value(), 0..4).prop_map(|values| {
            let mut out = Vec::new();
            rmpv::encode::write_value(&mut out, &rmpv::Value::Array(values)).unwrap();
            out
        }),
        1 => Just(Vec::new()),
        1 => proptest::collection::vec(any::<u8>(), 0..24),
    ]
}

/// The names in [`METHODS`] that object `name` answers to.
fn own_methods(name: &str) -> Vec<&'static str> {
    METHODS
        .iter()
        .copied()
        .filter(|&method| {
            let mut object = builtin(name).unwrap();
            let mut wakes = Vec::new();
            let mut ctx = CallContext::new(CommandId::new(1, 1), 1, &mut wakes);
            !matches!(
                object.apply(method, &[], &mut ctx),
                Outcome::Reply(Err(e)) if e.kind == ObjectError::UNKNOWN_METHOD
            )
        })
        .collect()
}

/// Mostly the object's own methods, sometimes another object's, sometimes garbage.
fn method(own: Vec<&'static str>) -> impl Strategy<Value = String> {
    prop_oneof![
        12 => prop::sample::select(own).prop_map(String::from),
        2 => prop::sample::select(METHODS).prop_map(String::from),
        1 => "\\PC{0,10}",
    ]
}

/// One step of a call sequence: a call from one of three clients, or the
/// cancel of an earlier call.
#[derive(Clone, Debug)]
enum Step {
    Call {
        client: u64,
        method: String,
        args: Vec<u8>,
    },
    Cancel(prop::sample::Index),
}

fn steps(own: Vec<&'static str>) -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        9 => (1u64..4, method(own), args()).prop_map(|(client, method, args)| Step::Call { client, method, args }),
        1 => any::<prop::sample::Index>().prop_map(Step::Cancel),
    ];
    // Half the sequences start with a constructor of small numbers, so objects
    // with parameters (Barrier parties, Semaphore permits...) leave their defaults.
    let init = proptest::option::of(proptest::collection::vec(-1i64..4, 0..3)).prop_map(|init| {
        init.map(|values| Step::Call {
            client: 1,
            method: "concoord_init".into(),
            args: concoord::objects::encode_args(&values),
        })
    });
    (init, proptest::collection::vec(step, 1..12))
        .prop_map(|(init, steps)| init.into_iter().chain(steps).collect())
}

/// As in Python's `threading.Barrier`, a `wait` that times out breaks the
/// barrier and raises: the one error that deliberately changes state.
fn error_may_change_state(object: &str, method: &str, e: &ObjectError) -> bool {
    object == "Barrier" && method == "wait" && e.kind == "BrokenBarrierError"
}

fn run_steps(name: &str, steps: &[Step]) -> Result<(), TestCaseError> {
    let mut object: Box<dyn StateMachine> = builtin(name).expect("built in");
    let mut issued = Vec::new();
    for (seq, step) in (1u64..).zip(steps) {
        match step {
            Step::Call {
                client,
                method,
                args,
            } => {
                let id = CommandId::new(*client, seq);
                let before = object.snapshot();
                let mut wakes = Vec::new();
                let outcome =
                    object.apply(method, args, &mut CallContext::new(id, seq, &mut wakes));
                if let Outcome::Reply(Err(e)) = &outcome {
                    if !error_may_change_state(name, method, e) {
                        prop_assert!(
                            object.snapshot() == before,
                            "{}.{}({:02x?}) failed with {:?} but changed the state",
                            name,
                            method,
                            args,
                            e
                        );
                        prop_assert!(
                            wakes.is_empty(),
                            "{}.{} failed but woke {:?}",
                            name,
                            method,
                            wakes
                        );
                    }
                }
                issued.push(id);
            }
            Step::Cancel(which) => {
                if !issued.is_empty() {
                    let id = issued[which.index(issued.len())];
                    let mut wakes = Vec::new();
                    let _ = object.cancel(
                        id,
                        &mut CallContext::new(CommandId::new(0, seq), seq, &mut wakes),
                    );
                }
            }
        }
    }
    // Whatever state the calls left restores into a fresh object identically.
    let snapshot = object.snapshot();
    let mut fresh = builtin(name).expect("built in");
    prop_assert!(
        fresh.restore(&snapshot).is_ok(),
        "{} does not restore its own snapshot",
        name
    );
    prop_assert!(
        fresh.snapshot() == snapshot,
        "{} snapshot changed through restore",
        name
    );
    Ok(())
}

/// Every built-in object, 256 call sequences each: no panic, a failed call
/// leaves the state unchanged, and the state survives a snapshot.
#[test]
fn object_args_never_panic_and_errors_change_nothing() {
    for &name in builtin_names() {
        let mut runner = TestRunner::new(Config {
            cases: 256,
            failure_persistence: None,
            ..Config::default()
        });
        if let Err(e) = runner.run(&steps(own_methods(name)), |steps| run_steps(name, &steps)) {
            panic!("{name}: {e}");
        }
    }
}

/// The method list above names real methods (an unknown one would only test dispatch).
#[test]
fn method_list_is_real() {
    let own: Vec<Vec<&str>> = builtin_names().iter().map(|n| own_methods(n)).collect();
    for &method in METHODS {
        assert!(
            own.iter().any(|methods| methods.contains(&method)),
            "{method} is no built-in object's method"
        );
    }
    for (name, methods) in builtin_names().iter().zip(&own) {
        // concoord_init, and at least one method of its own.
        assert!(methods.len() >= 2, "{name} answers only {methods:?}");
    }
}
