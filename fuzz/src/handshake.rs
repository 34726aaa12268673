//! Arbitrary bytes as the first frame(s) of a connection to a real replica.
//!
//! One [`LocalReplica`] of a Counter is started per process (lazily); each
//! input goes over a fresh loopback connection, our side is closed so a
//! truncated frame shows at once, and whatever the replica answers is read
//! until it closes. Then the replica must still answer a status request on a
//! new connection. This drives `serve_connection` exactly as a hostile client
//! would (version, token and role checks, then the client connection).
//!
//! Inputs that, after a valid hello, ask to change the group (`Join`) or
//! claim the peer role are skipped: an authenticated member may do that by
//! design, and it would take this group of one out of quorum (or make the
//! replica dial fuzzer-made addresses) for every later input.

use bytes::BytesMut;
use concoord::actors::wire::{Frame, FrameCodec, HelloRole, PROTOCOL_VERSION};
use concoord::objects::CommandId;
use concoord::LocalReplica;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio_util::codec::Decoder;

/// Short, so mutation can find it and get past the token check.
pub const TOKEN: &str = "t";
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Answers past this are not read (the replica never sends that much here).
const ANSWER_LIMIT: u64 = 1 << 20;

fn replica_addr() -> &'static str {
    static REPLICA: OnceLock<LocalReplica> = OnceLock::new();
    REPLICA
        .get_or_init(|| {
            // libFuzzer's C `main` does not ignore SIGPIPE as Rust's does, and
            // the replica may close before we finish writing.
            // SAFETY: setting a signal disposition to SIG_IGN has no preconditions.
            unsafe {
                libc::signal(libc::SIGPIPE, libc::SIG_IGN);
            }
            LocalReplica::start(
                concoord::builtin("Counter").expect("Counter is built in"),
                Vec::new(),
                TOKEN,
            )
            .expect("a loopback replica starts")
        })
        .addr()
}

/// The frames the replica would decode from `data`, in order, up to the first error.
pub fn frames_in(data: &[u8]) -> Vec<Frame> {
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::from(data);
    let mut frames = Vec::new();
    while let Ok(Some(frame)) = codec.decode_eof(&mut buf) {
        frames.push(frame);
    }
    frames
}

/// True if the input would, once past the hello, change the group's membership
/// or open a peer link (see the module docs).
pub fn changes_membership(data: &[u8]) -> bool {
    frames_in(data).iter().any(|f| {
        matches!(
            f,
            Frame::Join(_)
                | Frame::Hello {
                    role: HelloRole::Peer(_),
                    ..
                }
        )
    })
}

/// Closes with a reset (SO_LINGER 0): the TIME_WAIT states of tens of
/// thousands of connections would otherwise exhaust loopback's ports, and
/// connects would fail for reasons that are no fault of the replica.
fn close_hard(stream: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a correctly sized option value.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(stream);
}

/// Sends `data` on a fresh connection, closes our side, and returns what the
/// replica wrote before closing.
pub fn exchange(addr: &str, data: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("the replica accepts connections");
    let _ = stream.set_nodelay(true);
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    // The replica may refuse and close before reading everything: not a failure.
    let _ = stream.write_all(data);
    let _ = stream.shutdown(Shutdown::Write);
    let mut answer = Vec::new();
    let _ = (&mut stream).take(ANSWER_LIMIT).read_to_end(&mut answer);
    close_hard(stream);
    answer
}

/// Whether the replica at `addr` answers a status request from a well-behaved client.
pub fn answers_status(addr: &str) -> bool {
    let Ok(stream) = TcpStream::connect(addr) else {
        return false;
    };
    let answered = status_on(stream.try_clone().expect("clone a socket"));
    close_hard(stream);
    answered
}

fn status_on(mut stream: TcpStream) -> bool {
    let _ = stream.set_nodelay(true);
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut out = crate::framed(&Frame::Hello {
        version: PROTOCOL_VERSION,
        role: HelloRole::Client(0x5eed),
        token: TOKEN.into(),
    });
    out.extend(crate::framed(&Frame::StatusRequest));
    if stream.write_all(&out).is_err() {
        return false;
    }
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut chunk = [0u8; 4096];
    while Instant::now() < deadline {
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(Frame::Status(_))) => return true,
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(_) => return false,
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    false
}

pub fn run(data: &[u8]) {
    if changes_membership(data) {
        return;
    }
    let addr = replica_addr();
    let _ = exchange(addr, data);
    assert!(
        answers_status(addr),
        "the replica stopped answering status requests after {} input bytes",
        data.len()
    );
}

pub fn seeds() -> Vec<Vec<u8>> {
    let hello = |version, token: &str| Frame::Hello {
        version,
        role: HelloRole::Client(42),
        token: token.into(),
    };
    let call = Frame::Call {
        id: CommandId::new(42, 1),
        target: Default::default(),
        method: "increment".into(),
        args: vec![0x90],
        ack_below: 1,
    };
    let mut seeds = vec![
        crate::framed(&hello(PROTOCOL_VERSION, TOKEN)),
        crate::framed(&hello(PROTOCOL_VERSION + 1, TOKEN)),
        crate::framed(&hello(PROTOCOL_VERSION, "wrong")),
        crate::framed(&Frame::StatusRequest),
        8u32.to_be_bytes().to_vec(),
        vec![0xff, 0xff, 0xff, 0xff],
    ];
    for next in [
        call,
        Frame::StatusRequest,
        Frame::Cancel {
            id: CommandId::new(42, 9),
        },
        Frame::Welcome {
            node: 1,
            members: vec![],
        },
    ] {
        let mut s = crate::framed(&hello(PROTOCOL_VERSION, TOKEN));
        s.extend(crate::framed(&next));
        seeds.push(s);
    }
    seeds
}
