//! Arbitrary bytes through the length-delimited [`FrameCodec`] (fed in chunks,
//! decoded repeatedly, then at end of stream as `FramedRead` does) and straight
//! through [`decode_frame`]. Any frame that decodes must survive re-encoding.

use bytes::BytesMut;
use concoord::actors::wire::{decode_frame, encode_frame, Frame, FrameCodec, HelloRole};
use concoord::objects::CommandId;
use tokio_util::codec::Decoder;

pub fn run(data: &[u8]) {
    // The raw payload decoder.
    if let Ok(frame) = decode_frame(data) {
        round_trips(&frame);
    }
    // The stream decoder, fed in chunks whose size the first byte chooses.
    let (chunk, rest) = match data.split_first() {
        Some((&c, rest)) => (usize::from(c % 32) + 1, rest),
        None => (1, data),
    };
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::new();
    for piece in rest.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => round_trips(&frame),
                Ok(None) => break,
                // The server closes the connection on the first error.
                Err(_) => return,
            }
        }
    }
    while let Ok(Some(frame)) = codec.decode_eof(&mut buf) {
        round_trips(&frame);
    }
}

fn round_trips(frame: &Frame) {
    let again = decode_frame(&encode_frame(frame)).unwrap_or_else(|e| {
        panic!("a decoded frame does not decode after re-encoding: {e}: {frame:?}")
    });
    // Compare encodings, not values: a NaN inside a frame is not equal to itself.
    assert_eq!(
        encode_frame(&again),
        encode_frame(frame),
        "a frame changed through encode/decode: {frame:?}"
    );
}

pub fn seeds() -> Vec<Vec<u8>> {
    let frames = [
        Frame::Hello {
            version: concoord::actors::wire::PROTOCOL_VERSION,
            role: HelloRole::Client(7),
            token: "t".into(),
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
            message: "x".into(),
        },
        Frame::Joined {
            members: vec!["127.0.0.1:1".into()],
        },
    ];
    let mut seeds = Vec::new();
    for frame in &frames {
        seeds.push(encode_frame(frame));
        let mut framed = vec![0];
        framed.extend(crate::framed(frame));
        seeds.push(framed);
    }
    let mut all = vec![3];
    for frame in &frames {
        all.extend(crate::framed(frame));
    }
    seeds.push(all);
    seeds
}
